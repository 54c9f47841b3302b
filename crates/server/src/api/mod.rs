//! Argo Server's REST API (v3.5.6 paths and JSON bodies) over the controller and the store.
//! One module a resource, each offering its routes; this one joins them behind the
//! authentication and body-size layers. Handlers validate and translate; what a request does
//! to a workflow is the controller's (`workflow_runtime::Controller`) and the submission pipeline's
//! (`control_plane::submit`), so that the API, cron and any later trigger accept workflows the same way.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use control_plane::error::ApiError;
use control_plane::state::AppState;

mod archive;
mod argo_events;
mod artifacts;
mod audit;
mod cluster;
mod common;
mod events;
mod info;
mod logs;
mod metrics;
mod objects;
mod requests;
mod usage;
mod workflows;

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
        .merge(requests::routes())
        .merge(artifacts::routes())
        .merge(events::routes())
        .merge(argo_events::routes())
        // Authorization after routing, on the routes only: a path no route serves is a 404
        // (for the signed-in), and what each route needs is decided on the path as its
        // extractors decode it (`access::need`, closed for a route it does not name).
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .fallback(not_found)
        // Authentication before routing, everywhere: 401 for any path without credentials.
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
        .merge(sso_routes())
        .merge(api)
        .with_state(state)
}

/// Argo's single sign-on paths: outside authentication, as the browser has no token yet.
fn sso_routes() -> Router<Arc<AppState>> {
    use axum::extract::Query;
    use axum::routing::get;
    use std::collections::HashMap;
    Router::new()
        .route(
            "/oauth2/redirect",
            get(
                |State(s): St, Query(q): Query<HashMap<String, String>>| async move {
                    let back = q.get("redirect").map_or("/", String::as_str);
                    match s.auth.sign_in(back) {
                        // The state cookie binds the sign-in to this browser (login CSRF).
                        Ok((url, cookie)) => (
                            [(header::SET_COOKIE, cookie)],
                            axum::response::Redirect::to(&url),
                        )
                            .into_response(),
                        Err(e) => e.into_response(),
                    }
                },
            ),
        )
        .route(
            "/oauth2/callback",
            get(
                |State(s): St,
                 headers: axum::http::HeaderMap,
                 Query(q): Query<HashMap<String, String>>| async move {
                    if let Some(e) = q.get("error") {
                        return ApiError::Unauthenticated(format!(
                            "sign-in refused by the issuer: {e}: {}",
                            q.get("error_description").map_or("", String::as_str)
                        ))
                        .into_response();
                    }
                    let (Some(code), Some(state)) = (q.get("code"), q.get("state")) else {
                        return ApiError::InvalidArgument(
                            "sign-in callback: code and state are required".into(),
                        )
                        .into_response();
                    };
                    match s.auth.callback(code, state, &headers).await {
                        Ok((cookies, back)) => (
                            axum::response::AppendHeaders(
                                cookies.into_iter().map(|c| (header::SET_COOKIE, c)),
                            ),
                            axum::response::Redirect::to(&back),
                        )
                            .into_response(),
                        Err(e) => e.into_response(),
                    }
                },
            ),
        )
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no API at {} {}", req.method(), req.uri().path()))
}

/// The namespace of a workflow by uid: in the archive, or (`live`) first among live ones.
async fn namespace_of(s: &AppState, uid: &str, live: bool) -> Option<String> {
    if live {
        if let Ok(Some(r)) = s.ctl.store.workflow_by_uid(uid).await {
            return Some(r.namespace);
        }
    }
    s.ctl
        .store
        .archived(uid)
        .await
        .ok()
        .flatten()
        .map(|r| r.namespace)
}

/// Who calls: every API path needs a principal (or answers 401), before routing.
async fn authenticate(State(s): St, mut req: Request, next: Next) -> Response {
    let principal = match s.auth.principal(req.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let name = principal.name.clone();
    req.extensions_mut().insert(Arc::new(principal));
    let mut resp = next.run(req).await;
    resp.extensions_mut().insert(common::CallerName(name));
    resp
}

/// What the routed call needs, and whether its caller has it: after routing (a route layer),
/// on the path decoded as the route's extractors decode it.
async fn authorize(State(s): St, req: Request, next: Next) -> Response {
    let Some(principal) = req.extensions().get::<Arc<access::Principal>>().cloned() else {
        // Unreachable behind `authenticate`; refused rather than assumed.
        return ApiError::Unauthenticated("no principal".into()).into_response();
    };
    let Some(path) = access::decoded_path(req.uri().path()) else {
        return ApiError::InvalidArgument(format!(
            "{}: a path segment is '.', '..' or holds an encoded '/' or NUL",
            req.uri().path()
        ))
        .into_response();
    };
    let need = access::need(req.method().as_str(), &path, req.uri().query());
    if let access::Scope::Namespace(ns) = &need.scope {
        if !access::is_namespace(ns) {
            return ApiError::InvalidArgument(format!(
                "namespace {ns:?} is not a namespace name (a DNS-1123 label: lower-case letters, digits and '-', at most 63)"
            ))
            .into_response();
        }
    }
    let archived_in = match &need.scope {
        access::Scope::ArchivedUid(uid) if !principal.admin => namespace_of(&s, uid, false).await,
        access::Scope::WorkflowUid(uid) if !principal.admin => namespace_of(&s, uid, true).await,
        _ => None,
    };
    if !principal.admin {
        s.auth.refresh_grants(&s.ctl.store, false).await;
    }
    if let Err(denied) = s
        .auth
        .rules()
        .check(&principal, &need, archived_in.as_deref())
    {
        return ApiError::Forbidden(denied.message).into_response();
    }
    next.run(req).await
}
