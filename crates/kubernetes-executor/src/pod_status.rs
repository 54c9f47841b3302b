//! What a Pod's status says of its step: pure, from the Pod as the API returns it (JSON).
//!
//! As Argo's controller reads a pod (`workflow/controller/operator.go`, `assessNodeStatus`):
//! `Pending` waits (its containers' waiting reasons, such as `ErrImagePull`, are the node's
//! message), `Running` runs, `Succeeded` and `Failed` end the step with the exit code of the
//! container `main`. A pod that failed without `main` terminating (evicted, its deadline
//! passed, deleted) fails with the pod's reason and message.
//!
//! `main`'s termination message carries what ONYX's executor (`onyx emissary`) reports — the
//! step's `result` and output parameters, as JSON ([`EmissaryReport`]). Any other message is
//! the container's own: it becomes the step's message when the step failed, as in Argo.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use workflow_engine::PodResult;

/// What ONYX's executor writes to `main`'s termination message. Kubernetes keeps at most
/// 4096 bytes of it: larger outputs belong in artifacts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmissaryReport {
    /// The container's standard output, when the engine uses it (`outputs.result`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Output parameters read from their files; `None` where the file was missing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<(String, Option<String>)>,
    /// Why the executor itself failed (a missing command, an unreadable output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where a pod stands, as its step sees it.
#[derive(Debug, Clone)]
pub enum PodPhase {
    /// Not running yet; with the reason a container waits, if one says.
    Pending(Option<String>),
    /// Running on the node.
    Running { node: Option<String> },
    /// Ended: the step's result (its `node_id` is the caller's to fill in).
    Done(PodResult),
}

/// The phase of `pod` (a Pod as JSON).
pub fn pod_phase(pod: &Value) -> PodPhase {
    let status = &pod["status"];
    let main = status["containerStatuses"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == "main"));
    match status["phase"].as_str().unwrap_or("Pending") {
        "Running" => PodPhase::Running {
            node: pod["spec"]["nodeName"].as_str().map(String::from),
        },
        "Succeeded" | "Failed" => PodPhase::Done(ended(status, main)),
        _ => {
            // A waiting container with a reason other than starting up says why the pod
            // does not run (Argo shows these as the node's message).
            let waiting = status["initContainerStatuses"]
                .as_array()
                .into_iter()
                .chain(status["containerStatuses"].as_array())
                .flatten()
                .find_map(|c| {
                    let w = &c["state"]["waiting"];
                    let reason = w["reason"].as_str()?;
                    (reason != "ContainerCreating" && reason != "PodInitializing").then(|| match w
                        ["message"]
                        .as_str()
                    {
                        Some(m) if !m.is_empty() => format!("{reason}: {m}"),
                        _ => reason.to_string(),
                    })
                });
            PodPhase::Pending(waiting)
        }
    }
}

fn ended(status: &Value, main: Option<&Value>) -> PodResult {
    let terminated = main
        .map(|m| &m["state"]["terminated"])
        .filter(|t| t.is_object());
    let Some(t) = terminated else {
        let reason = status["reason"].as_str().unwrap_or("");
        let message = match (reason, status["message"].as_str()) {
            (r, Some(m)) if !r.is_empty() => format!("{r}: {m}"),
            (_, Some(m)) => m.to_string(),
            ("", None) => "pod ended without its main container running".into(),
            (r, None) => r.to_string(),
        };
        return PodResult {
            message: Some(message),
            deadline_exceeded: reason == "DeadlineExceeded",
            ..Default::default()
        };
    };
    let exit_code = t["exitCode"].as_i64().map(|c| c as i32);
    let text = t["message"].as_str().unwrap_or("");
    let mut result = PodResult {
        exit_code,
        ..Default::default()
    };
    match serde_json::from_str::<EmissaryReport>(text) {
        Ok(report) => {
            result.stdout = report.result;
            result.parameters = report.parameters;
            result.message = report.error;
        }
        Err(_) if !text.trim().is_empty() && exit_code != Some(0) => {
            result.message = Some(text.trim().to_string());
        }
        Err(_) => {}
    }
    if result.message.is_none() && exit_code.is_some_and(|c| c != 0) {
        // Argo's message for a failed main container.
        let reason = t["reason"].as_str().unwrap_or("Error");
        result.message = Some(format!(
            "{reason} (exit code {})",
            exit_code.unwrap_or_default()
        ));
    }
    result
}
