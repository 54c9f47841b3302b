//! Engine cost per task on generated DAGs, with a simulated executor that finishes every pod
//! at once (one `PodDone` event per pod, as the real shell sends them).
//!
//!     cargo bench -p workflow-engine --bench dag
//!
//! Prints, per DAG size, the CPU time per task; it should stay flat as the DAG grows.

use std::alloc::{GlobalAlloc, Layout};
use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use workflow_engine::{Action, Engine, EngineConfig, Event, PodResult, TemplateStore};

// The `onyx` binary runs on mimalloc; measure the engine on the same allocator, counting
// live bytes (and their peak) and allocations: memory per task is what the first large run
// of a process pays for, in fresh pages the kernel zeroes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to mimalloc with the same arguments; the counting around
// it allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 0);
        // SAFETY: the caller\'s guarantees for this call are mimalloc\'s, passed on unchanged.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.store(
            LIVE.load(Ordering::Relaxed) - layout.size(),
            Ordering::Relaxed,
        );
        // SAFETY: the caller\'s guarantees for this call are mimalloc\'s, passed on unchanged.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, layout.size());
        // SAFETY: the caller\'s guarantees for this call are mimalloc\'s, passed on unchanged.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

/// Plain loads and stores, not read-modify-write atomics: the bench is single-threaded, and a
/// locked instruction per allocation would cost more than the allocation.
fn count(add: usize, remove: usize) {
    let live = LIVE.load(Ordering::Relaxed) + add - remove;
    LIVE.store(live, Ordering::Relaxed);
    if live > PEAK.load(Ordering::Relaxed) {
        PEAK.store(live, Ordering::Relaxed);
    }
    ALLOCS.store(ALLOCS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// `width` independent chains, `n` tasks in all; task i depends on task i - width.
fn dag_yaml(n: usize, width: usize) -> String {
    let mut y = String::from("apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: bench}\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n");
    for i in 0..n {
        let _ = write!(y, "      - {{name: t{i}, template: work, arguments: {{parameters: [{{name: i, value: '{i}'}}]}}");
        if i >= width {
            let _ = write!(y, ", depends: t{}", i - width);
        }
        y.push_str("}\n");
    }
    y.push_str("  - name: work\n    inputs: {parameters: [{name: i}]}\n    container: {image: argoproj/argosay:v2, args: [echo, '{{inputs.parameters.i}}']}\n");
    y
}

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (single-threaded bench: the engine's time).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

fn run(n: usize, width: usize) -> (f64, f64, Memory) {
    let yaml = dag_yaml(n, width);
    let (objs, diags) = workflow_model::load_str("bench.yaml", &yaml);
    assert!(diags.is_empty(), "{diags:?}");
    let workflow_model::Object::Workflow(wf) = &objs[0].object else {
        panic!("not a workflow")
    };
    let now = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let live0 = LIVE.load(Ordering::Relaxed);
    PEAK.store(live0, Ordering::Relaxed);
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let cpu0 = cpu_seconds();
    let wall = Instant::now();
    let mut engine = Engine::new(
        wf,
        "bench",
        "uid",
        &[],
        Arc::new(TemplateStore::default()),
        EngineConfig::default(),
        now,
    )
    .expect("engine");
    let mut pending: Vec<Action> = engine.start(now);
    let mut done = 0usize;
    while let Some(a) = pending.pop() {
        if let Action::StartPod(req) = a {
            done += 1;
            let ev = Event::PodDone(PodResult {
                node_id: req.node_id.clone(),
                exit_code: Some(0),
                stdout: Some("ok\n".into()),
                ..Default::default()
            });
            pending.extend(engine.handle(ev, now));
        }
    }
    assert!(engine.is_finished(), "the workflow did not finish");
    assert_eq!(engine.phase().as_str(), "Succeeded");
    assert_eq!(done, n);
    let cpu = cpu_seconds() - cpu0;
    let wall = wall.elapsed().as_secs_f64();
    let mem = Memory {
        peak_per_task: (PEAK.load(Ordering::Relaxed) - live0) as f64 / n as f64,
        live_per_task: LIVE.load(Ordering::Relaxed).saturating_sub(live0) as f64 / n as f64,
        allocs_per_task: (ALLOCS.load(Ordering::Relaxed) - allocs0) as f64 / n as f64,
    };
    drop(engine);
    (cpu, wall, mem)
}

struct Memory {
    peak_per_task: f64,
    live_per_task: f64,
    allocs_per_task: f64,
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    println!(
        "{:>8} {:>6} {:>10} {:>10} {:>12} {:>10} {:>10} {:>12}",
        "tasks", "width", "cpu s", "wall s", "cpu µs/task", "peak B/t", "held B/t", "allocs/task"
    );
    for n in sizes {
        for width in [100, n] {
            let (cpu, wall, mem) = run(n, width);
            println!(
                "{n:>8} {width:>6} {cpu:>10.3} {wall:>10.3} {:>12.1} {:>10.0} {:>10.0} {:>12.0}",
                cpu * 1e6 / n as f64,
                mem.peak_per_task,
                mem.live_per_task,
                mem.allocs_per_task
            );
        }
    }
}
