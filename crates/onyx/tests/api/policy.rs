//! The API's tenancy and policy: every namespace at once, admission refusals, namespaces
//! without network, and two namespaces with workflows of one name.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{hello, node, temp_home, Server};

/// An empty namespace means every namespace, as in Argo's server (`argo list -A`, and the
/// UI's list and catalog): workflows, their watch stream, and stored templates.
#[test]
fn an_empty_namespace_lists_every_namespace() {
    let home = temp_home("api-all-ns");
    let s = Server::start(&home, &[]);
    s.submit("default", hello("in-default", true));
    s.submit("team-b", hello("in-team-b", true));
    let (c, list) = s.call("GET", "/api/v1/workflows/", None);
    assert_eq!(c, 200, "{list}");
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            format!(
                "{}/{}",
                w["metadata"]["namespace"].as_str().unwrap(),
                w["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, ["default/in-default", "team-b/in-team-b"]);
    for ns in ["default", "team-b"] {
        let (c, b) = s.call(
            "POST",
            &format!("/api/v1/workflow-templates/{ns}"),
            Some(json!({"template": {"metadata": {"name": format!("t-{ns}")}, "spec": {"entrypoint": "main",
                "templates": [{"name": "main", "container": {"image": "argoproj/argosay:v2"}}]}}})),
        );
        assert_eq!(c, 200, "{b}");
    }
    let (c, templates) = s.call("GET", "/api/v1/workflow-templates/", None);
    assert_eq!(c, 200, "{templates}");
    assert_eq!(
        templates["items"].as_array().unwrap().len(),
        2,
        "{templates}"
    );
    // The watch stream with no namespace starts with every workflow.
    let r = s.request("GET", "/api/v1/workflow-events/").call().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(r.into_reader()));
    let mut seen: Vec<String> = (0..2)
        .map(|_| {
            let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
            v["result"]["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["in-default", "in-team-b"]);
}

/// A one-step script workflow, with a ticket.
fn script(name: &str, image: &str, source: &str, extra: Value) -> Value {
    let mut t =
        json!({"name": "main", "script": {"image": image, "command": ["sh"], "source": source}});
    if let (Some(t), Some(extra)) = (t.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            if k == "resources" {
                t["script"]
                    .as_object_mut()
                    .unwrap()
                    .insert(k.clone(), v.clone());
            } else {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    json!({"metadata": {"name": name}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "ticket_id", "value": "T-16"}]},
        "templates": [t]}})
}

/// Admission (the spec's Gatekeeper and Harbor): a namespace's most GPUs per step, its
/// allowed queues, priority classes and registries, the largest parallelism; each refusal
/// names the rule, the field and the value, and a workflow within the rules runs.
#[test]
fn admission_policies_refuse_with_rule_field_and_value() {
    let home = temp_home("api-admission");
    let config = home.join("onyx.toml");
    std::fs::write(
        &config,
        format!(
            "home = {:?}\n[namespaces.team]\nmax_gpus_per_step = 2\nmax_parallel_pods = 4\nallowed_queues = [\"default\", \"shared\"]\nallowed_priority_classes = [\"normal\"]\nallowed_registries = [\"harbor.onyx.internal/\"]\n",
            home.join("state")
        ),
    )
    .unwrap();
    let s = Server::start(&home, &["--config", config.to_str().unwrap()]);
    let post = |wf: Value| {
        s.call(
            "POST",
            "/api/v1/workflows/team",
            Some(json!({ "workflow": wf })),
        )
    };
    let (c, e) = post(script(
        "greedy",
        "pytorch/pytorch:2.1",
        "true",
        json!({"resources": {"limits": {"nvidia.com/gpu": 4}},
               "metadata": {"annotations": {"scheduling.volcano.sh/queue-name": "dedicated"}},
               "priorityClassName": "urgent"}),
    ));
    assert_eq!(c, 400, "{e}");
    let m = e["message"].as_str().unwrap();
    for part in [
        "workflow \"greedy\" is refused by namespace \"team\"'s admission policy",
        "admission rule max_gpus_per_step: spec.templates[0].script.resources.limits[\"nvidia.com/gpu\"] is 4: a step in this namespace may ask for at most 2 GPU(s)",
        "admission rule allowed_queues: spec.templates[0].metadata.annotations[\"scheduling.volcano.sh/queue-name\"] is \"dedicated\"",
        "admission rule allowed_priority_classes: spec.templates[0].priorityClassName is \"urgent\"",
        "admission rule allowed_registries: spec.templates[0].script.image is \"pytorch/pytorch:2.1\": images in this namespace come only from harbor.onyx.internal/ (this one is docker.io/pytorch/pytorch:2.1)",
    ] {
        assert!(m.contains(part), "missing {part:?} in {m}");
    }
    let mut wide = script("wide", "harbor.onyx.internal/ml/base:1", "true", json!({}));
    wide["spec"]["parallelism"] = json!(10);
    let (c, e) = post(wide);
    assert_eq!(c, 400, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("admission rule max_parallel_pods: spec.parallelism is 10"),
        "{e}"
    );
    // Within every rule: accepted and run.
    let (c, e) = post(script(
        "fine",
        "harbor.onyx.internal/ml/base:1",
        "true",
        json!({"priorityClassName": "normal"}),
    ));
    assert_eq!(c, 200, "{e}");
    let done = s.wait("team", "fine", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    // Other namespaces keep the default policy.
    let (c, e) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": script("anywhere", "pytorch/pytorch:2.1", "true", json!({}))})),
    );
    assert_eq!(c, 200, "{e}");
    // WorkflowTemplates and CronWorkflows are checked when they are created.
    let mut template = script("greedy-template", "pytorch/pytorch:2.1", "true", json!({}));
    template["kind"] = json!("WorkflowTemplate");
    let (c, e) = s.call(
        "POST",
        "/api/v1/workflow-templates/team",
        Some(json!({ "template": template })),
    );
    assert_eq!(c, 400, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains(
            "workflowtemplate \"greedy-template\" is refused by namespace \"team\"'s admission policy: admission rule allowed_registries"
        ),
        "{e}"
    );
    let spec = script("x", "pytorch/pytorch:2.1", "true", json!({}))["spec"].clone();
    let (c, e) = s.call(
        "POST",
        "/api/v1/cron-workflows/team",
        Some(json!({"cronWorkflow": {"metadata": {"name": "greedy-cron"},
            "spec": {"schedule": "0 * * * *", "workflowSpec": spec}}})),
    );
    assert_eq!(c, 400, "{e}");
    assert!(
        e["message"].as_str().unwrap().contains(
            "cronworkflow \"greedy-cron\" is refused by namespace \"team\"'s admission policy"
        ),
        "{e}"
    );
}

/// The spec's data governance: pods of `onyx-data` (no-egress by default) run in a network
/// of their own with only loopback, so a port listening on the host's loopback is out of
/// reach; the same step in another namespace reaches it.
#[test]
fn onyx_data_steps_run_without_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let home = temp_home("api-no-egress");
    let s = Server::start(&home, &[]);
    let probe = format!(
        "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('reached')\""
    );
    // Distinct names: on one server a workflow name is unique across namespaces.
    for (ns, name) in [("onyx-data", "probe"), ("default", "probe-open")] {
        s.submit(ns, script(name, "debian", &probe, json!({})));
    }
    let open = s.wait("default", "probe-open", Duration::from_secs(30));
    assert_eq!(open["status"]["phase"], "Succeeded", "{open}");
    let closed = s.wait("onyx-data", "probe", Duration::from_secs(30));
    assert_eq!(closed["status"]["phase"], "Failed", "{closed}");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    // A one-node workflow's pod has the workflow's name.
    let log = s.log("onyx-data", "probe", "probe");
    if root {
        assert!(log.contains("ConnectionRefusedError"), "{log}");
    } else {
        let msg = node(&closed, "probe")["message"].to_string();
        assert!(
            msg.contains("network namespace of its own could not be made"),
            "{msg}"
        );
    }
}

/// Two namespaces may each have a workflow of one name, as in Kubernetes: their pods (named
/// after the workflow) are their own — own directories, logs and results — not shared.
#[test]
fn two_namespaces_run_workflows_of_one_name_with_pods_of_their_own() {
    let home = temp_home("api-names");
    let s = Server::start(&home, &[]);
    let says = |word: &str| {
        json!({"metadata": {"name": "shared-name"},
               "spec": {"entrypoint": "main",
                        "arguments": {"parameters": [{"name": "ticket_id", "value": "T-1"}]},
                        "templates": [{"name": "main", "script": {"image": "debian",
                            "command": ["sh"], "source": format!("sleep 1\necho {word}\n")}}]}})
    };
    s.submit("team-a", says("from-a"));
    s.submit("team-b", says("from-b"));
    let a = s.wait("team-a", "shared-name", Duration::from_secs(30));
    let b = s.wait("team-b", "shared-name", Duration::from_secs(30));
    assert_eq!(a["status"]["phase"], "Succeeded", "{a}");
    assert_eq!(b["status"]["phase"], "Succeeded", "{b}");
    assert_eq!(node(&a, "shared-name")["outputs"]["result"], "from-a");
    assert_eq!(node(&b, "shared-name")["outputs"]["result"], "from-b");
    assert_eq!(s.log("team-a", "shared-name", "shared-name"), "from-a");
    assert_eq!(s.log("team-b", "shared-name", "shared-name"), "from-b");
    // Deleting one leaves the other's pod alone.
    let (c, e) = s.call("DELETE", "/api/v1/workflows/team-a/shared-name", None);
    assert_eq!(c, 200, "{e}");
    assert_eq!(s.log("team-b", "shared-name", "shared-name"), "from-b");
    assert!(home.join("state/pods/team-b/shared-name/main.log").exists());
    assert!(!home.join("state/pods/team-a/shared-name").exists());
}
