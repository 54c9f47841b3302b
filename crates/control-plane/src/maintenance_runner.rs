//! The maintenance window and the BMC, server side. The `maintenance` crate decides; this
//! module feeds it the time and what the cluster shows (pods on the node, whether it is back)
//! once a second and carries out its actions: drain (the controller's), power-cycle through
//! the BMC, uncordon. Power goes over Redfish (`[power.redfish]`: `ComputerSystem.Reset` at
//! each node's BMC address, the power state read back) or through a configured command
//! (`ipmitool … chassis power {action}`) with `{node}`, `{bmc}` and `{action}` (`cycle`,
//! `off`, `status`) filled in; without either, a node's reboot is simulated (it is back after
//! `simulated_reboot_seconds`), which is what virtual clusters and tests use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use maintenance::{Action, NodeBudget, NodeFacts, Rollout, Window};
use serde_json::{json, Value};

use crate::config::{BmcCredentials, ConfigError, MaintenanceConfig, PowerConfig, RedfishConfig};
use workflow_runtime::Controller;

/// How the server reaches the BMCs.
enum Driver {
    /// A shell command with `{node}`, `{bmc}`, `{action}`.
    Command(String),
    /// Redfish at each node's BMC address.
    Redfish {
        cfg: RedfishConfig,
        credentials: BmcCredentials,
    },
    /// No BMC: reboots are simulated (virtual clusters, tests).
    Simulated,
}

/// The BMCs of the cluster's nodes and how to reach them.
pub struct Power {
    driver: Driver,
    bmcs: BTreeMap<String, String>,
    simulated: Duration,
    /// When each node was last power-cycled (simulated reboots end after `simulated`).
    cycled: Mutex<BTreeMap<String, std::time::Instant>>,
}

impl Power {
    pub fn new(
        cfg: &PowerConfig,
        bmcs: BTreeMap<String, String>,
        simulated: Duration,
    ) -> Result<Power, ConfigError> {
        let driver = match (&cfg.command, &cfg.redfish) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "[power]: set either command or [power.redfish], not both".into(),
                ))
            }
            (Some(c), None) => Driver::Command(c.clone()),
            (None, Some(r)) => Driver::Redfish {
                credentials: match &r.credentials_file {
                    Some(f) => BmcCredentials::load(f)?,
                    None => BmcCredentials::default(),
                },
                cfg: r.clone(),
            },
            (None, None) => Driver::Simulated,
        };
        Ok(Power {
            driver,
            bmcs,
            simulated,
            cycled: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn configured(&self) -> bool {
        !matches!(self.driver, Driver::Simulated)
    }

    fn run(&self, node: &str, action: &str) -> Result<String, String> {
        let Driver::Command(cmd) = &self.driver else {
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

    /// The node's BMC as a Redfish client.
    fn redfish(&self, node: &str) -> Result<Option<(redfish::Bmc, &RedfishConfig)>, String> {
        let Driver::Redfish { cfg, credentials } = &self.driver else {
            return Ok(None);
        };
        let address = self
            .bmcs
            .get(node)
            .ok_or_else(|| format!("node {node} has no bmc address in the cluster file"))?;
        let base = match cfg.port {
            Some(p) => format!("{}://{address}:{p}", cfg.scheme),
            None => format!("{}://{address}", cfg.scheme),
        };
        let system = cfg.system.as_ref().map(|s| s.replace("{node}", node));
        let login = credentials
            .of(node)
            .map(|l| (l.username.as_str(), l.password.as_str()));
        let bmc = redfish::Bmc::new(
            &base,
            system.as_deref(),
            login,
            Duration::from_secs(cfg.timeout_seconds),
        );
        Ok(Some((bmc, cfg)))
    }

    /// Reboot a node (power cycle; Redfish: GracefulRestart).
    pub fn cycle(&self, node: &str) -> Result<(), String> {
        match self.redfish(node)? {
            Some((bmc, _)) => bmc
                .reset(redfish::ResetType::GracefulRestart)
                .map_err(|e| e.to_string())?,
            None => {
                self.run(node, "cycle")?;
            }
        }
        self.cycled
            .lock()
            .expect("power")
            .insert(node.to_string(), std::time::Instant::now());
        Ok(())
    }

    /// Power a node off (Redfish: ForceOff, then PowerState read back until Off).
    pub fn off(&self, node: &str) -> Result<(), String> {
        match self.redfish(node)? {
            Some((bmc, cfg)) => bmc
                .reset_and_wait(
                    redfish::ResetType::ForceOff,
                    "Off",
                    Duration::from_secs(cfg.off_wait_seconds),
                )
                .map_err(|e| e.to_string()),
            None => self.run(node, "off").map(|_| ()),
        }
    }

    /// Whether a node is back after its power cycle.
    pub fn ready(&self, node: &str) -> bool {
        match &self.driver {
            Driver::Redfish { .. } => self
                .redfish(node)
                .ok()
                .flatten()
                .is_some_and(|(bmc, _)| bmc.power_state().is_ok_and(|s| s == "On")),
            Driver::Command(_) => self
                .run(node, "status")
                .is_ok_and(|out| out.to_ascii_lowercase().contains("on")),
            Driver::Simulated => self
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
        // Cordons and uncordons are applied while the rollout is locked, so that no reader sees
        // the rollout `finished` (or past a node) with that node still cordoned. Only the power
        // command, which may block on a BMC, runs after the lock is released.
        let power_cycles = {
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
            let mut power_cycles = Vec::new();
            for a in actions {
                tracing::warn!("maintenance: {a:?}");
                match a {
                    Action::Drain {
                        node,
                        grace_seconds,
                    } => {
                        ctl.drain(&node, Duration::from_secs(grace_seconds.max(0) as u64));
                    }
                    Action::Uncordon { node } => {
                        ctl.cordon(&node, false);
                    }
                    Action::PowerCycle { node } => power_cycles.push(node),
                }
            }
            power_cycles
        };
        for node in power_cycles {
            if let Err(e) = m.power.cycle(&node) {
                tracing::error!("maintenance: power cycle of {node}: {e}");
            }
        }
    }
}
