//! Variables in scope: the workflow's globals (`workflow.*`, its parameters, ConfigMap values)
//! made once at start, and the views a block's children resolve against — a block's scope
//! layered over the globals, and the artifacts they may take `from`.
//!
//! Layering never copies: a scope is looked up over the globals, so instantiating a
//! template costs what its own variables cost, not what the globals do.

use serde_json::{json, Value};
use template_eval::{substitute, Layered, Lookup, Vars};
use workflow_model::Template;

use crate::protocol::EngineError;
use crate::scope::{ArtMap, ScopeVars};
use crate::state::{err, Engine, Frame};
use crate::status::format_time;

impl Engine {
    pub(crate) fn init_globals(&mut self) -> Result<(), EngineError> {
        let g = &mut self.globals;
        g.insert("workflow.name".into(), self.name.clone());
        g.insert("workflow.namespace".into(), self.namespace.clone());
        g.insert(
            "workflow.mainEntrypoint".into(),
            self.spec.entrypoint.clone().unwrap_or_default(),
        );
        g.insert("workflow.uid".into(), self.uid.clone());
        g.insert(
            "workflow.serviceAccountName".into(),
            self.spec.service_account_name.clone().unwrap_or_default(),
        );
        g.insert(
            "workflow.creationTimestamp".into(),
            format_time(&self.created),
        );
        g.insert(
            "workflow.creationTimestamp.RFC3339".into(),
            format_time(&self.created),
        );
        for (fmtc, f) in [
            ("Y", "%Y"),
            ("m", "%m"),
            ("d", "%d"),
            ("H", "%H"),
            ("M", "%M"),
            ("S", "%S"),
            ("s", "%s"),
            ("y", "%y"),
            ("b", "%b"),
            ("B", "%B"),
            ("a", "%a"),
            ("A", "%A"),
            ("j", "%j"),
            ("e", "%e"),
        ] {
            g.insert(
                format!("workflow.creationTimestamp.{fmtc}"),
                self.created.format(f).to_string(),
            );
        }
        g.insert(
            "workflow.priority".into(),
            self.spec.priority.unwrap_or(0).to_string(),
        );
        if let Some(Value::Object(labels)) = self.raw.pointer("/metadata/labels") {
            for (k, v) in labels {
                g.insert(
                    format!("workflow.labels.{k}"),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        if let Some(Value::Object(ann)) = self.raw.pointer("/metadata/annotations") {
            for (k, v) in ann {
                g.insert(
                    format!("workflow.annotations.{k}"),
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()),
                );
            }
        }
        // Workflow parameters may refer to earlier ones and to workflow.* variables.
        let mut params = Vec::new();
        for p in self.spec.arguments.parameters.clone() {
            let value = if let Some(v) = &p.value {
                substitute(&v.0, &self.globals, true).map_err(|e| err(e.to_string()))?
            } else if let Some(vf) = &p.value_from {
                if let Some(r) = &vf.config_map_key_ref {
                    self.config_map_value(
                        &r.name,
                        &r.key,
                        r.optional.unwrap_or(false),
                        vf.default.as_ref().map(|d| d.0.clone()),
                    )?
                } else if let Some(d) = &vf.default {
                    d.0.clone()
                } else {
                    return Err(err(format!(
                        "spec.arguments.parameters.{}.value is required",
                        p.name
                    )));
                }
            } else if let Some(d) = &p.default {
                d.0.clone()
            } else {
                return Err(err(format!(
                    "spec.arguments.parameters.{}.value is required; pass it with -p {}=VALUE",
                    p.name, p.name
                )));
            };
            if !p.enum_values.is_empty() && !p.enum_values.iter().any(|e| e.0 == value) {
                let allowed: Vec<&str> = p.enum_values.iter().map(|e| e.0.as_str()).collect();
                return Err(err(format!(
                    "value '{value}' of parameter '{}' is not one of [{}]",
                    p.name,
                    allowed.join(", ")
                )));
            }
            self.globals
                .insert(format!("workflow.parameters.{}", p.name), value.clone());
            params.push(json!({"name": p.name, "value": value}));
        }
        let all = Value::Array(params).to_string();
        self.globals
            .insert("workflow.parameters".into(), all.clone());
        self.globals.insert("workflow.parameters.json".into(), all);
        for a in &self.spec.arguments.artifacts {
            self.global_artifacts
                .insert(format!("workflow.artifacts.{}", a.name), a.clone());
        }
        Ok(())
    }

    pub(crate) fn config_map_value(
        &self,
        name: &str,
        key: &str,
        optional: bool,
        default: Option<String>,
    ) -> Result<String, EngineError> {
        match self.store.config_maps.get(name).and_then(|m| m.get(key)) {
            Some(v) => Ok(v.clone()),
            None => match default {
                Some(d) => Ok(d),
                None if optional => Ok(String::new()),
                None if self.store.config_maps.contains_key(name) => Err(err(format!(
                    "ConfigMap '{name}' does not have the key '{key}'"
                ))),
                None => Err(err(format!("ConfigMap '{name}' not found"))),
            },
        }
    }

    /// Artifacts a steps or DAG template's children can take `from`: the globals and the
    /// template's own inputs.
    pub(crate) fn scope_artifacts_base(&self, t: &Template) -> ArtMap {
        let mut a = self.global_artifacts.clone();
        for art in &t.inputs.artifacts {
            a.insert(format!("inputs.artifacts.{}", art.name), art.clone());
        }
        a
    }

    pub(crate) fn scope_base(&self, t: &Template) -> Vars {
        let mut v = Vars::new();
        for p in &t.inputs.parameters {
            if let Some(val) = &p.value {
                v.insert(format!("inputs.parameters.{}", p.name), val.0.clone());
            }
        }
        v
    }

    pub(crate) fn scope_artifacts(&self, block: usize) -> ArtMap {
        match &self.nodes[block].frame {
            Frame::Steps { scope, .. } | Frame::Dag { scope, .. } => {
                let mut a = scope.artifacts.clone();
                a.extend(
                    self.global_artifacts
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone())),
                );
                a
            }
            _ => self.global_artifacts.clone(),
        }
    }

    /// A block's own variables (`steps.*`, `tasks.*`, inputs); look them up layered over the
    /// globals with [`Engine::layered`].
    pub(crate) fn block_vars(&self, block: usize) -> ScopeVars {
        match &self.nodes[block].frame {
            Frame::Steps { scope, .. } | Frame::Dag { scope, .. } => scope.vars.clone(),
            _ => ScopeVars::default(),
        }
    }

    pub(crate) fn layered<'a, T: Lookup + ?Sized>(&'a self, top: &'a T) -> Layered<'a, Vars, T> {
        Layered {
            top,
            base: &self.globals,
        }
    }
}
