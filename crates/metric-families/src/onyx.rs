//! ONYX's own metrics: GPUs held per node, namespace and queue, quotas, the audit trail and
//! the store's size and free disk.

use std::collections::BTreeMap;

use prometheus_client::encoding::DescriptorEncoder;

use crate::dcgm::holdings;
use crate::encode::{argo_counter, gauges};
use crate::snapshot::Snapshot;

/// ONYX's own families.
pub(crate) fn encode(enc: &mut DescriptorEncoder, s: &Snapshot) -> std::fmt::Result {
    // ONYX's own: GPUs held per node, namespace and queue; quotas; the store.
    gauges(
        enc,
        "onyx_node_gpus",
        "GPUs of a node",
        s.nodes
            .iter()
            .map(|n| (vec![("node", n.name.clone())], n.gpus as f64)),
    )?;
    gauges(
        enc,
        "onyx_node_schedulable",
        "Whether a node takes new pods (0 when cordoned)",
        s.nodes
            .iter()
            .map(|n| (vec![("node", n.name.clone())], (!n.cordoned) as u8 as f64)),
    )?;
    let mut held: BTreeMap<(String, String, String), f64> = BTreeMap::new();
    for n in &s.nodes {
        for (h, share) in n.devices.iter().flat_map(holdings) {
            *held
                .entry((n.name.clone(), h.namespace.clone(), h.queue.clone()))
                .or_default() += share;
        }
    }
    gauges(
        enc,
        "onyx_gpus_allocated",
        "GPU equivalents held by pods, per node, namespace (tenant) and queue",
        held.into_iter().map(|((node, ns, queue), v)| {
            (vec![("node", node), ("namespace", ns), ("queue", queue)], v)
        }),
    )?;
    gauges(
        enc,
        "onyx_namespace_gpu_quota",
        "GPUs a namespace (tenant) may hold",
        s.quotas
            .iter()
            .map(|(ns, q)| (vec![("namespace", ns.clone())], *q)),
    )?;
    if let Some(a) = &s.audit {
        use std::sync::atomic::Ordering::Relaxed;
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Relaxed) as f64;
        argo_counter(
            enc,
            "onyx_audit_records_written",
            "Audit records written to the audit file",
            n(&a.written),
        )?;
        argo_counter(enc, "onyx_audit_records_dropped", "Audit records lost: the writer's queue was full or the file could not be written (each is also logged)", n(&a.dropped))?;
        argo_counter(
            enc,
            "onyx_audit_loki_pushed_lines",
            "Audit lines Loki accepted",
            n(&a.loki_pushed),
        )?;
        argo_counter(
            enc,
            "onyx_audit_loki_dropped_lines",
            "Audit lines dropped from the full Loki buffer (they remain in the audit file)",
            n(&a.loki_dropped),
        )?;
        argo_counter(
            enc,
            "onyx_audit_loki_push_failures",
            "Pushes to Loki that failed (retried)",
            n(&a.loki_failures),
        )?;
        gauges(
            enc,
            "onyx_audit_loki_pending_lines",
            "Audit lines waiting for Loki",
            [(Vec::new(), n(&a.loki_pending))],
        )?;
    }
    if let Some(b) = s.store_bytes {
        gauges(
            enc,
            "onyx_store_bytes",
            "Size of the store's database files",
            [(Vec::new(), b as f64)],
        )?;
    }
    if let Some((avail, size)) = s.store_fs {
        gauges(
            enc,
            "onyx_store_filesystem_avail_bytes",
            "Free bytes of the filesystem the store is on",
            [(Vec::new(), avail as f64)],
        )?;
        gauges(
            enc,
            "onyx_store_filesystem_size_bytes",
            "Size of the filesystem the store is on",
            [(Vec::new(), size as f64)],
        )?;
    }
    Ok(())
}

/// The store's size (database and WAL) and its filesystem's free and total bytes.
pub fn store_disk(home: &std::path::Path) -> (Option<u64>, Option<(u64, u64)>) {
    let mut bytes = 0u64;
    let mut any = false;
    for f in ["onyx.db", "onyx.db-wal", "onyx.db-shm"] {
        if let Ok(m) = std::fs::metadata(home.join(f)) {
            bytes += m.len();
            any = true;
        }
    }
    let fs = nix::sys::statvfs::statvfs(home).ok().map(|s| {
        let frag = s.fragment_size();
        (s.blocks_available() * frag, s.blocks() * frag)
    });
    (any.then_some(bytes), fs)
}
