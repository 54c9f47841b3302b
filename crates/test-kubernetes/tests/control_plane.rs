//! The chain the Kubernetes tests stand on: etcd and kube-apiserver built from Kubernetes' Go
//! modules start, serve the release go.mod names, and do what ONYX's Kubernetes mode will ask
//! of them: a GPU node, a pod for another scheduler left pending, and its binding to the node
//! through the `Binding` subresource, as Volcano binds.

use serde_json::json;

#[test]
fn the_real_api_server_binds_a_gpu_pod_that_another_scheduler_placed() {
    let k = test_kubernetes::control_plane().unwrap_or_else(|e| panic!("{e}"));
    let go_mod = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testenv/kubernetes/go.mod"
    ))
    .unwrap();
    assert!(
        go_mod.contains(&format!("k8s.io/kubernetes {}", k.version)),
        "the API server says it is {:?}",
        k.version
    );

    k.namespace("chain").unwrap();
    let node = json!({
        "metadata": {"name": "gpu-0", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "status": {
            "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
            "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"}
        }
    });
    let (code, made) = k.call("POST", "/api/v1/nodes", Some(&node)).unwrap();
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["status"]["allocatable"]["nvidia.com/gpu"], "8");

    let pod = json!({
        "metadata": {"name": "train-0", "labels": {"workflows.argoproj.io/workflow": "train"}},
        "spec": {
            "schedulerName": "onyx",
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "onyx-test:1",
                "resources": {"limits": {"nvidia.com/gpu": "2"}}}]
        }
    });
    let (code, made) = k
        .call("POST", "/api/v1/namespaces/chain/pods", Some(&pod))
        .unwrap();
    assert_eq!(code, 201, "{made}");
    assert_eq!(
        made["spec"]["nodeName"],
        serde_json::Value::Null,
        "no other scheduler placed it"
    );
    assert_eq!(made["status"]["phase"], "Pending");

    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "train-0"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "gpu-0"}
    });
    let (code, body) = k
        .call(
            "POST",
            "/api/v1/namespaces/chain/pods/train-0/binding",
            Some(&binding),
        )
        .unwrap();
    assert_eq!(code, 201, "{body}");
    let (_, bound) = k
        .call("GET", "/api/v1/namespaces/chain/pods/train-0", None)
        .unwrap();
    assert_eq!(bound["spec"]["nodeName"], "gpu-0");
    // A pod is bound once: a second binding is refused by the API server itself.
    let (code, body) = k
        .call(
            "POST",
            "/api/v1/namespaces/chain/pods/train-0/binding",
            Some(&binding),
        )
        .unwrap();
    assert_eq!(code, 409, "{body}");
}
