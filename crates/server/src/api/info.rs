//! `info`, `version` and `userinfo`: what Argo's UI and CLI ask first.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::AppState;

use super::common::St;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/info", get(info))
        .route("/api/v1/version", get(version))
        .route("/api/v1/userinfo", get(userinfo))
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

pub(super) async fn userinfo(State(s): St) -> Json<Value> {
    if s.token.is_some() {
        Json(json!({"subject": "token", "serviceAccountName": "onyx"}))
    } else {
        Json(json!({}))
    }
}
