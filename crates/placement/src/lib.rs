//! GPU placement on a cluster of nodes: each node's CPU, memory and per-GPU free capacity
//! (in thousandths of a GPU), the fragmentation measure of FGD (Weng et al., USENIX ATC'23)
//! and the placement policies the simulator compares. Pure: the random source is passed in.
//!
//! Nodes in the same state (CPU and memory left, GPU model, the multiset of free GPU shares)
//! are interchangeable for every policy here, so the cluster keeps them in equivalence
//! classes and scores each class once per decision; that is what makes a decision cost
//! O(distinct states) instead of O(nodes).

#![forbid(unsafe_code)]

mod frag;

use fnv::FnvHashMap;
use rand::Rng;

pub use frag::{typical_pods, typical_pods_by_model, Fragmentation, TypicalPod};

/// Thousandths of a GPU per GPU.
pub const MILLI: i32 = 1000;
/// FGD's normalisation constants (their simulator's `MaxSpecCpu`, `MaxSpecGpu`).
pub const MAX_SPEC_CPU: f64 = 128_000.0;
pub const MAX_SPEC_GPU: f64 = 8_000.0;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeState {
    pub cpu_left: i64,
    /// The node's CPU when empty: part of the state because ONYX's measure counts only the
    /// GPUs that placement stranded, not those the node's own shape strands, and keeps large
    /// nodes for the pods only they can host.
    pub cpu_capacity: i64,
    pub mem_left: i64,
    /// Index into the cluster's GPU model names.
    pub model: u16,
    /// Free thousandths per GPU, sorted descending (GPUs of a node are interchangeable).
    pub gpu_left: Vec<i32>,
}

impl NodeState {
    /// An empty node: `cpu` thousandths of a core, `mem` MiB, `gpus` whole GPUs of `model`.
    pub fn empty(cpu: i64, mem: i64, model: u16, gpus: usize) -> NodeState {
        NodeState {
            cpu_left: cpu,
            cpu_capacity: cpu,
            mem_left: mem,
            model,
            gpu_left: vec![MILLI; gpus],
        }
    }

    pub fn gpu_left_total(&self) -> i64 {
        self.gpu_left.iter().map(|g| *g as i64).sum()
    }
}

/// A pod's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Request {
    pub cpu: i64,
    pub mem: i64,
    /// GPUs needed on one node (0: CPU only).
    pub num_gpu: u8,
    /// Thousandths needed on each of those GPUs (1..=1000).
    pub milli: i32,
    /// Allowed GPU models (indices); empty: any.
    pub models: u64,
}

impl Request {
    pub fn gpu_total(&self) -> i64 {
        self.num_gpu as i64 * self.milli as i64
    }
    fn model_ok(&self, model: u16) -> bool {
        self.models == 0 || (model < 64 && self.models & (1 << model) != 0)
    }
}

/// Whether the node can host the request, and the state it would be left in, with the
/// indices (into the sorted `gpu_left`) of the GPUs it would use.
pub fn fit(state: &NodeState, r: &Request, gpu_choice: Option<usize>) -> Option<NodeState> {
    if state.cpu_left < r.cpu || state.mem_left < r.mem || !r.model_ok(state.model) {
        return None;
    }
    let mut next = state.clone();
    next.cpu_left -= r.cpu;
    next.mem_left -= r.mem;
    if r.num_gpu > 0 {
        if r.num_gpu == 1 && r.milli < MILLI {
            let i = match gpu_choice {
                Some(i) => i,
                None => state.gpu_left.iter().position(|g| *g >= r.milli)?,
            };
            if state.gpu_left.get(i).is_none_or(|g| *g < r.milli) {
                return None;
            }
            next.gpu_left[i] -= r.milli;
        } else {
            // Whole GPUs: the request's share on each of `num_gpu` GPUs with that much free.
            let mut need = r.num_gpu as usize;
            for g in next.gpu_left.iter_mut() {
                if need == 0 {
                    break;
                }
                if *g >= r.milli {
                    *g -= r.milli;
                    need -= 1;
                }
            }
            if need > 0 {
                return None;
            }
        }
        next.gpu_left.sort_unstable_by(|a, b| b.cmp(a));
    }
    Some(next)
}

/// The GPU choices a share request has on a node: one per distinct free amount that fits.
pub fn share_choices(state: &NodeState, r: &Request) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut last = None;
    for (i, g) in state.gpu_left.iter().enumerate() {
        if *g >= r.milli && last != Some(*g) {
            out.push(i);
            last = Some(*g);
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A feasible node at random.
    Random,
    /// Least free CPU and GPU left after placement (FGD paper's BestFit: 0.5 CPU + 0.5 GPU,
    /// normalised by 128 cores and 8 GPUs), integer scores, random among ties.
    BestFit,
    /// Tetris' alignment: the node whose free (CPU, GPU) vector, normalised by its capacity,
    /// has the largest dot product with the request's.
    DotProd,
    /// FGD as its simulator scores it: the decrease of the node's fragmentation for the
    /// typical workload, through a sigmoid, as an integer score 0..100 (a share pod takes the
    /// GPU that scores best, the first of equals). Nodes FGD scores alike go to the fullest
    /// one (least GPU, then CPU, left): with that the published figures are reproduced; with
    /// uniformly random ties the same score allocates about 5 points less.
    Fgd,
    /// ONYX's default: FGD's score over ONYX's measure (`Fragmentation::onyx`: GPUs that
    /// placement stranded behind used-up CPU count as fragments, and so does a node's whole
    /// free capacity for the share of a shape's pods pinned to other GPU models; build the
    /// cluster with `Cluster::for_policy` and the typical workload with
    /// `typical_pods_by_model`). Among equal scores the node with the least CPU capacity (large
    /// nodes kept for the pods only they can host), then the fullest; inside the node the
    /// tightest GPU that fits a share pod (best fit), so that whole GPUs stay whole.
    Onyx,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Policy, String> {
        Ok(match s {
            "random" => Policy::Random,
            "bestfit" => Policy::BestFit,
            "dotprod" => Policy::DotProd,
            "fgd" => Policy::Fgd,
            "onyx" => Policy::Onyx,
            other => {
                return Err(format!(
                    "unknown policy {other:?}: expected random, bestfit, dotprod, fgd or onyx"
                ))
            }
        })
    }
}

/// A cluster of nodes grouped by state.
pub struct Cluster {
    /// Per node: its state's class.
    node_class: Vec<usize>,
    classes: Vec<Class>,
    by_state: FnvHashMap<NodeState, usize>,
    /// Capacity of each node (for DotProd's normalisation).
    capacity: Vec<(i64, i64)>,
    pub gpu_capacity_milli: i64,
    frag: Fragmentation,
}

struct Class {
    state: NodeState,
    nodes: Vec<usize>,
    /// Fragmentation of this state for the typical workload (cached).
    frag: f64,
}

/// What a placement did.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub node: usize,
}

impl Cluster {
    /// A cluster scored with FGD's fragmentation measure.
    pub fn new(nodes: Vec<NodeState>, typical: Vec<TypicalPod>) -> Cluster {
        Cluster::with_measure(nodes, Fragmentation::new(typical))
    }

    /// A cluster scored with the measure `policy` uses (ONYX's: `Fragmentation::onyx`).
    pub fn for_policy(nodes: Vec<NodeState>, typical: Vec<TypicalPod>, policy: Policy) -> Cluster {
        let frag = if policy == Policy::Onyx {
            Fragmentation::onyx(typical)
        } else {
            Fragmentation::new(typical)
        };
        Cluster::with_measure(nodes, frag)
    }

    fn with_measure(nodes: Vec<NodeState>, frag: Fragmentation) -> Cluster {
        let mut c = Cluster {
            node_class: Vec::with_capacity(nodes.len()),
            classes: Vec::new(),
            by_state: FnvHashMap::default(),
            capacity: Vec::with_capacity(nodes.len()),
            gpu_capacity_milli: 0,
            frag,
        };
        for (i, mut n) in nodes.into_iter().enumerate() {
            n.gpu_left.sort_unstable_by(|a, b| b.cmp(a));
            c.gpu_capacity_milli += n.gpu_left_total();
            c.capacity.push((n.cpu_left, n.gpu_left_total()));
            let k = c.class_of(n);
            c.classes[k].nodes.push(i);
            c.node_class.push(k);
        }
        c
    }

    fn class_of(&mut self, state: NodeState) -> usize {
        if let Some(k) = self.by_state.get(&state) {
            return *k;
        }
        let frag = self.frag.of(&state);
        self.classes.push(Class {
            state: state.clone(),
            nodes: Vec::new(),
            frag,
        });
        let k = self.classes.len() - 1;
        self.by_state.insert(state, k);
        k
    }

    pub fn node_count(&self) -> usize {
        self.node_class.len()
    }

    pub fn state(&self, node: usize) -> &NodeState {
        &self.classes[self.node_class[node]].state
    }

    fn set_state(&mut self, node: usize, state: NodeState) {
        let old = self.node_class[node];
        if let Some(p) = self.classes[old].nodes.iter().position(|n| *n == node) {
            self.classes[old].nodes.swap_remove(p);
        }
        let k = self.class_of(state);
        self.classes[k].nodes.push(node);
        self.node_class[node] = k;
    }

    /// Place one request by `policy`, or return `None` when no node fits.
    pub fn place(&mut self, r: &Request, policy: Policy, rng: &mut impl Rng) -> Option<Placed> {
        // Candidates: (class, gpu choice, next state, score); higher score wins.
        let mut best: Vec<(usize, NodeState)> = Vec::new();
        let mut best_key: Option<Key> = None;
        for k in 0..self.classes.len() {
            let class = &self.classes[k];
            if class.nodes.is_empty() {
                continue;
            }
            let choices: Vec<Option<usize>> = if r.num_gpu == 1 && r.milli < MILLI {
                share_choices(&class.state, r)
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None]
            };
            // Per class, the best GPU choice (FGD: first best integer score; ONYX: exact).
            let mut class_best: Option<(Key, NodeState)> = None;
            for choice in choices {
                let Some(next) = fit(&class.state, r, choice) else {
                    continue;
                };
                let key = match policy {
                    Policy::Random => (0, 0, 0, 0, 0),
                    Policy::BestFit => {
                        let s = 0.5 * next.cpu_left as f64 / MAX_SPEC_CPU
                            + 0.5 * next.gpu_left_total() as f64 / MAX_SPEC_GPU;
                        (((1.0 - s) * 100.0) as i64, 0, 0, 0, 0)
                    }
                    Policy::DotProd => {
                        let n = class.nodes[0];
                        let (cc, gc) = self.capacity[n];
                        let free_c = class.state.cpu_left as f64 / cc.max(1) as f64;
                        let free_g = class.state.gpu_left_total() as f64 / gc.max(1) as f64;
                        let req_c = r.cpu as f64 / cc.max(1) as f64;
                        let req_g = r.gpu_total() as f64 / gc.max(1) as f64;
                        (((free_c * req_c + free_g * req_g) * 1e6) as i64, 0, 0, 0, 0)
                    }
                    Policy::Fgd => {
                        let after = self.frag.of(&next);
                        let delta = class.frag - after;
                        (
                            (sigmoid(delta / 1000.0) * 100.0) as i64,
                            0,
                            -next.gpu_left_total(),
                            -next.cpu_left,
                            0,
                        )
                    }
                    Policy::Onyx => {
                        let after = self.frag.of(&next);
                        let delta = class.frag - after;
                        let chosen_free = choice.map_or(0, |i| class.state.gpu_left[i] as i64);
                        (
                            (sigmoid(delta / 1000.0) * 100.0) as i64,
                            -next.cpu_capacity,
                            -next.gpu_left_total(),
                            -next.cpu_left,
                            -chosen_free,
                        )
                    }
                };
                if class_best.as_ref().is_none_or(|(b, _)| key > *b) {
                    class_best = Some((key, next));
                }
            }
            let Some((key, next)) = class_best else {
                continue;
            };
            match best_key {
                Some(b) if key < b => {}
                Some(b) if key == b => best.push((k, next)),
                _ => {
                    best_key = Some(key);
                    best.clear();
                    best.push((k, next));
                }
            }
        }
        if best.is_empty() {
            return None;
        }
        // Ties: a node drawn uniformly among every node of the tied classes (kube-scheduler
        // picks uniformly among the best-scored nodes); ONYX's choice is deterministic.
        let (k, next) = if policy == Policy::Onyx {
            best.swap_remove(0)
        } else {
            let total: usize = best.iter().map(|(k, _)| self.classes[*k].nodes.len()).sum();
            let mut pick = rng.gen_range(0..total);
            let mut chosen = 0;
            for (i, (k, _)) in best.iter().enumerate() {
                let n = self.classes[*k].nodes.len();
                if pick < n {
                    chosen = i;
                    break;
                }
                pick -= n;
            }
            best.swap_remove(chosen)
        };
        let nodes = &self.classes[k].nodes;
        let node = if policy == Policy::Onyx {
            *nodes.iter().min().expect("a class in use has nodes")
        } else {
            nodes[rng.gen_range(0..nodes.len())]
        };
        self.set_state(node, next);
        Some(Placed { node })
    }

    /// Place a request on a given node, if it fits there (gangs spread over chosen nodes).
    pub fn place_on(&mut self, node: usize, r: &Request) -> bool {
        match fit(self.state(node), r, None) {
            Some(next) => {
                self.set_state(node, next);
                true
            }
            None => false,
        }
    }

    /// Give back a whole-GPU (or CPU-only) request placed on `node`. GPUs of a node are
    /// interchangeable in its state, so any `num_gpu` fully used GPUs are freed.
    pub fn release_whole(&mut self, node: usize, r: &Request) {
        debug_assert!(
            r.num_gpu == 0 || r.milli == MILLI,
            "only whole-GPU requests are released"
        );
        let mut s = self.state(node).clone();
        s.cpu_left += r.cpu;
        s.mem_left += r.mem;
        let mut need = r.num_gpu as usize;
        for g in s.gpu_left.iter_mut().rev() {
            if need == 0 {
                break;
            }
            if *g == 0 {
                *g = MILLI;
                need -= 1;
            }
        }
        s.gpu_left.sort_unstable_by(|a, b| b.cmp(a));
        self.set_state(node, s);
    }

    /// Nodes whose every GPU is free.
    pub fn free_nodes(&self) -> Vec<usize> {
        (0..self.node_count())
            .filter(|n| {
                let s = self.state(*n);
                !s.gpu_left.is_empty() && s.gpu_left.iter().all(|g| *g == MILLI)
            })
            .collect()
    }

    /// GPU thousandths in use across the cluster.
    pub fn gpu_allocated_milli(&self) -> i64 {
        self.node_class
            .iter()
            .map(|k| &self.classes[*k].state)
            .zip(self.capacity.iter())
            .map(|(s, (_, cap))| cap - s.gpu_left_total())
            .sum()
    }
}

/// A candidate's rank, higher first: score, then the policy's tie-breaks.
type Key = (i64, i64, i64, i64, i64);

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}
