//! Resources, the pod's side and the node's: a request normalised (`Req`: CPU, memory,
//! whole GPUs, GPU fractions, MIG profiles), a node's free CPU, memory, pod slots and GPUs,
//! and taking one from the other. Knows nothing of gangs, queues or tenants.

use std::collections::BTreeMap;

use crate::mig;
use crate::model::{Quantity, Taint};

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
pub(crate) struct Gpu {
    /// MIG instances and the pod using each (empty: the GPU is whole).
    pub(crate) instances: Vec<(String, Option<usize>)>,
    /// Whole-GPU and fractional holders: (pod, thousandths).
    pub(crate) shares: Vec<(usize, i64)>,
}

impl Gpu {
    pub(crate) fn used(&self) -> i64 {
        self.shares.iter().map(|(_, m)| m).sum()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) cpu_free: i128,
    pub(crate) mem_free: i128,
    pub(crate) pods_free: i128,
    pub(crate) gpus: Vec<Gpu>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) unschedulable: bool,
    /// Its taints (see `untolerated`).
    pub(crate) taints: Vec<Taint>,
    pub(crate) pods_cap: i128,
    /// Held whole by one pod of a `node`-unit queue.
    pub(crate) exclusive: bool,
}

/// One of the resources queues, tenants and fair share count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dim {
    Cpu,
    Memory,
    Gpu,
}

impl Dim {
    pub(crate) const ALL: [Dim; 3] = [Dim::Cpu, Dim::Memory, Dim::Gpu];

    /// Its name in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dim::Cpu => "cpu",
            Dim::Memory => "memory",
            Dim::Gpu => "GPU",
        }
    }
}

/// A value per resource: CPU (thousandths), memory (bytes), GPU equivalents (thousandths).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PerResource<T> {
    pub(crate) cpu: T,
    pub(crate) memory: T,
    pub(crate) gpu: T,
}

/// Amounts of every resource: what a pod, a gang or a queue holds or may hold.
pub(crate) type Resources = PerResource<i128>;

/// Bounds per resource (a queue's capability or guarantee, a tenant's quota): `None` where
/// the resource is not bounded.
pub(crate) type Bounds = PerResource<Option<i128>>;

impl<T: Copy> PerResource<T> {
    pub(crate) fn map<U>(self, f: impl Fn(T) -> U) -> PerResource<U> {
        PerResource {
            cpu: f(self.cpu),
            memory: f(self.memory),
            gpu: f(self.gpu),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = T> + '_ {
        Dim::ALL.into_iter().map(|d| self[d])
    }
}

impl<T> std::ops::Index<Dim> for PerResource<T> {
    type Output = T;
    fn index(&self, d: Dim) -> &T {
        match d {
            Dim::Cpu => &self.cpu,
            Dim::Memory => &self.memory,
            Dim::Gpu => &self.gpu,
        }
    }
}

impl<T> std::ops::IndexMut<Dim> for PerResource<T> {
    fn index_mut(&mut self, d: Dim) -> &mut T {
        match d {
            Dim::Cpu => &mut self.cpu,
            Dim::Memory => &mut self.memory,
            Dim::Gpu => &mut self.gpu,
        }
    }
}

/// What a pod holds. Dominant-resource fair share compares these against the cluster's
/// totals.
pub(crate) fn usage(r: &Req) -> Resources {
    Resources {
        cpu: r.cpu,
        memory: r.mem,
        gpu: gpu_milli(r) as i128,
    }
}

pub(crate) fn add(a: &mut Resources, b: Resources, sign: i128) {
    for d in Dim::ALL {
        a[d] += sign * b[d];
    }
}

/// GPU-equivalents in thousandths: whole GPUs, fractions, MIG instances by compute slices.
pub(crate) fn gpu_milli(r: &Req) -> i64 {
    let mig: i64 = r
        .mig
        .iter()
        .map(|(p, n)| mig::compute_slices(p).unwrap_or(7) as i64 * 1000 / 7 * *n as i64)
        .sum();
    r.gpus as i64 * 1000 + r.gpu_milli + mig
}

pub(crate) fn parse_req(
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

/// A request as a user wrote it, for messages.
pub(crate) fn describe(r: &Req) -> String {
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

/// Take `req` on `node` for `pod`; false (and `node` unchanged in meaning) if it does not fit.
pub(crate) fn take_on(node: &mut Node, req: &Req, pod: usize, dynamic: bool) -> bool {
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
pub(crate) fn take_devices(
    node: &mut Node,
    req: &Req,
    pod: usize,
    devices: &[String],
) -> Result<(), String> {
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
