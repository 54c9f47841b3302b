//! Stored objects — WorkflowTemplates, ClusterWorkflowTemplates and CronWorkflows — checked
//! and kept: one set of rules for the three kinds, whether an object comes through the API or
//! from a cluster's `argoproj.io` objects (GitOps). A `Kind` says what differs (its body field,
//! its list kind, whether it is namespaced). An object is checked by Argo's lint rules and the
//! namespace's admission rules before it is stored.

use serde_json::{json, Value};
use store::ObjectRow;

use crate::error::ApiError;
use crate::state::AppState;
use crate::submit;

pub struct Kind {
    pub kind: &'static str,
    pub body_field: &'static str,
    pub list_kind: &'static str,
}

pub const WT: Kind = Kind {
    kind: "WorkflowTemplate",
    body_field: "template",
    list_kind: "WorkflowTemplateList",
};
pub const CWT: Kind = Kind {
    kind: "ClusterWorkflowTemplate",
    body_field: "template",
    list_kind: "ClusterWorkflowTemplateList",
};
pub const CRON: Kind = Kind {
    kind: "CronWorkflow",
    body_field: "cronWorkflow",
    list_kind: "CronWorkflowList",
};

/// Check an object for storing: its kind, name and (for templates) Argo's lint rules.
pub async fn prepare_object(
    s: &AppState,
    k: &Kind,
    ns: &str,
    body: &Value,
    name_in_path: Option<&str>,
) -> Result<Value, ApiError> {
    let mut obj = body.get(k.body_field).cloned().ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "request body: the field {:?} is required",
            k.body_field
        ))
    })?;
    if !obj.is_object() {
        return Err(ApiError::InvalidArgument(format!(
            "{}: expected an object",
            k.body_field
        )));
    }
    if obj["kind"].is_null() {
        obj["kind"] = json!(k.kind);
    }
    if obj["apiVersion"].is_null() {
        obj["apiVersion"] = json!("argoproj.io/v1alpha1");
    }
    if obj["kind"] != k.kind {
        return Err(ApiError::InvalidArgument(format!(
            "{}.kind: expected {}, got {}",
            k.body_field, k.kind, obj["kind"]
        )));
    }
    let name = submit::resolve_name(&obj)?;
    if let Some(p) = name_in_path {
        if p != name {
            return Err(ApiError::InvalidArgument(format!(
                "the name in the body ({name:?}) does not match the name in the path ({p:?})"
            )));
        }
    }
    obj["metadata"]["name"] = json!(name);
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("generateName");
    }
    if k.kind != "ClusterWorkflowTemplate" {
        obj["metadata"]["namespace"] = json!(ns);
    }
    if k.kind == "CronWorkflow" {
        // Argo's limit (maxCronWorkflowNameLength): the name becomes a label value of every
        // workflow it makes (at most 63), with a suffix.
        if name.len() > 52 {
            return Err(ApiError::InvalidArgument(format!(
                "cron workflow name {name:?} must not be more than 52 characters long (currently {})",
                name.len()
            )));
        }
        crate::cron::validate(&obj)?;
        let wf = crate::cron::workflow_from(&obj, &name);
        let ctx = submit::gather_templates(&s.ctl.store, ns, &wf).await?;
        submit::validate("cronWorkflow.spec.workflowSpec", &wf, &ctx)?;
        // Checked when it is created, as Gatekeeper checks objects, not only when it fires.
        submit::check_admission(s.cfg.policy(ns), ns, "cronworkflow", &name, &wf, &ctx)?;
    } else {
        let ctx = submit::gather_templates(&s.ctl.store, ns, &obj)
            .await
            .unwrap_or_default();
        submit::validate(k.body_field, &obj, &ctx)?;
        if k.kind == "WorkflowTemplate" {
            submit::check_admission(s.cfg.policy(ns), ns, "workflowtemplate", &name, &obj, &ctx)?;
        }
    }
    Ok(obj)
}

pub fn scope<'a>(k: &Kind, ns: &'a str) -> &'a str {
    if k.kind == "ClusterWorkflowTemplate" {
        ""
    } else {
        ns
    }
}

pub async fn create_obj(s: &AppState, k: &Kind, ns: &str, body: &Value) -> Result<Value, ApiError> {
    let mut obj = prepare_object(s, k, ns, body, None).await?;
    let created = workflow_runtime::now();
    obj["metadata"]["uid"] = json!(workflow_runtime::new_uid());
    obj["metadata"]["creationTimestamp"] = json!(created.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    if k.kind == "CronWorkflow" {
        obj["status"] = crate::cron::status_object(&obj["status"]);
    }
    let row = ObjectRow {
        kind: k.kind.into(),
        namespace: scope(k, ns).into(),
        name: obj["metadata"]["name"].as_str().unwrap_or_default().into(),
        created_ns: created.timestamp_nanos_opt().unwrap_or_default(),
        body: obj.to_string(),
    };
    s.ctl.store.put_object(row, true).await?;
    Ok(obj)
}

pub async fn get_obj(s: &AppState, k: &Kind, ns: &str, name: &str) -> Result<Value, ApiError> {
    let row = s
        .ctl
        .store
        .object(k.kind, scope(k, ns), name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "{}.argoproj.io \"{name}\" not found",
                store::plural(k.kind)
            ))
        })?;
    let obj: Value =
        serde_json::from_str(&row.body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(served(k, obj))
}

/// An object as the API sends it: a CronWorkflow stored before it had a status object (or
/// by an older ONYX) is sent with one.
pub fn served(k: &Kind, mut obj: Value) -> Value {
    if k.kind == "CronWorkflow" && !obj["status"].is_object() {
        obj["status"] = crate::cron::status_object(&obj["status"]);
    }
    obj
}

pub async fn update_obj(
    s: &AppState,
    k: &Kind,
    ns: &str,
    name: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let mut obj = prepare_object(s, k, ns, body, Some(name)).await?;
    let old = get_obj(s, k, ns, name).await?;
    for f in ["uid", "creationTimestamp"] {
        obj["metadata"][f] = old["metadata"][f].clone();
    }
    if k.kind == "CronWorkflow" {
        // An update without a status (or with `null`, as clients send one they never read)
        // keeps what the schedule recorded.
        let status = match obj.get("status") {
            Some(s) if s.is_object() => s.clone(),
            _ => old["status"].clone(),
        };
        obj["status"] = crate::cron::status_object(&status);
    }
    let row = ObjectRow {
        kind: k.kind.into(),
        namespace: scope(k, ns).into(),
        name: name.into(),
        created_ns: 0,
        body: obj.to_string(),
    };
    s.ctl.store.put_object(row, false).await?;
    Ok(obj)
}
