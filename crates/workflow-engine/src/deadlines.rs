//! Time: Go durations, retry backoff timers, node deadlines (suspend durations, template
//! `timeout`, pod `activeDeadlineSeconds`) and the workflow's `activeDeadlineSeconds`.
//!
//! The engine has no clock: `check_time(now)` runs on every event with the shell's time,
//! and deadlines sit in an ordered index, so a tick looks only at what is due.

use chrono::Duration;

use crate::state::Engine;
use crate::status::{NodeType, Phase, Time};

/// `t + d`, or the end (or start) of time when that is past what a time can hold: a
/// deadline that far away never comes. (`+` panics there.)
pub(crate) fn after(t: Time, d: Duration) -> Time {
    t.checked_add_signed(d).unwrap_or(if d < Duration::zero() {
        chrono::DateTime::<chrono::Utc>::MIN_UTC
    } else {
        chrono::DateTime::<chrono::Utc>::MAX_UTC
    })
}

/// `s` seconds, held to what a duration can hold (`Duration::seconds` panics past it).
pub(crate) fn seconds(s: i64) -> Duration {
    Duration::try_seconds(s).unwrap_or(if s < 0 { Duration::MIN } else { Duration::MAX })
}

/// `ms` milliseconds, held to what a duration can hold; none when not a number.
pub(crate) fn millis(ms: f64) -> Option<Duration> {
    if ms.is_nan() {
        return None;
    }
    let held = if ms < 0.0 {
        Duration::MIN
    } else {
        Duration::MAX
    };
    Some(Duration::try_milliseconds(ms as i64).unwrap_or(held))
}

/// Go duration strings (`10s`, `1m30s`, `2h`) or bare seconds. Never out of a duration's
/// range: a huge one is held to the largest.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return millis(secs * 1000.0);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            i += 1;
            continue;
        }
        let mut unit = String::new();
        while i < chars.len() && !(chars[i].is_ascii_digit() || chars[i] == '.') {
            unit.push(chars[i]);
            i += 1;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
    }
    if !num.is_empty() {
        return None;
    }
    millis(total * 1000.0)
}

pub(crate) fn human_duration(d: Duration) -> String {
    let s = d.num_seconds();
    if s < 60 {
        format!("{s} seconds")
    } else if s < 3600 {
        format!("{} minutes", s / 60)
    } else {
        format!("{} hours", s / 3600)
    }
}

impl Engine {
    pub(crate) fn check_time(&mut self, now: Time) {
        // Timers: retry backoffs.
        let due: Vec<usize> = self
            .timers
            .iter()
            .filter(|(t, _)| *t <= now)
            .map(|(_, i)| *i)
            .collect();
        self.timers.retain(|(t, _)| *t > now);
        for r in due {
            self.retry_step(r, now);
        }
        // Node deadlines: suspend durations, pod and template timeouts.
        let mut due = Vec::new();
        while let Some(&(d, i)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.deadlines.pop_first();
            due.push((d, i));
        }
        for (d, i) in due {
            if self.nodes[i].deadline != Some(d) || self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            match self.nodes[i].status.node_type {
                NodeType::Suspend => {
                    self.nodes[i].deadline = None;
                    self.finish(i, Phase::Succeeded, None, now);
                }
                NodeType::Steps | NodeType::DAG => {
                    self.nodes[i].deadline = None;
                    self.kill_under(i, "template timeout", now);
                    self.nodes[i].status.message = Some("Timeout".into());
                }
                _ => {
                    self.nodes[i].deadline = None;
                    let msg =
                        "Pod was active on the node longer than the specified deadline".to_string();
                    self.kill_started_pod(i, &msg);
                    self.finish(i, Phase::Failed, Some(msg), now);
                }
            }
        }
        // Workflow deadline.
        if let Some(d) = self.deadline {
            if now >= d && !self.is_finished() && self.exit_node.is_none() {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].status.phase.fulfilled() {
                        continue;
                    }
                    let ty = self.nodes[i].status.node_type;
                    if matches!(ty, NodeType::Pod | NodeType::HTTP | NodeType::Suspend) {
                        self.kill_started_pod(i, "workflow deadline");
                        self.finish(
                            i,
                            Phase::Failed,
                            Some("Step exceeded its deadline".into()),
                            now,
                        );
                    }
                }
                // Nothing new starts after the deadline.
                self.pod_queue.clear();
                self.shutdown_blocks(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::seconds(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::seconds(90)));
        assert_eq!(parse_duration("2"), Some(Duration::seconds(2)));
        assert_eq!(parse_duration("1d"), Some(Duration::days(1)));
        // Out of range: held to the largest duration, never a panic.
        assert_eq!(parse_duration("1e300"), Some(Duration::MAX));
        assert_eq!(parse_duration("-1e300"), Some(Duration::MIN));
        assert_eq!(parse_duration("99999999999999999999h"), Some(Duration::MAX));
        assert_eq!(parse_duration("NaN"), None);
        let t = chrono::Utc::now();
        assert_eq!(
            after(t, Duration::MAX),
            chrono::DateTime::<chrono::Utc>::MAX_UTC
        );
        assert_eq!(
            after(t, Duration::MIN),
            chrono::DateTime::<chrono::Utc>::MIN_UTC
        );
        assert_eq!(seconds(i64::MAX), Duration::MAX);
        assert_eq!(parse_duration("soon"), None);
    }
}
