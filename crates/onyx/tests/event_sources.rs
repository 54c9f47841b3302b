//! EventSources and Sensors that ONYX runs itself, end to end through a real server:
//! a `webhook` EventSource listening on its port, a `calendar` one ticking, a Sensor whose
//! `argoWorkflow` trigger submits a workflow with a parameter from the event, and a Sensor of
//! two dependencies that fires once both have been seen. Webhooks listen only on the
//! configured ports, one endpoint one source's, and take only the token of their `authSecret`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{free_port, temp_home, Server};

/// A server whose webhook EventSources may listen on `ports` (`[event_sources] ports`; the
/// tests' free ports are outside the default 12000-12999), with more of a config in `extra`.
fn start(home: &Path, ports: &str, extra: &str) -> Server {
    let cfg = home.join("onyx.toml");
    std::fs::write(
        &cfg,
        format!("[event_sources]\nports = \"{ports}\"\n{extra}"),
    )
    .unwrap();
    Server::start(home, &["--config", &cfg.display().to_string()])
}

/// Ports a webhook may listen on in these tests.
const ANY_PORT: &str = "1024-65535";

fn create(s: &Server, path: &str, field: &str, obj: Value) {
    let (c, e) = s.call("POST", path, Some(json!({ field: obj })));
    assert_eq!(c, 200, "{e}");
}

/// POST to a webhook EventSource once its listener is up (it starts within a second of the
/// EventSource's creation).
fn post(url: &str, body: &str) -> (u16, String) {
    post_as(url, None, body)
}

/// As [`post`], with an `Authorization` header when one is given.
fn post_as(url: &str, authorization: Option<&str>, body: &str) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut req = ureq::post(url);
        if let Some(a) = authorization {
            req = req.set("Authorization", a);
        }
        match req.send_string(body) {
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
    let s = start(&home, ANY_PORT, "");
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
    let s = start(&home, ANY_PORT, "");
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
        let r = s.request("GET", path).call().unwrap();
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
    let s = start(&home, ANY_PORT, "");
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

/// Whether anything listens on `port` of 127.0.0.1.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

fn webhook_source(name: &str, events: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"webhook": events}})
}

/// Tenants' webhooks listen only on the configured ports: one outside is refused, naming the
/// range, and a stored one outside (the range narrowed since) is not bound while the others
/// run. A port's endpoints may be different sources', but one endpoint and method is one
/// source's: a second is refused (409, naming the first), as is a source clashing with itself.
#[test]
fn webhooks_listen_only_on_allowed_ports_and_never_on_anothers_endpoint() {
    let home = temp_home("es-ports");
    let (port, outside) = (free_port(), free_port());
    assert_ne!(port, outside);
    let range = format!("{port}-{port}");
    let mut s = start(&home, &range, "");
    let path = "/api/v1/event-sources/default";
    let hook = |port: u16, endpoint: &str| json!({"port": port.to_string(), "endpoint": endpoint, "method": "POST"});
    let (c, e) = s.call(
        "POST",
        path,
        Some(json!({"eventSource": webhook_source("outside", json!({"e": hook(outside, "/x")}))})),
    );
    assert_eq!(c, 400, "{e}");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("may listen only on ports {range}"))),
        "{e}"
    );
    create(
        &s,
        path,
        "eventSource",
        webhook_source("first", json!({"e": hook(port, "/hook")})),
    );
    let (c, e) = s.call(
        "POST",
        path,
        Some(json!({"eventSource": webhook_source("second", json!({"e": hook(port, "/hook")}))})),
    );
    assert_eq!(c, 409, "{e}");
    let said = e["message"].as_str().unwrap_or_default();
    assert!(
        said.contains("POST /hook on port") && said.contains("EventSource \"first\""),
        "{e}"
    );
    // One source, two events on one route; an endpoint that is not a plain path.
    for events in [
        json!({"a": hook(port, "/twice"), "b": hook(port, "/twice")}),
        json!({"a": hook(port, "/{x}")}),
    ] {
        let (c, e) = s.call(
            "POST",
            path,
            Some(json!({"eventSource": webhook_source("bad", events)})),
        );
        assert_eq!(c, 400, "{e}");
    }
    // Another endpoint of the same port is another source's to have; both are served.
    create(
        &s,
        path,
        "eventSource",
        webhook_source("other", json!({"e": hook(port, "/other")})),
    );
    let at = |p: &str| format!("http://127.0.0.1:{port}{p}");
    assert_eq!(post(&at("/hook"), "{}"), (200, "success".into()));
    assert_eq!(post(&at("/other"), "{}"), (200, "success".into()));
    // … and may not be updated onto the first's.
    let (c, e) = s.call(
        "PUT",
        &format!("{path}/other"),
        Some(json!({"eventSource": webhook_source("other", json!({"e": hook(port, "/hook")}))})),
    );
    assert_eq!(c, 409, "{e}");
    assert!(!listening(outside), "nothing listens outside the range");

    // The range narrowed: the stored sources are not bound; one in the new range runs.
    s.kill9();
    let narrowed = format!("{outside}-{outside}");
    let s = start(&home, &narrowed, "");
    create(
        &s,
        path,
        "eventSource",
        webhook_source("moved", json!({"e": hook(outside, "/moved")})),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listening(outside) {
        assert!(Instant::now() < deadline, "the new source never listened");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        post(&format!("http://127.0.0.1:{outside}/moved"), "{}"),
        (200, "success".into())
    );
    assert!(
        !listening(port),
        "a stored source outside the range was bound"
    );
}

/// Argo Events' `authSecret`: a webhook takes only requests carrying the secret's value as a
/// bearer token (compared in constant time); a secret that cannot be read is a 500.
#[test]
fn a_webhook_with_an_auth_secret_takes_only_its_token() {
    let home = temp_home("es-auth");
    let secrets = home.join("secrets.toml");
    std::fs::write(
        &secrets,
        "[default.webhook-auth]\ntoken = \"s3cret-token\"\n",
    )
    .unwrap();
    let s = start(
        &home,
        ANY_PORT,
        &format!("[secrets]\nfile = \"{}\"\n", secrets.display()),
    );
    let port = free_port();
    let hook = |endpoint: &str, secret: &str| {
        json!({"port": port.to_string(), "endpoint": endpoint, "method": "POST",
               "authSecret": {"name": secret, "key": "token"}})
    };
    create(
        &s,
        "/api/v1/event-sources/default",
        "eventSource",
        webhook_source(
            "guarded",
            json!({"guarded": hook("/guarded", "webhook-auth"), "broken": hook("/broken", "missing")}),
        ),
    );
    let url = format!("http://127.0.0.1:{port}/guarded");
    let body = r#"{"message": "hi"}"#;
    assert_eq!(
        post_as(&url, None, body),
        (401, "Invalid Authorization Header".into())
    );
    assert_eq!(
        post_as(&url, Some("Basic czNjcmV0LXRva2Vu"), body),
        (401, "Invalid Authorization Header".into())
    );
    assert_eq!(
        post_as(&url, Some("Bearer s3cret-tokem"), body),
        (401, "Invalid Auth token".into())
    );
    assert_eq!(
        post_as(&url, Some("Bearer s3cret"), body),
        (401, "Invalid Auth token".into())
    );
    assert_eq!(
        post_as(&url, Some("Bearer s3cret-token"), body),
        (200, "success".into())
    );
    assert_eq!(
        post_as(
            &format!("http://127.0.0.1:{port}/broken"),
            Some("Bearer s3cret-token"),
            body
        ),
        (500, "Error loading auth token".into())
    );
}
