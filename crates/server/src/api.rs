//! Argo Server's REST API (v3.5.6 paths and JSON bodies) over the controller and the store.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use store::{ListQuery, ObjectRow, WorkflowRow};
use workflow_engine::Event;

use crate::config::ServerConfig;
use crate::controller::{self, Controller};
use crate::error::ApiError;
use crate::submit;

pub struct AppState {
    pub ctl: Arc<Controller>,
    pub maint: Arc<crate::maintenance::Maintenance>,
    pub cfg: Arc<ServerConfig>,
    pub token: Option<String>,
}

type St = State<Arc<AppState>>;
type Q = Query<HashMap<String, String>>;
type ApiResult = Result<Json<Value>, ApiError>;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.cfg.max_body_bytes;
    Router::new()
        .route("/api/v1/info", get(info))
        .route("/api/v1/version", get(version))
        .route("/api/v1/userinfo", get(userinfo))
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
        .route("/api/v1/workflows/{ns}/{name}/log", get(workflow_log))
        .route("/api/v1/workflows/{ns}/{name}/{pod}/log", get(pod_log))
        .route("/api/v1/workflow-events/{ns}", get(watch_workflows))
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
        .route("/api/v1/onyx/nodes", get(list_nodes))
        .route("/api/v1/onyx/nodes/{name}/cordon", put(cordon_node))
        .route("/api/v1/onyx/nodes/{name}/uncordon", put(uncordon_node))
        .route("/api/v1/onyx/nodes/{name}/drain", put(drain_node))
        .route("/api/v1/onyx/maintenance", get(maintenance_status))
        .route("/api/v1/onyx/maintenance/start", post(maintenance_start))
        .route("/api/v1/onyx/queues", get(list_queues))
        .route("/api/v1/onyx/queues/{name}", get(get_queue))
        .route("/api/v1/onyx/emergency-stop", post(emergency_stop))
        .route("/api/v1/archived-workflows", get(list_archived))
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
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no API at {} {}", req.method(), req.uri().path()))
}

async fn authenticate(State(s): St, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError::Unauthenticated(
                "token not valid: send `Authorization: Bearer <token>` with the server's token"
                    .into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// A JSON request body; a bad or oversized body is an Argo error, not a plain-text one.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(format!("request body too large: {}", e.body_text()))
            } else {
                ApiError::InvalidArgument(e.body_text())
            }
        })?;
        if bytes.is_empty() {
            return Ok(JsonBody(json!({})));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidArgument(format!("request body is not valid JSON: {e}")))
    }
}

// ----- info -----

async fn info() -> Json<Value> {
    Json(json!({"managedNamespace": "", "links": [], "modals": {}, "navColor": "", "columns": []}))
}

async fn version() -> Json<Value> {
    Json(json!({
        "version": format!("v3.5.6+onyx.{}", env!("CARGO_PKG_VERSION")),
        "buildDate": "",
        "gitCommit": "",
        "gitTag": "v3.5.6",
        "gitTreeState": "clean",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    }))
}

async fn userinfo(State(s): St) -> Json<Value> {
    if s.token.is_some() {
        Json(json!({"subject": "token", "serviceAccountName": "onyx"}))
    } else {
        Json(json!({}))
    }
}

// ----- workflows -----

fn list_query(
    q: &HashMap<String, String>,
    namespace: Option<String>,
) -> Result<ListQuery, ApiError> {
    let selector = q
        .get("listOptions.labelSelector")
        .map(|s| s.parse::<store::Selector>())
        .transpose()
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?
        .unwrap_or_default();
    let mut out = ListQuery {
        namespace,
        selector,
        ..Default::default()
    };
    if let Some(fs) = q.get("listOptions.fieldSelector").filter(|s| !s.is_empty()) {
        for part in fs.split(',') {
            match part.split_once('=') {
                Some(("metadata.name", v)) => out.name = Some(v.trim_start_matches('=').into()),
                Some(("metadata.namespace", v)) => {
                    let v = v.trim_start_matches('=').to_string();
                    if out.namespace.as_ref().is_some_and(|ns| !ns.is_empty() && *ns != v) {
                        out.name = Some(String::new()); // nothing matches
                    }
                    out.namespace = Some(v);
                }
                _ => {
                    return Err(ApiError::InvalidArgument(format!(
                        "listOptions.fieldSelector: unsupported field selector {part:?} (supported: metadata.name, metadata.namespace)"
                    )))
                }
            }
        }
    }
    if let Some(l) = q.get("listOptions.limit").filter(|s| !s.is_empty()) {
        out.limit = l.parse().map_err(|_| {
            ApiError::InvalidArgument(format!("listOptions.limit: expected a number, got {l:?}"))
        })?;
    }
    out.continue_token = q
        .get("listOptions.continue")
        .filter(|s| !s.is_empty())
        .cloned();
    Ok(out)
}

fn list_body(items: Vec<String>, next: Option<String>, kind: &str) -> Value {
    let items: Vec<Value> = items
        .iter()
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    let mut meta = json!({"resourceVersion": "0"});
    if let Some(c) = next {
        meta["continue"] = json!(c);
    }
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": meta, "items": items})
}

async fn list_workflows(State(s): St, Path(ns): Path<String>, Query(q): Q) -> ApiResult {
    let query = list_query(&q, (!ns.is_empty()).then_some(ns))?;
    let page = s.ctl.store.list_workflows(&query).await?;
    Ok(Json(list_body(page.items, page.next, "WorkflowList")))
}

async fn find(s: &AppState, ns: &str, name: &str) -> Result<WorkflowRow, ApiError> {
    s.ctl
        .store
        .workflow(ns, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflows.argoproj.io \"{name}\" not found")))
}

async fn get_workflow(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    Ok(Json(s.ctl.current(&row).await))
}

async fn delete_workflow(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    s.ctl.delete(&row).await?;
    Ok(Json(json!({})))
}

/// A Workflow object as clients send it: `kind` and `apiVersion` may be left out.
fn normalize_workflow(manifest: &mut Value) -> Result<(), ApiError> {
    if !manifest.is_object() {
        return Err(ApiError::InvalidArgument(
            "workflow: expected an object".into(),
        ));
    }
    if manifest["kind"].is_null() {
        manifest["kind"] = json!("Workflow");
    }
    if manifest["apiVersion"].is_null() {
        manifest["apiVersion"] = json!("argoproj.io/v1alpha1");
    }
    if manifest["kind"] != "Workflow" {
        return Err(ApiError::InvalidArgument(format!(
            "workflow.kind: expected Workflow, got {}",
            manifest["kind"]
        )));
    }
    Ok(())
}

/// Validate, apply policy, and (unless a dry run) commit and start a workflow.
pub(crate) async fn submit(
    s: &AppState,
    ns: &str,
    mut manifest: Value,
    params: &[(String, String)],
    dry_run: bool,
) -> ApiResult {
    normalize_workflow(&mut manifest)?;
    match manifest["metadata"]["namespace"].as_str() {
        Some(other) if !other.is_empty() && other != ns => {
            return Err(ApiError::InvalidArgument(format!(
                "workflow.metadata.namespace {other:?} does not match the request's namespace {ns:?}"
            )))
        }
        _ => {}
    }
    submit::apply_parameters(&mut manifest, params);
    let name = submit::resolve_name(&manifest)?;
    let ctx = submit::gather_templates(&s.ctl.store, ns, &manifest).await?;
    submit::check_policy(s.cfg.policy(ns), &name, &manifest, &ctx)?;
    let loaded = submit::validate("workflow", &manifest, &ctx)?;
    let workflow_model::Object::Workflow(wf) = &loaded.object else {
        return Err(ApiError::InvalidArgument("expected a Workflow".into()));
    };
    let accepted = s.ctl.accept(wf, &manifest, ns, &name, ctx)?;
    if dry_run {
        return Ok(Json(accepted.json));
    }
    Ok(Json(s.ctl.create(accepted).await?))
}

async fn create_workflow(
    State(s): St,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let wf = body.get("workflow").cloned().ok_or_else(|| {
        ApiError::InvalidArgument("request body: the field \"workflow\" is required".into())
    })?;
    let dry = body["serverDryRun"].as_bool() == Some(true);
    submit(&s, &ns, wf, &[], dry).await
}

async fn lint_workflow(
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
async fn submit_from(State(s): St, Path(ns): Path<String>, JsonBody(body): JsonBody) -> ApiResult {
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
            crate::cron::workflow_from(&cron, &name)
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
    submit(&s, &ns, manifest, &params, dry).await
}

async fn suspend(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    Ok(Json(s.ctl.send(&row, Event::Suspend).await?))
}

fn node_selector(body: &Value) -> Option<String> {
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

async fn resume(
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

async fn stop(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    Ok(Json(
        s.ctl
            .send(&row, Event::Shutdown { terminate: false })
            .await?,
    ))
}

async fn terminate(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    Ok(Json(
        s.ctl
            .send(&row, Event::Shutdown { terminate: true })
            .await?,
    ))
}

/// `argo node set`: resume a suspend node with output parameters (what Argo's `set` is used for
/// in practice: `--output-parameter` on a waiting suspend node).
async fn set_node(
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
async fn retry_with(s: &AppState, row: &WorkflowRow, body: &Value) -> ApiResult {
    let params = submit::parse_parameters(&string_list(&body["parameters"]))?;
    let restart = body["restartSuccessful"].as_bool() == Some(true);
    let selector = body["nodeFieldSelector"].as_str().unwrap_or_default();
    Ok(Json(s.ctl.retry(row, restart, selector, &params).await?))
}

/// A JSON array of strings (other items ignored).
fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

async fn retry(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    retry_with(&s, &row, &body).await
}

async fn resubmit_manifest(
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
    submit(s, ns, manifest, &params, false).await
}

async fn resubmit(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let row = find(&s, &ns, &name).await?;
    let manifest: Value = serde_json::from_str(&row.manifest).unwrap_or_default();
    resubmit_manifest(&s, &ns, manifest, &name, &body).await
}

// ----- logs -----

fn log_line(pod: &str, content: &str) -> Bytes {
    let mut line = json!({"result": {"content": content, "podName": pod}}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The pods of a workflow, in the order the engine created their nodes (the status keeps it).
fn pods_of(name: &str, wf: &Value) -> Vec<String> {
    wf.pointer("/status/nodes")
        .and_then(Value::as_object)
        .map(|m| {
            m.values()
                .filter(|n| n["type"] == "Pod")
                .map(|n| {
                    workflow_engine::pod_name(
                        name,
                        n["name"].as_str().unwrap_or_default(),
                        n["templateName"].as_str().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn stream_logs(
    s: Arc<AppState>,
    row: WorkflowRow,
    pod: Option<String>,
    q: HashMap<String, String>,
) -> Response {
    let container = q
        .get("logOptions.container")
        .filter(|c| !c.is_empty())
        .cloned()
        .unwrap_or_else(|| "main".into());
    let follow = q.get("logOptions.follow").map(String::as_str) == Some("true");
    let grep = q.get("grep").filter(|g| !g.is_empty()).cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let mut offsets: HashMap<String, usize> = HashMap::new();
        loop {
            let wf = s.ctl.current(&row).await;
            let finished = wf["status"]["finishedAt"].is_string()
                || wf["status"]["phase"]
                    .as_str()
                    .is_some_and(|p| matches!(p, "Succeeded" | "Failed" | "Error"));
            let pods = match &pod {
                Some(p) => vec![p.clone()],
                None => pods_of(&row.name, &wf),
            };
            for p in pods {
                let path = s.ctl.pod_dir(&p).join(format!("{container}.log"));
                let Ok(text) = tokio::fs::read(&path).await else {
                    continue;
                };
                let from = offsets.get(&p).copied().unwrap_or(0);
                // Only whole lines, unless the pod ended.
                let ended = s.ctl.pod_dir(&p).join("result.json").exists();
                let upto = if ended || !follow {
                    text.len()
                } else {
                    text[from.min(text.len())..]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(from, |i| from + i + 1)
                };
                if upto <= from {
                    continue;
                }
                let chunk = String::from_utf8_lossy(&text[from..upto]).into_owned();
                offsets.insert(p.clone(), upto);
                for line in chunk.lines() {
                    if grep.as_ref().is_some_and(|g| !line.contains(g.as_str())) {
                        continue;
                    }
                    if tx.send(Ok(log_line(&p, line))).await.is_err() {
                        return;
                    }
                }
            }
            if !follow || finished {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn workflow_log(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let row = find(&s, &ns, &name).await?;
    let pod = q.get("podName").filter(|p| !p.is_empty()).cloned();
    if let Some(p) = &pod {
        check_pod(&s, &row, p).await?;
    }
    Ok(stream_logs(s.clone(), row, pod, q).await)
}

async fn check_pod(s: &AppState, row: &WorkflowRow, pod: &str) -> Result<(), ApiError> {
    let wf = s.ctl.current(row).await;
    // A Volcano job's replicas are `<resource node's pod>-<task>-<index>`.
    let replica_of = |p: &String| {
        pod.strip_prefix(p.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
            && s.ctl.pod_dir(pod).exists()
    };
    if !pods_of(&row.name, &wf)
        .iter()
        .any(|p| p == pod || replica_of(p))
    {
        return Err(ApiError::NotFound(format!(
            "pods \"{pod}\" not found in workflow {}",
            row.name
        )));
    }
    Ok(())
}

async fn pod_log(
    State(s): St,
    Path((ns, name, pod)): Path<(String, String, String)>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let row = find(&s, &ns, &name).await?;
    check_pod(&s, &row, &pod).await?;
    Ok(stream_logs(s.clone(), row, Some(pod), q).await)
}

/// `workflow-events`: a stream of `{"result": {"type": ..., "object": ...}}`, one per line.
async fn watch_workflows(
    State(s): St,
    Path(ns): Path<String>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let query = list_query(&q, (!ns.is_empty()).then_some(ns.clone()))?;
    let mut rx = s.ctl.subscribe();
    let initial = s.ctl.store.list_workflows(&query).await?;
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        for item in initial.items {
            let v: Value = serde_json::from_str(&item).unwrap_or_default();
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
            {
                continue;
            }
            let line =
                json!({"result": {"type": ev.kind, "object": *ev.object}}).to_string() + "\n";
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

// ----- stored objects: templates, cluster templates, cron workflows -----

struct Kind {
    kind: &'static str,
    body_field: &'static str,
    list_kind: &'static str,
}

const WT: Kind = Kind {
    kind: "WorkflowTemplate",
    body_field: "template",
    list_kind: "WorkflowTemplateList",
};
const CWT: Kind = Kind {
    kind: "ClusterWorkflowTemplate",
    body_field: "template",
    list_kind: "ClusterWorkflowTemplateList",
};
const CRON: Kind = Kind {
    kind: "CronWorkflow",
    body_field: "cronWorkflow",
    list_kind: "CronWorkflowList",
};

/// Check an object for storing: its kind, name and (for templates) Argo's lint rules.
async fn prepare_object(
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
        crate::cron::validate(&obj)?;
        let wf = crate::cron::workflow_from(&obj, &name);
        let ctx = submit::gather_templates(&s.ctl.store, ns, &wf).await?;
        submit::validate("cronWorkflow.spec.workflowSpec", &wf, &ctx)?;
    } else {
        let ctx = submit::gather_templates(&s.ctl.store, ns, &obj)
            .await
            .unwrap_or_default();
        submit::validate(k.body_field, &obj, &ctx)?;
    }
    Ok(obj)
}

fn scope<'a>(k: &Kind, ns: &'a str) -> &'a str {
    if k.kind == "ClusterWorkflowTemplate" {
        ""
    } else {
        ns
    }
}

async fn create_obj(s: &AppState, k: &Kind, ns: &str, body: &Value) -> ApiResult {
    let mut obj = prepare_object(s, k, ns, body, None).await?;
    let created = controller::now();
    obj["metadata"]["uid"] = json!(controller::new_uid());
    obj["metadata"]["creationTimestamp"] = json!(created.format("%Y-%m-%dT%H:%M:%SZ").to_string());
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

async fn get_obj(s: &AppState, k: &Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
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
    serde_json::from_str(&row.body).map_err(|e| ApiError::Internal(e.to_string()))
}

async fn update_obj(s: &AppState, k: &Kind, ns: &str, name: &str, body: &Value) -> ApiResult {
    let mut obj = prepare_object(s, k, ns, body, Some(name)).await?;
    let old = get_obj(s, k, ns, name).await?;
    for f in ["uid", "creationTimestamp"] {
        obj["metadata"][f] = old["metadata"][f].clone();
    }
    if k.kind == "CronWorkflow" && obj.get("status").is_none() {
        obj["status"] = old["status"].clone();
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

async fn list_obj(
    s: &AppState,
    k: &Kind,
    ns: Option<&str>,
    q: &HashMap<String, String>,
) -> ApiResult {
    let query = list_query(q, None)?;
    let rows = s.ctl.store.objects(k.kind, ns).await?;
    let items: Vec<String> = rows
        .into_iter()
        .filter(|r| {
            let v: Value = serde_json::from_str(&r.body).unwrap_or_default();
            query
                .selector
                .matches(|k| v["metadata"]["labels"][k].as_str().map(String::from))
        })
        .map(|r| r.body)
        .collect();
    Ok(Json(list_body(items, None, k.list_kind)))
}

async fn lint_obj(s: &AppState, k: &Kind, ns: &str, body: &Value) -> ApiResult {
    Ok(Json(prepare_object(s, k, ns, body, None).await?))
}

type PathParams = Path<HashMap<String, String>>;

/// The namespace and name of a stored-object path (`{ns}` is absent for cluster objects).
fn ns_name(p: &HashMap<String, String>) -> (String, String) {
    (
        p.get("ns").cloned().unwrap_or_default(),
        p.get("name").cloned().unwrap_or_default(),
    )
}

/// Create, list, lint, get, update and delete of one kind of stored object under `base`.
fn object_routes(k: &'static Kind, base: &str) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            base,
            get(
                move |State(s): St, Path(p): PathParams, Query(q): Q| async move {
                    let (ns, _) = ns_name(&p);
                    let scope = (k.kind == "ClusterWorkflowTemplate" || !ns.is_empty())
                        .then_some(ns.as_str());
                    list_obj(&s, k, scope, &q).await
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

async fn set_cron_suspend(s: &AppState, ns: &str, name: &str, suspend: bool) -> ApiResult {
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
async fn suspend_cron(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    set_cron_suspend(&s, &ns, &name, true).await
}
async fn resume_cron(State(s): St, Path((ns, name)): Path<(String, String)>) -> ApiResult {
    set_cron_suspend(&s, &ns, &name, false).await
}

// ----- ONYX's operations: nodes and the emergency stop -----

async fn list_nodes(State(s): St) -> Json<Value> {
    let items: Vec<Value> = s
        .ctl
        .cluster()
        .nodes()
        .into_iter()
        .map(|n| {
            json!({"name": n.name, "gpus": n.gpus, "freeGpus": n.free_gpus, "mig": n.mig,
                   "pods": n.pods, "cordoned": n.cordoned})
        })
        .collect();
    Json(json!({"cluster": s.cfg.cluster, "items": items}))
}

fn no_node(s: &AppState, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "nodes {name:?} not found (nodes: {})",
        s.ctl.cluster().node_names().join(", ")
    ))
}

async fn set_cordon(s: &AppState, name: &str, on: bool) -> ApiResult {
    if !s.ctl.cluster().cordon(name, on) {
        return Err(no_node(s, name));
    }
    Ok(Json(json!({"name": name, "cordoned": on})))
}

async fn cordon_node(State(s): St, Path(name): Path<String>) -> ApiResult {
    set_cordon(&s, &name, true).await
}

async fn uncordon_node(State(s): St, Path(name): Path<String>) -> ApiResult {
    set_cordon(&s, &name, false).await
}

#[derive(serde::Deserialize)]
struct DrainQuery {
    #[serde(rename = "graceSeconds", default = "default_grace")]
    grace_seconds: u64,
}

fn default_grace() -> u64 {
    30
}

/// Drain a node: cordon it, give its pods their grace period to end, then evict what is
/// left — and every other pod of the same gangs, so that a gang is moved whole.
async fn drain_node(
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

async fn maintenance_status(State(s): St) -> Json<Value> {
    Json(s.maint.status())
}

/// Start a rolling reboot of every node now (the window's length from now).
async fn maintenance_start(State(s): St) -> ApiResult {
    s.maint
        .start_now(s.ctl.cluster().node_names())
        .map_err(ApiError::FailedPrecondition)?;
    Ok(Json(s.maint.status()))
}

fn queue_json(q: crate::scheduling::QueueUsage) -> Value {
    serde_json::to_value(q).unwrap_or_default()
}

async fn list_queues(State(s): St) -> Json<Value> {
    let items: Vec<Value> = s
        .ctl
        .cluster()
        .queues()
        .into_iter()
        .map(queue_json)
        .collect();
    Json(json!({"items": items}))
}

async fn get_queue(State(s): St, Path(name): Path<String>) -> ApiResult {
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
async fn emergency_stop(State(s): St) -> ApiResult {
    let nodes = s.ctl.cluster().node_names();
    for n in &nodes {
        s.ctl.cluster().cordon(n, true);
    }
    let suspended = s.ctl.suspend_all().await;
    // The spec's last step: power the GPU nodes off through their BMCs, where configured.
    let mut powered_off = Vec::new();
    let mut power_errors = Vec::new();
    if s.maint.power.configured() {
        for n in &nodes {
            match s.maint.power.off(n) {
                Ok(()) => powered_off.push(n.clone()),
                Err(e) => power_errors.push(e),
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

// ----- archive -----

async fn list_archived(State(s): St, Query(q): Q) -> ApiResult {
    let ns = q.get("namespace").filter(|n| !n.is_empty()).cloned();
    let query = list_query(&q, ns)?;
    let page = s.ctl.store.list_archived(&query).await?;
    Ok(Json(list_body(page.items, page.next, "WorkflowList")))
}

async fn archived(s: &AppState, uid: &str) -> Result<store::ArchivedRow, ApiError> {
    s.ctl
        .store
        .archived(uid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("archived workflow {uid:?} not found")))
}

async fn get_archived(State(s): St, Path(uid): Path<String>) -> ApiResult {
    let row = archived(&s, &uid).await?;
    Ok(Json(serde_json::from_str(&row.body).unwrap_or_default()))
}

async fn delete_archived(State(s): St, Path(uid): Path<String>) -> ApiResult {
    s.ctl.store.delete_archived(&uid).await?;
    Ok(Json(json!({})))
}

async fn retry_archived(
    State(s): St,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let a = archived(&s, &uid).await?;
    let row = find(&s, &a.namespace, &a.name).await.map_err(|_| {
        ApiError::FailedPrecondition(format!(
            "workflow {:?} is no longer live; resubmit it instead (PUT /api/v1/archived-workflows/{uid}/resubmit)",
            a.name
        ))
    })?;
    retry_with(&s, &row, &body).await
}

async fn resubmit_archived(
    State(s): St,
    Path(uid): Path<String>,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let a = archived(&s, &uid).await?;
    let wf: Value = serde_json::from_str(&a.body).unwrap_or_default();
    let ns = body["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .unwrap_or(&a.namespace)
        .to_string();
    resubmit_manifest(&s, &ns, wf, &a.name, &body).await
}
