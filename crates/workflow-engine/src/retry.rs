//! Retries (`retryStrategy`): a retry node runs attempts `name(0)`, `name(1)`, ... and decides
//! after each one — `retryPolicy`, `limit`, `expression` over `lastRetry.*`, `backoff`
//! with its factor and `maxDuration`, the workflow's deadline and shutdown.
//!
//! An attempt starts only after the previous one is fulfilled; a backoff waits on a timer
//! (the shell's `Tick`), never by polling.

use std::sync::Arc;

use chrono::Duration;
use serde_json::Value;
use workflow_model::Template;

use crate::deadlines::{after, human_duration, millis, parse_duration};
use crate::state::{Engine, Frame, Instance, Owner};
use crate::status::{Phase, Time};

impl Engine {
    /// Decide after an attempt (or before the first): end the retry node, wait, or start
    /// the next attempt.
    pub(crate) fn retry_step(&mut self, r: usize, now: Time) {
        // Small frame: this is on the path a template nesting recurses through.
        if let Some(attempt) = self.next_attempt(r, now) {
            let child = self.execute_instance(attempt, now);
            self.attempt_started(r, child);
        }
    }

    /// The next attempt to start, if any (deciding the rest: end the node, or wait).
    #[inline(never)]
    fn next_attempt(&mut self, r: usize, now: Time) -> Option<Box<Instance>> {
        let (template, ctx, tname, attempts) = match &self.nodes[r].frame {
            Frame::Retry {
                template,
                ctx,
                tname,
                attempts,
                ..
            } => (
                template.clone(),
                ctx.clone(),
                tname.clone(),
                attempts.clone(),
            ),
            _ => return None,
        };
        if self.nodes[r].status.phase.fulfilled() {
            return None;
        }
        let t: Template = match workflow_model::decode(&template) {
            Ok(t) => t,
            Err((p, m)) => {
                self.finish(r, Phase::Error, Some(format!("{p}: {m}")), now);
                return None;
            }
        };
        let rs = t
            .retry_strategy
            .clone()
            .or_else(|| self.spec.retry_strategy.clone())
            .unwrap_or_default();
        if let Some(&last) = attempts.last() {
            let last_node = &self.nodes[last].status;
            if !last_node.phase.fulfilled() {
                return None;
            }
            let last_phase = last_node.phase;
            let last_msg = last_node.message.clone();
            if !last_phase.failed_or_error() {
                self.nodes[r].status.outputs = self.nodes[last].status.outputs.clone();
                self.finish(r, last_phase, None, now);
                return None;
            }
            if let Some(expr) = rs.expression.as_deref().filter(|e| !e.is_empty()) {
                let ln = &self.nodes[last].status;
                let mut vars = self.globals.clone();
                vars.insert(
                    "lastRetry.exitCode".into(),
                    ln.outputs
                        .as_ref()
                        .and_then(|o| o.exit_code.clone())
                        .unwrap_or_else(|| "-1".into()),
                );
                vars.insert("lastRetry.status".into(), ln.phase.as_str().into());
                vars.insert(
                    "lastRetry.message".into(),
                    ln.message.clone().unwrap_or_default(),
                );
                let dur = ln
                    .finished_at
                    .zip(ln.started_at)
                    .map(|(f, s)| (f - s).num_seconds())
                    .unwrap_or(0);
                vars.insert("lastRetry.duration".into(), dur.to_string());
                let env = template_eval::expand_vars(&vars);
                match template_eval::expr::eval(expr, &env) {
                    Ok(Value::Bool(true)) => {}
                    Ok(Value::Bool(false)) => {
                        self.finish(
                            r,
                            last_phase,
                            Some("retryStrategy.expression evaluated to false".into()),
                            now,
                        );
                        return None;
                    }
                    Ok(other) => {
                        self.finish(
                            r,
                            Phase::Error,
                            Some(format!(
                                "retryStrategy.expression gave {other}, not a boolean"
                            )),
                            now,
                        );
                        return None;
                    }
                    Err(e) => {
                        self.finish(r, Phase::Error, Some(e.to_string()), now);
                        return None;
                    }
                }
            }
            if self.halted(r) || self.deadline.is_some_and(|d| now >= d) {
                let m = if self.shutdown.is_some() {
                    "Stopped with strategy".to_string()
                } else {
                    "retry exceeded workflow deadline".into()
                };
                self.finish(r, last_phase, Some(m), now);
                return None;
            }
            let policy = rs
                .retry_policy
                .clone()
                .unwrap_or_else(|| "OnFailure".into());
            let (on_failed, on_error) = match policy.as_str() {
                "Always" => (true, true),
                "OnError" => (false, true),
                "OnTransientError" => (false, false),
                "OnFailure" => (true, false),
                other => {
                    self.finish(
                        r,
                        Phase::Error,
                        Some(format!("{other} is not a valid RetryPolicy")),
                        now,
                    );
                    return None;
                }
            };
            if (last_phase == Phase::Failed && !on_failed)
                || (last_phase == Phase::Error && !on_error)
            {
                self.finish(r, last_phase, last_msg, now);
                return None;
            }
            let limit = rs
                .limit
                .as_ref()
                .and_then(|l| l.text().trim().parse::<i64>().ok());
            if let Some(l) = limit {
                if attempts.len() as i64 > l {
                    self.finish(r, last_phase, Some("No more retries left".into()), now);
                    return None;
                }
            }
            if let Some(b) = &rs.backoff {
                let first_start = self.nodes[attempts[0]].status.started_at.unwrap_or(now);
                let max_deadline = b
                    .max_duration
                    .as_ref()
                    .and_then(|d| parse_duration(&d.text()))
                    .map(|d| after(first_start, d));
                if let Some(md) = max_deadline {
                    if now > md {
                        self.finish(
                            r,
                            last_phase,
                            Some("Max duration limit exceeded".into()),
                            now,
                        );
                        return None;
                    }
                }
                let base = b
                    .duration
                    .as_ref()
                    .and_then(|d| parse_duration(&d.text()))
                    .unwrap_or_else(|| Duration::seconds(0));
                let factor = b
                    .factor
                    .as_ref()
                    .and_then(|f| f.text().trim().parse::<f64>().ok())
                    .unwrap_or(0.0);
                let wait = if factor > 0.0 {
                    let times = factor.powi(i32::try_from(attempts.len()).unwrap_or(i32::MAX) - 1);
                    millis(base.num_milliseconds() as f64 * times).unwrap_or(Duration::MAX)
                } else {
                    base
                };
                let finished = self.nodes[last].status.finished_at.unwrap_or(now);
                let wait_until = after(finished, wait);
                if let Some(md) = max_deadline {
                    if wait_until > md {
                        self.finish(
                            r,
                            last_phase,
                            Some("Backoff would exceed max duration limit".into()),
                            now,
                        );
                        return None;
                    }
                }
                if now < wait_until {
                    self.nodes[r].status.message =
                        Some(format!("Backoff for {}", human_duration(wait)));
                    if let Frame::Retry { wait_until: w, .. } = &mut self.nodes[r].frame {
                        *w = Some(wait_until);
                    }
                    self.timers.push((wait_until, r));
                    return None;
                }
                self.nodes[r].status.message = None;
            }
        }
        // Start the next attempt.
        let n = attempts.len();
        let name = format!("{}({n})", self.nodes[r].status.name);
        let display = format!("{}({n})", self.nodes[r].status.display_name);
        let tref = self.nodes[r].status.template_ref.clone();
        let inputs = self.nodes[r].status.inputs.clone().unwrap_or_default();
        let mut tt = t.clone();
        tt.retry_strategy = None;
        let mut body = (*template).clone();
        if let Value::Object(m) = &mut body {
            m.remove("retryStrategy");
        }
        Some(Box::new(Instance {
            node_name: name,
            display,
            body: Arc::new(body),
            template: tt,
            inputs,
            tname,
            tref,
            ctx: *ctx,
            owner: Owner::Attempt { retry: r },
            retries: Some(n),
        }))
    }

    fn attempt_started(&mut self, r: usize, child: usize) {
        if let Frame::Retry {
            attempts,
            wait_until,
            ..
        } = &mut self.nodes[r].frame
        {
            attempts.push(child);
            *wait_until = None;
        }
        self.add_child(r, child);
    }
}
