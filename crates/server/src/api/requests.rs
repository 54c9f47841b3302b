//! `namespace-requests`: ask for a namespace, list requests, approve or deny one (admins).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use control_plane::error::ApiError;
use control_plane::requests::{self, KIND};
use control_plane::state::AppState;

use super::common::{ApiResult, Caller, JsonBody, St};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/namespace-requests", get(list).post(create))
        .route("/api/v1/namespace-requests/{name}", get(get_one))
        .route(
            "/api/v1/namespace-requests/{name}/approve",
            put(|s: St, p: Path<String>, c: Caller| decide(s, p, c, true)),
        )
        .route(
            "/api/v1/namespace-requests/{name}/deny",
            put(|s: St, p: Path<String>, c: Caller| decide(s, p, c, false)),
        )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn who(caller: &Caller) -> (String, Vec<String>, bool) {
    match caller {
        Some(p) => (p.0.name.clone(), p.0.groups.clone(), p.0.admin),
        None => ("anonymous".into(), Vec::new(), true),
    }
}

async fn create(State(s): St, caller: Caller, JsonBody(body): JsonBody) -> ApiResult {
    let (name, groups, admin) = who(&caller);
    let request = requests::new_request(&body, &name, &groups, admin, &now())
        .map_err(ApiError::InvalidArgument)?;
    let ns = request["spec"]["namespace"].as_str().unwrap_or_default();
    if s.cfg.namespaces.contains_key(ns) {
        return Err(ApiError::AlreadyExists(format!(
            "namespace {ns:?} already exists (it is in the server's config)"
        )));
    }
    if s.ctl.store.object(KIND, "", ns).await?.is_some() {
        return Err(ApiError::AlreadyExists(format!(
            "namespace {ns:?} has already been requested"
        )));
    }
    // A namespace someone already works in is theirs: asking for it would give it (and what
    // is in it) to another group. Said without naming who.
    if in_use(&s, ns).await? {
        return Err(ApiError::AlreadyExists(format!(
            "namespace {ns:?} already exists (it is in use)"
        )));
    }
    s.ctl
        .store
        .put_object(
            store::ObjectRow {
                kind: KIND.into(),
                namespace: String::new(),
                name: ns.to_string(),
                created_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
                body: request.to_string(),
            },
            true,
        )
        .await
        .map_err(|e| match e {
            store::StoreError::AlreadyExists(_) => {
                ApiError::AlreadyExists(format!("namespace {ns:?} has already been requested"))
            }
            other => other.into(),
        })?;
    Ok(Json(request))
}

/// Whether a namespace is granted by the server's config or holds workflows or templates.
async fn in_use(s: &AppState, ns: &str) -> Result<bool, ApiError> {
    let granted = s
        .auth
        .rules()
        .grants
        .iter()
        .any(|g| g.namespaces.iter().any(|n| n == ns));
    if granted || ns == "default" {
        return Ok(true);
    }
    let live = s
        .ctl
        .store
        .count_by_phase()
        .await?
        .iter()
        .any(|(n, _, count)| n == ns && *count > 0);
    if live {
        return Ok(true);
    }
    for kind in ["WorkflowTemplate", "CronWorkflow", "EventSource", "Sensor"] {
        if !s.ctl.store.objects(kind, Some(ns)).await?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

async fn list(State(s): St, caller: Caller) -> ApiResult {
    let (name, groups, admin) = who(&caller);
    let items: Vec<Value> = s
        .ctl
        .store
        .objects(KIND, Some(""))
        .await?
        .into_iter()
        .filter_map(|r| serde_json::from_str::<Value>(&r.body).ok())
        .filter(|r| admin || requests::visible_to(r, &name, &groups))
        .collect();
    Ok(Json(json!({"items": items})))
}

async fn find(s: &AppState, ns: &str) -> Result<Value, ApiError> {
    let row = s
        .ctl
        .store
        .object(KIND, "", ns)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("namespace request {ns:?} not found")))?;
    serde_json::from_str(&row.body).map_err(|e| ApiError::Internal(e.to_string()))
}

async fn get_one(State(s): St, Path(ns): Path<String>, caller: Caller) -> ApiResult {
    let (name, groups, admin) = who(&caller);
    let r = find(&s, &ns).await?;
    if !admin && !requests::visible_to(&r, &name, &groups) {
        return Err(ApiError::NotFound(format!(
            "namespace request {ns:?} not found"
        )));
    }
    Ok(Json(r))
}

async fn decide(State(s): St, Path(ns): Path<String>, caller: Caller, approve: bool) -> ApiResult {
    let (by, _, _) = who(&caller);
    let mut r = find(&s, &ns).await?;
    requests::decide(&mut r, approve, &by, &now()).map_err(ApiError::FailedPrecondition)?;
    let row = s
        .ctl
        .store
        .object(KIND, "", &ns)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("namespace request {ns:?} not found")))?;
    s.ctl
        .store
        .put_object(
            store::ObjectRow {
                body: r.to_string(),
                ..row
            },
            false,
        )
        .await?;
    if approve {
        if let Some((ns, quota)) = requests::quota_of(&r.to_string()) {
            s.ctl.cluster().grant_tenant(&ns, quota);
        }
        s.auth.refresh_grants(&s.ctl.store, true).await;
    }
    Ok(Json(r))
}
