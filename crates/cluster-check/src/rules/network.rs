//! The network design: addresses, subnets, VLANs and VIPs (`addressing.*`), and the ports
//! services listen on and are reached at (`ports.*`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use cluster_model::Cluster;
use ipnet::Ipv4Net;

use super::report::Out;
use crate::finding::Severity;

pub(super) fn addressing(c: &Cluster, o: &mut Out) {
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

pub(super) fn ports(c: &Cluster, o: &mut Out) {
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
