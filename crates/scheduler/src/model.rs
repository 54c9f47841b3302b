//! The scheduler's input, in the scenario format of `../shared/design/scenario-format.md`:
//! nodes, queues, priority classes, pod groups (gangs), pods, plugins and actions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    #[serde(default)]
    pub name: String,
    /// None at all is a cluster with nothing to place on (Volcano's enqueue tests have none).
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    #[serde(default)]
    pub queues: Vec<QueueSpec>,
    #[serde(default)]
    pub priority_classes: Vec<PriorityClass>,
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    #[serde(default)]
    pub pods: Vec<PodSpec>,
    /// Tenants (namespaces): their quota and their weight in fair share.
    #[serde(default)]
    pub tenants: Vec<TenantSpec>,
    #[serde(default)]
    pub config: Config,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub expect: Option<Expect>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeSpec {
    pub name: String,
    pub allocatable: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub gpu: Option<GpuInfo>,
    /// One entry per physical GPU: its MIG instances, `[]` for a whole GPU.
    #[serde(default)]
    pub mig: Option<Vec<Vec<String>>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub unschedulable: bool,
    /// Kubernetes taints: pods that do not tolerate a `NoSchedule` or `NoExecute` taint are
    /// not placed here (`PreferNoSchedule` is a preference and does not bar a pod).
    #[serde(default)]
    pub taints: Vec<Taint>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    /// Empty with `operator: Exists`: every taint.
    #[serde(default)]
    pub key: String,
    /// `Equal` (the default) or `Exists`.
    #[serde(default)]
    pub operator: String,
    #[serde(default)]
    pub value: String,
    /// Empty: every effect.
    #[serde(default)]
    pub effect: String,
    #[serde(default)]
    pub toleration_seconds: Option<i64>,
}

/// The first of `taints` that bars a pod with these tolerations: a `NoSchedule` or `NoExecute`
/// taint none of them tolerates (`PreferNoSchedule` is a preference and bars no pod).
pub fn untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|t| {
        matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
            && !tolerations.iter().any(|tol| tol.tolerates(t))
    })
}

impl Toleration {
    /// Kubernetes' rule (`v1.Toleration.ToleratesTaint`).
    pub fn tolerates(&self, t: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != t.effect {
            return false;
        }
        if !self.key.is_empty() && self.key != t.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            "" | "Equal" => self.value == t.value,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GpuInfo {
    #[serde(default)]
    pub model: String,
}

/// A Kubernetes quantity as written (`"8"`, `500m`, `16Gi`) or a bare number.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Quantity {
    Number(f64),
    Text(String),
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Either;
        impl serde::de::Visitor<'_> for Either {
            type Value = Quantity;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a quantity: a number, or text such as 500m or 16Gi")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity::Number(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity::Number(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity::Text(v.to_string()))
            }
        }
        d.deserialize_any(Either)
    }
}

impl Quantity {
    /// The value in thousandths (`500m` → 500, `2` → 2000, `1Gi` → 1073741824000).
    pub fn milli(&self) -> Result<i128, String> {
        let text = match self {
            Quantity::Number(n) => return Ok((n * 1000.0).round() as i128),
            Quantity::Text(t) => t.trim(),
        };
        let (num, factor): (&str, f64) = [
            ("Ki", 1024f64),
            ("Mi", 1024f64.powi(2)),
            ("Gi", 1024f64.powi(3)),
            ("Ti", 1024f64.powi(4)),
            ("k", 1e3),
            ("M", 1e6),
            ("G", 1e9),
            ("T", 1e12),
            ("m", 1e-3),
        ]
        .iter()
        .find_map(|(s, f)| text.strip_suffix(s).map(|n| (n, *f)))
        .unwrap_or((text, 1.0));
        let v: f64 = num
            .parse()
            .map_err(|_| format!("{text:?} is not a quantity (such as 500m, 2, 16Gi)"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("{text:?} is not a non-negative quantity"));
        }
        Ok((v * factor * 1000.0).round() as i128)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct QueueSpec {
    pub name: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub capability: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub deserved: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub guarantee: BTreeMap<String, Quantity>,
    #[serde(default = "yes")]
    pub reclaimable: bool,
    /// Volcano's queue `priority` (v1.10): reclaim takes from lower-priority queues first.
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub parent: String,
    /// What the queue hands out: `node` (whole nodes, exclusive: the spec's `dedicated`),
    /// `slice` (MIG instances and GPU fractions: the spec's `shared`), or anything (empty).
    #[serde(default)]
    pub unit: QueueUnit,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum QueueUnit {
    #[default]
    Any,
    Node,
    Slice,
}

/// A tenant: a namespace with a quota (an upper bound on what its pods hold at once) and a
/// weight in dominant-resource fair share.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenantSpec {
    pub namespace: String,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub quota: BTreeMap<String, Quantity>,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityClass {
    pub name: String,
    pub value: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GroupSpec {
    pub name: String,
    #[serde(default = "default_ns")]
    pub namespace: String,
    #[serde(default = "default_queue")]
    pub queue: String,
    #[serde(default = "one")]
    pub min_member: u32,
    #[serde(default)]
    pub min_task_member: BTreeMap<String, u32>,
    #[serde(default)]
    pub min_resources: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub priority_class: String,
    #[serde(default)]
    pub phase: GroupPhase,
}

fn default_ns() -> String {
    "default".into()
}
fn default_queue() -> String {
    "default".into()
}
/// A PodGroup's phase, as Volcano's: waiting to be admitted, admitted, running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum GroupPhase {
    #[default]
    Pending,
    Inqueue,
    Running,
}

impl GroupPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPhase::Pending => "Pending",
            GroupPhase::Inqueue => "Inqueue",
            GroupPhase::Running => "Running",
        }
    }
}

/// A pod's phase as the scheduler sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum PodPhase {
    #[default]
    Pending,
    /// Bound to a node in this cycle (it holds its resources from now on).
    Bound,
    Running,
    /// Being evicted: it holds its resources until it is gone.
    Releasing,
    Succeeded,
    Failed,
}

impl PodPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            PodPhase::Pending => "Pending",
            PodPhase::Bound => "Bound",
            PodPhase::Running => "Running",
            PodPhase::Releasing => "Releasing",
            PodPhase::Succeeded => "Succeeded",
            PodPhase::Failed => "Failed",
        }
    }

    /// Whether it holds what it was given on its node.
    pub fn holds(self) -> bool {
        matches!(self, PodPhase::Running | PodPhase::Bound)
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PodSpec {
    pub name: String,
    #[serde(default = "default_ns")]
    pub namespace: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub phase: PodPhase,
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub priority_class: String,
    #[serde(default = "yes")]
    pub preemptable: bool,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Which queue a pod without a group belongs to.
    #[serde(default)]
    pub queue: String,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// The devices a Running pod holds, as the scheduler reported them when it bound the pod
    /// (`"3"`: GPU 3, whole or a fraction of it; `"3/2"`: MIG instance 2 of GPU 3). Without
    /// them a Running pod is given the first devices that fit.
    #[serde(default)]
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Which Volcano's decisions to follow where versions differ: `"1.7"` (the spec's, the
    /// default) or `"1.10"`.
    #[serde(default)]
    pub volcano: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    #[serde(default)]
    pub binds: BTreeMap<String, String>,
    #[serde(default)]
    pub evictions: Option<Vec<String>>,
    #[serde(default)]
    pub eviction_count: Option<usize>,
    #[serde(default)]
    pub pipelined: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub group_phases: BTreeMap<String, String>,
    #[serde(default)]
    pub mig_layouts: BTreeMap<String, Vec<Vec<String>>>,
    /// The devices bound pods get (see `PodSpec::devices`).
    #[serde(default)]
    pub devices: BTreeMap<String, Vec<String>>,
    /// Why pods stay pending, by pod, with a part of the message.
    #[serde(default)]
    pub reasons: BTreeMap<String, String>,
    /// Requests refused at submission, by pod, with a part of the message.
    #[serde(default)]
    pub refused: BTreeMap<String, String>,
}
