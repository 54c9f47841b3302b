//! Steps templates: groups run one after another, the steps of a group side by side (within
//! the template's `parallelism`), each step's `when` decided before it starts, `failFast`
//! and `continueOn` deciding whether a failed step stops its group.
//!
//! A group is fulfilled only when every step it started is done, its exit handler and
//! hooks included; the steps node ends with the last group or the first failing one.

use std::collections::BTreeMap;

use template_eval::{govaluate, substitute};
use workflow_model::Arguments;

use crate::maps::HashSet;
use crate::state::{continues, Ctx, Engine, Frame, Holder, Owner, StepSlot};
use crate::status::{NodeType, Phase, Time};
use crate::templates::resolve_arguments;

/// A step about to run: what `start_step` hands `execute`.
struct StepStart {
    name: String,
    display: String,
    holder: Holder,
    args: Arguments,
    ctx: Ctx,
}

// `start_step_group` → `pump_step_group` → `start_step` → `execute` is on the path a
// template nesting recurses through: each keeps a small frame, and the work with many
// locals is done by `#[inline(never)]` functions that return before the recursion goes on.

impl Engine {
    /// Start the steps node's current group (or end the node after its last group).
    pub(crate) fn start_step_group(&mut self, steps_node: usize, now: Time) {
        if let Some(g) = self.open_step_group(steps_node, now) {
            self.pump_step_group(g, now);
        }
    }

    /// Make the current group's node and expand its steps: the group to start, if any.
    #[inline(never)]
    fn open_step_group(&mut self, steps_node: usize, now: Time) -> Option<usize> {
        let (t, ctx, scope, group, last) = match &self.nodes[steps_node].frame {
            Frame::Steps {
                template,
                ctx,
                scope,
                group,
                last_group_node,
            } => (
                template.clone(),
                ctx.clone(),
                scope.clone(),
                *group,
                *last_group_node,
            ),
            _ => return None,
        };
        let groups = t.steps.clone().unwrap_or_default();
        if group >= groups.len() {
            self.finish_steps(steps_node, now);
            return None;
        }
        let sg_name = format!("{}[{group}]", self.nodes[steps_node].status.name);
        let g = self.new_node(
            &sg_name,
            &format!("[{group}]"),
            NodeType::StepGroup,
            None,
            None,
            &ctx.tscope,
            ctx.boundary.clone(),
            Owner::Nobody,
            Frame::Leaf,
            now,
        );
        self.nodes[g].status.template_name = self.nodes[steps_node].status.template_name.clone();
        self.nodes[g].status.phase = Phase::Running;
        match last {
            None => self.add_child(steps_node, g),
            Some(prev) => {
                let prev_children = self.nodes[prev].status.children.clone();
                if prev_children.is_empty() {
                    self.add_child(prev, g);
                } else {
                    for c in prev_children {
                        let ci = self.by_id[&c];
                        for o in self.outbound(ci) {
                            self.add_child(o, g);
                        }
                    }
                }
            }
        }
        if let Frame::Steps {
            last_group_node, ..
        } = &mut self.nodes[steps_node].frame
        {
            *last_group_node = Some(g);
        }
        // Expand the group's steps.
        let mut slots = Vec::new();
        let mut error = None;
        for step in &groups[group].0 {
            match self.expand_step(step, &scope.vars) {
                Ok(expanded) => slots.extend(expanded.into_iter().map(|s| StepSlot {
                    step: s,
                    node: None,
                    exit: None,
                    hooks_fired: HashSet::default(),
                    hooks_running: 0,
                    done: false,
                })),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let n = slots.len();
        self.nodes[g].frame = Frame::StepGroup {
            steps_node,
            slots,
            queue: (0..n).collect(),
            running: 0,
            stop_new: false,
        };
        if let Some(e) = error {
            self.finish(g, Phase::Error, Some(e), now);
            self.group_done(g, now);
            return None;
        }
        Some(g)
    }

    pub(crate) fn template_parallelism(&self, steps_or_dag: usize) -> Option<usize> {
        match &self.nodes[steps_or_dag].frame {
            Frame::Steps { template, .. } | Frame::Dag { template, .. } => {
                template.parallelism.map(|p| p.max(1) as usize)
            }
            _ => None,
        }
    }

    pub(crate) fn fail_fast(&self, steps_or_dag: usize) -> bool {
        match &self.nodes[steps_or_dag].frame {
            Frame::Steps { template, .. } => template.fail_fast.unwrap_or(false),
            Frame::Dag { template, .. } => template
                .dag
                .as_ref()
                .and_then(|d| d.fail_fast)
                .unwrap_or(true),
            _ => false,
        }
    }

    fn pump_step_group(&mut self, g: usize, now: Time) {
        let steps_node = match &self.nodes[g].frame {
            Frame::StepGroup { steps_node, .. } => *steps_node,
            _ => return,
        };
        let limit = self.template_parallelism(steps_node);
        loop {
            // Asked each time: a limit reached by the step just started stops the rest.
            let halted = self.halted(g);
            let (slot, stop) = match &mut self.nodes[g].frame {
                Frame::StepGroup {
                    queue,
                    running,
                    stop_new,
                    ..
                } => {
                    if *stop_new || limit.is_some_and(|l| *running >= l) || halted {
                        (None, *stop_new)
                    } else {
                        (queue.pop_front(), false)
                    }
                }
                _ => return,
            };
            let Some(slot) = slot else {
                let _ = stop;
                break;
            };
            self.start_step(g, slot, now);
        }
        self.check_group_done(g, now);
    }

    fn start_step(&mut self, g: usize, slot: usize, now: Time) {
        let Some(p) = self.prepare_step(g, slot, now) else {
            return;
        };
        let owner = Owner::Step { group: g, slot };
        let display = Some(p.display.clone());
        let i = self.execute(&p.name, &p.holder, &p.args, &p.ctx, owner, display, now);
        self.step_started(g, slot, i, now);
    }

    /// Decide a step's `when` and resolve its arguments: what to execute, unless the step
    /// is already decided (skipped, or errored before it could run).
    #[inline(never)]
    fn prepare_step(&mut self, g: usize, slot: usize, now: Time) -> Option<Box<StepStart>> {
        let (steps_node, step) = match &self.nodes[g].frame {
            Frame::StepGroup {
                steps_node, slots, ..
            } => (*steps_node, slots[slot].step.clone()),
            _ => return None,
        };
        let (ctx, vars) = match &self.nodes[steps_node].frame {
            Frame::Steps { ctx, scope, .. } => (ctx.clone(), scope.vars.clone()),
            _ => return None,
        };
        let child_name = format!("{}.{}", self.nodes[g].status.name, step.name);
        if let Some(when) = &step.when {
            let w = substitute(when, &self.layered(&vars), true).unwrap_or_else(|_| when.clone());
            match govaluate::should_execute(&w) {
                Ok(true) => {}
                Ok(false) => {
                    let i = self.new_node(
                        &child_name,
                        &step.name,
                        NodeType::Skipped,
                        step.template.as_deref(),
                        step.template_ref.clone(),
                        &ctx.tscope,
                        ctx.boundary.clone(),
                        Owner::Step { group: g, slot },
                        Frame::Leaf,
                        now,
                    );
                    self.add_child(g, i);
                    self.set_slot_node(g, slot, i);
                    self.finish(
                        i,
                        Phase::Skipped,
                        Some(format!("when '{w}' evaluated false")),
                        now,
                    );
                    return None;
                }
                Err(e) => {
                    let i = self.new_node(
                        &child_name,
                        &step.name,
                        NodeType::Skipped,
                        step.template.as_deref(),
                        step.template_ref.clone(),
                        &ctx.tscope,
                        ctx.boundary.clone(),
                        Owner::Step { group: g, slot },
                        Frame::Leaf,
                        now,
                    );
                    self.add_child(g, i);
                    self.set_slot_node(g, slot, i);
                    let msg = format!("Invalid 'when' expression '{w}': {e}");
                    self.finish(i, Phase::Error, Some(msg), now);
                    return None;
                }
            }
        }
        // Arguments from the scope (steps.*, item, inputs).
        let args = resolve_arguments(
            &step.arguments,
            &self.layered(&vars),
            &self.scope_artifacts(steps_node),
        );
        let args = match args {
            Ok(a) => a,
            Err(e) => {
                let i = self.new_node(
                    &child_name,
                    &step.name,
                    NodeType::Pod,
                    step.template.as_deref(),
                    step.template_ref.clone(),
                    &ctx.tscope,
                    ctx.boundary.clone(),
                    Owner::Step { group: g, slot },
                    Frame::Leaf,
                    now,
                );
                self.add_child(g, i);
                self.set_slot_node(g, slot, i);
                self.finish(i, Phase::Error, Some(e), now);
                return None;
            }
        };
        if let Frame::StepGroup { running, .. } = &mut self.nodes[g].frame {
            *running += 1;
        }
        Some(Box::new(StepStart {
            name: child_name,
            display: step.name.clone(),
            holder: Holder::from_step(&step),
            args,
            ctx: *ctx,
        }))
    }

    #[inline(never)]
    fn step_started(&mut self, g: usize, slot: usize, i: usize, now: Time) {
        self.add_child(g, i);
        self.set_slot_node(g, slot, i);
        if self.nodes[i].status.phase == Phase::Running {
            self.on_running(i, now);
        }
    }

    fn set_slot_node(&mut self, g: usize, slot: usize, i: usize) {
        if let Frame::StepGroup { slots, .. } = &mut self.nodes[g].frame {
            slots[slot].node = Some(i);
        }
    }

    /// Called when a step's node (or its exit handler or a hook) is fulfilled.
    pub(crate) fn step_event(&mut self, g: usize, slot: usize, now: Time) {
        let (steps_node, step, node, exit, hooks_running, done) = match &self.nodes[g].frame {
            Frame::StepGroup {
                steps_node, slots, ..
            } => {
                let s = &slots[slot];
                (
                    *steps_node,
                    s.step.clone(),
                    s.node,
                    s.exit,
                    s.hooks_running,
                    s.done,
                )
            }
            _ => return,
        };
        if done {
            return;
        }
        let Some(node) = node else { return };
        let phase = self.nodes[node].status.phase;
        if !phase.fulfilled() {
            return;
        }
        // Record the step's outputs in the scope.
        let prefix = format!("steps.{}", step.name);
        self.record_scope(steps_node, &prefix, node);
        // Lifecycle hooks on completion.
        self.fire_step_hooks(g, slot, now);
        // Exit handler.
        if phase.completed() {
            if let Some(exit_t) = step
                .on_exit
                .clone()
                .or_else(|| step.hooks.get("exit").and_then(|h| h.template.clone()))
            {
                match exit {
                    None => {
                        let display = format!("{}.onExit", step.name);
                        let owner = Owner::StepExit { group: g, slot };
                        let hook = step
                            .on_exit
                            .is_none()
                            .then(|| step.hooks.get("exit"))
                            .flatten();
                        let e = self.start_exit_handler(
                            steps_node, node, &exit_t, hook, owner, display, now,
                        );
                        if let Frame::StepGroup { slots, .. } = &mut self.nodes[g].frame {
                            slots[slot].exit = Some(e);
                        }
                        return;
                    }
                    Some(e) if !self.nodes[e].status.phase.fulfilled() => return,
                    Some(_) => {}
                }
            }
        }
        let hooks_running = match &self.nodes[g].frame {
            Frame::StepGroup { slots, .. } => slots[slot].hooks_running,
            _ => hooks_running,
        };
        if hooks_running > 0 {
            return;
        }
        let fail_fast = self.fail_fast(steps_node);
        if let Frame::StepGroup {
            slots,
            running,
            stop_new,
            ..
        } = &mut self.nodes[g].frame
        {
            slots[slot].done = true;
            *running = running.saturating_sub(1);
            let cont = step.continue_on.unwrap_or_default();
            if fail_fast && phase.failed_or_error() && !continues(cont, phase) {
                *stop_new = true;
            }
        }
        self.pump_step_group(g, now);
    }

    pub(crate) fn check_group_done(&mut self, g: usize, now: Time) {
        let (all_done, queue_empty, stop_new, running) = match &self.nodes[g].frame {
            Frame::StepGroup {
                slots,
                queue,
                stop_new,
                running,
                ..
            } => (
                slots
                    .iter()
                    .all(|s| s.done || (s.node.is_none() && *stop_new)),
                queue.is_empty(),
                *stop_new,
                *running,
            ),
            _ => return,
        };
        if self.nodes[g].status.phase.fulfilled() {
            return;
        }
        let shutting = self.halted(g);
        if !(all_done && (queue_empty || stop_new || shutting))
            && !(running == 0 && (stop_new || shutting) && self.group_started_done(g))
        {
            return;
        }
        let (phase, msg) = self.group_phase(g);
        self.finish(g, phase, msg, now);
        self.group_done(g, now);
    }

    fn group_started_done(&self, g: usize) -> bool {
        match &self.nodes[g].frame {
            Frame::StepGroup { slots, .. } => slots.iter().all(|s| s.node.is_none() || s.done),
            _ => false,
        }
    }

    fn group_phase(&self, g: usize) -> (Phase, Option<String>) {
        if let Frame::StepGroup {
            slots, stop_new, ..
        } = &self.nodes[g].frame
        {
            for s in slots {
                let Some(n) = s.node else { continue };
                let p = self.nodes[n].status.phase;
                if p.failed_or_error() && !continues(s.step.continue_on.unwrap_or_default(), p) {
                    return (
                        Phase::Failed,
                        Some(format!("child '{}' failed", self.nodes[n].status.id)),
                    );
                }
            }
            if self.halted(g) && slots.iter().any(|s| s.node.is_none()) {
                return (Phase::Failed, Some("Stopped with strategy".into()));
            }
            let _ = stop_new;
        }
        (Phase::Succeeded, None)
    }

    /// A step group is fulfilled: continue with the next group or end the steps node.
    fn group_done(&mut self, g: usize, now: Time) {
        let steps_node = match &self.nodes[g].frame {
            Frame::StepGroup { steps_node, .. } => *steps_node,
            _ => return,
        };
        // Aggregate outputs of expanded steps into the scope.
        self.aggregate_group(g, steps_node);
        let phase = self.nodes[g].status.phase;
        if phase.failed_or_error() || self.halted(g) {
            let msg = self.nodes[g].status.message.clone();
            if phase == Phase::Succeeded {
                self.finish(
                    steps_node,
                    Phase::Failed,
                    Some("Stopped with strategy".into()),
                    now,
                );
            } else {
                self.finish(steps_node, Phase::Failed, msg, now);
            }
            self.set_outbound(steps_node);
            return;
        }
        if let Frame::Steps { group, .. } = &mut self.nodes[steps_node].frame {
            *group += 1;
        }
        self.start_step_group(steps_node, now);
    }

    fn aggregate_group(&mut self, g: usize, block: usize) {
        let slots = match &self.nodes[g].frame {
            Frame::StepGroup { slots, .. } => slots.clone(),
            _ => return,
        };
        let mut by_step: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for s in &slots {
            if let (Some(base), Some(n)) = (
                s.step.name.split_once('(').map(|(b, _)| b.to_string()),
                s.node,
            ) {
                by_step.entry(base).or_default().push(n);
            }
        }
        for (base, nodes) in by_step {
            let prefix = format!("steps.{base}");
            self.aggregate_outputs(block, &prefix, &nodes);
        }
    }

    fn finish_steps(&mut self, steps_node: usize, now: Time) {
        let t = match &self.nodes[steps_node].frame {
            Frame::Steps { template, .. } => template.clone(),
            _ => return,
        };
        match self.block_outputs(steps_node, &t) {
            Ok(o) => {
                if !o.is_empty() {
                    self.nodes[steps_node].status.outputs = Some(o);
                }
                self.set_outbound(steps_node);
                self.finish(steps_node, Phase::Succeeded, None, now);
            }
            Err(e) => {
                self.set_outbound(steps_node);
                self.finish(steps_node, Phase::Error, Some(e), now);
            }
        }
    }
}
