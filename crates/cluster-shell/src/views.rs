//! What the cluster looks like to the API, the CLI and the metrics: nodes, namespaces, queues.

use std::collections::BTreeMap;

use scheduler::QueueUnit;
use serde::Serialize;

use crate::cluster::{plain, Cluster};
use crate::grant::{Grant, Standing};
use crate::ledger::{gpu_equivalents, granted_gpu_equivalents};

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

impl Cluster {
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
}
