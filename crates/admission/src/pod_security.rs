//! Kubernetes Pod Security Standards (`baseline`, `restricted`), checked when a workflow is
//! submitted, as the pod-security admission controller (`k8s.io/pod-security-admission`,
//! `policy/check_*.go`, v1.27 semantics) would check the pods it creates.
//!
//! Pure: `check(level, workflow, templates)` reads the workflow and the WorkflowTemplates it
//! draws templates from (JSON, as submitted, Argo v3.5 field names) and returns one refusal per
//! violated check per field. Each names the exact field (a path into the object) and the value
//! there, or `unset` where the restricted level needs a field set. It never panics on any JSON
//! (property-tested).
//!
//! A step's pod takes its pod-level settings from, most binding first: the `podSpecPatch`es
//! (the template's, `templateDefaults`', the workflow's; parsed as JSON or YAML), then the
//! template's `securityContext` (or `templateDefaults`'), else the workflow's
//! `spec.securityContext`. Its volumes are the workflow's and the template's; a patch's
//! `containers` entries patch the container of that name (Argo names a `container` or
//! `script` template's container `main`) or add one. A `resource` template's manifest is
//! checked too where it holds pod templates (a Pod, `spec.template`, a CronJob's
//! `spec.jobTemplate`, a Volcano Job's `spec.tasks[].template`). The controller's own `init`
//! and `wait` containers are not in the manifest and are not checked.
//!
//! This module assembles each pod from the workflow; `levels` holds what each level allows,
//! `pod` how a pod's layers merge, and `checker` the checks themselves.

mod checker;
mod levels;
mod pod;
#[cfg(test)]
mod tests;

use serde_json::Value;

pub use levels::Level;

use crate::Refusal;
use checker::Checker;
use pod::{join, Ctr, Layer, LayerKind, Pod};

/// Every refusal of `workflow` (a Workflow manifest) and the `templates` (WorkflowTemplate or
/// ClusterWorkflowTemplate manifests) it draws templates from, at `level`.
pub fn check(level: Level, workflow: &Value, templates: &[Value]) -> Vec<Refusal> {
    let mut checker = Checker::new(level);
    if level == Level::Privileged {
        return checker.into_refusals();
    }
    let wf_spec = &workflow["spec"];
    let wf_patch = pod_spec_patch(&wf_spec["podSpecPatch"]);
    let mut sources: Vec<(String, &Value)> = vec![("spec".into(), wf_spec)];
    for t in templates {
        let name = t["metadata"]["name"].as_str().unwrap_or("?");
        let kind = t["kind"].as_str().unwrap_or("WorkflowTemplate");
        sources.push((format!("{kind}/{name}.spec"), &t["spec"]));
    }
    for (s, (prefix, spec)) in sources.iter().enumerate() {
        let source_patch = if s == 0 {
            None
        } else {
            pod_spec_patch(&spec["podSpecPatch"])
        };
        let defaults = spec.get("templateDefaults").filter(|d| d.is_object());
        let defaults_at = format!("{prefix}.templateDefaults");
        let defaults_patch = defaults.and_then(|d| pod_spec_patch(&d["podSpecPatch"]));
        let mut located: Vec<(String, &Value, bool)> = spec["templates"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, t)| (format!("{prefix}.templates[{i}]"), t, false))
            .collect();
        if let Some(d) = defaults {
            located.push((defaults_at.clone(), d, true));
        }
        for (at, t, is_defaults) in located {
            if t["resource"].is_object() {
                check_resource(&mut checker, t, &at);
            }
            let own_patch = pod_spec_patch(&t["podSpecPatch"]);
            let mut layers = Vec::new();
            let mut patches: Vec<(String, &Value)> = Vec::new();
            if let Some(p) = &own_patch {
                patches.push((format!("{at}.podSpecPatch:"), p));
            }
            if let (false, Some(p)) = (is_defaults, &defaults_patch) {
                patches.push((format!("{defaults_at}.podSpecPatch:"), p));
            }
            if let Some(p) = &source_patch {
                patches.push((format!("{prefix}.podSpecPatch:"), p));
            }
            if let Some(p) = &wf_patch {
                patches.push(("spec.podSpecPatch:".into(), p));
            }
            for (pat, p) in &patches {
                layers.push(Layer {
                    at: pat.clone(),
                    v: p,
                    kind: LayerKind::Patch,
                    namespaces: &["hostNetwork", "hostPID", "hostIPC"],
                    annotations: None,
                });
            }
            let mut argo_templates = vec![(at.clone(), t)];
            if let (false, Some(d)) = (is_defaults, defaults) {
                argo_templates.push((defaults_at.clone(), d));
            }
            for (tat, tv) in argo_templates {
                layers.push(Layer {
                    annotations: Some((
                        format!("{tat}.metadata.annotations"),
                        &tv["metadata"]["annotations"],
                    )),
                    at: tat,
                    v: tv,
                    kind: LayerKind::Template,
                    namespaces: &[],
                });
            }
            let mut workflow_specs = vec![("spec".to_string(), wf_spec)];
            if s > 0 {
                workflow_specs.push((prefix.clone(), *spec));
            }
            for (wat, wv) in workflow_specs {
                layers.push(Layer {
                    annotations: Some((
                        format!("{wat}.podMetadata.annotations"),
                        &wv["podMetadata"]["annotations"],
                    )),
                    at: wat,
                    v: wv,
                    kind: LayerKind::Workflow,
                    namespaces: &["hostNetwork"],
                });
            }

            let mut ctrs: Vec<Ctr> = Vec::new();
            for (field, c) in crate::containers(t, &at) {
                let key = field.rsplit('.').next().unwrap_or("").to_string();
                let main = key == "container" || key == "script";
                let name = if main {
                    "main".to_string()
                } else {
                    c["name"].as_str().unwrap_or("").to_string()
                };
                let mut ctr = Ctr {
                    name,
                    at: field.clone(),
                    layers: vec![(field, c)],
                };
                // A template's container is merged over templateDefaults' one.
                if let (true, false, Some(d)) = (main, is_defaults, defaults) {
                    if d[key.as_str()].is_object() {
                        ctr.layers
                            .push((format!("{defaults_at}.{key}"), &d[key.as_str()]));
                    }
                }
                ctrs.push(ctr);
            }
            if ctrs.is_empty() {
                continue; // no pod of its own
            }
            for (pat, p) in &patches {
                for list in ["containers", "initContainers"] {
                    for (j, c) in p[list].as_array().into_iter().flatten().enumerate() {
                        let field = join(pat, &format!("{list}[{j}]"));
                        let name = c["name"].as_str().unwrap_or("");
                        match ctrs.iter_mut().find(|k| k.name == name) {
                            // Patches apply over the container, most binding first.
                            Some(k) => {
                                let base = k
                                    .layers
                                    .iter()
                                    .position(|(f, _)| *f == k.at)
                                    .unwrap_or(k.layers.len());
                                k.layers.insert(base, (field, c));
                            }
                            None => ctrs.push(Ctr {
                                name: name.to_string(),
                                at: field.clone(),
                                layers: vec![(field, c)],
                            }),
                        }
                    }
                }
            }
            checker.pod(&Pod {
                layers,
                containers: ctrs,
            });
        }
    }
    checker.into_refusals()
}

/// A template's `podSpecPatch`: a JSON or YAML object (an object as given, too).
fn pod_spec_patch(v: &Value) -> Option<Value> {
    match v {
        Value::Object(_) => Some(v.clone()),
        Value::String(s) => {
            let parsed = match serde_json::from_str::<Value>(s) {
                Ok(p) => p,
                Err(_) => manifest::parse_documents(s).ok()?.into_iter().next()?.value,
            };
            parsed.is_object().then_some(parsed)
        }
        _ => None,
    }
}

/// The pods a `resource` template's manifest describes (a Pod, `spec.template`, a CronJob's
/// `spec.jobTemplate`, a Volcano Job's `spec.tasks[].template`), each checked on its own.
fn check_resource(checker: &mut Checker, t: &Value, at: &str) {
    let Some(text) = t["resource"]["manifest"].as_str() else {
        return;
    };
    let Ok(docs) = manifest::parse_documents(text) else {
        return; // lint reports a manifest that does not parse
    };
    let several = docs.len() > 1;
    for (d, doc) in docs.iter().enumerate() {
        let base = if several {
            format!("{at}.resource.manifest[{d}]:")
        } else {
            format!("{at}.resource.manifest:")
        };
        let v = &doc.value;
        let mut pods: Vec<(String, &Value, String, &Value)> = Vec::new();
        if v["kind"] == "Pod" {
            pods.push(("spec".into(), &v["spec"], "metadata".into(), &v["metadata"]));
        }
        let template = &v["spec"]["template"];
        if template["spec"].is_object() {
            pods.push((
                "spec.template.spec".into(),
                &template["spec"],
                "spec.template.metadata".into(),
                &template["metadata"],
            ));
        }
        let template = &v["spec"]["jobTemplate"]["spec"]["template"];
        if template["spec"].is_object() {
            pods.push((
                "spec.jobTemplate.spec.template.spec".into(),
                &template["spec"],
                "spec.jobTemplate.spec.template.metadata".into(),
                &template["metadata"],
            ));
        }
        for (i, task) in v["spec"]["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let template = &task["template"];
            if template["spec"].is_object() {
                pods.push((
                    format!("spec.tasks[{i}].template.spec"),
                    &template["spec"],
                    format!("spec.tasks[{i}].template.metadata"),
                    &template["metadata"],
                ));
            }
        }
        for (spec_at, spec, meta_at, meta) in pods {
            check_pod_spec(checker, &base, &spec_at, spec, &meta_at, meta);
        }
    }
}

/// Every refusal of a whole Pod (as the API takes it) at `level`: what the pod-security
/// admission controller would refuse, checked by a shell before it creates the pod — the pod
/// as it is finally made, after parameters and patches, which submission cannot see.
pub fn check_pod(level: Level, pod: &Value) -> Vec<Refusal> {
    let mut checker = Checker::new(level);
    if level != Level::Privileged {
        check_pod_spec(
            &mut checker,
            "",
            "spec",
            &pod["spec"],
            "metadata",
            &pod["metadata"],
        );
    }
    checker.into_refusals()
}

/// One pod of a manifest (`spec_at` and `meta_at` are its paths, after `base`).
fn check_pod_spec(
    checker: &mut Checker,
    base: &str,
    spec_at: &str,
    spec: &Value,
    meta_at: &str,
    meta: &Value,
) {
    let under = |at: &str| {
        if base.is_empty() {
            at.to_string()
        } else {
            join(base, at)
        }
    };
    let spec_at = under(spec_at);
    let mut containers = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for (j, c) in spec[list].as_array().into_iter().flatten().enumerate() {
            let field = format!("{spec_at}.{list}[{j}]");
            containers.push(Ctr {
                name: c["name"].as_str().unwrap_or("").to_string(),
                at: field.clone(),
                layers: vec![(field, c)],
            });
        }
    }
    let layer = Layer {
        at: spec_at,
        v: spec,
        kind: LayerKind::Template,
        namespaces: &["hostNetwork", "hostPID", "hostIPC"],
        annotations: Some((
            under(&format!("{meta_at}.annotations")),
            &meta["annotations"],
        )),
    };
    checker.pod(&Pod {
        layers: vec![layer],
        containers,
    });
}
