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

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use workflow_engine::{GaugeOperation, MetricUpdate, MetricValue};

use cluster_shell::{GpuUsage, Holder, NodeUsage, QueueUsage};

/// Argo's phases that `argo_workflows_count` always reports, zero or not.
const WORKFLOW_PHASES: [&str; 5] = ["Pending", "Running", "Succeeded", "Failed", "Error"];

/// The controller's own metric names, which custom metrics may not take (Argo refuses a custom
/// metric "already in use by the system").
const SYSTEM_NAMES: [&str; 10] = [
    "count",
    "pods_count",
    "workflows_processed_count",
    "operation_duration_seconds",
    "queue_depth_count",
    "queue_adds_count",
    "error_count",
    "workflow_count",
    "workflow_duration_seconds",
    "queue_latency",
];

/// Argo's error causes (`argo_workflows_error_count{cause}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorCause {
    OperationPanic,
    CronWorkflowSubmissionError,
    CronWorkflowSpecError,
}

const ERROR_CAUSES: [ErrorCause; 3] = [
    ErrorCause::OperationPanic,
    ErrorCause::CronWorkflowSubmissionError,
    ErrorCause::CronWorkflowSpecError,
];

#[derive(Debug)]
enum Series {
    Counter(f64),
    Gauge(f64),
    Histogram(Histogram),
    Realtime {
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    },
}

impl Series {
    fn kind(&self) -> &'static str {
        match self {
            Series::Counter(_) => "counter",
            Series::Gauge(_) | Series::Realtime { .. } => "gauge",
            Series::Histogram(_) => "histogram",
        }
    }
}

type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
struct CustomFamily {
    help: String,
    /// Keyed by labels and, for histograms, the buckets (Argo's metric descriptor).
    series: BTreeMap<(Labels, Vec<u64>), Series>,
}

#[derive(Debug, Default)]
struct Custom {
    families: BTreeMap<String, CustomFamily>,
    /// Realtime gauges by the workflow that owns them: dropped with the workflow.
    realtime: HashMap<String, Vec<(String, Labels, Vec<u64>)>>,
}

/// What the controller counts as it works; read at every scrape.
#[derive(Debug)]
pub struct Metrics {
    processed: Mutex<u64>,
    queue_adds: Mutex<u64>,
    queue_depth: Mutex<i64>,
    /// Seconds an engine took over one batch of events (Argo: one `operate`).
    operation: Histogram,
    errors: Mutex<BTreeMap<ErrorCause, u64>>,
    /// Finished workflows' durations by namespace and phase.
    durations: Mutex<BTreeMap<(String, String), Histogram>>,
    /// Pods' running time (from their start to their end) by namespace.
    pod_durations: Mutex<BTreeMap<String, Histogram>>,
    /// Milliseconds a scheduling cycle took.
    scheduling: Histogram,
    custom: Mutex<Custom>,
    /// Custom metrics refused (bad name, clashing type or help): the reason is logged.
    custom_errors: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn workflow_duration_histogram() -> Histogram {
    // From a second to a day: GPU jobs run for hours.
    Histogram::new([
        1.0,
        5.0,
        15.0,
        60.0,
        300.0,
        900.0,
        3600.0,
        3.0 * 3600.0,
        12.0 * 3600.0,
        86400.0,
    ])
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            processed: Mutex::new(0),
            queue_adds: Mutex::new(0),
            queue_depth: Mutex::new(0),
            // Argo's buckets: MAX_OPERATION_TIME (30 s) in six.
            operation: Histogram::new(linear_buckets(5.0, 5.0, 6)),
            errors: Mutex::new(BTreeMap::new()),
            durations: Mutex::new(BTreeMap::new()),
            pod_durations: Mutex::new(BTreeMap::new()),
            // Volcano's buckets for e2e scheduling latency.
            scheduling: Histogram::new(exponential_buckets(5.0, 2.0, 10)),
            custom: Mutex::new(Custom::default()),
            custom_errors: Mutex::new(0),
        }
    }
}

impl Metrics {
    /// An event was queued for a workflow's engine.
    pub fn queued(&self) {
        *lock(&self.queue_adds) += 1;
        *lock(&self.queue_depth) += 1;
    }

    /// An engine handled a batch of `events` in `seconds`.
    pub fn operated(&self, events: usize, seconds: f64) {
        *lock(&self.queue_depth) -= events as i64;
        *lock(&self.processed) += 1;
        self.operation.observe(seconds);
    }

    pub fn error(&self, cause: ErrorCause) {
        *lock(&self.errors).entry(cause).or_default() += 1;
    }

    pub fn workflow_finished(&self, namespace: &str, phase: &str, seconds: f64) {
        lock(&self.durations)
            .entry((namespace.to_string(), phase.to_string()))
            .or_insert_with(workflow_duration_histogram)
            .observe(seconds.max(0.0));
    }

    pub fn pod_finished(&self, namespace: &str, seconds: f64) {
        lock(&self.pod_durations)
            .entry(namespace.to_string())
            .or_insert_with(workflow_duration_histogram)
            .observe(seconds.max(0.0));
    }

    /// Metrics that read the scheduler's cycle latency from `latency` (the cluster's own).
    pub fn with_scheduling(latency: Histogram) -> Metrics {
        Metrics {
            scheduling: latency,
            ..Metrics::default()
        }
    }

    /// Apply a custom metric sample of workflow `uid`. A sample that clashes with what the
    /// name already is (another type or help, a system metric's name) is refused with why.
    pub fn apply(&self, uid: &str, m: &MetricUpdate) -> Result<(), String> {
        let r = self.apply_inner(uid, m);
        if r.is_err() {
            *lock(&self.custom_errors) += 1;
        }
        r
    }

    fn apply_inner(&self, uid: &str, m: &MetricUpdate) -> Result<(), String> {
        if SYSTEM_NAMES.contains(&m.name.as_str()) {
            return Err(format!(
                "metric 'argo_workflows_{}' is already in use by the system, please use a different name",
                m.name
            ));
        }
        let mut custom = lock(&self.custom);
        let buckets: Vec<u64> = match &m.value {
            MetricValue::Histogram { buckets, .. } => buckets.iter().map(|b| b.to_bits()).collect(),
            _ => Vec::new(),
        };
        let family = custom.families.entry(m.name.clone()).or_default();
        if family.series.is_empty() {
            family.help = m.help.clone();
        } else if family.help != m.help {
            return Err(format!(
                "metric 'argo_workflows_{}' has help string '{}' but should have '{}' (help strings must be identical for metrics of the same name)",
                m.name, m.help, family.help
            ));
        }
        let new_kind = match &m.value {
            MetricValue::Counter(_) => "counter",
            MetricValue::Gauge(..) | MetricValue::Realtime { .. } => "gauge",
            MetricValue::Histogram { .. } => "histogram",
        };
        if let Some(existing) = family.series.values().next() {
            if existing.kind() != new_kind {
                return Err(format!(
                    "metric 'argo_workflows_{}' is a {} and cannot be used as a {new_kind}",
                    m.name,
                    existing.kind()
                ));
            }
        }
        let key = (m.labels.clone(), buckets.clone());
        let series = family.series.entry(key);
        match &m.value {
            MetricValue::Counter(v) => {
                if let Series::Counter(c) = series.or_insert(Series::Counter(0.0)) {
                    *c += v;
                }
            }
            MetricValue::Gauge(op, v) => {
                if let Series::Gauge(g) = series.or_insert(Series::Gauge(0.0)) {
                    match op {
                        GaugeOperation::Set => *g = *v,
                        GaugeOperation::Add => *g += v,
                        GaugeOperation::Sub => *g -= v,
                    }
                }
            }
            MetricValue::Histogram { buckets, value } => {
                let h =
                    series.or_insert_with(|| Series::Histogram(Histogram::new(buckets.clone())));
                if let Series::Histogram(h) = h {
                    h.observe(*value);
                }
            }
            MetricValue::Realtime { since, until } => {
                let entry = series.or_insert(Series::Realtime {
                    since: *since,
                    until: *until,
                });
                *entry = Series::Realtime {
                    since: *since,
                    until: *until,
                };
                let owned = custom.realtime.entry(uid.to_string()).or_default();
                let k = (m.name.clone(), m.labels.clone(), buckets);
                if !owned.contains(&k) {
                    owned.push(k);
                }
            }
        }
        Ok(())
    }

    /// A workflow was deleted: its realtime gauges go with it (Argo's
    /// `StopRealtimeMetricsForKey`).
    pub fn forget(&self, uid: &str) {
        let mut custom = lock(&self.custom);
        let Some(owned) = custom.realtime.remove(uid) else {
            return;
        };
        for (name, labels, buckets) in owned {
            if let Some(f) = custom.families.get_mut(&name) {
                f.series.remove(&(labels, buckets));
                if f.series.is_empty() {
                    custom.families.remove(&name);
                }
            }
        }
    }
}

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

/// Who holds a GPU and how much of it each holds: a whole GPU 1, a fraction its share, a MIG
/// instance its compute slices over 7 (an unknown profile counts whole).
fn holdings(d: &GpuUsage) -> impl Iterator<Item = (&Holder, f64)> {
    let whole = d
        .holders
        .iter()
        .map(|h| (h, h.gpu_milli.map_or(1.0, |m| m as f64 / 1000.0)));
    let instances = d.instances.iter().filter_map(|i| {
        let share = scheduler::mig::compute_slices(&i.profile).map_or(1.0, |s| s as f64 / 7.0);
        i.holder.as_ref().map(|h| (h, share))
    });
    whole.chain(instances)
}

/// GPU memory of a modelled GPU: the H100/H200 family ONYX's virtual nodes carry.
fn modelled_fb_mib(model: &str) -> f64 {
    if model.to_ascii_lowercase().contains("h200") {
        141.0 * 1024.0
    } else {
        80.0 * 1024.0
    }
}

/// The GPUs of virtual nodes, modelled from what pods hold of each: a held GPU is busy, its
/// memory used in proportion, its temperature and power rising with it (idle 32 °C / 70 W,
/// full 72 °C / 700 W: an H100 SXM5's range).
pub fn modelled_gpus(nodes: &[NodeUsage]) -> Vec<GpuSample> {
    let mut out = Vec::new();
    for n in nodes {
        for d in &n.devices {
            let held = holdings(d).map(|(_, share)| share).sum::<f64>().min(1.0);
            let fb = modelled_fb_mib(&n.gpu_model);
            out.push(GpuSample {
                node: n.name.clone(),
                index: d.index,
                uuid: d.uuid.clone(),
                model: n.gpu_model.clone(),
                util_percent: (held * 100.0).round(),
                fb_used_mib: (fb * held).round(),
                fb_free_mib: (fb * (1.0 - held)).round(),
                temp_celsius: (32.0 + 40.0 * held).round(),
                power_watts: (70.0 + 630.0 * held).round(),
            });
        }
    }
    out
}

/// This machine's GPUs through NVML (none when the library or a GPU is missing).
pub fn local_gpus(node: &str) -> Vec<GpuSample> {
    gpu_discovery::readings()
        .into_iter()
        .map(|r| GpuSample {
            node: node.to_string(),
            index: r.index,
            uuid: r.uuid,
            model: r.model,
            util_percent: r.util_percent,
            fb_used_mib: r.fb_used_mib,
            fb_free_mib: r.fb_free_mib,
            temp_celsius: r.temp_celsius,
            power_watts: r.power_watts,
        })
        .collect()
}

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

type L<'a> = Vec<(&'a str, String)>;

fn gauges<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L<'a>, f64)>,
) -> std::fmt::Result {
    family(enc, name, help, MetricType::Gauge, rows)
}

fn family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    ty: MetricType,
    rows: impl IntoIterator<Item = (L<'a>, f64)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        m.encode_family(&labels)?.encode_gauge(&v)?;
    }
    Ok(())
}

/// An Argo counter under its own name (see the module's note on `untyped`).
fn argo_counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> std::fmt::Result {
    family(enc, name, help, MetricType::Unknown, [(Vec::new(), v)])
}

fn histograms<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L<'a>, &'a Histogram)>,
) -> std::fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in rows {
        h.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.metrics;
        let s = &self.snapshot;
        let now = s.now.unwrap_or_else(Utc::now);

        // Argo's controller metrics.
        let mut by_phase: BTreeMap<&str, i64> = WORKFLOW_PHASES.iter().map(|p| (*p, 0)).collect();
        for (_, phase, n) in &s.workflows {
            let p = if phase.is_empty() {
                "Pending"
            } else {
                phase.as_str()
            };
            *by_phase.entry(p).or_default() += n;
        }
        gauges(
            &mut enc,
            "argo_workflows_count",
            "Number of Workflows currently accessible by the controller by status (refreshed every 15s)",
            by_phase.iter().map(|(p, n)| (vec![("status", p.to_string())], *n as f64)),
        )?;
        gauges(
            &mut enc,
            "argo_workflows_workflow_count",
            "Number of live Workflows by namespace and status (the ONYX spec's name; Argo v3.5.6 exposes argo_workflows_count)",
            s.workflows.iter().map(|(ns, p, n)| {
                (
                    vec![("namespace", ns.clone()), ("status", p.clone())],
                    *n as f64,
                )
            }),
        )?;
        let (pending, running) = s
            .queues
            .iter()
            .fold((0, 0), |(p, r), q| (p + q.pending, r + q.running));
        gauges(
            &mut enc,
            "argo_workflows_pods_count",
            "Number of Pods from Workflows currently accessible by the controller by status (refreshed every 15s)",
            [
                (vec![("status", "Pending".to_string())], pending as f64),
                (vec![("status", "Running".to_string())], running as f64),
            ],
        )?;
        argo_counter(
            &mut enc,
            "argo_workflows_workflows_processed_count",
            "Number of workflow updates processed",
            *lock(&m.processed) as f64,
        )?;
        histograms(
            &mut enc,
            "argo_workflows_operation_duration_seconds",
            "Histogram of durations of operations",
            [(Vec::new(), &m.operation)],
        )?;
        gauges(
            &mut enc,
            "argo_workflows_queue_depth_count",
            "Depth of the queue",
            [(
                vec![("queue_name", "workflow_queue".to_string())],
                (*lock(&m.queue_depth)).max(0) as f64,
            )],
        )?;
        family(
            &mut enc,
            "argo_workflows_queue_adds_count",
            "Adds to the queue",
            MetricType::Unknown,
            [(
                vec![("queue_name", "workflow_queue".to_string())],
                *lock(&m.queue_adds) as f64,
            )],
        )?;
        let errors = lock(&m.errors).clone();
        family(
            &mut enc,
            "argo_workflows_error_count",
            "Number of errors encountered by the controller by cause",
            MetricType::Unknown,
            ERROR_CAUSES.iter().map(|c| {
                (
                    vec![("cause", format!("{c:?}"))],
                    errors.get(c).copied().unwrap_or(0) as f64,
                )
            }),
        )?;
        {
            let durations = lock(&m.durations);
            histograms(
                &mut enc,
                "argo_workflows_workflow_duration_seconds",
                "Duration of finished Workflows by namespace and status (the ONYX spec's name)",
                durations.iter().map(|((ns, phase), h)| {
                    (
                        vec![("namespace", ns.clone()), ("status", phase.clone())],
                        h,
                    )
                }),
            )?;
        }
        {
            let pods = lock(&m.pod_durations);
            histograms(
                &mut enc,
                "onyx_pod_duration_seconds",
                "Seconds pods ran, from their start to their end, by namespace",
                pods.iter()
                    .map(|(ns, h)| (vec![("namespace", ns.clone())], h)),
            )?;
        }
        argo_counter(
            &mut enc,
            "onyx_custom_metric_errors",
            "Custom metric samples refused (a clashing type, help or name); the server logs why",
            *lock(&m.custom_errors) as f64,
        )?;

        // Custom metrics, as declared.
        {
            let custom = lock(&m.custom);
            for (name, f) in &custom.families {
                let full = format!("argo_workflows_{name}");
                let Some(first) = f.series.values().next() else {
                    continue;
                };
                let ty = match first {
                    Series::Counter(_) => MetricType::Unknown,
                    Series::Gauge(_) | Series::Realtime { .. } => MetricType::Gauge,
                    Series::Histogram(_) => MetricType::Histogram,
                };
                let mut me = enc.encode_descriptor(&full, &f.help, None, ty)?;
                for ((labels, _), series) in &f.series {
                    let fam = me.encode_family(labels)?;
                    match series {
                        Series::Counter(v) | Series::Gauge(v) => {
                            let mut fam = fam;
                            fam.encode_gauge(v)?
                        }
                        Series::Histogram(h) => h.encode(fam)?,
                        Series::Realtime { since, until } => {
                            let secs =
                                (until.unwrap_or(now) - *since).num_milliseconds() as f64 / 1000.0;
                            let mut fam = fam;
                            fam.encode_gauge(&secs.max(0.0))?
                        }
                    }
                }
            }
        }

        // Volcano's scheduler metrics.
        let q = &s.queues;
        let total_gpus: f64 = s.nodes.iter().map(|n| n.gpus as f64).sum();
        let deserved = effective_deserved(q, total_gpus);
        gauges(
            &mut enc,
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
            &mut enc,
            "volcano_queue_allocated_scalar_resources",
            "Allocated scalar resources for one queue (GPU equivalents: a MIG instance is its compute slices over 7)",
            q.iter().map(|q| gpu(q, q.allocated_gpus)),
        )?;
        gauges(
            &mut enc,
            "volcano_queue_deserved_scalar_resources",
            "Deserved scalar resources for one queue",
            q.iter().map(|q| gpu(q, deserved[&q.name])),
        )?;
        gauges(
            &mut enc,
            "volcano_queue_capability_scalar_resources",
            "Capability (upper bound) of scalar resources for one queue",
            q.iter()
                .filter_map(|q| q.capability_gpus.map(|c| gpu(q, c as f64))),
        )?;
        gauges(
            &mut enc,
            "volcano_queue_share",
            "Share for one queue (allocated over deserved GPUs)",
            q.iter().map(|q| {
                let d = deserved[&q.name];
                let share = if d > 0.0 { q.allocated_gpus / d } else { 0.0 };
                (vec![("queue_name", q.name.clone())], share)
            }),
        )?;
        gauges(
            &mut enc,
            "volcano_queue_overused",
            "If one queue is overused",
            q.iter().map(|q| {
                let over = q.allocated_gpus > deserved[&q.name];
                (vec![("queue_name", q.name.clone())], over as u8 as f64)
            }),
        )?;
        gauges(
            &mut enc,
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
            &mut enc,
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
            &mut enc,
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
            &mut enc,
            "onyx_pod_scheduling_wait_seconds",
            "Seconds pods with requests waited from asking to be scheduled to their grant, per queue",
            s.waits
                .iter()
                .map(|(q, h)| (vec![("queue_name", q.clone())], h)),
        )?;
        histograms(
            &mut enc,
            "volcano_e2e_scheduling_latency_milliseconds",
            "E2e scheduling latency in milliseconds (scheduling algorithm + binding)",
            [(Vec::new(), &m.scheduling)],
        )?;

        // GPUs: DCGM exporter's names and labels.
        let dcgm = |g: &GpuSample, v: f64| {
            (
                vec![
                    ("gpu", g.index.to_string()),
                    ("UUID", g.uuid.clone()),
                    ("device", format!("nvidia{}", g.index)),
                    ("modelName", g.model.clone()),
                    ("Hostname", g.node.clone()),
                ],
                v,
            )
        };
        let gpus = &s.gpus;
        gauges(
            &mut enc,
            "DCGM_FI_DEV_GPU_UTIL",
            "GPU utilization (in %).",
            gpus.iter().map(|g| dcgm(g, g.util_percent)),
        )?;
        gauges(
            &mut enc,
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB).",
            gpus.iter().map(|g| dcgm(g, g.fb_used_mib)),
        )?;
        gauges(
            &mut enc,
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB).",
            gpus.iter().map(|g| dcgm(g, g.fb_free_mib)),
        )?;
        gauges(
            &mut enc,
            "DCGM_FI_DEV_GPU_TEMP",
            "GPU temperature (in C).",
            gpus.iter().map(|g| dcgm(g, g.temp_celsius)),
        )?;
        gauges(
            &mut enc,
            "DCGM_FI_DEV_POWER_USAGE",
            "Power draw (in W).",
            gpus.iter().map(|g| dcgm(g, g.power_watts)),
        )?;

        // ONYX's own: GPUs held per node, namespace and queue; quotas; the store.
        gauges(
            &mut enc,
            "onyx_node_gpus",
            "GPUs of a node",
            s.nodes
                .iter()
                .map(|n| (vec![("node", n.name.clone())], n.gpus as f64)),
        )?;
        gauges(
            &mut enc,
            "onyx_node_schedulable",
            "Whether a node takes new pods (0 when cordoned)",
            s.nodes
                .iter()
                .map(|n| (vec![("node", n.name.clone())], (!n.cordoned) as u8 as f64)),
        )?;
        let mut held: BTreeMap<(String, String, String), f64> = BTreeMap::new();
        for n in &s.nodes {
            for (h, share) in n.devices.iter().flat_map(holdings) {
                *held
                    .entry((n.name.clone(), h.namespace.clone(), h.queue.clone()))
                    .or_default() += share;
            }
        }
        gauges(
            &mut enc,
            "onyx_gpus_allocated",
            "GPU equivalents held by pods, per node, namespace (tenant) and queue",
            held.into_iter().map(|((node, ns, queue), v)| {
                (vec![("node", node), ("namespace", ns), ("queue", queue)], v)
            }),
        )?;
        gauges(
            &mut enc,
            "onyx_namespace_gpu_quota",
            "GPUs a namespace (tenant) may hold",
            s.quotas
                .iter()
                .map(|(ns, q)| (vec![("namespace", ns.clone())], *q)),
        )?;
        if let Some(a) = &s.audit {
            use std::sync::atomic::Ordering::Relaxed;
            let n = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed) as f64;
            argo_counter(
                &mut enc,
                "onyx_audit_records_written",
                "Audit records written to the audit file",
                n(&a.written),
            )?;
            argo_counter(&mut enc, "onyx_audit_records_dropped", "Audit records lost: the writer's queue was full or the file could not be written (each is also logged)", n(&a.dropped))?;
            argo_counter(
                &mut enc,
                "onyx_audit_loki_pushed_lines",
                "Audit lines Loki accepted",
                n(&a.loki_pushed),
            )?;
            argo_counter(
                &mut enc,
                "onyx_audit_loki_dropped_lines",
                "Audit lines dropped from the full Loki buffer (they remain in the audit file)",
                n(&a.loki_dropped),
            )?;
            argo_counter(
                &mut enc,
                "onyx_audit_loki_push_failures",
                "Pushes to Loki that failed (retried)",
                n(&a.loki_failures),
            )?;
            gauges(
                &mut enc,
                "onyx_audit_loki_pending_lines",
                "Audit lines waiting for Loki",
                [(Vec::new(), n(&a.loki_pending))],
            )?;
        }
        if let Some(b) = s.store_bytes {
            gauges(
                &mut enc,
                "onyx_store_bytes",
                "Size of the store's database files",
                [(Vec::new(), b as f64)],
            )?;
        }
        if let Some((avail, size)) = s.store_fs {
            gauges(
                &mut enc,
                "onyx_store_filesystem_avail_bytes",
                "Free bytes of the filesystem the store is on",
                [(Vec::new(), avail as f64)],
            )?;
            gauges(
                &mut enc,
                "onyx_store_filesystem_size_bytes",
                "Size of the filesystem the store is on",
                [(Vec::new(), size as f64)],
            )?;
        }
        Ok(())
    }
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

/// The store's size (database and WAL) and its filesystem's free and total bytes.
pub fn store_disk(home: &std::path::Path) -> (Option<u64>, Option<(u64, u64)>) {
    let mut bytes = 0u64;
    let mut any = false;
    for f in ["onyx.db", "onyx.db-wal", "onyx.db-shm"] {
        if let Ok(m) = std::fs::metadata(home.join(f)) {
            bytes += m.len();
            any = true;
        }
    }
    let fs = nix::sys::statvfs::statvfs(home).ok().map(|s| {
        let frag = s.fragment_size();
        (s.blocks_available() * frag, s.blocks() * frag)
    });
    (any.then_some(bytes), fs)
}

/// The text a test or a reader can grep: used in unit tests.
#[cfg(test)]
fn sample_line(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests;
