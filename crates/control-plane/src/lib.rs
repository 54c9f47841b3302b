//! What `onyx server`'s API serves, below the HTTP layer: the config, who a caller is and what
//! they may do (`auth`), the state every handler and loop shares, the submission pipeline
//! (`submit`: normalise, parameters, templates, lint, policy, accept, commit), CronWorkflows
//! (`cron`), Argo's `fields` selection of answers, namespace requests, the usage ledger and its report, and the maintenance
//! window's driver. The server crate above it holds the routes, the hot standby and the
//! wiring; errors are Argo's API errors (`error::ApiError`), as every caller here is the API
//! or a loop that reports through it.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod cron;
pub mod error;
pub mod fields;
pub mod maintenance_runner;
pub mod objects;
pub mod requests;
pub mod state;
pub mod submit;
pub mod usage;
