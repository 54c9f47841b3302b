//! A pod as a step creates it: the layers that set its pod-level fields (patches, template,
//! workflow) and its containers, each with the objects that set its fields, most binding first.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LayerKind {
    /// A `podSpecPatch`: its fields win over everything else.
    Patch,
    /// The template (or `templateDefaults`, or a manifest's pod spec): its `securityContext`
    /// replaces the workflow's.
    Template,
    /// The workflow's spec.
    Workflow,
}

/// An object that sets a pod's pod-level fields.
pub(super) struct Layer<'a> {
    /// Its path; one ending in `:` is a document of its own (`spec.podSpecPatch:`).
    pub(super) at: String,
    pub(super) v: &'a Value,
    pub(super) kind: LayerKind,
    /// The host-namespace fields it may set.
    pub(super) namespaces: &'static [&'static str],
    /// Where the pod's annotations come from, if it sets them.
    pub(super) annotations: Option<(String, &'a Value)>,
}

/// One of a pod's containers.
pub(super) struct Ctr<'a> {
    pub(super) name: String,
    /// Where it is written (its template's container, or the patch that adds it).
    pub(super) at: String,
    /// The objects that set its fields, most binding first.
    pub(super) layers: Vec<(String, &'a Value)>,
}

impl Ctr<'_> {
    /// The value its security context has at `keys`, as the layers merge.
    pub(super) fn security(&self, keys: &[&str]) -> Option<&Value> {
        self.layers
            .iter()
            .find_map(|(_, c)| get(&c["securityContext"], keys))
    }
}

/// A pod a step (or a resource template) creates.
pub(super) struct Pod<'a> {
    pub(super) layers: Vec<Layer<'a>>,
    pub(super) containers: Vec<Ctr<'a>>,
}

impl Pod<'_> {
    /// The value its pod-level security context has at `keys`: patches first, then the
    /// template's security context if it sets one, else the workflow's.
    pub(super) fn security(&self, keys: &[&str]) -> Option<&Value> {
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
    pub(super) fn windows(&self) -> bool {
        self.layers
            .iter()
            .filter(|l| l.kind != LayerKind::Workflow)
            .find_map(|l| get(l.v, &["os", "name"]))
            .is_some_and(|n| n == "windows")
    }
}

/// The non-null value at `keys` under `v`.
pub(super) fn get<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    let mut v = v;
    for k in keys {
        v = v.as_object()?.get(*k)?;
    }
    (!v.is_null()).then_some(v)
}

/// `at` and a field under it; `at` ending in `:` is a document's name
/// (`spec.podSpecPatch: hostPID`).
pub(super) fn join(at: &str, key: &str) -> String {
    if at.ends_with(':') {
        format!("{at} {key}")
    } else {
        format!("{at}.{key}")
    }
}
