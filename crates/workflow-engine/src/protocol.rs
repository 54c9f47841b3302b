//! What passes between the engine and its shell: the [`Event`]s the shell reports, the
//! [`Action`]s the engine asks for, and the facts the engine is built with
//! ([`TemplateStore`], [`EngineConfig`]).
//!
//! Events are plain data (serde): a durable shell logs each one before handing it over, and
//! replaying the log through a new engine rebuilds the same state. Nothing here may hold a
//! handle, a clock or a callback — only values a log can keep.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use workflow_model::{Artifact, Template, WorkflowObject};

use crate::status::Time;

/// Largest `outputs.result` Argo keeps (256 KB).
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("{0}")]
    Invalid(String),
}

/// Objects a workflow can refer to: WorkflowTemplates, ClusterWorkflowTemplates, ConfigMaps.
#[derive(Debug, Default, Clone)]
pub struct TemplateStore {
    pub workflow_templates: std::collections::HashMap<String, WorkflowObject>,
    pub cluster_workflow_templates: std::collections::HashMap<String, WorkflowObject>,
    pub config_maps: std::collections::HashMap<String, BTreeMap<String, String>>,
}

/// Facts about the place the workflow runs, for scheduling decisions the engine makes.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EngineConfig {
    /// Labels of the node steps run on; a `nodeSelector` that does not match leaves the pod
    /// Pending, as Kubernetes would.
    pub node_labels: BTreeMap<String, String>,
    /// Name of that node, recorded as `hostNodeName`.
    pub node_name: String,
    /// The shell's scheduler places pods on nodes and honours `nodeSelector` itself (the
    /// server); otherwise the engine checks selectors against `node_labels` (`onyx run`).
    #[serde(default)]
    pub shell_schedules: bool,
    /// What this workflow may grow to (kept with the workflow, so a replay uses the same).
    #[serde(default)]
    pub limits: EngineLimits,
}

/// Limits on what one workflow can make the engine do. A workflow that reaches one ends in
/// Error with a message naming it (its other running pods keep their course, except at
/// `max_nodes`, which stops the workflow as `terminate` does); no workflow can exhaust the
/// engine's stack or memory. Part of the engine's input: replaying a log must use the same.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct EngineLimits {
    /// Argo's `maxStackDepth` (`maxAllowedStackDepth`, 100): a template instance this many
    /// templates deep (the entry template is 1) errors with Argo's `Maximum recursion depth
    /// exceeded`, so that a template that calls itself cannot recurse forever.
    pub max_stack_depth: usize,
    /// Most items one `withItems`, `withParam` or `withSequence` may expand to.
    pub max_loop_items: usize,
    /// Most nodes one workflow may have.
    pub max_nodes: usize,
}

/// Argo v3.5's `maxAllowedStackDepth`.
pub const MAX_STACK_DEPTH: usize = 100;

/// Argo's message when `maxStackDepth` is reached (v3.5, `ErrMaxDepthExceeded`).
pub const MAX_DEPTH_MESSAGE: &str = "Maximum recursion depth exceeded. See https://argo-workflows.readthedocs.io/en/release-3.5/scaling/#maximum-recursion-depth";

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_stack_depth: MAX_STACK_DEPTH,
            // A 10^5-task DAG (the benchmark's largest) and loops as wide still run.
            max_loop_items: 100_000,
            max_nodes: 200_000,
        }
    }
}

/// Everything a pod needs to run, fully resolved.
#[derive(Debug, Clone)]
pub struct PodRequest {
    pub node_id: String,
    pub pod_name: String,
    pub template: Arc<Template>,
    /// Input artifacts with their resolved source.
    pub input_artifacts: Vec<Artifact>,
    /// Output artifacts with the repository key each must be stored under.
    pub output_artifacts: Vec<Artifact>,
    pub volumes: Vec<Value>,
    pub deadline: Option<Time>,
    pub capture_result: bool,
}

/// What the engine asks of the shell.
#[derive(Debug, Clone)]
pub enum Action {
    StartPod(Box<PodRequest>),
    KillPod {
        node_id: String,
        pod_name: String,
        reason: String,
    },
    Http {
        node_id: String,
        template: Arc<Template>,
    },
    Resource {
        node_id: String,
        pod_name: String,
        template: Arc<Template>,
    },
    /// Update a custom metric that the workflow or a template declares (`metrics.prometheus`),
    /// with its tags already substituted. Not a side effect the workflow waits on: a shell
    /// replaying a log after a restart drops these, as Argo's controller loses its custom
    /// metrics when it restarts.
    Metric(Box<MetricUpdate>),
}

/// One custom metric sample, as Argo's controller computes it (`computeMetrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricUpdate {
    /// The name as declared, without Argo's `argo_workflows_` prefix.
    pub name: String,
    pub help: String,
    /// Label pairs, sorted by key (Argo's constant labels).
    pub labels: Vec<(String, String)>,
    pub value: MetricValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// Add to a counter.
    Counter(f64),
    Gauge(GaugeOperation, f64),
    /// Observe a value; `buckets` are the histogram's upper bounds, ascending.
    Histogram {
        buckets: Vec<f64>,
        value: f64,
    },
    /// A realtime gauge: seconds since `since`, frozen at `until` once that is known.
    Realtime {
        since: Time,
        until: Option<Time>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaugeOperation {
    Set,
    Add,
    Sub,
}

/// What happened outside the engine. Events are data (serde): a durable shell logs each one
/// before handling it, and replaying the log through a new engine rebuilds the same state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// A pod's main process started, on `host` when a scheduler placed it (the node's
    /// `hostNodeName`; otherwise this machine's name).
    PodRunning {
        node_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A pod waits for resources before it can start (the scheduler says why).
    PodWaiting {
        node_id: String,
        message: String,
    },
    /// A pod finished (or could not start: `exit_code` None with a message).
    PodDone(PodResult),
    /// An HTTP template's request finished.
    HttpDone {
        node_id: String,
        status: u16,
        body: String,
        headers: BTreeMap<String, Vec<String>>,
        error: Option<String>,
    },
    /// A resource template finished.
    ResourceDone {
        node_id: String,
        phase_ok: bool,
        message: String,
        outputs: Vec<(String, String)>,
    },
    /// Resume the workflow, or one suspend node (matched by node id, name or display name),
    /// supplying values for `supplied` output parameters.
    Resume {
        node: Option<String>,
        supplied: BTreeMap<String, String>,
    },
    Suspend,
    /// `shutdown: Stop` (exit handlers still run) or `Terminate` (they don't).
    Shutdown {
        terminate: bool,
    },
    /// Time has passed; deadlines and timers are checked.
    Tick,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PodResult {
    pub node_id: String,
    pub exit_code: Option<i32>,
    /// stdout, for `outputs.result`.
    pub stdout: Option<String>,
    /// Output parameter values read from files; `None` when the file was missing.
    pub parameters: Vec<(String, Option<String>)>,
    /// Output artifacts actually saved (others were missing).
    pub artifacts: Vec<Artifact>,
    /// Why the pod failed to run, if it did not.
    pub message: Option<String>,
    /// Killed for exceeding its deadline.
    pub deadline_exceeded: bool,
}
