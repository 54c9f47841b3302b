//! Argo Server's REST API (v3.5.6 paths and JSON bodies) over the controller and the store.
//! One module a resource, each offering its routes; this one joins them behind the
//! authentication and body-size layers. Handlers validate and translate; what a request does
//! to a workflow is the controller's (`crate::controller`) and the submission pipeline's
//! (`crate::submit`), so that the API, cron and any later trigger accept workflows the same way.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

mod archive;
mod audit;
mod cluster;
mod common;
mod info;
mod logs;
mod metrics;
mod objects;
mod usage;
mod workflows;

pub use common::JsonBody;
use common::St;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.cfg.max_body_bytes;
    let api = Router::new()
        .merge(info::routes())
        .merge(workflows::routes())
        .merge(logs::routes())
        .merge(objects::routes())
        .merge(cluster::routes())
        .merge(archive::routes())
        .merge(usage::routes())
        .merge(metrics::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // Outside authentication, so that refused attempts are audited too.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            audit::audit_changes,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(limit));
    // The UI's files hold no data (the pages ask the API, with the user's token), so they are
    // served outside the authentication layer: a browser cannot send a bearer token when it
    // opens a page.
    Router::new()
        .merge(web_ui::routes())
        .merge(api)
        .with_state(state)
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no API at {} {}", req.method(), req.uri().path()))
}

async fn authenticate(State(s): St, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return ApiError::Unauthenticated(
                "token not valid: send `Authorization: Bearer <token>` with the server's token"
                    .into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}
