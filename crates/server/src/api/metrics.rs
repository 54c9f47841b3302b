//! `GET /metrics`: Prometheus' text exposition of the controller, scheduler and GPUs
//! (`metric_families`). Behind the same authentication as the API: Prometheus sends the
//! server's token with `authorization: {credentials: …}` in its scrape config.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use control_plane::state::AppState;
use metric_families::{local_gpus, modelled_gpus, render, store_disk, Snapshot};

use super::common::St;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(s): St) -> impl IntoResponse {
    let workflows = match s.ctl.store.count_by_phase().await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("/metrics: counting workflows: {e}");
            Vec::new()
        }
    };
    let cluster = s.ctl.cluster();
    let nodes = cluster.nodes();
    let gpus = if cluster.is_local() {
        let host = nodes.first().map(|n| n.name.clone()).unwrap_or_default();
        tokio::task::spawn_blocking(move || local_gpus(&host))
            .await
            .unwrap_or_default()
    } else {
        modelled_gpus(&nodes)
    };
    let quotas = cluster
        .namespaces()
        .into_iter()
        .filter_map(|n| Some((n.namespace, n.gpu_quota? as f64)))
        .collect();
    let (store_bytes, store_fs) = store_disk(&s.cfg.home);
    let snapshot = Snapshot {
        workflows,
        queues: cluster.queues(),
        nodes,
        gpus,
        quotas,
        store_bytes,
        store_fs,
        waits: cluster.waits(),
        audit: Some(s.audit.stats.clone()),
        now: None,
    };
    let text = render(&s.ctl.metrics, snapshot);
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    )
}
