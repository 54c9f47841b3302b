//! Simulators that run the scheduler's own placement code.
//!
//! `placement`: the FGD paper's method (Weng et al., USENIX ATC'23) on its trace format
//! (`../shared/traces/openb/README.md`): the trace is shuffled with a seed and topped up with
//! pods drawn at random (with replacement) until the requested GPUs reach `tune` times the
//! cluster's capacity; pods arrive one at a time and are placed at once or fail; there are no
//! departures. The metric is the GPU allocation ratio against the arrived GPU demand.

#![forbid(unsafe_code)]

pub mod jobs;

use std::path::Path;

use placement::{Cluster, NodeState, Policy, Request};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("{file}: {message}")]
    Trace { file: String, message: String },
}

fn trace_err(file: &Path, message: impl Into<String>) -> SimError {
    SimError::Trace {
        file: file.display().to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Trace {
    pub nodes: Vec<NodeState>,
    pub models: Vec<String>,
    pub pods: Vec<Request>,
}

#[derive(serde::Deserialize)]
struct NodeRow {
    cpu_milli: i64,
    memory_mib: i64,
    gpu: u32,
    model: String,
}

#[derive(serde::Deserialize)]
struct PodRow {
    cpu_milli: i64,
    memory_mib: i64,
    num_gpu: u8,
    gpu_milli: i32,
    #[serde(default)]
    gpu_spec: String,
}

/// Read the nodes and pods CSV files of the openb format.
pub fn load_trace(nodes: &Path, pods: &Path) -> Result<Trace, SimError> {
    let mut models: Vec<String> = Vec::new();
    let model_index = |m: &str, models: &mut Vec<String>| -> u16 {
        match models.iter().position(|x| x == m) {
            Some(i) => i as u16,
            None => {
                models.push(m.to_string());
                (models.len() - 1) as u16
            }
        }
    };
    let mut out_nodes = Vec::new();
    let mut rd = csv::Reader::from_path(nodes).map_err(|e| trace_err(nodes, e.to_string()))?;
    for (i, row) in rd.deserialize::<NodeRow>().enumerate() {
        let r = row.map_err(|e| trace_err(nodes, format!("row {}: {e}", i + 2)))?;
        let model = model_index(&r.model, &mut models);
        out_nodes.push(NodeState::empty(
            r.cpu_milli,
            r.memory_mib,
            model,
            r.gpu as usize,
        ));
    }
    let mut out_pods = Vec::new();
    let mut rd = csv::Reader::from_path(pods).map_err(|e| trace_err(pods, e.to_string()))?;
    for (i, row) in rd.deserialize::<PodRow>().enumerate() {
        let r = row.map_err(|e| trace_err(pods, format!("row {}: {e}", i + 2)))?;
        let mut mask = 0u64;
        for m in r.gpu_spec.split('|').filter(|m| !m.is_empty()) {
            let k = model_index(m, &mut models);
            if k < 64 {
                mask |= 1 << k;
            }
        }
        if r.num_gpu > 0 && !(1..=placement::MILLI).contains(&r.gpu_milli) {
            return Err(trace_err(
                pods,
                format!("row {}: gpu_milli {} is not 1..1000", i + 2, r.gpu_milli),
            ));
        }
        out_pods.push(Request {
            cpu: r.cpu_milli,
            mem: r.memory_mib,
            num_gpu: r.num_gpu,
            milli: if r.num_gpu == 0 { 0 } else { r.gpu_milli },
            models: mask,
        });
    }
    Ok(Trace {
        nodes: out_nodes,
        models,
        pods: out_pods,
    })
}

/// One run's curve and summary.
#[derive(Debug, Clone, Serialize)]
pub struct PlacementReport {
    pub policy: String,
    pub seed: u64,
    pub tune: f64,
    /// (arrived GPU demand %, allocation ratio %) at every whole percent of arrived demand.
    pub curve: Vec<(u32, f64)>,
    pub alloc_at_100: f64,
    pub alloc_at_130: f64,
    pub unallocated_gpus_at_130: f64,
    pub pods_arrived: usize,
    pub pods_placed: usize,
    /// Wall-clock seconds of the placement decisions alone.
    pub decide_seconds: f64,
}

/// The workload of one run: the trace shuffled, then topped up with random draws.
pub fn workload(trace: &Trace, seed: u64, tune: f64, capacity_milli: i64) -> Vec<Request> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pods = trace.pods.clone();
    pods.shuffle(&mut rng);
    let target = tune * capacity_milli as f64;
    let mut demand: f64 = pods.iter().map(|p| p.gpu_total() as f64).sum();
    if !trace.pods.is_empty() {
        while demand < target {
            let p = trace.pods[rng.gen_range(0..trace.pods.len())];
            demand += p.gpu_total() as f64;
            pods.push(p);
        }
    }
    pods
}

pub fn run_placement(trace: &Trace, policy: Policy, seed: u64, tune: f64) -> PlacementReport {
    // FGD's simulator keeps the most popular shapes covering 95% of the pods (its experiments'
    // `podPopularityThreshold`); ONYX uses the same shapes, each with the share of its pods
    // allowed on each GPU model.
    let typical = if policy == Policy::Onyx {
        let shapes: Vec<(i64, u8, i32, u64)> = trace
            .pods
            .iter()
            .map(|p| (p.cpu, p.num_gpu, p.milli, p.models))
            .collect();
        placement::typical_pods_by_model(&shapes, 0.95, trace.models.len())
    } else {
        let shapes: Vec<(i64, u8, i32)> = trace
            .pods
            .iter()
            .map(|p| (p.cpu, p.num_gpu, p.milli))
            .collect();
        placement::typical_pods(&shapes, 0.95)
    };
    let mut cluster = Cluster::for_policy(trace.nodes.clone(), typical, policy);
    let capacity = cluster.gpu_capacity_milli;
    let pods = workload(trace, seed, tune, capacity);
    // The placement's own random source, apart from the workload's.
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5151);
    let mut arrived: i64 = 0;
    let mut allocated: i64 = 0;
    let mut curve: Vec<(u32, f64)> = Vec::new();
    let mut next_pct = 0u32;
    let mut alloc_at_100 = None;
    let mut placed = 0;
    let t0 = std::time::Instant::now();
    for p in &pods {
        arrived += p.gpu_total();
        if cluster.place(p, policy, &mut rng).is_some() {
            allocated += p.gpu_total();
            placed += 1;
        }
        let pct = arrived as f64 / capacity as f64 * 100.0;
        let ratio = allocated as f64 / capacity as f64 * 100.0;
        while (next_pct as f64) <= pct && next_pct as f64 <= tune * 100.0 {
            curve.push((next_pct, ratio));
            next_pct += 1;
        }
        if alloc_at_100.is_none() && pct >= 100.0 {
            alloc_at_100 = Some(ratio);
        }
    }
    let decide_seconds = t0.elapsed().as_secs_f64();
    let end = allocated as f64 / capacity as f64 * 100.0;
    debug_assert_eq!(allocated, cluster.gpu_allocated_milli());
    PlacementReport {
        policy: format!("{policy:?}").to_lowercase(),
        seed,
        tune,
        curve,
        alloc_at_100: alloc_at_100.unwrap_or(end),
        alloc_at_130: end,
        unallocated_gpus_at_130: capacity as f64 / 1000.0 * (1.0 - end / 100.0),
        pods_arrived: pods.len(),
        pods_placed: placed,
        decide_seconds,
    }
}
