//! The cycle's working state: nodes with their GPUs, pods, gangs, queues (linked into their
//! tree) and tenants, built from a scenario. Building checks the scenario (a bound pod's node
//! exists, a queue's children fit inside it) and takes what running pods hold, so the rest
//! of the cycle starts from a cluster that adds up.

use std::collections::{BTreeMap, BTreeSet};

use crate::mig;
use crate::model::{GroupPhase, PodPhase};
use crate::model::{Quantity, QueueSpec, QueueUnit, Scenario, Toleration};
use crate::outcome::{Outcome, ScenarioError};
use crate::resources::{describe, parse_req, take_devices, Bounds, Gpu, Node, Req, Resources};

pub(crate) struct Pod {
    pub(crate) key: String,
    pub(crate) group: usize,
    /// Its own priority class's value, else its gang's.
    pub(crate) priority: i64,
    pub(crate) task: String,
    pub(crate) phase: PodPhase,
    pub(crate) node: Option<usize>,
    pub(crate) req: Req,
    pub(crate) preemptable: bool,
    pub(crate) selector: BTreeMap<String, String>,
    pub(crate) tolerations: Vec<Toleration>,
}

pub(crate) struct Group {
    pub(crate) key: String,
    pub(crate) queue: usize,
    /// The PodGroup's `minResources` (CPU thousandths, memory bytes, GPU thousandths): what
    /// the enqueue action weighs against its queue; `None` lets it in (Volcano's proportion).
    pub(crate) min_res: Option<Resources>,
    pub(crate) tenant: usize,
    pub(crate) min_member: u32,
    pub(crate) min_task: BTreeMap<String, u32>,
    pub(crate) priority: i64,
    pub(crate) phase: GroupPhase,
    pub(crate) pods: Vec<usize>,
    pub(crate) order: usize,
}

pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) weight: u32,
    /// Its own `capability`, else its nearest ancestor's (Volcano's inheritance).
    pub(crate) capability_gpu: Option<i64>,
    pub(crate) deserved_gpu: Option<i64>,
    /// GPUs kept for this queue's subtree: other queues never take the part it does not use.
    pub(crate) guarantee_gpu: Option<i64>,
    pub(crate) reclaimable: bool,
    /// Volcano's queue priority: reclaim takes from lower ones first.
    pub(crate) priority: i64,
    /// `capability` and `guarantee` in every resource (unset: unbounded), for enqueue.
    pub(crate) capability_res: Bounds,
    pub(crate) guarantee_res: Bounds,
    /// Named by a group but not defined: its groups are never enqueued (Volcano's enqueue
    /// skips a job whose queue it cannot find).
    pub(crate) missing: bool,
    pub(crate) unit: QueueUnit,
    /// Hierarchical queues: the parent (`None`: under the implicit root) and the children.
    pub(crate) parent: Option<usize>,
    pub(crate) children: Vec<usize>,
}

pub(crate) struct Tenant {
    pub(crate) namespace: String,
    pub(crate) weight: u32,
    /// Upper bounds on what the tenant's pods hold: CPU (thousandths), memory (bytes), GPU
    /// equivalents (thousandths).
    pub(crate) quota: Bounds,
}

pub(crate) struct State {
    pub(crate) nodes: Vec<Node>,
    pub(crate) pods: Vec<Pod>,
    pub(crate) groups: Vec<Group>,
    pub(crate) queues: Vec<Queue>,
    pub(crate) tenants: Vec<Tenant>,
    pub(crate) plugins: BTreeSet<String>,
    /// Volcano 1.10's rules where they differ from 1.7's.
    pub(crate) volcano_1_10: bool,
    /// The cluster's allocatable CPU, memory and GPU equivalents.
    pub(crate) total: Resources,
}

/// CPU (thousandths), memory (bytes) and GPU equivalents (thousandths) of a resource list;
/// `None` where it names none.
fn resource_vector(m: &BTreeMap<String, Quantity>, what: &str) -> Result<Bounds, ScenarioError> {
    let mut out = Bounds::default();
    for (k, v) in m {
        let milli = v
            .milli()
            .map_err(|e| ScenarioError::Invalid(format!("{what}.{k}: {e}")))?;
        match k.as_str() {
            "cpu" => out.cpu = Some(milli),
            "memory" => out.memory = Some(milli / 1000),
            "nvidia.com/gpu" => out.gpu = Some(milli),
            // Pods, ephemeral storage and the like do not bound ONYX's queues.
            _ => {}
        }
    }
    Ok(out)
}

/// A queue and its ancestors, the queue first (the tree has no cycles once linked).
pub(crate) fn queue_chain(queues: &[Queue], q: usize) -> Vec<usize> {
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
pub(crate) fn link_queue_tree(
    queues: &mut [Queue],
    specs: &[QueueSpec],
) -> Result<(), ScenarioError> {
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
    pub(crate) fn build(s: &Scenario, out: &mut Outcome) -> Result<State, ScenarioError> {
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
            let what = |field: &str| format!("queue {}: {field}", q.name);
            queues.push(Queue {
                name: q.name.clone(),
                weight: q.weight.max(1),
                capability_gpu: gpu_of(&q.capability)?,
                deserved_gpu: gpu_of(&q.deserved)?,
                guarantee_gpu: gpu_of(&q.guarantee)?,
                reclaimable: q.reclaimable,
                priority: q.priority,
                capability_res: resource_vector(&q.capability, &what("capability"))?,
                guarantee_res: resource_vector(&q.guarantee, &what("guarantee"))?,
                missing: false,
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
                priority: 0,
                capability_res: Bounds::default(),
                guarantee_res: Bounds::default(),
                missing: false,
                unit: QueueUnit::Any,
                parent: None,
                children: Vec::new(),
            });
        }
        link_queue_tree(&mut queues, &s.queues)?;
        let mut tenants: Vec<Tenant> = Vec::new();
        for t in &s.tenants {
            let mut quota = Bounds::default();
            for (k, v) in &t.quota {
                let milli = v
                    .milli()
                    .map_err(|e| bad(format!("tenant {}: quota.{k}: {e}", t.namespace)))?;
                match k.as_str() {
                    "cpu" => quota.cpu = Some(milli),
                    "memory" => quota.memory = Some(milli / 1000),
                    "nvidia.com/gpu" => quota.gpu = Some(milli),
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
                quota: Bounds::default(),
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
            let queue = match queues.iter().position(|q| q.name == g.queue) {
                Some(q) => q,
                None => {
                    out.warnings.push(format!(
                        "group {}/{}: no queue {:?}: the group stays Pending",
                        g.namespace, g.name, g.queue
                    ));
                    queues.push(Queue {
                        name: g.queue.clone(),
                        weight: 1,
                        capability_gpu: None,
                        deserved_gpu: None,
                        guarantee_gpu: None,
                        reclaimable: true,
                        priority: 0,
                        capability_res: Bounds::default(),
                        guarantee_res: Bounds::default(),
                        missing: true,
                        unit: QueueUnit::Any,
                        parent: None,
                        children: Vec::new(),
                    });
                    queues.len() - 1
                }
            };
            let min_res = if g.min_resources.is_empty() {
                None
            } else {
                let v =
                    resource_vector(&g.min_resources, &format!("group {}: minResources", g.name))?;
                Some(v.map(|x| x.unwrap_or(0)))
            };
            groups.push(Group {
                key: format!("{}/{}", g.namespace, g.name),
                queue,
                min_res,
                tenant: tenant_of(&g.namespace),
                min_member: g.min_member,
                min_task: g.min_task_member.clone(),
                priority: *prio.get(g.priority_class.as_str()).unwrap_or(&0),
                phase: g.phase,
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
                    // A bare pod's group names no minResources: enqueue lets it in, and
                    // allocate holds it to its queue's capability.
                    min_res: None,
                    tenant: tenant_of(&p.namespace),
                    min_member: 1,
                    min_task: BTreeMap::new(),
                    priority: *prio.get(p.priority_class.as_str()).unwrap_or(&0),
                    phase: if p.phase == PodPhase::Running {
                        GroupPhase::Running
                    } else {
                        GroupPhase::Pending
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
            let priority = prio
                .get(p.priority_class.as_str())
                .copied()
                .unwrap_or(groups[group].priority);
            pods.push(Pod {
                key,
                group,
                priority,
                task: p.task.clone(),
                phase: p.phase,
                node,
                req,
                preemptable: p.preemptable,
                selector: p.node_selector.clone(),
                tolerations: p.tolerations.clone(),
            });
        }
        let total = Resources {
            cpu: nodes.iter().map(|n| n.cpu_free).sum(),
            memory: nodes.iter().map(|n| n.mem_free).sum(),
            gpu: nodes.iter().map(|n| n.gpus.len() as i128 * 1000).sum(),
        };
        let mut st = State {
            nodes,
            pods,
            groups,
            queues,
            tenants,
            plugins: s.config.plugins.iter().cloned().collect(),
            volcano_1_10: match s.config.volcano.as_deref() {
                None | Some("1.7") => false,
                Some("1.10") => true,
                Some(other) => {
                    return Err(bad(format!(
                        "config.volcano: {other:?}: expected \"1.7\" or \"1.10\""
                    )))
                }
            },
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
            let holds = matches!(st.pods[i].phase, PodPhase::Running | PodPhase::Releasing);
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
                        st.pods[i].key,
                        st.pods[i].phase.as_str(),
                        st.nodes[n].name
                    )));
                }
            }
        }
        Ok(st)
    }
}
