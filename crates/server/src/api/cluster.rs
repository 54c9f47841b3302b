//! ONYX's own operations (`/api/v1/onyx/…`), which Argo's API has no room for: nodes and
//! their cordon and drain, queues and what they hold, the maintenance rollout and the
//! emergency stop. Each only asks the controller or the maintenance driver; none decides.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use control_plane::error::ApiError;
use control_plane::state::AppState;

use super::common::{ApiResult, St};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/onyx/nodes", get(list_nodes))
        .route("/api/v1/onyx/nodes/{name}/cordon", put(cordon_node))
        .route("/api/v1/onyx/nodes/{name}/uncordon", put(uncordon_node))
        .route("/api/v1/onyx/nodes/{name}/drain", put(drain_node))
        .route("/api/v1/onyx/maintenance", get(maintenance_status))
        .route("/api/v1/onyx/maintenance/start", post(maintenance_start))
        .route("/api/v1/onyx/queues", get(list_queues))
        .route("/api/v1/onyx/namespaces", get(list_namespaces))
        .route("/api/v1/onyx/queues/{name}", get(get_queue))
        .route("/api/v1/onyx/emergency-stop", post(emergency_stop))
}

pub(super) async fn list_nodes(State(s): St) -> Json<Value> {
    let items: Vec<Value> = s
        .ctl
        .cluster()
        .nodes()
        .into_iter()
        .map(|n| {
            json!({"name": n.name, "gpus": n.gpus, "freeGpus": n.free_gpus, "mig": n.mig,
                   "pods": n.pods, "cordoned": n.cordoned, "draining": s.ctl.is_draining(&n.name),
                   "gpuModel": n.gpu_model,
                   "labels": n.labels, "taints": n.taints, "devices": n.devices})
        })
        .collect();
    // Which cluster the nodes are: the configured one, or the Kubernetes cluster's API.
    let cluster = match s.cfg.executor {
        control_plane::config::ExecutorKind::Local => s.cfg.cluster.as_str(),
        control_plane::config::ExecutorKind::Kubernetes => "kubernetes",
    };
    Json(json!({"cluster": cluster, "items": items}))
}

/// Namespaces (tenants): the GPUs each holds now against its quota, and its fair-share weight.
pub(super) async fn list_namespaces(State(s): St) -> Json<Value> {
    Json(json!({"items": s.ctl.cluster().namespaces()}))
}

pub(super) fn no_node(s: &AppState, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "nodes {name:?} not found (nodes: {})",
        s.ctl.cluster().node_names().join(", ")
    ))
}

pub(super) async fn set_cordon(s: &AppState, name: &str, on: bool) -> ApiResult {
    if !s.ctl.cordon(name, on) {
        return Err(no_node(s, name));
    }
    Ok(Json(json!({"name": name, "cordoned": on})))
}

pub(super) async fn cordon_node(State(s): St, Path(name): Path<String>) -> ApiResult {
    set_cordon(&s, &name, true).await
}

pub(super) async fn uncordon_node(State(s): St, Path(name): Path<String>) -> ApiResult {
    set_cordon(&s, &name, false).await
}

#[derive(serde::Deserialize)]
pub(super) struct DrainQuery {
    #[serde(rename = "graceSeconds", default = "default_grace")]
    grace_seconds: u64,
}

pub(super) fn default_grace() -> u64 {
    30
}

/// Drain a node: cordon it, give its pods their grace period to end, then evict what is
/// left — and every other pod of the same gangs, so that a gang is moved whole.
pub(super) async fn drain_node(
    State(s): St,
    Path(name): Path<String>,
    Query(q): Query<DrainQuery>,
) -> ApiResult {
    let Some(on_node) = s.ctl.drain(&name, Duration::from_secs(q.grace_seconds)) else {
        return Err(no_node(&s, &name));
    };
    Ok(Json(
        json!({"name": name, "cordoned": true, "pods": on_node,
                   "graceSeconds": q.grace_seconds}),
    ))
}

pub(super) async fn maintenance_status(State(s): St) -> Json<Value> {
    Json(s.maint.status())
}

/// Start a rolling reboot of every node now (the window's length from now).
pub(super) async fn maintenance_start(State(s): St) -> ApiResult {
    s.maint
        .start_now(s.ctl.cluster().node_names())
        .map_err(ApiError::FailedPrecondition)?;
    Ok(Json(s.maint.status()))
}

pub(super) fn queue_json(q: cluster_shell::QueueUsage) -> Value {
    serde_json::to_value(q).unwrap_or_default()
}

pub(super) async fn list_queues(State(s): St) -> Json<Value> {
    let items: Vec<Value> = s
        .ctl
        .cluster()
        .queues()
        .into_iter()
        .map(queue_json)
        .collect();
    Json(json!({"items": items}))
}

pub(super) async fn get_queue(State(s): St, Path(name): Path<String>) -> ApiResult {
    let queues = s.ctl.cluster().queues();
    let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
    match queues.into_iter().find(|q| q.name == name) {
        Some(q) => Ok(Json(queue_json(q))),
        None => Err(ApiError::NotFound(format!(
            "queues {name:?} not found (queues: {})",
            names.join(", ")
        ))),
    }
}

/// The spec's emergency stop, ONYX side: cordon every node, suspend every workflow.
pub(super) async fn emergency_stop(State(s): St) -> ApiResult {
    let nodes = s.ctl.cluster().node_names();
    for n in &nodes {
        s.ctl.cordon(n, true);
    }
    let suspended = s.ctl.suspend_all().await;
    // The spec's last step: power the GPU nodes off through their BMCs, where configured —
    // every node at once, so that one BMC that does not answer delays only itself.
    let mut powered_off = Vec::new();
    let mut power_errors = Vec::new();
    if s.maint.power.configured() {
        let calls: Vec<_> = nodes
            .iter()
            .map(|n| {
                let maint = s.maint.clone();
                let node = n.clone();
                tokio::task::spawn_blocking(move || (node.clone(), maint.power.off(&node)))
            })
            .collect();
        for call in calls {
            match call.await {
                Ok((node, Ok(()))) => powered_off.push(node),
                Ok((node, Err(e))) => {
                    tracing::error!("emergency stop: powering {node} off: {e}");
                    power_errors.push(json!({"node": node, "error": e}));
                }
                Err(e) => power_errors.push(json!({"node": null, "error": e.to_string()})),
            }
        }
    }
    tracing::warn!(
        "emergency stop: cordoned {} node(s), suspended {} workflow(s)",
        nodes.len(),
        suspended.len()
    );
    Ok(Json(json!({"cordoned": nodes, "suspended": suspended,
                   "poweredOff": powered_off, "powerErrors": power_errors,
                   "powerConfigured": s.maint.power.configured()})))
}
