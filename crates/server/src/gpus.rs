//! The GPUs the server's pods are placed on: this machine's, found through NVML (none is
//! fine), or the GPU nodes of a cluster file (`--cluster onyx`: the seed's 16 virtual nodes,
//! steps still run here). A pod that asks for `nvidia.com/gpu` gets whole GPUs on one node,
//! the tightest that fits; when none fits it waits, and says why, until another pod releases
//! some. Requests no node can ever satisfy are refused at once.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use workflow_model::Template;

#[derive(Debug, Clone)]
struct Slot {
    index: u32,
    uuid: String,
    holder: Option<String>,
}

#[derive(Debug, Clone)]
struct PoolNode {
    name: String,
    slots: Vec<Slot>,
    /// Cordoned: takes no new pods.
    cordoned: bool,
}

/// What a pod holds: its node and GPUs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub node: String,
    pub indices: Vec<u32>,
    pub uuids: Vec<String>,
    /// Whether the GPUs are this machine's (then `CUDA_VISIBLE_DEVICES` pins them).
    pub local: bool,
}

pub struct GpuPool {
    nodes: Mutex<Vec<PoolNode>>,
    local: bool,
    released: Notify,
}

/// GPUs a template's containers ask for (`resources.limits` or `requests`), and a MIG profile
/// if one is asked for.
pub fn requested(t: &Template) -> Result<u32, String> {
    let mut containers = Vec::new();
    if let Some(c) = &t.container {
        containers.push(c);
    }
    if let Some(s) = &t.script {
        containers.push(&s.container);
    }
    if let Some(cs) = &t.container_set {
        containers.extend(cs.containers.iter());
    }
    let mut total = 0u32;
    for c in containers {
        let Some(res) = &c.resources else { continue };
        for part in ["limits", "requests"] {
            let Some(m) = res.get(part).and_then(|v| v.as_object()) else {
                continue;
            };
            for (k, v) in m {
                let n = v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .unwrap_or(0) as u32;
                if k == "nvidia.com/gpu" {
                    total = total.max(n);
                } else if k.starts_with("nvidia.com/mig-") || k.starts_with("nvidia.com/gpu-mig-") {
                    return Err(format!(
                        "{k}: this server's GPUs are not partitioned with MIG; request nvidia.com/gpu"
                    ));
                }
            }
            if m.contains_key("nvidia.com/gpu") {
                break;
            }
        }
    }
    Ok(total)
}

impl GpuPool {
    /// This machine's GPUs through NVML; no driver or no GPU is an empty pool.
    pub fn local() -> GpuPool {
        let mut slots = Vec::new();
        if let Ok(nvml) = nvml_wrapper::Nvml::init() {
            let count = nvml.device_count().unwrap_or(0);
            for i in 0..count {
                if let Ok(d) = nvml.device_by_index(i) {
                    slots.push(Slot {
                        index: i,
                        uuid: d.uuid().unwrap_or_default(),
                        holder: None,
                    });
                }
            }
        }
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        GpuPool {
            nodes: Mutex::new(vec![PoolNode {
                name: host,
                slots,
                cordoned: false,
            }]),
            local: true,
            released: Notify::new(),
        }
    }

    /// Virtual nodes: (name, GPU count) each.
    pub fn virtual_nodes(nodes: Vec<(String, u32)>) -> GpuPool {
        GpuPool {
            nodes: Mutex::new(
                nodes
                    .into_iter()
                    .map(|(name, n)| PoolNode {
                        cordoned: false,
                        slots: (0..n)
                            .map(|i| Slot {
                                index: i,
                                uuid: format!("GPU-{name}-{i}"),
                                holder: None,
                            })
                            .collect(),
                        name,
                    })
                    .collect(),
            ),
            local: false,
            released: Notify::new(),
        }
    }

    pub fn total(&self) -> usize {
        self.nodes
            .lock()
            .expect("pool")
            .iter()
            .map(|n| n.slots.len())
            .sum()
    }

    /// Take `count` GPUs on one node for `pod` now: `Ok(None)` when it must wait (with why).
    pub fn try_acquire(&self, pod: &str, count: u32) -> Result<Result<Grant, String>, String> {
        let mut nodes = self.nodes.lock().expect("pool");
        let largest = nodes.iter().map(|n| n.slots.len()).max().unwrap_or(0) as u32;
        if count > largest {
            return Err(if largest == 0 {
                format!("requests {count} nvidia.com/gpu but no GPU was found (NVML reports none); run on a machine with GPUs or use --cluster")
            } else {
                format!("requests {count} nvidia.com/gpu; the largest node has {largest}")
            });
        }
        // Already holding (a restart that re-adopts): keep it.
        for n in nodes.iter() {
            let held: Vec<&Slot> = n
                .slots
                .iter()
                .filter(|s| s.holder.as_deref() == Some(pod))
                .collect();
            if !held.is_empty() {
                return Ok(Ok(Grant {
                    node: n.name.clone(),
                    indices: held.iter().map(|s| s.index).collect(),
                    uuids: held.iter().map(|s| s.uuid.clone()).collect(),
                    local: self.local,
                }));
            }
        }
        let best = nodes
            .iter_mut()
            .filter(|n| !n.cordoned)
            .filter(|n| n.slots.iter().filter(|s| s.holder.is_none()).count() as u32 >= count)
            .min_by_key(|n| n.slots.iter().filter(|s| s.holder.is_none()).count());
        let Some(node) = best else {
            let free: usize = nodes
                .iter()
                .filter(|n| !n.cordoned)
                .map(|n| n.slots.iter().filter(|s| s.holder.is_none()).count())
                .max()
                .unwrap_or(0);
            let cordoned = nodes.iter().filter(|n| n.cordoned).count();
            let also = if cordoned > 0 {
                format!(", {cordoned} cordoned")
            } else {
                String::new()
            };
            return Ok(Err(format!(
                "waiting for GPUs: 0/{} nodes have {count} free nvidia.com/gpu (most free on one node: {free}{also})",
                nodes.len()
            )));
        };
        let mut grant = Grant {
            node: node.name.clone(),
            indices: Vec::new(),
            uuids: Vec::new(),
            local: self.local,
        };
        for s in node
            .slots
            .iter_mut()
            .filter(|s| s.holder.is_none())
            .take(count as usize)
        {
            s.holder = Some(pod.to_string());
            grant.indices.push(s.index);
            grant.uuids.push(s.uuid.clone());
        }
        Ok(Ok(grant))
    }

    /// Woken whenever GPUs are released (or a waiting pod is cancelled).
    pub fn released(&self) -> &Notify {
        &self.released
    }

    /// Mark GPUs as held by a pod that was started before a restart.
    pub fn hold(&self, pod: &str, grant: &Grant) {
        let mut nodes = self.nodes.lock().expect("pool");
        if let Some(n) = nodes.iter_mut().find(|n| n.name == grant.node) {
            for s in n
                .slots
                .iter_mut()
                .filter(|s| grant.indices.contains(&s.index))
            {
                s.holder = Some(pod.to_string());
            }
        }
    }

    pub fn release(&self, pod: &str) {
        let mut nodes = self.nodes.lock().expect("pool");
        for n in nodes.iter_mut() {
            for s in n.slots.iter_mut() {
                if s.holder.as_deref() == Some(pod) {
                    s.holder = None;
                }
            }
        }
        drop(nodes);
        self.released.notify_waiters();
    }

    /// Per node: free GPUs, total GPUs, cordoned.
    pub fn usage(&self) -> BTreeMap<String, (usize, usize, bool)> {
        self.nodes
            .lock()
            .expect("pool")
            .iter()
            .map(|n| {
                (
                    n.name.clone(),
                    (
                        n.slots.iter().filter(|s| s.holder.is_none()).count(),
                        n.slots.len(),
                        n.cordoned,
                    ),
                )
            })
            .collect()
    }

    /// Cordon (`true`) or uncordon a node; `false` if there is no such node.
    pub fn cordon(&self, node: &str, on: bool) -> bool {
        let mut nodes = self.nodes.lock().expect("pool");
        let Some(n) = nodes.iter_mut().find(|n| n.name == node) else {
            return false;
        };
        n.cordoned = on;
        drop(nodes);
        self.released.notify_waiters();
        true
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes
            .lock()
            .expect("pool")
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }
}

impl Grant {
    /// The environment a pod gets for its GPUs.
    pub fn env(&self) -> Vec<(String, String)> {
        let list = |v: Vec<String>| v.join(",");
        let mut env = vec![
            ("ONYX_NODE".to_string(), self.node.clone()),
            (
                "ONYX_GPUS".to_string(),
                list(self.indices.iter().map(|i| i.to_string()).collect()),
            ),
        ];
        if self.local {
            env.push(("CUDA_VISIBLE_DEVICES".into(), list(self.uuids.clone())));
            env.push(("NVIDIA_VISIBLE_DEVICES".into(), list(self.uuids.clone())));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_taken_tightest_first_and_waited_for() {
        let pool = GpuPool::virtual_nodes(vec![("a".into(), 8), ("b".into(), 2)]);
        let g = pool.try_acquire("p1", 2).unwrap().unwrap();
        assert_eq!(g.node, "b", "the tightest node that fits");
        let g = pool.try_acquire("p2", 8).unwrap().unwrap();
        assert_eq!(g.node, "a");
        let wait = pool.try_acquire("p3", 1).unwrap().unwrap_err();
        assert!(
            wait.contains("0/2 nodes have 1 free nvidia.com/gpu"),
            "{wait}"
        );
        pool.release("p1");
        assert_eq!(pool.try_acquire("p3", 1).unwrap().unwrap().node, "b");
        assert!(pool
            .try_acquire("p4", 9)
            .unwrap_err()
            .contains("the largest node has 8"));
    }
}
