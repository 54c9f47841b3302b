//! How a rule reports: the findings it pushes, and how a finding names a node group.

use cluster_model::NodeGroup;

use crate::finding::{Finding, Severity};

/// Where the rules put their findings.
pub(super) struct Out<'a>(pub(super) &'a mut Vec<Finding>);

impl Out<'_> {
    pub(super) fn push(
        &mut self,
        rule: &'static str,
        severity: Severity,
        subject: impl Into<String>,
        message: impl Into<String>,
        numbers: &[(&str, String)],
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            rule,
            severity,
            subject: subject.into(),
            message: message.into(),
            numbers: numbers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            fix: fix.into(),
        });
    }
}

/// A node group as the report names it: `gpu-r1-01..gpu-r1-08`, or the node's name.
pub(super) fn label(g: &NodeGroup) -> String {
    if g.count <= 1 {
        g.name.clone()
    } else {
        let w = g.count.to_string().len().max(2);
        format!("{}{:0w$}..{}{:0w$}", g.name, 1, g.name, g.count)
    }
}
