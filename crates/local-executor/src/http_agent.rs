//! `http` templates on this machine: each call made by ONYX's agent in a process of its own.

use workflow_engine::Event;

/// An `http` template's call, made by ONYX's agent in a process of its own (`onyx exec-http`)
/// under the namespace's egress rule, as Argo makes it in an agent pod: never in the server.
pub(crate) fn http_agent(
    exe: &std::path::Path,
    no_network: bool,
    node_id: String,
    template: &workflow_model::Template,
) -> Event {
    use std::io::Write;
    let failed = |node_id: String, why: String| Event::HttpDone {
        node_id,
        status: 0,
        body: String::new(),
        headers: Default::default(),
        error: Some(why),
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("exec-http");
    if no_network {
        cmd.arg("--no-network");
    }
    let child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return failed(node_id, format!("starting the HTTP agent: {e}")),
    };
    let input = serde_json::to_vec(&(&node_id, template)).unwrap_or_default();
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input);
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| failed(node_id.clone(), format!("the HTTP agent's answer: {e}"))),
        Ok(out) => failed(
            node_id,
            format!(
                "the HTTP agent failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ),
        Err(e) => failed(node_id, format!("the HTTP agent: {e}")),
    }
}
