//! `onyx conformance DIR`: run Argo's example corpus and compare each end phase with the
//! phase Argo v3.5.6 gives (DIR/MANIFEST.tsv).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use workflow_model::{Object, Severity};

use crate::corpus::{parallel, Options};
use crate::inputs::Inputs;
use crate::resource::ObjectStore;
use crate::runner::{self, NoWatch, RunOptions, Shared};

#[derive(Debug, Clone)]
pub struct Row {
    pub file: String,
    pub kind: String,
    pub expect: String,
    pub runs: String,
    /// The features the example uses (shown with failures).
    pub needs: String,
    pub notes: String,
}

pub fn read_manifest(dir: &Path) -> anyhow::Result<Vec<Row>> {
    let path = dir.join("MANIFEST.tsv");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 5 {
            bail!("{}:{}: expected 6 tab-separated columns (file, kind, expect, runs, needs, notes), found {}", path.display(), i + 1, cols.len());
        }
        rows.push(Row {
            file: cols[0].to_string(),
            kind: cols[1].to_string(),
            expect: cols[2].to_string(),
            runs: cols[3].to_string(),
            needs: cols[4].to_string(),
            notes: cols.get(5).unwrap_or(&"").to_string(),
        });
    }
    Ok(rows)
}

/// Objects of the corpus that are not Workflows, by (kind, name), with their file.
fn index_objects(examples: &Path) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![examples.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "yaml") {
                let Ok(text) = std::fs::read_to_string(&p) else {
                    continue;
                };
                let (objs, _) = workflow_model::load_str(&p.display().to_string(), &text);
                for o in objs {
                    if !matches!(o.object, Object::Workflow(_)) {
                        out.push((
                            o.object.kind().to_string(),
                            o.object.metadata().name.clone(),
                            p.clone(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Files a row's notes name that exist in the corpus (templates, ConfigMaps, PVCs), by path
/// (`workflow-template/templates.yaml`) or by object (`ConfigMap simple-parameters`).
fn needed_files(examples: &Path, row: &Row, index: &[(String, String, PathBuf)]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let words: Vec<&str> = row
        .notes
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',' || c == ';')
        .collect();
    for pair in words.windows(2) {
        let name = pair[1].trim_matches(|c: char| c == '`' || c == '\'' || c == '"' || c == '.');
        for (kind, n, file) in index {
            if kind == pair[0] && n == name && !out.contains(file) {
                out.push(file.clone());
            }
        }
    }
    let row_dir = Path::new(&row.file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for word in row
        .notes
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',' || c == ';')
    {
        let w = word.trim_matches(|c: char| {
            c == '`' || c == '\'' || c == '"' || c == '.' && !word.ends_with(".yaml")
        });
        if !w.ends_with(".yaml") || w == row.file {
            continue;
        }
        for candidate in [examples.join(w), examples.join(&row_dir).join(w)] {
            if candidate.is_file() && !out.contains(&candidate) {
                out.push(candidate);
                break;
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub row: Row,
    pub pass: bool,
    pub got: String,
}

pub fn run(dir: &Path, opts: &Options) -> anyhow::Result<bool> {
    let rows = read_manifest(dir)?;
    let examples = dir.join("examples");
    let index = Arc::new(index_objects(&examples));
    let exe = std::env::current_exe()?;
    let rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| {
            opts.only
                .as_ref()
                .is_none_or(|o| r.file.contains(o.as_str()))
        })
        .collect();
    let (home, timeout) = (opts.home.clone(), opts.timeout);
    let mut all = parallel(rows, opts.jobs, move |row| {
        let outcome = run_row(&examples, &row, &index, &exe, &home, timeout);
        let line = match &outcome {
            Some(o) if o.pass => format!(
                "PASS {} {} expected={} got={}",
                row.runs, row.file, row.expect, o.got
            ),
            Some(o) => format!(
                "FAIL {} {} expected={} got={} needs={}",
                row.runs, row.file, row.expect, o.got, row.needs
            ),
            None => format!(
                "SKIP {} {} expected={} (needs a Kubernetes cluster)",
                row.runs, row.file, row.expect
            ),
        };
        println!("{line}");
        outcome.unwrap_or(Outcome {
            row: row.clone(),
            pass: false,
            got: "skipped".into(),
        })
    });
    all.sort_by(|a, b| a.row.file.cmp(&b.row.file));
    if let Some(path) = &opts.report {
        let mut md =
            String::from("| file | runs | expected | got | result |\n|---|---|---|---|---|\n");
        for o in &all {
            let result = if o.got == "skipped" {
                "skip"
            } else if o.pass {
                "pass"
            } else {
                "**FAIL**"
            };
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                o.row.file,
                o.row.runs,
                o.row.expect,
                o.got.replace('|', "\\|"),
                result
            ));
        }
        std::fs::write(path, md)?;
    }
    let results: Vec<Outcome> = all.into_iter().filter(|o| o.got != "skipped").collect();
    let passed = results.iter().filter(|o| o.pass).count();
    let failed = results.len() - passed;
    let rate = |runs: &str| {
        let all: Vec<&Outcome> = results
            .iter()
            .filter(|o| o.row.runs == runs && o.row.expect != "lint")
            .collect();
        let ok = all.iter().filter(|o| o.pass).count();
        (ok, all.len())
    };
    let (host_ok, host_n) = rate("host");
    let (shim_ok, shim_n) = rate("shim");
    let lint: Vec<&Outcome> = results.iter().filter(|o| o.row.expect == "lint").collect();
    let lint_ok = lint.iter().filter(|o| o.pass).count();
    eprintln!(
        "host: {host_ok}/{host_n}  shim: {shim_ok}/{shim_n}  lint: {lint_ok}/{}",
        lint.len()
    );
    let mut bars = (host_n == 0 || host_ok * 100 >= host_n * 95)
        && (shim_n == 0 || shim_ok * 100 >= shim_n * 80)
        && lint_ok == lint.len();
    let e2e = match &opts.e2e {
        Some(dir) => {
            let t = crate::e2e::run(dir, opts)?;
            bars &= t.host_n == 0 || t.host_ok * 100 >= t.host_n * 95;
            format!(
                "e2e: {} passed, {} failed (host {}/{}; {} not run: they need Kubernetes, the e2e cluster's services or a client action)",
                t.passed, t.failed, t.host_ok, t.host_n, t.skipped
            )
        }
        None => "e2e: not run (give --e2e with test/e2e of an Argo v3.5.6 checkout)".into(),
    };
    println!("examples: {passed} passed, {failed} failed    {e2e}");
    Ok(bars)
}

fn run_row(
    examples: &Path,
    row: &Row,
    index: &[(String, String, PathBuf)],
    exe: &Path,
    home: &Path,
    timeout: Duration,
) -> Option<Outcome> {
    if row.runs == "k8s" {
        return None;
    }
    let mut files = needed_files(examples, row, index);
    files.insert(0, examples.join(&row.file));
    let mut inputs = Inputs::read(&files);
    if row.expect == "lint"
        || !row.kind.contains("Workflow")
        || row.kind != "Workflow" && !row.kind.ends_with("+Workflow")
    {
        inputs.lint();
        let errors: Vec<String> = inputs
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        let pass = errors.is_empty();
        let got = if pass {
            "lint".to_string()
        } else {
            format!("LintError({})", errors.join("; "))
        };
        if row.expect == "lint" {
            return Some(Outcome {
                row: row.clone(),
                pass,
                got,
            });
        }
    }
    if let Some(d) = inputs
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
    {
        return Some(Outcome {
            row: row.clone(),
            pass: false,
            got: format!("Refused({d})"),
        });
    }
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
    let main_file = examples.join(&row.file).display().to_string();
    let workflows: Vec<_> = inputs
        .loaded
        .iter()
        .filter(|l| l.file == main_file)
        .filter_map(|l| match &l.object {
            Object::Workflow(w) => Some(w.clone()),
            _ => None,
        })
        .collect();
    let mut phases = Vec::new();
    for wf in workflows {
        let name = runner::workflow_name(&wf);
        match runner::run(&wf, &name, &shared, &opts, &mut NoWatch) {
            Ok(o) if o.timed_out => phases.push("Timeout".to_string()),
            Ok(o) => phases.push(o.phase.as_str().to_string()),
            Err(e) => phases.push(format!("Refused({e})")),
        }
    }
    let got = if phases.is_empty() {
        "NoWorkflow".to_string()
    } else {
        phases.join(",")
    };
    let pass = !phases.is_empty()
        && phases.iter().all(|p| match row.expect.as_str() {
            "Random" => p == "Succeeded" || p == "Failed",
            e => p == e,
        });
    Some(Outcome {
        row: row.clone(),
        pass,
        got,
    })
}
