//! The controller: one task per running workflow drives its engine. Every event is committed
//! to the workflow's log before the engine handles it, and the engine's actions (starting
//! pods) happen only after that commit; after a crash, replaying the log through a new engine
//! rebuilds the same state and the same outstanding actions, which the idempotent pod runner
//! then re-adopts (ARCHITECTURE.md, "Invariants").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{NewWorkflow, Store, WorkflowRow};
use tokio::sync::{broadcast, mpsc, oneshot};
use workflow_engine::{Action, Engine, Event, PodRequest, Time};
use workflow_model::WorkflowObject;

use crate::build::{apply_parameters, load_object, template_store, workflow_of, BuildContext};
use crate::error::RuntimeError;
use crate::executor::{pod_key, Executor};

/// One entry of a workflow's event log.
#[derive(Debug, Serialize, Deserialize)]
enum Logged {
    Start,
    Event(Event),
    /// A retry: the nodes of the run before it that it keeps (`Engine::keep`), logged just
    /// before its `Start`.
    Kept(serde_json::Map<String, Value>),
}

/// How a workflow's task begins.
enum Begin {
    /// Its log was replayed: it goes on from there.
    Replayed,
    /// It has not started: log `Start` and start it.
    Start,
    /// A retry: log the nodes it keeps, then start it with them.
    Retry(serde_json::Map<String, Value>),
}

enum Cmd {
    Event(Event, Option<oneshot::Sender<Value>>),
    Snapshot(oneshot::Sender<Value>),
    /// Kill its pods and end the task (the workflow is being deleted).
    Stop(oneshot::Sender<()>),
}

/// A change to a workflow, for watchers.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub object: Arc<Value>,
}

pub struct Controller {
    pub store: Store,
    /// Where pods, jobs and HTTP calls run.
    executor: Arc<dyn Executor>,
    /// The scheduler's view of the cluster (nodes, queues, what pods hold).
    cluster: Arc<cluster_shell::Cluster>,
    live: Mutex<HashMap<String, mpsc::UnboundedSender<Cmd>>>,
    watch: broadcast::Sender<WatchEvent>,
    /// Nodes being drained: cordoned, their pods given their grace, not yet empty.
    draining: Mutex<HashSet<String>>,
    /// What `/metrics` reports of the controller's work, and the custom metrics.
    pub metrics: Arc<metric_families::Metrics>,
    /// Who else hears when a workflow starts and ends (webhooks, Sensors).
    listener: Arc<dyn PhaseListener>,
    /// The audit trail, which gets every workflow event as it is logged.
    audit: audit::AuditLog,
    /// How workflows that resource templates create are submitted (set by the server).
    children: std::sync::OnceLock<ChildSubmitter>,
    /// Resource nodes carried out at once, each on a blocking thread while it waits.
    resource_slots: Arc<tokio::sync::Semaphore>,
}

/// Resource nodes (ConfigMaps, Secrets, child Workflows) carried out at once, server-wide; the
/// rest wait their turn without holding a thread.
const RESOURCE_SLOTS: usize = 64;

pub fn now() -> Time {
    Utc::now()
}

fn nanos(t: Time) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn from_nanos(n: i64) -> Time {
    Utc.timestamp_nanos(n)
}

/// Who else hears of a workflow's phase: told when it starts and when it ends, each time after
/// its status is committed. A crash between the commit and the telling tells again after the
/// restart, so a listener keys what it queues by workflow and phase.
pub trait PhaseListener: Send + Sync {
    /// `workflow` is the workflow's JSON as it is now (with its namespace), `uid` its uid.
    /// Failures are the listener's to log: the workflow goes on regardless.
    fn phase(&self, workflow: Value, uid: String) -> futures::future::BoxFuture<'static, ()>;
}

/// A workflow accepted for running, not yet committed.
pub struct Accepted {
    pub row: NewWorkflow,
    pub engine: Engine,
    /// The workflow as accepted (its first status), also stored in `row.status`.
    pub json: Value,
    /// For a retry re-creating a workflow: what it keeps and runs again.
    retry: Option<crate::retry::Retry>,
}

impl Accepted {
    /// The workflow re-created by a retry (of an archived workflow whose live copy is gone):
    /// it starts with what the retry keeps, and shows the retry's status until it runs.
    pub fn retried(mut self, retry: crate::retry::Retry) -> Accepted {
        self.json["status"] = retry.status.clone();
        self.row.status = self.json.to_string();
        self.retry = Some(retry);
        self
    }
}

impl Controller {
    pub fn new(
        store: Store,
        executor: Arc<dyn Executor>,
        cluster: Arc<cluster_shell::Cluster>,
        listener: Arc<dyn PhaseListener>,
        audit: audit::AuditLog,
    ) -> Arc<Controller> {
        let (watch, _) = broadcast::channel(4096);
        Arc::new(Controller {
            store,
            metrics: Arc::new(metric_families::Metrics::with_scheduling(
                cluster.latency.clone(),
            )),
            executor,
            cluster,
            live: Mutex::new(HashMap::new()),
            watch,
            draining: Mutex::new(HashSet::new()),
            listener,
            audit,
            children: std::sync::OnceLock::new(),
            resource_slots: Arc::new(tokio::sync::Semaphore::new(RESOURCE_SLOTS)),
        })
    }

    /// Submit the workflows resource templates create through `submit` (the API's checks).
    pub fn set_child_submitter(&self, submit: ChildSubmitter) {
        let _ = self.children.set(submit);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.watch.subscribe()
    }

    /// Build the engine for a new workflow (validating it), ready to commit.
    pub fn accept(
        &self,
        wf: &WorkflowObject,
        manifest: &Value,
        namespace: &str,
        name: &str,
        ctx: BuildContext,
    ) -> Result<Accepted, RuntimeError> {
        let store = template_store(&ctx)?;
        let uid = new_uid();
        let created = now();
        let engine = Engine::new(
            wf,
            name,
            &uid,
            &[],
            Arc::new(store),
            ctx.config.clone(),
            created,
        )
        .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let mut manifest = manifest.clone();
        manifest["metadata"]["name"] = json!(name);
        manifest["metadata"]["namespace"] = json!(namespace);
        if let Some(m) = manifest["metadata"].as_object_mut() {
            m.remove("generateName");
        }
        let labels = labels_of(&manifest);
        let status = engine.to_json();
        Ok(Accepted {
            row: NewWorkflow {
                uid,
                namespace: namespace.into(),
                name: name.into(),
                created_ns: nanos(created),
                labels,
                manifest: manifest.to_string(),
                params: "[]".into(),
                context: serde_json::to_string(&ctx).unwrap_or_default(),
                status: status.to_string(),
            },
            engine,
            json: status,
            retry: None,
        })
    }

    /// Commit an accepted workflow, then start it. Returns the workflow as created.
    pub async fn create(self: &Arc<Self>, a: Accepted) -> Result<Value, RuntimeError> {
        let json = a.json;
        let uid = a.row.uid.clone();
        let ns = a.row.namespace.clone();
        let name = a.row.name.clone();
        self.store.insert_workflow(a.row).await?;
        let begin = match a.retry {
            Some(retry) => {
                self.forget_pods(&ns, &name, &retry.rerun);
                Begin::Retry(retry.kept)
            }
            None => Begin::Start,
        };
        self.spawn(
            uid,
            ns.clone(),
            name.clone(),
            a.engine,
            0,
            Vec::new(),
            begin,
        );
        let _ = self.watch.send(WatchEvent {
            kind: "ADDED",
            namespace: ns,
            name,
            object: Arc::new(json.clone()),
        });
        Ok(json)
    }

    /// After a restart: rebuild every unfinished workflow from its log and go on.
    pub async fn recover(self: &Arc<Self>) -> Result<usize, RuntimeError> {
        let rows = self.store.unfinished_workflows().await?;
        let n = rows.len();
        for row in rows {
            let uid = row.uid.clone();
            if let Err(e) = self.recover_one(row).await {
                tracing::error!("workflow {uid} cannot be recovered: {e}");
            }
        }
        Ok(n)
    }

    /// End a workflow whose processing panicked: phase Error with the panic's words, finished
    /// (so no restart replays it again), counted in `argo_workflows_error_count`
    /// (`OperationPanic`, as Argo counts its own).
    async fn quarantine(
        &self,
        uid: &str,
        namespace: &str,
        name: &str,
        mut status: Value,
        why: &str,
    ) {
        self.metrics
            .error(metric_families::ErrorCause::OperationPanic);
        tracing::error!("workflow {namespace}/{name}: processing it panicked: {why}");
        if !status.is_object() {
            status = json!({"metadata": {"name": name, "namespace": namespace, "uid": uid}});
        }
        let message = format!("the controller failed processing this workflow: {why}");
        let at = now();
        status["status"]["phase"] = json!("Error");
        status["status"]["message"] = json!(message);
        status["status"]["finishedAt"] =
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        if let Err(e) = self
            .store
            .update_status(uid, "Error", Some(nanos(at)), status.to_string())
            .await
        {
            tracing::error!("workflow {namespace}/{name}: saving its Error: {e}");
        }
        let _ = self.watch.send(WatchEvent {
            kind: "MODIFIED",
            namespace: namespace.to_string(),
            name: name.to_string(),
            object: Arc::new(status),
        });
    }

    async fn recover_one(self: &Arc<Self>, row: WorkflowRow) -> Result<(), RuntimeError> {
        // A workflow whose replay panics is ended, not the server (which would panic again at
        // every start).
        let (uid, namespace, name) = (row.uid.clone(), row.namespace.clone(), row.name.clone());
        let status: Value = serde_json::from_str(&row.status).unwrap_or(Value::Null);
        match self.replay(row).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(why) => {
                self.quarantine(&uid, &namespace, &name, status, &why).await;
                Ok(())
            }
        }
    }

    /// Rebuild a workflow from its log and go on; `Err` with the panic's words if the engine
    /// panicked doing it.
    async fn replay(
        self: &Arc<Self>,
        row: WorkflowRow,
    ) -> Result<Result<(), RuntimeError>, String> {
        let log = match self.store.events(&row.uid).await {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        let built = contain(|| self.rebuild(&row, &log));
        match built {
            Ok(Ok((engine, pending))) => {
                let seq = log.len() as i64;
                let begin = if log.is_empty() {
                    Begin::Start
                } else {
                    Begin::Replayed
                };
                self.spawn(
                    row.uid,
                    row.namespace,
                    row.name,
                    engine,
                    seq,
                    pending,
                    begin,
                );
                Ok(Ok(()))
            }
            Ok(Err(e)) => Ok(Err(e)),
            Err(why) => Err(why),
        }
    }

    /// The engine of a stored workflow after its logged events, and what it still waits on.
    fn rebuild(
        &self,
        row: &WorkflowRow,
        log: &[store::EventRow],
    ) -> Result<(Engine, Vec<Action>), RuntimeError> {
        let manifest: Value = serde_json::from_str(&row.manifest)
            .map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        let wf = workflow_of(load_object("stored Workflow", &manifest)?)?;
        let ctx: BuildContext =
            serde_json::from_str(&row.context).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        let params: Vec<(String, String)> = serde_json::from_str(&row.params).unwrap_or_default();
        let mut engine = Engine::new(
            &wf,
            &row.name,
            &row.uid,
            &params,
            Arc::new(template_store(&ctx)?),
            ctx.config.clone(),
            from_nanos(row.created_ns),
        )
        .map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        // Replay, keeping track of what the engine asked for and has not heard back about.
        let mut pods: BTreeMap<String, PodRequest> = BTreeMap::new();
        let mut killed: HashSet<String> = HashSet::new();
        let mut other: BTreeMap<String, Action> = BTreeMap::new();
        for e in log {
            let entry: Logged = serde_json::from_str(&e.body)
                .map_err(|err| RuntimeError::Corrupt(format!("event {}: {err}", e.seq)))?;
            let at = from_nanos(e.at_ns);
            let actions = match entry {
                Logged::Start => engine.start(at),
                Logged::Kept(nodes) => {
                    engine.keep(&nodes);
                    Vec::new()
                }
                Logged::Event(ev) => {
                    match &ev {
                        Event::PodDone(r) => {
                            pods.remove(&r.node_id);
                        }
                        Event::HttpDone { node_id, .. } | Event::ResourceDone { node_id, .. } => {
                            other.remove(node_id);
                        }
                        _ => {}
                    }
                    engine.handle(ev, at)
                }
            };
            for a in actions {
                match a {
                    Action::StartPod(r) => {
                        pods.insert(r.node_id.clone(), *r);
                    }
                    Action::KillPod { node_id, .. } => {
                        killed.insert(node_id);
                    }
                    Action::Http { ref node_id, .. } | Action::Resource { ref node_id, .. } => {
                        other.insert(node_id.clone(), a.clone());
                    }
                    // Samples of the past are not replayed: a restarted controller's
                    // custom metrics start afresh, as Argo's do.
                    Action::Metric(_) => {}
                }
            }
        }
        engine.take_changed();
        let mut pending: Vec<Action> = Vec::new();
        for (node_id, r) in pods {
            if killed.contains(&node_id) {
                self.executor.kill(&pod_key(&row.namespace, &r.pod_name));
            }
            pending.push(Action::StartPod(Box::new(r)));
        }
        pending.extend(other.into_values());
        Ok((engine, pending))
    }

    fn handle(&self, uid: &str) -> Option<mpsc::UnboundedSender<Cmd>> {
        self.live.lock().expect("live map").get(uid).cloned()
    }

    /// The workflow's current JSON: from its running engine, else as stored now (`row` may be
    /// older than the workflow's end).
    pub async fn current(&self, row: &WorkflowRow) -> Value {
        if let Some(h) = self.handle(&row.uid) {
            let (tx, rx) = oneshot::channel();
            if h.send(Cmd::Snapshot(tx)).is_ok() {
                if let Ok(v) = rx.await {
                    return v;
                }
            }
        }
        let status = match self.store.workflow(&row.namespace, &row.name).await {
            Ok(Some(fresh)) if fresh.uid == row.uid => fresh.status,
            _ => row.status.clone(),
        };
        serde_json::from_str(&status).unwrap_or(Value::Null)
    }

    /// Hand an event to a running workflow and return the workflow after it was handled.
    pub async fn send(&self, row: &WorkflowRow, ev: Event) -> Result<Value, RuntimeError> {
        let Some(h) = self.handle(&row.uid) else {
            return Err(RuntimeError::Precondition(format!(
                "workflow {} has completed (phase {})",
                row.name, row.phase
            )));
        };
        let (tx, rx) = oneshot::channel();
        self.metrics.queued();
        h.send(Cmd::Event(ev, Some(tx))).map_err(|_| {
            RuntimeError::Precondition(format!("workflow {} has completed", row.name))
        })?;
        rx.await
            .map_err(|_| RuntimeError::Precondition(format!("workflow {} has completed", row.name)))
    }

    /// Stop a workflow's task (killing its pods), remove it and its pods' directories.
    pub async fn delete(&self, row: &WorkflowRow) -> Result<(), RuntimeError> {
        // The running engine's status, not the last persisted snapshot (written at most every
        // `PERSIST_EVERY`), which may miss a pod started since: its directory would be left.
        let status = self.current(row).await;
        if let Some(h) = self.handle(&row.uid) {
            let (tx, rx) = oneshot::channel();
            if h.send(Cmd::Stop(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        self.store.delete_workflow(&row.uid).await?;
        let repo = self.executor.repository_for(
            &row.namespace,
            status
                .pointer("/spec/artifactRepositoryRef/key")
                .and_then(Value::as_str),
        );
        for key in collectable(&status, "OnWorkflowDeletion") {
            let Ok(repo) = &repo else { break };
            if let Err(e) = repo.delete(&key).await {
                tracing::warn!("artifact GC of {}: {e}", repo.describe(&key));
            }
        }
        self.metrics.forget(&row.uid);
        for pod in pod_names(&row.name, &status) {
            self.executor.forget(&pod_key(&row.namespace, &pod));
        }
        let _ = self.watch.send(WatchEvent {
            kind: "DELETED",
            namespace: row.namespace.clone(),
            name: row.name.clone(),
            object: Arc::new(status),
        });
        Ok(())
    }

    /// The pods of these nodes of workflow `namespace/name` run afresh: the executor forgets
    /// what it kept of them.
    fn forget_pods(&self, namespace: &str, name: &str, nodes: &[Value]) {
        for n in nodes {
            let pod = workflow_engine::pod_name(
                name,
                n["name"].as_str().unwrap_or_default(),
                n["templateName"].as_str().unwrap_or_default(),
            );
            self.executor.forget(&pod_key(namespace, &pod));
        }
    }

    /// Retry a workflow that ended (Argo's `retry`): what succeeded is kept as it was and not
    /// run again (see [`crate::retry`]); the rest runs again, with `params` applied. Answers
    /// the workflow as the retry left it: Running, with the kept nodes.
    pub async fn retry(
        self: &Arc<Self>,
        row: &WorkflowRow,
        restart_successful: bool,
        selector: &str,
        params: &[(String, String)],
    ) -> Result<Value, RuntimeError> {
        if self.handle(&row.uid).is_some() {
            return Err(RuntimeError::Invalid(format!(
                "Cannot retry a workflow in phase {}",
                row.phase
            )));
        }
        let selector = crate::retry::parse_selector(selector)?;
        let ended: Value =
            serde_json::from_str(&row.status).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        let at = now();
        let retry = crate::retry::formulate(
            &row.name,
            &ended["status"],
            restart_successful,
            &selector,
            &workflow_engine::format_time(&at),
        )?;
        self.forget_pods(&row.namespace, &row.name, &retry.rerun);
        let mut manifest: Value = serde_json::from_str(&row.manifest)
            .map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        apply_parameters(&mut manifest, params);
        let wf = workflow_of(load_object("stored Workflow", &manifest)?)?;
        let ctx: BuildContext =
            serde_json::from_str(&row.context).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        let engine = Engine::new(
            &wf,
            &row.name,
            &row.uid,
            &[],
            Arc::new(template_store(&ctx)?),
            ctx.config.clone(),
            from_nanos(row.created_ns),
        )
        .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let mut json = engine.to_json();
        json["status"] = retry.status;
        self.store
            .reset_workflow(&row.uid, manifest.to_string(), json.to_string())
            .await?;
        self.spawn(
            row.uid.clone(),
            row.namespace.clone(),
            row.name.clone(),
            engine,
            0,
            Vec::new(),
            Begin::Retry(retry.kept),
        );
        Ok(json)
    }

    /// Drain a node: cordon it, give its pods `grace` to end, then evict what is left — and
    /// every other bound pod of the same gangs, so that a gang moves whole. The pods on the
    /// node when the drain began, or `None` if there is no such node.
    /// Cordon (`true`) or uncordon a node: the scheduler places nothing new on a cordoned
    /// node, and the executor tells the cluster (a Kubernetes Node's `spec.unschedulable`).
    /// `false` if there is no such node.
    pub fn cordon(&self, node: &str, on: bool) -> bool {
        if !self.cluster().cordon(node, on) {
            return false;
        }
        self.executor.cordon(node, on);
        true
    }

    pub fn drain(self: &Arc<Self>, node: &str, grace: std::time::Duration) -> Option<Vec<String>> {
        if !self.cordon(node, true) {
            return None;
        }
        let on_node = self.cluster().pods_on(node);
        let ctl = self.clone();
        let node = node.to_string();
        self.draining.lock().expect("draining").insert(node.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline && !ctl.cluster().pods_on(&node).is_empty()
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            for pod in ctl.cluster().gang_of(&ctl.cluster().pods_on(&node)) {
                tracing::warn!("drain {node}: evicting pod {pod}");
                ctl.evict(&pod, format!("pod evicted: node {node} is being drained"));
            }
            // Drained once the evicted pods are gone (they hold their node until then).
            while !ctl.cluster().pods_on(&node).is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            ctl.draining.lock().expect("draining").remove(&node);
        });
        Some(on_node)
    }

    /// Whether a drain of `node` is under way (cordoned, pods not all gone yet).
    pub fn is_draining(&self, node: &str) -> bool {
        self.draining.lock().expect("draining").contains(node)
    }

    /// Kill a pod to free its node; its step fails with `why`.
    pub fn evict(&self, pod: &str, why: String) {
        self.executor.evict(pod, why);
    }

    pub fn cluster(&self) -> &cluster_shell::Cluster {
        &self.cluster
    }

    /// Suspend every running workflow (the emergency stop's Argo half); returns their names.
    pub async fn suspend_all(&self) -> Vec<String> {
        let handles: Vec<(String, mpsc::UnboundedSender<Cmd>)> = self
            .live
            .lock()
            .expect("live map")
            .iter()
            .map(|(u, h)| (u.clone(), h.clone()))
            .collect();
        let mut out = Vec::new();
        for (_, h) in handles {
            let (tx, rx) = oneshot::channel();
            self.metrics.queued();
            if h.send(Cmd::Event(Event::Suspend, Some(tx))).is_ok() {
                if let Ok(v) = rx.await {
                    out.push(
                        v["metadata"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    /// The artifact repository of a workflow in `namespace` (`artifactRepositoryRef.key`,
    /// else the default), narrowed to the namespace's keys.
    pub fn repository_for(
        &self,
        namespace: &str,
        key: Option<&str>,
    ) -> Result<artifact_repo::Repository, artifact_repo::RepoError> {
        self.executor.repository_for(namespace, key)
    }

    /// A pod's directory (its logs, its result).
    pub fn pod_dir(&self, namespace: &str, pod: &str) -> std::path::PathBuf {
        self.executor.pod_dir(&pod_key(namespace, pod))
    }
}

/// The pod names of a workflow's pod nodes, from its status.
pub fn pod_names(workflow: &str, status: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(nodes) = status.pointer("/status/nodes").and_then(Value::as_object) {
        for n in nodes.values() {
            if n["type"] == "Pod" {
                let name = n["name"].as_str().unwrap_or_default();
                let tmpl = n["templateName"].as_str().unwrap_or_default();
                out.push(workflow_engine::pod_name(workflow, name, tmpl));
            }
        }
    }
    out
}

/// An object's `metadata.labels` as (key, value) pairs.
fn labels_of(obj: &Value) -> Vec<(String, String)> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A new object's `metadata.uid`: a random (version 4) UUID, as Kubernetes makes them.
pub fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Argo's artifact garbage collection: the keys in the repository whose strategy (the
/// artifact's `artifactGC.strategy`, else the workflow's) is `when`. Artifacts in a bucket of
/// their own are the user's and left alone.
fn collectable(wf: &Value, when: &str) -> Vec<String> {
    let default = wf
        .pointer("/spec/artifactGC/strategy")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut out: std::collections::BTreeSet<String> = Default::default();
    let nodes = wf.pointer("/status/nodes").and_then(Value::as_object);
    for n in nodes.into_iter().flat_map(|m| m.values()) {
        for a in n["outputs"]["artifacts"].as_array().into_iter().flatten() {
            let strategy = a
                .pointer("/artifactGC/strategy")
                .and_then(Value::as_str)
                .unwrap_or(default);
            let own_bucket = a.pointer("/s3/bucket").is_some();
            if let (true, false, Some(key)) =
                (strategy == when, own_bucket, a["local"]["key"].as_str())
            {
                if artifact_repo::check_key(key).is_ok() {
                    out.insert(key.to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Run `f`, turning a panic into its message: one workflow's bug is that workflow's Error.
fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
    })
}

mod resources;
mod run;
#[cfg(test)]
mod tests;

pub use resources::ChildSubmitter;
