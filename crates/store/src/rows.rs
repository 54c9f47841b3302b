//! The rows the store reads and writes, as the rest of ONYX sees them, their decoding from
//! the database's rows, and list pages' continue tokens.

use std::str::FromStr;

use base64::Engine as _;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::error::StoreError;
use crate::select::Selector;

/// A workflow as submitted, with what its engine is built from.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub created_ns: i64,
    pub labels: Vec<(String, String)>,
    /// The Workflow object (JSON) with its final name.
    pub manifest: String,
    /// `-p` overrides, JSON.
    pub params: String,
    /// Templates and config the engine was built with, JSON.
    pub context: String,
    /// The first status (JSON of the whole workflow).
    pub status: String,
}

/// A stored workflow.
#[derive(Debug, Clone)]
pub struct WorkflowRow {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub created_ns: i64,
    pub phase: String,
    pub finished_ns: Option<i64>,
    pub manifest: String,
    pub params: String,
    pub context: String,
    pub status: String,
}

/// One logged engine event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub seq: i64,
    pub at_ns: i64,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct ArchivedRow {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub created_ns: i64,
    pub finished_ns: Option<i64>,
    pub labels: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct ObjectRow {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub created_ns: i64,
    pub body: String,
}

/// A pod's hold on GPUs, from its grant (`started_ns`) to its release (`ended_ns`, `None` while
/// it holds them).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub pod: String,
    pub namespace: String,
    pub queue: String,
    pub node: String,
    /// GPU equivalents: a whole GPU 1, a fraction its share, a MIG instance slices/7.
    pub gpus: f64,
    /// CPU cores its requests add up to.
    pub cpus: f64,
    /// The devices as the scheduler names them: `3`, or `3/2` for MIG instance 2 of GPU 3.
    pub devices: Vec<String>,
    /// When the pod asked to be scheduled: its wait is `started_ns - asked_ns`.
    pub asked_ns: i64,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
}

/// A page of a list and the token for the next one (`None`: this was the last).
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// What to list.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub namespace: Option<String>,
    pub selector: Selector,
    /// `metadata.name=...` field selector.
    pub name: Option<String>,
    /// Only these namespaces (what the caller may see); `None`: every namespace.
    pub within: Option<Vec<String>>,
    /// 0: no limit.
    pub limit: usize,
    pub continue_token: Option<String>,
}

/// Who holds a lease, until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub holder: String,
    /// Where the holder serves its API (followers forward writes there).
    pub address: String,
    pub token: i64,
    pub expires_ns: i64,
}

/// An artifact a finished workflow left in the repository, and its size.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactRow {
    pub uid: String,
    pub key: String,
    pub namespace: String,
    pub workflow: String,
    pub bytes: i64,
    pub stored_ns: i64,
}

/// A notification to queue: `key` names it uniquely (workflow uid, webhook, phase).
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub key: String,
    pub webhook: String,
    pub body: String,
    pub created_ns: i64,
}

/// A queued notification not yet acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub key: String,
    pub webhook: String,
    pub body: String,
    pub attempts: i64,
}

pub(crate) fn workflow_row(r: &AnyRow) -> WorkflowRow {
    WorkflowRow {
        uid: r.get(0),
        namespace: r.get(1),
        name: r.get(2),
        created_ns: r.get(3),
        phase: r.get(4),
        finished_ns: r.get(5),
        manifest: r.get(6),
        params: r.get(7),
        context: r.get(8),
        status: r.get(9),
    }
}

pub(crate) fn object_row(r: &AnyRow) -> ObjectRow {
    ObjectRow {
        kind: r.get(0),
        namespace: r.get(1),
        name: r.get(2),
        created_ns: r.get(3),
        body: r.get(4),
    }
}

pub(crate) fn usage_row(r: &AnyRow) -> UsageRow {
    let devices: String = r.get(8);
    UsageRow {
        pod: r.get(0),
        namespace: r.get(1),
        queue: r.get(2),
        node: r.get(3),
        gpus: r.get(4),
        cpus: r.get(9),
        devices: devices
            .split(',')
            .filter(|d| !d.is_empty())
            .map(String::from)
            .collect(),
        asked_ns: r.get(5),
        started_ns: r.get(6),
        ended_ns: r.get(7),
    }
}

pub(crate) fn encode_continue(created_ns: i64, uid: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_ns}:{uid}"))
}

pub(crate) fn decode_continue(token: &str) -> Result<(i64, String), StoreError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::BadContinue)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadContinue)?;
    let (ns, uid) = text.split_once(':').ok_or(StoreError::BadContinue)?;
    Ok((
        i64::from_str(ns).map_err(|_| StoreError::BadContinue)?,
        uid.to_string(),
    ))
}

/// Kubernetes' resource name for a kind, as its error messages say it.
pub fn plural(kind: &str) -> &'static str {
    match kind {
        "WorkflowTemplate" => "workflowtemplates",
        "ClusterWorkflowTemplate" => "clusterworkflowtemplates",
        "CronWorkflow" => "cronworkflows",
        _ => "workflows",
    }
}

/// Now, in nanoseconds since the epoch: the unit of every time the store keeps.
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}
