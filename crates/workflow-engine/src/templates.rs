//! Templates: finding the one a step, task or hook names (local, `templateRef` to a
//! WorkflowTemplate or ClusterWorkflowTemplate, or inline), decoding it once, and Argo's
//! `ProcessArgs` — binding inputs from arguments and substituting them and the globals.
//!
//! Tags that belong to a later stage (`steps.*`, `tasks.*`, `pod.name` of a retried attempt)
//! stay unresolved here; an argument that still names `steps.*`/`tasks.*` after its own
//! scope was applied is an error, never a silent empty string.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use template_eval::{substitute, substitute_json, Layered, Lookup, Vars};
use workflow_model::{Arguments, Template, TemplateRef, WorkflowObject, WorkflowStep};

use crate::scope::ArtMap;
use crate::state::{is_pod_kind, Engine, Holder, TScope};
use crate::status::pod_name;

/// The kinds of template; a template is exactly one.
const TEMPLATE_TYPES: &[&str] = &[
    "container",
    "containerSet",
    "script",
    "resource",
    "dag",
    "steps",
    "suspend",
    "data",
    "http",
    "plugin",
];

/// `spec.templateDefaults` merged under a template, as Argo merges them
/// (`mergedTemplateDefaultsInto`): the template's fields win, and the template keeps its own
/// type — a steps template does not become a container because the defaults name one.
pub(crate) fn with_template_defaults(template: &Value, defaults: &Value) -> Value {
    let mut merged = merge_defaults(template, defaults);
    if let Value::Object(m) = &mut merged {
        for t in TEMPLATE_TYPES {
            if template.get(*t).is_none() {
                m.remove(*t);
            }
        }
    }
    merged
}

fn merge_defaults(base: &Value, defaults: &Value) -> Value {
    match (base, defaults) {
        (Value::Object(b), Value::Object(d)) => {
            let mut out = b.clone();
            for (k, dv) in d {
                match out.get(k) {
                    Some(bv) => {
                        let merged = merge_defaults(bv, dv);
                        out.insert(k.clone(), merged);
                    }
                    None => {
                        out.insert(k.clone(), dv.clone());
                    }
                }
            }
            Value::Object(out)
        }
        (b, _) => b.clone(),
    }
}

fn template_in(obj: &WorkflowObject, name: &str) -> Option<Value> {
    let spec = obj.raw.get("spec")?;
    let t = spec
        .get("templates")?
        .as_array()?
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))?;
    Some(match spec.get("templateDefaults") {
        Some(d) => with_template_defaults(t, d),
        None => t.clone(),
    })
}

/// Merge a Workflow's arguments over a WorkflowTemplate's (by parameter name).
pub(crate) fn merge_arguments(base: Option<&Value>, own: &Value) -> Value {
    let mut out = base.cloned().unwrap_or(json!({}));
    for key in ["parameters", "artifacts"] {
        let Some(Value::Array(own_list)) = own.get(key) else {
            continue;
        };
        let list = out
            .as_object_mut()
            .map(|m| m.entry(key.to_string()).or_insert(json!([])))
            .and_then(Value::as_array_mut);
        let Some(list) = list else { continue };
        for p in own_list {
            let name = p.get("name").cloned();
            match list.iter_mut().find(|x| x.get("name") == name.as_ref()) {
                Some(x) => *x = p.clone(),
                None => list.push(p.clone()),
            }
        }
    }
    out
}

/// Whether a template uses `inputs.parameters` as a whole (not `inputs.parameters.NAME`).
fn mentions_all_inputs(v: &Value) -> bool {
    match v {
        Value::String(s) => s
            .match_indices("inputs.parameters")
            .any(|(i, m)| !s[i + m.len()..].starts_with('.')),
        Value::Array(a) => a.iter().any(mentions_all_inputs),
        Value::Object(o) => o
            .iter()
            .any(|(k, x)| k != "inputs" && mentions_all_inputs(x)),
        _ => false,
    }
}

/// Replace tags in one string, allocating only when it has any.
fn sub_in_place<L: Lookup + ?Sized>(text: &mut String, vars: &L) -> Result<(), String> {
    if text.contains("{{") {
        *text = substitute(text, vars, true).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Argo substitutes a step (or task) as a whole with its scope before running it. Hooks keep
/// their expressions for later; every other string field is substituted here, field by field
/// (no JSON round trip on the hot path).
pub(crate) fn substitute_step<L: Lookup + ?Sized>(
    base: &WorkflowStep,
    vars: &L,
) -> Result<WorkflowStep, String> {
    let mut s = base.clone();
    sub_in_place(&mut s.name, vars)?;
    if let Some(t) = &mut s.template {
        sub_in_place(t, vars)?;
    }
    if let Some(r) = &mut s.template_ref {
        sub_in_place(&mut r.name, vars)?;
        sub_in_place(&mut r.template, vars)?;
    }
    if let Some(w) = &mut s.when {
        sub_in_place(w, vars)?;
    }
    if let Some(e) = &mut s.on_exit {
        sub_in_place(e, vars)?;
    }
    for p in s.arguments.parameters.iter_mut() {
        if let Some(v) = &mut p.value {
            sub_in_place(&mut v.0, vars)?;
        }
        if let Some(v) = &mut p.default {
            sub_in_place(&mut v.0, vars)?;
        }
        if p.value_from.is_some() {
            let v = serde_json::to_value(&p.value_from).unwrap_or_default();
            let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
            p.value_from = workflow_model::decode(&v).map_err(|(_, m)| m)?;
        }
    }
    if !s.arguments.artifacts.is_empty() {
        let v = serde_json::to_value(&s.arguments.artifacts).unwrap_or_default();
        let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
        s.arguments.artifacts = workflow_model::decode(&v).map_err(|(_, m)| m)?;
    }
    if let Some(inline) = &s.inline {
        let v = serde_json::to_value(inline.as_ref()).unwrap_or_default();
        let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
        s.inline = Some(Box::new(workflow_model::decode(&v).map_err(|(_, m)| m)?));
    }
    Ok(s)
}

/// Substitute a step's arguments with its scope and resolve artifact `from` references.
pub(crate) fn resolve_arguments<L: Lookup + ?Sized>(
    args: &Arguments,
    vars: &L,
    arts: &ArtMap,
) -> Result<Arguments, String> {
    let mut out = Arguments::default();
    for p in &args.parameters {
        let mut p = p.clone();
        if let Some(v) = &p.value {
            let s = substitute(&v.0, vars, true).map_err(|e| e.to_string())?;
            if let Some(bad) = unresolved_reference(&s) {
                return Err(format!("failed to resolve {{{{{bad}}}}}"));
            }
            p.value = Some(workflow_model::AnyString(s));
        }
        out.parameters.push(p);
    }
    for a in &args.artifacts {
        let mut a = a.clone();
        if let Some(from) = a.from.clone() {
            let key = substitute(&from, vars, true).map_err(|e| e.to_string())?;
            let key = key
                .trim()
                .trim_start_matches("{{")
                .trim_end_matches("}}")
                .trim()
                .to_string();
            match arts.get(&key) {
                Some(src) => {
                    let name = a.name.clone();
                    let sub_path = a.sub_path.clone();
                    a = src.clone();
                    a.name = name;
                    a.path = None;
                    a.global_name = None;
                    if sub_path.is_some() {
                        a.sub_path = sub_path;
                    }
                }
                None if a.optional => continue,
                None => return Err(format!("Unable to resolve: \"{{{{{key}}}}}\"")),
            }
        } else if let Some(expr) = a.from_expression.clone() {
            let mut names = Vars::new();
            for k in arts.keys() {
                names.insert(k.clone(), k.clone());
            }
            let env = template_eval::expand_vars(&Layered {
                top: &names,
                base: vars,
            });
            match template_eval::expr::eval(&expr, &env) {
                Ok(Value::String(k)) => match arts.get(&k) {
                    Some(src) => {
                        let name = a.name.clone();
                        a = src.clone();
                        a.name = name;
                        a.path = None;
                        a.from_expression = None;
                    }
                    None => {
                        return Err(format!(
                            "unable to resolve artifact from expression '{expr}'"
                        ))
                    }
                },
                Ok(other) => return Err(format!("fromExpression '{expr}' gave {other}")),
                Err(e) => return Err(e.to_string()),
            }
        } else {
            let v = serde_json::to_value(&a).unwrap_or_default();
            let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
            a = workflow_model::decode(&v).map_err(|(_, m)| m)?;
        }
        out.artifacts.push(a);
    }
    Ok(out)
}

/// A `{{steps.*}}`/`{{tasks.*}}` reference left after substitution cannot be resolved later.
fn unresolved_reference(s: &str) -> Option<String> {
    let start = s.find("{{")?;
    let rest = &s[start + 2..];
    let end = rest.find("}}")?;
    let tag = rest[..end].trim();
    if tag.starts_with("steps.") || tag.starts_with("tasks.") {
        Some(tag.to_string())
    } else {
        None
    }
}

impl Engine {
    pub(crate) fn resolve(
        &self,
        holder: &Holder,
        tscope: &TScope,
    ) -> Result<(Arc<Value>, TScope, String, Option<TemplateRef>), String> {
        if let Some(inline) = &holder.inline {
            let v = serde_json::to_value(inline.as_ref()).map_err(|e| e.to_string())?;
            return Ok((Arc::new(v), tscope.clone(), String::new(), None));
        }
        if let Some(r) = &holder.template_ref {
            let (map, kind) = if r.cluster_scope {
                (
                    &self.store.cluster_workflow_templates,
                    "ClusterWorkflowTemplate",
                )
            } else {
                (&self.store.workflow_templates, "WorkflowTemplate")
            };
            let wt = map
                .get(&r.name)
                .ok_or_else(|| format!("{kind}.argoproj.io \"{}\" not found", r.name))?;
            let t = template_in(wt, &r.template)
                .ok_or_else(|| format!("template {} not found in {kind} {}", r.template, r.name))?;
            let scope = if r.cluster_scope {
                TScope::Cluster(r.name.clone())
            } else {
                TScope::Namespaced(r.name.clone())
            };
            return Ok((Arc::new(t), scope, r.template.clone(), Some(r.clone())));
        }
        let name = holder.template.clone().unwrap_or_default();
        match tscope {
            TScope::Local => self
                .templates
                .get(&name)
                .cloned()
                .map(|t| (t, TScope::Local, name.clone(), None))
                .ok_or_else(|| format!("template {name} not found")),
            TScope::Namespaced(wt) | TScope::Cluster(wt) => {
                let cluster = matches!(tscope, TScope::Cluster(_));
                let map = if cluster {
                    &self.store.cluster_workflow_templates
                } else {
                    &self.store.workflow_templates
                };
                let obj = map
                    .get(wt)
                    .ok_or_else(|| format!("template {wt} not found"))?;
                let t = template_in(obj, &name)
                    .ok_or_else(|| format!("template {name} not found in {wt}"))?;
                let r = TemplateRef {
                    name: wt.clone(),
                    template: name.clone(),
                    cluster_scope: cluster,
                };
                Ok((Arc::new(t), tscope.clone(), name, Some(r)))
            }
        }
    }

    /// Decode a template, once per stored template (templates are shared `Arc`s, so the
    /// address identifies them for the engine's lifetime).
    fn decode_template(&self, tmpl: &Value) -> Result<(Arc<Template>, bool), String> {
        let key = tmpl as *const Value as usize;
        if let Some(t) = self.decoded.borrow().get(&key) {
            return Ok(t.clone());
        }
        let t: Arc<Template> = Arc::new(
            workflow_model::decode(tmpl).map_err(|(p, m)| format!("template field {p}: {m}"))?,
        );
        let entry = (t, mentions_all_inputs(tmpl));
        let stored = self
            .templates
            .values()
            .any(|v| Arc::as_ptr(v) as usize == key);
        if stored {
            self.decoded.borrow_mut().insert(key, entry.clone());
        }
        Ok(entry)
    }

    /// Argo's `ProcessArgs`: bind inputs from arguments, substitute them and the globals
    /// into the template. Tags that belong to later stages stay unresolved.
    pub(crate) fn instantiate(
        &self,
        tmpl: &Value,
        args: &Arguments,
        node_name: &str,
        tname: &str,
    ) -> Result<(Value, Template, Arguments), String> {
        let (t, wants_all_inputs) = self.decode_template(tmpl)?;
        let mut inputs = t.inputs.clone();
        // The template's own variables, looked up over the globals (not inserted into a copy
        // of them: a persistent map's insert copies the node it lands in, every global's
        // strings with it, per instantiation).
        let mut vars = Vars::new();
        for p in inputs.parameters.iter_mut() {
            if p.value.is_none() && p.default.is_some() {
                p.value = p.default.clone();
            }
            if let Some(a) = args.parameters.iter().find(|a| a.name == p.name) {
                if a.value.is_some() {
                    p.value = a.value.clone();
                } else if a.value_from.is_some() {
                    p.value_from = a.value_from.clone();
                }
            }
            if let Some(vf) = &p.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    let v = self
                        .config_map_value(
                            &r.name,
                            &r.key,
                            r.optional.unwrap_or(false),
                            vf.default.as_ref().map(|d| d.0.clone()),
                        )
                        .map_err(|e| e.to_string())?;
                    p.value = Some(workflow_model::AnyString(v));
                }
            }
            let Some(v) = &p.value else {
                return Err(format!("inputs.parameters.{} was not supplied", p.name));
            };
            let v = substitute(&v.0, &self.globals, true).map_err(|e| e.to_string())?;
            if !p.enum_values.is_empty() && !p.enum_values.iter().any(|e| e.0 == v) {
                let allowed: Vec<&str> = p.enum_values.iter().map(|e| e.0.as_str()).collect();
                return Err(format!(
                    "value '{v}' of input parameter '{}' is not one of [{}]",
                    p.name,
                    allowed.join(", ")
                ));
            }
            p.value = Some(workflow_model::AnyString(v.clone()));
            vars.insert(format!("inputs.parameters.{}", p.name), v);
        }
        if wants_all_inputs {
            let plist: Vec<Value> = inputs
                .parameters
                .iter()
                .map(|p| serde_json::to_value(p).unwrap_or_default())
                .collect();
            vars.insert("inputs.parameters".into(), Value::Array(plist).to_string());
        }
        for a in inputs.artifacts.iter_mut() {
            let supplied = args.artifacts.iter().find(|x| x.name == a.name);
            if let Some(s) = supplied {
                let path = a.path.clone();
                let mode = a.mode;
                let name = a.name.clone();
                let optional = a.optional;
                let sub_path = a.sub_path.clone();
                *a = s.clone();
                a.name = name;
                a.path = path;
                if mode.is_some() {
                    a.mode = mode;
                }
                a.optional = a.optional || optional;
                if a.sub_path.is_none() {
                    a.sub_path = sub_path;
                }
            }
            let has_source = a.raw.is_some()
                || a.http.is_some()
                || a.local.is_some()
                || a.s3.is_some()
                || a.git.is_some()
                || a.gcs.is_some()
                || a.oss.is_some()
                || a.azure.is_some()
                || a.hdfs.is_some()
                || a.artifactory.is_some()
                || a.from.is_some();
            if !has_source && !a.optional {
                return Err(format!("inputs.artifacts.{} was not supplied", a.name));
            }
            if let Some(p) = &a.path {
                vars.insert(format!("inputs.artifacts.{}.path", a.name), p.clone());
            }
        }
        // Input artifacts' own fields (keys, URLs, raw data) may use globals and parameters.
        for a in inputs.artifacts.iter_mut() {
            let v = serde_json::to_value(&*a).unwrap_or_default();
            let v = substitute_json(&v, &self.layered(&vars), true).map_err(|e| e.to_string())?;
            *a = workflow_model::decode(&v)
                .map_err(|(p, m)| format!("input artifact {}: {p}: {m}", a.name))?;
        }
        for p in &t.outputs.parameters {
            if let Some(path) = p.value_from.as_ref().and_then(|v| v.path.as_ref()) {
                vars.insert(format!("outputs.parameters.{}.path", p.name), path.clone());
            }
        }
        for a in &t.outputs.artifacts {
            if let Some(path) = &a.path {
                vars.insert(format!("outputs.artifacts.{}.path", a.name), path.clone());
            }
        }
        // A retried template gets its pod name per attempt (see `execute_instance`).
        if t.retry_strategy.is_none() && t.kind().is_some_and(is_pod_kind) {
            vars.insert("pod.name".into(), pod_name(&self.name, node_name, tname));
            vars.insert("node.name".into(), node_name.to_string());
        }
        // Inputs are already bound; keep them as bound, not re-substituted.
        let mut out = Map::new();
        if let Value::Object(m) = tmpl {
            for (k, v) in m {
                if k == "inputs" {
                    continue;
                }
                // Steps and tasks are substituted one by one when they start, with the
                // template's inputs and the globals in their scope; doing the whole body here
                // too would cost O(tasks) per instantiation for nothing.
                if k == "steps" || k == "dag" {
                    continue;
                }
                out.insert(
                    k.clone(),
                    substitute_json(v, &self.layered(&vars), true).map_err(|e| e.to_string())?,
                );
            }
        }
        let mut body = Value::Object(out);
        let mut typed: Template =
            workflow_model::decode(&body).map_err(|(p, m)| format!("template field {p}: {m}"))?;
        // Steps and DAG bodies were decoded once with the stored template.
        typed.steps = t.steps.clone();
        typed.dag = t.dag.clone();
        typed.inputs = inputs.clone();
        // Retried templates are decoded again per attempt from the body: it keeps everything.
        let retried = t.retry_strategy.is_some()
            || (self.spec.retry_strategy.is_some() && t.kind().is_some_and(is_pod_kind));
        if retried {
            if let (Value::Object(m), Value::Object(src)) = (&mut body, tmpl) {
                m.insert(
                    "inputs".into(),
                    serde_json::to_value(&inputs).unwrap_or_default(),
                );
                for k in ["steps", "dag"] {
                    if let Some(v) = src.get(k) {
                        m.insert(k.into(), v.clone());
                    }
                }
            }
        }
        Ok((body, typed, inputs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Argo's e2e `template-default-image.yaml`: defaults name a container and a script; a
    /// steps template stays steps, a container template gets the default image and working
    /// directory under its own args.
    #[test]
    fn template_defaults_fill_fields_but_keep_the_templates_type() {
        let defaults = json!({"container": {"image": "argosay:v1", "command": ["sh", "-c"], "workingDir": "/src"},
                              "script": {"image": "argosay:v1"}, "timeout": "1m"});
        let steps = json!({"name": "main", "steps": [[{"name": "a", "template": "c"}]]});
        assert_eq!(
            with_template_defaults(&steps, &defaults),
            json!({"name": "main", "steps": [[{"name": "a", "template": "c"}]], "timeout": "1m"})
        );
        let container = json!({"name": "c", "container": {"args": ["pwd"], "image": "mine"}});
        assert_eq!(
            with_template_defaults(&container, &defaults),
            json!({"name": "c", "timeout": "1m", "container": {"args": ["pwd"], "image": "mine",
                   "command": ["sh", "-c"], "workingDir": "/src"}})
        );
    }
}
