//! A simulated executor with a fake clock: pods are argosay-like commands
//! (`echo TEXT [FILE]`, `exit N`, `sleep SECONDS`, `fail-once`), so engine behaviour can be
//! tested exactly and instantly.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use serde_json::Value;
use workflow_engine::{Action, Engine, EngineConfig, Event, PodResult, TemplateStore, Time};
use workflow_model::{Object, Template};

pub struct Sim {
    pub engine: Engine,
    pub now: Time,
    running: Vec<(Time, PodResult)>,
    pub started: Vec<String>,
    pub killed: Vec<String>,
    /// Custom metric samples, in the order the engine emitted them.
    pub metrics: Vec<workflow_engine::MetricUpdate>,
    /// How many times each pod name (template + args) has run, for fail-once.
    attempts: HashMap<String, u32>,
    pub max_running: usize,
    pub resume_after: Option<Duration>,
    /// Every event handled, with its time, as a durable shell would log them.
    pub log: Vec<(Time, Event)>,
}

pub fn t0() -> Time {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

pub fn load(yaml: &str) -> (workflow_model::WorkflowObject, Arc<TemplateStore>) {
    let (objs, diags) = workflow_model::load_str("test.yaml", yaml);
    assert!(
        diags
            .iter()
            .all(|d| d.severity != workflow_model::Severity::Error),
        "{diags:?}"
    );
    let mut store = TemplateStore::default();
    let mut wf = None;
    for o in objs {
        match o.object {
            Object::Workflow(w) => wf = Some(w),
            Object::WorkflowTemplate(w) => {
                store.workflow_templates.insert(w.metadata.name.clone(), w);
            }
            Object::ClusterWorkflowTemplate(w) => {
                store
                    .cluster_workflow_templates
                    .insert(w.metadata.name.clone(), w);
            }
            Object::Other(o) if o.kind == "ConfigMap" => {
                let data = o.raw["data"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                store.config_maps.insert(o.metadata.name.clone(), data);
            }
            _ => {}
        }
    }
    (wf.expect("a Workflow"), Arc::new(store))
}

fn test_config() -> EngineConfig {
    let mut labels = BTreeMap::new();
    labels.insert("kubernetes.io/arch".to_string(), "amd64".to_string());
    EngineConfig {
        node_labels: labels,
        node_name: "node-1".into(),
        shell_schedules: false,
        limits: Default::default(),
    }
}

impl Sim {
    pub fn new(yaml: &str, params: &[(&str, &str)]) -> Result<Sim, workflow_engine::EngineError> {
        let (wf, store) = load(yaml);
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let engine = Engine::new(&wf, "wf", "uid-1", &params, store, test_config(), t0())?;
        Ok(Sim {
            engine,
            now: t0(),
            running: Vec::new(),
            started: Vec::new(),
            killed: Vec::new(),
            metrics: Vec::new(),
            attempts: HashMap::new(),
            max_running: 0,
            resume_after: None,
            log: Vec::new(),
        })
    }

    /// The node facts every test engine runs with.
    pub fn config(&self) -> EngineConfig {
        test_config()
    }

    /// Handle an event and log it (through serde, as the server stores it).
    pub fn handle(&mut self, ev: Event, now: Time) -> Vec<Action> {
        let text = serde_json::to_string(&ev).expect("events serialize");
        self.log.push((
            now,
            serde_json::from_str(&text).expect("events deserialize"),
        ));
        self.engine.handle(ev, now)
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::StartPod(req) => {
                    self.started.push(req.pod_name.clone());
                    let (delay, result) =
                        self.simulate(&req.node_id, &req.template, &req.output_artifacts);
                    self.running.push((self.now + delay, result));
                    self.max_running = self.max_running.max(self.running.len());
                    let acts = self.handle(
                        Event::PodRunning {
                            node_id: req.node_id.clone(),
                            host: None,
                        },
                        self.now,
                    );
                    self.apply(acts);
                }
                Action::Metric(m) => self.metrics.push(*m),
                Action::KillPod { node_id, .. } => {
                    self.killed.push(node_id.clone());
                    self.running.retain(|(_, r)| r.node_id != node_id);
                }
                Action::Http { node_id, .. } => {
                    let ev = Event::HttpDone {
                        node_id,
                        status: 200,
                        body: "ok".into(),
                        headers: BTreeMap::new(),
                        error: None,
                    };
                    let acts = self.handle(ev, self.now);
                    self.apply(acts);
                }
                Action::Resource { node_id, .. } => {
                    let ev = Event::ResourceDone {
                        node_id,
                        phase_ok: true,
                        message: String::new(),
                        outputs: Vec::new(),
                    };
                    let acts = self.handle(ev, self.now);
                    self.apply(acts);
                }
            }
        }
    }

    fn simulate(
        &mut self,
        node_id: &str,
        t: &Template,
        outputs: &[workflow_model::Artifact],
    ) -> (Duration, PodResult) {
        let mut words: Vec<String> = Vec::new();
        if let Some(c) = &t.container {
            words.extend(c.args.iter().flatten().map(|a| a.0.clone()));
        }
        if let Some(s) = &t.script {
            words.extend(s.source.split_whitespace().map(str::to_string));
        }
        let key = format!("{}:{}", t.name, words.join(" "));
        let attempt = {
            let a = self.attempts.entry(key).or_insert(0);
            *a += 1;
            *a
        };
        let mut stdout = String::new();
        let mut files: HashMap<String, String> = HashMap::new();
        let mut code = 0;
        let mut delay = Duration::zero();
        let mut i = 0;
        while i < words.len() {
            match words[i].as_str() {
                "echo" => {
                    let text = words.get(i + 1).cloned().unwrap_or_default();
                    match words.get(i + 2).filter(|p| p.starts_with('/')) {
                        Some(path) => {
                            files.insert(path.clone(), text);
                            i += 3;
                        }
                        None => {
                            stdout.push_str(&text);
                            stdout.push('\n');
                            i += 2;
                        }
                    }
                }
                "exit" => {
                    code = words.get(i + 1).and_then(|c| c.parse().ok()).unwrap_or(1);
                    i += 2;
                }
                "sleep" => {
                    delay += Duration::seconds(
                        words.get(i + 1).and_then(|c| c.parse().ok()).unwrap_or(1),
                    );
                    i += 2;
                }
                "fail-once" => {
                    if attempt == 1 {
                        code = 1;
                    }
                    i += 1;
                }
                _ => i += 1,
            }
        }
        let parameters = t
            .outputs
            .parameters
            .iter()
            .filter_map(|p| {
                p.value_from
                    .as_ref()
                    .and_then(|v| v.path.clone())
                    .map(|path| (p.name.clone(), files.get(&path).cloned()))
            })
            .collect();
        let artifacts = outputs
            .iter()
            .filter(|a| a.path.as_ref().is_some_and(|p| files.contains_key(p)))
            .cloned()
            .collect();
        (
            delay,
            PodResult {
                node_id: node_id.to_string(),
                exit_code: Some(code),
                stdout: Some(stdout),
                parameters,
                artifacts,
                message: None,
                deadline_exceeded: false,
            },
        )
    }

    /// Run until the workflow ends (or `limit` simulated seconds pass).
    pub fn run(mut self) -> Sim {
        let acts = self.engine.start(self.now);
        self.apply(acts);
        let limit = self.now + Duration::days(2);
        let mut suspended_since: Option<Time> = None;
        while !self.engine.is_finished() && self.now < limit {
            self.running.sort_by_key(|(t, _)| *t);
            let next_pod = self.running.first().map(|(t, _)| *t);
            let next_wake = self.engine.next_wakeup();
            let waiting = !self.engine.waiting_suspend_nodes().is_empty();
            if waiting {
                suspended_since.get_or_insert(self.now);
            }
            let resume_at = match (waiting, self.resume_after, suspended_since) {
                (true, Some(d), Some(s)) => Some(s + d),
                _ => None,
            };
            let next = [next_pod, next_wake, resume_at].into_iter().flatten().min();
            let Some(next) = next else { break };
            if next > self.now {
                self.now = next;
            }
            if resume_at.is_some_and(|r| r <= self.now) {
                suspended_since = None;
                let acts = self.handle(
                    Event::Resume {
                        node: None,
                        supplied: BTreeMap::new(),
                    },
                    self.now,
                );
                self.apply(acts);
                continue;
            }
            if let Some(pos) = self.running.iter().position(|(t, _)| *t <= self.now) {
                let (_, r) = self.running.remove(pos);
                let acts = self.handle(Event::PodDone(r), self.now);
                self.apply(acts);
            } else {
                let acts = self.handle(Event::Tick, self.now);
                self.apply(acts);
            }
        }
        self
    }

    pub fn json(&self) -> Value {
        self.engine.to_json()
    }

    pub fn phase(&self) -> String {
        self.engine.phase().as_str().to_string()
    }

    /// Phase of the node with this display name (the first one found).
    pub fn node(&self, display: &str) -> Value {
        let j = self.json();
        j["status"]["nodes"]
            .as_object()
            .and_then(|m| m.values().find(|n| n["displayName"] == display).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn node_phase(&self, display: &str) -> String {
        self.node(display)["phase"]
            .as_str()
            .unwrap_or("<none>")
            .to_string()
    }

    pub fn count_type(&self, ty: &str) -> usize {
        let j = self.json();
        j["status"]["nodes"]
            .as_object()
            .map(|m| m.values().filter(|n| n["type"] == ty).count())
            .unwrap_or(0)
    }

    pub fn elapsed(&self) -> i64 {
        (self.now - t0()).num_seconds()
    }
}

pub fn wf(body: &str) -> String {
    format!("apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: test-\nspec:\n{body}")
}
