//! The component catalogue (`data/catalogue.yaml`): figures of the CPUs, GPUs, chassis and NICs
//! the spec names and their usual alternatives, MIG geometry per GPU model, and the version
//! constraints between components — each entry with the public source of its figures.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::quantity::{Bandwidth, Bytes, Power, Q};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Catalogue {
    pub cpus: BTreeMap<String, Cpu>,
    pub gpus: BTreeMap<String, Gpu>,
    pub chassis: BTreeMap<String, Chassis>,
    pub nics: BTreeMap<String, NicModel>,
    /// Per-component draw used by the power model where the catalogue has no better figure.
    pub power_model: PowerModel,
    pub constraints: Vec<Constraint>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Cpu {
    pub name: String,
    pub socket: String,
    pub cores: u32,
    pub threads: u32,
    pub tdp: Q<Power>,
    pub memory_channels: u32,
    pub memory_type: String,
    /// Sockets per board it supports (`P` parts: 1).
    pub max_sockets: u32,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gpu {
    pub name: String,
    /// sxm5, sxm4, pcie.
    pub form_factor: String,
    pub memory: Q<Bytes>,
    pub tdp: Q<Power>,
    #[serde(default)]
    pub nvlink_generation: Option<u32>,
    #[serde(default)]
    pub nvlink_bandwidth: Option<Q<Bandwidth>>,
    /// NVSwitch chips on this model's 8-GPU baseboard (HGX).
    #[serde(default)]
    pub hgx_nvswitches: Option<u32>,
    #[serde(default)]
    pub mig: Option<MigGeometry>,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigGeometry {
    pub compute_slices: u32,
    pub memory_slices: u32,
    pub profiles: BTreeMap<String, MigProfile>,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigProfile {
    pub compute: u32,
    pub memory: u32,
    pub max_instances: u32,
    /// Memory-slice indices an instance may start at.
    pub starts: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Chassis {
    pub name: String,
    pub units: u32,
    pub sockets: u32,
    pub socket: String,
    pub memory_type: String,
    pub dimm_slots: u32,
    /// GPU form factors it takes, and how many.
    #[serde(default)]
    pub gpu_form_factor: Option<String>,
    #[serde(default)]
    pub max_gpus: u32,
    #[serde(default)]
    pub pcie_generation: u32,
    pub psus: String,
    /// Fans, board, switches, drives bays: draw beyond CPUs, GPUs, DIMMs, drives and NICs.
    pub base_power: Q<Power>,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NicModel {
    pub name: String,
    pub speed: Q<Bandwidth>,
    pub ports: u32,
    pub pcie_generation: u32,
    pub power: Q<Power>,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PowerModel {
    pub dimm: Q<Power>,
    pub nvme: Q<Power>,
    pub source: String,
}

/// A version rule: when `component` is at `version`, `other` must be within `[min, max]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Constraint {
    pub component: String,
    pub version: String,
    pub other: String,
    #[serde(default)]
    pub min: Option<String>,
    #[serde(default)]
    pub max: Option<String>,
    /// Exact values `other` may take (e.g. the kernel a distribution release ships).
    #[serde(default)]
    pub one_of: Vec<String>,
    pub why: String,
    pub source: String,
}

impl Catalogue {
    /// The catalogue shipped with ONYX.
    pub fn builtin() -> Catalogue {
        let text = include_str!("../data/catalogue.yaml");
        let docs = manifest::parse_documents(text).expect("the built-in catalogue is YAML");
        serde_json::from_value(docs[0].value.clone()).expect("the built-in catalogue is valid")
    }
}

/// Compare dotted versions numerically (`1.27.6` < `1.28`); a missing part counts as 0 and a
/// prefix matches (`1.7` matches `1.7.x`).
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parts = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split(['.', '-'])
            .map_while(|p| p.parse().ok())
            .collect()
    };
    let (pa, pb) = (parts(a), parts(b));
    let n = pa.len().min(pb.len());
    pa[..n].cmp(&pb[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalogue_loads_and_versions_compare() {
        let c = Catalogue::builtin();
        let h100 = &c.gpus["nvidia-h100-sxm5-80gb"];
        let mig = h100.mig.as_ref().unwrap();
        assert_eq!((mig.compute_slices, mig.memory_slices), (7, 8));
        assert_eq!(mig.profiles["1g.10gb"].max_instances, 7);
        assert_eq!(mig.profiles["3g.40gb"].starts, vec![0, 4]);
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("1.27.6", "1.25"), Greater);
        assert_eq!(version_cmp("1.7", "1.7.3"), Equal);
        assert_eq!(version_cmp("v1.9", "1.10"), Less);
    }
}
