//! DAG templates: tasks with `depends` (or legacy `dependencies`), `target`, `failFast`.
//! A task runs when all its dependencies are fulfilled and its `depends` expression holds,
//! is omitted when it does not; the DAG's phase is Argo's `assessDAGPhase` over the targets.
//!
//! Work is proportional to what changed: each task keeps a count of unfinished dependencies
//! and a list of dependents, so a finished task touches only its dependents — nothing here
//! scans all tasks per event. Only tasks some target needs ever run.

use dag_depends::{eval_depends_expr, expand_depends, parse_depends, DepResult, Outcome};
use std::collections::VecDeque;
use std::sync::Arc;

use template_eval::{govaluate, substitute};
use workflow_model::{Arguments, DagTask, Template, WorkflowStep};

use crate::maps::{HashMap, HashSet};
use crate::scope::{ArtMap, Scope, ScopeVars};
use crate::state::{continues, dag_task, Ctx, Engine, Frame, Holder, Node, Owner, TaskState};
use crate::status::{NodeType, Phase, Time};
use crate::templates::resolve_arguments;

/// How a task starts, once `prepare_task` has looked at it.
enum TaskStart {
    /// Already decided (an error, an empty loop).
    Decided,
    /// Its task group, whose items are to start.
    Group(usize),
    /// One instance.
    Instance(Box<TaskInstance>),
}

struct TaskInstance {
    name: String,
    step: WorkflowStep,
    ctx: Ctx,
    vars: ScopeVars,
    arts: ArtMap,
}

/// What `run_task_instance` hands `execute`.
struct TaskRun {
    args: Arguments,
}

// `start_dag` → `pump_dag` → `start_task` → `run_task_instance` → `execute` is on the path a
// template nesting recurses through: each keeps a small frame, and the work with many
// locals is done by `#[inline(never)]` functions that return before the recursion goes on.

impl Engine {
    pub(crate) fn start_dag(&mut self, d: usize, t: Arc<Template>, ctx: &Ctx, now: Time) {
        if let Some(ready) = self.open_dag(d, t, ctx, now) {
            for i in ready {
                self.task_ready(d, i, now);
            }
            self.pump_dag(d, now);
        }
    }

    /// Build the DAG's frame: the tasks ready at once, unless the DAG errored.
    #[inline(never)]
    fn open_dag(
        &mut self,
        d: usize,
        t: Arc<Template>,
        ctx: &Ctx,
        now: Time,
    ) -> Option<VecDeque<usize>> {
        let empty = workflow_model::DagTemplate::default();
        let dag = t.dag.as_ref().unwrap_or(&empty);
        let mut index = HashMap::default();
        for (i, task) in dag.tasks.iter().enumerate() {
            index.insert(task.name.clone(), i);
        }
        // Each task makes at least one node: grow the node table once, not by doubling (at
        // 10^5 tasks the copies and the pages they touch were a tenth of the time).
        self.nodes.reserve(dag.tasks.len());
        self.by_id.reserve(dag.tasks.len());
        let mut tasks: Vec<TaskState> = Vec::with_capacity(dag.tasks.len());
        for _ in &dag.tasks {
            tasks.push(TaskState {
                deps: Vec::new(),
                dependents: Vec::new(),
                depends_logic: String::new(),
                depends_expr: Ok(None),
                needed: false,
                unfinished_deps: 0,
                node: None,
                exit: None,
                hooks_fired: HashSet::default(),
                hooks_running: 0,
                done: false,
            });
        }
        let mut error = None;
        for i in 0..tasks.len() {
            let task = &dag.tasks[i];
            let logic = match &task.depends {
                Some(d) => d.clone(),
                None => task.dependencies.to_vec().join(" && "),
            };
            let names = match workflow_model::lint::depends_names(&logic) {
                Ok(n) => n,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            let mut deps = Vec::new();
            for n in names {
                match index.get(&n) {
                    Some(&j) => deps.push(j),
                    None => {
                        error = Some(format!(
                            "task '{}' depends on '{n}', which is not a task of this DAG",
                            task.name
                        ));
                        break;
                    }
                }
            }
            // Expand bare task names as Argo does: A → (A.Succeeded || A.Skipped || A.Daemoned [|| A.Failed] [|| A.Errored])
            let expanded = expand_depends(&logic, &|name: &str| {
                index
                    .get(name)
                    .map(|&j| dag.tasks[j].continue_on.unwrap_or_default())
            });
            tasks[i].depends_expr = parse_depends(&expanded);
            tasks[i].depends_logic = expanded;
            tasks[i].unfinished_deps = deps.len();
            for &j in &deps {
                tasks[j].dependents.push(i);
            }
            tasks[i].deps = deps;
        }
        // The target may use the template's inputs and the globals.
        let target = dag.target.as_deref().map(|tg| {
            let own = self.scope_base(&t);
            substitute(tg, &self.layered(&own), true).unwrap_or_else(|_| tg.to_string())
        });
        let targets: Vec<usize> = match target.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(t) => t
                .split_whitespace()
                .filter_map(|n| index.get(n).copied())
                .collect(),
            None => {
                let mut leaves: Vec<usize> = (0..tasks.len())
                    .filter(|&i| tasks[i].dependents.is_empty())
                    .collect();
                leaves.sort_by(|a, b| dag.tasks[*a].name.cmp(&dag.tasks[*b].name));
                leaves
            }
        };
        // Only tasks the targets need run.
        let mut stack: Vec<usize> = targets.clone();
        while let Some(i) = stack.pop() {
            if tasks[i].needed {
                continue;
            }
            tasks[i].needed = true;
            stack.extend(tasks[i].deps.iter().copied());
        }
        let remaining = tasks.iter().filter(|t| t.needed).count();
        // Dependents that are not needed must not be counted.
        let ready: VecDeque<usize> = (0..tasks.len())
            .filter(|&i| tasks[i].needed && tasks[i].unfinished_deps == 0)
            .collect();
        let scope = Scope {
            vars: ScopeVars::over(self.scope_base(&t)),
            artifacts: self.scope_artifacts_base(&t),
        };
        let mut dctx = ctx.clone();
        dctx.boundary = Some(self.nodes[d].status.id.clone());
        self.nodes[d].frame = Frame::Dag {
            template: t,
            ctx: Box::new(dctx),
            scope: Box::new(scope),
            tasks,
            targets,
            queue: VecDeque::new(),
            running: 0,
            remaining,
        };
        if let Some(e) = error {
            self.finish(d, Phase::Error, Some(e), now);
            return None;
        }
        Some(ready)
    }

    /// All of a task's dependencies are fulfilled: decide whether it runs or is omitted.
    fn task_ready(&mut self, d: usize, i: usize, now: Time) {
        let verdict = self.depends_verdict(d, i);
        match verdict {
            Ok(true) => {
                if let Frame::Dag { queue, .. } = &mut self.nodes[d].frame {
                    queue.push_back(i);
                }
            }
            Ok(false) => {
                let node = self.task_node_skeleton(d, i, NodeType::Skipped, now);
                self.finish(
                    node,
                    Phase::Omitted,
                    Some("omitted: depends condition not met".into()),
                    now,
                );
            }
            Err(e) => {
                let node = self.task_node_skeleton(d, i, NodeType::Skipped, now);
                self.finish(node, Phase::Error, Some(e), now);
            }
        }
    }

    /// Whether a task whose dependencies are all fulfilled should run (reads only).
    fn depends_verdict(&self, d: usize, i: usize) -> Result<bool, String> {
        let Frame::Dag {
            tasks, template, ..
        } = &self.nodes[d].frame
        else {
            return Ok(false);
        };
        let t = &tasks[i];
        let expr = match &t.depends_expr {
            Ok(None) => return Ok(true),
            Ok(Some(e)) => e,
            Err(e) => {
                return Err(format!(
                    "unable to evaluate expression '{}': {e}",
                    t.depends_logic
                ))
            }
        };
        let mut results = HashMap::with_capacity_and_hasher(t.deps.len(), Default::default());
        for &j in &t.deps {
            let Some(n) = tasks[j].node else { continue };
            let st = &self.nodes[n].status;
            let (mut any_ok, mut all_failed) = (false, false);
            if st.node_type == NodeType::TaskGroup {
                all_failed = !st.children.is_empty();
                for c in &st.children {
                    let p = self.nodes[self.by_id[c]].status.phase;
                    any_ok |= p == Phase::Succeeded;
                    all_failed &= p == Phase::Failed;
                }
            }
            results.insert(
                dag_task(template, j).name.clone(),
                DepResult {
                    outcome: match st.phase {
                        Phase::Succeeded => Outcome::Succeeded,
                        Phase::Failed => Outcome::Failed,
                        Phase::Error => Outcome::Errored,
                        Phase::Skipped => Outcome::Skipped,
                        Phase::Omitted => Outcome::Omitted,
                        Phase::Pending | Phase::Running => Outcome::Unfinished,
                    },
                    any_succeeded: any_ok,
                    all_failed,
                },
            );
        }
        eval_depends_expr(expr, &results)
            .map_err(|e| format!("unable to evaluate expression '{}': {e}", t.depends_logic))
    }

    /// A node for a task that does not run its template (omitted, errored before start).
    fn task_node_skeleton(&mut self, d: usize, i: usize, ty: NodeType, now: Time) -> usize {
        let (ctx, task) = match &self.nodes[d].frame {
            Frame::Dag { ctx, template, .. } => (ctx.clone(), dag_task(template, i).clone()),
            _ => unreachable!("task of a DAG"),
        };
        let name = format!("{}.{}", self.nodes[d].status.name, task.name);
        let n = self.new_node(
            &name,
            &task.name,
            ty,
            task.template.as_deref(),
            task.template_ref.clone(),
            &ctx.tscope,
            ctx.boundary.clone(),
            Owner::Task { dag: d, task: i },
            Frame::Leaf,
            now,
        );
        self.connect_task(d, i, n);
        if let Frame::Dag { tasks, .. } = &mut self.nodes[d].frame {
            tasks[i].node = Some(n);
        }
        n
    }

    /// Argo's `connectDependencies`: a task's node is a child of its dependencies' outbound
    /// nodes, or of the DAG node for root tasks.
    fn connect_task(&mut self, d: usize, i: usize, n: usize) {
        let deps: Vec<Option<usize>> = match &self.nodes[d].frame {
            Frame::Dag { tasks, .. } => tasks[i].deps.iter().map(|&j| tasks[j].node).collect(),
            _ => return,
        };
        if deps.is_empty() {
            self.add_child(d, n);
            return;
        }
        for dn in deps.into_iter().flatten() {
            for o in self.outbound(dn) {
                self.add_child(o, n);
            }
        }
    }

    fn pump_dag(&mut self, d: usize, now: Time) {
        let limit = self.template_parallelism(d);
        loop {
            // Asked each time: a limit reached by the task just started stops the rest.
            let halted = self.halted(d);
            let next = match &mut self.nodes[d].frame {
                Frame::Dag { queue, running, .. } => {
                    if limit.is_some_and(|l| *running >= l) || halted {
                        None
                    } else {
                        queue.pop_front()
                    }
                }
                _ => return,
            };
            let Some(i) = next else { break };
            self.start_task(d, i, now);
        }
        self.check_dag_done(d, now);
    }

    fn start_task(&mut self, d: usize, i: usize, now: Time) {
        match self.prepare_task(d, i, now) {
            TaskStart::Decided => {}
            TaskStart::Group(tg) => self.pump_task_group(tg, now),
            TaskStart::Instance(p) => {
                let owner = Owner::Task { dag: d, task: i };
                let n = self.run_task_instance(
                    d,
                    &p.name,
                    &p.step.name,
                    &p.step,
                    &p.ctx,
                    &p.vars,
                    &p.arts,
                    owner,
                    now,
                );
                self.task_started(d, i, n, now);
            }
        }
    }

    /// Expand a task: its group, or its one instance, unless it is already decided.
    #[inline(never)]
    fn prepare_task(&mut self, d: usize, i: usize, now: Time) -> TaskStart {
        // The task as a step (one copy of it, for expansion and instantiation).
        let (ctx, step_like, vars, arts) = match &self.nodes[d].frame {
            Frame::Dag { ctx, template, .. } => {
                let task = dag_task(template, i);
                (
                    ctx.clone(),
                    WorkflowStep {
                        name: task.name.clone(),
                        template: task.template.clone(),
                        inline: task.inline.clone(),
                        arguments: task.arguments.clone(),
                        template_ref: task.template_ref.clone(),
                        with_items: task.with_items.clone(),
                        with_param: task.with_param.clone(),
                        with_sequence: task.with_sequence.clone(),
                        when: task.when.clone(),
                        continue_on: task.continue_on,
                        on_exit: task.on_exit.clone(),
                        hooks: task.hooks.clone(),
                    },
                    self.block_vars(d),
                    self.scope_artifacts(d),
                )
            }
            _ => return TaskStart::Decided,
        };
        let task = &step_like;
        let name = format!("{}.{}", self.nodes[d].status.name, task.name);
        let expands =
            task.with_items.is_some() || task.with_param.is_some() || task.with_sequence.is_some();
        let expanded = match self.expand_step(&step_like, &vars) {
            Ok(e) => e,
            Err(e) => {
                let n = self.task_node_skeleton(d, i, NodeType::Skipped, now);
                self.finish(n, Phase::Error, Some(e), now);
                return TaskStart::Decided;
            }
        };
        if let Frame::Dag { running, .. } = &mut self.nodes[d].frame {
            *running += 1;
        }
        if expands {
            if expanded.is_empty() {
                let n = self.task_node_skeleton(d, i, NodeType::Skipped, now);
                self.finish(n, Phase::Skipped, Some("Skipped, empty params".into()), now);
                return TaskStart::Decided;
            }
            let Frame::Dag { template, .. } = &self.nodes[d].frame else {
                return TaskStart::Decided;
            };
            let dag_t = dag_task(template, i).clone();
            let items: Vec<(DagTask, Option<usize>)> = expanded
                .into_iter()
                .map(|s| {
                    let mut t = dag_t.clone();
                    t.name = s.name;
                    t.arguments = s.arguments;
                    t.when = s.when;
                    t.template = s.template;
                    t.template_ref = s.template_ref;
                    t.with_items = None;
                    t.with_param = None;
                    t.with_sequence = None;
                    (t, None)
                })
                .collect();
            let n_items = items.len();
            let tg = self.new_node(
                &name,
                &task.name,
                NodeType::TaskGroup,
                task.template.as_deref(),
                task.template_ref.clone(),
                &ctx.tscope,
                ctx.boundary.clone(),
                Owner::Task { dag: d, task: i },
                Frame::TaskGroup {
                    dag: d,
                    items,
                    queue: (0..n_items).collect(),
                    running: 0,
                    remaining: n_items,
                },
                now,
            );
            self.nodes[tg].status.phase = Phase::Running;
            self.connect_task(d, i, tg);
            if let Frame::Dag { tasks, .. } = &mut self.nodes[d].frame {
                tasks[i].node = Some(tg);
            }
            return TaskStart::Group(tg);
        }
        let Some(step) = expanded.into_iter().next() else {
            return TaskStart::Decided;
        };
        TaskStart::Instance(Box::new(TaskInstance {
            name,
            step,
            ctx: *ctx,
            vars,
            arts,
        }))
    }

    #[inline(never)]
    fn task_started(&mut self, d: usize, i: usize, n: usize, now: Time) {
        self.connect_task(d, i, n);
        if let Frame::Dag { tasks, .. } = &mut self.nodes[d].frame {
            tasks[i].node = Some(n);
        }
        if self.nodes[n].status.phase == Phase::Running {
            self.on_running(n, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run_task_instance(
        &mut self,
        _d: usize,
        name: &str,
        display: &str,
        s: &WorkflowStep,
        ctx: &Ctx,
        vars: &ScopeVars,
        arts: &ArtMap,
        owner: Owner,
        now: Time,
    ) -> usize {
        match self.prepare_task_run(name, display, s, ctx, vars, arts, owner, now) {
            Ok(run) => self.execute(
                name,
                &Holder::from_step(s),
                &run.args,
                ctx,
                owner,
                Some(display.to_string()),
                now,
            ),
            Err(n) => n,
        }
    }

    /// Decide an instance's `when` and resolve its arguments: what to execute, or the node
    /// of an instance already decided.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn prepare_task_run(
        &mut self,
        name: &str,
        display: &str,
        s: &WorkflowStep,
        ctx: &Ctx,
        vars: &ScopeVars,
        arts: &ArtMap,
        owner: Owner,
        now: Time,
    ) -> Result<Box<TaskRun>, usize> {
        if let Some(when) = &s.when {
            match govaluate::should_execute(when) {
                Ok(true) => {}
                Ok(false) => {
                    let n = self.new_node(
                        name,
                        display,
                        NodeType::Skipped,
                        s.template.as_deref(),
                        s.template_ref.clone(),
                        &ctx.tscope,
                        ctx.boundary.clone(),
                        owner,
                        Frame::Leaf,
                        now,
                    );
                    self.finish(
                        n,
                        Phase::Skipped,
                        Some(format!("when '{when}' evaluated false")),
                        now,
                    );
                    return Err(n);
                }
                Err(e) => {
                    let n = self.new_node(
                        name,
                        display,
                        NodeType::Skipped,
                        s.template.as_deref(),
                        s.template_ref.clone(),
                        &ctx.tscope,
                        ctx.boundary.clone(),
                        owner,
                        Frame::Leaf,
                        now,
                    );
                    self.finish(
                        n,
                        Phase::Error,
                        Some(format!("Invalid 'when' expression '{when}': {e}")),
                        now,
                    );
                    return Err(n);
                }
            }
        }
        let args = match resolve_arguments(&s.arguments, &self.layered(vars), arts) {
            Ok(a) => a,
            Err(e) => {
                let n = self.new_node(
                    name,
                    display,
                    NodeType::Pod,
                    s.template.as_deref(),
                    s.template_ref.clone(),
                    &ctx.tscope,
                    ctx.boundary.clone(),
                    owner,
                    Frame::Leaf,
                    now,
                );
                self.finish(n, Phase::Error, Some(e), now);
                return Err(n);
            }
        };
        Ok(Box::new(TaskRun { args }))
    }

    /// A task's node (or exit handler, or hook) changed: bookkeeping and successors.
    pub(crate) fn task_event(&mut self, d: usize, i: usize, now: Time) {
        let (name, node, exit, done, hooks_running) = match &self.nodes[d].frame {
            Frame::Dag {
                tasks, template, ..
            } => (
                dag_task(template, i).name.clone(),
                tasks[i].node,
                tasks[i].exit,
                tasks[i].done,
                tasks[i].hooks_running,
            ),
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
        let prefix = format!("tasks.{name}");
        if self.nodes[node].status.node_type == NodeType::TaskGroup {
            let children: Vec<usize> = self.nodes[node]
                .status
                .children
                .iter()
                .map(|c| self.by_id[c])
                .collect();
            self.aggregate_outputs(d, &prefix, &children);
            let st = self.nodes[node].status.clone();
            if let Frame::Dag { scope, .. } = &mut self.nodes[d].frame {
                scope
                    .vars
                    .insert(format!("{prefix}.status"), st.phase.as_str().into());
                scope.vars.insert(format!("{prefix}.id"), st.id.clone());
            }
        } else {
            self.record_scope(d, &prefix, node);
        }
        self.fire_task_hooks(d, i, now);
        // The task's exit handler, if it has one (its hooks go with it).
        let exit_handler = match &self.nodes[d].frame {
            Frame::Dag { template, .. } if phase.completed() => {
                let task = dag_task(template, i);
                let hook = task
                    .on_exit
                    .is_none()
                    .then(|| task.hooks.get("exit"))
                    .flatten();
                task.on_exit
                    .clone()
                    .or_else(|| hook.and_then(|h| h.template.clone()))
                    .map(|t| (t, hook.cloned()))
            }
            _ => None,
        };
        if phase.completed() {
            if let Some((exit_t, hook)) = exit_handler {
                match exit {
                    None => {
                        let display = format!("{name}.onExit");
                        let owner = Owner::TaskExit { dag: d, task: i };
                        let e = self.start_exit_handler(
                            d,
                            node,
                            &exit_t,
                            hook.as_ref(),
                            owner,
                            display,
                            now,
                        );
                        if let Frame::Dag { tasks, .. } = &mut self.nodes[d].frame {
                            tasks[i].exit = Some(e);
                        }
                        return;
                    }
                    Some(e) if !self.nodes[e].status.phase.fulfilled() => return,
                    Some(_) => {}
                }
            }
        }
        let hooks_running = match &self.nodes[d].frame {
            Frame::Dag { tasks, .. } => tasks[i].hooks_running,
            _ => hooks_running,
        };
        if hooks_running > 0 {
            return;
        }
        let was_started = self.nodes[node].status.phase != Phase::Omitted
            && !(self.nodes[node].status.node_type == NodeType::Skipped
                && phase == Phase::Error
                && self.nodes[node]
                    .status
                    .message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("unable to evaluate")));
        let mut ready = Vec::new();
        if let Frame::Dag {
            tasks,
            running,
            remaining,
            ..
        } = &mut self.nodes[d].frame
        {
            tasks[i].done = true;
            if was_started && phase != Phase::Omitted {
                *running = running.saturating_sub(1);
            }
            *remaining = remaining.saturating_sub(1);
            for &j in &tasks[i].dependents.clone() {
                if !tasks[j].needed {
                    continue;
                }
                tasks[j].unfinished_deps -= 1;
                if tasks[j].unfinished_deps == 0 {
                    ready.push(j);
                }
            }
        }
        // A task that never started (omitted, errored before start) was not counted running.
        for j in ready {
            self.task_ready(d, j, now);
        }
        self.pump_dag(d, now);
    }

    pub(crate) fn check_dag_done(&mut self, d: usize, now: Time) {
        if self.nodes[d].status.phase.fulfilled() {
            return;
        }
        let (remaining, running) = match &self.nodes[d].frame {
            Frame::Dag {
                remaining, running, ..
            } => (*remaining, *running),
            _ => return,
        };
        let shutting = self.halted(d);
        if remaining > 0 && !(shutting && running == 0) {
            return;
        }
        if shutting {
            self.set_outbound(d);
            self.finish(d, Phase::Failed, Some("Stopped with strategy".into()), now);
            return;
        }
        let (phase, msg) = self.assess_dag(d);
        if phase == Phase::Succeeded {
            let t = match &self.nodes[d].frame {
                Frame::Dag { template, .. } => template.clone(),
                _ => return,
            };
            match self.block_outputs(d, &t) {
                Ok(o) => {
                    if !o.is_empty() {
                        self.nodes[d].status.outputs = Some(o);
                    }
                }
                Err(e) => {
                    self.set_outbound(d);
                    self.finish(d, Phase::Error, Some(e), now);
                    return;
                }
            }
        }
        self.set_outbound(d);
        self.finish(d, phase, msg, now);
    }

    /// Argo's `assessDAGPhase`: target tasks' branch phases, where an omitted task inherits a
    /// failure from the branch above it.
    fn assess_dag(&self, d: usize) -> (Phase, Option<String>) {
        let Frame::Dag {
            tasks,
            targets,
            template,
            ..
        } = &self.nodes[d].frame
        else {
            return (Phase::Error, None);
        };
        let fail_fast = template
            .dag
            .as_ref()
            .and_then(|x| x.fail_fast)
            .unwrap_or(true);
        let mut branch: Vec<Option<Phase>> = vec![None; tasks.len()];
        // Tasks are processed in dependency order via memoised recursion (iterative).
        fn branch_of(
            i: usize,
            tasks: &[TaskState],
            nodes: &[Node],
            memo: &mut [Option<Phase>],
        ) -> Phase {
            if let Some(p) = memo[i] {
                return p;
            }
            let mut stack = vec![(i, false)];
            while let Some((k, expanded)) = stack.pop() {
                if memo[k].is_some() {
                    continue;
                }
                if !expanded {
                    stack.push((k, true));
                    for &j in &tasks[k].deps {
                        if memo[j].is_none() {
                            stack.push((j, false));
                        }
                    }
                    continue;
                }
                let own = tasks[k].node.map(|n| nodes[n].status.phase);
                let p = match own {
                    Some(p) if p.completed() => p,
                    _ => {
                        let mut inherited = Phase::Succeeded;
                        for &j in &tasks[k].deps {
                            let bp = memo[j].unwrap_or(Phase::Succeeded);
                            if bp.failed_or_error() {
                                inherited = bp;
                            }
                        }
                        inherited
                    }
                };
                memo[k] = Some(p);
            }
            memo[i].unwrap_or(Phase::Succeeded)
        }
        let mut result = Phase::Succeeded;
        for &t in targets {
            let bp = branch_of(t, tasks, &self.nodes, &mut branch);
            if bp.failed_or_error() {
                if continues(dag_task(template, t).continue_on.unwrap_or_default(), bp) {
                    continue;
                }
                result = bp;
                if fail_fast {
                    break;
                }
            }
        }
        (result, None)
    }
}
