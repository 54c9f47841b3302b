//! ONYX's durable state, in SQLite (WAL; the embedded default) or PostgreSQL (production):
//! live workflows with the event log each engine handled, the workflow archive, and stored
//! objects (WorkflowTemplates, ClusterWorkflowTemplates, CronWorkflows).
//!
//! One set of queries serves both databases through sqlx's `Any` driver: every statement is
//! written in the SQL the two share (`$N` parameters, `ON CONFLICT` upserts, no functions only
//! one has), and each database has its own copy of the migrations (`migrations/sqlite`,
//! `migrations/postgres`) with the same versions, tables, keys and indexes.
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

use base64::Engine as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row};
use tokio::sync::{mpsc, oneshot};

pub use select::{LabelReq, Selector, SelectorError, MAX_SELECTOR_VALUES};

/// Which database a store lives in, from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created if missing).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL (`postgres://user:password@host:port/database?...`).
    Postgres(String),
}

impl Location {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite:PATH` or a plain path is a
    /// SQLite file.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_string())
        } else {
            let path = text
                .strip_prefix("sqlite://")
                .or_else(|| text.strip_prefix("sqlite:"));
            Location::Sqlite(path.unwrap_or(text).into())
        }
    }

    /// Where it is, for logs and messages: a PostgreSQL URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(url) => redact_password(url),
        }
    }

    fn url(&self) -> String {
        match self {
            Location::Postgres(url) => url.clone(),
            // sqlx reads the path percent-decoded: encode what would end it or be decoded.
            Location::Sqlite(p) => {
                let mut path = String::new();
                for c in p.display().to_string().chars() {
                    match c {
                        '%' => path.push_str("%25"),
                        '?' => path.push_str("%3F"),
                        '#' => path.push_str("%23"),
                        c => path.push(c),
                    }
                }
                format!("sqlite://{path}")
            }
        }
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_string();
    };
    let slash = if rest.contains('/') { "/" } else { "" };
    format!("{scheme}://{user}:***@{host}{slash}{tail}")
}

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
    /// Another server took the lease this store's writes were fenced by.
    #[error(
        "fenced: lease {lease:?} has moved on from token {token}; this server no longer writes"
    )]
    Fenced { lease: String, token: i64 },
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
    /// Only these namespaces (what the caller may see); `None`: every namespace.
    pub within: Option<Vec<String>>,
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
    AcquireLease {
        lease: String,
        holder: String,
        address: String,
        now_ns: i64,
        expires_ns: i64,
    },
    RenewLease {
        lease: String,
        holder: String,
        token: i64,
        expires_ns: i64,
    },
}

/// Who holds a lease, until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub holder: String,
    /// Where the holder serves its API (followers forward writes there).
    pub address: String,
    pub token: i64,
    pub expires_ns: i64,
}

/// What a write answers: most nothing; a lease operation the token it holds now (or `None`).
type Reply = oneshot::Sender<Result<Option<i64>, StoreError>>;

/// The lease this store's writes are fenced by: every commit first checks that `token` is
/// still the lease's, or commits nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fence {
    lease: String,
    token: i64,
}

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
    read: AnyPool,
    writer: mpsc::UnboundedSender<(Write, Reply)>,
    location: std::sync::Arc<Location>,
    fence: std::sync::Arc<std::sync::Mutex<Option<Fence>>>,
}

/// The writer's connection settings, run on every (re)connect. SQLite: WAL with `NORMAL`
/// sync — a committed write survives the process being killed at any moment.
const SQLITE_WRITER_SETUP: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = OFF;";
const SQLITE_READER_SETUP: &str = "PRAGMA busy_timeout = 10000;";

async fn connect_writer(location: &Location) -> Result<AnyConnection, sqlx::Error> {
    let url = match location {
        Location::Sqlite(_) => format!("{}?mode=rwc", location.url()),
        Location::Postgres(_) => location.url(),
    };
    let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
    let mut conn = AnyConnection::connect_with(&options).await?;
    if let Location::Sqlite(_) = location {
        conn.execute(SQLITE_WRITER_SETUP).await?;
    }
    Ok(conn)
}

impl Store {
    /// Open (or create) the SQLite database at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::connect(&Location::Sqlite(path.to_path_buf())).await
    }

    /// Connect to the store's database and bring its schema up to date. Several servers may
    /// do this at once on one PostgreSQL: sqlx's migrator holds an advisory lock meanwhile.
    pub async fn connect(location: &Location) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let mut conn = connect_writer(location).await?;
        match location {
            Location::Sqlite(_) => sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?,
            Location::Postgres(_) => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&mut conn)
                    .await?
            }
        }
        let (url, readers, setup) = match location {
            Location::Sqlite(_) => (
                format!("{}?mode=ro", location.url()),
                4,
                SQLITE_READER_SETUP,
            ),
            Location::Postgres(_) => (location.url(), 8, ""),
        };
        let read = AnyPoolOptions::new()
            .max_connections(readers)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if !setup.is_empty() {
                        conn.execute(setup).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(AnyConnectOptions::from_str(&url)?.disable_statement_logging())
            .await?;
        let location = std::sync::Arc::new(location.clone());
        let fence = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(writer(conn, location.clone(), fence.clone(), rx));
        Ok(Store {
            read,
            writer: tx,
            location,
            fence,
        })
    }

    /// Take `lease` if nobody holds it or its holder let it expire (by `now_ns`): the new
    /// fencing token, or `None` if another holder still has it. A lease taken over gets the
    /// next token.
    pub async fn acquire_lease(
        &self,
        lease: &str,
        holder: &str,
        address: &str,
        now_ns: i64,
        expires_ns: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.write_answering(Write::AcquireLease {
            lease: lease.into(),
            holder: holder.into(),
            address: address.into(),
            now_ns,
            expires_ns,
        })
        .await
    }

    /// Extend a lease held with `token`; false if it is no longer this holder's.
    pub async fn renew_lease(
        &self,
        lease: &str,
        holder: &str,
        token: i64,
        expires_ns: i64,
    ) -> Result<bool, StoreError> {
        let renewed = self
            .write_answering(Write::RenewLease {
                lease: lease.into(),
                holder: holder.into(),
                token,
                expires_ns,
            })
            .await;
        match renewed {
            Ok(held) => Ok(held.is_some()),
            Err(StoreError::Fenced { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// From now on every commit checks that `lease` still has `token`, and commits nothing
    /// (each write answers `Fenced`) once another server has taken it.
    pub fn fence(&self, lease: &str, token: i64) {
        *self.fence.lock().expect("fence") = Some(Fence {
            lease: lease.into(),
            token,
        });
    }

    /// Who holds `lease` now.
    pub async fn lease(&self, lease: &str) -> Result<Option<Lease>, StoreError> {
        let row =
            sqlx::query("SELECT holder, address, token, expires_ns FROM leases WHERE name = $1")
                .bind(lease)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|r| Lease {
            holder: r.get(0),
            address: r.get(1),
            token: r.get(2),
            expires_ns: r.get(3),
        }))
    }

    /// The database this store is in.
    pub fn location(&self) -> &Location {
        &self.location
    }

    async fn write(&self, w: Write) -> Result<(), StoreError> {
        self.write_answering(w).await.map(|_| ())
    }

    async fn write_answering(&self, w: Write) -> Result<Option<i64>, StoreError> {
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
        let rows = sqlx::query("SELECT id, key, webhook, body, attempts FROM notifications WHERE delivered_ns IS NULL AND next_ns <= $1 ORDER BY id LIMIT $2")
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

fn workflow_row(r: &AnyRow) -> WorkflowRow {
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

fn object_row(r: &AnyRow) -> ObjectRow {
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
async fn writer(
    mut conn: AnyConnection,
    location: std::sync::Arc<Location>,
    fence: std::sync::Arc<std::sync::Mutex<Option<Fence>>>,
    mut rx: mpsc::UnboundedReceiver<(Write, Reply)>,
) {
    const MAX_BATCH: usize = 512;
    let mut healthy = true;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        // A PostgreSQL server restarted, or a connection cut, leaves this one dead: after a
        // batch failed, check it and connect again rather than fail every write from then on.
        if !healthy && conn.ping().await.is_err() {
            match connect_writer(&location).await {
                Ok(fresh) => conn = fresh,
                Err(e) => {
                    for (_, reply) in batch {
                        let _ = reply.send(Err(StoreError::Db(sqlx::Error::Protocol(format!(
                            "connecting to {} again: {e}",
                            location.describe()
                        )))));
                    }
                    continue;
                }
            }
        }
        let fenced_by = fence.lock().expect("fence").clone();
        let writes: Vec<&Write> = batch.iter().map(|(w, _)| w).collect();
        // Each write is all or nothing, and one that fails must not take the others in its
        // batch down (PostgreSQL aborts a whole transaction at an error). Savepoints give
        // that but cost two statements a write, so a batch first runs without them and, only
        // if a write in it failed, runs again from the start with them.
        let (mut outcome, mut results) =
            commit(&mut conn, fenced_by.as_ref(), &writes, false).await;
        if outcome.is_ok()
            && results
                .iter()
                .any(|r| matches!(r, Err(e) if !matches!(e, StoreError::Fenced { .. })))
        {
            (outcome, results) = commit(&mut conn, fenced_by.as_ref(), &writes, true).await;
        }
        healthy = outcome.is_ok();
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

type Answers = Vec<Result<Option<i64>, StoreError>>;

/// One transaction over `writes`. Without `savepoints`, a failed write rolls the whole
/// transaction back (the caller runs it again with them); with them, only that write.
async fn commit(
    conn: &mut AnyConnection,
    fenced_by: Option<&Fence>,
    writes: &[&Write],
    savepoints: bool,
) -> (Result<(), sqlx::Error>, Answers) {
    let mut results: Answers = Vec::with_capacity(writes.len());
    let outcome = async {
        let mut tx = conn.begin().await?;
        if let Some(f) = fenced_by {
            // Locks the lease's row until this commit: a takeover waits for it, and a
            // commit after a takeover finds the token moved on and writes nothing.
            let held =
                sqlx::query("UPDATE leases SET token = token WHERE name = $1 AND token = $2")
                    .bind(&f.lease)
                    .bind(f.token)
                    .execute(&mut *tx)
                    .await?;
            if held.rows_affected() == 0 {
                for _ in writes {
                    results.push(Err(StoreError::Fenced {
                        lease: f.lease.clone(),
                        token: f.token,
                    }));
                }
                return tx.rollback().await;
            }
        }
        for w in writes {
            if savepoints {
                tx.execute("SAVEPOINT w").await?;
            }
            let r = apply(&mut tx, w).await;
            let failed = r.is_err();
            results.push(r);
            if savepoints {
                tx.execute(if failed {
                    "ROLLBACK TO SAVEPOINT w"
                } else {
                    "RELEASE SAVEPOINT w"
                })
                .await?;
            } else if failed {
                return tx.rollback().await;
            }
        }
        tx.commit().await
    }
    .await;
    (outcome, results)
}

async fn apply(tx: &mut AnyConnection, w: &Write) -> Result<Option<i64>, StoreError> {
    match w {
        Write::AcquireLease {
            lease,
            holder,
            address,
            now_ns,
            expires_ns,
        } => {
            sqlx::query("INSERT INTO leases (name, holder, address, token, expires_ns) VALUES ($1, $2, $3, 1, $4) ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, address = excluded.address, token = leases.token + 1, expires_ns = excluded.expires_ns WHERE leases.expires_ns < $5")
                .bind(lease)
                .bind(holder)
                .bind(address)
                .bind(expires_ns)
                .bind(now_ns)
                .execute(&mut *tx)
                .await?;
            let row = sqlx::query("SELECT holder, token FROM leases WHERE name = $1")
                .bind(lease)
                .fetch_one(&mut *tx)
                .await?;
            let (now_holder, token): (String, i64) = (row.get(0), row.get(1));
            return Ok((now_holder == *holder).then_some(token));
        }
        Write::RenewLease {
            lease,
            holder,
            token,
            expires_ns,
        } => {
            let done = sqlx::query(
                "UPDATE leases SET expires_ns = $1 WHERE name = $2 AND holder = $3 AND token = $4",
            )
            .bind(expires_ns)
            .bind(lease)
            .bind(holder)
            .bind(token)
            .execute(&mut *tx)
            .await?;
            return Ok((done.rows_affected() == 1).then_some(*token));
        }
        Write::ArtifactsStored(rows) => {
            for a in rows {
                sqlx::query("INSERT INTO artifact_usage (uid, key, namespace, workflow, bytes, stored_ns) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
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
                sqlx::query("INSERT INTO notifications (key, webhook, body, created_ns, next_ns) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING")
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
            sqlx::query("UPDATE notifications SET delivered_ns = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2")
                .bind(at_ns)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Write::NotificationFailed { id, next_ns, error } => {
            sqlx::query("UPDATE notifications SET next_ns = $1, attempts = attempts + 1, last_error = $2 WHERE id = $3")
                .bind(next_ns)
                .bind(error)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        Write::InsertWorkflow(wf) => {
            let done = sqlx::query("INSERT INTO workflows (uid, namespace, name, created_ns, phase, finished_ns, manifest, params, context, status) VALUES ($1, $2, $3, $4, 'Pending', NULL, $5, $6, $7, $8) ON CONFLICT DO NOTHING")
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
                    "INSERT INTO workflow_labels (uid, key, value) VALUES ($1, $2, $3) ON CONFLICT (uid, key) DO UPDATE SET value = excluded.value",
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
                sqlx::query("INSERT INTO events (uid, seq, at_ns, body) VALUES ($1, $2, $3, $4)")
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
                "UPDATE workflows SET phase = $1, finished_ns = $2, status = $3 WHERE uid = $4",
            )
            .bind(phase)
            .bind(finished_ns)
            .bind(status)
            .bind(uid)
            .execute(&mut *tx)
            .await?;
        }
        Write::Archive(a) => {
            sqlx::query("INSERT INTO archived_workflows (uid, namespace, name, phase, created_ns, finished_ns, body) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (uid) DO UPDATE SET namespace = excluded.namespace, name = excluded.name, phase = excluded.phase, created_ns = excluded.created_ns, finished_ns = excluded.finished_ns, body = excluded.body")
                .bind(&a.uid)
                .bind(&a.namespace)
                .bind(&a.name)
                .bind(&a.phase)
                .bind(a.created_ns)
                .bind(a.finished_ns)
                .bind(&a.body)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM archived_labels WHERE uid = $1")
                .bind(&a.uid)
                .execute(&mut *tx)
                .await?;
            for (k, v) in &a.labels {
                sqlx::query("INSERT INTO archived_labels (uid, key, value) VALUES ($1, $2, $3)")
                    .bind(&a.uid)
                    .bind(k)
                    .bind(v)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        Write::DeleteWorkflow { uid } => {
            let done = sqlx::query("DELETE FROM workflows WHERE uid = $1")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM workflow_labels WHERE uid = $1")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM events WHERE uid = $1")
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
            sqlx::query("DELETE FROM events WHERE uid = $1")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            let done = sqlx::query("UPDATE workflows SET phase = 'Running', finished_ns = NULL, manifest = $1, status = $2 WHERE uid = $3")
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
            let done = sqlx::query("DELETE FROM archived_workflows WHERE uid = $1")
                .bind(uid)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM archived_labels WHERE uid = $1")
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
                sqlx::query("INSERT INTO objects (kind, namespace, name, created_ns, body) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING")
                    .bind(&row.kind)
                    .bind(&row.namespace)
                    .bind(&row.name)
                    .bind(row.created_ns)
                    .bind(&row.body)
                    .execute(&mut *tx)
                    .await?
            } else {
                sqlx::query(
                    "UPDATE objects SET body = $1 WHERE kind = $2 AND namespace = $3 AND name = $4",
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
                sqlx::query("DELETE FROM objects WHERE kind = $1 AND namespace = $2 AND name = $3")
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
            sqlx::query("INSERT INTO pod_usage (pod, started_ns, asked_ns, namespace, queue, node, gpus, cpus, devices) SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE NOT EXISTS (SELECT 1 FROM pod_usage WHERE pod = $1 AND ended_ns IS NULL) ON CONFLICT DO NOTHING")
                .bind(&u.pod)
                .bind(u.started_ns)
                .bind(u.asked_ns)
                .bind(&u.namespace)
                .bind(&u.queue)
                .bind(&u.node)
                .bind(u.gpus)
                .bind(u.cpus)
                .bind(u.devices.join(","))
                .execute(&mut *tx)
                .await?;
        }
        Write::UsageEnded { pod, ended_ns } => {
            sqlx::query("UPDATE pod_usage SET ended_ns = CASE WHEN started_ns > $1 THEN started_ns ELSE $1 END WHERE pod = $2 AND ended_ns IS NULL")
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
                sqlx::query("UPDATE pod_usage SET ended_ns = CASE WHEN started_ns > $1 THEN started_ns ELSE $1 END WHERE pod = $2 AND ended_ns IS NULL")
                    .bind(ended_ns)
                    .bind(pod)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    Ok(None)
}

fn usage_row(r: &AnyRow) -> UsageRow {
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
