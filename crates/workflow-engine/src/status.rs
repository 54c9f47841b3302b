//! Workflow and node status in Argo's JSON shape.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use workflow_model::{Arguments, Outputs, TemplateRef};

pub type Time = DateTime<Utc>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Skipped,
    Failed,
    Error,
    Omitted,
}

impl Phase {
    /// Argo's `Fulfilled`: nothing more will happen to the node.
    pub fn fulfilled(self) -> bool {
        self.completed() || matches!(self, Phase::Skipped | Phase::Omitted)
    }
    /// Argo's `Completed`: it ran and ended (skipped and omitted nodes did not).
    pub fn completed(self) -> bool {
        self.failed_or_error() || self == Phase::Succeeded
    }
    pub fn failed_or_error(self) -> bool {
        matches!(self, Phase::Failed | Phase::Error)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Skipped => "Skipped",
            Phase::Failed => "Failed",
            Phase::Error => "Error",
            Phase::Omitted => "Omitted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NodeType {
    Pod,
    Container,
    Steps,
    StepGroup,
    DAG,
    TaskGroup,
    Retry,
    Skipped,
    Suspend,
    HTTP,
    Plugin,
}

fn ser_time<S: Serializer>(t: &Option<Time>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true)),
        None => s.serialize_none(),
    }
}

pub fn format_time(t: &Time) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub id: String,
    pub name: String,
    pub display_name: String,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    pub template_scope: String,
    pub phase: Phase,
    #[serde(rename = "boundaryID", skip_serializing_if = "Option::is_none")]
    pub boundary_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(serialize_with = "ser_time", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(serialize_with = "ser_time", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Arguments>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Outputs>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound_nodes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_node_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memoization_status: Option<serde_json::Value>,
}

/// Argo's node id: the workflow name for the root, else `<workflow>-<fnv32a(node name)>`.
pub fn node_id(workflow: &str, node_name: &str) -> String {
    if node_name == workflow {
        return workflow.to_string();
    }
    format!("{workflow}-{}", fnv32a(node_name))
}

pub fn fnv32a(s: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in s.as_bytes() {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Argo's v2 pod name: `<workflow>-<template>-<fnv32a(node name)>`, prefix cut to fit 63.
pub fn pod_name(workflow: &str, node_name: &str, template: &str) -> String {
    if workflow == node_name {
        return workflow.to_string();
    }
    let mut prefix = if node_name.contains(".inline") || template.is_empty() {
        workflow.to_string()
    } else {
        format!("{workflow}-{template}")
    };
    let max = 63 - 1 - 10;
    if prefix.len() > max {
        // Go cuts the bytes; a name with a multi-byte character there (which Kubernetes
        // would refuse anyway) is cut before that character instead of panicking.
        let mut cut = max;
        while !prefix.is_char_boundary(cut) {
            cut -= 1;
        }
        prefix.truncate(cut);
    }
    format!("{prefix}-{}", fnv32a(node_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_argo() {
        // fnv32a("hello") = 0x4f9f2cab
        assert_eq!(fnv32a("hello"), 0x4f9f2cab);
        assert_eq!(node_id("wf", "wf"), "wf");
        assert_eq!(node_id("wf", "wf[0]"), format!("wf-{}", fnv32a("wf[0]")));
        assert_eq!(
            pod_name("wf", "wf[0].a", "t"),
            format!("wf-t-{}", fnv32a("wf[0].a"))
        );
    }

    #[test]
    fn pod_names_cut_long_prefixes_at_a_character_boundary() {
        let id = fnv32a("n");
        // 52 bytes fit; a 2-byte character across byte 52 is left out whole.
        let wf = format!("{}é{}", "w".repeat(51), "x".repeat(20));
        assert_eq!(pod_name(&wf, "n", ""), format!("{}-{id}", "w".repeat(51)));
        let wf = "é".repeat(40);
        assert_eq!(pod_name(&wf, "n", "t"), format!("{}-{id}", "é".repeat(26)));
        assert_eq!(
            pod_name(&"a".repeat(60), "n", "t"),
            format!("{}-{id}", "a".repeat(52))
        );
    }

    #[test]
    fn fulfilled_and_completed() {
        assert!(Phase::Skipped.fulfilled() && !Phase::Skipped.completed());
        assert!(Phase::Error.completed() && Phase::Error.failed_or_error());
        assert!(!Phase::Running.fulfilled());
    }
}
