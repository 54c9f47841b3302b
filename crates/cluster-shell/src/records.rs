//! What the cluster keeps of each node and each pod.

use scheduler::NodeSpec;

use crate::ask::Ask;
use crate::grant::Standing;

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) spec: NodeSpec,
    /// Per GPU: its UUID, and per MIG instance its UUID.
    pub(crate) uuids: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pod {
    pub(crate) ask: Ask,
    pub(crate) standing: Standing,
    /// Arrival order, so that a cycle serves pods first come, first served within their rules.
    pub(crate) seq: u64,
    /// Asks for nothing a cycle accounts for (no requests, no gang, a queue without limits):
    /// bound at once to a schedulable node, and left out of cycles, which then cost what
    /// the pods that do ask for something cost.
    pub(crate) light: bool,
    /// When it asked (nanoseconds since the epoch): its wait ends at its grant.
    pub(crate) asked_ns: i64,
}
