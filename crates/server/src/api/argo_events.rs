//! Argo Events' objects as Argo Server serves them: EventSources and Sensors (create, list,
//! get, update, delete, watch, logs), kept as stored objects; and `stream/events`, the
//! namespace's Kubernetes Events — here, one a workflow's every phase change.
//!
//! ONYX runs EventSources (resource on its workflows, webhook, calendar) and Sensors itself
//! (`event_runtime::event_bus`), not as pods.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};

use control_plane::error::ApiError;
use control_plane::state::AppState;
use control_plane::submit;

use super::common::{ApiResult, JsonBody, St};

#[derive(Clone, Copy)]
struct Kind {
    kind: &'static str,
    /// The path segment (`event-sources`) and the request body's field (`eventSource`).
    path: &'static str,
    field: &'static str,
    plural: &'static str,
}

const EVENT_SOURCE: Kind = Kind {
    kind: "EventSource",
    path: "event-sources",
    field: "eventSource",
    plural: "eventsources",
};
const SENSOR: Kind = Kind {
    kind: "Sensor",
    path: "sensors",
    field: "sensor",
    plural: "sensors",
};

pub(super) fn routes() -> Router<Arc<AppState>> {
    let mut r = Router::new().route("/api/v1/stream/events/{ns}", get(watch_events));
    for k in [EVENT_SOURCE, SENSOR] {
        r = r
            .route(
                &format!("/api/v1/{}/{{ns}}", k.path),
                get(move |s: St, p: Path<String>| list(s, p, k))
                    .post(move |s: St, p: Path<String>, b: JsonBody| create(s, p, b, k)),
            )
            .route(
                &format!("/api/v1/{}/{{ns}}/{{name}}", k.path),
                get(move |s: St, p: Path<(String, String)>| get_one(s, p, k))
                    .put(move |s: St, p: Path<(String, String)>, b: JsonBody| update(s, p, b, k))
                    .delete(move |s: St, p: Path<(String, String)>| delete(s, p, k)),
            )
            .route(
                &format!("/api/v1/stream/{}/{{ns}}", k.path),
                get(move |s: St, p: Path<String>| watch(s, p, k)),
            )
            .route(
                &format!("/api/v1/stream/{}/{{ns}}/logs", k.path),
                get(
                    move |s: St, p: Path<String>, q: Query<Vec<(String, String)>>| logs(s, p, q, k),
                ),
            );
    }
    r
}

fn ndjson(s: impl futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(s))
        .unwrap_or_default()
}

fn not_found(k: Kind, name: &str) -> ApiError {
    ApiError::NotFound(format!("{}.argoproj.io \"{name}\" not found", k.plural))
}

async fn items(s: &AppState, ns: &str, k: Kind) -> Result<Vec<Value>, ApiError> {
    Ok(s.ctl
        .store
        .objects(k.kind, Some(ns))
        .await?
        .into_iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect())
}

async fn list(State(s): St, Path(ns): Path<String>, k: Kind) -> ApiResult {
    Ok(Json(
        json!({"metadata": {}, "items": items(&s, &ns, k).await?}),
    ))
}

fn object_of(body: Value, ns: &str, k: Kind) -> Result<(String, Value), ApiError> {
    let mut obj = body.get(k.field).cloned().ok_or_else(|| {
        ApiError::InvalidArgument(format!("request body: the field {:?} is required", k.field))
    })?;
    if obj["kind"].is_null() {
        obj["kind"] = json!(k.kind);
    }
    if obj["kind"] != k.kind {
        return Err(ApiError::InvalidArgument(format!(
            "{}.kind: expected {}, got {}",
            k.field, k.kind, obj["kind"]
        )));
    }
    obj["apiVersion"] = json!("argoproj.io/v1alpha1");
    let name = submit::resolve_name(&obj)?;
    obj["metadata"]["name"] = json!(name);
    obj["metadata"]["namespace"] = json!(ns);
    if !obj["spec"].is_object() {
        return Err(ApiError::InvalidArgument(format!(
            "{}.spec: expected an object",
            k.field
        )));
    }
    let problems = if k.kind == EVENT_SOURCE.kind {
        sensors::check_event_source(&obj)
    } else {
        sensors::check_sensor(&obj)
    };
    if !problems.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "{}: {}",
            k.field,
            problems.join("; ")
        )));
    }
    Ok((name, obj))
}

async fn put(
    s: &AppState,
    ns: &str,
    name: &str,
    obj: &Value,
    create: bool,
    k: Kind,
) -> Result<(), ApiError> {
    s.ctl
        .store
        .put_object(
            store::ObjectRow {
                kind: k.kind.into(),
                namespace: ns.into(),
                name: name.into(),
                created_ns: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
                body: obj.to_string(),
            },
            create,
        )
        .await
        .map_err(|e| match e {
            store::StoreError::AlreadyExists(_) => ApiError::AlreadyExists(format!(
                "{}.argoproj.io \"{name}\" already exists",
                k.plural
            )),
            store::StoreError::NotFound(_) => not_found(k, name),
            other => other.into(),
        })
}

/// An EventSource's webhooks may listen only on the server's ports, and only where no other
/// EventSource does (409, naming it when it is in the same namespace).
async fn check_webhooks(
    s: &AppState,
    ns: &str,
    name: &str,
    obj: &Value,
    k: Kind,
) -> Result<(), ApiError> {
    if k.kind != EVENT_SOURCE.kind || obj["spec"]["webhook"].is_null() {
        return Ok(());
    }
    let stored = s.ctl.store.objects(k.kind, None).await?;
    let settings = s.cfg.event_settings();
    event_runtime::event_bus::check_new(&settings, ns, name, obj, &stored).map_err(|e| match e {
        event_runtime::event_bus::Refusal::Invalid(m) => {
            ApiError::InvalidArgument(format!("{}: {m}", k.field))
        }
        event_runtime::event_bus::Refusal::Clash(m) => {
            ApiError::AlreadyExists(format!("{}: {m}", k.field))
        }
    })
}

async fn create(
    State(s): St,
    Path(ns): Path<String>,
    JsonBody(body): JsonBody,
    k: Kind,
) -> ApiResult {
    let (name, mut obj) = object_of(body, &ns, k)?;
    check_webhooks(&s, &ns, &name, &obj, k).await?;
    obj["metadata"]["uid"] = json!(workflow_runtime::new_uid());
    obj["metadata"]["creationTimestamp"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    put(&s, &ns, &name, &obj, true, k).await?;
    Ok(Json(obj))
}

async fn get_one(State(s): St, Path((ns, name)): Path<(String, String)>, k: Kind) -> ApiResult {
    let row = s
        .ctl
        .store
        .object(k.kind, &ns, &name)
        .await?
        .ok_or_else(|| not_found(k, &name))?;
    serde_json::from_str(&row.body)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn update(
    State(s): St,
    Path((ns, name)): Path<(String, String)>,
    JsonBody(body): JsonBody,
    k: Kind,
) -> ApiResult {
    let (in_body, mut obj) = object_of(body, &ns, k)?;
    if in_body != name {
        return Err(ApiError::InvalidArgument(format!(
            "the name in the body ({in_body:?}) does not match the name in the path ({name:?})"
        )));
    }
    let old = get_one(State(s.clone()), Path((ns.clone(), name.clone())), k)
        .await?
        .0;
    for keep in ["uid", "creationTimestamp"] {
        obj["metadata"][keep] = old["metadata"][keep].clone();
    }
    check_webhooks(&s, &ns, &name, &obj, k).await?;
    put(&s, &ns, &name, &obj, false, k).await?;
    Ok(Json(obj))
}

async fn delete(State(s): St, Path((ns, name)): Path<(String, String)>, k: Kind) -> ApiResult {
    s.ctl
        .store
        .delete_object(k.kind, &ns, &name)
        .await
        .map_err(|e| match e {
            store::StoreError::NotFound(_) => not_found(k, &name),
            other => other.into(),
        })?;
    Ok(Json(json!({})))
}

/// `{"result": {"type": ADDED|MODIFIED|DELETED, "object": …}}` lines: what is there, then
/// every change (the store is read again each second).
async fn watch(State(s): St, Path(ns): Path<String>, k: Kind) -> Result<Response, ApiError> {
    let mut seen: std::collections::BTreeMap<String, Value> = Default::default();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        loop {
            let Ok(now) = items(&s, &ns, k).await else {
                return;
            };
            let mut current = std::collections::BTreeMap::new();
            for o in now {
                let name = o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                current.insert(name, o);
            }
            let mut lines = Vec::new();
            for (name, o) in &current {
                match seen.get(name) {
                    None => lines.push(("ADDED", o.clone())),
                    Some(old) if old != o => lines.push(("MODIFIED", o.clone())),
                    _ => {}
                }
            }
            for (name, o) in &seen {
                if !current.contains_key(name) {
                    lines.push(("DELETED", o.clone()));
                }
            }
            for (kind, o) in lines {
                let line = json!({"result": {"type": kind, "object": o}}).to_string() + "\n";
                if tx.send(Ok(Bytes::from(line))).await.is_err() {
                    return;
                }
            }
            seen = current;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(ndjson(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// The namespace's Kubernetes Events, as `kubectl get events` shows them: one for each phase a
/// workflow reaches (`WorkflowRunning`, `WorkflowSucceeded`, …), as Argo's controller records.
async fn watch_events(State(s): St, Path(ns): Path<String>) -> Result<Response, ApiError> {
    let mut rx = s.ctl.subscribe();
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    tokio::spawn(async move {
        let mut last: std::collections::HashMap<String, String> = Default::default();
        loop {
            let ev = match rx.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if ev.namespace != ns {
                continue;
            }
            let phase = ev.object["status"]["phase"]
                .as_str()
                .unwrap_or("Pending")
                .to_string();
            if last.get(&ev.name) == Some(&phase) {
                continue;
            }
            last.insert(ev.name.clone(), phase.clone());
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let event = json!({
                "metadata": {"name": format!("{}.{}", ev.name, workflow_runtime::new_uid()), "namespace": ns},
                "involvedObject": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                   "name": ev.name, "namespace": ns,
                                   "uid": ev.object["metadata"]["uid"]},
                "reason": format!("Workflow{phase}"),
                "message": ev.object["status"]["message"].as_str().unwrap_or(&phase),
                "type": if matches!(phase.as_str(), "Failed" | "Error") { "Warning" } else { "Normal" },
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "source": {"component": "onyx-controller"},
            });
            let line = json!({"result": {"type": "ADDED", "object": event}}).to_string() + "\n";
            if tx.send(Ok(Bytes::from(line))).await.is_err() {
                return;
            }
        }
    });
    Ok(ndjson(tokio_stream::wrappers::ReceiverStream::new(out)))
}

/// `stream/{event-sources,sensors}/{ns}/logs`: what ONYX's EventSources and Sensors do from
/// now on, as Argo's log entries, narrowed by the query as Argo narrows them (`name`,
/// `eventSourceType`, `eventName`, `triggerName`, `grep`).
async fn logs(
    State(s): St,
    Path(ns): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    k: Kind,
) -> Response {
    let owner = if k.kind == EVENT_SOURCE.kind {
        "eventSourceName"
    } else {
        "sensorName"
    };
    let wanted: Vec<(String, String)> = query
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .filter_map(|(key, v)| match key.as_str() {
            "name" => Some((owner.to_string(), v)),
            "eventSourceType" | "eventName" | "triggerName" | "grep" => Some((key, v)),
            _ => None,
        })
        .collect();
    let rx = s.notifier.activity();
    let stream = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(move |entry| {
        let keep = entry.ok().filter(|e| {
            e["namespace"] == ns.as_str()
                && e.get(owner).is_some()
                && wanted.iter().all(|(key, v)| match key.as_str() {
                    "grep" => e["msg"].as_str().is_some_and(|m| m.contains(v.as_str())),
                    field => e[field] == v.as_str(),
                })
        });
        std::future::ready(
            keep.map(|e| Ok::<_, Infallible>(Bytes::from(json!({"result": e}).to_string() + "\n"))),
        )
    });
    ndjson(stream)
}
