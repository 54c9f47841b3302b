//! `resource` templates on the server, carried out as `onyx run` carries them out: ConfigMaps
//! kept in the workflow's namespace, Workflows created as children through the API's own
//! submission checks, each object named for the node that made it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{node, temp_home, Server};

/// A resource step that creates `manifest` (YAML), with Argo's condition and outputs.
fn create(name: &str, manifest: &str, success: Option<&str>) -> Value {
    let mut resource = json!({"action": "create", "manifest": manifest});
    if let Some(s) = success {
        resource["successCondition"] = json!(s);
    }
    json!({"name": name, "resource": resource,
           "outputs": {"parameters": [{"name": "name", "valueFrom": {"jsonPath": "{.metadata.name}"}}]}})
}

fn parent(name: &str, steps: &[&str], templates: Vec<Value>) -> Value {
    let mut all = vec![json!({"name": "main",
        "steps": steps.iter().map(|s| json!([{"name": s, "template": s}])).collect::<Vec<_>>()})];
    all.extend(templates);
    json!({"metadata": {"name": name},
           "spec": {"entrypoint": "main",
                    "arguments": {"parameters": [{"name": "ticket_id", "value": "T-1"}]},
                    "templates": all}})
}

const CHILD: &str = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: child-\nspec:\n  entrypoint: main\n  arguments:\n    parameters: [{name: ticket_id, value: T-2}]\n  templates:\n  - name: main\n    container: {image: argoproj/argosay:v2, args: [echo, from-child]}\n";

#[test]
fn resource_templates_keep_config_maps_and_run_child_workflows_under_the_api_checks() {
    let home = temp_home("api-resources");
    let s = Server::start(&home, &[]);
    let config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {app: demo}\ndata:\n  level: high\n";
    let wf = parent(
        "makes-things",
        &["config", "read-config", "child", "drop-config"],
        vec![
            create("config", config_map, None),
            json!({"name": "read-config", "resource": {"action": "get", "flags": ["configmap", "settings"],
                   "successCondition": "data.level == high"},
                   "outputs": {"parameters": [{"name": "level", "valueFrom": {"jsonPath": "{.data.level}"}}]}}),
            create("child", CHILD, Some("status.phase == Succeeded")),
            json!({"name": "drop-config", "resource": {"action": "delete", "flags": ["configmap", "-l", "app=demo"]}}),
        ],
    );
    s.submit("team-a", wf);
    let done = s.wait("team-a", "makes-things", Duration::from_secs(90));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    let level = &node(&done, "read-config")["outputs"]["parameters"][0]["value"];
    assert_eq!(
        level, "high",
        "the ConfigMap a step created is read by the next"
    );

    // The child: in the parent's namespace, named for the node that made it, run to its end.
    let child = node(&done, "child")["outputs"]["parameters"][0]["value"]
        .as_str()
        .expect("the child's name is an output")
        .to_string();
    assert!(
        child.starts_with("child-") && child.len() == "child-".len() + 5,
        "{child}"
    );
    let (c, w) = s.call("GET", &format!("/api/v1/workflows/team-a/{child}"), None);
    assert_eq!(c, 200, "{w}");
    assert_eq!(w["status"]["phase"], "Succeeded", "{w}");
    let made_by = w["metadata"]["annotations"]["onyx.io/created-by-node"]
        .as_str()
        .unwrap_or_default();
    assert!(
        made_by.starts_with(done["metadata"]["uid"].as_str().unwrap()),
        "{made_by}"
    );

    // A child that breaks the namespace's Pod Security level is refused as a submission is.
    let privileged = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  name: sneaky\nspec:\n  entrypoint: main\n  arguments:\n    parameters: [{name: ticket_id, value: T-3}]\n  templates:\n  - name: main\n    container:\n      image: argoproj/argosay:v2\n      securityContext: {privileged: true}\n";
    s.submit(
        "team-a",
        parent(
            "smuggles",
            &["child"],
            vec![create("child", privileged, None)],
        ),
    );
    let refused = s.wait("team-a", "smuggles", Duration::from_secs(60));
    assert_eq!(refused["status"]["phase"], "Failed", "{refused}");
    let message = node(&refused, "child")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("violates PodSecurity"), "{message}");
    let (c, _) = s.call("GET", "/api/v1/workflows/team-a/sneaky", None);
    assert_eq!(c, 404, "the refused child was never made");

    // Kinds that need a Kubernetes API server are refused saying so.
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\n";
    s.submit(
        "team-a",
        parent(
            "wants-a-service",
            &["svc"],
            vec![create("svc", service, None)],
        ),
    );
    let refused = s.wait("team-a", "wants-a-service", Duration::from_secs(60));
    let message = node(&refused, "svc")["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("resource kind 'Service' cannot be honoured"),
        "{message}"
    );
}
