//! Every REST path of `onyx server`: its happy path and its bad requests, with the exact
//! status code and Argo's error body.

mod support;

#[path = "api/policy.rs"]
mod policy;
#[path = "api/resources.rs"]
mod resources;
#[path = "api/scheduling.rs"]
mod scheduling;

use std::time::Duration;

use serde_json::{json, Value};
use support::{hello, node, temp_home, Server};

fn gate(name: &str) -> Value {
    json!({
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T-9"}]},
            "templates": [
                {"name": "main", "steps": [[{"name": "approve", "template": "approve"}], [{"name": "after", "template": "say"}]]},
                {"name": "approve", "suspend": {}, "outputs": {"parameters": [{"name": "ok", "valueFrom": {"supplied": {}}}]}},
                {"name": "say", "container": {"image": "argoproj/argosay:v2", "args": ["echo", "done"]}}
            ]
        }
    })
}

fn error(code: u16, grpc: u16, message: &str) -> impl Fn((u16, Value)) {
    let message = message.to_string();
    move |(c, body): (u16, Value)| {
        assert_eq!(c, code, "{body}");
        assert_eq!(body["code"], grpc, "{body}");
        assert_eq!(body["message"], message.as_str(), "{body}");
    }
}

fn contains(code: u16, part: &str) -> impl Fn((u16, Value)) {
    let part = part.to_string();
    move |(c, body): (u16, Value)| {
        assert_eq!(c, code, "{body}");
        let m = body["message"].as_str().unwrap_or_default();
        assert!(m.contains(part.as_str()), "{m:?} should contain {part:?}");
    }
}

#[test]
fn workflows() {
    let home = temp_home("api-workflows");
    let s = Server::start(&home, &[]);
    // create
    let (c, wf) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": hello("w1", true)})),
    );
    assert_eq!(c, 200, "{wf}");
    assert_eq!(wf["metadata"]["namespace"], "default");
    assert!(wf["metadata"]["uid"].is_string());
    contains(400, "every workflow must carry the parameter \"ticket_id\"")(s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": hello("w2", false)})),
    ));
    error(409, 6, "workflows.argoproj.io \"w1\" already exists")(s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": hello("w1", true)})),
    ));
    error(400, 3, "request body: the field \"workflow\" is required")(s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"wf": {}})),
    ));
    contains(400, "request body is not valid JSON")(s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(Value::String("{nope".into())),
    ));
    let mut bad = hello("w3", true);
    bad["spec"]["templates"][0]["name"] = json!("other");
    contains(400, "spec.entrypoint")(s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": bad})),
    ));
    contains(400, "does not match the request's namespace")(s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": {"metadata": {"name": "x", "namespace": "other"}, "spec": {}}})),
    ));
    // dry run: validated, not stored
    let (c, _) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": hello("dry", true), "serverDryRun": true})),
    );
    assert_eq!(c, 200);
    error(404, 5, "workflows.argoproj.io \"dry\" not found")(s.call(
        "GET",
        "/api/v1/workflows/default/dry",
        None,
    ));
    // get, wait
    let done = s.wait("default", "w1", Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded");
    assert_eq!(node(&done, "w1")["outputs"]["result"], "hi");
    error(404, 5, "workflows.argoproj.io \"nope\" not found")(s.call(
        "GET",
        "/api/v1/workflows/default/nope",
        None,
    ));
    // list with selectors and pagination
    for i in 0..3 {
        let (c, b) = s.call(
            "POST",
            "/api/v1/workflows/default",
            Some(json!({"workflow": hello(&format!("p{i}"), true)})),
        );
        assert_eq!(c, 200, "{b}");
    }
    let (c, page) = s.call("GET", "/api/v1/workflows/default?listOptions.limit=2", None);
    assert_eq!(c, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let token = page["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    let (_, rest) = s.call(
        "GET",
        &format!("/api/v1/workflows/default?listOptions.limit=2&listOptions.continue={token}"),
        None,
    );
    assert_eq!(rest["items"].as_array().unwrap().len(), 2);
    assert!(rest["metadata"]["continue"].is_null());
    let (_, sel) = s.call(
        "GET",
        "/api/v1/workflows/default?listOptions.fieldSelector=metadata.name%3Dp1",
        None,
    );
    assert_eq!(sel["items"][0]["metadata"]["name"], "p1");
    assert_eq!(sel["items"].as_array().unwrap().len(), 1);
    let (_, none) = s.call(
        "GET",
        "/api/v1/workflows/default?listOptions.labelSelector=team%3Db",
        None,
    );
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    contains(400, "invalid label selector")(s.call(
        "GET",
        "/api/v1/workflows/default?listOptions.labelSelector=a%3Db%3Dc",
        None,
    ));
    error(400, 3, "listOptions.continue: invalid continue token")(s.call(
        "GET",
        "/api/v1/workflows/default?listOptions.continue=zzz",
        None,
    ));
    contains(400, "listOptions.limit: expected a number")(s.call(
        "GET",
        "/api/v1/workflows/default?listOptions.limit=x",
        None,
    ));
    // lint
    let (c, _) = s.call(
        "POST",
        "/api/v1/workflows/default/lint",
        Some(json!({"workflow": hello("l", true)})),
    );
    assert_eq!(c, 200);
    contains(400, "spec.entrypoint")(s.call(
        "POST",
        "/api/v1/workflows/default/lint",
        Some(json!({"workflow": bad.clone()})),
    ));
    // suspend / resume / set on a suspend node
    let (c, b) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": gate("g1")})),
    );
    assert_eq!(c, 200, "{b}");
    std::thread::sleep(Duration::from_millis(300));
    let (c, b) = s.call(
        "PUT",
        "/api/v1/workflows/default/g1/suspend",
        Some(json!({})),
    );
    assert_eq!(c, 200, "{b}");
    let (c, b) = s.call(
        "PUT",
        "/api/v1/workflows/default/g1/resume",
        Some(json!({})),
    );
    assert_eq!(c, 200, "{b}");
    contains(400, "outputParameters: expected a JSON object")(s.call(
        "PUT",
        "/api/v1/workflows/default/g1/set",
        Some(json!({"nodeFieldSelector": "displayName=approve", "outputParameters": "nope"})),
    ));
    let (c, b) = s.call(
        "PUT",
        "/api/v1/workflows/default/g1/set",
        Some(json!({"nodeFieldSelector": "displayName=approve", "outputParameters": "{\"ok\": \"yes\"}"})),
    );
    assert_eq!(c, 200, "{b}");
    let g1 = s.wait("default", "g1", Duration::from_secs(30));
    assert_eq!(g1["status"]["phase"], "Succeeded");
    assert_eq!(
        node(&g1, "approve")["outputs"]["parameters"][0]["value"],
        "yes"
    );
    error(400, 9, "workflow g1 has completed (phase Succeeded)")(s.call(
        "PUT",
        "/api/v1/workflows/default/g1/suspend",
        Some(json!({})),
    ));
    error(404, 5, "workflows.argoproj.io \"zz\" not found")(s.call(
        "PUT",
        "/api/v1/workflows/default/zz/resume",
        Some(json!({})),
    ));
    // stop and terminate
    for (verb, name) in [("stop", "g2"), ("terminate", "g3")] {
        let (c, b) = s.call(
            "POST",
            "/api/v1/workflows/default",
            Some(json!({"workflow": gate(name)})),
        );
        assert_eq!(c, 200, "{b}");
        std::thread::sleep(Duration::from_millis(200));
        let (c, b) = s.call(
            "PUT",
            &format!("/api/v1/workflows/default/{name}/{verb}"),
            Some(json!({})),
        );
        assert_eq!(c, 200, "{b}");
        let end = s.wait("default", name, Duration::from_secs(30));
        assert_eq!(end["status"]["phase"], "Failed", "{verb}: {end}");
        error(404, 5, "workflows.argoproj.io \"zz\" not found")(s.call(
            "PUT",
            &format!("/api/v1/workflows/default/zz/{verb}"),
            Some(json!({})),
        ));
    }
    // logs: workflow and pod
    let r = s
        .request(
            "GET",
            "/api/v1/workflows/default/w1/log?logOptions.container=main",
        )
        .call()
        .unwrap();
    let text = r.into_string().unwrap();
    let line: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(line["result"]["content"], "hi");
    let pod = line["result"]["podName"].as_str().unwrap().to_string();
    let r = s
        .request("GET", &format!("/api/v1/workflows/default/w1/{pod}/log"))
        .call()
        .unwrap();
    assert!(r.into_string().unwrap().contains("\"content\":\"hi\""));
    error(404, 5, "pods \"nope\" not found in workflow w1")(s.call(
        "GET",
        "/api/v1/workflows/default/w1/nope/log",
        None,
    ));
    error(404, 5, "workflows.argoproj.io \"zz\" not found")(s.call(
        "GET",
        "/api/v1/workflows/default/zz/log",
        None,
    ));
    // retry: a failed workflow runs again, keeping its succeeded step
    let failing = json!({
        "metadata": {"name": "r1"},
        "spec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "ticket_id", "value": "T"}, {"name": "code", "value": "1"}]},
            "templates": [
                {"name": "main", "steps": [[{"name": "ok", "template": "ok"}], [{"name": "flaky", "template": "flaky"}]]},
                {"name": "ok", "script": {"image": "debian", "command": ["sh"], "source": "date +%s%N"}},
                {"name": "flaky", "container": {"image": "debian", "command": ["sh", "-c", "exit {{workflow.parameters.code}}"]}}
            ]}
    });
    let (c, b) = s.call(
        "POST",
        "/api/v1/workflows/default",
        Some(json!({"workflow": failing})),
    );
    assert_eq!(c, 200, "{b}");
    let r1 = s.wait("default", "r1", Duration::from_secs(30));
    assert_eq!(r1["status"]["phase"], "Failed");
    let first_ok = node(&r1, "ok")["outputs"]["result"].clone();
    error(
        400,
        3,
        "To retry a succeeded workflow, set the options restartSuccessful and nodeFieldSelector",
    )(s.call("PUT", "/api/v1/workflows/default/w1/retry", Some(json!({}))));
    contains(400, "expected name=value")(s.call(
        "PUT",
        "/api/v1/workflows/default/r1/retry",
        Some(json!({"parameters": ["x"]})),
    ));
    let (c, b) = s.call(
        "PUT",
        "/api/v1/workflows/default/r1/retry",
        Some(json!({"parameters": ["code=0"]})),
    );
    assert_eq!(c, 200, "{b}");
    let r1 = s.wait("default", "r1", Duration::from_secs(30));
    assert_eq!(r1["status"]["phase"], "Succeeded", "{r1}");
    assert_eq!(
        node(&r1, "ok")["outputs"]["result"],
        first_ok,
        "the succeeded step was not run again"
    );
    // resubmit: a new workflow from the old one's spec
    let (c, b) = s.call(
        "PUT",
        "/api/v1/workflows/default/w1/resubmit",
        Some(json!({})),
    );
    assert_eq!(c, 200, "{b}");
    assert!(b["metadata"]["name"].as_str().unwrap().starts_with("w1-"));
    assert_eq!(
        b["metadata"]["labels"]["workflows.argoproj.io/resubmitted-from-workflow"],
        "w1"
    );
    error(404, 5, "workflows.argoproj.io \"zz\" not found")(s.call(
        "PUT",
        "/api/v1/workflows/default/zz/resubmit",
        Some(json!({})),
    ));
    // watch stream: the first line is the current object
    let r = s
        .request(
            "GET",
            "/api/v1/workflow-events/default?listOptions.fieldSelector=metadata.name%3Dw1",
        )
        .call()
        .unwrap();
    let mut reader = std::io::BufReader::new(r.into_reader());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    let ev: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(ev["result"]["type"], "ADDED");
    assert_eq!(ev["result"]["object"]["metadata"]["name"], "w1");
    // Argo's `fields` on a watch: `result.object.` paths select what each event's workflow
    // carries.
    let r = s
        .request(
            "GET",
            "/api/v1/workflow-events/default?listOptions.fieldSelector=metadata.name%3Dw1&fields=result.object.metadata.name,result.object.status.phase",
        )
        .call()
        .unwrap();
    let mut reader = std::io::BufReader::new(r.into_reader());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut reader, &mut first).unwrap();
    let ev: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(
        ev["result"]["object"],
        json!({"metadata": {"name": "w1"}, "status": {"phase": "Succeeded"}})
    );
    contains(400, "logOptions.follow: expected a boolean")(s.call(
        "GET",
        "/api/v1/workflows/default/w1/log?logOptions.follow=maybe",
        None,
    ));
    contains(400, "unsupported field selector")(s.call(
        "GET",
        "/api/v1/workflow-events/default?listOptions.fieldSelector=spec.x%3D1",
        None,
    ));
    // delete
    let (c, _) = s.call("DELETE", "/api/v1/workflows/default/w1", None);
    assert_eq!(c, 200);
    error(404, 5, "workflows.argoproj.io \"w1\" not found")(s.call(
        "DELETE",
        "/api/v1/workflows/default/w1",
        None,
    ));
    // unknown paths
    error(404, 5, "no API at GET /api/v1/nothing")(s.call("GET", "/api/v1/nothing", None));
}

#[test]
fn templates_and_submit_from() {
    let home = temp_home("api-templates");
    let s = Server::start(&home, &[]);
    let tmpl = json!({"metadata": {"name": "greet"}, "spec": {"entrypoint": "main",
        "arguments": {"parameters": [{"name": "who", "value": "world"}]},
        "templates": [{"name": "main", "inputs": {"parameters": [{"name": "who"}]},
            "container": {"image": "argoproj/argosay:v2", "args": ["echo", "hello {{inputs.parameters.who}}"]}}]}});
    for (base, get) in [
        (
            "/api/v1/workflow-templates/default",
            "/api/v1/workflow-templates/default/greet",
        ),
        (
            "/api/v1/cluster-workflow-templates",
            "/api/v1/cluster-workflow-templates/greet",
        ),
    ] {
        let (c, b) = s.call("POST", base, Some(json!({"template": tmpl})));
        assert_eq!(c, 200, "{b}");
        let kind = if base.contains("cluster") {
            "clusterworkflowtemplates"
        } else {
            "workflowtemplates"
        };
        error(
            409,
            6,
            &format!("{kind}.argoproj.io \"greet\" already exists"),
        )(s.call("POST", base, Some(json!({"template": tmpl}))));
        error(400, 3, "request body: the field \"template\" is required")(s.call(
            "POST",
            base,
            Some(json!({})),
        ));
        let (c, b) = s.call("GET", get, None);
        assert_eq!(c, 200);
        assert_eq!(b["metadata"]["name"], "greet");
        error(404, 5, &format!("{kind}.argoproj.io \"nope\" not found"))(s.call(
            "GET",
            &format!("{base}/nope"),
            None,
        ));
        let (c, list) = s.call("GET", base, None);
        assert_eq!(c, 200);
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        let mut changed = tmpl.clone();
        changed["spec"]["arguments"]["parameters"][0]["value"] = json!("there");
        let (c, b) = s.call("PUT", get, Some(json!({"template": changed})));
        assert_eq!(c, 200, "{b}");
        contains(400, "does not match the name in the path")(s.call(
            "PUT",
            &format!("{base}/other"),
            Some(json!({"template": changed})),
        ));
        let (c, _) = s.call(
            "POST",
            &format!("{base}/lint"),
            Some(json!({"template": tmpl})),
        );
        assert_eq!(c, 200);
        let mut bad = tmpl.clone();
        bad["spec"]["templates"][0]["container"] =
            json!({"image": "x", "args": ["{{inputs.parameters.nope}}"]});
        contains(400, "inputs.parameters.nope")(s.call(
            "POST",
            &format!("{base}/lint"),
            Some(json!({"template": bad})),
        ));
    }
    // submit --from: the template's arguments, our parameters, the ticket_id policy
    let submit = |kind: &str, params: Vec<&str>| {
        s.call(
            "POST",
            "/api/v1/workflows/default/submit",
            Some(json!({
            "resourceKind": kind, "resourceName": "greet",
            "submitOptions": {"parameters": params}})),
        )
    };
    contains(400, "\"ticket_id\"")(submit("WorkflowTemplate", vec!["who=onyx"]));
    let (c, wf) = submit("WorkflowTemplate", vec!["who=onyx", "ticket_id=T-7"]);
    assert_eq!(c, 200, "{wf}");
    assert_eq!(
        wf["metadata"]["labels"]["workflows.argoproj.io/workflow-template"],
        "greet"
    );
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let done = s.wait("default", &name, Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded", "{done}");
    assert_eq!(node(&done, &name)["outputs"]["result"], "hello onyx");
    let (c, wf) = submit("ClusterWorkflowTemplate", vec!["ticket_id=T-8"]);
    assert_eq!(c, 200, "{wf}");
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let done = s.wait("default", &name, Duration::from_secs(30));
    assert_eq!(node(&done, &name)["outputs"]["result"], "hello there");
    contains(400, "resourceKind \"Pod\"")(submit("Pod", vec![]));
    error(404, 5, "workflowtemplates.argoproj.io \"nope\" not found")(s.call(
        "POST",
        "/api/v1/workflows/default/submit",
        Some(json!({"resourceKind": "WorkflowTemplate", "resourceName": "nope"})),
    ));
    // delete
    for get in [
        "/api/v1/workflow-templates/default/greet",
        "/api/v1/cluster-workflow-templates/greet",
    ] {
        let (c, _) = s.call("DELETE", get, None);
        assert_eq!(c, 200);
        let (c, _) = s.call("DELETE", get, None);
        assert_eq!(c, 404);
    }
}

#[test]
fn cron_archive_info() {
    let home = temp_home("api-cron");
    let s = Server::start(&home, &[]);
    let cron = json!({"metadata": {"name": "tick"}, "spec": {"schedule": "* * * * *",
        "concurrencyPolicy": "Forbid",
        "workflowSpec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "ticket_id", "value": "T-c"}]},
            "templates": [{"name": "main", "container": {"image": "argoproj/argosay:v2", "args": ["echo", "tock"]}}]}}});
    let base = "/api/v1/cron-workflows/default";
    let (c, b) = s.call("POST", base, Some(json!({"cronWorkflow": cron})));
    assert_eq!(c, 200, "{b}");
    error(409, 6, "cronworkflows.argoproj.io \"tick\" already exists")(s.call(
        "POST",
        base,
        Some(json!({"cronWorkflow": cron})),
    ));
    // Argo's 52-character limit: the name is a label value of the workflows it makes.
    let mut long = cron.clone();
    long["metadata"]["name"] = json!("c".repeat(53));
    contains(400, "must not be more than 52 characters")(s.call(
        "POST",
        base,
        Some(json!({"cronWorkflow": long})),
    ));
    let mut bad = cron.clone();
    bad["spec"]["schedule"] = json!("* * *");
    contains(400, "expected 5 fields")(s.call(
        "POST",
        base,
        Some(json!({"cronWorkflow": bad.clone()})),
    ));
    contains(400, "expected 5 fields")(s.call(
        "POST",
        &format!("{base}/lint"),
        Some(json!({"cronWorkflow": bad})),
    ));
    let mut bad_policy = cron.clone();
    bad_policy["spec"]["concurrencyPolicy"] = json!("Sometimes");
    contains(400, "expected Allow, Forbid or Replace")(s.call(
        "POST",
        &format!("{base}/lint"),
        Some(json!({"cronWorkflow": bad_policy})),
    ));
    let (c, b) = s.call("PUT", &format!("{base}/tick/suspend"), Some(json!({})));
    assert_eq!(c, 200);
    assert_eq!(b["spec"]["suspend"], true);
    let (c, b) = s.call("PUT", &format!("{base}/tick/resume"), Some(json!({})));
    assert_eq!(c, 200);
    assert_eq!(b["spec"]["suspend"], false);
    error(404, 5, "cronworkflows.argoproj.io \"nope\" not found")(s.call(
        "PUT",
        &format!("{base}/nope/suspend"),
        Some(json!({})),
    ));
    let (c, list) = s.call("GET", base, None);
    assert_eq!(c, 200);
    assert_eq!(list["items"][0]["metadata"]["name"], "tick");
    // submit --from cronwf runs its workflow now
    let (c, wf) = s.call(
        "POST",
        "/api/v1/workflows/default/submit",
        Some(json!({"resourceKind": "CronWorkflow", "resourceName": "tick"})),
    );
    assert_eq!(c, 200, "{wf}");
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let done = s.wait("default", &name, Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded");
    // archive: the finished workflow is there, by uid, with pagination
    let uid = done["metadata"]["uid"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(300));
    let (c, arch) = s.call(
        "GET",
        "/api/v1/archived-workflows?namespace=default&listOptions.limit=1",
        None,
    );
    assert_eq!(c, 200, "{arch}");
    assert_eq!(arch["items"].as_array().unwrap().len(), 1);
    let (c, one) = s.call("GET", &format!("/api/v1/archived-workflows/{uid}"), None);
    assert_eq!(c, 200);
    assert_eq!(one["status"]["phase"], "Succeeded");
    // The archive's label keys, and one key's values (the UI's label filter asks these).
    let labels = one["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let (c, keys) = s.call("GET", "/api/v1/archived-workflows-label-keys", None);
    assert_eq!(c, 200, "{keys}");
    for k in labels.keys() {
        assert!(
            keys["items"].as_array().unwrap().contains(&json!(k)),
            "{k} in {keys}"
        );
    }
    if let Some((k, v)) = labels.iter().next() {
        let (c, values) = s.call(
            "GET",
            &format!("/api/v1/archived-workflows-label-values?listOptions.labelSelector={k}"),
            None,
        );
        assert_eq!(c, 200, "{values}");
        assert!(values["items"].as_array().unwrap().contains(v), "{values}");
    }
    let (c, _) = s.call("GET", "/api/v1/archived-workflows-label-values", None);
    assert_eq!(c, 400);
    let (c, ack) = s.call("POST", "/api/v1/tracking/event", Some(json!({"name": "x"})));
    assert_eq!((c, ack), (200, json!({})));
    error(404, 5, "archived workflow \"nope\" not found")(s.call(
        "GET",
        "/api/v1/archived-workflows/nope",
        None,
    ));
    let (c, re) = s.call(
        "PUT",
        &format!("/api/v1/archived-workflows/{uid}/resubmit"),
        Some(json!({})),
    );
    assert_eq!(c, 200, "{re}");
    error(
        409,
        6,
        &format!("Workflow already exists on cluster, use argo retry {name} instead"),
    )(s.call(
        "PUT",
        &format!("/api/v1/archived-workflows/{uid}/retry"),
        Some(json!({})),
    ));
    let (c, _) = s.call("DELETE", &format!("/api/v1/archived-workflows/{uid}"), None);
    assert_eq!(c, 200);
    error(404, 5, &format!("archived workflow {uid} not found"))(s.call(
        "DELETE",
        &format!("/api/v1/archived-workflows/{uid}"),
        None,
    ));
    let (c, _) = s.call("DELETE", &format!("{base}/tick"), None);
    assert_eq!(c, 200);
    error(404, 5, "cronworkflows.argoproj.io \"tick\" not found")(s.call(
        "DELETE",
        &format!("{base}/tick"),
        None,
    ));
    // info, version, userinfo
    let (c, v) = s.call("GET", "/api/v1/version", None);
    assert_eq!(c, 200);
    assert!(v["version"].as_str().unwrap().starts_with("v3.5.6"));
    let (c, _) = s.call("GET", "/api/v1/info", None);
    assert_eq!(c, 200);
    let (c, _) = s.call("GET", "/api/v1/userinfo", None);
    assert_eq!(c, 200);
}

#[test]
fn authentication_body_limit_and_public_address() {
    let home = temp_home("api-auth");
    let token = home.join("token");
    std::fs::write(&token, "0123456789abcdef-secret\n").unwrap();
    let cfg = home.join("onyx.toml");
    std::fs::write(
        &cfg,
        format!("auth_token_file = \"{}\"\nmax_body_bytes = 2048\n[namespaces.sandbox]\nrequired_parameters = []\n", token.display()),
    )
    .unwrap();
    let s = Server::start(&home, &["--config", cfg.to_str().unwrap()]);
    error(
        401,
        16,
        "token not valid: send `Authorization: Bearer <token>` with the server's token",
    )(s.call("GET", "/api/v1/workflows/default", None));
    // The UI's files hold no data: a browser opens them without a token (its pages then send
    // the user's token to the API, which still refuses without it).
    let page = s.request("GET", "/").call().unwrap();
    assert_eq!(page.header("content-type"), Some("text/html"));
    assert!(page.into_string().unwrap().contains("/ui/app.js"));
    let script = s.request("GET", "/ui/app.js").call().unwrap();
    assert_eq!(script.header("content-type"), Some("text/javascript"));
    match s.request("GET", "/ui/nope.js").call() {
        Err(ureq::Error::Status(404, r)) => {
            assert_eq!(r.into_string().unwrap(), "the UI has no file \"nope.js\"")
        }
        other => panic!("expected 404, got {other:?}"),
    }
    let ok = s
        .request("GET", "/api/v1/workflows/sandbox")
        .set("Authorization", "Bearer 0123456789abcdef-secret")
        .call()
        .unwrap();
    assert_eq!(ok.status(), 200);
    // A namespace whose policy requires nothing accepts a workflow without ticket_id.
    let r = s
        .request("POST", "/api/v1/workflows/sandbox")
        .set("Authorization", "Bearer 0123456789abcdef-secret")
        .send_string(&json!({"workflow": hello("free", false)}).to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    let big = json!({"workflow": {"metadata": {"name": "x".repeat(4000)}}}).to_string();
    match s
        .request("POST", "/api/v1/workflows/sandbox")
        .set("Authorization", "Bearer 0123456789abcdef-secret")
        .send_string(&big)
    {
        Err(ureq::Error::Status(413, r)) => {
            let b: Value = serde_json::from_str(&r.into_string().unwrap()).unwrap();
            assert!(
                b["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("request body too large"),
                "{b}"
            );
        }
        other => panic!("expected 413, got {other:?}"),
    }
    drop(s);
    // Refuses a public address without authentication, and says why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["server", "--listen", "0.0.0.0:0"])
        .env("ONYX_HOME", home.join("state2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0:0: it is not a loopback address and no authentication is configured"), "{err}");
}

/// A schedule missed while the server was down runs once when it is still within
/// `startingDeadlineSeconds` (Argo's rule), as `<cron>-<scheduled unix time>`, and a restart
/// does not run it again.
#[test]
fn cron_runs_a_missed_schedule_once() {
    let home = temp_home("api-cron-missed");
    let mut s = Server::start(&home, &[]);
    let last = (chrono::Utc::now() - chrono::Duration::minutes(3))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let cron = json!({"metadata": {"name": "late"},
        "spec": {"schedule": "* * * * *", "startingDeadlineSeconds": 600,
            "workflowSpec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "ticket_id", "value": "T-c"}]},
                "templates": [{"name": "main", "container": {"image": "argoproj/argosay:v2", "args": ["echo", "late"]}}]}},
        "status": {"lastScheduledTime": last}});
    let (c, b) = s.call(
        "POST",
        "/api/v1/cron-workflows/default",
        Some(json!({"cronWorkflow": cron})),
    );
    assert_eq!(c, 200, "{b}");
    let list = |s: &Server| {
        let (_, l) = s.call("GET", "/api/v1/workflows/default?listOptions.labelSelector=workflows.argoproj.io/cron-workflow%3Dlate", None);
        l["items"].as_array().cloned().unwrap_or_default()
    };
    let t0 = std::time::Instant::now();
    while list(&s).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the missed schedule did not run"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let runs = list(&s);
    let name = runs[0]["metadata"]["name"].as_str().unwrap().to_string();
    let stamp: i64 = name.strip_prefix("late-").unwrap().parse().unwrap();
    assert_eq!(stamp % 60, 0, "named after the scheduled minute");
    let done = s.wait("default", &name, Duration::from_secs(30));
    assert_eq!(done["status"]["phase"], "Succeeded");
    let (_, cron_now) = s.call("GET", "/api/v1/cron-workflows/default/late", None);
    let scheduled = cron_now["status"]["lastScheduledTime"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(scheduled, last);
    s.kill9();
    let s = Server::start(&home, &[]);
    std::thread::sleep(Duration::from_millis(2500));
    let again = list(&s);
    // Within the same minute nothing new runs; across a minute boundary only the new minute.
    let names: Vec<String> = again
        .iter()
        .map(|w| w["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.iter().filter(|n| **n == name).count(), 1, "{names:?}");
    assert!(names.len() <= 2, "{names:?}");
}
