//! Hot standby on PostgreSQL: two servers share one store and one pod directory; one leads.
//! Kill -9 the leader while 20 workflows have running steps: the standby takes the lease,
//! serves the API and resumes every workflow from the log — each ends Succeeded, each step ran
//! exactly once, no accepted submission is lost. The gap (kill to the first write the standby
//! accepts) is measured and printed; it must be under 5 s.
//!
//! `ONYX_FAILOVER_ROUNDS=N` repeats the failover N times (the killed server comes back as the
//! standby each round, and the next round kills the new leader) and prints the median gap:
//! the figure docs/benchmarks.md records.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{node, temp_home, Server};

fn workflow(name: &str, witness: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "labels": {"suite": "failover"}},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": "T-1"}]},
            "volumes": [{"name": "witness", "hostPath": {"path": witness}}],
            "templates": [
                {"name": "main", "steps": [
                    [{"name": "first", "template": "work", "arguments": {"parameters": [
                        {"name": "tag", "value": format!("{name}-first")}]}}],
                    [{"name": "second", "template": "work", "arguments": {"parameters": [
                        {"name": "tag", "value": "{{steps.first.outputs.result}}-second"}]}}]
                ]},
                {"name": "work",
                 "inputs": {"parameters": [{"name": "tag"}]},
                 "script": {"image": "debian", "command": ["sh"],
                    "volumeMounts": [{"name": "witness", "mountPath": "/witness"}],
                    "source": "echo ran >> /witness/{{inputs.parameters.tag}}\nsleep 2\necho {{inputs.parameters.tag}}\n"}}
            ]
        }
    })
}

/// The address in the lease row, once someone holds it.
fn leader_address(db: &str) -> Option<String> {
    let pg = test_postgres::server().unwrap();
    pg.psql_in(db, "SELECT address FROM leases WHERE name = 'controller'")
        .ok()
        .filter(|a| !a.is_empty())
}

fn wait_for_leader(db: &str, want: &str) {
    let t0 = Instant::now();
    while leader_address(db).as_deref() != Some(want) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{want} did not take the lease (holder: {:?})",
            leader_address(db)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill_9_the_leader_and_the_standby_resumes_every_workflow_within_5_s() {
    let db = test_postgres::database("failover").unwrap_or_else(|e| panic!("{e}"));
    let rounds: usize = std::env::var("ONYX_FAILOVER_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let home = temp_home("standby");
    let witness = home.join("witness");
    std::fs::create_dir_all(&witness).unwrap();
    let witness_s = witness.display().to_string();
    let cfg = Server::privileged_default_config(&home);
    let args = ["--store", db.as_str(), "--config", &cfg];
    let mut leader = Server::start(&home, &args);
    wait_for_leader(&db, &leader.base);
    let mut standby = Server::start(&home, &args);
    let mut gaps = Vec::new();
    let mut names = Vec::new();
    for round in 0..rounds {
        // Submitted through the standby: it forwards writes to the leader.
        let before = std::fs::read_dir(&witness).unwrap().count();
        for i in 0..20 {
            let name = format!("r{round}-w{i}");
            standby.submit("default", workflow(&name, &witness_s));
            names.push(name);
        }
        // A read the standby answers from the store itself.
        let (code, list) = standby.call(
            "GET",
            "/api/v1/workflows/default?listOptions.labelSelector=suite%3Dfailover",
            None,
        );
        assert_eq!(code, 200, "{list}");
        assert_eq!(list["items"].as_array().unwrap().len(), names.len());
        let t0 = Instant::now();
        while std::fs::read_dir(&witness).unwrap().count() < before + 3 {
            assert!(t0.elapsed() < Duration::from_secs(60), "no step started");
            std::thread::sleep(Duration::from_millis(50));
        }
        leader.kill9();
        let killed = Instant::now();
        // The first write the standby accepts (rather than "no leader": 503) marks the end of
        // the gap; it is itself a submission that must not be lost.
        let late = format!("r{round}-late");
        let gap = loop {
            let (code, body) = standby.call(
                "POST",
                "/api/v1/workflows/default",
                Some(json!({"workflow": workflow(&late, &witness_s)})),
            );
            match code {
                200 => break killed.elapsed(),
                503 => {}
                _ => panic!("submitting during the failover: {code} {body}"),
            }
            assert!(
                killed.elapsed() < Duration::from_secs(30),
                "the standby never took over"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        names.push(late);
        eprintln!(
            "failover round {round}: the standby accepted writes {} ms after the leader was killed",
            gap.as_millis()
        );
        assert!(gap < Duration::from_secs(5), "failover took {gap:?}");
        gaps.push(gap);
        wait_for_leader(&db, &standby.base);
        // The killed server comes back, as the standby now.
        std::mem::swap(&mut leader, &mut standby);
        standby = Server::start(&home, &args);
        assert_eq!(
            leader_address(&db).as_deref(),
            Some(leader.base.as_str()),
            "a server that comes back does not take the lease from a live leader"
        );
    }
    for name in &names {
        let wf = leader.wait("default", name, Duration::from_secs(120));
        assert_eq!(wf["status"]["phase"], "Succeeded", "{name}: {wf}");
        assert_eq!(
            node(&wf, "second")["outputs"]["result"],
            format!("{name}-first-second"),
            "{name}"
        );
    }
    // Every step left exactly one line: none ran twice across the failovers, none was lost.
    for entry in std::fs::read_dir(&witness).unwrap() {
        let p = entry.unwrap().path();
        let runs = std::fs::read_to_string(&p).unwrap().lines().count();
        assert_eq!(runs, 1, "{} ran {runs} times", p.display());
    }
    assert_eq!(
        std::fs::read_dir(&witness).unwrap().count(),
        2 * names.len(),
        "every step ran"
    );
    gaps.sort();
    eprintln!(
        "failover: {} round(s), gap median {} ms, max {} ms",
        gaps.len(),
        gaps[gaps.len() / 2].as_millis(),
        gaps[gaps.len() - 1].as_millis()
    );
}

/// A TCP relay the leader reaches PostgreSQL through, which the test can cut: the leader's
/// network to the database going away while the leader itself lives on.
struct Relay {
    port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Relay {
    fn to(target: u16) -> Relay {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused from now on
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut held = o.lock().unwrap();
                held.push(client.try_clone().unwrap());
                held.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[test]
fn a_leader_cut_off_from_postgresql_steps_down_and_the_standby_resumes() {
    let db = test_postgres::database("cut").unwrap_or_else(|e| panic!("{e}"));
    let pg = test_postgres::server().unwrap();
    let relay = Relay::to(pg.port);
    let via_relay = db.replace(&format!(":{}/", pg.port), &format!(":{}/", relay.port));
    assert_ne!(via_relay, db);
    let home = temp_home("standby-cut");
    let witness = home.join("witness");
    std::fs::create_dir_all(&witness).unwrap();
    let witness_s = witness.display().to_string();
    let cfg = Server::privileged_default_config(&home);
    let mut leader = Server::start(&home, &["--store", via_relay.as_str(), "--config", &cfg]);
    wait_for_leader(&db, &leader.base);
    let standby = Server::start(&home, &["--store", db.as_str(), "--config", &cfg]);
    for i in 0..10 {
        leader.submit("default", workflow(&format!("cut-{i}"), &witness_s));
    }
    let t0 = Instant::now();
    while std::fs::read_dir(&witness).unwrap().count() < 3 {
        assert!(t0.elapsed() < Duration::from_secs(60), "no step started");
        std::thread::sleep(Duration::from_millis(50));
    }
    relay.cut();
    let cut = Instant::now();
    // The leader cannot renew: it steps down by itself (exit status 75) within a lease.
    let status = loop {
        if let Some(s) = leader.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            cut.elapsed() < Duration::from_secs(10),
            "the leader kept running without its database"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(75), "the leader stepped down");
    eprintln!(
        "the cut-off leader stepped down {} ms after the cut",
        cut.elapsed().as_millis()
    );
    wait_for_leader(&db, &standby.base);
    eprintln!(
        "the standby leads {} ms after the cut",
        cut.elapsed().as_millis()
    );
    for i in 0..10 {
        let name = format!("cut-{i}");
        let wf = standby.wait("default", &name, Duration::from_secs(120));
        assert_eq!(wf["status"]["phase"], "Succeeded", "{name}: {wf}");
    }
    for entry in std::fs::read_dir(&witness).unwrap() {
        let p = entry.unwrap().path();
        let runs = std::fs::read_to_string(&p).unwrap().lines().count();
        assert_eq!(runs, 1, "{} ran {runs} times", p.display());
    }
    assert_eq!(std::fs::read_dir(&witness).unwrap().count(), 20);
}

/// Argo's Python client, unchanged, against a server whose store is PostgreSQL (the same
/// `tests/hera` that `./test.sh` runs against the embedded SQLite store).
#[test]
fn hera_runs_unchanged_on_a_postgresql_store() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let has_hera = std::process::Command::new("python3")
        .args(["-c", "import hera, pytest"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_hera {
        assert!(
            std::env::var_os("CI").is_none(),
            "hera and pytest are not installed (.ci/run installs them)"
        );
        eprintln!("hera tests on PostgreSQL: pip install hera pytest to run them; skipped");
        return;
    }
    let db = test_postgres::database("hera").unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/hera"])
        .current_dir(&root)
        .env("ONYX_BIN", env!("CARGO_BIN_EXE_onyx"))
        .env("ONYX_STORE", &db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("passed"), "{text}");
    // The workflows are in PostgreSQL, not in a SQLite file.
    let pg = test_postgres::server().unwrap();
    let stored = pg.psql_in(&db, "SELECT count(*) FROM workflows").unwrap();
    assert!(
        stored.parse::<u32>().unwrap() >= 2,
        "{stored} workflows stored"
    );
}
