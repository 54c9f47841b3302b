//! Every rule on a small cluster that passes it and on one that breaks it.

use cluster_check::{check, Finding, Severity, RULES};
use cluster_model::Catalogue;
use serde_json::{json, Value};

/// A small cluster that passes every rule: two HGX H100 nodes, three management nodes, four
/// storage nodes.
fn base() -> Value {
    json!({
        "apiVersion": "onyx.dev/v1", "kind": "Cluster", "metadata": {"name": "small"},
        "spec": {
            "racks": [
                {"name": "G1", "units": 42, "redundancy": "2N",
                 "feeds": [{"name": "A", "phases": 3, "voltage": "415V", "current": "80A"},
                           {"name": "B", "phases": 3, "voltage": "415V", "current": "80A"}]},
                {"name": "M1", "units": 42, "redundancy": "2N",
                 "feeds": [{"name": "A", "phases": 3, "voltage": "208V", "current": "50A"},
                           {"name": "B", "phases": 3, "voltage": "208V", "current": "50A"}]}
            ],
            "nodes": [
                {"name": "gpu-", "count": 2, "role": "gpu", "rack": "G1", "position": 1,
                 "chassis": "supermicro-as-8125gs-tnhr",
                 "cpus": {"model": "amd-epyc-9654", "count": 2},
                 "memory": {"dimm": "48GB", "count": 24, "type": "DDR5-4800", "channelsPerCpu": 12},
                 "gpus": {"model": "nvidia-h100-sxm5-80gb", "count": 8,
                          "nvlink": {"generation": 4, "nvswitches": 4, "bandwidthPerGpu": "7.2Tbps"},
                          "mig": {"enabled": true, "layout": ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]}},
                 "disks": [{"count": 2, "size": "7.68TB", "kind": "nvme-u2"}],
                 "nics": [{"model": "nvidia-connectx-7-400g", "count": 8, "networks": ["data"]}],
                 "psus": {"count": 6, "capacity": "3000W", "redundancy": "3+3"},
                 "addresses": {"management": "10.0.0.21", "data": "10.1.0.21"}, "bmc": "10.0.0.121"},
                {"name": "mgmt-", "count": 3, "role": "management", "rack": "M1", "position": 1,
                 "chassis": "supermicro-sys-221h-tnr",
                 "cpus": {"model": "intel-xeon-gold-6430", "count": 1},
                 "memory": {"dimm": "32GB", "count": 8, "type": "DDR5-4400"},
                 "psus": {"count": 2, "capacity": "1600W", "redundancy": "1+1"},
                 "addresses": {"management": "10.0.0.11"}},
                {"name": "stor-", "count": 4, "role": "storage", "rack": "M1", "position": 10,
                 "chassis": "supermicro-as-2115hs-tnr",
                 "cpus": {"model": "amd-epyc-9354p", "count": 1},
                 "memory": {"dimm": "48GB", "count": 12, "type": "DDR5-4800"},
                 "psus": {"count": 2, "capacity": "1600W", "redundancy": "1+1"},
                 "addresses": {"management": "10.0.0.15"}}
            ],
            "networks": [
                {"name": "management", "cidr": "10.0.0.0/24", "vlan": 30, "purpose": "management", "reserved": ["10.0.0.10"]},
                {"name": "data", "cidr": "10.1.0.0/24", "vlan": 40, "purpose": "rdma"}
            ],
            "services": [
                {"name": "kube-apiserver", "port": 6443, "protocol": "TCP", "tls": true, "nodes": ["management"]},
                {"name": "haproxy", "port": 8443, "protocol": "TCP", "tls": true, "nodes": ["management"], "address": "10.0.0.10"},
                {"name": "ceph-rgw", "port": 443, "protocol": "TCP", "tls": true, "nodes": ["storage"], "endpoints": ["https://rgw.example"]},
                {"name": "ceph-mon", "port": 6789, "protocol": "TCP", "nodes": ["mgmt-01"]},
                {"name": "ceph-mon-v2", "port": 3300, "protocol": "TCP", "nodes": ["mgmt-01"]}
            ],
            "controlPlane": {"apiServers": ["management"], "etcd": ["management"], "vip": "10.0.0.10"},
            "storage": {"ceph": {"mons": ["mgmt-01", "mgmt-02", "mgmt-03"], "osdHosts": ["storage"], "osdsPerHost": 4,
                "pools": [{"name": "rbd", "type": "replicated", "size": 3, "minSize": 2, "failureDomain": "host"},
                          {"name": "ec", "type": "erasure", "k": 2, "m": 1, "failureDomain": "host"}]}},
            "versions": {"os": "rocky-9.3", "kernel": "5.14", "kubernetes": "1.28", "volcano": "1.7"},
            "scheduling": {"migStrategy": "mixed", "resources": ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]},
            "components": [{"name": "workflow-controller", "replicas": 2, "leaderElected": true, "pdbMinAvailable": 1}]
        }
    })
}

fn findings(v: &Value) -> Vec<Finding> {
    let cat = Catalogue::builtin();
    let c = cluster_model::load("small.yaml", &v.to_string(), &cat).unwrap_or_else(|e| {
        panic!(
            "{}",
            e.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    check(&c, &cat, "2026-11-29")
}

fn breaks(rule: &str, severity: Severity, change: impl Fn(&mut Value), says: &str) {
    let ok = findings(&base());
    assert!(
        ok.iter().all(|f| f.rule != rule),
        "the base cluster should pass {rule}: {ok:?}"
    );
    let mut v = base();
    change(&mut v);
    let got = findings(&v);
    let hit = got
        .iter()
        .find(|f| f.rule == rule && f.severity == severity && f.message.contains(says));
    assert!(
        hit.is_some(),
        "{rule} should say {says:?} ({severity:?}); got {got:#?}"
    );
    assert!(
        !hit.unwrap().fix.is_empty(),
        "every finding says what would fix it"
    );
}

fn node(v: &mut Value, i: usize) -> &mut Value {
    &mut v["spec"]["nodes"][i]
}

#[test]
fn the_base_cluster_is_clean() {
    let f = findings(&base());
    assert!(f.is_empty(), "{f:#?}");
}

#[test]
fn electrical() {
    breaks(
        "electrical.node-psu",
        Severity::Error,
        |v| node(v, 0)["psus"] = json!({"count": 2, "capacity": "2kW", "redundancy": "1+1"}),
        "even with none failed",
    );
    breaks(
        "electrical.node-psu",
        Severity::Error,
        |v| node(v, 0)["psus"] = json!({"count": 4, "capacity": "3kW", "redundancy": "2+2"}),
        "the redundancy does not hold",
    );
    breaks(
        "electrical.rack-feed",
        Severity::Error,
        |v| node(v, 0)["count"] = json!(6),
        "one feed carries 46.0kW",
    );
    breaks(
        "electrical.rack-feed",
        Severity::Warning,
        |v| {
            for f in v["spec"]["racks"][0]["feeds"].as_array_mut().unwrap() {
                f["current"] = json!("30A");
            }
        },
        "of one feed's continuous capacity",
    );
}

#[test]
fn space() {
    breaks(
        "space.chassis-height",
        Severity::Error,
        |v| node(v, 0)["units"] = json!(2),
        "is 8U",
    );
    breaks(
        "space.rack-units",
        Severity::Error,
        |v| v["spec"]["racks"][0]["units"] = json!(12),
        "need 16U",
    );
    breaks(
        "space.rack-units",
        Severity::Error,
        |v| node(v, 2)["position"] = json!(5),
        "overlaps",
    );
    breaks(
        "space.rack-units",
        Severity::Error,
        |v| {
            node(v, 0)["chassis"] = json!("supermicro-as-4124gs-tnr");
            v["spec"]["racks"][0]["units"] = json!(12);
        },
        "makes the rack need 16U of its 12U",
    );
}

#[test]
fn compatibility() {
    breaks(
        "compat.cpu-socket",
        Severity::Error,
        |v| node(v, 0)["cpus"]["model"] = json!("amd-epyc-7763"),
        "uses socket SP3",
    );
    breaks(
        "compat.cpu-socket",
        Severity::Error,
        |v| node(v, 2)["cpus"]["count"] = json!(2),
        "runs in at most 1",
    );
    breaks(
        "compat.memory",
        Severity::Error,
        |v| node(v, 0)["memory"]["type"] = json!("DDR4-3200"),
        "DDR4-3200 DIMMs",
    );
    breaks(
        "compat.memory",
        Severity::Error,
        |v| node(v, 0)["memory"]["channelsPerCpu"] = json!(8),
        "has 12",
    );
    breaks(
        "compat.memory",
        Severity::Warning,
        |v| node(v, 0)["memory"]["count"] = json!(16),
        "only 8 of 12 channels",
    );
    breaks(
        "compat.memory",
        Severity::Error,
        |v| node(v, 1)["memory"]["count"] = json!(40),
        "slots",
    );
    breaks(
        "compat.gpu-form-factor",
        Severity::Error,
        |v| node(v, 0)["gpus"]["model"] = json!("nvidia-h100-pcie-80gb"),
        "is an PCIE module",
    );
    breaks(
        "compat.gpu-form-factor",
        Severity::Error,
        |v| node(v, 0)["gpus"]["count"] = json!(10),
        "the chassis holds 8",
    );
}

#[test]
fn interconnect() {
    breaks(
        "interconnect.nvlink",
        Severity::Warning,
        |v| node(v, 0)["gpus"]["nvlink"]["nvswitches"] = json!(3),
        "has 4 NVSwitch chips",
    );
    breaks(
        "interconnect.nvlink",
        Severity::Error,
        |v| node(v, 0)["gpus"]["nvlink"]["generation"] = json!(3),
        "has NVLink 4",
    );
    breaks(
        "interconnect.nic",
        Severity::Warning,
        |v| node(v, 0)["nics"][0]["count"] = json!(2),
        "100 Gbps of network per GPU",
    );
    breaks(
        "interconnect.nic",
        Severity::Warning,
        |v| node(v, 0)["nics"][0]["bond"] = json!("lacp"),
        "RoCE queue pair uses one member link",
    );
    breaks(
        "interconnect.nic",
        Severity::Warning,
        |v| {
            node(v, 1)["nics"] = json!([{"model": "nvidia-connectx-7-400g", "count": 1}]);
            node(v, 1)["chassis"] = json!("supermicro-sys-221h-tnr");
            v["spec"]["nodes"][1]["chassis"] = json!("supermicro-sys-221h-tnr");
            // The management chassis is Gen5; a Gen4 board: the storage chassis swapped for the 4124.
            node(v, 0)["chassis"] = json!("supermicro-as-4124gs-tnr");
        },
        "needs PCIe Gen5",
    );
}

#[test]
fn addressing() {
    breaks(
        "addressing.subnets",
        Severity::Error,
        |v| node(v, 1)["addresses"]["management"] = json!("10.0.1.11"),
        "is not a host address of management",
    );
    breaks(
        "addressing.subnets",
        Severity::Error,
        |v| node(v, 2)["addresses"]["management"] = json!("10.0.0.12"),
        "is also mgmt-02's",
    );
    breaks(
        "addressing.subnets",
        Severity::Error,
        |v| v["spec"]["networks"][1]["cidr"] = json!("10.0.0.128/25"),
        "overlap",
    );
    breaks(
        "addressing.subnets",
        Severity::Error,
        |v| v["spec"]["networks"][1]["vlan"] = json!(30),
        "both use VLAN 30",
    );
    breaks(
        "addressing.subnets",
        Severity::Error,
        |v| v["spec"]["controlPlane"]["vip"] = json!("10.5.0.10"),
        "not in the management network",
    );
    breaks(
        "addressing.subnets",
        Severity::Error,
        |v| {
            v["spec"]["networks"][1]["cidr"] = json!("10.1.0.20/30");
            node(v, 0)["count"] = json!(3);
        },
        "3 addresses needed, 10.1.0.20/30 has 2",
    );
}

#[test]
fn ports() {
    breaks(
        "ports.clash",
        Severity::Error,
        |v| v["spec"]["services"][1]["port"] = json!(6443),
        "both listen on 6443/TCP",
    );
    breaks(
        "ports.endpoints",
        Severity::Warning,
        |v| v["spec"]["services"][2]["port"] = json!(7480),
        "nothing in the design forwards 443 to 7480",
    );
    breaks(
        "ports.endpoints",
        Severity::Error,
        |v| v["spec"]["services"][2]["tls"] = json!(false),
        "the service is not TLS",
    );
    breaks(
        "ports.endpoints",
        Severity::Warning,
        |v| {
            v["spec"]["services"].as_array_mut().unwrap().remove(4);
        },
        "the design opens only 6789",
    );
}

#[test]
fn control_plane() {
    breaks(
        "control-plane.etcd",
        Severity::Error,
        |v| v["spec"]["controlPlane"]["etcd"] = json!(["mgmt-01"]),
        "losing one member stops the Kubernetes API",
    );
    breaks(
        "control-plane.etcd",
        Severity::Error,
        |v| v["spec"]["controlPlane"]["etcd"] = json!(["mgmt-01", "mgmt-02"]),
        "2 etcd member(s): quorum is 2",
    );
    breaks(
        "control-plane.etcd",
        Severity::Warning,
        |v| v["spec"]["controlPlane"]["etcd"] = json!(["management", "gpu-01"]),
        "4 etcd members tolerate 1 failure(s)",
    );
    breaks(
        "control-plane.etcd",
        Severity::Error,
        |v| v["spec"]["controlPlane"]["apiServers"] = json!(["mgmt-01"]),
        "nothing to fail over to",
    );
}

#[test]
fn storage() {
    breaks(
        "storage.ceph-mons",
        Severity::Error,
        |v| v["spec"]["storage"]["ceph"]["mons"] = json!(["mgmt-01", "mgmt-02"]),
        "losing one stops the cluster",
    );
    breaks(
        "storage.ceph-pools",
        Severity::Error,
        |v| v["spec"]["storage"]["ceph"]["osdHosts"] = json!(["stor-01", "stor-02"]),
        "only 2 host(s) carry OSDs",
    );
    breaks(
        "storage.ceph-pools",
        Severity::Error,
        |v| {
            v["spec"]["storage"]["ceph"]["pools"][1] =
                json!({"name": "ec", "type": "erasure", "k": 6, "m": 2, "failureDomain": "host"});
        },
        "erasure coding k=6, m=2 places 8 chunks",
    );
    breaks(
        "storage.ceph-pools",
        Severity::Warning,
        |v| v["spec"]["storage"]["ceph"]["pools"][0]["minSize"] = json!(1),
        "min_size 1",
    );
}

#[test]
fn versions() {
    breaks(
        "versions.compatibility",
        Severity::Error,
        |v| v["spec"]["versions"]["kernel"] = json!("5.15"),
        "needs kernel 5.14",
    );
    breaks(
        "versions.compatibility",
        Severity::Error,
        |v| v["spec"]["versions"]["kubernetes"] = json!("1.30.1"),
        "volcano 1.7 needs kubernetes 1.19..1.28",
    );
    breaks(
        "versions.support",
        Severity::Warning,
        |v| v["spec"]["versions"]["kubernetes"] = json!("1.27.6"),
        "end of life",
    );
}

#[test]
fn scheduling() {
    breaks(
        "scheduling.mig",
        Severity::Error,
        |v| v["spec"]["scheduling"]["resources"] = json!(["nvidia.com/gpu-mig-1g.10gb"]),
        "has no resource nvidia.com/gpu-mig-1g.10gb",
    );
    breaks(
        "scheduling.mig",
        Severity::Error,
        |v| v["spec"]["scheduling"]["migStrategy"] = json!("single"),
        "with the single strategy",
    );
    breaks(
        "scheduling.mig",
        Severity::Error,
        |v| node(v, 0)["gpus"]["mig"]["layout"] = json!(["4g.40gb", "4g.40gb"]),
        "at most 1 fit one GPU",
    );
    breaks(
        "scheduling.mig",
        Severity::Error,
        |v| node(v, 0)["gpus"]["mig"]["layout"] = json!(["3g.40gb", "3g.40gb", "1g.10gb"]),
        "does not fit one",
    );
    breaks(
        "scheduling.mig",
        Severity::Error,
        |v| node(v, 0)["gpus"]["mig"]["layout"] = json!(["5g.50gb"]),
        "is not a MIG profile",
    );
    breaks(
        "scheduling.mig",
        Severity::Error,
        |v| node(v, 0)["gpus"]["mig"] = json!({"enabled": false}),
        "no node has MIG enabled",
    );
}

#[test]
fn operations() {
    breaks(
        "operations.replicas",
        Severity::Error,
        |v| v["spec"]["components"][0]["pdbMinAvailable"] = json!(2),
        "no replica may ever be evicted",
    );
    breaks(
        "operations.replicas",
        Severity::Warning,
        |v| v["spec"]["components"][0]["maxReplicas"] = json!(6),
        "adds no throughput",
    );
}

#[test]
fn monitoring() {
    breaks(
        "monitoring.metric-names",
        Severity::Warning,
        |v| {
            v["spec"]["services"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "dcgm-exporter", "port": 9400, "protocol": "TCP",
                             "metrics": ["DCGM_FI_DEV_GPU_UTIL", "dcgm_fb_used"]}))
        },
        "dcgm_fb_used is DCGM exporter 1.x's name; dcgm-exporter 2.x and later (and onyx server's /metrics) expose it as DCGM_FI_DEV_FB_USED",
    );
}

#[test]
fn every_rule_is_tested_here() {
    let text = include_str!("rules.rs");
    for (id, _, _) in RULES {
        assert!(
            text.matches(&format!("\"{id}\"")).count() >= 1,
            "rule {id} has no test"
        );
    }
}
