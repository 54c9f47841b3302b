//! `GET /api/v1/usage?month=YYYY-MM` (also under `/api/v1/onyx/`): GPU- and CPU-hours per
//! namespace and queue, per day, and their cost at the configured prices, read from the usage
//! ledger (`control_plane::usage`). Without `month`, the current one.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Datelike, TimeZone, Utc};
use serde_json::{json, Value};

use control_plane::state::AppState;
use control_plane::usage;

use super::common::{ApiResult, St, Q};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/onyx/usage", get(month_usage))
        .route("/api/v1/usage", get(month_usage))
        .route("/api/v1/onyx/usage/pods/{pod}", get(pod_usage))
}

/// What one pod held of the GPUs, each time it was granted some: node, devices, GPU
/// equivalents, and when it asked, got and released them (still held: no `released`).
/// What a pod held, each time it was granted: `?namespace=` (default `default`) with its name.
async fn pod_usage(State(s): St, Path(pod): Path<String>, Query(q): Q) -> ApiResult {
    let time = |ns: i64| Utc.timestamp_nanos(ns).to_rfc3339();
    let namespace = q.get("namespace").map_or("default", String::as_str);
    let items: Vec<Value> = s
        .ctl
        .store
        .usage_of_pod(&workflow_runtime::pod_key(namespace, &pod))
        .await?
        .into_iter()
        .map(|u| {
            json!({"node": u.node, "devices": u.devices, "gpus": u.gpus, "namespace": u.namespace,
                   "queue": u.queue, "asked": time(u.asked_ns), "granted": time(u.started_ns),
                   "released": u.ended_ns.map(time)})
        })
        .collect();
    Ok(Json(json!({"pod": pod, "items": items})))
}

async fn month_usage(State(s): St, Query(q): Q) -> ApiResult {
    let now = Utc::now();
    let month = q
        .get("month")
        .cloned()
        .unwrap_or_else(|| format!("{:04}-{:02}", now.year(), now.month()));
    let (from, to) = usage::month(&month)?;
    let rows = s
        .ctl
        .store
        .usage(
            from.timestamp_nanos_opt().unwrap_or(i64::MIN),
            to.timestamp_nanos_opt().unwrap_or(i64::MAX),
        )
        .await?;
    let artifacts = s
        .ctl
        .store
        .artifacts_before(to.timestamp_nanos_opt().unwrap_or(i64::MAX))
        .await?;
    let report = usage::report(&rows, &artifacts, from, to, now, &s.cfg.prices);
    let mut body = serde_json::to_value(report).unwrap_or_default();
    body["month"] = json!(month);
    Ok(Json(body))
}
