//! `onyx server --executor kubernetes` against a real API server (etcd and kube-apiserver
//! built from Kubernetes' Go modules, `crates/test-kubernetes`) and the spec's 16 GPU nodes
//! (8 × H100 each) plus two MIG nodes, faked by kwok: ONYX makes each step's pod as Argo
//! would, binds it where its scheduler placed it (a gang all at once or not at all), follows
//! it through the API, and takes its outputs from what the executor reports in the pod's
//! termination message (on kwok's nodes, the message the pod is annotated with; see
//! `testenv/kubernetes/kwok-stages.yaml`).

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{node, temp_home, Server};
use test_kubernetes::{
    node_ready, wait_until, ControlPlane, FAKE_EXIT_CODE, FAKE_NODE, FAKE_RUN_TIME,
    FAKE_TERMINATION_MESSAGE,
};

/// The control plane, with kwok and the nodes made once for the whole test binary.
fn cluster() -> &'static ControlPlane {
    static NODES: OnceLock<()> = OnceLock::new();
    let k = test_kubernetes::control_plane().unwrap_or_else(|e| panic!("{e}"));
    NODES.get_or_init(|| {
        k.kwok().unwrap();
        let gpu = |name: String, allocatable: Value, product: &str| {
            json!({
                "metadata": {"name": name, "annotations": {FAKE_NODE.0: FAKE_NODE.1},
                    "labels": {"nvidia.com/gpu.product": product, "kubernetes.io/hostname": name}},
                "spec": {},
                "status": {"capacity": allocatable, "allocatable": allocatable}
            })
        };
        let mut nodes: Vec<Value> = (0..16)
            .map(|i| {
                gpu(
                    format!("gpu-{i:02}"),
                    json!({"cpu": "96", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": "8"}),
                    "NVIDIA-H100-80GB-HBM3",
                )
            })
            .collect();
        // NVIDIA's device plugin, `mixed` strategy: one GPU partitioned 7 × 1g.10gb, the
        // others whole.
        nodes.push(gpu(
            "mig-00".into(),
            json!({"cpu": "96", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": "7",
                   "nvidia.com/mig-1g.10gb": "7"}),
            "NVIDIA-H100-80GB-HBM3",
        ));
        // One node for the drain test alone: its taint keeps every other test's pods off.
        let mut drained = gpu(
            "drain-00".into(),
            json!({"cpu": "96", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": "8"}),
            "NVIDIA-H100-80GB-HBM3",
        );
        drained["spec"]["taints"] = json!([{"key": "onyx.io/drain-test", "effect": "NoSchedule"}]);
        nodes.push(drained);
        for n in &nodes {
            let (code, body) = k.call("POST", "/api/v1/nodes", Some(n)).unwrap();
            assert_eq!(code, 201, "{body}");
        }
        // ONYX's argoproj.io CRDs, as `kubectl apply -f deploy/kubernetes/crds/` makes them.
        let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubernetes/crds");
        let mut names = Vec::new();
        for f in std::fs::read_dir(crds).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            for d in manifest::parse_documents(&text).unwrap() {
                let (code, body) = k.create(&d.value).unwrap();
                assert_eq!(code, 201, "{body}");
                names.push(d.value["metadata"]["name"].as_str().unwrap().to_string());
            }
        }
        wait_until("the CRDs established", Duration::from_secs(30), || {
            names.iter().all(|n| {
                let (_, crd) = k
                    .call(
                        "GET",
                        &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{n}"),
                        None,
                    )
                    .unwrap();
                crd["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Established" && c["status"] == "True")
            })
        });
        wait_until("18 nodes Ready", Duration::from_secs(60), || {
            let (_, list) = k.call("GET", "/api/v1/nodes", None).unwrap();
            let items = list["items"].as_array().cloned().unwrap_or_default();
            items.len() == 18 && items.iter().all(node_ready)
        });
    });
    k
}

/// An ONYX server running its steps on the cluster, with namespace `ns` made there.
fn server(name: &str, ns: &str) -> Server {
    let k = cluster();
    k.namespace(ns).unwrap();
    let home = temp_home(name);
    Server::start(
        &home,
        &[
            "--executor",
            "kubernetes",
            "--kubeconfig",
            k.kubeconfig.to_str().unwrap(),
        ],
    )
}

/// The pods of namespace `ns` in the API.
fn pods(ns: &str) -> Vec<Value> {
    let (code, list) = cluster()
        .call("GET", &format!("/api/v1/namespaces/{ns}/pods"), None)
        .unwrap();
    assert_eq!(code, 200, "{list}");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn pod_of<'a>(pods: &'a [Value], wf: &Value, display: &str) -> &'a Value {
    let id = node(wf, display)["id"].as_str().unwrap().to_string();
    pods.iter()
        .find(|p| p["metadata"]["annotations"]["workflows.argoproj.io/node-id"] == id.as_str())
        .unwrap_or_else(|| panic!("no pod of {display} ({id}) among {pods:?}"))
}

/// Annotations that make a pod on a kwok node end with `code` after `run_time`, its
/// executor reporting `report`.
fn ends(code: i32, run_time: &str, report: Value) -> Value {
    json!({FAKE_EXIT_CODE: code.to_string(), FAKE_RUN_TIME: run_time,
           FAKE_TERMINATION_MESSAGE: report.to_string()})
}

#[test]
fn hello_world_and_a_dag_passing_outputs_run_as_pods_bound_by_onyx() {
    let s = server("k8s-dag", "k8s-dag");
    let wf = json!({"metadata": {"name": "hello"}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [
            {"name": "main", "dag": {"tasks": [
                {"name": "make", "template": "make"},
                {"name": "use", "template": "use", "dependencies": ["make"],
                 "arguments": {"parameters": [{"name": "word",
                    "value": "{{tasks.make.outputs.parameters.word}}"}]}}]}},
            {"name": "make",
             "metadata": {"annotations": ends(0, "1s",
                json!({"result": "made", "parameters": [["word", "kubernetes"]]}))},
             "container": {"image": "busybox", "command": ["sh", "-c"],
                "args": ["echo kubernetes > /tmp/word"],
                "resources": {"limits": {"nvidia.com/gpu": "1"}}},
             "outputs": {"parameters": [{"name": "word", "valueFrom": {"path": "/tmp/word"}}]}},
            {"name": "use", "inputs": {"parameters": [{"name": "word"}]},
             "metadata": {"labels": {"team": "vision"},
                "annotations": ends(0, "0s", json!({"result": "hello kubernetes"}))},
             "container": {"image": "busybox", "command": ["echo"],
                "args": ["hello {{inputs.parameters.word}}"]}}]}});
    s.submit("k8s-dag", wf);
    let done = s.wait("k8s-dag", "hello", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(node(&done, "make")["outputs"]["result"], "made", "{done}");
    let pods = pods("k8s-dag");
    let make = pod_of(&pods, &done, "make");
    let used = pod_of(&pods, &done, "use");
    // The second pod was made from the first one's reported output.
    assert_eq!(
        used["spec"]["containers"][0]["args"],
        json!(["hello kubernetes"]),
        "{used}"
    );
    // Argo's shape, ONYX's scheduler, the Binding to a GPU node.
    for p in [make, used] {
        assert_eq!(p["spec"]["schedulerName"], "onyx", "{p}");
        assert_eq!(p["spec"]["restartPolicy"], "Never", "{p}");
        assert_eq!(p["spec"]["containers"][0]["name"], "main", "{p}");
        assert_eq!(
            p["metadata"]["labels"]["workflows.argoproj.io/workflow"],
            "hello"
        );
        assert_eq!(
            p["metadata"]["labels"]["workflows.argoproj.io/completed"], "true",
            "{p}"
        );
        assert!(
            p["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| n.starts_with("gpu-") || n.starts_with("mig-")),
            "{p}"
        );
    }
    assert_eq!(used["metadata"]["labels"]["team"], "vision");
    assert_eq!(
        make["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(
        node(&done, "make")["hostNodeName"],
        make["spec"]["nodeName"],
        "the step shows the node its pod was bound to: {done}"
    );
}

#[test]
fn a_failing_container_fails_its_step_with_the_exit_code() {
    let s = server("k8s-fail", "k8s-fail");
    let wf = json!({"metadata": {"name": "fails"}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "main", "metadata": {"annotations": ends(3, "0s", json!({}))},
            "container": {"image": "busybox", "command": ["false"]}}]}});
    s.submit("k8s-fail", wf);
    let done = s.wait("k8s-fail", "fails", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Failed", "{done}");
    let msg = node(&done, "fails")["message"].as_str().unwrap_or_default();
    assert!(msg.contains("exit code 3"), "{done}");
}

#[test]
fn a_gang_of_four_whole_nodes_is_bound_all_at_once_or_not_at_all() {
    let s = server("k8s-gang", "k8s-gang");
    let eight = json!({"limits": {"nvidia.com/gpu": "8"}});
    let parallel = |name: &str, n: usize, template: Value| {
        let steps: Vec<Value> = (0..n)
            .map(|i| json!({"name": format!("s{i}"), "template": "work"}))
            .collect();
        let mut t = template;
        t["name"] = json!("work");
        json!({"metadata": {"name": name}, "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [{"name": "main", "steps": [steps]}, t]}})
    };
    // 13 of the 16 H100 nodes taken by pods that run until stopped (and one GPU of the MIG
    // node's whole ones cannot hold 8).
    s.submit(
        "k8s-gang",
        parallel(
            "blocker",
            13,
            json!({"container": {"image": "busybox", "command": ["sleep", "1d"],
                "resources": eight.clone()}}),
        ),
    );
    wait_until("13 blocking pods bound", Duration::from_secs(60), || {
        pods("k8s-gang")
            .iter()
            .filter(|p| p["spec"]["nodeName"].is_string())
            .count()
            == 13
    });
    s.submit(
        "k8s-gang",
        parallel(
            "gang",
            4,
            json!({"schedulerName": "volcano",
                "metadata": {"annotations": {
                    "scheduling.k8s.io/group-name": "gang",
                    "scheduling.volcano.sh/group-min-member": "4",
                    FAKE_EXIT_CODE: "0", FAKE_RUN_TIME: "1s"}},
                "container": {"image": "busybox", "command": ["true"],
                    "resources": eight.clone()}}),
        ),
    );
    // Three nodes are free: none of the four is bound (nor made) while the gang cannot fit.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        let gang: Vec<Value> = pods("k8s-gang")
            .into_iter()
            .filter(|p| p["metadata"]["labels"]["workflows.argoproj.io/workflow"] == "gang")
            .collect();
        assert!(
            gang.is_empty(),
            "a partial gang reached the cluster: {gang:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (c, b) = s.call(
        "PUT",
        "/api/v1/workflows/k8s-gang/blocker/terminate",
        Some(json!({})),
    );
    assert_eq!(c, 200, "{b}");
    let done = s.wait("k8s-gang", "gang", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let gang: Vec<Value> = pods("k8s-gang")
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["workflows.argoproj.io/workflow"] == "gang")
        .collect();
    assert_eq!(gang.len(), 4, "{gang:?}");
    let mut nodes: Vec<&str> = gang
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap())
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(
        nodes.len(),
        4,
        "each member on a node of its own: {nodes:?}"
    );
    let blocker = s.wait("k8s-gang", "blocker", Duration::from_secs(60));
    assert_eq!(blocker["status"]["phase"], "Failed", "{blocker}");
}

#[test]
fn a_mig_step_lands_on_the_node_with_that_profile() {
    let s = server("k8s-mig", "k8s-mig");
    let wf = json!({"metadata": {"name": "slice"}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "main", "metadata": {"annotations": ends(0, "0s", json!({}))},
            "container": {"image": "busybox", "command": ["true"],
                "resources": {"limits": {"nvidia.com/mig-1g.10gb": "1"}}}}]}});
    s.submit("k8s-mig", wf);
    let done = s.wait("k8s-mig", "slice", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let pods = pods("k8s-mig");
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["spec"]["nodeName"], "mig-00", "{}", pods[0]);
}

#[test]
fn a_leader_killed_while_its_pods_run_adopts_them_and_runs_none_twice() {
    let k = cluster();
    k.namespace("k8s-crash").unwrap();
    let home = temp_home("k8s-crash");
    let args = [
        "--executor",
        "kubernetes",
        "--kubeconfig",
        k.kubeconfig.to_str().unwrap(),
    ];
    let mut s = Server::start(&home, &args);
    let steps: Vec<Value> = (0..6)
        .map(|i| json!({"name": format!("s{i}"), "template": "work"}))
        .collect();
    let wf = json!({"metadata": {"name": "long"}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "main", "steps": [steps, [{"name": "after", "template": "work"}]]},
            {"name": "work", "metadata": {"annotations": ends(0, "4s", json!({"result": "ok"}))},
             "container": {"image": "busybox", "command": ["sleep", "4"],
                "resources": {"limits": {"nvidia.com/gpu": "4"}}}}]}});
    s.submit("k8s-crash", wf);
    wait_until("six pods running", Duration::from_secs(30), || {
        pods("k8s-crash")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 6
    });
    // A pod anyone could make, labelled as ONYX's with a grant charged to this namespace:
    // the new leader does not trust it with GPUs.
    k.namespace("k8s-squat").unwrap();
    let squat = json!({"metadata": {"name": "squat", "namespace": "k8s-squat",
        "labels": {"onyx.io/managed": "true", "workflows.argoproj.io/workflow": "long"},
        "annotations": {"onyx.io/grant": json!({"node": "gpu-00",
            "devices": ["0","1","2","3","4","5","6","7"], "uuids": [], "local": false,
            "ask": {"namespace": "k8s-crash", "queue": "default",
                "requests": {"nvidia.com/gpu": "8"}}}).to_string()}},
        "spec": {"schedulerName": "onyx",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}});
    let (code, body) = k
        .call("POST", "/api/v1/namespaces/k8s-squat/pods", Some(&squat))
        .unwrap();
    assert_eq!(code, 201, "{body}");
    s.kill9();
    let s = Server::start(&home, &args);
    // The new leader counts the running pods' GPUs from its first look at the cluster on.
    let (c, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
    assert_eq!(c, 200, "{nodes}");
    assert_eq!(nodes["cluster"], "kubernetes");
    let held = nodes["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["devices"].as_array().unwrap().iter())
        .flat_map(|d| d["holders"].as_array().unwrap().iter())
        .filter(|h| h["namespace"] == "k8s-crash")
        .count();
    assert_eq!(held, 24, "six adopted pods hold 4 GPUs each: {nodes}");
    let done = s.wait("k8s-crash", "long", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let pods = pods("k8s-crash");
    assert_eq!(pods.len(), 7, "one pod per step, none made twice: {pods:?}");
    for i in 0..6 {
        let step = node(&done, &format!("s{i}"));
        assert_eq!(step["outputs"]["result"], "ok", "{done}");
        let pod = pod_of(&pods, &done, &format!("s{i}"));
        assert_eq!(
            step["hostNodeName"], pod["spec"]["nodeName"],
            "adopted where it ran: {done}"
        );
    }
}

/// `deploy/kubernetes/onyx.yaml`, as its documents.
fn deployment() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/onyx.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    manifest::parse_documents(&text)
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

/// ONYX's deployment applies to the real API server: its replicas are made by the
/// Deployment's controllers under the namespace's `restricted` Pod Security level; its
/// ServiceAccount may do what the server does and nothing more; and an `onyx server` with the
/// deployment's configuration and that ServiceAccount's token runs a workflow on the cluster.
#[test]
fn the_deployment_applies_and_runs_onyx_with_its_least_privilege() {
    let k = cluster();
    let docs = deployment();
    for d in &docs {
        let (code, body) = k.create(d).unwrap();
        assert_eq!(code, 201, "{}: {body}", d["kind"]);
    }
    wait_until(
        "the Deployment's two replicas made",
        Duration::from_secs(60),
        || {
            let (_, list) = k
                .call(
                    "GET",
                    "/api/v1/namespaces/onyx/pods?labelSelector=app.kubernetes.io%2Fname%3Donyx",
                    None,
                )
                .unwrap();
            list["items"].as_array().map_or(0, Vec::len) == 2
        },
    );
    let (_, pdb) = k
        .call(
            "GET",
            "/apis/policy/v1/namespaces/onyx/poddisruptionbudgets/onyx-server",
            None,
        )
        .unwrap();
    assert_eq!(pdb["spec"]["minAvailable"], 1, "{pdb}");
    let (_, svc) = k
        .call("GET", "/api/v1/namespaces/onyx/services/onyx-server", None)
        .unwrap();
    assert_eq!(svc["spec"]["ports"][0]["port"], 2746, "{svc}");

    // Least privilege, as the API server's authorizer decides it.
    let sa = "system:serviceaccount:onyx:onyx";
    let groups = [
        "system:serviceaccounts",
        "system:serviceaccounts:onyx",
        "system:authenticated",
    ];
    let may = |verb: &str, group: &str, resource: &str, ns: Option<&str>| {
        k.may(sa, &groups, verb, group, resource, ns).unwrap()
    };
    for (verb, group, resource, ns) in [
        ("create", "", "pods", Some("team-a")),
        ("create", "", "pods/binding", Some("team-a")),
        ("delete", "", "pods", Some("team-a")),
        ("get", "", "pods/log", Some("team-a")),
        ("watch", "", "pods", None),
        ("watch", "", "nodes", None),
        ("patch", "", "nodes", None),
        ("create", "", "pods/eviction", Some("team-a")),
        ("list", "argoproj.io", "workflowtemplates", Some("team-a")),
        ("patch", "argoproj.io", "workflows", Some("team-a")),
    ] {
        assert!(
            may(verb, group, resource, ns),
            "{verb} {resource} is needed"
        );
    }
    for (verb, group, resource, ns) in [
        ("get", "", "secrets", Some("team-a")),
        ("create", "", "pods/exec", Some("team-a")),
        ("delete", "", "nodes", None),
        ("create", "", "serviceaccounts/token", Some("team-a")),
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            None,
        ),
        ("update", "argoproj.io", "workflowtemplates", Some("team-a")),
    ] {
        assert!(!may(verb, group, resource, ns), "{verb} {resource} is not");
    }

    // The deployment's configuration and ServiceAccount run a workflow.
    let home = temp_home("k8s-deploy");
    let config = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["onyx.toml"].as_str())
        .unwrap()
        .replace("/var/lib/onyx", home.join("state").to_str().unwrap())
        .replace(
            "/etc/onyx/token/token",
            home.join("token").to_str().unwrap(),
        );
    std::fs::write(home.join("onyx.toml"), config).unwrap();
    let token = "a-token-both-replicas-take";
    std::fs::write(home.join("token"), token).unwrap();
    let kubeconfig = home.join("onyx.kubeconfig");
    k.service_account_kubeconfig("onyx", "onyx", &kubeconfig)
        .unwrap();
    k.namespace("k8s-deploy").unwrap();
    let mut s = Server::start(
        &home,
        &[
            "--config",
            home.join("onyx.toml").to_str().unwrap(),
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    s.token = Some(token.into());
    s.submit(
        "k8s-deploy",
        json!({"metadata": {"name": "hello"}, "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [{"name": "main",
                "metadata": {"annotations": ends(0, "0s", json!({"result": "hello world"}))},
                "container": {"image": "busybox", "command": ["echo", "hello world"]}}]}}),
    );
    let done = s.wait("k8s-deploy", "hello", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(node(&done, "hello")["outputs"]["result"], "hello world");
}

/// GitOps as the spec has it: a WorkflowTemplate synced into the cluster (as Argo CD would)
/// is taken by ONYX and submitted from with `onyx submit --from`; the workflow's phase is in
/// the cluster, where `kubectl get workflows` reads it; deleting the template from the
/// cluster deletes it from ONYX.
#[test]
fn a_template_synced_to_the_cluster_is_submitted_from_and_kubectl_shows_the_phase() {
    let k = cluster();
    let s = server("k8s-gitops", "k8s-gitops");
    let template = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
        "metadata": {"name": "greet", "namespace": "k8s-gitops"},
        "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id"}]},
            "templates": [{"name": "main",
                "metadata": {"annotations": ends(0, "1s", json!({"result": "hello"}))},
                "container": {"image": "busybox", "command": ["echo", "hello"]}}]}});
    let (code, body) = k.create(&template).unwrap();
    assert_eq!(code, 201, "{body}");
    wait_until("ONYX has the template", Duration::from_secs(30), || {
        s.call("GET", "/api/v1/workflow-templates/k8s-gitops/greet", None)
            .0
            == 200
    });
    let name = s.cli_ok(&[
        "submit",
        "-n",
        "k8s-gitops",
        "--from",
        "workflowtemplate/greet",
        "-p",
        "ticket_id=T-9",
        "--wait",
        "-o",
        "name",
    ]);
    let name = name.trim();
    let done = s.wait("k8s-gitops", name, Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    // What `kubectl get workflows -n k8s-gitops` prints.
    let mut shown = String::new();
    wait_until(
        "kubectl shows it Succeeded",
        Duration::from_secs(30),
        || {
            let table = k
                .table("/apis/argoproj.io/v1alpha1/namespaces/k8s-gitops/workflows")
                .unwrap();
            shown = table.to_string();
            table["rows"].as_array().into_iter().flatten().any(|r| {
                r["cells"][0] == name && r["cells"][1] == "Succeeded" && r["cells"][2] == "1/1"
            })
        },
    );
    let (code, _) = k
        .call(
            "DELETE",
            "/apis/argoproj.io/v1alpha1/namespaces/k8s-gitops/workflowtemplates/greet",
            None,
        )
        .unwrap();
    assert_eq!(code, 200);
    wait_until("ONYX drops the template", Duration::from_secs(30), || {
        s.call("GET", "/api/v1/workflow-templates/k8s-gitops/greet", None)
            .0
            == 404
    });
    assert!(!shown.is_empty());
}

/// `kubectl create -f workflow.yaml`: ONYX runs it, and the object shows its phase; one that
/// breaks a submission rule (no ticket_id) is marked Error with why, and never runs.
#[test]
fn a_workflow_created_with_kubectl_is_run_by_onyx() {
    let k = cluster();
    let _s = server("k8s-kubectl", "k8s-kubectl");
    let wf = |name: &str, params: Value| {
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name, "namespace": "k8s-kubectl"},
            "spec": {"entrypoint": "main", "arguments": {"parameters": params},
                "templates": [{"name": "main",
                    "metadata": {"annotations": ends(0, "0s", json!({}))},
                    "container": {"image": "busybox", "command": ["true"]}}]}})
    };
    for w in [
        wf("by-kubectl", json!([{"name": "ticket_id", "value": "T-1"}])),
        wf("no-ticket", json!([])),
    ] {
        let (code, body) = k.create(&w).unwrap();
        assert_eq!(code, 201, "{body}");
    }
    let object = |name: &str| {
        k.call(
            "GET",
            &format!("/apis/argoproj.io/v1alpha1/namespaces/k8s-kubectl/workflows/{name}"),
            None,
        )
        .unwrap()
        .1
    };
    wait_until(
        "the kubectl workflow Succeeded",
        Duration::from_secs(60),
        || object("by-kubectl")["status"]["phase"] == "Succeeded",
    );
    assert_eq!(
        object("by-kubectl")["metadata"]["labels"]["onyx.io/accepted"],
        "true"
    );
    // Its pod is the Workflow object's, as Argo's pods are.
    let pod = pods("k8s-kubectl")
        .into_iter()
        .find(|p| p["metadata"]["labels"]["workflows.argoproj.io/workflow"] == "by-kubectl")
        .expect("the pod of by-kubectl");
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Workflow", "{pod}");
    assert_eq!(owner["name"], "by-kubectl");
    assert_eq!(owner["uid"], object("by-kubectl")["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    wait_until(
        "the workflow without a ticket refused",
        Duration::from_secs(30),
        || object("no-ticket")["status"]["phase"] == "Error",
    );
    let refused = object("no-ticket");
    assert_eq!(refused["metadata"]["labels"]["onyx.io/accepted"], "false");
    assert!(
        refused["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ticket_id"),
        "{refused}"
    );
    assert!(
        pods("k8s-kubectl").len() == 1,
        "only the accepted workflow ran a pod"
    );
}

/// ONYX's drain on a cluster: the Node is marked unschedulable in the API, its pod is
/// evicted through the Eviction API and its step fails saying so; uncordon clears the mark.
#[test]
fn a_drain_cordons_the_node_in_the_cluster_and_evicts_its_pods() {
    let k = cluster();
    let s = server("k8s-drain", "k8s-drain");
    s.submit(
        "k8s-drain",
        json!({"metadata": {"name": "held"}, "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [{"name": "main",
                "nodeSelector": {"kubernetes.io/hostname": "drain-00"},
                "tolerations": [{"key": "onyx.io/drain-test", "operator": "Exists"}],
                "container": {"image": "busybox", "command": ["sleep", "1d"],
                    "resources": {"limits": {"nvidia.com/gpu": "8"}}}}]}}),
    );
    wait_until("the pod runs on drain-00", Duration::from_secs(30), || {
        pods("k8s-drain")
            .iter()
            .any(|p| p["status"]["phase"] == "Running" && p["spec"]["nodeName"] == "drain-00")
    });
    let (c, b) = s.call(
        "PUT",
        "/api/v1/onyx/nodes/drain-00/drain?graceSeconds=0",
        None,
    );
    assert_eq!(c, 200, "{b}");
    let node = |k: &ControlPlane| k.call("GET", "/api/v1/nodes/drain-00", None).unwrap().1;
    wait_until(
        "drain-00 unschedulable in the API",
        Duration::from_secs(30),
        || node(k)["spec"]["unschedulable"] == true,
    );
    let done = s.wait("k8s-drain", "held", Duration::from_secs(60));
    // kwok removes an evicted pod at once, leaving no terminated container: a step whose pod
    // is gone without an exit code ends in Error, as Argo ends one whose pod was deleted.
    assert_eq!(done["status"]["phase"], "Error", "{done}");
    let msg = node_msg(&done, "held");
    assert!(msg.contains("drain-00 is being drained"), "{done}");
    assert!(pods("k8s-drain").is_empty(), "the pod was evicted");
    let (c, b) = s.call("PUT", "/api/v1/onyx/nodes/drain-00/uncordon", None);
    assert_eq!(c, 200, "{b}");
    wait_until(
        "drain-00 schedulable again",
        Duration::from_secs(30),
        || node(k)["spec"]["unschedulable"] != true,
    );
}

fn node_msg(wf: &Value, display: &str) -> String {
    node(wf, display)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A hostile tenant's pod as ONYX would finally make it — a podSpecPatch filled from a
/// parameter, which submission cannot check; GPUs asked by a sidecar the scheduler never
/// counted — is refused before it reaches the cluster, and its step fails saying why.
#[test]
fn a_pod_beyond_its_namespaces_level_or_its_grant_is_never_made() {
    let s = server("k8s-hostile", "k8s-hostile");
    let patch = r#"{"hostPID":true,"volumes":[{"name":"host","hostPath":{"path":"/"}}],"containers":[{"name":"main","securityContext":{"privileged":true},"volumeMounts":[{"name":"host","mountPath":"/host"}]}]}"#;
    s.submit(
        "k8s-hostile",
        json!({"metadata": {"name": "escape"}, "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T"},
                {"name": "patch", "value": patch}]},
            "templates": [{"name": "main", "podSpecPatch": "{{workflow.parameters.patch}}",
                "container": {"image": "busybox", "command": ["chroot", "/host", "id"]}}]}}),
    );
    let done = s.wait("k8s-hostile", "escape", Duration::from_secs(60));
    // A pod that could not be made leaves no exit code: Error, as Argo ends such a step.
    assert_eq!(done["status"]["phase"], "Error", "{done}");
    let msg = node_msg(&done, "escape");
    assert!(
        msg.contains("refused at Pod Security level baseline")
            && msg.contains("hostPID")
            && msg.contains("hostPath")
            && msg.contains("privileged"),
        "{msg}"
    );
    s.submit(
        "k8s-hostile",
        json!({"metadata": {"name": "hog"}, "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [{"name": "main",
                "sidecars": [{"name": "hog", "image": "busybox",
                    "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
                "container": {"image": "busybox", "command": ["true"]}}]}}),
    );
    let done = s.wait("k8s-hostile", "hog", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Error", "{done}");
    assert!(
        node_msg(&done, "hog").contains("asks for 8 of nvidia.com/gpu and was placed with 0"),
        "{done}"
    );
    assert!(
        pods("k8s-hostile").is_empty(),
        "neither pod reached the cluster"
    );
}

/// `onyx cluster nodes` reads the cluster's Nodes as the scheduler sees them.
#[test]
fn onyx_cluster_nodes_describes_the_cluster_from_its_api() {
    let k = cluster();
    let nodes = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
            .args(["cluster", "nodes", "--kubeconfig"])
            .arg(&k.kubeconfig)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Until the node lifecycle controller has seen them Ready, new nodes keep the API
    // server's not-ready taint.
    let mut text = String::new();
    wait_until(
        "the nodes' not-ready taints lifted",
        Duration::from_secs(60),
        || {
            text = nodes();
            !text.contains("node.kubernetes.io/not-ready")
        },
    );
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("gpu-00"),
        "gpu-00 8 - NVIDIA-H100-80GB-HBM3 yes -",
        "{text}"
    );
    assert!(
        line("mig-00").starts_with(
            "mig-00 8 1g.10gb+1g.10gb+1g.10gb+1g.10gb+1g.10gb+1g.10gb+1g.10gb NVIDIA-H100-80GB-HBM3"
        ),
        "{text}"
    );
    assert!(
        line("drain-00").ends_with("onyx.io/drain-test:NoSchedule"),
        "{text}"
    );
}
