//! Argo Events run by ONYX itself: events from EventSources reach the namespace's Sensors
//! (the pure `sensors` crate decides what fires) and the calls of firing triggers go to the
//! notifications outbox, keyed by namespace, sensor, trigger and the events that fired them,
//! so each is made once across restarts.
//!
//! Event sources:
//! - `resource` on `argoproj.io` workflows: the controller publishes each workflow's start
//!   (`ADD`) and end (`UPDATE`);
//! - `webhook`: a listener per port an EventSource names, serving its endpoints;
//! - `calendar`: a timer per event (`schedule` in cron form, or `interval`), from the time the
//!   source starts, without catch-up, as Argo Events runs one without persistence.
//!
//! Listeners and timers follow the stored EventSources ([`run`], on the leader only): a
//! source that changes is restarted, one that is deleted is stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use sensors::{Event, Held, EVENT_SOURCE, SENSOR};
use serde_json::{json, Value};
use store::{ObjectRow, StoreError};
use tokio::task::JoinHandle;

use crate::notify::Notifier;

/// Stored objects' kind for the events a sensor's triggers hold between events.
const HELD: &str = "SensorHeldEvents";

fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn bodies(n: &Notifier, kind: &str, ns: &str) -> Result<Vec<Value>, StoreError> {
    Ok(n.store()
        .objects(kind, Some(ns))
        .await?
        .iter()
        .filter_map(|r| serde_json::from_str(&r.body).ok())
        .collect())
}

/// A workflow's start (`ADD`) or end (`UPDATE`), for the namespace's resource EventSources.
pub async fn workflow_event(
    n: &Notifier,
    event_type: &str,
    workflow: &Value,
    uid: &str,
) -> Result<(), StoreError> {
    let ns = workflow["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    // Most namespaces have no sensors: one indexed read, and nothing more.
    if n.store().objects(SENSOR, Some(ns)).await?.is_empty() {
        return Ok(());
    }
    let sources = bodies(n, EVENT_SOURCE, ns).await?;
    let events = sensors::workflow_events(event_type, workflow, uid, &now_rfc3339(), &sources);
    publish(n, ns, &events).await
}

/// Feed events to the namespace's Sensors and queue the calls of what fires.
pub async fn publish(n: &Notifier, ns: &str, events: &[Event]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    for e in events {
        n.say("info", json!({"namespace": ns, "eventSourceName": e.source, "eventSourceType": e.kind,
                              "eventName": e.name, "msg": format!("published an event ({})", e.id)}));
    }
    // One event at a time per server, so two events for one sensor see each other's holds.
    let _one_at_a_time = n.sensor_lock.lock().await;
    let sensors = bodies(n, SENSOR, ns).await?;
    let mut rows = Vec::new();
    for sensor in &sensors {
        let name = sensor["metadata"]["name"].as_str().unwrap_or_default();
        let uid = sensor["metadata"]["uid"].as_str().unwrap_or_default();
        let stored = n.store().object(HELD, ns, name).await?;
        // Holds belong to one incarnation of the sensor: a deleted and re-created one starts afresh.
        let mut held: Held = stored
            .as_ref()
            .and_then(|r| serde_json::from_str::<Value>(&r.body).ok())
            .filter(|v| v["uid"] == uid)
            .and_then(|v| serde_json::from_value(v["held"].clone()).ok())
            .unwrap_or_default();
        let before = held.clone();
        for event in events {
            let (fired, problems) = sensors::on_event(ns, sensor, &mut held, event);
            for p in problems {
                tracing::warn!("{ns}: {p}");
                n.say(
                    "error",
                    json!({"namespace": ns, "sensorName": name, "msg": p.to_string()}),
                );
            }
            for f in &fired {
                n.say("info", json!({"namespace": ns, "sensorName": name,
                    "triggerName": f.key.split('/').nth(3), "msg": format!("fired on {}", event.id)}));
            }
            rows.extend(fired.into_iter().map(|f| (f.key, f.call)));
        }
        if held != before {
            save_held(n, ns, name, uid, &held, stored.is_some()).await?;
        }
    }
    n.enqueue_calls(rows).await
}

async fn save_held(
    n: &Notifier,
    ns: &str,
    name: &str,
    uid: &str,
    held: &Held,
    exists: bool,
) -> Result<(), StoreError> {
    if held.is_empty() {
        return match n.store().delete_object(HELD, ns, name).await {
            Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        };
    }
    let row = ObjectRow {
        kind: HELD.into(),
        namespace: ns.into(),
        name: name.into(),
        created_ns: Utc::now().timestamp_nanos_opt().unwrap_or_default(),
        body: json!({"uid": uid, "held": held}).to_string(),
    };
    n.store().put_object(row, !exists).await
}

/// One running EventSource: its stored body (a change restarts it) and its tasks.
struct Running {
    body: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Keep webhook listeners and calendar timers in step with the stored EventSources.
pub async fn run(n: Arc<Notifier>) {
    let mut running: BTreeMap<(String, String), Running> = BTreeMap::new();
    loop {
        match n.store().objects(EVENT_SOURCE, None).await {
            Ok(rows) => {
                let wanted: BTreeMap<(String, String), String> = rows
                    .into_iter()
                    .map(|r| ((r.namespace, r.name), r.body))
                    .collect();
                running.retain(|k, r| wanted.get(k) == Some(&r.body));
                for ((ns, name), body) in wanted {
                    if running.contains_key(&(ns.clone(), name.clone())) {
                        continue;
                    }
                    let tasks = start(&n, &ns, &body).await;
                    running.insert((ns, name), Running { body, tasks });
                }
            }
            Err(e) => tracing::error!("event sources: reading the store: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Start one EventSource's listeners and timers.
async fn start(n: &Arc<Notifier>, ns: &str, body: &str) -> Vec<JoinHandle<()>> {
    let Ok(source) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    let name = source["metadata"]["name"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let problems = sensors::check_event_source(&source);
    if !problems.is_empty() {
        tracing::warn!("event source {ns}/{name}: {}", problems.join("; "));
        return Vec::new();
    }
    let mut tasks = Vec::new();
    // Webhook events by port: one listener serves every endpoint of its port.
    let mut ports: BTreeMap<u16, Vec<(String, Value)>> = BTreeMap::new();
    for (event, hook) in source["spec"]["webhook"].as_object().into_iter().flatten() {
        let port = hook["port"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .or_else(|| hook["port"].as_u64().and_then(|p| u16::try_from(p).ok()));
        if let Some(port) = port {
            ports
                .entry(port)
                .or_default()
                .push((event.clone(), hook.clone()));
        }
    }
    for (port, hooks) in ports {
        let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                let app = webhook_router(n.clone(), ns, &name, hooks);
                tracing::info!("event source {ns}/{name}: webhook listening on {addr}");
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!("webhook listener on {addr}: {e}");
                    }
                }));
            }
            Err(e) => tracing::error!("event source {ns}/{name}: webhook port {port}: {e}"),
        }
    }
    for (event, cal) in source["spec"]["calendar"].as_object().into_iter().flatten() {
        match Tick::parse(cal) {
            Ok(tick) => {
                let (n, ns, name, event, cal) = (
                    n.clone(),
                    ns.to_string(),
                    name.clone(),
                    event.clone(),
                    cal.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    calendar(n, ns, name, event, cal, tick).await
                }));
            }
            Err(e) => tracing::warn!("event source {ns}/{name}: spec.calendar.{event}: {e}"),
        }
    }
    tasks
}

#[derive(Clone)]
struct Hook {
    n: Arc<Notifier>,
    ns: String,
    source: String,
    event: String,
    method: String,
}

fn webhook_router(
    n: Arc<Notifier>,
    ns: &str,
    source: &str,
    hooks: Vec<(String, Value)>,
) -> axum::Router {
    let mut app = axum::Router::new();
    for (event, hook) in hooks {
        let endpoint = hook["endpoint"].as_str().unwrap_or("/").to_string();
        let h = Hook {
            n: n.clone(),
            ns: ns.into(),
            source: source.into(),
            event,
            method: hook["method"]
                .as_str()
                .unwrap_or("POST")
                .to_ascii_uppercase(),
        };
        app = app.route(&endpoint, axum::routing::any(webhook).with_state(h));
    }
    app
}

/// One webhook request: an event, answered `success` once it is handed to the sensors.
async fn webhook(
    State(h): State<Hook>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if method.as_str() != h.method {
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "the method {method} is not supported; this endpoint takes {}",
                h.method
            ),
        )
            .into_response();
    }
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let data = match sensors::webhook_data(&headers, &body) {
        Ok(d) => d,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let event = Event {
        source: h.source.clone(),
        name: h.event.clone(),
        kind: "webhook".into(),
        id: local_executor::actions::new_uid(),
        time: now_rfc3339(),
        data,
    };
    match publish(&h.n, &h.ns, &[event]).await {
        Ok(()) => (StatusCode::OK, "success").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A calendar event's times: a cron schedule, or a fixed interval after the last tick.
enum Tick {
    Schedule(Box<crate::schedule::Schedule>),
    Every(chrono::Duration),
}

impl Tick {
    fn parse(cal: &Value) -> Result<Tick, String> {
        let tz = cal["timezone"].as_str().unwrap_or_default();
        match (cal["schedule"].as_str(), cal["interval"].as_str()) {
            (Some(s), _) if !s.is_empty() => {
                crate::schedule::Schedule::parse(s, tz).map(|s| Tick::Schedule(Box::new(s)))
            }
            (_, Some(i)) if !i.is_empty() => workflow_engine::parse_duration(i)
                .filter(|d| *d > chrono::Duration::zero())
                .map(Tick::Every)
                .ok_or_else(|| format!("interval {i:?}: expected a Go duration like 10s or 1m")),
            _ => Err("calendar event must contain either a schedule or interval".into()),
        }
    }

    fn next(&self, last: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Tick::Schedule(s) => s.next_after(last),
            Tick::Every(d) => Some(last + *d),
        }
    }
}

async fn calendar(
    n: Arc<Notifier>,
    ns: String,
    source: String,
    event: String,
    cal: Value,
    tick: Tick,
) {
    let mut last = Utc::now();
    while let Some(at) = tick.next(last) {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        let e = Event {
            source: source.clone(),
            name: event.clone(),
            kind: "calendar".into(),
            // The tick's time: the same tick published twice fires once.
            id: format!(
                "{event}@{}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
            time: at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            data: sensors::calendar_data(
                &at.format("%Y-%m-%d %H:%M:%S%.f %z UTC").to_string(),
                &cal,
            ),
        };
        if let Err(e) = publish(&n, &ns, &[e]).await {
            tracing::error!("event source {ns}/{source}: calendar {event}: {e}");
        }
        last = at;
    }
}
