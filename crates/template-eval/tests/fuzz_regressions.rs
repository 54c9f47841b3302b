//! Inputs found with the `expression` fuzz target's binary (fuzz/fuzz_targets/expression.rs)
//! that break its invariant — any expression evaluates or fails within bounded time — kept
//! exactly. The evaluator now charges functions for the bytes they read and make
//! (`BYTES_PER_STEP`), which bounds them.
//!
//! `MAX_EVAL_STEPS` counts syntax-tree nodes, but one step of a string builtin may read or
//! write up to `MAX_VALUE_BYTES` (1 MiB): a range of 100,000 items times a builtin over
//! a string of a few hundred KiB is 10^11 bytes of work within the step limit. Measured on
//! a release build (no sanitizer), 1,000 items: `replace` 11.5 s, `title` 79 s,
//! `regexReplaceAll` 33 s, `b64enc` 1.0 s — the 100,000 the range allows, a hundred times that.

use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use template_eval::{expr, substitute, Vars};

/// Evaluate on a thread and wait at most `limit` (a test build is unoptimised: this is
/// generous for a bounded evaluation). A thread left running ends with the test process.
fn finishes_within(src: &'static str, limit: Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let _ = tx.send(expr::eval(src, &json!({})).is_ok());
        })
        .expect("spawn");
    match rx.recv_timeout(limit) {
        Ok(_) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{src}: still evaluating after {limit:?}")
        }
        Err(e) => panic!("{src}: the evaluation panicked ({e})"),
    }
}

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn replace_over_a_range_is_bounded() {
    finishes_within(
        r#"all(1..100000, sprig.replace("x", "yy", sprig.repeat(400000, "x")) != "")"#,
        LIMIT,
    );
}

#[test]
fn title_over_a_range_is_bounded() {
    finishes_within(
        r#"all(1..100000, sprig.title(sprig.repeat(500000, "a ")) != "")"#,
        LIMIT,
    );
}

#[test]
fn regex_replace_over_a_range_is_bounded() {
    finishes_within(
        r#"all(1..100000, sprig.regexReplaceAll("x", sprig.repeat(400000, "x"), "yy") != "")"#,
        LIMIT,
    );
}

#[test]
fn b64enc_over_a_range_is_bounded() {
    finishes_within(
        r#"all(1..100000, sprig.b64enc(sprig.repeat(300000, "x")) != "")"#,
        LIMIT,
    );
}

/// The same through a workflow's `{{=...}}` tag, as the engine evaluates it.
#[test]
fn a_tag_is_bounded_too() {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let text = r#"{{=all(1..100000, sprig.title(sprig.repeat(500000, "a ")) != "")}}"#;
        let _ = tx.send(substitute(text, &Vars::default(), false).is_ok());
    });
    assert!(
        rx.recv_timeout(LIMIT).is_ok(),
        "still substituting after {LIMIT:?}"
    );
}
