//! The API half of the audit trail: every call that changes something — any method but
//! GET/HEAD/OPTIONS, except `lint`, which only reads — is recorded with who made it, what it
//! did to which object in which namespace, the `ticket_id` it was made under (from the body,
//! or from the workflow it acts on) and the answer's status. Refused calls (401, 403, 4xx)
//! are recorded like the others.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::common::St;
use control_plane::error::ApiError;

pub(super) async fn audit_changes(State(s): St, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let who = identity(s.token.as_deref(), req.headers());
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) || path.ends_with("/lint") {
        // Reads are not audited, but refusals are: who tried to see what they may not.
        let resp = next.run(req).await;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            let who = caller(&resp).unwrap_or(who);
            record_full(&s, &who, &method, &path, target(&path), None, status);
        }
        return resp;
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, s.cfg.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            // What the body extractor would have said, had the body reached it.
            let text = e.to_string();
            let err = if text.contains("length limit") {
                ApiError::TooLarge(format!(
                    "request body too large: {text} (the server takes at most {} bytes)",
                    s.cfg.max_body_bytes
                ))
            } else {
                ApiError::InvalidArgument(format!("reading the request body: {text}"))
            };
            let resp = err.into_response();
            record(&s, &who, &method, &path, None, None, resp.status().as_u16());
            return resp;
        }
    };
    let body: Option<Value> = serde_json::from_slice(&bytes).ok();
    let (namespace, mut name) = target(&path);
    if name.is_none() {
        name = body.as_ref().and_then(created_name);
    }
    let mut ticket = body.as_ref().and_then(|b| ticket_in(b, 0));
    if ticket.is_none() && path.starts_with("/api/v1/workflows/") {
        if let (Some(ns), Some(n)) = (&namespace, &name) {
            if let Ok(Some(row)) = s.ctl.store.workflow(ns, n).await {
                ticket = serde_json::from_str::<Value>(&row.manifest)
                    .ok()
                    .and_then(|m| ticket_in(&m["spec"], 0));
            }
        }
    }
    let mut resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = resp.status().as_u16();
    // A create from `generateName` is named by the server: read the name from the answer
    // (the created object, small; never a stream).
    if name.is_none() && action(&method, &path) == "create" && resp.status().is_success() {
        let (parts, body) = resp.into_parts();
        let answer = to_bytes(body, usize::MAX).await.unwrap_or_default();
        name = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v["metadata"]["name"].as_str().map(str::to_string));
        resp = Response::from_parts(parts, Body::from(answer));
    }
    let target = (namespace, name);
    let who = caller(&resp).unwrap_or(who);
    record_full(&s, &who, &method, &path, target, ticket, status);
    resp
}

/// The caller authentication found (a signed-in user's name), when it found one.
fn caller(resp: &Response) -> Option<String> {
    resp.extensions()
        .get::<super::common::CallerName>()
        .map(|c| c.0.clone())
}

#[allow(clippy::too_many_arguments)]
fn record(
    s: &control_plane::state::AppState,
    who: &str,
    method: &Method,
    path: &str,
    name: Option<String>,
    ticket: Option<String>,
    status: u16,
) {
    let (namespace, n) = target(path);
    record_full(
        s,
        who,
        method,
        path,
        (namespace, n.or(name)),
        ticket,
        status,
    );
}

fn record_full(
    s: &control_plane::state::AppState,
    who: &str,
    method: &Method,
    path: &str,
    (namespace, name): (Option<String>, Option<String>),
    ticket: Option<String>,
    status: u16,
) {
    let result = match status {
        200..=299 => "ok",
        401 | 403 => "denied",
        _ => "error",
    };
    s.audit.record(audit::Record::new(
        "api",
        chrono::Utc::now(),
        json!({"who": who, "verb": method.as_str(), "path": path, "action": action(method, path),
               "namespace": namespace, "name": name, "ticketId": ticket,
               "status": status, "result": result}),
    ));
}

/// Who made the call: the bearer token's holder (named by a digest of the token, never the
/// token itself), `unauthenticated` when a token is required and was not given, or
/// `anonymous` on a server without one.
pub(super) fn identity(token: Option<&str>, headers: &HeaderMap) -> String {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (token, given) {
        (None, _) => "anonymous".into(),
        (Some(t), Some(g)) if control_plane::auth::same_secret(t, g) => {
            control_plane::auth::token_name(t)
        }
        _ => "unauthenticated".into(),
    }
}

/// `/api/v1/{resource}/{namespace}/{name}/…` → (namespace, name).
fn target(path: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let at = |i: usize| {
        parts
            .get(i)
            .filter(|p| !p.is_empty())
            .map(|p| p.to_string())
    };
    if parts.get(2) == Some(&"onyx") {
        return (None, at(4));
    }
    (at(3), at(4))
}

/// What the call did: `create`, `delete`, `update`, or the verb it ends with (`suspend`, …).
fn action(method: &Method, path: &str) -> String {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.get(2) == Some(&"onyx") {
        return parts.last().unwrap_or(&"").to_string();
    }
    match *method {
        Method::DELETE => "delete".into(),
        Method::POST if parts.len() == 4 => "create".into(),
        _ if parts.len() > 5 => parts[parts.len() - 1].to_string(),
        Method::PUT => "update".into(),
        _ => parts.last().unwrap_or(&"").to_string(),
    }
}

/// The name of the object a create call posts (`workflow.metadata.name`, …).
fn created_name(body: &Value) -> Option<String> {
    let obj = body.as_object()?;
    obj.values()
        .find_map(|v| v["metadata"]["name"].as_str())
        .map(str::to_string)
}

/// The `ticket_id` a body carries: a parameter `{name: ticket_id, value}` or a
/// `ticket_id=VALUE` string (`submitOptions.parameters`), wherever it is.
fn ticket_in(v: &Value, depth: usize) -> Option<String> {
    if depth > 8 {
        return None;
    }
    match v {
        Value::Object(m) => {
            if m.get("name").and_then(Value::as_str) == Some(audit::TICKET_PARAMETER) {
                if let Some(t) = m.get("value").and_then(Value::as_str) {
                    return Some(t.to_string());
                }
            }
            m.values().find_map(|v| ticket_in(v, depth + 1))
        }
        Value::Array(a) => a.iter().find_map(|v| ticket_in(v, depth + 1)),
        Value::String(s) => s.strip_prefix("ticket_id=").map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_found_in_workflows_and_submit_options() {
        let wf = json!({"workflow": {"metadata": {"name": "a"}, "spec": {"arguments": {"parameters": [
            {"name": "x", "value": "1"}, {"name": "ticket_id", "value": "T-1"}]}}}});
        assert_eq!(ticket_in(&wf, 0).as_deref(), Some("T-1"));
        assert_eq!(created_name(&wf).as_deref(), Some("a"));
        let submit = json!({"resourceKind": "WorkflowTemplate", "resourceName": "t",
                            "submitOptions": {"parameters": ["a=b", "ticket_id=T-2"]}});
        assert_eq!(ticket_in(&submit, 0).as_deref(), Some("T-2"));
        assert_eq!(ticket_in(&json!({"a": 1}), 0), None);
    }

    #[test]
    fn paths_name_their_target_and_action() {
        assert_eq!(
            target("/api/v1/workflows/nlp/train/suspend"),
            (Some("nlp".into()), Some("train".into()))
        );
        assert_eq!(
            action(&Method::PUT, "/api/v1/workflows/nlp/train/suspend"),
            "suspend"
        );
        assert_eq!(action(&Method::POST, "/api/v1/workflows/nlp"), "create");
        assert_eq!(
            action(&Method::DELETE, "/api/v1/workflows/nlp/train"),
            "delete"
        );
        assert_eq!(
            target("/api/v1/onyx/nodes/gpu-01/cordon"),
            (None, Some("gpu-01".into()))
        );
        assert_eq!(
            action(&Method::PUT, "/api/v1/onyx/nodes/gpu-01/cordon"),
            "cordon"
        );
        assert_eq!(
            action(&Method::POST, "/api/v1/onyx/emergency-stop"),
            "emergency-stop"
        );
    }

    #[test]
    fn the_token_is_never_written_only_a_digest_of_it() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            "Bearer secret-token".parse().unwrap(),
        );
        let who = identity(Some("secret-token"), &h);
        assert!(
            who.starts_with("token:") && !who.contains("secret"),
            "{who}"
        );
        assert_eq!(identity(Some("other"), &h), "unauthenticated");
        assert_eq!(identity(None, &h), "anonymous");
    }
}
