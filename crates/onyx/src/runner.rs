//! Drives one workflow engine to completion on this machine: carries out its actions (pods
//! as processes, HTTP calls, resource objects) and feeds the results back as events.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use local_executor::{Layout, PodInput};
use serde_json::Value;
use workflow_engine::{Action, Engine, Event, Phase, PodResult, TemplateStore, Time};
use workflow_model::{Template, WorkflowObject};

use crate::names::random_suffix;
use crate::resource::{ObjectStore, Spawner};

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Turn SIGINT and SIGTERM into a request to terminate the running workflows.
pub fn handle_interrupts() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

#[derive(Clone)]
pub struct RunOptions {
    pub home: PathBuf,
    pub params: Vec<(String, String)>,
    /// Resume manual suspend nodes as soon as they are reached, with the values the UI's
    /// resume dialog proposes (the node's inputs of the same name).
    pub auto_resume: bool,
    /// Stop (terminate) the workflow after this long.
    pub timeout: Option<Duration>,
}

pub struct Shared {
    pub store: Arc<TemplateStore>,
    pub objects: Arc<ObjectStore>,
    pub exe: PathBuf,
}

/// Something to show while the workflow runs.
pub trait Watcher {
    fn update(&mut self, engine: &Engine, changed: &[String]);
}

pub struct NoWatch;
impl Watcher for NoWatch {
    fn update(&mut self, _: &Engine, _: &[String]) {}
}

pub struct RunOutcome {
    pub phase: Phase,
    pub workflow: Value,
    pub timed_out: bool,
}

pub fn workflow_name(wf: &WorkflowObject) -> String {
    if !wf.metadata.name.is_empty() {
        wf.metadata.name.clone()
    } else {
        format!("{}{}", wf.metadata.generate_name, random_suffix())
    }
}

fn now() -> Time {
    Utc::now()
}

/// Run one workflow to its end.
pub fn run(
    wf: &WorkflowObject,
    name: &str,
    shared: &Arc<Shared>,
    opts: &RunOptions,
    watcher: &mut dyn Watcher,
) -> anyhow::Result<RunOutcome> {
    let layout = Layout::new(opts.home.clone());
    layout.install_stand_ins()?;
    let sandboxes = Arc::new(local_executor::direct::Sandboxes::new(&opts.home));
    // Config maps visible to the engine: those loaded plus those resources created.
    let mut store = (*shared.store).clone();
    store.config_maps.extend(shared.objects.config_maps());
    let uid = workflow_runtime::new_uid();
    let mut engine = Engine::new(
        wf,
        name,
        &uid,
        &opts.params,
        Arc::new(store),
        local_executor::actions::node_config(),
        now(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let has_resources = wf.spec.templates.iter().any(|t| t.resource.is_some())
        || wf.spec.workflow_template_ref.is_some();
    shared.objects.put(engine.to_json());
    let (tx, rx) = mpsc::channel::<Event>();
    let mut pids: HashMap<String, u32> = HashMap::new();
    let started = Instant::now();
    let mut timed_out = false;
    let mut terminating = false;
    let actions = engine.start(now());
    let mut ctx = Dispatch {
        shared: shared.clone(),
        layout,
        sandboxes,
        waiters: Waiters::new(),
        tx: tx.clone(),
        opts: opts.clone(),
        workflow: name.to_string(),
    };
    ctx.dispatch(actions, &mut pids);
    let changed = engine.take_changed();
    watcher.update(&engine, &changed);
    let mut resumed: HashMap<String, Instant> = HashMap::new();
    while !engine.is_finished() {
        let wait = match engine.next_wakeup() {
            Some(t) => (t - now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(Duration::from_millis(500)),
            None => Duration::from_millis(500),
        };
        let event = match rx.recv_timeout(wait) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => Event::Tick,
            Err(RecvTimeoutError::Disconnected) => Event::Tick,
        };
        let actions = engine.handle(event, now());
        ctx.dispatch(actions, &mut pids);
        // Drain whatever else arrived, so bursts are handled together.
        while let Ok(ev) = rx.try_recv() {
            let actions = engine.handle(ev, now());
            ctx.dispatch(actions, &mut pids);
        }
        if opts.auto_resume {
            let waiting: Vec<(String, BTreeMap<String, String>)> = engine
                .waiting_suspend_nodes()
                .into_iter()
                .map(|(n, t)| {
                    (
                        n.id.clone(),
                        supplied_defaults(n.inputs.as_ref(), t.as_deref()),
                    )
                })
                .collect();
            for (id, supplied) in waiting {
                let first = *resumed.entry(id.clone()).or_insert_with(Instant::now);
                if first.elapsed() >= Duration::from_millis(200) {
                    let actions = engine.handle(
                        Event::Resume {
                            node: Some(id),
                            supplied,
                        },
                        now(),
                    );
                    ctx.dispatch(actions, &mut pids);
                }
            }
        }
        // Ctrl-C or SIGTERM: terminate the workflow, which kills its pods (they run in process
        // groups of their own, so the terminal's signal does not reach them).
        if interrupted() && !terminating {
            terminating = true;
            let actions = engine.handle(Event::Shutdown { terminate: true }, now());
            ctx.dispatch(actions, &mut pids);
        }
        if let Some(limit) = opts.timeout {
            if started.elapsed() > limit && !timed_out {
                timed_out = true;
                let actions = engine.handle(Event::Shutdown { terminate: true }, now());
                ctx.dispatch(actions, &mut pids);
            }
        }
        // Resource templates may read this workflow's own object (and patch it).
        let changed = engine.take_changed();
        if has_resources && !changed.is_empty() {
            shared.objects.put(engine.to_json());
        }
        watcher.update(&engine, &changed);
    }
    // Daemons and anything still running end with the workflow.
    for pid in pids.values() {
        local_executor::kill_group(*pid);
    }
    let json = engine.to_json();
    shared.objects.put(json.clone());
    Ok(RunOutcome {
        phase: engine.phase(),
        workflow: json,
        timed_out,
    })
}

/// The values a resume proposes for `supplied` outputs: the suspend node's input of the same
/// name, else a marker value.
fn supplied_defaults(
    inputs: Option<&workflow_model::Arguments>,
    t: Option<&Template>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(t) = t else { return out };
    for p in &t.outputs.parameters {
        if p.value_from.as_ref().is_some_and(|v| v.supplied.is_some()) {
            let v = inputs
                .and_then(|i| i.parameters.iter().find(|x| x.name == p.name))
                .and_then(|x| x.value.clone().or(x.default.clone()))
                .map(|v| v.0)
                .or_else(|| {
                    p.value_from
                        .as_ref()
                        .and_then(|v| v.default.clone())
                        .map(|d| d.0)
                })
                .unwrap_or_else(|| "resumed by onyx".into());
            out.insert(p.name.clone(), v);
        }
    }
    out
}

struct Dispatch {
    shared: Arc<Shared>,
    layout: Layout,
    sandboxes: Arc<local_executor::direct::Sandboxes>,
    waiters: Waiters,
    tx: Sender<Event>,
    opts: RunOptions,
    workflow: String,
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that wait for pods and collect their outcomes, kept for the next pod: a thread
/// started per pod cost more than the pod's own wait (its start, and the fresh memory its
/// allocator then faults in). A job never queues behind a busy thread: it goes to an idle one
/// (claimed before the send) or to a new one.
struct Waiters {
    tx: Sender<Job>,
    rx: Arc<std::sync::Mutex<mpsc::Receiver<Job>>>,
    idle: Arc<std::sync::atomic::AtomicUsize>,
}

impl Waiters {
    fn new() -> Waiters {
        let (tx, rx) = mpsc::channel();
        Waiters {
            tx,
            rx: Arc::new(std::sync::Mutex::new(rx)),
            idle: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    fn run(&self, job: impl FnOnce() + Send + 'static) {
        use std::sync::atomic::Ordering;
        let claimed = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if claimed {
            if let Err(mpsc::SendError(job)) = self.tx.send(Box::new(job)) {
                std::thread::spawn(job);
            }
            return;
        }
        let (rx, idle) = (self.rx.clone(), self.idle.clone());
        std::thread::spawn(move || {
            job();
            loop {
                idle.fetch_add(1, Ordering::AcqRel);
                // The lock is held only while waiting for the next job; the sender hung up
                // (the run ended) ends the thread.
                let next = rx
                    .lock()
                    .map_err(|_| ())
                    .and_then(|r| r.recv().map_err(|_| ()));
                match next {
                    Ok(job) => job(),
                    Err(()) => return,
                }
            }
        });
    }
}

impl Dispatch {
    /// Report a pod that could not run.
    fn pod_failed(&self, node_id: String, exit_code: Option<i32>, message: String) {
        let _ = self.tx.send(Event::PodDone(PodResult {
            node_id,
            exit_code,
            message: Some(message),
            ..Default::default()
        }));
    }

    fn dispatch(&mut self, actions: Vec<Action>, pids: &mut HashMap<String, u32>) {
        for a in actions {
            match a {
                Action::StartPod(req) => {
                    let config_maps = self.shared.objects.config_maps();
                    let mut cms = self.shared.store.config_maps.clone();
                    cms.extend(config_maps);
                    let input = PodInput {
                        pod_name: &req.pod_name,
                        dir_key: &req.pod_name,
                        workflow: &self.workflow,
                        template: &req.template,
                        input_artifacts: &req.input_artifacts,
                        output_artifacts: &req.output_artifacts,
                        volumes: &req.volumes,
                        config_maps: &cms,
                        capture_result: req.capture_result,
                    };
                    let node_id = req.node_id.clone();
                    let dir = self.layout.pod_dir(&req.pod_name);
                    // A workflow of the same name may have run in this home before: its pods'
                    // results and claims are not this run's.
                    for f in ["result.json", "started", "lock"] {
                        let _ = std::fs::remove_file(dir.join(f));
                    }
                    let spec = match local_executor::prepare_pod(&self.layout, &input) {
                        // `onyx run` runs its own user's workflow: its pods' root is the host's
                        // (as `docker run`'s), still inside the OCI sandbox.
                        Ok(spec) => local_executor::PodSpec {
                            host_users: true,
                            ..spec
                        },
                        Err(e) => {
                            self.pod_failed(node_id, None, e.to_string());
                            continue;
                        }
                    };
                    let outputs = req.output_artifacts.clone();
                    let tx = self.tx.clone();
                    // Single-container pods start directly; others (and any direct start that
                    // fails to set up) go through the `onyx exec-pod` wrapper.
                    if local_executor::direct::eligible(&spec) {
                        match local_executor::direct::start(&spec, &dir, &self.sandboxes) {
                            Ok(pod) => {
                                pids.insert(node_id.clone(), pod.id());
                                let _ = self.tx.send(Event::PodRunning {
                                    node_id: node_id.clone(),
                                    host: None,
                                });
                                self.waiters.run(move || {
                                    let outcome = local_executor::direct::finish(pod, &dir);
                                    let _ = tx.send(Event::PodDone(
                                        local_executor::actions::pod_result(
                                            node_id,
                                            Some(outcome),
                                            &outputs,
                                        ),
                                    ));
                                });
                                continue;
                            }
                            Err(local_executor::direct::DirectError::Setup(_)) => {
                                local_executor::clean_pod_dir(&dir)
                            }
                            Err(e) => {
                                local_executor::clean_pod_dir(&dir);
                                let code = matches!(
                                    e,
                                    local_executor::direct::DirectError::CommandNotFound(_)
                                )
                                .then_some(127);
                                self.pod_failed(node_id, code, e.to_string());
                                continue;
                            }
                        }
                    }
                    match local_executor::launch(&self.shared.exe, &dir, &spec) {
                        Err(e) => {
                            self.pod_failed(node_id, None, e.to_string());
                        }
                        Ok(mut running) => {
                            pids.insert(node_id.clone(), running.child.id());
                            let _ = self.tx.send(Event::PodRunning {
                                node_id: node_id.clone(),
                                host: None,
                            });
                            self.waiters.run(move || {
                                let _ = running.child.wait();
                                local_executor::clean_pod_dir(&running.dir);
                                let outcome = local_executor::read_outcome(&running.dir);
                                let _ = tx.send(Event::PodDone(
                                    local_executor::actions::pod_result(node_id, outcome, &outputs),
                                ));
                            });
                        }
                    }
                }
                // `onyx run` has no metrics endpoint: a sample has nowhere to go. Samples
                // that cannot be computed still show as the workflow's MetricsError.
                Action::Metric(_) => {}
                Action::KillPod { node_id, .. } => {
                    if let Some(pid) = pids.remove(&node_id) {
                        local_executor::kill_group(pid);
                    }
                }
                Action::Http { node_id, template } => {
                    let tx = self.tx.clone();
                    std::thread::spawn(move || {
                        let _ = tx.send(local_executor::actions::http_call(node_id, &template));
                    });
                }
                Action::Resource {
                    node_id, template, ..
                } => {
                    let tx = self.tx.clone();
                    let shared = self.shared.clone();
                    let opts = self.opts.clone();
                    let workflow = self.workflow.clone();
                    std::thread::spawn(move || {
                        let spawner: Spawner = {
                            let shared = shared.clone();
                            let opts = opts.clone();
                            Arc::new(move |obj: Value| spawn_child(&shared, &opts, obj))
                        };
                        let deadline = opts.timeout.map(|t| Instant::now() + t);
                        let objects = crate::resource::RunObjects {
                            store: &shared.objects,
                            spawn: &spawner,
                        };
                        let owner = format!("{workflow}/{node_id}");
                        let out = resource_template::run(
                            &objects, &template, &workflow, &owner, deadline,
                        );
                        let _ = tx.send(Event::ResourceDone {
                            node_id,
                            phase_ok: out.ok,
                            message: out.message,
                            outputs: out.outputs,
                        });
                    });
                }
            }
        }
    }
}

/// Run a Workflow created by a resource template, in the background.
fn spawn_child(shared: &Arc<Shared>, opts: &RunOptions, obj: Value) -> Result<String, String> {
    let text = serde_json::to_string(&obj).map_err(|e| e.to_string())?;
    let (loaded, diags) = workflow_model::load_str("resource manifest", &text);
    if let Some(d) = diags
        .iter()
        .find(|d| d.severity == workflow_model::Severity::Error)
    {
        return Err(d.to_string());
    }
    let Some(workflow_model::Object::Workflow(wf)) = loaded.into_iter().next().map(|l| l.object)
    else {
        return Err("the manifest is not a Workflow".into());
    };
    let name = workflow_name(&wf);
    let mut child_opts = opts.clone();
    child_opts.params = Vec::new();
    let shared = shared.clone();
    let n = name.clone();
    let mut placeholder = obj.clone();
    placeholder["metadata"]["name"] = Value::String(name.clone());
    placeholder["status"] = serde_json::json!({"phase": "Pending"});
    shared.objects.put(placeholder);
    std::thread::spawn(move || {
        if let Err(e) = run(&wf, &n, &shared, &child_opts, &mut NoWatch) {
            let mut failed = obj;
            failed["metadata"]["name"] = Value::String(n.clone());
            failed["status"] = serde_json::json!({"phase": "Error", "message": e.to_string()});
            shared.objects.put(failed);
        }
    });
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job never waits behind a busy waiter: the first blocks until the second has run,
    /// and threads freed by finished jobs take the next ones.
    #[test]
    fn waiters_run_jobs_side_by_side_and_are_reused() {
        let w = Waiters::new();
        let (a_tx, a_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<&'static str>();
        let d = done_tx.clone();
        w.run(move || {
            a_rx.recv_timeout(Duration::from_secs(10)).expect("B ran");
            d.send("a").unwrap();
        });
        let d = done_tx.clone();
        w.run(move || {
            a_tx.send(()).unwrap();
            d.send("b").unwrap();
        });
        let mut got = vec![
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        ];
        got.sort();
        assert_eq!(got, ["a", "b"]);
        // Both threads are idle now (each counts itself before it waits).
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.idle.load(std::sync::atomic::Ordering::Acquire) < 2 {
            assert!(Instant::now() < deadline, "the threads did not come back");
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..10 {
            let d = done_tx.clone();
            w.run(move || d.send(if i % 2 == 0 { "even" } else { "odd" }).unwrap());
        }
        for _ in 0..10 {
            done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
    }
}
