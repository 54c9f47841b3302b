//! Argo's template language, evaluated without I/O.
//!
//! * [`substitute`] replaces `{{name}}` tags from a flat map of variables and evaluates
//!   `{{=expr}}` tags with [`expr`], as Argo's `util/template` does.
//! * [`expr`] is an interpreter for the subset of expr-lang Argo workflows use: literals,
//!   member and index access, arithmetic, comparison, `in`, `contains`, `matches`, ternaries,
//!   `??`, closures over `#`, `filter`/`map`/`all`/`any`, `asInt`, `asFloat`, `jsonpath`,
//!   `toJson` and the `sprig` functions Argo exposes.
//! * [`govaluate`] evaluates `when` conditions with govaluate's rules, where bare words are
//!   strings.

#![forbid(unsafe_code)]

mod error;
pub mod expr;
pub mod govaluate;
pub mod jsonpath;
mod sprig;
mod value;

pub use error::EvalError;
pub use value::{go_format, MAX_EXPR_DEPTH, MAX_VALUE_BYTES};

use serde_json::{Map, Value};

/// Variables visible to templates: flat names as Argo writes them (`inputs.parameters.x`).
/// A persistent map: scopes are cloned per step in O(1), so a DAG of 100,000 tasks does not
/// copy its growing scope for every task.
/// A persistent map (cheap to clone per scope) hashed with foldhash's fixed state: several
/// times faster than SipHash on the short keys a workflow has, and the same order every run.
pub type Vars = PersistentMap<String>;

/// A persistent string-keyed map with the hasher every scope map of the engine uses.
pub type PersistentMap<V> =
    imbl::GenericHashMap<String, V, foldhash::fast::FixedState, imbl::shared_ptr::DefaultSharedPtr>;

/// Where variables come from: a map, or a scope layered over the workflow's globals.
pub trait Lookup {
    fn lookup(&self, name: &str) -> Option<&str>;
    /// Every variable, lower layers first (upper layers win when expanded).
    fn each(&self, f: &mut dyn FnMut(&str, &str));
}

impl Lookup for Vars {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
    fn each(&self, f: &mut dyn FnMut(&str, &str)) {
        for (k, v) in self {
            f(k, v);
        }
    }
}

/// A scope's own variables over a base (the workflow's globals), without copying either.
pub struct Layered<'a, B: Lookup + ?Sized = Vars, T: Lookup + ?Sized = Vars> {
    pub top: &'a T,
    pub base: &'a B,
}

impl<B: Lookup + ?Sized, T: Lookup + ?Sized> Lookup for Layered<'_, B, T> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.top.lookup(name).or_else(|| self.base.lookup(name))
    }
    fn each(&self, f: &mut dyn FnMut(&str, &str)) {
        self.base.each(f);
        self.top.each(f);
    }
}

/// Replace every `{{...}}` tag in `text`.
///
/// With `allow_unresolved`, a tag whose variable is unknown (or whose expression cannot be
/// evaluated yet) is written back unchanged, as Argo does while a template is only partly
/// resolvable; without it, the first such tag is an error.
pub fn substitute<L: Lookup + ?Sized>(
    text: &str,
    vars: &L,
    allow_unresolved: bool,
) -> Result<String, EvalError> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut env: Option<Value> = None;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let tag = &after[..end];
        rest = &after[end + 2..];
        if let Some(expression) = tag.strip_prefix('=') {
            let env = env.get_or_insert_with(|| expand_vars(vars));
            match eval_expression_tag(expression, env, vars) {
                Ok(s) => out.push_str(&s),
                // A limit is never "not resolvable yet": the workflow errs, naming it.
                Err(e) if allow_unresolved && !e.is_limit() => {
                    out.push_str("{{");
                    out.push_str(tag);
                    out.push_str("}}");
                }
                Err(e) => return Err(e),
            }
        } else {
            match vars.lookup(tag.trim()) {
                Some(v) => out.push_str(v),
                None if allow_unresolved => {
                    out.push_str("{{");
                    out.push_str(tag);
                    out.push_str("}}");
                }
                None => return Err(EvalError::Unresolved(tag.trim().to_string())),
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn eval_expression_tag<L: Lookup + ?Sized>(
    expression: &str,
    env: &Value,
    vars: &L,
) -> Result<String, EvalError> {
    // Argo leaves these unresolved until the values exist (exit handlers, retries).
    for (word, var) in [
        ("retries", "retries"),
        ("workflow.status", "workflow.status"),
        ("workflow.failures", "workflow.failures"),
    ] {
        if expression.contains(word) && vars.lookup(var).is_none() {
            let mentions = expr::identifiers(expression)
                .map(|ids| ids.iter().any(|i| i == word))
                .unwrap_or(false);
            if mentions {
                return Err(EvalError::Unresolved(format!("={expression}")));
            }
        }
    }
    let v = expr::eval(expression, env)?;
    if v.is_null() {
        return Err(EvalError::Unresolved(format!("={expression}")));
    }
    Ok(go_format(&v))
}

/// Turn flat dotted names into nested maps, as Argo's `expand.Expand` does:
/// `steps.a.outputs.result` becomes `{"steps": {"a": {"outputs": {"result": ...}}}}`.
/// The flat name stays visible too, so `inputs.parameters['a.b']` style lookups keep working.
pub fn expand_vars<L: Lookup + ?Sized>(vars: &L) -> Value {
    let mut all: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    vars.each(&mut |k, v| {
        all.insert(k.to_string(), v.to_string());
    });
    let mut root = Map::new();
    let mut names: Vec<&String> = all.keys().collect();
    // Shorter names first, so that a map built for `a.b.c` is not clobbered by a later `a.b`.
    names.sort_by_key(|n| (n.matches('.').count(), n.len()));
    for name in names {
        let value = Value::String(all[name].clone());
        insert_path(&mut root, name, value);
    }
    Value::Object(root)
}

fn insert_path(root: &mut Map<String, Value>, name: &str, value: Value) {
    let parts: Vec<&str> = name.split('.').collect();
    // No expression can reach deeper than it may nest; a name of more parts stays flat, so
    // that a hostile name cannot build a value too deep to format or drop.
    if parts.len() > MAX_EXPR_DEPTH {
        root.insert(name.to_string(), value);
        return;
    }
    let mut cur = root;
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            if !matches!(cur.get(*part), Some(Value::Object(_))) {
                cur.insert(part.to_string(), value);
            }
            return;
        }
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        cur = entry.as_object_mut().expect("just made an object");
    }
}

/// Substitute tags in every string of a JSON value (keys are left alone, as Argo's
/// JSON-level replacement only touches string contents).
pub fn substitute_json<L: Lookup + ?Sized>(
    value: &Value,
    vars: &L,
    allow_unresolved: bool,
) -> Result<Value, EvalError> {
    Ok(match value {
        Value::String(s) => Value::String(substitute(s, vars, allow_unresolved)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| substitute_json(v, vars, allow_unresolved))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut m = Map::with_capacity(o.len());
            for (k, v) in o {
                m.insert(k.clone(), substitute_json(v, vars, allow_unresolved)?);
            }
            Value::Object(m)
        }
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn simple_tags_are_trimmed_and_replaced() {
        let v = vars(&[("inputs.parameters.message", "hi there")]);
        assert_eq!(
            substitute("say {{ inputs.parameters.message }}!", &v, false).unwrap(),
            "say hi there!"
        );
    }

    #[test]
    fn unresolved_tags_stay_or_fail() {
        let v = vars(&[]);
        assert_eq!(
            substitute("{{steps.a.outputs.result}}", &v, true).unwrap(),
            "{{steps.a.outputs.result}}"
        );
        assert_eq!(
            substitute("{{steps.a.outputs.result}}", &v, false).unwrap_err(),
            EvalError::Unresolved("steps.a.outputs.result".into())
        );
    }

    #[test]
    fn expression_tags_format_like_go() {
        let v = vars(&[
            ("inputs.parameters.foo", "3"),
            ("inputs.parameters.week-temps", "{\"avg\": 35.8}"),
        ]);
        assert_eq!(
            substitute("{{=asInt(inputs.parameters.foo) * 10}}", &v, false).unwrap(),
            "30"
        );
        assert_eq!(
            substitute(
                "{{=jsonpath(inputs.parameters['week-temps'], '$.avg')}}",
                &v,
                false
            )
            .unwrap(),
            "35.8"
        );
        assert_eq!(
            substitute("{{=toJson(filter([1, 3], {# > 1}))}}", &v, false).unwrap(),
            "[3]"
        );
    }

    #[test]
    fn workflow_status_stays_unresolved_until_known() {
        let v = vars(&[]);
        assert_eq!(
            substitute("{{=workflow.status == 'Succeeded'}}", &v, true).unwrap(),
            "{{=workflow.status == 'Succeeded'}}"
        );
    }

    proptest::proptest! {
        #[test]
        fn substitute_never_panics(s in "\\PC{0,80}") {
            let v = vars(&[("a", "1"), ("b.c", "x")]);
            let _ = substitute(&s, &v, true);
            let _ = substitute(&s, &v, false);
        }

        #[test]
        fn substitute_without_tags_is_identity(s in "[^{}]{0,80}") {
            let v = vars(&[("a", "1")]);
            proptest::prop_assert_eq!(substitute(&s, &v, false).unwrap(), s);
        }
    }
}

#[cfg(test)]
mod argo_cases {
    use super::*;

    #[test]
    fn jsonpath_on_a_workflow_parameter_in_a_when() {
        let mut v = Vars::new();
        v.insert("workflow.parameters".into(), "[]".into());
        v.insert(
            "workflow.parameters.json".into(),
            r#"[{"value": "true"}]"#.into(),
        );
        let out = substitute(
            "{{=jsonpath(workflow.parameters.json, '$[0].value') == 'true'}}",
            &v,
            true,
        )
        .unwrap();
        assert_eq!(out, "true");
    }
}
