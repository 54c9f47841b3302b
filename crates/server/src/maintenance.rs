//! The maintenance window and the BMC, server side. The `maintenance` crate decides; this
//! module feeds it the time and what the cluster shows (pods on the node, whether it is back)
//! once a second and carries out its actions: drain (the controller's), power-cycle through
//! the BMC, uncordon. Power goes through a configured command (`ipmitool … chassis power
//! {action}`, or any Redfish client) with `{node}`, `{bmc}` and `{action}` (`cycle`, `off`,
//! `status`) filled in; without one, a node's reboot is simulated (it is back after
//! `simulated_reboot_seconds`), which is what virtual clusters and tests use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use maintenance::{Action, NodeBudget, NodeFacts, Rollout, Window};
use serde_json::{json, Value};

use crate::config::{MaintenanceConfig, PowerConfig};
use crate::controller::Controller;

/// The BMCs of the cluster's nodes and how to reach them.
pub struct Power {
    command: Option<String>,
    bmcs: BTreeMap<String, String>,
    simulated: Duration,
    /// When each node was last power-cycled (simulated reboots end after `simulated`).
    cycled: Mutex<BTreeMap<String, std::time::Instant>>,
}

impl Power {
    pub fn new(cfg: &PowerConfig, bmcs: BTreeMap<String, String>, simulated: Duration) -> Power {
        Power {
            command: cfg.command.clone(),
            bmcs,
            simulated,
            cycled: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn configured(&self) -> bool {
        self.command.is_some()
    }

    fn run(&self, node: &str, action: &str) -> Result<String, String> {
        let Some(cmd) = &self.command else {
            return Ok(String::new());
        };
        let bmc = self.bmcs.get(node).cloned().unwrap_or_default();
        let line = cmd
            .replace("{node}", node)
            .replace("{bmc}", &bmc)
            .replace("{action}", action);
        let out = std::process::Command::new("sh")
            .args(["-c", &line])
            .output()
            .map_err(|e| format!("{line}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{line}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Reboot a node (power cycle).
    pub fn cycle(&self, node: &str) -> Result<(), String> {
        self.run(node, "cycle")?;
        self.cycled
            .lock()
            .expect("power")
            .insert(node.to_string(), std::time::Instant::now());
        Ok(())
    }

    pub fn off(&self, node: &str) -> Result<(), String> {
        self.run(node, "off").map(|_| ())
    }

    /// Whether a node is back after its power cycle.
    pub fn ready(&self, node: &str) -> bool {
        match &self.command {
            Some(_) => self
                .run(node, "status")
                .is_ok_and(|out| out.to_ascii_lowercase().contains("on")),
            None => self
                .cycled
                .lock()
                .expect("power")
                .get(node)
                .is_some_and(|t| t.elapsed() >= self.simulated),
        }
    }
}

/// The maintenance driver's state, shared with the API.
pub struct Maintenance {
    pub cfg: MaintenanceConfig,
    pub power: Power,
    rollout: Mutex<Option<Rollout>>,
    /// Start of the last window a rollout ran in (automatic mode runs each window once).
    last_window: Mutex<Option<DateTime<Utc>>>,
}

impl Maintenance {
    pub fn new(cfg: MaintenanceConfig, power: Power) -> Maintenance {
        Maintenance {
            cfg,
            power,
            rollout: Mutex::new(None),
            last_window: Mutex::new(None),
        }
    }

    fn budget(&self) -> NodeBudget {
        NodeBudget {
            drain: chrono::Duration::seconds(self.cfg.grace_seconds),
            reboot: chrono::Duration::seconds(self.cfg.reboot_timeout_seconds),
        }
    }

    fn length(&self) -> chrono::Duration {
        chrono::Duration::minutes(self.cfg.window_minutes)
    }

    /// Start a rollout over `nodes` in `window`; `Err` if one is running.
    pub fn start(&self, window: Window, nodes: Vec<String>) -> Result<(), String> {
        let mut r = self.rollout.lock().expect("rollout");
        if r.as_ref().is_some_and(|r| !r.is_over()) {
            return Err("a maintenance rollout is already running".into());
        }
        *self.last_window.lock().expect("window") = Some(window.start);
        *r = Some(Rollout::new(window, nodes, self.budget()));
        Ok(())
    }

    /// Start one now, for the window's length from now.
    pub fn start_now(&self, nodes: Vec<String>) -> Result<(), String> {
        let now = Utc::now();
        self.start(
            Window {
                start: now,
                end: now + self.length(),
            },
            nodes,
        )
    }

    pub fn status(&self) -> Value {
        let windows = maintenance::windows(
            &self.cfg.schedule,
            &self.cfg.timezone,
            self.length(),
            Utc::now(),
            3,
        )
        .map(|w| json!(w))
        .unwrap_or_else(|e| json!(e.to_string()));
        let rollout = self.rollout.lock().expect("rollout").as_ref().map(|r| {
            json!({"window": r.window, "nodes": r.nodes, "current": r.nodes.get(r.current),
                   "step": r.step, "done": r.done})
        });
        json!({"schedule": self.cfg.schedule, "timezone": self.cfg.timezone,
               "windowMinutes": self.cfg.window_minutes, "automatic": self.cfg.automatic,
               "powerCommand": self.power.configured(), "nextWindows": windows,
               "rollout": rollout})
    }
}

/// Once a second: open windows (automatic mode) and advance the rollout.
pub async fn run(ctl: Arc<Controller>, m: Arc<Maintenance>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = Utc::now();
        if m.cfg.automatic {
            if let Ok(w) =
                maintenance::windows(&m.cfg.schedule, &m.cfg.timezone, m.length(), now, 1)
            {
                let due = w.first().copied().filter(|w| w.start <= now);
                let done = *m.last_window.lock().expect("window");
                if let Some(w) = due.filter(|w| done != Some(w.start)) {
                    tracing::warn!(
                        "maintenance window {} to {}: rolling reboot starts",
                        w.start,
                        w.end
                    );
                    let _ = m.start(w, ctl.cluster().node_names());
                }
            }
        }
        let actions = {
            let mut guard = m.rollout.lock().expect("rollout");
            let Some(r) = guard.as_mut().filter(|r| !r.is_over()) else {
                continue;
            };
            let facts = match r.node() {
                Some(node) => NodeFacts {
                    pods: ctl.cluster().pods_on(node).len(),
                    ready: m.power.ready(node),
                },
                None => NodeFacts {
                    pods: 0,
                    ready: false,
                },
            };
            let actions = r.advance(now, facts);
            if r.is_over() {
                tracing::warn!("maintenance: {:?}", r.step);
            }
            actions
        };
        for a in actions {
            tracing::warn!("maintenance: {a:?}");
            match a {
                Action::Drain {
                    node,
                    grace_seconds,
                } => {
                    ctl.drain(&node, Duration::from_secs(grace_seconds.max(0) as u64));
                }
                Action::PowerCycle { node } => {
                    if let Err(e) = m.power.cycle(&node) {
                        tracing::error!("maintenance: power cycle of {node}: {e}");
                    }
                }
                Action::Uncordon { node } => {
                    ctl.cluster().cordon(&node, false);
                }
            }
        }
    }
}
