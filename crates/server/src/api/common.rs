//! What every handler of the API shares: the state extractor, the result type, the JSON body
//! that answers a bad request in Argo's error shape, and list paging.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};
use store::{ListQuery, WorkflowRow};

use control_plane::error::ApiError;
use control_plane::state::AppState;

pub(super) type St = State<Arc<AppState>>;
pub(super) type Q = Query<HashMap<String, String>>;
pub(super) type ApiResult = Result<Json<Value>, ApiError>;

/// A JSON request body; a bad or oversized body is an Argo error, not a plain-text one.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(format!("request body too large: {}", e.body_text()))
            } else {
                ApiError::InvalidArgument(e.body_text())
            }
        })?;
        if bytes.is_empty() {
            return Ok(JsonBody(json!({})));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidArgument(format!("request body is not valid JSON: {e}")))
    }
}

pub(super) fn list_query(
    q: &HashMap<String, String>,
    namespace: Option<String>,
) -> Result<ListQuery, ApiError> {
    let selector = q
        .get("listOptions.labelSelector")
        .map(|s| s.parse::<store::Selector>())
        .transpose()
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?
        .unwrap_or_default();
    let mut out = ListQuery {
        namespace,
        selector,
        ..Default::default()
    };
    if let Some(fs) = q.get("listOptions.fieldSelector").filter(|s| !s.is_empty()) {
        for part in fs.split(',') {
            match part.split_once('=') {
                Some(("metadata.name", v)) => out.name = Some(v.trim_start_matches('=').into()),
                Some(("metadata.namespace", v)) => {
                    let v = v.trim_start_matches('=').to_string();
                    if out.namespace.as_ref().is_some_and(|ns| !ns.is_empty() && *ns != v) {
                        out.name = Some(String::new()); // nothing matches
                    }
                    out.namespace = Some(v);
                }
                _ => {
                    return Err(ApiError::InvalidArgument(format!(
                        "listOptions.fieldSelector: unsupported field selector {part:?} (supported: metadata.name, metadata.namespace)"
                    )))
                }
            }
        }
    }
    if let Some(l) = q.get("listOptions.limit").filter(|s| !s.is_empty()) {
        out.limit = l.parse().map_err(|_| {
            ApiError::InvalidArgument(format!("listOptions.limit: expected a number, got {l:?}"))
        })?;
    }
    out.continue_token = q
        .get("listOptions.continue")
        .filter(|s| !s.is_empty())
        .cloned();
    Ok(out)
}

pub(super) fn list_body(items: Vec<String>, next: Option<String>, kind: &str) -> Value {
    let items: Vec<Value> = items
        .iter()
        .filter_map(|s| serde_json::from_str(s).ok())
        .collect();
    let mut meta = json!({"resourceVersion": "0"});
    if let Some(c) = next {
        meta["continue"] = json!(c);
    }
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": meta, "items": items})
}

pub(super) async fn find(s: &AppState, ns: &str, name: &str) -> Result<WorkflowRow, ApiError> {
    s.ctl
        .store
        .workflow(ns, name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflows.argoproj.io \"{name}\" not found")))
}

/// A JSON array of strings (other items ignored).
pub(super) fn string_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Who made a call, for the audit layer outside authentication: set on the response.
#[derive(Clone)]
pub(super) struct CallerName(pub String);

/// The signed-in caller, when authentication found one (every call past it has one).
pub(super) type Caller = Option<axum::Extension<std::sync::Arc<access::Principal>>>;

/// The namespaces the caller may `verb` in, for lists over every namespace (`None`: all).
pub(super) fn visible(s: &AppState, caller: &Caller, verb: &str) -> Option<Vec<String>> {
    let p = caller.as_ref()?;
    s.auth
        .rules()
        .namespaces(&p.0, verb)
        .map(|set| set.into_iter().collect())
}
