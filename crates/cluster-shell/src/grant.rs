//! What a pod was given (its node and devices), and where a pod stands.

use serde::{Deserialize, Serialize};

use crate::ask::Ask;

/// What a pod was given: its node and devices. Written to the pod's directory so that a
/// restarted server gives a still-running pod back exactly what it holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub node: String,
    /// Devices as the scheduler names them: `"3"` (GPU 3) or `"3/2"` (MIG instance 2 of GPU 3).
    pub devices: Vec<String>,
    /// Their UUIDs (`GPU-…`, `MIG-…`), for `CUDA_VISIBLE_DEVICES`.
    pub uuids: Vec<String>,
    /// Whether the devices are this machine's (then `CUDA_VISIBLE_DEVICES` pins them).
    pub local: bool,
    /// A fractional GPU share in thousandths, if that is what was asked.
    #[serde(default)]
    pub gpu_milli: Option<i64>,
    pub ask: Ask,
}

/// Where a pod stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Standing {
    Bound(Box<Grant>),
    Waiting(String),
    /// It can never run here; the pod fails with this message.
    Refused(String),
}

impl Grant {
    /// Whether the pod holds nothing a cycle accounts for.
    pub fn holds_nothing(&self) -> bool {
        self.devices.is_empty() && self.ask.requests.is_empty() && self.ask.group.is_none()
    }

    /// The environment a pod gets for its devices.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("ONYX_NODE".to_string(), self.node.clone())];
        if !self.devices.is_empty() {
            env.push(("ONYX_GPUS".to_string(), self.devices.join(",")));
        }
        if let Some(m) = self.gpu_milli {
            env.push(("ONYX_GPU_MILLI".into(), m.to_string()));
        }
        if self.local && !self.uuids.is_empty() {
            env.push(("CUDA_VISIBLE_DEVICES".into(), self.uuids.join(",")));
            env.push(("NVIDIA_VISIBLE_DEVICES".into(), self.uuids.join(",")));
        }
        env
    }
}

/// How a pod's wait for the scheduler ended ([`crate::Cluster::wait_for_grant`]).
#[derive(Debug)]
pub enum Waited {
    Granted(Box<Grant>),
    /// The executor cancelled the wait (a kill); the pod's ask is released.
    Cancelled,
    /// It can never run here; the pod's ask is released.
    Refused(String),
    /// The pod is gone from the cluster (evicted before it started).
    Evicted,
}
