//! What one cycle's actions share: the cluster's state as the cycle changes it, the outcome
//! so far, and what earlier steps of the cycle decided for later ones.

use std::collections::{BTreeMap, BTreeSet};

use crate::outcome::Outcome;
use crate::state::State;

pub(crate) struct Session {
    pub st: State,
    pub out: Outcome,
    /// Gangs that can never run here (refused before any action).
    pub refused: BTreeSet<usize>,
    /// Nodes a waiting, admitted gang is collecting, with its priority: lower or equal
    /// priority work of other gangs does not take them (no starvation of large gangs).
    pub reserved: BTreeMap<usize, i64>,
    /// Whether `enqueue` runs in this cycle: then only admitted (Inqueue) gangs are allocated.
    pub enqueue_runs: bool,
}
