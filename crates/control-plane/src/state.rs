//! What every request handler and background task of the server shares. Below `api` and
//! `cron`, so that both can hold it without knowing each other.

use std::sync::Arc;

use crate::config::ServerConfig;
use crate::maintenance_runner::Maintenance;
use workflow_runtime::Controller;

pub struct AppState {
    pub audit: audit::AuditLog,
    pub ctl: Arc<Controller>,
    pub maint: Arc<Maintenance>,
    pub cfg: Arc<ServerConfig>,
    pub token: Option<String>,
    /// Who is calling and what they may do.
    pub auth: Arc<crate::auth::Auth>,
    /// The webhooks' and Sensors' outbox.
    pub notifier: Arc<event_runtime::notify::Notifier>,
}
