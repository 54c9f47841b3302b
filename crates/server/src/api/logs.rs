//! Pod logs (`…/log`), read from the pod's log file as it is written and streamed as Argo
//! streams them: one JSON object a line, `follow` waiting for more until the pod ends.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use store::WorkflowRow;

use control_plane::error::ApiError;
use control_plane::state::AppState;

use super::common::{find, query_bool, St, Q};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/workflows/{ns}/{name}/log", get(workflow_log))
        .route("/api/v1/workflows/{ns}/{name}/{pod}/log", get(pod_log))
}

pub(super) fn log_line(pod: &str, content: &str) -> Bytes {
    let mut line = json!({"result": {"content": content, "podName": pod}}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// The pods of a workflow, in the order the engine created their nodes (the status keeps it).
pub(super) fn pods_of(name: &str, wf: &Value) -> Vec<String> {
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

pub(super) async fn stream_logs(
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
    let follow = match query_bool(&q, "logOptions.follow") {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
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
                let path = s
                    .ctl
                    .pod_dir(&row.namespace, &p)
                    .join(format!("{container}.log"));
                let Ok(text) = tokio::fs::read(&path).await else {
                    continue;
                };
                let from = offsets.get(&p).copied().unwrap_or(0);
                // Only whole lines, unless the pod ended.
                let ended = s
                    .ctl
                    .pod_dir(&row.namespace, &p)
                    .join("result.json")
                    .exists();
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

pub(super) async fn workflow_log(
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

pub(super) async fn check_pod(s: &AppState, row: &WorkflowRow, pod: &str) -> Result<(), ApiError> {
    let wf = s.ctl.current(row).await;
    // A Volcano job's replicas are `<resource node's pod>-<task>-<index>`.
    let replica_of = |p: &String| {
        pod.strip_prefix(p.as_str())
            .is_some_and(|rest| rest.starts_with('-'))
            && s.ctl.pod_dir(&row.namespace, pod).exists()
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

pub(super) async fn pod_log(
    State(s): St,
    Path((ns, name, pod)): Path<(String, String, String)>,
    Query(q): Q,
) -> Result<Response, ApiError> {
    let row = find(&s, &ns, &name).await?;
    check_pod(&s, &row, &pod).await?;
    Ok(stream_logs(s.clone(), row, Some(pod), q).await)
}
