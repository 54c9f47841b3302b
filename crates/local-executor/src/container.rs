//! A container as a pod runs it, and a volume bound into it: what `prepare_pod` makes and the
//! sandbox runs, apart from both so that neither imports the other.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRun {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Environment variables from secrets: resolved by the wrapper, never in `pod.json`.
    #[serde(default)]
    pub secret_env: Vec<pod_secrets::SecretEnv>,
    pub working_dir: Option<String>,
    pub dependencies: Vec<String>,
    pub mounts: Vec<Mount>,
}

pub use pod_sandbox::Mount;

impl ContainerRun {
    /// What the sandbox runs of it.
    pub fn process(&self) -> pod_sandbox::Process<'_> {
        pod_sandbox::Process {
            command: &self.command,
            env: &self.env,
            working_dir: self.working_dir.as_deref(),
        }
    }
}
