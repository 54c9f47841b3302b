//! Hot standby: several `onyx server`s on one PostgreSQL, one of them leading.
//!
//! The leader holds the `controller` lease (a row with a fencing token, renewed four times a
//! lease) and runs the controllers, cron, maintenance, notifications and the usage ledger. The
//! others follow: they answer reads from the store themselves and forward everything else —
//! writes, watches, log streams — to the leader's advertised address. When the leader stops
//! renewing, the first follower to find the lease expired takes it with the next token, fences
//! its store by it, and resumes every workflow from the log exactly as a restarted server
//! does: pods keep running and are adopted, none is started twice.
//!
//! A leader that cannot renew for most of a lease, or finds the lease taken, exits at once
//! (crash-only: its supervisor starts it again as a follower). Even before it notices, every
//! commit it makes checks its token and writes nothing once the lease has moved on.

use std::future::Future;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceExt;

use control_plane::error::ApiError;

/// The lease the controllers run under.
pub const LEASE: &str = "controller";
/// Set on a request a follower forwards: a second follower does not forward it again.
const FORWARDED: &str = "x-onyx-forwarded-by";

enum Role {
    Following {
        local: Router,
        leader: Option<String>,
    },
    Leading(Router),
}

/// What this server is now, and the routers for each role.
pub struct Roles {
    role: RwLock<Role>,
    me: String,
}

impl Roles {
    /// A follower answering reads with `local`, not knowing the leader yet.
    pub fn following(local: Router, me: String) -> Arc<Roles> {
        Arc::new(Roles {
            role: RwLock::new(Role::Following {
                local,
                leader: None,
            }),
            me,
        })
    }

    fn follow(&self, leader: String) {
        if let Role::Following { leader: l, .. } = &mut *self.role.write().expect("role") {
            *l = Some(leader);
        }
    }

    fn lead(&self, router: Router) {
        *self.role.write().expect("role") = Role::Leading(router);
    }
}

/// The server's router in hot-standby mode: the role decides who answers.
pub fn router(roles: Arc<Roles>) -> Router {
    Router::new().fallback(dispatch).with_state(roles)
}

/// Requests a follower answers from its own store: reads that do not follow a workflow live.
fn served_by_follower(req: &Request) -> bool {
    let path = req.uri().path();
    matches!(*req.method(), Method::GET | Method::HEAD)
        && !path.contains("/stream/")
        && !path.contains("-events/")
        && !path.ends_with("/log")
        && !req.uri().query().is_some_and(|q| q.contains("watch"))
}

async fn dispatch(State(roles): State<Arc<Roles>>, req: Request) -> Response {
    let (router, leader) = match &*roles.role.read().expect("role") {
        Role::Leading(r) => (Some(r.clone()), None),
        Role::Following { local, leader } => {
            if served_by_follower(&req) {
                (Some(local.clone()), None)
            } else {
                (None, leader.clone())
            }
        }
    };
    if let Some(router) = router {
        return match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
    }
    let Some(leader) = leader else {
        return ApiError::Unavailable(
            "this server is a standby and no leader holds the lease yet: retry in a moment".into(),
        )
        .into_response();
    };
    if req.headers().contains_key(FORWARDED) {
        return ApiError::Unavailable(format!(
            "forwarded to {} by another server, which is not the leader either (the lease is changing hands): retry in a moment",
            roles.me
        ))
        .into_response();
    }
    forward(&leader, &roles.me, req).await
}

fn client() -> &'static Client<HttpConnector, Body> {
    static CLIENT: OnceLock<Client<HttpConnector, Body>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

async fn forward(leader: &str, me: &str, mut req: Request) -> Response {
    let target = format!(
        "{}{}",
        leader.trim_end_matches('/'),
        req.uri().path_and_query().map_or("/", |p| p.as_str())
    );
    let uri: Uri = match target.parse() {
        Ok(u) => u,
        Err(e) => {
            return ApiError::Internal(format!("the leader's address {leader:?}: {e}"))
                .into_response()
        }
    };
    *req.uri_mut() = uri;
    req.headers_mut().remove(header::HOST);
    if let Ok(v) = me.parse() {
        req.headers_mut().insert(FORWARDED, v);
    }
    match client().request(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => ApiError::Unavailable(format!(
            "forwarding to the leader at {leader}: {e} (it may be failing over: retry in a moment)"
        ))
        .into_response(),
    }
}

/// Follow until the lease is free, then take it, fence the store by its token, keep it
/// renewed, and run `promote` (which starts the controllers and returns the leader's router).
///
/// `settled` is told once this server knows its role (it leads, or it knows who does), so
/// that the server says it is ready only when it can route a request.
#[allow(clippy::too_many_arguments)]
pub async fn elect<F, Fut, E>(
    roles: Arc<Roles>,
    store: store::Store,
    holder: String,
    address: String,
    lease: Duration,
    settled: tokio::sync::oneshot::Sender<()>,
    promote: F,
) where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Router, E>>,
    E: std::fmt::Display,
{
    let ttl = lease.as_nanos() as i64;
    let tick = lease / 4;
    let mut settled = Some(settled);
    let token = loop {
        let now = store::now_ns();
        match store
            .acquire_lease(LEASE, &holder, &address, now, now + ttl)
            .await
        {
            Ok(Some(token)) => break token,
            Ok(None) => {
                if let Ok(Some(l)) = store.lease(LEASE).await {
                    roles.follow(l.address);
                    if let Some(s) = settled.take() {
                        let _ = s.send(());
                    }
                }
            }
            Err(e) => tracing::warn!("taking the lease: {e}"),
        }
        tokio::time::sleep(tick).await;
    };
    let since = Instant::now();
    store.fence(LEASE, token);
    tracing::info!("leading: took the {LEASE} lease with fencing token {token}");
    tokio::spawn(keep(store, holder, token, lease));
    match promote().await {
        Ok(router) => {
            roles.lead(router);
            if let Some(s) = settled.take() {
                let _ = s.send(());
            }
            tracing::info!(
                "leading: resumed the workflows in {} ms after taking the lease",
                since.elapsed().as_millis()
            );
        }
        Err(e) => {
            tracing::error!("taking over as leader: {e}");
            std::process::exit(1);
        }
    }
}

/// Renew the lease four times a lease; step down (exit) when it is lost, or when most of a
/// lease has gone by without a renewal — a follower may be about to take it.
async fn keep(store: store::Store, holder: String, token: i64, lease: Duration) {
    let ttl = lease.as_nanos() as i64;
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(lease / 4).await;
        let attempt = Instant::now();
        let now = store::now_ns();
        match tokio::time::timeout(
            lease / 2,
            store.renew_lease(LEASE, &holder, token, now + ttl),
        )
        .await
        {
            Ok(Ok(true)) => renewed = attempt,
            Ok(Ok(false)) => {
                tracing::error!(
                    "stepping down: another server took the {LEASE} lease from token {token}"
                );
                std::process::exit(75);
            }
            Ok(Err(e)) => tracing::warn!("renewing the lease: {e}"),
            Err(_) => tracing::warn!("renewing the lease: no answer in {:?}", lease / 2),
        }
        if renewed.elapsed() >= lease * 3 / 4 {
            tracing::error!(
                "stepping down: the {LEASE} lease went unrenewed for {:?}",
                renewed.elapsed()
            );
            std::process::exit(75);
        }
    }
}
