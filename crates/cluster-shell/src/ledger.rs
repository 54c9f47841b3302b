//! Every grant and release of GPUs or CPU, in order, for the usage ledger.

use std::collections::BTreeMap;

use crate::grant::Grant;
use crate::records::Node;

/// A change to what pods hold of the GPUs, in the order the cluster saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ledger {
    Held(store::UsageRow),
    Released { pod: String, at_ns: i64 },
}

/// CPU cores a grant's requests add up to (`cpu: 500m` is 0.5).
pub(crate) fn granted_cpus(grant: &Grant) -> f64 {
    grant
        .ask
        .requests
        .get("cpu")
        .and_then(|v| scheduler::Quantity::Text(v.clone()).milli().ok())
        .map_or(0.0, |m| m as f64 / 1000.0)
}

/// Whether the usage ledger records a grant: it holds GPUs or asked for CPU.
pub(crate) fn ledgered(grant: &Grant) -> bool {
    !grant.devices.is_empty() || grant.gpu_milli.is_some() || granted_cpus(grant) > 0.0
}

/// What a grant holds in GPU equivalents: a whole GPU 1, a fraction its share, a MIG
/// instance its compute slices over 7 (an instance of an unknown profile counts whole).
pub(crate) fn granted_gpu_equivalents(grant: &Grant, node: Option<&Node>) -> f64 {
    if let Some(milli) = grant.gpu_milli {
        return milli as f64 / 1000.0 * grant.devices.len().max(1) as f64;
    }
    grant
        .devices
        .iter()
        .map(|d| match d.split_once('/') {
            Some((g, i)) => node
                .and_then(|n| {
                    let layout = n.spec.mig.as_ref()?;
                    let profile = layout
                        .get(g.parse::<usize>().ok()?)?
                        .get(i.parse::<usize>().ok()?)?;
                    scheduler::mig::compute_slices(profile)
                })
                .map_or(1.0, |s| s as f64 / 7.0),
            None => 1.0,
        })
        .sum()
}

pub(crate) fn gpu_equivalents(requests: &BTreeMap<String, String>) -> f64 {
    let mut total = 0.0;
    for (k, v) in requests {
        let n: f64 = v.parse().unwrap_or(0.0);
        if k == "nvidia.com/gpu" {
            total += n;
        } else if k == "gpu_milli" {
            total += n / 1000.0;
        } else if let Some(p) = k
            .strip_prefix("nvidia.com/mig-")
            .or_else(|| k.strip_prefix("nvidia.com/gpu-mig-"))
        {
            let slices = scheduler::mig::compute_slices(p).unwrap_or(7) as f64;
            total += n * slices / 7.0;
        }
    }
    total
}
