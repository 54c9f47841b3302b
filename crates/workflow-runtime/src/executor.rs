//! The seam between the workflow runtime and where a workflow's work runs.
//!
//! The controller turns the engine's actions into calls on an [`Executor`] — start a pod, a
//! Volcano job or an `http` call, kill or evict a pod, forget a deleted workflow's pods — and
//! what happens to them comes back as the engine's events through a [`Report`]. Nothing the
//! controller decides depends on which executor runs the work: this machine's sandboxed pods
//! (`local_executor`'s pods), a Kubernetes cluster, or a test's fake.
//!
//! Contract (what the controller relies on, and a fake must honour):
//! - `start_pod` is idempotent by pod key: a pod that already started (before a crash of the
//!   server) is adopted or its result collected, never run twice; its report gets at most one
//!   `PodRunning` and exactly one `PodDone`, with any `PodWaiting` before them.
//! - `start_job` reports the resource node's `PodWaiting` messages and, last, `ResourceDone`.
//! - `call_http` reports exactly one `HttpDone`, under the namespace's egress rule.
//! - `kill` of a pod that has not started keeps it from starting (its report still ends with
//!   `PodDone`); `kill` of a finished or unknown pod does nothing.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use workflow_engine::{Event, PodRequest};
use workflow_model::Template;

/// Where an executor sends what becomes of the work it was given (called from any thread).
pub type Report = Arc<dyn Fn(Event) + Send + Sync>;

/// A pod of a workflow, as the engine asked for it.
pub struct PodStart {
    pub namespace: String,
    pub workflow: String,
    /// The named artifact repository the workflow picks (`artifactRepositoryRef.key`).
    pub repository: Option<String>,
    pub request: PodRequest,
    /// What the pod asks of the scheduler (or why its scheduling fields are wrong).
    pub ask: Result<cluster_shell::Ask, cluster_shell::AskError>,
}

/// A resource node that creates a Volcano Job.
pub struct JobStart {
    pub namespace: String,
    pub workflow: String,
    pub node_id: String,
    /// The resource node's pod name; replicas are `<pod_name>-<task>-<index>`.
    pub pod_name: String,
    pub template: Arc<Template>,
    pub manifest: Value,
}

/// Where a workflow's pods, jobs and HTTP calls run.
pub trait Executor: Send + Sync {
    fn start_pod(self: Arc<Self>, pod: PodStart, report: Report);
    fn start_job(self: Arc<Self>, job: JobStart, report: Report);
    fn call_http(
        self: Arc<Self>,
        namespace: &str,
        node_id: String,
        template: Arc<Template>,
        report: Report,
    );
    /// Kill a pod by its key ([`pod_key`]), or keep it from starting.
    fn kill(&self, pod: &str);
    /// Kill a pod to free its node; its step fails with `why`.
    fn evict(&self, pod: &str, why: String);
    /// Drop what is kept of a pod of a deleted workflow (its directory, its logs).
    fn forget(&self, pod: &str);
    /// The artifact repository of a workflow in `namespace`, narrowed to its keys.
    fn repository_for(
        &self,
        namespace: &str,
        key: Option<&str>,
    ) -> Result<artifact_repo::Repository, artifact_repo::RepoError>;
    /// Where a pod's logs and files are kept.
    fn pod_dir(&self, pod: &str) -> PathBuf;
    /// A node was cordoned (`true`) or uncordoned by ONYX (a drain, the maintenance window,
    /// an operator): an executor whose nodes belong to a cluster tells it. The scheduler's
    /// own cordon is already in place.
    fn cordon(&self, _node: &str, _on: bool) {}
}

/// The key a pod is known by to an executor: `NAMESPACE/POD`.
pub fn pod_key(namespace: &str, pod: &str) -> String {
    format!("{namespace}/{pod}")
}

/// The Volcano Job a resource template creates, if it creates one (the controller hands such
/// a node to [`Executor::start_job`]; other resources it runs itself).
pub fn volcano_manifest(t: &Template) -> Option<Value> {
    let r = t.resource.as_ref()?;
    let text = r.manifest.as_deref()?;
    let doc = manifest::parse_documents(text).ok()?.into_iter().next()?;
    volcano_job::is_volcano_job(&doc.value).then_some(doc.value)
}
