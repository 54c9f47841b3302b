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
//! source that changes is restarted, one that is deleted is stopped. Webhook listeners bind
//! the `[event_sources]` address, on its ports only; one listener serves a port's endpoints
//! for every source, each endpoint and method one source's, the oldest's (the API refuses a
//! clash when a source is made; [`check_new`]). A webhook with `authSecret` takes only
//! requests that carry the secret as a bearer token.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use sensors::{Event, Held, EVENT_SOURCE, SENSOR};
use serde::Deserialize;
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

/// Tells the webhooks and the Sensors watching workflows of a workflow's phase: the
/// workflow runtime's [`workflow_runtime::PhaseListener`]. Both queue by key, so a phase told
/// twice (after a crash) is queued once.
pub struct Announcer(pub Arc<Notifier>);

impl workflow_runtime::PhaseListener for Announcer {
    fn phase(&self, workflow: Value, uid: String) -> futures::future::BoxFuture<'static, ()> {
        let n = self.0.clone();
        Box::pin(async move {
            let who = format!(
                "{}/{}",
                workflow["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default(),
                workflow["metadata"]["name"].as_str().unwrap_or_default()
            );
            let ev = crate::notify::WorkflowEvent::of(&workflow, &uid);
            if let Err(e) = n.enqueue(&ev).await {
                tracing::error!("workflow {who}: queueing notifications: {e}");
            }
            // Sensors watching workflows: ADD when it starts, UPDATE when it ends.
            let ended = matches!(
                workflow["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed" | "Error")
            );
            let event_type = if ended { "UPDATE" } else { "ADD" };
            if let Err(e) = workflow_event(&n, event_type, &workflow, &uid).await {
                tracing::error!("workflow {who}: queueing sensor triggers: {e}");
            }
        })
    }
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

/// `[event_sources]`: tenants' webhook EventSources listen on the server's host, so only on
/// this address and these ports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSourcesConfig {
    /// The address their listeners bind: `127.0.0.1` unless set (`0.0.0.0` for every one).
    #[serde(default = "default_event_source_address")]
    pub listen_address: std::net::IpAddr,
    /// The ports they may name, `LOW-HIGH` (or one port): `12000-12999` unless set.
    #[serde(default)]
    pub ports: PortRange,
}

fn default_event_source_address() -> std::net::IpAddr {
    std::net::Ipv4Addr::LOCALHOST.into()
}

impl Default for EventSourcesConfig {
    fn default() -> Self {
        EventSourcesConfig {
            listen_address: default_event_source_address(),
            ports: PortRange::default(),
        }
    }
}

/// Ports `LOW-HIGH`, both included.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange {
            low: 12000,
            high: 12999,
        }
    }
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

impl TryFrom<String> for PortRange {
    type Error = String;
    fn try_from(s: String) -> Result<PortRange, String> {
        let (low, high) = s.split_once('-').unwrap_or((&s, &s));
        let port = |p: &str| p.trim().parse::<u16>().ok().filter(|p| *p > 0);
        match (port(low), port(high)) {
            (Some(low), Some(high)) if low <= high => Ok(PortRange { low, high }),
            _ => Err(format!(
                "ports {s:?}: expected LOW-HIGH, ports from 1 to 65535, such as \"12000-12999\""
            )),
        }
    }
}

/// Where webhook listeners may listen, and the secrets their `authSecret`s name.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen_address: std::net::IpAddr,
    pub ports: PortRange,
    pub secrets_file: Option<std::path::PathBuf>,
}

/// Why an EventSource's webhooks cannot be served.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The source itself is wrong (a port outside the allowed range, an endpoint that is not a
    /// path, …).
    Invalid(String),
    /// Another EventSource already serves one of its endpoints.
    Clash(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid(m) | Refusal::Clash(m) => f.write_str(m),
        }
    }
}

/// One webhook event of a stored EventSource, as a listener serves it.
#[derive(Debug, Clone, PartialEq)]
struct Served {
    ns: String,
    source: String,
    route: sensors::WebhookRoute,
}

/// Which endpoint of which port serves which events (`endpoint` → one per method).
type Ports = BTreeMap<u16, BTreeMap<String, Vec<Served>>>;

/// An EventSource's webhook events, if they can be served beside `taken` (the events of the
/// sources admitted before it).
fn admit(
    settings: &Settings,
    ns: &str,
    name: &str,
    source: &Value,
    taken: &Ports,
) -> Result<Vec<Served>, Refusal> {
    let problems = sensors::check_event_source(source);
    if !problems.is_empty() {
        return Err(Refusal::Invalid(problems.join("; ")));
    }
    let (routes, _) = sensors::webhook_routes(source);
    for r in &routes {
        if !settings.ports.contains(r.port) {
            return Err(Refusal::Invalid(format!(
                "spec.webhook.{}.port: {} is not allowed: webhook EventSources may listen only on ports {} (the server's [event_sources] ports)",
                r.event, r.port, settings.ports
            )));
        }
        let other = taken
            .get(&r.port)
            .and_then(|p| p.get(&r.endpoint))
            .into_iter()
            .flatten()
            .find(|o| o.route.clashes(r) && (o.ns.as_str(), o.source.as_str()) != (ns, name));
        if let Some(o) = other {
            // A tenant learns the name of a clashing source only in its own namespace.
            let whose = if o.ns == ns {
                format!("EventSource {:?} (event {:?})", o.source, o.route.event)
            } else {
                "an EventSource in another namespace".to_string()
            };
            return Err(Refusal::Clash(format!(
                "spec.webhook.{}: {} {} on port {} is already served by {whose}",
                r.event, r.method, r.endpoint, r.port
            )));
        }
    }
    Ok(routes
        .into_iter()
        .map(|route| Served {
            ns: ns.into(),
            source: name.into(),
            route,
        })
        .collect())
}

fn add(ports: &mut Ports, served: Vec<Served>) {
    for s in served {
        ports
            .entry(s.route.port)
            .or_default()
            .entry(s.route.endpoint.clone())
            .or_default()
            .push(s);
    }
}

/// What the listeners serve for the stored EventSources (oldest first: a later one that
/// clashes with an earlier one is refused), and why those refused are.
fn plan(
    settings: &Settings,
    sources: &[(String, String, Value)],
) -> (Ports, BTreeMap<(String, String), Refusal>) {
    let mut ports = Ports::new();
    let mut refused = BTreeMap::new();
    for (ns, name, source) in sources {
        match admit(settings, ns, name, source, &ports) {
            Ok(served) => add(&mut ports, served),
            Err(e) => {
                refused.insert((ns.clone(), name.clone()), e);
            }
        }
    }
    (ports, refused)
}

/// Whether an EventSource may be created (or updated to `source`) beside the stored ones:
/// its ports in the allowed range, none of its endpoints served by another source.
pub fn check_new(
    settings: &Settings,
    ns: &str,
    name: &str,
    source: &Value,
    stored: &[ObjectRow],
) -> Result<(), Refusal> {
    let mut taken = Ports::new();
    for row in stored {
        if (row.namespace.as_str(), row.name.as_str()) == (ns, name) {
            continue;
        }
        let Ok(body) = serde_json::from_str::<Value>(&row.body) else {
            continue;
        };
        let (routes, _) = sensors::webhook_routes(&body);
        add(
            &mut taken,
            routes
                .into_iter()
                .map(|route| Served {
                    ns: row.namespace.clone(),
                    source: row.name.clone(),
                    route,
                })
                .collect(),
        );
    }
    admit(settings, ns, name, source, &taken).map(|_| ())
}

/// One running EventSource's calendar timers, and its stored body (a change restarts them).
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

/// A webhook port's listener; what it serves changes without it closing.
struct Listener {
    routes: Arc<std::sync::RwLock<BTreeMap<String, Vec<Served>>>>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Connections still open are served by what the listener serves: nothing from now on.
        self.routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.task.abort();
    }
}

/// Keep webhook listeners and calendar timers in step with the stored EventSources. A source
/// that cannot run (a port outside the allowed range, an endpoint another source serves, …)
/// is left out and said once in its log and the server's; the others run.
pub async fn run(n: Arc<Notifier>, settings: Settings) {
    let mut running: BTreeMap<(String, String), Running> = BTreeMap::new();
    let mut listeners: BTreeMap<u16, Listener> = BTreeMap::new();
    // What was last said about a source that cannot run, or a port that cannot be bound.
    let mut said: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut unbound: BTreeMap<u16, String> = BTreeMap::new();
    loop {
        match n.store().objects(EVENT_SOURCE, None).await {
            Ok(mut rows) => {
                rows.sort_by(|a, b| {
                    (a.created_ns, &a.namespace, &a.name).cmp(&(
                        b.created_ns,
                        &b.namespace,
                        &b.name,
                    ))
                });
                let sources: Vec<(String, String, Value)> = rows
                    .iter()
                    .filter_map(|r| {
                        let body = serde_json::from_str(&r.body).ok()?;
                        Some((r.namespace.clone(), r.name.clone(), body))
                    })
                    .collect();
                let (ports, refused) = plan(&settings, &sources);
                said.retain(|k, _| refused.contains_key(k));
                for ((ns, name), why) in &refused {
                    let why = why.to_string();
                    if said.get(&(ns.clone(), name.clone())) != Some(&why) {
                        tracing::warn!("event source {ns}/{name} does not run: {why}");
                        n.say(
                            "error",
                            json!({"namespace": ns, "eventSourceName": name, "msg": why}),
                        );
                        said.insert((ns.clone(), name.clone()), why);
                    }
                }
                serve_ports(&n, &settings, &mut listeners, &mut unbound, ports).await;
                let wanted: BTreeMap<(String, String), String> = rows
                    .into_iter()
                    .filter(|r| !refused.contains_key(&(r.namespace.clone(), r.name.clone())))
                    .map(|r| ((r.namespace, r.name), r.body))
                    .collect();
                running.retain(|k, r| wanted.get(k) == Some(&r.body));
                for ((ns, name), body) in wanted {
                    if running.contains_key(&(ns.clone(), name.clone())) {
                        continue;
                    }
                    let tasks = start_calendars(&n, &ns, &body);
                    running.insert((ns, name), Running { body, tasks });
                }
            }
            Err(e) => tracing::error!("event sources: reading the store: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Listen on the ports `ports` names (binding those new, retrying those that failed), serve
/// what it says on each, and close the others.
async fn serve_ports(
    n: &Arc<Notifier>,
    settings: &Settings,
    listeners: &mut BTreeMap<u16, Listener>,
    unbound: &mut BTreeMap<u16, String>,
    mut ports: Ports,
) {
    listeners.retain(|port, _| ports.contains_key(port));
    unbound.retain(|port, _| ports.contains_key(port));
    for (port, routes) in std::mem::take(&mut ports) {
        if let Some(l) = listeners.get(&port) {
            *l.routes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = routes;
            continue;
        }
        let addr = std::net::SocketAddr::new(settings.listen_address, port);
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                for (ns, name) in owners(&routes) {
                    tracing::info!("event source {ns}/{name}: webhook listening on {addr}");
                }
                unbound.remove(&port);
                let routes = Arc::new(std::sync::RwLock::new(routes));
                let app = axum::Router::new().fallback(webhook).with_state(Port {
                    n: n.clone(),
                    routes: routes.clone(),
                    secrets_file: settings.secrets_file.clone(),
                });
                let task = tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app).await {
                        tracing::error!("webhook listener on {addr}: {e}");
                    }
                });
                listeners.insert(port, Listener { routes, task });
            }
            Err(e) => {
                let why = format!("webhook port {port}: listening on {addr}: {e}");
                if unbound.get(&port) != Some(&why) {
                    for (ns, name) in owners(&routes) {
                        tracing::error!("event source {ns}/{name}: {why}");
                        n.say(
                            "error",
                            json!({"namespace": ns, "eventSourceName": name, "msg": why}),
                        );
                    }
                    unbound.insert(port, why);
                }
            }
        }
    }
}

fn owners(routes: &BTreeMap<String, Vec<Served>>) -> std::collections::BTreeSet<(&str, &str)> {
    routes
        .values()
        .flatten()
        .map(|s| (s.ns.as_str(), s.source.as_str()))
        .collect()
}

/// Start one EventSource's calendar timers.
fn start_calendars(n: &Arc<Notifier>, ns: &str, body: &str) -> Vec<JoinHandle<()>> {
    let Ok(source) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    let name = source["metadata"]["name"]
        .as_str()
        .unwrap_or("?")
        .to_string();
    let mut tasks = Vec::new();
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

/// A webhook port's state: the events served on each endpoint.
#[derive(Clone)]
struct Port {
    n: Arc<Notifier>,
    routes: Arc<std::sync::RwLock<BTreeMap<String, Vec<Served>>>>,
    secrets_file: Option<std::path::PathBuf>,
}

fn answer(code: StatusCode, text: impl Into<String>) -> axum::response::Response {
    (code, text.into()).into_response()
}

/// One webhook request: an event, answered `success` once it is handed to the sensors.
async fn webhook(
    State(p): State<Port>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let (served, methods, guarded) = {
        let routes = p
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(on_path) = routes.get(uri.path()) else {
            return answer(StatusCode::NOT_FOUND, "404 page not found");
        };
        (
            on_path
                .iter()
                .find(|s| s.route.method == method.as_str())
                .cloned(),
            on_path
                .iter()
                .map(|s| s.route.method.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            on_path.iter().any(|s| s.route.auth_secret.is_some()),
        )
    };
    let Some(served) = served else {
        // Which methods a guarded endpoint takes is for those who hold its token.
        let takes = if guarded {
            String::new()
        } else {
            format!("; this endpoint takes {methods}")
        };
        return answer(
            StatusCode::BAD_REQUEST,
            format!("the method {method} is not supported{takes}"),
        );
    };
    if let Some((secret, key)) = &served.route.auth_secret {
        if let Err(refused) = authorize(&p, &served.ns, secret, key, &headers).await {
            return refused;
        }
    }
    let headers: Vec<(String, String)> = headers
        .iter()
        // The token is a secret: it is not kept with the event.
        .filter(|(k, _)| served.route.auth_secret.is_none() || *k != header::AUTHORIZATION)
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let data = match sensors::webhook_data(&headers, &body) {
        Ok(d) => d,
        Err(e) => return answer(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let event = Event {
        source: served.source.clone(),
        name: served.route.event.clone(),
        kind: "webhook".into(),
        id: workflow_runtime::new_uid(),
        time: now_rfc3339(),
        data,
    };
    match publish(&p.n, &served.ns, &[event]).await {
        Ok(()) => answer(StatusCode::OK, "success"),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Argo Events' `authSecret`: the request must carry `Authorization: Bearer <the secret's
/// value>`, the secret read from the namespace's secrets at each request.
async fn authorize(
    p: &Port,
    ns: &str,
    secret: &str,
    key: &str,
    headers: &HeaderMap,
) -> Result<(), axum::response::Response> {
    let token = {
        let (file, ns, secret, key) = (
            p.secrets_file.clone(),
            ns.to_string(),
            secret.to_string(),
            key.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            let file = file.ok_or("this server keeps no secrets ([secrets] file)")?;
            let secrets = pod_secrets::Secrets::load(&file)?;
            let v = secrets.value(&ns, &secret, &key)?;
            // As Argo Events reads a secret's file: without the newline an editor leaves.
            let v = v.strip_suffix('\n').unwrap_or(&v).to_string();
            if v.is_empty() {
                return Err(format!("secret {secret:?} key {key:?} is empty"));
            }
            Ok::<_, String>(v)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
    };
    let token = token.map_err(|e| {
        tracing::warn!("webhook auth secret: {e}");
        answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error loading auth token",
        )
    })?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| answer(StatusCode::UNAUTHORIZED, "Invalid Authorization Header"))?;
    if !access::same_secret(given, &token) {
        return Err(answer(StatusCode::UNAUTHORIZED, "Invalid Auth token"));
    }
    Ok(())
}

/// A calendar event's times: a cron schedule, or a fixed interval after the last tick.
enum Tick {
    Schedule(Box<cron_schedule::Schedule>),
    Every(chrono::Duration),
}

impl Tick {
    fn parse(cal: &Value) -> Result<Tick, String> {
        let tz = cal["timezone"].as_str().unwrap_or_default();
        match (cal["schedule"].as_str(), cal["interval"].as_str()) {
            (Some(s), _) if !s.is_empty() => {
                cron_schedule::Schedule::parse(s, tz).map(|s| Tick::Schedule(Box::new(s)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            listen_address: std::net::Ipv4Addr::LOCALHOST.into(),
            ports: PortRange::default(),
            secrets_file: None,
        }
    }

    fn source(ns: &str, name: &str, webhook: Value) -> (String, String, Value) {
        (
            ns.into(),
            name.into(),
            json!({"metadata": {"name": name, "namespace": ns}, "spec": {"webhook": webhook}}),
        )
    }

    fn hook(port: u16, endpoint: &str, method: &str) -> Value {
        json!({"port": port.to_string(), "endpoint": endpoint, "method": method})
    }

    /// Any stored set of sources is planned without a panic: clashing ones (in one source or
    /// across sources), bad endpoints and ports outside the range are left out, the rest run.
    #[test]
    fn any_stored_sources_are_planned_and_clashes_left_out() {
        let sources = [
            source("a", "first", json!({"e": hook(12000, "/hook", "POST")})),
            // The same port, endpoint and method as `first`: refused; the older one serves.
            source("b", "second", json!({"e": hook(12000, "/hook", "POST")})),
            source(
                "a",
                "third",
                json!({"e": hook(12000, "/hook", "POST"),
                                        "f": hook(12000, "/other", "POST")}),
            ),
            // Another method on the same endpoint is another route.
            source("b", "fourth", json!({"e": hook(12000, "/hook", "GET")})),
            // Two events of one source on one route, and endpoints axum's router refuses.
            source(
                "c",
                "twice",
                json!({"x": hook(12001, "/x", "POST"),
                                        "y": hook(12001, "/x", "POST")}),
            ),
            source("c", "braces", json!({"x": hook(12001, "/{x}", "POST")})),
            source("c", "query", json!({"x": hook(12001, "/x?y=1", "POST")})),
            source("c", "relative", json!({"x": hook(12001, "x", "POST")})),
            source("c", "outside", json!({"x": hook(8080, "/x", "POST")})),
            source("c", "fine", json!({"x": hook(12002, "/x", "POST")})),
        ];
        let (ports, refused) = plan(&settings(), &sources);
        let served: Vec<(u16, &str, &str, &str)> = ports
            .iter()
            .flat_map(|(port, eps)| {
                eps.iter().flat_map(move |(ep, ss)| {
                    ss.iter().map(move |s| {
                        (
                            *port,
                            ep.as_str(),
                            s.route.method.as_str(),
                            s.source.as_str(),
                        )
                    })
                })
            })
            .collect();
        assert_eq!(
            served,
            [
                (12000, "/hook", "POST", "first"),
                (12000, "/hook", "GET", "fourth"),
                (12002, "/x", "POST", "fine"),
            ]
        );
        let why = |ns: &str, name: &str| refused[&(ns.to_string(), name.to_string())].clone();
        assert_eq!(
            why("b", "second"),
            Refusal::Clash(
                "spec.webhook.e: POST /hook on port 12000 is already served by an EventSource in another namespace".into()
            )
        );
        assert_eq!(
            why("a", "third"),
            Refusal::Clash(
                "spec.webhook.e: POST /hook on port 12000 is already served by EventSource \"first\" (event \"e\")".into()
            )
        );
        for name in ["twice", "braces", "query", "relative"] {
            assert!(matches!(why("c", name), Refusal::Invalid(_)), "{name}");
        }
        assert_eq!(
            why("c", "outside").to_string(),
            "spec.webhook.x.port: 8080 is not allowed: webhook EventSources may listen only on ports 12000-12999 (the server's [event_sources] ports)"
        );
        assert_eq!(refused.len(), 7);
    }

    #[test]
    fn a_new_source_is_checked_against_the_stored_ones() {
        let row = |ns: &str, name: &str, webhook: Value| {
            let (ns, name, body) = source(ns, name, webhook);
            ObjectRow {
                kind: EVENT_SOURCE.into(),
                namespace: ns,
                name,
                created_ns: 0,
                body: body.to_string(),
            }
        };
        let stored = [row(
            "a",
            "first",
            json!({"e": hook(12000, "/hook", "POST")}),
        )];
        let (_, _, new) = source("a", "new", json!({"e": hook(12000, "/hook", "POST")}));
        assert!(matches!(
            check_new(&settings(), "a", "new", &new, &stored),
            Err(Refusal::Clash(m)) if m.contains("EventSource \"first\"")
        ));
        // Updating a source does not clash with itself.
        assert_eq!(check_new(&settings(), "a", "first", &new, &stored), Ok(()));
        let (_, _, other) = source("a", "new", json!({"e": hook(12000, "/other", "POST")}));
        assert_eq!(check_new(&settings(), "a", "new", &other, &stored), Ok(()));
    }
}
