//! The executor: pods created in the workflow's namespace, bound by ONYX's scheduler through
//! the `Binding` subresource, followed through one watch of every ONYX pod, and their ends
//! reported to the engine.
//!
//! A step's pod goes: asked of the scheduler (`cluster_shell::Cluster::ask`, all-or-nothing
//! for a gang) → created with `schedulerName: onyx` and the grant kept on it → bound to the
//! granted node → `Running` → `Succeeded`/`Failed`, when its `main` log is copied to the pod's
//! directory (what the server's log routes read), the pod is labelled completed, as Argo's
//! controller does, and its resources go back to the scheduler. Pods are kept afterwards, as
//! with Argo's default pod GC; `forget` (the workflow was deleted) deletes them.
//!
//! Idempotent by pod: `start_pod` of a pod that exists (made before a restart, or by the
//! server that led before a fail-over) adopts it — holds its grant again and follows it —
//! and never creates a second. Each step's report gets at most one `PodRunning` and exactly
//! one `PodDone`: the watch's events for a pod go through `observe`, which removes the pod
//! from the followed set when it reports its end.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cluster_shell::{Cluster, Grant, Waited};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use workflow_engine::{Event, PodResult};
use workflow_model::Template;
use workflow_runtime::{pod_key, Executor, JobStart, PodStart, Report};

use crate::pod_shape::{self, PodContext, MANAGED_LABEL, WORKFLOW_LABEL};
use crate::pod_status::{pod_phase, PodPhase};

/// The most of a pod's log the server keeps (the kubelet's own rotation keeps 10 MiB a file by
/// default): a step that prints without end fills neither the server's memory nor its disk.
const LOG_LIMIT: i64 = 64 * 1024 * 1024;

/// Where pods run and what they are given beside their template.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    /// ONYX's home: each pod's copied logs are under `pods/NAMESPACE/POD/`.
    pub home: PathBuf,
    /// ONYX's executor image (see `pod_shape`); `None` runs containers as written.
    pub executor_image: Option<String>,
    /// The default artifact repository, and the named ones.
    pub repository: artifact_repo::Repository,
    pub repositories: HashMap<String, artifact_repo::Repository>,
    /// Each namespace's Pod Security level (others: `default_pod_security`): every pod is
    /// checked at it as it is finally made, before it is created.
    pub pod_security: HashMap<String, admission::PodSecurityLevel>,
    pub default_pod_security: admission::PodSecurityLevel,
    /// `(namespace, workflow)` of the workflows ONYX runs, when the server started: only their
    /// pods found running then hold what they were granted before the workflows resume. Any
    /// other pod labelled as ONYX's is not trusted with a grant (anyone who may create a pod
    /// can label it so).
    pub live_workflows: HashSet<(String, String)>,
    /// Namespaces no step may run in beside the cluster's own (`kube-*`): the server's.
    pub forbidden_namespaces: HashSet<String>,
}

/// A pod being followed to its end.
struct Followed {
    node_id: String,
    report: Report,
    running_said: bool,
    waiting_said: Option<String>,
    /// When the pod was known to exist (made, or found): a re-list that misses it after
    /// that means it is gone.
    exists_since: Option<std::time::Instant>,
}

pub struct KubernetesExecutor {
    client: kube::Client,
    pub cluster: Arc<Cluster>,
    settings: KubernetesSettings,
    followed: Mutex<HashMap<String, Followed>>,
    /// Pods killed while they waited for the scheduler: they must not be created.
    cancelled: Mutex<HashSet<String>>,
    /// Pods deleted to free their node, with why: their step fails with it.
    evicted: Mutex<HashMap<String, String>>,
}

impl KubernetesExecutor {
    /// An executor on `client`'s cluster, placing pods on `cluster` (its nodes read from the
    /// same API). Every ONYX pod already running holds its grant again before this returns,
    /// so nothing is placed on what they hold; then the watches of ONYX's pods and of the
    /// Nodes start. Call inside a Tokio runtime.
    pub async fn new(
        client: kube::Client,
        cluster: Cluster,
        settings: KubernetesSettings,
    ) -> Result<Arc<KubernetesExecutor>, kube::Error> {
        let me = Arc::new(KubernetesExecutor {
            client,
            cluster: Arc::new(cluster),
            settings,
            followed: Mutex::new(HashMap::new()),
            cancelled: Mutex::new(HashSet::new()),
            evicted: Mutex::new(HashMap::new()),
        });
        let api: Api<Pod> = Api::all(me.client.clone());
        let running = api
            .list(&kube::api::ListParams::default().labels(&format!("{MANAGED_LABEL}=true")))
            .await?;
        for pod in running.items {
            me.observe_at(
                &key_of(&pod),
                &serde_json::to_value(&pod).unwrap_or_default(),
                true,
            );
        }
        tokio::spawn(watch(Arc::downgrade(&me), me.client.clone()));
        tokio::spawn(watch_nodes(Arc::downgrade(&me.cluster), me.client.clone()));
        Ok(me)
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn run(self: Arc<Self>, start: PodStart, report: Report) {
        let PodStart {
            namespace,
            workflow,
            request: req,
            ask,
            ..
        } = start;
        let key = pod_key(&namespace, &req.pod_name);
        let node_id = req.node_id.clone();
        let fail = |message: String| {
            Event::PodDone(PodResult {
                node_id: node_id.clone(),
                message: Some(message),
                ..Default::default()
            })
        };
        if namespace.starts_with("kube-") || self.settings.forbidden_namespaces.contains(&namespace)
        {
            return report(fail(format!(
                "namespace {namespace} is the cluster's or ONYX's own: no step runs there"
            )));
        }
        let level = self
            .settings
            .pod_security
            .get(&namespace)
            .copied()
            .unwrap_or(self.settings.default_pod_security);
        let api = self.pods(&namespace);
        // A pod that exists is adopted, never made again.
        match api.get_opt(&req.pod_name).await {
            Ok(Some(pod)) => return self.adopt(&key, &workflow, pod, node_id, report),
            Ok(None) => {}
            Err(e) => return report(fail(format!("reading pod {key}: {e}"))),
        }
        let ask = match ask {
            Ok(a) => a,
            Err(e) => return report(fail(e.to_string())),
        };
        let asked = ask.clone();
        self.cluster.ask(&key, ask);
        self.settle();
        let waited = self
            .cluster
            .wait_for_grant(
                &key,
                || self.cancelled.lock().expect("cancelled").remove(&key),
                |why| {
                    report(Event::PodWaiting {
                        node_id: node_id.clone(),
                        message: why.to_string(),
                    })
                },
            )
            .await;
        let grant: Grant = match waited {
            Waited::Granted(g) => *g,
            Waited::Cancelled => {
                self.settle();
                let why = self.evicted.lock().expect("evicted").remove(&key);
                return report(fail(why.unwrap_or_else(|| {
                    "pod was killed while it waited to be scheduled".into()
                })));
            }
            Waited::Refused(message) => {
                self.settle();
                return report(fail(message));
            }
            Waited::Evicted => return report(fail("pod was evicted before it started".into())),
        };
        let manifest = pod_shape::pod_manifest(
            &req,
            &PodContext {
                namespace: &namespace,
                workflow: &workflow,
                executor_image: self.settings.executor_image.as_deref(),
                grant: serde_json::to_string(&grant).ok(),
                pod_spec_patch: req.template.pod_spec_patch.as_deref(),
                now: chrono_now(),
                restricted: level == admission::PodSecurityLevel::Restricted,
            },
        );
        // The pod as it is finally made — parameters substituted, patch merged — which
        // submission could not see: checked at the namespace's level, and against what the
        // scheduler placed it with.
        let checked = manifest.map_err(|e| e.to_string()).and_then(|m| {
            let refusals = admission::pod_security::check_pod(level, &m);
            if !refusals.is_empty() {
                let each: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
                return Err(format!(
                    "the pod is refused at Pod Security level {level}: {}",
                    each.join("; ")
                ));
            }
            match pod_shape::beyond_grant(&m, &asked) {
                Some(why) => Err(why),
                None => Ok(m),
            }
        });
        let mut pod: Pod = match checked.and_then(|m| {
            serde_json::from_value(m).map_err(|e| format!("the pod is not a valid Pod: {e}"))
        }) {
            Ok(p) => p,
            Err(message) => {
                self.cluster.release(&key);
                self.settle();
                return report(fail(message));
            }
        };
        // Owned by the workflow's Workflow object where the cluster has one (kubectl's, or the
        // one ONYX keeps for `kubectl get workflows`), as Argo's pods are: deleting it there
        // lets the cluster's garbage collector take the pods.
        if let Some(owner) = self.workflow_owner(&namespace, &workflow).await {
            pod.metadata.owner_references = Some(vec![owner]);
        }
        // Followed before it exists, so that no event of it is missed.
        self.follow(&key, node_id.clone(), report.clone());
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => self.exists(&key),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Made between the read above and now (a second start of the same step).
                self.unfollow(&key);
                return match api.get_opt(&req.pod_name).await {
                    Ok(Some(pod)) => self.adopt(&key, &workflow, pod, node_id, report),
                    _ => report(fail(format!("pod {key} exists but cannot be read"))),
                };
            }
            Err(e) => {
                self.unfollow(&key);
                self.cluster.release(&key);
                self.settle();
                return report(fail(format!("creating pod {key}: {e}")));
            }
        }
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": req.pod_name, "namespace": namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": grant.node},
        });
        let bound = api
            .create_subresource::<Value>(
                "binding",
                &req.pod_name,
                &PostParams::default(),
                serde_json::to_vec(&binding).unwrap_or_default(),
            )
            .await;
        if let Err(e) = bound {
            // The pod was made but cannot run where the scheduler put it: it goes, and the
            // step fails with why (its retry strategy may try again).
            let _ = api.delete(&req.pod_name, &DeleteParams::default()).await;
            if let Some(f) = self.unfollow(&key) {
                self.cluster.release(&key);
                self.settle();
                (f.report)(fail(format!("binding pod {key} to {}: {e}", grant.node)));
            }
            return;
        }
        // A kill that came while the pod was being made is carried out now.
        if self.cancelled.lock().expect("cancelled").remove(&key) {
            self.delete(&key);
        }
    }

    /// A reference to the Workflow object `namespace/workflow` in the cluster, if there is one.
    async fn workflow_owner(
        &self,
        namespace: &str,
        workflow: &str,
    ) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
        let ar = kube::api::ApiResource {
            group: "argoproj.io".into(),
            version: "v1alpha1".into(),
            api_version: "argoproj.io/v1alpha1".into(),
            kind: "Workflow".into(),
            plural: "workflows".into(),
        };
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &ar);
        let wf = api.get_opt(workflow).await.ok()??;
        Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "Workflow".into(),
                name: workflow.to_string(),
                uid: wf.metadata.uid?,
                controller: Some(true),
                block_owner_deletion: None,
            },
        )
    }

    /// Follow a pod that exists: hold what it was granted again, and report where it stands.
    fn adopt(&self, key: &str, workflow: &str, pod: Pod, node_id: String, report: Report) {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if labels.get(WORKFLOW_LABEL).map(String::as_str) != Some(workflow)
            || labels.get(MANAGED_LABEL).map(String::as_str) != Some("true")
        {
            return report(Event::PodDone(PodResult {
                node_id,
                message: Some(format!(
                    "pod {key} exists and is not this workflow's: ONYX does not take over pods it did not make"
                )),
                ..Default::default()
            }));
        }
        let grant = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(pod_shape::GRANT_ANNOTATION))
            .and_then(|g| serde_json::from_str::<Grant>(g).ok());
        let finished = matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        if let (Some(g), false) = (&grant, finished) {
            self.cluster.hold(key, g);
        }
        self.follow(key, node_id, report);
        self.exists(key);
        self.observe(key, &serde_json::to_value(&pod).unwrap_or_default());
    }

    fn follow(&self, key: &str, node_id: String, report: Report) {
        self.followed.lock().expect("followed").insert(
            key.to_string(),
            Followed {
                node_id,
                report,
                running_said: false,
                waiting_said: None,
                exists_since: None,
            },
        );
    }

    /// The pod is known to exist from now on.
    fn exists(&self, key: &str) {
        if let Some(f) = self.followed.lock().expect("followed").get_mut(key) {
            f.exists_since.get_or_insert_with(std::time::Instant::now);
        }
    }

    /// After the watch listed the pods again (it lost its connection): a followed pod that
    /// existed before the list began and is not in it may have been deleted meanwhile, its
    /// deletion event lost. Each is read once more; one that is gone ends its step.
    fn relisted(self: &Arc<Self>, began: std::time::Instant, seen: &HashSet<String>) {
        let candidates = {
            let followed = self.followed.lock().expect("followed");
            missed(
                followed.iter().map(|(k, f)| (k.as_str(), f.exists_since)),
                began,
                seen,
            )
        };
        for key in candidates {
            let me = self.clone();
            tokio::spawn(async move {
                let (namespace, name) = key.split_once('/').unwrap_or(("", &key));
                match me.pods(namespace).get_opt(name).await {
                    Ok(Some(pod)) => {
                        me.observe(&key, &serde_json::to_value(&pod).unwrap_or_default())
                    }
                    Ok(None) => me.gone(&key),
                    Err(e) => tracing::warn!("reading pod {key} after a re-list: {e}"),
                }
            });
        }
    }

    fn unfollow(&self, key: &str) -> Option<Followed> {
        self.followed.lock().expect("followed").remove(key)
    }

    /// A pod as the API last showed it: report what changed for its step.
    fn observe(&self, key: &str, pod: &Value) {
        self.observe_at(key, pod, false)
    }

    /// `at_start`: the pod is in the list read before anything is placed.
    fn observe_at(&self, key: &str, pod: &Value, at_start: bool) {
        let phase = pod_phase(pod);
        let mut followed = self.followed.lock().expect("followed");
        let Some(f) = followed.get_mut(key) else {
            drop(followed);
            self.account(key, pod, &phase, at_start);
            return;
        };
        match phase {
            PodPhase::Pending(why) => {
                if let Some(why) = why.filter(|w| f.waiting_said.as_ref() != Some(w)) {
                    (f.report)(Event::PodWaiting {
                        node_id: f.node_id.clone(),
                        message: why.clone(),
                    });
                    f.waiting_said = Some(why);
                }
            }
            PodPhase::Running { node } => {
                if !f.running_said {
                    f.running_said = true;
                    (f.report)(Event::PodRunning {
                        node_id: f.node_id.clone(),
                        host: node,
                    });
                    drop(followed);
                    self.stream_log(key);
                }
            }
            PodPhase::Done(mut result) => {
                let Some(f) = followed.remove(key) else {
                    return;
                };
                drop(followed);
                result.node_id = f.node_id.clone();
                if let Some(why) = self.evicted.lock().expect("evicted").remove(key) {
                    result.message = Some(why);
                }
                self.finish(key, pod, f, result);
            }
        }
    }

    /// A pod no step follows (yet): one made before a restart, whose step the resumed
    /// workflow adopts later, still holds its node and devices, so the scheduler counts them
    /// from the watch's first list on, before any pending pod could be given them; once it
    /// ends, they are free again.
    fn account(&self, key: &str, pod: &Value, phase: &PodPhase, at_start: bool) {
        match phase {
            PodPhase::Done(_) => self.cluster.release(key),
            PodPhase::Pending(_) | PodPhase::Running { .. } => {
                if !at_start || pod["metadata"]["deletionTimestamp"].is_string() {
                    return;
                }
                // Only a pod of a workflow ONYX runs in that very namespace, whose grant is
                // that namespace's.
                let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
                let workflow = pod["metadata"]["labels"][WORKFLOW_LABEL]
                    .as_str()
                    .unwrap_or_default();
                if !self
                    .settings
                    .live_workflows
                    .contains(&(namespace.to_string(), workflow.to_string()))
                {
                    return;
                }
                let grant = pod["metadata"]["annotations"][pod_shape::GRANT_ANNOTATION]
                    .as_str()
                    .and_then(|g| serde_json::from_str::<Grant>(g).ok());
                if let Some(g) = grant.filter(|g| g.ask.namespace == namespace) {
                    self.cluster.hold(key, &g);
                }
            }
        }
    }

    /// Copy a running pod's `main` log into its directory as the kubelet serves it, so that
    /// a followed log (`argo logs --follow`, the UI) shows lines as they come; the whole log
    /// replaces it when the pod ends.
    fn stream_log(&self, key: &str) {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api = self.pods(namespace);
        let dir = self.pod_dir(key);
        let name = name.to_string();
        tokio::spawn(async move {
            use futures::AsyncReadExt;
            use tokio::io::AsyncWriteExt;
            let params = LogParams {
                container: Some("main".into()),
                follow: true,
                limit_bytes: Some(LOG_LIMIT),
                ..Default::default()
            };
            let Ok(mut stream) = api.log_stream(&name, &params).await else {
                return;
            };
            let _ = tokio::fs::create_dir_all(&dir).await;
            let Ok(mut file) = tokio::fs::File::create(dir.join("main.log")).await else {
                return;
            };
            // Bytes as they come, in bounded chunks: a line without end is never held whole.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if dir.join("result.json").exists() {
                            return;
                        }
                        let _ = file.write_all(&buf[..n]).await;
                        let _ = file.flush().await;
                    }
                }
            }
        });
    }

    /// A followed pod is gone from the API before it ended.
    fn gone(&self, key: &str) {
        let Some(f) = self.unfollow(key) else { return };
        let message = self
            .evicted
            .lock()
            .expect("evicted")
            .remove(key)
            .unwrap_or_else(|| "pod was deleted".into());
        let result = PodResult {
            node_id: f.node_id.clone(),
            message: Some(message),
            ..Default::default()
        };
        self.finish(key, &Value::Null, f, result);
    }

    /// Report a step's end once its pod's logs are kept and its resources are back.
    fn finish(&self, key: &str, pod: &Value, f: Followed, result: PodResult) {
        self.cancelled.lock().expect("cancelled").remove(key);
        self.cluster.release(key);
        self.settle();
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api = self.pods(namespace);
        let dir = self.pod_dir(key);
        let name = name.to_string();
        let exists = !pod.is_null();
        // A pod that ran and ended between two looks of the watch was never seen running.
        let host = pod["spec"]["nodeName"].as_str().map(String::from);
        tokio::spawn(async move {
            let _ = tokio::fs::create_dir_all(&dir).await;
            if exists {
                // Copied in bounded chunks (a finished pod's whole log is never held in
                // memory), then renamed into place: a log still being streamed into the old
                // file (see `stream_log`) writes to what is then no longer the pod's log.
                let tmp = dir.join("main.log.tmp");
                let params = LogParams {
                    container: Some("main".into()),
                    limit_bytes: Some(LOG_LIMIT),
                    ..Default::default()
                };
                if let (Ok(mut stream), Ok(mut file)) = (
                    api.log_stream(&name, &params).await,
                    tokio::fs::File::create(&tmp).await,
                ) {
                    use futures::AsyncReadExt;
                    use tokio::io::AsyncWriteExt;
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || file.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = file.flush().await;
                    let _ = tokio::fs::rename(&tmp, dir.join("main.log")).await;
                }
                let patch = json!({"metadata": {"labels": {pod_shape::COMPLETED_LABEL: "true"}}});
                if let Err(e) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!("labelling pod {name} completed: {e}");
                }
            }
            // The log routes take this file as the sign that the pod's logs are whole.
            let _ = tokio::fs::write(dir.join("result.json"), b"{}").await;
            if !f.running_said && exists {
                (f.report)(Event::PodRunning {
                    node_id: f.node_id.clone(),
                    host,
                });
            }
            (f.report)(Event::PodDone(result));
        });
    }

    /// Carry out the evictions the last cycles decided (preemption, reclaim).
    fn settle(&self) {
        for (pod, why) in self.cluster.take_evictions() {
            tracing::warn!("evicting pod {pod}: {why}");
            Executor::evict(self, &pod, why);
        }
    }

    /// Delete a pod with its grace period; the watch reports its end.
    fn delete(&self, key: &str) {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key));
        let api = self.pods(namespace);
        let name = name.to_string();
        tokio::spawn(async move {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {}
                Err(e) => tracing::warn!("deleting pod {name}: {e}"),
            }
        });
    }
}

fn chrono_now() -> workflow_engine::Time {
    workflow_engine::Time::from(std::time::SystemTime::now())
}

fn key_of(pod: &Pod) -> String {
    pod_key(
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    )
}

/// One watch of every ONYX pod in the cluster, for as long as the executor lives. The
/// watcher re-lists after a lost connection, so an end missed meanwhile is seen in the list.
async fn watch(me: std::sync::Weak<KubernetesExecutor>, client: kube::Client) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{MANAGED_LABEL}=true"));
    let mut events = watcher(api, config).default_backoff().boxed();
    // A list under way: when it began, and the pods it has shown.
    let mut relist: Option<(std::time::Instant, HashSet<String>)> = None;
    while let Some(ev) = events.next().await {
        let Some(me) = me.upgrade() else { return };
        match ev {
            Ok(watcher::Event::InitApply(pod)) => {
                let key = key_of(&pod);
                if let Some((_, seen)) = relist.as_mut() {
                    seen.insert(key.clone());
                }
                me.observe(&key, &serde_json::to_value(&pod).unwrap_or_default());
            }
            Ok(watcher::Event::Apply(pod)) => {
                me.observe(
                    &key_of(&pod),
                    &serde_json::to_value(&pod).unwrap_or_default(),
                );
            }
            Ok(watcher::Event::Delete(pod)) => {
                let key = key_of(&pod);
                // Its last state first: a pod that ended and was then deleted ended.
                me.observe(&key, &serde_json::to_value(&pod).unwrap_or_default());
                me.gone(&key);
                me.cluster.release(&key);
            }
            Ok(watcher::Event::Init) => {
                relist = Some((std::time::Instant::now(), HashSet::new()));
            }
            Ok(watcher::Event::InitDone) => {
                if let Some((began, seen)) = relist.take() {
                    me.relisted(began, &seen);
                }
            }
            Err(e) => tracing::warn!("watching ONYX's pods: {e}"),
        }
    }
}

/// The cluster's Nodes, kept current in the scheduler: a node that turns Ready, loses a
/// taint, is cordoned (`spec.unschedulable`) or joins is seen at once; a deleted node takes no
/// more pods.
async fn watch_nodes(cluster: std::sync::Weak<Cluster>, client: kube::Client) {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        match ev {
            Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                let (spec, _) =
                    crate::nodes::node_spec(&serde_json::to_value(&node).unwrap_or_default());
                cluster.set_node(spec);
            }
            Ok(watcher::Event::Delete(node)) => {
                let (mut spec, _) =
                    crate::nodes::node_spec(&serde_json::to_value(&node).unwrap_or_default());
                spec.unschedulable = true;
                cluster.set_node(spec);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching the cluster's nodes: {e}"),
        }
    }
}

impl Executor for KubernetesExecutor {
    fn start_pod(self: Arc<Self>, pod: PodStart, report: Report) {
        tokio::spawn(self.run(pod, report));
    }

    fn start_job(self: Arc<Self>, job: JobStart, report: Report) {
        report(Event::ResourceDone {
            node_id: job.node_id,
            phase_ok: false,
            message: "Volcano jobs from resource templates do not run on the Kubernetes executor yet (docs/kubernetes.md)".into(),
            outputs: Vec::new(),
        });
    }

    fn call_http(
        self: Arc<Self>,
        _namespace: &str,
        node_id: String,
        _template: Arc<Template>,
        report: Report,
    ) {
        report(Event::HttpDone {
            node_id,
            status: 0,
            body: String::new(),
            headers: Default::default(),
            error: Some(
                "http templates do not run on the Kubernetes executor yet (docs/kubernetes.md)"
                    .into(),
            ),
        });
    }

    fn kill(&self, pod: &str) {
        // A pod still waiting for the scheduler must not be made; one being made is deleted
        // once it is (`run` looks after binding); one that exists is deleted now.
        self.cancelled
            .lock()
            .expect("cancelled")
            .insert(pod.to_string());
        self.cluster.changed().notify_waiters();
        self.delete(pod);
    }

    fn evict(&self, pod: &str, why: String) {
        self.evicted
            .lock()
            .expect("evicted")
            .insert(pod.to_string(), why);
        let followed = self.followed.lock().expect("followed").contains_key(pod);
        if !followed {
            // Not made yet: it must not be.
            return self.kill(pod);
        }
        // Through the Eviction API, as `kubectl drain` evicts: a PodDisruptionBudget that
        // allows no disruption now answers 429, and the eviction is tried again until it does.
        let (namespace, name) = pod.split_once('/').unwrap_or(("", pod));
        let api = self.pods(namespace);
        let name = name.to_string();
        tokio::spawn(async move {
            loop {
                match api.evict(&name, &Default::default()).await {
                    Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {
                        return
                    }
                    Err(kube::Error::Api(kube::error::ErrorResponse { code: 429, .. })) => {
                        tracing::info!("evicting pod {name}: its disruption budget says not yet");
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    }
                    Err(e) => {
                        tracing::warn!("evicting pod {name}: {e}; deleting it");
                        let _ = api.delete(&name, &DeleteParams::default()).await;
                        return;
                    }
                }
            }
        });
    }

    fn cordon(&self, node: &str, on: bool) {
        let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        let node = node.to_string();
        tokio::spawn(async move {
            let patch = json!({"spec": {"unschedulable": on}});
            if let Err(e) = api
                .patch(&node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!("marking node {node} unschedulable={on}: {e}");
            }
        });
    }

    fn forget(&self, pod: &str) {
        let _ = std::fs::remove_dir_all(self.pod_dir(pod));
        // What was kept of a kill or an eviction goes with the workflow.
        self.cancelled.lock().expect("cancelled").remove(pod);
        self.evicted.lock().expect("evicted").remove(pod);
        self.delete(pod);
    }

    fn repository_for(
        &self,
        namespace: &str,
        key: Option<&str>,
    ) -> Result<artifact_repo::Repository, artifact_repo::RepoError> {
        key.and_then(|k| self.settings.repositories.get(k))
            .unwrap_or(&self.settings.repository)
            .for_namespace(namespace)
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        self.settings.home.join("pods").join(pod)
    }
}

/// The followed pods a list that `began` then and showed `seen` missed, though they existed
/// before it began (a pod still being made may not be in it yet).
pub(crate) fn missed<'a>(
    followed: impl Iterator<Item = (&'a str, Option<std::time::Instant>)>,
    began: std::time::Instant,
    seen: &HashSet<String>,
) -> Vec<String> {
    let mut out: Vec<String> = followed
        .filter(|(k, since)| since.is_some_and(|t| t < began) && !seen.contains(*k))
        .map(|(k, _)| k.to_string())
        .collect();
    out.sort();
    out
}
