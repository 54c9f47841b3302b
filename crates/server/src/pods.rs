//! Pods for the server: every pod runs through the `onyx exec-pod` wrapper, whose claim on
//! the pod directory (see `local_executor::durable`) outlives a crash of the server. Starting a
//! pod is therefore idempotent by pod name: a pod that already started is waited for (or its
//! result collected), never started again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use local_executor::durable::{probe, PodState};
use local_executor::{Layout, PodInput};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use workflow_engine::{Event, PodRequest, PodResult};

use crate::config::ServerConfig;
use crate::gpus::{GpuPool, Grant};

pub struct Pods {
    pub gpus: Arc<GpuPool>,
    /// Pods killed while they waited for GPUs: they must not start.
    cancelled: std::sync::Mutex<std::collections::HashSet<String>>,
    layout: Layout,
    exe: PathBuf,
    global: Option<Arc<Semaphore>>,
    per_namespace: HashMap<String, Arc<Semaphore>>,
}

fn limit(n: usize) -> Option<Arc<Semaphore>> {
    (n > 0).then(|| Arc::new(Semaphore::new(n)))
}

impl Pods {
    pub fn new(cfg: &ServerConfig, gpus: GpuPool) -> std::io::Result<Pods> {
        let layout = Layout::new(cfg.home.clone());
        layout.install_stand_ins()?;
        Ok(Pods {
            gpus: Arc::new(gpus),
            cancelled: std::sync::Mutex::new(std::collections::HashSet::new()),
            layout,
            exe: cfg.exe.clone(),
            global: limit(cfg.parallelism),
            per_namespace: cfg
                .namespaces
                .iter()
                .filter_map(|(ns, p)| limit(p.parallelism).map(|s| (ns.clone(), s)))
                .collect(),
        })
    }

    pub fn pod_dir(&self, pod: &str) -> PathBuf {
        self.layout.pod_dir(pod)
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
    pub async fn run(
        self: Arc<Self>,
        namespace: String,
        workflow: String,
        req: PodRequest,
        report: impl Fn(Event) + Send + 'static,
    ) {
        let dir = self.pod_dir(&req.pod_name);
        let node_id = req.node_id.clone();
        let done = |outcome: Option<local_executor::PodOutcome>| {
            Event::PodDone(local_executor::actions::pod_result(
                node_id.clone(),
                outcome,
                &req.output_artifacts,
            ))
        };
        let pod = req.pod_name.clone();
        match probe(&dir) {
            PodState::Finished(o) => {
                self.gpus.release(&pod);
                return report(done(Some(o)));
            }
            PodState::Lost => {
                self.gpus.release(&pod);
                return report(Event::PodDone(lost(&node_id)));
            }
            PodState::Running => {
                // Started before a restart: it still holds its GPUs.
                if let Some(g) = std::fs::read(dir.join("gpus.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Grant>(&b).ok())
                {
                    self.gpus.hold(&pod, &g);
                }
                report(Event::PodRunning {
                    node_id: node_id.clone(),
                });
                let ev = self.adopt(&dir, &node_id, &req).await;
                self.gpus.release(&pod);
                return report(ev);
            }
            PodState::NotStarted => {}
        }
        // GPUs first (a pod waiting for GPUs holds no parallelism slot), then the slots.
        let fail = |node_id: String, message: String| {
            Event::PodDone(PodResult {
                node_id,
                message: Some(message),
                ..Default::default()
            })
        };
        let grant = match crate::gpus::requested(&req.template) {
            Err(message) => return report(fail(node_id, message)),
            Ok(0) => None,
            Ok(count) => {
                let mut said = String::new();
                loop {
                    let wake = self.gpus.released().notified();
                    if self.cancelled.lock().expect("cancelled").remove(&pod) {
                        return report(fail(
                            node_id,
                            "pod was killed while it waited for GPUs".into(),
                        ));
                    }
                    match self.gpus.try_acquire(&pod, count) {
                        Err(never) => return report(fail(node_id, never)),
                        Ok(Ok(g)) => break Some(g),
                        Ok(Err(why)) => {
                            if why != said {
                                report(Event::PodWaiting {
                                    node_id: node_id.clone(),
                                    message: why.clone(),
                                });
                                said = why;
                            }
                        }
                    }
                    wake.await;
                }
            }
        };
        if let Some(g) = &grant {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(
                dir.join("gpus.json"),
                serde_json::to_vec(g).unwrap_or_default(),
            );
        }
        let _permits = self.permits(&namespace).await;
        let me = self.clone();
        let prepared = {
            let req = req.clone();
            let grant = grant.clone();
            tokio::task::spawn_blocking(move || {
                let input = PodInput {
                    pod_name: &req.pod_name,
                    workflow: &workflow,
                    template: &req.template,
                    input_artifacts: &req.input_artifacts,
                    output_artifacts: &req.output_artifacts,
                    volumes: &req.volumes,
                    config_maps: &HashMap::new(),
                    capture_result: req.capture_result,
                };
                let dir = me.layout.pod_dir(&req.pod_name);
                let mut spec =
                    local_executor::prepare_pod(&me.layout, &input).map_err(|e| e.to_string())?;
                if let Some(g) = &grant {
                    for c in spec
                        .init
                        .iter_mut()
                        .chain(spec.sidecars.iter_mut())
                        .chain(spec.main.iter_mut())
                    {
                        c.env.extend(g.env());
                    }
                }
                local_executor::wrapper_command(&me.exe, &dir, &spec).map_err(|e| e.to_string())
            })
            .await
        };
        let cmd = match prepared {
            Ok(Ok(cmd)) => cmd,
            Ok(Err(message)) => {
                self.gpus.release(&pod);
                return report(Event::PodDone(PodResult {
                    node_id,
                    message: Some(message),
                    ..Default::default()
                }));
            }
            Err(join) => {
                self.gpus.release(&pod);
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
                self.gpus.release(&pod);
                return report(Event::PodDone(PodResult {
                    node_id,
                    message: Some(format!("starting the pod: {e}")),
                    ..Default::default()
                }));
            }
        };
        report(Event::PodRunning {
            node_id: node_id.clone(),
        });
        let _ = child.wait().await;
        let outcome = local_executor::read_outcome(&dir);
        local_executor::clean_pod_dir(&dir);
        self.gpus.release(&pod);
        report(done(outcome));
    }

    /// Wait for a pod started by an earlier life of the server.
    async fn adopt(&self, dir: &std::path::Path, node_id: &str, req: &PodRequest) -> Event {
        loop {
            match probe(dir) {
                PodState::Running => tokio::time::sleep(Duration::from_millis(100)).await,
                PodState::Finished(o) => {
                    local_executor::clean_pod_dir(dir);
                    return Event::PodDone(local_executor::actions::pod_result(
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
        if !matches!(
            probe(&self.pod_dir(pod)),
            PodState::Running | PodState::Finished(_)
        ) {
            self.cancelled
                .lock()
                .expect("cancelled")
                .insert(pod.to_string());
            self.gpus.released().notify_waiters();
        }
        let started = self.pod_dir(pod).join("started");
        if let Some(pid) = std::fs::read_to_string(started)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if matches!(probe(&self.pod_dir(pod)), PodState::Running) {
                local_executor::kill_group(pid);
            }
        }
    }

    /// Remove a pod's directory (its workflow was deleted).
    pub fn remove(&self, pod: &str) {
        let _ = std::fs::remove_dir_all(self.pod_dir(pod));
    }
}

fn lost(node_id: &str) -> PodResult {
    PodResult {
        node_id: node_id.to_string(),
        message: Some("pod lost: its process ended without leaving a result".into()),
        ..Default::default()
    }
}
