//! Loops: `withItems`, `withParam` and `withSequence` expand a step or task into items named
//! `name(i:label)` as Argo names them; a DAG task's items run as a task group, and the
//! items' outputs are aggregated into JSON lists for the steps and tasks after them.
//!
//! A `withParam` that is not a JSON list fails only if the step would run (its `when`
//! allows it), as in Argo.

use serde_json::Value;
use template_eval::{govaluate, substitute, substitute_json, Vars};
use workflow_model::WorkflowStep;

use crate::scope::{ArtMap, ScopeVars};
use crate::state::{Ctx, Engine, Frame, Owner};
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

/// Most bytes the items of one `withSequence` may take together (a `format` with a wide
/// field or a long text, times many items).
const MAX_SEQUENCE_BYTES: usize = 64 << 20;

/// Go's `fmt` refuses widths over 10^6 (`%!(BADWIDTH)`).
const MAX_FORMAT_WIDTH: usize = 1_000_000;

/// Why a loop does not expand: a mistake in it (its node errors), or a limit (the workflow
/// errors too).
#[derive(Debug)]
enum LoopError {
    Invalid(String),
    Limit(String),
}

impl From<String> for LoopError {
    fn from(e: String) -> Self {
        LoopError::Invalid(e)
    }
}

/// The error for a loop over `max` items (`what`: withItems, withParam, withSequence).
fn too_many(what: &str, n: impl std::fmt::Display, max: usize) -> LoopError {
    LoopError::Limit(format!(
        "{what} expands to {n} items, more than the limit of {max} (max_loop_items)"
    ))
}

fn expand_sequence(seq: &workflow_model::Sequence, max: usize) -> Result<Vec<Value>, LoopError> {
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
    // In i128: `start + count - 1` may not fit an i64.
    let (from, to): (i128, i128) = match (count, end) {
        (Some(_), Some(_)) => {
            return Err(LoopError::Invalid(
                "withSequence: only one of count or end can be defined".into(),
            ))
        }
        (Some(c), None) => {
            let s = start.unwrap_or(0);
            if c == 0 {
                return Ok(Vec::new());
            }
            (i128::from(s), i128::from(s) + i128::from(c) - 1)
        }
        (None, Some(e)) => (i128::from(start.unwrap_or(0)), i128::from(e)),
        (None, None) => {
            return Err(LoopError::Invalid(
                "withSequence: one of count or end must be defined".into(),
            ))
        }
    };
    let n = (to - from).abs() + 1;
    if n > max as i128 {
        return Err(too_many("withSequence", n, max));
    }
    if i64::try_from(to).is_err() {
        return Err(LoopError::Invalid(format!(
            "withSequence: the last item, {to}, is not a 64-bit integer"
        )));
    }
    let step = if from <= to { 1 } else { -1 };
    let mut out = Vec::with_capacity(n as usize);
    let mut bytes = 0usize;
    for k in 0..n {
        // Between `from` and `to`, both 64-bit.
        let v = (from + step * k) as i64;
        let text = match &seq.format {
            Some(f) if !f.is_empty() => go_sprintf_int(f, v),
            _ => v.to_string(),
        };
        bytes += text.len();
        if bytes > MAX_SEQUENCE_BYTES {
            return Err(LoopError::Limit(format!(
                "withSequence items take more than {MAX_SEQUENCE_BYTES} bytes (MAX_SEQUENCE_BYTES)"
            )));
        }
        out.push(Value::String(text));
    }
    Ok(out)
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
            width = width
                .saturating_mul(10)
                .saturating_add(chars[i].to_digit(10).unwrap_or(0) as usize);
            i += 1;
        }
        if width > MAX_FORMAT_WIDTH {
            out.push_str("%!(BADWIDTH)");
            break;
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

/// A task group's item about to start.
struct TaskItem {
    dag: usize,
    slot: usize,
    name: String,
    step: WorkflowStep,
    ctx: Ctx,
    vars: ScopeVars,
    arts: ArtMap,
}

impl Engine {
    /// Substitute a step with its scope and expand withItems/withParam/withSequence. A loop
    /// over more than `max_loop_items` items is an error that also ends the workflow in
    /// Error.
    pub(crate) fn expand_step(
        &mut self,
        step: &WorkflowStep,
        scope_vars: &ScopeVars,
    ) -> Result<Vec<WorkflowStep>, String> {
        match self.expand_items(step, scope_vars) {
            Ok(steps) => Ok(steps),
            Err(LoopError::Invalid(e)) => Err(e),
            Err(LoopError::Limit(e)) => {
                self.limit_reached(&e);
                Err(e)
            }
        }
    }

    fn expand_items(
        &self,
        step: &WorkflowStep,
        scope_vars: &ScopeVars,
    ) -> Result<Vec<WorkflowStep>, LoopError> {
        let max = self.limits.max_loop_items;
        let vars = &self.layered(scope_vars);
        let items: Option<Vec<Value>> = if let Some(items) = &step.with_items {
            if items.len() > max {
                return Err(too_many("withItems", items.len(), max));
            }
            Some(
                items
                    .iter()
                    .map(|i| substitute_json(i, vars, true).unwrap_or_else(|_| i.clone()))
                    .collect(),
            )
        } else if let Some(p) = &step.with_param {
            let text = substitute(p, vars, true).map_err(|e| e.to_string())?;
            match parse_items(&text) {
                Ok(v) if v.len() > max => return Err(too_many("withParam", v.len(), max)),
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
                        return Err(e.into());
                    }
                }
            }
        } else if let Some(seq) = &step.with_sequence {
            let v = serde_json::to_value(seq).unwrap_or_default();
            let v = substitute_json(&v, vars, true).map_err(|e| e.to_string())?;
            let seq: workflow_model::Sequence = workflow_model::decode(&v).map_err(|(_, m)| m)?;
            Some(expand_sequence(&seq, max)?)
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

    /// Start a task group's items, as many as its DAG's parallelism lets run.
    pub(crate) fn pump_task_group(&mut self, tg: usize, now: Time) {
        // Small frame: this is on the path a template nesting recurses through.
        while let Some(item) = self.next_task_item(tg) {
            let owner = Owner::TaskItem {
                group: tg,
                slot: item.slot,
            };
            let n = self.run_task_instance(
                item.dag,
                &item.name,
                &item.step.name,
                &item.step,
                &item.ctx,
                &item.vars,
                &item.arts,
                owner,
                now,
            );
            self.add_child(tg, n);
            if let Frame::TaskGroup { items, .. } = &mut self.nodes[tg].frame {
                items[item.slot].1 = Some(n);
            }
        }
        self.end_halted_task_group(tg, now);
    }

    /// A task group that a shutdown (or a limit) stops starts no more items: it ends once
    /// the items it started have, Failed as a stopped step group does.
    pub(crate) fn end_halted_task_group(&mut self, tg: usize, now: Time) {
        if !self.halted(tg) || self.nodes[tg].status.phase.fulfilled() {
            return;
        }
        match &self.nodes[tg].frame {
            Frame::TaskGroup { running, queue, .. } if *running == 0 && !queue.is_empty() => {}
            _ => return,
        }
        self.set_outbound(tg);
        self.finish(tg, Phase::Failed, Some("Stopped with strategy".into()), now);
    }

    /// The task group's next item to start, if one may start now.
    #[inline(never)]
    fn next_task_item(&mut self, tg: usize) -> Option<Box<TaskItem>> {
        let d = match &self.nodes[tg].frame {
            Frame::TaskGroup { dag, .. } => *dag,
            _ => return None,
        };
        let limit = self.template_parallelism(d);
        // Asked each time: a limit reached by the item just started stops the rest.
        let halted = self.halted(tg);
        let slot = match &mut self.nodes[tg].frame {
            Frame::TaskGroup { queue, running, .. } => {
                if limit.is_some_and(|l| *running >= l) || halted {
                    None
                } else {
                    queue.pop_front()
                }
            }
            _ => None,
        }?;
        let (ctx, vars, arts) = match &self.nodes[d].frame {
            Frame::Dag { ctx, .. } => (ctx.clone(), self.block_vars(d), self.scope_artifacts(d)),
            _ => return None,
        };
        let item = match &self.nodes[tg].frame {
            Frame::TaskGroup { items, .. } => items[slot].0.clone(),
            _ => return None,
        };
        let name = format!("{}.{}", self.nodes[d].status.name, item.name);
        if let Frame::TaskGroup { running, .. } = &mut self.nodes[tg].frame {
            *running += 1;
        }
        let step = WorkflowStep {
            name: item.name,
            template: item.template,
            inline: item.inline,
            arguments: item.arguments,
            template_ref: item.template_ref,
            when: item.when,
            ..Default::default()
        };
        Some(Box::new(TaskItem {
            dag: d,
            slot,
            name,
            step,
            ctx: *ctx,
            vars,
            arts,
        }))
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
        assert_eq!(expand_sequence(&seq, 100).unwrap().len(), 6);
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
