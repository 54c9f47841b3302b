//! GPU usage: the ledger's writer (every grant and release of GPUs, in the store) and the
//! report read from it — GPU-hours per namespace and queue over a window, and per day, with a
//! MIG instance counted as its compute slices over 7 and a fraction as its share, as Kubecost
//! counts shared GPUs. The report is a pure function of the ledger's rows, the window and now.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::Serialize;
use store::{ArtifactRow, Store, UsageRow};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::config::Prices;
use crate::error::ApiError;
use cluster_shell::Ledger;

/// Write the ledger's changes to the store, in order. First, holds left open by pods that
/// ended while the server was down are closed (at this start: an upper bound).
pub async fn record(store: Store, holding: Vec<String>, mut changes: UnboundedReceiver<Ledger>) {
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    if let Err(e) = store.usage_close_all_but(holding, now).await {
        tracing::error!("closing the GPU holds of pods gone while the server was down: {e}");
    }
    while let Some(change) = changes.recv().await {
        let done = match change {
            Ledger::Held(row) => store.usage_started(row).await,
            Ledger::Released { pod, at_ns } => store.usage_ended(&pod, at_ns).await,
        };
        if let Err(e) = done {
            tracing::error!("recording GPU usage: {e}");
        }
    }
}

/// A calendar month, `YYYY-MM`, as `[start, end)` in UTC.
pub fn month(text: &str) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let bad =
        || ApiError::InvalidArgument(format!("month {text:?}: expected YYYY-MM, such as 2026-11"));
    let (y, m) = text.split_once('-').ok_or_else(bad)?;
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let start = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)
    }
    .ok_or_else(bad)?;
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"));
    Ok((at(start), at(next)))
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceUsage {
    pub namespace: String,
    pub gpu_hours: f64,
    /// GPU-hours by queue.
    pub queues: BTreeMap<String, f64>,
    /// Hours of requested CPU cores.
    pub cpu_hours: f64,
    /// CPU-hours by queue.
    pub cpu_queues: BTreeMap<String, f64>,
    /// Artifact bytes its workflows had stored by the window's end.
    pub storage_bytes: u64,
    /// Those bytes over the time they were stored within the window, in GB-hours (10^9 bytes).
    pub storage_gb_hours: f64,
    /// GPU-hours, CPU-hours and storage at the configured prices.
    pub cost: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    pub from: String,
    pub to: String,
    pub namespaces: Vec<NamespaceUsage>,
    /// Per day (`YYYY-MM-DD`), GPU-hours by namespace.
    pub days: BTreeMap<String, BTreeMap<String, f64>>,
    pub total_gpu_hours: f64,
    pub total_cpu_hours: f64,
    pub total_storage_bytes: u64,
    pub total_storage_gb_hours: f64,
    pub total_cost: f64,
    pub currency: String,
    /// The prices the costs are at.
    pub prices: Prices,
    /// Per day a GPU pod was granted (`YYYY-MM-DD`): how many were, and their mean wait from
    /// asking to be scheduled to their grant.
    pub waits: BTreeMap<String, Wait>,
    /// The mean wait of every GPU pod granted in the window (`None`: none was).
    pub mean_wait_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    pub pods: u64,
    pub mean_wait_seconds: f64,
}

const HOUR_NS: f64 = 3_600e9;
/// A billing month, as cloud storage prices count it (365 × 24 / 12).
const HOURS_PER_MONTH: f64 = 730.0;
const DAY_NS: i64 = 86_400_000_000_000;

/// GPU- and CPU-hours of `rows` inside `[from, to)`, and their cost at `prices`; a hold still
/// open counts until `now`.
pub fn report(
    rows: &[UsageRow],
    artifacts: &[ArtifactRow],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    prices: &Prices,
) -> UsageReport {
    let ns = |t: DateTime<Utc>| t.timestamp_nanos_opt().unwrap_or(i64::MAX);
    let (lo, hi, now) = (ns(from), ns(to), ns(now));
    let mut by_ns: BTreeMap<String, NamespaceUsage> = BTreeMap::new();
    let mut days: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut waits: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let day_of = |at: i64| {
        let day = Utc.timestamp_nanos(at).date_naive();
        format!("{:04}-{:02}-{:02}", day.year(), day.month(), day.day())
    };
    for r in rows {
        if (lo..hi).contains(&r.started_ns) && r.gpus > 0.0 {
            let w = waits.entry(day_of(r.started_ns)).or_default();
            w.0 += 1;
            w.1 += (r.started_ns - r.asked_ns).max(0) as f64 / 1e9;
        }
        let start = r.started_ns.max(lo);
        let end = r.ended_ns.unwrap_or(now).min(hi);
        if end <= start {
            continue;
        }
        let held = (end - start) as f64 / HOUR_NS;
        let hours = held * r.gpus;
        let entry = by_ns
            .entry(r.namespace.clone())
            .or_insert_with(|| NamespaceUsage {
                namespace: r.namespace.clone(),
                ..Default::default()
            });
        entry.cpu_hours += held * r.cpus;
        *entry.cpu_queues.entry(r.queue.clone()).or_default() += held * r.cpus;
        if r.gpus == 0.0 {
            continue;
        }
        entry.gpu_hours += hours;
        *entry.queues.entry(r.queue.clone()).or_default() += hours;
        // Split by UTC day.
        let mut at = start;
        while at < end {
            let day_end = (at.div_euclid(DAY_NS) + 1) * DAY_NS;
            let upto = day_end.min(end);
            let day = Utc.timestamp_nanos(at).date_naive();
            let key = format!("{:04}-{:02}-{:02}", day.year(), day.month(), day.day());
            *days
                .entry(key)
                .or_default()
                .entry(r.namespace.clone())
                .or_default() += (upto - at) as f64 / HOUR_NS * r.gpus;
            at = upto;
        }
    }
    for a in artifacts.iter().filter(|a| a.stored_ns < hi) {
        let entry = by_ns
            .entry(a.namespace.clone())
            .or_insert_with(|| NamespaceUsage {
                namespace: a.namespace.clone(),
                ..Default::default()
            });
        entry.storage_bytes += a.bytes.max(0) as u64;
        let held = (now.min(hi) - a.stored_ns.max(lo)).max(0) as f64 / HOUR_NS;
        entry.storage_gb_hours += a.bytes.max(0) as f64 / 1e9 * held;
    }
    let mut namespaces: Vec<NamespaceUsage> = by_ns.into_values().collect();
    for n in &mut namespaces {
        n.cost = n.gpu_hours * prices.gpu_hour
            + n.cpu_hours * prices.cpu_hour
            + n.storage_gb_hours / HOURS_PER_MONTH * prices.storage_gb_month;
    }
    namespaces.sort_by(|a, b| {
        b.gpu_hours
            .total_cmp(&a.gpu_hours)
            .then(a.namespace.cmp(&b.namespace))
    });
    let (pods, wait_s) = waits
        .values()
        .fold((0, 0.0), |(n, s), (m, t)| (n + m, s + t));
    UsageReport {
        mean_wait_seconds: (pods > 0).then(|| wait_s / pods as f64),
        waits: waits
            .into_iter()
            .map(|(day, (n, total))| {
                let wait = Wait {
                    pods: n,
                    mean_wait_seconds: total / n as f64,
                };
                (day, wait)
            })
            .collect(),
        from: from.to_rfc3339(),
        to: to.to_rfc3339(),
        total_gpu_hours: namespaces.iter().map(|n| n.gpu_hours).sum(),
        total_cpu_hours: namespaces.iter().map(|n| n.cpu_hours).sum(),
        total_storage_bytes: namespaces.iter().map(|n| n.storage_bytes).sum(),
        total_storage_gb_hours: namespaces.iter().map(|n| n.storage_gb_hours).sum(),
        total_cost: namespaces.iter().map(|n| n.cost).sum(),
        currency: prices.currency.clone(),
        prices: prices.clone(),
        namespaces,
        days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, d, h, 0, 0).unwrap()
    }

    fn hold(
        ns: &str,
        queue: &str,
        gpus: f64,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
    ) -> UsageRow {
        UsageRow {
            pod: format!("{ns}-{}", from.timestamp()),
            namespace: ns.into(),
            queue: queue.into(),
            node: "n".into(),
            gpus,
            cpus: 4.0,
            devices: vec!["0".into()],
            // Each waited a minute, except the one still running: ten.
            asked_ns: from.timestamp_nanos_opt().unwrap()
                - if to.is_some() { 60 } else { 600 } * 1_000_000_000,
            started_ns: from.timestamp_nanos_opt().unwrap(),
            ended_ns: to.map(|t| t.timestamp_nanos_opt().unwrap()),
        }
    }

    #[test]
    fn gpu_hours_are_cut_to_the_window_split_by_day_and_mig_counts_its_slices() {
        let rows = [
            // 8 GPUs from Oct 31 22:00 to Nov 1 02:00: only the 2 hours in November count.
            hold(
                "vision",
                "dedicated",
                8.0,
                Utc.with_ymd_and_hms(2026, 10, 31, 22, 0, 0).unwrap(),
                Some(at(1, 2)),
            ),
            // A 1g MIG instance (1/7 of a GPU) for 14 hours across midnight.
            hold("nlp", "shared", 1.0 / 7.0, at(2, 18), Some(at(3, 8))),
            // Still running at "now" (Nov 10 12:00): counted until now.
            hold("nlp", "default", 0.5, at(10, 10), None),
        ];
        let (from, to) = month("2026-11").unwrap();
        let prices = Prices {
            currency: "JPY".into(),
            gpu_hour: 450.0,
            cpu_hour: 5.0,
            storage_gb_month: 0.0,
        };
        let r = report(&rows, &[], from, to, at(10, 12), &prices);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert_eq!(r.namespaces[0].namespace, "vision");
        assert!(close(r.namespaces[0].gpu_hours, 16.0), "{r:?}");
        let nlp = &r.namespaces[1];
        assert!(close(nlp.gpu_hours, 2.0 + 1.0), "{r:?}");
        assert!(close(nlp.queues["shared"], 2.0) && close(nlp.queues["default"], 1.0));
        assert!(close(r.days["2026-11-02"]["nlp"], 6.0 / 7.0));
        assert!(close(r.days["2026-11-03"]["nlp"], 8.0 / 7.0));
        assert!(close(r.total_gpu_hours, 19.0));
        // 4 cores each: 2 + 14 + 2 hours in the window.
        assert!(close(r.total_cpu_hours, 4.0 * 18.0), "{r:?}");
        assert!(
            close(r.namespaces[0].cost, 16.0 * 450.0 + 8.0 * 5.0),
            "{r:?}"
        );
        assert!(close(r.total_cost, 19.0 * 450.0 + 72.0 * 5.0));
        assert_eq!(r.currency, "JPY");
        // The hold granted in October is not this month's wait.
        assert_eq!(r.waits.len(), 2, "{r:?}");
        assert_eq!(
            r.waits["2026-11-10"],
            Wait {
                pods: 1,
                mean_wait_seconds: 600.0
            }
        );
        assert!(close(r.mean_wait_seconds.unwrap(), 330.0));
    }

    /// Storage: bytes stored by the window's end, GB-hours from each artifact's store time
    /// (or the window's start) to now (or the window's end), at a price per GB-month.
    #[test]
    fn artifact_storage_is_billed_per_namespace_in_gb_hours() {
        let artifact = |ns: &str, bytes: i64, at: DateTime<Utc>| ArtifactRow {
            uid: format!("{ns}-{bytes}"),
            key: "k".into(),
            namespace: ns.into(),
            workflow: "w".into(),
            bytes,
            stored_ns: at.timestamp_nanos_opt().unwrap(),
        };
        let (from, to) = month("2026-11").unwrap();
        let prices = Prices {
            currency: "JPY".into(),
            gpu_hour: 0.0,
            cpu_hour: 0.0,
            storage_gb_month: 730.0,
        };
        let october = Utc.with_ymd_and_hms(2026, 10, 20, 0, 0, 0).unwrap();
        let artifacts = [
            // 2 GB from October: the 9.5 days of November until now count.
            artifact("vision", 2_000_000_000, october),
            // 1 GB stored 2 hours before now.
            artifact("nlp", 1_000_000_000, at(10, 10)),
            // Stored after the window: not this month's.
            artifact(
                "nlp",
                5,
                Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap(),
            ),
        ];
        let r = report(&[], &artifacts, from, to, at(10, 12), &prices);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let vision = r
            .namespaces
            .iter()
            .find(|n| n.namespace == "vision")
            .unwrap();
        assert_eq!(vision.storage_bytes, 2_000_000_000);
        assert!(
            close(vision.storage_gb_hours, 2.0 * (9.0 * 24.0 + 12.0)),
            "{r:?}"
        );
        // 730 per GB-month is 1 per GB-hour.
        assert!(close(vision.cost, vision.storage_gb_hours), "{r:?}");
        let nlp = r.namespaces.iter().find(|n| n.namespace == "nlp").unwrap();
        assert_eq!(nlp.storage_bytes, 1_000_000_000);
        assert!(close(nlp.storage_gb_hours, 2.0));
        assert_eq!(r.total_storage_bytes, 3_000_000_000);
    }

    #[test]
    fn a_month_is_checked() {
        assert_eq!(
            month("2026-12").unwrap().1,
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        for bad in ["2026", "2026-13", "x-1", ""] {
            let e = month(bad).unwrap_err().to_string();
            assert!(e.contains("expected YYYY-MM"), "{e}");
        }
    }
}
