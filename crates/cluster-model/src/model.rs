//! The cluster file, version `onyx.dev/v1` `Cluster`. Every field is known (an unknown one is
//! an error at its path); figures carry their units.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::quantity::{Bandwidth, Bytes, Current, Power, Voltage, Q};

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterFile {
    /// `onyx.dev/v1`.
    pub api_version: String,
    /// `Cluster`.
    pub kind: String,
    pub metadata: Metadata,
    pub spec: ClusterSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(default)]
    pub site: Site,
    pub racks: Vec<Rack>,
    /// Nodes, one entry per node or per group of identical nodes (`count`).
    pub nodes: Vec<NodeGroup>,
    #[serde(default)]
    pub networks: Vec<Network>,
    #[serde(default)]
    pub services: Vec<Service>,
    #[serde(default)]
    pub control_plane: Option<ControlPlane>,
    #[serde(default)]
    pub storage: Option<Storage>,
    /// Component versions by name (`kubernetes: 1.27.6`, `os: rocky-9.3`, `kernel: 5.15`, ...).
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    #[serde(default)]
    pub scheduling: Option<Scheduling>,
    /// Replicated platform components and their disruption budgets.
    #[serde(default)]
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Site {
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rack {
    pub name: String,
    /// Usable rack units.
    pub units: u32,
    pub feeds: Vec<Feed>,
    /// `2N`: each feed alone must carry the whole rack (A/B); `N`: the feeds share the load.
    #[serde(default = "two_n")]
    pub redundancy: String,
    #[serde(default)]
    pub pdus: Vec<Pdu>,
    /// Units kept free (e.g. the spec's "4U reserved").
    #[serde(default)]
    pub reserved_units: u32,
}

fn two_n() -> String {
    "2N".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Feed {
    pub name: String,
    /// 1 or 3.
    pub phases: u8,
    /// Line-to-line voltage for three-phase feeds.
    pub voltage: Q<Voltage>,
    /// Breaker rating.
    pub current: Q<Current>,
    /// Share of the breaker rating a continuous load may use (NEC: 0.8).
    #[serde(default = "derating")]
    pub continuous_derating: f64,
}

fn derating() -> f64 {
    0.8
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pdu {
    pub model: String,
    pub feed: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeGroup {
    /// A node's name, or with `count` a prefix: `gpu-r1-` gives gpu-r1-01 ... gpu-r1-08.
    pub name: String,
    #[serde(default = "one")]
    pub count: u32,
    /// `gpu`, `management` or `storage`.
    pub role: String,
    pub rack: String,
    /// Lowest rack unit of the first node; the next ones stack above it.
    pub position: u32,
    /// Catalogue id of the chassis.
    pub chassis: String,
    /// Height the design gives the node, if it states one (checked against the chassis).
    #[serde(default)]
    pub units: Option<u32>,
    pub cpus: CpuSpec,
    pub memory: MemorySpec,
    #[serde(default)]
    pub gpus: Option<GpuSpec>,
    #[serde(default)]
    pub disks: Vec<Disk>,
    #[serde(default)]
    pub nics: Vec<Nic>,
    pub psus: PsuSpec,
    /// First address on each network (by network name); the next nodes count up.
    #[serde(default)]
    pub addresses: BTreeMap<String, String>,
    /// First BMC address.
    #[serde(default)]
    pub bmc: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Kubernetes taints on every node of the group: only pods that tolerate them are placed
    /// there (e.g. `{key: dedicated, value: training, effect: NoSchedule}`).
    #[serde(default)]
    pub taints: Vec<Taint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: TaintEffect,
}

/// Kubernetes' three taint effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CpuSpec {
    /// Catalogue id.
    pub model: String,
    pub count: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MemorySpec {
    pub dimm: Q<Bytes>,
    pub count: u32,
    /// e.g. DDR5-4800.
    #[serde(rename = "type")]
    pub kind: String,
    /// Channels per CPU the design assumes, if it states it (checked against the CPU).
    #[serde(default)]
    pub channels_per_cpu: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GpuSpec {
    /// Catalogue id.
    pub model: String,
    pub count: u32,
    #[serde(default)]
    pub nvlink: Option<NvLink>,
    #[serde(default)]
    pub mig: Option<Mig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NvLink {
    pub generation: u32,
    /// NVSwitch chips in the node's NVLink domain (0: direct links or bridges).
    #[serde(default)]
    pub nvswitches: u32,
    /// Per-GPU NVLink bandwidth the design states.
    #[serde(default)]
    pub bandwidth_per_gpu: Option<Q<Bandwidth>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mig {
    pub enabled: bool,
    /// Profiles per GPU, e.g. [1g.10gb, 1g.10gb, 2g.20gb, 3g.40gb].
    #[serde(default)]
    pub layout: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Disk {
    pub count: u32,
    pub size: Q<Bytes>,
    /// nvme-u2, nvme-m2, sata-ssd, hdd.
    pub kind: String,
    #[serde(default)]
    pub purpose: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Nic {
    /// Catalogue id.
    pub model: String,
    pub count: u32,
    /// none, lacp, active-backup.
    #[serde(default)]
    pub bond: Option<String>,
    /// Network names carried.
    #[serde(default)]
    pub networks: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PsuSpec {
    pub count: u32,
    pub capacity: Q<Power>,
    /// How many may fail with the node still powered: `1+1` is 1, `2+2` is 2, `N` is 0.
    pub redundancy: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Network {
    pub name: String,
    pub cidr: String,
    #[serde(default)]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub purpose: String,
    /// Addresses the design assigns outside the nodes (VIPs, gateways, load-balancer pools).
    #[serde(default)]
    pub reserved: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    pub name: String,
    pub port: u16,
    /// Last port of a range (etcd 2379-2380).
    #[serde(default)]
    pub port_end: Option<u16>,
    /// TCP or UDP.
    pub protocol: String,
    #[serde(default)]
    pub tls: bool,
    /// Nodes (names or group prefixes) it listens on; empty with `address`: a virtual address.
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub address: Option<String>,
    /// URLs clients are given for it (the spec's endpoints), checked for port and scheme.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Metric names the design reads from it (dashboards, alerts), checked against what the
    /// exporter really exposes.
    #[serde(default)]
    pub metrics: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlane {
    pub api_servers: Vec<String>,
    pub etcd: Vec<String>,
    #[serde(default)]
    pub vip: Option<String>,
    /// Seconds the design promises for failover.
    #[serde(default)]
    pub failover_seconds: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Storage {
    pub ceph: Ceph,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ceph {
    pub mons: Vec<String>,
    /// Hosts that carry OSDs, and how many OSDs each.
    pub osd_hosts: Vec<String>,
    pub osds_per_host: u32,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pool {
    pub name: String,
    /// replicated or erasure.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub size: Option<u32>,
    #[serde(default)]
    pub min_size: Option<u32>,
    #[serde(default)]
    pub k: Option<u32>,
    #[serde(default)]
    pub m: Option<u32>,
    /// host, rack or osd.
    pub failure_domain: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scheduling {
    /// How the NVIDIA device plugin names MIG devices: single or mixed.
    #[serde(default)]
    pub mig_strategy: Option<String>,
    /// Extended resource names workloads request.
    #[serde(default)]
    pub resources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Component {
    pub name: String,
    pub replicas: u32,
    #[serde(default)]
    pub max_replicas: Option<u32>,
    /// Only one replica works at a time (leader election).
    #[serde(default)]
    pub leader_elected: bool,
    #[serde(default)]
    pub pdb_min_available: Option<u32>,
    /// Nodes (names or prefixes) it may run on.
    #[serde(default)]
    pub nodes: Vec<String>,
}
