//! The engine's state: the [`Engine`] itself and the node table it is made of — each [`Node`]
//! with its Argo status, its [`Owner`] (who is told when it is fulfilled) and its [`Frame`]
//! (what a retry, steps, step group, DAG or task group keeps while it runs).
//!
//! Types only, and the few helpers every concept shares; behaviour lives in the concept
//! modules (`steps`, `dag`, `retry`, ...), each adding an `impl Engine` block. Nothing here
//! may do I/O or read a clock: time comes in with every call.

use std::collections::VecDeque;
use std::sync::Arc;

use dag_depends::{DependsError, DependsExpr};
use serde_json::Value;
use template_eval::Vars;
use workflow_model::{
    Arguments, ContinueOn, DagTask, LifecycleHook, Metrics, Outputs, Template, TemplateKind,
    TemplateRef, WorkflowSpec, WorkflowStep,
};

use crate::maps::{HashMap, HashSet};
use crate::protocol::{Action, EngineConfig, EngineError, EngineLimits, TemplateStore};
use crate::scope::{ArtMap, Scope};
use crate::status::{NodeStatus, Phase, Time};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TScope {
    Local,
    Namespaced(String),
    Cluster(String),
}

impl TScope {
    pub(crate) fn label(&self, namespace: &str) -> String {
        match self {
            TScope::Local => format!("local/{namespace}"),
            TScope::Namespaced(_) => format!("namespaced/{namespace}"),
            TScope::Cluster(_) => "cluster/".into(),
        }
    }
}

/// Reference to a template from a step, task, hook or exit handler.
#[derive(Debug, Clone)]
pub(crate) struct Holder {
    pub(crate) template: Option<String>,
    pub(crate) template_ref: Option<TemplateRef>,
    pub(crate) inline: Option<Box<Template>>,
}

impl Holder {
    pub(crate) fn from_step(s: &WorkflowStep) -> Holder {
        Holder {
            template: s.template.clone(),
            template_ref: s.template_ref.clone(),
            inline: s.inline.clone(),
        }
    }
    pub(crate) fn named(name: &str) -> Holder {
        Holder {
            template: Some(name.to_string()),
            template_ref: None,
            inline: None,
        }
    }
    pub(crate) fn from_hook(h: &LifecycleHook) -> Holder {
        Holder {
            template: h.template.clone(),
            template_ref: h.template_ref.clone(),
            inline: None,
        }
    }
}

/// Who is told when a node is fulfilled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Owner {
    Workflow,
    WorkflowExit,
    Attempt { retry: usize },
    Step { group: usize, slot: usize },
    StepExit { group: usize, slot: usize },
    Task { dag: usize, task: usize },
    TaskExit { dag: usize, task: usize },
    TaskItem { group: usize, slot: usize },
    Hook,
    Nobody,
}

/// The context a template instance runs in.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) tscope: TScope,
    pub(crate) boundary: Option<String>,
    /// Variables from the enclosing scope (global + `steps.*`/`tasks.*` + item) used for
    /// arguments; the template's own inputs come from `args`.
    pub(crate) on_exit: bool,
    /// How many templates deep the instance that runs in this context is (0 outside the
    /// entry template, 1 in it): Argo's stack depth, counted by `execute`. Kept in the
    /// frames of steps, DAGs and retries, so that a step started later (when an earlier one
    /// ends) is as deep as one started at once.
    pub(crate) depth: usize,
}

/// A template instance ready to start: what `execute` resolved and instantiated, or a
/// retry's next attempt.
pub(crate) struct Instance {
    pub(crate) node_name: String,
    pub(crate) display: String,
    pub(crate) body: Arc<Value>,
    pub(crate) template: Template,
    pub(crate) inputs: Arguments,
    pub(crate) tname: String,
    pub(crate) tref: Option<TemplateRef>,
    pub(crate) ctx: Ctx,
    pub(crate) owner: Owner,
    /// The attempt's number, for a retry's attempt.
    pub(crate) retries: Option<usize>,
}

#[derive(Debug, Clone)]
pub(crate) struct StepSlot {
    pub(crate) step: WorkflowStep,
    pub(crate) node: Option<usize>,
    pub(crate) exit: Option<usize>,
    pub(crate) hooks_fired: HashSet<String>,
    pub(crate) hooks_running: usize,
    pub(crate) done: bool,
}

/// Task `i` of a DAG template (the frame's template is always a DAG).
pub(crate) fn dag_task(t: &Template, i: usize) -> &DagTask {
    &t.dag
        .as_ref()
        .expect("a DAG frame's template is a DAG")
        .tasks[i]
}

/// A DAG task's run state; the task itself is `dag.tasks[i]` of the frame's template (one
/// copy of a 10^5-task DAG, not two).
#[derive(Debug, Clone)]
pub(crate) struct TaskState {
    pub(crate) deps: Vec<usize>,
    pub(crate) dependents: Vec<usize>,
    pub(crate) depends_logic: String,
    /// `depends_logic` compiled (None: no dependencies), or why it does not parse.
    pub(crate) depends_expr: Result<Option<DependsExpr>, DependsError>,
    pub(crate) needed: bool,
    pub(crate) unfinished_deps: usize,
    pub(crate) node: Option<usize>,
    pub(crate) exit: Option<usize>,
    pub(crate) hooks_fired: HashSet<String>,
    pub(crate) hooks_running: usize,
    pub(crate) done: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Frame {
    Leaf,
    Retry {
        template: Arc<Value>,
        ctx: Box<Ctx>,
        tname: String,
        attempts: Vec<usize>,
        wait_until: Option<Time>,
    },
    Steps {
        template: Arc<Template>,
        ctx: Box<Ctx>,
        scope: Box<Scope>,
        group: usize,
        last_group_node: Option<usize>,
    },
    StepGroup {
        steps_node: usize,
        slots: Vec<StepSlot>,
        queue: VecDeque<usize>,
        running: usize,
        stop_new: bool,
    },
    Dag {
        template: Arc<Template>,
        ctx: Box<Ctx>,
        scope: Box<Scope>,
        tasks: Vec<TaskState>,
        targets: Vec<usize>,
        queue: VecDeque<usize>,
        running: usize,
        remaining: usize,
    },
    TaskGroup {
        dag: usize,
        items: Vec<(DagTask, Option<usize>)>,
        queue: VecDeque<usize>,
        running: usize,
        remaining: usize,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) status: NodeStatus,
    pub(crate) owner: Owner,
    pub(crate) frame: Frame,
    /// For leaves: the instantiated template (suspend, http, resource, pod).
    pub(crate) template: Option<Arc<Template>>,
    pub(crate) deadline: Option<Time>,
    pub(crate) started: bool,
    pub(crate) lock: Option<String>,
    pub(crate) memo_key: Option<(String, String)>,
    pub(crate) pod_name: Option<String>,
    /// The template's `metrics`, emitted when the node ends (realtime gauges when it starts).
    pub(crate) metrics: Option<Box<Metrics>>,
}

/// What a node of the run before a retry keeps (see `kept`).
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    pub(crate) phase: Option<Phase>,
    pub(crate) started_at: Option<Time>,
    pub(crate) finished_at: Option<Time>,
    pub(crate) outputs: Option<Outputs>,
    pub(crate) host_node_name: Option<String>,
}

/// One workflow's state.
pub struct Engine {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) uid: String,
    /// The workflow as submitted, without `spec.templates` (see `own_templates`).
    pub(crate) raw: Value,
    /// `Some` when `raw`'s `spec.templates` was taken out (and left `null`).
    pub(crate) own_templates: Option<Vec<Arc<Value>>>,
    pub(crate) spec: WorkflowSpec,
    pub(crate) templates: HashMap<String, Arc<Value>>,
    pub(crate) store: Arc<TemplateStore>,
    pub(crate) config: EngineConfig,
    pub(crate) limits: EngineLimits,
    /// A limit stopped the workflow: `drain` kills what runs, as a `terminate` does.
    pub(crate) limit_stop: bool,
    pub(crate) created: Time,
    pub(crate) phase: Phase,
    pub(crate) message: Option<String>,
    pub(crate) started_at: Option<Time>,
    pub(crate) finished_at: Option<Time>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) by_id: HashMap<String, usize>,
    pub(crate) globals: Vars,
    pub(crate) global_artifacts: ArtMap,
    pub(crate) global_outputs: Outputs,
    pub(crate) fulfilled: VecDeque<usize>,
    pub(crate) actions: Vec<Action>,
    pub(crate) pod_queue: VecDeque<usize>,
    pub(crate) running_pods: usize,
    pub(crate) deadline: Option<Time>,
    pub(crate) shutdown: Option<bool>,
    pub(crate) suspended: bool,
    pub(crate) locks: HashMap<String, (usize, usize)>,
    pub(crate) memo: HashMap<(String, String), (Outputs, Time)>,
    pub(crate) exit_node: Option<usize>,
    pub(crate) wf_hooks_fired: HashSet<String>,
    /// Nodes of the workflow-level hooks that fired: the workflow waits for them to end
    /// before its exit handler (Argo's `executeWfLifeCycleHook` returning not completed).
    pub(crate) wf_hook_nodes: Vec<usize>,
    /// The root ended while workflow hooks still ran: the exit handler waits for them.
    pub(crate) awaiting_hooks: bool,
    pub(crate) timers: Vec<(Time, usize)>,
    /// Decoded forms of the workflow's own templates, by address.
    /// With whether each uses `inputs.parameters` as a whole (a JSON list built per use).
    pub(crate) decoded: std::cell::RefCell<HashMap<usize, (Arc<Template>, bool)>>,
    /// Node deadlines by time; entries of nodes that ended or changed deadline are skipped.
    pub(crate) deadlines: std::collections::BTreeSet<(Time, usize)>,
    /// Nodes whose status changed since the last `take_changed`.
    pub(crate) changed: Vec<usize>,
    pub(crate) pending_retries: Vec<usize>,
    pub(crate) root_phase: Option<Phase>,
    /// A pod of the entry (or exit) template itself that could not be created: Argo's
    /// `error in entry template execution` (`exit`) — the workflow ends in Error with it; or
    /// the first limit of `limits` the workflow reached.
    pub(crate) template_error: Option<String>,
    /// The last custom metric that could not be emitted, and why (Argo's `MetricsError`
    /// condition).
    pub(crate) metrics_error: Option<String>,
    /// A retry's nodes of the run before it, by id (see `kept`).
    pub(crate) kept: HashMap<String, Kept>,
}

pub(crate) fn err(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
}

pub(crate) fn fix_display(node_name: &str, display: &str) -> String {
    if display.is_empty() {
        node_name.to_string()
    } else {
        display.to_string()
    }
}

pub(crate) fn is_pod_kind(k: TemplateKind) -> bool {
    matches!(
        k,
        TemplateKind::Container
            | TemplateKind::Script
            | TemplateKind::ContainerSet
            | TemplateKind::Resource
            | TemplateKind::Http
            | TemplateKind::Data
            | TemplateKind::Plugin
    )
}

pub(crate) fn continues(c: ContinueOn, p: Phase) -> bool {
    (p == Phase::Failed && c.failed) || (p == Phase::Error && c.error)
}
