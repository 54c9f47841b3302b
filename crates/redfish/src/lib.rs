//! A Redfish client for what ONYX asks of a node's BMC (DMTF DSP0266): read a
//! `ComputerSystem`'s `PowerState` and post its `ComputerSystem.Reset` action (`On`,
//! `ForceOff`, `GracefulRestart`, …). Blocking, with a timeout on every request, so that one
//! BMC that does not answer holds up only its own node.
//!
//! The system is the one given by path, or the first member of `/redfish/v1/Systems` (a BMC
//! manages one server). The Reset target is read from the system's `Actions`, as the
//! specification asks, falling back to the conventional path.

#![forbid(unsafe_code)]

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum RedfishError {
    #[error("{url}: no answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url}: HTTP {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: {what}")]
    Protocol { url: String, what: String },
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// `ResetType` values of `ComputerSystem.Reset` that ONYX uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetType {
    On,
    ForceOff,
    GracefulShutdown,
    GracefulRestart,
    ForceRestart,
}

impl ResetType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResetType::On => "On",
            ResetType::ForceOff => "ForceOff",
            ResetType::GracefulShutdown => "GracefulShutdown",
            ResetType::GracefulRestart => "GracefulRestart",
            ResetType::ForceRestart => "ForceRestart",
        }
    }
}

/// One BMC: where it is, who to log in as.
#[derive(Debug, Clone)]
pub struct Bmc {
    /// `http(s)://host[:port]`.
    base: String,
    /// The system's path (`/redfish/v1/Systems/1`), or None to use the first member.
    system: Option<String>,
    authorization: Option<String>,
    timeout: Duration,
    agent: ureq::Agent,
}

impl Bmc {
    pub fn new(
        base: &str,
        system: Option<&str>,
        credentials: Option<(&str, &str)>,
        timeout: Duration,
    ) -> Bmc {
        let authorization = credentials.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        Bmc {
            base: base.trim_end_matches('/').to_string(),
            system: system.map(|s| {
                if s.starts_with('/') {
                    s.to_string()
                } else {
                    format!("/redfish/v1/Systems/{s}")
                }
            }),
            authorization,
            timeout,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(timeout)
                .timeout(timeout)
                .build(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, RedfishError> {
        let url = self.url(path);
        let mut req = self
            .agent
            .request(method, &url)
            .set("Accept", "application/json");
        if let Some(a) = &self.authorization {
            req = req.set("Authorization", a);
        }
        let res = match body {
            Some(b) => req
                .set("Content-Type", "application/json")
                .send_string(&b.to_string()),
            None => req.call(),
        };
        match res {
            Ok(r) => {
                let text = r.into_string().map_err(|e| self.io_error(&url, e))?;
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                serde_json::from_str(&text).map_err(|e| RedfishError::Protocol {
                    url,
                    what: format!("the answer is not JSON: {e}"),
                })
            }
            Err(ureq::Error::Status(status, r)) => {
                let text = r.into_string().unwrap_or_default();
                // Redfish errors carry `error.message` (and extended info); else the body.
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        let e = &v["error"];
                        e["@Message.ExtendedInfo"][0]["Message"]
                            .as_str()
                            .or(e["message"].as_str())
                            .map(str::to_string)
                    })
                    .unwrap_or(text);
                Err(RedfishError::Status {
                    url,
                    status,
                    message,
                })
            }
            Err(ureq::Error::Transport(t)) => Err(self.transport_error(&url, &t)),
        }
    }

    fn io_error(&self, url: &str, e: std::io::Error) -> RedfishError {
        self.failure(url, is_timeout(&e), e.to_string())
    }

    fn transport_error(&self, url: &str, t: &ureq::Transport) -> RedfishError {
        let text = t.to_string();
        let timed_out = std::error::Error::source(t)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(is_timeout);
        self.failure(url, timed_out || text.contains("timed out"), text)
    }

    fn failure(&self, url: &str, timed_out: bool, reason: String) -> RedfishError {
        let url = url.to_string();
        if timed_out {
            RedfishError::Timeout {
                url,
                seconds: self.timeout.as_secs(),
            }
        } else {
            RedfishError::Unreachable { url, reason }
        }
    }

    /// The system's path: as given, or the first member of the Systems collection.
    pub fn system_path(&self) -> Result<String, RedfishError> {
        if let Some(s) = &self.system {
            return Ok(s.clone());
        }
        let systems = self.request("GET", "/redfish/v1/Systems", None)?;
        systems["Members"][0]["@odata.id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RedfishError::Protocol {
                url: self.url("/redfish/v1/Systems"),
                what: "the Systems collection has no member".into(),
            })
    }

    /// The system's `PowerState`: `On`, `Off`, `PoweringOn`, `PoweringOff`.
    pub fn power_state(&self) -> Result<String, RedfishError> {
        let path = self.system_path()?;
        let system = self.request("GET", &path, None)?;
        system["PowerState"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| RedfishError::Protocol {
                url: self.url(&path),
                what: "the system has no PowerState".into(),
            })
    }

    /// Post `ComputerSystem.Reset` with `reset`.
    pub fn reset(&self, reset: ResetType) -> Result<(), RedfishError> {
        let path = self.system_path()?;
        let system = self.request("GET", &path, None)?;
        let action = &system["Actions"]["#ComputerSystem.Reset"];
        if let Some(allowed) = action["ResetType@Redfish.AllowableValues"].as_array() {
            if !allowed.iter().any(|v| v == reset.as_str()) {
                return Err(RedfishError::Protocol {
                    url: self.url(&path),
                    what: format!(
                        "the BMC does not offer ResetType {} (it offers {})",
                        reset.as_str(),
                        allowed
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let target = action["target"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{path}/Actions/ComputerSystem.Reset"));
        self.request("POST", &target, Some(json!({"ResetType": reset.as_str()})))?;
        Ok(())
    }

    /// Reset, then read the power state back until it is `want` or `wait` has passed.
    pub fn reset_and_wait(
        &self,
        reset: ResetType,
        want: &str,
        wait: Duration,
    ) -> Result<(), RedfishError> {
        self.reset(reset)?;
        let t0 = std::time::Instant::now();
        loop {
            let state = self.power_state()?;
            if state == want {
                return Ok(());
            }
            if t0.elapsed() >= wait {
                return Err(RedfishError::Protocol {
                    url: self.url(&self.system_path()?),
                    what: format!(
                        "PowerState is still {state} {} s after {} (expected {want})",
                        wait.as_secs(),
                        reset.as_str()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bmc_that_does_not_answer_times_out_with_its_url() {
        // Accepted by the kernel's backlog, never answered.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", silent.local_addr().unwrap());
        let bmc = Bmc::new(&base, Some("1"), None, Duration::from_millis(300));
        let e = bmc.power_state().unwrap_err();
        assert!(matches!(e, RedfishError::Timeout { .. }), "{e}");
        assert!(e.to_string().contains(&base), "{e}");
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bmc = Bmc::new(
            &format!("http://127.0.0.1:{port}"),
            None,
            None,
            Duration::from_secs(2),
        );
        let e = bmc.power_state().unwrap_err();
        assert!(matches!(e, RedfishError::Unreachable { .. }), "{e}");
    }
}
