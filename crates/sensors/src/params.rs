//! Trigger parameters and the call a firing trigger makes.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::event::{Call, Event};

/// A gjson-style dotted path into a JSON value (`body.metadata.name`, `a.0.b`).
pub fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| match v {
        Value::Object(m) => m.get(k),
        Value::Array(a) => a.get(k.parse::<usize>().ok()?),
        _ => None,
    })
}

/// gjson's `.String()`: a string as it is, anything else as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// sjson's set: `dest` is dotted; numbers index arrays (one past the end, or `-1`, appends);
/// missing objects are made on the way.
pub fn set_path(root: &mut Value, dest: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = dest.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("dest {dest:?}: expected a dotted path"));
    }
    let mut cursor = root;
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if !cursor.is_object() && !cursor.is_array() {
            *cursor = json!({});
        }
        let next = match cursor {
            Value::Array(a) => {
                let index = match part.parse::<i64>() {
                    Ok(-1) => a.len(),
                    Ok(n) if n >= 0 && n as usize <= a.len() => n as usize,
                    _ => {
                        return Err(format!(
                            "dest {dest:?}: {part:?} is not an index of a list of {}",
                            a.len()
                        ))
                    }
                };
                if index == a.len() {
                    a.push(Value::Null);
                }
                &mut a[index]
            }
            Value::Object(m) => m.entry(part.to_string()).or_insert(Value::Null),
            _ => unreachable!("made an object above"),
        };
        if last {
            *next = value;
            return Ok(());
        }
        cursor = next;
    }
    Ok(())
}

/// One parameter's value from the events a firing holds: a string unless `useRawData`
/// asks for the JSON value as it is.
fn resolve(src: &Value, events: &BTreeMap<String, Event>) -> Result<Value, String> {
    let default = src.get("value").cloned();
    let dep = src["dependencyName"].as_str().unwrap_or_default();
    let Some(event) = events.get(dep) else {
        return default.ok_or_else(|| {
            format!("src.dependencyName {dep:?}: no event of that dependency, and no src.value")
        });
    };
    let found = if let Some(key) = src["contextKey"].as_str() {
        at(&event.context(), key).cloned()
    } else if let Some(key) = src["dataKey"].as_str() {
        at(&event.data, key).cloned()
    } else if src.get("dataTemplate").is_some() || src.get("contextTemplate").is_some() {
        return Err("src.dataTemplate and src.contextTemplate (Go templates) are not run by ONYX; use dataKey or contextKey".into());
    } else {
        Some(event.data.clone())
    };
    let raw = src["useRawData"].as_bool().unwrap_or(false);
    match found.or(default) {
        Some(v) if raw || v.is_string() => Ok(v),
        Some(v) => Ok(Value::String(text(&v))),
        None => Err(format!(
            "src: nothing at {:?} in the event of {dep:?}, and no src.value",
            src["dataKey"]
                .as_str()
                .or(src["contextKey"].as_str())
                .unwrap_or("")
        )),
    }
}

/// Apply parameters to an object, as Argo Events applies a trigger's to its resource.
pub fn apply(
    target: &mut Value,
    params: &Value,
    events: &BTreeMap<String, Event>,
    field: &str,
) -> Result<(), String> {
    for (i, p) in params.as_array().into_iter().flatten().enumerate() {
        let value = resolve(&p["src"], events).map_err(|e| format!("{field}[{i}].{e}"))?;
        let dest = p["dest"]
            .as_str()
            .ok_or_else(|| format!("{field}[{i}].dest is required"))?;
        let current = at(target, dest).map(text).unwrap_or_default();
        let value = match p["operation"].as_str().unwrap_or("overwrite") {
            "append" => Value::String(current + &text(&value)),
            "prepend" => Value::String(text(&value) + &current),
            "overwrite" | "" => value,
            other => {
                return Err(format!(
                    "{field}[{i}].operation {other:?}: expected overwrite, append or prepend"
                ))
            }
        };
        set_path(target, dest, value).map_err(|e| format!("{field}[{i}].{e}"))?;
    }
    Ok(())
}

/// A trigger's resource: `source.resource`, or `source.inline` (YAML or JSON text).
fn source_resource(source: &Value, field: &str) -> Result<Value, String> {
    if let Some(r) = source.get("resource") {
        return Ok(r.clone());
    }
    if let Some(text) = source["inline"].as_str() {
        let docs =
            manifest::parse_documents(text).map_err(|e| format!("{field}.source.inline: {e}"))?;
        return docs
            .into_iter()
            .next()
            .map(|d| d.value)
            .ok_or_else(|| format!("{field}.source.inline: empty"));
    }
    Err(format!(
        "{field}.source: expected resource or inline (ONYX does not fetch s3, url, git, file or configmap sources)"
    ))
}

/// The call a firing trigger makes with the events it held.
pub fn call(
    namespace: &str,
    trigger: &Value,
    events: &BTreeMap<String, Event>,
) -> Result<Call, String> {
    let mut template = trigger["template"].clone();
    apply(&mut template, &trigger["parameters"], events, "parameters")?;
    if let Some(http) = template.get("http") {
        let mut http = http.clone();
        let own = http["parameters"].clone();
        apply(&mut http, &own, events, "http.parameters")?;
        let url = http["url"].as_str().ok_or("http.url is required")?;
        let mut body = json!({});
        apply(&mut body, &http["payload"], events, "http.payload")?;
        return Ok(Call::Http {
            url: url.into(),
            method: http["method"].as_str().unwrap_or("POST").into(),
            headers: http["headers"].as_object().cloned().unwrap_or_default(),
            body,
        });
    }
    for (field, default_op, op_ok) in [
        ("argoWorkflow", "submit", "submit"),
        ("k8s", "create", "create"),
    ] {
        let Some(t) = template.get(field) else {
            continue;
        };
        let op = t["operation"].as_str().unwrap_or(default_op);
        if op != op_ok {
            return Err(format!(
                "{field}.operation {op:?}: ONYX runs {op_ok:?} (the default)"
            ));
        }
        let mut resource = source_resource(&t["source"], field)?;
        if resource["kind"] != "Workflow" {
            return Err(format!(
                "{field}.source: expected a Workflow, got kind {}",
                resource["kind"]
            ));
        }
        apply(
            &mut resource,
            &t["parameters"],
            events,
            &format!("{field}.parameters"),
        )?;
        if let Some(ns) = resource["metadata"]["namespace"].as_str() {
            if !ns.is_empty() && ns != namespace {
                return Err(format!(
                    "{field}.source: the workflow's namespace {ns:?} is not the sensor's {namespace:?}"
                ));
            }
        }
        return Ok(Call::Submit {
            namespace: namespace.into(),
            workflow: resource,
        });
    }
    if template.get("log").is_some() {
        let said: Map<String, Value> = events
            .iter()
            .map(|(d, e)| (d.clone(), json!({"context": e.context(), "data": e.data})))
            .collect();
        return Ok(Call::Log {
            message: Value::Object(said).to_string(),
        });
    }
    Err("ONYX runs http, argoWorkflow, k8s (Workflows) and log triggers".into())
}
