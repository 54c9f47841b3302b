//! Argo's controller metrics under Argo v3.5.6's names, the spec's names for the same facts,
//! and the custom metrics workflows and templates declare.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::histogram::{exponential_buckets, linear_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use workflow_engine::{GaugeOperation, MetricUpdate, MetricValue};

use crate::encode::{argo_counter, family, gauges, histograms};
use crate::snapshot::Snapshot;

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
    pub(crate) scheduling: Histogram,
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

/// Argo's controller metrics and the custom metrics.
pub(crate) fn encode(
    enc: &mut DescriptorEncoder,
    m: &Metrics,
    s: &Snapshot,
    now: DateTime<Utc>,
) -> std::fmt::Result {
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
        enc,
        "argo_workflows_count",
        "Number of Workflows currently accessible by the controller by status (refreshed every 15s)",
        by_phase.iter().map(|(p, n)| (vec![("status", p.to_string())], *n as f64)),
    )?;
    gauges(
        enc,
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
        enc,
        "argo_workflows_pods_count",
        "Number of Pods from Workflows currently accessible by the controller by status (refreshed every 15s)",
        [
            (vec![("status", "Pending".to_string())], pending as f64),
            (vec![("status", "Running".to_string())], running as f64),
        ],
    )?;
    argo_counter(
        enc,
        "argo_workflows_workflows_processed_count",
        "Number of workflow updates processed",
        *lock(&m.processed) as f64,
    )?;
    histograms(
        enc,
        "argo_workflows_operation_duration_seconds",
        "Histogram of durations of operations",
        [(Vec::new(), &m.operation)],
    )?;
    gauges(
        enc,
        "argo_workflows_queue_depth_count",
        "Depth of the queue",
        [(
            vec![("queue_name", "workflow_queue".to_string())],
            (*lock(&m.queue_depth)).max(0) as f64,
        )],
    )?;
    family(
        enc,
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
        enc,
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
            enc,
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
            enc,
            "onyx_pod_duration_seconds",
            "Seconds pods ran, from their start to their end, by namespace",
            pods.iter()
                .map(|(ns, h)| (vec![("namespace", ns.clone())], h)),
        )?;
    }
    argo_counter(
        enc,
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
    Ok(())
}
