//! Lifecycle hooks and exit handlers at workflow, step and task level: `onExit` (or the
//! `exit` hook) runs once the node it belongs to has completed, with the block's scope;
//! other hooks fire once each, when their `expression` first holds.
//!
//! A step or task is not done until its exit handler and running hooks are fulfilled, so
//! its successors never start ahead of them.

use serde_json::Value;
use template_eval::Lookup;
use workflow_model::{Arguments, LifecycleHook};

use crate::state::{dag_task, Ctx, Engine, Frame, Holder, Owner, TScope};
use crate::status::{Phase, Time};
use crate::templates::resolve_arguments;

impl Engine {
    /// The arguments an exit handler gets (Argo's `GetExitHook(spec.arguments)`): an `onExit`
    /// template the workflow's arguments; an `exit` hook its own, or the workflow's when it
    /// has none. The workflow's parameters carry the values the workflow runs with.
    pub(crate) fn exit_arguments(&self, hook: Option<&LifecycleHook>) -> Arguments {
        if let Some(own) = hook
            .map(|h| &h.arguments)
            .filter(|a| !a.parameters.is_empty() || !a.artifacts.is_empty())
        {
            return own.clone();
        }
        let mut args = self.spec.arguments.clone();
        for p in &mut args.parameters {
            if let Some(v) = self.globals.get(&format!("workflow.parameters.{}", p.name)) {
                p.value = Some(workflow_model::AnyString(v.clone()));
                p.value_from = None;
            }
        }
        args
    }

    /// Start the exit handler of a step's or task's node (`onExit`, or its `exit` hook), with
    /// the arguments `hook` gives it (see [`Engine::exit_arguments`]; `None` for `onExit`), in
    /// the context of the block that ran it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_exit_handler(
        &mut self,
        block: usize,
        node: usize,
        template: &str,
        hook: Option<&LifecycleHook>,
        owner: Owner,
        display: String,
        now: Time,
    ) -> usize {
        let mut ctx = match &self.nodes[block].frame {
            Frame::Steps { ctx, .. } | Frame::Dag { ctx, .. } => (**ctx).clone(),
            _ => Ctx {
                tscope: TScope::Local,
                boundary: None,
                on_exit: true,
                depth: 0,
            },
        };
        ctx.on_exit = true;
        let name = format!("{}.onExit", self.nodes[node].status.name);
        let args = self.exit_arguments(hook);
        let vars = self.block_vars(block);
        let args = resolve_arguments(&args, &self.layered(&vars), &self.scope_artifacts(block))
            .unwrap_or_default();
        let e = self.execute(
            &name,
            &Holder::named(template),
            &args,
            &ctx,
            owner,
            Some(display),
            now,
        );
        self.add_child(node, e);
        e
    }

    pub(crate) fn on_running(&mut self, i: usize, now: Time) {
        match self.nodes[i].owner {
            Owner::Step { group, slot } => self.fire_step_hooks(group, slot, now),
            Owner::Task { dag, task } => self.fire_task_hooks(dag, task, now),
            _ => {}
        }
        self.fire_workflow_hooks(now);
    }

    pub(crate) fn fire_step_hooks(&mut self, g: usize, slot: usize, now: Time) {
        let no_hooks = match &self.nodes[g].frame {
            Frame::StepGroup { slots, .. } => slots[slot].step.hooks.keys().all(|k| k == "exit"),
            _ => true,
        };
        if no_hooks {
            return;
        }
        let (steps_node, step, node, fired) = match &self.nodes[g].frame {
            Frame::StepGroup {
                steps_node, slots, ..
            } => (
                *steps_node,
                slots[slot].step.clone(),
                slots[slot].node,
                slots[slot].hooks_fired.clone(),
            ),
            _ => return,
        };
        let Some(node) = node else { return };
        let base = step
            .name
            .split('(')
            .next()
            .unwrap_or(&step.name)
            .to_string();
        let mut vars = self.block_vars(steps_node);
        vars.insert(
            format!("steps.{base}.status"),
            self.nodes[node].status.phase.as_str().into(),
        );
        for (hname, hook) in &step.hooks {
            if hname == "exit" || fired.contains(hname) {
                continue;
            }
            if self.hook_due(hook, &vars) {
                let ctx = match &self.nodes[steps_node].frame {
                    Frame::Steps { ctx, .. } => ctx.clone(),
                    _ => return,
                };
                if let Frame::StepGroup { slots, .. } = &mut self.nodes[g].frame {
                    slots[slot].hooks_fired.insert(hname.clone());
                    slots[slot].hooks_running += 1;
                }
                let name = format!("{}.hooks.{hname}", self.nodes[node].status.name);
                let args = resolve_arguments(
                    &hook.arguments,
                    &self.layered(&vars),
                    &self.scope_artifacts(steps_node),
                )
                .unwrap_or_default();
                let h = self.execute(
                    &name,
                    &Holder::from_hook(hook),
                    &args,
                    &ctx,
                    Owner::Hook,
                    Some(format!("{}.hooks.{hname}", step.name)),
                    now,
                );
                self.nodes[h].owner = Owner::StepExit { group: g, slot };
                self.add_child(node, h);
                // Hooks are tracked like exit handlers; mark as hook via counter.
                self.nodes[h].memo_key = self.nodes[h].memo_key.take();
            }
        }
    }

    pub(crate) fn fire_task_hooks(&mut self, d: usize, i: usize, now: Time) {
        let no_hooks = match &self.nodes[d].frame {
            Frame::Dag { template, .. } => dag_task(template, i).hooks.keys().all(|k| k == "exit"),
            _ => true,
        };
        if no_hooks {
            return;
        }
        let (task, node, fired, ctx) = match &self.nodes[d].frame {
            Frame::Dag {
                tasks,
                ctx,
                template,
                ..
            } => (
                dag_task(template, i).clone(),
                tasks[i].node,
                tasks[i].hooks_fired.clone(),
                ctx.clone(),
            ),
            _ => return,
        };
        let Some(node) = node else { return };
        let mut vars = self.block_vars(d);
        vars.insert(
            format!("tasks.{}.status", task.name),
            self.nodes[node].status.phase.as_str().into(),
        );
        for (hname, hook) in &task.hooks {
            if hname == "exit" || fired.contains(hname) {
                continue;
            }
            if self.hook_due(hook, &vars) {
                if let Frame::Dag { tasks, .. } = &mut self.nodes[d].frame {
                    tasks[i].hooks_fired.insert(hname.clone());
                    tasks[i].hooks_running += 1;
                }
                let name = format!("{}.hooks.{hname}", self.nodes[node].status.name);
                let args = resolve_arguments(
                    &hook.arguments,
                    &self.layered(&vars),
                    &self.scope_artifacts(d),
                )
                .unwrap_or_default();
                let h = self.execute(
                    &name,
                    &Holder::from_hook(hook),
                    &args,
                    &ctx,
                    Owner::TaskExit { dag: d, task: i },
                    Some(format!("{}.hooks.{hname}", task.name)),
                    now,
                );
                self.add_child(node, h);
            }
        }
    }

    fn hook_due<T: Lookup + ?Sized>(&self, hook: &LifecycleHook, vars: &T) -> bool {
        let Some(expr) = hook.expression.as_deref().filter(|e| !e.trim().is_empty()) else {
            return false;
        };
        let env = template_eval::expand_vars(&self.layered(vars));
        matches!(template_eval::expr::eval(expr, &env), Ok(Value::Bool(true)))
    }

    pub(crate) fn fire_workflow_hooks(&mut self, now: Time) {
        if self.spec.hooks.is_empty() {
            return;
        }
        let mut vars = self.globals.clone();
        // Once the root has ended, `workflow.status` is its phase as the workflow's (Argo
        // sets the global then, before the exit handler).
        let status = match self.root_phase {
            Some(Phase::Succeeded | Phase::Skipped | Phase::Omitted) => Phase::Succeeded,
            Some(p) => p,
            None => self.phase,
        };
        vars.insert("workflow.status".into(), status.as_str().into());
        for (hname, hook) in self.spec.hooks.clone() {
            if hname == "exit" || self.wf_hooks_fired.contains(&hname) {
                continue;
            }
            if self.hook_due(&hook, &vars) {
                self.wf_hooks_fired.insert(hname.clone());
                let ctx = Ctx {
                    tscope: TScope::Local,
                    boundary: None,
                    on_exit: false,
                    depth: 0,
                };
                let name = format!("{}.hooks.{hname}", self.name);
                let args = resolve_arguments(&hook.arguments, &vars, &self.global_artifacts)
                    .unwrap_or_default();
                let h = self.execute(
                    &name,
                    &Holder::from_hook(&hook),
                    &args,
                    &ctx,
                    Owner::Hook,
                    Some(name.clone()),
                    now,
                );
                self.wf_hook_nodes.push(h);
            }
        }
    }

    /// Whether every workflow-level hook that fired has ended.
    pub(crate) fn workflow_hooks_done(&self) -> bool {
        self.wf_hook_nodes
            .iter()
            .all(|&h| self.nodes[h].status.phase.fulfilled())
    }
}
