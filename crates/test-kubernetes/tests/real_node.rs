//! The real node: containerd, runc and the kubelet of the control plane's release register a
//! Node that turns Ready, run a pod bound to it from an image made here out of the host's
//! busybox, and the pod's log comes back through the API server, which reaches the kubelet at
//! the node's address.

use std::time::{Duration, Instant};

use serde_json::json;
use test_kubernetes::REAL_NODE_LABEL;

#[test]
fn a_pod_on_the_real_node_runs_and_its_log_comes_back_through_the_api() {
    let k = test_kubernetes::control_plane().unwrap_or_else(|e| panic!("{e}"));
    let node = k.real_node().unwrap_or_else(|e| panic!("{e}"));
    let (code, n) = k
        .call("GET", &format!("/api/v1/nodes/{}", node.name), None)
        .unwrap();
    assert_eq!(code, 200, "{n}");
    assert_eq!(
        n["metadata"]["labels"][REAL_NODE_LABEL.0], REAL_NODE_LABEL.1,
        "{n}"
    );
    node.import_image("onyx.local/busybox:1", &[], &[], true)
        .unwrap_or_else(|e| panic!("{e}"));

    k.namespace("real").unwrap();
    let pod = json!({
        "metadata": {"name": "hello"},
        "spec": {
            "nodeName": node.name,
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{"name": "main", "image": "onyx.local/busybox:1",
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo hello from a real node"]}]
        }
    });
    let (code, body) = k
        .call("POST", "/api/v1/namespaces/real/pods", Some(&pod))
        .unwrap();
    assert_eq!(code, 201, "{body}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let pod = loop {
        let (_, p) = k
            .call("GET", "/api/v1/namespaces/real/pods/hello", None)
            .unwrap();
        if matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the pod did not end in 60 s: {p}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(pod["status"]["phase"], "Succeeded", "{pod}");

    let (code, log) = k
        .get_text("/api/v1/namespaces/real/pods/hello/log")
        .unwrap();
    assert_eq!((code, log.as_str()), (200, "hello from a real node\n"));
}
