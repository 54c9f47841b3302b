//! Stored objects: WorkflowTemplates, ClusterWorkflowTemplates and CronWorkflows. One set
//! of create, list, lint, get, update and delete handlers serves the three kinds; a `Kind`
//! says what differs (its path, body field and whether it is namespaced). An object is
//! checked by Argo's lint rules before it is stored.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use store::ObjectRow;

use control_plane::error::ApiError;
use control_plane::objects::{
    create_obj, get_obj, prepare_object, scope, served, update_obj, Kind, CRON, CWT, WT,
};
use control_plane::state::AppState;

use super::common::{list_body, list_query, visible, ApiResult, Caller, JsonBody, St, Q};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .merge(object_routes(&WT, "/api/v1/workflow-templates/{ns}"))
        .merge(object_routes(&CWT, "/api/v1/cluster-workflow-templates"))
        .merge(object_routes(&CRON, "/api/v1/cron-workflows/{ns}"))
        .route(
            "/api/v1/cron-workflows/{ns}/{name}/suspend",
            put(suspend_cron),
        )
        .route(
            "/api/v1/cron-workflows/{ns}/{name}/resume",
            put(resume_cron),
        )
}

pub(super) async fn list_obj(
    s: &AppState,
    k: &Kind,
    ns: Option<&str>,
    q: &HashMap<String, String>,
    within: Option<Vec<String>>,
) -> ApiResult {
    let query = list_query(q, None)?;
    let rows = s.ctl.store.objects(k.kind, ns).await?;
    let items: Vec<String> = rows
        .into_iter()
        .filter(|r| within.as_ref().is_none_or(|w| w.contains(&r.namespace)))
        .filter(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap_or_default();
            query
                .selector
                .matches(|k| v["metadata"]["labels"][k].as_str().map(String::from))
        })
        .map(|r| match serde_json::from_str::<Value>(&r.body) {
            Ok(v) if k.kind == "CronWorkflow" => served(k, v).to_string(),
            _ => r.body,
        })
        .collect();
    Ok(Json(list_body(items, None, k.list_kind)))
}

pub(super) async fn lint_obj(s: &AppState, k: &Kind, ns: &str, body: &Value) -> ApiResult {
    Ok(Json(prepare_object(s, k, ns, body, None).await?))
}

pub(super) type PathParams = Path<HashMap<String, String>>;

/// The namespace and name of a stored-object path (`{ns}` is absent for cluster objects).
pub(super) fn ns_name(p: &HashMap<String, String>) -> (String, String) {
    (
        p.get("ns").cloned().unwrap_or_default(),
        p.get("name").cloned().unwrap_or_default(),
    )
}

/// Create, list, lint, get, update and delete of one kind of stored object under `base`.
pub(super) fn object_routes(k: &'static Kind, base: &str) -> Router<Arc<AppState>> {
    let mut router = Router::new();
    if let Some(all) = base.strip_suffix("{ns}") {
        // An empty namespace lists every namespace's objects, as Argo's server does.
        router = router.route(
            all,
            get(
                move |State(s): St, Query(q): Q, caller: Caller| async move {
                    let within = visible(&s, &caller, "list");
                    list_obj(&s, k, None, &q, within).await
                },
            ),
        );
    }
    router
        .route(
            base,
            get(
                move |State(s): St, Path(p): PathParams, Query(q): Q| async move {
                    let (ns, _) = ns_name(&p);
                    let scope = (k.kind == "ClusterWorkflowTemplate" || !ns.is_empty())
                        .then_some(ns.as_str());
                    list_obj(&s, k, scope, &q, None).await
                },
            )
            .post(
                move |State(s): St, Path(p): PathParams, JsonBody(b): JsonBody| async move {
                    create_obj(&s, k, &ns_name(&p).0, &b).await.map(Json)
                },
            ),
        )
        .route(
            &format!("{base}/lint"),
            post(
                move |State(s): St, Path(p): PathParams, JsonBody(b): JsonBody| async move {
                    lint_obj(&s, k, &ns_name(&p).0, &b).await
                },
            ),
        )
        .route(
            &format!("{base}/{{name}}"),
            get(move |State(s): St, Path(p): PathParams| async move {
                let (ns, name) = ns_name(&p);
                Ok::<_, ApiError>(Json(get_obj(&s, k, &ns, &name).await?))
            })
            .put(
                move |State(s): St, Path(p): PathParams, JsonBody(b): JsonBody| async move {
                    let (ns, name) = ns_name(&p);
                    update_obj(&s, k, &ns, &name, &b).await.map(Json)
                },
            )
            .delete(move |State(s): St, Path(p): PathParams| async move {
                let (ns, name) = ns_name(&p);
                s.ctl
                    .store
                    .delete_object(k.kind, scope(k, &ns), &name)
                    .await?;
                Ok::<_, ApiError>(Json(json!({})))
            }),
        )
}

pub(super) async fn set_cron_suspend(
    s: &AppState,
    ns: &str,
    name: &str,
    suspend: bool,
) -> ApiResult {
    let mut obj = get_obj(s, &CRON, ns, name).await?;
    obj["spec"]["suspend"] = json!(suspend);
    let row = ObjectRow {
        kind: CRON.kind.into(),
        namespace: ns.into(),
        name: name.into(),
        created_ns: 0,
        body: obj.to_string(),
    };
    s.ctl.store.put_object(row, false).await?;
    Ok(Json(obj))
}
pub(super) async fn suspend_cron(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    set_cron_suspend(&s, &ns, &name, true).await
}
pub(super) async fn resume_cron(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    set_cron_suspend(&s, &ns, &name, false).await
}
