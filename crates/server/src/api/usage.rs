//! `GET /api/v1/onyx/usage?month=YYYY-MM`: GPU-hours per namespace and queue, and per day, read
//! from the usage ledger (`crate::usage`). Without `month`, the current one.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{Datelike, Utc};
use serde_json::json;

use crate::state::AppState;
use crate::usage;

use super::common::{ApiResult, St, Q};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/v1/onyx/usage", get(gpu_usage))
}

async fn gpu_usage(State(s): St, Query(q): Q) -> ApiResult {
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
    let report = usage::report(&rows, from, to, now);
    let mut body = serde_json::to_value(report).unwrap_or_default();
    body["month"] = json!(month);
    Ok(Json(body))
}
