//! The node table: making nodes (Argo's ids from the workflow and node names), linking
//! children and outbound nodes as Argo draws them, fulfilling nodes and telling their owners.
//!
//! Invariants kept here: a node's phase only moves forward and `finish` is a no-op on a
//! fulfilled node; each fulfilled node is queued for its owner exactly once; a node made
//! twice under one name is the same node (`new_node` returns the existing index).

use workflow_model::TemplateRef;

use crate::state::{Engine, Frame, Node, Owner, TScope};
use crate::status::{node_id, NodeStatus, NodeType, Phase, Time};

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_node(
        &mut self,
        name: &str,
        display: &str,
        ty: NodeType,
        tname: Option<&str>,
        tref: Option<TemplateRef>,
        tscope: &TScope,
        boundary: Option<String>,
        owner: Owner,
        frame: Frame,
        now: Time,
    ) -> usize {
        let id = node_id(&self.name, name);
        if let Some(&i) = self.by_id.get(&id) {
            return i;
        }
        let status = NodeStatus {
            id: id.clone(),
            name: name.to_string(),
            display_name: display.to_string(),
            node_type: ty,
            template_name: tname.map(str::to_string),
            template_ref: tref,
            template_scope: tscope.label(&self.namespace),
            phase: Phase::Pending,
            boundary_id: boundary,
            message: None,
            started_at: Some(self.start_time(&id, now)),
            finished_at: None,
            inputs: None,
            outputs: None,
            children: Vec::new(),
            outbound_nodes: Vec::new(),
            host_node_name: None,
            memoization_status: None,
        };
        let idx = self.nodes.len();
        self.nodes.push(Node {
            status,
            owner,
            frame,
            template: None,
            deadline: None,
            started: false,
            lock: None,
            memo_key: None,
            pod_name: None,
            metrics: None,
        });
        self.by_id.insert(id, idx);
        self.changed.push(idx);
        idx
    }

    /// Set a node's deadline and index it, so time checks never scan all nodes.
    pub(crate) fn set_deadline(&mut self, i: usize, deadline: Option<Time>) {
        self.nodes[i].deadline = deadline;
        if let Some(d) = deadline {
            self.deadlines.insert((d, i));
        }
    }

    pub(crate) fn add_child(&mut self, parent: usize, child: usize) {
        // Each (parent, child) link is made once by construction; checking the last entry
        // keeps this O(1) for DAG nodes with very many children.
        let id = self.nodes[child].status.id.clone();
        if self.nodes[parent].status.children.last() != Some(&id) {
            self.nodes[parent].status.children.push(id);
        }
    }

    /// Mark a node fulfilled and queue the notification of its owner.
    pub(crate) fn finish(&mut self, i: usize, phase: Phase, message: Option<String>, now: Time) {
        if self.nodes[i].status.phase.fulfilled() {
            return;
        }
        let ended = self.end_time(&self.nodes[i].status.id, phase, now);
        let n = &mut self.nodes[i];
        n.status.phase = phase;
        if message.is_some() {
            n.status.message = message;
        }
        n.status.finished_at = Some(ended);
        if n.metrics.is_some() {
            self.emit_node_metrics(i, false, now);
        }
        let n = &mut self.nodes[i];
        // An ended node never reads its instantiated template again; at 10^5 nodes keeping
        // them costs kilobytes per node.
        n.template = None;
        self.changed.push(i);
        if let Some(lock) = n.lock.take() {
            self.release_lock(&lock);
        }
        if phase == Phase::Succeeded {
            self.memo_save(i, now);
            let outs = self.nodes[i].status.outputs.clone();
            if let Some(o) = outs {
                self.add_global_outputs(&o);
            }
        }
        self.fulfilled.push_back(i);
    }

    /// Argo's outbound nodes: the leaves through which a block's successors connect.
    pub(crate) fn outbound(&self, i: usize) -> Vec<usize> {
        let st = &self.nodes[i].status;
        match st.node_type {
            NodeType::Steps | NodeType::DAG | NodeType::TaskGroup => {
                if st.outbound_nodes.is_empty() {
                    vec![i]
                } else {
                    st.outbound_nodes
                        .iter()
                        .filter_map(|id| self.by_id.get(id).copied())
                        .collect()
                }
            }
            NodeType::Retry => match st.children.last().and_then(|c| self.by_id.get(c)) {
                Some(&c) => self.outbound(c),
                None => vec![i],
            },
            _ => vec![i],
        }
    }

    pub(crate) fn set_outbound(&mut self, block: usize) {
        let ids: Vec<String> = match &self.nodes[block].frame {
            Frame::Steps {
                last_group_node, ..
            } => match last_group_node {
                Some(g) => {
                    let children = self.nodes[*g].status.children.clone();
                    let mut out = Vec::new();
                    for c in children {
                        let ci = self.by_id[&c];
                        for o in self.outbound(ci) {
                            out.push(self.nodes[o].status.id.clone());
                        }
                    }
                    if out.is_empty() {
                        out.push(self.nodes[*g].status.id.clone());
                    }
                    out
                }
                None => Vec::new(),
            },
            Frame::Dag { tasks, targets, .. } => {
                let mut out = Vec::new();
                for &t in targets {
                    if let Some(n) = tasks[t].node {
                        for o in self.outbound(n) {
                            out.push(self.nodes[o].status.id.clone());
                        }
                    }
                }
                out
            }
            Frame::TaskGroup { items, .. } => {
                let mut out = Vec::new();
                for (_, n) in items {
                    if let Some(n) = n {
                        for o in self.outbound(*n) {
                            out.push(self.nodes[o].status.id.clone());
                        }
                    }
                }
                out
            }
            _ => return,
        };
        self.nodes[block].status.outbound_nodes = ids;
    }

    pub(crate) fn notify_owner(&mut self, i: usize, now: Time) {
        match self.nodes[i].owner {
            Owner::Workflow => self.root_done(i, now),
            Owner::WorkflowExit => self.complete_workflow(now),
            Owner::Attempt { retry } => {
                self.pending_retries.push(retry);
            }
            Owner::Step { group, slot } => self.step_event(group, slot, now),
            Owner::StepExit { group, slot } => {
                // Exit handlers and hooks of a step.
                let is_hook = self.nodes[i].status.name.contains(".hooks.");
                if is_hook {
                    if let Frame::StepGroup { slots, .. } = &mut self.nodes[group].frame {
                        slots[slot].hooks_running = slots[slot].hooks_running.saturating_sub(1);
                    }
                }
                self.step_event(group, slot, now)
            }
            Owner::Task { dag, task } => self.task_event(dag, task, now),
            Owner::TaskExit { dag, task } => {
                if self.nodes[i].status.name.contains(".hooks.") {
                    if let Frame::Dag { tasks, .. } = &mut self.nodes[dag].frame {
                        tasks[task].hooks_running = tasks[task].hooks_running.saturating_sub(1);
                    }
                }
                self.task_event(dag, task, now)
            }
            Owner::TaskItem { group, .. } => self.task_item_done(group, now),
            Owner::Hook => self.workflow_hook_ended(now),
            Owner::Nobody => {}
        }
        if self.nodes[i].status.node_type == NodeType::StepGroup {
            // Step groups are finished by their own logic, nothing to notify.
        }
    }
}
