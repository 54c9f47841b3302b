//! One running workflow's task: its events logged, then handed to the engine, then the
//! engine's actions carried out (pods, HTTP calls, metrics, notifications), its status
//! persisted and, at its end, archived and its artifacts collected.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use store::{ArchivedRow, EventRow};
use tokio::sync::{mpsc, oneshot};
use workflow_engine::{Action, Engine, Event, Time};

use crate::executor::{pod_key, volcano_manifest, JobStart, PodStart};

use super::{
    collectable, contain, labels_of, nanos, now, Begin, Cmd, Controller, Logged, WatchEvent,
};

impl Controller {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn spawn(
        self: &Arc<Self>,
        uid: String,
        namespace: String,
        name: String,
        engine: Engine,
        seq: i64,
        pending: Vec<Action>,
        begin: Begin,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.live
            .lock()
            .expect("live map")
            .insert(uid.clone(), tx.clone());
        let run = Run {
            ctl: self.clone(),
            uid,
            namespace,
            name,
            engine,
            seq,
            tx,
            pods: HashMap::new(),
            resources: HashMap::new(),
            last_phase: String::new(),
            dirty: true,
            last_persist: Instant::now(),
        };
        tokio::spawn(run.drive(rx, pending, begin));
    }
}

/// One running workflow.
struct Run {
    ctl: Arc<Controller>,
    uid: String,
    namespace: String,
    name: String,
    engine: Engine,
    seq: i64,
    tx: mpsc::UnboundedSender<Cmd>,
    /// node id → pod name, of pods started and not reported done.
    pods: HashMap<String, String>,
    /// node id → the stop flag of a resource node still running (see `resources`).
    resources: HashMap<String, Arc<AtomicBool>>,
    last_phase: String,
    dirty: bool,
    last_persist: Instant,
}

/// Status snapshots of a busy workflow are written at most this often (its engine is always
/// asked for reads, so readers never see them stale; only lists and watchers do).
const PERSIST_EVERY: Duration = Duration::from_millis(500);

impl Run {
    async fn drive(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Cmd>,
        pending: Vec<Action>,
        begin: Begin,
    ) {
        let first = match begin {
            Begin::Replayed => None,
            Begin::Start => Some(vec![]),
            Begin::Retry(kept) => {
                self.engine.keep(&kept);
                Some(vec![Logged::Kept(kept)])
            }
        };
        if let Some(mut entries) = first {
            let at = now();
            entries.push(Logged::Start);
            let entries = entries.into_iter().map(|e| (at, e)).collect();
            if self.log(entries).await.is_err() {
                return self.abandon();
            }
            let actions = match contain(|| self.engine.start(at)) {
                Ok(a) => a,
                Err(why) => return self.panicked(why).await,
            };
            self.dispatch(actions);
            self.notify().await;
        }
        self.dispatch(pending);
        loop {
            self.dirty |= !self.engine.take_changed().is_empty();
            if self.engine.is_finished() {
                self.finish().await;
                return;
            }
            self.persist(false).await;
            let wake = self.engine.next_wakeup();
            let mut wait = wake
                .map(|t| (t - now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600));
            if self.dirty {
                wait = wait.min(PERSIST_EVERY);
            }
            let first = tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => Some(c),
                    None => return,
                },
                _ = tokio::time::sleep(wait) => None,
            };
            let mut cmds: Vec<Cmd> = first.into_iter().collect();
            while let Ok(c) = rx.try_recv() {
                cmds.push(c);
            }
            let at = now();
            let handled_at = Instant::now();
            let mut events: Vec<Event> = Vec::new();
            let mut replies: Vec<oneshot::Sender<Value>> = Vec::new();
            let queued = cmds.iter().filter(|c| matches!(c, Cmd::Event(..))).count();
            for c in cmds {
                match c {
                    Cmd::Event(ev, reply) => {
                        events.push(ev);
                        replies.extend(reply);
                    }
                    Cmd::Snapshot(reply) => replies.push(reply),
                    Cmd::Stop(reply) => {
                        self.stop_all();
                        self.ctl.live.lock().expect("live map").remove(&self.uid);
                        let _ = reply.send(());
                        return;
                    }
                }
            }
            if self.engine.next_wakeup().is_some_and(|t| t <= at) {
                events.push(Event::Tick);
            }
            if !events.is_empty() {
                let entries = events
                    .iter()
                    .map(|e| (at, Logged::Event(e.clone())))
                    .collect();
                if self.log(entries).await.is_err() {
                    return self.abandon();
                }
                for ev in events {
                    match &ev {
                        Event::PodDone(r) => {
                            self.pods.remove(&r.node_id);
                        }
                        Event::ResourceDone { node_id, .. } => {
                            self.resources.remove(node_id);
                        }
                        _ => {}
                    }
                    let actions = match contain(|| self.engine.handle(ev, at)) {
                        Ok(a) => a,
                        Err(why) => return self.panicked(why).await,
                    };
                    self.dispatch(actions);
                }
            }
            if queued > 0 || !replies.is_empty() {
                self.ctl
                    .metrics
                    .operated(queued, handled_at.elapsed().as_secs_f64());
            }
            if !replies.is_empty() {
                let snapshot = self.engine.to_json();
                for r in replies {
                    let _ = r.send(snapshot.clone());
                }
            }
        }
    }

    /// The engine panicked on this workflow: it ends in Error, saying so, and nothing else
    /// stops (the server, the other workflows, the next restart).
    async fn panicked(self, why: String) {
        for pod in self.pods.values() {
            self.ctl.executor.kill(pod);
        }
        self.ctl.live.lock().expect("live map").remove(&self.uid);
        let status = contain(|| self.engine.to_json()).unwrap_or(Value::Null);
        self.ctl
            .quarantine(&self.uid, &self.namespace, &self.name, status, &why)
            .await;
    }

    /// The store failed: leave the workflow to the next start of the server, which replays it.
    fn abandon(self) {
        tracing::error!(
            "workflow {}/{}: the store refused its event log; it stops here and resumes when the server restarts",
            self.namespace,
            self.name
        );
        self.ctl.live.lock().expect("live map").remove(&self.uid);
    }

    async fn log(&mut self, entries: Vec<(Time, Logged)>) -> Result<(), store::StoreError> {
        let ticket = self
            .engine
            .spec()
            .arguments
            .parameters
            .iter()
            .find(|p| p.name == audit::TICKET_PARAMETER)
            .and_then(|p| p.value.as_ref().map(|v| v.0.clone()));
        for (at, e) in &entries {
            let (event, node) = event_summary(e);
            self.ctl.audit.record(audit::Record::new(
                "workflow",
                *at,
                json!({"namespace": self.namespace, "name": self.name, "uid": self.uid,
                       "event": event, "node": node, "ticketId": ticket}),
            ));
        }
        let rows: Vec<EventRow> = entries
            .into_iter()
            .map(|(at, e)| {
                let row = EventRow {
                    seq: self.seq,
                    at_ns: nanos(at),
                    body: serde_json::to_string(&e).unwrap_or_default(),
                };
                self.seq += 1;
                row
            })
            .collect();
        // A failure that may pass (a dropped connection, a busy database) is tried again,
        // backing off, before the workflow is left to the next start; appends are idempotent.
        let mut attempt = 0;
        loop {
            match self.ctl.store.append_events(&self.uid, rows.clone()).await {
                Err(e) if transient(&e) && attempt + 1 < STORE_TRIES => {
                    tracing::warn!(
                        "workflow {}/{}: logging its events: {e}; trying again",
                        self.namespace,
                        self.name
                    );
                    tokio::time::sleep(store_backoff(attempt)).await;
                    attempt += 1;
                }
                done => return done,
            }
        }
    }

    fn dispatch(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::StartPod(req) => {
                    self.pods
                        .insert(req.node_id.clone(), pod_key(&self.namespace, &req.pod_name));
                    let tx = self.tx.clone();
                    let metrics = self.ctl.metrics.clone();
                    let namespace = self.namespace.clone();
                    let running_since = Mutex::new(None::<Instant>);
                    let spec = self.engine.spec();
                    let ask = cluster_shell::ask_of(
                        &self.namespace,
                        &req.template,
                        &cluster_shell::PodDefaults::of(spec),
                    );
                    let pod = PodStart {
                        namespace: self.namespace.clone(),
                        workflow: self.name.clone(),
                        repository: repository_key(&spec.artifact_repository_ref),
                        request: *req,
                        ask,
                    };
                    self.ctl.executor.clone().start_pod(
                        pod,
                        Arc::new(move |ev| {
                            match &ev {
                                Event::PodRunning { .. } => {
                                    *running_since.lock().expect("pod clock") =
                                        Some(Instant::now());
                                }
                                Event::PodDone(_) => {
                                    let since = running_since.lock().expect("pod clock").take();
                                    if let Some(t) = since {
                                        metrics.pod_finished(&namespace, t.elapsed().as_secs_f64());
                                    }
                                }
                                _ => {}
                            }
                            metrics.queued();
                            let _ = tx.send(Cmd::Event(ev, None));
                        }),
                    );
                }
                Action::KillPod {
                    node_id, pod_name, ..
                } => {
                    if let Some(stop) = self.resources.remove(&node_id) {
                        stop.store(true, Ordering::Relaxed);
                    }
                    self.ctl.executor.kill(&pod_key(&self.namespace, &pod_name))
                }
                Action::Metric(m) => {
                    if let Err(e) = self.ctl.metrics.apply(&self.uid, &m) {
                        tracing::warn!("workflow {}/{}: {e}", self.namespace, self.name);
                    }
                }
                Action::Http { node_id, template } => {
                    let tx = self.tx.clone();
                    let metrics = self.ctl.metrics.clone();
                    self.ctl.executor.clone().call_http(
                        &self.namespace,
                        node_id,
                        template,
                        Arc::new(move |ev| {
                            metrics.queued();
                            let _ = tx.send(Cmd::Event(ev, None));
                        }),
                    );
                }
                Action::Resource {
                    node_id,
                    pod_name,
                    template,
                } => match volcano_manifest(&template) {
                    Some(manifest) => {
                        self.pods
                            .insert(node_id.clone(), pod_key(&self.namespace, &pod_name));
                        let tx = self.tx.clone();
                        let metrics = self.ctl.metrics.clone();
                        let job = JobStart {
                            namespace: self.namespace.clone(),
                            workflow: self.name.clone(),
                            node_id,
                            pod_name,
                            template,
                            manifest,
                        };
                        self.ctl.executor.clone().start_job(
                            job,
                            Arc::new(move |ev| {
                                metrics.queued();
                                let _ = tx.send(Cmd::Event(ev, None));
                            }),
                        );
                    }
                    None => {
                        let stop = Arc::new(AtomicBool::new(false));
                        self.resources.insert(node_id.clone(), stop.clone());
                        let objects = super::resources::StoreObjects {
                            ctl: self.ctl.clone(),
                            namespace: self.namespace.clone(),
                            handle: tokio::runtime::Handle::current(),
                            cancelled: stop,
                        };
                        let owner = format!("{}/{node_id}", self.uid);
                        let workflow = self.name.clone();
                        let tx = self.tx.clone();
                        let metrics = self.ctl.metrics.clone();
                        let slots = self.ctl.resource_slots.clone();
                        tokio::spawn(async move {
                            // A node waits for a slot without a thread: however many resource
                            // nodes tenants start, the blocking pool pods start on stays free.
                            let Ok(slot) = slots.acquire_owned().await else {
                                return;
                            };
                            let _ = tokio::task::spawn_blocking(move || {
                                let _slot = slot;
                                let out = resource_template::run(
                                    &objects, &template, &workflow, &owner, None,
                                );
                                metrics.queued();
                                let _ = tx.send(Cmd::Event(
                                    Event::ResourceDone {
                                        node_id,
                                        phase_ok: out.ok,
                                        message: out.message,
                                        outputs: out.outputs,
                                    },
                                    None,
                                ));
                            })
                            .await;
                        });
                    }
                },
            }
        }
    }

    async fn persist(&mut self, force: bool) {
        let phase = self.engine.phase().as_str().to_string();
        let phase_changed = phase != self.last_phase;
        if !(force || phase_changed || (self.dirty && self.last_persist.elapsed() >= PERSIST_EVERY))
        {
            return;
        }
        let json = self.engine.to_json();
        let finished = self.engine.is_finished().then(|| nanos(now()));
        if let Err(e) = self
            .ctl
            .store
            .update_status(&self.uid, &phase, finished, json.to_string())
            .await
        {
            tracing::error!(
                "workflow {}/{}: saving its status: {e}",
                self.namespace,
                self.name
            );
            return;
        }
        self.last_phase = phase;
        self.dirty = false;
        self.last_persist = Instant::now();
        let _ = self.ctl.watch.send(WatchEvent {
            kind: "MODIFIED",
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            object: Arc::new(json),
        });
    }

    /// Tell the listener of the workflow's phase now (its start, its end).
    async fn notify(&mut self) {
        let mut json = self.engine.to_json();
        json["metadata"]["namespace"] = Value::String(self.namespace.clone());
        self.ctl.listener.phase(json, self.uid.clone()).await;
    }

    /// Kill every pod still running and stop every resource node.
    fn stop_all(&self) {
        for pod in self.pods.values() {
            self.ctl.executor.kill(pod);
        }
        for stop in self.resources.values() {
            stop.store(true, Ordering::Relaxed);
        }
    }

    async fn finish(mut self) {
        // Daemons and anything else still running end with the workflow.
        self.stop_all();
        self.persist(true).await;
        // Committed before the archive marks the workflow finished: a crash in between
        // replays the workflow, whose messages are then already queued (by key).
        self.notify().await;
        let json = self.engine.to_json();
        let mut artifacts = Vec::new();
        // Namespaces are checked where they enter, so this names the namespace's part of a
        // configured repository.
        match self.ctl.executor.repository_for(
            &self.namespace,
            repository_key(&self.engine.spec().artifact_repository_ref).as_deref(),
        ) {
            Ok(repo) => {
                // Collected at once: not billed as storage.
                let collected = collectable(&json, "OnWorkflowCompletion");
                for key in stored_artifacts(&json)
                    .into_iter()
                    .filter(|k| !collected.contains(k))
                {
                    let bytes = match repo.size(&key).await {
                        Ok(b) => b,
                        Err(e) => {
                            tracing::warn!("artifact {key}: its size: {e}");
                            0
                        }
                    };
                    artifacts.push(store::ArtifactRow {
                        uid: self.uid.clone(),
                        key,
                        namespace: self.namespace.clone(),
                        workflow: self.name.clone(),
                        bytes: bytes as i64,
                        stored_ns: nanos(now()),
                    });
                }
                for key in collected {
                    if let Err(e) = repo.delete(&key).await {
                        tracing::warn!("artifact GC of {}: {e}", repo.describe(&key));
                    }
                }
            }
            Err(e) => tracing::error!(
                "workflow {}/{}: its artifact repository: {e}",
                self.namespace,
                self.name
            ),
        }
        if let Err(e) = self.ctl.store.artifacts_stored(artifacts).await {
            tracing::error!(
                "workflow {}/{}: recording artifact sizes: {e}",
                self.namespace,
                self.name
            );
        }
        if let (Some(s), Some(f)) = (self.engine.started_at(), self.engine.finished_at()) {
            self.ctl.metrics.workflow_finished(
                &self.namespace,
                self.engine.phase().as_str(),
                (f - s).num_milliseconds() as f64 / 1000.0,
            );
        }
        let labels = labels_of(&json);
        let created = json
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| nanos(t.with_timezone(&Utc)))
            .unwrap_or_default();
        let archived = ArchivedRow {
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            phase: self.engine.phase().as_str().to_string(),
            created_ns: created,
            finished_ns: Some(nanos(now())),
            labels,
            body: json.to_string(),
        };
        if let Err(e) = self.ctl.store.archive(archived).await {
            tracing::error!("workflow {}/{}: archiving: {e}", self.namespace, self.name);
        }
        self.ctl.live.lock().expect("live map").remove(&self.uid);
    }
}

/// A logged entry's name (`Start`, `PodDone`, `Suspend`, …) and the node it is about.
fn event_summary(e: &Logged) -> (String, Option<String>) {
    match e {
        Logged::Start => ("Start".into(), None),
        Logged::Kept(_) => ("Retry".into(), None),
        Logged::Event(ev) => match serde_json::to_value(ev).unwrap_or(Value::Null) {
            Value::String(name) => (name, None),
            Value::Object(m) => match m.into_iter().next() {
                Some((name, body)) => {
                    let node = body["node_id"]
                        .as_str()
                        .or(body["node"].as_str())
                        .map(str::to_string);
                    (name, node)
                }
                None => ("Event".into(), None),
            },
            _ => ("Event".into(), None),
        },
    }
}

/// How many times a workflow tries to log its events before it is left to the next start of
/// the server (which replays it): with [`store_backoff`], some 40 s in all.
const STORE_TRIES: u32 = 10;

/// The wait before try `attempt + 2`: doubling from 100 ms, at most 15 s.
pub(super) fn store_backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64 << attempt.min(8)).min(Duration::from_secs(15))
}

/// Whether a store failure may pass if tried again (the database itself failed: a dropped
/// connection, a lock, a full disk), rather than say something final (fenced by a newer
/// leader, the writer gone, a row that exists or does not).
pub(super) fn transient(e: &store::StoreError) -> bool {
    matches!(e, store::StoreError::Db(_))
}

/// The named repository a workflow's `artifactRepositoryRef` picks.
fn repository_key(r: &Option<Value>) -> Option<String> {
    r.as_ref()?.get("key")?.as_str().map(String::from)
}

/// The keys of the output artifacts a workflow's nodes stored in the repository.
fn stored_artifacts(wf: &Value) -> Vec<String> {
    let mut out: std::collections::BTreeSet<String> = Default::default();
    let nodes = wf.pointer("/status/nodes").and_then(Value::as_object);
    for n in nodes.into_iter().flat_map(|m| m.values()) {
        for a in n["outputs"]["artifacts"].as_array().into_iter().flatten() {
            if let Some(key) = a["local"]["key"].as_str() {
                if artifact_repo::check_key(key).is_ok() {
                    out.insert(key.to_string());
                }
            }
        }
    }
    out.into_iter().collect()
}
