//! Argo's artifact server: `/artifacts/…`, `/input-artifacts/…` (by workflow name),
//! `/artifacts-by-uid/…`, `/input-artifacts-by-uid/…` (live or archived workflows), and
//! `/artifact-files/…` (files inside an artifact saved as a directory, with a listing as
//! Argo's server writes it). Artifacts are read from where they were saved: the workflow's
//! repository, or a bucket the artifact names itself.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde_json::Value;

use control_plane::error::ApiError;
use control_plane::state::AppState;

use super::common::St;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/artifacts/{ns}/{name}/{node}/{artifact}",
            get(|s: St, Path((ns, name, node, art)): Path<(String, String, String, String)>| async move {
                by_name(s, ns, name, node, art, Direction::Outputs).await
            }),
        )
        .route(
            "/input-artifacts/{ns}/{name}/{node}/{artifact}",
            get(|s: St, Path((ns, name, node, art)): Path<(String, String, String, String)>| async move {
                by_name(s, ns, name, node, art, Direction::Inputs).await
            }),
        )
        .route(
            "/artifacts-by-uid/{uid}/{node}/{artifact}",
            get(|s: St, Path((uid, node, art)): Path<(String, String, String)>| async move {
                by_uid(s, uid, node, art, Direction::Outputs).await
            }),
        )
        .route(
            "/input-artifacts-by-uid/{uid}/{node}/{artifact}",
            get(|s: St, Path((uid, node, art)): Path<(String, String, String)>| async move {
                by_uid(s, uid, node, art, Direction::Inputs).await
            }),
        )
        .route("/artifact-files/{*rest}", get(files))
}

#[derive(Clone, Copy)]
enum Direction {
    Inputs,
    Outputs,
}

impl Direction {
    fn field(self) -> &'static str {
        match self {
            Direction::Inputs => "inputs",
            Direction::Outputs => "outputs",
        }
    }
}

/// A live workflow by namespace and name, as it is now.
async fn live(s: &AppState, ns: &str, name: &str) -> Result<Value, ApiError> {
    let row =
        s.ctl.store.workflow(ns, name).await?.ok_or_else(|| {
            ApiError::NotFound(format!("workflows.argoproj.io \"{name}\" not found"))
        })?;
    Ok(s.ctl.current(&row).await)
}

/// A workflow by uid: live, else from the archive.
async fn by_uid_workflow(s: &AppState, uid: &str) -> Result<Value, ApiError> {
    if let Some(row) = s.ctl.store.workflow_by_uid(uid).await? {
        return Ok(s.ctl.current(&row).await);
    }
    let row = s
        .ctl
        .store
        .archived(uid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workflow with uid {uid} not found")))?;
    serde_json::from_str(&row.body).map_err(|e| ApiError::Internal(e.to_string()))
}

/// The artifact, its key and the repository it is in.
async fn locate(
    s: &AppState,
    wf: &Value,
    node: &str,
    name: &str,
    dir: Direction,
) -> Result<(String, artifact_repo::Repository), ApiError> {
    let n = wf
        .pointer(&format!(
            "/status/nodes/{}",
            node.replace('~', "~0").replace('/', "~1")
        ))
        .ok_or_else(|| ApiError::NotFound(format!("node {node:?} not found in the workflow")))?;
    let a = n[dir.field()]["artifacts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == name))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "artifact {name:?} not found in the {} of node {node:?}",
                dir.field()
            ))
        })?;
    let key = a["local"]["key"]
        .as_str()
        .filter(|k| artifact_repo::check_key(k).is_ok())
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "artifact {name:?} is not in an artifact repository (a raw or http artifact)"
            ))
        })?
        .to_string();
    let ns = wf["metadata"]["namespace"].as_str().unwrap_or("default");
    let repo = match a.get("s3").filter(|s3| s3.get("bucket").is_some()) {
        Some(s3) => own_bucket(s, ns, s3)?,
        None => s
            .ctl
            .repository_for(
                ns,
                wf.pointer("/spec/artifactRepositoryRef/key")
                    .and_then(Value::as_str),
            )
            .map_err(|e| ApiError::InvalidArgument(e.to_string()))?,
    };
    Ok((key, repo))
}

/// A bucket an artifact names itself, its credentials from the namespace's secrets.
fn own_bucket(s: &AppState, ns: &str, s3: &Value) -> Result<artifact_repo::Repository, ApiError> {
    let secret = |field: &str| -> Result<Option<String>, ApiError> {
        let Some(r) = s3.get(field) else {
            return Ok(None);
        };
        let file = s.cfg.secrets.file.as_ref().ok_or_else(|| {
            ApiError::FailedPrecondition(
                "the artifact's bucket credentials are secrets, and this server keeps no secrets"
                    .into(),
            )
        })?;
        let secrets = pod_secrets::Secrets::load(file).map_err(ApiError::Internal)?;
        secrets
            .value(
                ns,
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default(),
            )
            .map(Some)
            .map_err(ApiError::FailedPrecondition)
    };
    let credentials = match (secret("accessKeySecret")?, secret("secretKeySecret")?) {
        (Some(a), Some(k)) => Some((a, k)),
        _ => None,
    };
    Ok(artifact_repo::Repository::S3(
        artifact_repo::S3Config::for_artifact(
            s3["endpoint"].as_str().unwrap_or("s3.amazonaws.com"),
            s3["bucket"].as_str().unwrap_or_default(),
            s3["region"].as_str(),
            s3["insecure"].as_bool() == Some(true),
            credentials,
        ),
    ))
}

/// Stream `key` as a download named after its last path segment, as Argo's server does.
async fn stream(repo: &artifact_repo::Repository, key: &str) -> Result<Response, ApiError> {
    let body = repo
        .read(key)
        .await
        .map_err(|e| ApiError::NotFound(e.to_string()))?;
    let file = key.rsplit('/').next().unwrap_or(key).replace('"', "");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
        ],
        Body::from_stream(body.map(|c| c.map_err(std::io::Error::other))),
    )
        .into_response())
}

async fn by_name(
    State(s): St,
    ns: String,
    name: String,
    node: String,
    art: String,
    dir: Direction,
) -> Result<Response, ApiError> {
    let wf = live(&s, &ns, &name).await?;
    let (key, repo) = locate(&s, &wf, &node, &art, dir).await?;
    stream(&repo, &key).await
}

async fn by_uid(
    State(s): St,
    uid: String,
    node: String,
    art: String,
    dir: Direction,
) -> Result<Response, ApiError> {
    let wf = by_uid_workflow(&s, &uid).await?;
    let (key, repo) = locate(&s, &wf, &node, &art, dir).await?;
    stream(&repo, &key).await
}

/// `/artifact-files/{ns}/{workflows|archived-workflows}/{name|uid}/{node}/outputs/{artifact}/{path…}`
async fn files(
    State(s): St,
    Path(rest): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    let parts: Vec<&str> = rest.splitn(7, '/').collect();
    let [ns, discriminator, id, node, direction, art, path @ ..] = parts.as_slice() else {
        return Err(ApiError::InvalidArgument(
            "artifact-files: expected /artifact-files/NAMESPACE/workflows|archived-workflows/ID/NODE/outputs/ARTIFACT[/PATH]".into(),
        ));
    };
    if *direction != "outputs" {
        // As Argo's server: only output artifacts have files served.
        return Err(ApiError::InvalidArgument(format!(
            "artifact-files: {direction:?}: only outputs are served"
        )));
    }
    let wf = match *discriminator {
        "workflows" => live(&s, ns, id).await?,
        "archived-workflows" => {
            let wf = by_uid_workflow(&s, id).await?;
            if wf["metadata"]["namespace"] != *ns {
                return Err(ApiError::InvalidArgument(format!(
                    "archived workflow {id} is not in namespace {ns:?}"
                )));
            }
            wf
        }
        other => {
            return Err(ApiError::InvalidArgument(format!(
                "artifact-files: {other:?}: expected workflows or archived-workflows"
            )))
        }
    };
    let (key, repo) = locate(&s, &wf, node, art, Direction::Outputs).await?;
    let path = path.first().copied().unwrap_or("");
    let here = uri.path().to_string();
    let listing_of = |sub: &str| {
        let sub = sub.trim_end_matches('/').to_string();
        let key = key.clone();
        let repo = repo.clone();
        async move {
            let base = if sub.is_empty() {
                key
            } else {
                format!("{key}/{sub}")
            };
            repo.list(&base)
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))
        }
    };
    if path.split('/').any(|p| p == ".." || p == ".") {
        return Err(ApiError::InvalidArgument(
            "artifact-files: \"..\" or \".\" in the path".into(),
        ));
    }
    if path.is_empty() || path.ends_with('/') {
        let files = listing_of(path).await?;
        if files.is_empty() {
            if path.is_empty() && !here.ends_with('/') {
                // One file (an archive): the artifact itself.
                return stream(&repo, &key).await;
            }
            return Err(ApiError::NotFound(format!("no files under {here}")));
        }
        if !here.ends_with('/') {
            return Ok(Redirect::temporary(&format!("{here}/")).into_response());
        }
        if files.iter().any(|f| f == "index.html") {
            return Ok(Redirect::temporary(&format!("{here}index.html")).into_response());
        }
        let mut html = String::from("<html><body><ul>\n<li><a href=\"..\">..</a></li>\n");
        let mut dirs = std::collections::BTreeSet::new();
        for f in &files {
            match f.split_once('/') {
                // `./` first and the name percent-encoded: a file named `javascript:…` is
                // a relative link like any other.
                None => html.push_str(&format!(
                    "<li><a href=\"./{href}\">{f}</a></li>\n",
                    href = encode_segment(f),
                    f = escape(f)
                )),
                Some((d, _)) => {
                    if dirs.insert(d.to_string()) {
                        html.push_str(&format!(
                            "<li><a href=\"./{href}/\">{d}/</a></li>\n",
                            href = encode_segment(d),
                            d = escape(d)
                        ));
                    }
                }
            }
        }
        html.push_str("</ul></body></html>");
        // The listing shows tenants' file names: no script of any kind runs in it.
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (
                    header::CONTENT_SECURITY_POLICY,
                    "sandbox; default-src 'none'; base-uri 'none'",
                ),
            ],
            html,
        )
            .into_response());
    }
    if !listing_of(path).await?.is_empty() {
        return Ok(Redirect::temporary(&format!("{here}/")).into_response());
    }
    stream(&repo, &format!("{key}/{path}")).await
}

/// A file name as one URL path segment: every byte but unreserved ones percent-encoded.
fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
