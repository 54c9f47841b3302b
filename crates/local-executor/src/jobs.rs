//! Volcano `batch.volcano.sh/v1alpha1` Jobs created by `resource` templates: the job's replicas
//! become one gang (minMember = `minAvailable`, the job's queue and priority class) of pods run
//! like any step's pod, with the environment Volcano's plugins give; the resource node ends
//! when the job does (`volcano_job` decides), checked against the template's success and
//! failure conditions, with its output parameters read from the Job object's status. Replica
//! pods are named after the resource node's pod, so after a restart they are adopted or
//! collected like every other pod, never started twice.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::mpsc;
use workflow_engine::{Event, PodRequest};
use workflow_model::Template;

use crate::pods::Pods;
use cluster_shell::{ask_of, PodDefaults, GROUP_MIN_MEMBER, GROUP_NAME, QUEUE_NAME};
use workflow_runtime::JobStart;

/// The step template of one replica: its pod spec's containers, in the job's gang.
fn replica_template(
    plan: &volcano_job::JobPlan,
    group: &str,
    r: &volcano_job::Replica,
) -> Result<Template, String> {
    let containers = r.pod_spec["containers"].clone();
    let mut t = json!({
        "name": r.name,
        "schedulerName": "volcano",
        "metadata": {"annotations": {
            GROUP_NAME: group,
            GROUP_MIN_MEMBER: plan.min_available.to_string(),
            QUEUE_NAME: plan.queue,
        }},
    });
    if containers.as_array().is_some_and(|c| c.len() == 1) {
        t["container"] = containers[0].clone();
    } else {
        t["containerSet"] = json!({"containers": containers});
    }
    if !plan.priority_class.is_empty() {
        t["priorityClassName"] = json!(plan.priority_class);
    }
    if let Some(sel) = r.pod_spec.get("nodeSelector").filter(|s| s.is_object()) {
        t["nodeSelector"] = sel.clone();
    }
    if let Some(tol) = r.pod_spec.get("tolerations").filter(|t| t.is_array()) {
        t["tolerations"] = tol.clone();
    }
    serde_json::from_value(t).map_err(|e| format!("task {}: {e}", r.task))
}

impl Pods {
    /// Run a Volcano Job; `report` gets the resource node's waiting messages and, last,
    /// `ResourceDone`.
    pub async fn run_job(
        self: Arc<Self>,
        job: JobStart,
        report: impl Fn(Event) + Send + Sync + 'static,
    ) {
        let JobStart {
            namespace,
            workflow,
            node_id,
            pod_name,
            template,
            manifest,
        } = job;
        let done =
            |ok: bool, message: String, outputs: Vec<(String, String)>| Event::ResourceDone {
                node_id: node_id.clone(),
                phase_ok: ok,
                message,
                outputs,
            };
        let action = template.resource.as_ref().map_or("", |r| r.action.as_str());
        if !matches!(action, "create" | "apply") {
            return report(done(
                false,
                format!("resource action '{action}' on a Volcano Job: ONYX creates Jobs (create, apply)"),
                Vec::new(),
            ));
        }
        let plan = match volcano_job::plan(&manifest) {
            Ok(p) => p,
            Err(e) => return report(done(false, format!("Volcano Job: {e}"), Vec::new())),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<(usize, Event)>();
        let mut pods = Vec::new();
        for (i, r) in plan.replicas.iter().enumerate() {
            let t = match replica_template(&plan, &pod_name, r) {
                Ok(t) => t,
                Err(e) => return report(done(false, format!("Volcano Job: {e}"), Vec::new())),
            };
            let ask = ask_of(
                &namespace,
                &t,
                &PodDefaults {
                    scheduler_name: Some("volcano"),
                    ..Default::default()
                },
            );
            let pod = format!("{pod_name}-{}-{}", r.task, r.index);
            pods.push(workflow_runtime::pod_key(&namespace, &pod));
            let req = PodRequest {
                node_id: r.name.clone(),
                pod_name: pod,
                template: Arc::new(t),
                input_artifacts: Vec::new(),
                output_artifacts: Vec::new(),
                volumes: Vec::new(),
                deadline: None,
                capture_result: false,
            };
            let tx = tx.clone();
            // A Volcano job's replicas keep no artifacts: the default repository.
            tokio::spawn(self.clone().run(
                namespace.clone(),
                workflow.clone(),
                None,
                req,
                ask,
                move |ev| {
                    let _ = tx.send((i, ev));
                },
            ));
        }
        drop(tx);
        let job_key = workflow_runtime::pod_key(&namespace, &pod_name);
        self.set_job_pods(&job_key, pods.clone());
        let mut ends: Vec<Option<bool>> = vec![None; plan.replicas.len()];
        let mut running = 0;
        let mut decided: Option<Vec<Option<bool>>> = None;
        let mut said = String::new();
        while let Some((i, ev)) = rx.recv().await {
            let message = match ev {
                Event::PodWaiting { message, .. } => Some(message),
                Event::PodRunning { .. } => {
                    running += 1;
                    Some(format!(
                        "Volcano job {} Running: {running}/{} replicas started",
                        plan.name,
                        plan.replicas.len()
                    ))
                }
                Event::PodDone(r) => {
                    if ends[i].is_none() {
                        ends[i] = Some(r.exit_code == Some(0) && r.message.is_none());
                    }
                    if decided.is_none() && plan.phase(&ends) != volcano_job::JobPhase::Running {
                        // The job has ended: the replicas still running are stopped.
                        decided = Some(ends.clone());
                        for (k, pod) in pods.iter().enumerate() {
                            if ends[k].is_none() {
                                self.kill(pod);
                            }
                        }
                    }
                    None
                }
                _ => None,
            };
            if let Some(m) = message.filter(|m| *m != said) {
                report(Event::PodWaiting {
                    node_id: node_id.clone(),
                    message: m.clone(),
                });
                said = m;
            }
        }
        self.set_job_pods(&job_key, Vec::new());
        let ends = decided.unwrap_or(ends);
        let obj = plan.object(&manifest, &ends);
        let phase = plan.phase(&ends);
        let r = template.resource.as_ref();
        let cond = |c: Option<&String>| c.filter(|s| !s.trim().is_empty()).cloned();
        let (success, failure) = (
            cond(r.and_then(|r| r.success_condition.as_ref())),
            cond(r.and_then(|r| r.failure_condition.as_ref())),
        );
        let (ok, message) = if let Some(f) = failure.filter(|f| resource_template::matches(&obj, f))
        {
            (false, format!("failure condition '{f}' met"))
        } else if let Some(s) = success {
            let ok = resource_template::matches(&obj, &s);
            (
                ok,
                if ok {
                    String::new()
                } else {
                    format!(
                        "success condition '{s}' not met: the job ended {}",
                        phase.name()
                    )
                },
            )
        } else {
            match &phase {
                volcano_job::JobPhase::Failed(why) => {
                    (false, format!("Volcano job {} Failed: {why}", plan.name))
                }
                _ => (true, String::new()),
            }
        };
        let outputs = match resource_template::outputs(&obj, &template) {
            Ok(o) => o,
            Err(e) => return report(done(false, e, Vec::new())),
        };
        report(done(ok, message, outputs));
    }
}
