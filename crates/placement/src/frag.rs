//! FGD's fragmentation measure. For a node and a typical pod shape, the node's free GPU
//! capacity that the shape cannot use counts as fragment: all of it when the shape does not fit
//! the node (not enough CPU, or not enough GPUs with the per-GPU share free), otherwise the
//! free capacity of the GPUs too small for the shape's per-GPU share. A node's fragmentation
//! is the popularity-weighted sum over the typical shapes (`NodeGpuShareFragAmountScore` in the
//! paper's simulator; CPU-only shapes count the node's whole free GPU capacity). Memory plays
//! no part, as in the paper. ONYX's measure (`Fragmentation::onyx`) adds two things FGD's
//! leaves out: GPUs stranded behind used-up CPU, and GPU models a shape's pods may not use.

use std::cell::RefCell;

use fnv::FnvHashMap;

use crate::{NodeState, MILLI};

/// A pod shape of the workload and how often it occurs (frequencies sum to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct TypicalPod {
    pub cpu: i64,
    pub num_gpu: u8,
    pub milli: i32,
    pub freq: f64,
    /// Per GPU model (index), the fraction of this shape's pods allowed on it; empty: every
    /// pod may use any model.
    pub allowed: Vec<f64>,
}

impl TypicalPod {
    /// The fraction of this shape's pods that may use a GPU of `model`.
    fn allowed_on(&self, model: u16) -> f64 {
        if self.allowed.is_empty() {
            1.0
        } else {
            self.allowed.get(model as usize).copied().unwrap_or(0.0)
        }
    }
}

pub struct Fragmentation {
    typical: Vec<TypicalPod>,
    /// Also count the GPU capacity that placement stranded behind used-up CPU (see `onyx`):
    /// the thousandths of a GPU the workload's GPU pods use per thousandth of a core.
    cpu_stranding: Option<f64>,
    /// Keyed by everything `compute` reads.
    memo: RefCell<FnvHashMap<MemoKey, f64>>,
}

/// CPU left, CPU capacity, GPU model, free share per GPU.
type MemoKey = (i64, i64, u16, Vec<i32>);

impl Fragmentation {
    /// FGD's measure, as its simulator computes it.
    pub fn new(typical: Vec<TypicalPod>) -> Fragmentation {
        Fragmentation {
            typical,
            cpu_stranding: None,
            memo: RefCell::new(FnvHashMap::default()),
        }
    }

    /// ONYX's measure: FGD's, plus, for a shape that fits, the free GPU capacity that placement
    /// stranded behind used-up CPU. FGD counts a node's GPUs as fragment for a shape only when
    /// not even one copy fits; a node with eight free GPUs and the CPU for one more pod strands
    /// the other seven just as surely. Stranded is the free GPU capacity beyond what the free
    /// CPU serves at the typical workload's CPU per GPU (its GPU pods' GPU demand over their
    /// CPU demand, by frequency), less what the empty node itself cannot serve:
    /// - the workload's ratio, not each shape's own: a node is filled by the mix, and per shape
    ///   a pod a little heavier on CPU than the node's own ratio "strands" GPUs for the shapes
    ///   near that ratio, which sent such pods to the largest nodes and broke the ones only
    ///   120-core 8-GPU pods fit;
    /// - less the empty node's own shortfall: a node built with little CPU per GPU is not
    ///   fragmented by being empty, and counting its shortfall made placement break whole nodes
    ///   to "use" it (a fresh node's score rose with every GPU taken from it, and 8-GPU pods
    ///   failed from 60% arrived on).
    ///
    /// Model pins count as in FGD's own definition of a shape that cannot fit: a node's whole
    /// free capacity is fragment for the share of a shape's pods that may not use its GPU
    /// model (`TypicalPod::allowed`, from `typical_pods_by_model`), so pods that may run
    /// anywhere fill the models nobody pinned before the ones pinned pods need.
    pub fn onyx(typical: Vec<TypicalPod>) -> Fragmentation {
        let gpu_pods = typical.iter().filter(|t| t.milli > 0);
        let gpu: f64 = gpu_pods
            .clone()
            .map(|t| t.freq * t.num_gpu as f64 * t.milli as f64)
            .sum();
        let cpu: f64 = gpu_pods.map(|t| t.freq * t.cpu as f64).sum();
        Fragmentation {
            // A workload whose GPU pods ask for no CPU strands nothing.
            cpu_stranding: (cpu > 0.0).then_some(gpu / cpu),
            ..Fragmentation::new(typical)
        }
    }

    pub fn typical(&self) -> &[TypicalPod] {
        &self.typical
    }

    /// The node's fragmentation in thousandths of a GPU (memoised by the state it reads).
    pub fn of(&self, s: &NodeState) -> f64 {
        let key = (s.cpu_left, s.cpu_capacity, s.model, s.gpu_left.clone());
        if let Some(v) = self.memo.borrow().get(&key) {
            return *v;
        }
        let v = self.compute(s);
        let mut memo = self.memo.borrow_mut();
        if memo.len() > 1_000_000 {
            memo.clear();
        }
        memo.insert(key, v);
        v
    }

    fn compute(&self, s: &NodeState) -> f64 {
        let total = s.gpu_left_total() as f64;
        if total == 0.0 {
            return 0.0;
        }
        // What the node's CPU serves now and what it never could (`onyx`): the same for
        // every shape, since CPU serves GPUs at the workload's ratio. Not rounded down to
        // whole pods: rounding makes one core decide between no fragment and a whole GPU of
        // it, and placement then chases those steps (on multi-GPU workloads it broke whole
        // nodes to avoid them).
        let cpu_serves = self.cpu_stranding.map(|gpu_per_cpu| {
            let served = |cpu: i64| cpu as f64 * gpu_per_cpu;
            let capacity = (s.gpu_left.len() as i64 * MILLI as i64) as f64;
            (
                served(s.cpu_left),
                (capacity - served(s.cpu_capacity)).max(0.0),
            )
        });
        let mut frag = 0.0;
        for t in &self.typical {
            let allowed = t.allowed_on(s.model);
            // The pods of the shape pinned to other models cannot use any of it.
            frag += (1.0 - allowed) * t.freq * total;
            let freq = allowed * t.freq;
            if freq == 0.0 {
                continue;
            }
            if t.milli == 0 {
                // CPU-only shapes leave every free GPU share idle.
                frag += freq * total;
                continue;
            }
            let usable = s.gpu_left.iter().filter(|g| **g >= t.milli).count();
            let fits_gpu = usable >= t.num_gpu as usize;
            if fits_gpu && s.cpu_left >= t.cpu {
                let small: i64 = s
                    .gpu_left
                    .iter()
                    .filter(|g| **g < t.milli)
                    .map(|g| *g as i64)
                    .sum();
                let mut usable = (s.gpu_left_total() - small) as f64;
                if let Some((served, own_shortfall)) = cpu_serves.filter(|_| t.cpu > 0) {
                    usable -= (usable - served - own_shortfall).max(0.0);
                }
                frag += freq * (total - usable);
            } else {
                frag += freq * total;
            }
        }
        frag
    }
}

/// The typical pods of `typical_pods` over the shapes' (CPU, GPUs, per-GPU share), each with
/// the fraction of its pods allowed on each of the `model_count` GPU models (`models` as in
/// `Request::models`: a mask of model indices, 0 for any). FGD's popularity cut is unchanged,
/// so a shape is typical by how often it occurs whatever models its pods name.
pub fn typical_pods_by_model(
    shapes: &[(i64, u8, i32, u64)],
    popularity: f64,
    model_count: usize,
) -> Vec<TypicalPod> {
    let plain: Vec<(i64, u8, i32)> = shapes.iter().map(|(c, n, m, _)| (*c, *n, *m)).collect();
    let mut typical = typical_pods(&plain, popularity);
    let index: FnvHashMap<(i64, u8, i32), usize> = typical
        .iter()
        .enumerate()
        .map(|(i, t)| ((t.cpu, t.num_gpu, t.milli), i))
        .collect();
    let mut allowed = vec![vec![0usize; model_count]; typical.len()];
    let mut count = vec![0usize; typical.len()];
    for (cpu, num_gpu, milli, models) in shapes {
        let Some(i) = index.get(&(*cpu, *num_gpu, *milli)) else {
            continue;
        };
        count[*i] += 1;
        for (model, n) in allowed[*i].iter_mut().enumerate() {
            if *models == 0 || (model < 64 && models & (1 << model) != 0) {
                *n += 1;
            }
        }
    }
    for ((t, allowed), count) in typical.iter_mut().zip(allowed).zip(count) {
        if allowed.iter().any(|n| *n < count) {
            t.allowed = allowed
                .into_iter()
                .map(|n| n as f64 / count as f64)
                .collect();
        }
    }
    typical
}

/// The typical pods of a workload as FGD's simulator derives them: count each distinct
/// (CPU, GPUs, per-GPU share) shape, keep the most frequent ones until they cover
/// `popularity` (0..1) of the pods, renormalise.
pub fn typical_pods(shapes: &[(i64, u8, i32)], popularity: f64) -> Vec<TypicalPod> {
    let mut counts: FnvHashMap<(i64, u8, i32), usize> = FnvHashMap::default();
    for s in shapes {
        *counts.entry(*s).or_insert(0) += 1;
    }
    let mut list: Vec<((i64, u8, i32), usize)> = counts.into_iter().collect();
    // Most frequent first; equal counts in a fixed order.
    list.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total = shapes.len().max(1) as f64;
    let mut kept = Vec::new();
    let mut covered = 0usize;
    for (shape, n) in list {
        if covered as f64 >= popularity * total {
            break;
        }
        covered += n;
        kept.push((shape, n));
    }
    let covered = covered.max(1) as f64;
    kept.into_iter()
        .map(|((cpu, num_gpu, milli), n)| TypicalPod {
            cpu,
            num_gpu,
            milli,
            freq: n as f64 / covered,
            allowed: Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node with `cpu` of its `capacity` left and the given free share per GPU.
    fn used(cpu: i64, capacity: i64, gpus: &[i32]) -> NodeState {
        let mut g = gpus.to_vec();
        g.sort_unstable_by(|a, b| b.cmp(a));
        NodeState {
            cpu_left: cpu,
            cpu_capacity: capacity,
            mem_left: 1 << 40,
            model: 0,
            gpu_left: g,
        }
    }

    /// A node whose CPU is all free.
    fn node(cpu: i64, gpus: &[i32]) -> NodeState {
        used(cpu, cpu, gpus)
    }

    fn shape(cpu: i64, num_gpu: u8, milli: i32) -> TypicalPod {
        TypicalPod {
            cpu,
            num_gpu,
            milli,
            freq: 1.0,
            allowed: Vec::new(),
        }
    }

    #[test]
    fn fragment_is_what_the_typical_shape_cannot_use() {
        // One typical shape: half a GPU, 4 cores.
        let f = Fragmentation::new(vec![shape(4000, 1, 500)]);
        // GPUs with 1000 and 300 free: the 300 is a fragment.
        assert_eq!(f.of(&node(8000, &[1000, 300])), 300.0);
        // Not enough CPU: everything free is a fragment.
        assert_eq!(f.of(&node(2000, &[1000, 300])), 1300.0);
        // Nothing free: no fragment.
        assert_eq!(f.of(&node(8000, &[0, 0])), 0.0);
        // Whole-GPU shapes: partly used GPUs are fragments; 2-GPU shapes need two free GPUs.
        let g = Fragmentation::new(vec![shape(0, 2, 1000)]);
        assert_eq!(g.of(&node(1, &[1000, 1000, 400])), 400.0);
        assert_eq!(g.of(&node(1, &[1000, 400])), 1400.0);
    }

    /// Equal to a thousandth of a thousandth of a GPU (the measure is in floating point).
    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn cpu_stranding_counts_the_gpus_placement_left_without_cpu() {
        let onyx = || Fragmentation::onyx(vec![shape(11_000, 1, 1000)]);
        // A 96-core node with eight free GPUs and 22 cores left: CPU for two pods of the
        // shape, the other six GPUs are stranded (FGD sees no fragment: one copy fits).
        let n = used(22_000, 96_000, &[1000; 8]);
        assert_eq!(Fragmentation::new(vec![shape(11_000, 1, 1000)]).of(&n), 0.0);
        assert!(close(onyx().of(&n), 6000.0));
        // Not rounded to whole copies: 16.5 cores serve 1.5 GPUs.
        assert!(close(onyx().of(&used(16_500, 96_000, &[1000; 8])), 6500.0));
        // CPU for all eight: nothing stranded; partly used GPUs still count as in FGD.
        assert!(close(onyx().of(&node(96_000, &[1000, 1000, 300])), 300.0));
        // A node built with 44 cores for 8 GPUs serves four pods of the shape when empty:
        // that shortfall is the node's, not placement's, and is no fragment...
        assert!(close(onyx().of(&node(44_000, &[1000; 8])), 0.0));
        // ...nor after a pod of the shape took a GPU and its 11 cores (three left to serve,
        // seven free, still the node's own four short)...
        let one_taken = [1000, 1000, 1000, 1000, 1000, 1000, 1000, 0];
        assert!(close(onyx().of(&used(33_000, 44_000, &one_taken)), 0.0));
        // ...but 11 cores taken by a CPU-only pod strand one GPU more.
        assert!(close(onyx().of(&used(33_000, 44_000, &[1000; 8])), 1000.0));
        // Shares: 9 cores serve 9/4 half-GPU pods (1,125 thousandths) of 2.5 GPUs usable.
        let half = Fragmentation::onyx(vec![shape(4000, 1, 500)]);
        assert!(close(
            half.of(&used(9000, 64_000, &[1000, 1000, 500, 200])),
            2700.0 - 1125.0
        ));
    }

    #[test]
    fn cpu_is_served_at_the_workloads_cpu_per_gpu_not_each_shapes() {
        // Half the pods take 11 cores per GPU, half 1 core: the workload takes 6 cores per
        // GPU, so 22 free cores serve 3.67 of the eight free GPUs, for either shape. (Each
        // shape's own ratio would strand six GPUs for the first and none for the second.)
        let mix = |freq: f64, cpu: i64| TypicalPod {
            freq,
            ..shape(cpu, 1, 1000)
        };
        let f = Fragmentation::onyx(vec![mix(0.5, 11_000), mix(0.5, 1000)]);
        let n = used(22_000, 96_000, &[1000; 8]);
        assert!(close(f.of(&n), 8000.0 - 22_000.0 / 6.0), "{}", f.of(&n));
        // GPU pods that ask for no CPU strand nothing.
        let no_cpu = Fragmentation::onyx(vec![shape(0, 1, 1000)]);
        assert_eq!(no_cpu.of(&n), 0.0);
    }

    #[test]
    fn pods_pinned_to_other_models_count_the_whole_node_as_fragment() {
        // Shape A: 3 pods, one pinned to model 1; shape B: 1 pod on any model.
        let shapes = vec![
            (1000, 1, 1000, 0),
            (1000, 1, 1000, 0),
            (1000, 1, 1000, 1 << 1),
            (2000, 1, 500, 0),
        ];
        let typical = typical_pods_by_model(&shapes, 1.0, 2);
        let a = typical.iter().find(|t| t.cpu == 1000).unwrap();
        assert_eq!(a.allowed, vec![2.0 / 3.0, 1.0]);
        let b = typical.iter().find(|t| t.cpu == 2000).unwrap();
        assert!(b.allowed.is_empty(), "no pod of B is pinned");
        // On a model-0 node with one whole and one 300-free GPU: A's pinned third cannot use
        // any of the 1,300 (A is 3/4 of the workload), the rest of A and all of B only lose
        // the 300.
        let f = Fragmentation::onyx(typical);
        let mut n = node(64_000, &[1000, 300]);
        let expected = 0.75 * (1.0 / 3.0) * 1300.0 + 0.75 * (2.0 / 3.0) * 300.0 + 0.25 * 300.0;
        assert!((f.of(&n) - expected).abs() < 1e-9, "{}", f.of(&n));
        // On a model-1 node every pod may run: only the 300.
        n.model = 1;
        assert!((f.of(&n) - 300.0).abs() < 1e-9);
    }

    #[test]
    fn typical_pods_cover_the_popular_shapes() {
        let shapes = vec![
            (1, 1, 500),
            (1, 1, 500),
            (1, 1, 500),
            (2, 1, 1000),
            (3, 8, 1000),
        ];
        let t = typical_pods(&shapes, 0.6);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].freq, 1.0);
        let all = typical_pods(&shapes, 1.0);
        assert_eq!(all.len(), 3);
        assert!((all.iter().map(|t| t.freq).sum::<f64>() - 1.0).abs() < 1e-9);
    }
}
