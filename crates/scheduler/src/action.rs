//! The actions a cycle runs, in the order the configuration names them (Volcano's
//! `actions: "enqueue, allocate, backfill"`), parsed once.

use crate::outcome::ScenarioError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Enqueue,
    Allocate,
    Backfill,
    Preempt,
    Reclaim,
    /// ONYX's: evict every pod of a cordoned node, and the rest of its gangs with it.
    Drain,
}

impl Action {
    /// What a cycle runs when the configuration names no actions (Volcano's default).
    pub const DEFAULT: [Action; 3] = [Action::Enqueue, Action::Allocate, Action::Backfill];

    pub fn parse(name: &str) -> Result<Action, ScenarioError> {
        Ok(match name {
            "enqueue" => Action::Enqueue,
            "allocate" => Action::Allocate,
            "backfill" => Action::Backfill,
            "preempt" => Action::Preempt,
            "reclaim" => Action::Reclaim,
            "drain" => Action::Drain,
            other => {
                return Err(ScenarioError::Invalid(format!(
                    "unknown action {other:?}: expected enqueue, allocate, backfill, preempt, reclaim, drain"
                )))
            }
        })
    }
}
