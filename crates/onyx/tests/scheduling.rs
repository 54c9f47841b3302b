//! The server's pods go through the scheduler: gangs from Volcano's annotations start whole
//! or not at all, queues and tenant quotas hold, MIG instances and whole nodes are handed out,
//! and a drained node's gang is evicted whole.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{cluster_file, node, temp_home, Server};

/// A workflow of parallel steps of one template.
fn workflow(name: &str, steps: &[&str], template: Value) -> Value {
    let steps: Vec<Value> = steps
        .iter()
        .map(|s| json!({"name": s, "template": "work"}))
        .collect();
    let mut template = template;
    template["name"] = json!("work");
    json!({"metadata": {"name": name}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "main", "steps": [steps]}, template]}})
}

/// A script step that asks for `resources` and prints where it ran, then sleeps.
fn step(resources: Value, annotations: Value, sleep: f64) -> Value {
    json!({"schedulerName": "volcano", "metadata": {"annotations": annotations},
        "script": {"image": "debian", "command": ["sh"], "resources": {"limits": resources},
        "source": format!("echo $ONYX_NODE:$ONYX_GPUS:$(date +%s%N); sleep {sleep}")}})
}

/// The entry of namespace `ns` in a list of namespaces (the usage report's, the quota list's).
fn namespace_in<'a>(list: &'a Value, ns: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|n| n["namespace"] == ns))
        .unwrap_or_else(|| panic!("no namespace {ns} in {list}"))
}

/// A server on `cluster` with these lines of configuration (its home is `home/state`).
fn start_with_config(home: &std::path::Path, cluster: &std::path::Path, config: &str) -> Server {
    let path = home.join("onyx.toml");
    std::fs::write(&path, format!("home = {:?}\n{config}", home.join("state"))).unwrap();
    Server::start(
        home,
        &[
            "--cluster",
            cluster.to_str().unwrap(),
            "--config",
            path.to_str().unwrap(),
        ],
    )
}

/// `node:devices:start-ns` printed by a step.
fn placed(w: &Value, step: &str) -> (String, String, u128) {
    let out = node(w, step)["outputs"]["result"]
        .as_str()
        .unwrap_or_else(|| panic!("{step} printed nothing: {w}"))
        .to_string();
    let parts: Vec<&str> = out.split(':').collect();
    (
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].parse().unwrap(),
    )
}

#[test]
fn a_gang_starts_whole_or_not_at_all() {
    let home = temp_home("sched-gang");
    let cluster = cluster_file(&home, &[("n1", 2, &[])]);
    let s = Server::start(&home, &["--cluster", cluster.to_str().unwrap()]);
    // One GPU is held for a while; the gang of two cannot start on the one left.
    let holder = step(json!({"nvidia.com/gpu": 1}), json!({}), 2.0);
    s.submit("default", workflow("holder", &["hold"], holder));
    std::thread::sleep(Duration::from_millis(500));
    let gang = step(
        json!({"nvidia.com/gpu": 1}),
        json!({"scheduling.k8s.io/group-name": "train",
               "scheduling.volcano.sh/group-min-member": "2"}),
        0.0,
    );
    s.submit("default", workflow("gang", &["w0", "w1"], gang));
    // Its PodGroup asks for 2 GPUs (its minResources) where 1 is free: Volcano's enqueue keeps
    // it Pending, and it says so.
    let why = s.message_with("default", "gang", "minResources");
    assert_eq!(
        why,
        "the gang's minResources do not fit what queue default may hold now (the cluster, less what is held and reserved, less other queues' guarantees); it waits to be admitted",
        "the gang says why it waits"
    );
    let held = s.wait("default", "holder", Duration::from_secs(30));
    let done = s.wait("default", "gang", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    // Neither member started before the holder's GPU was free, and they got both GPUs.
    let end_of_hold = placed(&held, "hold").2 + 2_000_000_000;
    let (n0, d0, t0) = placed(&done, "w0");
    let (n1, d1, t1) = placed(&done, "w1");
    assert!(
        t0 >= end_of_hold && t1 >= end_of_hold,
        "a member started early"
    );
    assert_eq!((n0.as_str(), n1.as_str()), ("n1", "n1"));
    let mut devices = vec![d0, d1];
    devices.sort();
    assert_eq!(devices, vec!["0", "1"]);
    // A gang larger than the cluster is refused, every member with the reason.
    let big = step(
        json!({"nvidia.com/gpu": 1}),
        json!({"scheduling.k8s.io/group-name": "big",
               "scheduling.volcano.sh/group-min-member": "3"}),
        0.0,
    );
    s.submit("default", workflow("big", &["a", "b", "c"], big));
    let done = s.wait("default", "big", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Failed", "{done}");
    assert_eq!(
        node(&done, "c")["message"],
        "the gang needs 3 GPUs; the whole cluster has 2"
    );
}

#[test]
fn queues_and_tenant_quotas() {
    let home = temp_home("sched-queues");
    let cluster = cluster_file(&home, &[("n1", 2, &[])]);
    let s = start_with_config(&home, &cluster, "[namespaces.vision]\ngpu_quota = 1\n");
    // The built-in queues.
    let (c, q) = s.call("GET", "/api/v1/onyx/queues", None);
    assert_eq!(c, 200);
    let units: Vec<(String, String)> = q["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["name"].as_str().unwrap().into(),
                q["unit"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        units,
        vec![
            ("dedicated".into(), "node".into()),
            ("default".into(), "any".into()),
            ("shared".into(), "slice".into())
        ]
    );
    let (c, b) = s.call("GET", "/api/v1/onyx/queues/nope", None);
    assert_eq!(c, 404, "{b}");
    // vision may hold one GPU: its two steps run one after the other, and the second says why.
    let one = step(json!({"nvidia.com/gpu": 1}), json!({}), 1.0);
    s.submit("vision", workflow("quota", &["a", "b"], one));
    let why = s.message_with("vision", "quota", "quota");
    assert_eq!(
        why,
        "namespace vision is at its GPU quota (holds 1 of 1, asks 1)"
    );
    let (_, q) = s.call("GET", "/api/v1/onyx/queues/default", None);
    assert_eq!(q["running"], 1, "{q}");
    assert_eq!(q["pending"], 1, "{q}");
    let (_, ns) = s.call("GET", "/api/v1/onyx/namespaces", None);
    let vision = namespace_in(&ns["items"], "vision");
    assert_eq!(
        vision,
        &json!({"namespace": "vision", "gpuQuota": 1, "weight": 1, "heldGpus": 1.0})
    );
    let done = s.wait("vision", "quota", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let (a, b) = (placed(&done, "a").2, placed(&done, "b").2);
    assert!(a.abs_diff(b) >= 1_000_000_000, "the two ran at once");
    // The second waited for the first's second: the ledger's mean wait of the two is half that
    // or more.
    std::thread::sleep(Duration::from_millis(300));
    let (_, u) = s.call("GET", "/api/v1/onyx/usage", None);
    let waits: u64 = u["waits"]
        .as_object()
        .unwrap()
        .values()
        .map(|w| w["pods"].as_u64().unwrap())
        .sum();
    assert_eq!(waits, 2, "{u}");
    let mean = u["meanWaitSeconds"].as_f64().unwrap();
    assert!((0.5..10.0).contains(&mean), "{mean}: {u}");
    // A queue that does not exist, and a whole GPU asked of the shared queue: refused.
    let nowhere = step(
        json!({"nvidia.com/gpu": 1}),
        json!({"scheduling.volcano.sh/queue-name": "nope"}),
        0.0,
    );
    s.submit("default", workflow("nowhere", &["a"], nowhere));
    let done = s.wait("default", "nowhere", Duration::from_secs(30));
    assert_eq!(
        node(&done, "a")["message"],
        "queue \"nope\" does not exist (queues: dedicated, default, shared)"
    );
    let whole = step(
        json!({"nvidia.com/gpu": 1}),
        json!({"scheduling.volcano.sh/queue-name": "shared"}),
        0.0,
    );
    s.submit("default", workflow("whole", &["a"], whole));
    let done = s.wait("default", "whole", Duration::from_secs(30));
    assert!(
        node(&done, "a")["message"]
            .as_str()
            .unwrap()
            .starts_with("queue shared hands out MIG slices and GPU fractions"),
        "{done}"
    );
}

#[test]
fn mig_instances_and_whole_nodes() {
    let home = temp_home("sched-mig");
    let mig = ["1g.10gb"; 7];
    let cluster = cluster_file(&home, &[("slices", 1, &mig), ("whole", 2, &[])]);
    let s = Server::start(&home, &["--cluster", cluster.to_str().unwrap()]);
    let (_, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
    assert_eq!(nodes["items"][0]["mig"], json!([mig]));
    let infer = step(
        json!({"nvidia.com/gpu-mig-1g.10gb": 2}),
        json!({"scheduling.volcano.sh/queue-name": "shared"}),
        0.0,
    );
    s.submit("default", workflow("infer", &["a"], infer));
    let train = step(
        json!({"nvidia.com/gpu": 2}),
        json!({"scheduling.volcano.sh/queue-name": "dedicated"}),
        0.0,
    );
    s.submit("default", workflow("train", &["a"], train));
    let done = s.wait("default", "infer", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let (n, d, _) = placed(&done, "a");
    assert_eq!((n.as_str(), d.as_str()), ("slices", "0/0,0/1"));
    let done = s.wait("default", "train", Duration::from_secs(30));
    let (n, d, _) = placed(&done, "a");
    assert_eq!((n.as_str(), d.as_str()), ("whole", "0,1"));
    assert_eq!(
        node(&done, "a")["hostNodeName"],
        "whole",
        "Argo's hostNodeName"
    );
}

#[test]
fn drain_evicts_a_gang_whole() {
    let home = temp_home("sched-drain");
    let cluster = cluster_file(&home, &[("a", 1, &[]), ("b", 1, &[])]);
    let s = Server::start(&home, &["--cluster", cluster.to_str().unwrap()]);
    let gang = step(
        json!({"nvidia.com/gpu": 1}),
        json!({"scheduling.k8s.io/group-name": "g",
               "scheduling.volcano.sh/group-min-member": "2"}),
        60.0,
    );
    s.submit("default", workflow("long", &["w0", "w1"], gang));
    // Both members run, one on each node.
    let t0 = Instant::now();
    loop {
        let (_, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
        let pods: Vec<u64> = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["pods"].as_u64().unwrap())
            .collect();
        if pods == vec![1, 1] {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "{nodes}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (c, b) = s.call(
        "PUT",
        "/api/v1/onyx/nodes/a/drain?graceSeconds=0",
        Some(json!({})),
    );
    assert_eq!(c, 200, "{b}");
    assert_eq!(b["cordoned"], true);
    let draining = |s: &Server| {
        let (_, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
        nodes["items"][0]["draining"].as_bool().unwrap()
    };
    assert!(draining(&s), "a drain under way is shown as one");
    let done = s.wait("default", "long", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Failed", "{done}");
    let t0 = Instant::now();
    while draining(&s) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the drain never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for w in ["w0", "w1"] {
        assert_eq!(
            node(&done, w)["message"],
            "pod evicted: node a is being drained",
            "{w} was evicted with its gang"
        );
    }
    let (_, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
    assert_eq!(nodes["items"][0]["cordoned"], true);
    assert_eq!(nodes["items"][1]["pods"], 0);
}

/// A `resource` template that creates a Volcano Job: its replicas run as one gang with
/// PyTorch's environment; the master's completion completes the job (its policy) and stops the
/// workers; the Job's status feeds the template's conditions and output parameters.
#[test]
fn a_volcano_job_runs_as_a_gang_with_pytorch_ranks() {
    let home = temp_home("sched-vcjob");
    let cluster = cluster_file(&home, &[("n1", 2, &[]), ("n2", 2, &[])]);
    let s = Server::start(&home, &["--cluster", cluster.to_str().unwrap()]);
    let container = |script: String| {
        json!({"name": "torch", "image": "pytorch/pytorch", "command": ["sh", "-c", script],
               "resources": {"limits": {"nvidia.com/gpu": 1}}})
    };
    let record = "echo $RANK $WORLD_SIZE $MASTER_ADDR $MASTER_PORT $ONYX_NODE".to_string();
    let job = json!({"apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
        "metadata": {"name": "ddp"},
        "spec": {"minAvailable": 3, "schedulerName": "volcano", "queue": "default",
            "plugins": {"pytorch": ["--master=master", "--worker=worker", "--port=23456"]},
            "tasks": [
                {"name": "master", "replicas": 1,
                 "policies": [{"event": "TaskCompleted", "action": "CompleteJob"}],
                 "template": {"spec": {"containers": [container(format!("sleep 1; {record}"))]}}},
                {"name": "worker", "replicas": 2,
                 "template": {"spec": {"containers": [container(format!("{record}; sleep 60"))]}}}]}});
    let wf = json!({"metadata": {"name": "train"}, "spec": {"entrypoint": "job",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "job", "resource": {"action": "create",
            "successCondition": "status.state.phase = Completed",
            "failureCondition": "status.state.phase = Failed",
            "manifest": serde_json::to_string(&job).unwrap()},
            "outputs": {"parameters": [{"name": "phase",
                "valueFrom": {"jsonPath": "{.status.state.phase}"}}]}}]}});
    let t0 = Instant::now();
    s.submit("default", wf);
    let done = s.wait("default", "train", Duration::from_secs(40));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "the workers were stopped when the master completed the job"
    );
    assert_eq!(
        node(&done, "train")["outputs"]["parameters"][0]["value"],
        "Completed"
    );
    assert_eq!(
        node(&done, "train")["message"],
        Value::Null,
        "no stale progress"
    );
    // Each replica's log (pods `<resource pod>-<task>-<index>`) says what it was given.
    let mut nodes = Vec::new();
    for (rank, pod) in ["train-master-0", "train-worker-0", "train-worker-1"]
        .iter()
        .enumerate()
    {
        let line = s.log("default", "train", pod);
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            &f[..4],
            &[rank.to_string().as_str(), "3", "127.0.0.1", "23456"],
            "{pod}: {line}"
        );
        nodes.push(f[4].to_string());
    }
    nodes.sort();
    assert!(
        nodes == ["n1", "n1", "n2"] || nodes == ["n1", "n2", "n2"],
        "three GPUs on two 2-GPU nodes: {nodes:?}"
    );
    // A job larger than the cluster fails at once, saying why.
    let mut big = job.clone();
    big["metadata"]["name"] = json!("big");
    big["spec"]["tasks"][1]["replicas"] = json!(4);
    big["spec"]["minAvailable"] = json!(5);
    let wf = json!({"metadata": {"name": "big"}, "spec": {"entrypoint": "job",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "job", "resource": {"action": "create",
            "manifest": serde_json::to_string(&big).unwrap()}}]}});
    s.submit("default", wf);
    let done = s.wait("default", "big", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Failed", "{done}");
    let msg = node(&done, "big")["message"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with("Volcano job big Failed: replica big-"),
        "{msg}"
    );
}

/// `onyx maintenance start`: every node is drained, power-cycled through the configured BMC
/// command and uncordoned, one after another (never two cordoned at once); the emergency stop
/// powers every node off through the same command.
#[test]
fn maintenance_reboots_nodes_one_after_another_and_the_emergency_stop_powers_off() {
    let home = temp_home("sched-maint");
    let cluster = cluster_file(&home, &[("a", 1, &[]), ("b", 1, &[])]);
    let calls = home.join("bmc.log");
    let s = start_with_config(
        &home,
        &cluster,
        &format!("[maintenance]\ngrace_seconds = 0\nreboot_timeout_seconds = 30\n[power]\ncommand = \"echo {{node}} {{action}} >> {}; echo on\"\n",            calls.display()),
    );
    let (c, st) = s.call("GET", "/api/v1/onyx/maintenance", None);
    assert_eq!(c, 200);
    assert_eq!(st["schedule"], "0 2 * * FRI#1");
    assert_eq!(st["nextWindows"].as_array().unwrap().len(), 3);
    let (c, b) = s.call("POST", "/api/v1/onyx/maintenance/start", Some(json!({})));
    assert_eq!(c, 200, "{b}");
    let (c, b) = s.call("POST", "/api/v1/onyx/maintenance/start", Some(json!({})));
    assert_eq!(c, 400, "a second rollout is refused while one runs: {b}");
    let t0 = Instant::now();
    let mut most_cordoned = 0;
    loop {
        // The rollout's state first, the nodes after: a rollout seen finished has uncordoned
        // its last node already, whatever it did between the two reads.
        let (_, st) = s.call("GET", "/api/v1/onyx/maintenance", None);
        let (_, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
        let cordoned = nodes["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["cordoned"] == true)
            .count();
        most_cordoned = most_cordoned.max(cordoned);
        if st["rollout"]["step"]["step"] == "finished" {
            assert_eq!(st["rollout"]["done"], json!(["a", "b"]), "{st}");
            assert_eq!(cordoned, 0, "every node is uncordoned at the end");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "{st}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(most_cordoned, 1, "one node at a time");
    let log = std::fs::read_to_string(&calls).unwrap();
    let cycles: Vec<&str> = log.lines().filter(|l| l.ends_with("cycle")).collect();
    assert_eq!(cycles, vec!["a cycle", "b cycle"]);
    // The emergency stop powers off every node through the BMC command.
    let (c, stop) = s.call("POST", "/api/v1/onyx/emergency-stop", Some(json!({})));
    assert_eq!(c, 200, "{stop}");
    assert_eq!(stop["poweredOff"], json!(["a", "b"]));
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.contains("a off\n") && log.contains("b off\n"), "{log}");
}

/// With `dynamic_mig`, an idle whole GPU is re-partitioned to hold the MIG instance a step
/// asks for, and the node keeps its new layout; on this machine's GPUs it is refused.
#[test]
fn dynamic_mig_repartitions_an_idle_gpu() {
    let home = temp_home("sched-dynmig");
    let cluster = cluster_file(&home, &[("n1", 1, &[])]);
    let s = start_with_config(&home, &cluster, "dynamic_mig = true\n");
    let config = home.join("onyx.toml");
    let infer = step(
        json!({"nvidia.com/mig-3g.40gb": 1}),
        json!({"scheduling.volcano.sh/queue-name": "shared"}),
        0.0,
    );
    s.submit("default", workflow("infer", &["a"], infer));
    let done = s.wait("default", "infer", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(placed(&done, "a").1, "0/0");
    let (_, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
    assert_eq!(nodes["items"][0]["mig"], json!([["3g.40gb"]]));
    drop(s);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["server", "--listen", "127.0.0.1:0", "--cluster", "local"])
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dynamic_mig: this machine's GPUs keep"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// With `preemption`, a waiting step of a higher priority class evicts a running step of a
/// lower one in its queue (which fails, saying why), and runs.
#[test]
fn a_higher_priority_step_preempts_a_lower_one() {
    let home = temp_home("sched-preempt");
    let cluster = cluster_file(&home, &[("n1", 2, &[])]);
    let s = start_with_config(
        &home,
        &cluster,
        "preemption = true\n[priority_classes]\nbatch = 10\nurgent = 1000\n",
    );
    let with_priority = |class: &str, sleep: f64| {
        let mut t = step(json!({"nvidia.com/gpu": 2}), json!({}), sleep);
        t["priorityClassName"] = json!(class);
        t
    };
    s.submit(
        "default",
        workflow("low", &["a"], with_priority("batch", 60.0)),
    );
    let t0 = Instant::now();
    loop {
        let (_, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
        if nodes["items"][0]["pods"] == 1 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(50));
    }
    s.submit(
        "default",
        workflow("high", &["a"], with_priority("urgent", 0.0)),
    );
    let high = s.wait("default", "high", Duration::from_secs(30));
    assert_eq!(high["status"]["phase"], "Succeeded", "{high}");
    let low = s.wait("default", "low", Duration::from_secs(30));
    assert_eq!(low["status"]["phase"], "Failed", "{low}");
    let why = node(&low, "a")["message"].as_str().unwrap().to_string();
    assert!(
        why.starts_with("pod preempted by default/high")
            && why.ends_with("of higher priority in queue default"),
        "{why}"
    );
}

/// Under the server a `nodeSelector` is the scheduler's to honour: on the seed's cluster a step
/// pinned to a host runs there, one asking for a rack that does not exist waits and says why.
#[test]
fn node_selectors_pick_nodes_of_the_cluster() {
    let home = temp_home("sched-selector");
    let s = Server::start(&home, &["--cluster", "onyx"]);
    let mut pinned = step(json!({"nvidia.com/gpu": 1}), json!({}), 0.0);
    pinned["nodeSelector"] = json!({"kubernetes.io/hostname": "gpu-r1-03"});
    s.submit("default", workflow("pinned", &["a"], pinned));
    let done = s.wait("default", "pinned", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(node(&done, "a")["hostNodeName"], "gpu-r1-03");
    let mut nowhere = step(json!({}), json!({}), 0.0);
    nowhere["nodeSelector"] = json!({"onyx.dev/rack": "R9"});
    s.submit("default", workflow("nowhere", &["a"], nowhere));
    let why = s.message_with("default", "nowhere", "nodes are available");
    assert_eq!(
        why,
        "0/16 nodes are available: 16 node(s) didn't match Pod's node affinity/selector."
    );
}

/// Taints on a node group keep every pod off that node unless it tolerates them (Kubernetes'
/// matching); a template's `tolerations` and `nodeSelector` replace the workflow's as a whole,
/// as Argo sets them on the pod. Bad tolerations fail the step with the field at fault.
#[test]
fn taints_admit_only_pods_that_tolerate_them() {
    let home = temp_home("sched-taints");
    let cluster = cluster_file(&home, &[("a", 8, &[]), ("b", 8, &[])]);
    let yaml = std::fs::read_to_string(&cluster).unwrap().replace(
        "  - name: b\n",
        "  - name: b\n    taints: [{key: dedicated, value: training, effect: NoSchedule}]\n",
    );
    std::fs::write(&cluster, yaml).unwrap();
    let s = Server::start(&home, &["--cluster", cluster.to_str().unwrap()]);

    // Pinned to the tainted node without a toleration: waits, and says why.
    let mut plain = step(json!({"nvidia.com/gpu": 1}), json!({}), 0.0);
    plain["nodeSelector"] = json!({"kubernetes.io/hostname": "b"});
    s.submit("default", workflow("plain", &["a"], plain.clone()));
    let why = s.message_with("default", "plain", "nodes are available");
    assert!(
        why.starts_with("0/2 nodes are available:")
            && why.contains("1 node(s) had untolerated taint {dedicated: training}")
            && why.contains("1 node(s) didn't match Pod's node affinity/selector"),
        "{why}"
    );

    // The same step tolerating the taint runs there.
    let mut tolerant = plain.clone();
    tolerant["tolerations"] = json!([{"key": "dedicated", "operator": "Equal",
        "value": "training", "effect": "NoSchedule"}]);
    s.submit("default", workflow("tolerant", &["a"], tolerant));
    let done = s.wait("default", "tolerant", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(node(&done, "a")["hostNodeName"], "b");

    // The workflow's toleration (Exists) applies to a template without its own; the template's
    // selector (b) replaces the workflow's (a) instead of being merged with it.
    let mut wf = workflow("defaults", &["a"], plain.clone());
    wf["spec"]["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]);
    wf["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "a"});
    s.submit("default", wf);
    let done = s.wait("default", "defaults", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(node(&done, "a")["hostNodeName"], "b");

    // Pods that ask for nothing skip the scheduling cycle but still keep off the tainted node.
    let light = step(json!({}), json!({}), 0.0);
    s.submit("default", workflow("light", &["a", "b", "c", "d"], light));
    let done = s.wait("default", "light", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    for st in ["a", "b", "c", "d"] {
        assert_eq!(node(&done, st)["hostNodeName"], "a", "{st}: {done}");
    }

    // A toleration Kubernetes would refuse fails the step and names the field.
    let mut bad = plain;
    bad["tolerations"] = json!([{"key": "dedicated", "operator": "Maybe"}]);
    s.submit("default", workflow("bad", &["a"], bad));
    let done = s.wait("default", "bad", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Failed", "{done}");
    let msg = node(&done, "a")["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("tolerations[0].operator: expected Equal or Exists, got \"Maybe\""),
        "{done}"
    );
}

/// Hierarchical queues from the configuration (`parent`): the parent's capability bounds its
/// children together, a pod in a parent queue is refused as Volcano refuses it, a queue's
/// guarantee stays free for it, and a server whose queues form a cycle does not start.
#[test]
fn hierarchical_queues_from_the_configuration() {
    let home = temp_home("sched-queue-tree");
    let cluster = cluster_file(&home, &[("n1", 2, &[])]);
    let tree = "[queues.team]\ncapability_gpus = 1\n[queues.team-a]\nparent = \"team\"\n[queues.team-b]\nparent = \"team\"\n[queues.kept]\nguarantee_gpus = 1\n";
    let s = start_with_config(&home, &cluster, tree);
    let (_, q) = s.call("GET", "/api/v1/onyx/queues/team-a", None);
    assert_eq!(q["parent"], "team", "{q}");
    // team-a and team-b share team's one GPU: their steps run one after the other.
    let in_queue = |q: &str| {
        step(
            json!({"nvidia.com/gpu": 1}),
            json!({"scheduling.volcano.sh/queue-name": q}),
            1.0,
        )
    };
    s.submit("default", workflow("a", &["s"], in_queue("team-a")));
    s.submit("default", workflow("b", &["s"], in_queue("team-b")));
    let why = s.message_with("default", "b", "capability");
    assert!(why.starts_with("queue team is at its capability"), "{why}");
    let (a, b) = (
        s.wait("default", "a", Duration::from_secs(30)),
        s.wait("default", "b", Duration::from_secs(30)),
    );
    assert_eq!(a["status"]["phase"], "Succeeded", "{a}");
    assert_eq!(b["status"]["phase"], "Succeeded", "{b}");
    let (_, ta, _) = placed(&a, "s");
    let (_, tb, _) = placed(&b, "s");
    assert!(!ta.is_empty() && !tb.is_empty());
    // A pod in the parent queue itself is refused with Volcano's rule.
    s.submit("default", workflow("parent", &["s"], in_queue("team")));
    let done = s.wait("default", "parent", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Failed", "{done}");
    let msg = node(&done, "s")["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("queue team has child queues: jobs can only be submitted to leaf queues"),
        "{done}"
    );
    // The GPU guaranteed to `kept` stays free for it: a 2-GPU step elsewhere waits and says so.
    s.submit(
        "default",
        workflow(
            "both",
            &["s"],
            step(json!({"nvidia.com/gpu": 2}), json!({}), 0.0),
        ),
    );
    let why = s.message_with("default", "both", "guaranteed");
    assert_eq!(why, "the free GPUs are guaranteed to queue(s) kept");
    drop(s);

    // Queues that form a cycle: the server refuses to start and says why.
    let path = home.join("cycle.toml");
    std::fs::write(
        &path,
        format!(
            "home = {:?}\n[queues.p]\nparent = \"q\"\n[queues.q]\nparent = \"p\"\n",
            home.join("state2")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["server", "--listen", "127.0.0.1:0", "--cluster"])
        .arg(&cluster)
        .arg("--config")
        .arg(&path)
        .output()
        .expect("onyx server runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("its parents form a cycle"), "{err}");
}

/// The usage ledger: what each step held of the GPUs, for how long, counted in GPU
/// equivalents (a 1g MIG instance is 1/7 of a GPU), read back per namespace and queue.
#[test]
fn usage_counts_gpu_hours_per_namespace_and_queue() {
    let home = temp_home("sched-usage");
    let mig = ["1g.10gb"; 7];
    let cluster = cluster_file(&home, &[("slices", 1, &mig), ("whole", 2, &[])]);
    let s = start_with_config(
        &home,
        &cluster,
        "[prices]\ncurrency = \"JPY\"\ngpu_hour = 450.0\ncpu_hour = 5.0\n",
    );
    let infer = step(
        json!({"nvidia.com/gpu-mig-1g.10gb": 2, "cpu": "500m"}),
        json!({"scheduling.volcano.sh/queue-name": "shared"}),
        1.0,
    );
    s.submit("vision", workflow("infer", &["a"], infer));
    let train = step(
        json!({"nvidia.com/gpu": 2}),
        json!({"scheduling.volcano.sh/queue-name": "dedicated"}),
        1.0,
    );
    s.submit("nlp", workflow("train", &["a"], train));
    for (ns, name) in [("vision", "infer"), ("nlp", "train")] {
        let done = s.wait(ns, name, Duration::from_secs(30));
        assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    }
    std::thread::sleep(Duration::from_millis(300)); // the ledger's writes land
    let (c, u) = s.call("GET", "/api/v1/onyx/usage", None);
    assert_eq!(c, 200, "{u}");
    let hours = |ns: &str, queue: &str| {
        u["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["namespace"] == ns)
            .unwrap_or_else(|| panic!("no {ns} in {u}"))["queues"][queue]
            .as_f64()
            .unwrap()
    };
    // Each step held its devices for its 1 s sleep plus start-up: between 1 s and 10 s.
    let seconds = |h: f64, gpus: f64| h * 3600.0 / gpus;
    let mig_s = seconds(hours("vision", "shared"), 2.0 / 7.0);
    let whole_s = seconds(hours("nlp", "dedicated"), 2.0);
    assert!((1.0..10.0).contains(&mig_s), "{mig_s} s: {u}");
    assert!((1.0..10.0).contains(&whole_s), "{whole_s} s: {u}");
    // Per pod: the devices it held, as it saw them (ONYX_GPUS).
    let log = s
        .request("GET", "/api/v1/workflows/vision/infer/log")
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let line: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    let pod = line["result"]["podName"].as_str().unwrap();
    let (c, held) = s.call(
        "GET",
        &format!("/api/v1/onyx/usage/pods/{pod}?namespace=vision"),
        None,
    );
    assert_eq!(c, 200, "{held}");
    let done = s.wait("vision", "infer", Duration::from_secs(1));
    let (node_name, devices, _) = placed(&done, "a");
    let item = &held["items"][0];
    assert_eq!(item["node"], node_name.as_str(), "{held}");
    assert_eq!(
        item["devices"],
        json!(devices.split(',').collect::<Vec<_>>()),
        "{held}"
    );
    assert!(item["released"].is_string(), "{held}");
    // Half a core for as long as the MIG instances: CPU-hours, and the cost at the prices.
    let vision = namespace_in(&u["namespaces"], "vision");
    let cpu_s = vision["cpuHours"].as_f64().unwrap() * 3600.0 / 0.5;
    assert!((cpu_s - mig_s).abs() < 1e-6, "{cpu_s} vs {mig_s}: {u}");
    let cost =
        vision["gpuHours"].as_f64().unwrap() * 450.0 + vision["cpuHours"].as_f64().unwrap() * 5.0;
    assert!(
        (vision["cost"].as_f64().unwrap() - cost).abs() < 1e-9,
        "{u}"
    );
    assert_eq!(u["currency"], "JPY");
    // The same through the CLI, as CSV.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["usage", "report", "-o", "csv", "--server", &s.base])
        .env("ONYX_HOME", s.home.join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "month",
            "namespace",
            "queue",
            "gpu_hours",
            "cpu_hours",
            "storage_gb_hours",
            "cost",
            "currency"
        ]
    );
    let shared = rows
        .iter()
        .find(|r| r[1] == "vision" && r[2] == "shared")
        .unwrap();
    let gpu_hours: f64 = shared[3].parse().unwrap();
    assert!(
        (gpu_hours - hours("vision", "shared")).abs() < 1e-6,
        "{csv}"
    );
    assert_eq!(shared[7], "JPY");
    // Storage: the bytes a namespace's workflows left in the artifact repository.
    s.submit(
        "vision",
        json!({"metadata": {"name": "art"}, "spec": {"entrypoint": "work",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [{"name": "work",
                "script": {"image": "debian", "command": ["sh"],
                           "source": "head -c 1000 /dev/zero > /tmp/out.bin"},
                "outputs": {"artifacts": [{"name": "out", "path": "/tmp/out.bin",
                                           "archive": {"none": {}}}]}}]}}),
    );
    let done = s.wait("vision", "art", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let (_, u) = s.call("GET", "/api/v1/onyx/usage", None);
    let vision = namespace_in(&u["namespaces"], "vision");
    assert_eq!(vision["storageBytes"], 1000, "{u}");
    assert!(vision["storageGbHours"].as_f64().unwrap() > 0.0, "{u}");
    let (c, e) = s.call("GET", "/api/v1/onyx/usage?month=2026-13", None);
    assert_eq!(c, 400, "{e}");
    assert_eq!(
        e["message"],
        "month \"2026-13\": expected YYYY-MM, such as 2026-11"
    );
}
