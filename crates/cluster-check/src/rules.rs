//! The rules. Each pushes findings; none does I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use cluster_model::catalogue::version_cmp;
use cluster_model::{Catalogue, Cluster, NodeGroup};
use ipnet::Ipv4Net;

use crate::finding::{Finding, Severity};

struct Out<'a>(&'a mut Vec<Finding>);

impl Out<'_> {
    fn push(
        &mut self,
        rule: &'static str,
        severity: Severity,
        subject: impl Into<String>,
        message: impl Into<String>,
        numbers: &[(&str, String)],
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            rule,
            severity,
            subject: subject.into(),
            message: message.into(),
            numbers: numbers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            fix: fix.into(),
        });
    }
}

/// A node group as the report names it: `gpu-r1-01..gpu-r1-08`, or the node's name.
fn label(g: &NodeGroup) -> String {
    if g.count <= 1 {
        g.name.clone()
    } else {
        let w = g.count.to_string().len().max(2);
        format!("{}{:0w$}..{}{:0w$}", g.name, 1, g.name, g.count)
    }
}

fn kw(w: f64) -> String {
    format!("{:.1}kW", w / 1000.0)
}

pub fn all(c: &Cluster, cat: &Catalogue, today: &str, out: &mut Vec<Finding>) {
    let mut o = Out(out);
    electrical(c, cat, &mut o);
    space(c, cat, &mut o);
    compat(c, cat, &mut o);
    interconnect(c, cat, &mut o);
    addressing(c, &mut o);
    ports(c, &mut o);
    control_plane(c, &mut o);
    storage(c, &mut o);
    versions(c, cat, today, &mut o);
    scheduling(c, cat, &mut o);
    operations(c, &mut o);
    monitoring(c, &mut o);
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

fn electrical(c: &Cluster, cat: &Catalogue, o: &mut Out) {
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

fn space(c: &Cluster, cat: &Catalogue, o: &mut Out) {
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

fn compat(c: &Cluster, cat: &Catalogue, o: &mut Out) {
    for g in &c.spec().nodes {
        let (Some(ch), Some(cpu)) = (cat.chassis.get(&g.chassis), cat.cpus.get(&g.cpus.model))
        else {
            continue;
        };
        if cpu.socket != ch.socket {
            o.push(
                "compat.cpu-socket",
                Severity::Error,
                label(g),
                format!(
                    "{} uses socket {}, the chassis {} has {}",
                    cpu.name, cpu.socket, ch.name, ch.socket
                ),
                &[
                    ("cpu_socket", cpu.socket.clone()),
                    ("chassis_socket", ch.socket.clone()),
                ],
                format!(
                    "choose a {} chassis for this CPU, or a CPU for {}",
                    cpu.socket, ch.socket
                ),
            );
        }
        if g.cpus.count > ch.sockets || g.cpus.count > cpu.max_sockets {
            o.push(
                "compat.cpu-socket",
                Severity::Error,
                label(g),
                format!(
                    "{} CPUs, but the chassis has {} socket(s) and {} runs in at most {}",
                    g.cpus.count, ch.sockets, cpu.name, cpu.max_sockets
                ),
                &[
                    ("cpus", g.cpus.count.to_string()),
                    ("chassis_sockets", ch.sockets.to_string()),
                    ("cpu_max_sockets", cpu.max_sockets.to_string()),
                ],
                "match the CPU count to the board and the part",
            );
        }
        let m = &g.memory;
        let generation = |t: &str| t.split('-').next().unwrap_or("").to_string();
        let speed = |t: &str| {
            t.split('-')
                .nth(1)
                .and_then(|x| x.parse::<u32>().ok())
                .unwrap_or(0)
        };
        if generation(&m.kind) != generation(&cpu.memory_type)
            || generation(&m.kind) != generation(&ch.memory_type)
        {
            o.push(
                "compat.memory",
                Severity::Error,
                label(g),
                format!(
                    "{} DIMMs with a CPU for {} in a board for {}",
                    m.kind, cpu.memory_type, ch.memory_type
                ),
                &[
                    ("dimm_type", m.kind.clone()),
                    ("chassis_memory", ch.memory_type.clone()),
                    ("cpu_memory", cpu.memory_type.clone()),
                ],
                "use the memory generation both the CPU and the board support",
            );
        } else if speed(&m.kind) > speed(&cpu.memory_type) {
            o.push(
                "compat.memory",
                Severity::Warning,
                label(g),
                format!(
                    "{} DIMMs run at {} MT/s on {}",
                    m.kind,
                    speed(&cpu.memory_type),
                    cpu.name
                ),
                &[
                    ("dimm_speed", speed(&m.kind).to_string()),
                    ("cpu_speed", speed(&cpu.memory_type).to_string()),
                ],
                "plan bandwidth at the CPU's memory speed",
            );
        }
        if m.count > ch.dimm_slots {
            o.push(
                "compat.memory",
                Severity::Error,
                label(g),
                format!(
                    "{} DIMMs but the chassis has {} slots",
                    m.count, ch.dimm_slots
                ),
                &[
                    ("dimms", m.count.to_string()),
                    ("slots", ch.dimm_slots.to_string()),
                ],
                "use fewer, larger DIMMs",
            );
        }
        if let Some(stated) = m.channels_per_cpu {
            if stated != cpu.memory_channels {
                o.push(
                    "compat.memory",
                    Severity::Error,
                    label(g),
                    format!(
                        "the design assumes {stated} memory channels per CPU; {} has {}",
                        cpu.name, cpu.memory_channels
                    ),
                    &[
                        ("stated_channels", stated.to_string()),
                        ("cpu_channels", cpu.memory_channels.to_string()),
                    ],
                    format!("plan memory for {} channels per CPU", cpu.memory_channels),
                );
            }
        }
        let sockets = g.cpus.count.max(1);
        let per_cpu = m.count / sockets;
        if m.count % sockets != 0 || per_cpu % cpu.memory_channels != 0 {
            let total = m.dimm.value * m.count as f64;
            let situation = if per_cpu < cpu.memory_channels {
                format!("only {per_cpu} of {} channels per CPU are populated: peak memory bandwidth is {:.0}% of what the CPU has", cpu.memory_channels, per_cpu as f64 / cpu.memory_channels as f64 * 100.0)
            } else {
                format!("{per_cpu} DIMMs on {} channels per CPU: {} channels carry two DIMMs and {} carry one, so interleaving is uneven and the two-DIMM channels run at the lower 2-DIMM speed", cpu.memory_channels, per_cpu % cpu.memory_channels, cpu.memory_channels - per_cpu % cpu.memory_channels)
            };
            // The balanced populations nearest the design's total, with DIMM sizes that exist.
            let mut options: Vec<(f64, String)> = Vec::new();
            for dpc in 1..=2u32 {
                let n = cpu.memory_channels * sockets * dpc;
                if n > ch.dimm_slots {
                    continue;
                }
                for size in [16u32, 24, 32, 48, 64, 96, 128] {
                    let t = n as f64 * size as f64 * 1e9;
                    if t >= total * 0.74 {
                        options.push((t, format!("{n} x {size}GB = {:.0}GB", t / 1e9)));
                        break;
                    }
                }
            }
            options.sort_by(|a, b| {
                (a.0 - total)
                    .abs()
                    .partial_cmp(&(b.0 - total).abs())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let fix = match options.first() {
                Some((_, o)) => format!("populate every channel alike: e.g. {o} (one DIMM size, {} channels x {} CPU(s))", cpu.memory_channels, sockets),
                None => "populate every channel alike".into(),
            };
            o.push(
                "compat.memory",
                Severity::Warning,
                label(g),
                format!(
                    "{} x {} on {} x {}: {situation}",
                    m.count, m.dimm, sockets, cpu.name
                ),
                &[
                    ("dimms_per_cpu", per_cpu.to_string()),
                    ("channels_per_cpu", cpu.memory_channels.to_string()),
                    ("total", format!("{:.0}GB", total / 1e9)),
                ],
                fix,
            );
        }
        if let Some(gs) = &g.gpus {
            if let Some(gpu) = cat.gpus.get(&gs.model) {
                match &ch.gpu_form_factor {
                    Some(ff) if *ff != gpu.form_factor => o.push("compat.gpu-form-factor", Severity::Error, label(g),
                        format!("{} is an {} module; the chassis {} takes {} GPUs", gpu.name, gpu.form_factor.to_uppercase(), ch.name, ff.to_uppercase()),
                        &[("gpu_form_factor", gpu.form_factor.clone()), ("chassis_form_factor", ff.clone())],
                        format!("use an HGX {} chassis for {} (e.g. an 8U HGX 8-GPU system), or {} GPUs", gpu.form_factor.to_uppercase(), gpu.name, ff.to_uppercase())),
                    None => o.push("compat.gpu-form-factor", Severity::Error, label(g),
                        format!("the chassis {} takes no GPUs", ch.name), &[], "use a GPU chassis"),
                    _ => {}
                }
                if gs.count > ch.max_gpus {
                    o.push(
                        "compat.gpu-form-factor",
                        Severity::Error,
                        label(g),
                        format!("{} GPUs, the chassis holds {}", gs.count, ch.max_gpus),
                        &[
                            ("gpus", gs.count.to_string()),
                            ("chassis_max", ch.max_gpus.to_string()),
                        ],
                        "fewer GPUs per node or a larger chassis",
                    );
                }
            }
        }
    }
}

fn interconnect(c: &Cluster, cat: &Catalogue, o: &mut Out) {
    for g in &c.spec().nodes {
        let ch = cat.chassis.get(&g.chassis);
        if let Some(gs) = &g.gpus {
            if let (Some(gpu), Some(nv)) = (cat.gpus.get(&gs.model), &gs.nvlink) {
                if let Some(gen) = gpu.nvlink_generation {
                    if nv.generation != gen {
                        o.push(
                            "interconnect.nvlink",
                            Severity::Error,
                            label(g),
                            format!(
                                "{} has NVLink {gen}, the design says NVLink {}",
                                gpu.name, nv.generation
                            ),
                            &[
                                ("stated", nv.generation.to_string()),
                                ("gpu", gen.to_string()),
                            ],
                            format!("NVLink {gen}"),
                        );
                    }
                }
                if let Some(sw) = gpu.hgx_nvswitches {
                    if gs.count == 8 && nv.nvswitches != sw {
                        o.push("interconnect.nvlink", Severity::Warning, label(g),
                            format!("an 8-GPU {} baseboard (HGX) has {sw} NVSwitch chips; the design says {}", gpu.name, nv.nvswitches),
                            &[("stated_nvswitches", nv.nvswitches.to_string()), ("hgx_nvswitches", sw.to_string())],
                            format!("correct the design to {sw} NVSwitches (all-to-all {} per GPU)", gpu.nvlink_bandwidth.map(|b| b.to_string()).unwrap_or_default()));
                    }
                }
                if let (Some(stated), Some(real)) = (nv.bandwidth_per_gpu, gpu.nvlink_bandwidth) {
                    if (stated.value - real.value).abs() > 1e6 {
                        o.push(
                            "interconnect.nvlink",
                            Severity::Warning,
                            label(g),
                            format!(
                                "{} has {real} of NVLink per GPU; the design says {stated}",
                                gpu.name
                            ),
                            &[("stated", stated.to_string()), ("gpu", real.to_string())],
                            "use the GPU's figure",
                        );
                    }
                }
            }
            let fast: u32 = g
                .nics
                .iter()
                .filter(|n| {
                    cat.nics
                        .get(&n.model)
                        .is_some_and(|m| m.speed.value >= 2e11)
                })
                .map(|n| n.count)
                .sum();
            if gs.count > 0 && fast > 0 && gs.count > 2 * fast {
                let per_gpu = g
                    .nics
                    .iter()
                    .filter_map(|n| {
                        cat.nics
                            .get(&n.model)
                            .map(|m| m.speed.value * m.ports as f64 * n.count as f64)
                    })
                    .sum::<f64>()
                    / gs.count as f64;
                o.push("interconnect.nic", Severity::Warning, label(g),
                    format!("{} GPUs share {fast} high-speed NICs: {:.0} Gbps of network per GPU for inter-node collectives (GPUDirect RDMA wants one NIC per GPU or per GPU pair on the same PCIe switch)", gs.count, per_gpu / 1e9),
                    &[("gpus", gs.count.to_string()), ("nics", fast.to_string()), ("gbps_per_gpu", format!("{:.0}", per_gpu / 1e9))],
                    "for multi-node training, one 400G NIC per GPU (8 per node, rail-optimised) is the usual HGX design; with 2 NICs expect inter-node all-reduce bound at 1/4 of that");
            }
        }
        for n in &g.nics {
            let Some(m) = cat.nics.get(&n.model) else {
                continue;
            };
            if let Some(ch) = ch {
                if ch.pcie_generation > 0 && m.pcie_generation > ch.pcie_generation {
                    let lane =
                        [0.0, 2.0, 4.0, 7.88, 15.75, 31.5][ch.pcie_generation.min(5) as usize];
                    o.push("interconnect.nic", Severity::Warning, label(g),
                        format!("{} needs PCIe Gen{}; the chassis has Gen{}: a x16 slot carries about {:.0} Gbps, less than the NIC's {}", m.name, m.pcie_generation, ch.pcie_generation, lane * 16.0, m.speed),
                        &[("nic_pcie", m.pcie_generation.to_string()), ("chassis_pcie", ch.pcie_generation.to_string())],
                        "a PCIe Gen5 platform for 400G NICs");
                }
            }
            let rdma = n.networks.iter().any(|net| {
                c.spec()
                    .networks
                    .iter()
                    .any(|x| x.name == *net && x.purpose == "rdma")
            });
            if rdma && n.bond.as_deref() == Some("lacp") && n.count > 1 {
                o.push("interconnect.nic", Severity::Warning, label(g),
                    format!("{} x {} in an LACP bond on an RDMA network: a RoCE queue pair uses one member link, so one flow gets {}, not {}; NCCL uses the ports as separate rails when it sees them", n.count, m.speed, m.speed, gbps(m.speed.value * n.count as f64)),
                    &[("links", n.count.to_string()), ("per_link", m.speed.to_string())],
                    "give each NIC its own address on the data network (no bond) and let NCCL use both rails; keep LACP for TCP traffic");
            }
        }
    }
}

fn gbps(v: f64) -> String {
    format!("{:.0}Gbps", v / 1e9)
}

fn addressing(c: &Cluster, o: &mut Out) {
    let nets: Vec<(&cluster_model::Network, Ipv4Net)> = c
        .spec()
        .networks
        .iter()
        .filter_map(|n| n.cidr.parse().ok().map(|x| (n, x)))
        .collect();
    for (i, (a, na)) in nets.iter().enumerate() {
        for (b, nb) in &nets[i + 1..] {
            if na.contains(&nb.network()) || nb.contains(&na.network()) {
                o.push(
                    "addressing.subnets",
                    Severity::Error,
                    format!("{}/{}", a.name, b.name),
                    format!("{} and {} overlap", a.cidr, b.cidr),
                    &[],
                    "give each network its own range",
                );
            }
            if a.vlan.is_some() && a.vlan == b.vlan {
                o.push(
                    "addressing.subnets",
                    Severity::Error,
                    format!("{}/{}", a.name, b.name),
                    format!("both use VLAN {}", a.vlan.unwrap_or(0)),
                    &[],
                    "one VLAN per network",
                );
            }
        }
    }
    let mut used: HashMap<Ipv4Addr, String> = HashMap::new();
    for (net, cidr) in &nets {
        let hosts = (cidr.hosts().count()) as u64;
        let mut count = 0u64;
        for n in &c.nodes {
            if let Some(a) = n.addresses.get(&net.name) {
                count += 1;
                if !cidr.contains(a) || *a == cidr.network() || *a == cidr.broadcast() {
                    o.push(
                        "addressing.subnets",
                        Severity::Error,
                        &n.name,
                        format!(
                            "address {a} is not a host address of {} ({})",
                            net.name, net.cidr
                        ),
                        &[],
                        "renumber the node group",
                    );
                }
                if let Some(prev) = used.insert(*a, n.name.clone()) {
                    o.push(
                        "addressing.subnets",
                        Severity::Error,
                        &n.name,
                        format!("address {a} is also {prev}'s"),
                        &[],
                        "renumber",
                    );
                }
            }
            if let Some(b) = n.bmc {
                if cidr.contains(&b) {
                    count += 1;
                    if let Some(prev) = used.insert(b, format!("{} (BMC)", n.name)) {
                        o.push(
                            "addressing.subnets",
                            Severity::Error,
                            &n.name,
                            format!("BMC address {b} is also {prev}'s"),
                            &[],
                            "renumber the BMCs",
                        );
                    }
                }
            }
        }
        for r in &net.reserved {
            if let Ok(a) = r.parse::<Ipv4Addr>() {
                count += 1;
                if !cidr.contains(&a) {
                    o.push(
                        "addressing.subnets",
                        Severity::Error,
                        &net.name,
                        format!("reserved address {a} is outside {}", net.cidr),
                        &[],
                        "pick one inside the subnet",
                    );
                } else if let Some(prev) = used.insert(a, format!("{} reserved", net.name)) {
                    o.push(
                        "addressing.subnets",
                        Severity::Error,
                        &net.name,
                        format!("reserved address {a} is also {prev}'s"),
                        &[],
                        "renumber",
                    );
                }
            }
        }
        if count > hosts {
            o.push(
                "addressing.subnets",
                Severity::Error,
                &net.name,
                format!("{count} addresses needed, {} has {hosts}", net.cidr),
                &[("needed", count.to_string()), ("hosts", hosts.to_string())],
                "a larger prefix",
            );
        }
    }
    if let Some(cp) = &c.spec().control_plane {
        if let Some(vip) = cp.vip.as_deref().and_then(|v| v.parse::<Ipv4Addr>().ok()) {
            let inside = nets
                .iter()
                .any(|(n, cidr)| cidr.contains(&vip) && n.purpose == "management");
            if !inside {
                o.push(
                    "addressing.subnets",
                    Severity::Error,
                    "controlPlane.vip",
                    format!("the VIP {vip} is not in the management network"),
                    &[],
                    "a free address of the management subnet",
                );
            }
            if let Some(owner) = c
                .nodes
                .iter()
                .find(|n| n.addresses.values().any(|a| *a == vip) || n.bmc == Some(vip))
            {
                o.push(
                    "addressing.subnets",
                    Severity::Error,
                    "controlPlane.vip",
                    format!("the VIP {vip} is {}'s address", owner.name),
                    &[],
                    "a free address for the VIP",
                );
            }
        }
    }
}

fn ports(c: &Cluster, o: &mut Out) {
    let svcs = &c.spec().services;
    // (node, protocol, port) -> (service, bound address) of each listener.
    type Listeners<'a> = BTreeMap<(String, String, u16), Vec<(&'a str, Option<&'a str>)>>;
    let mut on_node: Listeners = BTreeMap::new();
    for s in svcs {
        for n in c.select(&s.nodes) {
            for p in s.port..=s.port_end.unwrap_or(s.port) {
                on_node
                    .entry((n.name.clone(), s.protocol.clone(), p))
                    .or_default()
                    .push((&s.name, s.address.as_deref()));
            }
        }
    }
    let mut reported: BTreeSet<(String, String, u16)> = BTreeSet::new();
    for ((node, proto, port), users) in &on_node {
        if users.len() < 2 {
            continue;
        }
        // Two listeners clash unless both bind distinct specific addresses.
        let wildcard = users.iter().any(|(_, a)| a.is_none());
        let distinct: BTreeSet<_> = users.iter().filter_map(|(_, a)| *a).collect();
        if !wildcard && distinct.len() == users.len() {
            continue;
        }
        let names: Vec<&str> = users.iter().map(|(n, _)| *n).collect();
        let key = (names.join("+"), proto.clone(), *port);
        if !reported.insert(key) {
            continue;
        }
        let nodes: Vec<&String> = on_node
            .iter()
            .filter(|((_, p2, pt), u)| p2 == proto && pt == port && u.len() > 1)
            .map(|((n, _, _), _)| n)
            .collect();
        o.push("ports.clash", Severity::Error, format!("{port}/{proto}"),
            format!("{} both listen on {port}/{proto} on {} ({} node(s)); a service bound to all addresses takes the port from one bound to a VIP", names.join(" and "), node, nodes.len()),
            &[("port", port.to_string()), ("nodes", nodes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","))],
            "move the load balancer's frontend to another port (kubeadm's HA guide uses 8443 for a co-located HAProxy) or bind the API server to the node address only");
    }
    for s in svcs {
        for e in &s.endpoints {
            let (scheme, rest) = e.split_once("://").unwrap_or(("", e));
            let hostport = rest.split('/').next().unwrap_or("");
            let port = hostport
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            if scheme == "https" && !s.tls {
                o.push(
                    "ports.endpoints",
                    Severity::Error,
                    &s.name,
                    format!("clients are given {e} (TLS) but the service is not TLS"),
                    &[],
                    "terminate TLS for it",
                );
            }
            if port != s.port && s.port_end.is_none() && s.address.is_none() && !s.nodes.is_empty()
            {
                o.push("ports.endpoints", Severity::Warning, &s.name,
                    format!("clients are given {e} (port {port}) but {} listens on {}; nothing in the design forwards {port} to {}", s.name, s.port, s.port),
                    &[("endpoint_port", port.to_string()), ("service_port", s.port.to_string())],
                    format!("put a TLS-terminating proxy or ingress on {port} in front of it, or give clients :{}", s.port));
            }
        }
        if s.name.contains("rgw") && s.port == 7480 && s.tls {
            o.push("ports.endpoints", Severity::Warning, &s.name, "7480 is the Ceph RADOS Gateway's plain-HTTP port (Beast frontend default); HTTPS on it is unusual and easy to misconfigure", &[("port", "7480".into())],
                "serve HTTPS on 443 (or 7443: `rgw_frontends = beast port=7480 ssl_port=443 ...`) and keep 7480 for HTTP inside the cluster");
        }
        if s.name.contains("ceph-mon") && s.port == 6789 && !svcs.iter().any(|x| x.port == 3300) {
            o.push("ports.endpoints", Severity::Warning, &s.name, "Ceph MONs listen on 3300 (msgr2, the default protocol since Nautilus, the only encrypted one) as well as 6789 (msgr1); the design opens only 6789", &[],
                "open 3300/TCP on the MON hosts too and use msgr2 (`ms_bind_msgr2 = true`, the default)");
        }
    }
}

fn control_plane(c: &Cluster, o: &mut Out) {
    let Some(cp) = &c.spec().control_plane else {
        return;
    };
    let etcd = c.select(&cp.etcd).len() as u32;
    let quorum = etcd / 2 + 1;
    let tolerated = etcd.saturating_sub(quorum);
    let nums = [
        ("etcd_members", etcd.to_string()),
        ("quorum", quorum.to_string()),
        ("failures_tolerated", tolerated.to_string()),
    ];
    if tolerated == 0 {
        let failover = cp.failover_seconds.map(|s| format!(" The promised {s} s failover cannot happen: a standby without an etcd member has no cluster state to serve.")).unwrap_or_default();
        o.push("control-plane.etcd", Severity::Error, "etcd",
            format!("{etcd} etcd member(s): quorum is {quorum}, so losing one member stops the Kubernetes API (no writes, no scheduling, no failover).{failover}"),
            &nums, "run 3 (or 5) etcd members on 3 control-plane nodes, each with an API server behind the VIP");
    } else if etcd.is_multiple_of(2) {
        o.push(
            "control-plane.etcd",
            Severity::Warning,
            "etcd",
            format!(
                "{etcd} etcd members tolerate {tolerated} failure(s), no more than {} would",
                etcd - 1
            ),
            &nums,
            "an odd number of members",
        );
    }
    let api = c.select(&cp.api_servers).len();
    if api < 2 {
        o.push(
            "control-plane.etcd",
            Severity::Error,
            "kube-apiserver",
            format!("{api} API server(s): the VIP has nothing to fail over to"),
            &[("api_servers", api.to_string())],
            "an API server on every control-plane node (active-active behind HAProxy)",
        );
    }
}

fn storage(c: &Cluster, o: &mut Out) {
    let Some(st) = &c.spec().storage else { return };
    let ceph = &st.ceph;
    let mons = c.select(&ceph.mons).len() as u32;
    let q = mons / 2 + 1;
    let nums = [
        ("mons", mons.to_string()),
        ("quorum", q.to_string()),
        ("failures_tolerated", mons.saturating_sub(q).to_string()),
    ];
    if mons < 3 {
        o.push(
            "storage.ceph-mons",
            Severity::Error,
            "ceph",
            format!("{mons} MON(s): losing one stops the cluster"),
            &nums,
            "3 MONs on 3 hosts",
        );
    } else if mons.is_multiple_of(2) {
        o.push(
            "storage.ceph-mons",
            Severity::Warning,
            "ceph",
            format!("{mons} MONs tolerate no more failures than {}", mons - 1),
            &nums,
            "an odd number of MONs",
        );
    }
    let hosts: Vec<&cluster_model::Node> = c.select(&ceph.osd_hosts);
    let racks: BTreeSet<&str> = hosts.iter().map(|h| h.rack.as_str()).collect();
    let osds = hosts.len() as u32 * ceph.osds_per_host;
    for p in &ceph.pools {
        let domains = match p.failure_domain.as_str() {
            "host" => hosts.len() as u32,
            "rack" => racks.len() as u32,
            _ => osds,
        };
        let (width, label) = if p.kind == "erasure" {
            let (k, m) = (p.k.unwrap_or(0), p.m.unwrap_or(0));
            (k + m, format!("erasure coding k={k}, m={m}"))
        } else {
            (
                p.size.unwrap_or(3),
                format!("{}x replication", p.size.unwrap_or(3)),
            )
        };
        let nums = [
            ("placement_width", width.to_string()),
            ("failure_domain", p.failure_domain.clone()),
            ("domains_available", domains.to_string()),
            ("osd_hosts", hosts.len().to_string()),
        ];
        if width > domains {
            o.push("storage.ceph-pools", Severity::Error, &p.name,
                format!("{label} places {width} chunks in {width} different {}s, but only {domains} {}(s) carry OSDs: placement groups stay undersized and degraded from day one, and the pool is not as durable as designed", p.failure_domain, p.failure_domain),
                &nums, format!("at least {width} OSD hosts (the GPU nodes' NVMe, or more storage nodes), or a rule that fits {domains} {}s", p.failure_domain));
            continue;
        }
        if p.kind != "erasure" {
            let size = p.size.unwrap_or(3);
            let min = p.min_size.unwrap_or(size - size / 2);
            if domains < size + 1 && size >= 3 {
                o.push("storage.ceph-pools", Severity::Info, &p.name, format!("{size} replicas on exactly {domains} {}s: after one {} fails Ceph cannot re-create the third copy until it is back", p.failure_domain, p.failure_domain), &nums, "one spare failure domain lets Ceph heal itself");
            }
            if min < 2 {
                o.push(
                    "storage.ceph-pools",
                    Severity::Warning,
                    &p.name,
                    format!("min_size {min} accepts writes with a single copy"),
                    &nums,
                    "min_size 2",
                );
            }
        }
    }
}

fn versions(c: &Cluster, cat: &Catalogue, today: &str, o: &mut Out) {
    let v = &c.spec().versions;
    for k in &cat.constraints {
        let Some(have) = v.get(&k.component) else {
            continue;
        };
        if version_cmp(have, &k.version) != std::cmp::Ordering::Equal && have != &k.version {
            continue;
        }
        if k.other == "date" {
            if let Some(max) = &k.max {
                if today > max.as_str() {
                    o.push(
                        "versions.support",
                        Severity::Warning,
                        format!("{} {have}", k.component),
                        format!("{} (today is {today})", k.why),
                        &[("end_of_life", max.clone())],
                        format!("upgrade {} to a supported release", k.component),
                    );
                }
            }
            continue;
        }
        let Some(other) = v.get(&k.other) else {
            continue;
        };
        let bad_one_of = !k.one_of.is_empty()
            && !k
                .one_of
                .iter()
                .any(|x| version_cmp(other, x) == std::cmp::Ordering::Equal);
        let below = k
            .min
            .as_ref()
            .is_some_and(|m| version_cmp(other, m) == std::cmp::Ordering::Less);
        let above = k
            .max
            .as_ref()
            .is_some_and(|m| version_cmp(other, m) == std::cmp::Ordering::Greater);
        if bad_one_of || below || above {
            let range = if !k.one_of.is_empty() {
                k.one_of.join(" or ")
            } else {
                format!(
                    "{}..{}",
                    k.min.clone().unwrap_or_default(),
                    k.max.clone().unwrap_or_default()
                )
            };
            o.push(
                "versions.compatibility",
                Severity::Error,
                format!("{} {have} / {} {other}", k.component, k.other),
                format!(
                    "{} {have} needs {} {range}; the design has {other}. {}",
                    k.component, k.other, k.why
                ),
                &[("have", other.clone()), ("supported", range.clone())],
                format!("use {} {range} (source: {})", k.other, k.source),
            );
        }
    }
}

fn scheduling(c: &Cluster, cat: &Catalogue, o: &mut Out) {
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

fn operations(c: &Cluster, o: &mut Out) {
    for comp in &c.spec().components {
        if let Some(min) = comp.pdb_min_available {
            if min >= comp.replicas {
                o.push("operations.replicas", Severity::Error, &comp.name,
                    format!("PodDisruptionBudget minAvailable={min} with {} replica(s): no replica may ever be evicted, so `kubectl drain` of a node running one blocks (the monthly maintenance drains every GPU node)", comp.replicas),
                    &[("replicas", comp.replicas.to_string()), ("min_available", min.to_string())],
                    format!("minAvailable={} (or maxUnavailable=1), or more replicas than minAvailable", comp.replicas.saturating_sub(1).max(1)));
            }
        }
        if comp.leader_elected
            && (comp.max_replicas.unwrap_or(comp.replicas) > 2 || comp.max_replicas.is_some())
        {
            o.push("operations.replicas", Severity::Warning, &comp.name,
                format!("{} is leader-elected: one replica works, the others wait; scaling it to {} replicas (HPA) adds no throughput", comp.name, comp.max_replicas.unwrap_or(comp.replicas)),
                &[("replicas", comp.replicas.to_string()), ("max_replicas", comp.max_replicas.unwrap_or(comp.replicas).to_string())],
                "2 replicas (one standby) without an HPA; scale with the controller's worker settings instead");
        }
    }
}

/// DCGM exporter 1.x's metric names and the names dcgm-exporter 2.x and later (NVIDIA's
/// current exporter, the one the GPU operator deploys) exposes for the same field.
const DCGM_RENAMED: &[(&str, &str)] = &[
    ("dcgm_gpu_utilization", "DCGM_FI_DEV_GPU_UTIL"),
    ("dcgm_fb_used", "DCGM_FI_DEV_FB_USED"),
    ("dcgm_fb_free", "DCGM_FI_DEV_FB_FREE"),
    ("dcgm_gpu_temp", "DCGM_FI_DEV_GPU_TEMP"),
    ("dcgm_power_usage", "DCGM_FI_DEV_POWER_USAGE"),
    ("dcgm_mem_copy_utilization", "DCGM_FI_DEV_MEM_COPY_UTIL"),
    ("dcgm_sm_clock", "DCGM_FI_DEV_SM_CLOCK"),
    ("dcgm_memory_clock", "DCGM_FI_DEV_MEM_CLOCK"),
];

fn monitoring(c: &Cluster, o: &mut Out) {
    for s in c.spec().services.iter().filter(|s| s.name.contains("dcgm")) {
        for m in &s.metrics {
            if let Some((old, new)) = DCGM_RENAMED.iter().find(|(old, _)| old == m) {
                o.push(
                    "monitoring.metric-names",
                    Severity::Warning,
                    &s.name,
                    format!("{old} is DCGM exporter 1.x's name; dcgm-exporter 2.x and later (and onyx server's /metrics) expose it as {new}, so dashboards and alerts written with {old} find no data"),
                    &[("old", old.to_string()), ("new", new.to_string())],
                    format!("query {new} (deploy/grafana and deploy/prometheus use the current names)"),
                );
            }
        }
    }
}
