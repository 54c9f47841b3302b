//! What one scheduling cycle decided, as the scenario format and the server read it.

use std::collections::{BTreeMap, BTreeSet};

/// What one cycle did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub binds: BTreeMap<String, String>,
    /// The devices each bound pod got (see `PodSpec::devices`).
    pub devices: BTreeMap<String, Vec<String>>,
    pub evictions: BTreeSet<String>,
    /// Why each evicted pod goes (which gang takes its place, or the drain).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub eviction_reasons: BTreeMap<String, String>,
    pub pipelined: BTreeMap<String, Vec<String>>,
    pub group_phases: BTreeMap<String, String>,
    /// Each GPU's MIG instances by start slot, as `nvidia-smi mig -lgi` lists them (`[]`: none).
    pub mig_layouts: BTreeMap<String, Vec<Vec<String>>>,
    /// The same instances in the order they were made: the index a pod's device
    /// (`GPU/instance`) names, which the server keeps.
    #[serde(skip)]
    pub mig_instances: BTreeMap<String, Vec<Vec<String>>>,
    /// Pods refused at submission and why (they can never run on this cluster).
    pub refused: BTreeMap<String, String>,
    /// Why pending pods did not bind (as `kubectl describe` would say).
    pub reasons: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    Invalid(String),
}
