//! ONYX on a real Kubernetes node: the control plane of `crates/test-kubernetes` with one node
//! that runs containers — kubelet built from Kubernetes' Go modules, Debian's containerd, runc
//! and CNI plugins — and images built here: busybox for the steps, ONYX's image by its build
//! script (`deploy/image/build.sh`) from this build's `onyx` binary. Hello-world and a DAG
//! passing an output parameter run as real containers: `onyx emissary` reports their outputs
//! through the termination message, their logs come from the kubelet.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{node, temp_home, Server};
use test_kubernetes::ControlPlane;

/// ONYX's image in the node's local registry.
static ONYX_IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The control plane with its real node and the two images: busybox imported into the node,
/// ONYX's pushed to its registry.
fn cluster() -> &'static ControlPlane {
    static IMAGES: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    let k = test_kubernetes::control_plane().unwrap_or_else(|e| panic!("{e}"));
    let n = k.real_node().unwrap_or_else(|e| panic!("{e}"));
    IMAGES.get_or_init(|| {
        n.import_image("onyx.local/busybox:1", &[], &[], true)
            .unwrap_or_else(|e| panic!("{e}"));
        // ONYX's image as its build script makes it (deploy/image/build.sh), from this
        // build's binary stripped of its debug information (binutils' strip), which is most
        // of a debug build's size.
        let built = Path::new(env!("CARGO_BIN_EXE_onyx"));
        let work = temp_home("node-image");
        let stripped = work.join("onyx");
        let onyx = match std::process::Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(built)
            .status()
        {
            Ok(st) if st.success() => stripped.as_path(),
            _ => built,
        };
        let archive = work.join("onyx-image.tar");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/image/build.sh");
        let st = std::process::Command::new("bash")
            .arg(script)
            .arg(onyx)
            .arg(&archive)
            .env("ONYX_IMAGE_TAG", "dev")
            .status()
            .unwrap();
        assert!(st.success(), "deploy/image/build.sh failed");
        // Pushed to the node's local registry, from which the pods pull it.
        let image = n
            .push_archive(&archive, "onyx", "dev")
            .unwrap_or_else(|e| panic!("{e}"));
        ONYX_IMAGE.set(image).unwrap();
    });
    k
}

fn server(name: &str, ns: &str) -> Server {
    let k = cluster();
    k.namespace(ns).unwrap();
    let home = temp_home(name);
    let config = home.join("onyx.toml");
    std::fs::write(
        &config,
        format!(
            "home = {:?}\nexecutor = \"kubernetes\"\n[kubernetes]\nkubeconfig = {:?}\nexecutor_image = {:?}\n",
            home.join("state"),
            k.kubeconfig,
            ONYX_IMAGE.get().unwrap()
        ),
    )
    .unwrap();
    Server::start(&home, &["--config", config.to_str().unwrap()])
}

/// The name of the pod a step ran in, from the cluster (its node-id annotation).
fn pod_name(ns: &str, wf: &Value, display: &str) -> String {
    let id = node(wf, display)["id"].as_str().unwrap().to_string();
    let (_, list) = cluster()
        .call("GET", &format!("/api/v1/namespaces/{ns}/pods"), None)
        .unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["metadata"]["annotations"]["workflows.argoproj.io/node-id"] == id.as_str())
        .and_then(|p| p["metadata"]["name"].as_str())
        .unwrap_or_else(|| panic!("no pod of {display}: {list}"))
        .to_string()
}

#[test]
fn hello_world_runs_in_a_real_container_and_its_log_is_read_back() {
    let s = server("node-hello", "node-hello");
    s.submit(
        "node-hello",
        json!({"metadata": {"name": "hello"}, "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [{"name": "main",
                "container": {"image": "onyx.local/busybox:1",
                    "command": ["sh", "-c"], "args": ["echo hello world"]}}]}}),
    );
    let done = s.wait("node-hello", "hello", Duration::from_secs(120));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(node(&done, "hello")["hostNodeName"], "onyx-node", "{done}");
    let pod = pod_name("node-hello", &done, "hello");
    assert_eq!(s.log("node-hello", "hello", &pod), "hello world");
}

#[test]
fn a_dag_passes_a_real_containers_output_parameter_and_result_on() {
    let s = server("node-dag", "node-dag");
    s.submit(
        "node-dag",
        json!({"metadata": {"name": "pass"}, "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}]},
            "templates": [
                {"name": "main", "dag": {"tasks": [
                    {"name": "make", "template": "make"},
                    {"name": "use", "template": "use", "dependencies": ["make"],
                     "arguments": {"parameters": [
                        {"name": "word", "value": "{{tasks.make.outputs.parameters.word}}"},
                        {"name": "said", "value": "{{tasks.make.outputs.result}}"}]}}]}},
                {"name": "make",
                 "script": {"image": "onyx.local/busybox:1", "command": ["sh"],
                    "source": "printf kubernetes > /tmp/word\necho made it\n"},
                 "outputs": {"parameters": [{"name": "word", "valueFrom": {"path": "/tmp/word"}}]}},
                {"name": "use", "inputs": {"parameters": [{"name": "word"}, {"name": "said"}]},
                 "container": {"image": "onyx.local/busybox:1", "command": ["echo"],
                    "args": ["hello {{inputs.parameters.word}}, {{inputs.parameters.said}}"]}}]}}),
    );
    let done = s.wait("node-dag", "pass", Duration::from_secs(120));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(
        node(&done, "make")["outputs"]["result"],
        "made it",
        "{done}"
    );
    assert_eq!(
        node(&done, "use")["outputs"]["result"],
        "hello kubernetes, made it",
        "{done}"
    );
    let use_pod = pod_name("node-dag", &done, "use");
    assert_eq!(
        s.log("node-dag", "pass", &use_pod),
        "hello kubernetes, made it"
    );
}
