//! What a retry keeps of a workflow that ended (Argo's `FormulateRetryWorkflow`, v3.5.6): a
//! pure function of the ended workflow's status. Succeeded and skipped nodes are kept as they
//! were, except the exit handler's and those a node selector resets (with
//! `restartSuccessful`, and all below them); failed steps, DAGs and groups are kept reset to
//! Running so that their children run again under them; every other failed node is dropped
//! and runs again.

use serde_json::{Map, Value};

use crate::error::RuntimeError;

/// A retry, formulated.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// The status the retried workflow has until it runs: phase Running, started now, with
    /// the kept nodes.
    pub status: Value,
    /// The kept nodes by id, as they are in `status` (the engine's `keep`).
    pub kept: Map<String, Value>,
    /// Pod nodes that run again (their old pods' results are forgotten).
    pub rerun: Vec<Value>,
}

/// A node selector of a retry: `field=value` pairs, all of which a node must match
/// (`displayName=x`, `name=x`, `id=x`, `templateName=x`, `phase=x`).
pub fn parse_selector(selector: &str) -> Result<Vec<(String, String)>, RuntimeError> {
    selector
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    RuntimeError::Invalid(format!(
                        "nodeFieldSelector: expected field=value, got {p:?}"
                    ))
                })
        })
        .collect()
}

fn is_group(n: &Value) -> bool {
    matches!(
        n["type"].as_str(),
        Some("DAG" | "TaskGroup" | "StepGroup" | "Steps")
    )
}

/// Formulate the retry of workflow `name`, whose status (`{"phase": ..., "nodes": ...}`) is
/// `status`, at `now` (RFC 3339).
pub fn formulate(
    name: &str,
    status: &Value,
    restart_successful: bool,
    selector: &[(String, String)],
    now: &str,
) -> Result<Retry, RuntimeError> {
    match status["phase"].as_str().unwrap_or_default() {
        "Failed" | "Error" => {}
        "Succeeded" if restart_successful && !selector.is_empty() => {}
        "Succeeded" => {
            return Err(RuntimeError::Invalid(
                "To retry a succeeded workflow, set the options restartSuccessful and nodeFieldSelector"
                    .into(),
            ))
        }
        other => {
            return Err(RuntimeError::Invalid(format!(
                "Cannot retry a workflow in phase {other}"
            )))
        }
    }
    let empty = Map::new();
    let nodes = status["nodes"].as_object().unwrap_or(&empty);
    // The nodes the selector picks, and everything below them.
    let mut reset: std::collections::HashSet<&str> = Default::default();
    if restart_successful && !selector.is_empty() {
        for (id, n) in nodes {
            if !selector
                .iter()
                .all(|(k, v)| n[k.as_str()].as_str() == Some(v))
            {
                continue;
            }
            let mut queue = vec![id.as_str()];
            while let Some(next) = queue.pop() {
                if reset.insert(next) {
                    if let Some(children) = nodes.get(next).and_then(|c| c["children"].as_array()) {
                        queue.extend(children.iter().filter_map(Value::as_str));
                    }
                }
            }
        }
    }
    let on_exit = format!("{name}.onExit");
    let mut kept = Map::new();
    let mut rerun = Vec::new();
    for (id, n) in nodes {
        let in_exit_handler = n["name"].as_str().is_some_and(|s| s.starts_with(&on_exit));
        let keep = match n["phase"].as_str().unwrap_or_default() {
            "Succeeded" | "Skipped" => {
                (!in_exit_handler && !reset.contains(id.as_str())).then(|| n.clone())
            }
            _ if !in_exit_handler && is_group(n) => {
                let mut again = n.clone();
                if let Some(m) = again.as_object_mut() {
                    m.insert("phase".into(), "Running".into());
                    m.remove("message");
                    m.remove("finishedAt");
                }
                Some(again)
            }
            _ => None,
        };
        match keep {
            Some(k) => {
                kept.insert(id.clone(), k);
            }
            None if n["type"] == "Pod" => rerun.push(n.clone()),
            None => {}
        }
    }
    // A step group or DAG that succeeded runs again when something under it does: it ends
    // when that does, not when it ended before.
    let mut parent: std::collections::HashMap<&str, &str> = Default::default();
    for (id, n) in nodes {
        for c in n["children"].as_array().into_iter().flatten() {
            if let Some(c) = c.as_str() {
                parent.insert(c, id.as_str());
            }
        }
    }
    for start in &reset {
        let mut at = *start;
        while let Some(&up) = parent.get(at) {
            if let Some(m) = kept.get_mut(up).and_then(Value::as_object_mut) {
                if m.get("phase").and_then(Value::as_str) != Some("Running") {
                    m.insert("phase".into(), "Running".into());
                    m.remove("message");
                    m.remove("finishedAt");
                }
            }
            at = up;
        }
    }
    // What the dropped nodes were is gone from their parents too.
    let ids: Vec<String> = kept.keys().cloned().collect();
    for n in kept.values_mut() {
        if let Some(children) = n.get_mut("children").and_then(Value::as_array_mut) {
            children.retain(|c| c.as_str().is_some_and(|c| ids.iter().any(|k| k == c)));
        }
    }
    let mut out = status.as_object().cloned().unwrap_or_default();
    out.insert("phase".into(), "Running".into());
    out.insert("startedAt".into(), now.into());
    out.remove("finishedAt");
    out.remove("message");
    out.insert("nodes".into(), Value::Object(kept.clone()));
    Ok(Retry {
        status: Value::Object(out),
        kept,
        rerun,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ended() -> Value {
        json!({
            "phase": "Failed",
            "message": "child 'w-3' failed",
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": "2026-01-01T00:01:00Z",
            "nodes": {
                "w": {"id": "w", "name": "w", "type": "Steps", "phase": "Failed",
                      "message": "child 'w-3' failed", "startedAt": "2026-01-01T00:00:00Z",
                      "finishedAt": "2026-01-01T00:01:00Z", "children": ["w-1", "w-2"]},
                "w-1": {"id": "w-1", "name": "w[0]", "type": "StepGroup", "phase": "Succeeded",
                        "children": ["w-4"]},
                "w-4": {"id": "w-4", "name": "w[0].ok", "displayName": "ok", "type": "Pod",
                        "phase": "Succeeded", "startedAt": "2026-01-01T00:00:01Z",
                        "outputs": {"result": "fine"}},
                "w-2": {"id": "w-2", "name": "w[1]", "type": "StepGroup", "phase": "Failed",
                        "children": ["w-3"]},
                "w-3": {"id": "w-3", "name": "w[1].flaky", "displayName": "flaky",
                        "type": "Pod", "phase": "Failed"},
                "w-5": {"id": "w-5", "name": "w.onExit", "type": "Pod", "phase": "Succeeded"}
            }
        })
    }

    fn ids(m: &Map<String, Value>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn succeeded_nodes_stay_as_they_were_and_failed_groups_run_again() {
        let r = formulate("w", &ended(), false, &[], "2026-01-02T00:00:00Z").unwrap();
        assert_eq!(ids(&r.kept), ["w", "w-1", "w-4", "w-2"]);
        assert_eq!(r.kept["w-4"], ended()["nodes"]["w-4"], "kept exactly");
        assert_eq!(
            r.kept["w"],
            json!({"id": "w", "name": "w", "type": "Steps", "phase": "Running",
                   "startedAt": "2026-01-01T00:00:00Z", "children": ["w-1", "w-2"]})
        );
        assert_eq!(
            r.kept["w-2"]["children"],
            json!([]),
            "the failed pod is dropped"
        );
        let rerun: Vec<&str> = r.rerun.iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(
            rerun,
            ["w-3", "w-5"],
            "the failed pod and the exit handler run again"
        );
        assert_eq!(r.status["phase"], "Running");
        assert_eq!(r.status["startedAt"], "2026-01-02T00:00:00Z");
        assert!(r.status.get("finishedAt").is_none() && r.status.get("message").is_none());
    }

    #[test]
    fn restart_successful_resets_what_the_selector_picks_and_all_below_it() {
        let sel = parse_selector("name=w[0]").unwrap();
        let r = formulate("w", &ended(), true, &sel, "2026-01-02T00:00:00Z").unwrap();
        assert_eq!(ids(&r.kept), ["w", "w-2"]);
        let rerun: Vec<&str> = r.rerun.iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(rerun, ["w-4", "w-3", "w-5"]);
        // A pod picked alone: the group above it runs again, as Running.
        let sel = parse_selector("displayName=ok").unwrap();
        let r = formulate("w", &ended(), true, &sel, "2026-01-02T00:00:00Z").unwrap();
        assert_eq!(ids(&r.kept), ["w", "w-1", "w-2"]);
        assert_eq!(r.kept["w-1"]["phase"], "Running");
        assert_eq!(r.kept["w-1"]["children"], json!([]));
    }

    #[test]
    fn a_succeeded_workflow_is_retried_only_with_restart_successful_and_a_selector() {
        let mut ok = ended();
        ok["phase"] = json!("Succeeded");
        let refused = formulate("w", &ok, false, &[], "now")
            .unwrap_err()
            .to_string();
        assert_eq!(
            refused,
            "To retry a succeeded workflow, set the options restartSuccessful and nodeFieldSelector"
        );
        let sel = parse_selector("displayName=ok").unwrap();
        assert!(formulate("w", &ok, true, &sel, "now").is_ok());
        let mut running = ended();
        running["phase"] = json!("Running");
        assert_eq!(
            formulate("w", &running, false, &[], "now")
                .unwrap_err()
                .to_string(),
            "Cannot retry a workflow in phase Running"
        );
        assert!(parse_selector("displayName").is_err());
    }
}
