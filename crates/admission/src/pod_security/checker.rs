//! The checks themselves: each pod's layers and containers against the baseline level's
//! rules and, at `restricted`, the restricted level's (which override some baseline ones).

use std::collections::{BTreeSet, HashSet};

use serde_json::Value;

use super::levels::{
    Level, APPARMOR_ANNOTATION, BASELINE_CAPABILITIES, RESTRICTED_VOLUME_SOURCES, SAFE_SYSCTLS,
    SELINUX_TYPES,
};
use super::pod::{get, join, Ctr, Layer, Pod};
use crate::Refusal;

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

pub(super) struct Checker {
    level: Level,
    out: Vec<Refusal>,
    seen: HashSet<(String, String)>,
}

impl Checker {
    /// A checker at `level` that has refused nothing yet.
    pub(super) fn new(level: Level) -> Self {
        Checker {
            level,
            out: Vec::new(),
            seen: HashSet::new(),
        }
    }

    /// The refusals found so far, in the order found.
    pub(super) fn into_refusals(self) -> Vec<Refusal> {
        self.out
    }

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

    pub(super) fn pod(&mut self, pod: &Pod) {
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
