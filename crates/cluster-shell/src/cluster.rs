//! The cluster the server keeps: nodes, pods and what they hold, asked for and released.

use std::collections::BTreeMap;
use std::sync::Mutex;

use scheduler::{NodeSpec, Quantity, QueueUnit, Taint};
use tokio::sync::Notify;

use crate::ask::Ask;
use crate::grant::{Grant, Standing};
use crate::ledger::{granted_cpus, granted_gpu_equivalents, ledgered, Ledger};
use crate::queues::SchedulingPolicy;
use crate::records::{Node, Pod};
use store::now_ns;

pub(crate) struct Inner {
    pub(crate) nodes: Vec<Node>,
    pub(crate) cordoned: Vec<bool>,
    /// Per node, the light pods bound to it.
    pub(crate) light_load: Vec<usize>,
    /// Pods a cycle chose to evict, until they are gone (they hold their resources meanwhile).
    pub(crate) releasing: std::collections::BTreeSet<String>,
    /// Evictions the pod layer has not carried out yet, with why.
    pub(crate) to_evict: Vec<(String, String)>,
    pub(crate) pods: BTreeMap<String, Pod>,
    pub(crate) seq: u64,
}

pub struct Cluster {
    pub(crate) inner: Mutex<Inner>,
    pub(crate) policy: SchedulingPolicy,
    pub(crate) local: bool,
    pub(crate) changed: Notify,
    /// Every grant that holds GPUs or CPU and every release of one, for the usage ledger.
    pub(crate) ledger: tokio::sync::mpsc::UnboundedSender<Ledger>,
    pub(crate) ledger_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Ledger>>>,
    /// Milliseconds each scheduling cycle took (Volcano's e2e scheduling latency buckets).
    pub latency: prometheus_client::metrics::histogram::Histogram,
    /// Seconds pods waited from asking to their grant, per queue.
    pub(crate) waits: Mutex<BTreeMap<String, prometheus_client::metrics::histogram::Histogram>>,
    /// Namespaces given a GPU quota while the server runs (approved namespace requests),
    /// over the configured ones.
    pub(crate) granted_tenants: Mutex<BTreeMap<String, (Option<u32>, u32)>>,
}

/// A node read from a cluster's API, its devices named by slot (`NODE/GPU/INSTANCE`).
fn api_node(spec: NodeSpec) -> Node {
    let uuids = spec
        .mig
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, layout)| {
            let gpu = format!("{}/{i}", spec.name);
            let inst = (0..layout.len()).map(|k| format!("{gpu}/{k}")).collect();
            (gpu, inst)
        })
        .collect();
    Node { spec, uuids }
}

/// A pod's name from its key (`namespace/name`).
pub(crate) fn plain(key: &str) -> &str {
    key.split_once('/').map_or(key, |(_, name)| name)
}

/// Buckets of a pod's wait for resources: from a second to half a day.
pub(crate) const WAIT_BUCKETS: [f64; 10] = [
    1.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0, 43200.0,
];

impl Cluster {
    pub(crate) fn new(nodes: Vec<Node>, policy: SchedulingPolicy, local: bool) -> Cluster {
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
    pub(crate) fn tenants(&self) -> BTreeMap<String, (Option<u32>, u32)> {
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

    pub(crate) fn note_held(&self, pod: &str, grant: &Grant, node: Option<&Node>, asked_ns: i64) {
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

    /// This machine: its CPUs, memory and GPUs (and MIG instances, of the profiles the
    /// scheduler knows) through NVML, its node labels `labels`.
    pub fn local(policy: SchedulingPolicy, labels: BTreeMap<String, String>) -> Cluster {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let mut uuids = Vec::new();
        let mut mig = Vec::new();
        for gpu in gpu_discovery::local_gpus() {
            let (mut layout, mut instance_uuids) = (Vec::new(), Vec::new());
            for (profile, uuid) in gpu.mig_profiles.into_iter().zip(gpu.mig_uuids) {
                if scheduler::mig::profile(&profile).is_none() {
                    tracing::warn!(
                        "MIG instance {uuid}: profile {profile} is not one ONYX knows; skipped"
                    );
                    continue;
                }
                layout.push(profile);
                instance_uuids.push(uuid);
            }
            uuids.push((gpu.uuid, instance_uuids));
            mig.push(layout);
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
            labels,
            name: host,
            allocatable,
            mig: Some(mig),
            ..Default::default()
        };
        Cluster::new(vec![Node { spec, uuids }], policy, true)
    }

    /// A cluster file's GPU nodes, virtual: pods are placed on them and run here.
    pub fn virtual_nodes(c: &cluster_model::Cluster, policy: SchedulingPolicy) -> Cluster {
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

    /// A Kubernetes cluster's nodes (`NodeSpec`s read from its API): pods are placed on them
    /// and bound there; the kubelet's device plugin picks the devices, so the grant names
    /// device slots, not UUIDs. [`Cluster::set_node`] keeps them as the API shows them.
    pub fn kubernetes_nodes(specs: Vec<NodeSpec>, policy: SchedulingPolicy) -> Cluster {
        let nodes = specs.into_iter().map(api_node).collect();
        Cluster::new(nodes, policy, false)
    }

    /// A node as a cluster's API now shows it: a known node takes the new spec (its labels,
    /// taints, readiness, allocatable), a new one joins; a cycle runs, so pods waiting for
    /// what changed are placed at once.
    pub fn set_node(&self, spec: NodeSpec) {
        let mut inner = self.inner.lock().expect("cluster");
        match inner.nodes.iter().position(|n| n.spec.name == spec.name) {
            Some(i) => inner.nodes[i] = api_node(spec),
            None => {
                inner.nodes.push(api_node(spec));
                inner.cordoned.push(false);
                inner.light_load.push(0);
            }
        }
        self.cycle(&mut inner);
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

    /// Wait until `pod`, asked for already, is bound, with every executor's rules: `cancelled`
    /// is asked at each change (a kill while the pod waits), `waiting` hears each new reason
    /// it waits for. A cancelled or refused pod's ask is released here.
    pub async fn wait_for_grant(
        &self,
        pod: &str,
        mut cancelled: impl FnMut() -> bool,
        mut waiting: impl FnMut(&str),
    ) -> crate::grant::Waited {
        use crate::grant::Waited;
        let mut said = String::new();
        loop {
            let wake = self.changed().notified();
            if cancelled() {
                self.release(pod);
                return Waited::Cancelled;
            }
            match self.standing(pod) {
                Some(Standing::Bound(g)) => return Waited::Granted(g),
                Some(Standing::Refused(message)) => {
                    self.release(pod);
                    return Waited::Refused(message);
                }
                Some(Standing::Waiting(why)) => {
                    if why != said {
                        waiting(&why);
                        said = why;
                    }
                }
                None => return Waited::Evicted,
            }
            wake.await;
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
