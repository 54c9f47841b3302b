//! Placement decisions per second on the seed's 16-node ONYX cluster (8 x H100 each) and the
//! memory a queue of pending requests takes.
//!
//!     cargo bench -p placement --bench decisions
//!
//! The workload is the openb trace's mix of shapes when `../shared/traces/openb` is there
//! (else a fixed mix of whole, multi and fractional GPU requests); when the cluster is full it
//! starts over empty, so every decision is a real one.

use std::time::Instant;

use placement::{typical_pods, Cluster, NodeState, Policy, Request};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn onyx_nodes() -> Vec<NodeState> {
    (0..16)
        .map(|_| NodeState::empty(192_000, 1_048_576, 0, 8))
        .collect()
}

fn shapes() -> Vec<Request> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/traces/openb/openb_pod_list_default.csv"
    );
    if let Ok(text) = std::fs::read_to_string(path) {
        let mut out = Vec::new();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 5 {
                continue;
            }
            let num_gpu: u8 = f[3].parse().unwrap_or(0);
            out.push(Request {
                cpu: f[1].parse::<i64>().unwrap_or(0).min(32_000),
                mem: f[2].parse::<i64>().unwrap_or(0).min(65_536),
                num_gpu,
                milli: if num_gpu == 0 {
                    0
                } else {
                    f[4].parse().unwrap_or(1000)
                },
                models: 0,
            });
        }
        eprintln!("workload: the openb trace's {} pod shapes", out.len());
        return out;
    }
    eprintln!("workload: ../shared/traces/openb is not here; a fixed mix of requests");
    vec![
        Request {
            cpu: 8000,
            mem: 32768,
            num_gpu: 1,
            milli: 1000,
            models: 0,
        },
        Request {
            cpu: 4000,
            mem: 16384,
            num_gpu: 1,
            milli: 500,
            models: 0,
        },
        Request {
            cpu: 32000,
            mem: 131072,
            num_gpu: 8,
            milli: 1000,
            models: 0,
        },
        Request {
            cpu: 2000,
            mem: 8192,
            num_gpu: 1,
            milli: 250,
            models: 0,
        },
    ]
}

fn main() {
    let shapes = shapes();
    let typical = typical_pods(
        &shapes
            .iter()
            .map(|r| (r.cpu, r.num_gpu, r.milli))
            .collect::<Vec<_>>(),
        0.95,
    );
    let mut rng = StdRng::seed_from_u64(42);
    for policy in [Policy::Onyx, Policy::Fgd, Policy::BestFit] {
        let mut cluster = Cluster::for_policy(onyx_nodes(), typical.clone(), policy);
        let n = 200_000;
        let t0 = Instant::now();
        let mut failures = 0;
        for _ in 0..n {
            let r = shapes[rng.gen_range(0..shapes.len())];
            if cluster.place(&r, policy, &mut rng).is_none() {
                failures += 1;
                if failures > 50 {
                    cluster = Cluster::for_policy(onyx_nodes(), typical.clone(), policy);
                    failures = 0;
                }
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "{policy:?}: {n} decisions on 16 nodes in {secs:.3} s = {:.0}/s",
            n as f64 / secs
        );
    }
    println!(
        "memory: a pending request is {} bytes; 10,000 pending pods take {:.0} KiB",
        std::mem::size_of::<Request>(),
        10_000.0 * std::mem::size_of::<Request>() as f64 / 1024.0
    );
}
