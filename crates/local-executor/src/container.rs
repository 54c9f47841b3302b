//! A container as a pod runs it, and a volume bound into it: what `prepare_pod` makes and the
//! sandbox runs, apart from both so that neither imports the other.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Environment variables from secrets: resolved by the wrapper, never in `pod.json`.
    #[serde(default)]
    pub secret_env: Vec<crate::secrets::SecretEnv>,
    pub working_dir: Option<String>,
    pub dependencies: Vec<String>,
    pub mounts: Vec<Mount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    pub source: PathBuf,
    pub target: String,
}
