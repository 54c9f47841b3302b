//! A workflow's manifest as the server keeps it: parsed to the model the way files are read,
//! with the templates it was built from stored beside it so that a replay after a crash builds
//! the same engine even if the stored templates changed since. A leaf: it imports no other
//! module of the runtime but the error type.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use workflow_engine::{EngineConfig, TemplateStore};
use workflow_model::WorkflowObject;

use crate::error::RuntimeError;

/// What a workflow was built from, besides its manifest: stored with it, so that a replay
/// builds the same engine even if templates changed since.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct BuildContext {
    pub workflow_templates: Vec<Value>,
    pub cluster_workflow_templates: Vec<Value>,
    pub config: EngineConfig,
}

/// Parse a stored or submitted object (JSON) the way files are read.
pub fn load_object(what: &str, v: &Value) -> Result<workflow_model::Loaded, RuntimeError> {
    let text = serde_json::to_string(v).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
    let (mut objs, diags) = workflow_model::load_str(what, &text);
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.severity == workflow_model::Severity::Error)
        .map(|d| {
            if d.path.is_empty() {
                d.message.clone()
            } else {
                format!("{}: {}", d.path, d.message)
            }
        })
        .collect();
    if !errors.is_empty() {
        return Err(RuntimeError::Invalid(errors.join("; ")));
    }
    if objs.is_empty() {
        return Err(RuntimeError::Invalid(format!("{what} is empty")));
    }
    Ok(objs.remove(0))
}

pub fn workflow_of(l: workflow_model::Loaded) -> Result<WorkflowObject, RuntimeError> {
    match l.object {
        workflow_model::Object::Workflow(w)
        | workflow_model::Object::WorkflowTemplate(w)
        | workflow_model::Object::ClusterWorkflowTemplate(w) => Ok(w),
        _ => Err(RuntimeError::Invalid(
            "expected an argoproj.io/v1alpha1 Workflow".into(),
        )),
    }
}

pub fn template_store(ctx: &BuildContext) -> Result<TemplateStore, RuntimeError> {
    let mut store = TemplateStore::default();
    for v in &ctx.workflow_templates {
        let w = workflow_of(load_object("stored WorkflowTemplate", v)?)?;
        store.workflow_templates.insert(w.metadata.name.clone(), w);
    }
    for v in &ctx.cluster_workflow_templates {
        let w = workflow_of(load_object("stored ClusterWorkflowTemplate", v)?)?;
        store
            .cluster_workflow_templates
            .insert(w.metadata.name.clone(), w);
    }
    Ok(store)
}

/// Apply `-p name=value` overrides to `spec.arguments.parameters` (Argo's submit semantics:
/// an existing parameter gets the value, a new one is added).
pub fn apply_parameters(manifest: &mut Value, params: &[(String, String)]) {
    if params.is_empty() {
        return;
    }
    if !manifest["spec"]["arguments"].is_object() {
        manifest["spec"]["arguments"] = json!({});
    }
    let list = &mut manifest["spec"]["arguments"]["parameters"];
    if !list.is_array() {
        *list = json!([]);
    }
    let items = list.as_array_mut().expect("an array");
    for (k, v) in params {
        match items.iter_mut().find(|p| p["name"] == k.as_str()) {
            Some(p) => {
                p["value"] = json!(v);
                if let Some(m) = p.as_object_mut() {
                    m.remove("valueFrom");
                }
            }
            None => items.push(json!({"name": k, "value": v})),
        }
    }
}
