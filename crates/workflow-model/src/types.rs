//! Argo Workflows v3.5.6 types (`argoproj.io/v1alpha1`), as far as ONYX interprets them.
//!
//! Fields that ONYX carries but does not act on (pod placement, security contexts, ...) are
//! kept as raw JSON so nothing the user wrote is lost. Unknown fields are found by
//! [`crate::schema`], not by these types: serde ignores them here and the original document is
//! kept whole next to the typed view.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Argo's `AnyString`: YAML `value: 1` or `value: true` are read as the strings "1" and "true".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AnyString(pub String);

thread_local! {
    /// While decoding YAML, string fields take only strings so that a YAML 1.1 `yes` or `017`
    /// can be put back as the text Kubernetes would keep (see `crate::decode_document`).
    pub(crate) static STRICT_STRINGS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<'de> Deserialize<'de> for AnyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if STRICT_STRINGS.with(|s| s.get()) && matches!(v, Value::Bool(_) | Value::Number(_)) {
            return Err(serde::de::Error::custom(
                "invalid type: scalar, expected a string",
            ));
        }
        match v {
            Value::String(s) => Ok(AnyString(s)),
            Value::Number(n) => Ok(AnyString(n.to_string())),
            Value::Bool(b) => Ok(AnyString(b.to_string())),
            Value::Null => Ok(AnyString(String::new())),
            other => Err(serde::de::Error::custom(format!(
                "expected a string, number or boolean, found {}",
                json_kind(&other)
            ))),
        }
    }
}

impl std::ops::Deref for AnyString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// Kubernetes' `IntOrString`, kept as its text form (`"3"`, `"{{inputs.parameters.n}}"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_i64()
                .map(IntOrString::Int)
                .ok_or_else(|| serde::de::Error::custom("expected an integer")),
            Value::String(s) => Ok(IntOrString::String(s)),
            other => Err(serde::de::Error::custom(format!(
                "expected an integer or a string, found {}",
                json_kind(&other)
            ))),
        }
    }
}

impl IntOrString {
    pub fn text(&self) -> String {
        match self {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.clone(),
        }
    }
}

pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub generate_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, AnyString>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, AnyString>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkflowSpec {
    pub templates: Vec<Template>,
    pub entrypoint: Option<String>,
    pub arguments: Arguments,
    pub parallelism: Option<i64>,
    pub suspend: Option<bool>,
    pub on_exit: Option<String>,
    pub active_deadline_seconds: Option<i64>,
    pub shutdown: Option<String>,
    pub workflow_template_ref: Option<WorkflowTemplateRef>,
    pub synchronization: Option<Box<Synchronization>>,
    pub retry_strategy: Option<Box<RetryStrategy>>,
    pub template_defaults: Option<Value>,
    pub hooks: BTreeMap<String, LifecycleHook>,
    pub volumes: Vec<Value>,
    pub volume_claim_templates: Vec<Value>,
    pub node_selector: BTreeMap<String, AnyString>,
    /// Kubernetes tolerations for every pod (a template's own replace these).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Value>,
    pub workflow_metadata: Option<Value>,
    pub archive_logs: Option<bool>,
    pub pod_spec_patch: Option<String>,
    pub artifact_repository_ref: Option<Value>,
    pub service_account_name: Option<String>,
    pub scheduler_name: Option<String>,
    pub priority: Option<i64>,
    pub pod_priority_class_name: Option<String>,
    pub metrics: Option<Box<Metrics>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkflowTemplateRef {
    pub name: String,
    pub cluster_scope: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Arguments {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
}

pub type Inputs = Arguments;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Parameter {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<AnyString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<AnyString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<Box<ValueFrom>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_name: Option<String>,
    #[serde(rename = "enum", skip_serializing_if = "Vec::is_empty")]
    pub enum_values: Vec<AnyString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<AnyString>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ValueFrom {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jq_filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplied: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<AnyString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct KeyRef {
    pub name: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Artifact {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<Value>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_expression: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawArtifact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<Box<HttpArtifact>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub s3: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oss: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azure: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdfs: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifactory: Option<Value>,
    /// Where ONYX stored the artifact in its local repository (a key relative to its root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalArtifact>,
    /// When the artifact is deleted (`strategy`: OnWorkflowCompletion, OnWorkflowDeletion,
    /// Never), over the workflow's `artifactGC`.
    #[serde(rename = "artifactGC", skip_serializing_if = "Option::is_none")]
    pub artifact_gc: Option<Value>,
}

impl Artifact {
    /// `archive: {none: {}}` — the artifact is stored as the plain file or directory.
    pub fn archive_none(&self) -> bool {
        self.archive
            .as_ref()
            .is_some_and(|a| a.get("none").is_some())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RawArtifact {
    pub data: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HttpArtifact {
    pub url: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<Header>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LocalArtifact {
    pub key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Outputs {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<String>,
}

impl Outputs {
    pub fn is_empty(&self) -> bool {
        self.parameters.is_empty()
            && self.artifacts.is_empty()
            && self.result.is_none()
            && self.exit_code.is_none()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Template {
    pub name: String,
    pub inputs: Inputs,
    pub outputs: Outputs,
    pub metadata: Option<Value>,
    pub daemon: Option<bool>,
    pub steps: Option<Vec<ParallelSteps>>,
    pub container: Option<Container>,
    pub container_set: Option<Box<ContainerSet>>,
    pub script: Option<Box<Script>>,
    pub resource: Option<Box<ResourceTemplate>>,
    pub dag: Option<DagTemplate>,
    pub suspend: Option<SuspendTemplate>,
    pub data: Option<Value>,
    pub http: Option<Box<HttpTemplate>>,
    pub plugin: Option<Value>,
    pub volumes: Vec<Value>,
    pub init_containers: Vec<Container>,
    pub sidecars: Vec<Container>,
    pub archive_location: Option<Value>,
    pub active_deadline_seconds: Option<IntOrString>,
    pub retry_strategy: Option<Box<RetryStrategy>>,
    pub parallelism: Option<i64>,
    pub fail_fast: Option<bool>,
    pub node_selector: BTreeMap<String, AnyString>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Value>,
    pub synchronization: Option<Box<Synchronization>>,
    pub memoize: Option<Box<Memoize>>,
    pub timeout: Option<String>,
    pub pod_spec_patch: Option<String>,
    pub priority_class_name: Option<String>,
    pub scheduler_name: Option<String>,
    pub metrics: Option<Box<Metrics>>,
}

/// `metrics:` of a workflow or template: Prometheus metrics the controller emits when the
/// node (or workflow) ends, or while it runs for a realtime gauge.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Metrics {
    pub prometheus: Vec<PrometheusMetric>,
}

/// One metric of `metrics.prometheus` (Argo's `Prometheus` type): exactly one of `gauge`,
/// `histogram`, `counter`; its name gets Argo's `argo_workflows_` prefix when exposed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct PrometheusMetric {
    pub name: String,
    pub labels: Vec<MetricLabel>,
    pub help: String,
    pub when: Option<String>,
    pub gauge: Option<GaugeMetric>,
    pub histogram: Option<HistogramMetric>,
    pub counter: Option<CounterMetric>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MetricLabel {
    pub key: String,
    pub value: AnyString,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GaugeMetric {
    pub value: AnyString,
    pub realtime: Option<bool>,
    /// `Set` (the default), `Add` or `Sub`.
    pub operation: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct HistogramMetric {
    pub value: AnyString,
    /// Argo's `Amount`s: numbers (or numeric strings).
    pub buckets: Vec<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CounterMetric {
    pub value: AnyString,
}

/// The kind of work a template describes; exactly one must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateKind {
    Container,
    ContainerSet,
    Script,
    Resource,
    Steps,
    Dag,
    Suspend,
    Data,
    Http,
    Plugin,
}

impl Template {
    /// The template's kinds that are set. A valid template has exactly one.
    pub fn kinds(&self) -> Vec<TemplateKind> {
        let mut k = Vec::new();
        if self.container.is_some() {
            k.push(TemplateKind::Container)
        }
        if self.container_set.is_some() {
            k.push(TemplateKind::ContainerSet)
        }
        if self.script.is_some() {
            k.push(TemplateKind::Script)
        }
        if self.resource.is_some() {
            k.push(TemplateKind::Resource)
        }
        if self.steps.is_some() {
            k.push(TemplateKind::Steps)
        }
        if self.dag.is_some() {
            k.push(TemplateKind::Dag)
        }
        if self.suspend.is_some() {
            k.push(TemplateKind::Suspend)
        }
        if self.data.is_some() {
            k.push(TemplateKind::Data)
        }
        if self.http.is_some() {
            k.push(TemplateKind::Http)
        }
        if self.plugin.is_some() {
            k.push(TemplateKind::Plugin)
        }
        k
    }

    pub fn kind(&self) -> Option<TemplateKind> {
        self.kinds().first().copied()
    }
}

/// A list of steps run in parallel. Argo accepts both `- - name: a` and `- name: a` shapes? No:
/// each element of `steps` is itself a list; we accept a single mapping too, as Argo's
/// `ParallelSteps` unmarshaller does.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct ParallelSteps(pub Vec<WorkflowStep>);

impl<'de> Deserialize<'de> for ParallelSteps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Dispatched on the shape the document has, so that an error inside a step keeps its
        // own field and message (an untagged enum would only say that no shape matched).
        struct Shape;
        impl<'de> serde::de::Visitor<'de> for Shape {
            type Value = ParallelSteps;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of steps that run in parallel (or one step)")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                a: A,
            ) -> Result<ParallelSteps, A::Error> {
                Vec::<WorkflowStep>::deserialize(serde::de::value::SeqAccessDeserializer::new(a))
                    .map(ParallelSteps)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                a: A,
            ) -> Result<ParallelSteps, A::Error> {
                WorkflowStep::deserialize(serde::de::value::MapAccessDeserializer::new(a))
                    .map(|s| ParallelSteps(vec![s]))
            }
        }
        d.deserialize_any(Shape)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct WorkflowStep {
    pub name: String,
    pub template: Option<String>,
    pub inline: Option<Box<Template>>,
    pub arguments: Arguments,
    pub template_ref: Option<TemplateRef>,
    pub with_items: Option<Vec<Value>>,
    pub with_param: Option<String>,
    pub with_sequence: Option<Sequence>,
    pub when: Option<String>,
    pub continue_on: Option<ContinueOn>,
    pub on_exit: Option<String>,
    pub hooks: BTreeMap<String, LifecycleHook>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DagTemplate {
    pub target: Option<String>,
    pub tasks: Vec<DagTask>,
    pub fail_fast: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DagTask {
    pub name: String,
    pub template: Option<String>,
    pub inline: Option<Box<Template>>,
    pub arguments: Arguments,
    pub template_ref: Option<TemplateRef>,
    pub dependencies: Vec<String>,
    pub with_items: Option<Vec<Value>>,
    pub with_param: Option<String>,
    pub with_sequence: Option<Sequence>,
    pub when: Option<String>,
    pub continue_on: Option<ContinueOn>,
    pub on_exit: Option<String>,
    pub depends: Option<String>,
    pub hooks: BTreeMap<String, LifecycleHook>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct TemplateRef {
    pub name: String,
    pub template: String,
    pub cluster_scope: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Sequence {
    pub count: Option<IntOrString>,
    pub start: Option<IntOrString>,
    pub end: Option<IntOrString>,
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContinueOn {
    pub error: bool,
    pub failed: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct LifecycleHook {
    pub template: Option<String>,
    pub arguments: Arguments,
    pub template_ref: Option<TemplateRef>,
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RetryStrategy {
    pub limit: Option<IntOrString>,
    pub retry_policy: Option<String>,
    pub backoff: Option<Backoff>,
    pub affinity: Option<Value>,
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Backoff {
    pub duration: Option<IntOrString>,
    pub factor: Option<IntOrString>,
    pub max_duration: Option<IntOrString>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Synchronization {
    pub semaphore: Option<SemaphoreRef>,
    pub mutex: Option<MutexRef>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SemaphoreRef {
    pub config_map_key_ref: Option<KeyRef>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MutexRef {
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Memoize {
    pub key: String,
    pub cache: Option<Value>,
    pub max_age: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    pub name: Option<String>,
    pub image: Option<String>,
    pub command: Option<Vec<AnyString>>,
    pub args: Option<Vec<AnyString>>,
    pub env: Vec<EnvVar>,
    pub working_dir: Option<String>,
    pub volume_mounts: Vec<VolumeMount>,
    pub mirror_volume_mounts: Option<bool>,
    pub resources: Option<Value>,
    pub dependencies: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EnvVar {
    pub name: String,
    pub value: Option<AnyString>,
    pub value_from: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    pub sub_path: Option<String>,
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Script {
    #[serde(flatten)]
    pub container: Container,
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerSet {
    pub containers: Vec<Container>,
    pub volume_mounts: Vec<VolumeMount>,
    pub retry_strategy: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResourceTemplate {
    pub action: String,
    pub merge_strategy: Option<String>,
    pub manifest: Option<String>,
    pub manifest_from: Option<Value>,
    pub set_owner_reference: Option<bool>,
    pub success_condition: Option<String>,
    pub failure_condition: Option<String>,
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SuspendTemplate {
    pub duration: Option<IntOrString>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpTemplate {
    pub method: Option<String>,
    pub url: String,
    pub headers: Vec<HttpHeader>,
    pub timeout_seconds: Option<i64>,
    pub success_condition: Option<String>,
    pub body: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HttpHeader {
    pub name: String,
    pub value: Option<String>,
    pub value_from: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CronWorkflowSpec {
    pub workflow_spec: WorkflowSpec,
    pub schedule: String,
    pub schedules: Vec<String>,
    pub concurrency_policy: Option<String>,
    pub suspend: bool,
    pub starting_deadline_seconds: Option<i64>,
    pub successful_jobs_history_limit: Option<i64>,
    pub failed_jobs_history_limit: Option<i64>,
    pub timezone: Option<String>,
    pub workflow_metadata: Option<Value>,
}
