//! ONYX's `argoproj.io` CRDs (`deploy/kubernetes/crds/`) on the real API server: they are
//! accepted and established, Argo's objects are stored through them as written, and
//! `kubectl get workflows` (the API server's Table) shows a workflow's phase and progress.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn crds() -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/kubernetes/crds");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            manifest::parse_documents(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                .into_iter()
                .map(|d| d.value)
        })
        .collect()
}

#[test]
fn argo_objects_are_stored_through_onyx_crds_and_kubectl_shows_phase_and_progress() {
    let k = test_kubernetes::control_plane().unwrap_or_else(|e| panic!("{e}"));
    let crds = crds();
    let names: Vec<&str> = crds
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "clusterworkflowtemplates.argoproj.io",
            "cronworkflows.argoproj.io",
            "workflows.argoproj.io",
            "workflowtemplates.argoproj.io"
        ]
    );
    for crd in &crds {
        let (code, body) = k
            .call(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                Some(crd),
            )
            .unwrap();
        assert_eq!(code, 201, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in &names {
        loop {
            let (_, crd) = k
                .call(
                    "GET",
                    &format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"),
                    None,
                )
                .unwrap();
            let established = crd["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                break;
            }
            assert!(Instant::now() < deadline, "{name} not established: {crd}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    k.namespace("argo").unwrap();

    // A WorkflowTemplate as Argo CD would sync it: stored as written.
    let template = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
        "metadata": {"name": "train"},
        "spec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "epochs", "value": "3"}]},
                 "templates": [{"name": "main", "container": {"image": "onyx-test:1",
                     "resources": {"limits": {"nvidia.com/gpu": 8}}}}]}
    });
    let (code, made) = k
        .call(
            "POST",
            "/apis/argoproj.io/v1alpha1/namespaces/argo/workflowtemplates",
            Some(&template),
        )
        .unwrap();
    assert_eq!(code, 201, "{made}");
    assert_eq!(made["spec"], template["spec"]);

    let workflow = json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": "train-x7"},
        "spec": {"workflowTemplateRef": {"name": "train"}},
        "status": {"phase": "Running", "progress": "1/2", "startedAt": "2026-12-07T10:00:00Z",
                   "message": "waiting for GPUs"}
    });
    let (code, made) = k
        .call(
            "POST",
            "/apis/argoproj.io/v1alpha1/namespaces/argo/workflows",
            Some(&workflow),
        )
        .unwrap();
    assert_eq!(code, 201, "{made}");
    let table = k
        .table("/apis/argoproj.io/v1alpha1/namespaces/argo/workflows")
        .unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Status", "Progress", "Age", "Message"]);
    let row = &table["rows"][0]["cells"];
    assert_eq!(row[0], "train-x7");
    assert_eq!(row[1], "Running");
    assert_eq!(row[2], "1/2");
    assert_eq!(row[4], "waiting for GPUs");
}
