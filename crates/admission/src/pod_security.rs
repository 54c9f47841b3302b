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

use std::collections::{BTreeSet, HashSet};

use serde::Deserialize;
use serde_json::Value;

use crate::Refusal;

/// A Pod Security Standards level, as the namespace label
/// `pod-security.kubernetes.io/enforce` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Unrestricted: admits everything.
    Privileged,
    /// Prevents known privilege escalations.
    #[default]
    Baseline,
    /// Baseline plus current pod-hardening practice.
    Restricted,
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        })
    }
}

/// Capabilities the baseline level lets a container add.
const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls the baseline level allows (the "safe" set).
const SAFE_SYSCTLS: [&str; 6] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];

const SELINUX_TYPES: [&str; 4] = ["", "container_t", "container_init_t", "container_kvm_t"];

/// Volume sources the restricted level allows.
const RESTRICTED_VOLUME_SOURCES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

const APPARMOR_ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Every refusal of `workflow` (a Workflow manifest) and the `templates` (WorkflowTemplate or
/// ClusterWorkflowTemplate manifests) it draws templates from, at `level`.
pub fn check(level: Level, workflow: &Value, templates: &[Value]) -> Vec<Refusal> {
    let mut checker = Checker {
        level,
        out: Vec::new(),
        seen: HashSet::new(),
    };
    if level == Level::Privileged {
        return checker.out;
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
    checker.out
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
            let spec_at = join(&base, &spec_at);
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
                    join(&base, &format!("{meta_at}.annotations")),
                    &meta["annotations"],
                )),
            };
            checker.pod(&Pod {
                layers: vec![layer],
                containers,
            });
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerKind {
    /// A `podSpecPatch`: its fields win over everything else.
    Patch,
    /// The template (or `templateDefaults`, or a manifest's pod spec): its `securityContext`
    /// replaces the workflow's.
    Template,
    /// The workflow's spec.
    Workflow,
}

/// An object that sets a pod's pod-level fields.
struct Layer<'a> {
    /// Its path; one ending in `:` is a document of its own (`spec.podSpecPatch:`).
    at: String,
    v: &'a Value,
    kind: LayerKind,
    /// The host-namespace fields it may set.
    namespaces: &'static [&'static str],
    /// Where the pod's annotations come from, if it sets them.
    annotations: Option<(String, &'a Value)>,
}

/// One of a pod's containers.
struct Ctr<'a> {
    name: String,
    /// Where it is written (its template's container, or the patch that adds it).
    at: String,
    /// The objects that set its fields, most binding first.
    layers: Vec<(String, &'a Value)>,
}

impl Ctr<'_> {
    /// The value its security context has at `keys`, as the layers merge.
    fn security(&self, keys: &[&str]) -> Option<&Value> {
        self.layers
            .iter()
            .find_map(|(_, c)| get(&c["securityContext"], keys))
    }
}

/// A pod a step (or a resource template) creates.
struct Pod<'a> {
    layers: Vec<Layer<'a>>,
    containers: Vec<Ctr<'a>>,
}

impl Pod<'_> {
    /// The value its pod-level security context has at `keys`: patches first, then the
    /// template's security context if it sets one, else the workflow's.
    fn security(&self, keys: &[&str]) -> Option<&Value> {
        let of = |kind| self.layers.iter().filter(move |l| l.kind == kind);
        let from = |kind| of(kind).find_map(|l| get(&l.v["securityContext"], keys));
        if let Some(v) = from(LayerKind::Patch) {
            return Some(v);
        }
        if of(LayerKind::Template).any(|l| l.v["securityContext"].is_object()) {
            from(LayerKind::Template)
        } else {
            from(LayerKind::Workflow)
        }
    }

    /// A Windows pod (`spec.os.name: windows`) is exempt from some restricted checks.
    fn windows(&self) -> bool {
        self.layers
            .iter()
            .filter(|l| l.kind != LayerKind::Workflow)
            .find_map(|l| get(l.v, &["os", "name"]))
            .is_some_and(|n| n == "windows")
    }
}

/// The non-null value at `keys` under `v`.
fn get<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut v = v;
    for k in keys {
        v = v.as_object()?.get(*k)?;
    }
    (!v.is_null()).then_some(v)
}

/// `at` and a field under it; `at` ending in `:` is a document's name
/// (`spec.podSpecPatch: hostPID`).
fn join(at: &str, key: &str) -> String {
    if at.ends_with(':') {
        format!("{at} {key}")
    } else {
        format!("{at}.{key}")
    }
}

/// A value as the refusal shows it (JSON: strings quoted).
fn shown(v: &Value) -> String {
    v.to_string()
}

/// A value in a message: strings without quotes.
fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

fn is_true(v: &Value) -> bool {
    *v == Value::Bool(true)
}

fn is_zero(v: &Value) -> bool {
    v.as_f64() == Some(0.0)
}

/// Distinct, sorted, quoted and comma-joined, as Kubernetes lists names.
fn join_quoted<'a>(names: impl IntoIterator<Item = &'a Value>) -> String {
    names
        .into_iter()
        .map(|n| match n.as_str() {
            Some(s) => format!("{s:?}"),
            None => n.to_string(),
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Who sets a security context: `pod` or `container "NAME"`.
#[derive(Clone, Copy)]
enum Who<'a> {
    Pod,
    Container(&'a str),
}

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Pod => f.write_str("pod"),
            Who::Container(name) => write!(f, "container {name:?}"),
        }
    }
}

struct Checker {
    level: Level,
    out: Vec<Refusal>,
    seen: HashSet<(String, String)>,
}

impl Checker {
    fn restricted(&self) -> bool {
        self.level == Level::Restricted
    }

    /// One refusal per field and message (a workflow-level field is seen from every pod).
    fn refuse(&mut self, field: String, value: String, reason: &str, detail: String) {
        let message = format!(
            "violates PodSecurity \"{}:latest\": {reason} ({detail})",
            self.level
        );
        if self.seen.insert((field.clone(), message.clone())) {
            self.out.push(Refusal {
                rule: "pod_security",
                field,
                value,
                message,
            });
        }
    }

    fn pod(&mut self, pod: &Pod) {
        let windows = pod.windows();
        for layer in &pod.layers {
            self.pod_level(layer, windows);
        }
        for ctr in &pod.containers {
            for (at, c) in &ctr.layers {
                self.container(&ctr.name, at, c, windows);
            }
        }
        if self.restricted() {
            for ctr in &pod.containers {
                self.unset_in_container(pod, ctr, windows);
            }
        }
    }

    /// A layer's pod-level fields: host namespaces, security context, volumes, annotations.
    fn pod_level(&mut self, l: &Layer, windows: bool) {
        for key in l.namespaces {
            if is_true(&l.v[*key]) {
                self.refuse(
                    join(&l.at, key),
                    "true".into(),
                    "host namespaces",
                    format!("{key}=true"),
                );
            }
        }
        let sc_at = join(&l.at, "securityContext");
        let sc = &l.v["securityContext"];
        self.security_context(Who::Pod, &sc_at, sc, windows);
        for (j, s) in sc["sysctls"].as_array().into_iter().flatten().enumerate() {
            if let Some(name) = s["name"].as_str() {
                if !SAFE_SYSCTLS.contains(&name) {
                    self.refuse(
                        format!("{sc_at}.sysctls[{j}].name"),
                        shown(&s["name"]),
                        "forbidden sysctls",
                        name.to_string(),
                    );
                }
            }
        }
        for (j, v) in l.v["volumes"].as_array().into_iter().flatten().enumerate() {
            self.volume(&join(&l.at, &format!("volumes[{j}]")), v);
        }
        if let Some((at, annotations)) = &l.annotations {
            for (key, v) in annotations.as_object().into_iter().flatten() {
                let allowed = match v.as_str() {
                    Some(p) => {
                        p.is_empty() || p == "runtime/default" || p.starts_with("localhost/")
                    }
                    None => v.is_null(),
                };
                if key.starts_with(APPARMOR_ANNOTATION) && !allowed {
                    self.refuse(
                        format!("{at}[{key:?}]"),
                        shown(v),
                        "forbidden AppArmor profile",
                        format!("{key}={}", shown(v)),
                    );
                }
            }
        }
    }

    fn volume(&mut self, at: &str, v: &Value) {
        let Some(sources) = v.as_object() else {
            return;
        };
        let name = v["name"].as_str().unwrap_or("");
        for (key, source) in sources {
            if key == "name" || source.is_null() {
                continue;
            }
            if self.restricted() {
                // Overrides the baseline hostPath check.
                if !RESTRICTED_VOLUME_SOURCES.contains(&key.as_str()) {
                    self.refuse(
                        format!("{at}.{key}"),
                        shown(source),
                        "restricted volume types",
                        format!("volume {name:?} uses restricted volume type {key:?}"),
                    );
                }
            } else if key == "hostPath" {
                self.refuse(
                    format!("{at}.{key}"),
                    shown(source),
                    "hostPath volumes",
                    format!("volume {name:?}"),
                );
            }
        }
    }

    /// The checks a pod's and a container's security context share.
    fn security_context(&mut self, who: Who, sc_at: &str, sc: &Value, windows: bool) {
        if let Some(profile) = get(sc, &["seccompProfile"]) {
            let kind = &profile["type"];
            let detail = |k: &Value| {
                format!(
                    "{who} must not set securityContext.seccompProfile.type to {}",
                    if k.is_null() { "\"\"".into() } else { shown(k) }
                )
            };
            let value = if kind.is_null() {
                "unset".to_string()
            } else {
                shown(kind)
            };
            if self.restricted() {
                // Overrides the baseline seccompProfile check; Windows pods are exempt.
                let valid = kind == "RuntimeDefault" || kind == "Localhost";
                if !valid && !windows {
                    self.refuse(
                        format!("{sc_at}.seccompProfile.type"),
                        value,
                        "seccompProfile",
                        detail(kind),
                    );
                }
            } else if kind == "Unconfined" {
                self.refuse(
                    format!("{sc_at}.seccompProfile.type"),
                    value,
                    "seccompProfile",
                    detail(kind),
                );
            }
        }
        let selinux = &sc["seLinuxOptions"];
        let kind = &selinux["type"];
        if !kind.is_null() && !kind.as_str().is_some_and(|t| SELINUX_TYPES.contains(&t)) {
            self.refuse(
                format!("{sc_at}.seLinuxOptions.type"),
                shown(kind),
                "seLinuxOptions",
                format!(
                    "{who} set forbidden securityContext.seLinuxOptions: type {}",
                    shown(kind)
                ),
            );
        }
        for key in ["user", "role"] {
            let v = &selinux[key];
            if !v.is_null() && *v != "" {
                self.refuse(
                    format!("{sc_at}.seLinuxOptions.{key}"),
                    shown(v),
                    "seLinuxOptions",
                    format!(
                        "{who} set forbidden securityContext.seLinuxOptions: {key} may not be set"
                    ),
                );
            }
        }
        if is_true(&sc["windowsOptions"]["hostProcess"]) {
            self.refuse(
                format!("{sc_at}.windowsOptions.hostProcess"),
                "true".into(),
                "hostProcess",
                format!("{who} must not set securityContext.windowsOptions.hostProcess=true"),
            );
        }
        let apparmor = &sc["appArmorProfile"]["type"];
        if !apparmor.is_null() && *apparmor != "RuntimeDefault" && *apparmor != "Localhost" {
            self.refuse(
                format!("{sc_at}.appArmorProfile.type"),
                shown(apparmor),
                "forbidden AppArmor profile",
                format!(
                    "{who} must not set securityContext.appArmorProfile.type to {}",
                    shown(apparmor)
                ),
            );
        }
        if self.restricted() {
            if is_zero(&sc["runAsUser"]) {
                self.refuse(
                    format!("{sc_at}.runAsUser"),
                    shown(&sc["runAsUser"]),
                    "runAsUser=0",
                    format!("{who} must not set runAsUser=0"),
                );
            }
            let non_root = &sc["runAsNonRoot"];
            if !non_root.is_null() && !is_true(non_root) {
                self.refuse(
                    format!("{sc_at}.runAsNonRoot"),
                    shown(non_root),
                    "runAsNonRoot != true",
                    format!(
                        "{who} must not set securityContext.runAsNonRoot={}",
                        plain(non_root)
                    ),
                );
            }
        }
    }

    /// The fields one object setting a container (the template's, or a patch's) sets.
    fn container(&mut self, name: &str, at: &str, c: &Value, windows: bool) {
        let who = Who::Container(name);
        let sc_at = format!("{at}.securityContext");
        let sc = &c["securityContext"];
        if is_true(&sc["privileged"]) {
            self.refuse(
                format!("{sc_at}.privileged"),
                "true".into(),
                "privileged",
                format!("{who} must not set securityContext.privileged=true"),
            );
        }
        let caps = &sc["capabilities"];
        if let Some(add) = caps["add"].as_array() {
            let restricted = self.restricted();
            let forbidden: Vec<&Value> = add
                .iter()
                .filter(|c| {
                    let name = c.as_str().unwrap_or("");
                    if restricted {
                        name != "NET_BIND_SERVICE"
                    } else {
                        !BASELINE_CAPABILITIES.contains(&name)
                    }
                })
                .collect();
            // At restricted the restricted check overrides the baseline one; Windows pods
            // are exempt from it.
            if !(forbidden.is_empty() || restricted && windows) {
                self.refuse(
                    format!("{sc_at}.capabilities.add"),
                    shown(&caps["add"]),
                    if restricted {
                        "unrestricted capabilities"
                    } else {
                        "non-default capabilities"
                    },
                    format!(
                        "{who} must not include {} in securityContext.capabilities.add",
                        join_quoted(forbidden)
                    ),
                );
            }
        }
        let proc_mount = &sc["procMount"];
        if !proc_mount.is_null() && *proc_mount != "Default" {
            self.refuse(
                format!("{sc_at}.procMount"),
                shown(proc_mount),
                "procMount",
                format!(
                    "{who} must not set securityContext.procMount to {}",
                    shown(proc_mount)
                ),
            );
        }
        for (j, port) in c["ports"].as_array().into_iter().flatten().enumerate() {
            let host_port = &port["hostPort"];
            let set = match host_port {
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => s.trim().parse::<f64>().is_ok_and(|n| n != 0.0),
                _ => false,
            };
            if set {
                self.refuse(
                    format!("{at}.ports[{j}].hostPort"),
                    shown(host_port),
                    "hostPort",
                    format!("{who} uses hostPort {}", plain(host_port)),
                );
            }
        }
        self.security_context(who, &sc_at, sc, windows);
        if self.restricted() && !windows {
            let escalation = &sc["allowPrivilegeEscalation"];
            if !escalation.is_null() && *escalation != false {
                self.refuse(
                    format!("{sc_at}.allowPrivilegeEscalation"),
                    shown(escalation),
                    "allowPrivilegeEscalation != false",
                    format!("{who} must set securityContext.allowPrivilegeEscalation=false"),
                );
            }
            let drop = &caps["drop"];
            let drops_all = drop
                .as_array()
                .is_some_and(|d| d.iter().any(|c| c == "ALL"));
            if !drop.is_null() && !drops_all {
                self.refuse(
                    format!("{sc_at}.capabilities.drop"),
                    shown(drop),
                    "unrestricted capabilities",
                    format!("{who} must set securityContext.capabilities.drop=[\"ALL\"]"),
                );
            }
        }
    }

    /// Restricted fields a container must set (itself, or through its pod) and sets nowhere.
    /// Ones set to a wrong value are refused where they are set.
    fn unset_in_container(&mut self, pod: &Pod, ctr: &Ctr, windows: bool) {
        let who = Who::Container(&ctr.name);
        let sc_at = format!("{}.securityContext", ctr.at);
        if !windows && ctr.security(&["allowPrivilegeEscalation"]).is_none() {
            self.refuse(
                format!("{sc_at}.allowPrivilegeEscalation"),
                "unset".into(),
                "allowPrivilegeEscalation != false",
                format!("{who} must set securityContext.allowPrivilegeEscalation=false"),
            );
        }
        if !windows && ctr.security(&["capabilities", "drop"]).is_none() {
            self.refuse(
                format!("{sc_at}.capabilities.drop"),
                "unset".into(),
                "unrestricted capabilities",
                format!("{who} must set securityContext.capabilities.drop=[\"ALL\"]"),
            );
        }
        let non_root = ["runAsNonRoot"];
        if ctr.security(&non_root).is_none() && pod.security(&non_root).is_none() {
            self.refuse(
                format!("{sc_at}.runAsNonRoot"),
                "unset".into(),
                "runAsNonRoot != true",
                format!("pod or {who} must set securityContext.runAsNonRoot=true"),
            );
        }
        let seccomp = ["seccompProfile"];
        if !windows && ctr.security(&seccomp).is_none() && pod.security(&seccomp).is_none() {
            self.refuse(
                format!("{sc_at}.seccompProfile.type"),
                "unset".into(),
                "seccompProfile",
                format!(
                    "pod or {who} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\""
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wf(templates: Value) -> Value {
        json!({"kind": "Workflow", "spec": {"templates": templates}})
    }

    fn step(container: Value) -> Value {
        wf(json!([{"name": "main", "container": container}]))
    }

    /// (field, value, message) of each refusal.
    fn refused(level: Level, w: &Value) -> Vec<(String, String, String)> {
        check(level, w, &[])
            .into_iter()
            .map(|r| {
                assert_eq!(r.rule, "pod_security");
                (r.field, r.value, r.message)
            })
            .collect()
    }

    fn one(field: &str, value: &str, message: &str) -> Vec<(String, String, String)> {
        vec![(field.into(), value.into(), message.into())]
    }

    /// A container that passes the restricted level on its own.
    fn hardened() -> Value {
        json!({"image": "harbor.onyx.internal/x", "securityContext": {
            "allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 1000,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "seccompProfile": {"type": "RuntimeDefault"}}})
    }

    #[test]
    fn levels_read_as_the_namespace_label_names_them() {
        let l: Level = serde_json::from_value(json!("restricted")).unwrap();
        assert_eq!(l, Level::Restricted);
        assert_eq!(Level::default(), Level::Baseline);
        assert_eq!(Level::Privileged.to_string(), "privileged");
    }

    #[test]
    fn a_plain_workflow_is_admitted_at_baseline() {
        let w = json!({"spec": {
            "securityContext": {"runAsUser": 0, "fsGroup": 2000,
                                "seccompProfile": {"type": "RuntimeDefault"},
                                "sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]},
            "volumes": [{"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
            "templates": [
                {"name": "main", "steps": [[{"name": "a", "template": "t"}]]},
                {"name": "t",
                 "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "runtime/default"}},
                 "container": {"image": "debian", "ports": [{"containerPort": 80}],
                               "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]},
                                                   "procMount": "Default",
                                                   "seLinuxOptions": {"type": "container_t"}}},
                 "sidecars": [{"name": "s", "image": "nginx", "ports": [{"containerPort": 8080, "hostPort": 0}]}]},
                {"name": "s", "script": {"image": "python", "source": "print(1)"}}]}});
        assert_eq!(refused(Level::Baseline, &w), vec![]);
        // The same workflow is far from restricted.
        assert!(refused(Level::Restricted, &w).len() > 5);
    }

    #[test]
    fn a_hardened_workflow_is_admitted_at_restricted() {
        let mut init = hardened();
        init["name"] = json!("i");
        let w = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "work", "emptyDir": {}}, {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                        {"name": "s", "secret": {"secretName": "s"}}, {"name": "p", "projected": {"sources": []}},
                        {"name": "c", "csi": {"driver": "x"}}, {"name": "e", "ephemeral": {}},
                        {"name": "d", "downwardAPI": {}}],
            "templates": [
                {"name": "main", "steps": [[{"name": "a", "template": "t"}]]},
                {"name": "t", "container": {"image": "x", "securityContext": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}},
                {"name": "set", "containerSet": {"containers": [
                    {"name": "a", "image": "x", "securityContext": {"allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}},
                {"name": "h", "container": hardened(), "initContainers": [init]}]}});
        assert_eq!(refused(Level::Restricted, &w), vec![]);
        assert_eq!(refused(Level::Baseline, &w), vec![]);
    }

    #[test]
    fn the_privileged_level_admits_everything() {
        let w = json!({"spec": {"hostNetwork": true, "volumes": [{"name": "d", "hostPath": {"path": "/"}}],
            "templates": [{"name": "t", "container": {"image": "x", "securityContext": {
                "privileged": true, "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}}}}]}});
        assert_eq!(check(Level::Privileged, &w, &[]), vec![]);
        assert!(!check(Level::Baseline, &w, &[]).is_empty());
    }

    #[test]
    fn host_namespaces_from_the_spec_and_from_a_pod_spec_patch() {
        let mut w = step(json!({"image": "x"}));
        w["spec"]["hostNetwork"] = json!(true);
        w["spec"]["templates"][0]["podSpecPatch"] = json!("hostPID: true\nhostIPC: false\n");
        let b = "violates PodSecurity \"baseline:latest\": host namespaces";
        assert_eq!(
            refused(Level::Baseline, &w),
            vec![
                (
                    "spec.templates[0].podSpecPatch: hostPID".into(),
                    "true".into(),
                    format!("{b} (hostPID=true)")
                ),
                (
                    "spec.hostNetwork".into(),
                    "true".into(),
                    format!("{b} (hostNetwork=true)")
                ),
            ]
        );
        // A JSON patch on the workflow, seen from two steps, is refused once.
        let mut w = wf(json!([{"name": "a", "container": {"image": "x"}},
                              {"name": "b", "script": {"image": "x", "source": "true"}}]));
        w["spec"]["podSpecPatch"] = json!(r#"{"hostIPC": true}"#);
        assert_eq!(
            refused(Level::Baseline, &w),
            one(
                "spec.podSpecPatch: hostIPC",
                "true",
                &format!("{b} (hostIPC=true)")
            )
        );
    }

    #[test]
    fn privileged_containers() {
        let w = wf(json!([{"name": "t", "container": {"image": "x"},
            "sidecars": [{"name": "dind", "image": "docker:dind", "securityContext": {"privileged": true}}]}]));
        assert_eq!(
            refused(Level::Baseline, &w),
            one(
                "spec.templates[0].sidecars[0].securityContext.privileged",
                "true",
                "violates PodSecurity \"baseline:latest\": privileged (container \"dind\" must not set securityContext.privileged=true)"
            )
        );
    }

    #[test]
    fn capabilities_beyond_the_default_set() {
        let w = step(json!({"image": "x", "securityContext": {"capabilities": {
            "add": ["SYS_ADMIN", "CHOWN", "CAP_CHOWN", "NET_ADMIN"]}}}));
        assert_eq!(
            refused(Level::Baseline, &w),
            one(
                "spec.templates[0].container.securityContext.capabilities.add",
                r#"["SYS_ADMIN","CHOWN","CAP_CHOWN","NET_ADMIN"]"#,
                "violates PodSecurity \"baseline:latest\": non-default capabilities (container \"main\" must not include \"CAP_CHOWN\", \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add)"
            )
        );
    }

    #[test]
    fn host_path_volumes_of_the_workflow_and_the_template() {
        let mut w = wf(json!([{"name": "t", "container": {"image": "x"},
            "volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]}]));
        w["spec"]["volumes"] =
            json!([{"name": "ok", "emptyDir": {}}, {"name": "root", "hostPath": {"path": "/"}}]);
        let b = "violates PodSecurity \"baseline:latest\": hostPath volumes";
        assert_eq!(
            refused(Level::Baseline, &w),
            vec![
                (
                    "spec.templates[0].volumes[0].hostPath".into(),
                    r#"{"path":"/var/run/docker.sock"}"#.into(),
                    format!("{b} (volume \"sock\")")
                ),
                (
                    "spec.volumes[1].hostPath".into(),
                    r#"{"path":"/"}"#.into(),
                    format!("{b} (volume \"root\")")
                ),
            ]
        );
    }

    #[test]
    fn host_ports() {
        let w = wf(json!([{"name": "t", "containerSet": {"containers": [
            {"name": "web", "image": "x", "ports": [{"containerPort": 80}, {"containerPort": 443, "hostPort": 8443}]}]}}]));
        assert_eq!(
            refused(Level::Baseline, &w),
            one(
                "spec.templates[0].containerSet.containers[0].ports[1].hostPort",
                "8443",
                "violates PodSecurity \"baseline:latest\": hostPort (container \"web\" uses hostPort 8443)"
            )
        );
    }

    #[test]
    fn proc_mount_seccomp_apparmor_selinux_and_host_process() {
        let w = json!({"spec": {
            "securityContext": {"seccompProfile": {"type": "Unconfined"},
                                "seLinuxOptions": {"type": "spc_t", "user": "system_u"},
                                "windowsOptions": {"hostProcess": true},
                                "appArmorProfile": {"type": "Unconfined"}},
            "podMetadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}},
            "templates": [{"name": "t", "initContainers": [{"name": "i", "image": "x", "securityContext": {
                "procMount": "Unmasked", "seccompProfile": {"type": "Unconfined"},
                "seLinuxOptions": {"role": "sysadm_r"}, "windowsOptions": {"hostProcess": true},
                "appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}}],
                "container": {"image": "x", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}}]}});
        let got: Vec<(String, String)> = refused(Level::Baseline, &w)
            .into_iter()
            .map(|(f, _, m)| (f, m))
            .collect();
        let b = "violates PodSecurity \"baseline:latest\":";
        let want: Vec<(String, String)> = [
            ("spec.templates[0].initContainers[0].securityContext.procMount",
             "procMount (container \"i\" must not set securityContext.procMount to \"Unmasked\")"),
            ("spec.templates[0].initContainers[0].securityContext.seccompProfile.type",
             "seccompProfile (container \"i\" must not set securityContext.seccompProfile.type to \"Unconfined\")"),
            ("spec.templates[0].initContainers[0].securityContext.seLinuxOptions.role",
             "seLinuxOptions (container \"i\" set forbidden securityContext.seLinuxOptions: role may not be set)"),
            ("spec.templates[0].initContainers[0].securityContext.windowsOptions.hostProcess",
             "hostProcess (container \"i\" must not set securityContext.windowsOptions.hostProcess=true)"),
            ("spec.templates[0].container.securityContext.appArmorProfile.type",
             "forbidden AppArmor profile (container \"main\" must not set securityContext.appArmorProfile.type to \"Unconfined\")"),
            ("spec.securityContext.seccompProfile.type",
             "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"),
            ("spec.securityContext.seLinuxOptions.type",
             "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type \"spc_t\")"),
            ("spec.securityContext.seLinuxOptions.user",
             "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: user may not be set)"),
            ("spec.securityContext.windowsOptions.hostProcess",
             "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"),
            ("spec.securityContext.appArmorProfile.type",
             "forbidden AppArmor profile (pod must not set securityContext.appArmorProfile.type to \"Unconfined\")"),
            ("spec.podMetadata.annotations[\"container.apparmor.security.beta.kubernetes.io/main\"]",
             "forbidden AppArmor profile (container.apparmor.security.beta.kubernetes.io/main=\"unconfined\")"),
        ]
        .into_iter()
        .map(|(f, m)| (f.to_string(), format!("{b} {m}")))
        .collect();
        // Pod-level checks come first, then the containers'; compare as sets.
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{got:#?}");
    }

    #[test]
    fn sysctls_outside_the_safe_set() {
        let w = json!({"spec": {"templates": [{"name": "t", "container": {"image": "x"},
            "securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                                            {"name": "kernel.msgmax", "value": "65536"}]}}]}});
        assert_eq!(
            refused(Level::Baseline, &w),
            one(
                "spec.templates[0].securityContext.sysctls[1].name",
                "\"kernel.msgmax\"",
                "violates PodSecurity \"baseline:latest\": forbidden sysctls (kernel.msgmax)"
            )
        );
    }

    #[test]
    fn restricted_wants_every_field_set() {
        let w = step(json!({"image": "x"}));
        let r = "violates PodSecurity \"restricted:latest\":";
        let at = "spec.templates[0].container.securityContext";
        let want: Vec<(String, String, String)> = [
            ("allowPrivilegeEscalation", "allowPrivilegeEscalation != false (container \"main\" must set securityContext.allowPrivilegeEscalation=false)"),
            ("capabilities.drop", "unrestricted capabilities (container \"main\" must set securityContext.capabilities.drop=[\"ALL\"])"),
            ("runAsNonRoot", "runAsNonRoot != true (pod or container \"main\" must set securityContext.runAsNonRoot=true)"),
            ("seccompProfile.type", "seccompProfile (pod or container \"main\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"),
        ]
        .into_iter()
        .map(|(f, m)| (format!("{at}.{f}"), "unset".to_string(), format!("{r} {m}")))
        .collect();
        assert_eq!(refused(Level::Restricted, &w), want);
    }

    #[test]
    fn restricted_refuses_wrong_values_where_they_are_set() {
        let w = json!({"spec": {
            "securityContext": {"runAsNonRoot": false, "runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
            "volumes": [{"name": "nfs", "nfs": {"server": "s", "path": "/"}}, {"name": "h", "hostPath": {"path": "/"}}],
            "templates": [{"name": "t", "container": {"image": "x", "securityContext": {
                "allowPrivilegeEscalation": true, "runAsUser": 0,
                "capabilities": {"drop": ["NET_RAW"], "add": ["CHOWN", "NET_BIND_SERVICE"]}}}}]}});
        let r = "violates PodSecurity \"restricted:latest\":";
        let c = "spec.templates[0].container.securityContext";
        let want: Vec<(String, String, String)> = [
            ("spec.securityContext.seccompProfile.type".into(), "\"Unconfined\"",
             "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"),
            ("spec.securityContext.runAsUser".into(), "0", "runAsUser=0 (pod must not set runAsUser=0)"),
            ("spec.securityContext.runAsNonRoot".into(), "false",
             "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"),
            ("spec.volumes[0].nfs".into(), r#"{"server":"s","path":"/"}"#,
             "restricted volume types (volume \"nfs\" uses restricted volume type \"nfs\")"),
            ("spec.volumes[1].hostPath".into(), r#"{"path":"/"}"#,
             "restricted volume types (volume \"h\" uses restricted volume type \"hostPath\")"),
            (format!("{c}.capabilities.add"), r#"["CHOWN","NET_BIND_SERVICE"]"#,
             "unrestricted capabilities (container \"main\" must not include \"CHOWN\" in securityContext.capabilities.add)"),
            (format!("{c}.runAsUser"), "0", "runAsUser=0 (container \"main\" must not set runAsUser=0)"),
            (format!("{c}.allowPrivilegeEscalation"), "true",
             "allowPrivilegeEscalation != false (container \"main\" must set securityContext.allowPrivilegeEscalation=false)"),
            (format!("{c}.capabilities.drop"), r#"["NET_RAW"]"#,
             "unrestricted capabilities (container \"main\" must set securityContext.capabilities.drop=[\"ALL\"])"),
        ]
        .into_iter()
        .map(|(f, v, m)| (f, v.to_string(), format!("{r} {m}")))
        .collect();
        assert_eq!(refused(Level::Restricted, &w), want);
    }

    #[test]
    fn a_template_security_context_replaces_the_workflows() {
        // The workflow's pod-level settings do not reach a template that sets its own.
        let w = json!({"spec": {
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "templates": [{"name": "t", "securityContext": {"fsGroup": 1},
                           "container": {"image": "x", "securityContext": {
                               "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}}]}});
        let fields: Vec<String> = refused(Level::Restricted, &w)
            .into_iter()
            .map(|r| r.0)
            .collect();
        let at = "spec.templates[0].container.securityContext";
        assert_eq!(
            fields,
            vec![
                format!("{at}.runAsNonRoot"),
                format!("{at}.seccompProfile.type")
            ]
        );
    }

    #[test]
    fn a_pod_spec_patch_sets_and_breaks_fields() {
        // The patch hardens the main container and the pod; it makes the sidecar privileged.
        let patch = r#"{"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "main", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}},
                           {"name": "side", "securityContext": {"privileged": true}}]}"#;
        let w = json!({"spec": {"templates": [{"name": "t", "podSpecPatch": patch,
            "container": {"image": "x"},
            "sidecars": [{"name": "side", "image": "x", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}]}});
        let got = refused(Level::Restricted, &w);
        assert_eq!(
            got,
            one(
                "spec.templates[0].podSpecPatch: containers[1].securityContext.privileged",
                "true",
                "violates PodSecurity \"restricted:latest\": privileged (container \"side\" must not set securityContext.privileged=true)"
            )
        );
        // A patch that is neither JSON nor YAML is skipped.
        let mut w = step(json!({"image": "x"}));
        w["spec"]["podSpecPatch"] = json!("{{workflow.parameters.patch}");
        assert_eq!(refused(Level::Baseline, &w), vec![]);
    }

    #[test]
    fn windows_pods_are_exempt_from_some_restricted_checks() {
        let w = json!({"spec": {"securityContext": {"runAsNonRoot": true},
            "templates": [{"name": "t", "podSpecPatch": "os: {name: windows}",
                           "container": {"image": "x"}}]}});
        assert_eq!(refused(Level::Restricted, &w), vec![]);
    }

    #[test]
    fn template_defaults_and_workflow_templates_are_checked_under_their_name() {
        let lib = json!({"kind": "ClusterWorkflowTemplate", "metadata": {"name": "lib"},
            "spec": {"templateDefaults": {"container": {"securityContext": {"privileged": true}}},
                     "templates": [{"name": "t", "container": {"image": "x",
                         "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}}]}});
        let fields: Vec<String> = check(Level::Baseline, &wf(json!([])), &[lib])
            .into_iter()
            .map(|r| r.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "ClusterWorkflowTemplate/lib.spec.templates[0].container.securityContext.capabilities.add",
                "ClusterWorkflowTemplate/lib.spec.templateDefaults.container.securityContext.privileged",
            ]
        );
    }

    #[test]
    fn pods_in_a_resource_manifest_are_checked() {
        let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      hostPID: true\n      containers:\n      - name: c\n        image: x\n        securityContext: {privileged: true}\n";
        let w = wf(json!([{"name": "r", "resource": {"action": "create", "manifest": job}}]));
        let fields: Vec<String> = refused(Level::Baseline, &w)
            .into_iter()
            .map(|r| r.0)
            .collect();
        let at = "spec.templates[0].resource.manifest: spec.template.spec";
        assert_eq!(
            fields,
            vec![
                format!("{at}.hostPID"),
                format!("{at}.containers[0].securityContext.privileged")
            ]
        );
    }

    #[test]
    fn refusals_read_as_kubernetes_words_them() {
        let mut w = step(json!({"image": "x"}));
        w["spec"]["hostNetwork"] = json!(true);
        let r = &check(Level::Baseline, &w, &[])[0];
        assert_eq!(
            r.message,
            "violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        );
        assert_eq!(
            r.to_string(),
            "admission rule pod_security: spec.hostNetwork is true: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        );
    }

    /// JSON shaped like workflows: the fields the checks read, holding anything.
    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let keys = proptest::sample::select(vec![
            "spec",
            "templates",
            "templateDefaults",
            "container",
            "script",
            "initContainers",
            "sidecars",
            "containerSet",
            "containers",
            "name",
            "kind",
            "metadata",
            "annotations",
            "podMetadata",
            "container.apparmor.security.beta.kubernetes.io/main",
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "securityContext",
            "privileged",
            "capabilities",
            "add",
            "drop",
            "ports",
            "hostPort",
            "procMount",
            "seccompProfile",
            "appArmorProfile",
            "type",
            "seLinuxOptions",
            "user",
            "role",
            "sysctls",
            "windowsOptions",
            "hostProcess",
            "volumes",
            "hostPath",
            "nfs",
            "emptyDir",
            "allowPrivilegeEscalation",
            "runAsNonRoot",
            "runAsUser",
            "podSpecPatch",
            "os",
            "resource",
            "manifest",
            "template",
            "tasks",
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-zA-Z0-9./:_ -]{0,12}".prop_map(Value::from),
            Just(Value::from("ALL")),
            Just(Value::from("Unconfined")),
            Just(Value::from(
                "{\"hostPID\": true, \"containers\": [{\"name\": \"main\"}]}"
            )),
            Just(Value::from(
                "securityContext:\n  runAsUser: 0\nos: {name: windows}\n"
            )),
            Just(Value::from(
                "kind: Pod\nspec:\n  containers:\n  - {name: c, ports: [{hostPort: 1}]}\n"
            )),
            "[{}\\[\\]:,\"a-z\n -]{0,24}".prop_map(Value::from),
        ];
        leaf.prop_recursive(5, 96, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(keys.clone(), inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_json_is_checked_without_panic(v in json(), t in json()) {
            for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
                let refused = check(level, &v, std::slice::from_ref(&t));
                if level == Level::Privileged {
                    proptest::prop_assert!(refused.is_empty());
                }
                for r in refused {
                    proptest::prop_assert!(!r.field.is_empty() && !r.value.is_empty());
                    proptest::prop_assert_eq!(r.rule, "pod_security");
                }
            }
        }
    }
}
