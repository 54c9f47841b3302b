//! Placement invariants, for every policy: no node is ever over-committed, a request is placed
//! only where it fits, and what is allocated is exactly what was placed.

use placement::{fit, typical_pods, Cluster, NodeState, Policy, Request, MILLI};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn nodes() -> Vec<NodeState> {
    let mut v = Vec::new();
    for (i, gpus) in [8usize, 8, 4, 2, 2, 1].into_iter().enumerate() {
        v.push(NodeState {
            cpu_left: 32_000 + 16_000 * (i as i64 % 2),
            cpu_capacity: 32_000 + 16_000 * (i as i64 % 2),
            mem_left: 256 * 1024,
            model: (i % 2) as u16,
            gpu_left: vec![MILLI; gpus],
        });
    }
    v
}

fn request() -> impl Strategy<Value = Request> {
    (
        0i64..40_000,
        0i64..100_000,
        prop_oneof![Just(0u8), Just(1), Just(2), Just(4), Just(8)],
        1i32..=1000,
        0u64..4,
    )
        .prop_map(|(cpu, mem, num_gpu, milli, models)| Request {
            cpu,
            mem,
            num_gpu,
            milli: if num_gpu == 0 {
                0
            } else if num_gpu > 1 {
                MILLI
            } else {
                milli
            },
            models,
        })
}

proptest! {
    #[test]
    fn no_node_is_ever_over_committed(reqs in proptest::collection::vec(request(), 1..120), policy in 0usize..5, seed in 0u64..1000) {
        let policy = [Policy::Random, Policy::BestFit, Policy::DotProd, Policy::Fgd, Policy::Onyx][policy];
        let shapes: Vec<(i64, u8, i32)> = reqs.iter().map(|r| (r.cpu, r.num_gpu, r.milli)).collect();
        let mut c = Cluster::new(nodes(), typical_pods(&shapes, 0.95));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut placed_milli = 0i64;
        for r in &reqs {
            let before: Vec<NodeState> = (0..c.node_count()).map(|i| c.state(i).clone()).collect();
            match c.place(r, policy, &mut rng) {
                Some(p) => {
                    prop_assert!(fit(&before[p.node], r, None).is_some() || r.num_gpu == 1, "placed where it does not fit");
                    placed_milli += r.gpu_total();
                    let s = c.state(p.node);
                    prop_assert!(s.cpu_left >= 0 && s.mem_left >= 0);
                    prop_assert!(s.gpu_left.iter().all(|g| (0..=MILLI).contains(g)));
                    prop_assert!(r.models == 0 || r.models & (1 << s.model) != 0, "wrong GPU model");
                }
                None => {
                    // Nothing fits anywhere.
                    prop_assert!(before.iter().all(|s| fit(s, r, None).is_none()));
                }
            }
        }
        prop_assert_eq!(c.gpu_allocated_milli(), placed_milli);
    }
}

#[test]
fn onyx_packs_share_pods_onto_the_tightest_gpu() {
    let n = NodeState {
        cpu_left: 64_000,
        cpu_capacity: 64_000,
        mem_left: 1 << 20,
        model: 0,
        gpu_left: vec![MILLI, 600, 300],
    };
    let typical = typical_pods(&[(1000, 1, 500), (1000, 1, 1000)], 1.0);
    let mut c = Cluster::new(vec![n], typical);
    let r = Request {
        cpu: 1000,
        mem: 1,
        num_gpu: 1,
        milli: 250,
        models: 0,
    };
    c.place(&r, Policy::Onyx, &mut StdRng::seed_from_u64(1))
        .unwrap();
    // The 300 GPU took it: the whole GPU stays whole, the 600 still takes a half-GPU pod.
    assert_eq!(c.state(0).gpu_left, vec![MILLI, 600, 50]);
}

#[test]
fn onyx_keeps_the_larger_node_among_equal_scores() {
    // A 64-core node with two GPUs and a 128-core node with one. An 11-core 1-GPU pod leaves
    // neither fragmented for the typical shape (itself), so the scores tie; FGD's fullest node
    // is the 128-core one (no GPU left after), ONYX's is the smaller node, and the 128-core
    // node stays free for the 100-core pod that only it can host.
    let nodes = vec![
        NodeState::empty(64_000, 1 << 20, 0, 2),
        NodeState::empty(128_000, 1 << 20, 0, 1),
    ];
    let small = Request {
        cpu: 11_000,
        mem: 1,
        num_gpu: 1,
        milli: MILLI,
        models: 0,
    };
    let large = Request {
        cpu: 100_000,
        ..small
    };
    let typical = || typical_pods(&[(11_000, 1, MILLI)], 1.0);
    let mut rng = StdRng::seed_from_u64(1);

    let mut onyx = Cluster::for_policy(nodes.clone(), typical(), Policy::Onyx);
    assert_eq!(onyx.place(&small, Policy::Onyx, &mut rng).unwrap().node, 0);
    assert_eq!(onyx.place(&large, Policy::Onyx, &mut rng).unwrap().node, 1);

    let mut fgd = Cluster::for_policy(nodes, typical(), Policy::Fgd);
    assert_eq!(fgd.place(&small, Policy::Fgd, &mut rng).unwrap().node, 1);
    assert!(fgd.place(&large, Policy::Fgd, &mut rng).is_none());
}
