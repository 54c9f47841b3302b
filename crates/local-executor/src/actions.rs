//! The engine's non-pod actions and results, carried out on this machine: what a pod's
//! outcome means to the engine, HTTP templates, and the facts about this node.

use std::collections::BTreeMap;
use std::time::Duration;

use workflow_engine::{EngineConfig, Event, PodResult};
use workflow_model::{Artifact, LocalArtifact, Template};

use crate::PodOutcome;

/// ONYX's HTTP agent (Argo runs `http` templates in an agent pod): `onyx exec-http` reads the
/// node id and template as JSON on stdin, makes the call — with no network but its own
/// loopback when the workflow's namespace has no egress — and writes the engine's `HttpDone`
/// event as JSON on stdout. Runs in a process of its own, never in the server.
pub fn run_http_agent(no_network: bool) -> i32 {
    use std::io::{Read, Write};
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("onyx exec-http: reading the template: {e}");
        return 2;
    }
    let (node_id, template): (String, Template) = match serde_json::from_str(&input) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("onyx exec-http: the template: {e}");
            return 2;
        }
    };
    let ev = if no_network {
        match pod_sandbox::network::enter_empty_network() {
            Ok(()) => http_call(node_id, &template),
            Err(e) => Event::HttpDone {
                node_id,
                status: 0,
                body: String::new(),
                headers: BTreeMap::new(),
                error: Some(e),
            },
        }
    } else {
        http_call(node_id, &template)
    };
    match serde_json::to_vec(&ev) {
        Ok(out) if std::io::stdout().write_all(&out).is_ok() => 0,
        _ => 1,
    }
}

/// Labels and name of this machine as a Kubernetes node, for `nodeSelector` and `hostNodeName`.
pub fn node_config() -> EngineConfig {
    let mut labels = BTreeMap::new();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    for (k, v) in [
        ("kubernetes.io/arch", arch),
        ("beta.kubernetes.io/arch", arch),
        ("kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/hostname", host.as_str()),
    ] {
        labels.insert(k.to_string(), v.to_string());
    }
    EngineConfig {
        node_labels: labels,
        node_name: host,
        shell_schedules: false,
        limits: Default::default(),
    }
}

/// The engine's view of what a pod left (`None`: it left nothing, it was killed).
pub fn pod_result(node_id: String, outcome: Option<PodOutcome>, outputs: &[Artifact]) -> PodResult {
    match outcome {
        Some(o) => PodResult {
            node_id,
            exit_code: o.exit_code,
            stdout: o.stdout,
            parameters: o.parameters,
            artifacts: o
                .artifacts
                .iter()
                .filter_map(|(name, key)| {
                    let mut a: Artifact = outputs.iter().find(|x| &x.name == name)?.clone();
                    a.local = Some(LocalArtifact { key: key.clone() });
                    a.path = None;
                    Some(a)
                })
                .collect(),
            message: o.message,
            deadline_exceeded: false,
        },
        None => PodResult {
            node_id,
            exit_code: None,
            message: Some("pod was killed".into()),
            ..Default::default()
        },
    }
}

/// Carry out an HTTP template's request.
pub fn http_call(node_id: String, t: &Template) -> Event {
    let h = t.http.clone().unwrap_or_default();
    let method = h.method.clone().unwrap_or_else(|| "GET".into());
    let timeout = Duration::from_secs(h.timeout_seconds.unwrap_or(30).max(1) as u64);
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let mut req = agent.request(&method, &h.url);
    for hd in &h.headers {
        if let Some(v) = &hd.value {
            req = req.set(&hd.name, v);
        }
    }
    let resp = match &h.body {
        Some(b) => req.send_string(b),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => {
            return Event::HttpDone {
                node_id,
                status: 0,
                body: String::new(),
                headers: BTreeMap::new(),
                error: Some(format!("{method} {}: {e}", h.url)),
            };
        }
    };
    let status = resp.status();
    let mut headers = BTreeMap::new();
    for name in resp.headers_names() {
        let values: Vec<String> = resp.all(&name).iter().map(|s| s.to_string()).collect();
        let canonical = name
            .split('-')
            .map(|p| {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("-");
        headers.insert(canonical, values);
    }
    let body = resp.into_string().unwrap_or_default();
    Event::HttpDone {
        node_id,
        status,
        body,
        headers,
        error: None,
    }
}
