//! Argo's DAG `depends` language: bare task names expanded as Argo does
//! (`A` → `A.Succeeded || A.Skipped || A.Daemoned`, plus `Failed`/`Errored` under
//! `continueOn`), compiled once per DAG into a [`DependsExpr`] and evaluated over the
//! dependencies' results.
//!
//! Pure and engine-free; a malformed expression is a [`DependsError`] that names it, never a
//! panic, and nesting is held to the expression limit so neither parsing nor evaluating can
//! exhaust the stack.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hash::BuildHasher;

use template_eval::MAX_EXPR_DEPTH;
use workflow_model::ContinueOn;

/// How a dependency ended, as `depends` names it (`A.Succeeded`, `A.Errored`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Errored,
    Skipped,
    Omitted,
    /// Not ended (no `depends` result names it).
    Unfinished,
}

/// Why a `depends` expression cannot be read or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DependsError {
    #[error("unexpected '{found}' in depends '{logic}'")]
    Unexpected { found: char, logic: String },
    #[error("missing ')' in depends '{logic}'")]
    MissingParenthesis { logic: String },
    #[error("'{word}' has no result in depends '{logic}'")]
    NoResult { word: String, logic: String },
    #[error("incomplete depends '{logic}'")]
    Incomplete { logic: String },
    #[error("unexpected text after the expression in depends '{logic}'")]
    TrailingText { logic: String },
    #[error("depends nests deeper than {MAX_EXPR_DEPTH} levels (MAX_EXPR_DEPTH)")]
    TooDeep,
    #[error("task '{0}' has no result yet")]
    NotEnded(String),
    #[error("unknown task result '{0}'")]
    UnknownResult(String),
}

#[derive(Debug, Clone, Copy)]
/// A dependency's result: how it ended, and for a task group (a task with items) whether any
/// item succeeded and whether all failed.
pub struct DepResult {
    pub outcome: Outcome,
    pub any_succeeded: bool,
    pub all_failed: bool,
}

/// Rewrite bare task names in `depends` into Argo's expansion.
pub fn expand_depends(logic: &str, continue_on: &dyn Fn(&str) -> Option<ContinueOn>) -> String {
    let mut out = String::new();
    let chars: Vec<char> = logic.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || chars[i] == '-'
                    || chars[i] == '_'
                    || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let has_result = word
                .rsplit_once('.')
                .is_some_and(|(_, s)| s.chars().next().is_some_and(|c| c.is_uppercase()));
            if has_result {
                out.push_str(&word);
            } else {
                let co = continue_on(&word).unwrap_or_default();
                let mut parts = vec![
                    format!("{word}.Succeeded"),
                    format!("{word}.Skipped"),
                    format!("{word}.Daemoned"),
                ];
                if co.error {
                    parts.push(format!("{word}.Errored"));
                }
                if co.failed {
                    parts.push(format!("{word}.Failed"));
                }
                out.push('(');
                out.push_str(&parts.join(" || "));
                out.push(')');
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// A compiled `depends` expression: parsed once per DAG, evaluated per task in O(size).
#[derive(Debug, Clone)]
pub enum DependsExpr {
    /// `task.Result`
    Result(String, String),
    Not(Box<DependsExpr>),
    And(Vec<DependsExpr>),
    Or(Vec<DependsExpr>),
}

/// Parse an expanded `depends` expression; `None` when it is empty (no dependencies).
pub fn parse_depends(logic: &str) -> Result<Option<DependsExpr>, DependsError> {
    #[derive(Debug, PartialEq)]
    enum Tok {
        Word(String),
        And,
        Or,
        Not,
        Open,
        Close,
    }
    let chars: Vec<char> = logic.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '(' => {
                toks.push(Tok::Open);
                i += 1
            }
            ')' => {
                toks.push(Tok::Close);
                i += 1
            }
            '!' => {
                toks.push(Tok::Not);
                i += 1
            }
            '&' | '|' if chars.get(i + 1) == Some(&c) => {
                toks.push(if c == '&' { Tok::And } else { Tok::Or });
                i += 2
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '-' | '_' | '.'))
                {
                    i += 1;
                }
                toks.push(Tok::Word(chars[start..i].iter().collect()));
            }
            other => {
                return Err(DependsError::Unexpected {
                    found: other,
                    logic: logic.into(),
                })
            }
        }
    }
    if toks.is_empty() {
        return Ok(None);
    }
    // `depth`: how many parentheses and `!`s deep the parser is, held to the limit on
    // expressions so that neither parsing nor evaluating can exhaust the stack (`&&` and
    // `||` chains are flat lists).
    fn or(
        t: &[Tok],
        p: &mut usize,
        logic: &str,
        depth: usize,
    ) -> Result<DependsExpr, DependsError> {
        let mut parts = vec![and(t, p, logic, depth)?];
        while t.get(*p) == Some(&Tok::Or) {
            *p += 1;
            parts.push(and(t, p, logic, depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            DependsExpr::Or(parts)
        })
    }
    fn and(
        t: &[Tok],
        p: &mut usize,
        logic: &str,
        depth: usize,
    ) -> Result<DependsExpr, DependsError> {
        let mut parts = vec![unary(t, p, logic, depth)?];
        while t.get(*p) == Some(&Tok::And) {
            *p += 1;
            parts.push(unary(t, p, logic, depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            DependsExpr::And(parts)
        })
    }
    fn unary(
        t: &[Tok],
        p: &mut usize,
        logic: &str,
        depth: usize,
    ) -> Result<DependsExpr, DependsError> {
        if depth >= MAX_EXPR_DEPTH && matches!(t.get(*p), Some(Tok::Not | Tok::Open)) {
            return Err(DependsError::TooDeep);
        }
        match t.get(*p) {
            Some(Tok::Not) => {
                *p += 1;
                Ok(DependsExpr::Not(Box::new(unary(t, p, logic, depth + 1)?)))
            }
            Some(Tok::Open) => {
                *p += 1;
                let e = or(t, p, logic, depth + 1)?;
                if t.get(*p) != Some(&Tok::Close) {
                    return Err(DependsError::MissingParenthesis {
                        logic: logic.into(),
                    });
                }
                *p += 1;
                Ok(e)
            }
            Some(Tok::Word(w)) => {
                *p += 1;
                let (task, result) = w.rsplit_once('.').ok_or_else(|| DependsError::NoResult {
                    word: w.clone(),
                    logic: logic.into(),
                })?;
                Ok(DependsExpr::Result(task.to_string(), result.to_string()))
            }
            _ => Err(DependsError::Incomplete {
                logic: logic.into(),
            }),
        }
    }
    let mut p = 0;
    let e = or(&toks, &mut p, logic, 0)?;
    if p != toks.len() {
        return Err(DependsError::TrailingText {
            logic: logic.into(),
        });
    }
    Ok(Some(e))
}

/// Evaluate a parsed expression over the dependencies' results, by task name.
pub fn eval_depends_expr<S: BuildHasher>(
    e: &DependsExpr,
    results: &HashMap<String, DepResult, S>,
) -> Result<bool, DependsError> {
    Ok(match e {
        DependsExpr::Not(x) => !eval_depends_expr(x, results)?,
        DependsExpr::And(xs) => {
            for x in xs {
                if !eval_depends_expr(x, results)? {
                    return Ok(false);
                }
            }
            true
        }
        DependsExpr::Or(xs) => {
            for x in xs {
                if eval_depends_expr(x, results)? {
                    return Ok(true);
                }
            }
            false
        }
        DependsExpr::Result(task, result) => {
            let r = results
                .get(task)
                .ok_or_else(|| DependsError::NotEnded(task.clone()))?;
            match result.as_str() {
                "Succeeded" => r.outcome == Outcome::Succeeded,
                "Failed" => r.outcome == Outcome::Failed,
                "Errored" => r.outcome == Outcome::Errored,
                "Skipped" => r.outcome == Outcome::Skipped,
                "Omitted" => r.outcome == Outcome::Omitted,
                "Daemoned" => false,
                "AnySucceeded" => r.any_succeeded,
                "AllFailed" => r.all_failed,
                other => return Err(DependsError::UnknownResult(other.into())),
            }
        }
    })
}

/// Evaluate an expanded `depends` expression over the dependencies' results.
#[cfg(test)]
fn eval_depends(logic: &str, results: &HashMap<String, DepResult>) -> Result<bool, DependsError> {
    match parse_depends(logic)? {
        None => Ok(true),
        Some(e) => eval_depends_expr(&e, results),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_depends_are_errors_not_stack_overflows() {
        let run = |logic: String| {
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || parse_depends(&logic).map(|_| ()))
                .unwrap()
                .join()
                .unwrap()
        };
        let n = 100_000;
        for logic in [
            "(".repeat(n) + "A.Succeeded" + &")".repeat(n),
            "!".repeat(n) + "A.Succeeded",
        ] {
            assert_eq!(run(logic).unwrap_err(), DependsError::TooDeep);
        }
        assert!(run("(".repeat(50) + "A.Succeeded" + &")".repeat(50)).is_ok());
        assert!(run(vec!["A.Succeeded"; n].join(" && ")).is_ok());
    }

    #[test]
    fn depends_expansion_matches_argo() {
        let co = |n: &str| {
            if n == "B" {
                Some(ContinueOn {
                    error: false,
                    failed: true,
                })
            } else {
                None
            }
        };
        assert_eq!(
            expand_depends("A && B.Failed", &co),
            "(A.Succeeded || A.Skipped || A.Daemoned) && B.Failed"
        );
        assert_eq!(
            expand_depends("B", &co),
            "(B.Succeeded || B.Skipped || B.Daemoned || B.Failed)"
        );
        let mut r = HashMap::new();
        r.insert(
            "A".to_string(),
            DepResult {
                outcome: Outcome::Succeeded,
                any_succeeded: false,
                all_failed: false,
            },
        );
        r.insert(
            "B".to_string(),
            DepResult {
                outcome: Outcome::Failed,
                any_succeeded: false,
                all_failed: false,
            },
        );
        assert!(eval_depends(&expand_depends("A && B.Failed", &co), &r).unwrap());
        assert!(!eval_depends(&expand_depends("A && B.Succeeded", &co), &r).unwrap());
    }
}
