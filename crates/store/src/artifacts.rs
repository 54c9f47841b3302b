//! The artifacts finished workflows left in the repository, for garbage collection.

use sqlx::Row;

use crate::error::StoreError;
use crate::rows::*;
use crate::writer::Write;
use crate::Store;

impl Store {
    /// Record the artifacts a finished workflow stored (a replay records nothing twice).
    pub async fn artifacts_stored(&self, rows: Vec<ArtifactRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(Write::ArtifactsStored(rows)).await
    }

    /// Artifacts stored before `to_ns`.
    pub async fn artifacts_before(&self, to_ns: i64) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows = sqlx::query("SELECT uid, key, namespace, workflow, bytes, stored_ns FROM artifact_usage WHERE stored_ns < $1 ORDER BY stored_ns")
            .bind(to_ns)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| ArtifactRow {
                uid: r.get(0),
                key: r.get(1),
                namespace: r.get(2),
                workflow: r.get(3),
                bytes: r.get(4),
                stored_ns: r.get(5),
            })
            .collect())
    }
}
