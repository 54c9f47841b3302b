//! The engine's one door: [`Engine::new`] builds a workflow's state, [`Engine::start`] and
//! [`Engine::handle`] take the time and an event and return the actions, and the read-only
//! views (`phase`, `nodes`, `to_json`, `next_wakeup`) let the shell show and schedule it.
//!
//! Every state change starts here and ends in `drain`, which runs the work queue (owners to
//! notify, retries to reconsider, pods to start) until it is empty — so an event's whole
//! consequence is in the actions it returns, and no work is left half done between calls.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use template_eval::Vars;
use workflow_model::{Outputs, Parameter, WorkflowObject, WorkflowSpec};

use crate::maps::{HashMap, HashSet};
use crate::protocol::{Action, EngineConfig, EngineError, EngineLimits, Event, TemplateStore};
use crate::scope::ArtMap;
use crate::state::{err, Ctx, Engine, Holder, Owner, TScope};
use crate::status::{format_time, NodeStatus, Phase, Time};
use crate::templates::{merge_arguments, with_template_defaults};

impl Engine {
    /// Build the engine for one workflow. `name` is the workflow's final name (the shell
    /// generates it from `generateName`), `overrides` are `-p name=value` arguments.
    pub fn new(
        wf: &WorkflowObject,
        name: &str,
        uid: &str,
        overrides: &[(String, String)],
        store: Arc<TemplateStore>,
        config: EngineConfig,
        now: Time,
    ) -> Result<Engine, EngineError> {
        let mut spec = wf.spec.clone();
        let empty = json!({});
        let mut spec_json = std::borrow::Cow::Borrowed(wf.raw.get("spec").unwrap_or(&empty));
        // workflowTemplateRef: the referenced template's spec, with the workflow's own fields on top.
        if let Some(r) = &spec.workflow_template_ref {
            let (map, kind) = if r.cluster_scope {
                (&store.cluster_workflow_templates, "ClusterWorkflowTemplate")
            } else {
                (&store.workflow_templates, "WorkflowTemplate")
            };
            let base = map
                .get(&r.name)
                .ok_or_else(|| err(format!("{kind}.argoproj.io \"{}\" not found", r.name)))?;
            let mut base_spec = base.raw.get("spec").cloned().unwrap_or(json!({}));
            let own = spec_json.into_owned();
            if let (Value::Object(b), Value::Object(o)) = (&mut base_spec, own) {
                for (k, v) in o {
                    if k == "workflowTemplateRef" {
                        continue;
                    }
                    if k == "arguments" {
                        let merged = merge_arguments(b.get("arguments"), &v);
                        b.insert(k, merged);
                    } else {
                        b.insert(k, v);
                    }
                }
            }
            spec_json = std::borrow::Cow::Owned(base_spec);
            spec = workflow_model::decode(&spec_json)
                .map_err(|(p, m)| err(format!("spec.{p}: {m}")))?;
            spec.workflow_template_ref = None;
        }
        // Argument overrides from the command line.
        for (k, v) in overrides {
            match spec.arguments.parameters.iter_mut().find(|p| &p.name == k) {
                Some(p) => {
                    p.value = Some(workflow_model::AnyString(v.clone()));
                    p.value_from = None;
                }
                None => spec.arguments.parameters.push(Parameter {
                    name: k.clone(),
                    value: Some(workflow_model::AnyString(v.clone())),
                    ..Default::default()
                }),
            }
        }
        let mut templates = HashMap::default();
        // The workflow's own `spec.templates`, in order, as written: `raw` leaves them out and
        // `to_json` puts them back, so a 10^5-task DAG's JSON is held once, not twice.
        let mut own_templates: Vec<Arc<Value>> = Vec::new();
        let defaults = spec_json.get("templateDefaults").cloned();
        if let Some(Value::Array(ts)) = spec_json.get("templates") {
            for t in ts {
                let original = Arc::new(t.clone());
                if let Some(n) = t.get("name").and_then(Value::as_str) {
                    let used = match &defaults {
                        Some(d) => Arc::new(with_template_defaults(t, d)),
                        None => original.clone(),
                    };
                    templates.insert(n.to_string(), used);
                }
                own_templates.push(original);
            }
        }
        // The engine reads templates from `templates` (JSON, decoded on first use); a typed
        // copy of a 10^5-task DAG would only cost memory.
        spec.templates = Vec::new();
        let meta = &wf.metadata;
        let mut raw = wf.raw.clone();
        // Left in place as `null`, so that `to_json` puts the templates back where they were.
        let templates_taken = spec.workflow_template_ref.is_none()
            && raw
                .pointer_mut("/spec/templates")
                .filter(|t| t.is_array())
                .map(Value::take)
                .is_some();
        let own_templates = templates_taken.then_some(own_templates);
        if let Some(m) = raw.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("name".into(), Value::String(name.into()));
            m.insert(
                "namespace".into(),
                Value::String(if meta.namespace.is_empty() {
                    "default".into()
                } else {
                    meta.namespace.clone()
                }),
            );
            m.insert("uid".into(), Value::String(uid.into()));
            m.insert("creationTimestamp".into(), Value::String(format_time(&now)));
        }
        let mut e = Engine {
            name: name.to_string(),
            namespace: if meta.namespace.is_empty() {
                "default".into()
            } else {
                meta.namespace.clone()
            },
            uid: uid.to_string(),
            raw,
            own_templates,
            spec,
            templates,
            store,
            limits: config.limits.clone(),
            config,
            limit_stop: false,
            created: now,
            phase: Phase::Pending,
            message: None,
            started_at: None,
            finished_at: None,
            nodes: Vec::new(),
            by_id: HashMap::default(),
            globals: Vars::new(),
            global_artifacts: ArtMap::new(),
            global_outputs: Outputs::default(),
            fulfilled: VecDeque::new(),
            actions: Vec::new(),
            pod_queue: VecDeque::new(),
            running_pods: 0,
            deadline: None,
            shutdown: None,
            suspended: false,
            locks: HashMap::default(),
            memo: HashMap::default(),
            exit_node: None,
            wf_hooks_fired: HashSet::default(),
            wf_hook_nodes: Vec::new(),
            awaiting_hooks: false,
            timers: Vec::new(),
            decoded: std::cell::RefCell::new(HashMap::default()),
            deadlines: std::collections::BTreeSet::new(),
            changed: Vec::new(),
            pending_retries: Vec::new(),
            root_phase: None,
            template_error: None,
            metrics_error: None,
            kept: Default::default(),
        };
        e.init_globals()?;
        Ok(e)
    }

    /// Set the limits this workflow runs under (before `start`; a replay must set the same).
    pub fn set_limits(&mut self, limits: EngineLimits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> &EngineLimits {
        &self.limits
    }

    /// The workflow's spec (the shell reads pod defaults such as `schedulerName` from it).
    pub fn spec(&self) -> &WorkflowSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the workflow started (its first `start`).
    pub fn started_at(&self) -> Option<Time> {
        self.started_at
    }

    /// When the workflow finished, once it has.
    pub fn finished_at(&self) -> Option<Time> {
        self.finished_at
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    pub fn is_finished(&self) -> bool {
        self.finished_at.is_some()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeStatus> {
        self.nodes.iter().map(|n| &n.status)
    }

    pub fn node(&self, id: &str) -> Option<&NodeStatus> {
        self.by_id.get(id).map(|i| &self.nodes[*i].status)
    }

    /// The earliest time the engine wants a `Tick`.
    pub fn next_wakeup(&self) -> Option<Time> {
        let mut t: Option<Time> = self.timers.iter().map(|(t, _)| *t).min();
        if let Some(d) = self.deadline {
            if !self.is_finished() {
                t = Some(t.map_or(d, |x| x.min(d)));
            }
        }
        // The first live entry; stale ones (ended nodes) only cause a harmless early tick.
        if let Some((d, _)) = self.deadlines.iter().find(|(d, i)| {
            self.nodes[*i].deadline == Some(*d) && !self.nodes[*i].status.phase.fulfilled()
        }) {
            t = Some(t.map_or(*d, |x| x.min(*d)));
        }
        t
    }

    /// Ids of the nodes whose status changed since the last call (for live views).
    pub fn take_changed(&mut self) -> Vec<String> {
        let mut idx = std::mem::take(&mut self.changed);
        idx.sort_unstable();
        idx.dedup();
        idx.into_iter()
            .map(|i| self.nodes[i].status.id.clone())
            .collect()
    }

    /// Start the workflow: returns the first actions.
    pub fn start(&mut self, now: Time) -> Vec<Action> {
        self.phase = Phase::Running;
        self.started_at = Some(now);
        if let Some(s) = self.spec.active_deadline_seconds {
            self.deadline = Some(crate::deadlines::after(now, crate::deadlines::seconds(s)));
        }
        if self.spec.suspend == Some(true) {
            self.suspended = true;
        }
        if let Some(s) = &self.spec.shutdown {
            self.shutdown = Some(s == "Terminate");
        }
        self.emit_workflow_metrics(true, now);
        let entry = self.spec.entrypoint.clone().unwrap_or_default();
        let ctx = Ctx {
            tscope: TScope::Local,
            boundary: None,
            on_exit: false,
            depth: 0,
        };
        let args = self.spec.arguments.clone();
        let name = self.name.clone();
        self.execute(
            &name,
            &Holder::named(&entry),
            &args,
            &ctx,
            Owner::Workflow,
            None,
            now,
        );
        self.fire_workflow_hooks(now);
        self.drain(now);
        std::mem::take(&mut self.actions)
    }

    /// Apply one event.
    pub fn handle(&mut self, event: Event, now: Time) -> Vec<Action> {
        match event {
            Event::PodRunning { node_id, host } => self.pod_running(&node_id, host, now),
            Event::PodWaiting { node_id, message } => self.pod_waiting(&node_id, message),
            Event::PodDone(r) => self.pod_done(r, now),
            Event::HttpDone {
                node_id,
                status,
                body,
                headers,
                error,
            } => self.http_done(&node_id, status, body, headers, error, now),
            Event::ResourceDone {
                node_id,
                phase_ok,
                message,
                outputs,
            } => self.resource_done(&node_id, phase_ok, message, outputs, now),
            Event::Resume { node, supplied } => self.resume(node, supplied, now),
            Event::Suspend => self.suspended = true,
            Event::Shutdown { terminate } => {
                self.shutdown = Some(terminate);
                self.apply_shutdown(now);
            }
            Event::Tick => {}
        }
        self.check_time(now);
        self.drain(now);
        std::mem::take(&mut self.actions)
    }

    pub(crate) fn drain(&mut self, now: Time) {
        loop {
            if self.limit_stop {
                self.limit_stop = false;
                self.apply_shutdown(now);
                continue;
            }
            if let Some(i) = self.fulfilled.pop_front() {
                self.notify_owner(i, now);
                continue;
            }
            if !self.pending_retries.is_empty() {
                let retries = std::mem::take(&mut self.pending_retries);
                for r in retries {
                    self.retry_step(r, now);
                }
                continue;
            }
            if self.try_start_pods(now) {
                continue;
            }
            break;
        }
    }

    /// The Workflow object with its status, in Argo's JSON shape.
    pub fn to_json(&self) -> Value {
        let mut wf = self.raw.clone();
        if let (Some(own), Some(slot)) = (&self.own_templates, wf.pointer_mut("/spec/templates")) {
            *slot = Value::Array(own.iter().map(|t| (**t).clone()).collect());
        }
        // Argo's `suspend` and `resume` set and clear `spec.suspend`; clients (the UI, `argo
        // get`) read a suspended workflow from there.
        if let Some(spec) = wf.get_mut("spec").and_then(Value::as_object_mut) {
            if self.suspended {
                spec.insert("suspend".into(), Value::Bool(true));
            } else {
                spec.remove("suspend");
            }
            // Likewise `argo stop` / `argo terminate` patch `spec.shutdown`.
            if let Some(terminate) = self.shutdown {
                let strategy = if terminate { "Terminate" } else { "Stop" };
                spec.insert("shutdown".into(), Value::String(strategy.into()));
            }
        }
        let mut nodes = Map::new();
        for n in &self.nodes {
            nodes.insert(
                n.status.id.clone(),
                serde_json::to_value(&n.status).unwrap_or_default(),
            );
        }
        let mut status = json!({"phase": self.phase.as_str(), "nodes": nodes});
        // Argo writes a zero time as `null`, which its own Python SDK refuses (argo-workflows
        // #9122); a time not yet known is left out instead, which every Go client reads alike.
        if let Some(t) = self.started_at {
            status["startedAt"] = Value::String(format_time(&t));
        }
        if let Some(t) = self.finished_at {
            status["finishedAt"] = Value::String(format_time(&t));
        }
        if let Some(m) = &self.message {
            status["message"] = Value::String(m.clone());
        }
        if let Some(e) = &self.metrics_error {
            status["conditions"] =
                json!([{"type": "MetricsError", "status": "True", "message": e}]);
        }
        if !self.global_outputs.is_empty() {
            status["outputs"] = serde_json::to_value(&self.global_outputs).unwrap_or_default();
        }
        let done = self
            .nodes
            .iter()
            .filter(|n| n.pod_name.is_some() && n.status.phase.fulfilled())
            .count();
        let total = self.nodes.iter().filter(|n| n.pod_name.is_some()).count();
        status["progress"] = Value::String(format!("{done}/{total}"));
        if let Value::Object(m) = &mut wf {
            m.insert("status".into(), status);
        }
        wf
    }
}
