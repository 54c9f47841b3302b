//! Inputs `cargo fuzz` (fuzz/fuzz_targets/manifest.rs) and its review found to break the
//! reader, each kept exactly. A manifest reaches the reader from a client (submit, lint,
//! the server's manifest endpoints): any input may only fail, with a located error.

use manifest::{parse_documents, ManifestError, MAX_DEPTH};
use serde_json::json;

/// Run `f` on a thread with a 2 MiB stack, a tokio worker's (where the server reads
/// manifests), so that unbounded recursion fails the test instead of passing on a larger
/// main stack.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow or panic")
}

fn too_deep(text: String) {
    let err = small_stack(move || parse_documents(&text).map(|d| d.len()));
    match err {
        Err(ManifestError::Unsupported { message, line, .. }) => {
            assert!(message.contains("too deep"), "{message}");
            assert!(line >= 1);
        }
        other => panic!("expected a too-deep error, got {other:?}"),
    }
}

/// fuzz artifact minimized-from-f834bde2…: `[` (the target repeats a short input to 4 KiB).
/// `Builder::value` recursed once per level: 4,096 `[` overflowed the stack (an abort, not
/// an error) — under AddressSanitizer from ~600 levels on a 2 MiB stack.
#[test]
fn deep_flow_sequences_are_an_error_not_a_stack_overflow() {
    too_deep("[".repeat(4096));
    too_deep("[".repeat(100_000));
}

#[test]
fn deep_block_and_flow_mappings_are_an_error_not_a_stack_overflow() {
    too_deep("- ".repeat(2048));
    too_deep("{a: ".repeat(1024));
    too_deep(
        (0..2000)
            .map(|i| format!("{}k:\n", "  ".repeat(i)))
            .collect(),
    );
}

#[test]
fn nesting_up_to_the_limit_is_read() {
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    let docs = small_stack(move || parse_documents(&ok).unwrap());
    let mut v = &docs[0].value;
    for _ in 1..MAX_DEPTH {
        v = &v[0];
    }
    assert_eq!(v, &json!([]));
    too_deep("[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1));
}

/// Aliases nest an anchored value again wherever they appear: a chain of anchors, each an
/// alias of the one before inside 100 more levels, built values too deep to drop or print
/// from a short document although no line of it was deeper than 101.
#[test]
fn aliases_cannot_build_values_deeper_than_the_limit() {
    let mut text = String::from("a0: &a0 x\n");
    for i in 1..40 {
        let open = "[".repeat(100);
        let close = "]".repeat(100);
        text.push_str(&format!("a{i}: &a{i} {open}*a{}{close}\n", i - 1));
    }
    too_deep(text);
}

/// Found in review while writing the target: `i64::from_str_radix` takes a sign, so a
/// second sign after a radix prefix read as an integer, and negating the `i64::MIN` it can
/// produce overflowed (a panic where overflow checks are on). Go's `ParseInt`, which
/// go-yaml uses, refuses the second sign: these are strings.
#[test]
fn a_sign_after_a_radix_prefix_is_not_an_integer() {
    let docs = parse_documents(
        "a: -0x-8000000000000000\nb: -0-1000000000000000000000\nc: -0b-1000000000000000000000000000000000000000000000000000000000000000\nd: 0x-5\ne: 0o+7\nf: +0x+1\n",
    )
    .unwrap();
    assert_eq!(
        docs[0].value,
        json!({"a": "-0x-8000000000000000", "b": "-0-1000000000000000000000",
               "c": "-0b-1000000000000000000000000000000000000000000000000000000000000000",
               "d": "0x-5", "e": "0o+7", "f": "+0x+1"})
    );
    // The extremes of i64 are integers, as for Go; beyond them, the text stays a string.
    let docs = parse_documents(
        "a: -9223372036854775808\nb: -0x8000000000000000\nc: 0x7fffffffffffffff\nd: 9223372036854775808\ne: -0x8000000000000001\n",
    )
    .unwrap();
    assert_eq!(
        docs[0].value,
        json!({"a": i64::MIN, "b": i64::MIN, "c": i64::MAX,
               "d": "9223372036854775808", "e": "-0x8000000000000001"})
    );
}

/// Found in review: anchor ids were the number of distinct names so far plus one, so after
/// a redefinition the next new anchor took the redefined one's id, and aliases to the
/// earlier anchor expanded to the later one's value.
#[test]
fn a_redefined_anchor_keeps_its_own_value() {
    let docs =
        parse_documents("a: &a 1\nb: &b 2\nc: &a 3\nd: &d 4\ne: *a\nf: *b\ng: *d\n").unwrap();
    assert_eq!(
        docs[0].value,
        json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 3, "f": 2, "g": 4})
    );
}
