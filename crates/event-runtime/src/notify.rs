//! Notifications (the spec's Triggers): configured webhooks are told when a workflow reaches
//! a phase they listen for, as Slack-compatible JSON or ONYX's generic event, signed with
//! HMAC-SHA256 when the webhook has a secret.
//!
//! Delivery is at least once across restarts: a message is committed to the store's outbox
//! (keyed by workflow uid, webhook and phase, so a workflow replayed after a crash queues
//! nothing twice) before its workflow is archived, and it stays there until the receiver
//! answers 2xx. Failed calls are retried with a doubling delay. Every call carries
//! `X-Onyx-Delivery: <key>`, the same on every retry, so a receiver can drop a repeat when an
//! answer was lost.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use store::{NewNotification, Store};
use tokio::sync::Notify;

use serde::Deserialize;
use std::path::PathBuf;

use crate::EventError;

/// `[notifications]`: webhooks and when they are called.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// ONYX's event as JSON.
    #[default]
    Generic,
    /// Slack's incoming-webhook message (`text` and an attachment).
    Slack,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    #[serde(default = "default_webhook_phases")]
    pub phases: Vec<String>,
    /// Only workflows of these namespaces (empty: all).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// A file holding the HMAC key the body is signed with.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The first retry's delay; each retry doubles it, up to `max_retry_seconds`.
    #[serde(default = "default_retry")]
    pub retry_seconds: f64,
    #[serde(default = "default_max_retry")]
    pub max_retry_seconds: f64,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_seconds: u64,
}

fn default_webhook_phases() -> Vec<String> {
    vec!["Succeeded".into(), "Failed".into(), "Error".into()]
}

fn default_retry() -> f64 {
    1.0
}

fn default_max_retry() -> f64 {
    300.0
}

fn default_webhook_timeout() -> u64 {
    10
}

struct Hook {
    cfg: WebhookConfig,
    secret: Option<Vec<u8>>,
    agent: ureq::Agent,
}

pub struct Notifier {
    hooks: Vec<Hook>,
    store: Store,
    wake: Notify,
    /// For Sensors' http triggers (`crate::event_bus`), whose calls share the outbox.
    sensor_agent: ureq::Agent,
    /// Sensors take one event at a time (`crate::event_bus::publish`).
    pub(crate) sensor_lock: tokio::sync::Mutex<()>,
    /// What EventSources and Sensors do, as their log streams tell it (Argo's
    /// EventSourceLogEntry and SensorLogEntry); only live followers see it.
    activity: tokio::sync::broadcast::Sender<Value>,
}

/// The outbox's "webhook" for Sensor trigger calls: the body is a [`sensors::Call`].
pub const SENSOR_OUTBOX: &str = "sensor";

/// What became of a call.
pub enum Outcome {
    Done,
    /// Worth trying again later (the receiver or the store was away).
    Retry(String),
    /// Never going to work (the workflow is invalid): kept in the outbox with its error.
    GiveUp(String),
}

/// Submits a Sensor trigger's workflow in a namespace (`submit::submit`, bound by the server).
pub type Submitter =
    Arc<dyn Fn(String, Value) -> futures::future::BoxFuture<'static, Outcome> + Send + Sync>;

/// What happened to a workflow, as a webhook is told.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowEvent {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub phase: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub ticket_id: Option<String>,
}

impl WorkflowEvent {
    /// Read from a workflow's JSON (its status as the engine renders it).
    pub fn of(wf: &Value, uid: &str) -> WorkflowEvent {
        let s = &wf["status"];
        let text = |v: &Value| v.as_str().map(str::to_string);
        let started = text(&s["startedAt"]);
        let finished = text(&s["finishedAt"]);
        let duration = match (&started, &finished) {
            (Some(a), Some(b)) => chrono::DateTime::parse_from_rfc3339(b)
                .ok()
                .zip(chrono::DateTime::parse_from_rfc3339(a).ok())
                .map(|(b, a)| (b - a).num_milliseconds() as f64 / 1000.0),
            _ => None,
        };
        let ticket_id = wf["spec"]["arguments"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == audit::TICKET_PARAMETER))
            .and_then(|p| p["value"].as_str().map(str::to_string));
        WorkflowEvent {
            namespace: text(&wf["metadata"]["namespace"]).unwrap_or_default(),
            name: text(&wf["metadata"]["name"]).unwrap_or_default(),
            uid: uid.to_string(),
            phase: text(&s["phase"]).unwrap_or_default(),
            message: text(&s["message"]),
            started_at: started,
            finished_at: finished,
            duration_seconds: duration,
            ticket_id,
        }
    }
}

/// The body a webhook of `format` gets for `e`.
pub fn body(format: WebhookFormat, e: &WorkflowEvent) -> Value {
    match format {
        WebhookFormat::Generic => json!({
            "kind": "workflow",
            "event": format!("workflow.{}", e.phase),
            "namespace": e.namespace,
            "name": e.name,
            "uid": e.uid,
            "phase": e.phase,
            "message": e.message,
            "startedAt": e.started_at,
            "finishedAt": e.finished_at,
            "durationSeconds": e.duration_seconds,
            "ticketId": e.ticket_id,
        }),
        WebhookFormat::Slack => {
            let (icon, color) = match e.phase.as_str() {
                "Succeeded" => (":white_check_mark:", "good"),
                "Running" => (":arrow_forward:", "#439FE0"),
                "Failed" => (":x:", "danger"),
                _ => (":warning:", "warning"),
            };
            let mut text = format!("{icon} Workflow {}/{} {}", e.namespace, e.name, e.phase);
            if let Some(d) = e.duration_seconds {
                text.push_str(&format!(" after {}", human_duration(d)));
            }
            if let Some(t) = &e.ticket_id {
                text.push_str(&format!(" (ticket {t})"));
            }
            let mut fields = vec![
                json!({"title": "Namespace", "value": e.namespace, "short": true}),
                json!({"title": "Phase", "value": e.phase, "short": true}),
            ];
            if let Some(t) = &e.ticket_id {
                fields.push(json!({"title": "Ticket", "value": t, "short": true}));
            }
            if let Some(m) = &e.message {
                fields.push(json!({"title": "Message", "value": m, "short": false}));
            }
            json!({"text": text, "attachments": [{"color": color, "fields": fields,
                   "footer": "ONYX", "fallback": text}]})
        }
    }
}

fn human_duration(s: f64) -> String {
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `sha256=<hex>` of the body under `key`: what `X-Onyx-Signature-256` carries.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any size");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The delay before retry number `attempt` (1 for the first retry).
pub fn backoff(cfg: &WebhookConfig, attempt: i64) -> Duration {
    let exp = (attempt.max(1) - 1).min(30) as i32;
    Duration::from_secs_f64((cfg.retry_seconds * 2f64.powi(exp)).min(cfg.max_retry_seconds))
}

impl Notifier {
    pub fn new(cfg: &NotificationsConfig, store: Store) -> Result<Notifier, EventError> {
        let mut hooks = Vec::new();
        for h in &cfg.webhooks {
            if hooks.iter().any(|o: &Hook| o.cfg.name == h.name) {
                return Err(EventError::Config(format!(
                    "notifications.webhooks: two webhooks are named {:?}",
                    h.name
                )));
            }
            let secret = match &h.secret_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| {
                            EventError::Config(format!(
                                "notifications.webhooks {:?}: secret_file {}: {e}",
                                h.name,
                                f.display()
                            ))
                        })?
                        .trim()
                        .as_bytes()
                        .to_vec(),
                ),
                None => None,
            };
            hooks.push(Hook {
                cfg: h.clone(),
                secret,
                agent: ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(h.timeout_seconds))
                    .build(),
            });
        }
        Ok(Notifier {
            hooks,
            store,
            wake: Notify::new(),
            sensor_agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
            sensor_lock: tokio::sync::Mutex::new(()),
            activity: tokio::sync::broadcast::channel(256).0,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Tell the log streams: `entry` is an EventSourceLogEntry or SensorLogEntry without its
    /// time and level.
    pub fn say(&self, level: &str, mut entry: Value) {
        entry["level"] = json!(level);
        entry["time"] =
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let _ = self.activity.send(entry);
    }

    pub fn activity(&self) -> tokio::sync::broadcast::Receiver<Value> {
        self.activity.subscribe()
    }

    /// A sensor call's outcome, in its sensor's log stream (the key names namespace, sensor
    /// and trigger).
    fn say_delivered(&self, key: &str, error: Option<&str>) {
        let mut parts = key.splitn(5, '/').skip(1);
        let (ns, sensor, trigger) = (parts.next(), parts.next(), parts.next());
        let (level, msg) = match error {
            None => ("info", "successfully processed the trigger".to_string()),
            Some(e) => ("error", format!("failed to execute the trigger: {e}")),
        };
        self.say(
            level,
            json!({"namespace": ns, "sensorName": sensor, "triggerName": trigger, "msg": msg}),
        );
    }

    /// Queue the calls of firing Sensor triggers, each under its key: a key already in the
    /// outbox (the same firing, replayed after a restart) queues nothing.
    pub async fn enqueue_calls(
        &self,
        calls: Vec<(String, sensors::Call)>,
    ) -> Result<(), store::StoreError> {
        if calls.is_empty() {
            return Ok(());
        }
        let created_ns = store::now_ns();
        let rows = calls
            .into_iter()
            .map(|(key, call)| NewNotification {
                key,
                webhook: SENSOR_OUTBOX.into(),
                body: serde_json::to_string(&call).unwrap_or_default(),
                created_ns,
            })
            .collect();
        self.store.notify(rows).await?;
        self.wake.notify_one();
        Ok(())
    }

    /// The messages a workflow reaching its phase gives, one per webhook that listens.
    pub fn messages(&self, e: &WorkflowEvent) -> Vec<NewNotification> {
        let created_ns = store::now_ns();
        self.hooks
            .iter()
            .filter(|h| h.cfg.phases.contains(&e.phase))
            .filter(|h| h.cfg.namespaces.is_empty() || h.cfg.namespaces.contains(&e.namespace))
            .map(|h| NewNotification {
                key: format!("{}/{}/{}", e.uid, h.cfg.name, e.phase),
                webhook: h.cfg.name.clone(),
                body: body(h.cfg.format, e).to_string(),
                created_ns,
            })
            .collect()
    }

    /// Commit the messages for `e` to the outbox (before the workflow is archived).
    pub async fn enqueue(&self, e: &WorkflowEvent) -> Result<(), store::StoreError> {
        let rows = self.messages(e);
        if rows.is_empty() {
            return Ok(());
        }
        self.store.notify(rows).await?;
        self.wake.notify_one();
        Ok(())
    }
}

/// Deliver what the outbox holds, forever: due messages oldest first, each call in a
/// blocking task, the outcome committed before the next look.
pub async fn run(n: Arc<Notifier>, submitter: Submitter) {
    loop {
        let due = match n.store.due_notifications(store::now_ns(), 64).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("notifications: reading the outbox: {e}");
                Vec::new()
            }
        };
        for m in &due {
            if m.webhook == SENSOR_OUTBOX {
                let outcome = sensor_call(&n, &submitter, &m.body, &m.key).await;
                let error = match &outcome {
                    Outcome::Done => None,
                    Outcome::Retry(e) | Outcome::GiveUp(e) => Some(e.as_str()),
                };
                n.say_delivered(&m.key, error);
                let write = match outcome {
                    Outcome::Done => n.store.notification_sent(m.id, store::now_ns()).await,
                    Outcome::Retry(error) => {
                        let delay = Duration::from_secs(1 << m.attempts.clamp(0, 8));
                        tracing::warn!("sensor call {}: {error}; retrying in {delay:?}", m.key);
                        let next = store::now_ns() + delay.as_nanos() as i64;
                        n.store.notification_failed(m.id, next, error).await
                    }
                    Outcome::GiveUp(error) => {
                        tracing::error!("sensor call {}: {error}; not retried", m.key);
                        n.store.notification_failed(m.id, i64::MAX, error).await
                    }
                };
                if let Err(e) = write {
                    tracing::error!("notifications: recording a delivery: {e}");
                }
                continue;
            }
            let Some(hook) = n.hooks.iter().position(|h| h.cfg.name == m.webhook) else {
                // A webhook removed from the config: its messages wait for it to come back.
                continue;
            };
            let n2 = n.clone();
            let body = m.body.clone();
            let key = m.key.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let h = &n2.hooks[hook];
                let mut req = h
                    .agent
                    .post(&h.cfg.url)
                    .set("Content-Type", "application/json")
                    .set("User-Agent", "onyx-notifications")
                    .set("X-Onyx-Delivery", &key);
                if let Some(event) = key.rsplit('/').next() {
                    req = req.set("X-Onyx-Event", &format!("workflow.{event}"));
                }
                if let Some(secret) = &h.secret {
                    req = req.set("X-Onyx-Signature-256", &signature(secret, body.as_bytes()));
                }
                match req.send_string(&body) {
                    Ok(_) => Ok(()),
                    Err(ureq::Error::Status(code, r)) => Err(format!(
                        "HTTP {code}: {}",
                        r.into_string().unwrap_or_default().trim()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            let write = match outcome {
                Ok(()) => n.store.notification_sent(m.id, store::now_ns()).await,
                Err(error) => {
                    let delay = backoff(&n.hooks[hook].cfg, m.attempts + 1);
                    tracing::warn!(
                        "notification {} to {}: {error}; retrying in {:.1} s",
                        m.key,
                        m.webhook,
                        delay.as_secs_f64()
                    );
                    let next = store::now_ns() + delay.as_nanos() as i64;
                    n.store.notification_failed(m.id, next, error).await
                }
            };
            if let Err(e) = write {
                tracing::error!("notifications: recording a delivery: {e}");
            }
        }
        if due.len() < 64 {
            // Woken by a new message, or looking again for retries that came due.
            let _ = tokio::time::timeout(Duration::from_millis(250), n.wake.notified()).await;
        }
    }
}

/// One Sensor trigger call from the outbox.
async fn sensor_call(n: &Arc<Notifier>, submitter: &Submitter, body: &str, key: &str) -> Outcome {
    let call: sensors::Call = match serde_json::from_str(body) {
        Ok(c) => c,
        Err(e) => return Outcome::GiveUp(format!("unreadable call: {e}")),
    };
    match call {
        sensors::Call::Http {
            url,
            method,
            headers,
            body,
        } => {
            let (n, key) = (n.clone(), key.to_string());
            tokio::task::spawn_blocking(move || {
                let mut req = n
                    .sensor_agent
                    .request(&method, &url)
                    .set("Content-Type", "application/json")
                    .set("X-Onyx-Delivery", &key);
                for (k, v) in &headers {
                    if let Some(v) = v.as_str() {
                        req = req.set(k, v);
                    }
                }
                match req.send_string(&body.to_string()) {
                    Ok(_) => Outcome::Done,
                    Err(ureq::Error::Status(code, r)) => Outcome::Retry(format!(
                        "HTTP {code}: {}",
                        r.into_string().unwrap_or_default().trim()
                    )),
                    Err(e) => Outcome::Retry(e.to_string()),
                }
            })
            .await
            .unwrap_or_else(|e| Outcome::Retry(e.to_string()))
        }
        sensors::Call::Submit {
            namespace,
            mut workflow,
        } => {
            name_for_once(&mut workflow, key);
            submitter(namespace, workflow).await
        }
        sensors::Call::Log { message } => {
            tracing::info!("sensor log trigger {key}: {message}");
            Outcome::Done
        }
    }
}

/// A `generateName` workflow gets a name derived from the call's key, so that a submission
/// retried after a crash finds the first one there (AlreadyExists) instead of making two.
fn name_for_once(workflow: &mut Value, key: &str) {
    let named = workflow["metadata"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let Some(prefix) = workflow["metadata"]["generateName"]
        .as_str()
        .map(str::to_string)
    else {
        return;
    };
    if named {
        return;
    }
    // Kubernetes' random-suffix alphabet, drawn from the key's hash instead of chance.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let digest = Sha256::digest(key.as_bytes());
    let suffix: String = digest[..8]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    let prefix: String = prefix.chars().take(63 - suffix.len()).collect();
    workflow["metadata"]["name"] = json!(prefix + &suffix);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(phase: &str) -> WorkflowEvent {
        WorkflowEvent::of(
            &json!({"metadata": {"namespace": "nlp", "name": "train-1"},
                    "spec": {"arguments": {"parameters": [{"name": "ticket_id", "value": "T-42"}]}},
                    "status": {"phase": phase, "message": "child 'x' failed",
                               "startedAt": "2026-12-01T10:00:00Z", "finishedAt": "2026-12-01T10:02:05Z"}}),
            "uid-1",
        )
    }

    #[test]
    fn slack_and_generic_bodies_carry_the_workflow_and_its_ticket() {
        let e = event("Failed");
        assert_eq!(e.duration_seconds, Some(125.0));
        let slack = body(WebhookFormat::Slack, &e);
        assert_eq!(
            slack["text"],
            ":x: Workflow nlp/train-1 Failed after 2m05s (ticket T-42)"
        );
        assert_eq!(slack["attachments"][0]["color"], "danger");
        let generic = body(WebhookFormat::Generic, &e);
        assert_eq!(generic["event"], "workflow.Failed");
        assert_eq!(generic["ticketId"], "T-42");
        assert_eq!(generic["uid"], "uid-1");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_generated_name_comes_from_the_calls_key() {
        let wf = || json!({"metadata": {"generateName": "webhook-"}});
        let (mut a, mut again, mut b) = (wf(), wf(), wf());
        name_for_once(&mut a, "sensor/ns/s/t/e1");
        name_for_once(&mut again, "sensor/ns/s/t/e1");
        name_for_once(&mut b, "sensor/ns/s/t/e2");
        let name = a["metadata"]["name"].as_str().unwrap();
        assert!(
            name.starts_with("webhook-") && name.len() == "webhook-".len() + 8,
            "{name}"
        );
        assert_eq!(a, again);
        assert_ne!(a, b);
        let mut named = json!({"metadata": {"name": "fixed", "generateName": "x-"}});
        name_for_once(&mut named, "k");
        assert_eq!(named["metadata"]["name"], "fixed");
        let mut long = json!({"metadata": {"generateName": "a".repeat(70)}});
        name_for_once(&mut long, "k");
        assert_eq!(long["metadata"]["name"].as_str().unwrap().len(), 63);
    }

    #[test]
    fn retries_double_up_to_the_cap() {
        let cfg: WebhookConfig = toml::from_str(
            "name = \"x\"\nurl = \"http://127.0.0.1:1\"\nretry_seconds = 2.0\nmax_retry_seconds = 10.0\n",
        )
        .unwrap();
        let delays: Vec<u64> = (1..=5).map(|a| backoff(&cfg, a).as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 10, 10]);
    }
}
