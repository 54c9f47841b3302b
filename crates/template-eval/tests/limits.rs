//! A hostile expression can only fail: it may not panic, exhaust the stack, or make the
//! evaluator hold or compute without bound. Each limit is an error that names it.

use serde_json::{json, Value};
use template_eval::{expr, govaluate, EvalError, MAX_EXPR_DEPTH, MAX_VALUE_BYTES};

/// Run `f` on a thread with a 2 MiB stack (a tokio worker's, and a test thread's default),
/// so that unbounded recursion fails the test instead of passing on a larger main stack.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow or panic")
}

fn ev(src: &str) -> Result<Value, EvalError> {
    expr::eval(src, &json!({"a": {"b": 1}, "big": "x".repeat(300_000)}))
}

fn message(r: Result<Value, EvalError>) -> String {
    match r {
        Err(EvalError::Syntax { message, .. }) | Err(EvalError::Runtime { message, .. }) => message,
        other => {
            let text = format!("{other:?}");
            panic!("expected an error, got {}", &text[..text.len().min(200)])
        }
    }
}

#[test]
fn deep_expressions_are_syntax_errors_not_stack_overflows() {
    small_stack(|| {
        let n = 100_000;
        for src in [
            "!".repeat(n) + "true",
            "-".repeat(n) + "1",
            "(".repeat(n) + "1" + &")".repeat(n),
            "[".repeat(n) + &"]".repeat(n),
            vec!["1"; n].join(" + "),
            vec!["2"; n].join(" ** "),
            vec!["true"; n].join(" ? 1 : "),
            "a".to_string() + &".b".repeat(n),
            "a".to_string() + &"[0]".repeat(n),
            "f(".repeat(n) + &")".repeat(n),
            vec!["1"; n].join(" + ") + " +",
        ] {
            let r = ev(&src);
            assert!(
                matches!(r, Err(EvalError::Syntax { .. })),
                "{}: {r:?}",
                &src[..20]
            );
            let m = message(r);
            assert!(
                m.contains("MAX_EXPR_DEPTH") || m.contains("end of expression"),
                "{m}"
            );
        }
        // Just under the limit still parses and evaluates.
        let ok = "!".repeat(MAX_EXPR_DEPTH - 2) + "true";
        assert_eq!(ev(&ok).unwrap(), json!(true));
        let sum = vec!["1"; 50].join(" + ");
        assert_eq!(ev(&sum).unwrap(), json!(50));
        // The deepest expressions the limit lets through evaluate on a small stack.
        for (open, leaf, close) in [
            ("map([1], ", "#", ")"),
            ("abs(", "1", ")"),
            ("(1 + ", "1", ")"),
            ("sprig.add(1, ", "1", ")"),
            ("[", "1", "]"),
            ("true ? ", "1", " : 2"),
            ("all([1], {", "true", "})"),
        ] {
            let mut deepest = None;
            for k in 1..=MAX_EXPR_DEPTH {
                let src = open.repeat(k) + leaf + &close.repeat(k);
                match expr::parse(&src) {
                    Ok(_) => deepest = Some(src),
                    Err(_) => break,
                }
            }
            let src = deepest.expect("some nesting parses");
            assert!(ev(&src).is_ok(), "{open}");
        }
    });
}

#[test]
fn deep_govaluate_conditions_are_syntax_errors() {
    small_stack(|| {
        let n = 100_000;
        for src in [
            "!".repeat(n) + "true",
            "(".repeat(n) + "1" + &")".repeat(n),
            vec!["true"; n].join(" && "),
            vec!["2"; n].join(" ** "),
        ] {
            let r = govaluate::eval(&src);
            assert!(
                matches!(&r, Err(EvalError::Syntax { message, .. }) if message.contains("MAX_EXPR_DEPTH")),
                "{r:?}"
            );
        }
        assert!(govaluate::should_execute("!!true && (1 < 2)").unwrap());
    });
}

#[test]
fn integer_overflow_is_an_error_or_wraps_as_go_never_a_panic() {
    let min = "(-9223372036854775807 - 1)";
    // Go: MinInt64 % -1 == 0.
    assert_eq!(ev(&format!("{min} % -1")).unwrap(), json!(0));
    // Negating or taking the absolute value of MinInt64 leaves int64: a float, as 2^63.
    assert_eq!(
        ev(&format!("-{min}")).unwrap(),
        json!(9223372036854775808.0)
    );
    assert_eq!(
        ev(&format!("abs({min})")).unwrap(),
        json!(9223372036854775808.0)
    );
    assert!(ev(&format!("{min} - 1")).is_err());
    assert!(ev("9223372036854775807 * 2").is_err());
    // A float divisor that truncates to 0.
    assert!(ev("1.5 % 0.5").is_err());
    // sprig's int64 math wraps as Go's does.
    assert_eq!(
        ev(&format!("sprig.div({min}, -1)")).unwrap(),
        json!(i64::MIN)
    );
    assert_eq!(ev(&format!("sprig.mod({min}, -1)")).unwrap(), json!(0));
    assert_eq!(
        ev("sprig.add(9223372036854775807, 1)").unwrap(),
        json!(i64::MIN)
    );
    assert_eq!(ev("sprig.mul(9223372036854775807, 2)").unwrap(), json!(-2));
    assert_eq!(
        ev(&format!("sprig.trunc({min}, 'abc')")).unwrap(),
        json!("abc")
    );
}

#[test]
fn ranges_are_capped() {
    let m = message(ev("1..1000000000000"));
    assert!(m.contains("MAX_RANGE_ITEMS"), "{m}");
    let m = message(ev("(-9223372036854775807 - 1)..9223372036854775807"));
    assert!(m.contains("MAX_RANGE_ITEMS"), "{m}");
    assert_eq!(ev("len(1..100000)").unwrap(), json!(100_000));
    assert_eq!(ev("len(5..1)").unwrap(), json!(0));
}

#[test]
fn built_values_are_capped() {
    let cases = [
        "sprig.repeat(1000000000000, 'abc')",
        "sprig.repeat(9223372036854775807, 'abc')",
        "sprig.indent(1000000000000, 'a')",
        "sprig.nindent(100, sprig.repeat(100000, 'a\\n'))",
        "sprig.replace('', big, big)",
        "sprig.regexReplaceAll('', big, big)",
        "sprig.regexReplaceAll('x', big, '$0$0$0$0')",
        "sprig.cat(big, big, big, big)",
        "sprig.join(big, [1, 2, 3, 4, 5])",
        "sprig.quote(big, big, big, big)",
        "big + big + big + big",
        "[big, big, big, big]",
        "{a: big, b: big, c: big, d: big}",
        "map(1..100000, big)",
        "sortBy(1..100000, big)",
        "groupBy(1..100000, big)",
        "map(1..100000, {{x: #, y: #}})",
        "toJson([big, big, big, big])",
        "sprig.toPrettyJson([big, big, big, big])",
        "join([big, big, big, big], ',')",
        "[big] + [big] + [big] + [big]",
        "sprig.b64enc(big + big + big)",
    ];
    for src in cases {
        let m = message(ev(src));
        assert!(m.contains("MAX_VALUE_BYTES"), "{src}: {m}");
    }
    // Within the limit all is as before.
    assert_eq!(ev("len(sprig.repeat(1000, 'ab'))").unwrap(), json!(2000));
    assert_eq!(ev("len(big + big)").unwrap(), json!(600_000));
    // The limit is on the value built, as JSON text: a string of the limit less its two
    // quotes is fine, one byte more is not.
    let most = MAX_VALUE_BYTES - 2;
    assert!(ev(&format!("len(sprig.repeat({most}, 'a'))")).is_ok());
    assert!(ev(&format!("sprig.repeat({}, 'a')", most + 1)).is_err());
}

#[test]
fn evaluation_steps_are_capped() {
    let m = message(ev("count(1..10000, all(1..10000, {# > 0}))"));
    assert!(m.contains("MAX_EVAL_STEPS"), "{m}");
    let m = message(ev(
        "len(filter(1..100000, {'ab' + string(#) matches 'a' + string(#)}))",
    ));
    assert!(m.contains("MAX_EVAL_STEPS"), "{m}");
    // One pattern in a closure is compiled once.
    assert_eq!(
        ev("len(filter(1..10000, {string(#) matches '^1'}))").unwrap(),
        json!(1112)
    );
}

#[test]
fn deep_variable_names_stay_flat() {
    small_stack(|| {
        let mut vars = template_eval::Vars::new();
        vars.insert(vec!["a"; 100_000].join("."), "x".into());
        vars.insert("b.c".into(), "y".into());
        let env = template_eval::expand_vars(&vars);
        assert_eq!(env["b"]["c"], "y");
        assert_eq!(
            template_eval::substitute("{{=b.c}}", &vars, false).unwrap(),
            "y"
        );
    });
}
