//! The durable workflow runtime: one task per workflow drives its engine
//! (`workflow_engine::Engine::handle`), every event committed to the workflow's log in the
//! store before the engine sees it, and the engine's actions carried out through an
//! [`Executor`] — this machine's sandboxed pods today, a Kubernetes cluster next, a fake in
//! the tests. The server (and its API) sits above; what runs the pods sits below, behind the
//! trait; what else hears of a workflow's phase (webhooks, Sensors) listens through
//! [`PhaseListener`].

#![forbid(unsafe_code)]

mod build;
mod controller;
mod error;
mod executor;
pub mod retry;

pub use build::{apply_parameters, load_object, template_store, workflow_of, BuildContext};
pub use controller::{new_uid, now, pod_names, Accepted, Controller, PhaseListener, WatchEvent};
pub use error::RuntimeError;
pub use executor::{pod_key, volcano_manifest, Executor, JobStart, PodStart, Report};
