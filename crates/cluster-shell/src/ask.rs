//! What a pod asks of the scheduler, read from what users write for Volcano: annotations,
//! `schedulerName`, `priorityClassName`, `nodeSelector`, `tolerations` and resource requests.

use std::collections::BTreeMap;

use scheduler::{Quantity, Toleration};
use serde::{Deserialize, Serialize};
use workflow_model::{AnyString, Template, WorkflowSpec};

pub const GROUP_NAME: &str = "scheduling.k8s.io/group-name";
pub const GROUP_MIN_MEMBER: &str = "scheduling.volcano.sh/group-min-member";
pub const QUEUE_NAME: &str = "scheduling.volcano.sh/queue-name";

/// What a pod asks of the scheduler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ask {
    pub namespace: String,
    /// The gang (`scheduling.k8s.io/group-name`) and its minMember.
    #[serde(default)]
    pub group: Option<(String, u32)>,
    pub queue: String,
    #[serde(default)]
    pub priority_class: String,
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// What a workflow's spec gives every pod unless the template says otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodDefaults<'a> {
    pub scheduler_name: Option<&'a str>,
    pub priority_class: Option<&'a str>,
    pub node_selector: Option<&'a BTreeMap<String, AnyString>>,
    pub tolerations: &'a [serde_json::Value],
}

impl<'a> PodDefaults<'a> {
    pub fn of(spec: &'a WorkflowSpec) -> PodDefaults<'a> {
        PodDefaults {
            scheduler_name: spec.scheduler_name.as_deref(),
            priority_class: spec.pod_priority_class_name.as_deref(),
            node_selector: Some(&spec.node_selector),
            tolerations: &spec.tolerations,
        }
    }
}

pub(crate) fn annotation(t: &Template, key: &str) -> Option<String> {
    t.metadata
        .as_ref()?
        .get("annotations")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

/// A template's scheduling field that cannot be read: the field's path in the template and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct AskError {
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl std::fmt::Display) -> AskError {
    AskError {
        field: field.into(),
        problem: problem.to_string(),
    }
}

/// What a pod of template `t` asks for. Each of the template's scheduling fields replaces the
/// workflow's default as a whole (Argo's `addSchedulingConstraints`: a template's
/// `nodeSelector` or `tolerations` are not merged with the workflow's).
pub fn ask_of(namespace: &str, t: &Template, defaults: &PodDefaults) -> Result<Ask, AskError> {
    let scheduler_name = defaults.scheduler_name;
    let priority_class = defaults.priority_class;
    let mut containers = Vec::new();
    if let Some(c) = &t.container {
        containers.push(c);
    }
    if let Some(s) = &t.script {
        containers.push(&s.container);
    }
    if let Some(cs) = &t.container_set {
        containers.extend(cs.containers.iter());
    }
    // A pod asks for the sum of its containers' requests (limits where no request is given,
    // as Kubernetes defaults them).
    let mut sums: BTreeMap<String, i128> = BTreeMap::new();
    for c in containers {
        let Some(res) = &c.resources else { continue };
        let get = |part: &str| res.get(part).and_then(|v| v.as_object()).cloned();
        let mut merged = get("limits").unwrap_or_default();
        merged.extend(get("requests").unwrap_or_default());
        for (k, v) in merged {
            let text = match &v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let milli = Quantity::Text(text)
                .milli()
                .map_err(|e| bad(format!("resources.{k}"), e))?;
            *sums.entry(k).or_default() += milli;
        }
    }
    let requests = sums
        .into_iter()
        .filter(|(k, _)| k != "ephemeral-storage")
        .map(|(k, milli)| {
            let text = if milli % 1000 == 0 {
                (milli / 1000).to_string()
            } else {
                format!("{milli}m")
            };
            (k, text)
        })
        .collect();
    let volcano = t.scheduler_name.as_deref().or(scheduler_name) == Some("volcano");
    let group = match (volcano, annotation(t, GROUP_NAME)) {
        (true, Some(name)) => {
            let min = match annotation(t, GROUP_MIN_MEMBER) {
                Some(v) => v.trim().parse::<u32>().map_err(|_| {
                    bad(
                        format!("metadata.annotations.{GROUP_MIN_MEMBER}"),
                        format!("expected a whole number, got {v:?}"),
                    )
                })?,
                None => 1,
            };
            Some((name, min.max(1)))
        }
        (false, Some(_)) => None,
        (_, None) => None,
    };
    Ok(Ask {
        namespace: namespace.to_string(),
        group,
        queue: annotation(t, QUEUE_NAME).unwrap_or_else(|| "default".into()),
        priority_class: t
            .priority_class_name
            .clone()
            .or(priority_class.map(str::to_string))
            .unwrap_or_default(),
        requests,
        node_selector: match (&t.node_selector, defaults.node_selector) {
            (own, Some(wf)) if own.is_empty() => wf,
            (own, _) => own,
        }
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect(),
        tolerations: tolerations_of(if t.tolerations.is_empty() {
            defaults.tolerations
        } else {
            &t.tolerations
        })?,
    })
}

/// Kubernetes tolerations, each checked field by field.
fn tolerations_of(list: &[serde_json::Value]) -> Result<Vec<Toleration>, AskError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let tol: Toleration = serde_json::from_value(v.clone())
                .map_err(|e| bad(format!("tolerations[{i}]"), e))?;
            if !matches!(tol.operator.as_str(), "" | "Equal" | "Exists") {
                return Err(bad(
                    format!("tolerations[{i}].operator"),
                    format!("expected Equal or Exists, got {:?}", tol.operator),
                ));
            }
            if tol.operator == "Exists" && !tol.value.is_empty() {
                return Err(bad(
                    format!("tolerations[{i}].value"),
                    "must be empty when operator is Exists",
                ));
            }
            if tol.key.is_empty() && tol.operator != "Exists" {
                return Err(bad(
                    format!("tolerations[{i}].operator"),
                    "must be Exists when key is empty",
                ));
            }
            if !matches!(
                tol.effect.as_str(),
                "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"
            ) {
                return Err(bad(
                    format!("tolerations[{i}].effect"),
                    format!(
                        "expected NoSchedule, PreferNoSchedule or NoExecute, got {:?}",
                        tol.effect
                    ),
                ));
            }
            Ok(tol)
        })
        .collect()
}
