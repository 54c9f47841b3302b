//! The parts inside a node: whether they fit together (`compat.*`: CPU socket, memory, GPU
//! form factor) and how they connect (`interconnect.*`: NVLink, NICs).

use cluster_model::{Catalogue, Cluster};

use super::report::{label, Out};
use crate::finding::Severity;

pub(super) fn compat(c: &Cluster, cat: &Catalogue, o: &mut Out) {
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

pub(super) fn interconnect(c: &Cluster, cat: &Catalogue, o: &mut Out) {
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
