//! The usage ledger's rows: a pod's hold on GPUs or CPU, from its grant to its release.

use crate::error::StoreError;
use crate::rows::*;
use crate::writer::Write;
use crate::Store;

impl Store {
    /// A pod was granted GPUs. A pod that already has an open hold (re-adopted after a
    /// restart) keeps it: its use runs on from its first grant.
    pub async fn usage_started(&self, row: UsageRow) -> Result<(), StoreError> {
        self.write(Write::UsageStarted(Box::new(row))).await
    }

    /// A pod released what it held.
    pub async fn usage_ended(&self, pod: &str, ended_ns: i64) -> Result<(), StoreError> {
        self.write(Write::UsageEnded {
            pod: pod.into(),
            ended_ns,
        })
        .await
    }

    /// On start: every open hold of a pod not among `holding` ended while the server was
    /// down; it is closed at `ended_ns` (the restart: an upper bound, never an undercount).
    pub async fn usage_close_all_but(
        &self,
        holding: Vec<String>,
        ended_ns: i64,
    ) -> Result<(), StoreError> {
        self.write(Write::UsageCloseAllBut { holding, ended_ns })
            .await
    }

    /// Every hold that overlaps `[from_ns, to_ns)`, oldest first.
    pub async fn usage(&self, from_ns: i64, to_ns: i64) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query("SELECT pod, namespace, queue, node, gpus, asked_ns, started_ns, ended_ns, devices, cpus FROM pod_usage WHERE started_ns < $1 AND (ended_ns IS NULL OR ended_ns > $2) ORDER BY started_ns, pod")
            .bind(to_ns)
            .bind(from_ns)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(usage_row).collect())
    }

    /// What one pod held, each time it was granted GPUs, oldest first.
    pub async fn usage_of_pod(&self, pod: &str) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query("SELECT pod, namespace, queue, node, gpus, asked_ns, started_ns, ended_ns, devices, cpus FROM pod_usage WHERE pod = $1 ORDER BY started_ns")
            .bind(pod)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(usage_row).collect())
    }
}
