//! The spec's maintenance: a window on a schedule (the first Friday of each month, two hours),
//! in which the GPU nodes are drained, rebooted and uncordoned one after another. Pure: the
//! windows are computed from a cron schedule, and the rollout is a state machine the server
//! feeds with the time and what it sees of the current node (its pods, whether it is back),
//! and which answers with actions (drain, power-cycle, uncordon). It never starts a node it
//! cannot finish inside the window, and it stops — leaving that node cordoned — when a node
//! does not come back, so a bad patch never takes down more than one node.

#![forbid(unsafe_code)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde::Serialize;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MaintenanceError {
    #[error("maintenance.schedule {schedule:?}: {message}")]
    Schedule { schedule: String, message: String },
    #[error("maintenance.timezone {0:?}: not a time zone name such as Asia/Tokyo or UTC")]
    TimeZone(String),
}

/// One maintenance window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The spec's schedule: 02:00 on the first Friday of each month.
pub const DEFAULT_SCHEDULE: &str = "0 2 * * FRI#1";

/// The next `count` windows that end after `now` (a window in progress comes first).
pub fn windows(
    schedule: &str,
    timezone: &str,
    length: Duration,
    now: DateTime<Utc>,
    count: usize,
) -> Result<Vec<Window>, MaintenanceError> {
    let cron = croner::Cron::new(schedule)
        .parse()
        .map_err(|e| MaintenanceError::Schedule {
            schedule: schedule.to_string(),
            message: e.to_string(),
        })?;
    let tz: chrono_tz::Tz = timezone
        .parse()
        .map_err(|_| MaintenanceError::TimeZone(timezone.to_string()))?;
    // Start early enough to find a window that is in progress now.
    let from = tz.from_utc_datetime(&(now - length).naive_utc());
    Ok(cron
        .iter_after(from)
        .map(|start| {
            let start = start.with_timezone(&Utc);
            Window {
                start,
                end: start + length,
            }
        })
        .filter(|w| w.end > now)
        .take(count)
        .collect())
}

/// How long one node takes, at most: its pods' grace period, the reboot, the wait for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeBudget {
    pub drain: Duration,
    pub reboot: Duration,
}

impl NodeBudget {
    pub fn total(&self) -> Duration {
        self.drain + self.reboot
    }
}

/// What the server sees of the node being maintained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFacts {
    /// Pods still bound to it.
    pub pods: usize,
    /// Whether it is back after its reboot (its BMC reports it on and it answers).
    pub ready: bool,
}

/// What the rollout asks the server to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum Action {
    /// Cordon the node and evict what is left after the grace period (gangs whole).
    Drain {
        node: String,
        grace_seconds: i64,
    },
    /// Reboot the node through its BMC.
    PowerCycle {
        node: String,
    },
    Uncordon {
        node: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum Step {
    /// The next node has not been touched.
    Next,
    Draining {
        since: DateTime<Utc>,
    },
    Rebooting {
        since: DateTime<Utc>,
    },
    /// Every node was done, or the window had no room for the rest.
    Finished {
        message: String,
    },
    /// A node did not come back; it stays cordoned and the rollout stops.
    Stopped {
        message: String,
    },
}

/// A rolling reboot of `nodes` inside `window`.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub window: Window,
    pub nodes: Vec<String>,
    pub budget: NodeBudget,
    /// Index of the node being maintained.
    pub current: usize,
    pub step: Step,
    /// Nodes done, in order.
    pub done: Vec<String>,
}

impl Rollout {
    pub fn new(window: Window, nodes: Vec<String>, budget: NodeBudget) -> Rollout {
        Rollout {
            window,
            nodes,
            budget,
            current: 0,
            step: Step::Next,
            done: Vec::new(),
        }
    }

    pub fn is_over(&self) -> bool {
        matches!(self.step, Step::Finished { .. } | Step::Stopped { .. })
    }

    /// The node being maintained, if any.
    pub fn node(&self) -> Option<&str> {
        match self.step {
            Step::Draining { .. } | Step::Rebooting { .. } => {
                self.nodes.get(self.current).map(String::as_str)
            }
            _ => None,
        }
    }

    /// Advance with the time and what the server sees of the current node.
    pub fn advance(&mut self, now: DateTime<Utc>, facts: NodeFacts) -> Vec<Action> {
        let mut actions = Vec::new();
        // Each step may complete at once (an empty node drains immediately), so loop.
        loop {
            let before = self.step.clone();
            match self.step.clone() {
                Step::Next => {
                    let Some(node) = self.nodes.get(self.current).cloned() else {
                        self.step = Step::Finished {
                            message: format!("{} node(s) maintained", self.done.len()),
                        };
                        break;
                    };
                    if now + self.budget.total() > self.window.end {
                        self.step = Step::Finished {
                            message: format!(
                                "{} node(s) maintained; {} left for the next window (not enough time for {node})",
                                self.done.len(),
                                self.nodes.len() - self.current
                            ),
                        };
                        break;
                    }
                    actions.push(Action::Drain {
                        node,
                        grace_seconds: self.budget.drain.num_seconds().max(0),
                    });
                    self.step = Step::Draining { since: now };
                    // The facts were of no node yet: wait for the next observation.
                    break;
                }
                Step::Draining { .. } => {
                    if facts.pods > 0 {
                        break;
                    }
                    let node = self.nodes[self.current].clone();
                    actions.push(Action::PowerCycle { node });
                    self.step = Step::Rebooting { since: now };
                    break;
                }
                Step::Rebooting { since } => {
                    let node = self.nodes[self.current].clone();
                    if facts.ready && now > since {
                        actions.push(Action::Uncordon { node: node.clone() });
                        self.done.push(node);
                        self.current += 1;
                        self.step = Step::Next;
                    } else if now - since > self.budget.reboot {
                        self.step = Step::Stopped {
                            message: format!(
                                "{node} did not come back within {}s of its reboot; it stays cordoned and the other nodes were not touched",
                                self.budget.reboot.num_seconds()
                            ),
                        };
                        break;
                    } else {
                        break;
                    }
                }
                Step::Finished { .. } | Step::Stopped { .. } => break,
            }
            if self.step == before {
                break;
            }
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn windows_fall_on_the_first_friday_of_each_month() {
        let w = windows(
            DEFAULT_SCHEDULE,
            "Asia/Tokyo",
            Duration::hours(2),
            at("2026-11-29T00:00:00Z"),
            3,
        )
        .unwrap();
        // 2026-12-04, 2027-01-01 and 2027-02-05 are first Fridays; 02:00 in Tokyo is 17:00 UTC
        // the day before.
        let starts: Vec<String> = w.iter().map(|w| w.start.to_rfc3339()).collect();
        assert_eq!(
            starts,
            vec![
                "2026-12-03T17:00:00+00:00",
                "2026-12-31T17:00:00+00:00",
                "2027-02-04T17:00:00+00:00"
            ]
        );
        assert_eq!(w[0].end - w[0].start, Duration::hours(2));
        // A window in progress comes first.
        let now = at("2026-12-03T18:00:00Z");
        let w = windows(DEFAULT_SCHEDULE, "Asia/Tokyo", Duration::hours(2), now, 1).unwrap();
        assert_eq!(w[0].start, at("2026-12-03T17:00:00Z"));
        assert!(windows("0 2 * * FRI#9", "UTC", Duration::hours(2), now, 1).is_err());
        assert_eq!(
            windows(DEFAULT_SCHEDULE, "Mars/Olympus", Duration::hours(2), now, 1).unwrap_err(),
            MaintenanceError::TimeZone("Mars/Olympus".into())
        );
    }

    fn rollout(nodes: &[&str], minutes: i64) -> Rollout {
        let start = at("2026-12-03T17:00:00Z");
        Rollout::new(
            Window {
                start,
                end: start + Duration::minutes(minutes),
            },
            nodes.iter().map(|s| s.to_string()).collect(),
            NodeBudget {
                drain: Duration::minutes(5),
                reboot: Duration::minutes(10),
            },
        )
    }

    #[test]
    fn nodes_are_drained_rebooted_and_uncordoned_one_after_another() {
        let mut r = rollout(&["a", "b"], 120);
        let mut t = r.window.start;
        let busy = NodeFacts {
            pods: 2,
            ready: false,
        };
        let empty = NodeFacts {
            pods: 0,
            ready: false,
        };
        let back = NodeFacts {
            pods: 0,
            ready: true,
        };
        assert_eq!(
            r.advance(t, busy),
            vec![Action::Drain {
                node: "a".into(),
                grace_seconds: 300
            }]
        );
        t += Duration::minutes(1);
        assert_eq!(r.advance(t, busy), vec![], "a still has pods");
        t += Duration::minutes(4);
        assert_eq!(
            r.advance(t, empty),
            vec![Action::PowerCycle { node: "a".into() }]
        );
        t += Duration::minutes(3);
        assert_eq!(r.advance(t, empty), vec![], "a is not back yet");
        t += Duration::minutes(1);
        // a is back: uncordoned, and b is drained next — never two nodes at once.
        assert_eq!(
            r.advance(t, back),
            vec![
                Action::Uncordon { node: "a".into() },
                Action::Drain {
                    node: "b".into(),
                    grace_seconds: 300
                }
            ]
        );
        assert_eq!(r.node(), Some("b"));
        t += Duration::minutes(1);
        assert_eq!(
            r.advance(t, empty),
            vec![Action::PowerCycle { node: "b".into() }]
        );
        t += Duration::minutes(2);
        assert_eq!(
            r.advance(t, back),
            vec![Action::Uncordon { node: "b".into() }]
        );
        t += Duration::seconds(1);
        assert!(r.advance(t, back).is_empty());
        assert_eq!(
            r.step,
            Step::Finished {
                message: "2 node(s) maintained".into()
            }
        );
    }

    #[test]
    fn a_node_that_does_not_come_back_stops_the_rollout() {
        let mut r = rollout(&["a", "b"], 120);
        let t = r.window.start;
        let empty = NodeFacts {
            pods: 0,
            ready: false,
        };
        r.advance(t, empty);
        r.advance(t + Duration::seconds(1), empty);
        assert!(r.advance(t + Duration::minutes(12), empty).is_empty());
        assert!(
            matches!(&r.step, Step::Stopped { message } if message.starts_with("a did not come back within 600s"))
        );
        assert!(
            r.advance(t + Duration::minutes(13), empty).is_empty(),
            "b is never touched"
        );
    }

    #[test]
    fn no_node_is_started_that_cannot_finish_inside_the_window() {
        // 20 minutes: room for one node (15 minutes), not two.
        let mut r = rollout(&["a", "b"], 20);
        let t = r.window.start;
        let back = NodeFacts {
            pods: 0,
            ready: true,
        };
        r.advance(t, back);
        r.advance(t + Duration::minutes(1), back);
        let actions = r.advance(t + Duration::minutes(8), back);
        assert_eq!(actions, vec![Action::Uncordon { node: "a".into() }]);
        assert_eq!(
            r.step,
            Step::Finished {
                message: "1 node(s) maintained; 1 left for the next window (not enough time for b)"
                    .into()
            }
        );
    }
}
