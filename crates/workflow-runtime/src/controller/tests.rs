//! The controller's tests: in-process, over a real SQLite store, with a fake executor that
//! records what it was asked to run and lets the test say what became of it — as Argo's
//! `operate` tests drive the workflow controller without a cluster.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use workflow_engine::{Event, PodResult};
use workflow_model::Template;

use super::{contain, Controller};
use crate::build::{load_object, workflow_of, BuildContext};
use crate::executor::{Executor, JobStart, PodStart, Report};

#[test]
fn a_panic_is_contained_with_its_words() {
    assert_eq!(contain(|| 7), Ok(7));
    let literal = contain(|| -> u8 { panic!("engine bug") });
    let formatted = contain(|| -> u8 { panic!("node {} is gone", "n1") });
    assert_eq!(literal, Err("engine bug".into()));
    assert_eq!(formatted, Err("node n1 is gone".into()));
}

/// The controller's store policy: failures of the database are tried again, backing off,
/// final answers are not.
#[test]
fn store_failures_that_may_pass_are_tried_again_backing_off() {
    use super::run::{store_backoff, transient};
    let waits: Vec<u128> = (0..10).map(|a| store_backoff(a).as_millis()).collect();
    assert_eq!(
        waits,
        [100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000]
    );
    assert!(transient(&store::StoreError::Db(sqlx_error())));
    assert!(!transient(&store::StoreError::WriterGone));
    assert!(!transient(&store::StoreError::Fenced {
        lease: "controller".into(),
        token: 3
    }));
    assert!(!transient(&store::StoreError::AlreadyExists("x".into())));
}

fn sqlx_error() -> sqlx::Error {
    sqlx::Error::PoolTimedOut
}

/// An executor that runs nothing: it keeps each pod it is given, with its report, until the
/// test finishes it.
#[derive(Default)]
struct FakeExecutor {
    started: Mutex<Vec<(String, String, Report)>>,
    killed: Mutex<Vec<String>>,
    forgotten: Mutex<Vec<String>>,
    changed: tokio::sync::Notify,
}

impl FakeExecutor {
    /// The pod names started so far, in order.
    fn started(&self) -> Vec<String> {
        let started = self.started.lock().unwrap();
        started.iter().map(|(pod, _, _)| pod.clone()).collect()
    }

    /// Wait until `n` pods have started; their names.
    async fn wait_started(&self, n: usize) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let seen = self.changed.notified();
                if self.started.lock().unwrap().len() >= n {
                    return self.started();
                }
                seen.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} pods never started; started: {:?}", self.started()))
    }

    /// Finish the pod named `pod` with `exit_code`, as a real one reports: running, then done.
    fn finish(&self, pod: &str, exit_code: i32) {
        let (node_id, report) = {
            let started = self.started.lock().unwrap();
            let (_, node_id, report) = started
                .iter()
                .find(|(p, _, _)| p == pod)
                .unwrap_or_else(|| panic!("{pod} was never started"));
            (node_id.clone(), report.clone())
        };
        report(Event::PodRunning {
            node_id: node_id.clone(),
            host: Some("fake-node".into()),
        });
        report(Event::PodDone(PodResult {
            node_id,
            exit_code: Some(exit_code),
            ..Default::default()
        }));
    }
}

impl Executor for FakeExecutor {
    fn start_pod(self: Arc<Self>, pod: PodStart, report: Report) {
        self.started.lock().unwrap().push((
            pod.request.pod_name.clone(),
            pod.request.node_id.clone(),
            report,
        ));
        self.changed.notify_waiters();
    }

    fn start_job(self: Arc<Self>, _job: JobStart, _report: Report) {
        unreachable!("no test here runs Volcano jobs")
    }

    fn call_http(
        self: Arc<Self>,
        _namespace: &str,
        _node_id: String,
        _template: Arc<Template>,
        _report: Report,
    ) {
        unreachable!("no test here makes HTTP calls")
    }

    fn kill(&self, pod: &str) {
        self.killed.lock().unwrap().push(pod.to_string());
    }

    fn evict(&self, pod: &str, _why: String) {
        self.kill(pod)
    }

    fn forget(&self, pod: &str) {
        self.forgotten.lock().unwrap().push(pod.to_string());
    }

    fn repository_for(
        &self,
        namespace: &str,
        _key: Option<&str>,
    ) -> Result<artifact_repo::Repository, artifact_repo::RepoError> {
        artifact_repo::Repository::Local(std::env::temp_dir().join("onyx-fake-repo"))
            .for_namespace(namespace)
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        std::env::temp_dir().join("onyx-fake-pods").join(pod)
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("onyx-controller-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A listener that records the phases it is told of.
#[derive(Default)]
struct Phases(Mutex<Vec<String>>);

impl super::PhaseListener for Phases {
    fn phase(&self, workflow: Value, _uid: String) -> futures::future::BoxFuture<'static, ()> {
        let phase = workflow["status"]["phase"].as_str().unwrap_or_default();
        self.0.lock().unwrap().push(phase.to_string());
        Box::pin(async {})
    }
}

impl Phases {
    /// The phases told, once `n` have been.
    async fn wait(&self, n: usize) -> Vec<String> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let told = self.0.lock().unwrap().clone();
                if told.len() >= n {
                    return told;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the listener is told")
    }
}

async fn controller(dir: &Path, fake: Arc<FakeExecutor>) -> Arc<Controller> {
    controller_told(dir, fake, Arc::new(Phases::default())).await
}

async fn controller_told(
    dir: &Path,
    fake: Arc<FakeExecutor>,
    listener: Arc<Phases>,
) -> Arc<Controller> {
    let store = store::Store::open(&dir.join("onyx.db")).await.unwrap();
    let cluster = Arc::new(cluster_shell::Cluster::local(
        cluster_shell::SchedulingPolicy::default(),
        BTreeMap::new(),
    ));
    let audit = audit::AuditLog::start(audit::AuditConfig {
        dir: dir.join("audit"),
        max_bytes: 1 << 20,
        keep_days: 1,
        loki: None,
    })
    .unwrap();
    Controller::new(store, fake, cluster, listener, audit)
}

/// Submit `wf` (JSON) as `default/NAME`; the watch stream it will end on.
async fn submit(
    ctl: &Arc<Controller>,
    wf: Value,
) -> tokio::sync::broadcast::Receiver<super::WatchEvent> {
    let name = wf["metadata"]["name"].as_str().unwrap().to_string();
    let watch = ctl.subscribe();
    let object = workflow_of(load_object("test", &wf).unwrap()).unwrap();
    let accepted = ctl
        .accept(&object, &wf, "default", &name, BuildContext::default())
        .unwrap();
    ctl.create(accepted).await.unwrap();
    watch
}

/// Wait for the workflow's phase to become `phase`; its last object.
async fn wait_phase(
    watch: &mut tokio::sync::broadcast::Receiver<super::WatchEvent>,
    phase: &str,
) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = watch.recv().await.expect("the watch stream");
            if ev.object["status"]["phase"] == phase {
                return (*ev.object).clone();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the workflow never became {phase}"))
}

fn steps(name: &str, retries: Option<u32>) -> Value {
    let mut flaky = json!({"name": "step", "container": {"image": "alpine", "command": ["true"]}});
    if let Some(n) = retries {
        flaky["retryStrategy"] = json!({"limit": n});
    }
    json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"entrypoint": "main", "templates": [
            {"name": "main", "steps": [[{"name": "first", "template": "step"}],
                                       [{"name": "second", "template": "step"}]]},
            flaky]}})
}

/// Steps run in order, one pod each, as the executor reports them done; the workflow
/// succeeds when the last does.
#[tokio::test]
async fn steps_run_one_pod_each_in_order_and_the_workflow_succeeds() {
    let dir = temp_dir("steps");
    let fake = Arc::new(FakeExecutor::default());
    let phases = Arc::new(Phases::default());
    let ctl = controller_told(&dir, fake.clone(), phases.clone()).await;
    let mut watch = submit(&ctl, steps("two-steps", None)).await;
    let first = fake.wait_started(1).await;
    assert_eq!(first.len(), 1, "the second step waits for the first");
    fake.finish(&first[0], 0);
    let both = fake.wait_started(2).await;
    assert_ne!(both[0], both[1]);
    fake.finish(&both[1], 0);
    let wf = wait_phase(&mut watch, "Succeeded").await;
    let nodes = wf["status"]["nodes"].as_object().unwrap();
    let pods: Vec<&Value> = nodes.values().filter(|n| n["type"] == "Pod").collect();
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|n| n["phase"] == "Succeeded"), "{wf}");
    assert_eq!(fake.started().len(), 2, "no pod was started twice");
    assert_eq!(
        phases.wait(2).await,
        ["Running", "Succeeded"],
        "the listener hears of the start and the end, once each"
    );
}

/// A failed pod with a retry strategy is retried as a new pod of a new name; without one the
/// workflow fails.
#[tokio::test]
async fn a_failed_pod_is_retried_as_a_new_pod_and_without_retries_fails_the_workflow() {
    let dir = temp_dir("retry");
    let fake = Arc::new(FakeExecutor::default());
    let ctl = controller(&dir, fake.clone()).await;
    let mut watch = submit(&ctl, steps("retried", Some(1))).await;
    let first = fake.wait_started(1).await;
    fake.finish(&first[0], 1);
    let retried = fake.wait_started(2).await;
    assert_ne!(retried[0], retried[1], "a retry is a pod of its own");
    fake.finish(&retried[1], 0);
    let next = fake.wait_started(3).await;
    fake.finish(&next[2], 0);
    wait_phase(&mut watch, "Succeeded").await;

    let mut watch = submit(&ctl, steps("failed", None)).await;
    let pods = fake.wait_started(4).await;
    fake.finish(&pods[3], 2);
    let wf = wait_phase(&mut watch, "Failed").await;
    assert_eq!(
        fake.started().len(),
        4,
        "the second step never started: {wf}"
    );
}

/// Deleting a running workflow kills its running pod and drops what is kept of its pods.
#[tokio::test]
async fn deleting_a_running_workflow_kills_and_forgets_its_pods() {
    let dir = temp_dir("delete");
    let fake = Arc::new(FakeExecutor::default());
    let ctl = controller(&dir, fake.clone()).await;
    let _watch = submit(&ctl, steps("doomed", None)).await;
    let first = fake.wait_started(1).await;
    let row = ctl
        .store
        .workflow("default", "doomed")
        .await
        .unwrap()
        .expect("the workflow is stored");
    ctl.delete(&row).await.unwrap();
    let key = format!("default/{}", first[0]);
    assert!(
        fake.killed.lock().unwrap().contains(&key),
        "{key} was not killed"
    );
    assert!(
        fake.forgotten.lock().unwrap().contains(&key),
        "{key} was not forgotten"
    );
    assert!(ctl
        .store
        .workflow("default", "doomed")
        .await
        .unwrap()
        .is_none());
}

/// A controller that stops (a crash) after the first step finished is replaced by a new one
/// over the same store: it replays the workflow's log, starts the second step again (pods are
/// idempotent by name) and never the first.
#[test]
fn a_restarted_controller_replays_the_log_and_never_reruns_a_finished_pod() {
    let dir = temp_dir("recover");
    let first_life = Arc::new(FakeExecutor::default());
    let (first, second) = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let ctl = controller(&dir, first_life.clone()).await;
            let _watch = submit(&ctl, steps("survivor", None)).await;
            let started = first_life.wait_started(1).await;
            first_life.finish(&started[0], 0);
            let started = first_life.wait_started(2).await;
            // Let the second start's events reach the log before the crash.
            tokio::time::sleep(Duration::from_millis(200)).await;
            (started[0].clone(), started[1].clone())
        })
        // The runtime, and every task of the first controller, ends here.
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let second_life = Arc::new(FakeExecutor::default());
        let ctl = controller(&dir, second_life.clone()).await;
        let mut watch = ctl.subscribe();
        assert_eq!(ctl.recover().await.unwrap(), 1);
        let again = second_life.wait_started(1).await;
        assert_eq!(
            again,
            vec![second.clone()],
            "only the unfinished step is asked for"
        );
        assert!(!again.contains(&first));
        second_life.finish(&second, 0);
        wait_phase(&mut watch, "Succeeded").await;
    });
}
