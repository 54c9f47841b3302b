//! Pods and the other leaves the shell runs (HTTP and resource templates): starting queued
//! ones while the workflow's `parallelism`, locks and suspension allow, and turning what the
//! shell reports — running, waiting, done — into node phases and outputs as Argo does
//! (exit codes, `outputs.result` capped at 256 KB, output parameters and artifacts).
//!
//! The engine never runs anything itself: it emits `StartPod`/`Http`/`Resource` and waits
//! for the matching event. A pod counts against parallelism from its start to its end, once.

use std::collections::{BTreeMap, VecDeque};

/// The artifact Argo keeps a pod's main log in when `archiveLogs` is on.
pub const MAIN_LOGS: &str = "main-logs";

use serde_json::{json, Value};
use workflow_model::{Artifact, Outputs, Parameter};

use crate::protocol::{Action, PodRequest, PodResult, MAX_RESULT_BYTES};
use crate::state::Engine;
use crate::status::{Phase, Time};

impl Engine {
    /// Stop a leaf being ended early (deadline, shutdown, a block's timeout): a started pod
    /// gives back its parallelism slot and the shell is asked to kill it.
    pub(crate) fn kill_started_pod(&mut self, i: usize, reason: &str) {
        if !self.nodes[i].started {
            return;
        }
        self.release_pod_slot(i);
        self.actions.push(Action::KillPod {
            node_id: self.nodes[i].status.id.clone(),
            pod_name: self.nodes[i].pod_name.clone().unwrap_or_default(),
            reason: reason.into(),
        });
    }

    /// Start queued pods while parallelism, locks and suspension allow. Returns whether it
    /// did anything.
    pub(crate) fn try_start_pods(&mut self, now: Time) -> bool {
        if self.suspended || self.is_finished() {
            return false;
        }
        let limit = self.spec.parallelism.map(|p| p.max(1) as usize);
        let mut progressed = false;
        let mut waiting = VecDeque::new();
        while let Some(i) = self.pod_queue.pop_front() {
            if self.nodes[i].status.phase.fulfilled() || self.halted(i) {
                continue;
            }
            if !self.nodes[i].started && self.end_if_kept(i, now) {
                progressed = true;
                continue;
            }
            if limit.is_some_and(|l| self.running_pods >= l) {
                waiting.push_back(i);
                waiting.extend(self.pod_queue.drain(..));
                break;
            }
            if let Some(lock) = self.nodes[i].lock.clone() {
                if !self.nodes[i].started && !self.try_acquire(&lock) {
                    self.nodes[i].status.message = Some(format!(
                        "Waiting for {} lock. Lock status: 0/1",
                        lock.split('#').next().unwrap_or(&lock)
                    ));
                    waiting.push_back(i);
                    continue;
                }
            }
            self.start_pod(i, now);
            progressed = true;
        }
        self.pod_queue = waiting;
        progressed
    }

    fn start_pod(&mut self, i: usize, now: Time) {
        let t = self.nodes[i]
            .template
            .clone()
            .expect("pod nodes have a template");
        self.nodes[i].started = true;
        self.nodes[i].status.started_at = Some(now);
        self.nodes[i].status.message = None;
        self.nodes[i].status.host_node_name =
            Some(self.config.node_name.clone()).filter(|s| !s.is_empty());
        self.running_pods += 1;
        let node_id = self.nodes[i].status.id.clone();
        let pod_name = self.nodes[i].pod_name.clone().unwrap_or_default();
        if t.http.is_some() {
            self.nodes[i].status.phase = Phase::Running;
            self.actions.push(Action::Http {
                node_id,
                template: t,
            });
            return;
        }
        if t.resource.is_some() {
            self.nodes[i].status.phase = Phase::Running;
            self.actions.push(Action::Resource {
                node_id,
                pod_name,
                template: t,
            });
            return;
        }
        let mut inputs = Vec::new();
        let mut input_error = None;
        for a in &t.inputs.artifacts {
            let mut a = a.clone();
            if let Some(from) = a.from.clone() {
                match self
                    .global_artifacts
                    .get(from.trim_start_matches("{{").trim_end_matches("}}"))
                {
                    Some(src) => {
                        let (name, path, sub_path, mode) =
                            (a.name.clone(), a.path.clone(), a.sub_path.clone(), a.mode);
                        a = src.clone();
                        a.name = name;
                        a.path = path;
                        a.sub_path = sub_path.or(a.sub_path);
                        a.mode = mode;
                        a.global_name = None;
                    }
                    None if a.optional => continue,
                    None => {
                        input_error = Some(format!(
                            "unable to resolve input artifact {} from '{from}'",
                            a.name
                        ));
                        break;
                    }
                }
            }
            inputs.push(a);
        }
        if let Some(e) = input_error {
            self.running_pods -= 1;
            self.finish(i, Phase::Error, Some(e), now);
            return;
        }
        let mut outputs: Vec<Artifact> = t
            .outputs
            .artifacts
            .iter()
            .map(|a| {
                let mut a = a.clone();
                let key = match a
                    .s3
                    .as_ref()
                    .and_then(|s| s.get("key"))
                    .and_then(Value::as_str)
                {
                    Some(k) => k.to_string(),
                    None => {
                        let ext = if a.archive_none() { "" } else { ".tgz" };
                        format!("{}/{}/{}{ext}", self.name, pod_name, a.name)
                    }
                };
                a.local = Some(workflow_model::LocalArtifact { key });
                a
            })
            .collect();
        // Argo's `archiveLogs` (the template's `archiveLocation` over the workflow's): the main
        // container's log is kept as the `main-logs` artifact, `{workflow}/{pod}/main.log`.
        let archive_logs = t
            .archive_location
            .as_ref()
            .and_then(|l| l.get("archiveLogs"))
            .and_then(Value::as_bool)
            .or(self.spec.archive_logs)
            .unwrap_or(false);
        if archive_logs && !outputs.iter().any(|a| a.name == MAIN_LOGS) {
            outputs.push(Artifact {
                name: MAIN_LOGS.into(),
                archive: Some(json!({"none": {}})),
                optional: true,
                local: Some(workflow_model::LocalArtifact {
                    key: format!("{}/{}/main.log", self.name, pod_name),
                }),
                ..Default::default()
            });
        }
        let mut volumes = self.spec.volumes.clone();
        volumes.extend(self.spec.volume_claim_templates.iter().map(|v| json!({"name": v.pointer("/metadata/name").cloned().unwrap_or_default(), "persistentVolumeClaim": {"claimName": v.pointer("/metadata/name").cloned().unwrap_or_default()}})));
        volumes.extend(t.volumes.iter().cloned());
        if let Some(e) = unmounted_volume(&t, &volumes, &pod_name) {
            // Kubernetes refuses such a pod at creation: Argo's executeTemplate error.
            self.running_pods -= 1;
            self.creation_failed(i, e, now);
            return;
        }
        let req = PodRequest {
            node_id,
            pod_name,
            template: t.clone(),
            input_artifacts: inputs,
            output_artifacts: outputs,
            volumes,
            deadline: self.nodes[i].deadline,
            capture_result: t.script.is_some()
                || t.container.is_some()
                || t.container_set.is_some(),
        };
        self.actions.push(Action::StartPod(Box::new(req)));
    }

    /// A pod that cannot be created fails its node with Error; when the node is the entry or
    /// exit template itself, the workflow ends in Error with Argo's message for it, and an
    /// entry error skips the exit handler (Argo marks the workflow Error and returns).
    fn creation_failed(&mut self, i: usize, e: String, now: Time) {
        if i == 0 {
            self.template_error = Some(format!("error in entry template execution: {e}"));
        } else if self.exit_node == Some(i) {
            self.template_error = Some(format!("error in exit template execution : {e}"));
        }
        self.finish(i, Phase::Error, Some(e), now);
    }

    pub(crate) fn release_pod_slot(&mut self, i: usize) {
        if self.nodes[i].started && !self.nodes[i].status.phase.fulfilled() {
            self.running_pods = self.running_pods.saturating_sub(1);
        }
    }

    /// A pod's main process started (on `host` when a scheduler placed it).
    pub(crate) fn pod_running(&mut self, node_id: &str, host: Option<String>, now: Time) {
        let Some(&i) = self.by_id.get(node_id) else {
            return;
        };
        if self.nodes[i].status.phase == Phase::Pending {
            if host.is_some() {
                self.nodes[i].status.host_node_name = host;
            }
            self.changed.push(i);
            self.nodes[i].status.phase = Phase::Running;
            self.nodes[i].status.message = None;
            self.on_running(i, now);
        }
    }

    /// A pod waits for resources; the scheduler's reason becomes the node's message.
    pub(crate) fn pod_waiting(&mut self, node_id: &str, message: String) {
        let Some(&i) = self.by_id.get(node_id) else {
            return;
        };
        // A resource node (a Volcano job) reports its gang's progress while it runs.
        if matches!(self.nodes[i].status.phase, Phase::Pending | Phase::Running)
            && self.nodes[i].status.message.as_deref() != Some(message.as_str())
        {
            self.changed.push(i);
            self.nodes[i].status.message = Some(message);
        }
    }

    pub(crate) fn pod_done(&mut self, r: PodResult, now: Time) {
        let Some(&i) = self.by_id.get(&r.node_id) else {
            return;
        };
        if self.nodes[i].status.phase.fulfilled() {
            return;
        }
        self.release_pod_slot(i);
        let t = self.nodes[i]
            .template
            .clone()
            .expect("pod nodes have a template");
        let mut out = Outputs::default();
        let mut phase = Phase::Succeeded;
        let mut message = r.message.clone();
        if let Some(code) = r.exit_code {
            out.exit_code = Some(code.to_string());
            if code != 0 {
                phase = Phase::Failed;
                if message.is_none() {
                    message = Some(format!("Error (exit code {code})"));
                }
            }
        } else {
            phase = Phase::Error;
        }
        if r.deadline_exceeded {
            phase = Phase::Failed;
            message = Some("Pod was active on the node longer than the specified deadline".into());
        }
        if let Some(s) = r.stdout {
            let mut s = s.strip_suffix('\n').unwrap_or(&s).to_string();
            if s.len() > MAX_RESULT_BYTES {
                let mut cut = MAX_RESULT_BYTES;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
            out.result = Some(s);
        }
        for p in &t.outputs.parameters {
            let mut p = p.clone();
            let got = r
                .parameters
                .iter()
                .find(|(n, _)| *n == p.name)
                .and_then(|(_, v)| v.clone());
            match got {
                Some(v) => {
                    p.value = Some(workflow_model::AnyString(
                        v.trim_end_matches('\n').to_string(),
                    ))
                }
                None => match p.value_from.as_ref().and_then(|v| v.default.clone()) {
                    Some(d) => p.value = Some(d),
                    None if p.value.is_some() => {}
                    None => {
                        if phase == Phase::Succeeded {
                            phase = Phase::Error;
                            message = Some(format!(
                                "failed to get output parameter '{}': {} not found",
                                p.name,
                                p.value_from
                                    .as_ref()
                                    .and_then(|v| v.path.clone())
                                    .unwrap_or_default()
                            ));
                        }
                        continue;
                    }
                },
            }
            out.parameters.push(p);
        }
        if let Some(logs) = r.artifacts.iter().find(|x| x.name == MAIN_LOGS) {
            if !t.outputs.artifacts.iter().any(|a| a.name == MAIN_LOGS) {
                out.artifacts.push(logs.clone());
            }
        }
        for a in &t.outputs.artifacts {
            match r.artifacts.iter().find(|x| x.name == a.name) {
                Some(saved) => out.artifacts.push(saved.clone()),
                None if a.optional || phase != Phase::Succeeded => {}
                None => {
                    phase = Phase::Error;
                    // The executor's own account (an upload that failed) says more than
                    // "not found".
                    let said = format!("failed to save output artifact '{}'", a.name);
                    message = Some(match &r.message {
                        Some(m) if m.starts_with(&said) => m.clone(),
                        _ => format!("{said}: {} not found", a.path.clone().unwrap_or_default()),
                    });
                }
            }
        }
        if !out.is_empty() {
            self.nodes[i].status.outputs = Some(out);
        }
        self.finish(i, phase, message, now);
    }

    pub(crate) fn http_done(
        &mut self,
        node_id: &str,
        status: u16,
        body: String,
        headers: BTreeMap<String, Vec<String>>,
        error: Option<String>,
        now: Time,
    ) {
        let Some(&i) = self.by_id.get(node_id) else {
            return;
        };
        if self.nodes[i].status.phase.fulfilled() {
            return;
        }
        self.release_pod_slot(i);
        if let Some(e) = error {
            self.finish(i, Phase::Failed, Some(e), now);
            return;
        }
        let t = self.nodes[i]
            .template
            .clone()
            .expect("http nodes have a template");
        let http = t.http.clone().unwrap_or_default();
        let ok = match http
            .success_condition
            .as_deref()
            .filter(|s| !s.trim().is_empty())
        {
            Some(cond) => {
                let env =
                    json!({"response": {"statusCode": status, "body": body, "headers": headers}});
                match template_eval::expr::eval(cond, &env) {
                    Ok(Value::Bool(b)) => Ok(b),
                    Ok(other) => Err(format!(
                        "successCondition '{cond}' gave {other}, not a boolean"
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            None => Ok((200..300).contains(&status)),
        };
        self.nodes[i].status.outputs = Some(Outputs {
            result: Some(body),
            ..Default::default()
        });
        match ok {
            Ok(true) => self.finish(i, Phase::Succeeded, None, now),
            Ok(false) => self.finish(
                i,
                Phase::Failed,
                Some(format!("received non-2xx response code: {status}")),
                now,
            ),
            Err(e) => self.finish(i, Phase::Error, Some(e), now),
        }
    }

    /// A resource template's action ended, with the output parameters read from its object.
    pub(crate) fn resource_done(
        &mut self,
        node_id: &str,
        phase_ok: bool,
        message: String,
        outputs: Vec<(String, String)>,
        now: Time,
    ) {
        let Some(&i) = self.by_id.get(node_id) else {
            return;
        };
        if self.nodes[i].status.phase.fulfilled() {
            return;
        }
        self.release_pod_slot(i);
        let mut out = Outputs::default();
        for (k, v) in outputs {
            out.parameters.push(Parameter {
                name: k,
                value: Some(workflow_model::AnyString(v)),
                ..Default::default()
            });
        }
        if !out.is_empty() {
            self.nodes[i].status.outputs = Some(out);
        }
        let phase = if phase_ok {
            Phase::Succeeded
        } else {
            Phase::Failed
        };
        // Progress reported while it ran is not its end's message.
        self.nodes[i].status.message = None;
        let message = Some(message).filter(|m| !m.is_empty());
        self.finish(i, phase, message, now);
    }
}

/// The API server's refusal of a pod whose container mounts a volume the pod does not have.
fn unmounted_volume(t: &workflow_model::Template, volumes: &[Value], pod: &str) -> Option<String> {
    let names: std::collections::HashSet<&str> = volumes
        .iter()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .collect();
    let main = t
        .container
        .iter()
        .chain(t.script.as_ref().map(|s| &s.container));
    let set = t.container_set.iter().flat_map(|cs| cs.containers.iter());
    let sidecars = t.sidecars.iter().chain(t.init_containers.iter());
    let set_mounts = t
        .container_set
        .iter()
        .flat_map(|cs| cs.volume_mounts.iter());
    if let Some(m) = set_mounts
        .clone()
        .find(|m| !names.contains(m.name.as_str()))
    {
        return Some(format!(
            "pods \"{pod}\" is invalid: containerSet.volumeMounts.name: Not found: \"{}\"",
            m.name
        ));
    }
    for (ci, c) in main.chain(set).chain(sidecars).enumerate() {
        for (mi, m) in c.volume_mounts.iter().enumerate() {
            if !names.contains(m.name.as_str()) {
                return Some(format!(
                    "pods \"{pod}\" is invalid: spec.containers[{ci}].volumeMounts[{mi}].name: Not found: \"{}\"",
                    m.name
                ));
            }
        }
    }
    None
}
