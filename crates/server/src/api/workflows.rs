//! Workflows (`/api/v1/workflows/…`): list, get, create, lint, submit from a template,
//! the lifecycle verbs (suspend, resume, stop, terminate, set, retry, resubmit) and the
//! watch stream. Every change goes to the controller as an engine event.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use store::WorkflowRow;
use workflow_engine::Event;

use control_plane::error::ApiError;
use control_plane::state::AppState;
use control_plane::submit::{self, normalize_workflow, submit};

use super::common::{
    find, list_body, list_query, string_list, visible, ApiResult, Caller, JsonBody, St, LATEST, Q,
};
use control_plane::fields::Fields;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/workflows/", get(list_all_workflows))
        .route(
            "/api/v1/workflows/{ns}",
            get(list_workflows).post(create_workflow),
        )
        .route("/api/v1/workflows/{ns}/lint", post(lint_workflow))
        .route("/api/v1/workflows/{ns}/submit", post(submit_from))
        .route(
            "/api/v1/workflows/{ns}/{name}",
            get(get_workflow).delete(delete_workflow),
        )
        .route("/api/v1/workflows/{ns}/{name}/suspend", put(suspend))
        .route("/api/v1/workflows/{ns}/{name}/resume", put(resume))
        .route("/api/v1/workflows/{ns}/{name}/stop", put(stop))
        .route("/api/v1/workflows/{ns}/{name}/terminate", put(terminate))
        .route("/api/v1/workflows/{ns}/{name}/set", put(set_node))
        .route("/api/v1/workflows/{ns}/{name}/retry", put(retry))
        .route("/api/v1/workflows/{ns}/{name}/resubmit", put(resubmit))
        .route("/api/v1/workflow-events/", get(watch_all_workflows))
        .route("/api/v1/workflow-events/{ns}", get(watch_workflows))
}

/// `workflows/` with no namespace: every namespace's workflows (`argo list -A`).
pub(super) async fn list_all_workflows(s: St, q: Q, caller: Caller) -> ApiResult {
    list_workflows(s, Path(String::new()), q, caller).await
}

pub(super) async fn list_workflows(
    State(s): St,
    Path(ns): Path<String>,
    Query(q): Q,
    caller: Caller,
) -> ApiResult {
    let fields = Fields::of(&q)?;
    let mut query = list_query(&q, (!ns.is_empty()).then_some(ns))?;
    query.within = visible(&s, &caller, "list");
    let page = s.ctl.store.list_workflows(&query).await?;
    let mut body = list_body(page.items, page.next, "WorkflowList");
    fields.apply(&mut body);
    Ok(Json(body))
}

pub(super) async fn get_workflow(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult {
    let fields = Fields::of(&q)?;
    let row = find(&s, &ns, &name).await?;
    let mut wf = s.ctl.current(&row).await;
    fields.apply(&mut wf);
    Ok(Json(wf))
}

pub(super) async fn delete_workflow(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    s.ctl.delete(&row).await?;
    Ok(Json(json!({})))
}

pub(super) async fn create_workflow(
    State(s): St,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let wf = body.get("workflow").cloned().ok_or_else(|| {
        ApiError::InvalidArgument("request body: the field \"workflow\" is required".into())
    })?;
    let dry = body["serverDryRun"].as_bool() == Some(true);
    submit(&s, &ns, wf, &[], dry).await.map(Json)
}

pub(super) async fn lint_workflow(
    State(s): St,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let mut wf = body.get("workflow").cloned().ok_or_else(|| {
        ApiError::InvalidArgument("request body: the field \"workflow\" is required".into())
    })?;
    normalize_workflow(&mut wf)?;
    let ctx = submit::gather_templates(&s.ctl.store, &ns, &wf).await?;
    submit::validate("workflow", &wf, &ctx)?;
    Ok(Json(wf))
}

/// `argo submit --from kind/name`: a workflow made from a stored template or cron workflow.
pub(super) async fn submit_from(
    State(s): St,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let kind = body["resourceKind"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let name = body["resourceName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(ApiError::InvalidArgument("resourceName is required".into()));
    }
    let opts = &body["submitOptions"];
    let params = submit::parse_parameters(&string_list(&opts["parameters"]))?;
    let mut labels = serde_json::Map::new();
    if let Some(l) = opts["labels"].as_str().filter(|l| !l.is_empty()) {
        for kv in l.split(',') {
            let (k, v) = kv.split_once('=').ok_or_else(|| {
                ApiError::InvalidArgument(format!("submitOptions.labels: expected k=v, got {kv:?}"))
            })?;
            labels.insert(k.into(), json!(v));
        }
    }
    let mut manifest = match kind.to_ascii_lowercase().as_str() {
        "workflowtemplate" | "clusterworkflowtemplate" => {
            let cluster = kind.eq_ignore_ascii_case("clusterworkflowtemplate");
            let (k, n) = if cluster {
                ("ClusterWorkflowTemplate", "")
            } else {
                ("WorkflowTemplate", ns.as_str())
            };
            s.ctl.store.object(k, n, &name).await?.ok_or_else(|| {
                ApiError::NotFound(format!("{}.argoproj.io \"{name}\" not found", store::plural(k)))
            })?;
            labels.insert(
                if cluster {
                    "workflows.argoproj.io/cluster-workflow-template"
                } else {
                    "workflows.argoproj.io/workflow-template"
                }
                .into(),
                json!(name),
            );
            let mut r = json!({"name": name});
            if cluster {
                r["clusterScope"] = json!(true);
            }
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                   "metadata": {"generateName": format!("{name}-")},
                   "spec": {"workflowTemplateRef": r}})
        }
        "cronworkflow" => {
            let row = s.ctl.store.object("CronWorkflow", &ns, &name).await?.ok_or_else(|| {
                ApiError::NotFound(format!("cronworkflows.argoproj.io \"{name}\" not found"))
            })?;
            let cron: Value = serde_json::from_str(&row.body).unwrap_or_default();
            labels.insert("workflows.argoproj.io/cron-workflow".into(), json!(name));
            control_plane::cron::workflow_from(&cron, &name)
        }
        _ => {
            return Err(ApiError::InvalidArgument(format!(
                "resourceKind {kind:?}: expected WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow"
            )))
        }
    };
    if let Some(ep) = opts["entryPoint"].as_str().filter(|e| !e.is_empty()) {
        manifest["spec"]["entrypoint"] = json!(ep);
    }
    if let Some(n) = opts["name"].as_str().filter(|e| !e.is_empty()) {
        manifest["metadata"]["name"] = json!(n);
    }
    if let Some(g) = opts["generateName"].as_str().filter(|e| !e.is_empty()) {
        manifest["metadata"]["generateName"] = json!(g);
    }
    let meta_labels = manifest["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut all = meta_labels;
    all.extend(labels);
    manifest["metadata"]["labels"] = Value::Object(all);
    let dry =
        opts["dryRun"].as_bool() == Some(true) || opts["serverDryRun"].as_bool() == Some(true);
    submit(&s, &ns, manifest, &params, dry).await.map(Json)
}

pub(super) async fn suspend(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    Ok(Json(s.ctl.send(&row, Event::Suspend).await?))
}

pub(super) fn node_selector(body: &Value) -> Option<String> {
    let sel = body["nodeFieldSelector"]
        .as_str()
        .filter(|x| !x.is_empty())?;
    // `displayName=x`, `name=x`, `id=x`: the engine matches any of them.
    Some(
        sel.split_once('=')
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| sel.to_string()),
    )
}

pub(super) async fn resume(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    let ev = Event::Resume {
        node: node_selector(&body),
        supplied: Default::default(),
    };
    Ok(Json(s.ctl.send(&row, ev).await?))
}

pub(super) async fn stop(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    Ok(Json(
        s.ctl
            .send(&row, Event::Shutdown { terminate: false })
            .await?,
    ))
}

pub(super) async fn terminate(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    Ok(Json(
        s.ctl
            .send(&row, Event::Shutdown { terminate: true })
            .await?,
    ))
}

/// `argo node set`: resume a suspend node with output parameters (what Argo's `set` is used for
/// in practice: `--output-parameter` on a waiting suspend node).
pub(super) async fn set_node(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    let node = node_selector(&body).ok_or_else(|| {
        ApiError::InvalidArgument("nodeFieldSelector is required (e.g. displayName=approve)".into())
    })?;
    let mut supplied = std::collections::BTreeMap::new();
    if let Some(text) = body["outputParameters"].as_str().filter(|t| !t.is_empty()) {
        let v: HashMap<String, Value> = serde_json::from_str(text).map_err(|e| {
            ApiError::InvalidArgument(format!("outputParameters: expected a JSON object: {e}"))
        })?;
        for (k, v) in v {
            supplied.insert(
                k,
                v.as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v.to_string()),
            );
        }
    }
    match body["phase"].as_str() {
        None | Some("") | Some("Succeeded") => {}
        Some(other) => {
            return Err(ApiError::InvalidArgument(format!(
                "phase {other:?}: ONYX sets suspend nodes to Succeeded only"
            )))
        }
    }
    let ev = Event::Resume {
        node: Some(node),
        supplied,
    };
    Ok(Json(s.ctl.send(&row, ev).await?))
}

/// A retry request's body (`parameters`, `restartSuccessful`, `nodeFieldSelector`) applied.
pub(super) async fn retry_with(s: &AppState, row: &WorkflowRow, body: &Value) -> ApiResult {
    let params = submit::parse_parameters(&string_list(&body["parameters"]))?;
    let restart = body["restartSuccessful"].as_bool() == Some(true);
    let selector = body["nodeFieldSelector"].as_str().unwrap_or_default();
    Ok(Json(s.ctl.retry(row, restart, selector, &params).await?))
}

pub(super) async fn retry(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    retry_with(&s, &row, &body).await
}

pub(super) async fn resubmit_manifest(
    s: &AppState,
    ns: &str,
    mut manifest: Value,
    old_name: &str,
    body: &Value,
) -> ApiResult {
    let params = submit::parse_parameters(&string_list(&body["parameters"]))?;
    if let Some(m) = manifest["metadata"].as_object_mut() {
        let labels = m.get("labels").cloned().unwrap_or(json!({}));
        m.clear();
        m.insert("generateName".into(), json!(format!("{old_name}-")));
        m.insert("labels".into(), labels);
    }
    manifest["metadata"]["labels"]["workflows.argoproj.io/resubmitted-from-workflow"] =
        json!(old_name);
    if let Some(st) = manifest.as_object_mut() {
        st.remove("status");
    }
    submit(s, ns, manifest, &params, false).await.map(Json)
}

pub(super) async fn resubmit(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    let manifest: Value = serde_json::from_str(&row.manifest).unwrap_or_default();
    resubmit_manifest(&s, &ns, manifest, &name, &body).await
}

/// `workflow-events/` with no namespace: every namespace's workflows.
pub(super) async fn watch_all_workflows(s: St, q: Q, caller: Caller) -> Result<Response, ApiError> {
    watch_workflows(s, Path(String::new()), q, caller).await
}

/// `workflow-events`: a stream of `{"result": {"type": ..., "object": ...}}`, one per line.
pub(super) async fn watch_workflows(
    State(s): St,
    Path(ns): Path<String>,
    Query(q): Q,
    caller: Caller,
) -> Result<Response, ApiError> {
    let mut query = list_query(&q, (!ns.is_empty()).then_some(ns.clone()))?;
    query.within = visible(&s, &caller, "watch");
    // Argo's alias: a watch of `metadata.name=@latest` follows the newest workflow.
    if query.name.as_deref() == Some(LATEST) {
        query.name = Some(find(&s, &ns, LATEST).await?.name);
    }
    let fields = Fields::of(&q)?.without_prefix("result.object.");
    let mut rx = s.ctl.subscribe();
    let initial = s.ctl.store.list_workflows(&query).await?;
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        for item in initial.items {
            let mut v: Value = serde_json::from_str(&item).unwrap_or_default();
            fields.apply(&mut v);
            let line = json!({"result": {"type": "ADDED", "object": v}}).to_string() + "\n";
            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
        }
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if query.namespace.as_ref().is_some_and(|n| *n != ev.namespace)
                || query.name.as_ref().is_some_and(|n| *n != ev.name)
                || query
                    .within
                    .as_ref()
                    .is_some_and(|w| !w.contains(&ev.namespace))
            {
                continue;
            }
            let mut object = (*ev.object).clone();
            fields.apply(&mut object);
            let line = json!({"result": {"type": ev.kind, "object": object}}).to_string() + "\n";
            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
        }
    });
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(out),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}
