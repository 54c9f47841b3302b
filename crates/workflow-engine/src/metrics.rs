//! Custom metrics (`metrics.prometheus` of the workflow and of templates), as Argo's
//! controller computes them (`computeMetrics` in `operator.go`, the scopes of
//! `prepareMetricScope` in `steps.go`): a node's metrics when it ends, its realtime gauges when
//! it starts; the workflow's realtime gauges when it starts and all of its metrics when it ends.
//!
//! The engine only computes samples ([`Action::Metric`]); the shell keeps the registry. A
//! metric that cannot be emitted (no help, a bad name or label, a value that is not a number,
//! an unresolved tag) is skipped and recorded as the workflow's `MetricsError` condition, as
//! Argo records it; it never fails the node.

use template_eval::{govaluate, substitute, Vars};
use workflow_model::{Metrics, PrometheusMetric};

use crate::protocol::{Action, GaugeOperation, MetricUpdate, MetricValue};
use crate::state::Engine;
use crate::status::{Phase, Time};

/// What a realtime gauge may follow: `{{duration}}` of a node, `{{workflow.duration}}`.
#[derive(Clone, Copy)]
struct Clocks {
    node: Option<(Time, Option<Time>)>,
    workflow: (Time, Option<Time>),
}

impl Engine {
    /// Emit node `i`'s metrics: its realtime gauges only (when it starts), or all of them
    /// (when it ends).
    pub(crate) fn emit_node_metrics(&mut self, i: usize, realtime_only: bool, now: Time) {
        let Some(metrics) = self.nodes[i].metrics.clone() else {
            return;
        };
        let st = &self.nodes[i].status;
        let started = st.started_at.unwrap_or(now);
        let finished = st.finished_at;
        let mut scope = self.default_metric_scope(now);
        let duration = (finished.unwrap_or(now) - started).num_milliseconds() as f64 / 1000.0;
        scope.insert("duration".into(), format!("{duration:.6}"));
        scope.insert("status".into(), st.phase.as_str().into());
        if let Some(inputs) = &st.inputs {
            for p in &inputs.parameters {
                let v = p.value.as_ref().map(|v| v.0.clone()).unwrap_or_default();
                scope.insert(format!("inputs.parameters.{}", p.name), v);
            }
        }
        if let Some(outputs) = &st.outputs {
            if let Some(r) = &outputs.result {
                scope.insert("outputs.result".into(), r.clone());
            }
            if let Some(c) = &outputs.exit_code {
                scope.insert("exitCode".into(), c.clone());
            }
            for p in &outputs.parameters {
                let v = p.value.as_ref().map(|v| v.0.clone()).unwrap_or_default();
                scope.insert(format!("outputs.parameters.{}", p.name), v);
            }
        }
        let clocks = Clocks {
            node: Some((started, finished)),
            workflow: (self.started_at.unwrap_or(now), self.finished_at),
        };
        self.compute_metrics(&metrics, &scope, clocks, realtime_only);
    }

    /// Emit the workflow's own metrics: realtime gauges at its start, all at its end (with
    /// the root node's `status` and `duration`, and `workflow.status`/`workflow.duration`).
    pub(crate) fn emit_workflow_metrics(&mut self, realtime_only: bool, now: Time) {
        let Some(metrics) = self.spec.metrics.clone() else {
            return;
        };
        let mut scope = self.default_metric_scope(now);
        let started = self.started_at.unwrap_or(now);
        let mut clocks = Clocks {
            node: None,
            workflow: (started, self.finished_at),
        };
        if !realtime_only {
            let wf_duration =
                (self.finished_at.unwrap_or(now) - started).num_milliseconds() as f64 / 1000.0;
            scope.insert("workflow.status".into(), self.phase.as_str().into());
            scope.insert("workflow.duration".into(), format!("{wf_duration:.6}"));
            if let Some(root) = self.nodes.first() {
                let st = &root.status;
                let s = st.started_at.unwrap_or(now);
                let d = (st.finished_at.unwrap_or(now) - s).num_milliseconds() as f64 / 1000.0;
                scope.insert("duration".into(), format!("{d:.6}"));
                scope.insert("status".into(), st.phase.as_str().into());
                clocks.node = Some((s, st.finished_at));
            }
        }
        self.compute_metrics(&metrics, &scope, clocks, realtime_only);
    }

    /// Argo's `prepareDefaultMetricScope`: the globals, `duration` 0, `status` Pending and
    /// `resourcesDuration.*` 0.
    fn default_metric_scope(&self, _now: Time) -> Vars {
        let mut scope = self.globals.clone();
        scope.insert("duration".into(), "0".into());
        scope.insert("status".into(), Phase::Pending.as_str().into());
        scope.insert("resourcesDuration.cpu".into(), "0".into());
        scope.insert("resourcesDuration.memory".into(), "0".into());
        scope
    }

    fn compute_metrics(
        &mut self,
        metrics: &Metrics,
        scope: &Vars,
        clocks: Clocks,
        realtime_only: bool,
    ) {
        for m in &metrics.prometheus {
            let realtime = is_realtime(m);
            if realtime_only && !realtime {
                continue;
            }
            match sample(m, scope, clocks) {
                Ok(Some(update)) => self.actions.push(Action::Metric(Box::new(update))),
                Ok(None) => {}
                Err(e) => self.metrics_error = Some(e),
            }
        }
    }
}

fn is_realtime(m: &PrometheusMetric) -> bool {
    m.gauge.as_ref().is_some_and(|g| g.realtime == Some(true))
}

/// Prometheus' metric and label name rule (`model.IsValidMetricName`).
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// One metric's sample, `None` when its `when` is false.
fn sample(
    m: &PrometheusMetric,
    scope: &Vars,
    clocks: Clocks,
) -> Result<Option<MetricUpdate>, String> {
    let what = |e: &dyn std::fmt::Display| format!("metric '{}': {e}", m.name);
    if m.help.is_empty() {
        return Err(format!(
            "metric '{}' must contain a help string under 'help: ' field",
            m.name
        ));
    }
    // Name, help, labels and `when` are substituted first; the value after, since a realtime
    // gauge's value is a variable name rather than a value.
    let sub = |s: &str| substitute(s, scope, false).map_err(|e| what(&e));
    let name = sub(&m.name)?;
    if !valid_name(&name) {
        return Err(format!("metric '{name}': metric name is invalid: names may only contain alphanumeric characters, '_', or ':'"));
    }
    let help = sub(&m.help)?;
    let mut labels = Vec::with_capacity(m.labels.len());
    for l in &m.labels {
        let key = sub(&l.key)?;
        if !valid_name(&key) {
            return Err(format!("metric '{name}': metric label '{key}' is invalid: keys may only contain alphanumeric characters, '_', or ':'"));
        }
        labels.push((key, sub(&l.value)?));
    }
    labels.sort();
    labels.dedup_by(|a, b| a.0 == b.0);
    if let Some(when) = &m.when {
        let when = sub(when)?;
        match govaluate::should_execute(&when) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "metric '{name}': unable to compute 'when' clause: {e}"
                ))
            }
        }
    }
    let number = |raw: &str| -> Result<f64, String> {
        let v = sub(raw)?;
        v.trim().parse::<f64>().map_err(|_| {
            format!("could not construct metric '{name}': value '{v}' is not a number")
        })
    };
    let value = if let Some(g) = &m.gauge {
        if g.value.is_empty() {
            return Err(format!("metric '{name}': missing gauge.value"));
        }
        if g.realtime == Some(true) {
            let raw = g.value.trim();
            let var = raw
                .strip_prefix("{{")
                .and_then(|r| r.strip_suffix("}}"))
                .map(str::trim)
                .ok_or_else(|| {
                    "real time metrics can only be used with metric variables".to_string()
                })?;
            let (since, until) = match (var, clocks.node) {
                ("workflow.duration", _) => clocks.workflow,
                ("duration", Some(node)) => node,
                _ => return Err(format!("'{var}' is not available as a real time metric")),
            };
            MetricValue::Realtime { since, until }
        } else {
            let op = match g.operation.as_deref() {
                Some("Add") => GaugeOperation::Add,
                Some("Sub") => GaugeOperation::Sub,
                _ => GaugeOperation::Set,
            };
            MetricValue::Gauge(op, number(&g.value)?)
        }
    } else if let Some(h) = &m.histogram {
        if h.value.is_empty() {
            return Err(format!("metric '{name}': missing histogram.value"));
        }
        let mut buckets = Vec::with_capacity(h.buckets.len());
        for b in &h.buckets {
            let f = match b {
                serde_json::Value::Number(n) => n.as_f64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            buckets.push(f.ok_or_else(|| format!("metric '{name}': bucket {b} is not a number"))?);
        }
        buckets.sort_by(f64::total_cmp);
        buckets.dedup();
        MetricValue::Histogram {
            buckets,
            value: number(&h.value)?,
        }
    } else if let Some(c) = &m.counter {
        if c.value.is_empty() {
            return Err(format!("metric '{name}': missing counter.value"));
        }
        MetricValue::Counter(number(&c.value)?)
    } else {
        return Err(format!(
            "metric '{name}': invalid metric spec (no gauge, histogram or counter)"
        ));
    };
    Ok(Some(MetricUpdate {
        name,
        help,
        labels,
        value,
    }))
}
