//! ONYX's scheduler: one scheduling cycle as a pure function of the cluster state
//! (`Scenario`): gangs placed all or nothing, queues with capability and deserved shares,
//! priorities, preemption inside a queue and reclaim across queues (whole gangs, never
//! toward the lower priority, never below a queue's deserved share: no ping-pong), backfill that
//! leaves the holes a waiting gang is collecting alone, and GPUs as whole devices, fractions
//! or MIG instances with the real geometry (H100/A100 80 GB), re-partitioned when
//! `dynamic-mig` is on.

pub mod mig;
pub mod model;

use std::collections::{BTreeMap, BTreeSet};

pub use model::*;

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub binds: BTreeMap<String, String>,
    /// The devices each bound pod got (see `PodSpec::devices`).
    pub devices: BTreeMap<String, Vec<String>>,
    pub evictions: BTreeSet<String>,
    /// Why each evicted pod goes (which gang takes its place, or the drain).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_reasons: BTreeMap<String, String>,
    pub pipelined: BTreeMap<String, Vec<String>>,
    pub group_phases: BTreeMap<String, String>,
    pub mig_layouts: BTreeMap<String, Vec<Vec<String>>>,
    /// Pods refused at submission and why (they can never run on this cluster).
    pub refused: BTreeMap<String, String>,
    /// Why pending pods did not bind (as `kubectl describe` would say).
    pub reasons: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    Invalid(String),
}

/// A pod's resource request, normalised.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Req {
    pub cpu: i128,
    pub mem: i128,
    pub gpus: u32,
    pub gpu_milli: i64,
    /// MIG profile → count.
    pub mig: BTreeMap<String, u32>,
    /// The pod takes its node whole and alone (a queue whose unit is `node`).
    pub whole_node: bool,
}

/// One GPU of a node.
#[derive(Debug, Clone, PartialEq)]
struct Gpu {
    /// MIG instances and the pod using each (empty: the GPU is whole).
    instances: Vec<(String, Option<usize>)>,
    /// Whole-GPU and fractional holders: (pod, thousandths).
    shares: Vec<(usize, i64)>,
}

impl Gpu {
    fn used(&self) -> i64 {
        self.shares.iter().map(|(_, m)| m).sum()
    }
}

#[derive(Debug, Clone)]
struct Node {
    name: String,
    cpu_free: i128,
    mem_free: i128,
    pods_free: i128,
    gpus: Vec<Gpu>,
    labels: BTreeMap<String, String>,
    unschedulable: bool,
    /// Its taints (see `untolerated`).
    taints: Vec<Taint>,
    pods_cap: i128,
    /// Held whole by one pod of a `node`-unit queue.
    exclusive: bool,
}

struct Pod {
    key: String,
    group: usize,
    task: String,
    phase: String,
    node: Option<usize>,
    req: Req,
    preemptable: bool,
    selector: BTreeMap<String, String>,
    tolerations: Vec<Toleration>,
}

struct Group {
    key: String,
    queue: usize,
    tenant: usize,
    min_member: u32,
    min_task: BTreeMap<String, u32>,
    priority: i64,
    phase: String,
    pods: Vec<usize>,
    order: usize,
}

struct Queue {
    name: String,
    weight: u32,
    /// Its own `capability`, else its nearest ancestor's (Volcano's inheritance).
    capability_gpu: Option<i64>,
    deserved_gpu: Option<i64>,
    /// GPUs kept for this queue's subtree: other queues never take the part it does not use.
    guarantee_gpu: Option<i64>,
    reclaimable: bool,
    unit: QueueUnit,
    /// Hierarchical queues: the parent (`None`: under the implicit root) and the children.
    parent: Option<usize>,
    children: Vec<usize>,
}

struct Tenant {
    namespace: String,
    weight: u32,
    /// Upper bounds on what the tenant's pods hold: CPU (thousandths), memory (bytes), GPU
    /// equivalents (thousandths).
    quota: [Option<i128>; 3],
}

/// What a pod holds, as one vector: CPU (thousandths), memory (bytes), GPU equivalents
/// (thousandths). Dominant-resource fair share compares these against the cluster's totals.
fn usage(r: &Req) -> [i128; 3] {
    [r.cpu, r.mem, gpu_milli(r) as i128]
}

fn add(a: &mut [i128; 3], b: [i128; 3], sign: i128) {
    for i in 0..3 {
        a[i] += sign * b[i];
    }
}

const RESOURCE_NAMES: [&str; 3] = ["cpu", "memory", "GPU"];

/// GPU-equivalents in thousandths: whole GPUs, fractions, MIG instances by compute slices.
fn gpu_milli(r: &Req) -> i64 {
    let mig: i64 = r
        .mig
        .iter()
        .map(|(p, n)| mig::compute_slices(p).unwrap_or(7) as i64 * 1000 / 7 * *n as i64)
        .sum();
    r.gpus as i64 * 1000 + r.gpu_milli + mig
}

fn parse_req(
    requests: &BTreeMap<String, Quantity>,
    warnings: &mut Vec<String>,
    who: &str,
) -> Result<Req, String> {
    let mut r = Req::default();
    for (k, q) in requests {
        let milli = q.milli().map_err(|e| format!("{who}: requests.{k}: {e}"))?;
        match k.as_str() {
            "cpu" => r.cpu = milli,
            "memory" => r.mem = milli / 1000,
            "pods" => {}
            "nvidia.com/gpu" => r.gpus = (milli / 1000) as u32,
            "gpu_milli" => r.gpu_milli = (milli / 1000) as i64,
            other => {
                let profile = if let Some(p) = other.strip_prefix("nvidia.com/mig-") {
                    p
                } else if let Some(p) = other.strip_prefix("nvidia.com/gpu-mig-") {
                    warnings.push(format!(
                        "{who}: {other} is not a device plugin resource; read as nvidia.com/mig-{p}"
                    ));
                    p
                } else {
                    return Err(format!("{who}: unknown resource {other:?} (cpu, memory, nvidia.com/gpu, nvidia.com/mig-<profile>, gpu_milli)"));
                };
                if mig::profile(profile).is_none() {
                    return Err(format!(
                        "{who}: unknown MIG profile {profile:?} (H100/A100 80GB profiles: {})",
                        mig::PROFILES
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                r.mig.insert(profile.to_string(), (milli / 1000) as u32);
            }
        }
    }
    if r.gpu_milli > 1000 {
        return Err(format!(
            "{who}: gpu_milli {} is more than one GPU; request whole GPUs with nvidia.com/gpu",
            r.gpu_milli
        ));
    }
    Ok(r)
}

struct State {
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    groups: Vec<Group>,
    queues: Vec<Queue>,
    tenants: Vec<Tenant>,
    plugins: BTreeSet<String>,
    /// The cluster's allocatable CPU, memory and GPU equivalents.
    total: [i128; 3],
}

/// A queue and its ancestors, the queue first (the tree has no cycles once linked).
fn queue_chain(queues: &[Queue], q: usize) -> Vec<usize> {
    let mut chain = vec![q];
    let mut at = queues[q].parent;
    while let Some(p) = at {
        chain.push(p);
        at = queues[p].parent;
    }
    chain
}

/// Hierarchical queues (Volcano's `capacity` plugin with `enableHierarchy`): every queue hangs
/// under an implicit `root` (`parent: ""` or `root`). A child's capability may not exceed its
/// parent's and is inherited when unset; the children's `deserved` may not add up to more than
/// their parent's.
fn link_queue_tree(queues: &mut [Queue], specs: &[QueueSpec]) -> Result<(), ScenarioError> {
    let bad = |m: String| ScenarioError::Invalid(m);
    for spec in specs {
        if spec.parent.is_empty() || spec.parent == "root" {
            continue;
        }
        let q = queues
            .iter()
            .position(|x| x.name == spec.name)
            .expect("every spec is a queue");
        let p = queues
            .iter()
            .position(|x| x.name == spec.parent)
            .ok_or_else(|| {
                bad(format!(
                    "queue {}: parent {:?} is not a queue",
                    spec.name, spec.parent
                ))
            })?;
        queues[q].parent = Some(p);
        queues[p].children.push(q);
    }
    // No cycles: every chain of parents ends at the root within as many steps as there are queues.
    for q in 0..queues.len() {
        let mut at = queues[q].parent;
        let mut steps = 0;
        while let Some(p) = at {
            steps += 1;
            if steps > queues.len() {
                return Err(bad(format!(
                    "queue {}: its parents form a cycle",
                    queues[q].name
                )));
            }
            at = queues[p].parent;
        }
    }
    // Parents before children, so that inheritance reads settled values.
    let mut order: Vec<usize> = (0..queues.len()).collect();
    order.sort_by_key(|q| queue_chain(queues, *q).len());
    let gpus = |m: i64| format!("{} nvidia.com/gpu", m as f64 / 1000.0);
    for q in order {
        let Some(p) = queues[q].parent else { continue };
        match (queues[q].capability_gpu, queues[p].capability_gpu) {
            (Some(own), Some(parent)) if own > parent => {
                return Err(bad(format!(
                    "queue {}: capability {} exceeds its parent {}'s {}",
                    queues[q].name,
                    gpus(own),
                    queues[p].name,
                    gpus(parent)
                )));
            }
            (None, inherited) => queues[q].capability_gpu = inherited,
            _ => {}
        }
    }
    for q in queues.iter() {
        if let (Some(g), Some(c)) = (q.guarantee_gpu, q.capability_gpu) {
            if g > c {
                return Err(bad(format!(
                    "queue {}: guarantee {} exceeds its capability {}",
                    q.name,
                    gpus(g),
                    gpus(c)
                )));
            }
        }
    }
    // The children's guarantees and deserved shares fit inside their parent's.
    let within_parent = |field: fn(&Queue) -> Option<i64>, what: &str| {
        for parent in queues.iter() {
            let Some(own) = field(parent) else { continue };
            let sum: i64 = parent
                .children
                .iter()
                .filter_map(|c| field(&queues[*c]))
                .sum();
            if sum > own {
                return Err(bad(format!(
                    "queue {}: its children {what} {} in all, more than its own {}",
                    parent.name,
                    gpus(sum),
                    gpus(own)
                )));
            }
        }
        Ok(())
    };
    within_parent(|q| q.guarantee_gpu, "are guaranteed")?;
    within_parent(|q| q.deserved_gpu, "deserve")?;
    Ok(())
}

impl State {
    fn build(s: &Scenario, out: &mut Outcome) -> Result<State, ScenarioError> {
        let bad = |m: String| ScenarioError::Invalid(m);
        let prio: BTreeMap<&str, i64> = s
            .priority_classes
            .iter()
            .map(|p| (p.name.as_str(), p.value))
            .collect();
        let mut queues: Vec<Queue> = Vec::new();
        for q in &s.queues {
            let gpu_of = |m: &BTreeMap<String, Quantity>| -> Result<Option<i64>, ScenarioError> {
                match m.get("nvidia.com/gpu") {
                    Some(v) => Ok(Some((v.milli().map_err(bad)?) as i64)),
                    None => Ok(None),
                }
            };
            queues.push(Queue {
                name: q.name.clone(),
                weight: q.weight.max(1),
                capability_gpu: gpu_of(&q.capability)?,
                deserved_gpu: gpu_of(&q.deserved)?,
                guarantee_gpu: gpu_of(&q.guarantee)?,
                reclaimable: q.reclaimable,
                unit: q.unit,
                parent: None,
                children: Vec::new(),
            });
        }
        if !queues.iter().any(|q| q.name == "default") {
            queues.push(Queue {
                name: "default".into(),
                weight: 1,
                capability_gpu: None,
                deserved_gpu: None,
                guarantee_gpu: None,
                reclaimable: true,
                unit: QueueUnit::Any,
                parent: None,
                children: Vec::new(),
            });
        }
        link_queue_tree(&mut queues, &s.queues)?;
        let mut tenants: Vec<Tenant> = Vec::new();
        for t in &s.tenants {
            let mut quota = [None; 3];
            for (k, v) in &t.quota {
                let milli = v
                    .milli()
                    .map_err(|e| bad(format!("tenant {}: quota.{k}: {e}", t.namespace)))?;
                match k.as_str() {
                    "cpu" => quota[0] = Some(milli),
                    "memory" => quota[1] = Some(milli / 1000),
                    "nvidia.com/gpu" => quota[2] = Some(milli),
                    other => {
                        return Err(bad(format!(
                            "tenant {}: quota.{other}: expected cpu, memory or nvidia.com/gpu",
                            t.namespace
                        )))
                    }
                }
            }
            tenants.push(Tenant {
                namespace: t.namespace.clone(),
                weight: t.weight.max(1),
                quota,
            });
        }
        let mut tenant_of = |ns: &str| -> usize {
            if let Some(i) = tenants.iter().position(|t| t.namespace == ns) {
                return i;
            }
            tenants.push(Tenant {
                namespace: ns.to_string(),
                weight: 1,
                quota: [None; 3],
            });
            tenants.len() - 1
        };
        let mut nodes = Vec::new();
        for n in &s.nodes {
            let get = |k: &str| -> Result<i128, ScenarioError> {
                n.allocatable
                    .get(k)
                    .map(|q| {
                        q.milli()
                            .map_err(|e| bad(format!("node {}: allocatable.{k}: {e}", n.name)))
                    })
                    .unwrap_or(Ok(0))
            };
            let gpu_count = (get("nvidia.com/gpu")? / 1000) as usize;
            let mig = n.mig.clone().unwrap_or_else(|| vec![vec![]; gpu_count]);
            if mig.len() != gpu_count {
                return Err(bad(format!(
                    "node {}: mig lists {} GPUs, allocatable has {gpu_count}",
                    n.name,
                    mig.len()
                )));
            }
            let mut gpus = Vec::new();
            for layout in &mig {
                if !layout.is_empty() && !mig::fits(layout) {
                    return Err(bad(format!(
                        "node {}: MIG layout [{}] does not fit an 80 GB GPU's geometry (7 compute, 8 memory slices)",
                        n.name,
                        layout.join(", ")
                    )));
                }
                gpus.push(Gpu {
                    instances: layout.iter().map(|p| (p.clone(), None)).collect(),
                    shares: Vec::new(),
                });
            }
            let pods_cap = if n.allocatable.contains_key("pods") {
                get("pods")? / 1000
            } else {
                110
            };
            nodes.push(Node {
                name: n.name.clone(),
                cpu_free: get("cpu")?,
                mem_free: get("memory")? / 1000,
                pods_free: pods_cap,
                gpus,
                labels: n.labels.clone(),
                unschedulable: n.unschedulable,
                taints: n.taints.clone(),
                pods_cap,
                exclusive: false,
            });
        }
        let mut groups: Vec<Group> = Vec::new();
        for (i, g) in s.groups.iter().enumerate() {
            let queue = queues
                .iter()
                .position(|q| q.name == g.queue)
                .ok_or_else(|| bad(format!("group {}: no queue {:?}", g.name, g.queue)))?;
            groups.push(Group {
                key: format!("{}/{}", g.namespace, g.name),
                queue,
                tenant: tenant_of(&g.namespace),
                min_member: g.min_member,
                min_task: g.min_task_member.clone(),
                priority: *prio.get(g.priority_class.as_str()).unwrap_or(&0),
                phase: g.phase.clone(),
                pods: Vec::new(),
                order: i,
            });
        }
        let mut pods = Vec::new();
        for p in &s.pods {
            let key = format!("{}/{}", p.namespace, p.name);
            let mut req = match parse_req(&p.requests, &mut out.warnings, &key) {
                Ok(r) => r,
                Err(e) => {
                    out.refused.insert(key, e);
                    continue;
                }
            };
            let group = if p.group.is_empty() {
                let q = if p.queue.is_empty() {
                    "default"
                } else {
                    p.queue.as_str()
                };
                let queue = queues.iter().position(|x| x.name == q).unwrap_or(0);
                groups.push(Group {
                    key: key.clone(),
                    queue,
                    tenant: tenant_of(&p.namespace),
                    min_member: 1,
                    min_task: BTreeMap::new(),
                    priority: *prio.get(p.priority_class.as_str()).unwrap_or(&0),
                    phase: if p.phase == "Running" {
                        "Running".into()
                    } else {
                        "Pending".into()
                    },
                    pods: Vec::new(),
                    order: s.groups.len() + pods.len(),
                });
                groups.len() - 1
            } else {
                let gk = format!("{}/{}", p.namespace, p.group);
                groups
                    .iter()
                    .position(|g| g.key == gk)
                    .ok_or_else(|| bad(format!("pod {key}: no group {gk}")))?
            };
            let node = if p.node.is_empty() {
                None
            } else {
                Some(
                    nodes
                        .iter()
                        .position(|n| n.name == p.node)
                        .ok_or_else(|| bad(format!("pod {key}: no node {:?}", p.node)))?,
                )
            };
            let queue = &queues[groups[group].queue];
            match queue.unit {
                QueueUnit::Any => {}
                QueueUnit::Node => {
                    let sizes: BTreeSet<usize> = nodes.iter().map(|n| n.gpus.len()).collect();
                    if !sizes.contains(&(req.gpus as usize))
                        || req.gpu_milli > 0
                        || !req.mig.is_empty()
                    {
                        let sizes: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
                        out.refused.insert(key.clone(), format!(
                            "queue {} hands out whole nodes: request all of a node's GPUs (nvidia.com/gpu: {}), not {}",
                            queue.name, sizes.join(" or "), describe(&req)
                        ));
                    }
                    req.whole_node = true;
                }
                QueueUnit::Slice => {
                    if req.gpus > 0 {
                        out.refused.insert(key.clone(), format!(
                            "queue {} hands out MIG slices and GPU fractions: request nvidia.com/mig-<profile> or gpu_milli, not {}",
                            queue.name, describe(&req)
                        ));
                    }
                }
            }
            groups[group].pods.push(pods.len());
            pods.push(Pod {
                key,
                group,
                task: p.task.clone(),
                phase: p.phase.clone(),
                node,
                req,
                preemptable: p.preemptable,
                selector: p.node_selector.clone(),
                tolerations: p.tolerations.clone(),
            });
        }
        let total = [
            nodes.iter().map(|n| n.cpu_free).sum(),
            nodes.iter().map(|n| n.mem_free).sum(),
            nodes.iter().map(|n| n.gpus.len() as i128 * 1000).sum(),
        ];
        let mut st = State {
            nodes,
            pods,
            groups,
            queues,
            tenants,
            plugins: s.config.plugins.iter().cloned().collect(),
            total,
        };
        // Pods that hold resources: on the devices they were given, else the first that fit.
        let spec_devices: BTreeMap<String, &Vec<String>> = s
            .pods
            .iter()
            .filter(|p| !p.devices.is_empty())
            .map(|p| (format!("{}/{}", p.namespace, p.name), &p.devices))
            .collect();
        for i in 0..st.pods.len() {
            let holds = matches!(st.pods[i].phase.as_str(), "Running" | "Releasing");
            if let (true, Some(n)) = (holds, st.pods[i].node) {
                let req = st.pods[i].req.clone();
                let taken = match spec_devices.get(&st.pods[i].key) {
                    Some(devices) => {
                        let mut copy = st.nodes[n].clone();
                        take_devices(&mut copy, &req, i, devices)
                            .map_err(|e| bad(format!("pod {}: devices: {e}", st.pods[i].key)))?;
                        st.nodes[n] = copy;
                        true
                    }
                    None => st.take(n, &req, i, false),
                };
                if !taken {
                    return Err(bad(format!(
                        "pod {} is {} on {} but the node cannot hold it",
                        st.pods[i].key, st.pods[i].phase, st.nodes[n].name
                    )));
                }
            }
        }
        Ok(st)
    }

    fn selector_ok(&self, p: usize, n: usize) -> bool {
        let node = &self.nodes[n];
        !node.unschedulable
            && self.pods[p]
                .selector
                .iter()
                .all(|(k, v)| node.labels.get(k) == Some(v))
            && self.untolerated(p, n).is_none()
    }

    /// A taint of node `n` that bars pod `p`.
    fn untolerated(&self, p: usize, n: usize) -> Option<&Taint> {
        untolerated(&self.nodes[n].taints, &self.pods[p].tolerations)
    }

    /// Whether `req` fits node `n` now (with dynamic MIG, an idle GPU may be re-partitioned).
    fn fits(&self, n: usize, req: &Req) -> bool {
        let mut copy = self.nodes[n].clone();
        take_on(
            &mut copy,
            req,
            usize::MAX,
            self.plugins.contains("dynamic-mig"),
        )
    }

    fn take(&mut self, n: usize, req: &Req, pod: usize, dynamic: bool) -> bool {
        let mut copy = self.nodes[n].clone();
        if take_on(&mut copy, req, pod, dynamic) {
            self.nodes[n] = copy;
            true
        } else {
            false
        }
    }

    fn release(&mut self, pod: usize) {
        let Some(n) = self.pods[pod].node else { return };
        let req = self.pods[pod].req.clone();
        let node = &mut self.nodes[n];
        node.cpu_free += req.cpu;
        node.mem_free += req.mem;
        node.pods_free += 1;
        if req.whole_node {
            node.exclusive = false;
        }
        for g in node.gpus.iter_mut() {
            for inst in g.instances.iter_mut() {
                if inst.1 == Some(pod) {
                    inst.1 = None;
                }
            }
        }
        for g in node.gpus.iter_mut() {
            g.shares.retain(|(p, _)| *p != pod);
        }
    }

    /// The GPU-equivalent allocation (thousandths) of the queue and the queues under it.
    fn queue_used(&self, q: usize) -> i64 {
        self.pods
            .iter()
            .filter(|p| {
                self.is_within(self.groups[p.group].queue, q)
                    && p.node.is_some()
                    && matches!(p.phase.as_str(), "Running" | "Bound")
            })
            .map(|p| gpu_milli(&p.req))
            .sum()
    }

    fn cluster_gpu(&self) -> i64 {
        self.nodes.iter().map(|n| n.gpus.len() as i64 * 1000).sum()
    }

    /// Deserved share: explicit, else the parent's (the cluster's, under the root) split among
    /// siblings by weight (proportion plugin).
    fn deserved(&self, q: usize) -> i64 {
        if let Some(d) = self.queues[q].deserved_gpu {
            return d;
        }
        let above = match self.queues[q].parent {
            Some(p) => self.deserved(p),
            None => self.cluster_gpu(),
        };
        (above as f64 * self.weight_fraction_among_siblings(q)) as i64
    }

    /// The queue's weight over its siblings' (queues with the same parent) weights.
    fn weight_fraction_among_siblings(&self, q: usize) -> f64 {
        let parent = self.queues[q].parent;
        let total_w: u32 = self
            .queues
            .iter()
            .filter(|x| x.parent == parent)
            .map(|x| x.weight)
            .sum();
        self.queues[q].weight as f64 / total_w.max(1) as f64
    }

    /// GPUs (thousandths) that queue `q` may not take because other queues' guarantees keep
    /// them: the unused part of each outermost guarantee whose subtree `q` is not in, and the
    /// queue names, for the waiting reason.
    fn guaranteed_to_others(&self, q: usize, qused: &[[i128; 3]]) -> (i64, Vec<String>) {
        let mut kept = 0;
        let mut names = Vec::new();
        for (r, queue) in self.queues.iter().enumerate() {
            let Some(g) = queue.guarantee_gpu else {
                continue;
            };
            let outermost = self.queue_chain(r)[1..]
                .iter()
                .all(|a| self.queues[*a].guarantee_gpu.is_none());
            if !outermost || self.is_within(q, r) {
                continue;
            }
            let unused = g - qused[r][2] as i64;
            if unused > 0 {
                kept += unused;
                names.push(queue.name.clone());
            }
        }
        (kept, names)
    }

    /// Whether queue `q` is `ancestor` or under it.
    fn is_within(&self, q: usize, ancestor: usize) -> bool {
        let mut at = Some(q);
        while let Some(x) = at {
            if x == ancestor {
                return true;
            }
            at = self.queues[x].parent;
        }
        false
    }

    /// The queue and its ancestors, the queue first.
    fn queue_chain(&self, q: usize) -> Vec<usize> {
        queue_chain(&self.queues, q)
    }

    /// Usage per queue summed over its subtree (a parent holds what its children hold).
    fn rolled_up(&self, direct: &[[i128; 3]]) -> Vec<[i128; 3]> {
        let mut out = vec![[0i128; 3]; self.queues.len()];
        for (q, u) in direct.iter().enumerate() {
            for a in self.queue_chain(q) {
                add(&mut out[a], *u, 1);
            }
        }
        out
    }

    fn pending_pods(&self, g: usize) -> Vec<usize> {
        self.groups[g]
            .pods
            .iter()
            .copied()
            .filter(|p| self.pods[*p].phase == "Pending" && self.pods[*p].node.is_none())
            .collect()
    }

    fn ready_count(&self, g: usize) -> usize {
        self.groups[g]
            .pods
            .iter()
            .filter(|p| {
                matches!(
                    self.pods[**p].phase.as_str(),
                    "Running" | "Bound" | "Succeeded"
                )
            })
            .count()
    }

    /// Best node for a pod: feasible, then the tightest fit (fewest whole GPUs left free,
    /// then least GPU share, then least CPU), which keeps whole nodes whole and packs slices.
    fn best_node(&self, p: usize, exclude: &BTreeSet<usize>) -> Option<usize> {
        let req = &self.pods[p].req;
        (0..self.nodes.len())
            .filter(|n| !exclude.contains(n) && self.selector_ok(p, *n) && self.fits(*n, req))
            .min_by_key(|n| {
                let node = &self.nodes[*n];
                let whole_free = node
                    .gpus
                    .iter()
                    .filter(|g| g.instances.is_empty() && g.used() == 0)
                    .count() as i64;
                let wants_gpu = req.gpus > 0 || req.gpu_milli > 0 || !req.mig.is_empty();
                let free_share: i64 = node
                    .gpus
                    .iter()
                    .map(|g| {
                        if g.instances.is_empty() {
                            1000 - g.used()
                        } else {
                            0
                        }
                    })
                    .sum();
                // GPU pods take the node they fill most; CPU-only pods go where no GPU is
                // left whole, so whole GPUs (and whole nodes) stay free for GPU work.
                (
                    whole_free,
                    free_share * wants_gpu as i64,
                    node.cpu_free,
                    *n as i64,
                )
            })
    }

    /// Try to place a group's pending pods; commit only if the gang is satisfied.
    fn try_group(&mut self, g: usize, exclude: &BTreeSet<usize>) -> Option<Vec<(usize, usize)>> {
        let pending = self.pending_pods(g);
        if pending.is_empty() {
            return None;
        }
        let saved_nodes = self.nodes.clone();
        let mut placed = Vec::new();
        for p in pending {
            if let Some(n) = self.best_node(p, exclude) {
                let req = self.pods[p].req.clone();
                let dynamic = self.plugins.contains("dynamic-mig");
                if self.take(n, &req, p, dynamic) {
                    placed.push((p, n));
                }
            }
        }
        let ready = self.ready_count(g) + placed.len();
        let tasks_ok = self.groups[g].min_task.iter().all(|(task, min)| {
            let have = self.groups[g]
                .pods
                .iter()
                .filter(|p| {
                    self.pods[**p].task == *task
                        && (matches!(self.pods[**p].phase.as_str(), "Running" | "Bound")
                            || placed.iter().any(|(x, _)| x == *p))
                })
                .count();
            have as u32 >= *min
        });
        if ready as u32 >= self.groups[g].min_member && tasks_ok && !placed.is_empty() {
            for (p, n) in &placed {
                self.pods[*p].node = Some(*n);
                self.pods[*p].phase = "Bound".into();
            }
            Some(placed)
        } else {
            self.nodes = saved_nodes;
            None
        }
    }

    /// What the pods that hold resources hold, per queue and per tenant.
    fn used_vectors(&self) -> (Vec<[i128; 3]>, Vec<[i128; 3]>) {
        let mut by_queue = vec![[0i128; 3]; self.queues.len()];
        let mut by_tenant = vec![[0i128; 3]; self.tenants.len()];
        for p in &self.pods {
            if p.node.is_some() && matches!(p.phase.as_str(), "Running" | "Bound") {
                let g = &self.groups[p.group];
                add(&mut by_queue[g.queue], usage(&p.req), 1);
                add(&mut by_tenant[g.tenant], usage(&p.req), 1);
            }
        }
        (self.rolled_up(&by_queue), by_tenant)
    }

    /// A queue's share (thousandths): its dominant resource against what it deserves — the
    /// explicit `deserved` GPUs, else the cluster's resources split by queue weight (Volcano's
    /// proportion plugin).
    fn queue_share(&self, q: usize, used: &[i128; 3]) -> i128 {
        let fraction: f64 = self
            .queue_chain(q)
            .iter()
            .map(|a| self.weight_fraction_among_siblings(*a))
            .product();
        (0..3)
            .map(|r| {
                let deserved = if r == 2 {
                    self.deserved(q) as i128
                } else {
                    (self.total[r] as f64 * fraction) as i128
                };
                used[r] * 1000 / deserved.max(1)
            })
            .max()
            .unwrap_or(0)
    }

    /// A tenant's dominant share (thousandths of the cluster), divided by its weight (DRF).
    fn tenant_share(&self, t: usize, used: &[i128; 3]) -> i128 {
        (0..3)
            .map(|r| used[r] * 1000 / self.total[r].max(1))
            .max()
            .unwrap_or(0)
            / self.tenants[t].weight as i128
    }

    /// The order gangs are served in: queues furthest below their fair share first, in a
    /// queue the tenant with the smallest dominant share (DRF), then higher priority, then
    /// submission order.
    fn group_key(&self, g: usize, qused: &[[i128; 3]], tused: &[[i128; 3]]) -> GroupKey {
        let group = &self.groups[g];
        // Hierarchical queues compare top-down: siblings under the root by their shares, then
        // the children of the lower one, down to the gang's own queue.
        let mut chain = self.queue_chain(group.queue);
        chain.reverse();
        (
            chain
                .iter()
                .map(|q| self.queue_share(*q, &qused[*q]))
                .collect(),
            self.tenant_share(group.tenant, &tused[group.tenant]),
            -group.priority,
            group.order,
        )
    }

    fn group_order(&self) -> Vec<usize> {
        let (qused, tused) = self.used_vectors();
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        order.sort_by_cached_key(|g| self.group_key(*g, &qused, &tused));
        order
    }

    /// The devices pod `p` holds on its node (see `PodSpec::devices`).
    fn devices_of(&self, p: usize) -> Vec<String> {
        let Some(n) = self.pods[p].node else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (gi, g) in self.nodes[n].gpus.iter().enumerate() {
            for _ in g.shares.iter().filter(|(holder, _)| *holder == p) {
                out.push(gi.to_string());
            }
            for (ii, _) in g
                .instances
                .iter()
                .enumerate()
                .filter(|(_, (_, holder))| *holder == Some(p))
            {
                out.push(format!("{gi}/{ii}"));
            }
        }
        out
    }

    /// Why pod `p` fits no node, as `kubectl describe` says it: `0/3 nodes are available:
    /// 1 node(s) were unschedulable, 2 Insufficient nvidia.com/gpu.`
    fn why_not(&self, p: usize) -> String {
        let req = &self.pods[p].req;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut available = 0;
        for (n, node) in self.nodes.iter().enumerate() {
            let whole_free = node
                .gpus
                .iter()
                .filter(|g| g.instances.is_empty() && g.used() == 0)
                .count() as u32;
            let reason = if node.unschedulable {
                "node(s) were unschedulable".to_string()
            } else if let Some(t) = self.untolerated(p, n) {
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value)
            } else if !self.selector_ok(p, n) {
                "node(s) didn't match Pod's node affinity/selector".into()
            } else if node.exclusive {
                "node(s) were held whole by one pod".into()
            } else if req.whole_node && node.pods_free != node.pods_cap {
                "node(s) were not empty (the queue hands out whole nodes)".into()
            } else if node.cpu_free < req.cpu {
                "Insufficient cpu".into()
            } else if node.mem_free < req.mem {
                "Insufficient memory".into()
            } else if node.pods_free < 1 {
                "Too many pods".into()
            } else if whole_free < req.gpus {
                "Insufficient nvidia.com/gpu".into()
            } else if !self.fits(n, req) {
                match req.mig.keys().next() {
                    Some(profile) => format!("Insufficient nvidia.com/mig-{profile}"),
                    None => "Insufficient GPU share".into(),
                }
            } else {
                available += 1;
                continue;
            };
            *counts.entry(reason).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
        format!(
            "{available}/{} nodes are available: {}.",
            self.nodes.len(),
            parts.join(", ")
        )
    }

    /// Why a gang that did not bind waits, for each of its pending pods.
    fn why_gang_waits(&mut self, g: usize) -> Vec<(usize, String)> {
        let pending = self.pending_pods(g);
        let (key, min_member, size) = {
            let group = &self.groups[g];
            (group.key.clone(), group.min_member, group.pods.len())
        };
        if min_member <= 1 {
            return pending.iter().map(|p| (*p, self.why_not(*p))).collect();
        }
        let why = if (size as u32) < min_member {
            format!("gang {key} waits for its pods: {size} of minMember {min_member} exist")
        } else {
            // Place what fits, as a trial, to say how far the gang gets and what stops it.
            let saved = self.nodes.clone();
            let dynamic = self.plugins.contains("dynamic-mig");
            let mut fit = 0;
            let mut stop = None;
            for p in &pending {
                let req = self.pods[*p].req.clone();
                match self.best_node(*p, &BTreeSet::new()) {
                    Some(n) if self.take(n, &req, *p, dynamic) => fit += 1,
                    _ => {
                        if stop.is_none() {
                            stop = Some(self.why_not(*p));
                        }
                    }
                }
            }
            self.nodes = saved;
            format!(
                "gang {key} cannot place {min_member} pods at once ({fit} fit now): {}",
                stop.unwrap_or_default()
            )
        };
        pending.iter().map(|p| (*p, why.clone())).collect()
    }

    /// GPU equivalents (thousandths) the gang's pending pods ask for.
    fn pending_gpu(&self, g: usize) -> i64 {
        self.pending_pods(g)
            .iter()
            .map(|p| gpu_milli(&self.pods[*p].req))
            .sum()
    }

    /// What a group's pending pods ask for, as one vector.
    fn pending_need(&self, g: usize) -> [i128; 3] {
        let mut need = [0i128; 3];
        for p in self.pending_pods(g) {
            add(&mut need, usage(&self.pods[p].req), 1);
        }
        need
    }

    /// Why the tenant's quota keeps `need` out, if it does.
    fn over_quota(&self, t: usize, used: &[i128; 3], need: &[i128; 3]) -> Option<String> {
        let tenant = &self.tenants[t];
        (0..3).find_map(|r| {
            let q = tenant.quota[r]?;
            (used[r] + need[r] > q).then(|| {
                let show = |v: i128| match r {
                    1 => format!("{}Gi", v / (1 << 30)),
                    _ => format!("{}", v as f64 / 1000.0),
                };
                format!(
                    "namespace {} is at its {} quota (holds {} of {}, asks {})",
                    tenant.namespace,
                    RESOURCE_NAMES[r],
                    show(used[r]),
                    show(q),
                    show(need[r])
                )
            })
        })
    }
}

/// Take `req` on `node` for `pod`; false (and `node` unchanged in meaning) if it does not fit.
fn take_on(node: &mut Node, req: &Req, pod: usize, dynamic: bool) -> bool {
    if node.cpu_free < req.cpu
        || node.mem_free < req.mem
        || node.pods_free < 1
        || node.exclusive
        || (req.whole_node && node.pods_free != node.pods_cap)
    {
        return false;
    }
    // Whole GPUs: GPUs in whole mode with nothing on them.
    let mut whole: Vec<usize> = (0..node.gpus.len())
        .filter(|i| node.gpus[*i].instances.is_empty() && node.gpus[*i].used() == 0)
        .collect();
    if (whole.len() as u32) < req.gpus {
        return false;
    }
    whole.truncate(req.gpus as usize);
    for i in &whole {
        node.gpus[*i].shares.push((pod, 1000));
    }
    // A fraction: the tightest whole-mode GPU with room.
    if req.gpu_milli > 0 {
        let Some(i) = (0..node.gpus.len())
            .filter(|i| {
                node.gpus[*i].instances.is_empty() && node.gpus[*i].used() + req.gpu_milli <= 1000
            })
            .max_by_key(|i| (node.gpus[*i].used(), std::cmp::Reverse(*i)))
        else {
            return false;
        };
        node.gpus[i].shares.push((pod, req.gpu_milli));
    }
    // MIG instances: free instances of exactly that profile; with dynamic MIG, an idle GPU is
    // re-partitioned to hold what is asked (within the GPU's geometry).
    for (profile, count) in &req.mig {
        for _ in 0..*count {
            let free = node.gpus.iter().enumerate().find_map(|(gi, g)| {
                g.instances
                    .iter()
                    .position(|(p, u)| p == profile && u.is_none())
                    .map(|ii| (gi, ii))
            });
            match free {
                Some((gi, ii)) => node.gpus[gi].instances[ii].1 = Some(pod),
                None if dynamic => {
                    // A MIG GPU with room in its geometry, else an idle whole GPU.
                    let grow = node.gpus.iter().position(|g| {
                        !g.instances.is_empty() && {
                            let mut l: Vec<String> =
                                g.instances.iter().map(|(p, _)| p.clone()).collect();
                            l.push(profile.clone());
                            mig::fits(&l)
                        }
                    });
                    let target = grow.or_else(|| {
                        node.gpus
                            .iter()
                            .position(|g| g.instances.is_empty() && g.used() == 0)
                    });
                    let Some(gi) = target else { return false };
                    node.gpus[gi].instances.push((profile.clone(), Some(pod)));
                }
                None => return false,
            }
        }
    }
    node.cpu_free -= req.cpu;
    node.mem_free -= req.mem;
    node.pods_free -= 1;
    node.exclusive = req.whole_node;
    true
}

/// Take `req` on `node` for `pod` on exactly the devices it was given earlier.
fn take_devices(node: &mut Node, req: &Req, pod: usize, devices: &[String]) -> Result<(), String> {
    if node.cpu_free < req.cpu || node.mem_free < req.mem || node.pods_free < 1 {
        return Err(format!("node {} has no room for it", node.name));
    }
    let mut whole_left = req.gpus;
    for d in devices {
        let bad = || {
            format!(
                "{d:?} is not a device of node {} (GPU, or GPU/instance)",
                node.name
            )
        };
        let (g, inst) = match d.split_once('/') {
            Some((g, i)) => (g, Some(i.parse::<usize>().map_err(|_| bad())?)),
            None => (d.as_str(), None),
        };
        let g: usize = g.parse().map_err(|_| bad())?;
        let gpu = node.gpus.get_mut(g).ok_or_else(bad)?;
        match inst {
            Some(i) => {
                let slot = gpu.instances.get_mut(i).ok_or_else(bad)?;
                if slot.1.is_some() {
                    return Err(format!("MIG instance {d} is held twice"));
                }
                slot.1 = Some(pod);
            }
            None => {
                let share = if whole_left > 0 {
                    whole_left -= 1;
                    1000
                } else {
                    req.gpu_milli
                };
                if !gpu.instances.is_empty() || gpu.used() + share > 1000 {
                    return Err(format!("GPU {d} is over-committed"));
                }
                gpu.shares.push((pod, share));
            }
        }
    }
    node.cpu_free -= req.cpu;
    node.mem_free -= req.mem;
    node.pods_free -= 1;
    node.exclusive = req.whole_node;
    Ok(())
}

/// A request as a user wrote it, for messages.
fn describe(r: &Req) -> String {
    let mut parts = Vec::new();
    if r.gpus > 0 {
        parts.push(format!("nvidia.com/gpu: {}", r.gpus));
    }
    if r.gpu_milli > 0 {
        parts.push(format!("gpu_milli: {}", r.gpu_milli));
    }
    for (p, n) in &r.mig {
        parts.push(format!("nvidia.com/mig-{p}: {n}"));
    }
    if parts.is_empty() {
        "no GPU".into()
    } else {
        parts.join(", ")
    }
}

/// Queue share, tenant share, negated priority, submission order: smaller is served first.
type GroupKey = (Vec<i128>, i128, i64, usize);

/// Run one scheduling cycle.
pub fn run(s: &Scenario) -> Result<Outcome, ScenarioError> {
    let mut out = Outcome::default();
    let mut st = State::build(s, &mut out)?;
    // Refuse what can never run here (rather than leave it pending forever).
    let max_gpus = st.nodes.iter().map(|n| n.gpus.len()).max().unwrap_or(0) as u32;
    let total_gpus = st.cluster_gpu() / 1000;
    for i in 0..st.pods.len() {
        let p = &st.pods[i];
        if p.req.gpus > max_gpus {
            out.refused.insert(
                p.key.clone(),
                format!(
                    "requests {} nvidia.com/gpu; the largest node has {max_gpus}",
                    p.req.gpus
                ),
            );
        }
    }
    for g in 0..st.groups.len() {
        let need: i64 = st.groups[g]
            .pods
            .iter()
            .map(|p| st.pods[*p].req.gpus as i64)
            .sum();
        if need > total_gpus && !out.refused.contains_key(&st.groups[g].key) {
            out.refused.insert(
                st.groups[g].key.clone(),
                format!("the gang needs {need} GPUs; the whole cluster has {total_gpus}"),
            );
        }
        let t = st.groups[g].tenant;
        let mut gang = [0i128; 3];
        for p in &st.groups[g].pods {
            add(&mut gang, usage(&st.pods[*p].req), 1);
        }
        if let Some(why) = st.over_quota(t, &[0; 3], &gang) {
            out.refused.insert(
                st.groups[g].key.clone(),
                format!("the gang can never run: {why}"),
            );
        }
        if (st.groups[g].pods.len() as u32) < st.groups[g].min_member
            && !st.groups[g].pods.is_empty()
        {
            out.warnings.push(format!(
                "group {} has fewer pods than minMember",
                st.groups[g].key
            ));
        }
    }
    for g in 0..st.groups.len() {
        let q = &st.queues[st.groups[g].queue];
        if !q.children.is_empty() && !out.refused.contains_key(&st.groups[g].key) {
            out.refused.insert(
                st.groups[g].key.clone(),
                format!(
                    "queue {} has child queues: jobs can only be submitted to leaf queues",
                    q.name
                ),
            );
        }
    }
    let refused_groups: BTreeSet<usize> = (0..st.groups.len())
        .filter(|g| {
            out.refused.contains_key(&st.groups[*g].key)
                || st.groups[*g]
                    .pods
                    .iter()
                    .any(|p| out.refused.contains_key(&st.pods[*p].key))
        })
        .collect();
    let actions: Vec<String> = if s.actions.is_empty() {
        vec!["enqueue".into(), "allocate".into(), "backfill".into()]
    } else {
        s.actions.clone()
    };
    // Nodes a waiting, admitted gang is collecting: lower or equal priority work of other
    // gangs does not take them (no starvation of large gangs).
    let mut reserved: BTreeMap<usize, i64> = BTreeMap::new();
    for action in &actions {
        match action.as_str() {
            "enqueue" => {
                // Admit gangs while their queue's capability holds, counting those admitted.
                // (per queue, counting its subtree: a parent's capability bounds its children).
                let mut admitted: BTreeMap<usize, i64> = BTreeMap::new();
                // What each queue holds, summed once (not once per gang).
                let used_gpu: Vec<i64> = (0..st.queues.len()).map(|q| st.queue_used(q)).collect();
                for g in st.group_order() {
                    let need = st.pending_gpu(g);
                    if st.groups[g].phase == "Inqueue" {
                        for a in st.queue_chain(st.groups[g].queue) {
                            *admitted.entry(a).or_default() += need;
                        }
                    }
                }
                for g in st.group_order() {
                    if st.groups[g].phase == "Pending" && !refused_groups.contains(&g) {
                        let chain = st.queue_chain(st.groups[g].queue);
                        let need = st.pending_gpu(g);
                        let fits = chain.iter().all(|a| {
                            let held = used_gpu[*a] + admitted.get(a).copied().unwrap_or(0);
                            st.queues[*a].capability_gpu.is_none_or(|c| held + need <= c)
                        });
                        if fits {
                            st.groups[g].phase = "Inqueue".into();
                            for a in chain {
                                *admitted.entry(a).or_default() += need;
                            }
                        }
                    }
                }
            }
            "allocate" | "backfill" => {
                // Shares change as gangs bind. Gangs of one queue and tenant keep their order
                // (priority, then submission), so each (queue, tenant) is a queue of gangs, and
                // the next gang is the head of the one whose shares are lowest now.
                let (mut qused, mut tused) = st.used_vectors();
                let mut lanes: BTreeMap<(usize, usize), std::collections::VecDeque<usize>> =
                    BTreeMap::new();
                let mut waiting: Vec<usize> = (0..st.groups.len())
                    .filter(|g| !refused_groups.contains(g) && !st.pending_pods(*g).is_empty())
                    .collect();
                waiting.sort_by_key(|g| (-st.groups[*g].priority, st.groups[*g].order));
                for g in waiting {
                    let key = (st.groups[g].queue, st.groups[g].tenant);
                    lanes.entry(key).or_default().push_back(g);
                }
                loop {
                    let next = lanes
                        .iter()
                        .filter_map(|(lane, gangs)| {
                            let g = *gangs.front()?;
                            Some((st.group_key(g, &qused, &tused), *lane))
                        })
                        .min();
                    let Some((_, lane)) = next else { break };
                    let Some(g) = lanes.get_mut(&lane).and_then(|l| l.pop_front()) else {
                        break;
                    };
                    if action == "allocate"
                        && st.groups[g].phase == "Pending"
                        && actions.iter().any(|a| a == "enqueue")
                    {
                        // Not admitted: its queue's capability (or an ancestor's) is taken.
                        let need = st.pending_gpu(g);
                        let chain = st.queue_chain(st.groups[g].queue);
                        let full = chain
                            .iter()
                            .copied()
                            .find(|a| {
                                st.queues[*a]
                                    .capability_gpu
                                    .is_some_and(|c| st.queue_used(*a) + need > c)
                            })
                            .unwrap_or(chain[0]);
                        for p in st.pending_pods(g) {
                            out.reasons.insert(
                                st.pods[p].key.clone(),
                                format!(
                                    "queue {} is at its capability; the gang waits to be admitted",
                                    st.queues[full].name
                                ),
                            );
                        }
                        continue;
                    }
                    if action == "backfill"
                        && st
                            .pending_pods(g)
                            .iter()
                            .any(|p| gpu_milli(&st.pods[*p].req) > 0 || st.pods[*p].req.cpu > 0)
                    {
                        continue; // backfill places best-effort pods only
                    }
                    let q = st.groups[g].queue;
                    let need = st.pending_gpu(g);
                    if let Some(full) = st.queue_chain(q).into_iter().find(|a| {
                        st.queues[*a]
                            .capability_gpu
                            .is_some_and(|c| qused[*a][2] as i64 + need > c)
                    }) {
                        for p in st.pending_pods(g) {
                            out.reasons.insert(
                                st.pods[p].key.clone(),
                                format!("queue {} is at its capability", st.queues[full].name),
                            );
                        }
                        continue;
                    }
                    let (kept, keepers) = st.guaranteed_to_others(q, &qused);
                    if kept > 0 {
                        let used: i64 = (0..st.queues.len())
                            .filter(|a| st.queues[*a].parent.is_none())
                            .map(|a| qused[a][2] as i64)
                            .sum();
                        if st.cluster_gpu() - used - need < kept {
                            for p in st.pending_pods(g) {
                                out.reasons.insert(
                                    st.pods[p].key.clone(),
                                    format!(
                                        "the free GPUs are guaranteed to queue(s) {}",
                                        keepers.join(", ")
                                    ),
                                );
                            }
                            continue;
                        }
                    }
                    let t = st.groups[g].tenant;
                    if let Some(why) = st.over_quota(t, &tused[t], &st.pending_need(g)) {
                        for p in st.pending_pods(g) {
                            out.reasons.insert(st.pods[p].key.clone(), why.clone());
                        }
                        continue;
                    }
                    let prio = st.groups[g].priority;
                    let exclude: BTreeSet<usize> = reserved
                        .iter()
                        .filter(|(_, rp)| **rp >= prio)
                        .map(|(n, _)| *n)
                        .collect();
                    match st.try_group(g, &exclude) {
                        Some(placed) => {
                            for (p, n) in placed {
                                out.binds
                                    .insert(st.pods[p].key.clone(), st.nodes[n].name.clone());
                                out.devices.insert(st.pods[p].key.clone(), st.devices_of(p));
                                let u = usage(&st.pods[p].req);
                                for a in st.queue_chain(st.groups[g].queue) {
                                    add(&mut qused[a], u, 1);
                                }
                                add(&mut tused[t], u, 1);
                            }
                            st.groups[g].phase = "Running".into();
                        }
                        None => {
                            // Reserve the nodes this gang could use now, for the rest of the cycle.
                            if st.groups[g].min_member > 1 {
                                for p in st.pending_pods(g) {
                                    if let Some(n) = st.best_node(p, &BTreeSet::new()) {
                                        reserved.entry(n).or_insert(prio);
                                    }
                                }
                            }
                            for (p, why) in st.why_gang_waits(g) {
                                out.reasons.insert(st.pods[p].key.clone(), why);
                            }
                        }
                    }
                }
            }
            "preempt" | "reclaim" => {
                let reclaim = action == "reclaim";
                for g in st.group_order() {
                    if refused_groups.contains(&g)
                        || st.pending_pods(g).is_empty()
                        || st.groups[g].phase == "Pending" && actions.iter().any(|a| a == "enqueue")
                    {
                        continue;
                    }
                    let q = st.groups[g].queue;
                    if reclaim && st.queue_used(q) >= st.deserved(q) {
                        continue; // only queues below their deserved share reclaim
                    }
                    // Victim gangs: same queue and lower priority (preempt), or other reclaimable
                    // queues above their deserved share (reclaim); whole gangs, lowest first.
                    let mut victims: Vec<usize> = (0..st.groups.len())
                        .filter(|v| {
                            *v != g
                                && st.groups[*v]
                                    .pods
                                    .iter()
                                    .any(|p| st.pods[*p].phase == "Running")
                        })
                        .filter(|v| {
                            let vq = st.groups[*v].queue;
                            if reclaim {
                                vq != q
                                    && st.queues[vq].reclaimable
                                    && st.queue_used(vq) > st.deserved(vq)
                            } else {
                                vq == q && st.groups[*v].priority < st.groups[g].priority
                            }
                        })
                        .filter(|v| st.groups[*v].pods.iter().all(|p| st.pods[*p].preemptable))
                        .collect();
                    // Reclaim looks at sibling queues first, then up the tree (the deepest
                    // common ancestor first); within that, lowest priority, newest first.
                    let mine = st.queue_chain(q);
                    victims.sort_by_key(|v| {
                        let theirs = st.queue_chain(st.groups[*v].queue);
                        let shared = mine.iter().filter(|a| theirs.contains(a)).count();
                        (
                            std::cmp::Reverse(shared),
                            st.groups[*v].priority,
                            std::cmp::Reverse(st.groups[*v].order),
                        )
                    });
                    let saved_nodes = st.nodes.clone();
                    let mut chosen: Vec<usize> = Vec::new();
                    let mut fits = false;
                    for v in victims {
                        // Reclaim never takes a queue below its deserved share (no ping-pong).
                        if reclaim {
                            let vq = st.groups[v].queue;
                            let give: i64 = st.groups[v]
                                .pods
                                .iter()
                                .map(|p| gpu_milli(&st.pods[*p].req))
                                .sum();
                            if st.queue_used(vq) - give < st.deserved(vq) {
                                continue;
                            }
                        }
                        for p in st.groups[v].pods.clone() {
                            if st.pods[p].phase == "Running" {
                                st.release(p);
                            }
                        }
                        chosen.push(v);
                        // Would the gang fit now?
                        let trial = st.nodes.clone();
                        let pend = st.pending_pods(g);
                        let mut ok = 0;
                        for p in &pend {
                            if let Some(n) = st.best_node(*p, &BTreeSet::new()) {
                                let req = st.pods[*p].req.clone();
                                if st.take(n, &req, *p, st.plugins.contains("dynamic-mig")) {
                                    ok += 1;
                                }
                            }
                        }
                        st.nodes = trial;
                        if (st.ready_count(g) + ok) as u32 >= st.groups[g].min_member {
                            fits = true;
                            break;
                        }
                    }
                    if fits {
                        let mut nodes_used: BTreeSet<String> = BTreeSet::new();
                        for v in &chosen {
                            for p in st.groups[*v].pods.clone() {
                                if st.pods[p].phase == "Running" {
                                    out.evictions.insert(st.pods[p].key.clone());
                                    out.eviction_reasons.insert(
                                        st.pods[p].key.clone(),
                                        if reclaim {
                                            format!(
                                                "pod reclaimed: queue {} is over its share and {} of queue {} needs the resources",
                                                st.queues[st.groups[*v].queue].name,
                                                st.groups[g].key,
                                                st.queues[st.groups[g].queue].name
                                            )
                                        } else {
                                            format!(
                                                "pod preempted by {}, of higher priority in queue {}",
                                                st.groups[g].key,
                                                st.queues[st.groups[g].queue].name
                                            )
                                        },
                                    );
                                    if let Some(n) = st.pods[p].node {
                                        nodes_used.insert(st.nodes[n].name.clone());
                                    }
                                    st.pods[p].phase = "Releasing".into();
                                }
                            }
                            st.groups[*v].phase = "Pending".into();
                        }
                        // The freed resources stay with the victims until they are gone: the gang
                        // is pipelined onto those nodes and binds in a later cycle.
                        st.nodes = saved_nodes;
                        out.pipelined
                            .insert(st.groups[g].key.clone(), nodes_used.into_iter().collect());
                    } else {
                        // Nothing is evicted: the victims keep what they hold.
                        st.nodes = saved_nodes;
                    }
                }
            }
            "drain" => {
                // Every pod on a cordoned node is evicted, and a gang is moved whole: its
                // members on other nodes go too, so it restarts together elsewhere.
                let cordoned: BTreeSet<usize> = (0..st.nodes.len()).filter(|n| st.nodes[*n].unschedulable).collect();
                let gangs: BTreeSet<usize> = st
                    .pods
                    .iter()
                    .filter(|p| p.phase == "Running" && p.node.is_some_and(|n| cordoned.contains(&n)))
                    .map(|p| p.group)
                    .collect();
                for g in gangs {
                    for p in st.groups[g].pods.clone() {
                        if st.pods[p].phase == "Running" {
                            out.evictions.insert(st.pods[p].key.clone());
                            st.pods[p].phase = "Releasing".into();
                        }
                    }
                    st.groups[g].phase = "Pending".into();
                }
            }
            other => {
                return Err(ScenarioError::Invalid(format!(
                    "unknown action {other:?}: expected enqueue, allocate, backfill, preempt, reclaim, drain"
                )))
            }
        }
    }
    for g in &st.groups {
        let phase = if out.refused.contains_key(&g.key) {
            "Refused".to_string()
        } else {
            g.phase.clone()
        };
        out.group_phases.insert(g.key.clone(), phase);
    }
    for n in &st.nodes {
        if n.gpus.iter().any(|g| !g.instances.is_empty()) {
            out.mig_layouts.insert(
                n.name.clone(),
                n.gpus
                    .iter()
                    .map(|g| g.instances.iter().map(|(p, _)| p.clone()).collect())
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// Compare an outcome with what the scenario expects; `Err` lists every difference.
pub fn compare(expect: &Expect, out: &Outcome) -> Result<(), String> {
    let mut diffs = Vec::new();
    for (pod, node) in &expect.binds {
        match out.binds.get(pod) {
            Some(n) if node == "*" || n == node => {}
            Some(n) => diffs.push(format!("{pod} bound to {n}, expected {node}")),
            None => diffs.push(format!("{pod} not bound, expected {node}")),
        }
    }
    for pod in out.binds.keys() {
        if !expect.binds.contains_key(pod) {
            diffs.push(format!(
                "{pod} bound to {} but must not bind",
                out.binds[pod]
            ));
        }
    }
    if let Some(ev) = &expect.evictions {
        let want: BTreeSet<String> = ev.iter().cloned().collect();
        if want != out.evictions {
            diffs.push(format!(
                "evictions {:?}, expected {:?}",
                out.evictions, want
            ));
        }
    } else if let Some(n) = expect.eviction_count {
        if out.evictions.len() != n {
            diffs.push(format!("{} evictions, expected {n}", out.evictions.len()));
        }
    } else if !out.evictions.is_empty() {
        diffs.push(format!("evictions {:?}, expected none", out.evictions));
    }
    for (g, nodes) in &expect.pipelined {
        if out.pipelined.get(g) != Some(nodes) {
            diffs.push(format!(
                "{g} pipelined on {:?}, expected {nodes:?}",
                out.pipelined.get(g)
            ));
        }
    }
    for (g, phase) in &expect.group_phases {
        if out.group_phases.get(g) != Some(phase) {
            diffs.push(format!(
                "{g} phase {:?}, expected {phase}",
                out.group_phases.get(g)
            ));
        }
    }
    for (n, layout) in &expect.mig_layouts {
        if out.mig_layouts.get(n) != Some(layout) {
            diffs.push(format!(
                "{n} MIG layout {:?}, expected {layout:?}",
                out.mig_layouts.get(n)
            ));
        }
    }
    for (p, want) in &expect.devices {
        if out.devices.get(p) != Some(want) {
            diffs.push(format!(
                "{p} got devices {:?}, expected {want:?}",
                out.devices.get(p)
            ));
        }
    }
    for (p, part) in &expect.reasons {
        match out.reasons.get(p) {
            Some(m) if m.contains(part.as_str()) => {}
            Some(m) => diffs.push(format!(
                "{p} waits because {m:?}, expected a reason with {part:?}"
            )),
            None => diffs.push(format!("{p} has no reason to wait, expected {part:?}")),
        }
    }
    for (p, part) in &expect.refused {
        match out.refused.get(p) {
            Some(m) if m.contains(part.as_str()) => {}
            Some(m) => diffs.push(format!(
                "{p} refused with {m:?}, expected a message with {part:?}"
            )),
            None => diffs.push(format!("{p} not refused, expected {part:?}")),
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// Read a scenario file (YAML or JSON).
pub fn load(text: &str) -> Result<Scenario, String> {
    let docs = manifest::parse_documents(text).map_err(|e| e.to_string())?;
    let doc = docs.into_iter().next().ok_or("the file is empty")?;
    serde_json::from_value(doc.value).map_err(|e| format!("not a scenario: {e}"))
}
