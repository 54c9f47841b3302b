//! The API over the scheduler: namespace parallelism, GPU steps placed, waiting and refused,
//! cordon, drain and the emergency stop.

use std::time::Duration;

use serde_json::{json, Value};

use super::{contains, error, gate};
use crate::support::{node, temp_home, Server};

/// A namespace's `parallelism` bounds how many of its pods run at once, across workflows:
/// each step records when it ran on a hostPath file, and no two intervals overlap.
#[test]
fn namespace_parallelism_bounds_pods_across_workflows() {
    let home = temp_home("api-parallelism");
    let cfg = home.join("onyx.toml");
    std::fs::write(
        &cfg,
        "[namespaces.limited]\nparallelism = 1\nrequired_parameters = []\npod_security = \"privileged\"\n",
    )
    .unwrap();
    let witness = home.join("witness");
    std::fs::create_dir_all(&witness).unwrap();
    let s = Server::start(&home, &["--config", cfg.to_str().unwrap()]);
    for i in 0..3 {
        let wf = json!({"metadata": {"name": format!("p{i}")}, "spec": {"entrypoint": "main",
            "volumes": [{"name": "w", "hostPath": {"path": witness.display().to_string()}}],
            "templates": [{"name": "main", "script": {"image": "debian", "command": ["sh"],
                "volumeMounts": [{"name": "w", "mountPath": "/w"}],
                "source": format!("a=$(date +%s%N); sleep 0.3; b=$(date +%s%N); echo \"$a $b\" > /w/{i}")}}]}});
        let (c, b) = s.call(
            "POST",
            "/api/v1/workflows/limited",
            Some(json!({"workflow": wf})),
        );
        assert_eq!(c, 200, "{b}");
    }
    for i in 0..3 {
        let wf = s.wait("limited", &format!("p{i}"), Duration::from_secs(30));
        assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    }
    let mut spans: Vec<(u128, u128)> = (0..3)
        .map(|i| {
            let t = std::fs::read_to_string(witness.join(i.to_string())).unwrap();
            let v: Vec<u128> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (v[0], v[1])
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "pods overlapped: {spans:?}");
    }
}

/// `logOptions.follow=true` streams a running pod's lines as they come and ends with the pod;
/// `retry` with `restartSuccessful` and a node selector runs the selected succeeded step again.
#[test]
fn follow_logs_and_restart_successful() {
    let home = temp_home("api-follow");
    let s = Server::start(&home, &[]);
    let wf = json!({"metadata": {"name": "slow"}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "main", "script": {"image": "debian", "command": ["sh"],
            "source": "for i in 1 2 3; do echo line-$i; sleep 0.3; done"}}]}});
    let (c, b) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": wf})),
    );
    assert_eq!(c, 200, "{b}");
    std::thread::sleep(Duration::from_millis(150));
    let r = s
        .request(
            "GET",
            "/api/v1/workflows/default/slow/log?logOptions.follow=true",
        )
        .call()
        .unwrap();
    let text = r.into_string().unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["result"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(lines, vec!["line-1", "line-2", "line-3"]);
    // restartSuccessful: the selected succeeded step runs again, the other keeps its result.
    let two = json!({"metadata": {"name": "two"}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [
            {"name": "main", "steps": [[{"name": "a", "template": "stamp"}, {"name": "b", "template": "stamp"}], [{"name": "fail", "template": "fail"}]]},
            {"name": "stamp", "script": {"image": "debian", "command": ["sh"], "source": "date +%s%N"}},
            {"name": "fail", "container": {"image": "debian", "command": ["false"]}}]}});
    let (c, b) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": two})),
    );
    assert_eq!(c, 200, "{b}");
    let first = s.wait("default", "two", Duration::from_secs(30));
    assert_eq!(first["status"]["phase"], "Failed");
    let (c, b) = s.call(
        "PUT",
        "/api/v1/workflows/default/two/retry",
        Some(json!({"restartSuccessful": true, "nodeFieldSelector": "displayName=a"})),
    );
    assert_eq!(c, 200, "{b}");
    let again = s.wait("default", "two", Duration::from_secs(30));
    assert_eq!(
        again["status"]["phase"], "Failed",
        "the failing step fails again"
    );
    assert_ne!(
        node(&again, "a")["outputs"]["result"],
        node(&first, "a")["outputs"]["result"],
        "a ran again"
    );
    assert_eq!(
        node(&again, "b")["outputs"]["result"],
        node(&first, "b")["outputs"]["result"],
        "b kept its result"
    );
    contains(400, "nodeFieldSelector: expected field=value")(s.call(
        "PUT",
        "/api/v1/workflows/default/two/retry",
        Some(json!({"restartSuccessful": true, "nodeFieldSelector": "a"})),
    ));
}

/// Steps that ask for `nvidia.com/gpu` get GPUs of the cluster's nodes (`--cluster FILE`),
/// tightest first, with `ONYX_NODE`/`ONYX_GPUS` set; when none are free they wait and say so
/// in their node's message; a request no node can hold fails at once with the reason.
#[test]
fn gpu_steps_are_placed_wait_and_are_refused() {
    let home = temp_home("api-gpus");
    let cluster = small_cluster(&home);
    let s = Server::start(&home, &["--cluster", cluster.to_str().unwrap()]);
    let step = |name: &str| json!({"name": name, "template": "gpu"});
    let wf = json!({"metadata": {"name": "three"}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [
            {"name": "main", "steps": [[step("a"), step("b"), step("c")]]},
            {"name": "gpu", "script": {"image": "debian", "command": ["sh"],
                "resources": {"limits": {"nvidia.com/gpu": 1}},
                "source": "sleep 1; echo $ONYX_NODE:$ONYX_GPUS"}}]}});
    s.submit("default", wf);
    // The third step waits for a GPU, and says so.
    let msg = s.message_with("default", "three", "nodes are available");
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    );
    let done = s.wait("default", "three", Duration::from_secs(60));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let mut outs: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            node(&done, n)["outputs"]["result"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    outs.sort();
    assert!(outs.iter().all(|o| o.starts_with("gpu-node:")), "{outs:?}");
    // Two GPUs: the three steps used GPUs 0 and 1 (one of them twice).
    assert!(
        outs.iter().any(|o| o == "gpu-node:0") && outs.iter().any(|o| o == "gpu-node:1"),
        "{outs:?}"
    );
    // Three GPUs on a two-GPU node: fails at once, with the reason.
    let big = json!({"metadata": {"name": "big"}, "spec": {"entrypoint": "gpu",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "gpu", "container": {"image": "debian", "command": ["true"],
            "resources": {"limits": {"nvidia.com/gpu": 3}}}}]}});
    s.submit("default", big);
    let done = s.wait("default", "big", Duration::from_secs(30));
    assert_ne!(done["status"]["phase"], "Succeeded");
    assert_eq!(
        node(&done, "big")["message"],
        "requests 3 nvidia.com/gpu; the largest node has 2",
        "{done}"
    );
}

/// A cluster file with one GPU node of two GPUs.
fn small_cluster(home: &std::path::Path) -> std::path::PathBuf {
    crate::support::cluster_file(home, &[("gpu-node", 2, &[])])
}

/// Nodes: list, cordon (a GPU step waits and says the node is cordoned), uncordon (it runs);
/// the emergency stop cordons every node and suspends every workflow.
#[test]
fn cordon_uncordon_and_emergency_stop() {
    let home = temp_home("api-ops");
    let cluster = small_cluster(&home);
    let s = Server::start(&home, &["--cluster", cluster.to_str().unwrap()]);
    let (c, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
    assert_eq!(c, 200);
    assert_eq!(
        nodes["items"][0],
        json!({"name": "gpu-node", "gpus": 2, "freeGpus": 2, "mig": [[], []], "pods": 0,
               "cordoned": false, "draining": false, "gpuModel": "nvidia-h100-sxm5-80gb",
               "labels": {"kubernetes.io/hostname": "gpu-node", "nvidia.com/gpu.count": "2",
                          "nvidia.com/gpu.product": "nvidia-h100-sxm5-80gb", "onyx.dev/rack": "R1"},
               "taints": [],
               "devices": [
                   {"index": 0, "uuid": "GPU-gpu-node-0", "holders": [], "instances": []},
                   {"index": 1, "uuid": "GPU-gpu-node-1", "holders": [], "instances": []}]})
    );
    error(404, 5, "nodes \"nope\" not found (nodes: gpu-node)")(s.call(
        "PUT",
        "/api/v1/onyx/nodes/nope/cordon",
        Some(json!({})),
    ));
    let (c, _) = s.call("PUT", "/api/v1/onyx/nodes/gpu-node/cordon", Some(json!({})));
    assert_eq!(c, 200);
    let wf = json!({"metadata": {"name": "one"}, "spec": {"entrypoint": "gpu",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
        "templates": [{"name": "gpu", "container": {"image": "debian", "command": ["true"],
            "resources": {"limits": {"nvidia.com/gpu": 1}}}}]}});
    s.submit("default", wf);
    assert_eq!(
        s.message_with("default", "one", "nodes are available"),
        "0/1 nodes are available: 1 node(s) were unschedulable.",
        "the step says it waits on a cordoned node"
    );
    let (c, _) = s.call(
        "PUT",
        "/api/v1/onyx/nodes/gpu-node/uncordon",
        Some(json!({})),
    );
    assert_eq!(c, 200);
    assert_eq!(
        s.wait("default", "one", Duration::from_secs(30))["status"]["phase"],
        "Succeeded"
    );
    // Emergency stop: a running workflow is suspended, every node cordoned.
    let (c, b) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": gate("held")})),
    );
    assert_eq!(c, 200, "{b}");
    std::thread::sleep(Duration::from_millis(300));
    let (c, stop) = s.call("POST", "/api/v1/onyx/emergency-stop", Some(json!({})));
    assert_eq!(c, 200, "{stop}");
    assert_eq!(stop["cordoned"], json!(["gpu-node"]));
    assert_eq!(stop["suspended"], json!(["held"]));
    let (_, nodes) = s.call("GET", "/api/v1/onyx/nodes", None);
    assert_eq!(nodes["items"][0]["cordoned"], true);
}
