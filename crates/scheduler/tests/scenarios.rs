//! The scheduler's rules as data: every scenario file under `scenarios/` (ONYX's own) and
//! `scenarios/volcano/` (Volcano's action-test cases, translated one file a case) is one cycle
//! whose outcome must be what the file expects. A failure names the file and every difference.

use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

fn check(file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let scenario = scheduler::load(&text)?;
    let outcome = scheduler::run(&scenario).map_err(|e| e.to_string())?;
    let expect = scenario
        .expect
        .as_ref()
        .ok_or("the file says nothing it expects")?;
    scheduler::compare(expect, &outcome)
}

fn check_all(dir: &str, at_least: usize) {
    let files = files(dir);
    assert!(files.len() >= at_least, "{dir}: only {} files", files.len());
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| check(f).err().map(|e| format!("{}: {e}", f.display())))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn onyx_rules_hold() {
    check_all("scenarios", 13);
}

/// All 39 cases of Volcano's allocate, preempt, reclaim and backfill action tests (v1.7 and
/// v1.10), each in the file named after it.
#[test]
fn volcanos_action_test_cases_pass() {
    check_all("scenarios/volcano", 39);
}

/// A file whose expectation is wrong fails and names what differed: the check can fail.
#[test]
fn a_wrong_expectation_is_a_failure_that_says_what_differed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let text = std::fs::read_to_string(dir.join("two-gangs-compete.yaml")).unwrap();
    let wrong = text.replace(
        "binds: {ml/f0: \"*\", ml/f1: \"*\"}",
        "binds: {ml/f0: \"*\", ml/s0: \"*\"}",
    );
    assert_ne!(wrong, text, "the fixture changed: update this test");
    let scenario = scheduler::load(&wrong).unwrap();
    let outcome = scheduler::run(&scenario).unwrap();
    let e = scheduler::compare(scenario.expect.as_ref().unwrap(), &outcome).unwrap_err();
    assert!(
        e.contains("ml/s0 not bound, expected *") && e.contains("ml/f1 bound to"),
        "{e}"
    );
}
