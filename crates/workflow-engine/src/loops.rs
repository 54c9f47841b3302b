//! Loops: `withItems`, `withParam` and `withSequence` expand a step or task into items named
//! `name(i:label)` as Argo names them; a DAG task's items run as a task group, and the
//! items' outputs are aggregated into JSON lists for the steps and tasks after them.
//!
//! A `withParam` that is not a JSON list fails only if the step would run (its `when`
//! allows it), as in Argo.

use serde_json::Value;
use template_eval::{govaluate, substitute, substitute_json, Vars};
use workflow_model::WorkflowStep;

use crate::scope::ScopeVars;
use crate::state::{Engine, Frame, Owner};
use crate::status::{Phase, Time};
use crate::templates::substitute_step;

/// How an item appears in node names: `step(0:value)`.
fn item_label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            keys.iter()
                .map(|k| format!("{}:{}", k, item_label(&m[*k])))
                .collect::<Vec<_>>()
                .join(",")
        }
        other => other.to_string(),
    }
}

/// Variables for one loop item: `item`, and `item.<key>` for maps.
fn item_vars(v: &Value, vars: &mut Vars) {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    vars.insert("item".into(), text);
    if let Value::Object(m) = v {
        for (k, x) in m {
            let t = match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vars.insert(format!("item.{k}"), t);
        }
    }
}

fn expand_sequence(seq: &workflow_model::Sequence) -> Result<Vec<Value>, String> {
    let parse =
        |v: &Option<workflow_model::IntOrString>, what: &str| -> Result<Option<i64>, String> {
            match v {
                None => Ok(None),
                Some(x) => {
                    x.text().trim().parse::<i64>().map(Some).map_err(|_| {
                        format!("withSequence.{what} '{}' is not an integer", x.text())
                    })
                }
            }
        };
    let count = parse(&seq.count, "count")?;
    let start = parse(&seq.start, "start")?;
    let end = parse(&seq.end, "end")?;
    let (from, to): (i64, i64) = match (count, end) {
        (Some(_), Some(_)) => {
            return Err("withSequence: only one of count or end can be defined".into())
        }
        (Some(c), None) => {
            let s = start.unwrap_or(0);
            if c == 0 {
                return Ok(Vec::new());
            }
            (s, s + c - 1)
        }
        (None, Some(e)) => (start.unwrap_or(0), e),
        (None, None) => return Err("withSequence: one of count or end must be defined".into()),
    };
    let nums: Vec<i64> = if from <= to {
        (from..=to).collect()
    } else {
        (to..=from).rev().collect()
    };
    Ok(nums
        .into_iter()
        .map(|n| {
            Value::String(match &seq.format {
                Some(f) if !f.is_empty() => go_sprintf_int(f, n),
                _ => n.to_string(),
            })
        })
        .collect())
}

/// `fmt.Sprintf` for one integer with the verbs withSequence formats use (%d, %02d, %x, %X, %o).
fn go_sprintf_int(fmt: &str, n: i64) -> String {
    let mut out = String::new();
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '%' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        i += 1;
        let mut zero = false;
        let mut width = 0usize;
        if i < chars.len() && chars[i] == '%' {
            out.push('%');
            i += 1;
            continue;
        }
        if i < chars.len() && chars[i] == '0' {
            zero = true;
            i += 1;
        }
        while i < chars.len() && chars[i].is_ascii_digit() {
            width = width * 10 + chars[i].to_digit(10).unwrap_or(0) as usize;
            i += 1;
        }
        let verb = chars.get(i).copied().unwrap_or('d');
        i += 1;
        let body = match verb {
            'x' => format!("{n:x}"),
            'X' => format!("{n:X}"),
            'o' => format!("{n:o}"),
            'b' => format!("{n:b}"),
            _ => n.to_string(),
        };
        if body.len() < width {
            let pad = if zero { '0' } else { ' ' };
            out.extend(std::iter::repeat_n(pad, width - body.len()));
        }
        out.push_str(&body);
    }
    out
}

fn parse_items(text: &str) -> Result<Vec<Value>, String> {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(_) | Err(_) => Err(format!(
            "withParam value could not be parsed as a JSON list: {}",
            text.trim()
        )),
    }
}

pub(crate) fn json_or_string(s: &str) -> Value {
    serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

impl Engine {
    /// Substitute a step with its scope and expand withItems/withParam/withSequence.
    pub(crate) fn expand_step(
        &self,
        step: &WorkflowStep,
        scope_vars: &ScopeVars,
    ) -> Result<Vec<WorkflowStep>, String> {
        let vars = &self.layered(scope_vars);
        let items: Option<Vec<Value>> = if let Some(items) = &step.with_items {
            Some(
                items
                    .iter()
                    .map(|i| substitute_json(i, vars, true).unwrap_or_else(|_| i.clone()))
                    .collect(),
            )
        } else if let Some(p) = &step.with_param {
            let text = substitute(p, vars, true).map_err(|e| e.to_string())?;
            match parse_items(&text) {
                Ok(v) => Some(v),
                Err(e) => {
                    // Argo only fails when the step would run.
                    let when = step
                        .when
                        .as_deref()
                        .map(|w| substitute(w, vars, true).unwrap_or_default());
                    if when.is_some_and(|w| govaluate::should_execute(&w) == Ok(false)) {
                        Some(Vec::new())
                    } else {
                        return Err(e);
                    }
                }
            }
        } else if let Some(seq) = &step.with_sequence {
            let v = serde_json::to_value(seq).unwrap_or_default();
            let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
            let seq: workflow_model::Sequence = workflow_model::decode(&v).map_err(|(_, m)| m)?;
            Some(expand_sequence(&seq)?)
        } else {
            None
        };
        let mut base = step.clone();
        base.with_items = None;
        base.with_param = None;
        base.with_sequence = None;
        match items {
            None => Ok(vec![substitute_step(&base, vars)?]),
            Some(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let mut iv = scope_vars.clone();
                    item_vars(item, &mut iv.own);
                    let mut s = substitute_step(&base, &self.layered(&iv))?;
                    s.name = format!("{}({i}:{})", step.name, item_label(item));
                    s.hooks = step.hooks.clone();
                    out.push(s);
                }
                Ok(out)
            }
        }
    }

    pub(crate) fn pump_task_group(&mut self, tg: usize, now: Time) {
        let (d, task_i) = match &self.nodes[tg].frame {
            Frame::TaskGroup { dag, task, .. } => (*dag, *task),
            _ => return,
        };
        let limit = self.template_parallelism(d);
        let halted = self.halted(tg);
        loop {
            let next = match &mut self.nodes[tg].frame {
                Frame::TaskGroup { queue, running, .. } => {
                    if limit.is_some_and(|l| *running >= l) || halted {
                        None
                    } else {
                        queue.pop_front()
                    }
                }
                _ => return,
            };
            let Some(k) = next else { break };
            let (ctx, vars, arts) = match &self.nodes[d].frame {
                Frame::Dag { ctx, .. } => {
                    (ctx.clone(), self.block_vars(d), self.scope_artifacts(d))
                }
                _ => return,
            };
            let item = match &self.nodes[tg].frame {
                Frame::TaskGroup { items, .. } => items[k].0.clone(),
                _ => return,
            };
            let name = format!("{}.{}", self.nodes[d].status.name, item.name);
            if let Frame::TaskGroup { running, .. } = &mut self.nodes[tg].frame {
                *running += 1;
            }
            let s = WorkflowStep {
                name: item.name.clone(),
                template: item.template.clone(),
                inline: item.inline.clone(),
                arguments: item.arguments.clone(),
                template_ref: item.template_ref.clone(),
                when: item.when.clone(),
                ..Default::default()
            };
            let n = self.run_task_instance(
                d,
                &name,
                &item.name,
                &s,
                &ctx,
                &vars,
                &arts,
                Owner::TaskItem { group: tg, slot: k },
                now,
            );
            self.add_child(tg, n);
            if let Frame::TaskGroup { items, .. } = &mut self.nodes[tg].frame {
                items[k].1 = Some(n);
            }
            let _ = task_i;
        }
    }

    pub(crate) fn task_item_done(&mut self, tg: usize, now: Time) {
        let done = match &mut self.nodes[tg].frame {
            Frame::TaskGroup {
                running, remaining, ..
            } => {
                *running = running.saturating_sub(1);
                *remaining = remaining.saturating_sub(1);
                *remaining == 0
            }
            _ => return,
        };
        if !done {
            self.pump_task_group(tg, now);
            return;
        }
        let mut phase = Phase::Succeeded;
        let children = self.nodes[tg].status.children.clone();
        for c in &children {
            let p = self.nodes[self.by_id[c]].status.phase;
            if p.failed_or_error() {
                phase = p;
            }
        }
        self.set_outbound(tg);
        self.finish(tg, phase, None, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sequences_format_like_go() {
        let seq = workflow_model::Sequence {
            count: None,
            start: Some(workflow_model::IntOrString::Int(5)),
            end: Some(workflow_model::IntOrString::Int(0)),
            format: None,
        };
        assert_eq!(expand_sequence(&seq).unwrap().len(), 6);
        assert_eq!(go_sprintf_int("testuser%02X", 10), "testuser0A");
        assert_eq!(go_sprintf_int("%d", 7), "7");
    }

    #[test]
    fn item_labels() {
        assert_eq!(item_label(&json!("hello")), "hello");
        assert_eq!(item_label(&json!(3)), "3");
        assert_eq!(
            item_label(&json!({"os": "debian", "v": 9})),
            "os:debian,v:9"
        );
    }
}
