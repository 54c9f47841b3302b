//! The server's durability promise: kill it with SIGKILL while 20 workflows have running
//! steps, start it again, and every workflow ends as it would have — right phase, right
//! outputs, no step run twice, no submission lost.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{node, temp_home, Server};

/// Two steps; each appends a line to a witness file on the host (a hostPath volume), so a step
/// that ran twice leaves two lines. Workflows whose number is a multiple of 5 fail in the
/// second step.
fn workflow(i: usize, witness: &str) -> serde_json::Value {
    let code = if i.is_multiple_of(5) { 3 } else { 0 };
    json!({
        "metadata": {"name": format!("crash-{i}"), "labels": {"suite": "crash"}},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": [{"name": "ticket_id", "value": format!("T-{i}")}]},
            "volumes": [{"name": "witness", "hostPath": {"path": witness}}],
            "templates": [
                {"name": "main", "steps": [
                    [{"name": "first", "template": "work", "arguments": {"parameters": [
                        {"name": "tag", "value": format!("{i}-first")}, {"name": "code", "value": "0"}]}}],
                    [{"name": "second", "template": "work", "arguments": {"parameters": [
                        {"name": "tag", "value": "{{steps.first.outputs.result}}-second"},
                        {"name": "code", "value": code.to_string()}]}}]
                ]},
                {"name": "work",
                 "inputs": {"parameters": [{"name": "tag"}, {"name": "code"}]},
                 "script": {"image": "debian", "command": ["sh"],
                    "volumeMounts": [{"name": "witness", "mountPath": "/witness"}],
                    "source": "echo ran >> /witness/{{inputs.parameters.tag}}\nsleep 2\necho {{inputs.parameters.tag}}\nexit {{inputs.parameters.code}}\n"}}
            ]
        }
    })
}

#[test]
fn kill_9_mid_run_loses_nothing_and_runs_nothing_twice() {
    let home = temp_home("crash");
    let witness = home.join("witness");
    std::fs::create_dir_all(&witness).unwrap();
    let witness_s = witness.display().to_string();
    let cfg = Server::privileged_default_config(&home);
    let mut server = Server::start(&home, &["--config", &cfg]);
    for i in 0..20 {
        let (code, body) = server.call(
            "POST",
            "/api/v1/workflows/default",
            Some(json!({"workflow": workflow(i, &witness_s)})),
        );
        assert_eq!(code, 200, "submission {i}: {body}");
    }
    // Wait until first steps are running (they sleep 2 s), then kill the server mid-run.
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(&witness).unwrap().count() < 3 && t0.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill9();
    let started_before: usize = std::fs::read_dir(&witness).unwrap().count();
    assert!(
        started_before > 0,
        "steps were running when the server died"
    );

    let server = Server::start(&home, &["--config", &cfg]);
    let (code, list) = server.call(
        "GET",
        "/api/v1/workflows/default?listOptions.labelSelector=suite%3Dcrash",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        20,
        "no submission lost"
    );
    for i in 0..20usize {
        let wf = server.wait("default", &format!("crash-{i}"), Duration::from_secs(120));
        let expected = if i.is_multiple_of(5) {
            "Failed"
        } else {
            "Succeeded"
        };
        assert_eq!(wf["status"]["phase"], expected, "crash-{i}: {wf}");
        let first = node(&wf, "first");
        assert_eq!(first["phase"], "Succeeded", "crash-{i}");
        assert_eq!(
            first["outputs"]["result"],
            format!("{i}-first"),
            "crash-{i}"
        );
        let second = node(&wf, "second");
        assert_eq!(second["phase"], expected, "crash-{i}");
        assert_eq!(
            second["inputs"]["parameters"][0]["value"],
            format!("{i}-first-second")
        );
        if expected == "Succeeded" {
            assert_eq!(second["outputs"]["result"], format!("{i}-first-second"));
        } else {
            assert_eq!(second["outputs"]["exitCode"], "3", "crash-{i}: {second}");
        }
    }
    // Every step left exactly one line in its witness file: none ran twice, none was lost.
    for entry in std::fs::read_dir(&witness).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text.lines().count(),
            1,
            "{} ran {} times",
            p.display(),
            text.lines().count()
        );
    }
    assert_eq!(
        std::fs::read_dir(&witness).unwrap().count(),
        40,
        "every step ran"
    );
}

/// Seconds since the epoch, with their fraction.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The scheduled times (Unix seconds) of a CronWorkflow's runs, each named `CRON-<time>`.
fn scheduled_times(s: &Server, cron: &str) -> Vec<i64> {
    let (code, list) = s.call(
        "GET",
        &format!(
            "/api/v1/workflows/default?listOptions.labelSelector=workflows.argoproj.io/cron-workflow%3D{cron}"
        ),
        None,
    );
    assert_eq!(code, 200, "{list}");
    let mut times: Vec<i64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let name = w["metadata"]["name"].as_str().unwrap();
            name.strip_prefix(&format!("{cron}-"))
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("{name} is not named for its time"))
        })
        .collect();
    times.sort();
    times
}

/// CronWorkflows across a real restart (SIGKILL, then a new server on the same store), as
/// Argo's cron operator decides them: what came due while no server ran is skipped without
/// `startingDeadlineSeconds`, and run once (the latest such time) within it; the firing the
/// kill cut short is not run twice (a run is named for its time); the schedule goes on.
#[test]
fn cron_workflows_across_a_restart_neither_fire_twice_nor_miss_what_the_deadline_keeps() {
    let home = temp_home("cron-restart");
    let mut s = Server::start(&home, &[]);
    for (name, deadline) in [("skip", None), ("catch", Some(3600))] {
        let mut spec = json!({
            "schedule": "@every 2s",
            "successfulJobsHistoryLimit": 1000,
            "workflowSpec": {
                "entrypoint": "main",
                "arguments": {"parameters": [{"name": "ticket_id", "value": "T-CRON"}]},
                "templates": [{"name": "main", "container": {"image": "alpine", "command": ["true"]}}]
            }
        });
        if let Some(d) = deadline {
            spec["startingDeadlineSeconds"] = json!(d);
        }
        let (code, body) = s.call(
            "POST",
            "/api/v1/cron-workflows/default",
            Some(json!({"cronWorkflow": {"metadata": {"name": name}, "spec": spec}})),
        );
        assert_eq!(code, 200, "{body}");
    }
    let t0 = std::time::Instant::now();
    while ["skip", "catch"]
        .iter()
        .any(|c| scheduled_times(&s, c).is_empty())
    {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "the crons did not fire"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Killed right after a firing: what it had not recorded yet it finds done by name.
    s.kill9();
    let down = unix_now();
    std::thread::sleep(Duration::from_secs(7));
    let spawned = unix_now();
    let s = Server::start(&home, &[]);
    let listening = unix_now();
    std::thread::sleep(Duration::from_secs(5));
    for cron in ["skip", "catch"] {
        let times = scheduled_times(&s, cron);
        let mut unique = times.clone();
        unique.dedup();
        assert_eq!(unique, times, "{cron}: a time ran twice");
        let after_kill: Vec<i64> = times.iter().copied().filter(|t| *t as f64 > down).collect();
        let while_down: Vec<i64> = after_kill
            .iter()
            .copied()
            .filter(|t| (*t as f64) < if cron == "skip" { spawned } else { listening })
            .collect();
        if cron == "skip" {
            assert_eq!(
                while_down,
                Vec::<i64>::new(),
                "skip ran a time that came due while down: {times:?}"
            );
        } else {
            assert_eq!(while_down.len(), 1, "catch runs the latest missed time once: {times:?} (down at {down}, up at {spawned})");
            assert!(
                while_down[0] as f64 > spawned - 2.5,
                "catch ran the latest missed time, not an older one: {times:?}"
            );
        }
        assert!(
            after_kill.iter().any(|t| *t as f64 >= listening),
            "{cron}: the schedule goes on after the restart: {times:?}"
        );
    }
}
