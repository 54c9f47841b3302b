//! ONYX's durable state in SQLite (WAL): live workflows with the event log each engine
//! handled, the workflow archive, and stored objects (WorkflowTemplates,
//! ClusterWorkflowTemplates, CronWorkflows).
//!
//! Writes go through one writer task that commits whatever is queued in one transaction
//! (group commit): a caller's write is durable when its future resolves, and many concurrent
//! submissions share a commit. Reads use a pool of their own and never wait for the writer.
//!
//! Durability: `journal_mode=WAL`, `synchronous=NORMAL` — a committed write survives the
//! process being killed at any moment (the WAL is in the kernel's page cache); after a power
//! loss the database is consistent but the last commits may be missing.

mod select;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

pub use select::{LabelReq, Selector, SelectorError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("invalid continue token")]
    BadContinue,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store's writer has stopped")]
    WriterGone,
}

/// A workflow as submitted, with what its engine is built from.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub created_ns: i64,
    pub labels: Vec<(String, String)>,
    /// The Workflow object (JSON) with its final name.
    pub manifest: String,
    /// `-p` overrides, JSON.
    pub params: String,
    /// Templates and config the engine was built with, JSON.
    pub context: String,
    /// The first status (JSON of the whole workflow).
    pub status: String,
}

/// A stored workflow.
#[derive(Debug, Clone)]
pub struct WorkflowRow {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub created_ns: i64,
    pub phase: String,
    pub finished_ns: Option<i64>,
    pub manifest: String,
    pub params: String,
    pub context: String,
    pub status: String,
}

/// One logged engine event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub seq: i64,
    pub at_ns: i64,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct ArchivedRow {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub phase: String,
    pub created_ns: i64,
    pub finished_ns: Option<i64>,
    pub labels: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct ObjectRow {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub created_ns: i64,
    pub body: String,
}

/// A pod's hold on GPUs, from its grant (`started_ns`) to its release (`ended_ns`, `None` while
/// it holds them).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub pod: String,
    pub namespace: String,
    pub queue: String,
    pub node: String,
    /// GPU equivalents: a whole GPU 1, a fraction its share, a MIG instance slices/7.
    pub gpus: f64,
    /// CPU cores its requests add up to.
    pub cpus: f64,
    /// The devices as the scheduler names them: `3`, or `3/2` for MIG instance 2 of GPU 3.
    pub devices: Vec<String>,
    /// When the pod asked to be scheduled: its wait is `started_ns - asked_ns`.
    pub asked_ns: i64,
    pub started_ns: i64,
    pub ended_ns: Option<i64>,
}

/// A page of a list and the token for the next one (`None`: this was the last).
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// What to list.
#[derive(Debug, Default, Clone)]
pub struct ListQuery {
    pub namespace: Option<String>,
    pub selector: Selector,
    /// `metadata.name=...` field selector.
    pub name: Option<String>,
    /// 0: no limit.
    pub limit: usize,
    pub continue_token: Option<String>,
}

enum Write {
    ArtifactsStored(Vec<ArtifactRow>),
    Notify(Vec<NewNotification>),
    NotificationSent {
        id: i64,
        at_ns: i64,
    },
    NotificationFailed {
        id: i64,
        next_ns: i64,
        error: String,
    },
    InsertWorkflow(Box<NewWorkflow>),
    AppendEvents {
        uid: String,
        events: Vec<EventRow>,
    },
    UpdateStatus {
        uid: String,
        phase: String,
        finished_ns: Option<i64>,
        status: String,
    },
    Archive(Box<ArchivedRow>),
    DeleteWorkflow {
        uid: String,
    },
    ResetWorkflow {
        uid: String,
        manifest: String,
        status: String,
    },
    DeleteArchived {
        uid: String,
    },
    PutObject {
        row: ObjectRow,
        create: bool,
    },
    DeleteObject {
        kind: String,
        namespace: String,
        name: String,
    },
    UsageStarted(Box<UsageRow>),
    UsageEnded {
        pod: String,
        ended_ns: i64,
    },
    UsageCloseAllBut {
        holding: Vec<String>,
        ended_ns: i64,
    },
}

type Reply = oneshot::Sender<Result<(), StoreError>>;

/// An artifact a finished workflow left in the repository, and its size.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactRow {
    pub uid: String,
    pub key: String,
    pub namespace: String,
    pub workflow: String,
    pub bytes: i64,
    pub stored_ns: i64,
}

/// A notification to queue: `key` names it uniquely (workflow uid, webhook, phase).
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    pub key: String,
    pub webhook: String,
    pub body: String,
    pub created_ns: i64,
}

/// A queued notification not yet acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub key: String,
    pub webhook: String,
    pub body: String,
    pub attempts: i64,
}

#[derive(Clone)]
pub struct Store {
    read: SqlitePool,
    writer: mpsc::UnboundedSender<(Write, Reply)>,
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(false)
}

impl Store {
    /// Open (or create) the database at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        let mut conn = SqliteConnection::connect_with(&options(path)).await?;
        sqlx::migrate!("./migrations").run(&mut conn).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options(path).read_only(true))
            .await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(conn, rx));
        Ok(Store { read, writer: tx })
    }

    async fn write(&self, w: Write) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send((w, tx))
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Commit a new workflow; `AlreadyExists` if its namespace already has one of that name.
    pub async fn insert_workflow(&self, wf: NewWorkflow) -> Result<(), StoreError> {
        self.write(Write::InsertWorkflow(Box::new(wf))).await
    }

    pub async fn append_events(&self, uid: &str, events: Vec<EventRow>) -> Result<(), StoreError> {
        self.write(Write::AppendEvents {
            uid: uid.to_string(),
            events,
        })
        .await
    }

    pub async fn update_status(
        &self,
        uid: &str,
        phase: &str,
        finished_ns: Option<i64>,
        status: String,
    ) -> Result<(), StoreError> {
        self.write(Write::UpdateStatus {
            uid: uid.to_string(),
            phase: phase.to_string(),
            finished_ns,
            status,
        })
        .await
    }

    pub async fn archive(&self, row: ArchivedRow) -> Result<(), StoreError> {
        self.write(Write::Archive(Box::new(row))).await
    }

    /// Delete a live workflow and its event log.
    pub async fn delete_workflow(&self, uid: &str) -> Result<(), StoreError> {
        self.write(Write::DeleteWorkflow {
            uid: uid.to_string(),
        })
        .await
    }

    /// Start a workflow's log over (a retry): no events, not finished, a new manifest.
    pub async fn reset_workflow(
        &self,
        uid: &str,
        manifest: String,
        status: String,
    ) -> Result<(), StoreError> {
        self.write(Write::ResetWorkflow {
            uid: uid.to_string(),
            manifest,
            status,
        })
        .await
    }

    pub async fn delete_archived(&self, uid: &str) -> Result<(), StoreError> {
        self.write(Write::DeleteArchived {
            uid: uid.to_string(),
        })
        .await
    }

    /// Store an object; with `create`, `AlreadyExists` if it is there, else `NotFound` if not.
    pub async fn put_object(&self, row: ObjectRow, create: bool) -> Result<(), StoreError> {
        self.write(Write::PutObject { row, create }).await
    }

    pub async fn delete_object(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<(), StoreError> {
        self.write(Write::DeleteObject {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        })
        .await
    }

    // ----- reads -----

    pub async fn workflow(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<WorkflowRow>, StoreError> {
        let row = sqlx::query("SELECT uid, namespace, name, created_ns, phase, finished_ns, manifest, params, context, status FROM workflows WHERE namespace = ? AND name = ?")
            .bind(namespace)
            .bind(name)
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

    /// Record the artifacts a finished workflow stored (a replay records nothing twice).
    pub async fn artifacts_stored(&self, rows: Vec<ArtifactRow>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(Write::ArtifactsStored(rows)).await
    }

    /// Artifacts stored before `to_ns`.
    pub async fn artifacts_before(&self, to_ns: i64) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows = sqlx::query("SELECT uid, key, namespace, workflow, bytes, stored_ns FROM artifact_usage WHERE stored_ns < ? ORDER BY stored_ns")
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

    /// Queue notifications; one whose key is already queued (or delivered) is left alone.
    pub async fn notify(&self, rows: Vec<NewNotification>) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(Write::Notify(rows)).await
    }

    /// Undelivered notifications due at `now_ns`, oldest first.
    pub async fn due_notifications(
        &self,
        now_ns: i64,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let rows = sqlx::query("SELECT id, key, webhook, body, attempts FROM notifications WHERE delivered_ns IS NULL AND next_ns <= ? ORDER BY id LIMIT ?")
            .bind(now_ns)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Notification {
                id: r.get(0),
                key: r.get(1),
                webhook: r.get(2),
                body: r.get(3),
                attempts: r.get(4),
            })
            .collect())
    }

    /// Undelivered notifications, all webhooks.
    pub async fn pending_notifications(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM notifications WHERE delivered_ns IS NULL")
            .fetch_one(&self.read)
            .await?;
        Ok(row.get(0))
    }

    pub async fn notification_sent(&self, id: i64, at_ns: i64) -> Result<(), StoreError> {
        self.write(Write::NotificationSent { id, at_ns }).await
    }

    pub async fn notification_failed(
        &self,
        id: i64,
        next_ns: i64,
        error: String,
    ) -> Result<(), StoreError> {
        self.write(Write::NotificationFailed { id, next_ns, error })
            .await
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
        let rows = sqlx::query("SELECT seq, at_ns, body FROM events WHERE uid = ? ORDER BY seq")
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
        let mut b: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT t.uid, t.{body}, t.created_ns FROM {table} t WHERE 1=1"
        ));
        if let Some(ns) = &q.namespace {
            b.push(" AND t.namespace = ").push_bind(ns.clone());
        }
        if let Some(name) = &q.name {
            b.push(" AND t.name = ").push_bind(name.clone());
        }
        select::push_label_filters(&mut b, labels, &q.selector);
        if let Some(token) = &q.continue_token {
            let (ns, uid) = decode_continue(token)?;
            b.push(" AND (t.created_ns < ")
                .push_bind(ns)
                .push(" OR (t.created_ns = ")
                .push_bind(ns)
                .push(" AND t.uid < ")
                .push_bind(uid)
                .push("))");
        }
        b.push(" ORDER BY t.created_ns DESC, t.uid DESC");
        if q.limit > 0 {
            b.push(" LIMIT ").push_bind((q.limit + 1) as i64);
        }
        let rows = b.build().fetch_all(&self.read).await?;
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
        let row = sqlx::query("SELECT uid, namespace, name, phase, created_ns, finished_ns, body FROM archived_workflows WHERE uid = ?")
            .bind(uid)
            .fetch_optional(&self.read)
            .await?;
        let Some(r) = row else { return Ok(None) };
        let labels = sqlx::query("SELECT key, value FROM archived_labels WHERE uid = ?")
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
        let rows = sqlx::query("SELECT pod, namespace, queue, node, gpus, asked_ns, started_ns, ended_ns, devices, cpus FROM pod_usage WHERE started_ns < ? AND (ended_ns IS NULL OR ended_ns > ?) ORDER BY started_ns, pod")
            .bind(to_ns)
            .bind(from_ns)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(usage_row).collect())
    }

    /// What one pod held, each time it was granted GPUs, oldest first.
    pub async fn usage_of_pod(&self, pod: &str) -> Result<Vec<UsageRow>, StoreError> {
        let rows = sqlx::query("SELECT pod, namespace, queue, node, gpus, asked_ns, started_ns, ended_ns, devices, cpus FROM pod_usage WHERE pod = ? ORDER BY started_ns")
            .bind(pod)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(usage_row).collect())
    }

    pub async fn object(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ObjectRow>, StoreError> {
        let row = sqlx::query("SELECT kind, namespace, name, created_ns, body FROM objects WHERE kind = ? AND namespace = ? AND name = ?")
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
            Some(ns) => sqlx::query("SELECT kind, namespace, name, created_ns, body FROM objects WHERE kind = ? AND namespace = ? ORDER BY name")
                .bind(kind)
                .bind(ns)
                .fetch_all(&self.read)
                .await?,
            None => sqlx::query("SELECT kind, namespace, name, created_ns, body FROM objects WHERE kind = ? ORDER BY namespace, name")
                .bind(kind)
                .fetch_all(&self.read)
                .await?,
        };
        Ok(rows.iter().map(object_row).collect())
    }
}

fn workflow_row(r: &sqlx::sqlite::SqliteRow) -> WorkflowRow {
    WorkflowRow {
        uid: r.get(0),
        namespace: r.get(1),
        name: r.get(2),
        created_ns: r.get(3),
        phase: r.get(4),
        finished_ns: r.get(5),
        manifest: r.get(6),
        params: r.get(7),
        context: r.get(8),
        status: r.get(9),
    }
}

fn object_row(r: &sqlx::sqlite::SqliteRow) -> ObjectRow {
    ObjectRow {
        kind: r.get(0),
        namespace: r.get(1),
        name: r.get(2),
        created_ns: r.get(3),
        body: r.get(4),
    }
}

fn encode_continue(created_ns: i64, uid: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{created_ns}:{uid}"))
}

fn decode_continue(token: &str) -> Result<(i64, String), StoreError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::BadContinue)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::BadContinue)?;
    let (ns, uid) = text.split_once(':').ok_or(StoreError::BadContinue)?;
    Ok((
        i64::from_str(ns).map_err(|_| StoreError::BadContinue)?,
        uid.to_string(),
    ))
}

/// The writer: commits everything queued in one transaction, then answers each caller.
async fn writer(mut conn: SqliteConnection, mut rx: mpsc::UnboundedReceiver<(Write, Reply)>) {
    const MAX_BATCH: usize = 512;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let mut results: Vec<Result<(), StoreError>> = Vec::with_capacity(batch.len());
        let outcome: Result<(), sqlx::Error> = async {
            let mut tx = conn.begin().await?;
            for (w, _) in &batch {
                results.push(apply(&mut tx, w).await);
            }
            tx.commit().await
        }
        .await;
        for ((_, reply), result) in batch.into_iter().zip(
            results
                .into_iter()
                .chain(std::iter::repeat_with(|| Err(StoreError::WriterGone))),
        ) {
            let r = match &outcome {
                Ok(()) => result,
                Err(e) => Err(StoreError::Db(sqlx::Error::Protocol(format!(
                    "commit failed: {e}"
                )))),
            };
            let _ = reply.send(r);
        }
    }
}

async fn apply(tx: &mut SqliteConnection, w: &Write) -> Result<(), StoreError> {
    match w {
        Write::ArtifactsStored(rows) => {
            for a in rows {
                sqlx::query("INSERT INTO artifact_usage (uid, key, namespace, workflow, bytes, stored_ns) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
                    .bind(&a.uid)
                    .bind(&a.key)
                    .bind(&a.namespace)
                    .bind(&a.workflow)
                    .bind(a.bytes)
                    .bind(a.stored_ns)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Write::Notify(rows) => {
            for n in rows {
                sqlx::query("INSERT INTO notifications (key, webhook, body, created_ns, next_ns) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING")
                    .bind(&n.key)
                    .bind(&n.webhook)
                    .bind(&n.body)
                    .bind(n.created_ns)
                    .bind(n.created_ns)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Write::NotificationSent { id, at_ns } => {
            sqlx::query("UPDATE notifications SET delivered_ns = ?, attempts = attempts + 1, last_error = NULL WHERE id = ?")
                .bind(at_ns)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Write::NotificationFailed { id, next_ns, error } => {
            sqlx::query("UPDATE notifications SET next_ns = ?, attempts = attempts + 1, last_error = ? WHERE id = ?")
                .bind(next_ns)
                .bind(error)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Write::InsertWorkflow(wf) => {
            // Pods are keyed by their name on one server (their directories, the scheduler's
            // and the ledger's rows), and Argo derives pod names from the workflow's name: two
            // namespaces with one workflow name would share pods. Checked here, in the one
            // writer, so two concurrent submissions cannot both pass.
            let elsewhere: Option<String> = sqlx::query_scalar(
                "SELECT namespace FROM workflows WHERE name = ? AND namespace != ? LIMIT 1",
            )
            .bind(&wf.name)
            .bind(&wf.namespace)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(other) = elsewhere {
                return Err(StoreError::AlreadyExists(format!(
                    "workflows.argoproj.io \"{}\" already exists in namespace {other:?}: on one ONYX server a workflow name is unique across namespaces (its pods are named after it); choose another name or use generateName",
                    wf.name
                )));
            }
            let done = sqlx::query("INSERT INTO workflows (uid, namespace, name, created_ns, phase, finished_ns, manifest, params, context, status) VALUES (?, ?, ?, ?, 'Pending', NULL, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
                .bind(&wf.uid)
                .bind(&wf.namespace)
                .bind(&wf.name)
                .bind(wf.created_ns)
                .bind(&wf.manifest)
                .bind(&wf.params)
                .bind(&wf.context)
                .bind(&wf.status)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "workflows.argoproj.io \"{}\" already exists",
                    wf.name
                )));
            }
            for (k, v) in &wf.labels {
                sqlx::query(
                    "INSERT OR REPLACE INTO workflow_labels (uid, key, value) VALUES (?, ?, ?)",
                )
                .bind(&wf.uid)
                .bind(k)
                .bind(v)
                .execute(&mut *tx)
                .await?;
            }
        }
        Write::AppendEvents { uid, events } => {
            for e in events {
                sqlx::query("INSERT INTO events (uid, seq, at_ns, body) VALUES (?, ?, ?, ?)")
                    .bind(uid)
                    .bind(e.seq)
                    .bind(e.at_ns)
                    .bind(&e.body)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Write::UpdateStatus {
            uid,
            phase,
            finished_ns,
            status,
        } => {
            sqlx::query(
                "UPDATE workflows SET phase = ?, finished_ns = ?, status = ? WHERE uid = ?",
            )
            .bind(phase)
            .bind(finished_ns)
            .bind(status)
            .bind(uid)
            .execute(&mut *tx)
            .await?;
        }
        Write::Archive(a) => {
            sqlx::query("INSERT OR REPLACE INTO archived_workflows (uid, namespace, name, phase, created_ns, finished_ns, body) VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(&a.uid)
                .bind(&a.namespace)
                .bind(&a.name)
                .bind(&a.phase)
                .bind(a.created_ns)
                .bind(a.finished_ns)
                .bind(&a.body)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM archived_labels WHERE uid = ?")
                .bind(&a.uid)
                .execute(&mut *tx)
                .await?;
            for (k, v) in &a.labels {
                sqlx::query("INSERT INTO archived_labels (uid, key, value) VALUES (?, ?, ?)")
                    .bind(&a.uid)
                    .bind(k)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Write::DeleteWorkflow { uid } => {
            let done = sqlx::query("DELETE FROM workflows WHERE uid = ?")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM workflow_labels WHERE uid = ?")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM events WHERE uid = ?")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("workflow {uid} not found")));
            }
        }
        Write::ResetWorkflow {
            uid,
            manifest,
            status,
        } => {
            sqlx::query("DELETE FROM events WHERE uid = ?")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("UPDATE workflows SET phase = 'Running', finished_ns = NULL, manifest = ?, status = ? WHERE uid = ?")
                .bind(manifest)
                .bind(status)
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("workflow {uid} not found")));
            }
        }
        Write::DeleteArchived { uid } => {
            let done = sqlx::query("DELETE FROM archived_workflows WHERE uid = ?")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM archived_labels WHERE uid = ?")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "archived workflow {uid} not found"
                )));
            }
        }
        Write::PutObject { row, create } => {
            let done = if *create {
                sqlx::query("INSERT INTO objects (kind, namespace, name, created_ns, body) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")
                    .bind(&row.kind)
                    .bind(&row.namespace)
                    .bind(&row.name)
                    .bind(row.created_ns)
                    .bind(&row.body)
                    .execute(&mut *tx)
                    .await?
            } else {
                sqlx::query(
                    "UPDATE objects SET body = ? WHERE kind = ? AND namespace = ? AND name = ?",
                )
                .bind(&row.body)
                .bind(&row.kind)
                .bind(&row.namespace)
                .bind(&row.name)
                .execute(&mut *tx)
                .await?
            };
            if done.rows_affected() == 0 {
                let what = format!("{}.argoproj.io \"{}\"", plural(&row.kind), row.name);
                return Err(if *create {
                    StoreError::AlreadyExists(format!("{what} already exists"))
                } else {
                    StoreError::NotFound(format!("{what} not found"))
                });
            }
        }
        Write::DeleteObject {
            kind,
            namespace,
            name,
        } => {
            let done =
                sqlx::query("DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?")
                    .bind(kind)
                    .bind(namespace)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "{}.argoproj.io \"{name}\" not found",
                    plural(kind)
                )));
            }
        }
        Write::UsageStarted(u) => {
            sqlx::query("INSERT INTO pod_usage (pod, started_ns, ended_ns, asked_ns, namespace, queue, node, gpus, cpus, devices) SELECT ?, ?, NULL, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM pod_usage WHERE pod = ? AND ended_ns IS NULL) ON CONFLICT DO NOTHING")
                .bind(&u.pod)
                .bind(u.started_ns)
                .bind(u.asked_ns)
                .bind(&u.namespace)
                .bind(&u.queue)
                .bind(&u.node)
                .bind(u.gpus)
                .bind(u.cpus)
                .bind(u.devices.join(","))
                .bind(&u.pod)
                .execute(&mut *tx)
                .await?;
        }
        Write::UsageEnded { pod, ended_ns } => {
            sqlx::query("UPDATE pod_usage SET ended_ns = max(started_ns, ?) WHERE pod = ? AND ended_ns IS NULL")
                .bind(ended_ns)
                .bind(pod)
                .execute(&mut *tx)
                .await?;
        }
        Write::UsageCloseAllBut { holding, ended_ns } => {
            let open: Vec<String> =
                sqlx::query_scalar("SELECT pod FROM pod_usage WHERE ended_ns IS NULL")
                    .fetch_all(&mut *tx)
                    .await?;
            for pod in open.iter().filter(|p| !holding.contains(p)) {
                sqlx::query("UPDATE pod_usage SET ended_ns = max(started_ns, ?) WHERE pod = ? AND ended_ns IS NULL")
                    .bind(ended_ns)
                    .bind(pod)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    Ok(())
}

fn usage_row(r: &sqlx::sqlite::SqliteRow) -> UsageRow {
    let devices: String = r.get(8);
    UsageRow {
        pod: r.get(0),
        namespace: r.get(1),
        queue: r.get(2),
        node: r.get(3),
        gpus: r.get(4),
        cpus: r.get(9),
        devices: devices
            .split(',')
            .filter(|d| !d.is_empty())
            .map(String::from)
            .collect(),
        asked_ns: r.get(5),
        started_ns: r.get(6),
        ended_ns: r.get(7),
    }
}

/// Kubernetes' resource name for a kind, as its error messages say it.
pub fn plural(kind: &str) -> &'static str {
    match kind {
        "WorkflowTemplate" => "workflowtemplates",
        "ClusterWorkflowTemplate" => "clusterworkflowtemplates",
        "CronWorkflow" => "cronworkflows",
        _ => "workflows",
    }
}
