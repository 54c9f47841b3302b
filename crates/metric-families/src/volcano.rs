//! Volcano's scheduler metrics (`volcano_queue_*`, `volcano_e2e_scheduling_latency_milliseconds`),
//! with GPUs as Volcano's scalar resources.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::DescriptorEncoder;

use cluster_shell::QueueUsage;

use crate::argo::Metrics;
use crate::encode::{gauges, histograms};
use crate::snapshot::Snapshot;

/// Volcano's queue and scheduling metrics, and ONYX's own on waiting.
pub(crate) fn encode(
    enc: &mut DescriptorEncoder,
    m: &Metrics,
    s: &Snapshot,
    now: DateTime<Utc>,
) -> std::fmt::Result {
    // Volcano's scheduler metrics.
    let q = &s.queues;
    let total_gpus: f64 = s.nodes.iter().map(|n| n.gpus as f64).sum();
    let deserved = effective_deserved(q, total_gpus);
    gauges(
        enc,
        "volcano_queue_weight",
        "Weight for one queue",
        q.iter()
            .map(|q| (vec![("queue_name", q.name.clone())], q.weight as f64)),
    )?;
    let gpu = |q: &QueueUsage, v: f64| {
        (
            vec![
                ("queue_name", q.name.clone()),
                ("resource", "nvidia.com/gpu".to_string()),
            ],
            v,
        )
    };
    gauges(
        enc,
        "volcano_queue_allocated_scalar_resources",
        "Allocated scalar resources for one queue (GPU equivalents: a MIG instance is its compute slices over 7)",
        q.iter().map(|q| gpu(q, q.allocated_gpus)),
    )?;
    gauges(
        enc,
        "volcano_queue_deserved_scalar_resources",
        "Deserved scalar resources for one queue",
        q.iter().map(|q| gpu(q, deserved[&q.name])),
    )?;
    gauges(
        enc,
        "volcano_queue_capability_scalar_resources",
        "Capability (upper bound) of scalar resources for one queue",
        q.iter()
            .filter_map(|q| q.capability_gpus.map(|c| gpu(q, c as f64))),
    )?;
    gauges(
        enc,
        "volcano_queue_share",
        "Share for one queue (allocated over deserved GPUs)",
        q.iter().map(|q| {
            let d = deserved[&q.name];
            let share = if d > 0.0 { q.allocated_gpus / d } else { 0.0 };
            (vec![("queue_name", q.name.clone())], share)
        }),
    )?;
    gauges(
        enc,
        "volcano_queue_overused",
        "If one queue is overused",
        q.iter().map(|q| {
            let over = q.allocated_gpus > deserved[&q.name];
            (vec![("queue_name", q.name.clone())], over as u8 as f64)
        }),
    )?;
    gauges(
        enc,
        "volcano_queue_pod_group_pending_count",
        "The number of Pending PodGroup in this queue",
        q.iter().map(|q| {
            (
                vec![("queue_name", q.name.clone())],
                q.pending_groups as f64,
            )
        }),
    )?;
    gauges(
        enc,
        "volcano_queue_pod_group_running_count",
        "The number of Running PodGroup in this queue",
        q.iter().map(|q| {
            (
                vec![("queue_name", q.name.clone())],
                q.running_groups as f64,
            )
        }),
    )?;
    gauges(
        enc,
        "onyx_queue_oldest_pending_seconds",
        "How long the longest-waiting pod of the queue has waited to be scheduled",
        q.iter().map(|q| {
            let wait = q.oldest_wait_ns.map_or(0.0, |ns| {
                (now.timestamp_nanos_opt().unwrap_or(i64::MAX) - ns).max(0) as f64 / 1e9
            });
            (vec![("queue_name", q.name.clone())], wait)
        }),
    )?;
    histograms(
        enc,
        "onyx_pod_scheduling_wait_seconds",
        "Seconds pods with requests waited from asking to be scheduled to their grant, per queue",
        s.waits
            .iter()
            .map(|(q, h)| (vec![("queue_name", q.clone())], h)),
    )?;
    histograms(
        enc,
        "volcano_e2e_scheduling_latency_milliseconds",
        "E2e scheduling latency in milliseconds (scheduling algorithm + binding)",
        [(Vec::new(), &m.scheduling)],
    )?;
    Ok(())
}

/// Each queue's deserved GPUs as Volcano's proportion plugin sees them: the configured
/// `deserved`, else its weight's part of what its parent deserves (the cluster for a queue at
/// the top), among its siblings.
fn effective_deserved(queues: &[QueueUsage], total: f64) -> BTreeMap<String, f64> {
    fn of(
        name: &str,
        queues: &[QueueUsage],
        total: f64,
        out: &mut BTreeMap<String, f64>,
        depth: usize,
    ) -> f64 {
        if let Some(d) = out.get(name) {
            return *d;
        }
        let Some(q) = queues.iter().find(|q| q.name == name) else {
            return 0.0;
        };
        let d = match q.deserved_gpus {
            Some(d) => d as f64,
            None => {
                let parent = match (&q.parent, depth < queues.len()) {
                    (Some(p), true) => of(p, queues, total, out, depth + 1),
                    _ => total,
                };
                let siblings: u32 = queues
                    .iter()
                    .filter(|s| s.parent == q.parent)
                    .map(|s| s.weight)
                    .sum();
                if siblings == 0 {
                    0.0
                } else {
                    parent * q.weight as f64 / siblings as f64
                }
            }
        };
        let d = q.capability_gpus.map_or(d, |c| d.min(c as f64));
        out.insert(name.to_string(), d);
        d
    }
    let mut out = BTreeMap::new();
    for q in queues {
        of(&q.name, queues, total, &mut out, 0);
    }
    out
}
