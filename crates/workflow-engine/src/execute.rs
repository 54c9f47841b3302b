//! Running a template: `execute` makes (or finds) the node for a step, task, hook or exit
//! handler and starts it — a retry node when the template retries, otherwise one instance:
//! a steps or DAG block, a suspend, or a pod-like leaf queued for `pods`.
//!
//! A template that cannot be resolved or instantiated ends its node in `Error` with the
//! reason; it never stops the workflow's other branches.

use std::sync::Arc;

use template_eval::{substitute_json, Vars};
use workflow_model::{Arguments, Template, TemplateKind};

use crate::deadlines::{after, parse_duration, seconds};
use crate::protocol::MAX_DEPTH_MESSAGE;
use crate::scope::{Scope, ScopeVars};
use crate::state::{fix_display, is_pod_kind, Ctx, Engine, Frame, Holder, Instance, Owner};
use crate::status::{pod_name, NodeType, Phase, Time};

/// What `prepare` made of a step, task, hook or exit handler.
enum Prepared {
    /// Its node, which needs nothing more (it could not run, or hit a limit).
    Node(usize),
    /// Its retry node, whose first attempt is to start.
    Retry(usize),
    /// The instance to start.
    Instance(Box<Instance>),
}

/// What an instance's node needs once made.
enum Next {
    Nothing,
    Steps,
    Dag(Arc<Template>, Box<Ctx>),
}

// `execute` → `execute_instance` → steps or DAG → `execute` is the engine's one recursion,
// as deep as templates nest (at most `max_stack_depth`). The functions on it keep small
// frames: the work with many locals is done by `#[inline(never)]` functions that return
// before the recursion goes on, so that the deepest workflow fits a small stack even in an
// unoptimized build.

impl Engine {
    /// Create (or find) the node for running `holder` under `node_name` and start it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn execute(
        &mut self,
        node_name: &str,
        holder: &Holder,
        args: &Arguments,
        ctx: &Ctx,
        owner: Owner,
        display: Option<String>,
        now: Time,
    ) -> usize {
        match self.prepare(node_name, holder, args, ctx, owner, display, now) {
            Prepared::Node(i) => i,
            Prepared::Retry(i) => {
                self.retry_step(i, now);
                i
            }
            Prepared::Instance(instance) => self.execute_instance(instance, now),
        }
    }

    /// Resolve and instantiate the template for `execute`: the node when it cannot run (or
    /// a limit is reached), its retry node, or the instance to start.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn prepare(
        &mut self,
        node_name: &str,
        holder: &Holder,
        args: &Arguments,
        ctx: &Ctx,
        owner: Owner,
        display: Option<String>,
        now: Time,
    ) -> Prepared {
        let display = display.unwrap_or_else(|| {
            if node_name == self.name {
                self.name.clone()
            } else {
                node_name
                    .rsplit('.')
                    .next()
                    .unwrap_or(node_name)
                    .to_string()
            }
        });
        let display = fix_display(node_name, &display);
        // Argo's `executeTemplate`: the stack depth grows first; at `maxStackDepth` the node
        // is made (Skipped, as one that never ran) and errors, and so does the workflow. The
        // node count is held the same way.
        let depth = ctx.depth + 1;
        let too_deep = depth >= self.limits.max_stack_depth;
        let too_many = !too_deep && self.nodes.len() >= self.limits.max_nodes;
        if too_deep || too_many {
            let message = if too_deep {
                MAX_DEPTH_MESSAGE.to_string()
            } else {
                format!(
                    "the workflow would have more than {} nodes, the most it may have (max_nodes)",
                    self.limits.max_nodes
                )
            };
            let i = self.new_node(
                node_name,
                &display,
                NodeType::Skipped,
                holder.template.as_deref(),
                holder.template_ref.clone(),
                &ctx.tscope,
                ctx.boundary.clone(),
                owner,
                Frame::Leaf,
                now,
            );
            self.finish(i, Phase::Error, Some(message.clone()), now);
            self.limit_reached(&message);
            if too_many {
                // Out of nodes: nothing more may start anywhere in the workflow (`drain`
                // kills what runs, as a terminate does).
                self.shutdown = Some(true);
                self.limit_stop = true;
            }
            return Prepared::Node(i);
        }
        let (tmpl, tscope, tname, tref) = match self.resolve(holder, &ctx.tscope) {
            Ok(r) => r,
            Err(e) => {
                let i = self.new_node(
                    node_name,
                    &display,
                    NodeType::Skipped,
                    holder.template.as_deref(),
                    holder.template_ref.clone(),
                    &ctx.tscope,
                    ctx.boundary.clone(),
                    owner,
                    Frame::Leaf,
                    now,
                );
                self.finish(i, Phase::Error, Some(e), now);
                return Prepared::Node(i);
            }
        };
        let tname_opt = if tname.is_empty() {
            None
        } else {
            Some(tname.as_str())
        };
        let (body, t, inputs) = match self.instantiate(&tmpl, args, node_name, &tname) {
            Ok(r) => r,
            Err(e) => {
                let i = self.new_node(
                    node_name,
                    &display,
                    NodeType::Pod,
                    tname_opt,
                    tref,
                    &tscope,
                    ctx.boundary.clone(),
                    owner,
                    Frame::Leaf,
                    now,
                );
                self.finish(i, Phase::Error, Some(e), now);
                return Prepared::Node(i);
            }
        };
        let retry = t.retry_strategy.clone().or_else(|| {
            if t.kind().is_some_and(is_pod_kind) {
                self.spec.retry_strategy.clone()
            } else {
                None
            }
        });
        let inner_ctx = Ctx {
            tscope: tscope.clone(),
            boundary: ctx.boundary.clone(),
            on_exit: ctx.on_exit,
            depth,
        };
        if let Some(_rs) = retry {
            let frame = Frame::Retry {
                template: Arc::new(body),
                ctx: Box::new(inner_ctx),
                tname: tname.clone(),
                attempts: Vec::new(),
                wait_until: None,
            };
            let i = self.new_node(
                node_name,
                &display,
                NodeType::Retry,
                tname_opt,
                tref,
                &tscope,
                ctx.boundary.clone(),
                owner,
                frame,
                now,
            );
            if !inputs.parameters.is_empty() || !inputs.artifacts.is_empty() {
                self.nodes[i].status.inputs = Some(inputs);
            }
            self.nodes[i].status.phase = Phase::Running;
            return Prepared::Retry(i);
        }
        Prepared::Instance(Box::new(Instance {
            node_name: node_name.to_string(),
            display,
            body: Arc::new(body),
            template: t,
            inputs,
            tname,
            tref,
            ctx: inner_ctx,
            owner,
            retries: None,
        }))
    }

    /// Start one instance of an instantiated template (an attempt, or the node itself).
    pub(crate) fn execute_instance(&mut self, instance: Box<Instance>, now: Time) -> usize {
        let (i, next) = self.make_instance(instance, now);
        match next {
            Next::Nothing => {}
            Next::Steps => self.start_step_group(i, now),
            Next::Dag(t, ctx) => self.start_dag(i, t, &ctx, now),
        }
        i
    }

    /// The node of an instance, and what it needs to start.
    #[inline(never)]
    fn make_instance(&mut self, instance: Box<Instance>, now: Time) -> (usize, Next) {
        let Instance {
            node_name,
            display,
            body,
            template: mut t,
            inputs,
            tname,
            tref,
            ctx,
            owner,
            retries,
        } = *instance;
        let (node_name, display, tname, ctx) = (&node_name, &display, tname.as_str(), &ctx);
        let tname_opt = if tname.is_empty() { None } else { Some(tname) };
        let kind = t.kind();
        let ty = match kind {
            Some(TemplateKind::Steps) => NodeType::Steps,
            Some(TemplateKind::Dag) => NodeType::DAG,
            Some(TemplateKind::Suspend) => NodeType::Suspend,
            Some(TemplateKind::Http) => NodeType::HTTP,
            Some(TemplateKind::Plugin) => NodeType::Plugin,
            _ => NodeType::Pod,
        };
        let pod_name = pod_name(&self.name, node_name, tname);
        if retries.is_some() {
            // An attempt's pod name and retry count are known only now.
            let mut vars = Vars::new();
            vars.insert("pod.name".into(), pod_name.clone());
            vars.insert("node.name".into(), node_name.to_string());
            if let Some(r) = retries {
                vars.insert("retries".into(), r.to_string());
            }
            if let Ok(v) = substitute_json(&body, &vars, true) {
                if let Ok(nt) = workflow_model::decode::<Template>(&v) {
                    t = nt;
                }
            }
        }
        let i = self.new_node(
            node_name,
            display,
            ty,
            tname_opt,
            tref,
            &ctx.tscope,
            ctx.boundary.clone(),
            owner,
            Frame::Leaf,
            now,
        );
        if !inputs.parameters.is_empty() || !inputs.artifacts.is_empty() {
            self.nodes[i].status.inputs = Some(inputs);
        }
        if kind.is_some_and(is_pod_kind) {
            self.nodes[i].pod_name = Some(pod_name);
        }
        if let Some(m) = t.metrics.take() {
            self.nodes[i].metrics = Some(m);
            self.emit_node_metrics(i, true, now);
        }
        let Some(kind) = kind else {
            self.finish(i, Phase::Error, Some(format!("template '{tname}' has no container, script, steps, dag, suspend, resource or http")), now);
            return (i, Next::Nothing);
        };
        if let Some(m) = &t.memoize {
            if self.memo_hit(i, m, now) {
                return (i, Next::Nothing);
            }
        }
        let t = Arc::new(t);
        self.nodes[i].template = Some(t.clone());
        // Template deadlines: `timeout` for any template, `activeDeadlineSeconds` for pods.
        let mut deadline = None;
        if let Some(to) = t.timeout.as_deref().and_then(parse_duration) {
            deadline = Some(after(now, to));
        }
        if let Some(ads) = &t.active_deadline_seconds {
            if let Ok(s) = ads.text().trim().parse::<i64>() {
                let d = after(now, seconds(s));
                deadline = Some(deadline.map_or(d, |x: Time| x.min(d)));
            }
        }
        // Template-level synchronization: wait for the lock before starting.
        if let Some(sync) = &t.synchronization {
            match self.lock_name(sync) {
                Ok(lock) => self.nodes[i].lock = Some(lock),
                Err(e) => {
                    self.finish(i, Phase::Error, Some(e), now);
                    return (i, Next::Nothing);
                }
            }
        }
        match kind {
            TemplateKind::Steps => {
                self.set_deadline(i, deadline);
                self.nodes[i].status.phase = Phase::Running;
                let scope = Scope {
                    vars: ScopeVars::over(self.scope_base(&t)),
                    artifacts: self.scope_artifacts_base(&t),
                };
                let mut sctx = ctx.clone();
                sctx.boundary = Some(self.nodes[i].status.id.clone());
                self.nodes[i].frame = Frame::Steps {
                    template: t.clone(),
                    ctx: Box::new(sctx),
                    scope: Box::new(scope),
                    group: 0,
                    last_group_node: None,
                };
                return (i, Next::Steps);
            }
            TemplateKind::Dag => {
                self.set_deadline(i, deadline);
                self.nodes[i].status.phase = Phase::Running;
                return (i, Next::Dag(t.clone(), Box::new(ctx.clone())));
            }
            TemplateKind::Suspend => {
                self.nodes[i].status.phase = Phase::Running;
                let dur = t
                    .suspend
                    .as_ref()
                    .and_then(|s| s.duration.as_ref())
                    .map(|d| d.text());
                if let Some(d) = dur {
                    match parse_duration(&d) {
                        Some(d) => {
                            self.set_deadline(i, Some(after(now, d)));
                        }
                        None => {
                            self.finish(
                                i,
                                Phase::Error,
                                Some(format!("suspend duration '{d}' is not a duration")),
                                now,
                            );
                        }
                    }
                }
            }
            TemplateKind::Data | TemplateKind::Plugin => {
                self.finish(
                    i,
                    Phase::Error,
                    Some(format!(
                        "{kind:?} templates are not supported by ONYX's local executor"
                    )),
                    now,
                );
            }
            _ => {
                self.set_deadline(i, deadline);
                if let Some(msg) = self.unschedulable(&t) {
                    self.nodes[i].status.message = Some(msg);
                    return (i, Next::Nothing);
                }
                self.pod_queue.push_back(i);
            }
        }
        (i, Next::Nothing)
    }

    fn unschedulable(&self, t: &Template) -> Option<String> {
        if self.config.shell_schedules {
            return None;
        }
        // Argo's rule (`addSchedulingConstraints`): a template's selector replaces the
        // workflow's; the two are not merged.
        let selector = if t.node_selector.is_empty() {
            &self.spec.node_selector
        } else {
            &t.node_selector
        };
        for (k, v) in selector.iter().map(|(k, v)| (k, &v.0)) {
            if self.config.node_labels.get(k) != Some(v) {
                return Some(format!("0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector ({k}={v})"));
            }
        }
        None
    }
}
