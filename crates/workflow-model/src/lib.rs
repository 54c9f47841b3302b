//! Argo Workflows v3.5.6 objects: their types, loading them from YAML files with precise
//! error locations, and lint.
//!
//! Invariants: loading never panics on any input; every problem is a [`Diagnostic`] that
//! names the file, the line and column, and the field path; unknown fields are warnings and
//! stay in the object's raw JSON.

#![forbid(unsafe_code)]

pub mod lint;
pub mod schema;
pub mod types;

use std::fmt;

pub use manifest::{Document, Location};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use types::*;

pub const API_VERSION: &str = "argoproj.io/v1alpha1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found in an input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub location: Location,
    /// Field path inside the document, e.g. `spec.templates[1].dag.tasks[0].depends`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}:{}: {sev}: ", self.file, self.location)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)
    }
}

/// The Argo kinds ONYX knows, plus any other Kubernetes object kept for resource templates
/// and ConfigMap lookups.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    Workflow(WorkflowObject),
    WorkflowTemplate(WorkflowObject),
    ClusterWorkflowTemplate(WorkflowObject),
    CronWorkflow(CronWorkflowObject),
    Other(OtherObject),
}

/// A Workflow, WorkflowTemplate or ClusterWorkflowTemplate: they share a spec.
#[derive(Debug, Clone)]
pub struct WorkflowObject {
    pub metadata: ObjectMeta,
    pub spec: WorkflowSpec,
    /// The document exactly as read, unknown fields included.
    pub raw: Value,
}

#[derive(Debug, Clone)]
pub struct CronWorkflowObject {
    pub metadata: ObjectMeta,
    pub spec: CronWorkflowSpec,
    pub raw: Value,
}

#[derive(Debug, Clone)]
pub struct OtherObject {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub raw: Value,
}

impl Object {
    pub fn kind(&self) -> &str {
        match self {
            Object::Workflow(_) => "Workflow",
            Object::WorkflowTemplate(_) => "WorkflowTemplate",
            Object::ClusterWorkflowTemplate(_) => "ClusterWorkflowTemplate",
            Object::CronWorkflow(_) => "CronWorkflow",
            Object::Other(o) => &o.kind,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Workflow(w)
            | Object::WorkflowTemplate(w)
            | Object::ClusterWorkflowTemplate(w) => &w.metadata,
            Object::CronWorkflow(c) => &c.metadata,
            Object::Other(o) => &o.metadata,
        }
    }

    pub fn raw(&self) -> &Value {
        match self {
            Object::Workflow(w)
            | Object::WorkflowTemplate(w)
            | Object::ClusterWorkflowTemplate(w) => &w.raw,
            Object::CronWorkflow(c) => &c.raw,
            Object::Other(o) => &o.raw,
        }
    }
}

/// An object with where it came from, for diagnostics.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub object: Object,
    pub file: String,
    pub doc: Document,
}

impl Loaded {
    pub fn diagnostic(
        &self,
        severity: Severity,
        path: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            file: self.file.clone(),
            location: self.doc.location_of(path),
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// Read every document of a YAML file. Objects that could be read are returned together with
/// all diagnostics (warnings for unknown fields, errors for what could not be read).
pub fn load_str(file: &str, text: &str) -> (Vec<Loaded>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let docs = match manifest::parse_documents(text) {
        Ok(d) => d,
        Err(e) => {
            diags.push(Diagnostic {
                severity: Severity::Error,
                file: file.to_string(),
                location: e.location(),
                path: String::new(),
                message: match e {
                    manifest::ManifestError::Syntax { message, .. } => {
                        format!("malformed YAML: {message}")
                    }
                    manifest::ManifestError::Unsupported { message, .. } => message,
                },
            });
            return (Vec::new(), diags);
        }
    };
    let mut out = Vec::new();
    for doc in docs {
        match load_document(file, doc, &mut diags) {
            Some(l) => out.push(l),
            None => continue,
        }
    }
    (out, diags)
}

fn load_document(file: &str, doc: Document, diags: &mut Vec<Diagnostic>) -> Option<Loaded> {
    let err = |doc: &Document, path: &str, message: String| Diagnostic {
        severity: Severity::Error,
        file: file.to_string(),
        location: doc.location_of(path),
        path: path.to_string(),
        message,
    };
    let Value::Object(map) = &doc.value else {
        diags.push(err(
            &doc,
            "",
            format!(
                "expected a Kubernetes object (a mapping), found {}",
                json_kind(&doc.value)
            ),
        ));
        return None;
    };
    let kind = match map.get("kind") {
        Some(Value::String(k)) => k.clone(),
        Some(other) => {
            diags.push(err(
                &doc,
                "kind",
                format!("expected a string, found {}", json_kind(other)),
            ));
            return None;
        }
        None => {
            diags.push(err(&doc, "", "missing field 'kind'".into()));
            return None;
        }
    };
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut converted = Vec::new();
    let metadata: ObjectMeta = match map.get("metadata") {
        Some(m) => match decode_document(&doc, m, "metadata", &mut converted) {
            Ok(m) => m,
            Err((path, msg)) => {
                diags.push(err(&doc, &prefixed("metadata", &path), msg));
                return None;
            }
        },
        None => ObjectMeta::default(),
    };
    let argo_kind = matches!(
        kind.as_str(),
        "Workflow" | "WorkflowTemplate" | "ClusterWorkflowTemplate" | "CronWorkflow"
    );
    if argo_kind && api_version != API_VERSION {
        diags.push(err(
            &doc,
            "apiVersion",
            format!("expected apiVersion '{API_VERSION}' for kind {kind}, found '{api_version}'"),
        ));
    }
    if metadata.name.is_empty() && metadata.generate_name.is_empty() {
        diags.push(err(
            &doc,
            "metadata",
            "metadata.name or metadata.generateName is required".into(),
        ));
    }
    let object = if argo_kind {
        let schema_ty = if kind == "CronWorkflow" {
            "CronWorkflow"
        } else {
            "Workflow"
        };
        let mut unknown = Vec::new();
        schema::unknown_fields(&doc.value, schema_ty, "", &mut unknown);
        for path in unknown {
            diags.push(Diagnostic {
                severity: Severity::Warning,
                file: file.to_string(),
                location: doc.location_of(&path),
                path: path.clone(),
                message: "unknown field (kept, but ONYX and Argo ignore it)".into(),
            });
        }
        let spec_value = map
            .get("spec")
            .cloned()
            .unwrap_or(Value::Object(Default::default()));
        if kind == "CronWorkflow" {
            match decode_document::<CronWorkflowSpec>(&doc, &spec_value, "spec", &mut converted) {
                Ok(spec) => Object::CronWorkflow(CronWorkflowObject {
                    metadata,
                    spec,
                    raw: doc.value.clone(),
                }),
                Err((path, msg)) => {
                    diags.push(err(&doc, &prefixed("spec", &path), msg));
                    return None;
                }
            }
        } else {
            match decode_document::<WorkflowSpec>(&doc, &spec_value, "spec", &mut converted) {
                Ok(spec) => {
                    // The raw object keeps the text Kubernetes would keep for string fields.
                    let mut raw = doc.value.clone();
                    fix_raw_strings(&mut raw, &spec);
                    let w = WorkflowObject {
                        metadata,
                        spec,
                        raw,
                    };
                    match kind.as_str() {
                        "Workflow" => Object::Workflow(w),
                        "WorkflowTemplate" => Object::WorkflowTemplate(w),
                        _ => Object::ClusterWorkflowTemplate(w),
                    }
                }
                Err((path, msg)) => {
                    diags.push(err(&doc, &prefixed("spec", &path), msg));
                    return None;
                }
            }
        }
    } else {
        Object::Other(OtherObject {
            api_version,
            kind,
            metadata,
            raw: doc.value.clone(),
        })
    };
    for c in converted.iter().filter(|c| c.surprises()) {
        diags.push(Diagnostic {
            severity: Severity::Warning,
            file: file.to_string(),
            location: doc.location_of(&c.path),
            path: c.path.clone(),
            message: c.warning(),
        });
    }
    Some(Loaded {
        object,
        file: file.to_string(),
        doc,
    })
}

/// Replace `raw.spec.templates` etc. with the decoded view where YAML 1.1 changed a string
/// field, so that later decoding of raw template JSON sees strings.
fn fix_raw_strings(raw: &mut Value, spec: &WorkflowSpec) {
    if let (Some(Value::Array(raw_ts)), Ok(Value::Array(typed))) = (
        raw.pointer_mut("/spec/templates"),
        serde_json::to_value(&spec.templates),
    ) {
        for (r, t) in raw_ts.iter_mut().zip(typed.iter()) {
            overlay_strings(r, t);
        }
    }
    if let (Some(r), Ok(t)) = (
        raw.pointer_mut("/spec/arguments"),
        serde_json::to_value(&spec.arguments),
    ) {
        overlay_strings(r, &t);
    }
}

/// Where the raw value has a boolean or number and the typed view a string, take the string.
fn overlay_strings(raw: &mut Value, typed: &Value) {
    match (raw, typed) {
        (Value::Object(r), Value::Object(t)) => {
            for (k, rv) in r.iter_mut() {
                if let Some(tv) = t.get(k) {
                    overlay_strings(rv, tv);
                }
            }
        }
        (Value::Array(r), Value::Array(t)) => {
            for (rv, tv) in r.iter_mut().zip(t.iter()) {
                overlay_strings(rv, tv);
            }
        }
        (r @ (Value::Bool(_) | Value::Number(_)), Value::String(s)) => {
            *r = Value::String(s.clone())
        }
        _ => {}
    }
}

fn prefixed(prefix: &str, path: &str) -> String {
    if path.is_empty() || path == "." {
        prefix.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

/// A plain scalar that YAML 1.1 read as a boolean or number and that landed in a string field:
/// the field gets the text Kubernetes makes of it (`manifest::string_field_text`).
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The field's path (`spec.templates[1].inputs.parameters[0].name`).
    pub path: String,
    /// The scalar as written (`n`).
    pub written: String,
    /// What the field reads (`false`).
    pub reads: String,
}

impl Converted {
    /// Whether the field reads other text than was written (`n` → `false`, `1.10` → `1.1`),
    /// which is worth a warning; `true` → `true` is not.
    pub fn surprises(&self) -> bool {
        self.written != self.reads
    }

    /// The lint warning for it, with the fix.
    pub fn warning(&self) -> String {
        format!(
            "the plain scalar {} is read by YAML 1.1 (as Kubernetes reads it) as {}, so this string field gets \"{}\"; quote it (\"{}\") to keep the text",
            self.written, self.reads, self.reads, self.written
        )
    }
}

/// Decode the part of a YAML document at `prefix` into a typed struct. Where a string field
/// got a plain scalar that YAML 1.1 read as a boolean or number, the field gets the text
/// Kubernetes' YAML reader makes of it (`false` for `n`, `1.1` for `1.10`); each such field is
/// added to `converted`.
pub fn decode_document<T: DeserializeOwned>(
    doc: &Document,
    value: &Value,
    prefix: &str,
    converted: &mut Vec<Converted>,
) -> Result<T, (String, String)> {
    struct Strict;
    impl Drop for Strict {
        fn drop(&mut self) {
            types::STRICT_STRINGS.with(|s| s.set(false));
        }
    }
    types::STRICT_STRINGS.with(|s| s.set(true));
    let _guard = Strict;
    let mut v = value.clone();
    // Each round fixes one field; a document has far fewer such scalars than this bound.
    for _ in 0..100_000 {
        match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(t) => return Ok(t),
            Err(e) => {
                let msg = e.inner().to_string();
                let segments: Vec<PathPart> = e
                    .path()
                    .iter()
                    .filter_map(|s| match s {
                        serde_path_to_error::Segment::Seq { index } => {
                            Some(PathPart::Index(*index))
                        }
                        serde_path_to_error::Segment::Map { key } => {
                            Some(PathPart::Key(key.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                let mut full = prefix.to_string();
                for s in &segments {
                    match s {
                        PathPart::Index(i) => full.push_str(&format!("[{i}]")),
                        PathPart::Key(k) => {
                            if !full.is_empty() {
                                full.push('.');
                            }
                            full.push_str(k);
                        }
                    }
                }
                if msg.contains("expected a string") {
                    let text = value_at(&v, &segments).and_then(manifest::string_field_text);
                    if let (Some(written), Some(text)) = (doc.original_text(&full), text) {
                        if set_at(&mut v, &segments, Value::String(text.clone())) {
                            converted.push(Converted {
                                path: full,
                                written: written.to_string(),
                                reads: text,
                            });
                            continue;
                        }
                    }
                }
                let path = e.path().to_string();
                types::STRICT_STRINGS.with(|s| s.set(false));
                return Err((
                    if path == "." { String::new() } else { path },
                    plain_message(&msg.replace(
                        "invalid type: scalar, expected a string",
                        "expected a string",
                    )),
                ));
            }
        }
    }
    Err((String::new(), "too many fields to convert".into()))
}

enum PathPart {
    Index(usize),
    Key(String),
}

fn value_at<'a>(v: &'a Value, path: &[PathPart]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, p| match (p, cur) {
        (PathPart::Index(i), Value::Array(a)) => a.get(*i),
        (PathPart::Key(k), Value::Object(m)) => m.get(k),
        _ => None,
    })
}

/// serde's message in the words of the document: what was expected there and what was found,
/// never a Rust type (`expected i64` is `expected an integer`, `expected struct Template` is
/// `expected a mapping`).
pub fn plain_message(msg: &str) -> String {
    fn expected(what: &str) -> String {
        let what = what.trim();
        if what.starts_with("struct ") || what == "a map" || what.starts_with("map") {
            return "a mapping".into();
        }
        match what {
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" | "u8" | "u16" | "u32" | "u64"
            | "u128" | "usize" => "an integer".into(),
            "f32" | "f64" => "a number".into(),
            "a sequence" => "a list".into(),
            "a boolean" | "bool" => "a boolean (true or false)".into(),
            other => other.into(),
        }
    }
    fn found(what: &str) -> String {
        let what = what.trim();
        for (serde, plain) in [
            ("string ", "the string "),
            ("integer ", "the number "),
            ("floating point ", "the number "),
            ("boolean ", "the boolean "),
        ] {
            if let Some(rest) = what.strip_prefix(serde) {
                return format!("{plain}{}", rest.trim_matches('`'));
            }
        }
        match what {
            "sequence" => "a list".into(),
            "map" => "a mapping".into(),
            "unit value" | "null" => "null".into(),
            other => other.into(),
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        if let Some((got, want)) = rest.split_once(", expected ") {
            return format!("expected {}, found {}", expected(want), found(got));
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        if let Some((got, want)) = rest.split_once(", expected ") {
            return format!("expected {}, found {}", expected(want), found(got));
        }
    }
    if let Some((head, want)) = msg.split_once("expected ") {
        if head.is_empty() || head.ends_with(": ") || head.ends_with(", ") {
            return format!("{head}expected {}", expected(want));
        }
    }
    msg.to_string()
}

fn set_at(v: &mut Value, path: &[PathPart], new: Value) -> bool {
    let mut cur = v;
    for p in path {
        cur = match (p, cur) {
            (PathPart::Index(i), Value::Array(a)) => match a.get_mut(*i) {
                Some(x) => x,
                None => return false,
            },
            (PathPart::Key(k), Value::Object(m)) => match m.get_mut(k) {
                Some(x) => x,
                None => return false,
            },
            _ => return false,
        };
    }
    *cur = new;
    true
}

/// Decode a JSON value into a typed struct; on failure, the field path and a message.
/// Decodes from the borrowed value (no copy); the path is worked out only on failure.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    if let Ok(t) = T::deserialize(value) {
        return Ok(t);
    }
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let msg = plain_message(&e.into_inner().to_string());
        (if path == "." { String::new() } else { path }, msg)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_a_workflow_and_warns_about_unknown_fields() {
        let text = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata:\n  generateName: x-\nspec:\n  entrypoint: main\n  templates:\n  - name: main\n    contaner: {}\n";
        let (objs, diags) = load_str("wf.yaml", text);
        assert_eq!(objs.len(), 1);
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].severity, Severity::Warning);
        assert_eq!(diags[0].path, "spec.templates[0].contaner");
        assert_eq!(diags[0].location, Location { line: 9, column: 5 });
        assert_eq!(diags[0].to_string(), "wf.yaml:9:5: warning: spec.templates[0].contaner: unknown field (kept, but ONYX and Argo ignore it)");
    }

    #[test]
    fn type_errors_name_the_field() {
        let text = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: a}\nspec:\n  parallelism: lots\n";
        let (objs, diags) = load_str("wf.yaml", text);
        assert!(objs.is_empty());
        assert_eq!(diags[0].path, "spec.parallelism");
        assert_eq!(diags[0].location.line, 5);
        assert!(
            diags[0].message.contains("expected an integer, found"),
            "{}",
            diags[0].message
        );
    }

    /// Kubernetes' YAML reader (sigs.k8s.io/yaml over go-yaml v2) reads YAML 1.1: a plain `n`,
    /// `yes` or `on` is a boolean and `017` an octal number, and a string field that gets one
    /// holds `"false"`, `"true"`, `"15"`. ONYX reads them so, and warns where the text changed.
    #[test]
    fn yaml11_scalars_in_string_fields_read_as_kubernetes_reads_them() {
        let text = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: a, labels: {x: yes}}\nspec:\n  entrypoint: n\n  arguments: {parameters: [{name: n, value: 017}, {name: t, value: true}]}\n  parallelism: 0x10\n  templates:\n  - name: n\n    container: {image: x, args: [echo, on]}\n";
        let (objs, diags) = load_str("wf.yaml", text);
        let Object::Workflow(w) = &objs[0].object else {
            panic!("{diags:?}")
        };
        let params = &w.spec.arguments.parameters;
        assert_eq!(params[0].name, "false");
        assert_eq!(params[0].value.as_ref().unwrap().0, "15");
        assert_eq!(params[1].value.as_ref().unwrap().0, "true");
        assert_eq!(w.spec.parallelism, Some(16));
        assert_eq!(w.metadata.labels["x"].0, "true");
        assert_eq!(w.spec.entrypoint.as_deref(), Some("false"));
        let args = w.spec.templates[0]
            .container
            .as_ref()
            .unwrap()
            .args
            .as_ref()
            .unwrap();
        assert_eq!(args[1].0, "true");
        assert_eq!(w.raw["spec"]["templates"][0]["name"], "false");
        assert_eq!(
            w.raw["spec"]["templates"][0]["container"]["args"][1],
            "true"
        );
        // A warning wherever the field reads other text than was written (not `true`).
        let warned: Vec<(&str, usize)> = diags
            .iter()
            .map(|d| {
                assert_eq!(d.severity, Severity::Warning, "{d:?}");
                (d.path.as_str(), d.location.line)
            })
            .collect();
        assert_eq!(
            warned,
            [
                ("metadata.labels.x", 3),
                ("spec.entrypoint", 5),
                ("spec.arguments.parameters[0].name", 6),
                ("spec.arguments.parameters[0].value", 6),
                ("spec.templates[0].name", 9),
                ("spec.templates[0].container.args[1]", 10),
            ]
        );
        assert_eq!(
            diags[2].message,
            "the plain scalar n is read by YAML 1.1 (as Kubernetes reads it) as false, so this string field gets \"false\"; quote it (\"n\") to keep the text"
        );
    }

    /// A wrong shape anywhere is an error at its line that names the field and what was
    /// expected there, never a Rust type or an untagged enum.
    #[test]
    fn wrong_shapes_name_the_field_and_the_expected_shape() {
        let head = "apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {name: a}\nspec:\n  entrypoint: m\n  templates:\n  - name: m\n";
        for (body, line, expected) in [
            ("    steps: 5\n", 8, "spec.templates[0].steps: expected a list, found the number 5"),
            ("    steps:\n    - - name: a\n        arguments: {parameters: {name: x}}\n", 10, "spec.templates[0].steps[0][0].arguments.parameters: expected a list, found a mapping"),
            ("    inputs: {parameters: 5}\n", 8, "spec.templates[0].inputs.parameters: expected a list, found the number 5"),
            ("    retryStrategy: {limit: [1]}\n", 8, "spec.templates[0].retryStrategy.limit: expected an integer or a string, found a list"),
            ("    dag: {tasks: [{name: a, continueOn: {failed: maybe}}]}\n", 8, "spec.templates[0].dag.tasks[0].continueOn.failed: expected a boolean (true or false), found the string \"maybe\""),
        ] {
            let (_, diags) = load_str("wf.yaml", &format!("{head}{body}"));
            assert_eq!(diags.len(), 1, "{diags:?}");
            let d = &diags[0];
            assert_eq!(format!("{}: {}", d.path, d.message), expected);
            assert_eq!(d.location.line, line, "{expected}");
        }
    }

    #[test]
    fn malformed_yaml_is_an_error_with_a_line() {
        let (_, diags) = load_str("bad.yaml", "kind: Workflow\nspec: [\n");
        assert_eq!(diags.len(), 1);
        assert!(
            diags[0].message.starts_with("malformed YAML"),
            "{}",
            diags[0]
        );
    }

    proptest::proptest! {
        #[test]
        fn loading_never_panics(s in "\\PC{0,200}") {
            let _ = load_str("x.yaml", &s);
        }
    }
}
