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

/// Argo's alias for a namespace's newest workflow (`argo get @latest`, `argo logs @latest`),
/// read wherever a workflow is named.
pub(super) const LATEST: &str = "@latest";

/// The workflow `ns/name`, with `name` [`LATEST`] the newest one created in `ns`.
pub(super) async fn find(s: &AppState, ns: &str, name: &str) -> Result<WorkflowRow, ApiError> {
    let name = if name == LATEST && !ns.is_empty() {
        let newest = ListQuery {
            namespace: Some(ns.to_string()),
            limit: 1,
            ..Default::default()
        };
        let page = s.ctl.store.list_workflows(&newest).await?;
        let first: Option<Value> = page
            .items
            .first()
            .and_then(|w| serde_json::from_str(w).ok());
        match first.as_ref().and_then(|w| w["metadata"]["name"].as_str()) {
            Some(n) => n.to_string(),
            None => {
                return Err(ApiError::NotFound(format!(
                    "{LATEST}: no workflows found in namespace {ns}"
                )))
            }
        }
    } else {
        name.to_string()
    };
    s.ctl
        .store
        .workflow(ns, &name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflows.argoproj.io \"{name}\" not found")))
}

/// A boolean query parameter read as Go's `strconv.ParseBool` reads it, as Argo's gateway
/// does (`1 t T TRUE true True` and `0 f F FALSE false False`); absent or empty is false.
pub(super) fn query_bool(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(String::as_str) {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(other) => Err(ApiError::InvalidArgument(format!(
            "{key}: expected a boolean (true, false, 1, 0, t, f), got {other:?}"
        ))),
    }
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

#[cfg(test)]
mod tests {
    use super::query_bool;
    use std::collections::HashMap;

    #[test]
    fn booleans_read_as_gos_parse_bool_reads_them() {
        let q = |v: &str| HashMap::from([("b".to_string(), v.to_string())]);
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            assert!(query_bool(&q(yes), "b").unwrap(), "{yes}");
        }
        for no in ["0", "f", "F", "FALSE", "false", "False", ""] {
            assert!(!query_bool(&q(no), "b").unwrap(), "{no}");
        }
        assert!(!query_bool(&HashMap::new(), "b").unwrap());
        let e = query_bool(&q("yes"), "b").unwrap_err().to_string();
        assert_eq!(
            e,
            "b: expected a boolean (true, false, 1, 0, t, f), got \"yes\""
        );
    }
}
