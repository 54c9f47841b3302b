//! An interpreter for the part of expr-lang (github.com/expr-lang/expr) that Argo workflows use.
//!
//! Values are JSON values. Integers stay integers through `+ - * %`; `/` always gives a float,
//! as in expr-lang. Unknown top-level names are
//! [`EvalError::Unresolved`](crate::EvalError::Unresolved), the condition under which Argo
//! leaves a tag for later.
//!
//! The text goes through the `lexer`, the `parser` and the `evaluator`, which calls the
//! `builtins`; this module is their public face.

mod builtins;
mod evaluator;
mod lexer;
mod parser;

pub use crate::value::MAX_EXPR_DEPTH;
pub use evaluator::{eval, MAX_EVAL_STEPS, MAX_RANGE_ITEMS};
pub use lexer::identifiers;
pub use parser::{parse, Ast};

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::error::EvalError;

    fn ev(src: &str, env: Value) -> Value {
        eval(src, &env).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    #[test]
    fn arithmetic_follows_expr_lang() {
        assert_eq!(ev("1 + 2 * 3", json!({})), json!(7));
        assert_eq!(ev("7 / 2", json!({})), json!(3.5));
        assert_eq!(ev("7 % 2", json!({})), json!(1));
        assert_eq!(ev("2 ** 3", json!({})), json!(8.0));
        assert_eq!(ev("'a' + 'b'", json!({})), json!("ab"));
        assert_eq!(ev("-3 + 1", json!({})), json!(-2));
    }

    #[test]
    fn logic_ternary_and_membership() {
        let env = json!({"steps": {"flip-coin": {"outputs": {"result": "heads"}}, "heads": {"outputs": {"result": "H"}}, "tails": {"outputs": {"result": "T"}}}});
        assert_eq!(
            ev("steps['flip-coin'].outputs.result == 'heads' ? steps.heads.outputs.result : steps.tails.outputs.result", env),
            json!("H")
        );
        assert_eq!(ev("2 in [1, 2]", json!({})), json!(true));
        assert_eq!(ev("'x' not in ['a']", json!({})), json!(true));
        assert_eq!(
            ev("'main.log' endsWith 'log' and not false", json!({})),
            json!(true)
        );
        assert_eq!(ev("'abc' matches '^a.c$'", json!({})), json!(true));
        assert_eq!(ev("nil ?? 'd'", json!({})), json!("d"));
        assert_eq!(ev("1 == 1.0", json!({})), json!(true));
    }

    #[test]
    fn closures_over_lists() {
        assert_eq!(ev("filter([1, 2, 3], {# > 1})", json!({})), json!([2, 3]));
        assert_eq!(ev("map([1, 2], # * 2)", json!({})), json!([2, 4]));
        assert_eq!(ev("all([1, 2], {# > 0})", json!({})), json!(true));
        assert_eq!(
            ev(
                "filter(data, {# endsWith 'main.log'})",
                json!({"data": ["a/main.log", "b.txt"]})
            ),
            json!(["a/main.log"])
        );
        assert_eq!(ev("map([[1, 2]], {#[0] + #[1]})[0]", json!({})), json!(3));
    }

    #[test]
    fn unknown_names_are_unresolved_and_missing_members_nil() {
        assert_eq!(
            eval("foo + 1", &json!({})),
            Err(EvalError::Unresolved("foo".into()))
        );
        assert_eq!(ev("a.b", json!({"a": {}})), Value::Null);
    }

    #[test]
    fn syntax_errors_say_what_was_expected() {
        match eval("1 +", &json!({})) {
            Err(EvalError::Syntax { message, .. }) => {
                assert!(message.contains("end of expression"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            eval("(1", &json!({})),
            Err(EvalError::Syntax { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn eval_never_panics(s in "[-a-z0-9 +*/%()\\[\\]{}#.,:?!=<>&|'\"]{0,60}") {
            let _ = eval(&s, &json!({"a": {"b": [1, 2]}, "s": "x"}));
        }
    }
}
