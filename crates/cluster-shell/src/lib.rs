//! The server's side of scheduling: it keeps the cluster's nodes, queues, tenants and the pods
//! that hold or wait for resources, and after every change runs one cycle of the pure
//! `scheduler` crate over them (enqueue, allocate, backfill). A pod starts only once a cycle has
//! bound it; what it was given (node, GPUs or MIG instances) is its `Grant`.
//!
//! Pods join the scheduler with what users already write for Volcano: `schedulerName: volcano`
//! and the annotation `scheduling.k8s.io/group-name` make a gang (its size from
//! `scheduling.volcano.sh/group-min-member`), `scheduling.volcano.sh/queue-name` picks a queue,
//! `priorityClassName` a priority, `nodeSelector` and `tolerations` the nodes it may use. The nodes are this machine (`--cluster local`: its GPUs and
//! MIG instances through NVML, none is fine) or a cluster file's GPU nodes (`--cluster onyx`:
//! the seed's 16 nodes, virtual; steps still run here).

#![forbid(unsafe_code)]

mod ask;
mod cluster;
mod cycle;
mod grant;
mod ledger;
mod queues;
mod records;
mod views;

pub use ask::*;
pub use cluster::*;
pub use grant::*;
pub use ledger::*;
pub use queues::*;
pub use views::*;
