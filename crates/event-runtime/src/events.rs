//! Argo's event API: a `POST /api/v1/events/{namespace}/{discriminator}` (a webhook) is matched
//! against the namespace's WorkflowEventBindings; each binding whose `spec.event.selector`
//! holds submits its `spec.submit.workflowTemplateRef` with parameters computed from the
//! event (`spec.submit.arguments.parameters[].valueFrom.event`). Expressions are expr-lang over
//! `{namespace, discriminator, metadata, payload}` as Argo's event server builds them
//! (`metadata`: the request's `x-` headers only, each a list of values).
//!
//! Pure: what an event means for a binding. The API module stores bindings and submits.

use serde_json::{json, Map, Value};

/// Stored objects' kind.
pub const KIND: &str = "WorkflowEventBinding";

/// The expression environment of an event.
pub fn environment(
    namespace: &str,
    discriminator: &str,
    headers: &[(String, String)],
    payload: Value,
) -> Value {
    let mut metadata: Map<String, Value> = Map::new();
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        // Only `x-` headers, as Argo: never `authorization`.
        if k.starts_with("x-") {
            let list = metadata.entry(k).or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(json!(v));
            }
        }
    }
    json!({
        "namespace": namespace,
        "discriminator": discriminator,
        "metadata": metadata,
        "payload": payload,
    })
}

/// The workflow a binding submits for an event, or `None` when its selector does not hold.
pub fn dispatch(binding: &Value, env: &Value) -> Result<Option<Value>, String> {
    let name = binding["metadata"]["name"].as_str().unwrap_or("?");
    let selector = binding
        .pointer("/spec/event/selector")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("binding {name}: spec.event.selector is required"))?;
    let matched = template_eval::expr::eval(selector, env)
        .map_err(|e| format!("binding {name}: selector {selector:?}: {e}"))?;
    match matched {
        Value::Bool(true) => {}
        Value::Bool(false) => return Ok(None),
        other => {
            return Err(format!(
                "binding {name}: selector {selector:?} is {other}, not a boolean"
            ))
        }
    }
    let Some(submit) = binding.pointer("/spec/submit") else {
        return Ok(None);
    };
    let reference = &submit["workflowTemplateRef"];
    let template = reference["name"].as_str().ok_or_else(|| {
        format!("binding {name}: spec.submit.workflowTemplateRef.name is required")
    })?;
    let cluster = reference["clusterScope"].as_bool() == Some(true);
    let mut metadata = json!({
        "generateName": format!("{template}-"),
        "labels": {"workflows.argoproj.io/workflow-event-binding": name},
    });
    let string_of = |field: &str, src: &str| -> Result<String, String> {
        match template_eval::expr::eval(src, env) {
            Ok(Value::String(s)) => Ok(s),
            Ok(other) => Err(format!(
                "binding {name}: {field} {src:?} is {other}, not a string"
            )),
            Err(e) => Err(format!("binding {name}: {field} {src:?}: {e}")),
        }
    };
    let m = &submit["metadata"];
    if let Some(n) = m["name"].as_str().filter(|n| !n.is_empty()) {
        metadata["name"] = json!(string_of("metadata.name", n)?);
        metadata.as_object_mut().map(|o| o.remove("generateName"));
    } else if let Some(g) = m["generateName"].as_str().filter(|g| !g.is_empty()) {
        metadata["generateName"] = json!(string_of("metadata.generateName", g)?);
    }
    for part in ["labels", "annotations"] {
        for (k, v) in m[part].as_object().into_iter().flatten() {
            let v = v.as_str().unwrap_or_default();
            metadata[part][k] = json!(string_of(&format!("metadata.{part}[{k:?}]"), v)?);
        }
    }
    let mut parameters = Vec::new();
    for p in submit
        .pointer("/arguments/parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let pname = p["name"].as_str().unwrap_or("?");
        let src = p.pointer("/valueFrom/event").and_then(Value::as_str).ok_or_else(|| {
            format!("binding {name}: malformed workflow template parameter \"{pname}\": valueFrom is nil")
        })?;
        let v = template_eval::expr::eval(src, env).map_err(|e| {
            format!("binding {name}: failed to evaluate workflow template parameter \"{pname}\" expression: {e}")
        })?;
        // As Argo: the value's JSON, with a string's quotes dropped.
        let text = match v {
            Value::String(s) => s,
            other => other.to_string(),
        };
        parameters.push(json!({"name": pname, "value": text}));
    }
    let mut spec = json!({"workflowTemplateRef": {"name": template}});
    if cluster {
        spec["workflowTemplateRef"]["clusterScope"] = json!(true);
    }
    if !parameters.is_empty() {
        spec["arguments"] = json!({"parameters": parameters});
    }
    Ok(Some(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": metadata,
        "spec": spec,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding() -> Value {
        json!({"metadata": {"name": "on-push"}, "spec": {
            "event": {"selector": "payload.ref == 'main' && metadata['x-github-event'] == ['push'] && discriminator == 'ci'"},
            "submit": {"workflowTemplateRef": {"name": "build"},
                       "arguments": {"parameters": [
                           {"name": "commit", "valueFrom": {"event": "payload.sha"}},
                           {"name": "count", "valueFrom": {"event": "len(payload.files)"}}]}}}})
    }

    #[test]
    fn a_matching_event_submits_the_template_with_its_parameters() {
        let env = environment(
            "default",
            "ci",
            &[
                ("X-GitHub-Event".into(), "push".into()),
                ("Authorization".into(), "Bearer secret".into()),
            ],
            json!({"ref": "main", "sha": "abc123", "files": ["a", "b"]}),
        );
        assert!(env["metadata"].get("authorization").is_none());
        let wf = dispatch(&binding(), &env).unwrap().unwrap();
        assert_eq!(wf["metadata"]["generateName"], "build-");
        assert_eq!(
            wf["metadata"]["labels"]["workflows.argoproj.io/workflow-event-binding"],
            "on-push"
        );
        assert_eq!(wf["spec"]["workflowTemplateRef"]["name"], "build");
        assert_eq!(
            wf["spec"]["arguments"]["parameters"],
            json!([{"name": "commit", "value": "abc123"}, {"name": "count", "value": "2"}])
        );
        let other = environment("default", "ci", &[], json!({"ref": "dev"}));
        assert_eq!(dispatch(&binding(), &other).unwrap(), None);
        let mut bad = binding();
        bad["spec"]["event"]["selector"] = json!("payload.ref");
        assert!(dispatch(&bad, &env).unwrap_err().contains("not a boolean"));
    }
}
