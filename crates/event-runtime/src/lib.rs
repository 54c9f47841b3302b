//! The event runtime: Argo Events as ONYX runs them, and the outbox every outgoing call goes
//! through.
//!
//! - `event_bus`: EventSources (webhook listeners on the allowed ports, calendar timers,
//!   workflows' starts and ends) feed the namespace's Sensors (the pure `sensors` crate); what
//!   fires is queued in the outbox. It is the workflow runtime's `PhaseListener` (`Announcer`).
//! - `events`: Argo's event API — a webhook payload's expression environment and what a
//!   WorkflowEventBinding submits for it.
//! - `notify`: the outbox: webhooks (generic JSON or Slack, HMAC-signed) and Sensor trigger
//!   calls, each committed before it is sent, delivered with retries, once across restarts.

#![forbid(unsafe_code)]

pub mod event_bus;
pub mod events;
pub mod notify;

pub use event_bus::{Announcer, EventSourcesConfig, PortRange, Settings};
pub use notify::{NotificationsConfig, Notifier, WebhookConfig, WebhookFormat};

/// The event runtime's errors.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A setting it was given is wrong (a webhook's URL, secret file or phase).
    #[error("{0}")]
    Config(String),
}
