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

#![forbid(unsafe_code)]

mod artifacts;
mod error;
mod location;
mod notifications;
mod reads;
mod rows;
mod select;
mod usage;
mod writer;

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor, Row};
use tokio::sync::{mpsc, oneshot};

pub use error::StoreError;
pub use location::Location;
pub use rows::*;
pub use select::{LabelReq, Selector, SelectorError, MAX_SELECTOR_VALUES};
use writer::{connect_writer, writer, Fence, Reply, Write, SQLITE_READER_SETUP};

#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    writer: mpsc::UnboundedSender<(Write, Reply)>,
    location: std::sync::Arc<Location>,
    fence: std::sync::Arc<std::sync::Mutex<Option<Fence>>>,
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
}
