//! `onyx cluster check`: the rules a careful platform engineer applies to a cluster design
//! before buying and wiring it. Each rule is a pure function of the cluster, the component
//! catalogue and the date; each finding carries its rule id, severity, the numbers it computed
//! and what would fix it.

#![forbid(unsafe_code)]

mod finding;
mod rules;

pub use finding::{Finding, Severity};

use cluster_model::{Catalogue, Cluster};

/// Every rule, in report order: (id, family, what it checks).
pub const RULES: &[(&str, &str, &str)] = &[
    (
        "electrical.node-psu",
        "electrical",
        "a node's maximum draw against its PSUs' capacity with the stated redundancy",
    ),
    (
        "electrical.rack-feed",
        "electrical",
        "a rack's load against one feed's continuous capacity (A/B), or all feeds (N)",
    ),
    (
        "space.chassis-height",
        "space",
        "the height the design gives a node against its chassis",
    ),
    (
        "space.rack-units",
        "space",
        "rack units used (catalogue heights, reserved units) against the rack, and overlaps",
    ),
    (
        "compat.cpu-socket",
        "compatibility",
        "CPU socket and count against the chassis and the CPU",
    ),
    (
        "compat.memory",
        "compatibility",
        "memory type, slots, channels and balanced population",
    ),
    (
        "compat.gpu-form-factor",
        "compatibility",
        "GPU form factor and count against the chassis",
    ),
    (
        "interconnect.nvlink",
        "interconnect",
        "NVLink generation, NVSwitch count and bandwidth against the GPU's platform",
    ),
    (
        "interconnect.nic",
        "interconnect",
        "NIC PCIe generation against the chassis, GPU-to-NIC ratio, RDMA over bonds",
    ),
    (
        "addressing.subnets",
        "addressing",
        "node addresses inside their subnets, capacity, duplicates, overlaps, VLANs, VIPs",
    ),
    (
        "ports.clash",
        "ports",
        "two services on one port of one node",
    ),
    (
        "ports.endpoints",
        "ports",
        "endpoint URLs against the service's port and TLS; well-known port conventions",
    ),
    (
        "control-plane.etcd",
        "control plane",
        "etcd quorum and what one failure does; API server standby",
    ),
    ("storage.ceph-mons", "storage", "Ceph MON quorum"),
    (
        "storage.ceph-pools",
        "storage",
        "replication and erasure coding against the failure domains that exist",
    ),
    (
        "versions.compatibility",
        "software versions",
        "version constraints between components, OS and kernel",
    ),
    (
        "versions.support",
        "software versions",
        "components past their end of life",
    ),
    (
        "scheduling.mig",
        "scheduling resources",
        "MIG layouts against the GPU's geometry; resource names against the device plugin's",
    ),
    (
        "operations.replicas",
        "operational settings",
        "replica counts against disruption budgets; leader-elected components scaled out",
    ),
    (
        "monitoring.metric-names",
        "monitoring",
        "metric names the design reads from an exporter against the names it exposes",
    ),
];

/// Check a cluster. `today` (YYYY-MM-DD) is an input, so the check is reproducible.
pub fn check(c: &Cluster, cat: &Catalogue, today: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    rules::all(c, cat, today, &mut out);
    out.sort_by_key(|f| {
        (
            RULES
                .iter()
                .position(|(id, _, _)| *id == f.rule)
                .unwrap_or(usize::MAX),
            f.severity,
        )
    });
    out
}

/// The report as `onyx cluster check -o text` prints it.
pub fn render_text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        s.push_str(&format!(
            "{} [{}] {}: {}\n",
            f.severity.as_str().to_uppercase(),
            f.rule,
            f.subject,
            f.message
        ));
        if !f.numbers.is_empty() {
            let nums: Vec<String> = f.numbers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s.push_str(&format!("    numbers: {}\n", nums.join(", ")));
        }
        if !f.fix.is_empty() {
            s.push_str(&format!("    fix: {}\n", f.fix));
        }
    }
    let count = |sev| findings.iter().filter(|f| f.severity == sev).count();
    s.push_str(&format!(
        "{} errors, {} warnings, {} info\n",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    ));
    s
}

/// `onyx cluster show`: racks → nodes → GPUs, and the totals.
pub fn inventory(c: &Cluster, cat: &Catalogue) -> String {
    let mut s = String::new();
    let (mut gpus, mut gpu_mem, mut mig, mut cores, mut mem, mut usable) =
        (0u32, 0f64, 0u32, 0u32, 0f64, 0f64);
    for r in &c.spec().racks {
        let feed = r.feeds.iter().map(|f| {
            let phase = if f.phases == 3 { 3f64.sqrt() } else { 1.0 };
            phase * f.voltage.value * f.current.value * f.continuous_derating
        });
        let rack_usable = if r.redundancy == "2N" {
            feed.fold(f64::INFINITY, f64::min)
        } else {
            feed.sum()
        };
        if rack_usable.is_finite() {
            usable += rack_usable;
        }
        s.push_str(&format!(
            "rack {} ({}U, {} feeds, {:.1} kW usable)\n",
            r.name,
            r.units,
            r.feeds.len(),
            rack_usable / 1000.0
        ));
        for n in c.nodes.iter().filter(|n| n.rack == r.name) {
            let g = c.group(n);
            let cpu = cat.cpus.get(&g.cpus.model);
            cores += cpu.map_or(0, |x| x.cores) * g.cpus.count;
            mem += g.memory.dimm.value * g.memory.count as f64;
            let gpu_text = match &g.gpus {
                Some(x) => {
                    let m = cat.gpus.get(&x.model);
                    gpus += x.count;
                    gpu_mem += m.map_or(0.0, |m| m.memory.value) * x.count as f64;
                    let slices = x
                        .mig
                        .as_ref()
                        .filter(|m| m.enabled)
                        .map_or(0, |m| m.layout.len() as u32)
                        * x.count;
                    mig += slices;
                    format!(
                        "{} x {}{}",
                        x.count,
                        m.map_or(x.model.as_str(), |m| m.name.as_str()),
                        if slices > 0 {
                            format!(" (MIG: {slices} instances)")
                        } else {
                            String::new()
                        }
                    )
                }
                None => "-".into(),
            };
            s.push_str(&format!(
                "  U{:<3} {:<14} {:<10} {:<3} x {:<24} {:>7} {}\n",
                n.position,
                n.name,
                g.role,
                g.cpus.count,
                cpu.map_or(g.cpus.model.as_str(), |x| x.name.as_str()),
                format!("{:.0}GB", g.memory.dimm.value * g.memory.count as f64 / 1e9),
                gpu_text
            ));
        }
    }
    s.push_str(&format!(
        "totals: {} nodes, {gpus} GPUs, {:.1} TB GPU memory, {mig} MIG instances, {cores} CPU cores, {:.1} TB memory, {:.1} kW usable power\n",
        c.nodes.len(),
        gpu_mem / 1e12,
        mem / 1e12,
        usable / 1000.0
    ));
    s
}
