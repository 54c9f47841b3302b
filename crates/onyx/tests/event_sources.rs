//! EventSources and Sensors that ONYX runs itself, end to end through a real server:
//! a `webhook` EventSource listening on its port, a `calendar` one ticking, a Sensor whose
//! `argoWorkflow` trigger submits a workflow with a parameter from the event, and a Sensor of
//! two dependencies that fires once both have been seen.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, temp_home, Server};

fn create(s: &Server, path: &str, field: &str, obj: Value) {
    let (c, e) = s.call("POST", path, Some(json!({ field: obj })));
    assert_eq!(c, 200, "{e}");
}

/// POST to a webhook EventSource once its listener is up (it starts within a second of the
/// EventSource's creation).
fn post(url: &str, body: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ureq::post(url).send_string(body) {
            Ok(r) => return (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(c, r)) => return (c, r.into_string().unwrap_or_default()),
            Err(e) if Instant::now() > deadline => panic!("{url}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn workflows(s: &Server) -> Vec<Value> {
    let (_, list) = s.call("GET", "/api/v1/workflows/default", None);
    list["items"].as_array().cloned().unwrap_or_default()
}

/// Argo Events' webhook example: POST {"message": ...} to the EventSource's endpoint, and the
/// Sensor's argoWorkflow trigger submits a workflow whose parameter is the message.
#[test]
fn a_webhook_event_source_feeds_a_sensor_that_submits_a_workflow() {
    let home = temp_home("es-webhook");
    let s = Server::start(&home, &[]);
    let port = free_port();
    create(
        &s,
        "/api/v1/event-sources/default",
        "eventSource",
        json!({
        "metadata": {"name": "webhook"},
        "spec": {"webhook": {"example": {"port": port.to_string(), "endpoint": "/example", "method": "POST"}}}}),
    );
    create(
        &s,
        "/api/v1/sensors/default",
        "sensor",
        json!({
        "metadata": {"name": "webhook"},
        "spec": {
            "dependencies": [{"name": "test-dep", "eventSourceName": "webhook", "eventName": "example"}],
            "triggers": [{"template": {"name": "webhook-workflow-trigger", "argoWorkflow": {
                "operation": "submit",
                "source": {"resource": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                    "metadata": {"generateName": "webhook-"},
                    "spec": {"entrypoint": "print-message",
                        "arguments": {"parameters": [{"name": "message", "value": "hello world"},
                                                     {"name": "ticket_id", "value": "T-7"}]},
                        "templates": [{"name": "print-message",
                            "inputs": {"parameters": [{"name": "message"}]},
                            "container": {"image": "argoproj/argosay:v2",
                                          "args": ["echo", "{{inputs.parameters.message}}"]}}]}}},
                "parameters": [{"src": {"dependencyName": "test-dep", "dataKey": "body.message"},
                                "dest": "spec.arguments.parameters.0.value"}]}}}]}}),
    );
    let url = format!("http://127.0.0.1:{port}/example");
    // Bodies that are not JSON, and other methods, are refused as Argo Events refuses them.
    let (c, said) = post(&url, "not json");
    assert_eq!(c, 400, "{said}");
    let c = match ureq::get(&url).call() {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(c, _)) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c, 400);
    let (c, said) = post(&url, r#"{"message": "this is my first webhook"}"#);
    assert_eq!((c, said.as_str()), (200, "success"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let name = loop {
        if let Some(w) = workflows(&s).into_iter().next() {
            break w["metadata"]["name"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no workflow was submitted");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(name.starts_with("webhook-"), "{name}");
    let wf = s.wait("default", &name, Duration::from_secs(30));
    assert_eq!(wf["status"]["phase"], "Succeeded", "{wf}");
    assert_eq!(
        wf["spec"]["arguments"]["parameters"][0]["value"],
        "this is my first webhook"
    );
    let pod = support::node(&wf, &name)["id"]
        .as_str()
        .unwrap_or(&name)
        .to_string();
    assert!(s
        .log("default", &name, &pod)
        .contains("this is my first webhook"));
    // Exactly one workflow per event.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(workflows(&s).len(), 1);
}

/// A Sensor of two dependencies (two endpoints of one port) fires when both have been seen,
/// once, with a payload from each; a third event alone fires nothing. Deleting the
/// EventSource stops its listener.
#[test]
fn a_sensor_of_two_dependencies_fires_once_both_are_seen() {
    let home = temp_home("es-two");
    let s = Server::start(&home, &[]);
    let (base, rx) = support::receiver();
    let port = free_port();
    create(
        &s,
        "/api/v1/event-sources/default",
        "eventSource",
        json!({
        "metadata": {"name": "ci"},
        "spec": {"webhook": {
            "build": {"port": port.to_string(), "endpoint": "/build", "method": "POST"},
            "tests": {"port": port.to_string(), "endpoint": "/tests", "method": "POST"}}}}),
    );
    create(
        &s,
        "/api/v1/sensors/default",
        "sensor",
        json!({
        "metadata": {"name": "deploy"},
        "spec": {
            "dependencies": [
                {"name": "built", "eventSourceName": "ci", "eventName": "build"},
                {"name": "tested", "eventSourceName": "ci", "eventName": "tests",
                 "filters": {"data": [{"path": "body.passed", "type": "bool", "value": ["true"]}]}}],
            "triggers": [{"template": {"name": "deploy", "http": {"url": format!("{base}/deploy"),
                "payload": [{"src": {"dependencyName": "built", "dataKey": "body.sha"}, "dest": "sha"},
                            {"src": {"dependencyName": "tested", "dataKey": "body.suite"}, "dest": "suite"}]}}}]}}),
    );
    let at = |path: &str| format!("http://127.0.0.1:{port}{path}");
    // The log streams tell what the EventSource and the Sensor do from now on.
    let stream = |path: &str| {
        let r = ureq::get(&format!("{}{path}", s.base)).call().unwrap();
        std::io::BufReader::new(r.into_reader())
    };
    let mut source_log =
        stream("/api/v1/stream/event-sources/default/logs?name=ci&eventName=build");
    let mut sensor_log =
        stream("/api/v1/stream/sensors/default/logs?name=deploy&triggerName=deploy");
    assert_eq!(post(&at("/build"), r#"{"sha": "abc123"}"#).0, 200);
    // Tests that failed do not pass the filter.
    assert_eq!(
        post(&at("/tests"), r#"{"passed": false, "suite": "unit"}"#).0,
        200
    );
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "fired before both were seen"
    );
    assert_eq!(
        post(&at("/tests"), r#"{"passed": true, "suite": "e2e"}"#).0,
        200
    );
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the trigger fired");
    assert_eq!(got, json!({"sha": "abc123", "suite": "e2e"}));
    let line = |r: &mut std::io::BufReader<Box<dyn std::io::Read + Send + Sync>>| {
        let mut l = String::new();
        std::io::BufRead::read_line(r, &mut l).unwrap();
        serde_json::from_str::<Value>(&l).unwrap()["result"].clone()
    };
    let e = line(&mut source_log);
    assert_eq!(
        (
            e["eventSourceName"].as_str(),
            e["eventName"].as_str(),
            e["eventSourceType"].as_str()
        ),
        (Some("ci"), Some("build"), Some("webhook")),
        "{e}"
    );
    let mut said = Vec::new();
    while !said
        .iter()
        .any(|m: &String| m == "successfully processed the trigger")
    {
        let e = line(&mut sensor_log);
        assert_eq!(e["sensorName"], "deploy", "{e}");
        said.push(e["msg"].as_str().unwrap_or_default().to_string());
        assert!(said.len() < 5, "{said:?}");
    }
    assert_eq!(
        post(&at("/tests"), r#"{"passed": true, "suite": "again"}"#).0,
        200
    );
    assert!(
        rx.recv_timeout(Duration::from_secs(2)).is_err(),
        "the firing consumed the build event"
    );
    let (c, _) = s.call("DELETE", "/api/v1/event-sources/default/ci", None);
    assert_eq!(c, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ureq::post(&at("/build")).send_string("{}").is_ok() {
        assert!(
            Instant::now() < deadline,
            "the listener outlived its EventSource"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A calendar EventSource with `interval: 1s` fires a Sensor's http trigger every second,
/// each call with its own `eventTime`.
#[test]
fn a_calendar_event_source_ticks() {
    let home = temp_home("es-calendar");
    let s = Server::start(&home, &[]);
    let (base, rx) = support::receiver();
    create(
        &s,
        "/api/v1/event-sources/default",
        "eventSource",
        json!({
        "metadata": {"name": "calendar"},
        "spec": {"calendar": {"example-with-interval": {"interval": "1s", "metadata": {"team": "a"}}}}}),
    );
    create(
        &s,
        "/api/v1/sensors/default",
        "sensor",
        json!({
        "metadata": {"name": "tick"},
        "spec": {
            "dependencies": [{"name": "t", "eventSourceName": "calendar", "eventName": "example-with-interval"}],
            "triggers": [{"template": {"name": "tock", "http": {"url": format!("{base}/tick"),
                "payload": [{"src": {"dependencyName": "t", "dataKey": "eventTime"}, "dest": "at"},
                            {"src": {"dependencyName": "t", "dataKey": "metadata.team"}, "dest": "team"}]}}}]}}),
    );
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("a first tick");
    let second = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a second tick");
    assert_eq!(first["team"], "a");
    assert!(
        first["at"]
            .as_str()
            .is_some_and(|t| t.ends_with("+0000 UTC")),
        "{first}"
    );
    assert_ne!(first["at"], second["at"]);
}
