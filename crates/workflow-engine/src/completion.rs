//! The workflow's end: the root node's phase, then the workflow's exit handler (with
//! `workflow.status`, `workflow.failures`, `workflow.duration` in scope), then the
//! workflow's own phase and message as Argo sets them.
//!
//! The workflow finishes once, after its exit handler; a `Terminate` shutdown skips it.

use serde_json::{json, Value};

use crate::state::{Ctx, Engine, Holder, Owner, TScope};
use crate::status::{format_time, NodeType, Phase, Time};
use crate::templates::resolve_arguments;

impl Engine {
    pub(crate) fn root_done(&mut self, root: usize, now: Time) {
        let phase = self.nodes[root].status.phase;
        self.root_phase = Some(phase);
        // Hooks on the workflow's status fire now; the exit handler waits for every hook that
        // fired (Argo returns from `operate` until they are fulfilled).
        self.fire_workflow_hooks(now);
        if self.template_error.is_none() && !self.workflow_hooks_done() {
            self.awaiting_hooks = true;
            return;
        }
        self.run_exit_handler(now);
    }

    /// A workflow hook ended: once all have and the root has, the exit handler runs.
    pub(crate) fn workflow_hook_ended(&mut self, now: Time) {
        if self.awaiting_hooks && self.workflow_hooks_done() {
            self.awaiting_hooks = false;
            self.run_exit_handler(now);
        }
    }

    fn run_exit_handler(&mut self, now: Time) {
        let phase = self.root_phase.unwrap_or(Phase::Error);
        let exit = self
            .spec
            .on_exit
            .clone()
            .or_else(|| self.spec.hooks.get("exit").and_then(|h| h.template.clone()));
        let exit = exit.filter(|_| self.shutdown != Some(true) && self.template_error.is_none());
        match exit {
            Some(t) => {
                let mut vars = self.globals.clone();
                vars.insert("workflow.status".into(), phase.as_str().into());
                vars.insert("workflow.failures".into(), self.failures_json());
                let dur = (now - self.started_at.unwrap_or(now)).num_milliseconds() as f64 / 1000.0;
                vars.insert("workflow.duration".into(), format!("{dur}"));
                self.globals = vars;
                let ctx = Ctx {
                    tscope: TScope::Local,
                    boundary: None,
                    on_exit: true,
                    depth: 0,
                };
                let name = format!("{}.onExit", self.name);
                let hook = self
                    .spec
                    .on_exit
                    .is_none()
                    .then(|| self.spec.hooks.get("exit"))
                    .flatten();
                let args = self.exit_arguments(hook);
                let args = resolve_arguments(&args, &self.globals, &self.global_artifacts)
                    .unwrap_or_default();
                let e = self.execute(
                    &name,
                    &Holder::named(&t),
                    &args,
                    &ctx,
                    Owner::WorkflowExit,
                    Some(name.clone()),
                    now,
                );
                self.exit_node = Some(e);
            }
            None => self.complete_workflow(now),
        }
    }

    /// The workflow reached one of its limits: it ends in Error with `message` (the first
    /// limit reached), as when its entry template cannot run.
    pub(crate) fn limit_reached(&mut self, message: &str) {
        if self.template_error.is_none() {
            self.template_error = Some(message.to_string());
        }
    }

    fn failures_json(&self) -> String {
        let mut out = Vec::new();
        for n in &self.nodes {
            let s = &n.status;
            if s.phase.failed_or_error() && s.node_type == NodeType::Pod {
                out.push(json!({
                    "displayName": s.display_name,
                    "message": s.message.clone().unwrap_or_default(),
                    "templateName": s.template_name.clone().unwrap_or_default(),
                    "phase": s.phase.as_str(),
                    "podName": n.pod_name.clone().unwrap_or_default(),
                    "finishedAt": s.finished_at.map(|t| format_time(&t)).unwrap_or_default(),
                }));
            }
        }
        Value::Array(out).to_string()
    }

    pub(crate) fn complete_workflow(&mut self, now: Time) {
        if self.is_finished() {
            return;
        }
        let root_phase = self.root_phase.unwrap_or(Phase::Error);
        let mut phase = match root_phase {
            Phase::Succeeded | Phase::Skipped | Phase::Omitted => Phase::Succeeded,
            Phase::Error => Phase::Error,
            _ => Phase::Failed,
        };
        let mut message = self.nodes.first().and_then(|n| n.status.message.clone());
        if let Some(e) = self.exit_node {
            let ep = self.nodes[e].status.phase;
            if ep.failed_or_error() && phase == Phase::Succeeded {
                phase = Phase::Failed;
                message = self.nodes[e].status.message.clone();
            }
        }
        if let Some(t) = self.shutdown {
            message = Some(format!(
                "Stopped with strategy '{}'",
                if t { "Terminate" } else { "Stop" }
            ));
            if phase == Phase::Succeeded {
                phase = Phase::Failed;
            }
        }
        if self.deadline.is_some_and(|d| now >= d) && phase != Phase::Succeeded {
            message = Some("Step exceeded its deadline".into());
        }
        if let Some(e) = &self.template_error {
            phase = Phase::Error;
            message = Some(e.clone());
        }
        self.phase = phase;
        self.message = message;
        self.finished_at = Some(now);
        self.emit_workflow_metrics(false, now);
    }
}
