//! `workflow-event-bindings` (stored objects: Argo lists them; ONYX also creates and deletes
//! them, the part `kubectl` plays for Argo) and `events`: a webhook submits the bound
//! WorkflowTemplates (`event_runtime::events`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use control_plane::error::ApiError;
use control_plane::state::AppState;
use control_plane::submit;
use event_runtime::events::{self, KIND};

use super::common::{ApiResult, JsonBody, St};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/v1/workflow-event-bindings/{ns}",
            get(list).post(create),
        )
        .route(
            "/api/v1/workflow-event-bindings/{ns}/{name}",
            get(get_one).delete(delete),
        )
        .route("/api/v1/events/{ns}/{discriminator}", post(receive))
}

async fn list(State(s): St, Path(ns): Path<String>) -> ApiResult {
    let items: Vec<Value> = s
        .ctl
        .store
        .objects(KIND, Some(&ns))
        .await?
        .into_iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect();
    Ok(Json(json!({"metadata": {}, "items": items})))
}

async fn create(State(s): St, Path(ns): Path<String>, JsonBody(body): JsonBody) -> ApiResult {
    let mut b = body.get("workflowEventBinding").cloned().unwrap_or(body);
    if b["kind"].is_null() {
        b["kind"] = json!(KIND);
    }
    if b["kind"] != KIND {
        return Err(ApiError::InvalidArgument(format!(
            "kind: expected {KIND}, got {}",
            b["kind"]
        )));
    }
    b["apiVersion"] = json!("argoproj.io/v1alpha1");
    let name = submit::resolve_name(&b)?;
    if b.pointer("/spec/event/selector")
        .and_then(Value::as_str)
        .is_none()
    {
        return Err(ApiError::InvalidArgument(
            "spec.event.selector: required (an expression over namespace, discriminator, metadata and payload)".into(),
        ));
    }
    b["metadata"]["name"] = json!(name);
    b["metadata"]["namespace"] = json!(ns);
    s.ctl
        .store
        .put_object(
            store::ObjectRow {
                kind: KIND.into(),
                namespace: ns.clone(),
                name: name.clone(),
                created_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
                body: b.to_string(),
            },
            true,
        )
        .await
        .map_err(|e| match e {
            store::StoreError::AlreadyExists(_) => ApiError::AlreadyExists(format!(
                "workfloweventbindings.argoproj.io \"{name}\" already exists"
            )),
            other => other.into(),
        })?;
    Ok(Json(b))
}

async fn get_one(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = s.ctl.store.object(KIND, &ns, &name).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "workfloweventbindings.argoproj.io \"{name}\" not found"
        ))
    })?;
    serde_json::from_str(&row.body)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn delete(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    s.ctl
        .store
        .delete_object(KIND, &ns, &name)
        .await
        .map_err(|e| match e {
            store::StoreError::NotFound(_) => ApiError::NotFound(format!(
                "workfloweventbindings.argoproj.io \"{name}\" not found"
            )),
            other => other.into(),
        })?;
    Ok(Json(json!({})))
}

/// Argo's `ReceiveEvent`: every binding of the namespace whose selector holds submits its
/// template; `{}` when all went well, else the errors (each binding is tried).
async fn receive(
    State(s): St,
    Path((ns, discriminator)): Path<(String, String)>,
    headers: HeaderMap,
    JsonBody(payload): JsonBody,
) -> ApiResult {
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let env = events::environment(&ns, &discriminator, &headers, payload);
    let mut errors = Vec::new();
    for row in s.ctl.store.objects(KIND, Some(&ns)).await? {
        let binding: Value =
            serde_json::from_str(&row.body).map_err(|e| ApiError::Internal(e.to_string()))?;
        match events::dispatch(&binding, &env) {
            Ok(None) => {}
            Ok(Some(wf)) => {
                if let Err(e) = submit::submit(&s, &ns, wf, &[], false).await {
                    errors.push(format!("binding {}: {e}", row.name));
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(Json(json!({})))
    } else {
        Err(ApiError::Internal(format!(
            "failed to dispatch event: {}",
            errors.join("; ")
        )))
    }
}
