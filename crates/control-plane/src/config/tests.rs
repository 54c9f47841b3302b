//! The configuration's tests.

use super::*;

#[test]
fn policies_default_to_ticket_id_and_namespaces_override() {
    let c: ServerConfig = toml::from_str(
        "parallelism = 3\n[namespaces.sandbox]\nrequired_parameters = []\nparallelism = 1\n",
    )
    .unwrap();
    assert_eq!(c.policy("team-a").required_parameters, vec!["ticket_id"]);
    assert!(c.policy("sandbox").required_parameters.is_empty());
    assert_eq!(c.parallelism, 3);
    let bad = toml::from_str::<ServerConfig>("listen = \"0.0.0.0:2746\"\nbogus = 1\n");
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("unknown field `bogus`"));
}

#[test]
fn queues_extend_the_built_in_ones_and_namespaces_are_tenants() {
    let c: ServerConfig = toml::from_str(
        "[queues.research]\nweight = 2\ncapability_gpus = 32\n[queues.shared]\nunit = \"any\"\n[namespaces.vision]\ngpu_quota = 8\n[priority_classes]\nurgent = 1000\n",
    )
    .unwrap();
    let p = c.scheduling_policy();
    assert_eq!(
        p.queues.keys().collect::<Vec<_>>(),
        vec!["dedicated", "default", "research", "shared"]
    );
    assert_eq!(p.queues["research"].capability_gpus, Some(32));
    assert_eq!(
        p.queues["shared"].unit,
        scheduler::QueueUnit::Any,
        "configured wins"
    );
    assert_eq!(p.queues["dedicated"].unit, scheduler::QueueUnit::Node);
    assert_eq!(p.tenants["vision"], (Some(8), 1));
    assert_eq!(p.priority_classes["urgent"], 1000);
    let bad = toml::from_str::<ServerConfig>("[queues.x]\nunit = \"rack\"\n");
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("unknown variant `rack`"));
}

#[test]
fn a_public_address_needs_a_token() {
    let c = ServerConfig {
        listen: "0.0.0.0:2746".parse().unwrap(),
        ..Default::default()
    };
    let e = c.check().unwrap_err().to_string();
    assert!(e.contains("refusing to listen on 0.0.0.0:2746"), "{e}");
    assert!(ServerConfig::default().check().unwrap().is_none());
}

#[test]
fn the_config_says_where_webhooks_listen() {
    let c = ServerConfig::default();
    assert_eq!(c.event_sources.listen_address.to_string(), "127.0.0.1");
    assert_eq!(c.event_sources.ports.to_string(), "12000-12999");
    let c: ServerConfig =
        toml::from_str("[event_sources]\nlisten_address = \"0.0.0.0\"\nports = \"20000-20100\"\n")
            .unwrap();
    assert_eq!(c.event_sources.listen_address.to_string(), "0.0.0.0");
    assert!(c.event_sources.ports.contains(20100) && !c.event_sources.ports.contains(20101));
    for bad in ["\"20100-20000\"", "\"0-10\"", "\"x\"", "\"1-70000\""] {
        let e = toml::from_str::<ServerConfig>(&format!("[event_sources]\nports = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected LOW-HIGH"), "{bad}: {e}");
    }
}
