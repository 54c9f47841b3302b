//! A retried workflow's kept nodes (Argo's `FormulateRetryWorkflow`): what succeeded before a
//! retry is not run again. A kept leaf ends as it ended, with its outputs and times, the moment
//! the engine would start it; a kept step, DAG or group keeps the time it started, and the time
//! it ended too when it ends as it did. The shell decides which nodes are kept (the failed
//! ones and those a retry's node selector resets are not).

use serde_json::Value;

use crate::state::{Engine, Kept};
use crate::status::{Phase, Time};

fn time(v: &Value) -> Option<Time> {
    v.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

fn phase(v: &Value) -> Option<Phase> {
    Some(match v.as_str()? {
        "Succeeded" => Phase::Succeeded,
        "Skipped" => Phase::Skipped,
        "Failed" => Phase::Failed,
        "Error" => Phase::Error,
        "Omitted" => Phase::Omitted,
        "Running" => Phase::Running,
        _ => Phase::Pending,
    })
}

impl Engine {
    /// Keep these nodes of the run before a retry (node id → the node's status as Argo writes
    /// it). Call before `start`.
    pub fn keep(&mut self, nodes: &serde_json::Map<String, Value>) {
        self.kept = nodes
            .iter()
            .map(|(id, n)| {
                let kept = Kept {
                    phase: phase(&n["phase"]),
                    started_at: time(&n["startedAt"]),
                    finished_at: time(&n["finishedAt"]),
                    outputs: serde_json::from_value(n["outputs"].clone()).ok(),
                    host_node_name: n["hostNodeName"].as_str().map(str::to_string),
                };
                (id.clone(), kept)
            })
            .collect();
    }

    /// When node `id` started: as it did before the retry if it is kept, else `now`.
    pub(crate) fn start_time(&self, id: &str, now: Time) -> Time {
        self.kept.get(id).and_then(|k| k.started_at).unwrap_or(now)
    }

    /// When node `id`, ending in `phase`, ended: as before the retry if it is kept and ended in
    /// that phase then, else `now`.
    pub(crate) fn end_time(&self, id: &str, phase: Phase, now: Time) -> Time {
        match self.kept.get(id) {
            Some(k) if k.phase == Some(phase) => k.finished_at.unwrap_or(now),
            _ => now,
        }
    }

    /// If leaf `i` succeeded before the retry, end it so again without running it; whether
    /// it did.
    pub(crate) fn end_if_kept(&mut self, i: usize, now: Time) -> bool {
        let id = &self.nodes[i].status.id;
        let Some(k) = self
            .kept
            .get(id)
            .filter(|k| k.phase == Some(Phase::Succeeded))
        else {
            return false;
        };
        let (started, outputs, host) = (k.started_at, k.outputs.clone(), k.host_node_name.clone());
        let n = &mut self.nodes[i].status;
        n.started_at = Some(started.unwrap_or(now));
        n.outputs = outputs.filter(|o| !o.is_empty());
        n.host_node_name = host;
        self.finish(i, Phase::Succeeded, None, now);
        true
    }
}
