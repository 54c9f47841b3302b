//! What a rule reports: a finding with its rule id, severity, the figures behind it and the fix.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    /// What it is about: a rack, a node group, a service, a pool...
    pub subject: String,
    pub message: String,
    /// The figures behind the finding, as computed.
    pub numbers: BTreeMap<String, String>,
    pub fix: String,
}
