//! Argo Events' Sensors, run by ONYX for the events it has itself: a `resource` EventSource on
//! `argoproj.io/v1alpha1 workflows` (Argo Events' resource event source: `eventTypes` ADD when
//! a workflow starts, UPDATE when it ends; `filter.fields` and `filter.labels` over the
//! object), a Sensor depending on it, and its `http` triggers — the spec's "notification is
//! sent by Triggers on completion".
//!
//! Pure: which trigger calls an event gives, each with a key naming sensor, trigger, workflow
//! and phase, so that the outbox that delivers them (`notify`) sends each once, across
//! restarts. Not yet: webhook and calendar EventSources, `argoWorkflow` triggers, sensors of
//! more than one dependency (said in the server's log when met).

use serde_json::{json, Map, Value};

/// The outbox's "webhook" for sensor calls: the message body is an [`HttpCall`] envelope.
pub const OUTBOX: &str = "sensor";

/// Stored objects' kinds.
pub const EVENT_SOURCE: &str = "EventSource";
pub const SENSOR: &str = "Sensor";

/// One HTTP call a trigger makes, as kept in the outbox.
pub fn envelope(url: &str, method: &str, headers: &Map<String, Value>, body: &Value) -> Value {
    json!({"url": url, "method": method, "headers": headers, "body": body})
}

/// A gjson-style dotted path into a JSON value (`body.metadata.name`, `a.0.b`).
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(k),
        Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => None,
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether a resource event source's filter lets the object through.
fn passes(filter: &Value, obj: &Value) -> bool {
    let fields = filter["fields"].as_array().into_iter().flatten();
    let labels = filter["labels"].as_array().into_iter().flatten().map(|l| {
        json!({"key": format!("metadata.labels.{}", l["key"].as_str().unwrap_or_default()),
               "operation": l["operation"], "value": l["value"]})
    });
    fields.cloned().chain(labels).all(|f| {
        let key = f["key"].as_str().unwrap_or_default();
        let want = f["value"].as_str().unwrap_or_default();
        let got = at(obj, key).map(text).unwrap_or_default();
        match f["operation"].as_str().unwrap_or("==") {
            "!=" => got != want,
            "" | "=" | "==" => got == want,
            _ => false,
        }
    })
}

/// The outbox messages for a workflow event (`ADD` when it starts, `UPDATE` when it ends)
/// given the namespace's EventSources and Sensors. Returns (key, envelope) pairs, and what
/// could not be run.
pub fn calls(
    event_type: &str,
    workflow: &Value,
    uid: &str,
    sources: &[Value],
    sensors: &[Value],
) -> (Vec<(String, Value)>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let ns = workflow["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let phase = workflow["status"]["phase"].as_str().unwrap_or("Pending");
    for sensor in sensors {
        let sname = sensor["metadata"]["name"].as_str().unwrap_or("?");
        let deps = sensor["spec"]["dependencies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if deps.len() != 1 {
            problems.push(format!(
                "sensor {ns}/{sname}: ONYX runs sensors of one dependency (this one has {})",
                deps.len()
            ));
            continue;
        }
        let dep = &deps[0];
        let Some(source) = sources
            .iter()
            .find(|s| s["metadata"]["name"] == dep["eventSourceName"])
        else {
            continue;
        };
        let Some(resource) = dep["eventName"]
            .as_str()
            .and_then(|e| source["spec"]["resource"].get(e))
        else {
            continue;
        };
        let watches_workflows = resource["group"] == "argoproj.io"
            && resource["resource"] == "workflows"
            && resource["namespace"]
                .as_str()
                .is_none_or(|n| n.is_empty() || n == ns);
        let types: Vec<&str> = resource["eventTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !watches_workflows
            || !types.contains(&event_type)
            || !passes(&resource["filter"], workflow)
        {
            continue;
        }
        let data = json!({"type": event_type, "body": workflow,
                          "group": "argoproj.io", "version": "v1alpha1", "resource": "workflows"});
        let dep_name = dep["name"].as_str().unwrap_or_default();
        for trigger in sensor["spec"]["triggers"].as_array().into_iter().flatten() {
            let tname = trigger["template"]["name"].as_str().unwrap_or("?");
            let Some(http) = trigger["template"].get("http") else {
                problems.push(format!(
                    "sensor {ns}/{sname}: trigger {tname}: ONYX runs http triggers only, for now"
                ));
                continue;
            };
            let Some(url) = http["url"].as_str() else {
                problems.push(format!(
                    "sensor {ns}/{sname}: trigger {tname}: http.url is required"
                ));
                continue;
            };
            let mut body = json!({});
            for p in http["payload"].as_array().into_iter().flatten() {
                if p["src"]["dependencyName"].as_str() != Some(dep_name) {
                    continue;
                }
                let value = match p["src"]["dataKey"].as_str() {
                    Some(k) => at(&data, k).cloned(),
                    None => Some(data.clone()),
                }
                .or_else(|| p["src"].get("value").cloned())
                .unwrap_or(Value::Null);
                let dest = p["dest"].as_str().unwrap_or_default();
                let mut cursor = &mut body;
                let parts: Vec<&str> = dest.split('.').filter(|s| !s.is_empty()).collect();
                for (i, part) in parts.iter().enumerate() {
                    if i + 1 == parts.len() {
                        cursor[*part] = value.clone();
                    } else {
                        if !cursor[*part].is_object() {
                            cursor[*part] = json!({});
                        }
                        cursor = &mut cursor[*part];
                    }
                }
            }
            let headers = http["headers"].as_object().cloned().unwrap_or_default();
            let method = http["method"].as_str().unwrap_or("POST");
            out.push((
                format!("{OUTBOX}/{ns}/{sname}/{tname}/{uid}/{event_type}/{phase}"),
                envelope(url, method, &headers, &body),
            ));
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_workflow_calls_the_sensors_http_trigger_once_per_phase() {
        let source = json!({"metadata": {"name": "workflows"}, "spec": {"resource": {"done": {
            "namespace": "default", "group": "argoproj.io", "version": "v1alpha1",
            "resource": "workflows", "eventTypes": ["UPDATE"],
            "filter": {"fields": [{"key": "status.phase", "operation": "==", "value": "Succeeded"}]}}}}});
        let sensor = json!({"metadata": {"name": "notify"}, "spec": {
            "dependencies": [{"name": "wf", "eventSourceName": "workflows", "eventName": "done"}],
            "triggers": [{"template": {"name": "slack", "http": {"url": "http://hook/x",
                "payload": [{"src": {"dependencyName": "wf", "dataKey": "body.metadata.name"}, "dest": "text.name"}]}}}]}});
        let wf = |phase: &str| {
            json!({"metadata": {"name": "w1", "namespace": "default"},
                                       "status": {"phase": phase}})
        };
        let (made, problems) = calls(
            "UPDATE",
            &wf("Succeeded"),
            "u1",
            std::slice::from_ref(&source),
            std::slice::from_ref(&sensor),
        );
        assert!(problems.is_empty());
        assert_eq!(made.len(), 1);
        assert_eq!(made[0].0, "sensor/default/notify/slack/u1/UPDATE/Succeeded");
        assert_eq!(made[0].1["body"], json!({"text": {"name": "w1"}}));
        assert_eq!(made[0].1["method"], "POST");
        assert!(calls(
            "UPDATE",
            &wf("Failed"),
            "u1",
            std::slice::from_ref(&source),
            std::slice::from_ref(&sensor)
        )
        .0
        .is_empty());
        assert!(calls("ADD", &wf("Succeeded"), "u1", &[source], &[sensor])
            .0
            .is_empty());
    }
}
