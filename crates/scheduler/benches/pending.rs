//! Memory and time of one scheduling cycle with 10,000 pending pods on the seed's 16 nodes.
//!
//!     cargo bench -p scheduler --bench pending
//!
//! A counting allocator records the peak heap the cycle adds over the loaded scenario.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use scheduler::{run, NodeSpec, PodSpec, Quantity, Scenario};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator with the same arguments; the
// counting around it allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the same layout.
        let p = unsafe { System.alloc(l) };
        let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) };
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static A: Counting = Counting;

fn main() {
    let mut s = Scenario {
        actions: vec!["enqueue".into(), "allocate".into(), "backfill".into()],
        ..Default::default()
    };
    for i in 0..16 {
        let mut a = BTreeMap::new();
        a.insert("cpu".to_string(), Quantity::Number(192.0));
        a.insert("nvidia.com/gpu".to_string(), Quantity::Number(8.0));
        s.nodes.push(NodeSpec {
            name: format!("gpu-{i:02}"),
            allocatable: a,
            ..Default::default()
        });
    }
    for i in 0..10_000 {
        let mut r = BTreeMap::new();
        r.insert("cpu".to_string(), Quantity::Number(1.0));
        r.insert("nvidia.com/gpu".to_string(), Quantity::Number(1.0));
        s.pods.push(PodSpec {
            name: format!("p{i}"),
            namespace: "t".into(),
            group: String::new(),
            phase: scheduler::PodPhase::Pending,
            requests: r,
            preemptable: true,
            ..Default::default()
        });
    }
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t0 = Instant::now();
    let out = run(&s).expect("runs");
    let secs = t0.elapsed().as_secs_f64();
    let peak = PEAK.load(Ordering::Relaxed) - base;
    println!(
        "10,000 pending pods, 16 nodes x 8 GPUs: one cycle bound {} pods in {secs:.3} s; the cycle's peak heap {:.1} MiB ({} bytes per pending pod)",
        out.binds.len(),
        peak as f64 / 1048576.0,
        peak / 10_000
    );
}
