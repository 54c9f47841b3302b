//! The second conformance table: fixtures of Argo v3.5.6's e2e suite (`test/e2e/{functional,
//! expectedfailures,testdata}`) with the phase and node assertions of the Go tests that use
//! them (`tests/argo-e2e-v3.5.6.tsv`, derived by reading those tests; committed, since the
//! fixtures are read from a checkout given on the command line).
//!
//! A row runs as its test submits it: the fixture as a Workflow (with the templates the test
//! creates first), or a WorkflowTemplate as `SubmitWorkflowsFromWorkflowTemplates` does.
//! Rows whose test needs a Kubernetes cluster or acts on the workflow mid-run (stop, resume,
//! retry) are listed with why, and not run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use serde_json::Value;
use workflow_model::{Object, Severity};

use crate::corpus::{parallel, Options};
use crate::inputs::Inputs;
use crate::resource::ObjectStore;
use crate::runner::{self, NoWatch, RunOptions, Shared};

pub const TABLE: &str = include_str!("../../../tests/argo-e2e-v3.5.6.tsv");

#[derive(Debug, Clone)]
pub struct Row {
    /// The Go test: `functional.TestDAGDepends` (file `functional_test.go`).
    pub test: String,
    /// The fixture, under `test/e2e`.
    pub fixture: String,
    /// Templates the test creates first, under `test/e2e`.
    pub with: Vec<String>,
    /// `workflow`, or `from-template` (submitted as `argo submit --from` does).
    pub submit: String,
    /// `host`; `k8s` (needs Kubernetes itself), `net` (the e2e cluster's services — minio,
    /// httpbin — or the internet) or `action` (a client action mid-run): not run.
    pub runs: String,
    /// The end phase: one, alternatives (`Error|Failed`), or `Completed` (any end).
    pub expect: String,
    /// Assertions: `display-name=Phase`, `~part-of-name=Phase`, `message=TEXT` (the workflow's
    /// message contains TEXT).
    pub nodes: Vec<(String, String)>,
    pub notes: String,
}

pub fn read_table(text: &str) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.starts_with("test\t") || line.trim().is_empty() {
            continue;
        }
        let c: Vec<&str> = line.split('\t').collect();
        if c.len() < 7 {
            bail!(
                "tests/argo-e2e-v3.5.6.tsv:{}: expected 8 tab-separated columns (test, fixture, with, submit, runs, expect, nodes, notes), found {}",
                i + 1,
                c.len()
            );
        }
        let mut nodes = Vec::new();
        for n in c[6].split(';').filter(|n| !n.is_empty()) {
            let (name, phase) = n.rsplit_once('=').with_context(|| {
                format!(
                    "tests/argo-e2e-v3.5.6.tsv:{}: node assertion {n:?}: expected name=Phase",
                    i + 1
                )
            })?;
            nodes.push((name.to_string(), phase.to_string()));
        }
        rows.push(Row {
            test: c[0].into(),
            fixture: c[1].into(),
            with: c[2]
                .split(',')
                .filter(|w| !w.is_empty())
                .map(str::to_string)
                .collect(),
            submit: c[3].into(),
            runs: c[4].into(),
            expect: c[5].into(),
            nodes,
            notes: c.get(7).unwrap_or(&"").to_string(),
        });
    }
    Ok(rows)
}

pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub host_ok: usize,
    pub host_n: usize,
}

pub fn run(dir: &Path, opts: &Options) -> anyhow::Result<Tally> {
    if !dir.join("functional").is_dir() {
        bail!(
            "--e2e {}: expected the test/e2e directory of an Argo v3.5.6 checkout (with functional/, expectedfailures/, testdata/)",
            dir.display()
        );
    }
    let table = match &opts.e2e_table {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => TABLE.to_string(),
    };
    let rows: Vec<Row> = read_table(&table)?
        .into_iter()
        .filter(|r| {
            opts.only
                .as_ref()
                .is_none_or(|o| r.fixture.contains(o.as_str()))
        })
        .collect();
    let exe = std::env::current_exe()?;
    let (dir, home, timeout) = (dir.to_path_buf(), opts.home.join("e2e"), opts.timeout);
    let results = parallel(rows, opts.jobs, move |row| {
        let got = if row.runs == "host" {
            Some(run_row(&dir, &row, &exe, &home, timeout))
        } else {
            None
        };
        let line = match &got {
            Some((true, g)) => format!(
                "PASS e2e {} {} expected={} got={g}",
                row.fixture, row.test, row.expect
            ),
            Some((false, g)) => format!(
                "FAIL e2e {} {} expected={} got={g}",
                row.fixture, row.test, row.expect
            ),
            None => format!(
                "SKIP e2e {} {} ({}: {})",
                row.fixture, row.test, row.runs, row.notes
            ),
        };
        println!("{line}");
        (row, got.map(|g| g.0))
    });
    let mut t = Tally {
        passed: 0,
        failed: 0,
        skipped: 0,
        host_ok: 0,
        host_n: 0,
    };
    for (row, pass) in results {
        match pass {
            None => t.skipped += 1,
            Some(p) => {
                if p {
                    t.passed += 1;
                } else {
                    t.failed += 1;
                }
                if row.runs == "host" {
                    t.host_n += 1;
                    t.host_ok += usize::from(p);
                }
            }
        }
    }
    Ok(t)
}

fn phase_matches(expect: &str, got: &str) -> bool {
    match expect {
        "Completed" => matches!(got, "Succeeded" | "Failed" | "Error"),
        e => e.split('|').any(|x| x == got),
    }
}

/// Run one row: (passed, what came out).
fn run_row(
    dir: &Path,
    row: &Row,
    exe: &Path,
    home: &Path,
    timeout: std::time::Duration,
) -> (bool, String) {
    let files = match prepare(dir, row, &home.join("inputs")) {
        Ok(f) => f,
        Err(e) => return (false, format!("Refused({e})")),
    };
    let inputs = Inputs::read(&files);
    if let Some(d) = inputs
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
    {
        return (false, format!("Refused({d})"));
    }
    let main = files[0].display().to_string();
    let wf = if row.submit == "from-template" {
        inputs.workflow_from_template(&main)
    } else {
        inputs
            .loaded
            .iter()
            .filter(|l| l.file == main)
            .find_map(|l| match &l.object {
                Object::Workflow(w) => Some(w.clone()),
                _ => None,
            })
            .ok_or_else(|| format!("{main} holds no Workflow"))
    };
    let wf = match wf {
        Ok(w) => w,
        Err(e) => return (false, format!("Refused({e})")),
    };
    let objects = ObjectStore::new();
    objects.load(&inputs.objects());
    let shared = Arc::new(Shared {
        store: inputs.store(),
        objects,
        exe: exe.to_path_buf(),
    });
    let opts = RunOptions {
        home: home.to_path_buf(),
        params: Vec::new(),
        auto_resume: true,
        timeout: Some(timeout),
    };
    let name = runner::workflow_name(&wf);
    let outcome = match runner::run(&wf, &name, &shared, &opts, &mut NoWatch) {
        Ok(o) if o.timed_out => return (false, "Timeout".into()),
        Ok(o) => o,
        Err(e) => return (false, format!("Refused({e})")),
    };
    let phase = outcome.phase.as_str().to_string();
    let mut pass = phase_matches(&row.expect, &phase);
    let mut got = phase;
    if !pass {
        if let Some(m) = outcome.workflow["status"]["message"].as_str() {
            got.push_str(&format!(" ({m})"));
        }
    }
    for (node, want) in &row.nodes {
        if node == "message" {
            let message = outcome.workflow["status"]["message"]
                .as_str()
                .unwrap_or_default();
            if !message.contains(want.as_str()) {
                pass = false;
                got.push_str(&format!(
                    " message {message:?} (expected to contain {want:?})"
                ));
            }
            continue;
        }
        let have = node_phase(&outcome.workflow, node).unwrap_or_else(|| "absent".into());
        if &have != want {
            pass = false;
            got.push_str(&format!(" node {node}={have} (expected {want})"));
        }
    }
    (pass, got)
}

/// The files a row runs: its fixture — as the kind the test decodes it into (the Go fixture
/// reads any file into the Workflow or WorkflowTemplate the test names) — then what the test
/// creates first: template files, and ConfigMaps written `configmap/NAME/key=value&key=value`.
fn prepare(dir: &Path, row: &Row, scratch: &Path) -> Result<Vec<PathBuf>, String> {
    let fixture = dir.join(&row.fixture);
    let text = std::fs::read_to_string(&fixture)
        .map_err(|e| format!("{}: cannot read the file: {e}", fixture.display()))?;
    let want = if row.submit == "from-template" {
        "WorkflowTemplate"
    } else {
        "Workflow"
    };
    let scratch = scratch.join(row.test.replace(['.', '/'], "-"));
    let write = |name: &str, v: &Value| -> Result<PathBuf, String> {
        std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
        let p = scratch.join(name);
        std::fs::write(&p, v.to_string()).map_err(|e| e.to_string())?;
        Ok(p)
    };
    let docs =
        manifest::parse_documents(&text).map_err(|e| format!("{}: {e}", fixture.display()))?;
    let mut files = Vec::new();
    match docs.first().map(|d| d.value.clone()) {
        Some(mut v)
            if v["kind"] != want && v["kind"].as_str().is_some_and(|k| k.contains("Workflow")) =>
        {
            v["kind"] = Value::String(want.into());
            let name = fixture
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("fixture.yaml");
            files.push(write(name, &v)?);
        }
        _ => files.push(fixture),
    }
    for w in &row.with {
        match w.strip_prefix("configmap/") {
            Some(spec) => {
                let (name, pairs) = spec.split_once('/').unwrap_or((spec, ""));
                let data: serde_json::Map<String, Value> = pairs
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                    .collect();
                let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                                            "metadata": {"name": name}, "data": data});
                files.push(write(&format!("configmap-{name}.json"), &cm)?);
            }
            None => files.push(dir.join(w)),
        }
    }
    Ok(files)
}

/// A node's phase, found as the e2e tests find it: by display name (`NodeWithDisplayName`), or
/// `~TEXT`, the first node whose name contains TEXT.
fn node_phase(wf: &Value, key: &str) -> Option<String> {
    let nodes = wf["status"]["nodes"].as_object()?;
    let found = match key.strip_prefix('~') {
        Some(part) => nodes
            .values()
            .find(|n| n["name"].as_str().is_some_and(|name| name.contains(part))),
        None => nodes.values().find(|n| n["displayName"] == key),
    };
    found.and_then(|n| n["phase"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_table_reads_and_names_real_tests() {
        let rows = read_table(TABLE).unwrap();
        assert!(rows.len() >= 60, "{} rows", rows.len());
        for r in &rows {
            assert!(r.test.contains(".Test"), "{}", r.test);
            assert!(
                ["host", "k8s", "net", "action"].contains(&r.runs.as_str()),
                "{}: runs {}",
                r.test,
                r.runs
            );
            assert!(
                ["workflow", "from-template"].contains(&r.submit.as_str()),
                "{}",
                r.test
            );
            assert!(
                r.runs == "host" || !r.notes.is_empty(),
                "{}: a row not run says why",
                r.test
            );
        }
        assert!(phase_matches("Error|Failed", "Failed"));
        assert!(phase_matches("Completed", "Error"));
        assert!(!phase_matches("Succeeded", "Failed"));
    }
}
