//! One scheduling cycle: the cluster as a `scheduler::Scenario`, run through the pure
//! scheduler, and its decisions applied.

use std::collections::BTreeMap;

use scheduler::{
    GroupPhase, GroupSpec, PodPhase, PodSpec, PriorityClass, Quantity, Scenario, TenantSpec,
};

use crate::cluster::{plain, Cluster, Inner, WAIT_BUCKETS};
use crate::grant::{Grant, Standing};
use crate::ledger::gpu_equivalents;
use crate::records::Pod;
use store::now_ns;

impl Cluster {
    /// One scheduling cycle over everything the server knows.
    pub(crate) fn cycle(&self, inner: &mut Inner) {
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
                            phase: GroupPhase::Pending,
                        });
                        s.groups.len() - 1
                    });
                    if matches!(p.standing, Standing::Bound(_)) {
                        s.groups[i].phase = GroupPhase::Running;
                    }
                    s.groups[i].min_member = s.groups[i].min_member.max(*min);
                    g.clone()
                }
                None => String::new(),
            };
            let (phase, node, devices) = match &p.standing {
                Standing::Bound(g) if inner.releasing.contains(name.as_str()) => {
                    (PodPhase::Releasing, g.node.clone(), g.devices.clone())
                }
                Standing::Bound(g) => (PodPhase::Running, g.node.clone(), g.devices.clone()),
                _ => (PodPhase::Pending, String::new(), Vec::new()),
            };
            s.pods.push(PodSpec {
                name: plain(name).to_string(),
                namespace: p.ask.namespace.clone(),
                group,
                phase,
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
