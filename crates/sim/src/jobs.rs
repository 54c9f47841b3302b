//! `onyx sim jobs`: replay a job trace (arrival, duration, GPUs, tenant) on a cluster of
//! 8-GPU nodes, with the placement code of `placement`, under a queueing policy:
//!
//! - `fifo`: jobs start in arrival order; the first job that does not fit blocks the rest;
//! - `backfill`: EASY backfill — the first waiting job gets a reservation at the earliest time
//!   enough GPUs free up (from the running jobs' known ends); later jobs start now if they fit
//!   and either end before that time or leave the reserved GPUs free; at most `DEPTH` waiting
//!   jobs are examined per pass, as Slurm's `bf_max_job_test` does;
//! - `fair`: fair share across tenants — each tenant's jobs in arrival order; the next job
//!   comes from the tenant using the fewest GPUs whose oldest job fits (no reservation: a
//!   tenant's large job waits until it fits).
//!
//! Jobs of up to 8 GPUs run on one node; larger jobs take whole free nodes (a gang).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::path::Path;

use placement::{Cluster, NodeState, Policy, Request, MILLI};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

use crate::SimError;

const DEPTH: usize = 500;

#[derive(Debug, Clone)]
pub struct Job {
    pub submit: i64,
    pub duration: i64,
    pub gpus: u32,
    pub tenant: String,
}

#[derive(serde::Deserialize)]
struct Row {
    timestamp: String,
    duration: f64,
    num_gpus: u32,
    cluster: String,
}

/// Seconds since the Unix epoch of `YYYY-MM-DD HH:MM:SS` (the trace has no time zone; UTC).
fn epoch(ts: &str) -> Option<i64> {
    let (d, t) = ts.split_once(' ')?;
    let mut dp = d.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let mut tp = t.split(':').map(|x| x.parse::<i64>());
    let (h, mi, s) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

pub fn load_jobs(path: &Path) -> Result<Vec<Job>, SimError> {
    let err = |m: String| SimError::Trace {
        file: path.display().to_string(),
        message: m,
    };
    let mut rd = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
    let mut jobs = Vec::new();
    for (i, row) in rd.deserialize::<Row>().enumerate() {
        let r = row.map_err(|e| err(format!("row {}: {e}", i + 2)))?;
        let submit = epoch(&r.timestamp).ok_or_else(|| {
            err(format!(
                "row {}: timestamp {:?}: expected YYYY-MM-DD HH:MM:SS",
                i + 2,
                r.timestamp
            ))
        })?;
        jobs.push(Job {
            submit,
            duration: r.duration.max(1.0) as i64,
            gpus: r.num_gpus.max(1),
            tenant: r.cluster,
        });
    }
    jobs.sort_by_key(|j| j.submit);
    Ok(jobs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuePolicy {
    Fifo,
    Backfill,
    Fair,
}

impl std::str::FromStr for QueuePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fifo" => Ok(QueuePolicy::Fifo),
            "backfill" => Ok(QueuePolicy::Backfill),
            "fair" | "fair-share" => Ok(QueuePolicy::Fair),
            other => Err(format!(
                "unknown policy {other:?}: expected fifo, backfill or fair"
            )),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct JobsReport {
    pub policy: String,
    pub jobs: usize,
    pub refused: usize,
    pub wait_mean_s: f64,
    pub wait_p50_s: f64,
    pub wait_p99_s: f64,
    pub jct_mean_s: f64,
    pub jct_p50_s: f64,
    pub jct_p99_s: f64,
    pub gpu_utilisation: f64,
    pub makespan_s: i64,
}

struct Running {
    nodes: Vec<(usize, Request)>,
    gpus: u32,
    tenant: usize,
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Try to start a job now: single node by ONYX placement, or whole free nodes.
fn start(cluster: &mut Cluster, job: &Job, rng: &mut StdRng) -> Option<Vec<(usize, Request)>> {
    if job.gpus <= 8 {
        let r = Request {
            cpu: 0,
            mem: 0,
            num_gpu: job.gpus as u8,
            milli: MILLI,
            models: 0,
        };
        return cluster
            .place(&r, Policy::BestFit, rng)
            .map(|p| vec![(p.node, r)]);
    }
    let need = job.gpus.div_ceil(8) as usize;
    let free = cluster.free_nodes();
    if free.len() < need {
        return None;
    }
    let mut left = job.gpus;
    let mut out = Vec::new();
    for n in free.into_iter().take(need) {
        let take = left.min(8);
        left -= take;
        let r = Request {
            cpu: 0,
            mem: 0,
            num_gpu: take as u8,
            milli: MILLI,
            models: 0,
        };
        cluster.place_on(n, &r);
        out.push((n, r));
    }
    Some(out)
}

struct Sim<'a> {
    jobs: &'a [Job],
    tenant_of: Vec<usize>,
    cluster: Cluster,
    rng: StdRng,
    free_gpus: u32,
    usage: Vec<u32>,
    running: BTreeMap<usize, Running>,
    started: Vec<Option<i64>>,
    ends: BinaryHeap<Reverse<(i64, usize)>>,
    busy_gpu_seconds: f64,
}

impl Sim<'_> {
    fn launch(&mut self, id: usize, now: i64) -> bool {
        let job = &self.jobs[id];
        if job.gpus > self.free_gpus {
            return false;
        }
        let Some(nodes) = start(&mut self.cluster, job, &mut self.rng) else {
            return false;
        };
        self.free_gpus -= job.gpus;
        let t = self.tenant_of[id];
        self.usage[t] += job.gpus;
        self.started[id] = Some(now);
        self.busy_gpu_seconds += job.gpus as f64 * job.duration as f64;
        self.ends.push(Reverse((now + job.duration, id)));
        self.running.insert(
            id,
            Running {
                nodes,
                gpus: job.gpus,
                tenant: t,
            },
        );
        true
    }

    /// When `need` GPUs will be free, from the running jobs' ends, and how many spare then.
    fn reservation(&self, need: u32, now: i64) -> (i64, u32) {
        let mut ends: Vec<(i64, u32)> = self
            .running
            .iter()
            .map(|(id, r)| {
                (
                    self.started[*id].unwrap_or(now) + self.jobs[*id].duration,
                    r.gpus,
                )
            })
            .collect();
        ends.sort();
        let mut avail = self.free_gpus;
        for (t, g) in ends {
            avail += g;
            if avail >= need {
                return (t, avail - need);
            }
        }
        (i64::MAX, 0)
    }
}

/// Replay `jobs` on `nodes` 8-GPU nodes.
pub fn run_jobs(jobs: &[Job], nodes: usize, policy: QueuePolicy) -> JobsReport {
    let node_states: Vec<NodeState> = (0..nodes).map(|_| NodeState::empty(0, 0, 0, 8)).collect();
    let capacity = (nodes * 8) as u32;
    let mut tenants: BTreeMap<String, usize> = BTreeMap::new();
    for j in jobs {
        let n = tenants.len();
        tenants.entry(j.tenant.clone()).or_insert(n);
    }
    let mut sim = Sim {
        jobs,
        tenant_of: jobs.iter().map(|j| tenants[&j.tenant]).collect(),
        cluster: Cluster::new(node_states, Vec::new()),
        rng: StdRng::seed_from_u64(1),
        free_gpus: capacity,
        usage: vec![0; tenants.len()],
        running: BTreeMap::new(),
        started: vec![None; jobs.len()],
        ends: BinaryHeap::new(),
        busy_gpu_seconds: 0.0,
    };
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut per_tenant: Vec<VecDeque<usize>> = vec![VecDeque::new(); tenants.len()];
    let mut refused = 0;
    let mut next = 0usize;
    let first = jobs.first().map_or(0, |j| j.submit);
    let mut last_end = first;
    loop {
        let t_arrive = jobs.get(next).map(|j| j.submit);
        let t_end = sim.ends.peek().map(|Reverse((t, _))| *t);
        let now = match (t_arrive, t_end) {
            (None, None) => break,
            (Some(a), None) => a,
            (None, Some(e)) => e,
            (Some(a), Some(e)) => a.min(e),
        };
        while let Some(Reverse((t, id))) = sim.ends.peek().copied() {
            if t > now {
                break;
            }
            sim.ends.pop();
            if let Some(r) = sim.running.remove(&id) {
                for (n, req) in &r.nodes {
                    sim.cluster.release_whole(*n, req);
                }
                sim.free_gpus += r.gpus;
                sim.usage[r.tenant] -= r.gpus;
                last_end = last_end.max(t);
            }
        }
        while next < jobs.len() && jobs[next].submit <= now {
            if jobs[next].gpus > capacity {
                refused += 1;
            } else {
                waiting.push_back(next);
            }
            next += 1;
        }
        if policy == QueuePolicy::Fair {
            // Per tenant, oldest first; the tenant using the fewest GPUs goes next.
            for id in waiting.drain(..) {
                per_tenant[sim.tenant_of[id]].push_back(id);
            }
            loop {
                let mut order: Vec<usize> = (0..per_tenant.len())
                    .filter(|t| !per_tenant[*t].is_empty())
                    .collect();
                order.sort_by_key(|t| (sim.usage[*t], *t));
                let mut launched = false;
                for t in order {
                    let id = per_tenant[t][0];
                    if sim.launch(id, now) {
                        per_tenant[t].pop_front();
                        launched = true;
                        break;
                    }
                }
                if !launched {
                    break;
                }
            }
            continue;
        }
        while let Some(&id) = waiting.front() {
            if sim.launch(id, now) {
                waiting.pop_front();
            } else {
                break;
            }
        }
        if policy == QueuePolicy::Fifo {
            continue;
        }
        // EASY backfill behind the head's reservation.
        if let Some(&head) = waiting.front() {
            let (shadow, mut spare) = sim.reservation(jobs[head].gpus, now);
            let mut i = 1;
            let mut examined = 0;
            while i < waiting.len() && examined < DEPTH && sim.free_gpus > 0 {
                examined += 1;
                let id = waiting[i];
                let j = &jobs[id];
                let in_time = now + j.duration <= shadow;
                if (in_time || j.gpus <= spare) && sim.launch(id, now) {
                    if !in_time {
                        spare -= j.gpus;
                    }
                    waiting.remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }
    let mut waits = Vec::new();
    let mut jcts = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        if let Some(s) = sim.started[i] {
            waits.push((s - j.submit) as f64);
            jcts.push((s + j.duration - j.submit) as f64);
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let makespan = (last_end - first).max(1);
    JobsReport {
        policy: format!("{policy:?}").to_lowercase(),
        jobs: jobs.len(),
        refused,
        wait_mean_s: mean(&waits),
        wait_p50_s: pct(&mut waits.clone(), 0.5),
        wait_p99_s: pct(&mut waits, 0.99),
        jct_mean_s: mean(&jcts),
        jct_p50_s: pct(&mut jcts.clone(), 0.5),
        jct_p99_s: pct(&mut jcts, 0.99),
        gpu_utilisation: sim.busy_gpu_seconds / (capacity as f64 * makespan as f64),
        makespan_s: makespan,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(submit: i64, duration: i64, gpus: u32) -> Job {
        Job {
            submit,
            duration,
            gpus,
            tenant: "t".into(),
        }
    }

    #[test]
    fn backfill_starts_short_jobs_without_delaying_the_head() {
        // 1 node: a 6-GPU job runs 0..100; a 4-GPU job waits (head); a 2-GPU 50 s job fits
        // before the head's reservation at t=100 and runs at once under backfill.
        let jobs = vec![job(0, 100, 6), job(1, 10, 4), job(2, 50, 2)];
        let fifo = run_jobs(&jobs, 1, QueuePolicy::Fifo);
        let bf = run_jobs(&jobs, 1, QueuePolicy::Backfill);
        assert!(bf.wait_mean_s < fifo.wait_mean_s, "{bf:?} vs {fifo:?}");
        assert_eq!(epoch("1970-01-02 00:00:10"), Some(86_410));
        assert_eq!(epoch("2017-10-09 07:01:55"), Some(1_507_532_515));
    }
}
