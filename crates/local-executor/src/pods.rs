//! The server's executor on this machine ([`workflow_runtime::Executor`]): every pod runs through the `onyx exec-pod` wrapper, whose claim on
//! the pod directory (see `crate::durable`) outlives a crash of the server. Starting a
//! pod is therefore idempotent by pod name: a pod that already started is waited for (or its
//! result collected), never started again.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::durable::{probe, PodState};
use crate::{Layout, PodInput};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use workflow_engine::{Event, PodRequest, PodResult};

use cluster_shell::{Ask, AskError, Cluster, Grant, Waited};
use workflow_model::Template;
use workflow_runtime::{pod_key, Executor, JobStart, PodStart, Report};

/// Where a pod's grant is kept in its directory.
const GRANT_FILE: &str = "grant.json";

pub struct Pods {
    pub cluster: Arc<Cluster>,
    /// Pods killed while they waited to be scheduled: they must not start.
    cancelled: std::sync::Mutex<HashSet<String>>,
    /// The replica pods of each Volcano job, by the job's pod: killing the job kills them.
    job_pods: std::sync::Mutex<HashMap<String, Vec<String>>>,
    /// Woken by every kill, so that a pod killed while its process was being started is
    /// killed once it exists (scheduling cycles do not wake running pods).
    kills: Notify,
    /// Pods killed to free their node (drain), with why: their result says so.
    evicted: std::sync::Mutex<HashMap<String, String>>,
    layout: Layout,
    exe: PathBuf,
    global: Option<Arc<Semaphore>>,
    per_namespace: HashMap<String, Arc<Semaphore>>,
    /// Namespaces whose pods run without network.
    no_egress: HashSet<String>,
    /// Namespaces at Pod Security level `privileged`: their pods' root is the host's.
    privileged: HashSet<String>,
    /// Where artifacts are kept.
    pub repository: artifact_repo::Repository,
    /// Named repositories (`artifactRepositoryRef.key`).
    repositories: HashMap<String, artifact_repo::Repository>,
    secrets_file: Option<PathBuf>,
    /// Host files no pod may see (the server's config, token and secrets).
    hidden: Vec<PathBuf>,
}

/// What the server's configuration says of where and how pods run.
#[derive(Debug, Clone, Default)]
pub struct PodSettings {
    /// `$ONYX_HOME`: pods' directories and the local artifact repository are under it.
    pub home: PathBuf,
    /// The `onyx` binary, whose `exec-pod` and `exec-http` run pods and calls.
    pub exe: PathBuf,
    /// The default artifact repository; `None` keeps artifacts under `home`.
    pub repository: Option<artifact_repo::Repository>,
    /// Named repositories (`artifactRepositoryRef.key`).
    pub repositories: HashMap<String, artifact_repo::Repository>,
    /// The file Kubernetes-style secrets are read from.
    pub secrets_file: Option<PathBuf>,
    /// Host files no pod may see (the server's config, token and secrets).
    pub hidden: Vec<PathBuf>,
    /// Pods running at once across all namespaces (0: no limit).
    pub parallelism: usize,
    /// Pods running at once per namespace, where a namespace has a limit of its own.
    pub namespace_parallelism: HashMap<String, usize>,
    /// Namespaces whose pods (and `http` calls) run without network.
    pub no_egress: HashSet<String>,
    /// Namespaces at Pod Security level `privileged`: their pods' root is the host's.
    pub privileged: HashSet<String>,
}

fn limit(n: usize) -> Option<Arc<Semaphore>> {
    (n > 0).then(|| Arc::new(Semaphore::new(n)))
}

impl Pods {
    /// The pods of the server that runs the controllers: it adopts pods still running from an
    /// earlier life (or an earlier leader). A standby (`adopt` false) reads pods' logs and
    /// files but runs none.
    pub fn new(cfg: PodSettings, cluster: Cluster, adopt: bool) -> std::io::Result<Pods> {
        let layout = Layout::new(cfg.home.clone());
        if adopt {
            layout.install_stand_ins()?;
        }
        // Pods still running from an earlier life of the server hold what they held, before any
        // new pod is scheduled.
        let dirs = if adopt {
            std::fs::read_dir(layout.pod_dir("x").parent().unwrap_or(&cfg.home))
        } else {
            Err(std::io::ErrorKind::Unsupported.into())
        };
        // Pod directories are `pods/NAMESPACE/POD`.
        let pod_dirs = dirs.into_iter().flatten().flatten().flat_map(|ns| {
            let namespace = ns.file_name().to_string_lossy().to_string();
            std::fs::read_dir(ns.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(move |d| {
                    (
                        pod_key(&namespace, &d.file_name().to_string_lossy()),
                        d.path(),
                    )
                })
        });
        for (key, path) in pod_dirs {
            let grant = std::fs::read(path.join(GRANT_FILE))
                .ok()
                .and_then(|b| serde_json::from_slice::<Grant>(&b).ok());
            if let (Some(g), PodState::Running) = (grant, probe(&path)) {
                cluster.hold(&key, &g);
            }
        }
        let repository = cfg
            .repository
            .unwrap_or_else(|| artifact_repo::Repository::Local(layout.repository()));
        Ok(Pods {
            repository,
            repositories: cfg.repositories,
            secrets_file: cfg.secrets_file,
            hidden: cfg.hidden,
            cluster: Arc::new(cluster),
            cancelled: std::sync::Mutex::new(HashSet::new()),
            evicted: std::sync::Mutex::new(HashMap::new()),
            job_pods: std::sync::Mutex::new(HashMap::new()),
            kills: Notify::new(),
            layout,
            exe: cfg.exe,
            global: limit(cfg.parallelism),
            per_namespace: cfg
                .namespace_parallelism
                .into_iter()
                .filter_map(|(ns, n)| limit(n).map(|s| (ns, s)))
                .collect(),
            no_egress: cfg.no_egress,
            privileged: cfg.privileged,
        })
    }

    /// The repository of a workflow in `namespace`: the named one its
    /// `artifactRepositoryRef` picks, else the default — the namespace's part of it only.
    pub fn repository_for(
        &self,
        namespace: &str,
        key: Option<&str>,
    ) -> Result<artifact_repo::Repository, artifact_repo::RepoError> {
        key.and_then(|k| self.repositories.get(k))
            .unwrap_or(&self.repository)
            .for_namespace(namespace)
    }

    /// Whether `namespace`'s pods (and `http` templates) run without network.
    pub fn no_egress(&self, namespace: &str) -> bool {
        self.no_egress.contains(namespace)
    }

    /// A pod's directory, by its key ([`pod_key`]).
    pub fn pod_dir(&self, key: &str) -> PathBuf {
        self.layout.pod_dir(key)
    }

    async fn permits(&self, namespace: &str) -> Vec<OwnedSemaphorePermit> {
        let mut held = Vec::new();
        for s in [self.global.as_ref(), self.per_namespace.get(namespace)]
            .into_iter()
            .flatten()
        {
            if let Ok(p) = s.clone().acquire_owned().await {
                held.push(p);
            }
        }
        held
    }

    /// Run (or adopt, or collect) a pod; `report` gets `PodRunning` and then `PodDone`.
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        self: Arc<Self>,
        namespace: String,
        workflow: String,
        repository: Option<String>,
        req: PodRequest,
        ask: Result<Ask, AskError>,
        report: impl Fn(Event) + Send + 'static,
    ) {
        // Everything of the pod — its directory, its place in the scheduler, the ledger — is
        // keyed by namespace and name: two namespaces may have workflows (and pods) of one name.
        let pod = pod_key(&namespace, &req.pod_name);
        let dir = self.pod_dir(&pod);
        let node_id = req.node_id.clone();
        let done = |outcome: Option<crate::PodOutcome>| {
            Event::PodDone(crate::actions::pod_result(
                node_id.clone(),
                outcome,
                &req.output_artifacts,
            ))
        };
        match probe(&dir) {
            PodState::Finished(o) => {
                self.cluster.release(&pod);
                self.settle();
                return report(done(Some(o)));
            }
            PodState::Lost => {
                self.cluster.release(&pod);
                self.settle();
                return report(Event::PodDone(lost(&node_id)));
            }
            PodState::Running => {
                // Started before a restart: it still holds its node and devices.
                let held = std::fs::read(dir.join(GRANT_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Grant>(&b).ok());
                if let Some(g) = &held {
                    self.cluster.hold(&pod, g);
                }
                report(Event::PodRunning {
                    node_id: node_id.clone(),
                    host: held.map(|g| g.node),
                });
                let ev = self.adopt(&dir, &node_id, &req).await;
                self.cluster.release(&pod);
                self.settle();
                return report(ev);
            }
            PodState::NotStarted => {}
        }
        // The scheduler first (a pod waiting to be bound holds no parallelism slot), then the
        // slots.
        let fail = |node_id: String, message: String| {
            Event::PodDone(PodResult {
                node_id,
                message: Some(message),
                ..Default::default()
            })
        };
        let ask = match ask {
            Ok(a) => a,
            Err(e) => return report(fail(node_id, e.to_string())),
        };
        self.cluster.ask(&pod, ask);
        self.settle();
        let waited = self
            .cluster
            .wait_for_grant(
                &pod,
                || self.cancelled.lock().expect("cancelled").remove(&pod),
                |why| {
                    report(Event::PodWaiting {
                        node_id: node_id.clone(),
                        message: why.to_string(),
                    })
                },
            )
            .await;
        let grant = match waited {
            Waited::Granted(g) => *g,
            Waited::Cancelled => {
                self.settle();
                // An eviction (a drain) can reach a pod already bound but not yet started;
                // its step fails with the eviction's reason, as a started pod's does.
                let why = self.evicted.lock().expect("evicted").remove(&pod);
                return report(fail(
                    node_id,
                    why.unwrap_or_else(|| "pod was killed while it waited to be scheduled".into()),
                ));
            }
            Waited::Refused(message) => {
                self.settle();
                return report(fail(node_id, message));
            }
            Waited::Evicted => {
                return report(fail(node_id, "pod was evicted before it started".into()));
            }
        };
        // A grant that holds nothing (no devices, no requests, no gang) need not survive a
        // restart; skipping its file keeps a plain pod's start as cheap as before.
        if !grant.holds_nothing() {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(
                dir.join(GRANT_FILE),
                serde_json::to_vec(&grant).unwrap_or_default(),
            );
        }
        let _permits = self.permits(&namespace).await;
        let me = self.clone();
        let no_network = self.no_egress.contains(&namespace);
        let host_users = self.privileged.contains(&namespace);
        let pod_namespace = namespace.clone();
        let prepared = {
            let req = req.clone();
            let grant = grant.clone();
            let key = pod.clone();
            tokio::task::spawn_blocking(move || {
                let input = PodInput {
                    pod_name: &req.pod_name,
                    dir_key: &key,
                    workflow: &workflow,
                    template: &req.template,
                    input_artifacts: &req.input_artifacts,
                    output_artifacts: &req.output_artifacts,
                    volumes: &req.volumes,
                    config_maps: &HashMap::new(),
                    capture_result: req.capture_result,
                };
                let dir = me.layout.pod_dir(&key);
                let mut spec = crate::prepare_pod(&me.layout, &input).map_err(|e| e.to_string())?;
                spec.no_network = no_network;
                spec.namespace = pod_namespace;
                spec.secrets_file = me.secrets_file.clone();
                spec.hidden = me.hidden.clone();
                spec.host_users = host_users;
                match me
                    .repository_for(&spec.namespace, repository.as_deref())
                    .map_err(|e| e.to_string())?
                {
                    artifact_repo::Repository::S3(c) => spec.s3 = Some(c),
                    artifact_repo::Repository::Local(dir) => spec.artifacts_dir = Some(dir),
                }
                {
                    let g = &grant;
                    for c in spec
                        .init
                        .iter_mut()
                        .chain(spec.sidecars.iter_mut())
                        .chain(spec.main.iter_mut())
                    {
                        c.env.extend(g.env());
                    }
                }
                crate::wrapper_command(&me.exe, &dir, &spec).map_err(|e| e.to_string())
            })
            .await
        };
        let cmd = match prepared {
            Ok(Ok(cmd)) => cmd,
            Ok(Err(message)) => {
                self.cluster.release(&pod);
                self.settle();
                return report(Event::PodDone(PodResult {
                    node_id,
                    message: Some(message),
                    ..Default::default()
                }));
            }
            Err(join) => {
                self.cluster.release(&pod);
                self.settle();
                let message = join.to_string();
                return report(Event::PodDone(PodResult {
                    node_id,
                    message: Some(message),
                    ..Default::default()
                }));
            }
        };
        let mut child = match tokio::process::Command::from(cmd).spawn() {
            Ok(c) => c,
            Err(e) => {
                self.cluster.release(&pod);
                self.settle();
                return report(Event::PodDone(PodResult {
                    node_id,
                    message: Some(format!("starting the pod: {e}")),
                    ..Default::default()
                }));
            }
        };
        report(Event::PodRunning {
            node_id: node_id.clone(),
            host: Some(grant.node.clone()),
        });
        // A kill that came while the pod was being started (before its wrapper wrote the
        // `started` marker `kill` reads) is carried out here: `kill` wakes this loop.
        let pgid = child.id();
        loop {
            let wake = self.kills.notified();
            if self.cancelled.lock().expect("cancelled").remove(&pod) {
                if let Some(id) = pgid {
                    crate::kill_group(id);
                }
            }
            tokio::select! {
                _ = child.wait() => break,
                _ = wake => {}
            }
        }
        let outcome = crate::read_outcome(&dir);
        crate::clean_pod_dir(&dir);
        self.cluster.release(&pod);
        self.settle();
        let mut ev = done(outcome);
        if let (Some(why), Event::PodDone(r)) =
            (self.evicted.lock().expect("evicted").remove(&pod), &mut ev)
        {
            r.message = Some(why);
        }
        report(ev);
    }

    /// Wait for a pod started by an earlier life of the server.
    async fn adopt(&self, dir: &std::path::Path, node_id: &str, req: &PodRequest) -> Event {
        loop {
            match probe(dir) {
                PodState::Running => tokio::time::sleep(Duration::from_millis(100)).await,
                PodState::Finished(o) => {
                    crate::clean_pod_dir(dir);
                    return Event::PodDone(crate::actions::pod_result(
                        node_id.to_string(),
                        Some(o),
                        &req.output_artifacts,
                    ));
                }
                PodState::Lost | PodState::NotStarted => return Event::PodDone(lost(node_id)),
            }
        }
    }

    /// Kill every process of a pod, wherever it was started from (or keep it from starting if
    /// it still waits for GPUs).
    pub fn kill(&self, pod: &str) {
        let replicas = self.job_pods.lock().expect("job pods").get(pod).cloned();
        for r in replicas.unwrap_or_default() {
            self.kill(&r);
        }
        if !matches!(
            probe(&self.pod_dir(pod)),
            PodState::Running | PodState::Finished(_)
        ) {
            self.cancelled
                .lock()
                .expect("cancelled")
                .insert(pod.to_string());
            self.cluster.changed().notify_waiters();
            self.kills.notify_waiters();
        }
        let started = self.pod_dir(pod).join("started");
        if let Some(pid) = std::fs::read_to_string(started)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if matches!(probe(&self.pod_dir(pod)), PodState::Running) {
                crate::kill_group(pid);
            }
        }
    }

    /// Carry out the evictions the last cycles decided (preemption, reclaim).
    fn settle(&self) {
        for (pod, why) in self.cluster.take_evictions() {
            tracing::warn!("evicting pod {pod}: {why}");
            self.evict(&pod, why);
        }
    }

    pub(crate) fn set_job_pods(&self, job: &str, pods: Vec<String>) {
        let mut map = self.job_pods.lock().expect("job pods");
        if pods.is_empty() {
            map.remove(job);
        } else {
            map.insert(job.to_string(), pods);
        }
    }

    /// Kill a pod to free its node; its step fails with `why` (and is retried elsewhere if
    /// its retry strategy says so).
    pub fn evict(&self, pod: &str, why: String) {
        self.evicted
            .lock()
            .expect("evicted")
            .insert(pod.to_string(), why);
        self.kill(pod);
    }

    /// Remove a pod's directory (its workflow was deleted).
    pub fn remove(&self, pod: &str) {
        let _ = std::fs::remove_dir_all(self.pod_dir(pod));
    }
}

/// This machine's pods as the controller's executor.
impl Executor for Pods {
    fn start_pod(self: Arc<Self>, pod: PodStart, report: Report) {
        let PodStart {
            namespace,
            workflow,
            repository,
            request,
            ask,
        } = pod;
        tokio::spawn(
            self.run(namespace, workflow, repository, request, ask, move |ev| {
                report(ev)
            }),
        );
    }

    fn start_job(self: Arc<Self>, job: JobStart, report: Report) {
        tokio::spawn(self.run_job(job, move |ev| report(ev)));
    }

    fn call_http(
        self: Arc<Self>,
        namespace: &str,
        node_id: String,
        template: Arc<Template>,
        report: Report,
    ) {
        let no_network = self.no_egress(namespace);
        tokio::task::spawn_blocking(move || {
            report(crate::http_agent::http_agent(
                &self.exe, no_network, node_id, &template,
            ));
        });
    }

    fn kill(&self, pod: &str) {
        Pods::kill(self, pod)
    }

    fn evict(&self, pod: &str, why: String) {
        Pods::evict(self, pod, why)
    }

    fn forget(&self, pod: &str) {
        self.remove(pod)
    }

    fn repository_for(
        &self,
        namespace: &str,
        key: Option<&str>,
    ) -> Result<artifact_repo::Repository, artifact_repo::RepoError> {
        Pods::repository_for(self, namespace, key)
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        Pods::pod_dir(self, pod)
    }
}

fn lost(node_id: &str) -> PodResult {
    PodResult {
        node_id: node_id.to_string(),
        message: Some("pod lost: its process ended without leaving a result".into()),
        ..Default::default()
    }
}
