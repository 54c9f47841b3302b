//! Reads of workflows, their event logs, the archive and stored objects, from a pool of their
//! own that never waits for the writer.

use sqlx::Row;

use crate::error::StoreError;
use crate::rows::*;
use crate::select;
use crate::Store;

impl Store {
    pub async fn workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkflowRow>, StoreError> {
        let row = sqlx::query("SELECT uid, namespace, name, created_ns, phase, finished_ns, manifest, params, context, status FROM workflows WHERE namespace = $1 AND name = $2")
            .bind(namespace)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| workflow_row(&r)))
    }

    /// The label keys of archived workflows (of the namespaces `within`, when given), sorted;
    /// with `key`, that key's values instead.
    pub async fn archived_labels(
        &self,
        key: Option<&str>,
        within: Option<&[String]>,
    ) -> Result<Vec<String>, StoreError> {
        let mut b = select::Sql::new(match key {
            None => "SELECT DISTINCT l.key FROM archived_labels l JOIN archived_workflows t ON t.uid = l.uid WHERE 1=1",
            Some(_) => "SELECT DISTINCT l.value FROM archived_labels l JOIN archived_workflows t ON t.uid = l.uid WHERE 1=1",
        });
        if let Some(k) = key {
            b.push(" AND l.key = ").bind_text(k);
        }
        if let Some(within) = within {
            if within.is_empty() {
                return Ok(Vec::new());
            }
            b.push(" AND t.namespace IN (").bind_list(within).push(")");
        }
        b.push(" ORDER BY 1");
        let rows = b.query().fetch_all(&self.read).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// A live workflow by uid.
    pub async fn workflow_by_uid(&self, uid: &str) -> Result<Option<WorkflowRow>, StoreError> {
        let row = sqlx::query("SELECT uid, namespace, name, created_ns, phase, finished_ns, manifest, params, context, status FROM workflows WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| workflow_row(&r)))
    }

    /// Workflows whose engines have not finished: the controller's work after a restart.
    pub async fn unfinished_workflows(&self) -> Result<Vec<WorkflowRow>, StoreError> {
        let rows = sqlx::query("SELECT uid, namespace, name, created_ns, phase, finished_ns, manifest, params, context, status FROM workflows WHERE finished_ns IS NULL ORDER BY created_ns, uid")
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(workflow_row).collect())
    }

    /// How many live (not archived, not deleted) workflows each namespace has in each phase:
    /// what Argo's `argo_workflows_count` gauge counts.
    pub async fn count_by_phase(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, phase, COUNT(*) FROM workflows GROUP BY namespace, phase ORDER BY namespace, phase",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    pub async fn events(&self, uid: &str) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query("SELECT seq, at_ns, body FROM events WHERE uid = $1 ORDER BY seq")
            .bind(uid)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| EventRow {
                seq: r.get(0),
                at_ns: r.get(1),
                body: r.get(2),
            })
            .collect())
    }

    /// Live workflows, newest first; each item is the workflow's latest JSON.
    pub async fn list_workflows(&self, q: &ListQuery) -> Result<Page<String>, StoreError> {
        self.list("workflows", "workflow_labels", "status", q).await
    }

    pub async fn list_archived(&self, q: &ListQuery) -> Result<Page<String>, StoreError> {
        self.list("archived_workflows", "archived_labels", "body", q)
            .await
    }

    async fn list(
        &self,
        table: &str,
        labels: &str,
        body: &str,
        q: &ListQuery,
    ) -> Result<Page<String>, StoreError> {
        let mut b = select::Sql::new(format!(
            "SELECT t.uid, t.{body}, t.created_ns FROM {table} t WHERE 1=1"
        ));
        if let Some(ns) = &q.namespace {
            b.push(" AND t.namespace = ").bind_text(ns);
        }
        if let Some(name) = &q.name {
            b.push(" AND t.name = ").bind_text(name);
        }
        if let Some(within) = &q.within {
            if within.is_empty() {
                b.push(" AND 1 = 0");
            } else {
                b.push(" AND t.namespace IN (").bind_list(within).push(")");
            }
        }
        select::push_label_filters(&mut b, labels, &q.selector);
        if let Some(token) = &q.continue_token {
            let (ns, uid) = decode_continue(token)?;
            b.push(" AND (t.created_ns < ")
                .bind_int(ns)
                .push(" OR (t.created_ns = ")
                .bind_int(ns)
                .push(" AND t.uid < ")
                .bind_text(&uid)
                .push("))");
        }
        b.push(" ORDER BY t.created_ns DESC, t.uid DESC");
        if q.limit > 0 {
            b.push(" LIMIT ").bind_int((q.limit + 1) as i64);
        }
        let rows = b.query().fetch_all(&self.read).await?;
        let mut items: Vec<(String, String, i64)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let mut next = None;
        if q.limit > 0 && items.len() > q.limit {
            items.truncate(q.limit);
            let (uid, _, ns) = items.last().expect("non-empty page");
            next = Some(encode_continue(*ns, uid));
        }
        Ok(Page {
            items: items.into_iter().map(|(_, b, _)| b).collect(),
            next,
        })
    }

    pub async fn archived(&self, uid: &str) -> Result<Option<ArchivedRow>, StoreError> {
        let row = sqlx::query("SELECT uid, namespace, name, phase, created_ns, finished_ns, body FROM archived_workflows WHERE uid = $1")
            .bind(uid)
            .fetch_optional(&self.read)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let labels = sqlx::query("SELECT key, value FROM archived_labels WHERE uid = $1")
            .bind(uid)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|l| (l.get(0), l.get(1)))
            .collect();
        Ok(Some(ArchivedRow {
            uid: r.get(0),
            namespace: r.get(1),
            name: r.get(2),
            phase: r.get(3),
            created_ns: r.get(4),
            finished_ns: r.get(5),
            labels,
            body: r.get(6),
        }))
    }

    pub async fn object(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectRow>, StoreError> {
        let row = sqlx::query("SELECT kind, namespace, name, created_ns, body FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3")
            .bind(kind)
            .bind(namespace)
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| object_row(&r)))
    }

    /// Objects of a kind, by name; `namespace` None: in every namespace.
    pub async fn objects(
        &self,
        kind: &str,
        namespace: Option<&str>,
    ) -> Result<Vec<ObjectRow>, StoreError> {
        let rows = match namespace {
            Some(ns) => sqlx::query("SELECT kind, namespace, name, created_ns, body FROM objects WHERE kind = $1 AND namespace = $2 ORDER BY name")
                .bind(kind)
                .bind(ns)
                .fetch_all(&self.read)
                .await?,
            None => sqlx::query("SELECT kind, namespace, name, created_ns, body FROM objects WHERE kind = $1 ORDER BY namespace, name")
                .bind(kind)
                .fetch_all(&self.read)
                .await?,
        };
        Ok(rows.iter().map(object_row).collect())
    }
}
