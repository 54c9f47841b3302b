//! Argo's `resource` templates (`kubectl create|apply|replace|delete|get|patch` of a
//! manifest, then waiting for its success or failure condition), carried out the same way by
//! every shell over the objects it keeps: `onyx run`'s in-memory objects, the server's store
//! (ConfigMaps, Secrets, and Workflows run as children by the workflow runtime). A shell
//! implements [`Objects`]; [`run`] does the rest. Volcano Jobs are not handled here: the
//! server schedules their replicas as one gang (`workflow_runtime::Executor::start_job`).
//!
//! Without a Kubernetes API server, the kinds kept are ConfigMaps, Secrets and Workflows;
//! others are refused saying so.

#![forbid(unsafe_code)]

mod conditions;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use workflow_model::Template;

pub use conditions::{field, matches, outputs};

/// Kinds kept without Kubernetes, as [`kind_key`] names them.
pub const KINDS: &[&str] = &["configmap", "secret", "workflow"];

/// The annotation that names the resource node that created an object: a node carried out
/// again (after a restart of its shell) finds its own object and adopts it instead of failing
/// with "already exists" or creating a second one.
pub const CREATED_BY: &str = "onyx.io/created-by-node";

/// What a shell keeps objects in.
pub trait Objects {
    /// The object of `kind` (as [`kind_key`] names it) named `name`.
    fn get(&self, kind: &str, name: &str) -> Option<Value>;
    /// Store an object, creating or replacing it (a ConfigMap or Secret; a Workflow only when
    /// patched).
    fn put(&self, kind: &str, obj: Value) -> Result<(), String>;
    /// Delete one object; whether it existed.
    fn remove(&self, kind: &str, name: &str) -> Result<bool, String>;
    /// Delete the objects of `kind` whose labels have every (key, value) pair.
    fn remove_matching(&self, kind: &str, labels: &[(String, String)]) -> Result<usize, String>;
    /// Create a Workflow (its `metadata.name` is set) and start it.
    fn create_workflow(&self, obj: Value) -> Result<(), String>;
    /// Wait until something may have changed, at most `timeout`.
    fn wait_change(&self, timeout: Duration);
    /// Whether the node was stopped (its workflow ended or was deleted): stop waiting.
    fn cancelled(&self) -> bool {
        false
    }
}

/// How a resource node ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
    pub outputs: Vec<(String, String)>,
}

fn refuse(message: String) -> Outcome {
    Outcome {
        ok: false,
        message,
        outputs: Vec::new(),
    }
}

/// A kind as kubectl accepts it (`cm`, `ConfigMaps`, `wf`) in one spelling.
pub fn kind_key(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    match k.as_str() {
        "configmaps" | "cm" => "configmap".into(),
        "secrets" => "secret".into(),
        "workflows" | "wf" => "workflow".into(),
        _ => k,
    }
}

/// A ConfigMap's `data` as strings.
pub fn config_map_data(obj: &Value) -> BTreeMap<String, String> {
    obj.get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let text = v.as_str().map(str::to_string);
                    (k.clone(), text.unwrap_or_else(|| v.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The name `generateName` gets for the node `owner`: five lowercase letters and digits, as
/// Kubernetes' generator draws them, but derived from the node so that the node carried out
/// again names the same object.
pub fn generated_suffix(owner: &str) -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    Sha256::digest(owner.as_bytes())
        .iter()
        .take(5)
        .map(|b| CHARS[*b as usize % CHARS.len()] as char)
        .collect()
}

/// What the template's flags and manifest name: `kubectl delete configmap NAME`,
/// `--selector x=y`, else the manifest's kind and name.
struct Target {
    kind: String,
    name: Option<String>,
    selector: Option<String>,
    /// The kind came from a flag (or the manifest), not defaulted.
    named_kind: bool,
}

fn target(flags: &[String], manifest: Option<&Value>) -> Target {
    let mut flag_kind = None;
    let mut flag_name = None;
    let mut selector = None;
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f == "--selector" || f == "-l" {
            selector = it.next().cloned();
        } else if let Some(s) = f.strip_prefix("--selector=") {
            selector = Some(s.to_string());
        } else if f.starts_with('-') {
            continue;
        } else if flag_kind.is_none() {
            flag_kind = Some(f.clone());
        } else if flag_name.is_none() {
            flag_name = Some(f.clone());
        }
    }
    let manifest_kind = manifest
        .and_then(|m| m.get("kind"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let named_kind = flag_kind.is_some() || manifest_kind.is_some();
    Target {
        kind: flag_kind.or(manifest_kind).unwrap_or_default(),
        name: flag_name.or_else(|| {
            manifest
                .and_then(|m| m.pointer("/metadata/name"))
                .and_then(Value::as_str)
                .map(str::to_string)
        }),
        selector,
        named_kind,
    }
}

fn label_pairs(selector: &str) -> Vec<(String, String)> {
    selector
        .split(',')
        .filter_map(|r| {
            r.split_once('=').map(|(k, v)| {
                (
                    k.trim().trim_end_matches('=').to_string(),
                    v.trim().trim_start_matches('=').to_string(),
                )
            })
        })
        .collect()
}

/// Whether `obj` was made by the node `owner`.
fn made_by(obj: &Value, owner: &str) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(CREATED_BY))
        .and_then(Value::as_str)
        == Some(owner)
}

/// Carry out the resource template `t` of the workflow `workflow`, for the node `owner`
/// (`WORKFLOW-UID/NODE-ID`, which names what it creates). Blocks while it waits for the
/// template's conditions, until `deadline` or [`Objects::cancelled`].
pub fn run(
    objects: &dyn Objects,
    t: &Template,
    workflow: &str,
    owner: &str,
    deadline: Option<Instant>,
) -> Outcome {
    let Some(r) = &t.resource else {
        return refuse("not a resource template".into());
    };
    // Stopped before it began (it waited its turn): do nothing at all.
    if objects.cancelled() {
        return refuse("stopped".into());
    }
    let manifest: Option<Value> = match r.manifest.as_deref() {
        Some(m) => match manifest::parse_documents(m) {
            Ok(docs) => docs.into_iter().next().map(|d| d.value),
            Err(e) => return refuse(format!("resource manifest: {e}")),
        },
        None => None,
    };
    if manifest.as_ref().is_some_and(volcano_job::is_volcano_job) {
        return refuse(
            "a Volcano Job (batch.volcano.sh/v1alpha1) runs under `onyx server`, which schedules its replicas as one gang".into(),
        );
    }
    let action = r.action.as_str();
    let Target {
        kind,
        mut name,
        selector,
        named_kind,
    } = target(&r.flags, manifest.as_ref());
    let key = kind_key(&kind);
    if (action != "patch" || named_kind) && !KINDS.contains(&key.as_str()) {
        return refuse(format!(
            "resource kind '{kind}' cannot be honoured without Kubernetes; ONYX keeps ConfigMaps, Secrets and Workflows"
        ));
    }
    match action {
        "create" | "apply" | "replace" => {
            let Some(mut obj) = manifest.clone() else {
                return refuse("resource action needs a manifest".into());
            };
            if obj.pointer("/metadata/name").is_none() {
                if let Some(g) = obj
                    .pointer("/metadata/generateName")
                    .and_then(Value::as_str)
                {
                    obj["metadata"]["name"] = json!(format!("{g}{}", generated_suffix(owner)));
                }
            }
            let Some(n) = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_string)
            else {
                return refuse(
                    "resource manifest: metadata.name or generateName is required".into(),
                );
            };
            if !obj["metadata"]["annotations"].is_object() {
                obj["metadata"]["annotations"] = json!({});
            }
            obj["metadata"]["annotations"][CREATED_BY] = json!(owner);
            let existing = objects.get(&key, &n);
            let ours = existing.as_ref().is_some_and(|o| made_by(o, owner));
            if action == "create" && existing.is_some() && !ours {
                let what = if key == "workflow" {
                    "workflows.argoproj.io".to_string()
                } else {
                    key.clone()
                };
                return refuse(format!("{what} \"{n}\" already exists"));
            }
            if key == "workflow" {
                if r.set_owner_reference == Some(true) {
                    obj["metadata"]["ownerReferences"] = json!([{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": workflow}]);
                }
                if existing.is_none() {
                    if let Err(e) = objects.create_workflow(obj) {
                        return refuse(e);
                    }
                }
            } else if !ours {
                if let Err(e) = objects.put(&key, obj) {
                    return refuse(e);
                }
            }
            name = Some(n);
        }
        "delete" => {
            let done = match (&selector, &name) {
                (Some(sel), _) => objects.remove_matching(&key, &label_pairs(sel)).map(|_| ()),
                (None, Some(n)) => match objects.remove(&key, n) {
                    Ok(false) if !r.flags.iter().any(|f| f == "--ignore-not-found") => {
                        Err(format!("{key} \"{n}\" not found"))
                    }
                    other => other.map(|_| ()),
                },
                (None, None) => Err("resource delete: no object named".into()),
            };
            return match done {
                Ok(()) => Outcome {
                    ok: true,
                    message: String::new(),
                    outputs: Vec::new(),
                },
                Err(e) => refuse(e),
            };
        }
        "get" => {}
        "patch" => {
            let n = name.clone().unwrap_or_else(|| workflow.to_string());
            let k = if kind.is_empty() {
                "workflow".to_string()
            } else {
                key.clone()
            };
            let mut obj = objects
                .get(&k, &n)
                .unwrap_or_else(|| json!({"kind": kind, "metadata": {"name": n}}));
            match &manifest {
                Some(Value::Array(ops)) => {
                    for op in ops {
                        apply_json_patch_op(&mut obj, op);
                    }
                }
                Some(p) => merge(&mut obj, p),
                None => {}
            }
            if let Err(e) = objects.put(&k, obj) {
                return refuse(e);
            }
            name = Some(n);
        }
        other => return refuse(format!("unknown resource action '{other}'")),
    }
    let name = name.unwrap_or_default();
    let success = r.success_condition.clone().filter(|s| !s.trim().is_empty());
    let failure = r.failure_condition.clone().filter(|s| !s.trim().is_empty());
    loop {
        if objects.cancelled() {
            return refuse("stopped".into());
        }
        let Some(obj) = objects.get(&key, &name) else {
            if action == "get" && success.is_none() {
                return refuse(format!("{key} \"{name}\" not found"));
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return refuse("timed out waiting for the resource".into());
            }
            objects.wait_change(Duration::from_millis(500));
            continue;
        };
        if let Some(f) = &failure {
            if matches(&obj, f) {
                return refuse(format!("failure condition '{f}' met"));
            }
        }
        if success.as_ref().is_none_or(|s| matches(&obj, s)) {
            return match outputs(&obj, t) {
                Ok(outputs) => Outcome {
                    ok: true,
                    message: String::new(),
                    outputs,
                },
                Err(e) => refuse(e),
            };
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return refuse("timed out waiting for the success condition".into());
        }
        objects.wait_change(Duration::from_millis(500));
    }
}

/// A JSON merge patch (RFC 7386): objects merge, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// One operation of a JSON patch (RFC 6902): `add`, `replace` and `remove`.
fn apply_json_patch_op(obj: &mut Value, op: &Value) {
    let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
    let parts: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        cur = m.entry(p.clone()).or_insert(json!({}));
    }
    let Some(m) = cur.as_object_mut() else { return };
    match op.get("op").and_then(Value::as_str) {
        Some("add") | Some("replace") => {
            m.insert(
                last.clone(),
                op.get("value").cloned().unwrap_or(Value::Null),
            );
        }
        Some("remove") => {
            m.remove(last);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
