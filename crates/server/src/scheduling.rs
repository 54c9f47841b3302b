//! The server's side of scheduling: it keeps the cluster's nodes, queues, tenants and the pods
//! that hold or wait for resources, and after every change runs one cycle of the pure
//! `scheduler` crate over them (enqueue, allocate, backfill). A pod starts only once a cycle has
//! bound it; what it was given (node, GPUs or MIG instances) is its `Grant`.
//!
//! Pods join the scheduler with what users already write for Volcano: `schedulerName: volcano`
//! and the annotation `scheduling.k8s.io/group-name` make a gang (its size from
//! `scheduling.volcano.sh/group-min-member`), `scheduling.volcano.sh/queue-name` picks a queue,
//! `priorityClassName` a priority, `nodeSelector` and `tolerations` the nodes it may use. The nodes are this machine (`--cluster local`: its GPUs and
//! MIG instances through NVML, none is fine) or a cluster file's GPU nodes (`--cluster onyx`:
//! the seed's 16 nodes, virtual; steps still run here).

use std::collections::BTreeMap;
use std::sync::Mutex;

use scheduler::{
    GroupSpec, NodeSpec, PodSpec, PriorityClass, Quantity, QueueSpec, QueueUnit, Scenario, Taint,
    TenantSpec, Toleration,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use workflow_model::{AnyString, Template, WorkflowSpec};

pub const GROUP_NAME: &str = "scheduling.k8s.io/group-name";
pub const GROUP_MIN_MEMBER: &str = "scheduling.volcano.sh/group-min-member";
pub const QUEUE_NAME: &str = "scheduling.volcano.sh/queue-name";

/// What a pod asks of the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    pub namespace: String,
    /// The gang (`scheduling.k8s.io/group-name`) and its minMember.
    #[serde(default)]
    pub group: Option<(String, u32)>,
    pub queue: String,
    #[serde(default)]
    pub priority_class: String,
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// What a workflow's spec gives every pod unless the template says otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodDefaults<'a> {
    pub scheduler_name: Option<&'a str>,
    pub priority_class: Option<&'a str>,
    pub node_selector: Option<&'a BTreeMap<String, AnyString>>,
    pub tolerations: &'a [serde_json::Value],
}

impl<'a> PodDefaults<'a> {
    pub fn of(spec: &'a WorkflowSpec) -> PodDefaults<'a> {
        PodDefaults {
            scheduler_name: spec.scheduler_name.as_deref(),
            priority_class: spec.pod_priority_class_name.as_deref(),
            node_selector: Some(&spec.node_selector),
            tolerations: &spec.tolerations,
        }
    }
}

/// What a pod was given: its node and devices. Written to the pod's directory so that a
/// restarted server gives a still-running pod back exactly what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub node: String,
    /// Devices as the scheduler names them: `"3"` (GPU 3) or `"3/2"` (MIG instance 2 of GPU 3).
    pub devices: Vec<String>,
    /// Their UUIDs (`GPU-…`, `MIG-…`), for `CUDA_VISIBLE_DEVICES`.
    pub uuids: Vec<String>,
    /// Whether the devices are this machine's (then `CUDA_VISIBLE_DEVICES` pins them).
    pub local: bool,
    /// A fractional GPU share in thousandths, if that is what was asked.
    #[serde(default)]
    pub gpu_milli: Option<i64>,
    pub ask: Ask,
}

/// Where a pod stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    Bound(Box<Grant>),
    Waiting(String),
    /// It can never run here; the pod fails with this message.
    Refused(String),
}

#[derive(Debug, Clone)]
struct Node {
    spec: NodeSpec,
    /// Per GPU: its UUID, and per MIG instance its UUID.
    uuids: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone)]
struct Pod {
    ask: Ask,
    standing: Standing,
    /// Arrival order, so that a cycle serves pods first come, first served within their rules.
    seq: u64,
    /// Asks for nothing a cycle accounts for (no requests, no gang, a queue without limits):
    /// bound at once to a schedulable node, and left out of cycles, which then cost what
    /// the pods that do ask for something cost.
    light: bool,
    /// When it asked (nanoseconds since the epoch): its wait ends at its grant.
    asked_ns: i64,
}

/// A queue as the server's configuration gives it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    #[serde(default = "one")]
    pub weight: u32,
    /// Most GPUs the queue's pods hold at once.
    #[serde(default)]
    pub capability_gpus: Option<u32>,
    /// GPUs the queue deserves (else the cluster's GPUs split by weight).
    #[serde(default)]
    pub deserved_gpus: Option<u32>,
    /// GPUs kept for the queue: other queues never take the part it does not use.
    #[serde(default)]
    pub guarantee_gpus: Option<u32>,
    #[serde(default = "yes")]
    pub reclaimable: bool,
    /// `node` (whole nodes, exclusive), `slice` (MIG instances, fractions) or `any`.
    #[serde(default)]
    pub unit: QueueUnit,
    /// Hierarchical queues: the parent queue (unset or `root`: under the root). Only leaf
    /// queues take pods; a parent's capability bounds its children together.
    #[serde(default)]
    pub parent: Option<String>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

impl QueueConfig {
    fn with_unit(unit: QueueUnit) -> QueueConfig {
        QueueConfig {
            weight: 1,
            capability_gpus: None,
            deserved_gpus: None,
            guarantee_gpus: None,
            reclaimable: true,
            unit,
            parent: None,
        }
    }
}

/// The queues every server has unless its configuration says otherwise: `default`, and the
/// spec's `dedicated` (whole 8-GPU nodes, exclusive) and `shared` (MIG slices).
pub fn builtin_queues() -> BTreeMap<String, QueueConfig> {
    BTreeMap::from([
        ("default".into(), QueueConfig::with_unit(QueueUnit::Any)),
        ("dedicated".into(), QueueConfig::with_unit(QueueUnit::Node)),
        ("shared".into(), QueueConfig::with_unit(QueueUnit::Slice)),
    ])
}

/// Scheduling policy from the server's configuration.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub queues: BTreeMap<String, QueueConfig>,
    pub priority_classes: BTreeMap<String, i64>,
    /// Per namespace: GPU quota and fair-share weight.
    pub tenants: BTreeMap<String, (Option<u32>, u32)>,
    pub dynamic_mig: bool,
    /// Evict lower-priority gangs of a queue (preempt) and gangs of queues over their share
    /// (reclaim) for waiting gangs, as Volcano's `preempt` and `reclaim` actions do.
    pub preemption: bool,
    /// Whose decisions to follow where Volcano's versions differ: `1.7` (the spec's) or `1.10`.
    pub volcano: Option<String>,
}

impl Policy {
    /// The configured queues as the scheduler takes them.
    fn queue_specs(&self) -> Vec<QueueSpec> {
        let gpus = |v: Option<u32>| {
            v.map(|g| BTreeMap::from([("nvidia.com/gpu".to_string(), Quantity::Number(g as f64))]))
                .unwrap_or_default()
        };
        self.queues
            .iter()
            .map(|(name, q)| QueueSpec {
                name: name.clone(),
                weight: q.weight,
                capability: gpus(q.capability_gpus),
                deserved: gpus(q.deserved_gpus),
                guarantee: gpus(q.guarantee_gpus),
                reclaimable: q.reclaimable,
                priority: 0,
                parent: q.parent.clone().unwrap_or_default(),
                unit: q.unit,
            })
            .collect()
    }

    /// Whether the scheduler accepts these queues (a tree without cycles, children within
    /// their parents' capability and deserved share); checked when the server starts.
    pub fn check_queues(&self) -> Result<(), String> {
        let s = Scenario {
            queues: self.queue_specs(),
            ..Default::default()
        };
        scheduler::run(&s)
            .map(|_| ())
            .map_err(|e| format!("queues: {e}"))
    }
}

struct Inner {
    nodes: Vec<Node>,
    cordoned: Vec<bool>,
    /// Per node, the light pods bound to it.
    light_load: Vec<usize>,
    /// Pods a cycle chose to evict, until they are gone (they hold their resources meanwhile).
    releasing: std::collections::BTreeSet<String>,
    /// Evictions the pod layer has not carried out yet, with why.
    to_evict: Vec<(String, String)>,
    pods: BTreeMap<String, Pod>,
    seq: u64,
}

pub struct Cluster {
    inner: Mutex<Inner>,
    policy: Policy,
    local: bool,
    changed: Notify,
    /// Every grant that holds GPUs or CPU and every release of one, for the usage ledger.
    ledger: tokio::sync::mpsc::UnboundedSender<Ledger>,
    ledger_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Ledger>>>,
    /// Milliseconds each scheduling cycle took (Volcano's e2e scheduling latency buckets).
    pub latency: prometheus_client::metrics::histogram::Histogram,
    /// Seconds pods waited from asking to their grant, per queue.
    waits: Mutex<BTreeMap<String, prometheus_client::metrics::histogram::Histogram>>,
    /// Namespaces given a GPU quota while the server runs (approved namespace requests),
    /// over the configured ones.
    granted_tenants: Mutex<BTreeMap<String, (Option<u32>, u32)>>,
}

/// A pod's name from its key (`namespace/name`).
fn plain(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, name)| name)
}

/// Buckets of a pod's wait for resources: from a second to half a day.
const WAIT_BUCKETS: [f64; 10] = [
    1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0,
];

/// A change to what pods hold of the GPUs, in the order the cluster saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ledger {
    Held(store::UsageRow),
    Released { pod: String, at_ns: i64 },
}

/// CPU cores a grant's requests add up to (`cpu: 500m` is 0.5).
fn granted_cpus(grant: &Grant) -> f64 {
    grant
        .ask
        .requests
        .get("cpu")
        .and_then(|v| scheduler::Quantity::Text(v.clone()).milli().ok())
        .map_or(0.0, |m| m as f64 / 1000.0)
}

/// Whether the usage ledger records a grant: it holds GPUs or asked for CPU.
fn ledgered(grant: &Grant) -> bool {
    !grant.devices.is_empty() || grant.gpu_milli.is_some() || granted_cpus(grant) > 0.0
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// What a grant holds in GPU equivalents: a whole GPU 1, a fraction its share, a MIG
/// instance its compute slices over 7 (an instance of an unknown profile counts whole).
fn granted_gpu_equivalents(grant: &Grant, node: Option<&Node>) -> f64 {
    if let Some(milli) = grant.gpu_milli {
        return milli as f64 / 1000.0 * grant.devices.len().max(1) as f64;
    }
    grant
        .devices
        .iter()
        .map(|d| match d.split_once('/') {
            Some((g, i)) => node
                .and_then(|n| {
                    let layout = n.spec.mig.as_ref()?;
                    let profile = layout
                        .get(g.parse::<usize>().ok()?)?
                        .get(i.parse::<usize>().ok()?)?;
                    scheduler::mig::compute_slices(profile)
                })
                .map_or(1.0, |s| s as f64 / 7.0),
            None => 1.0,
        })
        .sum()
}

/// One node's use, for `onyx node list`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeUsage {
    pub name: String,
    pub gpus: usize,
    pub free_gpus: usize,
    pub mig: Vec<Vec<String>>,
    pub pods: usize,
    pub cordoned: bool,
    /// The GPU model (`nvidia.com/gpu.product`), empty on a node without GPUs.
    pub gpu_model: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<scheduler::Taint>,
    /// Each GPU with who holds it, whole, in part or instance by instance.
    pub devices: Vec<GpuUsage>,
}

/// One GPU of a node and its holders, for the UI's cluster map.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuUsage {
    pub index: usize,
    pub uuid: String,
    /// Pods holding the whole GPU or a fraction of it (none when it is MIG-partitioned).
    pub holders: Vec<Holder>,
    /// MIG instances by start slot order, as the layout lists them; empty for a whole GPU.
    pub instances: Vec<InstanceUsage>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceUsage {
    pub profile: String,
    pub uuid: String,
    pub holder: Option<Holder>,
}

/// A pod holding a device, with what a reader of the cluster map needs to find its workflow.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub pod: String,
    pub namespace: String,
    pub queue: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gang: Option<String>,
    /// A fractional share in thousandths of the GPU, when that is what the pod asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_milli: Option<i64>,
}

/// A namespace's GPUs held now against its quota.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceUsage {
    pub namespace: String,
    pub gpu_quota: Option<u32>,
    pub weight: u32,
    /// GPU equivalents its pods hold (a MIG 1g instance is 1/7).
    pub held_gpus: f64,
}

/// One queue's state, for `onyx queue list|get`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueUsage {
    pub name: String,
    pub unit: QueueUnit,
    pub weight: u32,
    pub capability_gpus: Option<u32>,
    pub deserved_gpus: Option<u32>,
    pub guarantee_gpus: Option<u32>,
    pub reclaimable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// GPU equivalents its running pods hold (a MIG 1g instance is 1/7).
    pub allocated_gpus: f64,
    pub running: usize,
    pub pending: usize,
    /// Pod groups (gangs; a pod outside a gang is a group of its own) with a bound pod, and
    /// with every pod waiting: Volcano's Running and Pending PodGroups.
    pub running_groups: usize,
    pub pending_groups: usize,
    /// When the longest-waiting pod asked (nanoseconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_wait_ns: Option<i64>,
    /// The pods waiting in it and why.
    pub waiting: BTreeMap<String, String>,
}

fn annotation(t: &Template, key: &str) -> Option<String> {
    t.metadata
        .as_ref()?
        .get("annotations")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// What a pod of template `t` asks for. Each of the template's scheduling fields replaces the
/// workflow's default as a whole (Argo's `addSchedulingConstraints`: a template's
/// `nodeSelector` or `tolerations` are not merged with the workflow's).
pub fn ask_of(namespace: &str, t: &Template, defaults: &PodDefaults) -> Result<Ask, String> {
    let scheduler_name = defaults.scheduler_name;
    let priority_class = defaults.priority_class;
    let mut containers = Vec::new();
    if let Some(c) = &t.container {
        containers.push(c);
    }
    if let Some(s) = &t.script {
        containers.push(&s.container);
    }
    if let Some(cs) = &t.container_set {
        containers.extend(cs.containers.iter());
    }
    // A pod asks for the sum of its containers' requests (limits where no request is given,
    // as Kubernetes defaults them).
    let mut sums: BTreeMap<String, i128> = BTreeMap::new();
    for c in containers {
        let Some(res) = &c.resources else { continue };
        let get = |part: &str| res.get(part).and_then(|v| v.as_object()).cloned();
        let mut merged = get("limits").unwrap_or_default();
        merged.extend(get("requests").unwrap_or_default());
        for (k, v) in merged {
            let text = match &v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let milli = Quantity::Text(text)
                .milli()
                .map_err(|e| format!("resources.{k}: {e}"))?;
            *sums.entry(k).or_default() += milli;
        }
    }
    let requests = sums
        .into_iter()
        .filter(|(k, _)| k != "ephemeral-storage")
        .map(|(k, milli)| {
            let text = if milli % 1000 == 0 {
                (milli / 1000).to_string()
            } else {
                format!("{milli}m")
            };
            (k, text)
        })
        .collect();
    let volcano = t.scheduler_name.as_deref().or(scheduler_name) == Some("volcano");
    let group = match (volcano, annotation(t, GROUP_NAME)) {
        (true, Some(name)) => {
            let min = match annotation(t, GROUP_MIN_MEMBER) {
                Some(v) => v.trim().parse::<u32>().map_err(|_| {
                    format!("metadata.annotations.{GROUP_MIN_MEMBER}: expected a whole number, got {v:?}")
                })?,
                None => 1,
            };
            Some((name, min.max(1)))
        }
        (false, Some(_)) => None,
        (_, None) => None,
    };
    Ok(Ask {
        namespace: namespace.to_string(),
        group,
        queue: annotation(t, QUEUE_NAME).unwrap_or_else(|| "default".into()),
        priority_class: t
            .priority_class_name
            .clone()
            .or(priority_class.map(str::to_string))
            .unwrap_or_default(),
        requests,
        node_selector: match (&t.node_selector, defaults.node_selector) {
            (own, Some(wf)) if own.is_empty() => wf,
            (own, _) => own,
        }
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect(),
        tolerations: tolerations_of(if t.tolerations.is_empty() {
            defaults.tolerations
        } else {
            &t.tolerations
        })?,
    })
}

/// Kubernetes tolerations, each checked field by field.
fn tolerations_of(list: &[serde_json::Value]) -> Result<Vec<Toleration>, String> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let tol: Toleration = serde_json::from_value(v.clone())
                .map_err(|e| format!("tolerations[{i}]: {e}"))?;
            if !matches!(tol.operator.as_str(), "" | "Equal" | "Exists") {
                return Err(format!(
                    "tolerations[{i}].operator: expected Equal or Exists, got {:?}",
                    tol.operator
                ));
            }
            if tol.operator == "Exists" && !tol.value.is_empty() {
                return Err(format!(
                    "tolerations[{i}].value: must be empty when operator is Exists"
                ));
            }
            if tol.key.is_empty() && tol.operator != "Exists" {
                return Err(format!(
                    "tolerations[{i}].operator: must be Exists when key is empty"
                ));
            }
            if !matches!(
                tol.effect.as_str(),
                "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                return Err(format!(
                    "tolerations[{i}].effect: expected NoSchedule, PreferNoSchedule or NoExecute, got {:?}",
                    tol.effect
                ));
            }
            Ok(tol)
        })
        .collect()
}

impl Cluster {
    fn new(nodes: Vec<Node>, policy: Policy, local: bool) -> Cluster {
        let cordoned = vec![false; nodes.len()];
        let (ledger, ledger_rx) = tokio::sync::mpsc::unbounded_channel();
        Cluster {
            inner: Mutex::new(Inner {
                light_load: vec![0; nodes.len()],
                releasing: Default::default(),
                to_evict: Vec::new(),
                nodes,
                cordoned,
                pods: BTreeMap::new(),
                seq: 0,
            }),
            waits: Mutex::new(BTreeMap::new()),
            granted_tenants: Mutex::new(BTreeMap::new()),
            latency: prometheus_client::metrics::histogram::Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(5.0, 2.0, 10),
            ),
            policy,
            local,
            changed: Notify::new(),
            ledger,
            ledger_rx: Mutex::new(Some(ledger_rx)),
        }
    }

    /// The ledger's changes, for the one task that writes them to the store.
    /// The configured tenants with those granted since.
    fn tenants(&self) -> BTreeMap<String, (Option<u32>, u32)> {
        let mut t = self.policy.tenants.clone();
        t.extend(
            self.granted_tenants
                .lock()
                .expect("tenants")
                .iter()
                .map(|(k, v)| (k.clone(), *v)),
        );
        t
    }

    /// A namespace gets a GPU quota (an approved namespace request): scheduled by it from now.
    pub fn grant_tenant(&self, namespace: &str, gpu_quota: Option<u32>) {
        self.granted_tenants
            .lock()
            .expect("tenants")
            .insert(namespace.to_string(), (gpu_quota, 1));
        self.changed.notify_one();
    }

    pub fn take_ledger(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Ledger>> {
        self.ledger_rx.lock().expect("ledger").take()
    }

    /// Pods whose grant the usage ledger holds open now.
    pub fn ledgered_pods(&self) -> Vec<String> {
        let inner = self.inner.lock().expect("cluster");
        inner
            .pods
            .iter()
            .filter(|(_, p)| matches!(&p.standing, Standing::Bound(g) if ledgered(g)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn note_held(&self, pod: &str, grant: &Grant, node: Option<&Node>, asked_ns: i64) {
        if !ledgered(grant) {
            return;
        }
        let now = now_ns();
        let _ = self.ledger.send(Ledger::Held(store::UsageRow {
            pod: pod.to_string(),
            namespace: grant.ask.namespace.clone(),
            queue: grant.ask.queue.clone(),
            node: grant.node.clone(),
            gpus: granted_gpu_equivalents(grant, node),
            cpus: granted_cpus(grant),
            devices: grant.devices.clone(),
            asked_ns: asked_ns.min(now),
            started_ns: now,
            ended_ns: None,
        }));
    }

    /// This machine: its CPUs, memory and GPUs (and MIG instances) through NVML.
    pub fn local(policy: Policy) -> Cluster {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let mut uuids = Vec::new();
        let mut mig = Vec::new();
        if let Ok(nvml) = nvml_wrapper::Nvml::init() {
            for i in 0..nvml.device_count().unwrap_or(0) {
                let Ok(d) = nvml.device_by_index(i) else {
                    continue;
                };
                let (layout, instance_uuids) = local_mig(&nvml, &d);
                uuids.push((d.uuid().unwrap_or_default(), instance_uuids));
                mig.push(layout);
            }
        }
        // Pods without requests always fit; CPU and memory are this machine's.
        let mut allocatable = BTreeMap::from([
            ("pods".to_string(), Quantity::Number(100_000.0)),
            (
                "nvidia.com/gpu".to_string(),
                Quantity::Number(uuids.len() as f64),
            ),
        ]);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        allocatable.insert("cpu".into(), Quantity::Number(cpus as f64));
        allocatable.insert("memory".into(), Quantity::Text(format!("{}", mem_total())));
        let spec = NodeSpec {
            labels: local_executor::actions::node_config().node_labels,
            name: host,
            allocatable,
            mig: Some(mig),
            ..Default::default()
        };
        Cluster::new(vec![Node { spec, uuids }], policy, true)
    }

    /// A cluster file's GPU nodes, virtual: pods are placed on them and run here.
    pub fn virtual_nodes(c: &cluster_model::Cluster, policy: Policy) -> Cluster {
        let cat = cluster_model::Catalogue::builtin();
        let mut nodes = Vec::new();
        for n in &c.nodes {
            let group = c.group(n);
            let Some(gpus) = &group.gpus else { continue };
            let cores = cat.cpus.get(&group.cpus.model).map_or(64, |m| m.cores) * group.cpus.count;
            let memory = group.memory.dimm.value * group.memory.count as f64;
            let layout: Vec<String> = match &gpus.mig {
                Some(m) if m.enabled => m.layout.clone(),
                _ => Vec::new(),
            };
            let spec = NodeSpec {
                name: n.name.clone(),
                allocatable: BTreeMap::from([
                    ("cpu".to_string(), Quantity::Number(cores as f64)),
                    ("memory".to_string(), Quantity::Text(format!("{memory}"))),
                    ("pods".to_string(), Quantity::Number(1000.0)),
                    (
                        "nvidia.com/gpu".to_string(),
                        Quantity::Number(gpus.count as f64),
                    ),
                ]),
                gpu: Some(scheduler::GpuInfo {
                    model: gpus.model.clone(),
                }),
                mig: Some(vec![layout.clone(); gpus.count as usize]),
                // The labels a node selector matches: the group's, and those Kubernetes and
                // NVIDIA's GPU feature discovery put on every node.
                labels: {
                    let mut l = group.labels.clone();
                    l.insert("kubernetes.io/hostname".into(), n.name.clone());
                    l.insert("onyx.dev/rack".into(), n.rack.clone());
                    l.insert("nvidia.com/gpu.product".into(), gpus.model.clone());
                    l.insert("nvidia.com/gpu.count".into(), gpus.count.to_string());
                    l
                },
                unschedulable: false,
                taints: group
                    .taints
                    .iter()
                    .map(|t| Taint {
                        key: t.key.clone(),
                        value: t.value.clone(),
                        effect: t.effect.as_str().to_string(),
                    })
                    .collect(),
            };
            let uuids = (0..gpus.count)
                .map(|i| {
                    let gpu = format!("GPU-{}-{i}", n.name);
                    let inst = (0..layout.len())
                        .map(|k| format!("MIG-{gpu}-{k}"))
                        .collect();
                    (gpu, inst)
                })
                .collect();
            nodes.push(Node { spec, uuids });
        }
        Cluster::new(nodes, policy, false)
    }

    /// How long pods waited for their grant, per queue (the histograms are shared handles).
    pub fn waits(&self) -> Vec<(String, prometheus_client::metrics::histogram::Histogram)> {
        let waits = self.waits.lock().expect("waits");
        waits.iter().map(|(q, h)| (q.clone(), h.clone())).collect()
    }

    /// Whether the nodes are this machine (GPUs read through NVML) rather than virtual.
    pub fn is_local(&self) -> bool {
        self.local
    }

    pub fn total_gpus(&self) -> usize {
        let inner = self.inner.lock().expect("cluster");
        inner.nodes.iter().map(|n| n.uuids.len()).sum()
    }

    /// Woken after every cycle.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// A pod asks to be scheduled; a cycle runs at once.
    pub fn ask(&self, pod: &str, ask: Ask) {
        let mut inner = self.inner.lock().expect("cluster");
        inner.seq += 1;
        let seq = inner.seq;
        let standing = if self.policy.queues.contains_key(&ask.queue) {
            Standing::Waiting("waiting for the scheduler".into())
        } else {
            Standing::Refused(format!(
                "queue {:?} does not exist (queues: {})",
                ask.queue,
                self.queue_names().join(", ")
            ))
        };
        if inner.pods.contains_key(pod) {
            return;
        }
        let light_node = self.light_node(&inner, &ask, &standing);
        if let Some(i) = light_node {
            inner.light_load[i] += 1;
            let grant = Grant {
                node: inner.nodes[i].spec.name.clone(),
                devices: Vec::new(),
                uuids: Vec::new(),
                local: self.local,
                gpu_milli: None,
                ask: ask.clone(),
            };
            inner.pods.insert(
                pod.to_string(),
                Pod {
                    ask,
                    standing: Standing::Bound(Box::new(grant)),
                    seq,
                    light: true,
                    asked_ns: now_ns(),
                },
            );
            return;
        }
        inner.pods.insert(
            pod.to_string(),
            Pod {
                ask,
                standing,
                seq,
                light: false,
                asked_ns: now_ns(),
            },
        );
        self.cycle(&mut inner);
    }

    /// The node a pod that asks for nothing goes to: the schedulable node with the fewest
    /// such pods. `None` when the pod must go through a cycle.
    fn light_node(&self, inner: &Inner, ask: &Ask, standing: &Standing) -> Option<usize> {
        let plain_queue = self
            .policy
            .queues
            .get(&ask.queue)
            .is_some_and(|q| q.unit == QueueUnit::Any && q.capability_gpus.is_none());
        if !ask.requests.is_empty()
            || ask.group.is_some()
            || !ask.node_selector.is_empty()
            || !plain_queue
            || !matches!(standing, Standing::Waiting(_))
        {
            return None;
        }
        (0..inner.nodes.len())
            .filter(|i| {
                !inner.cordoned[*i]
                    && scheduler::untolerated(&inner.nodes[*i].spec.taints, &ask.tolerations)
                        .is_none()
            })
            .min_by_key(|i| inner.light_load[*i])
    }

    pub fn standing(&self, pod: &str) -> Option<Standing> {
        let inner = self.inner.lock().expect("cluster");
        inner.pods.get(pod).map(|p| p.standing.clone())
    }

    /// A pod that was running before a restart holds what it held.
    pub fn hold(&self, pod: &str, grant: &Grant) {
        let mut inner = self.inner.lock().expect("cluster");
        if inner.pods.contains_key(pod) {
            return;
        }
        inner.seq += 1;
        let seq = inner.seq;
        let light =
            grant.devices.is_empty() && grant.ask.requests.is_empty() && grant.ask.group.is_none();
        if light {
            if let Some(i) = inner.nodes.iter().position(|n| n.spec.name == grant.node) {
                inner.light_load[i] += 1;
            }
        }
        let node = inner.nodes.iter().find(|n| n.spec.name == grant.node);
        self.note_held(pod, grant, node, now_ns());
        inner.pods.insert(
            pod.to_string(),
            Pod {
                ask: grant.ask.clone(),
                standing: Standing::Bound(Box::new(grant.clone())),
                seq,
                light,
                asked_ns: now_ns(),
            },
        );
    }

    /// Evictions a cycle decided, for the pod layer to carry out (each is handed out once).
    pub fn take_evictions(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.inner.lock().expect("cluster").to_evict)
    }

    /// A pod ended (or will not start): what it held is free, and waiting pods may bind.
    pub fn release(&self, pod: &str) {
        let mut inner = self.inner.lock().expect("cluster");
        inner.releasing.remove(pod);
        let removed = inner.pods.remove(pod);
        if let Some(Standing::Bound(g)) = removed.as_ref().map(|p| &p.standing) {
            if ledgered(g) {
                let _ = self.ledger.send(Ledger::Released {
                    pod: pod.to_string(),
                    at_ns: now_ns(),
                });
            }
        }
        match removed {
            Some(p) if p.light => {
                if let Standing::Bound(g) = &p.standing {
                    if let Some(i) = inner.nodes.iter().position(|n| n.spec.name == g.node) {
                        inner.light_load[i] = inner.light_load[i].saturating_sub(1);
                    }
                }
            }
            Some(_) => self.cycle(&mut inner),
            None => {}
        }
    }

    /// Cordon (`true`) or uncordon a node; `false` if there is no such node.
    pub fn cordon(&self, node: &str, on: bool) -> bool {
        let mut inner = self.inner.lock().expect("cluster");
        let Some(i) = inner.nodes.iter().position(|n| n.spec.name == node) else {
            return false;
        };
        inner.cordoned[i] = on;
        self.cycle(&mut inner);
        true
    }

    pub fn node_names(&self) -> Vec<String> {
        let inner = self.inner.lock().expect("cluster");
        inner.nodes.iter().map(|n| n.spec.name.clone()).collect()
    }

    /// The pods bound to a node.
    pub fn pods_on(&self, node: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("cluster");
        inner
            .pods
            .iter()
            .filter(|(_, p)| matches!(&p.standing, Standing::Bound(g) if g.node == node))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// These pods and every bound pod of the gangs they belong to.
    pub fn gang_of(&self, pods: &[String]) -> Vec<String> {
        let inner = self.inner.lock().expect("cluster");
        let groups: std::collections::BTreeSet<(String, String)> = pods
            .iter()
            .filter_map(|p| inner.pods.get(p))
            .filter_map(|p| Some((p.ask.namespace.clone(), p.ask.group.as_ref()?.0.clone())))
            .collect();
        inner
            .pods
            .iter()
            .filter(|(name, p)| {
                pods.contains(name)
                    || matches!(p.standing, Standing::Bound(_))
                        && p.ask.group.as_ref().is_some_and(|(g, _)| {
                            groups.contains(&(p.ask.namespace.clone(), g.clone()))
                        })
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    pub fn nodes(&self) -> Vec<NodeUsage> {
        let inner = self.inner.lock().expect("cluster");
        inner
            .nodes
            .iter()
            .zip(&inner.cordoned)
            .map(|(n, cordoned)| {
                let bound: Vec<(&String, &Grant)> = inner
                    .pods
                    .iter()
                    .filter_map(|(pod, p)| match &p.standing {
                        Standing::Bound(g) if g.node == n.spec.name => Some((pod, g.as_ref())),
                        _ => None,
                    })
                    .collect();
                let layout = n.spec.mig.clone().unwrap_or_default();
                let busy: std::collections::BTreeSet<&str> = bound
                    .iter()
                    .flat_map(|(_, g)| g.devices.iter())
                    .map(|d| d.split('/').next().unwrap_or(d))
                    .collect();
                let holder = |pod: &String, g: &Grant| Holder {
                    // Pods are keyed `namespace/name`; the holder shows the name.
                    pod: plain(pod).to_string(),
                    namespace: g.ask.namespace.clone(),
                    queue: g.ask.queue.clone(),
                    gang: g.ask.group.as_ref().map(|(name, _)| name.clone()),
                    gpu_milli: g.gpu_milli,
                };
                let holders_of = |device: &str| {
                    bound
                        .iter()
                        .filter(|(_, g)| g.devices.iter().any(|d| d == device))
                        .map(|(pod, g)| holder(pod, g))
                        .collect::<Vec<_>>()
                };
                let devices = n
                    .uuids
                    .iter()
                    .enumerate()
                    .map(|(i, (uuid, mig_uuids))| {
                        let profiles = layout.get(i).cloned().unwrap_or_default();
                        GpuUsage {
                            index: i,
                            uuid: uuid.clone(),
                            holders: if profiles.is_empty() {
                                holders_of(&i.to_string())
                            } else {
                                Vec::new()
                            },
                            instances: profiles
                                .into_iter()
                                .enumerate()
                                .map(|(j, profile)| InstanceUsage {
                                    profile,
                                    uuid: mig_uuids.get(j).cloned().unwrap_or_default(),
                                    holder: holders_of(&format!("{i}/{j}")).into_iter().next(),
                                })
                                .collect(),
                        }
                    })
                    .collect();
                NodeUsage {
                    name: n.spec.name.clone(),
                    gpus: n.uuids.len(),
                    free_gpus: (0..n.uuids.len())
                        .filter(|i| {
                            !busy.contains(i.to_string().as_str())
                                && layout.get(*i).is_none_or(|l| l.is_empty())
                        })
                        .count(),
                    mig: layout,
                    pods: bound.len(),
                    cordoned: *cordoned,
                    gpu_model: n
                        .spec
                        .gpu
                        .as_ref()
                        .map(|g| g.model.clone())
                        .unwrap_or_default(),
                    labels: n.spec.labels.clone(),
                    taints: n.spec.taints.clone(),
                    devices,
                }
            })
            .collect()
    }

    /// Every namespace with a configured quota or weight, or holding GPUs now: what it holds
    /// (GPU equivalents) against its quota.
    pub fn namespaces(&self) -> Vec<NamespaceUsage> {
        let inner = self.inner.lock().expect("cluster");
        let mut out: BTreeMap<String, NamespaceUsage> = self
            .tenants()
            .iter()
            .map(|(ns, (quota, weight))| {
                let usage = NamespaceUsage {
                    namespace: ns.clone(),
                    gpu_quota: *quota,
                    weight: *weight,
                    held_gpus: 0.0,
                };
                (ns.clone(), usage)
            })
            .collect();
        for p in inner.pods.values() {
            if let Standing::Bound(g) = &p.standing {
                if g.devices.is_empty() && g.gpu_milli.is_none() {
                    continue;
                }
                let node = inner.nodes.iter().find(|n| n.spec.name == g.node);
                out.entry(g.ask.namespace.clone())
                    .or_insert_with(|| NamespaceUsage {
                        namespace: g.ask.namespace.clone(),
                        gpu_quota: None,
                        weight: 1,
                        held_gpus: 0.0,
                    })
                    .held_gpus += granted_gpu_equivalents(g, node);
            }
        }
        out.into_values().collect()
    }

    pub fn queues(&self) -> Vec<QueueUsage> {
        let inner = self.inner.lock().expect("cluster");
        self.policy
            .queues
            .iter()
            .map(|(name, q)| {
                let mut usage = QueueUsage {
                    name: name.clone(),
                    unit: q.unit,
                    weight: q.weight,
                    capability_gpus: q.capability_gpus,
                    deserved_gpus: q.deserved_gpus,
                    guarantee_gpus: q.guarantee_gpus,
                    reclaimable: q.reclaimable,
                    parent: q.parent.clone(),
                    allocated_gpus: 0.0,
                    running: 0,
                    pending: 0,
                    running_groups: 0,
                    pending_groups: 0,
                    oldest_wait_ns: None,
                    waiting: BTreeMap::new(),
                };
                let mut bound_groups = std::collections::BTreeSet::new();
                let mut waiting_groups = std::collections::BTreeSet::new();
                for (pod, p) in inner.pods.iter().filter(|(_, p)| p.ask.queue == *name) {
                    let group = match &p.ask.group {
                        Some((g, _)) => format!("{}/{g}", p.ask.namespace),
                        None => format!("pod:{pod}"),
                    };
                    match &p.standing {
                        Standing::Bound(_) => {
                            usage.running += 1;
                            usage.allocated_gpus += gpu_equivalents(&p.ask.requests);
                            bound_groups.insert(group);
                        }
                        Standing::Waiting(why) => {
                            usage.pending += 1;
                            usage.waiting.insert(pod.clone(), why.clone());
                            waiting_groups.insert(group);
                            usage.oldest_wait_ns = Some(
                                usage
                                    .oldest_wait_ns
                                    .map_or(p.asked_ns, |o| o.min(p.asked_ns)),
                            );
                        }
                        Standing::Refused(_) => {}
                    }
                }
                usage.running_groups = bound_groups.len();
                usage.pending_groups = waiting_groups.difference(&bound_groups).count();
                usage
            })
            .collect()
    }

    /// One scheduling cycle over everything the server knows.
    fn cycle(&self, inner: &mut Inner) {
        let began = std::time::Instant::now();
        let scenario = self.scenario(inner);
        let outcome = scheduler::run(&scenario);
        self.latency.observe(began.elapsed().as_secs_f64() * 1000.0);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                // The scenario is built here, so this is a bug; pods wait and say so.
                tracing::error!("scheduling cycle: {e}");
                return;
            }
        };
        // The scheduler names pods `namespace/name`, which is how this server keys them.
        for key in &outcome.evictions {
            let pod = key.as_str();
            if inner.pods.contains_key(pod) && inner.releasing.insert(pod.to_string()) {
                let why = outcome
                    .eviction_reasons
                    .get(key)
                    .cloned()
                    .unwrap_or_else(|| "pod evicted by the scheduler".into());
                inner.to_evict.push((pod.to_string(), why));
            }
        }
        for (name, layout) in &outcome.mig_instances {
            if let Some(n) = inner.nodes.iter_mut().find(|n| &n.spec.name == name) {
                if n.spec.mig.as_ref() != Some(layout) {
                    tracing::info!("node {name}: MIG layout now {layout:?}");
                    for (i, l) in layout.iter().enumerate() {
                        if let Some(u) = n.uuids.get_mut(i) {
                            u.1 = (0..l.len()).map(|k| format!("MIG-{}-{k}", u.0)).collect();
                        }
                    }
                    n.spec.mig = Some(layout.clone());
                }
            }
        }
        let Inner { nodes, pods, .. } = inner;
        for (name, p) in pods.iter_mut() {
            if !matches!(p.standing, Standing::Waiting(_)) {
                continue;
            }
            let key = format!("{}/{}", p.ask.namespace, plain(name));
            let group_key = p
                .ask
                .group
                .as_ref()
                .map(|(g, _)| format!("{}/{g}", p.ask.namespace));
            if let Some(why) = outcome
                .refused
                .get(&key)
                .or_else(|| group_key.as_ref().and_then(|g| outcome.refused.get(g)))
            {
                p.standing = Standing::Refused(why.clone());
            } else if let Some(node) = outcome.binds.get(&key) {
                let devices = outcome.devices.get(&key).cloned().unwrap_or_default();
                let n = nodes.iter().find(|n| &n.spec.name == node);
                let uuids = devices
                    .iter()
                    .filter_map(|d| {
                        let n = n?;
                        match d.split_once('/') {
                            Some((g, i)) => n
                                .uuids
                                .get(g.parse::<usize>().ok()?)?
                                .1
                                .get(i.parse::<usize>().ok()?)
                                .cloned(),
                            None => n.uuids.get(d.parse::<usize>().ok()?).map(|u| u.0.clone()),
                        }
                    })
                    .collect();
                let gpu_milli = p
                    .ask
                    .requests
                    .get("gpu_milli")
                    .and_then(|v| v.parse::<i64>().ok());
                let grant = Grant {
                    node: node.clone(),
                    devices,
                    uuids,
                    local: self.local,
                    gpu_milli,
                    ask: p.ask.clone(),
                };
                self.note_held(name, &grant, n, p.asked_ns);
                self.waits
                    .lock()
                    .expect("waits")
                    .entry(p.ask.queue.clone())
                    .or_insert_with(|| {
                        prometheus_client::metrics::histogram::Histogram::new(WAIT_BUCKETS)
                    })
                    .observe((now_ns() - p.asked_ns).max(0) as f64 / 1e9);
                p.standing = Standing::Bound(Box::new(grant));
            } else {
                let why =
                    outcome.reasons.get(&key).cloned().unwrap_or_else(|| {
                        "waiting for resources: no node has room for it now".into()
                    });
                p.standing = Standing::Waiting(why);
            }
        }
        // Refused pods fail; they hold nothing and take no part in later cycles.
        self.changed.notify_waiters();
    }

    fn scenario(&self, inner: &Inner) -> Scenario {
        let mut s = Scenario {
            name: "server".into(),
            actions: if self.policy.preemption {
                ["enqueue", "allocate", "preempt", "reclaim", "backfill"]
                    .map(String::from)
                    .to_vec()
            } else {
                ["enqueue", "allocate", "backfill"]
                    .map(String::from)
                    .to_vec()
            },
            ..Default::default()
        };
        if self.policy.dynamic_mig {
            s.config.plugins.push("dynamic-mig".into());
        }
        s.config.volcano = self.policy.volcano.clone();
        for (n, cordoned) in inner.nodes.iter().zip(&inner.cordoned) {
            let mut spec = n.spec.clone();
            spec.unschedulable = *cordoned;
            s.nodes.push(spec);
        }
        s.queues = self.policy.queue_specs();
        s.priority_classes = self
            .policy
            .priority_classes
            .iter()
            .map(|(name, value)| PriorityClass {
                name: name.clone(),
                value: *value,
            })
            .collect();
        s.tenants = self
            .tenants()
            .iter()
            .map(|(ns, (quota, weight))| TenantSpec {
                namespace: ns.clone(),
                weight: *weight,
                quota: quota
                    .map(|g| {
                        BTreeMap::from([("nvidia.com/gpu".to_string(), Quantity::Number(g as f64))])
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let mut by_seq: Vec<(&String, &Pod)> = inner
            .pods
            .iter()
            .filter(|(_, p)| !p.light && !matches!(p.standing, Standing::Refused(_)))
            .collect();
        by_seq.sort_by_key(|(_, p)| p.seq);
        let mut groups: BTreeMap<String, usize> = BTreeMap::new();
        for (name, p) in by_seq {
            let group = match &p.ask.group {
                Some((g, min)) => {
                    let key = format!("{}/{g}", p.ask.namespace);
                    let i = *groups.entry(key).or_insert_with(|| {
                        s.groups.push(GroupSpec {
                            name: g.clone(),
                            namespace: p.ask.namespace.clone(),
                            queue: p.ask.queue.clone(),
                            min_member: *min,
                            min_task_member: BTreeMap::new(),
                            min_resources: BTreeMap::new(),
                            priority_class: p.ask.priority_class.clone(),
                            phase: "Pending".into(),
                        });
                        s.groups.len() - 1
                    });
                    if matches!(p.standing, Standing::Bound(_)) {
                        s.groups[i].phase = "Running".into();
                    }
                    s.groups[i].min_member = s.groups[i].min_member.max(*min);
                    g.clone()
                }
                None => String::new(),
            };
            let (phase, node, devices) = match &p.standing {
                Standing::Bound(g) if inner.releasing.contains(name.as_str()) => {
                    ("Releasing", g.node.clone(), g.devices.clone())
                }
                Standing::Bound(g) => ("Running", g.node.clone(), g.devices.clone()),
                _ => ("Pending", String::new(), Vec::new()),
            };
            s.pods.push(PodSpec {
                name: plain(name).to_string(),
                namespace: p.ask.namespace.clone(),
                group,
                phase: phase.into(),
                node,
                requests: p
                    .ask
                    .requests
                    .iter()
                    .map(|(k, v)| (k.clone(), Quantity::Text(v.clone())))
                    .collect(),
                priority_class: p.ask.priority_class.clone(),
                preemptable: true,
                node_selector: p.ask.node_selector.clone(),
                tolerations: p.ask.tolerations.clone(),
                queue: p.ask.queue.clone(),
                devices,
                ..Default::default()
            });
        }
        fill_min_resources(&mut s);
        s
    }

    pub fn queue_names(&self) -> Vec<String> {
        self.policy.queues.keys().cloned().collect()
    }
}

/// Each gang's `minResources`, as Volcano's job controller sets a PodGroup's: what its first
/// `minMember` pods ask for (CPU, memory, GPU equivalents), which the enqueue action weighs
/// against the queue's capability.
fn fill_min_resources(s: &mut Scenario) {
    for g in &mut s.groups {
        let (mut cpu, mut mem, mut gpu) = (0i128, 0i128, 0.0f64);
        let members = s
            .pods
            .iter()
            .filter(|p| p.group == g.name && p.namespace == g.namespace)
            .take(g.min_member as usize);
        for p in members {
            let text: BTreeMap<String, String> = p
                .requests
                .iter()
                .map(|(k, v)| {
                    let t = match v {
                        Quantity::Text(t) => t.clone(),
                        Quantity::Number(n) => n.to_string(),
                    };
                    (k.clone(), t)
                })
                .collect();
            cpu += p
                .requests
                .get("cpu")
                .and_then(|q| q.milli().ok())
                .unwrap_or(0);
            mem += p
                .requests
                .get("memory")
                .and_then(|q| q.milli().ok())
                .unwrap_or(0)
                / 1000;
            gpu += gpu_equivalents(&text);
        }
        g.min_resources = BTreeMap::from([
            ("cpu".to_string(), Quantity::Text(format!("{cpu}m"))),
            ("memory".to_string(), Quantity::Text(mem.to_string())),
            ("nvidia.com/gpu".to_string(), Quantity::Number(gpu)),
        ]);
    }
}

fn gpu_equivalents(requests: &BTreeMap<String, String>) -> f64 {
    let mut total = 0.0;
    for (k, v) in requests {
        let n: f64 = v.parse().unwrap_or(0.0);
        if k == "nvidia.com/gpu" {
            total += n;
        } else if k == "gpu_milli" {
            total += n / 1000.0;
        } else if let Some(p) = k
            .strip_prefix("nvidia.com/mig-")
            .or_else(|| k.strip_prefix("nvidia.com/gpu-mig-"))
        {
            let slices = scheduler::mig::compute_slices(p).unwrap_or(7) as f64;
            total += n * slices / 7.0;
        }
    }
    total
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 40, |kb| kb * 1024)
}

/// A GPU's MIG instances as NVML reports them: their profiles (`<g>g.<m>gb`, from the
/// instance's slice count and memory) and UUIDs. A GPU not in MIG mode has none.
/// nvml-wrapper does not wrap MIG device handles, so these two calls go to the library itself.
fn local_mig(nvml: &nvml_wrapper::Nvml, d: &nvml_wrapper::Device) -> (Vec<String>, Vec<String>) {
    use nvml_wrapper_sys::bindings::{nvmlDevice_t, nvmlReturn_enum_NVML_SUCCESS, NvmlLib};
    let mut profiles = Vec::new();
    let mut uuids = Vec::new();
    let on = d
        .mig_mode()
        .is_ok_and(|m| m.current == nvml_wrapper_sys::bindings::NVML_DEVICE_MIG_ENABLE);
    if !on {
        return (profiles, uuids);
    }
    // SAFETY: the library is NVML itself (already loaded by `nvml`); each call gets a live
    // device handle and out-pointers to locals of the types the C API declares.
    let Ok(lib) = (unsafe { NvmlLib::new("libnvidia-ml.so.1") }) else {
        return (profiles, uuids);
    };
    let (Ok(max), Ok(by_index)) = (
        lib.nvmlDeviceGetMaxMigDeviceCount.as_ref(),
        lib.nvmlDeviceGetMigDeviceHandleByIndex.as_ref(),
    ) else {
        return (profiles, uuids);
    };
    let mut count = 0u32;
    if unsafe { max(d.handle(), &mut count) } != nvmlReturn_enum_NVML_SUCCESS {
        return (profiles, uuids);
    }
    for i in 0..count {
        let mut handle: nvmlDevice_t = std::ptr::null_mut();
        if unsafe { by_index(d.handle(), i, &mut handle) } != nvmlReturn_enum_NVML_SUCCESS {
            continue;
        }
        let m = unsafe { nvml_wrapper::Device::new(handle, nvml) };
        let Ok(attr) = m.attributes() else { continue };
        // Profiles name memory in 5 or 10 GB steps (1g.10gb has 9.75 GiB usable).
        let gb = ((attr.memory_size_mb as f64 / 1000.0) / 5.0).round() as u64 * 5;
        let profile = format!("{}g.{gb}gb", attr.gpu_instance_slice_count);
        if scheduler::mig::profile(&profile).is_none() {
            tracing::warn!("MIG instance {i}: profile {profile} is not one ONYX knows; skipped");
            continue;
        }
        profiles.push(profile);
        uuids.push(m.uuid().unwrap_or_default());
    }
    (profiles, uuids)
}

impl Grant {
    /// Whether the pod holds nothing a cycle accounts for.
    pub fn holds_nothing(&self) -> bool {
        self.devices.is_empty() && self.ask.requests.is_empty() && self.ask.group.is_none()
    }

    /// The environment a pod gets for its devices.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("ONYX_NODE".to_string(), self.node.clone())];
        if !self.devices.is_empty() {
            env.push(("ONYX_GPUS".to_string(), self.devices.join(",")));
        }
        if let Some(m) = self.gpu_milli {
            env.push(("ONYX_GPU_MILLI".into(), m.to_string()));
        }
        if self.local && !self.uuids.is_empty() {
            env.push(("CUDA_VISIBLE_DEVICES".into(), self.uuids.join(",")));
            env.push(("NVIDIA_VISIBLE_DEVICES".into(), self.uuids.join(",")));
        }
        env
    }
}
