//! The audit trail (the spec's §5 and §10: who changed what, when, under which ticket; kept
//! six months). Records are JSON lines appended to `audit.jsonl` in the audit directory;
//! a file past `max_bytes` is renamed with its close time (`audit-20261205T051400Z.jsonl`)
//! and a new one begun; rotated files older than `keep_days` are deleted. Optionally every
//! line is also pushed to Loki's push API (`/loki/api/v1/push`) from a bounded buffer, with
//! retries; a full buffer drops its oldest lines, and says so in a counter and a log line.
//!
//! Invariants: a record is written whole (one `write` of one line) or not at all; records
//! reach the file in the order they were recorded; nothing is dropped without being counted
//! (`Stats`) and logged.

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

/// The parameter that names the ticket a workflow was run for (the spec's change
/// management): required by default, and copied into audit records and notifications.
pub const TICKET_PARAMETER: &str = "ticket_id";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit directory {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Where the trail goes and how long it is kept.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub keep_days: u64,
    pub loki: Option<LokiConfig>,
}

#[derive(Debug, Clone)]
pub struct LokiConfig {
    /// Loki's base URL; lines go to `{url}/loki/api/v1/push`.
    pub url: String,
    /// Stream labels besides `kind` (`job="onyx"` by default).
    pub labels: Vec<(String, String)>,
    /// Lines held while Loki is away; past this the oldest are dropped (and counted).
    pub buffer_lines: usize,
    pub timeout: Duration,
}

/// One audit record: an API call that changes something, or a workflow event.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub time: String,
    /// `api` or `workflow`.
    pub kind: String,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Record {
    pub fn new(kind: &str, at: DateTime<Utc>, fields: Value) -> Record {
        Record {
            time: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            kind: kind.to_string(),
            fields: match fields {
                Value::Object(m) => m,
                _ => Map::new(),
            },
        }
    }
}

/// What the trail has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct Stats {
    pub written: AtomicU64,
    /// Records refused because the writer's queue was full or the file could not be written.
    pub dropped: AtomicU64,
    pub loki_pushed: AtomicU64,
    pub loki_dropped: AtomicU64,
    pub loki_pending: AtomicU64,
    pub loki_failures: AtomicU64,
}

/// The handle the server records through (cheap to clone).
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Record>,
    pub stats: Arc<Stats>,
}

/// Records waiting for the file writer; past this a record is dropped and counted.
const QUEUE: usize = 65_536;

impl AuditLog {
    /// Open the trail in `cfg.dir` and start its writer (and Loki pusher) tasks.
    pub fn start(cfg: AuditConfig) -> Result<AuditLog, AuditError> {
        std::fs::create_dir_all(&cfg.dir).map_err(|source| AuditError::Io {
            path: cfg.dir.display().to_string(),
            source,
        })?;
        let file = TrailFile::open(&cfg.dir, cfg.max_bytes, cfg.keep_days)?;
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let loki = cfg.loki.map(|l| {
            let buffer = Arc::new(LokiBuffer::new(l.buffer_lines, stats.clone()));
            tokio::spawn(push_to_loki(l, buffer.clone(), stats.clone()));
            buffer
        });
        tokio::spawn(write_records(file, rx, stats.clone(), loki));
        Ok(AuditLog { tx, stats })
    }

    /// Record `r`; never waits. A full queue drops it, counted and logged.
    pub fn record(&self, r: Record) {
        if self.tx.try_send(r).is_err() {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!("audit: the writer's queue is full; {n} record(s) dropped so far");
        }
    }
}

/// The current file and its rotation.
pub struct TrailFile {
    dir: PathBuf,
    file: std::fs::File,
    size: u64,
    max_bytes: u64,
    keep: Duration,
}

impl TrailFile {
    pub fn open(dir: &Path, max_bytes: u64, keep_days: u64) -> Result<TrailFile, AuditError> {
        let path = dir.join("audit.jsonl");
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let t = TrailFile {
            dir: dir.to_path_buf(),
            file,
            size,
            max_bytes,
            keep: Duration::from_secs(keep_days * 86_400),
        };
        t.expire();
        Ok(t)
    }

    /// Append lines (each ending in a newline), rotating first when they would not fit.
    pub fn append(&mut self, lines: &str, now: DateTime<Utc>) -> std::io::Result<()> {
        if self.size > 0 && self.size + lines.len() as u64 > self.max_bytes {
            self.rotate(now)?;
        }
        self.file.write_all(lines.as_bytes())?;
        self.size += lines.len() as u64;
        Ok(())
    }

    fn rotate(&mut self, now: DateTime<Utc>) -> std::io::Result<()> {
        self.file.sync_data()?;
        let mut name = format!("audit-{}.jsonl", now.format("%Y%m%dT%H%M%S%.3fZ"));
        let mut n = 1;
        while self.dir.join(&name).exists() {
            name = format!("audit-{}-{n}.jsonl", now.format("%Y%m%dT%H%M%S%.3fZ"));
            n += 1;
        }
        std::fs::rename(self.dir.join("audit.jsonl"), self.dir.join(name))?;
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("audit.jsonl"))?;
        self.size = 0;
        self.expire();
        Ok(())
    }

    /// Delete rotated files last written longer ago than the retention.
    pub fn expire(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("audit-") && name.ends_with(".jsonl")) {
                continue;
            }
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > self.keep);
            if old {
                if let Err(err) = std::fs::remove_file(e.path()) {
                    tracing::warn!("audit: removing expired {name}: {err}");
                } else {
                    tracing::info!("audit: removed {name}, older than the retention");
                }
            }
        }
    }

    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

async fn write_records(
    mut file: TrailFile,
    mut rx: mpsc::Receiver<Record>,
    stats: Arc<Stats>,
    loki: Option<Arc<LokiBuffer>>,
) {
    let mut last_expiry = std::time::Instant::now();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut text = String::new();
        let mut lines = Vec::with_capacity(batch.len());
        for r in &batch {
            let line = serde_json::to_string(r).unwrap_or_default();
            text.push_str(&line);
            text.push('\n');
            lines.push((r.kind.clone(), line));
        }
        let n = batch.len() as u64;
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let r = if multi_thread {
            tokio::task::block_in_place(|| file.append(&text, Utc::now()))
        } else {
            file.append(&text, Utc::now())
        };
        match r {
            Ok(()) => {
                stats.written.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                let total = stats.dropped.fetch_add(n, Ordering::Relaxed) + n;
                tracing::error!("audit: writing {n} record(s): {e} ({total} dropped so far)");
            }
        }
        if let Some(l) = &loki {
            l.push(lines);
        }
        if last_expiry.elapsed() > Duration::from_secs(3600) {
            file.expire();
            last_expiry = std::time::Instant::now();
        }
    }
    let _ = file.sync();
}

/// Lines waiting for Loki, oldest first, bounded.
pub struct LokiBuffer {
    lines: Mutex<VecDeque<(i64, String, String)>>,
    capacity: usize,
    stats: Arc<Stats>,
    wake: tokio::sync::Notify,
}

impl LokiBuffer {
    pub fn new(capacity: usize, stats: Arc<Stats>) -> LokiBuffer {
        LokiBuffer {
            lines: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            stats,
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Add (kind, line) pairs; when full, the oldest lines make room (counted and logged).
    pub fn push(&self, lines: Vec<(String, String)>) {
        let mut q = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let mut dropped = 0u64;
        let mut ts = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        for (kind, line) in lines {
            if q.len() >= self.capacity {
                q.pop_front();
                dropped += 1;
            }
            // Loki orders a stream's entries by timestamp: keep them strictly increasing.
            if let Some(last) = q.back().map(|l| l.0) {
                ts = ts.max(last + 1);
            }
            q.push_back((ts, kind, line));
        }
        self.stats
            .loki_pending
            .store(q.len() as u64, Ordering::Relaxed);
        drop(q);
        if dropped > 0 {
            let total = self
                .stats
                .loki_dropped
                .fetch_add(dropped, Ordering::Relaxed)
                + dropped;
            tracing::error!(
                "audit: Loki's buffer ({} lines) is full; dropped the {dropped} oldest line(s) ({total} so far; they remain in the audit file)",
                self.capacity
            );
        }
        self.wake.notify_one();
    }

    fn peek(&self, n: usize) -> Vec<(i64, String, String)> {
        let q = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        q.iter().take(n).cloned().collect()
    }

    /// Remove the first `n` lines if they are still those `first` starts with.
    fn pop(&self, sent: &[(i64, String, String)]) {
        let mut q = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        // Lines dropped for room while the push was under way are already gone.
        while let Some(front) = q.front() {
            if sent.iter().any(|s| s.0 == front.0 && s.2 == front.2) {
                q.pop_front();
            } else {
                break;
            }
        }
        self.stats
            .loki_pending
            .store(q.len() as u64, Ordering::Relaxed);
    }
}

/// Loki's push body: one stream per kind, each with its (nanosecond timestamp, line) values.
pub fn loki_body(labels: &[(String, String)], lines: &[(i64, String, String)]) -> Value {
    let mut kinds: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let streams: Vec<Value> = kinds
        .iter()
        .map(|kind| {
            let mut stream = Map::new();
            for (k, v) in labels {
                stream.insert(k.clone(), json!(v));
            }
            stream.insert("kind".into(), json!(kind));
            let values: Vec<Value> = lines
                .iter()
                .filter(|l| l.1 == *kind)
                .map(|l| json!([l.0.to_string(), l.2]))
                .collect();
            json!({"stream": stream, "values": values})
        })
        .collect();
    json!({ "streams": streams })
}

async fn push_to_loki(cfg: LokiConfig, buffer: Arc<LokiBuffer>, stats: Arc<Stats>) {
    let url = format!("{}/loki/api/v1/push", cfg.url.trim_end_matches('/'));
    let agent = ureq::AgentBuilder::new().timeout(cfg.timeout).build();
    let mut labels = cfg.labels.clone();
    if labels.is_empty() {
        labels.push(("job".into(), "onyx".into()));
    }
    let mut delay = Duration::from_millis(500);
    loop {
        let batch = buffer.peek(1000);
        if batch.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), buffer.wake.notified()).await;
            continue;
        }
        let body = loki_body(&labels, &batch).to_string();
        let (agent2, url2) = (agent.clone(), url.clone());
        let r = tokio::task::spawn_blocking(move || {
            agent2
                .post(&url2)
                .set("Content-Type", "application/json")
                .send_string(&body)
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match r {
            Ok(()) => {
                buffer.pop(&batch);
                stats
                    .loki_pushed
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                delay = Duration::from_millis(500);
            }
            Err(e) => {
                stats.loki_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "audit: pushing {} line(s) to Loki at {url}: {e}; retrying in {:.1} s",
                    batch.len(),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("onyx-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rotated(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("audit-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn files_rotate_by_size_and_expire_by_age() {
        let d = dir("rotate");
        let mut f = TrailFile::open(&d, 100, 183).unwrap();
        let line = format!("{}\n", "x".repeat(39)); // 40 bytes
        let t = Utc::now();
        for _ in 0..5 {
            f.append(&line, t).unwrap();
        }
        // 40+40 fit in 100; the third line opens a new file, the fifth another.
        assert_eq!(rotated(&d).len(), 2, "{:?}", rotated(&d));
        let current = std::fs::read_to_string(d.join("audit.jsonl")).unwrap();
        assert_eq!(current.len(), 40);
        // A rotated file last written 200 days ago is past six months: removed.
        let old = d.join(&rotated(&d)[0]);
        let file = std::fs::File::options().write(true).open(&old).unwrap();
        file.set_modified(std::time::SystemTime::now() - Duration::from_secs(200 * 86_400))
            .unwrap();
        f.expire();
        assert_eq!(rotated(&d).len(), 1);
        assert!(!old.exists());
    }

    #[test]
    fn a_full_loki_buffer_drops_the_oldest_and_counts_them() {
        let stats = Arc::new(Stats::default());
        let b = LokiBuffer::new(3, stats.clone());
        b.push(
            (0..5)
                .map(|i| ("api".to_string(), format!("l{i}")))
                .collect(),
        );
        assert_eq!(stats.loki_dropped.load(Ordering::Relaxed), 2);
        let kept: Vec<String> = b.peek(10).into_iter().map(|l| l.2).collect();
        assert_eq!(kept, vec!["l2", "l3", "l4"]);
        let ts: Vec<i64> = b.peek(10).into_iter().map(|l| l.0).collect();
        assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
        b.pop(&b.peek(2));
        assert_eq!(stats.loki_pending.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn loki_bodies_have_one_stream_per_kind() {
        let body = loki_body(
            &[("job".into(), "onyx".into())],
            &[
                (1, "api".into(), "a".into()),
                (2, "workflow".into(), "w".into()),
                (3, "api".into(), "b".into()),
            ],
        );
        assert_eq!(
            body,
            json!({"streams": [
                {"stream": {"job": "onyx", "kind": "api"}, "values": [["1", "a"], ["3", "b"]]},
                {"stream": {"job": "onyx", "kind": "workflow"}, "values": [["2", "w"]]}]})
        );
    }
}
