//! A workflow's nodes as `argo get` prints them: the tree of steps, tasks, retries and hooks,
//! with template, pod name, duration and message. A pure function of the workflow's JSON, so
//! the CLI prints it and the engine's tests compare whole runs against it
//! (`check(yaml, expect![[...]])`).

use std::collections::HashMap;

use chrono::DateTime;
use serde_json::Value;

pub fn icon(phase: &str) -> &'static str {
    match phase {
        "Succeeded" => "✔",
        "Failed" => "✖",
        "Error" => "⚠",
        "Skipped" | "Omitted" => "○",
        "Running" => "●",
        _ => "◷",
    }
}

pub fn duration(n: &Value) -> String {
    let start = n
        .get("startedAt")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    let end = n
        .get("finishedAt")
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok());
    match (start, end) {
        (Some(s), Some(e)) => {
            let secs = (e - s).num_seconds().max(0);
            if secs >= 60 {
                format!("{}m{}s", secs / 60, secs % 60)
            } else {
                format!("{secs}s")
            }
        }
        _ => String::new(),
    }
}

/// The node tree: STEP, TEMPLATE, PODNAME, DURATION, MESSAGE. Steps and DAG nodes list the
/// nodes of their boundary in start order (step and task groups are not shown), retries list
/// their attempts, and exit handlers and hooks hang under the node they belong to.
pub fn tree(wf: &Value) -> String {
    let Some(nodes) = wf.pointer("/status/nodes").and_then(Value::as_object) else {
        return String::new();
    };
    let root = wf["metadata"]["name"].as_str().unwrap_or_default();
    let mut rows: Vec<[String; 5]> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let view = View::new(nodes);
    view.walk(root, "", true, true, &mut rows, &mut seen);
    let mut extra: Vec<&String> = nodes
        .keys()
        .filter(|k| !seen.contains(k.as_str()) && nodes[k.as_str()]["boundaryID"].is_null())
        .collect();
    extra.sort_by_key(|k| {
        (
            nodes[k.as_str()]["startedAt"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            k.to_string(),
        )
    });
    for k in extra {
        if !seen.contains(k.as_str()) {
            view.walk(k, "", true, true, &mut rows, &mut seen);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max([4, 8, 7, 8][i])
        })
        .collect();
    let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
    let mut out = format!(
        "{}  {}  {}  {}  MESSAGE\n",
        pad("STEP", widths[0]),
        pad("TEMPLATE", widths[1]),
        pad("PODNAME", widths[2]),
        pad("DURATION", widths[3])
    );
    for r in rows {
        let line = format!(
            "{}  {}  {}  {}  {}",
            pad(&r[0], widths[0]),
            pad(&r[1], widths[1]),
            pad(&r[2], widths[2]),
            pad(&r[3], widths[3]),
            r[4]
        );
        out += line.trim_end();
        out += "\n";
    }
    out
}

struct View<'a> {
    nodes: &'a serde_json::Map<String, Value>,
    /// Nodes directly inside each Steps/DAG boundary, in start order.
    members: HashMap<String, Vec<String>>,
}

fn is_attachment(n: &Value) -> bool {
    let name = n["name"].as_str().unwrap_or_default();
    name.ends_with(".onExit") || name.contains(".hooks.")
}

impl<'a> View<'a> {
    fn new(nodes: &'a serde_json::Map<String, Value>) -> View<'a> {
        let mut retry_children = std::collections::HashSet::new();
        for n in nodes.values() {
            if n["type"] == "Retry" {
                for c in n["children"].as_array().into_iter().flatten() {
                    if let Some(c) = c.as_str() {
                        retry_children.insert(c.to_string());
                    }
                }
            }
        }
        let mut members: HashMap<String, Vec<(String, String, String)>> = HashMap::new();
        for (id, n) in nodes {
            let ty = n["type"].as_str().unwrap_or_default();
            if ty == "StepGroup"
                || ty == "TaskGroup"
                || retry_children.contains(id)
                || is_attachment(n)
            {
                continue;
            }
            if let Some(b) = n["boundaryID"].as_str() {
                let key = (
                    n["startedAt"].as_str().unwrap_or_default().to_string(),
                    n["name"].as_str().unwrap_or_default().to_string(),
                    id.clone(),
                );
                members.entry(b.to_string()).or_default().push(key);
            }
        }
        let members = members
            .into_iter()
            .map(|(k, mut v)| {
                v.sort();
                (k, v.into_iter().map(|(_, _, id)| id).collect())
            })
            .collect();
        View { nodes, members }
    }

    fn children(&self, id: &str, n: &Value) -> Vec<String> {
        let ty = n["type"].as_str().unwrap_or_default();
        let mut out: Vec<String> = match ty {
            "Steps" | "DAG" => self.members.get(id).cloned().unwrap_or_default(),
            "Retry" => n["children"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        for c in n["children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if self.nodes.get(c).is_some_and(is_attachment) {
                out.push(c.to_string());
            }
        }
        out
    }

    fn walk(
        &self,
        id: &str,
        prefix: &str,
        last: bool,
        is_root: bool,
        rows: &mut Vec<[String; 5]>,
        seen: &mut std::collections::HashSet<String>,
    ) {
        let Some(n) = self.nodes.get(id) else { return };
        if !seen.insert(id.to_string()) {
            return;
        }
        let phase = n["phase"].as_str().unwrap_or_default();
        let (me, child_prefix) = if is_root {
            (String::new(), String::new())
        } else {
            (
                format!("{prefix}{}", if last { "└─" } else { "├─" }),
                format!("{prefix}{}", if last { "  " } else { "│ " }),
            )
        };
        let pod = if n["type"] == "Pod" {
            pod_name_of(n)
        } else {
            String::new()
        };
        let tname = n["templateName"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                n["templateRef"]["template"].as_str().map(|t| {
                    format!(
                        "{}/{t}",
                        n["templateRef"]["name"].as_str().unwrap_or_default()
                    )
                })
            })
            .unwrap_or_default();
        rows.push([
            format!(
                "{me}{} {}",
                icon(phase),
                n["displayName"].as_str().unwrap_or_default()
            ),
            tname,
            pod,
            duration(n),
            n["message"].as_str().unwrap_or_default().to_string(),
        ]);
        let children = self.children(id, n);
        for (i, c) in children.iter().enumerate() {
            self.walk(c, &child_prefix, i + 1 == children.len(), false, rows, seen);
        }
    }
}

fn pod_name_of(n: &Value) -> String {
    let id = n["id"].as_str().unwrap_or_default();
    let name = n["name"].as_str().unwrap_or_default();
    let tname = n["templateName"]
        .as_str()
        .or_else(|| n["templateRef"]["template"].as_str())
        .unwrap_or_default();
    // The root node's id is the workflow's name; the others' ids are `<workflow>-<hash>`.
    let wf = if id == name {
        id
    } else {
        id.rsplit_once('-').map(|(w, _)| w).unwrap_or(id)
    };
    crate::pod_name(wf, name, tname)
}

/// `argo get`: the header and the node tree.
pub fn summary(wf: &Value) -> String {
    let mut out = String::new();
    let meta = &wf["metadata"];
    let st = &wf["status"];
    let line = |k: &str, v: &str| format!("{:<20} {}\n", format!("{k}:"), v);
    out += &line("Name", meta["name"].as_str().unwrap_or_default());
    out += &line("Namespace", meta["namespace"].as_str().unwrap_or("default"));
    out += &line("Status", st["phase"].as_str().unwrap_or_default());
    if let Some(m) = st["message"].as_str() {
        out += &line("Message", m);
    }
    out += &line(
        "Created",
        meta["creationTimestamp"].as_str().unwrap_or_default(),
    );
    out += &line("Started", st["startedAt"].as_str().unwrap_or_default());
    out += &line("Finished", st["finishedAt"].as_str().unwrap_or_default());
    out += &line("Duration", &duration(st));
    out += &line("Progress", st["progress"].as_str().unwrap_or_default());
    if let Some(Value::Array(ps)) = st.pointer("/outputs/parameters") {
        for p in ps {
            out += &line(
                &format!("Output {}", p["name"].as_str().unwrap_or_default()),
                p["value"].as_str().unwrap_or_default(),
            );
        }
    }
    out += "\n";
    out += &tree(wf);
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// Argo names a workflow's root pod after the workflow (a generated name included), and
    /// other pods `<workflow>-<template>-<hash>`.
    #[test]
    fn pod_names_follow_argos_rule_for_root_and_child_nodes() {
        let root = json!({"id": "ddp-8vrzw", "name": "ddp-8vrzw", "type": "Pod",
                          "templateName": "train"});
        assert_eq!(super::pod_name_of(&root), "ddp-8vrzw");
        let child = json!({"id": "ddp-8vrzw-1234", "name": "ddp-8vrzw[0].a", "type": "Pod",
                           "templateName": "work"});
        assert_eq!(
            super::pod_name_of(&child),
            crate::pod_name("ddp-8vrzw", "ddp-8vrzw[0].a", "work")
        );
        assert!(super::pod_name_of(&child).starts_with("ddp-8vrzw-work-"));
    }
}
