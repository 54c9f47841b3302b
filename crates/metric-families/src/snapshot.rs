//! What one scrape reads besides the controller's counters: the store's counts, the
//! scheduler's state, the GPUs' telemetry. A leaf: every family reads it.

use chrono::{DateTime, Utc};
use prometheus_client::metrics::histogram::Histogram;

use cluster_shell::{NodeUsage, QueueUsage};

/// One GPU's telemetry, under DCGM exporter's labels.
#[derive(Debug, Clone)]
pub struct GpuSample {
    pub node: String,
    pub index: usize,
    pub uuid: String,
    pub model: String,
    pub util_percent: f64,
    pub fb_used_mib: f64,
    pub fb_free_mib: f64,
    pub temp_celsius: f64,
    pub power_watts: f64,
}
/// What is read once per scrape: the store's counts and the scheduler's state.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (namespace, phase, live workflows).
    pub workflows: Vec<(String, String, i64)>,
    pub queues: Vec<QueueUsage>,
    pub nodes: Vec<NodeUsage>,
    pub gpus: Vec<GpuSample>,
    /// (namespace, GPUs it may hold) for namespaces with a quota.
    pub quotas: Vec<(String, f64)>,
    pub store_bytes: Option<u64>,
    /// (available, size) of the filesystem the store is on.
    pub store_fs: Option<(u64, u64)>,
    /// Seconds pods waited to be scheduled, per queue.
    pub waits: Vec<(String, Histogram)>,
    /// The audit trail's counters.
    pub audit: Option<std::sync::Arc<audit::Stats>>,
    pub now: Option<DateTime<Utc>>,
}
