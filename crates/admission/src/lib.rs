//! Admission policies: what the spec's OPA Gatekeeper and Harbor enforce (§5, §10), checked
//! when a workflow is submitted — a namespace's most GPUs per step, its most parallel pods,
//! the queues and priority classes it may use, and the registries its images may come from.
//!
//! Pure: `check(rules, workflow, templates)` reads the workflow's manifest and the
//! WorkflowTemplates it refers to (JSON, as submitted) and returns every refusal, each naming
//! the rule, the field (a path into the object) and the value. It never panics on any JSON
//! (property-tested).

#![forbid(unsafe_code)]

use serde::Deserialize;
use serde_json::Value;

#[cfg(test)]
mod arbitrary_json;
pub mod pod_security;

pub use pod_security::{check as check_pod_security, Level as PodSecurityLevel};

/// A namespace's admission rules; an unset rule admits everything.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// GPUs one step may ask for (whole GPUs, MIG instances and `gpu_milli` shares as GPUs).
    pub max_gpus_per_step: Option<f64>,
    /// The largest `parallelism` a workflow may set; one that sets none is held to it at run
    /// time by the namespace's `parallelism`.
    pub max_parallel_pods: Option<i64>,
    /// Queues (`scheduling.volcano.sh/queue-name`) its steps may use; a step naming none uses
    /// `default`.
    pub allowed_queues: Option<Vec<String>>,
    /// Priority classes its steps may use (`priorityClassName`, `podPriorityClassName`).
    pub allowed_priority_classes: Option<Vec<String>>,
    /// Image prefixes allowed (`harbor.onyx.internal/`); an image without a registry is
    /// Docker Hub's (`docker.io/library/debian`).
    pub allowed_registries: Option<Vec<String>>,
}

/// Why a workflow is refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub rule: &'static str,
    pub field: String,
    pub value: String,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "admission rule {}: {} is {}: {}",
            self.rule, self.field, self.value, self.message
        )
    }
}

impl Rules {
    pub fn is_empty(&self) -> bool {
        *self == Rules::default()
    }
}

/// Every refusal of `workflow` (a Workflow manifest) and the `templates` (WorkflowTemplate or
/// ClusterWorkflowTemplate manifests) it draws templates from.
pub fn check(rules: &Rules, workflow: &Value, templates: &[Value]) -> Vec<Refusal> {
    let mut out = Vec::new();
    if rules.is_empty() {
        return out;
    }
    let spec = &workflow["spec"];
    if let (Some(max), Some(p)) = (rules.max_parallel_pods, spec["parallelism"].as_i64()) {
        if p > max {
            out.push(Refusal {
                rule: "max_parallel_pods",
                field: "spec.parallelism".into(),
                value: p.to_string(),
                message: format!("this namespace runs at most {max} pods of a workflow at once"),
            });
        }
    }
    let default_class = spec["podPriorityClassName"].as_str();
    if let (Some(allowed), Some(c)) = (&rules.allowed_priority_classes, default_class) {
        if !allowed.iter().any(|a| a == c) {
            out.push(not_allowed(
                "allowed_priority_classes",
                "spec.podPriorityClassName",
                c,
                allowed,
            ));
        }
    }
    let mut sources: Vec<(String, &Value)> = vec![("spec".into(), spec)];
    for t in templates {
        let name = t["metadata"]["name"].as_str().unwrap_or("?");
        let kind = t["kind"].as_str().unwrap_or("WorkflowTemplate");
        sources.push((format!("{kind}/{name}.spec"), &t["spec"]));
    }
    for (prefix, spec) in sources {
        for (i, t) in spec["templates"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let at = format!("{prefix}.templates[{i}]");
            check_template(rules, t, &at, &mut out);
        }
        if let Some(d) = spec.get("templateDefaults").filter(|d| d.is_object()) {
            check_template(rules, d, &format!("{prefix}.templateDefaults"), &mut out);
        }
    }
    out
}

fn not_allowed(rule: &'static str, field: &str, value: &str, allowed: &[String]) -> Refusal {
    Refusal {
        rule,
        field: field.into(),
        value: format!("{value:?}"),
        message: format!("this namespace allows only {}", allowed.join(", ")),
    }
}

/// The containers of a template that run: (field, container).
fn containers<'a>(t: &'a Value, at: &str) -> Vec<(String, &'a Value)> {
    let mut out = Vec::new();
    for key in ["container", "script"] {
        if t[key].is_object() {
            out.push((format!("{at}.{key}"), &t[key]));
        }
    }
    for key in ["initContainers", "sidecars"] {
        for (i, c) in t[key].as_array().into_iter().flatten().enumerate() {
            out.push((format!("{at}.{key}[{i}]"), c));
        }
    }
    for (i, c) in t["containerSet"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        out.push((format!("{at}.containerSet.containers[{i}]"), c));
    }
    out
}

/// GPUs a quantity of resource `name` is: `nvidia.com/gpu` whole, a MIG instance its
/// compute slices over 7, `gpu_milli` thousandths.
fn gpus_of(name: &str, quantity: &Value) -> Option<f64> {
    let n = match quantity {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    if name == "nvidia.com/gpu" {
        return Some(n);
    }
    if name == "gpu_milli" || name.ends_with("/gpu_milli") {
        return Some(n / 1000.0);
    }
    let profile = name
        .strip_prefix("nvidia.com/mig-")
        .or_else(|| name.strip_prefix("nvidia.com/gpu-mig-"))?;
    let slices: f64 = profile.split('g').next()?.parse().ok()?;
    Some(n * slices / 7.0)
}

/// A `resource` template creating a Volcano Job: each task's pods are checked as steps are
/// (GPUs per pod, images), and the Job's queue and priority classes as a step's.
fn check_volcano_job(rules: &Rules, t: &Value, at: &str, out: &mut Vec<Refusal>) {
    let Some(text) = t["resource"]["manifest"].as_str() else {
        return;
    };
    let Ok(docs) = manifest::parse_documents(text) else {
        return; // lint reports a manifest that does not parse
    };
    let Some(job) = docs.into_iter().map(|d| d.value).find(|v| {
        v["kind"] == "Job"
            && v["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with("batch.volcano.sh/"))
    }) else {
        return;
    };
    let at = format!("{at}.resource.manifest");
    let spec = &job["spec"];
    let queue = spec["queue"].as_str().unwrap_or("default");
    if let Some(allowed) = &rules.allowed_queues {
        if !allowed.iter().any(|a| a == queue) {
            out.push(not_allowed(
                "allowed_queues",
                &format!("{at}: spec.queue"),
                queue,
                allowed,
            ));
        }
    }
    let mut classes = vec![(
        format!("{at}: spec.priorityClassName"),
        &spec["priorityClassName"],
    )];
    for (i, task) in spec["tasks"].as_array().into_iter().flatten().enumerate() {
        let pod = &task["template"]["spec"];
        let here = format!("{at}: spec.tasks[{i}].template.spec");
        classes.push((
            format!("{here}.priorityClassName"),
            &pod["priorityClassName"],
        ));
        // The task's pod as a step: its containers' GPUs and images.
        let as_step = serde_json::json!({"initContainers": pod["initContainers"],
                                         "containerSet": {"containers": pod["containers"]}});
        let before = out.len();
        check_template(rules, &as_step, &here, out);
        // The Job's queue is its tasks' (checked above at spec.queue).
        let mut i = before;
        while i < out.len() {
            if out[i].rule == "allowed_queues" {
                out.remove(i);
            } else {
                out[i].field = out[i]
                    .field
                    .replace(".containerSet.containers[", ".containers[");
                i += 1;
            }
        }
    }
    if let Some(allowed) = &rules.allowed_priority_classes {
        for (field, c) in classes {
            if let Some(c) = c.as_str().filter(|c| !allowed.iter().any(|a| a == c)) {
                out.push(not_allowed("allowed_priority_classes", &field, c, allowed));
            }
        }
    }
}

fn check_template(rules: &Rules, t: &Value, at: &str, out: &mut Vec<Refusal>) {
    if t["resource"].is_object() {
        check_volcano_job(rules, t, at, out);
    }
    let runs = containers(t, at);
    if let Some(max) = rules.max_gpus_per_step {
        // A step's pod asks for the sum of its containers' requests (limits when no request).
        let mut total = 0.0;
        let mut fields = Vec::new();
        for (field, c) in &runs {
            let res = &c["resources"];
            for (kind, list) in [("limits", &res["limits"]), ("requests", &res["requests"])] {
                for (name, q) in list.as_object().into_iter().flatten() {
                    if let Some(g) = gpus_of(name, q) {
                        let counted = kind == "limits" || res["limits"].get(name).is_none();
                        if counted {
                            total += g;
                            fields.push(format!("{field}.resources.{kind}[{name:?}]"));
                        }
                    }
                }
            }
        }
        if total > max + 1e-9 {
            out.push(Refusal {
                rule: "max_gpus_per_step",
                field: fields.join(" + "),
                value: format_gpus(total),
                message: format!(
                    "a step in this namespace may ask for at most {} GPU(s)",
                    format_gpus(max)
                ),
            });
        }
    }
    if let Some(allowed) = &rules.allowed_queues {
        // A resource template's pods are the Job's, checked by `check_volcano_job`.
        let runs_a_pod = !runs.is_empty();
        let queue = t["metadata"]["annotations"]["scheduling.volcano.sh/queue-name"].as_str();
        match queue {
            Some(q) if !allowed.iter().any(|a| a == q) => out.push(not_allowed(
                "allowed_queues",
                &format!("{at}.metadata.annotations[\"scheduling.volcano.sh/queue-name\"]"),
                q,
                allowed,
            )),
            None if runs_a_pod && !allowed.iter().any(|a| a == "default") => {
                out.push(Refusal {
                    rule: "allowed_queues",
                    field: format!("{at}.metadata.annotations[\"scheduling.volcano.sh/queue-name\"]"),
                    value: "unset (the default queue)".into(),
                    message: format!(
                        "this namespace allows only {}: name one with the annotation scheduling.volcano.sh/queue-name",
                        allowed.join(", ")
                    ),
                })
            }
            _ => {}
        }
    }
    if let Some(allowed) = &rules.allowed_priority_classes {
        match t["priorityClassName"].as_str() {
            Some(c) if !allowed.iter().any(|a| a == c) => out.push(not_allowed(
                "allowed_priority_classes",
                &format!("{at}.priorityClassName"),
                c,
                allowed,
            )),
            _ => {}
        }
    }
    if let Some(allowed) = &rules.allowed_registries {
        for (field, c) in &runs {
            let Some(image) = c["image"].as_str() else {
                continue;
            };
            let full = qualified(image);
            if !allowed
                .iter()
                .any(|p| full.starts_with(p.as_str()) || image.starts_with(p.as_str()))
            {
                out.push(Refusal {
                    rule: "allowed_registries",
                    field: format!("{field}.image"),
                    value: format!("{image:?}"),
                    message: format!(
                        "images in this namespace come only from {} (this one is {full})",
                        allowed.join(", ")
                    ),
                });
            }
        }
    }
}

fn format_gpus(g: f64) -> String {
    if (g - g.round()).abs() < 1e-9 {
        format!("{}", g.round() as i64)
    } else {
        format!("{g:.3}")
    }
}

/// An image reference with its registry, as the container runtime resolves it: a first part
/// without `.`, `:` or `localhost` is a Docker Hub repository (`library/` for one part).
pub fn qualified(image: &str) -> String {
    let first = image.split('/').next().unwrap_or("");
    let has_registry =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    if has_registry {
        image.to_string()
    } else if image.contains('/') {
        format!("docker.io/{image}")
    } else {
        format!("docker.io/library/{image}")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::arbitrary_json::workflow_shaped;

    fn rules() -> Rules {
        Rules {
            max_gpus_per_step: Some(8.0),
            max_parallel_pods: Some(16),
            allowed_queues: Some(vec!["shared".into(), "dedicated".into()]),
            allowed_priority_classes: Some(vec!["normal".into()]),
            allowed_registries: Some(vec!["harbor.onyx.internal/".into()]),
        }
    }

    fn wf(templates: Value) -> Value {
        json!({"kind": "Workflow", "spec": {"templates": templates}})
    }

    #[test]
    fn a_workflow_within_every_rule_is_admitted() {
        let w = wf(json!([
            {"name": "main", "steps": [[{"name": "a", "template": "train"}]]},
            {"name": "train",
             "metadata": {"annotations": {"scheduling.volcano.sh/queue-name": "dedicated"}},
             "priorityClassName": "normal",
             "container": {"image": "harbor.onyx.internal/ml/torch:2.1",
                           "resources": {"limits": {"nvidia.com/gpu": 8}}}}]));
        assert_eq!(check(&rules(), &w, &[]), vec![]);
    }

    #[test]
    fn each_refusal_names_its_rule_field_and_value() {
        let w = json!({"spec": {"parallelism": 64, "templates": [
            {"name": "big",
             "metadata": {"annotations": {"scheduling.volcano.sh/queue-name": "research"}},
             "priorityClassName": "urgent",
             "container": {"image": "pytorch/pytorch:2.1",
                           "resources": {"limits": {"nvidia.com/gpu": "12"}}}},
            {"name": "mig", "metadata": {"annotations": {"scheduling.volcano.sh/queue-name": "shared"}},
             "script": {"image": "harbor.onyx.internal/x", "source": "true",
                        "resources": {"limits": {"nvidia.com/mig-3g.40gb": 1}}}},
            {"name": "plain", "container": {"image": "harbor.onyx.internal/y"}}]}});
        let r = check(&rules(), &w, &[]);
        let got: Vec<(&str, &str, &str)> = r
            .iter()
            .map(|r| (r.rule, r.field.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("max_parallel_pods", "spec.parallelism", "64"),
                (
                    "max_gpus_per_step",
                    "spec.templates[0].container.resources.limits[\"nvidia.com/gpu\"]",
                    "12"
                ),
                (
                    "allowed_queues",
                    "spec.templates[0].metadata.annotations[\"scheduling.volcano.sh/queue-name\"]",
                    "\"research\""
                ),
                (
                    "allowed_priority_classes",
                    "spec.templates[0].priorityClassName",
                    "\"urgent\""
                ),
                (
                    "allowed_registries",
                    "spec.templates[0].container.image",
                    "\"pytorch/pytorch:2.1\""
                ),
                (
                    "allowed_queues",
                    "spec.templates[2].metadata.annotations[\"scheduling.volcano.sh/queue-name\"]",
                    "unset (the default queue)"
                ),
            ]
        );
        assert!(
            r[4].to_string().contains("docker.io/pytorch/pytorch:2.1"),
            "{}",
            r[4]
        );
    }

    #[test]
    fn gpus_add_up_over_a_steps_containers_and_mig_counts_its_slices() {
        let r = Rules {
            max_gpus_per_step: Some(0.5),
            ..Rules::default()
        };
        let w = wf(json!([{"name": "t",
            "containerSet": {"containers": [
                {"name": "a", "image": "x", "resources": {"limits": {"nvidia.com/mig-3g.40gb": 2}}},
                {"name": "b", "image": "x", "resources": {"requests": {"nvidia.com/gpu-mig-1g.10gb": "1"}}}]}}]));
        let refused = check(&r, &w, &[]);
        assert_eq!(refused.len(), 1);
        // 2 × 3/7 + 1/7 (a request without a limit counts).
        assert_eq!(refused[0].value, "1");
        let w = wf(json!([{"name": "t", "container": {"image": "x",
            "resources": {"limits": {"nvidia.com/mig-3g.40gb": 3}}}}]));
        assert_eq!(check(&r, &w, &[])[0].value, "1.286");
    }

    #[test]
    fn templates_drawn_from_workflow_templates_are_checked_under_their_name() {
        let r = Rules {
            allowed_registries: Some(vec!["harbor.onyx.internal/".into()]),
            ..Rules::default()
        };
        let t = json!({"kind": "WorkflowTemplate", "metadata": {"name": "lib"},
            "spec": {"templates": [{"name": "t", "container": {"image": "debian"}}]}});
        let refused = check(&r, &wf(json!([])), &[t]);
        assert_eq!(
            refused[0].field,
            "WorkflowTemplate/lib.spec.templates[0].container.image"
        );
    }

    #[test]
    fn a_volcano_job_is_checked_pod_by_pod() {
        let job = "apiVersion: batch.volcano.sh/v1alpha1\nkind: Job\nmetadata: {name: j}\nspec:\n  queue: research\n  minAvailable: 2\n  tasks:\n  - name: worker\n    replicas: 2\n    template:\n      spec:\n        priorityClassName: urgent\n        containers:\n        - name: w\n          image: pytorch/pytorch:2.1\n          resources: {limits: {nvidia.com/gpu: 16}}\n";
        let w = wf(json!([{"name": "train", "resource": {"action": "create", "manifest": job}}]));
        let got: Vec<(&str, String)> = check(&rules(), &w, &[])
            .into_iter()
            .map(|r| (r.rule, r.field))
            .collect();
        let at = "spec.templates[0].resource.manifest";
        assert_eq!(
            got,
            vec![
                ("allowed_queues", format!("{at}: spec.queue")),
                (
                    "max_gpus_per_step",
                    format!("{at}: spec.tasks[0].template.spec.containers[0].resources.limits[\"nvidia.com/gpu\"]")
                ),
                ("allowed_registries", format!("{at}: spec.tasks[0].template.spec.containers[0].image")),
                ("allowed_priority_classes", format!("{at}: spec.tasks[0].template.spec.priorityClassName")),
            ]
        );
    }

    #[test]
    fn images_are_qualified_as_the_runtime_does() {
        assert_eq!(qualified("debian"), "docker.io/library/debian");
        assert_eq!(
            qualified("argoproj/argosay:v2"),
            "docker.io/argoproj/argosay:v2"
        );
        assert_eq!(
            qualified("harbor.onyx.internal/ml/x"),
            "harbor.onyx.internal/ml/x"
        );
        assert_eq!(qualified("localhost:5000/x"), "localhost:5000/x");
    }

    /// JSON shaped like workflows: the fields the rules read, holding anything.
    fn json() -> impl Strategy<Value = Value> {
        let keys = vec![
            "spec",
            "templates",
            "container",
            "script",
            "resources",
            "limits",
            "requests",
            "nvidia.com/gpu",
            "nvidia.com/mig-3g.40gb",
            "gpu_milli",
            "image",
            "metadata",
            "annotations",
            "scheduling.volcano.sh/queue-name",
            "priorityClassName",
            "parallelism",
            "containerSet",
            "containers",
            "initContainers",
            "sidecars",
            "templateDefaults",
            "podPriorityClassName",
            "name",
            "kind",
        ];
        let texts = vec!["[a-z0-9./:g-]{0,12}".prop_map(Value::from).boxed()];
        workflow_shaped(keys, texts)
    }

    proptest::proptest! {
        #[test]
        fn any_json_is_checked_without_panic(v in json(), t in json()) {
            let refused = check(&rules(), &v, &[t]);
            for r in refused {
                proptest::prop_assert!(!r.field.is_empty() && !r.value.is_empty());
            }
        }
    }
}
