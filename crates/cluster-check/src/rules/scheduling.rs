//! GPU scheduling resources (`scheduling.mig`): MIG layouts against the GPU's geometry, and
//! resource names against the device plugin's.

use std::collections::{BTreeMap, BTreeSet};

use cluster_model::{Catalogue, Cluster};

use super::report::{label, Out};
use crate::finding::Severity;

pub(super) fn mig(c: &Cluster, cat: &Catalogue, o: &mut Out) {
    let mut profiles: BTreeSet<String> = BTreeSet::new();
    let mut any_mig = false;
    for g in &c.spec().nodes {
        let Some(gs) = &g.gpus else { continue };
        let Some(gpu) = cat.gpus.get(&gs.model) else {
            continue;
        };
        let Some(geo) = &gpu.mig else { continue };
        profiles.extend(geo.profiles.keys().cloned());
        let Some(mig) = &gs.mig else { continue };
        if !mig.enabled {
            continue;
        }
        any_mig = true;
        let mut compute = 0;
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        let mut bad = None;
        for p in &mig.layout {
            match geo.profiles.get(p) {
                Some(pr) => {
                    compute += pr.compute;
                    *counts.entry(p.as_str()).or_default() += 1;
                }
                None => bad = Some(p.clone()),
            }
        }
        if let Some(p) = bad {
            o.push(
                "scheduling.mig",
                Severity::Error,
                label(g),
                format!(
                    "{p} is not a MIG profile of {} (profiles: {})",
                    gpu.name,
                    geo.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                &[],
                "use the GPU's profiles",
            );
            continue;
        }
        if compute > geo.compute_slices || !place(&mig.layout, geo) {
            o.push("scheduling.mig", Severity::Error, label(g),
                format!("the layout [{}] does not fit one {} ({} compute and {} memory slices, with each profile's allowed start slots)", mig.layout.join(", "), gpu.name, geo.compute_slices, geo.memory_slices),
                &[("compute_slices_used", compute.to_string())], "a layout that fits, e.g. 7 x 1g.10gb or 3g.40gb + 2g.20gb + 1g.10gb x 2");
        }
        for (p, n) in counts {
            if n > geo.profiles[p].max_instances {
                o.push(
                    "scheduling.mig",
                    Severity::Error,
                    label(g),
                    format!(
                        "{n} x {p}, at most {} fit one GPU",
                        geo.profiles[p].max_instances
                    ),
                    &[],
                    "fewer instances",
                );
            }
        }
    }
    let Some(s) = &c.spec().scheduling else {
        return;
    };
    let strategy = s.mig_strategy.as_deref().unwrap_or("single");
    for r in &s.resources {
        let valid = r == "nvidia.com/gpu"
            || (strategy == "mixed"
                && r.strip_prefix("nvidia.com/mig-")
                    .is_some_and(|p| profiles.contains(p)));
        if !valid {
            let suggestion = r
                .rsplit_once("mig-")
                .map(|(_, p)| p.to_string())
                .filter(|p| profiles.contains(p))
                .map(|p| format!("nvidia.com/mig-{p}"))
                .unwrap_or_else(|| "nvidia.com/mig-<profile>".into());
            o.push("scheduling.mig", Severity::Error, r,
                format!("the NVIDIA device plugin has no resource {r}: with the {strategy} strategy it advertises {}", if strategy == "mixed" { "nvidia.com/gpu and nvidia.com/mig-<profile> (e.g. nvidia.com/mig-1g.10gb)" } else { "MIG devices as nvidia.com/gpu" }),
                &[("strategy", strategy.into())], format!("request {suggestion} (mixed strategy); pods asking for {r} stay Pending forever"));
        }
        if r.contains("mig") && !any_mig {
            o.push(
                "scheduling.mig",
                Severity::Error,
                r,
                "workloads request MIG devices but no node has MIG enabled",
                &[],
                "enable MIG with a layout on the shared queue's nodes",
            );
        }
    }
}

/// Whether every instance of a layout gets start slots within the memory slices, each profile
/// only at its allowed starts (a search over placements: first fit can miss one that exists).
fn place(layout: &[String], geo: &cluster_model::catalogue::MigGeometry) -> bool {
    let mut items: Vec<&cluster_model::catalogue::MigProfile> =
        layout.iter().filter_map(|p| geo.profiles.get(p)).collect();
    items.sort_by(|a, b| b.memory.cmp(&a.memory).then(b.compute.cmp(&a.compute)));
    fn go(items: &[&cluster_model::catalogue::MigProfile], used: &mut Vec<bool>) -> bool {
        let Some((p, rest)) = items.split_first() else {
            return true;
        };
        for &s in &p.starts {
            let range = s as usize..(s + p.memory) as usize;
            if range.end <= used.len() && used[range.clone()].iter().all(|u| !u) {
                used[range.clone()].iter_mut().for_each(|u| *u = true);
                if go(rest, used) {
                    return true;
                }
                used[range].iter_mut().for_each(|u| *u = false);
            }
        }
        false
    }
    go(&items, &mut vec![false; geo.memory_slices as usize])
}
