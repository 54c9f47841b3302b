//! FGD's fragmentation measure. For a node and a typical pod shape, the node's free GPU
//! capacity that the shape cannot use counts as fragment: all of it when the shape does not fit
//! the node (not enough CPU, or not enough GPUs with the per-GPU share free), otherwise the
//! free capacity of the GPUs too small for the shape's per-GPU share. A node's fragmentation
//! is the popularity-weighted sum over the typical shapes (`NodeGpuShareFragAmountScore` in the
//! paper's simulator; CPU-only shapes count the node's whole free GPU capacity). Memory plays
//! no part, as in the paper.

use std::cell::RefCell;

use fnv::FnvHashMap;

use crate::NodeState;

/// A pod shape of the workload and how often it occurs (frequencies sum to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct TypicalPod {
    pub cpu: i64,
    pub num_gpu: u8,
    pub milli: i32,
    pub freq: f64,
}

pub struct Fragmentation {
    typical: Vec<TypicalPod>,
    /// Also count the GPU capacity the node's CPU cannot serve (see `with_cpu_stranding`).
    cpu_stranding: bool,
    memo: RefCell<FnvHashMap<(i64, Vec<i32>), f64>>,
}

impl Fragmentation {
    /// FGD's measure, as its simulator computes it.
    pub fn new(typical: Vec<TypicalPod>) -> Fragmentation {
        Fragmentation {
            typical,
            cpu_stranding: false,
            memo: RefCell::new(FnvHashMap::default()),
        }
    }

    /// FGD's measure extended to CPU: for a shape that fits, the free GPU capacity beyond what
    /// the node's free CPU serves at the shape's ratio of CPU to GPU is a fragment too. FGD
    /// counts a node's GPUs as fragment for a shape only when not even one copy fits; a node
    /// with eight free GPUs and the CPU for one more pod of the shape strands the other seven
    /// just as surely. (ONYX's default; the measure is otherwise FGD's.)
    pub fn with_cpu_stranding(typical: Vec<TypicalPod>) -> Fragmentation {
        Fragmentation {
            cpu_stranding: true,
            ..Fragmentation::new(typical)
        }
    }

    pub fn typical(&self) -> &[TypicalPod] {
        &self.typical
    }

    /// The node's fragmentation in thousandths of a GPU (memoised by CPU left and GPU shares).
    pub fn of(&self, s: &NodeState) -> f64 {
        let key = (s.cpu_left, s.gpu_left.clone());
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
        let mut frag = 0.0;
        for t in &self.typical {
            if t.milli == 0 {
                // CPU-only shapes leave every free GPU share idle.
                frag += t.freq * total;
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
                let mut usable = s.gpu_left_total() - small;
                if self.cpu_stranding && t.cpu > 0 {
                    // The GPU capacity the free CPU serves at the shape's CPU per GPU, not
                    // rounded down to whole copies: rounding makes one core decide between
                    // no fragment and a whole GPU of it, and placement then chases those
                    // steps (on multi-GPU workloads it broke whole nodes to avoid them).
                    let served =
                        s.cpu_left as i128 * t.num_gpu as i128 * t.milli as i128 / t.cpu as i128;
                    usable = usable.min(served.min(i64::MAX as i128) as i64);
                }
                frag += t.freq * (s.gpu_left_total() - usable) as f64;
            } else {
                frag += t.freq * total;
            }
        }
        frag
    }
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
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cpu: i64, gpus: &[i32]) -> NodeState {
        let mut g = gpus.to_vec();
        g.sort_unstable_by(|a, b| b.cmp(a));
        NodeState {
            cpu_left: cpu,
            mem_left: 1 << 40,
            model: 0,
            gpu_left: g,
        }
    }

    #[test]
    fn fragment_is_what_the_typical_shape_cannot_use() {
        // One typical shape: half a GPU, 4 cores.
        let f = Fragmentation::new(vec![TypicalPod {
            cpu: 4000,
            num_gpu: 1,
            milli: 500,
            freq: 1.0,
        }]);
        // GPUs with 1000 and 300 free: the 300 is a fragment.
        assert_eq!(f.of(&node(8000, &[1000, 300])), 300.0);
        // Not enough CPU: everything free is a fragment.
        assert_eq!(f.of(&node(2000, &[1000, 300])), 1300.0);
        // Nothing free: no fragment.
        assert_eq!(f.of(&node(8000, &[0, 0])), 0.0);
        // Whole-GPU shapes: partly used GPUs are fragments; 2-GPU shapes need two free GPUs.
        let g = Fragmentation::new(vec![TypicalPod {
            cpu: 0,
            num_gpu: 2,
            milli: 1000,
            freq: 1.0,
        }]);
        assert_eq!(g.of(&node(1, &[1000, 1000, 400])), 400.0);
        assert_eq!(g.of(&node(1, &[1000, 400])), 1400.0);
    }

    #[test]
    fn cpu_stranding_counts_the_gpus_the_cpu_cannot_serve() {
        let shape = || {
            vec![TypicalPod {
                cpu: 11_000,
                num_gpu: 1,
                milli: 1000,
                freq: 1.0,
            }]
        };
        // Eight free GPUs, CPU for two pods of the shape: the other six are stranded.
        let n = node(22_000, &[1000; 8]);
        assert_eq!(Fragmentation::new(shape()).of(&n), 0.0);
        assert_eq!(Fragmentation::with_cpu_stranding(shape()).of(&n), 6000.0);
        // Not rounded to whole copies: 16.5 cores serve 1.5 GPUs.
        let n = node(16_500, &[1000; 8]);
        assert_eq!(Fragmentation::with_cpu_stranding(shape()).of(&n), 6500.0);
        // CPU for all eight: nothing stranded; partly used GPUs still count as in FGD.
        let roomy = node(96_000, &[1000, 1000, 300]);
        assert_eq!(Fragmentation::with_cpu_stranding(shape()).of(&roomy), 300.0);
        // Shares: 9 cores serve 9/4 half-GPU pods (1,125 thousandths) of 2.5 GPUs usable.
        let half = Fragmentation::with_cpu_stranding(vec![TypicalPod {
            cpu: 4000,
            num_gpu: 1,
            milli: 500,
            freq: 1.0,
        }]);
        assert_eq!(
            half.of(&node(9000, &[1000, 1000, 500, 200])),
            2700.0 - 1125.0
        );
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
