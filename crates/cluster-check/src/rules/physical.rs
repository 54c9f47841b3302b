//! The physical build: power (`electrical.*`: a node's draw against its PSUs, a rack's load
//! against its feeds) and space (`space.*`: chassis height, rack units).

use std::collections::BTreeMap;

use cluster_model::{Catalogue, Cluster, NodeGroup};

use super::report::{label, Out};
use crate::finding::Severity;

fn kw(w: f64) -> String {
    format!("{:.1}kW", w / 1000.0)
}

/// A node's maximum draw: CPUs, GPUs, DIMMs, drives and NICs at their maximum, plus the
/// chassis' own (fans, board, NVSwitch baseboard).
pub fn node_draw(g: &NodeGroup, cat: &Catalogue) -> f64 {
    let chassis = cat
        .chassis
        .get(&g.chassis)
        .map_or(0.0, |c| c.base_power.value);
    let cpu = cat.cpus.get(&g.cpus.model).map_or(0.0, |c| c.tdp.value) * g.cpus.count as f64;
    let gpu = g.gpus.as_ref().map_or(0.0, |x| {
        cat.gpus.get(&x.model).map_or(0.0, |m| m.tdp.value) * x.count as f64
    });
    let dimms = cat.power_model.dimm.value * g.memory.count as f64;
    let drives = cat.power_model.nvme.value * g.disks.iter().map(|d| d.count).sum::<u32>() as f64;
    let nics: f64 = g
        .nics
        .iter()
        .map(|n| cat.nics.get(&n.model).map_or(0.0, |m| m.power.value) * n.count as f64)
        .sum();
    chassis + cpu + gpu + dimms + drives + nics
}

fn redundant_psus(r: &str) -> Option<u32> {
    match r.trim() {
        "N" | "none" => Some(0),
        other => other
            .split_once('+')
            .and_then(|(_, b)| b.trim().parse().ok()),
    }
}

pub(super) fn electrical(c: &Cluster, cat: &Catalogue, o: &mut Out) {
    for g in &c.spec().nodes {
        let draw = node_draw(g, cat);
        let Some(spare) = redundant_psus(&g.psus.redundancy) else {
            o.push(
                "electrical.node-psu",
                Severity::Error,
                label(g),
                format!("PSU redundancy {:?} is not N or A+B", g.psus.redundancy),
                &[],
                "write it as 1+1, 2+2, N",
            );
            continue;
        };
        let working = g.psus.count.saturating_sub(spare);
        let usable = working as f64 * g.psus.capacity.value;
        let total = g.psus.count as f64 * g.psus.capacity.value;
        let nums = [
            ("node_max_draw", kw(draw)),
            (
                "psus",
                format!(
                    "{} x {} ({})",
                    g.psus.count, g.psus.capacity, g.psus.redundancy
                ),
            ),
            ("capacity_with_redundancy", kw(usable)),
            ("capacity_all_psus", kw(total)),
        ];
        if draw > total {
            o.push(
                "electrical.node-psu",
                Severity::Error,
                label(g),
                format!(
                    "a node can draw {} at full load but its PSUs deliver {} even with none failed",
                    kw(draw),
                    kw(total)
                ),
                &nums,
                format!(
                    "use PSUs that keep {} with {} failed (e.g. the chassis' own {})",
                    kw(draw),
                    spare,
                    cat.chassis
                        .get(&g.chassis)
                        .map_or("PSUs".into(), |x| x.psus.clone())
                ),
            );
        } else if draw > usable {
            o.push("electrical.node-psu", Severity::Error, label(g),
                format!("with {spare} PSU failed the node keeps {} for a {} draw: the redundancy does not hold", kw(usable), kw(draw)),
                &nums, "add PSUs or raise their capacity so the surviving PSUs carry the full draw");
        }
    }
    let mut loads: BTreeMap<String, f64> = BTreeMap::new();
    for n in &c.nodes {
        *loads.entry(n.rack.clone()).or_default() += node_draw(c.group(n), cat);
    }
    for r in &c.spec().racks {
        let load = loads.get(&r.name).copied().unwrap_or(0.0);
        let feed_w = |f: &cluster_model::Feed| {
            let phase = if f.phases == 3 { 3f64.sqrt() } else { 1.0 };
            phase * f.voltage.value * f.current.value * f.continuous_derating
        };
        let usable = if r.redundancy == "2N" {
            r.feeds.iter().map(feed_w).fold(f64::INFINITY, f64::min)
        } else {
            r.feeds.iter().map(feed_w).sum()
        };
        if !usable.is_finite() {
            continue;
        }
        let f0 = &r.feeds[0];
        let nums = [
            ("rack_max_load", kw(load)),
            (
                "feed",
                format!("{} phase {} {}", f0.phases, f0.voltage, f0.current),
            ),
            (
                "feed_continuous_capacity",
                format!(
                    "{} (= {}{} x {} x {:.0}%)",
                    kw(usable),
                    if f0.phases == 3 { "sqrt(3) x " } else { "" },
                    f0.voltage,
                    f0.current,
                    f0.continuous_derating * 100.0
                ),
            ),
            ("redundancy", r.redundancy.clone()),
            ("utilisation", format!("{:.0}%", load / usable * 100.0)),
        ];
        if load > usable {
            let per_rack = (usable
                / (load / c.nodes.iter().filter(|n| n.rack == r.name).count().max(1) as f64))
                .floor();
            o.push("electrical.rack-feed", Severity::Error, &r.name,
                format!("the rack can draw {} but one feed carries {} continuously; with {} redundancy a single feed must carry it all", kw(load), kw(usable), r.redundancy),
                &nums, format!("spread the load: at this draw a rack holds {per_rack:.0} such nodes, or provision feeds of at least {} each (e.g. 415 V 3-phase or more circuits)", kw(load)));
        } else if load > 0.9 * usable {
            o.push(
                "electrical.rack-feed",
                Severity::Warning,
                &r.name,
                format!(
                    "the rack runs at {:.0}% of one feed's continuous capacity",
                    load / usable * 100.0
                ),
                &nums,
                "keep headroom for inrush and growth (below 90%)",
            );
        }
    }
}

pub(super) fn space(c: &Cluster, cat: &Catalogue, o: &mut Out) {
    for g in &c.spec().nodes {
        if let (Some(stated), Some(ch)) = (g.units, cat.chassis.get(&g.chassis)) {
            if stated != ch.units {
                o.push(
                    "space.chassis-height",
                    Severity::Error,
                    label(g),
                    format!(
                        "the design gives these nodes {stated}U, but the named chassis ({}) is {}U",
                        ch.name, ch.units
                    ),
                    &[
                        ("stated_units", stated.to_string()),
                        ("chassis_units", ch.units.to_string()),
                    ],
                    format!(
                        "plan {}U per node, or name a {stated}U chassis that takes these parts",
                        ch.units
                    ),
                );
            }
        }
    }
    // Where the named chassis cannot take the parts, the height of one that can is what the
    // rack must hold.
    let fitting = |g: &NodeGroup| -> Option<&cluster_model::catalogue::Chassis> {
        let cpu = cat.cpus.get(&g.cpus.model)?;
        let gpu = g.gpus.as_ref().and_then(|x| cat.gpus.get(&x.model));
        cat.chassis.values().find(|ch| {
            ch.socket == cpu.socket
                && ch.sockets >= g.cpus.count
                && gpu
                    .is_none_or(|gp| ch.gpu_form_factor.as_deref() == Some(gp.form_factor.as_str()))
        })
    };
    for r in &c.spec().racks {
        let mut needed = r.reserved_units;
        let mut named_wrong = Vec::new();
        for n in c.nodes.iter().filter(|n| n.rack == r.name) {
            let g = c.group(n);
            let named = cat.chassis.get(&g.chassis);
            let fits = named.is_some_and(|ch| fitting(g).is_some_and(|f| f.name == ch.name));
            match (fits, fitting(g)) {
                (false, Some(f)) => {
                    needed += f.units;
                    named_wrong.push(f);
                }
                _ => needed += named.map_or(g.units.unwrap_or(1), |x| x.units),
            }
        }
        if let Some(f) = named_wrong.first() {
            if needed > r.units {
                o.push("space.rack-units", Severity::Error, &r.name,
                    format!("a chassis that takes these nodes' parts ({}, {}U) makes the rack need {needed}U of its {}U", f.name, f.units, r.units),
                    &[("units_needed", needed.to_string()), ("rack_units", r.units.to_string()), ("chassis_units", f.units.to_string())],
                    format!("at most {} such nodes per {}U rack: spread the nodes over more racks", (r.units.saturating_sub(r.reserved_units)) / f.units, r.units));
            }
        }
    }
    for r in &c.spec().racks {
        let mut used = r.reserved_units;
        let mut slots: Vec<(u32, u32, String)> = Vec::new();
        for n in c.nodes.iter().filter(|n| n.rack == r.name) {
            let g = c.group(n);
            let h = cat
                .chassis
                .get(&g.chassis)
                .map_or(g.units.unwrap_or(1), |x| x.units);
            used += h;
            slots.push((n.position, h, n.name.clone()));
        }
        let nums = [
            ("units_needed", used.to_string()),
            ("rack_units", r.units.to_string()),
            ("reserved", r.reserved_units.to_string()),
        ];
        if used > r.units {
            o.push("space.rack-units", Severity::Error, &r.name,
                format!("the rack's nodes need {used}U (chassis heights from the catalogue, plus {}U reserved) in a {}U rack", r.reserved_units, r.units),
                &nums, "move nodes to more racks");
        }
        slots.sort();
        // A stated height that differs from the chassis is reported above; overlaps that
        // follow from it would say the same again.
        let mismatch = c.nodes.iter().filter(|n| n.rack == r.name).any(|n| {
            let g = c.group(n);
            g.units
                .is_some_and(|u| cat.chassis.get(&g.chassis).is_some_and(|ch| ch.units != u))
        });
        for w in slots.windows(2).filter(|_| !mismatch) {
            if w[0].0 + w[0].1 > w[1].0 {
                o.push(
                    "space.rack-units",
                    Severity::Error,
                    &r.name,
                    format!(
                        "{} (U{}, {}U high) overlaps {} (U{})",
                        w[0].2, w[0].0, w[0].1, w[1].2, w[1].0
                    ),
                    &[],
                    "give each node positions that do not overlap",
                );
                break;
            }
        }
    }
}
