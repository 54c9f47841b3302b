//! The writer task: every write of the store, queued, committed in one transaction with
//! whatever else is queued (group commit), fenced by the lease it holds.

use std::str::FromStr;

use sqlx::any::AnyConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Connection, Executor, Row};
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::location::Location;
use crate::rows::*;

pub(crate) enum Write {
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

/// What a write answers: most nothing; a lease operation the token it holds now (or `None`).
pub(crate) type Reply = oneshot::Sender<Result<Option<i64>, StoreError>>;

/// The lease this store's writes are fenced by: every commit first checks that `token` is
/// still the lease's, or commits nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    pub(crate) lease: String,
    pub(crate) token: i64,
}

/// The writer's connection settings, run on every (re)connect. SQLite: WAL with `NORMAL`
/// sync — a committed write survives the process being killed at any moment.
const SQLITE_WRITER_SETUP: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = OFF;";
pub(crate) const SQLITE_READER_SETUP: &str = "PRAGMA busy_timeout = 10000;";

pub(crate) async fn connect_writer(location: &Location) -> Result<AnyConnection, sqlx::Error> {
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

/// The writer: commits everything queued in one transaction, then answers each caller.
pub(crate) async fn writer(
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
            // Idempotent: an append tried again after its answer was lost (the connection
            // dropped after the commit) adds nothing twice.
            for e in events {
                sqlx::query("INSERT INTO events (uid, seq, at_ns, body) VALUES ($1, $2, $3, $4) ON CONFLICT (uid, seq) DO NOTHING")
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
