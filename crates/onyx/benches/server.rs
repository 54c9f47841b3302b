//! `onyx server` under load, through its REST API, as clients see it.
//!
//!     cargo bench -p onyx --bench server -- submit 20000
//!     cargo bench -p onyx --bench server -- run 10000
//!     cargo bench -p onyx --bench server -- archive 100000
//!     cargo bench -p onyx --bench server -- metrics 10000
//!
//! `submit N`: N workflows (each waits on a suspend step, so no process runs) posted by 16
//! client threads; prints accepted submissions per second.
//! `run N`: N one-step workflows (`true`) posted at once, timed until all have ended; prints
//! completed workflows per second.
//! `archive N`: fills the archive with N finished workflows, then times 1,000 list requests
//! for a page of 100 (first pages, later pages by `continue`, and by label); prints p50/p99.
//! `metrics N`: a server on the seed's 16 nodes (128 GPUs) with N live workflows (suspended),
//! then N more each carrying a realtime gauge labelled with its own name (the cardinality
//! Argo's docs warn of); after each half, 200 scrapes of `/metrics`: series, bytes, p50/p99.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
}

/// The token the server made for itself at its first start (a server on loopback with none
/// configured makes one): every request carries it.
/// (The latest server's: one bench runs one server at a time.)
static TOKEN: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn authorization() -> String {
    format!("Bearer {}", TOKEN.lock().unwrap())
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(home: &PathBuf) -> Server {
    start_with(home, &[])
}

fn start_with(home: &PathBuf, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_onyx"))
        .args(["server", "--listen", "127.0.0.1:0"])
        .args(extra)
        .env("ONYX_HOME", home)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("onyx server starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("server output").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let token = std::fs::read_to_string(home.join("token")).expect("the server's own token");
    *TOKEN.lock().unwrap() = token.trim().to_string();
    Server { child, base }
}

fn home(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> u16 {
    match agent
        .post(url)
        .set("Content-Type", "application/json")
        .set("Authorization", &authorization())
        .send_string(&body.to_string())
    {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(c, r)) => {
            eprintln!("{c}: {}", r.into_string().unwrap_or_default());
            c
        }
        Err(e) => panic!("{e}"),
    }
}

fn workflow(name: String, template: Value) -> Value {
    let metrics = template.get("workflowMetrics").cloned();
    let mut template = template;
    if let Some(t) = template.as_object_mut() {
        t.remove("workflowMetrics");
    }
    let mut wf = json!({"workflow": {"metadata": {"name": name, "labels": {"bench": "yes"}},
        "spec": {"entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T-bench"}]},
            "templates": [template]}}});
    if let Some(m) = metrics {
        wf["workflow"]["spec"]["metrics"] = m;
    }
    wf
}

/// Post `n` workflows from `threads` client threads; returns the seconds it took.
fn post_all(s: &Server, n: usize, threads: usize, template: Value, prefix: &str) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/api/v1/workflows/default", s.base);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let next = next.clone();
            let url = url.clone();
            let template = template.clone();
            let prefix = prefix.to_string();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .max_idle_connections_per_host(4)
                    .build();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let code = post(
                        &agent,
                        &url,
                        &workflow(format!("{prefix}-{i}"), template.clone()),
                    );
                    assert_eq!(code, 200);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    t0.elapsed().as_secs_f64()
}

fn submit(n: usize) {
    let h = home("submit");
    let s = start(&h);
    let secs = post_all(&s, n, 16, json!({"name": "main", "suspend": {}}), "s");
    println!(
        "submit: {n} workflows accepted in {secs:.2} s = {:.0}/s",
        n as f64 / secs
    );
}

fn run(n: usize) {
    let h = home("run");
    let s = start(&h);
    let t0 = Instant::now();
    let template = json!({"name": "main", "container": {"image": "debian", "command": ["true"]}});
    let posted = post_all(&s, n, 8, template, "r");
    let agent = ureq::agent();
    loop {
        // The archive holds exactly the workflows that ended.
        let count = count_archived(&agent, &s.base);
        if count >= n {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "run: {n} one-step workflows posted in {posted:.2} s, all ended after {secs:.2} s = {:.0} completed/s",
        n as f64 / secs
    );
}

fn count_archived(agent: &ureq::Agent, base: &str) -> usize {
    let mut total = 0;
    let mut token = String::new();
    loop {
        let url = format!(
            "{base}/api/v1/archived-workflows?namespace=default&listOptions.limit=5000&listOptions.continue={token}"
        );
        let v: Value = serde_json::from_str(
            &agent
                .get(&url)
                .set("Authorization", &authorization())
                .call()
                .unwrap()
                .into_string()
                .unwrap(),
        )
        .unwrap();
        total += v["items"].as_array().map_or(0, Vec::len);
        match v["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_string(),
            None => return total,
        }
    }
}

fn archive(n: usize) {
    let h = home("archive");
    // Fill the archive directly through the store (as n finished workflows would), then serve.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = store::Store::open(&h.join("onyx.db")).await.unwrap();
        let body = json!({"metadata": {"name": "x"}, "status": {"phase": "Succeeded", "nodes": {
            "a": {"id": "a", "name": "x", "displayName": "x", "type": "Pod", "phase": "Succeeded"}}}})
        .to_string();
        let mut pending = Vec::new();
        for i in 0..n {
            let s = store.clone();
            let body = body.clone();
            pending.push(tokio::spawn(async move {
                s.archive(store::ArchivedRow {
                    uid: format!("{i:08}-uid"),
                    namespace: "default".into(),
                    name: format!("wf-{i}"),
                    phase: "Succeeded".into(),
                    created_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000_000,
                    finished_ns: Some(1),
                    labels: vec![("team".into(), format!("t{}", i % 10))],
                    body,
                })
                .await
                .unwrap();
            }));
            if pending.len() >= 2000 {
                for p in pending.drain(..) {
                    p.await.unwrap();
                }
            }
        }
        for p in pending {
            p.await.unwrap();
        }
    });
    let s = start(&h);
    let agent = ureq::agent();
    let mut times = Vec::new();
    let mut token = String::new();
    for i in 0..1000 {
        let url = match i % 3 {
            0 => format!("{}/api/v1/archived-workflows?namespace=default&listOptions.limit=100", s.base),
            1 => format!(
                "{}/api/v1/archived-workflows?namespace=default&listOptions.limit=100&listOptions.continue={token}",
                s.base
            ),
            _ => format!(
                "{}/api/v1/archived-workflows?namespace=default&listOptions.limit=100&listOptions.labelSelector=team%3Dt3",
                s.base
            ),
        };
        let t0 = Instant::now();
        let v: Value = serde_json::from_str(
            &agent
                .get(&url)
                .set("Authorization", &authorization())
                .call()
                .unwrap()
                .into_string()
                .unwrap(),
        )
        .unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(v["items"].as_array().unwrap().len(), 100);
        token = v["metadata"]["continue"]
            .as_str()
            .unwrap_or_default()
            .to_string();
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "archive: {n} archived workflows, list a page of 100: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times[500], times[989], times[999]
    );
}

/// 200 scrapes of `/metrics`: (series, bytes, p50 ms, p99 ms).
fn scrape(s: &Server) -> (usize, usize, f64, f64) {
    let agent = ureq::AgentBuilder::new().build();
    let url = format!("{}/metrics", s.base);
    let mut times = Vec::new();
    let mut text = String::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        text = agent
            .get(&url)
            .set("Authorization", &authorization())
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    (series, text.len(), times[100], times[198])
}

fn metrics(n: usize) {
    let h = home("metrics");
    let s = start_with(&h, &["--cluster", "onyx"]);
    post_all(&s, n, 16, json!({"name": "main", "suspend": {}}), "plain");
    // Let every workflow's engine start (its first event) before scraping.
    std::thread::sleep(Duration::from_secs(2));
    let (series, bytes, p50, p99) = scrape(&s);
    println!(
        "metrics: {n} live workflows, 128 GPUs: {series} series, {} KiB, scrape p50 {p50:.1} ms, p99 {p99:.1} ms",
        bytes / 1024
    );
    let gauge = json!({"name": "main", "suspend": {},
        "workflowMetrics": {"prometheus": [{"name": "wf_duration", "help": "Duration by workflow",
            "labels": [{"key": "workflow", "value": "{{workflow.name}}"}],
            "gauge": {"realtime": true, "value": "{{workflow.duration}}"}}]}});
    post_all(&s, n, 16, gauge, "gauged");
    std::thread::sleep(Duration::from_secs(2));
    let (series, bytes, p50, p99) = scrape(&s);
    println!(
        "metrics: {} live workflows, {n} with a realtime gauge labelled by name: {series} series, {} KiB, scrape p50 {p50:.1} ms, p99 {p99:.1} ms",
        2 * n,
        bytes / 1024
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let what = args.first().map(String::as_str).unwrap_or("submit");
    let n: usize = args
        .get(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(match what {
            "run" => 10_000,
            "archive" => 100_000,
            "metrics" => 10_000,
            _ => 20_000,
        });
    match what {
        "submit" => submit(n),
        "run" => run(n),
        "archive" => archive(n),
        "metrics" => metrics(n),
        other => eprintln!("unknown bench {other}: submit, run, archive or metrics"),
    }
}
