//! `info`, `version` and `userinfo`: what Argo's UI and CLI ask first.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use control_plane::state::AppState;

use super::common::St;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/info", get(info))
        .route("/api/v1/version", get(version))
        .route("/api/v1/userinfo", get(userinfo))
        // Argo's server without tracking configured accepts the UI's events and drops them.
        .route(
            "/api/v1/tracking/event",
            axum::routing::post(|| async { Json(json!({})) }),
        )
}

pub(super) async fn info() -> Json<Value> {
    Json(json!({"managedNamespace": "", "links": [], "modals": {}, "navColor": "", "columns": []}))
}

pub(super) async fn version() -> Json<Value> {
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

/// Argo's `GetUserInfoResponse`: who the token says the caller is.
pub(super) async fn userinfo(State(s): St, caller: super::common::Caller) -> Json<Value> {
    match (&caller, s.auth.mode) {
        (
            Some(p),
            control_plane::config::AuthMode::Client | control_plane::config::AuthMode::Sso,
        ) if !p.0.name.starts_with("token:") => Json(json!({
            "issuer": s.cfg.auth.issuer,
            "subject": p.0.name,
            "email": p.0.name.contains('@').then_some(&p.0.name),
            "groups": p.0.groups,
        })),
        _ if s.token.is_some() => Json(json!({"subject": "token", "serviceAccountName": "onyx"})),
        _ => Json(json!({})),
    }
}
