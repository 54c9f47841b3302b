use std::collections::{BTreeMap, VecDeque};

/// The engine's own maps hash with foldhash's fixed state: SipHash was a tenth of the time of
/// a 10^5-task DAG, the keys are not attacker-chosen beyond what the workflow's author can
/// already make the engine do, and a fixed state keeps iteration order the same every run.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;
use std::sync::Arc;

use chrono::Duration;
use serde_json::{json, Map, Value};
use template_eval::{govaluate, substitute, substitute_json, Layered, Lookup, Vars};
use workflow_model::{
    Arguments, Artifact, ContinueOn, DagTask, LifecycleHook, Outputs, Parameter, Template,
    TemplateKind, TemplateRef, WorkflowObject, WorkflowSpec, WorkflowStep,
};

use crate::status::*;

/// Artifacts in scope by name (`steps.a.outputs.artifacts.x`); persistent, cheap to clone.
type ArtMap = template_eval::PersistentMap<Artifact>;

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

#[derive(Debug, Clone, PartialEq)]
enum TScope {
    Local,
    Namespaced(String),
    Cluster(String),
}

impl TScope {
    fn label(&self, namespace: &str) -> String {
        match self {
            TScope::Local => format!("local/{namespace}"),
            TScope::Namespaced(_) => format!("namespaced/{namespace}"),
            TScope::Cluster(_) => "cluster/".into(),
        }
    }
}

/// Variables and artifacts visible inside one steps or DAG template instance.
#[derive(Debug, Clone, Default)]
struct Scope {
    vars: ScopeVars,
    artifacts: ArtMap,
}

/// A block's variables: its own (`inputs.*`, items, aggregated loop outputs) and, per
/// finished step or task, what `steps.<name>.*` / `tasks.<name>.*` resolve to, kept as one
/// entry under `steps.<name>` (status, id, times, outputs). One persistent-map insert per
/// finished task instead of seven: at 10^5 tasks those inserts, each a walk through a map
/// too large for the cache, were a fifth of the engine's time. Own variables win over
/// results of the same name (a loop's aggregated outputs over its last item's; a hook's
/// `tasks.<name>.status` over the recorded one). Step and task names have no dots (Argo's
/// `[a-zA-Z0-9][-a-zA-Z0-9]*`), so `steps.<name>` is the name up to its second dot.
#[derive(Debug, Clone, Default)]
struct ScopeVars {
    own: Vars,
    results: template_eval::PersistentMap<Arc<[(String, String)]>>,
}

impl ScopeVars {
    /// A block's scope before any of its steps or tasks has finished.
    fn over(own: Vars) -> ScopeVars {
        ScopeVars {
            own,
            ..Default::default()
        }
    }

    fn insert(&mut self, name: String, value: String) {
        self.own.insert(name, value);
    }

    /// The variables of a finished step or task, by the rest of their names.
    fn record(&mut self, prefix: &str, entries: Vec<(String, String)>) {
        if prefix.matches('.').count() == 1 {
            self.results.insert(prefix.to_string(), entries.into());
        } else {
            // A name with a dot could not be split back; keep its variables as own ones.
            for (rest, value) in entries {
                self.own.insert(format!("{prefix}.{rest}"), value);
            }
        }
    }
}

impl Lookup for ScopeVars {
    fn lookup(&self, name: &str) -> Option<&str> {
        if let Some(v) = self.own.get(name) {
            return Some(v);
        }
        let first = name.find('.')?;
        let second = first + 1 + name[first + 1..].find('.')?;
        let (prefix, rest) = (&name[..second], &name[second + 1..]);
        self.results
            .get(prefix)?
            .iter()
            .find(|(k, _)| k == rest)
            .map(|(_, v)| v.as_str())
    }

    fn each(&self, f: &mut dyn FnMut(&str, &str)) {
        let mut name = String::new();
        for (prefix, entries) in &self.results {
            for (rest, value) in entries.iter() {
                name.clear();
                name.push_str(prefix);
                name.push('.');
                name.push_str(rest);
                if !self.own.contains_key(&name) {
                    f(&name, value);
                }
            }
        }
        self.own.each(f);
    }
}

/// Reference to a template from a step, task, hook or exit handler.
#[derive(Debug, Clone)]
struct Holder {
    template: Option<String>,
    template_ref: Option<TemplateRef>,
    inline: Option<Box<Template>>,
}

impl Holder {
    fn from_step(s: &WorkflowStep) -> Holder {
        Holder {
            template: s.template.clone(),
            template_ref: s.template_ref.clone(),
            inline: s.inline.clone(),
        }
    }
    fn named(name: &str) -> Holder {
        Holder {
            template: Some(name.to_string()),
            template_ref: None,
            inline: None,
        }
    }
    fn from_hook(h: &LifecycleHook) -> Holder {
        Holder {
            template: h.template.clone(),
            template_ref: h.template_ref.clone(),
            inline: None,
        }
    }
}

/// Who is told when a node is fulfilled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Owner {
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
struct Ctx {
    tscope: TScope,
    boundary: Option<String>,
    /// Variables from the enclosing scope (global + `steps.*`/`tasks.*` + item) used for
    /// arguments; the template's own inputs come from `args`.
    on_exit: bool,
}

#[derive(Debug, Clone)]
struct StepSlot {
    step: WorkflowStep,
    node: Option<usize>,
    exit: Option<usize>,
    hooks_fired: HashSet<String>,
    hooks_running: usize,
    done: bool,
}

/// Task `i` of a DAG template (the frame's template is always a DAG).
fn dag_task(t: &Template, i: usize) -> &DagTask {
    &t.dag
        .as_ref()
        .expect("a DAG frame's template is a DAG")
        .tasks[i]
}

/// A DAG task's run state; the task itself is `dag.tasks[i]` of the frame's template (one
/// copy of a 10^5-task DAG, not two).
#[derive(Debug, Clone)]
struct TaskState {
    deps: Vec<usize>,
    dependents: Vec<usize>,
    depends_logic: String,
    /// `depends_logic` compiled (None: no dependencies), or why it does not parse.
    depends_expr: Result<Option<DependsExpr>, String>,
    needed: bool,
    unfinished_deps: usize,
    node: Option<usize>,
    exit: Option<usize>,
    hooks_fired: HashSet<String>,
    hooks_running: usize,
    done: bool,
}

#[derive(Debug, Clone)]
enum Frame {
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
        task: usize,
        items: Vec<(DagTask, Option<usize>)>,
        queue: VecDeque<usize>,
        running: usize,
        remaining: usize,
    },
}

#[derive(Debug, Clone)]
struct Node {
    status: NodeStatus,
    owner: Owner,
    frame: Frame,
    /// For leaves: the instantiated template (suspend, http, resource, pod).
    template: Option<Arc<Template>>,
    deadline: Option<Time>,
    started: bool,
    lock: Option<String>,
    memo_key: Option<(String, String)>,
    pod_name: Option<String>,
}

/// One workflow's state.
pub struct Engine {
    name: String,
    namespace: String,
    uid: String,
    /// The workflow as submitted, without `spec.templates` (see `own_templates`).
    raw: Value,
    /// `Some` when `raw`'s `spec.templates` was taken out (and left `null`).
    own_templates: Option<Vec<Arc<Value>>>,
    spec: WorkflowSpec,
    templates: HashMap<String, Arc<Value>>,
    store: Arc<TemplateStore>,
    config: EngineConfig,
    created: Time,
    phase: Phase,
    message: Option<String>,
    started_at: Option<Time>,
    finished_at: Option<Time>,
    nodes: Vec<Node>,
    by_id: HashMap<String, usize>,
    globals: Vars,
    global_artifacts: ArtMap,
    global_outputs: Outputs,
    fulfilled: VecDeque<usize>,
    actions: Vec<Action>,
    pod_queue: VecDeque<usize>,
    running_pods: usize,
    deadline: Option<Time>,
    shutdown: Option<bool>,
    suspended: bool,
    locks: HashMap<String, (usize, usize)>,
    memo: HashMap<(String, String), (Outputs, Time)>,
    exit_node: Option<usize>,
    wf_hooks_fired: HashSet<String>,
    timers: Vec<(Time, usize)>,
    /// Decoded forms of the workflow's own templates, by address.
    /// With whether each uses `inputs.parameters` as a whole (a JSON list built per use).
    decoded: std::cell::RefCell<HashMap<usize, (Arc<Template>, bool)>>,
    /// Node deadlines by time; entries of nodes that ended or changed deadline are skipped.
    deadlines: std::collections::BTreeSet<(Time, usize)>,
    /// Nodes whose status changed since the last `take_changed`.
    changed: Vec<usize>,
    pending_retries: Vec<usize>,
    root_phase: Option<Phase>,
}

fn err(msg: impl Into<String>) -> EngineError {
    EngineError::Invalid(msg.into())
}

fn merge_defaults(base: &Value, defaults: &Value) -> Value {
    match (base, defaults) {
        (Value::Object(b), Value::Object(d)) => {
            let mut out = b.clone();
            for (k, dv) in d {
                match out.get(k) {
                    Some(bv) => {
                        let merged = merge_defaults(bv, dv);
                        out.insert(k.clone(), merged);
                    }
                    None => {
                        out.insert(k.clone(), dv.clone());
                    }
                }
            }
            Value::Object(out)
        }
        (b, _) => b.clone(),
    }
}

/// Go duration strings (`10s`, `1m30s`, `2h`) or bare seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Some(Duration::milliseconds((secs * 1000.0) as i64));
    }
    let mut total = 0f64;
    let mut num = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            i += 1;
            continue;
        }
        let mut unit = String::new();
        while i < chars.len() && !(chars[i].is_ascii_digit() || chars[i] == '.') {
            unit.push(chars[i]);
            i += 1;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    Some(Duration::milliseconds((total * 1000.0) as i64))
}

/// How an item appears in node names: `step(0:value)`.
fn item_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            keys.iter()
                .map(|k| format!("{}:{}", k, item_label(&m[*k])))
                .collect::<Vec<_>>()
                .join(",")
        }
        other => other.to_string(),
    }
}

/// Variables for one loop item: `item`, and `item.<key>` for maps.
fn item_vars(v: &Value, vars: &mut Vars) {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    vars.insert("item".into(), text);
    if let Value::Object(m) = v {
        for (k, x) in m {
            let t = match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars.insert(format!("item.{k}"), t);
        }
    }
}

fn expand_sequence(seq: &workflow_model::Sequence) -> Result<Vec<Value>, String> {
    let parse =
        |v: &Option<workflow_model::IntOrString>, what: &str| -> Result<Option<i64>, String> {
            match v {
                None => Ok(None),
                Some(x) => {
                    x.text().trim().parse::<i64>().map(Some).map_err(|_| {
                        format!("withSequence.{what} '{}' is not an integer", x.text())
                    })
                }
            }
        };
    let count = parse(&seq.count, "count")?;
    let start = parse(&seq.start, "start")?;
    let end = parse(&seq.end, "end")?;
    let (from, to): (i64, i64) = match (count, end) {
        (Some(_), Some(_)) => {
            return Err("withSequence: only one of count or end can be defined".into())
        }
        (Some(c), None) => {
            let s = start.unwrap_or(0);
            if c == 0 {
                return Ok(Vec::new());
            }
            (s, s + c - 1)
        }
        (None, Some(e)) => (start.unwrap_or(0), e),
        (None, None) => return Err("withSequence: one of count or end must be defined".into()),
    };
    let nums: Vec<i64> = if from <= to {
        (from..=to).collect()
    } else {
        (to..=from).rev().collect()
    };
    Ok(nums
        .into_iter()
        .map(|n| {
            Value::String(match &seq.format {
                Some(f) if !f.is_empty() => go_sprintf_int(f, n),
                _ => n.to_string(),
            })
        })
        .collect())
}

/// `fmt.Sprintf` for one integer with the verbs withSequence formats use (%d, %02d, %x, %X, %o).
fn go_sprintf_int(fmt: &str, n: i64) -> String {
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        let mut zero = false;
        let mut width = 0usize;
        if i < chars.len() && chars[i] == '%' {
            out.push('%');
            i += 1;
            continue;
        }
        if i < chars.len() && chars[i] == '0' {
            zero = true;
            i += 1;
        }
        while i < chars.len() && chars[i].is_ascii_digit() {
            width = width * 10 + chars[i].to_digit(10).unwrap_or(0) as usize;
            i += 1;
        }
        let verb = chars.get(i).copied().unwrap_or('d');
        i += 1;
        let body = match verb {
            'x' => format!("{n:x}"),
            'X' => format!("{n:X}"),
            'o' => format!("{n:o}"),
            'b' => format!("{n:b}"),
            _ => n.to_string(),
        };
        if body.len() < width {
            let pad = if zero { '0' } else { ' ' };
            out.extend(std::iter::repeat_n(pad, width - body.len()));
        }
        out.push_str(&body);
    }
    out
}

fn parse_items(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(_) | Err(_) => Err(format!(
            "withParam value could not be parsed as a JSON list: {}",
            text.trim()
        )),
    }
}

fn json_or_string(s: &str) -> Value {
    serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

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
                        Some(d) => Arc::new(merge_defaults(t, d)),
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
            config,
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
            timers: Vec::new(),
            decoded: std::cell::RefCell::new(HashMap::default()),
            deadlines: std::collections::BTreeSet::new(),
            changed: Vec::new(),
            pending_retries: Vec::new(),
            root_phase: None,
        };
        e.init_globals()?;
        Ok(e)
    }

    fn init_globals(&mut self) -> Result<(), EngineError> {
        let g = &mut self.globals;
        g.insert("workflow.name".into(), self.name.clone());
        g.insert("workflow.namespace".into(), self.namespace.clone());
        g.insert(
            "workflow.mainEntrypoint".into(),
            self.spec.entrypoint.clone().unwrap_or_default(),
        );
        g.insert("workflow.uid".into(), self.uid.clone());
        g.insert(
            "workflow.serviceAccountName".into(),
            self.spec.service_account_name.clone().unwrap_or_default(),
        );
        g.insert(
            "workflow.creationTimestamp".into(),
            format_time(&self.created),
        );
        g.insert(
            "workflow.creationTimestamp.RFC3339".into(),
            format_time(&self.created),
        );
        for (fmtc, f) in [
            ("Y", "%Y"),
            ("m", "%m"),
            ("d", "%d"),
            ("H", "%H"),
            ("M", "%M"),
            ("S", "%S"),
            ("s", "%s"),
            ("y", "%y"),
            ("b", "%b"),
            ("B", "%B"),
            ("a", "%a"),
            ("A", "%A"),
            ("j", "%j"),
            ("e", "%e"),
        ] {
            g.insert(
                format!("workflow.creationTimestamp.{fmtc}"),
                self.created.format(f).to_string(),
            );
        }
        g.insert(
            "workflow.priority".into(),
            self.spec.priority.unwrap_or(0).to_string(),
        );
        if let Some(Value::Object(labels)) = self.raw.pointer("/metadata/labels") {
            for (k, v) in labels {
                g.insert(
                    format!("workflow.labels.{k}"),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        if let Some(Value::Object(ann)) = self.raw.pointer("/metadata/annotations") {
            for (k, v) in ann {
                g.insert(
                    format!("workflow.annotations.{k}"),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        // Workflow parameters may refer to earlier ones and to workflow.* variables.
        let mut params = Vec::new();
        for p in self.spec.arguments.parameters.clone() {
            let value = if let Some(v) = &p.value {
                substitute(&v.0, &self.globals, true).map_err(|e| err(e.to_string()))?
            } else if let Some(vf) = &p.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    self.config_map_value(
                        &r.name,
                        &r.key,
                        r.optional.unwrap_or(false),
                        vf.default.as_ref().map(|d| d.0.clone()),
                    )?
                } else if let Some(d) = &vf.default {
                    d.0.clone()
                } else {
                    return Err(err(format!(
                        "spec.arguments.parameters.{}.value is required",
                        p.name
                    )));
                }
            } else if let Some(d) = &p.default {
                d.0.clone()
            } else {
                return Err(err(format!(
                    "spec.arguments.parameters.{}.value is required; pass it with -p {}=VALUE",
                    p.name, p.name
                )));
            };
            if !p.enum_values.is_empty() && !p.enum_values.iter().any(|e| e.0 == value) {
                let allowed: Vec<&str> = p.enum_values.iter().map(|e| e.0.as_str()).collect();
                return Err(err(format!(
                    "value '{value}' of parameter '{}' is not one of [{}]",
                    p.name,
                    allowed.join(", ")
                )));
            }
            self.globals
                .insert(format!("workflow.parameters.{}", p.name), value.clone());
            params.push(json!({"name": p.name, "value": value}));
        }
        let all = Value::Array(params).to_string();
        self.globals
            .insert("workflow.parameters".into(), all.clone());
        self.globals.insert("workflow.parameters.json".into(), all);
        for a in &self.spec.arguments.artifacts {
            self.global_artifacts
                .insert(format!("workflow.artifacts.{}", a.name), a.clone());
        }
        Ok(())
    }

    fn config_map_value(
        &self,
        name: &str,
        key: &str,
        optional: bool,
        default: Option<String>,
    ) -> Result<String, EngineError> {
        match self.store.config_maps.get(name).and_then(|m| m.get(key)) {
            Some(v) => Ok(v.clone()),
            None => match default {
                Some(d) => Ok(d),
                None if optional => Ok(String::new()),
                None if self.store.config_maps.contains_key(name) => Err(err(format!(
                    "ConfigMap '{name}' does not have the key '{key}'"
                ))),
                None => Err(err(format!("ConfigMap '{name}' not found"))),
            },
        }
    }

    /// The workflow's spec (the shell reads pod defaults such as `schedulerName` from it).
    pub fn spec(&self) -> &WorkflowSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.name
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
            self.deadline = Some(now + Duration::seconds(s));
        }
        if self.spec.suspend == Some(true) {
            self.suspended = true;
        }
        if let Some(s) = &self.spec.shutdown {
            self.shutdown = Some(s == "Terminate");
        }
        let entry = self.spec.entrypoint.clone().unwrap_or_default();
        let ctx = Ctx {
            tscope: TScope::Local,
            boundary: None,
            on_exit: false,
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
            Event::PodRunning { node_id, host } => {
                if let Some(&i) = self.by_id.get(&node_id) {
                    if self.nodes[i].status.phase == Phase::Pending {
                        if host.is_some() {
                            self.nodes[i].status.host_node_name = host;
                        }
                        self.changed.push(i);
                        self.nodes[i].status.phase = Phase::Running;
                        self.nodes[i].status.message = None;
                        self.on_running(i, now);
                    }
                }
            }
            Event::PodWaiting { node_id, message } => {
                if let Some(&i) = self.by_id.get(&node_id) {
                    // A resource node (a Volcano job) reports its gang's progress while it runs.
                    if matches!(self.nodes[i].status.phase, Phase::Pending | Phase::Running)
                        && self.nodes[i].status.message.as_deref() != Some(message.as_str())
                    {
                        self.changed.push(i);
                        self.nodes[i].status.message = Some(message);
                    }
                }
            }
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
            } => {
                if let Some(&i) = self.by_id.get(&node_id) {
                    if !self.nodes[i].status.phase.fulfilled() {
                        self.release_pod_slot(i);
                        let mut out = Outputs::default();
                        for (k, v) in outputs {
                            out.parameters.push(Parameter {
                                name: k,
                                value: Some(workflow_model::AnyString(v)),
                                ..Default::default()
                            });
                        }
                        if !out.is_empty() {
                            self.nodes[i].status.outputs = Some(out);
                        }
                        let phase = if phase_ok {
                            Phase::Succeeded
                        } else {
                            Phase::Failed
                        };
                        // Progress reported while it ran is not its end's message.
                        self.nodes[i].status.message = None;
                        self.finish(
                            i,
                            phase,
                            if message.is_empty() {
                                None
                            } else {
                                Some(message)
                            },
                            now,
                        );
                    }
                }
            }
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

    // ----- node bookkeeping -----

    #[allow(clippy::too_many_arguments)]
    fn new_node(
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
            started_at: Some(now),
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
        });
        self.by_id.insert(id, idx);
        self.changed.push(idx);
        idx
    }

    /// Set a node's deadline and index it, so time checks never scan all nodes.
    fn set_deadline(&mut self, i: usize, deadline: Option<Time>) {
        self.nodes[i].deadline = deadline;
        if let Some(d) = deadline {
            self.deadlines.insert((d, i));
        }
    }

    fn add_child(&mut self, parent: usize, child: usize) {
        // Each (parent, child) link is made once by construction; checking the last entry
        // keeps this O(1) for DAG nodes with very many children.
        let id = self.nodes[child].status.id.clone();
        if self.nodes[parent].status.children.last() != Some(&id) {
            self.nodes[parent].status.children.push(id);
        }
    }

    /// Mark a node fulfilled and queue the notification of its owner.
    fn finish(&mut self, i: usize, phase: Phase, message: Option<String>, now: Time) {
        let n = &mut self.nodes[i];
        if n.status.phase.fulfilled() {
            return;
        }
        n.status.phase = phase;
        if message.is_some() {
            n.status.message = message;
        }
        n.status.finished_at = Some(now);
        // An ended node never reads its instantiated template again; at 10^5 nodes keeping
        // them costs kilobytes per node.
        n.template = None;
        self.changed.push(i);
        if let Some(lock) = n.lock.take() {
            self.release_lock(&lock);
        }
        if phase == Phase::Succeeded {
            if let Some((cache, key)) = self.nodes[i].memo_key.clone() {
                let outputs = self.nodes[i].status.outputs.clone().unwrap_or_default();
                self.memo.insert((cache, key), (outputs, now));
            }
            let outs = self.nodes[i].status.outputs.clone();
            if let Some(o) = outs {
                self.add_global_outputs(&o);
            }
        }
        self.fulfilled.push_back(i);
    }

    fn add_global_outputs(&mut self, o: &Outputs) {
        for p in &o.parameters {
            if let (Some(g), Some(v)) = (&p.global_name, &p.value) {
                self.globals
                    .insert(format!("workflow.outputs.parameters.{g}"), v.0.clone());
                let mut gp = p.clone();
                gp.name = g.clone();
                gp.value_from = None;
                self.global_outputs.parameters.retain(|x| x.name != *g);
                self.global_outputs.parameters.push(gp);
            }
        }
        for a in &o.artifacts {
            if let Some(g) = &a.global_name {
                let mut ga = a.clone();
                ga.name = g.clone();
                self.global_artifacts
                    .insert(format!("workflow.outputs.artifacts.{g}"), ga.clone());
                self.global_outputs.artifacts.retain(|x| x.name != *g);
                self.global_outputs.artifacts.push(ga);
            }
        }
    }

    fn drain(&mut self, now: Time) {
        loop {
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

    // ----- template resolution -----

    fn resolve(
        &self,
        holder: &Holder,
        tscope: &TScope,
    ) -> Result<(Arc<Value>, TScope, String, Option<TemplateRef>), String> {
        if let Some(inline) = &holder.inline {
            let v = serde_json::to_value(inline.as_ref()).map_err(|e| e.to_string())?;
            return Ok((Arc::new(v), tscope.clone(), String::new(), None));
        }
        if let Some(r) = &holder.template_ref {
            let (map, kind) = if r.cluster_scope {
                (
                    &self.store.cluster_workflow_templates,
                    "ClusterWorkflowTemplate",
                )
            } else {
                (&self.store.workflow_templates, "WorkflowTemplate")
            };
            let wt = map
                .get(&r.name)
                .ok_or_else(|| format!("{kind}.argoproj.io \"{}\" not found", r.name))?;
            let t = template_in(wt, &r.template)
                .ok_or_else(|| format!("template {} not found in {kind} {}", r.template, r.name))?;
            let scope = if r.cluster_scope {
                TScope::Cluster(r.name.clone())
            } else {
                TScope::Namespaced(r.name.clone())
            };
            return Ok((Arc::new(t), scope, r.template.clone(), Some(r.clone())));
        }
        let name = holder.template.clone().unwrap_or_default();
        match tscope {
            TScope::Local => self
                .templates
                .get(&name)
                .cloned()
                .map(|t| (t, TScope::Local, name.clone(), None))
                .ok_or_else(|| format!("template {name} not found")),
            TScope::Namespaced(wt) | TScope::Cluster(wt) => {
                let cluster = matches!(tscope, TScope::Cluster(_));
                let map = if cluster {
                    &self.store.cluster_workflow_templates
                } else {
                    &self.store.workflow_templates
                };
                let obj = map
                    .get(wt)
                    .ok_or_else(|| format!("template {wt} not found"))?;
                let t = template_in(obj, &name)
                    .ok_or_else(|| format!("template {name} not found in {wt}"))?;
                let r = TemplateRef {
                    name: wt.clone(),
                    template: name.clone(),
                    cluster_scope: cluster,
                };
                Ok((Arc::new(t), tscope.clone(), name, Some(r)))
            }
        }
    }

    /// Argo's `ProcessArgs`: bind inputs from arguments, substitute them and the globals
    /// into the template. Tags that belong to later stages stay unresolved.
    /// Decode a template, once per stored template (templates are shared `Arc`s, so the
    /// address identifies them for the engine's lifetime).
    fn decode_template(&self, tmpl: &Value) -> Result<(Arc<Template>, bool), String> {
        let key = tmpl as *const Value as usize;
        if let Some(t) = self.decoded.borrow().get(&key) {
            return Ok(t.clone());
        }
        let t: Arc<Template> = Arc::new(
            workflow_model::decode(tmpl).map_err(|(p, m)| format!("template field {p}: {m}"))?,
        );
        let entry = (t, mentions_all_inputs(tmpl));
        let stored = self
            .templates
            .values()
            .any(|v| Arc::as_ptr(v) as usize == key);
        if stored {
            self.decoded.borrow_mut().insert(key, entry.clone());
        }
        Ok(entry)
    }

    fn instantiate(
        &self,
        tmpl: &Value,
        args: &Arguments,
        node_name: &str,
        tname: &str,
    ) -> Result<(Value, Template, Arguments), String> {
        let (t, wants_all_inputs) = self.decode_template(tmpl)?;
        let mut inputs = t.inputs.clone();
        // The template's own variables, looked up over the globals (not inserted into a copy
        // of them: a persistent map's insert copies the node it lands in, every global's
        // strings with it, per instantiation).
        let mut vars = Vars::new();
        for p in inputs.parameters.iter_mut() {
            if p.value.is_none() && p.default.is_some() {
                p.value = p.default.clone();
            }
            if let Some(a) = args.parameters.iter().find(|a| a.name == p.name) {
                if a.value.is_some() {
                    p.value = a.value.clone();
                } else if a.value_from.is_some() {
                    p.value_from = a.value_from.clone();
                }
            }
            if let Some(vf) = &p.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    let v = self
                        .config_map_value(
                            &r.name,
                            &r.key,
                            r.optional.unwrap_or(false),
                            vf.default.as_ref().map(|d| d.0.clone()),
                        )
                        .map_err(|e| e.to_string())?;
                    p.value = Some(workflow_model::AnyString(v));
                }
            }
            let Some(v) = &p.value else {
                return Err(format!("inputs.parameters.{} was not supplied", p.name));
            };
            let v = substitute(&v.0, &self.globals, true).map_err(|e| e.to_string())?;
            if !p.enum_values.is_empty() && !p.enum_values.iter().any(|e| e.0 == v) {
                let allowed: Vec<&str> = p.enum_values.iter().map(|e| e.0.as_str()).collect();
                return Err(format!(
                    "value '{v}' of input parameter '{}' is not one of [{}]",
                    p.name,
                    allowed.join(", ")
                ));
            }
            p.value = Some(workflow_model::AnyString(v.clone()));
            vars.insert(format!("inputs.parameters.{}", p.name), v);
        }
        if wants_all_inputs {
            let plist: Vec<Value> = inputs
                .parameters
                .iter()
                .map(|p| serde_json::to_value(p).unwrap_or_default())
                .collect();
            vars.insert("inputs.parameters".into(), Value::Array(plist).to_string());
        }
        for a in inputs.artifacts.iter_mut() {
            let supplied = args.artifacts.iter().find(|x| x.name == a.name);
            if let Some(s) = supplied {
                let path = a.path.clone();
                let mode = a.mode;
                let name = a.name.clone();
                let optional = a.optional;
                let sub_path = a.sub_path.clone();
                *a = s.clone();
                a.name = name;
                a.path = path;
                if mode.is_some() {
                    a.mode = mode;
                }
                a.optional = a.optional || optional;
                if a.sub_path.is_none() {
                    a.sub_path = sub_path;
                }
            }
            let has_source = a.raw.is_some()
                || a.http.is_some()
                || a.local.is_some()
                || a.s3.is_some()
                || a.git.is_some()
                || a.gcs.is_some()
                || a.oss.is_some()
                || a.azure.is_some()
                || a.hdfs.is_some()
                || a.artifactory.is_some()
                || a.from.is_some();
            if !has_source && !a.optional {
                return Err(format!("inputs.artifacts.{} was not supplied", a.name));
            }
            if let Some(p) = &a.path {
                vars.insert(format!("inputs.artifacts.{}.path", a.name), p.clone());
            }
        }
        // Input artifacts' own fields (keys, URLs, raw data) may use globals and parameters.
        for a in inputs.artifacts.iter_mut() {
            let v = serde_json::to_value(&*a).unwrap_or_default();
            let v = substitute_json(&v, &self.layered(&vars), true).map_err(|e| e.to_string())?;
            *a = workflow_model::decode(&v)
                .map_err(|(p, m)| format!("input artifact {}: {p}: {m}", a.name))?;
        }
        for p in &t.outputs.parameters {
            if let Some(path) = p.value_from.as_ref().and_then(|v| v.path.as_ref()) {
                vars.insert(format!("outputs.parameters.{}.path", p.name), path.clone());
            }
        }
        for a in &t.outputs.artifacts {
            if let Some(path) = &a.path {
                vars.insert(format!("outputs.artifacts.{}.path", a.name), path.clone());
            }
        }
        // A retried template gets its pod name per attempt (see `execute_instance`).
        if t.retry_strategy.is_none() && t.kind().is_some_and(is_pod_kind) {
            vars.insert("pod.name".into(), pod_name(&self.name, node_name, tname));
            vars.insert("node.name".into(), node_name.to_string());
        }
        // Inputs are already bound; keep them as bound, not re-substituted.
        let mut out = Map::new();
        if let Value::Object(m) = tmpl {
            for (k, v) in m {
                if k == "inputs" {
                    continue;
                }
                // Steps and tasks are substituted one by one when they start, with the
                // template's inputs and the globals in their scope; doing the whole body here
                // too would cost O(tasks) per instantiation for nothing.
                if k == "steps" || k == "dag" {
                    continue;
                }
                out.insert(
                    k.clone(),
                    substitute_json(v, &self.layered(&vars), true).map_err(|e| e.to_string())?,
                );
            }
        }
        let mut body = Value::Object(out);
        let mut typed: Template =
            workflow_model::decode(&body).map_err(|(p, m)| format!("template field {p}: {m}"))?;
        // Steps and DAG bodies were decoded once with the stored template.
        typed.steps = t.steps.clone();
        typed.dag = t.dag.clone();
        typed.inputs = inputs.clone();
        // Retried templates are decoded again per attempt from the body: it keeps everything.
        let retried = t.retry_strategy.is_some()
            || (self.spec.retry_strategy.is_some() && t.kind().is_some_and(is_pod_kind));
        if retried {
            if let (Value::Object(m), Value::Object(src)) = (&mut body, tmpl) {
                m.insert(
                    "inputs".into(),
                    serde_json::to_value(&inputs).unwrap_or_default(),
                );
                for k in ["steps", "dag"] {
                    if let Some(v) = src.get(k) {
                        m.insert(k.into(), v.clone());
                    }
                }
            }
        }
        Ok((body, typed, inputs))
    }

    // ----- execution -----

    /// Create (or find) the node for running `holder` under `node_name` and start it.
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &mut self,
        node_name: &str,
        holder: &Holder,
        args: &Arguments,
        ctx: &Ctx,
        owner: Owner,
        display: Option<String>,
        now: Time,
    ) -> usize {
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
                return i;
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
                return i;
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
            self.retry_step(i, now);
            return i;
        }
        self.execute_instance(
            node_name,
            &display,
            Arc::new(body),
            t,
            inputs,
            &tname,
            tref,
            &inner_ctx,
            owner,
            None,
            now,
        )
    }

    /// Start one instance of an instantiated template (an attempt, or the node itself).
    #[allow(clippy::too_many_arguments)]
    fn execute_instance(
        &mut self,
        node_name: &str,
        display: &str,
        body: Arc<Value>,
        mut t: Template,
        inputs: Arguments,
        tname: &str,
        tref: Option<TemplateRef>,
        ctx: &Ctx,
        owner: Owner,
        retries: Option<usize>,
        now: Time,
    ) -> usize {
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
        let Some(kind) = kind else {
            self.finish(i, Phase::Error, Some(format!("template '{tname}' has no container, script, steps, dag, suspend, resource or http")), now);
            return i;
        };
        // Memoization: a cache hit ends the node with the saved outputs.
        if let Some(m) = &t.memoize {
            let cache = m
                .cache
                .as_ref()
                .and_then(|c| c.pointer("/configMap/name"))
                .and_then(Value::as_str)
                .unwrap_or("default")
                .to_string();
            let key = m.key.clone();
            let max_age = m.max_age.as_deref().and_then(parse_duration);
            let hit = self
                .memo
                .get(&(cache.clone(), key.clone()))
                .filter(|(_, at)| max_age.is_none_or(|a| now - *at <= a))
                .cloned();
            self.nodes[i].status.memoization_status =
                Some(json!({"hit": hit.is_some(), "key": key, "cacheName": cache}));
            if let Some((outputs, _)) = hit {
                self.nodes[i].status.outputs = Some(outputs);
                self.finish(i, Phase::Succeeded, None, now);
                return i;
            }
            self.nodes[i].memo_key = Some((cache, key));
        }
        let t = Arc::new(t);
        self.nodes[i].template = Some(t.clone());
        // Template deadlines: `timeout` for any template, `activeDeadlineSeconds` for pods.
        let mut deadline = None;
        if let Some(to) = t.timeout.as_deref().and_then(parse_duration) {
            deadline = Some(now + to);
        }
        if let Some(ads) = &t.active_deadline_seconds {
            if let Ok(s) = ads.text().trim().parse::<i64>() {
                let d = now + Duration::seconds(s);
                deadline = Some(deadline.map_or(d, |x: Time| x.min(d)));
            }
        }
        // Template-level synchronization: wait for the lock before starting.
        if let Some(sync) = &t.synchronization {
            match self.lock_name(sync) {
                Ok(lock) => self.nodes[i].lock = Some(lock),
                Err(e) => {
                    self.finish(i, Phase::Error, Some(e), now);
                    return i;
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
                self.start_step_group(i, now);
            }
            TemplateKind::Dag => {
                self.set_deadline(i, deadline);
                self.nodes[i].status.phase = Phase::Running;
                self.start_dag(i, t.clone(), ctx, now);
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
                            self.set_deadline(i, Some(now + d));
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
                    return i;
                }
                self.pod_queue.push_back(i);
            }
        }
        i
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

    /// Artifacts a steps or DAG template's children can take `from`: the globals and the
    /// template's own inputs.
    fn scope_artifacts_base(&self, t: &Template) -> ArtMap {
        let mut a = self.global_artifacts.clone();
        for art in &t.inputs.artifacts {
            a.insert(format!("inputs.artifacts.{}", art.name), art.clone());
        }
        a
    }

    fn scope_base(&self, t: &Template) -> Vars {
        let mut v = Vars::new();
        for p in &t.inputs.parameters {
            if let Some(val) = &p.value {
                v.insert(format!("inputs.parameters.{}", p.name), val.0.clone());
            }
        }
        v
    }

    fn lock_name(&self, sync: &workflow_model::Synchronization) -> Result<String, String> {
        if let Some(m) = &sync.mutex {
            return Ok(format!(
                "mutex/{}/{}",
                m.namespace
                    .clone()
                    .unwrap_or_else(|| self.namespace.clone()),
                m.name
            ));
        }
        if let Some(s) = &sync.semaphore {
            let r = s
                .config_map_key_ref
                .as_ref()
                .ok_or("semaphore needs configMapKeyRef")?;
            let limit = self
                .config_map_value(&r.name, &r.key, false, None)
                .map_err(|e| format!("failed to get semaphore limit: {e}"))?;
            let n: usize = limit.trim().parse().map_err(|_| {
                format!(
                    "semaphore limit '{limit}' in ConfigMap {} is not a number",
                    r.name
                )
            })?;
            return Ok(format!(
                "semaphore/{}/{}/{}#{n}",
                self.namespace, r.name, r.key
            ));
        }
        Err("synchronization needs a mutex or a semaphore".into())
    }

    /// Whether a shutdown stops new work under this node: Terminate stops everything, Stop
    /// everything but exit handlers.
    fn halted(&self, i: usize) -> bool {
        match self.shutdown {
            None => false,
            Some(true) => true,
            Some(false) => !self.nodes[i].status.name.contains(".onExit"),
        }
    }

    fn lock_limit(lock: &str) -> usize {
        lock.rsplit_once('#')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(1)
    }

    fn try_acquire(&mut self, lock: &str) -> bool {
        let limit = Self::lock_limit(lock);
        let e = self.locks.entry(lock.to_string()).or_insert((0, limit));
        if e.0 < e.1 {
            e.0 += 1;
            true
        } else {
            false
        }
    }

    fn release_lock(&mut self, lock: &str) {
        if let Some(e) = self.locks.get_mut(lock) {
            e.0 = e.0.saturating_sub(1);
        }
    }

    /// Start queued pods while parallelism, locks and suspension allow. Returns whether it
    /// did anything.
    fn try_start_pods(&mut self, now: Time) -> bool {
        if self.suspended || self.is_finished() {
            return false;
        }
        let limit = self.spec.parallelism.map(|p| p.max(1) as usize);
        let mut progressed = false;
        let mut waiting = VecDeque::new();
        while let Some(i) = self.pod_queue.pop_front() {
            if self.nodes[i].status.phase.fulfilled() || self.halted(i) {
                continue;
            }
            if limit.is_some_and(|l| self.running_pods >= l) {
                waiting.push_back(i);
                waiting.extend(self.pod_queue.drain(..));
                break;
            }
            if let Some(lock) = self.nodes[i].lock.clone() {
                if !self.nodes[i].started && !self.try_acquire(&lock) {
                    self.nodes[i].status.message = Some(format!(
                        "Waiting for {} lock. Lock status: 0/1",
                        lock.split('#').next().unwrap_or(&lock)
                    ));
                    waiting.push_back(i);
                    continue;
                }
            }
            self.start_pod(i, now);
            progressed = true;
        }
        self.pod_queue = waiting;
        progressed
    }

    fn start_pod(&mut self, i: usize, now: Time) {
        let t = self.nodes[i]
            .template
            .clone()
            .expect("pod nodes have a template");
        self.nodes[i].started = true;
        self.nodes[i].status.started_at = Some(now);
        self.nodes[i].status.message = None;
        self.nodes[i].status.host_node_name =
            Some(self.config.node_name.clone()).filter(|s| !s.is_empty());
        self.running_pods += 1;
        let node_id = self.nodes[i].status.id.clone();
        let pod_name = self.nodes[i].pod_name.clone().unwrap_or_default();
        if t.http.is_some() {
            self.nodes[i].status.phase = Phase::Running;
            self.actions.push(Action::Http {
                node_id,
                template: t,
            });
            return;
        }
        if t.resource.is_some() {
            self.nodes[i].status.phase = Phase::Running;
            self.actions.push(Action::Resource {
                node_id,
                pod_name,
                template: t,
            });
            return;
        }
        let mut inputs = Vec::new();
        let mut input_error = None;
        for a in &t.inputs.artifacts {
            let mut a = a.clone();
            if let Some(from) = a.from.clone() {
                match self
                    .global_artifacts
                    .get(from.trim_start_matches("{{").trim_end_matches("}}"))
                {
                    Some(src) => {
                        let (name, path, sub_path, mode) =
                            (a.name.clone(), a.path.clone(), a.sub_path.clone(), a.mode);
                        a = src.clone();
                        a.name = name;
                        a.path = path;
                        a.sub_path = sub_path.or(a.sub_path);
                        a.mode = mode;
                        a.global_name = None;
                    }
                    None if a.optional => continue,
                    None => {
                        input_error = Some(format!(
                            "unable to resolve input artifact {} from '{from}'",
                            a.name
                        ));
                        break;
                    }
                }
            }
            inputs.push(a);
        }
        if let Some(e) = input_error {
            self.running_pods -= 1;
            self.finish(i, Phase::Error, Some(e), now);
            return;
        }
        let outputs: Vec<Artifact> = t
            .outputs
            .artifacts
            .iter()
            .map(|a| {
                let mut a = a.clone();
                let key = match a
                    .s3
                    .as_ref()
                    .and_then(|s| s.get("key"))
                    .and_then(Value::as_str)
                {
                    Some(k) => k.to_string(),
                    None => {
                        let ext = if a.archive_none() { "" } else { ".tgz" };
                        format!("{}/{}/{}{ext}", self.name, pod_name, a.name)
                    }
                };
                a.local = Some(workflow_model::LocalArtifact { key });
                a
            })
            .collect();
        let mut volumes = self.spec.volumes.clone();
        volumes.extend(self.spec.volume_claim_templates.iter().map(|v| json!({"name": v.pointer("/metadata/name").cloned().unwrap_or_default(), "persistentVolumeClaim": {"claimName": v.pointer("/metadata/name").cloned().unwrap_or_default()}})));
        volumes.extend(t.volumes.iter().cloned());
        let req = PodRequest {
            node_id,
            pod_name,
            template: t.clone(),
            input_artifacts: inputs,
            output_artifacts: outputs,
            volumes,
            deadline: self.nodes[i].deadline,
            capture_result: t.script.is_some()
                || t.container.is_some()
                || t.container_set.is_some(),
        };
        self.actions.push(Action::StartPod(Box::new(req)));
    }

    fn release_pod_slot(&mut self, i: usize) {
        if self.nodes[i].started && !self.nodes[i].status.phase.fulfilled() {
            self.running_pods = self.running_pods.saturating_sub(1);
        }
    }

    fn pod_done(&mut self, r: PodResult, now: Time) {
        let Some(&i) = self.by_id.get(&r.node_id) else {
            return;
        };
        if self.nodes[i].status.phase.fulfilled() {
            return;
        }
        self.release_pod_slot(i);
        let t = self.nodes[i]
            .template
            .clone()
            .expect("pod nodes have a template");
        let mut out = Outputs::default();
        let mut phase = Phase::Succeeded;
        let mut message = r.message.clone();
        if let Some(code) = r.exit_code {
            out.exit_code = Some(code.to_string());
            if code != 0 {
                phase = Phase::Failed;
                if message.is_none() {
                    message = Some(format!("Error (exit code {code})"));
                }
            }
        } else {
            phase = Phase::Error;
        }
        if r.deadline_exceeded {
            phase = Phase::Failed;
            message = Some("Pod was active on the node longer than the specified deadline".into());
        }
        if let Some(s) = r.stdout {
            let mut s = s.strip_suffix('\n').unwrap_or(&s).to_string();
            if s.len() > MAX_RESULT_BYTES {
                let mut cut = MAX_RESULT_BYTES;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
            out.result = Some(s);
        }
        for p in &t.outputs.parameters {
            let mut p = p.clone();
            let got = r
                .parameters
                .iter()
                .find(|(n, _)| *n == p.name)
                .and_then(|(_, v)| v.clone());
            match got {
                Some(v) => {
                    p.value = Some(workflow_model::AnyString(
                        v.trim_end_matches('\n').to_string(),
                    ))
                }
                None => match p.value_from.as_ref().and_then(|v| v.default.clone()) {
                    Some(d) => p.value = Some(d),
                    None if p.value.is_some() => {}
                    None => {
                        if phase == Phase::Succeeded {
                            phase = Phase::Error;
                            message = Some(format!(
                                "failed to get output parameter '{}': {} not found",
                                p.name,
                                p.value_from
                                    .as_ref()
                                    .and_then(|v| v.path.clone())
                                    .unwrap_or_default()
                            ));
                        }
                        continue;
                    }
                },
            }
            out.parameters.push(p);
        }
        for a in &t.outputs.artifacts {
            match r.artifacts.iter().find(|x| x.name == a.name) {
                Some(saved) => out.artifacts.push(saved.clone()),
                None if a.optional || phase != Phase::Succeeded => {}
                None => {
                    phase = Phase::Error;
                    message = Some(format!(
                        "failed to save output artifact '{}': {} not found",
                        a.name,
                        a.path.clone().unwrap_or_default()
                    ));
                }
            }
        }
        if !out.is_empty() {
            self.nodes[i].status.outputs = Some(out);
        }
        self.finish(i, phase, message, now);
    }

    fn http_done(
        &mut self,
        node_id: &str,
        status: u16,
        body: String,
        headers: BTreeMap<String, Vec<String>>,
        error: Option<String>,
        now: Time,
    ) {
        let Some(&i) = self.by_id.get(node_id) else {
            return;
        };
        if self.nodes[i].status.phase.fulfilled() {
            return;
        }
        self.release_pod_slot(i);
        if let Some(e) = error {
            self.finish(i, Phase::Failed, Some(e), now);
            return;
        }
        let t = self.nodes[i]
            .template
            .clone()
            .expect("http nodes have a template");
        let http = t.http.clone().unwrap_or_default();
        let ok = match http
            .success_condition
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(cond) => {
                let env =
                    json!({"response": {"statusCode": status, "body": body, "headers": headers}});
                match template_eval::expr::eval(cond, &env) {
                    Ok(Value::Bool(b)) => Ok(b),
                    Ok(other) => Err(format!(
                        "successCondition '{cond}' gave {other}, not a boolean"
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => Ok((200..300).contains(&status)),
        };
        self.nodes[i].status.outputs = Some(Outputs {
            result: Some(body),
            ..Default::default()
        });
        match ok {
            Ok(true) => self.finish(i, Phase::Succeeded, None, now),
            Ok(false) => self.finish(
                i,
                Phase::Failed,
                Some(format!("received non-2xx response code: {status}")),
                now,
            ),
            Err(e) => self.finish(i, Phase::Error, Some(e), now),
        }
    }

    // ----- retries -----

    fn retry_step(&mut self, r: usize, now: Time) {
        let (template, ctx, tname, attempts) = match &self.nodes[r].frame {
            Frame::Retry {
                template,
                ctx,
                tname,
                attempts,
                ..
            } => (
                template.clone(),
                ctx.clone(),
                tname.clone(),
                attempts.clone(),
            ),
            _ => return,
        };
        if self.nodes[r].status.phase.fulfilled() {
            return;
        }
        let t: Template = match workflow_model::decode(&template) {
            Ok(t) => t,
            Err((p, m)) => {
                self.finish(r, Phase::Error, Some(format!("{p}: {m}")), now);
                return;
            }
        };
        let rs = t
            .retry_strategy
            .clone()
            .or_else(|| self.spec.retry_strategy.clone())
            .unwrap_or_default();
        if let Some(&last) = attempts.last() {
            let last_node = &self.nodes[last].status;
            if !last_node.phase.fulfilled() {
                return;
            }
            let last_phase = last_node.phase;
            let last_msg = last_node.message.clone();
            if !last_phase.failed_or_error() {
                self.nodes[r].status.outputs = self.nodes[last].status.outputs.clone();
                self.finish(r, last_phase, None, now);
                return;
            }
            if let Some(expr) = rs.expression.as_deref().filter(|e| !e.is_empty()) {
                let ln = &self.nodes[last].status;
                let mut vars = self.globals.clone();
                vars.insert(
                    "lastRetry.exitCode".into(),
                    ln.outputs
                        .as_ref()
                        .and_then(|o| o.exit_code.clone())
                        .unwrap_or_else(|| "-1".into()),
                );
                vars.insert("lastRetry.status".into(), ln.phase.as_str().into());
                vars.insert(
                    "lastRetry.message".into(),
                    ln.message.clone().unwrap_or_default(),
                );
                let dur = ln
                    .finished_at
                    .zip(ln.started_at)
                    .map(|(f, s)| (f - s).num_seconds())
                    .unwrap_or(0);
                vars.insert("lastRetry.duration".into(), dur.to_string());
                let env = template_eval::expand_vars(&vars);
                match template_eval::expr::eval(expr, &env) {
                    Ok(Value::Bool(true)) => {}
                    Ok(Value::Bool(false)) => {
                        self.finish(
                            r,
                            last_phase,
                            Some("retryStrategy.expression evaluated to false".into()),
                            now,
                        );
                        return;
                    }
                    Ok(other) => {
                        self.finish(
                            r,
                            Phase::Error,
                            Some(format!(
                                "retryStrategy.expression gave {other}, not a boolean"
                            )),
                            now,
                        );
                        return;
                    }
                    Err(e) => {
                        self.finish(r, Phase::Error, Some(e.to_string()), now);
                        return;
                    }
                }
            }
            if self.halted(r) || self.deadline.is_some_and(|d| now >= d) {
                let m = if self.shutdown.is_some() {
                    "Stopped with strategy".to_string()
                } else {
                    "retry exceeded workflow deadline".into()
                };
                self.finish(r, last_phase, Some(m), now);
                return;
            }
            let policy = rs
                .retry_policy
                .clone()
                .unwrap_or_else(|| "OnFailure".into());
            let (on_failed, on_error) = match policy.as_str() {
                "Always" => (true, true),
                "OnError" => (false, true),
                "OnTransientError" => (false, false),
                "OnFailure" => (true, false),
                other => {
                    self.finish(
                        r,
                        Phase::Error,
                        Some(format!("{other} is not a valid RetryPolicy")),
                        now,
                    );
                    return;
                }
            };
            if (last_phase == Phase::Failed && !on_failed)
                || (last_phase == Phase::Error && !on_error)
            {
                self.finish(r, last_phase, last_msg, now);
                return;
            }
            let limit = rs
                .limit
                .as_ref()
                .and_then(|l| l.text().trim().parse::<i64>().ok());
            if let Some(l) = limit {
                if attempts.len() as i64 > l {
                    self.finish(r, last_phase, Some("No more retries left".into()), now);
                    return;
                }
            }
            if let Some(b) = &rs.backoff {
                let first_start = self.nodes[attempts[0]].status.started_at.unwrap_or(now);
                let max_deadline = b
                    .max_duration
                    .as_ref()
                    .and_then(|d| parse_duration(&d.text()))
                    .map(|d| first_start + d);
                if let Some(md) = max_deadline {
                    if now > md {
                        self.finish(
                            r,
                            last_phase,
                            Some("Max duration limit exceeded".into()),
                            now,
                        );
                        return;
                    }
                }
                let base = b
                    .duration
                    .as_ref()
                    .and_then(|d| parse_duration(&d.text()))
                    .unwrap_or_else(|| Duration::seconds(0));
                let factor = b
                    .factor
                    .as_ref()
                    .and_then(|f| f.text().trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                let wait = if factor > 0.0 {
                    Duration::milliseconds(
                        (base.num_milliseconds() as f64 * factor.powi(attempts.len() as i32 - 1))
                            as i64,
                    )
                } else {
                    base
                };
                let finished = self.nodes[last].status.finished_at.unwrap_or(now);
                let wait_until = finished + wait;
                if let Some(md) = max_deadline {
                    if wait_until > md {
                        self.finish(
                            r,
                            last_phase,
                            Some("Backoff would exceed max duration limit".into()),
                            now,
                        );
                        return;
                    }
                }
                if now < wait_until {
                    self.nodes[r].status.message =
                        Some(format!("Backoff for {}", human_duration(wait)));
                    if let Frame::Retry { wait_until: w, .. } = &mut self.nodes[r].frame {
                        *w = Some(wait_until);
                    }
                    self.timers.push((wait_until, r));
                    return;
                }
                self.nodes[r].status.message = None;
            }
        }
        // Start the next attempt.
        let n = attempts.len();
        let name = format!("{}({n})", self.nodes[r].status.name);
        let display = format!("{}({n})", self.nodes[r].status.display_name);
        let tref = self.nodes[r].status.template_ref.clone();
        let inputs = self.nodes[r].status.inputs.clone().unwrap_or_default();
        let mut tt = t.clone();
        tt.retry_strategy = None;
        let mut body = (*template).clone();
        if let Value::Object(m) = &mut body {
            m.remove("retryStrategy");
        }
        let child = self.execute_instance(
            &name,
            &display,
            Arc::new(body),
            tt,
            inputs,
            &tname,
            tref,
            &ctx,
            Owner::Attempt { retry: r },
            Some(n),
            now,
        );
        if let Frame::Retry {
            attempts,
            wait_until,
            ..
        } = &mut self.nodes[r].frame
        {
            attempts.push(child);
            *wait_until = None;
        }
        self.add_child(r, child);
    }

    // ----- steps -----

    fn start_step_group(&mut self, steps_node: usize, now: Time) {
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
            _ => return,
        };
        let groups = t.steps.clone().unwrap_or_default();
        if group >= groups.len() {
            self.finish_steps(steps_node, now);
            return;
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
            return;
        }
        self.pump_step_group(g, now);
    }

    /// Substitute a step with its scope and expand withItems/withParam/withSequence.
    fn expand_step(
        &self,
        step: &WorkflowStep,
        scope_vars: &ScopeVars,
    ) -> Result<Vec<WorkflowStep>, String> {
        let vars = &self.layered(scope_vars);
        let items: Option<Vec<Value>> = if let Some(items) = &step.with_items {
            Some(
                items
                    .iter()
                    .map(|i| substitute_json(i, vars, true).unwrap_or_else(|_| i.clone()))
                    .collect(),
            )
        } else if let Some(p) = &step.with_param {
            let text = substitute(p, vars, true).map_err(|e| e.to_string())?;
            match parse_items(&text) {
                Ok(v) => Some(v),
                Err(e) => {
                    // Argo only fails when the step would run.
                    let when = step
                        .when
                        .as_deref()
                        .map(|w| substitute(w, vars, true).unwrap_or_default());
                    if when.is_some_and(|w| govaluate::should_execute(&w) == Ok(false)) {
                        Some(Vec::new())
                    } else {
                        return Err(e);
                    }
                }
            }
        } else if let Some(seq) = &step.with_sequence {
            let v = serde_json::to_value(seq).unwrap_or_default();
            let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
            let seq: workflow_model::Sequence = workflow_model::decode(&v).map_err(|(_, m)| m)?;
            Some(expand_sequence(&seq)?)
        } else {
            None
        };
        let mut base = step.clone();
        base.with_items = None;
        base.with_param = None;
        base.with_sequence = None;
        match items {
            None => Ok(vec![substitute_step(&base, vars)?]),
            Some(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let mut iv = scope_vars.clone();
                    item_vars(item, &mut iv.own);
                    let mut s = substitute_step(&base, &self.layered(&iv))?;
                    s.name = format!("{}({i}:{})", step.name, item_label(item));
                    s.hooks = step.hooks.clone();
                    out.push(s);
                }
                Ok(out)
            }
        }
    }

    fn template_parallelism(&self, steps_or_dag: usize) -> Option<usize> {
        match &self.nodes[steps_or_dag].frame {
            Frame::Steps { template, .. } | Frame::Dag { template, .. } => {
                template.parallelism.map(|p| p.max(1) as usize)
            }
            _ => None,
        }
    }

    fn fail_fast(&self, steps_or_dag: usize) -> bool {
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
        let halted = self.halted(g);
        loop {
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
        let (steps_node, step) = match &self.nodes[g].frame {
            Frame::StepGroup {
                steps_node, slots, ..
            } => (*steps_node, slots[slot].step.clone()),
            _ => return,
        };
        let (ctx, vars) = match &self.nodes[steps_node].frame {
            Frame::Steps { ctx, scope, .. } => (ctx.clone(), scope.vars.clone()),
            _ => return,
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
                    return;
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
                    return;
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
                return;
            }
        };
        if let Frame::StepGroup { running, .. } = &mut self.nodes[g].frame {
            *running += 1;
        }
        let i = self.execute(
            &child_name,
            &Holder::from_step(&step),
            &args,
            &ctx,
            Owner::Step { group: g, slot },
            Some(step.name.clone()),
            now,
        );
        self.add_child(g, i);
        self.set_slot_node(g, slot, i);
        if self.nodes[i].status.phase == Phase::Running {
            self.on_running(i, now);
        }
    }

    fn scope_artifacts(&self, block: usize) -> ArtMap {
        match &self.nodes[block].frame {
            Frame::Steps { scope, .. } | Frame::Dag { scope, .. } => {
                let mut a = scope.artifacts.clone();
                a.extend(
                    self.global_artifacts
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                a
            }
            _ => self.global_artifacts.clone(),
        }
    }

    fn set_slot_node(&mut self, g: usize, slot: usize, i: usize) {
        if let Frame::StepGroup { slots, .. } = &mut self.nodes[g].frame {
            slots[slot].node = Some(i);
        }
    }

    /// Called when a step's node (or its exit handler or a hook) is fulfilled.
    fn step_event(&mut self, g: usize, slot: usize, now: Time) {
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
                        let e = self.start_exit_handler(
                            steps_node,
                            node,
                            &exit_t,
                            &step.hooks,
                            owner,
                            display,
                            now,
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

    /// A block's own variables (`steps.*`, `tasks.*`, inputs); look them up layered over the
    /// globals with [`Engine::layered`].
    /// Start the exit handler of a step's or task's node (`onExit`, or its `exit` hook with
    /// that hook's arguments), in the context of the block that ran it.
    #[allow(clippy::too_many_arguments)]
    fn start_exit_handler(
        &mut self,
        block: usize,
        node: usize,
        template: &str,
        hooks: &BTreeMap<String, LifecycleHook>,
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
            },
        };
        ctx.on_exit = true;
        let name = format!("{}.onExit", self.nodes[node].status.name);
        let args = hooks
            .get("exit")
            .map(|h| h.arguments.clone())
            .unwrap_or_default();
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

    fn block_vars(&self, block: usize) -> ScopeVars {
        match &self.nodes[block].frame {
            Frame::Steps { scope, .. } | Frame::Dag { scope, .. } => scope.vars.clone(),
            _ => ScopeVars::default(),
        }
    }

    fn layered<'a, T: Lookup + ?Sized>(&'a self, top: &'a T) -> Layered<'a, Vars, T> {
        Layered {
            top,
            base: &self.globals,
        }
    }

    fn check_group_done(&mut self, g: usize, now: Time) {
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

    fn aggregate_outputs(&mut self, block: usize, prefix: &str, nodes: &[usize]) {
        let mut params: Vec<Value> = Vec::new();
        let mut per_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut results: Vec<Value> = Vec::new();
        for &n in nodes {
            let st = &self.nodes[n].status;
            if st.phase != Phase::Succeeded || st.node_type == NodeType::Retry {
                continue;
            }
            let Some(o) = &st.outputs else { continue };
            if !o.parameters.is_empty() {
                let mut m = Map::new();
                for p in &o.parameters {
                    let v = p.value.as_ref().map(|v| v.0.clone()).unwrap_or_default();
                    m.insert(p.name.clone(), Value::String(v.clone()));
                    per_name.entry(p.name.clone()).or_default().push(v);
                }
                params.push(Value::Object(m));
            }
            if let Some(r) = &o.result {
                results.push(json_or_string(r));
            }
        }
        let mut vars = vec![
            (
                format!("{prefix}.outputs.parameters"),
                Value::Array(params).to_string(),
            ),
            (
                format!("{prefix}.outputs.result"),
                Value::Array(results).to_string(),
            ),
        ];
        for (name, values) in per_name {
            let list: Vec<Value> = values.iter().map(|v| json_or_string(v)).collect();
            vars.push((
                format!("{prefix}.outputs.parameters.{name}"),
                Value::Array(list).to_string(),
            ));
        }
        if let Frame::Steps { scope, .. } | Frame::Dag { scope, .. } = &mut self.nodes[block].frame
        {
            for (k, v) in vars {
                scope.vars.insert(k, v);
            }
        }
    }

    /// Put a finished node's outputs, status and times into its block's scope under `prefix`.
    fn record_scope(&mut self, block: usize, prefix: &str, node: usize) {
        // Read what is needed from the node, then write the block's scope (no status copy).
        let st = &self.nodes[node].status;
        let mut vars: Vec<(String, String)> = vec![
            ("status".into(), st.phase.as_str().to_string()),
            ("id".into(), st.id.clone()),
        ];
        if let Some(t) = st.started_at {
            vars.push(("startedAt".into(), format_time(&t)));
        }
        if let Some(t) = st.finished_at {
            vars.push(("finishedAt".into(), format_time(&t)));
        }
        if let Some(h) = &st.host_node_name {
            vars.push(("hostNodeName".into(), h.clone()));
        }
        let mut arts = Vec::new();
        if let Some(o) = &st.outputs {
            if let Some(r) = &o.result {
                vars.push(("outputs.result".into(), r.clone()));
            }
            if let Some(c) = &o.exit_code {
                vars.push(("exitCode".into(), c.clone()));
            }
            for p in &o.parameters {
                if let Some(v) = &p.value {
                    vars.push((format!("outputs.parameters.{}", p.name), v.0.clone()));
                }
            }
            for a in &o.artifacts {
                arts.push((format!("{prefix}.outputs.artifacts.{}", a.name), a.clone()));
            }
        }
        if let Frame::Steps { scope, .. } | Frame::Dag { scope, .. } = &mut self.nodes[block].frame
        {
            scope.vars.record(prefix, vars);
            for (k, a) in arts {
                scope.artifacts.insert(k, a);
            }
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

    /// Outputs of a steps or DAG template from its scope (`valueFrom.parameter`,
    /// `valueFrom.expression`, artifacts `from`/`fromExpression`).
    fn block_outputs(&self, block: usize, t: &Template) -> Result<Outputs, String> {
        let scope_vars = self.block_vars(block);
        let vars = self.layered(&scope_vars);
        let arts = self.scope_artifacts(block);
        let mut out = Outputs::default();
        for p in &t.outputs.parameters {
            let mut p = p.clone();
            if let Some(vf) = &p.value_from {
                let value = if let Some(src) = &vf.parameter {
                    match substitute(src, &vars, false) {
                        Ok(v) => Some(v),
                        Err(e) => match &vf.default {
                            Some(d) => Some(d.0.clone()),
                            None => {
                                return Err(format!("unable to resolve outputs from scope: {e}"))
                            }
                        },
                    }
                } else if let Some(expr) = &vf.expression {
                    let env = template_eval::expand_vars(&vars);
                    match template_eval::expr::eval(expr, &env) {
                        Ok(v) if !v.is_null() => Some(template_eval::go_format(&v)),
                        Ok(_) | Err(_) if vf.default.is_some() => {
                            vf.default.as_ref().map(|d| d.0.clone())
                        }
                        Ok(_) => return Err(format!("expression '{expr}' gave nil")),
                        Err(e) => return Err(e.to_string()),
                    }
                } else if vf.supplied.is_some() {
                    continue;
                } else {
                    vf.default.as_ref().map(|d| d.0.clone())
                };
                p.value = value.map(workflow_model::AnyString);
            }
            out.parameters.push(p);
        }
        for a in &t.outputs.artifacts {
            let mut src_key = None;
            if let Some(from) = &a.from {
                src_key = Some(
                    from.trim()
                        .trim_start_matches("{{")
                        .trim_end_matches("}}")
                        .trim()
                        .to_string(),
                );
            } else if let Some(expr) = &a.from_expression {
                let mut v = scope_vars.clone();
                for k in arts.keys() {
                    v.insert(k.clone(), k.clone());
                }
                let env = template_eval::expand_vars(&self.layered(&v));
                match template_eval::expr::eval(expr, &env) {
                    Ok(Value::String(k)) => src_key = Some(k),
                    Ok(other) => {
                        return Err(format!(
                            "fromExpression '{expr}' gave {other}, not an artifact"
                        ))
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            match src_key.and_then(|k| arts.get(&k).cloned()) {
                Some(src) => {
                    let mut na = src;
                    na.name = a.name.clone();
                    na.global_name = a.global_name.clone();
                    na.path = None;
                    out.artifacts.push(na);
                }
                None if a.optional => {}
                None => return Err(format!("unable to resolve output artifact '{}'", a.name)),
            }
        }
        Ok(out)
    }

    /// Argo's outbound nodes: the leaves through which a block's successors connect.
    fn outbound(&self, i: usize) -> Vec<usize> {
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

    fn set_outbound(&mut self, block: usize) {
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

    // ----- DAG -----

    fn start_dag(&mut self, d: usize, t: Arc<Template>, ctx: &Ctx, now: Time) {
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
            return;
        }
        for i in ready {
            self.task_ready(d, i, now);
        }
        self.pump_dag(d, now);
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
                    phase: st.phase,
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
        let halted = self.halted(d);
        loop {
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
            _ => return,
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
                return;
            }
        };
        if let Frame::Dag { running, .. } = &mut self.nodes[d].frame {
            *running += 1;
        }
        if expands {
            if expanded.is_empty() {
                let n = self.task_node_skeleton(d, i, NodeType::Skipped, now);
                self.finish(n, Phase::Skipped, Some("Skipped, empty params".into()), now);
                return;
            }
            let Frame::Dag { template, .. } = &self.nodes[d].frame else {
                return;
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
                    task: i,
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
            self.pump_task_group(tg, now);
            return;
        }
        let Some(s) = expanded.into_iter().next() else {
            return;
        };
        let owner = Owner::Task { dag: d, task: i };
        let n = self.run_task_instance(d, &name, &task.name, &s, &ctx, &vars, &arts, owner, now);
        self.connect_task(d, i, n);
        if let Frame::Dag { tasks, .. } = &mut self.nodes[d].frame {
            tasks[i].node = Some(n);
        }
        if self.nodes[n].status.phase == Phase::Running {
            self.on_running(n, now);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_task_instance(
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
                    return n;
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
                    return n;
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
                return n;
            }
        };
        self.execute(
            name,
            &Holder::from_step(s),
            &args,
            ctx,
            owner,
            Some(display.to_string()),
            now,
        )
    }

    fn pump_task_group(&mut self, tg: usize, now: Time) {
        let (d, task_i) = match &self.nodes[tg].frame {
            Frame::TaskGroup { dag, task, .. } => (*dag, *task),
            _ => return,
        };
        let limit = self.template_parallelism(d);
        let halted = self.halted(tg);
        loop {
            let next = match &mut self.nodes[tg].frame {
                Frame::TaskGroup { queue, running, .. } => {
                    if limit.is_some_and(|l| *running >= l) || halted {
                        None
                    } else {
                        queue.pop_front()
                    }
                }
                _ => return,
            };
            let Some(k) = next else { break };
            let (ctx, vars, arts) = match &self.nodes[d].frame {
                Frame::Dag { ctx, .. } => {
                    (ctx.clone(), self.block_vars(d), self.scope_artifacts(d))
                }
                _ => return,
            };
            let item = match &self.nodes[tg].frame {
                Frame::TaskGroup { items, .. } => items[k].0.clone(),
                _ => return,
            };
            let name = format!("{}.{}", self.nodes[d].status.name, item.name);
            if let Frame::TaskGroup { running, .. } = &mut self.nodes[tg].frame {
                *running += 1;
            }
            let s = WorkflowStep {
                name: item.name.clone(),
                template: item.template.clone(),
                inline: item.inline.clone(),
                arguments: item.arguments.clone(),
                template_ref: item.template_ref.clone(),
                when: item.when.clone(),
                ..Default::default()
            };
            let n = self.run_task_instance(
                d,
                &name,
                &item.name,
                &s,
                &ctx,
                &vars,
                &arts,
                Owner::TaskItem { group: tg, slot: k },
                now,
            );
            self.add_child(tg, n);
            if let Frame::TaskGroup { items, .. } = &mut self.nodes[tg].frame {
                items[k].1 = Some(n);
            }
            let _ = task_i;
        }
    }

    fn task_item_done(&mut self, tg: usize, now: Time) {
        let done = match &mut self.nodes[tg].frame {
            Frame::TaskGroup {
                running, remaining, ..
            } => {
                *running = running.saturating_sub(1);
                *remaining = remaining.saturating_sub(1);
                *remaining == 0
            }
            _ => return,
        };
        if !done {
            self.pump_task_group(tg, now);
            return;
        }
        let mut phase = Phase::Succeeded;
        let children = self.nodes[tg].status.children.clone();
        for c in &children {
            let p = self.nodes[self.by_id[c]].status.phase;
            if p.failed_or_error() {
                phase = p;
            }
        }
        self.set_outbound(tg);
        self.finish(tg, phase, None, now);
    }

    /// A task's node (or exit handler, or hook) changed: bookkeeping and successors.
    fn task_event(&mut self, d: usize, i: usize, now: Time) {
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
                task.on_exit
                    .clone()
                    .or_else(|| task.hooks.get("exit").and_then(|h| h.template.clone()))
                    .map(|t| (t, task.hooks.clone()))
            }
            _ => None,
        };
        if phase.completed() {
            if let Some((exit_t, hooks)) = exit_handler {
                match exit {
                    None => {
                        let display = format!("{name}.onExit");
                        let owner = Owner::TaskExit { dag: d, task: i };
                        let e =
                            self.start_exit_handler(d, node, &exit_t, &hooks, owner, display, now);
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

    fn check_dag_done(&mut self, d: usize, now: Time) {
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

    // ----- hooks -----

    fn on_running(&mut self, i: usize, now: Time) {
        match self.nodes[i].owner {
            Owner::Step { group, slot } => self.fire_step_hooks(group, slot, now),
            Owner::Task { dag, task } => self.fire_task_hooks(dag, task, now),
            _ => {}
        }
        self.fire_workflow_hooks(now);
    }

    fn fire_step_hooks(&mut self, g: usize, slot: usize, now: Time) {
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

    fn fire_task_hooks(&mut self, d: usize, i: usize, now: Time) {
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

    fn fire_workflow_hooks(&mut self, now: Time) {
        if self.spec.hooks.is_empty() {
            return;
        }
        let mut vars = self.globals.clone();
        vars.insert("workflow.status".into(), self.phase.as_str().into());
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
                let _ = h;
            }
        }
    }

    // ----- owners -----

    fn notify_owner(&mut self, i: usize, now: Time) {
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
            Owner::Hook | Owner::Nobody => {}
        }
        if self.nodes[i].status.node_type == NodeType::StepGroup {
            // Step groups are finished by their own logic, nothing to notify.
        }
    }

    fn root_done(&mut self, root: usize, now: Time) {
        let phase = self.nodes[root].status.phase;
        self.root_phase = Some(phase);
        let exit = self
            .spec
            .on_exit
            .clone()
            .or_else(|| self.spec.hooks.get("exit").and_then(|h| h.template.clone()));
        let exit = exit.filter(|_| self.shutdown != Some(true));
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
                };
                let name = format!("{}.onExit", self.name);
                let args = self
                    .spec
                    .hooks
                    .get("exit")
                    .map(|h| h.arguments.clone())
                    .unwrap_or_default();
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

    fn complete_workflow(&mut self, now: Time) {
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
        self.phase = phase;
        self.message = message;
        self.finished_at = Some(now);
        self.fire_workflow_hooks(now);
    }

    // ----- time, shutdown, resume -----

    fn check_time(&mut self, now: Time) {
        // Timers: retry backoffs.
        let due: Vec<usize> = self
            .timers
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, i)| *i)
            .collect();
        self.timers.retain(|(t, _)| *t > now);
        for r in due {
            self.retry_step(r, now);
        }
        // Node deadlines: suspend durations, pod and template timeouts.
        let mut due = Vec::new();
        while let Some(&(d, i)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.deadlines.pop_first();
            due.push((d, i));
        }
        for (d, i) in due {
            if self.nodes[i].deadline != Some(d) || self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            match self.nodes[i].status.node_type {
                NodeType::Suspend => {
                    self.nodes[i].deadline = None;
                    self.finish(i, Phase::Succeeded, None, now);
                }
                NodeType::Steps | NodeType::DAG => {
                    self.nodes[i].deadline = None;
                    self.kill_under(i, "template timeout", now);
                    self.nodes[i].status.message = Some("Timeout".into());
                }
                _ => {
                    self.nodes[i].deadline = None;
                    let msg =
                        "Pod was active on the node longer than the specified deadline".to_string();
                    if self.nodes[i].started {
                        self.release_pod_slot(i);
                        let (id, pod) = (
                            self.nodes[i].status.id.clone(),
                            self.nodes[i].pod_name.clone().unwrap_or_default(),
                        );
                        self.actions.push(Action::KillPod {
                            node_id: id,
                            pod_name: pod,
                            reason: msg.clone(),
                        });
                    }
                    self.finish(i, Phase::Failed, Some(msg), now);
                }
            }
        }
        // Workflow deadline.
        if let Some(d) = self.deadline {
            if now >= d && !self.is_finished() && self.exit_node.is_none() {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].status.phase.fulfilled() {
                        continue;
                    }
                    let ty = self.nodes[i].status.node_type;
                    if matches!(ty, NodeType::Pod | NodeType::HTTP | NodeType::Suspend) {
                        if self.nodes[i].started {
                            self.release_pod_slot(i);
                            let (id, pod) = (
                                self.nodes[i].status.id.clone(),
                                self.nodes[i].pod_name.clone().unwrap_or_default(),
                            );
                            self.actions.push(Action::KillPod {
                                node_id: id,
                                pod_name: pod,
                                reason: "workflow deadline".into(),
                            });
                        }
                        self.finish(
                            i,
                            Phase::Failed,
                            Some("Step exceeded its deadline".into()),
                            now,
                        );
                    }
                }
                // Nothing new starts after the deadline.
                self.pod_queue.clear();
                self.shutdown_blocks(now);
            }
        }
    }

    /// After a deadline or shutdown, blocks stop scheduling and end once their children did.
    fn shutdown_blocks(&mut self, now: Time) {
        let prev = self.shutdown;
        if self.shutdown.is_none() {
            self.shutdown = Some(false);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            match &self.nodes[i].frame {
                Frame::StepGroup { .. } => self.check_group_done(i, now),
                Frame::Dag { .. } => self.check_dag_done(i, now),
                Frame::Retry { .. } => self.pending_retries.push(i),
                _ => {}
            }
        }
        if prev.is_none() && self.deadline.is_some_and(|d| now >= d) {
            // Keep the deadline distinct from a user shutdown in messages.
            self.shutdown = None;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].status.phase.fulfilled()
                    && matches!(self.nodes[i].frame, Frame::StepGroup { .. })
                {
                    if let Frame::StepGroup { stop_new, .. } = &mut self.nodes[i].frame {
                        *stop_new = true;
                    }
                    self.check_group_done(i, now);
                }
            }
        }
    }

    fn kill_under(&mut self, block: usize, reason: &str, now: Time) {
        let bid = self.nodes[block].status.id.clone();
        for i in 0..self.nodes.len() {
            if self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            if (self.nodes[i].status.boundary_id.as_deref() == Some(&bid) || self.is_under(i, &bid))
                && matches!(
                    self.nodes[i].status.node_type,
                    NodeType::Pod | NodeType::HTTP | NodeType::Suspend
                )
            {
                if self.nodes[i].started {
                    self.release_pod_slot(i);
                    let (id, pod) = (
                        self.nodes[i].status.id.clone(),
                        self.nodes[i].pod_name.clone().unwrap_or_default(),
                    );
                    self.actions.push(Action::KillPod {
                        node_id: id,
                        pod_name: pod,
                        reason: reason.into(),
                    });
                }
                self.finish(i, Phase::Failed, Some(reason.into()), now);
            }
        }
        if let Frame::Dag { queue, .. } = &mut self.nodes[block].frame {
            queue.clear();
        }
        self.finish(block, Phase::Failed, Some(reason.into()), now);
    }

    fn is_under(&self, i: usize, boundary: &str) -> bool {
        let mut b = self.nodes[i].status.boundary_id.clone();
        let mut guard = 0;
        while let Some(id) = b {
            if id == boundary {
                return true;
            }
            guard += 1;
            if guard > 1000 {
                return false;
            }
            b = self
                .by_id
                .get(&id)
                .and_then(|&j| self.nodes[j].status.boundary_id.clone());
        }
        false
    }

    fn apply_shutdown(&mut self, now: Time) {
        let terminate = self.shutdown == Some(true);
        for i in 0..self.nodes.len() {
            if self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            if (terminate || !self.nodes[i].status.name.contains(".onExit"))
                && matches!(
                    self.nodes[i].status.node_type,
                    NodeType::Pod | NodeType::HTTP | NodeType::Suspend
                )
            {
                if self.nodes[i].started {
                    self.release_pod_slot(i);
                    let (id, pod) = (
                        self.nodes[i].status.id.clone(),
                        self.nodes[i].pod_name.clone().unwrap_or_default(),
                    );
                    self.actions.push(Action::KillPod {
                        node_id: id,
                        pod_name: pod,
                        reason: "workflow shutdown".into(),
                    });
                }
                let strategy = if terminate { "Terminate" } else { "Stop" };
                self.finish(
                    i,
                    Phase::Failed,
                    Some(format!("Stopped with strategy '{strategy}'")),
                    now,
                );
            }
        }
        self.pod_queue
            .retain(|&i| !self.nodes[i].status.phase.fulfilled());
        for i in 0..self.nodes.len() {
            if self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            match &self.nodes[i].frame {
                Frame::StepGroup { .. } => self.check_group_done(i, now),
                Frame::Dag { .. } => self.check_dag_done(i, now),
                Frame::Retry { .. } => self.pending_retries.push(i),
                _ => {}
            }
        }
    }

    fn resume(&mut self, selector: Option<String>, supplied: BTreeMap<String, String>, now: Time) {
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

    // ----- output -----

    /// The Workflow object with its status, in Argo's JSON shape.
    pub fn to_json(&self) -> Value {
        let mut wf = self.raw.clone();
        if let (Some(own), Some(slot)) = (&self.own_templates, wf.pointer_mut("/spec/templates")) {
            *slot = Value::Array(own.iter().map(|t| (**t).clone()).collect());
        }
        let mut nodes = Map::new();
        for n in &self.nodes {
            nodes.insert(
                n.status.id.clone(),
                serde_json::to_value(&n.status).unwrap_or_default(),
            );
        }
        let mut status = json!({
            "phase": self.phase.as_str(),
            "startedAt": self.started_at.map(|t| format_time(&t)),
            "finishedAt": self.finished_at.map(|t| format_time(&t)),
            "nodes": nodes,
        });
        if let Some(m) = &self.message {
            status["message"] = Value::String(m.clone());
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

fn fix_display(node_name: &str, display: &str) -> String {
    if display.is_empty() {
        node_name.to_string()
    } else {
        display.to_string()
    }
}

fn is_pod_kind(k: TemplateKind) -> bool {
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

fn continues(c: ContinueOn, p: Phase) -> bool {
    (p == Phase::Failed && c.failed) || (p == Phase::Error && c.error)
}

fn human_duration(d: Duration) -> String {
    let s = d.num_seconds();
    if s < 60 {
        format!("{s} seconds")
    } else if s < 3600 {
        format!("{} minutes", s / 60)
    } else {
        format!("{} hours", s / 3600)
    }
}

fn template_in(obj: &WorkflowObject, name: &str) -> Option<Value> {
    let spec = obj.raw.get("spec")?;
    let t = spec
        .get("templates")?
        .as_array()?
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))?;
    Some(match spec.get("templateDefaults") {
        Some(d) => merge_defaults(t, d),
        None => t.clone(),
    })
}

/// Merge a Workflow's arguments over a WorkflowTemplate's (by parameter name).
fn merge_arguments(base: Option<&Value>, own: &Value) -> Value {
    let mut out = base.cloned().unwrap_or(json!({}));
    for key in ["parameters", "artifacts"] {
        let Some(Value::Array(own_list)) = own.get(key) else {
            continue;
        };
        let list = out
            .as_object_mut()
            .map(|m| m.entry(key.to_string()).or_insert(json!([])))
            .and_then(Value::as_array_mut);
        let Some(list) = list else { continue };
        for p in own_list {
            let name = p.get("name").cloned();
            match list.iter_mut().find(|x| x.get("name") == name.as_ref()) {
                Some(x) => *x = p.clone(),
                None => list.push(p.clone()),
            }
        }
    }
    out
}

/// Whether a template uses `inputs.parameters` as a whole (not `inputs.parameters.NAME`).
fn mentions_all_inputs(v: &Value) -> bool {
    match v {
        Value::String(s) => s
            .match_indices("inputs.parameters")
            .any(|(i, m)| !s[i + m.len()..].starts_with('.')),
        Value::Array(a) => a.iter().any(mentions_all_inputs),
        Value::Object(o) => o
            .iter()
            .any(|(k, x)| k != "inputs" && mentions_all_inputs(x)),
        _ => false,
    }
}

/// Replace tags in one string, allocating only when it has any.
fn sub_in_place<L: Lookup + ?Sized>(text: &mut String, vars: &L) -> Result<(), String> {
    if text.contains("{{") {
        *text = substitute(text, vars, true).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Argo substitutes a step (or task) as a whole with its scope before running it. Hooks keep
/// their expressions for later; every other string field is substituted here, field by field
/// (no JSON round trip on the hot path).
fn substitute_step<L: Lookup + ?Sized>(
    base: &WorkflowStep,
    vars: &L,
) -> Result<WorkflowStep, String> {
    let mut s = base.clone();
    sub_in_place(&mut s.name, vars)?;
    if let Some(t) = &mut s.template {
        sub_in_place(t, vars)?;
    }
    if let Some(r) = &mut s.template_ref {
        sub_in_place(&mut r.name, vars)?;
        sub_in_place(&mut r.template, vars)?;
    }
    if let Some(w) = &mut s.when {
        sub_in_place(w, vars)?;
    }
    if let Some(e) = &mut s.on_exit {
        sub_in_place(e, vars)?;
    }
    for p in s.arguments.parameters.iter_mut() {
        if let Some(v) = &mut p.value {
            sub_in_place(&mut v.0, vars)?;
        }
        if let Some(v) = &mut p.default {
            sub_in_place(&mut v.0, vars)?;
        }
        if p.value_from.is_some() {
            let v = serde_json::to_value(&p.value_from).unwrap_or_default();
            let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
            p.value_from = workflow_model::decode(&v).map_err(|(_, m)| m)?;
        }
    }
    if !s.arguments.artifacts.is_empty() {
        let v = serde_json::to_value(&s.arguments.artifacts).unwrap_or_default();
        let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
        s.arguments.artifacts = workflow_model::decode(&v).map_err(|(_, m)| m)?;
    }
    if let Some(inline) = &s.inline {
        let v = serde_json::to_value(inline.as_ref()).unwrap_or_default();
        let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
        s.inline = Some(Box::new(workflow_model::decode(&v).map_err(|(_, m)| m)?));
    }
    Ok(s)
}

/// Substitute a step's arguments with its scope and resolve artifact `from` references.
fn resolve_arguments<L: Lookup + ?Sized>(
    args: &Arguments,
    vars: &L,
    arts: &ArtMap,
) -> Result<Arguments, String> {
    let mut out = Arguments::default();
    for p in &args.parameters {
        let mut p = p.clone();
        if let Some(v) = &p.value {
            let s = substitute(&v.0, vars, true).map_err(|e| e.to_string())?;
            if let Some(bad) = unresolved_reference(&s) {
                return Err(format!("failed to resolve {{{{{bad}}}}}"));
            }
            p.value = Some(workflow_model::AnyString(s));
        }
        out.parameters.push(p);
    }
    for a in &args.artifacts {
        let mut a = a.clone();
        if let Some(from) = a.from.clone() {
            let key = substitute(&from, vars, true).map_err(|e| e.to_string())?;
            let key = key
                .trim()
                .trim_start_matches("{{")
                .trim_end_matches("}}")
                .trim()
                .to_string();
            match arts.get(&key) {
                Some(src) => {
                    let name = a.name.clone();
                    let sub_path = a.sub_path.clone();
                    a = src.clone();
                    a.name = name;
                    a.path = None;
                    a.global_name = None;
                    if sub_path.is_some() {
                        a.sub_path = sub_path;
                    }
                }
                None if a.optional => continue,
                None => return Err(format!("Unable to resolve: \"{{{{{key}}}}}\"")),
            }
        } else if let Some(expr) = a.from_expression.clone() {
            let mut names = Vars::new();
            for k in arts.keys() {
                names.insert(k.clone(), k.clone());
            }
            let env = template_eval::expand_vars(&Layered {
                top: &names,
                base: vars,
            });
            match template_eval::expr::eval(&expr, &env) {
                Ok(Value::String(k)) => match arts.get(&k) {
                    Some(src) => {
                        let name = a.name.clone();
                        a = src.clone();
                        a.name = name;
                        a.path = None;
                        a.from_expression = None;
                    }
                    None => {
                        return Err(format!(
                            "unable to resolve artifact from expression '{expr}'"
                        ))
                    }
                },
                Ok(other) => return Err(format!("fromExpression '{expr}' gave {other}")),
                Err(e) => return Err(e.to_string()),
            }
        } else {
            let v = serde_json::to_value(&a).unwrap_or_default();
            let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
            a = workflow_model::decode(&v).map_err(|(_, m)| m)?;
        }
        out.artifacts.push(a);
    }
    Ok(out)
}

/// A `{{steps.*}}`/`{{tasks.*}}` reference left after substitution cannot be resolved later.
fn unresolved_reference(s: &str) -> Option<String> {
    let start = s.find("{{")?;
    let rest = &s[start + 2..];
    let end = rest.find("}}")?;
    let tag = rest[..end].trim();
    if tag.starts_with("steps.") || tag.starts_with("tasks.") {
        Some(tag.to_string())
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy)]
struct DepResult {
    phase: Phase,
    any_succeeded: bool,
    all_failed: bool,
}

/// Rewrite bare task names in `depends` into Argo's expansion.
fn expand_depends(logic: &str, continue_on: &dyn Fn(&str) -> Option<ContinueOn>) -> String {
    let mut out = String::new();
    let chars: Vec<char> = logic.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '-'
                    || chars[i] == '_'
                    || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let has_result = word
                .rsplit_once('.')
                .is_some_and(|(_, s)| s.chars().next().is_some_and(|c| c.is_uppercase()));
            if has_result {
                out.push_str(&word);
            } else {
                let co = continue_on(&word).unwrap_or_default();
                let mut parts = vec![
                    format!("{word}.Succeeded"),
                    format!("{word}.Skipped"),
                    format!("{word}.Daemoned"),
                ];
                if co.error {
                    parts.push(format!("{word}.Errored"));
                }
                if co.failed {
                    parts.push(format!("{word}.Failed"));
                }
                out.push('(');
                out.push_str(&parts.join(" || "));
                out.push(')');
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A compiled `depends` expression: parsed once per DAG, evaluated per task in O(size).
#[derive(Debug, Clone)]
enum DependsExpr {
    Result(String, String),
    Not(Box<DependsExpr>),
    And(Vec<DependsExpr>),
    Or(Vec<DependsExpr>),
}

fn parse_depends(logic: &str) -> Result<Option<DependsExpr>, String> {
    #[derive(Debug, PartialEq)]
    enum Tok {
        Word(String),
        And,
        Or,
        Not,
        Open,
        Close,
    }
    let chars: Vec<char> = logic.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                toks.push(Tok::Open);
                i += 1
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1
            }
            '!' => {
                toks.push(Tok::Not);
                i += 1
            }
            '&' | '|' if chars.get(i + 1) == Some(&c) => {
                toks.push(if c == '&' { Tok::And } else { Tok::Or });
                i += 2
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '-' | '_' | '.'))
                {
                    i += 1;
                }
                toks.push(Tok::Word(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected '{other}' in depends '{logic}'")),
        }
    }
    if toks.is_empty() {
        return Ok(None);
    }
    fn or(t: &[Tok], p: &mut usize, logic: &str) -> Result<DependsExpr, String> {
        let mut parts = vec![and(t, p, logic)?];
        while t.get(*p) == Some(&Tok::Or) {
            *p += 1;
            parts.push(and(t, p, logic)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            DependsExpr::Or(parts)
        })
    }
    fn and(t: &[Tok], p: &mut usize, logic: &str) -> Result<DependsExpr, String> {
        let mut parts = vec![unary(t, p, logic)?];
        while t.get(*p) == Some(&Tok::And) {
            *p += 1;
            parts.push(unary(t, p, logic)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            DependsExpr::And(parts)
        })
    }
    fn unary(t: &[Tok], p: &mut usize, logic: &str) -> Result<DependsExpr, String> {
        match t.get(*p) {
            Some(Tok::Not) => {
                *p += 1;
                Ok(DependsExpr::Not(Box::new(unary(t, p, logic)?)))
            }
            Some(Tok::Open) => {
                *p += 1;
                let e = or(t, p, logic)?;
                if t.get(*p) != Some(&Tok::Close) {
                    return Err(format!("missing ')' in depends '{logic}'"));
                }
                *p += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) => {
                *p += 1;
                let (task, result) = w
                    .rsplit_once('.')
                    .ok_or_else(|| format!("'{w}' has no result in depends '{logic}'"))?;
                Ok(DependsExpr::Result(task.to_string(), result.to_string()))
            }
            _ => Err(format!("incomplete depends '{logic}'")),
        }
    }
    let mut p = 0;
    let e = or(&toks, &mut p, logic)?;
    if p != toks.len() {
        return Err(format!(
            "unexpected text after the expression in depends '{logic}'"
        ));
    }
    Ok(Some(e))
}

fn eval_depends_expr(
    e: &DependsExpr,
    results: &HashMap<String, DepResult>,
) -> Result<bool, String> {
    Ok(match e {
        DependsExpr::Not(x) => !eval_depends_expr(x, results)?,
        DependsExpr::And(xs) => {
            for x in xs {
                if !eval_depends_expr(x, results)? {
                    return Ok(false);
                }
            }
            true
        }
        DependsExpr::Or(xs) => {
            for x in xs {
                if eval_depends_expr(x, results)? {
                    return Ok(true);
                }
            }
            false
        }
        DependsExpr::Result(task, result) => {
            let r = results
                .get(task)
                .ok_or_else(|| format!("task '{task}' has no result yet"))?;
            match result.as_str() {
                "Succeeded" => r.phase == Phase::Succeeded,
                "Failed" => r.phase == Phase::Failed,
                "Errored" => r.phase == Phase::Error,
                "Skipped" => r.phase == Phase::Skipped,
                "Omitted" => r.phase == Phase::Omitted,
                "Daemoned" => false,
                "AnySucceeded" => r.any_succeeded,
                "AllFailed" => r.all_failed,
                other => return Err(format!("unknown task result '{other}'")),
            }
        }
    })
}

/// Evaluate an expanded `depends` expression over the dependencies' results.
#[cfg(test)]
fn eval_depends(logic: &str, results: &HashMap<String, DepResult>) -> Result<bool, String> {
    match parse_depends(logic)? {
        None => Ok(true),
        Some(e) => eval_depends_expr(&e, results),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_resolves_recorded_results_and_its_own_variables_first() {
        let mut scope = ScopeVars::default();
        scope.insert("inputs.parameters.x".into(), "1".into());
        scope.record(
            "tasks.train",
            vec![
                ("status".into(), "Succeeded".into()),
                ("outputs.result".into(), "42".into()),
                ("outputs.parameters.loss".into(), "0.1".into()),
            ],
        );
        assert_eq!(scope.lookup("tasks.train.status"), Some("Succeeded"));
        assert_eq!(scope.lookup("tasks.train.outputs.result"), Some("42"));
        assert_eq!(
            scope.lookup("tasks.train.outputs.parameters.loss"),
            Some("0.1")
        );
        assert_eq!(scope.lookup("tasks.train.exitCode"), None);
        assert_eq!(scope.lookup("tasks.eval.status"), None);
        assert_eq!(scope.lookup("inputs.parameters.x"), Some("1"));
        assert_eq!(scope.lookup("tasks"), None);
        // A later record of the same step replaces the earlier one whole.
        scope.record("tasks.train", vec![("status".into(), "Failed".into())]);
        assert_eq!(scope.lookup("tasks.train.status"), Some("Failed"));
        assert_eq!(scope.lookup("tasks.train.outputs.result"), None);
        // Own variables win: a loop's aggregated outputs, a hook's status override.
        let mut hook_view = scope.clone();
        hook_view.insert("tasks.train.status".into(), "Running".into());
        assert_eq!(hook_view.lookup("tasks.train.status"), Some("Running"));
        assert_eq!(scope.lookup("tasks.train.status"), Some("Failed"));
        // Every variable is listed once, by its full name (expressions build their env so).
        let mut seen = Vec::new();
        hook_view.each(&mut |k, v| seen.push(format!("{k}={v}")));
        seen.sort();
        assert_eq!(
            seen,
            vec!["inputs.parameters.x=1", "tasks.train.status=Running"]
        );
        // A name with a dot cannot be split back into step and field: kept as own variables.
        scope.record("steps.a.b", vec![("status".into(), "Succeeded".into())]);
        assert_eq!(scope.lookup("steps.a.b.status"), Some("Succeeded"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::seconds(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::seconds(90)));
        assert_eq!(parse_duration("2"), Some(Duration::seconds(2)));
        assert_eq!(parse_duration("1d"), Some(Duration::days(1)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn sequences_format_like_go() {
        let seq = workflow_model::Sequence {
            count: None,
            start: Some(workflow_model::IntOrString::Int(5)),
            end: Some(workflow_model::IntOrString::Int(0)),
            format: None,
        };
        assert_eq!(expand_sequence(&seq).unwrap().len(), 6);
        assert_eq!(go_sprintf_int("testuser%02X", 10), "testuser0A");
        assert_eq!(go_sprintf_int("%d", 7), "7");
    }

    #[test]
    fn depends_expansion_matches_argo() {
        let co = |n: &str| {
            if n == "B" {
                Some(ContinueOn {
                    error: false,
                    failed: true,
                })
            } else {
                None
            }
        };
        assert_eq!(
            expand_depends("A && B.Failed", &co),
            "(A.Succeeded || A.Skipped || A.Daemoned) && B.Failed"
        );
        assert_eq!(
            expand_depends("B", &co),
            "(B.Succeeded || B.Skipped || B.Daemoned || B.Failed)"
        );
        let mut r = HashMap::default();
        r.insert(
            "A".to_string(),
            DepResult {
                phase: Phase::Succeeded,
                any_succeeded: false,
                all_failed: false,
            },
        );
        r.insert(
            "B".to_string(),
            DepResult {
                phase: Phase::Failed,
                any_succeeded: false,
                all_failed: false,
            },
        );
        assert!(eval_depends(&expand_depends("A && B.Failed", &co), &r).unwrap());
        assert!(!eval_depends(&expand_depends("A && B.Succeeded", &co), &r).unwrap());
    }

    #[test]
    fn item_labels() {
        assert_eq!(item_label(&json!("hello")), "hello");
        assert_eq!(item_label(&json!(3)), "3");
        assert_eq!(
            item_label(&json!({"os": "debian", "v": 9})),
            "os:debian,v:9"
        );
    }
}
