//! The spec's 16 GPU nodes (8 × H100 each) as kwok nodes on the real API server: they turn
//! Ready and stay so, report their GPUs as allocatable, and pods bound to them run there and
//! end with the exit code they are given, as containers would.
//! This is the cluster the Kubernetes mode's scheduler tests place gangs on.

use std::time::Duration;

use serde_json::{json, Value};
use test_kubernetes::{node_ready, wait_until, FAKE_EXIT_CODE, FAKE_NODE, FAKE_RUN_TIME};

#[test]
fn sixteen_fake_h100_nodes_turn_ready_and_run_bound_pods_to_their_exit_codes() {
    let k = test_kubernetes::control_plane().unwrap_or_else(|e| panic!("{e}"));
    k.kwok().unwrap();
    for i in 0..16 {
        let node = json!({
            "metadata": {
                "name": format!("gpu-{i:02}"),
                "annotations": {FAKE_NODE.0: FAKE_NODE.1},
                "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                           "kubernetes.io/hostname": format!("gpu-{i:02}")}
            },
            "spec": {},
            "status": {
                "capacity": {"cpu": "96", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": "8"},
                "allocatable": {"cpu": "96", "memory": "2Ti", "pods": "110", "nvidia.com/gpu": "8"}
            }
        });
        let (code, body) = k.call("POST", "/api/v1/nodes", Some(&node)).unwrap();
        assert_eq!(code, 201, "{body}");
    }
    wait_until("16 nodes Ready", Duration::from_secs(60), || {
        let (_, list) = k.call("GET", "/api/v1/nodes", None).unwrap();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items.len() == 16 && items.iter().all(node_ready)
    });
    let (_, list) = k.call("GET", "/api/v1/nodes", None).unwrap();
    for n in list["items"].as_array().unwrap() {
        assert_eq!(n["status"]["allocatable"]["nvidia.com/gpu"], "8", "{n}");
    }

    k.namespace("fake").unwrap();
    let pod = json!({
        "metadata": {"name": "step-0"},
        "spec": {"nodeName": "gpu-07", "restartPolicy": "Never",
                 "containers": [{"name": "main", "image": "onyx-test:1",
                     "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}
    });
    let (code, body) = k
        .call("POST", "/api/v1/namespaces/fake/pods", Some(&pod))
        .unwrap();
    assert_eq!(code, 201, "{body}");
    wait_until("the pod Running on gpu-07", Duration::from_secs(60), || {
        let (_, p) = k
            .call("GET", "/api/v1/namespaces/fake/pods/step-0", None)
            .unwrap();
        p["status"]["phase"] == "Running"
    });

    // Pods that end: with exit code 0 after a second, and 3 at once.
    for (name, code, run) in [("ok", "0", "1s"), ("bad", "3", "0s")] {
        let pod = json!({
            "metadata": {"name": name, "annotations": {FAKE_EXIT_CODE: code, FAKE_RUN_TIME: run}},
            "spec": {"nodeName": "gpu-03", "restartPolicy": "Never",
                     "containers": [{"name": "main", "image": "onyx-test:1"}]}
        });
        let (code, body) = k
            .call("POST", "/api/v1/namespaces/fake/pods", Some(&pod))
            .unwrap();
        assert_eq!(code, 201, "{body}");
    }
    let ended = |name: &str| {
        let mut last = Value::Null;
        wait_until(&format!("{name} to end"), Duration::from_secs(60), || {
            last = k
                .call("GET", &format!("/api/v1/namespaces/fake/pods/{name}"), None)
                .unwrap()
                .1;
            matches!(
                last["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
        });
        last
    };
    let ok = ended("ok");
    assert_eq!(ok["status"]["phase"], "Succeeded");
    let state = &ok["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (state["exitCode"].as_i64(), state["reason"].as_str()),
        (Some(0), Some("Completed"))
    );
    let bad = ended("bad");
    assert_eq!(bad["status"]["phase"], "Failed");
    assert_eq!(
        bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    // A pod without an exit code runs until it is deleted; deleted, it goes.
    let (_, still) = k
        .call("GET", "/api/v1/namespaces/fake/pods/step-0", None)
        .unwrap();
    assert_eq!(still["status"]["phase"], "Running");
    let (code, body) = k
        .call("DELETE", "/api/v1/namespaces/fake/pods/step-0", None)
        .unwrap();
    assert_eq!(code, 200, "{body}");
    wait_until("step-0 gone", Duration::from_secs(60), || {
        k.call("GET", "/api/v1/namespaces/fake/pods/step-0", None)
            .unwrap()
            .0
            == 404
    });
}
