//! The metrics' tests: families, labels and values as a scrape reads them.

use super::*;
use workflow_engine::{GaugeOperation, MetricUpdate, MetricValue};

/// The value of the first sample line that starts with `prefix`.
fn sample_line(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn update(name: &str, labels: &[(&str, &str)], value: MetricValue) -> MetricUpdate {
    MetricUpdate {
        name: name.into(),
        help: "help".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

#[test]
fn counters_add_gauges_set_and_histograms_observe_per_label_set() {
    let m = std::sync::Arc::new(Metrics::default());
    for status in ["Succeeded", "Failed", "Failed"] {
        m.apply(
            "wf",
            &update(
                "result_counter",
                &[("status", status)],
                MetricValue::Counter(1.0),
            ),
        )
        .unwrap();
    }
    m.apply(
        "wf",
        &update("g", &[], MetricValue::Gauge(GaugeOperation::Set, 5.0)),
    )
    .unwrap();
    m.apply(
        "wf",
        &update("g", &[], MetricValue::Gauge(GaugeOperation::Sub, 2.0)),
    )
    .unwrap();
    for v in [1.0, 3.0, 9.0] {
        m.apply(
            "wf",
            &update(
                "h",
                &[],
                MetricValue::Histogram {
                    buckets: vec![2.0, 4.0],
                    value: v,
                },
            ),
        )
        .unwrap();
    }
    let text = render(&m, Snapshot::default());
    assert_eq!(
        sample_line(&text, "argo_workflows_result_counter{status=\"Failed\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample_line(&text, "argo_workflows_result_counter{status=\"Succeeded\"}"),
        Some(1.0)
    );
    assert_eq!(sample_line(&text, "argo_workflows_g "), Some(3.0));
    assert_eq!(
        sample_line(&text, "argo_workflows_h_bucket{le=\"2\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample_line(&text, "argo_workflows_h_bucket{le=\"4\"}"),
        Some(2.0)
    );
    assert_eq!(sample_line(&text, "argo_workflows_h_count"), Some(3.0));
    assert_eq!(sample_line(&text, "argo_workflows_h_sum"), Some(13.0));
    // Argo's names, exactly: no `_total` added to a counter named `…_count`.
    assert!(
        text.contains("\nargo_workflows_workflows_processed_count 0.0\n"),
        "{text}"
    );
    assert_eq!(
        sample_line(&text, "argo_workflows_count{status=\"Error\"}"),
        Some(0.0)
    );
}

#[test]
fn a_clashing_type_help_or_system_name_is_refused() {
    let m = Metrics::default();
    m.apply("wf", &update("x", &[], MetricValue::Counter(1.0)))
        .unwrap();
    let e = m
        .apply(
            "wf",
            &update("x", &[], MetricValue::Gauge(GaugeOperation::Set, 1.0)),
        )
        .unwrap_err();
    assert!(e.contains("is a counter"), "{e}");
    let mut other_help = update("x", &[], MetricValue::Counter(1.0));
    other_help.help = "other".into();
    assert!(m
        .apply("wf", &other_help)
        .unwrap_err()
        .contains("help strings must be identical"));
    assert!(m
        .apply("wf", &update("count", &[], MetricValue::Counter(1.0)))
        .unwrap_err()
        .contains("already in use by the system"));
}

#[test]
fn realtime_gauges_follow_the_clock_and_go_with_their_workflow() {
    let m = std::sync::Arc::new(Metrics::default());
    let since = Utc::now() - chrono::Duration::seconds(30);
    m.apply(
        "wf",
        &update("rt", &[], MetricValue::Realtime { since, until: None }),
    )
    .unwrap();
    let snap = || Snapshot {
        now: Some(since + chrono::Duration::seconds(42)),
        ..Default::default()
    };
    assert_eq!(
        sample_line(&render(&m, snap()), "argo_workflows_rt "),
        Some(42.0)
    );
    m.forget("wf");
    assert!(!render(&m, snap()).contains("argo_workflows_rt"));
}

#[test]
fn modelled_gpus_are_busy_as_far_as_they_are_held() {
    use cluster_shell::{GpuUsage, Holder, InstanceUsage, NodeUsage};
    let holder = Holder {
        pod: "p".into(),
        namespace: "ns".into(),
        queue: "q".into(),
        gang: None,
        gpu_milli: None,
    };
    let node = NodeUsage {
        name: "n1".into(),
        gpus: 2,
        free_gpus: 0,
        mig: vec![],
        pods: 1,
        cordoned: false,
        gpu_model: "NVIDIA-H100-80GB-HBM3".into(),
        labels: Default::default(),
        taints: vec![],
        devices: vec![
            GpuUsage {
                index: 0,
                uuid: "GPU-0".into(),
                holders: vec![holder.clone()],
                instances: vec![],
            },
            GpuUsage {
                index: 1,
                uuid: "GPU-1".into(),
                holders: vec![],
                instances: vec![
                    InstanceUsage {
                        profile: "3g.40gb".into(),
                        uuid: "MIG-a".into(),
                        holder: Some(holder),
                    },
                    InstanceUsage {
                        profile: "3g.40gb".into(),
                        uuid: "MIG-b".into(),
                        holder: None,
                    },
                ],
            },
        ],
    };
    let g = modelled_gpus(&[node]);
    assert_eq!(g[0].util_percent, 100.0);
    assert_eq!(g[0].fb_used_mib, 80.0 * 1024.0);
    assert_eq!(g[1].util_percent, (300.0_f64 / 7.0).round());
    assert!(g[1].temp_celsius < g[0].temp_celsius);
}
