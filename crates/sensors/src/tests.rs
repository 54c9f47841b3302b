use proptest::prelude::*;
use serde_json::json;

use super::*;

fn event(source: &str, name: &str, id: &str, data: Value) -> Event {
    Event {
        source: source.into(),
        name: name.into(),
        kind: "webhook".into(),
        id: id.into(),
        time: "2026-12-05T10:00:00Z".into(),
        data,
    }
}

fn workflow_source() -> Value {
    json!({"metadata": {"name": "workflows"}, "spec": {"resource": {"done": {
        "namespace": "default", "group": "argoproj.io", "version": "v1alpha1",
        "resource": "workflows", "eventTypes": ["UPDATE"],
        "filter": {"fields": [{"key": "status.phase", "operation": "==", "value": "Succeeded"}]}}}}})
}

#[test]
fn a_finished_workflow_fires_the_http_trigger_once_per_phase() {
    let sensor = json!({"metadata": {"name": "notify"}, "spec": {
        "dependencies": [{"name": "wf", "eventSourceName": "workflows", "eventName": "done"}],
        "triggers": [{"template": {"name": "slack", "http": {"url": "http://hook/x",
            "payload": [{"src": {"dependencyName": "wf", "dataKey": "body.metadata.name"}, "dest": "text.name"}]}}}]}});
    let wf = |phase: &str| json!({"metadata": {"name": "w1", "namespace": "default"}, "status": {"phase": phase}});
    let sources = [workflow_source()];
    let events = workflow_events("UPDATE", &wf("Succeeded"), "u1", "t", &sources);
    assert_eq!(events.len(), 1);
    let mut held = Held::default();
    let (fired, problems) = on_event("default", &sensor, &mut held, &events[0]);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(fired.len(), 1);
    assert_eq!(
        fired[0].key,
        "sensor/default/notify/slack/u1/UPDATE/Succeeded"
    );
    assert_eq!(
        fired[0].call,
        Call::Http {
            url: "http://hook/x".into(),
            method: "POST".into(),
            headers: Map::new(),
            body: json!({"text": {"name": "w1"}})
        }
    );
    assert!(held.is_empty());
    assert!(workflow_events("UPDATE", &wf("Failed"), "u1", "t", &sources).is_empty());
    assert!(workflow_events("ADD", &wf("Succeeded"), "u1", "t", &sources).is_empty());
}

#[test]
fn two_dependencies_fire_once_both_have_been_seen_and_the_firing_consumes_them() {
    let sensor = json!({"metadata": {"name": "both"}, "spec": {
        "dependencies": [
            {"name": "build-done", "eventSourceName": "hooks", "eventName": "build"},
            {"name": "tests-done", "eventSourceName": "hooks", "eventName": "tests"}],
        "triggers": [{"template": {"name": "deploy", "http": {"url": "http://x",
            "payload": [
                {"src": {"dependencyName": "build-done", "dataKey": "body.sha"}, "dest": "sha"},
                {"src": {"dependencyName": "tests-done", "dataKey": "body.passed", "useRawData": true}, "dest": "passed"},
                {"src": {"dependencyName": "tests-done", "dataKey": "body.count"}, "dest": "count"}]}}}]}});
    let mut held = Held::default();
    let build = event("hooks", "build", "e1", json!({"body": {"sha": "abc"}}));
    let tests = event(
        "hooks",
        "tests",
        "e2",
        json!({"body": {"passed": true, "count": 7}}),
    );
    let (fired, _) = on_event("ci", &sensor, &mut held, &build);
    assert!(fired.is_empty());
    assert!(!held.is_empty());
    let (fired, problems) = on_event("ci", &sensor, &mut held, &tests);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].key, "sensor/ci/both/deploy/e1+e2");
    let Call::Http { body, .. } = &fired[0].call else {
        panic!("{:?}", fired[0].call)
    };
    // Strings unless useRawData, as Argo Events sets them.
    assert_eq!(body, &json!({"sha": "abc", "passed": true, "count": "7"}));
    assert!(held.is_empty());
    // A second "tests" alone does not fire: the firing consumed the build event.
    assert!(on_event("ci", &sensor, &mut held, &tests).0.is_empty());
}

#[test]
fn conditions_choose_which_dependencies_a_trigger_needs() {
    let sensor = json!({"metadata": {"name": "s"}, "spec": {
        "dependencies": [
            {"name": "dep-a", "eventSourceName": "hooks", "eventName": "a"},
            {"name": "dep-b", "eventSourceName": "hooks", "eventName": "b"}],
        "triggers": [
            {"template": {"name": "either", "conditions": "dep-a || dep-b", "log": {}}},
            {"template": {"name": "only-b", "conditions": "dep-b", "log": {}}}]}});
    let mut held = Held::default();
    let (fired, _) = on_event(
        "ns",
        &sensor,
        &mut held,
        &event("hooks", "a", "1", json!({})),
    );
    let keys: Vec<&str> = fired.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["sensor/ns/s/either/1"]);
    let (fired, _) = on_event(
        "ns",
        &sensor,
        &mut held,
        &event("hooks", "b", "2", json!({})),
    );
    let keys: Vec<&str> = fired.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["sensor/ns/s/either/2", "sensor/ns/s/only-b/2"]);
}

#[test]
fn an_argo_workflow_trigger_submits_its_workflow_with_parameters_from_the_event() {
    let sensor = json!({"metadata": {"name": "webhook"}, "spec": {
        "dependencies": [{"name": "test-dep", "eventSourceName": "webhook", "eventName": "example"}],
        "triggers": [{"template": {"name": "wf", "argoWorkflow": {"operation": "submit",
            "source": {"resource": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                "metadata": {"generateName": "webhook-"},
                "spec": {"entrypoint": "main", "arguments": {"parameters": [{"name": "message", "value": "x"}]}}}},
            "parameters": [
                {"src": {"dependencyName": "test-dep", "dataKey": "body.message"}, "dest": "spec.arguments.parameters.0.value"},
                {"src": {"dependencyName": "test-dep", "dataKey": "body.who"}, "dest": "metadata.generateName", "operation": "append"}]}}}]}});
    let mut held = Held::default();
    let e = event(
        "webhook",
        "example",
        "1",
        json!({"body": {"message": "hello", "who": "ann-"}}),
    );
    let (fired, problems) = on_event("default", &sensor, &mut held, &e);
    assert!(problems.is_empty(), "{problems:?}");
    let Call::Submit {
        namespace,
        workflow,
    } = &fired[0].call
    else {
        panic!("{:?}", fired[0].call)
    };
    assert_eq!(namespace, "default");
    assert_eq!(
        workflow["spec"]["arguments"]["parameters"][0]["value"],
        "hello"
    );
    assert_eq!(workflow["metadata"]["generateName"], "webhook-ann-");
}

#[test]
fn inline_sources_and_unsupported_operations() {
    let trigger = |t: Value| {
        json!({"metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "d", "eventSourceName": "x", "eventName": "y"}],
        "triggers": [{"template": t}]}})
    };
    let e = event("x", "y", "1", json!({}));
    let inline = trigger(json!({"name": "t", "argoWorkflow": {"source": {"inline":
        "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: a-\nspec:\n  entrypoint: m\n"}}}));
    let (fired, _) = on_event("ns", &inline, &mut Held::default(), &e);
    assert!(
        matches!(&fired[0].call, Call::Submit { workflow, .. } if workflow["metadata"]["generateName"] == "a-")
    );
    let resubmit = trigger(
        json!({"name": "t", "argoWorkflow": {"operation": "resubmit", "source": {"resource": {}}}}),
    );
    let (fired, problems) = on_event("ns", &resubmit, &mut Held::default(), &e);
    assert!(fired.is_empty());
    assert!(
        problems[0]
            .to_string()
            .contains("argoWorkflow.operation \"resubmit\""),
        "{}",
        problems[0]
    );
    let lambda = trigger(json!({"name": "t", "awsLambda": {}}));
    let (_, problems) = on_event("ns", &lambda, &mut Held::default(), &e);
    assert!(
        problems[0]
            .to_string()
            .starts_with("sensor s: trigger t: ONYX runs http"),
        "{}",
        problems[0]
    );
}

#[test]
fn data_filters_follow_argo_events() {
    let sensor = |filters: Value| {
        json!({"metadata": {"name": "s"}, "spec": {
        "dependencies": [{"name": "d", "eventSourceName": "x", "eventName": "y", "filters": filters}],
        "triggers": [{"template": {"name": "t", "log": {}}}]}})
    };
    let data = json!({"body": {"action": "opened", "n": 5, "draft": false, "labels": ["gpu"]}});
    let fires = |filters: Value| {
        let (fired, problems) = on_event(
            "ns",
            &sensor(filters),
            &mut Held::default(),
            &event("x", "y", "1", data.clone()),
        );
        assert!(problems.is_empty(), "{problems:?}");
        !fired.is_empty()
    };
    // Strings: a regular expression unless = or != is named; values are OR'ed.
    assert!(fires(
        json!({"data": [{"path": "body.action", "type": "string", "value": ["clos.*", "^open"]}]})
    ));
    assert!(!fires(
        json!({"data": [{"path": "body.action", "type": "string", "value": ["open"], "comparator": "="}]})
    ));
    assert!(fires(
        json!({"data": [{"path": "body.action", "type": "string", "value": ["closed"], "comparator": "!="}]})
    ));
    assert!(fires(
        json!({"data": [{"path": "body.n", "type": "number", "value": ["4"], "comparator": ">"}]})
    ));
    assert!(!fires(
        json!({"data": [{"path": "body.n", "type": "number", "value": ["5"], "comparator": "<"}]})
    ));
    assert!(fires(
        json!({"data": [{"path": "body.draft", "type": "bool", "value": ["false"]}]})
    ));
    assert!(fires(
        json!({"data": [{"path": "body.labels.0", "type": "string", "value": ["gpu"]}]})
    ));
    // A missing path never passes; filters are AND'ed unless `or` is asked for.
    assert!(!fires(
        json!({"data": [{"path": "body.nope", "type": "string", "value": [".*"]}]})
    ));
    let two = json!([{"path": "body.action", "type": "string", "value": ["opened"]},
                     {"path": "body.n", "type": "number", "value": ["9"]}]);
    assert!(!fires(json!({"data": two})));
    assert!(fires(json!({"data": two, "dataLogicalOperator": "or"})));
    assert!(fires(
        json!({"exprs": [{"expr": "a == 'opened' && n > 3", "fields": [
        {"name": "a", "path": "body.action"}, {"name": "n", "path": "body.n"}]}]})
    ));
    assert!(!fires(
        json!({"exprs": [{"expr": "n > 30", "fields": [{"name": "n", "path": "body.n"}]}]})
    ));
    // A bad filter is a problem in its own words, not a panic.
    let (_, problems) = on_event(
        "ns",
        &sensor(json!({"data": [{"path": "body.n", "type": "number", "value": ["x"]}]})),
        &mut Held::default(),
        &event("x", "y", "1", data.clone()),
    );
    assert!(
        problems[0]
            .to_string()
            .contains("filters.data[0]: value \"x\": expected a number"),
        "{}",
        problems[0]
    );
}

#[test]
fn conditions_parse_with_precedence_and_hyphenated_names() {
    let c = Condition::parse("dep-a && (b || !c.d)").unwrap();
    assert_eq!(
        c.names().into_iter().collect::<Vec<_>>(),
        ["b", "c.d", "dep-a"]
    );
    assert!(c.holds(&|d| d == "dep-a"));
    assert!(!c.holds(&|d| d == "dep-a" || d == "c.d"));
    let c = Condition::parse("a || b && c").unwrap();
    assert!(c.holds(&|d| d == "a"));
    assert!(!c.holds(&|d| d == "b"));
    assert!(Condition::parse("a &&").is_err());
    assert!(Condition::parse("(a").is_err());
    assert!(Condition::parse("a b").is_err());
    assert!(Condition::parse("a & b").is_err());
    assert!(!Condition::all(&[]).holds(&|_| true));
}

#[test]
fn webhook_data_keeps_headers_as_lists_and_refuses_bodies_that_are_not_json() {
    let d = webhook_data(
        &[
            ("x-request-id".into(), "1".into()),
            ("X-Request-ID".into(), "2".into()),
        ],
        br#"{"message": "hi"}"#,
    )
    .unwrap();
    assert_eq!(d["header"]["X-Request-Id"], json!(["1", "2"]));
    assert_eq!(d["body"]["message"], "hi");
    assert!(webhook_data(&[], b"not json").is_err());
    assert_eq!(webhook_data(&[], b"").unwrap()["body"], Value::Null);
}

#[test]
fn event_sources_are_checked_in_their_fields_words() {
    let bad = json!({"spec": {"webhook": {"example": {"port": "abc", "endpoint": "x"}},
                              "calendar": {"tick": {}}}});
    let problems = check_event_source(&bad);
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems[0].starts_with("spec.webhook.example.port"));
    let good = json!({"spec": {"webhook": {"example": {"port": "12000", "endpoint": "/example", "method": "POST"}},
                               "calendar": {"tick": {"interval": "10s"}}}});
    assert!(check_event_source(&good).is_empty());
}

#[test]
fn webhook_events_are_served_only_as_they_can_be() {
    let source = json!({"spec": {"webhook": {
        "a": {"port": 12000, "endpoint": "/hook", "method": "post",
              "authSecret": {"name": "hooks", "key": "token"}},
        "b": {"port": "12000", "endpoint": "/hook", "method": "GET"},
        "c": {"port": "12000", "endpoint": "/hook", "method": "POST"},
        "d": {"port": "12001", "endpoint": "/{x}"},
        "e": {"port": "12001", "endpoint": "/a b"},
        "f": {"port": "12001", "endpoint": "/%2e%2e"},
        "g": {"port": "0", "endpoint": "/g"},
        "h": {"port": "12001", "endpoint": "/h", "method": "PO ST"},
        "i": {"port": "12001", "endpoint": "/i", "authSecret": {"name": "x"}},
        "j": {"port": "12001", "endpoint": "/j"}}}});
    let (routes, problems) = webhook_routes(&source);
    assert_eq!(
        routes,
        [
            WebhookRoute {
                event: "a".into(),
                port: 12000,
                endpoint: "/hook".into(),
                method: "POST".into(),
                auth_secret: Some(("hooks".into(), "token".into())),
            },
            WebhookRoute {
                event: "b".into(),
                port: 12000,
                endpoint: "/hook".into(),
                method: "GET".into(),
                auth_secret: None,
            },
            WebhookRoute {
                event: "j".into(),
                port: 12001,
                endpoint: "/j".into(),
                method: "POST".into(),
                auth_secret: None,
            },
        ]
    );
    let said = problems.join("\n");
    assert_eq!(problems.len(), 7, "{said}");
    assert!(
        said.contains("spec.webhook.c: POST /hook on port 12000 is spec.webhook.a's already"),
        "{said}"
    );
    for p in [
        "spec.webhook.d.endpoint \"/{x}\"",
        "spec.webhook.e.endpoint",
        "spec.webhook.f.endpoint",
        "spec.webhook.g.port",
        "spec.webhook.h.method",
        "spec.webhook.i.authSecret",
    ] {
        assert!(said.contains(p), "{p}: {said}");
    }
    assert_eq!(check_event_source(&source), problems);
}

#[test]
fn sensors_are_checked_in_their_fields_words() {
    let bad = json!({"spec": {"dependencies": [{"name": "a", "eventSourceName": "x"}, {"name": "a", "eventSourceName": "x", "eventName": "y"}],
                              "triggers": [{"template": {"conditions": "a && b"}}]}});
    assert_eq!(
        check_sensor(&bad),
        [
            "spec.dependencies[0].eventName is required",
            "spec.dependencies[1].name \"a\": used twice",
            "spec.triggers[0].template.name is required",
            "spec.triggers[0].template.conditions: \"b\" is not a dependency",
        ]
    );
    assert_eq!(check_sensor(&json!({"spec": {}})).len(), 2);
}

#[test]
fn set_path_indexes_lists_and_makes_objects() {
    let mut v = json!({"a": [{"x": 1}]});
    set_path(&mut v, "a.0.x", json!(2)).unwrap();
    set_path(&mut v, "a.1.y", json!(3)).unwrap();
    set_path(&mut v, "a.-1", json!(4)).unwrap();
    set_path(&mut v, "b.c", json!("d")).unwrap();
    assert_eq!(v, json!({"a": [{"x": 2}, {"y": 3}, 4], "b": {"c": "d"}}));
    assert!(set_path(&mut v, "a.9", json!(0)).is_err());
    assert!(set_path(&mut v, "a..b", json!(0)).is_err());
}

proptest! {
    #[test]
    fn conditions_never_panic(text in ".{0,40}") {
        let _ = Condition::parse(&text);
    }

    #[test]
    fn any_sensor_shape_gives_calls_or_problems_never_a_panic(
        dest in "[a-z0-9.-]{0,12}", key in "[a-z0-9.]{0,12}", cond in "[a-z|&!() ]{0,12}",
    ) {
        let sensor = json!({"metadata": {"name": "s"}, "spec": {
            "dependencies": [{"name": "a", "eventSourceName": "x", "eventName": "y"}],
            "triggers": [{"template": {"name": "t", "conditions": cond, "http": {"url": "u",
                "payload": [{"src": {"dependencyName": "a", "dataKey": key}, "dest": dest}]}}}]}});
        let _ = on_event("ns", &sensor, &mut Held::default(), &event("x", "y", "1", json!({"a": [1, {"b": 2}]})));
    }
}
