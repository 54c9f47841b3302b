//! The workflow archive (`/api/v1/archived-workflows`): finished workflows kept after their
//! live object is gone, listed, read, deleted, retried and resubmitted as Argo's archive is.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use control_plane::error::ApiError;
use control_plane::state::AppState;

use super::common::string_list;
use super::common::{find, list_body, list_query, visible, ApiResult, Caller, JsonBody, St, Q};
use super::workflows::resubmit_manifest;
use control_plane::submit;
use workflow_runtime::retry;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/archived-workflows", get(list_archived))
        .route("/api/v1/archived-workflows-label-keys", get(label_keys))
        .route("/api/v1/archived-workflows-label-values", get(label_values))
        .route(
            "/api/v1/archived-workflows/{uid}",
            get(get_archived).delete(delete_archived),
        )
        .route(
            "/api/v1/archived-workflows/{uid}/retry",
            put(retry_archived),
        )
        .route(
            "/api/v1/archived-workflows/{uid}/resubmit",
            put(resubmit_archived),
        )
}

/// Argo's `ListArchivedWorkflowLabelKeys`: `{"items": [key, …]}`.
async fn label_keys(State(s): St, caller: Caller) -> ApiResult {
    let within = visible(&s, &caller, "list");
    let items = s.ctl.store.archived_labels(None, within.as_deref()).await?;
    Ok(Json(json!({"items": items})))
}

/// Argo's `ListArchivedWorkflowLabelValues`: the values of the one key the label selector
/// names (`listOptions.labelSelector=KEY`).
async fn label_values(State(s): St, Query(q): Q, caller: Caller) -> ApiResult {
    let key = q
        .get("listOptions.labelSelector")
        .map(|k| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        })
        .ok_or_else(|| {
            ApiError::InvalidArgument(
                "listOptions.labelSelector: one label key is required (its values are listed)"
                    .into(),
            )
        })?;
    let within = visible(&s, &caller, "list");
    let items = s
        .ctl
        .store
        .archived_labels(Some(key), within.as_deref())
        .await?;
    Ok(Json(json!({"items": items})))
}

pub(super) async fn list_archived(State(s): St, Query(q): Q, caller: Caller) -> ApiResult {
    let ns = q.get("namespace").filter(|n| !n.is_empty()).cloned();
    let mut query = list_query(&q, ns)?;
    query.within = visible(&s, &caller, "list");
    let page = s.ctl.store.list_archived(&query).await?;
    Ok(Json(list_body(page.items, page.next, "WorkflowList")))
}

pub(super) async fn archived(s: &AppState, uid: &str) -> Result<store::ArchivedRow, ApiError> {
    s.ctl
        .store
        .archived(uid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("archived workflow {uid:?} not found")))
}

pub(super) async fn get_archived(State(s): St, Path(uid): Path<String>) -> ApiResult {
    let row = archived(&s, &uid).await?;
    Ok(Json(serde_json::from_str(&row.body).unwrap_or_default()))
}

pub(super) async fn delete_archived(State(s): St, Path(uid): Path<String>) -> ApiResult {
    s.ctl.store.delete_archived(&uid).await?;
    Ok(Json(json!({})))
}

/// Making a workflow from an archived one (a resubmit, or a retry whose live copy is gone)
/// is creating one in `ns`: the caller needs that too, beyond reading the archived one
/// (checked by the authentication layer).
fn may_create_in(s: &AppState, caller: &Caller, ns: &str) -> Result<(), ApiError> {
    if let Some(p) = caller {
        let need = access::Need {
            verb: "create",
            resource: "workflows",
            scope: access::Scope::Namespace(ns.to_string()),
        };
        s.auth
            .rules()
            .check(&p.0, &need, None)
            .map_err(|d| ApiError::Forbidden(d.message))?;
    }
    Ok(())
}

pub(super) async fn retry_archived(
    State(s): St,
    Path(uid): Path<String>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let a = archived(&s, &uid).await?;
    // As Argo: a workflow still live is retried as such; one whose live copy is gone is
    // made again from the archive, through every check a submission passes, keeping what
    // succeeded.
    if find(&s, &a.namespace, &a.name).await.is_ok() {
        return Err(ApiError::AlreadyExists(format!(
            "Workflow already exists on cluster, use argo retry {} instead",
            a.name
        )));
    }
    let ended: Value = serde_json::from_str(&a.body)
        .map_err(|e| ApiError::Internal(format!("archived workflow {uid}: {e}")))?;
    let selector = retry::parse_selector(body["nodeFieldSelector"].as_str().unwrap_or_default())?;
    let restart = body["restartSuccessful"].as_bool() == Some(true);
    let at = workflow_runtime::now();
    let retry = retry::formulate(
        &a.name,
        &ended["status"],
        restart,
        &selector,
        &workflow_engine::format_time(&at),
    )?;
    let mut manifest = ended;
    if let Some(m) = manifest.as_object_mut() {
        m.remove("status");
    }
    if let Some(meta) = manifest["metadata"].as_object_mut() {
        meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "labels" | "annotations"));
    }
    // What said it had ended goes, as Argo's retry drops it.
    if let Some(labels) = manifest
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        for done in ["completed", "workflow-archiving-status", "phase"] {
            labels.remove(&format!("workflows.argoproj.io/{done}"));
        }
    }
    may_create_in(&s, &caller, &a.namespace)?;
    let params = submit::parse_parameters(&string_list(&body["parameters"]))?;
    let accepted = submit::accept(&s, &a.namespace, manifest, &params).await?;
    Ok(Json(s.ctl.create(accepted.retried(retry)).await?))
}

pub(super) async fn resubmit_archived(
    State(s): St,
    Path(uid): Path<String>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let a = archived(&s, &uid).await?;
    let wf: Value = serde_json::from_str(&a.body).unwrap_or_default();
    let ns = body["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or(&a.namespace)
        .to_string();
    if !access::is_namespace(&ns) {
        return Err(ApiError::InvalidArgument(format!(
            "namespace {ns:?} is not a namespace name (a DNS-1123 label)"
        )));
    }
    may_create_in(&s, &caller, &ns)?;
    resubmit_manifest(&s, &ns, wf, &a.name, &body).await
}
