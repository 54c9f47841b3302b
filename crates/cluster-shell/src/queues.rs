//! Queues and the scheduling policy, as the server's configuration gives them.

use std::collections::BTreeMap;

use scheduler::{Quantity, QueueSpec, QueueUnit, Scenario};
use serde::{Deserialize, Serialize};

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

pub(crate) fn one() -> u32 {
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
pub struct SchedulingPolicy {
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

impl SchedulingPolicy {
    /// The configured queues as the scheduler takes them.
    pub(crate) fn queue_specs(&self) -> Vec<QueueSpec> {
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
