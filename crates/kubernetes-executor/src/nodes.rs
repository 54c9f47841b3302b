//! A cluster's Nodes as ONYX's scheduler sees them: pure, from Nodes as the API returns them.
//!
//! A node's allocatable resources (`cpu`, `memory`, `pods`, `nvidia.com/gpu` as NVIDIA's
//! device plugin reports whole GPUs), its labels, taints and `spec.unschedulable` are taken
//! as they are. MIG instances, which the device plugin's `mixed` strategy reports as one
//! resource per profile (`nvidia.com/mig-1g.10gb: 7`), are laid out on the node's GPUs as the
//! scheduler counts them: each instance on the first GPU it still fits on beside the others
//! (`scheduler::mig::fits`), largest first. Profiles the scheduler does not know are left
//! out, with a warning. A node that is not Ready is unschedulable to ONYX as to
//! kube-scheduler (its `node.kubernetes.io/not-ready` taint).

use std::collections::BTreeMap;

use scheduler::{GpuInfo, NodeSpec, Quantity, Taint};
use serde_json::Value;

/// The prefix of the device plugin's MIG resources (`mixed` strategy).
const MIG_RESOURCE: &str = "nvidia.com/mig-";

/// `node` (a Node as JSON) as the scheduler places pods on it, and what of it was left out.
pub fn node_spec(node: &Value) -> (NodeSpec, Vec<String>) {
    let mut left_out = Vec::new();
    let name = node["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut allocatable = BTreeMap::new();
    let mut instances: Vec<String> = Vec::new();
    if let Some(a) = node["status"]["allocatable"].as_object() {
        for (k, v) in a {
            let Some(q) = v.as_str() else { continue };
            if let Some(profile) = k.strip_prefix(MIG_RESOURCE) {
                let count = q.parse::<usize>().unwrap_or(0);
                if scheduler::mig::profile(profile).is_none() {
                    left_out.push(format!("{name}: {k} is not a MIG profile ONYX knows"));
                    continue;
                }
                instances.extend(std::iter::repeat_n(profile.to_string(), count));
                continue;
            }
            allocatable.insert(k.clone(), Quantity::Text(q.to_string()));
        }
    }
    let whole = allocatable
        .get("nvidia.com/gpu")
        .and_then(|q| match q {
            Quantity::Text(t) => t.parse::<usize>().ok(),
            Quantity::Number(n) => Some(*n as usize),
        })
        .unwrap_or(0);
    let mut mig: Vec<Vec<String>> = vec![Vec::new(); whole];
    instances
        .sort_by_key(|p| std::cmp::Reverse(scheduler::mig::compute_slices(p).unwrap_or_default()));
    let first_partitioned = mig.len();
    for p in instances {
        let at = mig[first_partitioned..].iter().position(|gpu| {
            let mut with = gpu.clone();
            with.push(p.clone());
            scheduler::mig::fits(&with)
        });
        match at {
            Some(i) => mig[first_partitioned + i].push(p),
            None => mig.push(vec![p]),
        }
    }
    // The scheduler counts physical GPUs, whole or partitioned, as `nvidia.com/gpu` and tells
    // them apart by their layout; the device plugin counts only the whole ones.
    if !mig.is_empty() {
        allocatable.insert(
            "nvidia.com/gpu".into(),
            Quantity::Text(mig.len().to_string()),
        );
    }
    let labels: BTreeMap<String, String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let taints = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            Some(Taint {
                key: t["key"].as_str()?.to_string(),
                value: t["value"].as_str().unwrap_or_default().to_string(),
                effect: t["effect"].as_str()?.to_string(),
            })
        })
        .collect();
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let gpu = labels.get("nvidia.com/gpu.product").map(|model| GpuInfo {
        model: model.clone(),
    });
    let spec = NodeSpec {
        name,
        allocatable,
        gpu,
        mig: Some(mig),
        labels,
        unschedulable: node["spec"]["unschedulable"].as_bool().unwrap_or(false) || !ready,
        taints,
    };
    (spec, left_out)
}

/// `onyx cluster nodes`: one line per node as the scheduler sees it — its GPUs (whole, and
/// partitioned with their MIG instances), GPU model, whether it takes pods, its taints.
pub fn table(specs: &[NodeSpec]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "GPUS".into(),
        "MIG".into(),
        "MODEL".into(),
        "SCHEDULABLE".into(),
        "TAINTS".into(),
    ]];
    for n in specs {
        let gpus = n.mig.as_ref().map_or(0, Vec::len);
        let mig: Vec<String> = n
            .mig
            .iter()
            .flatten()
            .filter(|l| !l.is_empty())
            .map(|l| l.join("+"))
            .collect();
        let taints: Vec<String> = n
            .taints
            .iter()
            .map(|t| {
                if t.value.is_empty() {
                    format!("{}:{}", t.key, t.effect)
                } else {
                    format!("{}={}:{}", t.key, t.value, t.effect)
                }
            })
            .collect();
        rows.push([
            n.name.clone(),
            gpus.to_string(),
            if mig.is_empty() {
                "-".into()
            } else {
                mig.join(" ")
            },
            n.gpu.as_ref().map_or("-".into(), |g| g.model.clone()),
            if n.unschedulable { "no" } else { "yes" }.into(),
            if taints.is_empty() {
                "-".into()
            } else {
                taints.join(",")
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
