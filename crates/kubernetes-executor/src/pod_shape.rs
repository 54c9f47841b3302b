//! A step's Pod as Argo's controller shapes it (`workflow/controller/workflowpod.go`, v3.5):
//! pure, from the engine's [`PodRequest`] and the node ONYX's scheduler chose.
//!
//! - Name and namespace: the node's pod name (Argo's v2 pod names) in the workflow's
//!   namespace. Labels `workflows.argoproj.io/workflow` and `…/completed: "false"`, the
//!   annotation `workflows.argoproj.io/node-id`, then the template's `metadata` labels and
//!   annotations (the user's win, as in Argo, except the workflow label, which ONYX selects
//!   its pods by).
//! - The container `main` from a `container` or `script` template (image, command, args, env,
//!   workingDir, resources, volumeMounts), the template's `initContainers` and `sidecars`, the
//!   workflow's and template's volumes, `nodeSelector`, `tolerations`, `priorityClassName`,
//!   `activeDeadlineSeconds` from the step's deadline, `restartPolicy: Never`, and
//!   `schedulerName: onyx`: ONYX binds the pod itself (the `Binding` subresource), so no
//!   other scheduler may take it.
//! - With ONYX's executor image configured, an init container `init` copies the `onyx` binary
//!   (with its loader and libraries) into the emptyDir `/var/run/onyx` and `main` runs its
//!   command under `onyx emissary`, which
//!   reports `result` and the output parameters through the container's termination message
//!   (what Argo's emissary does with its `wait` container; ONYX needs no second container and
//!   no pod-patching RBAC for it).
//! - Last, the template's `podSpecPatch`, merged as a strategic merge patch merges a PodSpec:
//!   `containers`, `initContainers` and `volumes` entries by `name`, objects by key, anything
//!   else replaced. Submission has checked the patch against the namespace's Pod Security
//!   level (`admission::pod_security`); the cluster's own admission checks the pod again.

use serde_json::{json, Map, Value};
use workflow_engine::PodRequest;

/// The label ONYX finds its pods by (Argo's).
pub const WORKFLOW_LABEL: &str = "workflows.argoproj.io/workflow";
/// Argo's label of a pod whose result the controller has taken.
pub const COMPLETED_LABEL: &str = "workflows.argoproj.io/completed";
/// Argo's annotation with the pod's node id.
pub const NODE_ID_ANNOTATION: &str = "workflows.argoproj.io/node-id";
/// The label every pod ONYX's Kubernetes executor creates carries: its watch selects by it.
pub const MANAGED_LABEL: &str = "onyx.io/managed";
/// Where a pod keeps what ONYX's scheduler gave it (a `cluster_shell::Grant`, JSON), so that a
/// restarted server holds the same devices for it again.
pub const GRANT_ANNOTATION: &str = "onyx.io/grant";
/// The scheduler name ONYX's pods carry; ONYX binds them.
pub const SCHEDULER_NAME: &str = "onyx";
/// Where ONYX's executor binary is put in a pod.
pub const EXECUTOR_DIR: &str = "/var/run/onyx";

/// What, beside the request, decides a pod's shape.
#[derive(Debug, Clone)]
pub struct PodContext<'a> {
    pub namespace: &'a str,
    pub workflow: &'a str,
    /// ONYX's executor image; `None`: the container runs as written, and the pod's result is
    /// its exit code (and a termination message the image writes itself).
    pub executor_image: Option<&'a str>,
    /// The scheduler's grant (JSON), kept on the pod for re-adoption.
    pub grant: Option<String>,
    /// The template's `podSpecPatch`, already substituted.
    pub pod_spec_patch: Option<&'a str>,
    /// When the pod is made (the step's deadline is counted from it).
    pub now: workflow_engine::Time,
    /// The namespace is at Pod Security level `restricted`: the pod gets that level's
    /// settings (non-root, no privilege escalation, no capabilities, the runtime's seccomp
    /// profile) unless a patch sets them otherwise, as the final check then sees.
    pub restricted: bool,
}

/// Why a pod cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShapeError {
    #[error("template {0}: only container and script templates run as pods on Kubernetes")]
    NotAPodTemplate(String),
    #[error("template {0}: podSpecPatch: {1}")]
    Patch(String, String),
    #[error("template {0}: {1}")]
    Invalid(String, String),
}

/// The Pod of `req`, as JSON in the API's shape.
pub fn pod_manifest(req: &PodRequest, cx: &PodContext) -> Result<Value, ShapeError> {
    let t = &req.template;
    let (container, script) = match (&t.container, &t.script) {
        (Some(c), _) => (c.clone(), None),
        (None, Some(s)) => (s.container.clone(), Some(s.source.clone())),
        _ => return Err(ShapeError::NotAPodTemplate(t.name.clone())),
    };
    let mut main = container_json(&container);
    main["name"] = json!("main");
    let mut labels = Map::new();
    let mut annotations = Map::new();
    if let Some(meta) = &t.metadata {
        for (from, to) in [("labels", &mut labels), ("annotations", &mut annotations)] {
            if let Some(m) = meta[from].as_object() {
                for (k, v) in m {
                    if let Some(s) = text(v) {
                        to.insert(k.clone(), json!(s));
                    }
                }
            }
        }
    }
    labels.insert(WORKFLOW_LABEL.into(), json!(cx.workflow));
    labels.insert(COMPLETED_LABEL.into(), json!("false"));
    labels.insert(MANAGED_LABEL.into(), json!("true"));
    annotations.insert(NODE_ID_ANNOTATION.into(), json!(req.node_id));
    if let Some(g) = &cx.grant {
        annotations.insert(GRANT_ANNOTATION.into(), json!(g));
    }
    let mut volumes: Vec<Value> = req.volumes.clone();
    for v in &t.volumes {
        if !volumes.iter().any(|w| w["name"] == v["name"]) {
            volumes.push(v.clone());
        }
    }
    let mut init: Vec<Value> = t.init_containers.iter().map(container_json).collect();
    let mut env_extra = Vec::new();
    if let Some(image) = cx.executor_image {
        volumes.push(json!({"name": "onyx-executor", "emptyDir": {}}));
        let mount = json!({"name": "onyx-executor", "mountPath": EXECUTOR_DIR});
        init.insert(
            0,
            json!({"name": "init", "image": image,
                   "command": ["onyx", "install-executor", EXECUTOR_DIR],
                   "volumeMounts": [mount.clone()]}),
        );
        // Through the loader `install-executor` put beside the binary: the step's image need
        // not have a C library (see `emissary::install`).
        let mut command = vec![
            json!(format!("{EXECUTOR_DIR}/lib/ld.so")),
            json!("--library-path"),
            json!(format!("{EXECUTOR_DIR}/lib")),
            json!(format!("{EXECUTOR_DIR}/onyx")),
            json!("emissary"),
        ];
        if script.is_some() {
            command.push(json!("--script"));
        }
        command.push(json!("--"));
        command.extend(main["command"].as_array().cloned().unwrap_or_default());
        if command.last() == Some(&json!("--")) {
            return Err(ShapeError::Invalid(
                t.name.clone(),
                "the container has no command: ONYX's executor runs a container's command and cannot read an image's entrypoint; give `command`".into(),
            ));
        }
        main["command"] = Value::Array(command);
        push(&mut main, "volumeMounts", mount);
        env_extra.push(json!({"name": "ONYX_OUTPUTS", "value": outputs_spec(req).to_string()}));
    }
    if let Some(source) = script {
        env_extra.push(json!({"name": "ONYX_SCRIPT", "value": source}));
    }
    for e in env_extra {
        push(&mut main, "env", e);
    }
    let mut containers = vec![main];
    containers.extend(t.sidecars.iter().map(container_json));
    let mut spec = json!({
        "restartPolicy": "Never",
        "schedulerName": SCHEDULER_NAME,
        "containers": containers,
    });
    if !init.is_empty() {
        spec["initContainers"] = Value::Array(init);
    }
    if !volumes.is_empty() {
        spec["volumes"] = Value::Array(volumes);
    }
    if !t.node_selector.is_empty() {
        spec["nodeSelector"] = t
            .node_selector
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.0)))
            .collect::<Map<_, _>>()
            .into();
    }
    if !t.tolerations.is_empty() {
        spec["tolerations"] = Value::Array(t.tolerations.clone());
    }
    if let Some(p) = &t.priority_class_name {
        spec["priorityClassName"] = json!(p);
    }
    if let Some(d) = req.deadline {
        // Argo's activeDeadlineSeconds: what is left of the step's deadline when the pod is
        // made (at least a second; the kubelet ends the pod when it passes).
        let left = (d - cx.now).num_seconds().max(1);
        spec["activeDeadlineSeconds"] = json!(left);
    }
    // A step runs without the namespace's API credentials: ONYX makes pods on a tenant's
    // behalf, and a tenant who may submit need not be one who may act in the cluster.
    spec["automountServiceAccountToken"] = json!(false);
    if cx.restricted {
        spec["securityContext"] =
            json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}});
        for list in ["initContainers", "containers"] {
            for c in spec
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                c["securityContext"] = json!({"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}});
            }
        }
    }
    if let Some(patch) = cx.pod_spec_patch.filter(|p| !p.trim().is_empty()) {
        let patch = parse_patch(patch).map_err(|e| ShapeError::Patch(t.name.clone(), e))?;
        merge_pod_spec(&mut spec, &patch);
    }
    // Neither the template nor its patch takes the pod from ONYX's scheduler, picks its
    // node, or lends it an identity in the cluster.
    spec["schedulerName"] = json!(SCHEDULER_NAME);
    spec["automountServiceAccountToken"] = json!(false);
    if let Some(o) = spec.as_object_mut() {
        o.remove("nodeName");
        o.remove("serviceAccountName");
        o.remove("serviceAccount");
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": req.pod_name,
            "namespace": cx.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }))
}

/// What `onyx emissary` reports: `result` (stdout) when the engine uses it, and each output
/// parameter read from a file (`valueFrom.path`).
fn outputs_spec(req: &PodRequest) -> Value {
    let parameters: Vec<Value> = req
        .template
        .outputs
        .parameters
        .iter()
        .filter_map(|p| {
            let path = p.value_from.as_ref()?.path.as_ref()?;
            Some(json!({"name": p.name, "path": path}))
        })
        .collect();
    json!({"result": req.capture_result, "parameters": parameters})
}

/// A container as the API has it: ONYX's own fields (`mirrorVolumeMounts`, `dependencies`)
/// dropped.
fn container_json(c: &workflow_model::Container) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or_else(|_| json!({}));
    if let Some(o) = v.as_object_mut() {
        o.remove("mirrorVolumeMounts");
        o.remove("dependencies");
    }
    drop_empty(&mut v);
    // Quantities are strings to the API's clients (YAML's `nvidia.com/gpu: 1` is a number).
    for part in ["limits", "requests"] {
        if let Some(q) = v
            .get_mut("resources")
            .and_then(|r| r.get_mut(part))
            .and_then(Value::as_object_mut)
        {
            for x in q.values_mut() {
                if let Some(t) = text(x) {
                    *x = json!(t);
                }
            }
        }
    }
    v
}

/// Remove `null`s and empty lists, which ONYX's types write for fields not given.
fn drop_empty(v: &mut Value) {
    match v {
        Value::Object(o) => {
            o.retain(|_, v| !v.is_null() && v != &json!([]));
            o.values_mut().for_each(drop_empty);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_empty),
        _ => {}
    }
}

fn push(v: &mut Value, key: &str, item: Value) {
    match v[key].as_array_mut() {
        Some(a) => a.push(item),
        None => v[key] = json!([item]),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_patch(text: &str) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return Ok(v);
    }
    let docs = manifest::parse_documents(text).map_err(|e| e.to_string())?;
    let v = docs
        .into_iter()
        .next()
        .map(|d| d.value)
        .unwrap_or(Value::Null);
    if v.is_object() {
        Ok(v)
    } else {
        Err("expected a PodSpec object".into())
    }
}

/// A PodSpec's lists that a strategic merge patch merges by `name`.
const MERGED_BY_NAME: [&str; 5] = [
    "containers",
    "initContainers",
    "volumes",
    "env",
    "volumeMounts",
];

/// `patch` onto `target` as a strategic merge patch onto a PodSpec: objects by key, the
/// lists of [`MERGED_BY_NAME`] by their entries' `name`, `null` removes, anything else is
/// replaced.
pub fn merge_pod_spec(target: &mut Value, patch: &Value) {
    let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) else {
        *target = patch.clone();
        return;
    };
    for (k, pv) in p {
        if pv.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), pv) {
            (Some(Value::Array(items)), Value::Array(patches))
                if MERGED_BY_NAME.contains(&k.as_str()) =>
            {
                for pi in patches {
                    match items
                        .iter_mut()
                        .find(|i| i.get("name").is_some() && i.get("name") == pi.get("name"))
                    {
                        Some(i) => merge_pod_spec(i, pi),
                        None => items.push(pi.clone()),
                    }
                }
            }
            (Some(tv @ Value::Object(_)), Value::Object(_)) => merge_pod_spec(tv, pv),
            _ => {
                t.insert(k.clone(), pv.clone());
            }
        }
    }
}

/// Why the pod as finally made (its patch, init containers and sidecars included) asks for
/// more than the scheduler placed it with, if it does: more of an extended resource (GPUs,
/// MIG instances: Kubernetes counts the containers' sum, or the largest init container's when
/// that is more), another priority class, or GPUs named through `NVIDIA_VISIBLE_DEVICES`
/// (which NVIDIA's runtime may honour without a device request). The kubelet's device
/// plugin hands out what the pod asks, not what ONYX granted: such a pod would take another
/// tenant's devices.
pub fn beyond_grant(pod: &Value, ask: &cluster_shell::Ask) -> Option<String> {
    let spec = &pod["spec"];
    let asked = |c: &Value| -> std::collections::BTreeMap<String, i128> {
        let mut out = std::collections::BTreeMap::new();
        for part in ["limits", "requests"] {
            for (k, v) in c["resources"][part].as_object().into_iter().flatten() {
                if !k.contains('/') {
                    continue;
                }
                let milli = text(v)
                    .and_then(|t| scheduler::Quantity::Text(t).milli().ok())
                    .unwrap_or(i128::MAX);
                let e = out.entry(k.clone()).or_insert(0);
                *e = (*e).max(milli);
            }
        }
        out
    };
    let mut total: std::collections::BTreeMap<String, i128> = Default::default();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for (k, v) in asked(c) {
            *total.entry(k).or_insert(0) += v;
        }
    }
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        for (k, v) in asked(c) {
            let e = total.entry(k).or_insert(0);
            *e = (*e).max(v);
        }
    }
    for (k, v) in &total {
        let granted = ask
            .requests
            .get(k)
            .and_then(|q| scheduler::Quantity::Text(q.clone()).milli().ok())
            .unwrap_or(0);
        if *v > granted {
            return Some(format!(
                "the pod asks for {} of {k} and was placed with {}: resources are set in the template's container, not by a patch, a sidecar or an init container",
                show_milli(*v),
                show_milli(granted)
            ));
        }
    }
    if let Some(p) = spec["priorityClassName"].as_str() {
        if p != ask.priority_class {
            return Some(format!(
                "the pod's priority class {p:?} is not the one it was scheduled with ({:?})",
                ask.priority_class
            ));
        }
    }
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["env"].as_array().into_iter().flatten() {
                if e["name"] == "NVIDIA_VISIBLE_DEVICES" {
                    return Some(format!(
                        "container {}: NVIDIA_VISIBLE_DEVICES is the device plugin's to set: ask for GPUs in resources",
                        c["name"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    None
}

fn show_milli(m: i128) -> String {
    if m == i128::MAX {
        "an unreadable quantity".into()
    } else if m % 1000 == 0 {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}
