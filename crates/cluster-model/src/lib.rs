//! The ONYX cluster model: a cluster file (`onyx.dev/v1` `Cluster`) read with every error at
//! its field path and line, node groups expanded into nodes with their addresses, every
//! reference (racks, nodes, catalogue ids, networks) resolved; the component catalogue; the
//! seed's cluster built in.

#![forbid(unsafe_code)]

pub mod catalogue;
pub mod model;
pub mod quantity;

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

pub use catalogue::Catalogue;
pub use model::*;

pub const API_VERSION: &str = "onyx.dev/v1";

/// The seed's cluster (`../shared/seed/`), as a cluster file.
pub const ONYX_SEED: &str = include_str!("../data/onyx.yaml");

#[derive(Debug, Clone, PartialEq)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: error: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)
    }
}

/// One node, expanded from its group.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    /// Index into `spec.nodes`.
    pub group: usize,
    pub rack: String,
    pub position: u32,
    pub addresses: BTreeMap<String, Ipv4Addr>,
    pub bmc: Option<Ipv4Addr>,
}

/// A loaded, resolved cluster.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub file: ClusterFile,
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn spec(&self) -> &ClusterSpec {
        &self.file.spec
    }
    pub fn group(&self, n: &Node) -> &NodeGroup {
        &self.file.spec.nodes[n.group]
    }
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }
    /// Nodes named by a list of names or group prefixes.
    pub fn select(&self, names: &[String]) -> Vec<&Node> {
        self.nodes
            .iter()
            .filter(|n| {
                names
                    .iter()
                    .any(|x| *x == n.name || self.group(n).name == *x || self.group(n).role == *x)
            })
            .collect()
    }
}

/// The JSON Schema of the cluster file.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ClusterFile)).unwrap_or_default()
}

fn node_names(g: &NodeGroup) -> Vec<String> {
    if g.count <= 1 {
        vec![g.name.clone()]
    } else {
        let width = g.count.to_string().len().max(2);
        (1..=g.count)
            .map(|i| format!("{}{:0width$}", g.name, i))
            .collect()
    }
}

/// Read a cluster file; every problem is reported with its line and field path.
pub fn load(file: &str, text: &str, catalogue: &Catalogue) -> Result<Cluster, Vec<LoadError>> {
    let docs = manifest::parse_documents(text).map_err(|e| {
        let l = e.location();
        vec![LoadError {
            file: file.into(),
            line: l.line,
            column: l.column,
            path: String::new(),
            message: e.to_string(),
        }]
    })?;
    let Some(doc) = docs.into_iter().next() else {
        return Err(vec![LoadError {
            file: file.into(),
            line: 1,
            column: 1,
            path: String::new(),
            message: "the file is empty; expected an onyx.dev/v1 Cluster".into(),
        }]);
    };
    let err = |path: &str, message: String| {
        let l = doc.location_of(path);
        LoadError {
            file: file.into(),
            line: l.line,
            column: l.column,
            path: path.to_string(),
            message,
        }
    };
    let parsed: ClusterFile = serde_path_to_error::deserialize(doc.value.clone()).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = e.into_inner().to_string();
        vec![err(
            &unknown_field_path(&doc.value, &path, &message),
            message,
        )]
    })?;
    let mut errors = Vec::new();
    if parsed.api_version != API_VERSION || parsed.kind != "Cluster" {
        errors.push(err(
            "apiVersion",
            format!(
                "expected apiVersion {API_VERSION} and kind Cluster, got {} {}",
                parsed.api_version, parsed.kind
            ),
        ));
    }
    let spec = &parsed.spec;
    let racks: BTreeSet<&str> = spec.racks.iter().map(|r| r.name.as_str()).collect();
    let networks: BTreeMap<&str, &Network> =
        spec.networks.iter().map(|n| (n.name.as_str(), n)).collect();
    for (i, n) in spec.networks.iter().enumerate() {
        if n.cidr.parse::<ipnet::Ipv4Net>().is_err() {
            errors.push(err(
                &format!("spec.networks[{i}].cidr"),
                format!(
                    "expected an IPv4 network such as 10.30.0.0/24, got {:?}",
                    n.cidr
                ),
            ));
        }
    }
    for (i, r) in spec.racks.iter().enumerate() {
        for (j, f) in r.feeds.iter().enumerate() {
            if f.phases != 1 && f.phases != 3 {
                errors.push(err(
                    &format!("spec.racks[{i}].feeds[{j}].phases"),
                    format!("expected 1 or 3 phases, got {}", f.phases),
                ));
            }
        }
        for (j, p) in r.pdus.iter().enumerate() {
            if !r.feeds.iter().any(|f| f.name == p.feed) {
                errors.push(err(
                    &format!("spec.racks[{i}].pdus[{j}].feed"),
                    format!("rack {} has no feed {:?}", r.name, p.feed),
                ));
            }
        }
    }
    let mut nodes = Vec::new();
    for (gi, g) in spec.nodes.iter().enumerate() {
        let at = |f: &str| format!("spec.nodes[{gi}].{f}");
        if !racks.contains(g.rack.as_str()) {
            errors.push(err(
                &at("rack"),
                format!(
                    "no rack named {:?} (racks: {})",
                    g.rack,
                    racks.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        if !matches!(g.role.as_str(), "gpu" | "management" | "storage") {
            errors.push(err(
                &at("role"),
                format!("expected gpu, management or storage, got {:?}", g.role),
            ));
        }
        let missing = |field: &str, id: &str, known: bool, what: &str| {
            (!known).then(|| {
                err(
                    &at(field),
                    format!("{id:?} is not in the component catalogue's {what}"),
                )
            })
        };
        errors.extend(missing(
            "chassis",
            &g.chassis,
            catalogue.chassis.contains_key(&g.chassis),
            "chassis",
        ));
        errors.extend(missing(
            "cpus.model",
            &g.cpus.model,
            catalogue.cpus.contains_key(&g.cpus.model),
            "CPUs",
        ));
        if let Some(gpu) = &g.gpus {
            errors.extend(missing(
                "gpus.model",
                &gpu.model,
                catalogue.gpus.contains_key(&gpu.model),
                "GPUs",
            ));
        }
        for (k, nic) in g.nics.iter().enumerate() {
            errors.extend(missing(
                &format!("nics[{k}].model"),
                &nic.model,
                catalogue.nics.contains_key(&nic.model),
                "NICs",
            ));
            for net in &nic.networks {
                if !networks.contains_key(net.as_str()) {
                    errors.push(err(
                        &at(&format!("nics[{k}].networks")),
                        format!("no network named {net:?}"),
                    ));
                }
            }
        }
        let mut firsts: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        for (net, addr) in &g.addresses {
            if !networks.contains_key(net.as_str()) {
                errors.push(err(
                    &at(&format!("addresses.{net}")),
                    format!("no network named {net:?}"),
                ));
            }
            match addr.parse::<Ipv4Addr>() {
                Ok(a) => {
                    firsts.insert(net.clone(), a);
                }
                Err(_) => errors.push(err(
                    &at(&format!("addresses.{net}")),
                    format!("expected an IPv4 address, got {addr:?}"),
                )),
            }
        }
        let bmc = match &g.bmc {
            Some(b) => match b.parse::<Ipv4Addr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    errors.push(err(
                        &at("bmc"),
                        format!("expected an IPv4 address, got {b:?}"),
                    ));
                    None
                }
            },
            None => None,
        };
        let height = g
            .units
            .or_else(|| catalogue.chassis.get(&g.chassis).map(|c| c.units))
            .unwrap_or(1);
        for (i, name) in node_names(g).into_iter().enumerate() {
            let i = i as u32;
            nodes.push(Node {
                name,
                group: gi,
                rack: g.rack.clone(),
                position: g.position + i * height,
                addresses: firsts
                    .iter()
                    .map(|(k, a)| (k.clone(), Ipv4Addr::from(u32::from(*a) + i)))
                    .collect(),
                bmc: bmc.map(|a| Ipv4Addr::from(u32::from(a) + i)),
            });
        }
    }
    let mut seen = BTreeSet::new();
    for n in &nodes {
        if !seen.insert(n.name.clone()) {
            errors.push(err(
                "spec.nodes",
                format!("two nodes are named {:?}", n.name),
            ));
        }
    }
    let cluster = Cluster {
        file: parsed.clone(),
        nodes,
    };
    // Names used elsewhere must be nodes (or group prefixes, or roles).
    let mut check_names = |path: String, names: &[String]| {
        for (i, n) in names.iter().enumerate() {
            if cluster.select(std::slice::from_ref(n)).is_empty() {
                errors.push(err(
                    &format!("{path}[{i}]"),
                    format!("no node, node group or role named {n:?}"),
                ));
            }
        }
    };
    for (i, s) in spec.services.iter().enumerate() {
        check_names(format!("spec.services[{i}].nodes"), &s.nodes);
    }
    if let Some(cp) = &spec.control_plane {
        check_names("spec.controlPlane.apiServers".into(), &cp.api_servers);
        check_names("spec.controlPlane.etcd".into(), &cp.etcd);
    }
    if let Some(st) = &spec.storage {
        check_names("spec.storage.ceph.mons".into(), &st.ceph.mons);
        check_names("spec.storage.ceph.osdHosts".into(), &st.ceph.osd_hosts);
    }
    for (i, c) in spec.components.iter().enumerate() {
        check_names(format!("spec.components[{i}].nodes"), &c.nodes);
    }
    if errors.is_empty() {
        Ok(cluster)
    } else {
        Err(errors)
    }
}

/// serde reports an unknown field at the field before it; point at the unknown field itself.
fn unknown_field_path(root: &serde_json::Value, path: &str, message: &str) -> String {
    let Some(name) = message
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    else {
        return path.to_string();
    };
    let join = |parent: &str| {
        if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}.{name}")
        }
    };
    let pointer = |p: &str| {
        let mut ptr = String::new();
        for seg in p.split('.').filter(|s| !s.is_empty()) {
            let (key, idx) = match seg.split_once('[') {
                Some((k, rest)) => (k, Some(rest.trim_end_matches(']'))),
                None => (seg, None),
            };
            ptr.push('/');
            ptr.push_str(key);
            if let Some(i) = idx {
                ptr.push('/');
                ptr.push_str(i);
            }
        }
        root.pointer(&ptr)
    };
    if pointer(path).is_some_and(|v| v.get(name).is_some()) {
        return join(path);
    }
    match path.rfind('.') {
        Some(i) => join(&path[..i]),
        None => join(""),
    }
}

/// The built-in clusters by name.
pub fn builtin(name: &str) -> Option<&'static str> {
    match name {
        "onyx" => Some(ONYX_SEED),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(extra_node: &str) -> String {
        format!(
            "apiVersion: onyx.dev/v1\nkind: Cluster\nmetadata: {{name: t}}\nspec:\n  racks:\n  - name: R1\n    units: 42\n    feeds: [{{name: A, phases: 3, voltage: 208V, current: 50A}}]\n  nodes:\n  - name: node\n    role: management\n    rack: R1\n    position: 1\n    chassis: supermicro-sys-221h-tnr\n    cpus: {{model: intel-xeon-gold-6430, count: 1}}\n    memory: {{dimm: 64GB, count: 8, type: DDR5-4800}}\n    psus: {{count: 2, capacity: 1600W, redundancy: 1+1}}\n{extra_node}"
        )
    }

    #[test]
    fn the_seed_loads() {
        let c = load("onyx", ONYX_SEED, &Catalogue::builtin()).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert_eq!(
            c.nodes.iter().filter(|n| c.group(n).role == "gpu").count(),
            16
        );
        assert_eq!(c.nodes.len(), 20);
    }

    #[test]
    fn bad_files_name_the_field() {
        let cat = Catalogue::builtin();
        let e = load("t.yaml", &small("    bogus: 1\n"), &cat).unwrap_err();
        assert_eq!(e[0].path, "spec.nodes[0].bogus");
        assert!(e[0].message.contains("unknown field `bogus`"), "{}", e[0]);
        assert_eq!(e[0].line, 18);
        let wrong_unit = small("").replace("capacity: 1600W", "capacity: 1600GB");
        let e = load("t.yaml", &wrong_unit, &cat).unwrap_err();
        assert_eq!(e[0].path, "spec.nodes[0].psus.capacity");
        assert!(
            e[0].message
                .contains("expected a power such as 700W or 2kW"),
            "{}",
            e[0]
        );
        let no_rack = small("").replace("rack: R1", "rack: R9");
        let e = load("t.yaml", &no_rack, &cat).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "t.yaml:12:5: error: spec.nodes[0].rack: no rack named \"R9\" (racks: R1)"
        );
        let no_cpu = small("").replace("intel-xeon-gold-6430", "intel-xeon-9999");
        let e = load("t.yaml", &no_cpu, &cat).unwrap_err();
        assert!(e[0]
            .message
            .contains("not in the component catalogue's CPUs"));
    }
}
