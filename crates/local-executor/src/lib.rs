//! The local executor: each pod of a workflow is a process tree on this host.
//!
//! The controller side ([`PodLauncher`]) writes a [`PodSpec`] into the pod's directory and
//! starts `onyx exec-pod DIR` in a new process group. That wrapper ([`run_pod`], ONYX's
//! `argoexec`) gives the pod a private view of `/tmp`, `/mnt` and the other directories its
//! paths use (a mount namespace, when running as root), stages input artifacts, runs init
//! containers, sidecars and the main container(s), then collects output parameters, artifacts
//! and stdout into `result.json`.
//!
//! Invariants: a pod directory is created once per pod name and `result.json` is written
//! atomically (rename) as the wrapper's last act, so a controller restarted at any moment can
//! tell a finished pod from a running one; killing the process group ends every process of the
//! pod.

pub mod actions;
mod container;
pub mod direct;
pub mod durable;
mod http_agent;
pub mod images;
mod jobs;
mod pid_namespace;
mod pod;
pub mod pods;
mod spawn;
mod wrapper;

pub use pid_namespace::run_in_own_pid_namespace;
pub use pod::*;
pub use wrapper::run_pod;
