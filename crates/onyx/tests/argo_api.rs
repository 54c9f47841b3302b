//! Argo Server's API beyond workflows and templates: every operation of its v3.5.6 swagger,
//! the event API (webhooks submitting bound templates), EventSources and Sensors — and the
//! Sensors ONYX runs (an http trigger on workflow completion).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{hello, node, temp_home, Server};

/// Argo's event API: a webhook `POST /api/v1/events/default/ci` with a WorkflowEventBinding
/// submits the bound WorkflowTemplate with parameters taken from the payload; an event its
/// selector rejects submits nothing.
#[test]
fn a_webhook_event_submits_the_bound_template() {
    let home = temp_home("api-events");
    let s = Server::start(&home, &[]);
    let (c, e) = s.call(
        "POST",
        "/api/v1/workflow-templates/default",
        Some(json!({"template": {"metadata": {"name": "build"}, "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "commit"}, {"name": "ticket_id"}]},
            "templates": [{"name": "main", "script": {"image": "debian", "command": ["sh"],
                "source": "echo building {{workflow.parameters.commit}}"}}]}}})),
    );
    assert_eq!(c, 200, "{e}");
    let (c, e) = s.call(
        "POST",
        "/api/v1/workflow-event-bindings/default",
        Some(json!({"metadata": {"name": "on-push"}, "spec": {
            "event": {"selector": "discriminator == 'ci' && payload.ref == 'main' && metadata['x-github-event'] == ['push']"},
            "submit": {"workflowTemplateRef": {"name": "build"}, "arguments": {"parameters": [
                {"name": "commit", "valueFrom": {"event": "payload.sha"}},
                {"name": "ticket_id", "valueFrom": {"event": "payload.ticket"}}]}}}})),
    );
    assert_eq!(c, 200, "{e}");
    let (c, list) = s.call("GET", "/api/v1/workflow-event-bindings/default", None);
    assert_eq!(c, 200);
    assert_eq!(list["items"][0]["metadata"]["name"], "on-push");
    let event = |payload: Value, event: &str| {
        let r = s
            .request("POST", "/api/v1/events/default/ci")
            .set("Content-Type", "application/json")
            .set("X-GitHub-Event", event)
            .send_string(&payload.to_string());
        match r {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap()),
            Err(e) => panic!("{e}"),
        }
    };
    let (c, body) = event(
        json!({"ref": "main", "sha": "abc123", "ticket": "T-7"}),
        "push",
    );
    assert_eq!((c, body.as_str()), (200, "{}"));
    // Not for this binding: a branch it does not watch, or another GitHub event.
    assert_eq!(
        event(json!({"ref": "dev", "sha": "x", "ticket": "T"}), "push").0,
        200
    );
    assert_eq!(
        event(json!({"ref": "main", "sha": "y", "ticket": "T"}), "issues").0,
        200
    );
    let (_, all) = s.call(
        "GET",
        "/api/v1/workflows/default?listOptions.labelSelector=workflows.argoproj.io/workflow-event-binding%3Don-push",
        None,
    );
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one event matched: {all}");
    let name = items[0]["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("build-"), "{name}");
    let done = s.wait("default", &name, Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(node(&done, &name)["outputs"]["result"], "building abc123");
}

/// Every operation of Argo Server v3.5.6's swagger (the list committed in
/// tests/argo-server-operations.tsv, with its source) is served: none answers "no API at".
#[test]
fn every_operation_of_argo_servers_swagger_is_served() {
    let list = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/argo-server-operations.tsv"),
    )
    .unwrap();
    let home = temp_home("api-swagger");
    let s = Server::start(&home, &[]);
    let agent = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(2))
        .build();
    let mut unserved = Vec::new();
    let mut count = 0;
    for line in list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let f: Vec<&str> = line.split('\t').collect();
        let (method, template) = (f[0], f[1]);
        let mut path = template.to_string();
        for (param, value) in [
            ("{namespace}", "default"),
            ("{name}", "nope"),
            ("{uid}", "nope"),
            ("{podName}", "nope"),
            ("{discriminator}", "ci"),
            ("{nodeId}", "n"),
            ("{artifactName}", "a"),
            ("{idDiscriminator}", "workflows"),
            ("{id}", "nope"),
            ("{artifactDiscriminator}", "outputs"),
        ] {
            path = path.replace(param, value);
        }
        assert!(!path.contains('{'), "a parameter left in {path}");
        count += 1;
        let req = agent.request(method, &format!("{}{path}", s.base));
        let res = match method {
            "GET" | "DELETE" => req.call(),
            _ => req
                .set("Content-Type", "application/json")
                .send_string("{}"),
        };
        let (code, body) = match res {
            // Streams stay open: the status is enough.
            Ok(r) => (r.status(), String::new()),
            Err(ureq::Error::Status(c, r)) => (c, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        if code == 404 && body.contains("no API at") {
            unserved.push(format!("{method} {template}"));
        }
    }
    assert_eq!(count, 69, "the swagger has 69 operations");
    assert!(unserved.is_empty(), "not served: {unserved:#?}");
}

/// EventSources and Sensors are stored as Argo Server keeps them (create, get, update, list,
/// watch, delete); `stream/events` has an Event for each phase a workflow reaches.
#[test]
fn event_sources_and_sensors_are_kept_and_workflow_events_streamed() {
    let home = temp_home("api-argo-events");
    // The free ports the sources name are outside the default [event_sources] ports.
    let cfg = home.join("onyx.toml");
    std::fs::write(&cfg, "[event_sources]\nports = \"1024-65535\"\n").unwrap();
    let s = Server::start(&home, &["--config", cfg.to_str().unwrap()]);
    let (port, other_port) = (
        support::free_port().to_string(),
        support::free_port().to_string(),
    );
    let es = json!({"metadata": {"name": "github"},
                    "spec": {"webhook": {"push": {"port": port, "endpoint": "/push", "method": "POST"}}}});
    let (c, made) = s.call(
        "POST",
        "/api/v1/event-sources/default",
        Some(json!({"namespace": "default", "eventSource": es})),
    );
    assert_eq!(c, 200, "{made}");
    assert_eq!(made["kind"], "EventSource");
    let uid = made["metadata"]["uid"].clone();
    let (c, again) = s.call(
        "POST",
        "/api/v1/event-sources/default",
        Some(json!({"namespace": "default", "eventSource": es})),
    );
    assert_eq!(c, 409, "{again}");
    let mut changed = es.clone();
    changed["spec"]["webhook"]["push"]["port"] = json!(other_port);
    let (c, updated) = s.call(
        "PUT",
        "/api/v1/event-sources/default/github",
        Some(json!({"namespace": "default", "name": "github", "eventSource": changed})),
    );
    assert_eq!(c, 200, "{updated}");
    assert_eq!(updated["metadata"]["uid"], uid, "an update keeps the uid");
    let (_, got) = s.call("GET", "/api/v1/event-sources/default/github", None);
    assert_eq!(got["spec"]["webhook"]["push"]["port"], json!(other_port));
    let (c, sensor) = s.call(
        "POST",
        "/api/v1/sensors/default",
        Some(json!({"namespace": "default", "sensor": {"metadata": {"name": "on-push"},
            "spec": {"dependencies": [{"name": "push", "eventSourceName": "github", "eventName": "push"}],
                     "triggers": [{"template": {"name": "say", "log": {}}}]}}})),
    );
    assert_eq!(c, 200, "{sensor}");
    let (_, list) = s.call("GET", "/api/v1/sensors/default", None);
    assert_eq!(list["items"][0]["metadata"]["name"], "on-push");
    // The watch starts with what is there.
    let r = s
        .request("GET", "/api/v1/stream/event-sources/default")
        .call()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(r.into_reader()), &mut first).unwrap();
    let first: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["result"]["type"], "ADDED");
    assert_eq!(first["result"]["object"]["metadata"]["name"], "github");
    let (c, _) = s.call("DELETE", "/api/v1/event-sources/default/github", None);
    assert_eq!(c, 200);
    let (c, gone) = s.call("GET", "/api/v1/event-sources/default/github", None);
    assert_eq!(c, 404, "{gone}");
    // Kubernetes Events of the namespace: a workflow's phases.
    let r = s
        .request("GET", "/api/v1/stream/events/default")
        .call()
        .unwrap();
    let mut lines = std::io::BufReader::new(r.into_reader());
    s.submit("default", hello("evented", true));
    let mut reasons = Vec::new();
    while !reasons.iter().any(|r: &String| r == "WorkflowSucceeded") {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut lines, &mut line).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["result"]["object"]["involvedObject"]["name"], "evented");
        reasons.push(
            v["result"]["object"]["reason"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        assert!(reasons.len() < 10, "{reasons:?}");
    }
}

/// The spec's "notification is sent by Triggers on completion", as Argo Events writes it: a
/// `resource` EventSource on workflows (UPDATE, status.phase == Succeeded) and a Sensor with an
/// http trigger; a test receiver is called once per succeeded workflow, with the payload the
/// trigger builds from the event.
#[test]
fn a_sensor_http_trigger_is_called_once_per_completed_workflow() {
    let (base, rx) = support::receiver();
    let url = format!("{base}/done");
    let home = temp_home("api-sensors");
    let s = Server::start(&home, &[]);
    let (c, e) = s.call(
        "POST",
        "/api/v1/event-sources/default",
        Some(json!({"eventSource": {"metadata": {"name": "workflows"}, "spec": {"resource": {"done": {
            "namespace": "default", "group": "argoproj.io", "version": "v1alpha1",
            "resource": "workflows", "eventTypes": ["UPDATE"],
            "filter": {"fields": [{"key": "status.phase", "operation": "==", "value": "Succeeded"}]}}}}}})),
    );
    assert_eq!(c, 200, "{e}");
    let (c, e) = s.call(
        "POST",
        "/api/v1/sensors/default",
        Some(json!({"sensor": {"metadata": {"name": "notify"}, "spec": {
            "dependencies": [{"name": "wf", "eventSourceName": "workflows", "eventName": "done"}],
            "triggers": [{"template": {"name": "receiver", "http": {"url": url, "method": "POST",
                "payload": [{"src": {"dependencyName": "wf", "dataKey": "body.metadata.name"}, "dest": "workflow"},
                            {"src": {"dependencyName": "wf", "dataKey": "body.status.phase"}, "dest": "phase"}]}}}]}}})),
    );
    assert_eq!(c, 200, "{e}");
    s.submit("default", hello("first", true));
    s.submit("default", hello("second", true));
    let mut failing = hello("third", true);
    failing["spec"]["templates"][0]["container"] =
        json!({"image": "debian", "command": ["sh", "-c", "exit 1"]});
    s.submit("default", failing);
    for name in ["first", "second", "third"] {
        s.wait("default", name, Duration::from_secs(30));
    }
    let mut got: Vec<Value> = Vec::new();
    while let Ok(v) = rx.recv_timeout(Duration::from_secs(3)) {
        got.push(v);
    }
    got.sort_by_key(|v| v["workflow"].as_str().unwrap_or_default().to_string());
    assert_eq!(
        got,
        [
            json!({"workflow": "first", "phase": "Succeeded"}),
            json!({"workflow": "second", "phase": "Succeeded"})
        ]
    );
}
