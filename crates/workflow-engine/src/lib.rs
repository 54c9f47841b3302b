//! The ONYX workflow engine: Argo Workflows v3.5.6 semantics as a pure state machine.
//!
//! `Engine::new` builds the state of one workflow; `Engine::handle(event, now)` applies one
//! event at time `now` and returns the [`Action`]s the shell must carry out (start a pod, kill
//! one, make an HTTP call, act on a resource). The engine does no I/O and reads no clock, so
//! the same inputs always give the same state and actions.
//!
//! Invariants:
//! * Work is proportional to what changed: a node finishing notifies only its owner (the retry,
//!   step group, DAG or task group that started it); DAG tasks keep counters of unfinished
//!   dependencies. Nothing rescans the whole node tree per event.
//! * A node's phase only moves forward: Pending → Running → a fulfilled phase, never back.
//! * Every fulfilled node is reported to its owner exactly once (through the work queue).

#![forbid(unsafe_code)]

mod completion;
mod dag;
mod deadlines;
mod engine;
mod execute;
mod hooks;
mod kept;
mod loops;
mod maps;
mod memo;
mod metrics;
mod nodes;
mod outputs;
mod pods;
mod protocol;
mod retry;
mod scope;
mod shutdown;
mod state;
pub mod status;
mod steps;
mod suspend;
mod sync;
mod templates;
pub mod tree;
mod variables;

pub use deadlines::parse_duration;
pub use pods::MAIN_LOGS;
pub use protocol::*;
pub use state::Engine;
pub use status::*;
