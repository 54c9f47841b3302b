//! Suspend templates and `argo suspend` / `argo resume`: which suspend nodes wait for a
//! person, and resuming them (all, or one by id, name or display name) with the values for
//! their `supplied` output parameters.
//!
//! A suspend node whose supplied parameter has neither a value nor a default stays
//! suspended and says why.

use std::collections::BTreeMap;
use std::sync::Arc;

use workflow_model::{Outputs, Template};

use crate::state::Engine;
use crate::status::{NodeStatus, NodeType, Phase, Time};

impl Engine {
    /// Suspend nodes waiting for a manual resume.
    pub fn waiting_suspend_nodes(&self) -> Vec<(&NodeStatus, Option<Arc<Template>>)> {
        self.nodes
            .iter()
            .filter(|n| {
                n.status.node_type == NodeType::Suspend
                    && n.status.phase == Phase::Running
                    && n.deadline.is_none()
            })
            .map(|n| (&n.status, n.template.clone()))
            .collect()
    }

    pub(crate) fn resume(
        &mut self,
        selector: Option<String>,
        supplied: BTreeMap<String, String>,
        now: Time,
    ) {
        if selector.is_none() {
            self.suspended = false;
        }
        for i in 0..self.nodes.len() {
            let st = &self.nodes[i].status;
            if st.node_type != NodeType::Suspend || st.phase != Phase::Running {
                continue;
            }
            if let Some(sel) = &selector {
                if &st.id != sel && &st.name != sel && &st.display_name != sel {
                    continue;
                }
            }
            let t = self.nodes[i].template.clone();
            let mut outputs = Outputs::default();
            let mut error = None;
            if let Some(t) = t {
                for p in &t.outputs.parameters {
                    let mut p = p.clone();
                    let is_supplied = p.value_from.as_ref().is_some_and(|v| v.supplied.is_some());
                    if is_supplied {
                        match supplied.get(&p.name).cloned().or_else(|| {
                            p.value_from
                                .as_ref()
                                .and_then(|v| v.default.as_ref())
                                .map(|d| d.0.clone())
                        }) {
                            Some(v) => {
                                p.value = Some(workflow_model::AnyString(v));
                                p.value_from = None;
                            }
                            None => {
                                error = Some(format!("raw output parameter '{}' has not been set and does not have a default value", p.name));
                                continue;
                            }
                        }
                    }
                    outputs.parameters.push(p);
                }
            }
            if let Some(e) = error {
                self.nodes[i].status.message = Some(e);
                continue;
            }
            if !outputs.is_empty() {
                self.nodes[i].status.outputs = Some(outputs);
            }
            self.nodes[i].deadline = None;
            self.finish(i, Phase::Succeeded, Some("Resumed".into()), now);
        }
    }
}
