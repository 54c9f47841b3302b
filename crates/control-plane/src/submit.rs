//! From a request to an accepted workflow: names, parameters, the templates it refers to,
//! validation and the namespace's policy.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use workflow_model::lint::Registry;

use crate::config::NamespacePolicy;
use crate::error::ApiError;
use crate::state::AppState;
use workflow_runtime::{apply_parameters, load_object, BuildContext};

/// Parse `name=value` (Argo's `parameters` strings in submit options and retry requests).
pub fn parse_parameters(list: &[String]) -> Result<Vec<(String, String)>, ApiError> {
    list.iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| {
                    ApiError::InvalidArgument(format!("parameter {p:?}: expected name=value"))
                })
        })
        .collect()
}

/// Kubernetes object names: DNS-1123 subdomain, at most 253 characters.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    if access::is_object_name(name) {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "metadata.name: invalid name {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        )))
    }
}

/// The workflow's final name: `metadata.name`, else `generateName` and five random characters.
pub fn resolve_name(manifest: &Value) -> Result<String, ApiError> {
    let meta = &manifest["metadata"];
    let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(g)) if !g.is_empty() => format!("{g}{}", suffix()),
        _ => {
            return Err(ApiError::InvalidArgument(
                "metadata.name or metadata.generateName is required".into(),
            ))
        }
    };
    check_name(&name)?;
    Ok(name)
}

fn suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| CHARS[rand::random::<usize>() % CHARS.len()] as char)
        .collect()
}

/// `(name, cluster scope)` of every template the object refers to.
pub fn references(v: &Value, out: &mut BTreeSet<(String, bool)>) {
    match v {
        Value::Object(m) => {
            for key in ["templateRef", "workflowTemplateRef"] {
                if let Some(r) = m.get(key) {
                    if let Some(n) = r["name"].as_str() {
                        out.insert((n.to_string(), r["clusterScope"].as_bool() == Some(true)));
                    }
                }
            }
            for x in m.values() {
                references(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// Everything the workflow refers to, from the store, transitively.
pub async fn gather_templates(
    store: &store::Store,
    namespace: &str,
    manifest: &Value,
) -> Result<BuildContext, ApiError> {
    let mut ctx = BuildContext {
        config: workflow_engine::EngineConfig {
            shell_schedules: true,
            ..local_executor::actions::node_config()
        },
        ..Default::default()
    };
    let mut todo = BTreeSet::new();
    references(manifest, &mut todo);
    let mut done: BTreeSet<(String, bool)> = BTreeSet::new();
    while let Some(r) = todo.pop_first() {
        if !done.insert(r.clone()) {
            continue;
        }
        let (kind, ns) = if r.1 {
            ("ClusterWorkflowTemplate", "")
        } else {
            ("WorkflowTemplate", namespace)
        };
        let row = store.object(kind, ns, &r.0).await?.ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "{}.argoproj.io \"{}\" not found",
                store::plural(kind),
                r.0
            ))
        })?;
        let body: Value =
            serde_json::from_str(&row.body).map_err(|e| ApiError::Internal(e.to_string()))?;
        references(&body, &mut todo);
        if r.1 {
            ctx.cluster_workflow_templates.push(body);
        } else {
            ctx.workflow_templates.push(body);
        }
    }
    Ok(ctx)
}

/// Structural validation (`argo lint`'s rules) against the templates it refers to.
pub fn validate(
    what: &str,
    manifest: &Value,
    ctx: &BuildContext,
) -> Result<workflow_model::Loaded, ApiError> {
    let loaded = load_object(what, manifest)?;
    let mut refs = Vec::new();
    for v in ctx
        .workflow_templates
        .iter()
        .chain(&ctx.cluster_workflow_templates)
    {
        refs.push(load_object("stored template", v)?);
    }
    let registry = Registry::from_loaded(&refs);
    let errors: Vec<String> = workflow_model::lint::lint(&loaded, &registry)
        .into_iter()
        .filter(|d| d.severity == workflow_model::Severity::Error)
        .map(|d| {
            if d.path.is_empty() {
                d.message
            } else {
                format!("{}: {}", d.path, d.message)
            }
        })
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::InvalidArgument(errors.join("; ")));
    }
    Ok(loaded)
}

/// The spec's audit rule and its kin: parameters every workflow of the namespace must carry.
pub fn check_policy(
    policy: &NamespacePolicy,
    name: &str,
    manifest: &Value,
    ctx: &BuildContext,
) -> Result<(), ApiError> {
    let mut supplied: BTreeSet<String> = BTreeSet::new();
    let mut collect = |spec: &Value| {
        for p in spec["arguments"]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let has_value = match &p["value"] {
                Value::String(s) => !s.trim().is_empty(),
                Value::Null => false,
                _ => true,
            };
            if let (Some(n), true) = (p["name"].as_str(), has_value) {
                supplied.insert(n.to_string());
            }
        }
    };
    collect(&manifest["spec"]);
    // A workflow made from a WorkflowTemplate also carries the template's arguments.
    if let Some(r) = manifest["spec"]["workflowTemplateRef"]["name"].as_str() {
        let cluster =
            manifest["spec"]["workflowTemplateRef"]["clusterScope"].as_bool() == Some(true);
        let list = if cluster {
            &ctx.cluster_workflow_templates
        } else {
            &ctx.workflow_templates
        };
        if let Some(t) = list.iter().find(|t| t["metadata"]["name"] == r) {
            collect(&t["spec"]);
        }
    }
    for required in &policy.required_parameters {
        if !supplied.contains(required) {
            return Err(ApiError::InvalidArgument(format!(
                "workflow {name:?} is refused: every workflow must carry the parameter {required:?} in spec.arguments.parameters (the audit rule of this namespace); pass it with `-p {required}=VALUE` (onyx submit / argo submit), or add {{name: {required}, value: ...}} under spec.arguments.parameters"
            )));
        }
    }
    Ok(())
}

/// The namespace's admission rules (GPUs per step, parallelism, queues, priority classes,
/// registries) over the workflow and the WorkflowTemplates it draws from; every refusal is
/// named with its rule, field and value.
/// The namespace's admission rules over a workflow (or the workflow a WorkflowTemplate or
/// CronWorkflow makes: `what` names it, e.g. `workflowtemplate`), refusing with every broken
/// rule.
pub fn check_admission(
    policy: &NamespacePolicy,
    namespace: &str,
    what: &str,
    name: &str,
    manifest: &Value,
    ctx: &BuildContext,
) -> Result<(), ApiError> {
    let rules = policy.admission();
    let templates: Vec<Value> = ctx
        .workflow_templates
        .iter()
        .chain(&ctx.cluster_workflow_templates)
        .cloned()
        .collect();
    let mut refused = admission::check_pod_security(policy.pod_security, manifest, &templates);
    if !rules.is_empty() {
        refused.extend(admission::check(&rules, manifest, &templates));
    }
    if refused.is_empty() {
        return Ok(());
    }
    let reasons: Vec<String> = refused.iter().map(|r| r.to_string()).collect();
    Err(ApiError::InvalidArgument(format!(
        "{what} {name:?} is refused by namespace {namespace:?}'s admission policy: {}",
        reasons.join("; ")
    )))
}

/// A Workflow object as clients send it: `kind` and `apiVersion` may be left out.
pub fn normalize_workflow(manifest: &mut Value) -> Result<(), ApiError> {
    if !manifest.is_object() {
        return Err(ApiError::InvalidArgument(
            "workflow: expected an object".into(),
        ));
    }
    if manifest["kind"].is_null() {
        manifest["kind"] = json!("Workflow");
    }
    if manifest["apiVersion"].is_null() {
        manifest["apiVersion"] = json!("argoproj.io/v1alpha1");
    }
    if manifest["kind"] != "Workflow" {
        return Err(ApiError::InvalidArgument(format!(
            "workflow.kind: expected Workflow, got {}",
            manifest["kind"]
        )));
    }
    Ok(())
}

/// Validate, apply policy, and (unless a dry run) commit and start a workflow.
pub async fn submit(
    s: &AppState,
    ns: &str,
    manifest: Value,
    params: &[(String, String)],
    dry_run: bool,
) -> Result<Value, ApiError> {
    let accepted = accept(s, ns, manifest, params).await?;
    if dry_run {
        return Ok(accepted.json);
    }
    Ok(s.ctl.create(accepted).await?)
}

/// A workflow through every check of [`submit`], ready for `Controller::create`.
pub async fn accept(
    s: &AppState,
    ns: &str,
    mut manifest: Value,
    params: &[(String, String)],
) -> Result<workflow_runtime::Accepted, ApiError> {
    normalize_workflow(&mut manifest)?;
    match manifest["metadata"]["namespace"].as_str() {
        Some(other) if !other.is_empty() && other != ns => {
            return Err(ApiError::InvalidArgument(format!(
                "workflow.metadata.namespace {other:?} does not match the request's namespace {ns:?}"
            )))
        }
        _ => {}
    }
    // The engine reads the namespace from the manifest (`metadata.namespace`,
    // `{{workflow.namespace}}`): a workflow posted to a namespace's path is in that namespace.
    if manifest["metadata"].is_object() {
        manifest["metadata"]["namespace"] = json!(ns);
    }
    apply_parameters(&mut manifest, params);
    let name = resolve_name(&manifest)?;
    let mut ctx = gather_templates(&s.ctl.store, ns, &manifest).await?;
    ctx.config.limits = s.cfg.limits.clone();
    if s.cfg.executor == crate::config::ExecutorKind::Kubernetes {
        // A step's `hostNodeName` is the node its pod is bound to, known once it runs; not
        // this server's machine.
        ctx.config.node_name = String::new();
    }
    check_policy(s.cfg.policy(ns), &name, &manifest, &ctx)?;
    check_admission(s.cfg.policy(ns), ns, "workflow", &name, &manifest, &ctx)?;
    if let Some(key) = manifest
        .pointer("/spec/artifactRepositoryRef/key")
        .and_then(Value::as_str)
    {
        if !s.cfg.artifact_repositories.contains_key(key) {
            let known: Vec<&String> = s.cfg.artifact_repositories.keys().collect();
            return Err(ApiError::InvalidArgument(format!(
                "spec.artifactRepositoryRef.key: no artifact repository {key:?} (configured: {known:?}, as [artifact_repositories.NAME] in the server's config)"
            )));
        }
    }
    let loaded = validate("workflow", &manifest, &ctx)?;
    let workflow_model::Object::Workflow(wf) = &loaded.object else {
        return Err(ApiError::InvalidArgument("expected a Workflow".into()));
    };
    Ok(s.ctl.accept(wf, &manifest, ns, &name, ctx)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_override_or_add() {
        let mut m =
            json!({"spec": {"arguments": {"parameters": [{"name": "a", "valueFrom": {"x": 1}}]}}});
        apply_parameters(
            &mut m,
            &[("a".into(), "1".into()), ("b".into(), "2".into())],
        );
        assert_eq!(
            m["spec"]["arguments"]["parameters"],
            json!([{"name": "a", "value": "1"}, {"name": "b", "value": "2"}])
        );
        assert!(parse_parameters(&["novalue".into()]).is_err());
    }

    #[test]
    fn ticket_id_is_required_by_default() {
        let policy = NamespacePolicy::default();
        let ctx = BuildContext::default();
        let without = json!({"spec": {"arguments": {"parameters": [{"name": "x", "value": "1"}]}}});
        let e = check_policy(&policy, "w", &without, &ctx)
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"ticket_id\""), "{e}");
        assert!(e.contains("-p ticket_id=VALUE"), "{e}");
        let empty =
            json!({"spec": {"arguments": {"parameters": [{"name": "ticket_id", "value": " "}]}}});
        assert!(check_policy(&policy, "w", &empty, &ctx).is_err());
        let with =
            json!({"spec": {"arguments": {"parameters": [{"name": "ticket_id", "value": "T-1"}]}}});
        assert!(check_policy(&policy, "w", &with, &ctx).is_ok());
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(check_name("hello-world.v1").is_ok());
        assert!(check_name("Hello").is_err());
        assert!(check_name("-x").is_err());
        let n = resolve_name(&json!({"metadata": {"generateName": "hello-"}})).unwrap();
        assert!(n.starts_with("hello-") && n.len() == 11, "{n}");
        assert!(resolve_name(&json!({"metadata": {}})).is_err());
    }
}
