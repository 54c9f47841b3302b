//! Outputs flowing up: a finished child's status, outputs and times recorded in its block's
//! scope, a steps or DAG template's own outputs taken from that scope (`valueFrom.parameter`,
//! `expression`, artifacts `from`/`fromExpression`), and `globalName` outputs raised to the
//! workflow.
//!
//! Only Succeeded nodes raise global outputs; a later global output of the same name
//! replaces the earlier one.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use template_eval::substitute;
use workflow_model::{Outputs, Template};

use crate::loops::json_or_string;
use crate::state::{Engine, Frame};
use crate::status::{format_time, NodeType, Phase};

impl Engine {
    pub(crate) fn add_global_outputs(&mut self, o: &Outputs) {
        for p in &o.parameters {
            if let (Some(g), Some(v)) = (&p.global_name, &p.value) {
                self.globals
                    .insert(format!("workflow.outputs.parameters.{g}"), v.0.clone());
                let mut gp = p.clone();
                gp.name = g.clone();
                gp.value_from = None;
                self.global_outputs.parameters.retain(|x| x.name != *g);
                self.global_outputs.parameters.push(gp);
            }
        }
        for a in &o.artifacts {
            if let Some(g) = &a.global_name {
                let mut ga = a.clone();
                ga.name = g.clone();
                self.global_artifacts
                    .insert(format!("workflow.outputs.artifacts.{g}"), ga.clone());
                self.global_outputs.artifacts.retain(|x| x.name != *g);
                self.global_outputs.artifacts.push(ga);
            }
        }
    }

    pub(crate) fn aggregate_outputs(&mut self, block: usize, prefix: &str, nodes: &[usize]) {
        let mut params: Vec<Value> = Vec::new();
        let mut per_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut results: Vec<Value> = Vec::new();
        for &n in nodes {
            let st = &self.nodes[n].status;
            if st.phase != Phase::Succeeded || st.node_type == NodeType::Retry {
                continue;
            }
            let Some(o) = &st.outputs else { continue };
            if !o.parameters.is_empty() {
                let mut m = Map::new();
                for p in &o.parameters {
                    let v = p.value.as_ref().map(|v| v.0.clone()).unwrap_or_default();
                    m.insert(p.name.clone(), Value::String(v.clone()));
                    per_name.entry(p.name.clone()).or_default().push(v);
                }
                params.push(Value::Object(m));
            }
            if let Some(r) = &o.result {
                results.push(json_or_string(r));
            }
        }
        let mut vars = vec![
            (
                format!("{prefix}.outputs.parameters"),
                Value::Array(params).to_string(),
            ),
            (
                format!("{prefix}.outputs.result"),
                Value::Array(results).to_string(),
            ),
        ];
        for (name, values) in per_name {
            let list: Vec<Value> = values.iter().map(|v| json_or_string(v)).collect();
            vars.push((
                format!("{prefix}.outputs.parameters.{name}"),
                Value::Array(list).to_string(),
            ));
        }
        if let Frame::Steps { scope, .. } | Frame::Dag { scope, .. } = &mut self.nodes[block].frame
        {
            for (k, v) in vars {
                scope.vars.insert(k, v);
            }
        }
    }

    /// Put a finished node's outputs, status and times into its block's scope under `prefix`.
    pub(crate) fn record_scope(&mut self, block: usize, prefix: &str, node: usize) {
        // Read what is needed from the node, then write the block's scope (no status copy).
        let st = &self.nodes[node].status;
        let mut vars: Vec<(String, String)> = vec![
            ("status".into(), st.phase.as_str().to_string()),
            ("id".into(), st.id.clone()),
        ];
        if let Some(t) = st.started_at {
            vars.push(("startedAt".into(), format_time(&t)));
        }
        if let Some(t) = st.finished_at {
            vars.push(("finishedAt".into(), format_time(&t)));
        }
        if let Some(h) = &st.host_node_name {
            vars.push(("hostNodeName".into(), h.clone()));
        }
        let mut arts = Vec::new();
        if let Some(o) = &st.outputs {
            if let Some(r) = &o.result {
                vars.push(("outputs.result".into(), r.clone()));
            }
            if let Some(c) = &o.exit_code {
                vars.push(("exitCode".into(), c.clone()));
            }
            for p in &o.parameters {
                if let Some(v) = &p.value {
                    vars.push((format!("outputs.parameters.{}", p.name), v.0.clone()));
                }
            }
            for a in &o.artifacts {
                arts.push((format!("{prefix}.outputs.artifacts.{}", a.name), a.clone()));
            }
        }
        if let Frame::Steps { scope, .. } | Frame::Dag { scope, .. } = &mut self.nodes[block].frame
        {
            scope.vars.record(prefix, vars);
            for (k, a) in arts {
                scope.artifacts.insert(k, a);
            }
        }
    }

    /// Outputs of a steps or DAG template from its scope (`valueFrom.parameter`,
    /// `valueFrom.expression`, artifacts `from`/`fromExpression`).
    pub(crate) fn block_outputs(&self, block: usize, t: &Template) -> Result<Outputs, String> {
        let scope_vars = self.block_vars(block);
        let vars = self.layered(&scope_vars);
        let arts = self.scope_artifacts(block);
        let mut out = Outputs::default();
        for p in &t.outputs.parameters {
            let mut p = p.clone();
            if let Some(vf) = &p.value_from {
                let value = if let Some(src) = &vf.parameter {
                    match substitute(src, &vars, false) {
                        Ok(v) => Some(v),
                        Err(e) => match &vf.default {
                            Some(d) => Some(d.0.clone()),
                            None => {
                                return Err(format!("unable to resolve outputs from scope: {e}"))
                            }
                        },
                    }
                } else if let Some(expr) = &vf.expression {
                    let env = template_eval::expand_vars(&vars);
                    match template_eval::expr::eval(expr, &env) {
                        Ok(v) if !v.is_null() => Some(template_eval::go_format(&v)),
                        Ok(_) | Err(_) if vf.default.is_some() => {
                            vf.default.as_ref().map(|d| d.0.clone())
                        }
                        Ok(_) => return Err(format!("expression '{expr}' gave nil")),
                        Err(e) => return Err(e.to_string()),
                    }
                } else if vf.supplied.is_some() {
                    continue;
                } else {
                    vf.default.as_ref().map(|d| d.0.clone())
                };
                p.value = value.map(workflow_model::AnyString);
            }
            out.parameters.push(p);
        }
        for a in &t.outputs.artifacts {
            let mut src_key = None;
            if let Some(from) = &a.from {
                src_key = Some(
                    from.trim()
                        .trim_start_matches("{{")
                        .trim_end_matches("}}")
                        .trim()
                        .to_string(),
                );
            } else if let Some(expr) = &a.from_expression {
                let mut v = scope_vars.clone();
                for k in arts.keys() {
                    v.insert(k.clone(), k.clone());
                }
                let env = template_eval::expand_vars(&self.layered(&v));
                match template_eval::expr::eval(expr, &env) {
                    Ok(Value::String(k)) => src_key = Some(k),
                    Ok(other) => {
                        return Err(format!(
                            "fromExpression '{expr}' gave {other}, not an artifact"
                        ))
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            match src_key.and_then(|k| arts.get(&k).cloned()) {
                Some(src) => {
                    let mut na = src;
                    na.name = a.name.clone();
                    na.global_name = a.global_name.clone();
                    na.path = None;
                    out.artifacts.push(na);
                }
                None if a.optional => {}
                None => return Err(format!("unable to resolve output artifact '{}'", a.name)),
            }
        }
        Ok(out)
    }
}
