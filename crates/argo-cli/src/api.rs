//! The server's REST API as the client calls it: its address and token, requests, paths'
//! encoding, and waiting for a workflow to finish.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

use workflow_engine::tree as render;

use super::commands::ClientOpts;

pub(super) struct Api {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// Whether a server URL names this machine (loopback): only then does the CLI send the local
/// server's own token unasked.
pub fn is_local(server: &str) -> bool {
    let rest = server
        .strip_prefix("http://")
        .or_else(|| server.strip_prefix("https://"))
        .unwrap_or(server);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Api {
    pub(super) fn new(o: &ClientOpts) -> Api {
        Api {
            base: o.server.trim_end_matches('/').to_string(),
            token: o.token.clone(),
            // Redirects are followed by `call` itself: ureq drops the token on a redirect.
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(5))
                .redirects(0)
                .build(),
        }
    }

    pub(super) fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ureq::Response> {
        let mut path = path.to_string();
        // The server's own redirects (a directory listing's `…/`), to its own paths only.
        for _ in 0..5 {
            let r = self.call_once(method, &path, body)?;
            match r.header("location") {
                Some(next) if (300..400).contains(&r.status()) && next.starts_with('/') => {
                    path = next.to_string();
                }
                _ => return Ok(r),
            }
        }
        bail!("{method} {path}: too many redirects")
    }

    pub(super) fn call_once(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<ureq::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.request(method, &url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        match res {
            Ok(r) => Ok(r),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let msg = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(String::from))
                    .unwrap_or(text);
                bail!("{msg} (HTTP {code})")
            }
            Err(e) => Err(anyhow!(
                "cannot reach the server at {}: {e}; start one with `onyx server` or point --server / ONYX_SERVER at it",
                self.base
            )),
        }
    }

    pub(super) fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let r = self.call(method, path, body)?;
        let text = r.into_string()?;
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: the server's answer is not JSON"))
    }
}

pub(super) fn finished(wf: &Value) -> bool {
    matches!(
        wf["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Error")
    )
}

pub(super) fn wait_for(api: &Api, ns: &str, name: &str, watch: bool) -> anyhow::Result<Value> {
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let wf = api.json("GET", &format!("/api/v1/workflows/{ns}/{name}"), None)?;
        if watch {
            let now = render::tree(&wf);
            if now != last {
                if tty {
                    print!("\x1b[2J\x1b[H");
                }
                println!("{}", render::summary(&wf));
                last = now;
            }
        }
        if finished(&wf) {
            return Ok(wf);
        }
        std::thread::sleep(Duration::from_millis(if watch { 500 } else { 200 }));
    }
}

pub(super) fn enc(s: &str) -> String {
    access::encode_component(s)
}
