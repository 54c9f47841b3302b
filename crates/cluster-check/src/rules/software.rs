//! The software the cluster runs: control-plane quorum, Ceph, component versions and support,
//! replica counts, and the metric names monitoring reads.

use std::collections::BTreeSet;

use cluster_model::catalogue::version_cmp;
use cluster_model::{Catalogue, Cluster};

use super::report::Out;
use crate::finding::Severity;

pub(super) fn control_plane(c: &Cluster, o: &mut Out) {
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

pub(super) fn storage(c: &Cluster, o: &mut Out) {
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

pub(super) fn versions(c: &Cluster, cat: &Catalogue, today: &str, o: &mut Out) {
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

pub(super) fn operations(c: &Cluster, o: &mut Out) {
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

pub(super) fn monitoring(c: &Cluster, o: &mut Out) {
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
