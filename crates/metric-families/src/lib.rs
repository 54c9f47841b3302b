//! `/metrics` in Prometheus' text format, encoded by `prometheus-client`:
//!
//! - Argo's controller metrics under Argo v3.5.6's names (`argo_workflows_count{status}`,
//!   `argo_workflows_pods_count`, `argo_workflows_workflows_processed_count`,
//!   `argo_workflows_operation_duration_seconds`, `argo_workflows_queue_*`,
//!   `argo_workflows_error_count{cause}`), the spec's own names for the same facts
//!   (`argo_workflows_workflow_count{namespace,status}`,
//!   `argo_workflows_workflow_duration_seconds`), and the custom metrics that workflows and
//!   templates declare (`metrics.prometheus`, prefixed `argo_workflows_` as Argo does);
//! - Volcano's scheduler metrics (`volcano_queue_*`, `volcano_e2e_scheduling_latency_milliseconds`),
//!   with GPUs as Volcano's scalar resources;
//! - per-GPU metrics under DCGM exporter's names (`DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED`,
//!   `DCGM_FI_DEV_GPU_TEMP`, `DCGM_FI_DEV_POWER_USAGE`), read through NVML on `--cluster local`
//!   and modelled from what pods hold on virtual clusters;
//! - ONYX's own: GPUs held per node, namespace and queue, the store's size and free disk.
//!
//! Counters whose Argo name does not end in `_total` (`…_count`, and custom counters) are
//! exposed as `untyped` under their exact name: `prometheus-client` would rename a counter to
//! `…_total`, and dashboards written for Argo query the names Argo exposes.

//!
//! One module per family; [`render`] encodes them in that order at every scrape.

#![forbid(unsafe_code)]

mod argo;
mod dcgm;
mod encode;
mod onyx;
mod snapshot;
mod volcano;

use chrono::Utc;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

pub use argo::{ErrorCause, Metrics};
pub use dcgm::{local_gpus, modelled_gpus};
pub use onyx::store_disk;
pub use snapshot::{GpuSample, Snapshot};

/// Render every metric: the controller's counters with this scrape's snapshot.
pub fn render(metrics: &std::sync::Arc<Metrics>, snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape {
        metrics: metrics.clone(),
        snapshot,
    }));
    let mut out = String::new();
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Scrape {
    metrics: std::sync::Arc<Metrics>,
    snapshot: Snapshot,
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let (m, s) = (&*self.metrics, &self.snapshot);
        let now = s.now.unwrap_or_else(Utc::now);
        argo::encode(&mut enc, m, s, now)?;
        volcano::encode(&mut enc, m, s, now)?;
        dcgm::encode(&mut enc, s)?;
        onyx::encode(&mut enc, s)
    }
}

#[cfg(test)]
mod tests;
