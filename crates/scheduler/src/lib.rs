//! ONYX's scheduler: one scheduling cycle as a pure function of the cluster state
//! (`Scenario`): gangs placed all or nothing, queues with capability and deserved shares,
//! priorities, preemption inside a queue and reclaim across queues (whole gangs, never
//! toward the lower priority, never below a queue's deserved share: no ping-pong), backfill that
//! leaves the holes a waiting gang is collecting alone, and GPUs as whole devices, fractions
//! or MIG instances with the real geometry (H100/A100 80 GB), re-partitioned when
//! `dynamic-mig` is on.

#![forbid(unsafe_code)]

mod action;
mod allocate;
mod cycle;
mod drain;
mod enqueue;
mod expect;
pub mod mig;
pub mod model;
mod outcome;
mod placement;
mod preempt;
mod reasons;
mod resources;
mod session;
mod shares;
mod state;
mod statement;

pub use action::Action;
pub use cycle::run;
pub use expect::{compare, load};
pub use model::*;
pub use outcome::{Outcome, ScenarioError};
pub use resources::Req;
