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
use control_plane::state::AppState;
use control_plane::submit::{self};

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

pub(super) struct Kind {
    kind: &'static str,
    body_field: &'static str,
    list_kind: &'static str,
}

pub(super) const WT: Kind = Kind {
    kind: "WorkflowTemplate",
    body_field: "template",
    list_kind: "WorkflowTemplateList",
};
pub(super) const CWT: Kind = Kind {
    kind: "ClusterWorkflowTemplate",
    body_field: "template",
    list_kind: "ClusterWorkflowTemplateList",
};
pub(super) const CRON: Kind = Kind {
    kind: "CronWorkflow",
    body_field: "cronWorkflow",
    list_kind: "CronWorkflowList",
};

/// Check an object for storing: its kind, name and (for templates) Argo's lint rules.
pub(super) async fn prepare_object(
    s: &AppState,
    k: &Kind,
    ns: &str,
    body: &Value,
    name_in_path: Option<&str>,
) -> Result<Value, ApiError> {
    let mut obj = body.get(k.body_field).cloned().ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "request body: the field {:?} is required",
            k.body_field
        ))
    })?;
    if !obj.is_object() {
        return Err(ApiError::InvalidArgument(format!(
            "{}: expected an object",
            k.body_field
        )));
    }
    if obj["kind"].is_null() {
        obj["kind"] = json!(k.kind);
    }
    if obj["apiVersion"].is_null() {
        obj["apiVersion"] = json!("argoproj.io/v1alpha1");
    }
    if obj["kind"] != k.kind {
        return Err(ApiError::InvalidArgument(format!(
            "{}.kind: expected {}, got {}",
            k.body_field, k.kind, obj["kind"]
        )));
    }
    let name = submit::resolve_name(&obj)?;
    if let Some(p) = name_in_path {
        if p != name {
            return Err(ApiError::InvalidArgument(format!(
                "the name in the body ({name:?}) does not match the name in the path ({p:?})"
            )));
        }
    }
    obj["metadata"]["name"] = json!(name);
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("generateName");
    }
    if k.kind != "ClusterWorkflowTemplate" {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if k.kind == "CronWorkflow" {
        // Argo's limit (maxCronWorkflowNameLength): the name becomes a label value of every
        // workflow it makes (at most 63), with a suffix.
        if name.len() > 52 {
            return Err(ApiError::InvalidArgument(format!(
                "cron workflow name {name:?} must not be more than 52 characters long (currently {})",
                name.len()
            )));
        }
        control_plane::cron::validate(&obj)?;
        let wf = control_plane::cron::workflow_from(&obj, &name);
        let ctx = submit::gather_templates(&s.ctl.store, ns, &wf).await?;
        submit::validate("cronWorkflow.spec.workflowSpec", &wf, &ctx)?;
        // Checked when it is created, as Gatekeeper checks objects, not only when it fires.
        submit::check_admission(s.cfg.policy(ns), ns, "cronworkflow", &name, &wf, &ctx)?;
    } else {
        let ctx = submit::gather_templates(&s.ctl.store, ns, &obj)
            .await
            .unwrap_or_default();
        submit::validate(k.body_field, &obj, &ctx)?;
        if k.kind == "WorkflowTemplate" {
            submit::check_admission(s.cfg.policy(ns), ns, "workflowtemplate", &name, &obj, &ctx)?;
        }
    }
    Ok(obj)
}

pub(super) fn scope<'a>(k: &Kind, ns: &'a str) -> &'a str {
    if k.kind == "ClusterWorkflowTemplate" {
        ""
    } else {
        ns
    }
}

pub(super) async fn create_obj(s: &AppState, k: &Kind, ns: &str, body: &Value) -> ApiResult {
    let mut obj = prepare_object(s, k, ns, body, None).await?;
    let created = workflow_runtime::now();
    obj["metadata"]["uid"] = json!(workflow_runtime::new_uid());
    obj["metadata"]["creationTimestamp"] = json!(created.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    if k.kind == "CronWorkflow" {
        obj["status"] = control_plane::cron::status_object(&obj["status"]);
    }
    let row = ObjectRow {
        kind: k.kind.into(),
        namespace: scope(k, ns).into(),
        name: obj["metadata"]["name"].as_str().unwrap_or_default().into(),
        created_ns: created.timestamp_nanos_opt().unwrap_or_default(),
        body: obj.to_string(),
    };
    s.ctl.store.put_object(row, true).await?;
    Ok(Json(obj))
}

pub(super) async fn get_obj(
    s: &AppState,
    k: &Kind,
    ns: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let row = s
        .ctl
        .store
        .object(k.kind, scope(k, ns), name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{}.argoproj.io \"{name}\" not found",
                store::plural(k.kind)
            ))
        })?;
    let obj: Value =
        serde_json::from_str(&row.body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(served(k, obj))
}

/// An object as the API sends it: a CronWorkflow stored before it had a status object (or
/// by an older ONYX) is sent with one.
fn served(k: &Kind, mut obj: Value) -> Value {
    if k.kind == "CronWorkflow" && !obj["status"].is_object() {
        obj["status"] = control_plane::cron::status_object(&obj["status"]);
    }
    obj
}

pub(super) async fn update_obj(
    s: &AppState,
    k: &Kind,
    ns: &str,
    name: &str,
    body: &Value,
) -> ApiResult {
    let mut obj = prepare_object(s, k, ns, body, Some(name)).await?;
    let old = get_obj(s, k, ns, name).await?;
    for f in ["uid", "creationTimestamp"] {
        obj["metadata"][f] = old["metadata"][f].clone();
    }
    if k.kind == "CronWorkflow" {
        // An update without a status (or with `null`, as clients send one they never read)
        // keeps what the schedule recorded.
        let status = match obj.get("status") {
            Some(s) if s.is_object() => s.clone(),
            _ => old["status"].clone(),
        };
        obj["status"] = control_plane::cron::status_object(&status);
    }
    let row = ObjectRow {
        kind: k.kind.into(),
        namespace: scope(k, ns).into(),
        name: name.into(),
        created_ns: 0,
        body: obj.to_string(),
    };
    s.ctl.store.put_object(row, false).await?;
    Ok(Json(obj))
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
                    create_obj(&s, k, &ns_name(&p).0, &b).await
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
                    update_obj(&s, k, &ns, &name, &b).await
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
