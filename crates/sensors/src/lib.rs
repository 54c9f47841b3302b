//! Argo Events' Sensors as a pure function of (sensor, held events, new event) to (held
//! events, trigger calls). No I/O and no clock: the server feeds events from its own
//! workflows (a `resource` EventSource on `argoproj.io` workflows), from webhook listeners and
//! from calendar timers, and delivers the calls through its outbox.
//!
//! Rules kept, as Argo Events (v1.9) has them:
//! - a dependency is satisfied by an event of its `eventSourceName`/`eventName` that passes
//!   its `filters` (`data`: gjson-style path, values OR'ed, strings `=`/`!=` or a regular
//!   expression; `exprs`: expr-lang over named fields; both AND'ed by default);
//! - a trigger fires when its `conditions` (`dep-a && (dep-b || dep-c)`) hold over the
//!   dependencies it has seen, all of the sensor's dependencies when it has none; firing
//!   consumes what it held, so the next firing needs new events;
//! - parameters (`src.dependencyName` with `dataKey`, `contextKey` or a default `value`) are
//!   set at `dest` as strings unless `useRawData`, with `overwrite`/`append`/`prepend`.

#![forbid(unsafe_code)]

mod condition;
mod event;
mod filter;
mod params;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

pub use condition::Condition;
pub use event::{Call, Event};
pub use params::{at, set_path};

/// Stored objects' kinds.
pub const EVENT_SOURCE: &str = "EventSource";
pub const SENSOR: &str = "Sensor";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SensorError {
    #[error("sensor {sensor}: trigger {trigger}: {what}")]
    Trigger {
        sensor: String,
        trigger: String,
        what: String,
    },
    #[error("sensor {sensor}: dependency {dependency}: {what}")]
    Dependency {
        sensor: String,
        dependency: String,
        what: String,
    },
    #[error("sensor {sensor}: {what}")]
    Sensor { sensor: String, what: String },
    #[error("webhook body: {0}")]
    WebhookBody(String),
}

/// One call of a firing, keyed by namespace, sensor, trigger and the events that fired it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub key: String,
    pub call: Call,
}

/// Events a sensor's triggers have seen and not yet fired on: trigger → dependency → event.
/// Kept by the server between events (a sensor of one dependency never holds any).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Held(pub BTreeMap<String, BTreeMap<String, Event>>);

impl Held {
    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeMap::is_empty)
    }
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("?")
}

/// The events a workflow's start (`ADD`) or end (`UPDATE`) gives in its namespace's
/// `resource` EventSources that watch `argoproj.io` workflows and let it through their
/// filters (`fields` and `labels`, each `==`/`!=`).
pub fn workflow_events(
    event_type: &str,
    workflow: &Value,
    uid: &str,
    time: &str,
    sources: &[Value],
) -> Vec<Event> {
    let ns = workflow["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let phase = workflow["status"]["phase"].as_str().unwrap_or("Pending");
    let mut out = Vec::new();
    for source in sources {
        for (name, resource) in source["spec"]["resource"].as_object().into_iter().flatten() {
            let watches = resource["group"] == "argoproj.io"
                && resource["resource"] == "workflows"
                && resource["namespace"]
                    .as_str()
                    .is_none_or(|n| n.is_empty() || n == ns);
            let typed = resource["eventTypes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t == event_type);
            if watches && typed && filter::resource_passes(&resource["filter"], workflow) {
                out.push(Event {
                    source: name_of(source).into(),
                    name: name.clone(),
                    kind: "resource".into(),
                    id: format!("{uid}/{event_type}/{phase}"),
                    time: time.into(),
                    data: json!({"type": event_type, "body": workflow, "group": "argoproj.io",
                                 "version": "v1alpha1", "resource": "workflows"}),
                });
            }
        }
    }
    out
}

/// A webhook EventSource's event data: the request's headers (each a list of values) and
/// its body, which must be JSON (Argo Events keeps it as raw JSON and refuses other bodies).
pub fn webhook_data(headers: &[(String, String)], body: &[u8]) -> Result<Value, SensorError> {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|e| SensorError::WebhookBody(e.to_string()))?
    };
    let mut header: Map<String, Value> = Map::new();
    for (k, v) in headers {
        let list = header
            .entry(canonical_header(k))
            .or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.push(json!(v));
        }
    }
    Ok(json!({"header": header, "body": body}))
}

/// Go's canonical MIME header key (`x-request-id` → `X-Request-Id`), as Argo Events' data has.
fn canonical_header(k: &str) -> String {
    k.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// A calendar EventSource's event data for a tick (`eventTime` in Go's time format).
pub fn calendar_data(event_time: &str, calendar: &Value) -> Value {
    let mut data = json!({"eventTime": event_time});
    for key in ["userPayload", "metadata"] {
        if let Some(v) = calendar.get(key) {
            data[key] = v.clone();
        }
    }
    data
}

/// Feed one event to a sensor: the calls of every trigger whose conditions now hold, and
/// what could not be done (said in the server's log; the rest of the sensor still runs).
pub fn on_event(
    namespace: &str,
    sensor: &Value,
    held: &mut Held,
    event: &Event,
) -> (Vec<Fired>, Vec<SensorError>) {
    let sname = name_of(sensor).to_string();
    let mut fired = Vec::new();
    let mut problems = Vec::new();
    let deps: Vec<&Value> = sensor["spec"]["dependencies"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut satisfied = Vec::new();
    for dep in &deps {
        let dname = dep["name"].as_str().unwrap_or_default();
        if dep["eventSourceName"] != event.source.as_str()
            || dep["eventName"] != event.name.as_str()
        {
            continue;
        }
        match filter::passes(
            dep.get("filters"),
            dep["filtersLogicalOperator"].as_str(),
            event,
        ) {
            Ok(true) => satisfied.push(dname.to_string()),
            Ok(false) => {}
            Err(what) => problems.push(SensorError::Dependency {
                sensor: sname.clone(),
                dependency: dname.into(),
                what,
            }),
        }
    }
    if satisfied.is_empty() {
        return (fired, problems);
    }
    let all_deps: Vec<String> = deps
        .iter()
        .filter_map(|d| d["name"].as_str().map(str::to_string))
        .collect();
    for trigger in sensor["spec"]["triggers"].as_array().into_iter().flatten() {
        let template = &trigger["template"];
        let tname = template["name"].as_str().unwrap_or("?").to_string();
        let problem = |what: String| SensorError::Trigger {
            sensor: sname.clone(),
            trigger: tname.clone(),
            what,
        };
        let condition = match template["conditions"]
            .as_str()
            .filter(|c| !c.trim().is_empty())
        {
            Some(text) => match Condition::parse(text) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(problem(format!("conditions {text:?}: {e}")));
                    continue;
                }
            },
            None => Condition::all(&all_deps),
        };
        let wanted = condition.names();
        let relevant: Vec<&String> = satisfied.iter().filter(|d| wanted.contains(*d)).collect();
        if relevant.is_empty() {
            continue;
        }
        let seen = held.0.entry(tname.clone()).or_default();
        for d in relevant {
            seen.insert(d.clone(), event.clone());
        }
        if !condition.holds(&|d| seen.contains_key(d)) {
            continue;
        }
        // Firing consumes what the trigger held.
        let events = std::mem::take(seen);
        let ids: Vec<&str> = events.values().map(|e| e.id.as_str()).collect();
        let key = format!("sensor/{namespace}/{sname}/{tname}/{}", ids.join("+"));
        match params::call(namespace, trigger, &events) {
            Ok(call) => fired.push(Fired { key, call }),
            Err(what) => problems.push(problem(what)),
        }
    }
    held.0.retain(|_, m| !m.is_empty());
    (fired, problems)
}

/// One event of a webhook EventSource, as its listener serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRoute {
    /// The event's name (its key under `spec.webhook`).
    pub event: String,
    pub port: u16,
    /// The request's path, matched exactly.
    pub endpoint: String,
    /// The request's method, upper case (`POST` unless set).
    pub method: String,
    /// `authSecret`: the secret (name, key) whose value requests must carry as a bearer token.
    pub auth_secret: Option<(String, String)>,
}

/// Characters an endpoint may hold besides letters and digits: a URL path's, without `%`
/// (the path is matched as the request sends it, not decoded).
const ENDPOINT_CHARS: &str = "-._~!$&'()*+,;=:@/";

/// A webhook EventSource's events (`spec.webhook`), in their names' order, and the problems
/// of those that cannot be served.
pub fn webhook_routes(source: &Value) -> (Vec<WebhookRoute>, Vec<String>) {
    let mut routes: Vec<WebhookRoute> = Vec::new();
    let mut out = Vec::new();
    for (name, hook) in source["spec"]["webhook"].as_object().into_iter().flatten() {
        let mut ok = true;
        let port = hook["port"]
            .as_str()
            .map(str::to_string)
            .or_else(|| hook["port"].as_u64().map(|p| p.to_string()))
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| *p > 0);
        if port.is_none() {
            out.push(format!("spec.webhook.{name}.port: expected a port number"));
            ok = false;
        }
        let endpoint = hook["endpoint"].as_str().unwrap_or_default();
        if !endpoint.starts_with('/') {
            out.push(format!(
                "spec.webhook.{name}.endpoint: expected a path starting with /"
            ));
            ok = false;
        } else if endpoint.len() > 1024
            || !endpoint
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ENDPOINT_CHARS.contains(c))
        {
            out.push(format!(
                "spec.webhook.{name}.endpoint {endpoint:?}: expected a path of at most 1024 letters, digits and {ENDPOINT_CHARS}"
            ));
            ok = false;
        }
        let method = match &hook["method"] {
            Value::Null => "POST".to_string(),
            m => m.as_str().unwrap_or_default().to_ascii_uppercase(),
        };
        if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase())
        {
            out.push(format!(
                "spec.webhook.{name}.method {}: expected an HTTP method such as POST",
                hook["method"]
            ));
            ok = false;
        }
        let auth_secret = match &hook["authSecret"] {
            Value::Null => None,
            a => {
                let field = |f: &str| a[f].as_str().filter(|v| !v.is_empty()).map(str::to_string);
                match (field("name"), field("key")) {
                    (Some(n), Some(k)) => Some((n, k)),
                    _ => {
                        out.push(format!(
                            "spec.webhook.{name}.authSecret: expected the name and key of a secret"
                        ));
                        ok = false;
                        None
                    }
                }
            }
        };
        let (Some(port), true) = (port, ok) else {
            continue;
        };
        let route = WebhookRoute {
            event: name.clone(),
            port,
            endpoint: endpoint.to_string(),
            method,
            auth_secret,
        };
        if let Some(other) = routes.iter().find(|r| r.clashes(&route)) {
            out.push(format!(
                "spec.webhook.{name}: {} {} on port {port} is spec.webhook.{}'s already",
                route.method, route.endpoint, other.event
            ));
            continue;
        }
        routes.push(route);
    }
    (routes, out)
}

impl WebhookRoute {
    /// Whether two routes would take the same requests.
    pub fn clashes(&self, other: &WebhookRoute) -> bool {
        (self.port, &self.endpoint, &self.method) == (other.port, &other.endpoint, &other.method)
    }
}

/// A stored EventSource's problems that stop it from running, in its fields' words.
pub fn check_event_source(source: &Value) -> Vec<String> {
    let (_, mut out) = webhook_routes(source);
    for (name, cal) in source["spec"]["calendar"].as_object().into_iter().flatten() {
        let schedule = cal["schedule"].as_str().unwrap_or_default();
        let interval = cal["interval"].as_str().unwrap_or_default();
        if schedule.is_empty() && interval.is_empty() {
            out.push(format!(
                "spec.calendar.{name}: calendar event must contain either a schedule or interval"
            ));
        }
    }
    out
}

/// A stored Sensor's problems, in its fields' words.
pub fn check_sensor(sensor: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut names = Vec::new();
    let deps = sensor["spec"]["dependencies"].as_array();
    if deps.is_none_or(|d| d.is_empty()) {
        out.push("spec.dependencies: at least one dependency is required".into());
    }
    for (i, dep) in deps.into_iter().flatten().enumerate() {
        for field in ["name", "eventSourceName", "eventName"] {
            if dep[field].as_str().is_none_or(str::is_empty) {
                out.push(format!("spec.dependencies[{i}].{field} is required"));
            }
        }
        if let Some(n) = dep["name"].as_str() {
            if names.contains(&n) {
                out.push(format!("spec.dependencies[{i}].name {n:?}: used twice"));
            }
            names.push(n);
        }
    }
    let triggers = sensor["spec"]["triggers"].as_array();
    if triggers.is_none_or(|t| t.is_empty()) {
        out.push("spec.triggers: at least one trigger is required".into());
    }
    for (i, t) in triggers.into_iter().flatten().enumerate() {
        if t["template"]["name"].as_str().is_none_or(str::is_empty) {
            out.push(format!("spec.triggers[{i}].template.name is required"));
        }
        if let Some(text) = t["template"]["conditions"]
            .as_str()
            .filter(|c| !c.trim().is_empty())
        {
            match Condition::parse(text) {
                Ok(c) => {
                    for n in c.names() {
                        if !names.contains(&n.as_str()) {
                            out.push(format!(
                                "spec.triggers[{i}].template.conditions: {n:?} is not a dependency"
                            ));
                        }
                    }
                }
                Err(e) => out.push(format!("spec.triggers[{i}].template.conditions: {e}")),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
