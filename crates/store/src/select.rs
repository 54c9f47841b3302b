//! Kubernetes label selectors (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`), parsed and turned
//! into SQL over a `(uid, key, value)` label table.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

#[derive(Debug, Clone, PartialEq)]
pub enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector(pub Vec<LabelReq>);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid label selector {selector:?}: {why}")]
pub struct SelectorError {
    pub selector: String,
    pub why: String,
}

/// Most keys and values one selector may name, all its requirements together. Each is a
/// SQL parameter or two, and SQLite takes at most 32,766 parameters in a statement.
pub const MAX_SELECTOR_VALUES: usize = 10_000;

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Selector, SelectorError> {
        let fail = |why: String| SelectorError {
            selector: text.to_string(),
            why,
        };
        // Split on commas outside parentheses.
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0i32, 0usize);
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&text[start..]);
        let mut reqs = Vec::new();
        let mut named = 0;
        for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, SelectorError> {
                let inner = rest
                    .trim()
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| fail(format!("expected a list in parentheses in {part:?}")))?;
                let vals: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
                if let Some(v) = vals.iter().find(|v| !valid_value(v)) {
                    return Err(fail(format!("invalid label value {v:?}")));
                }
                Ok(vals)
            };
            let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
            let req = if words.len() == 2 && words[1].trim_start().starts_with("notin") {
                LabelReq::NotIn(
                    words[0].to_string(),
                    set(&words[1].trim_start()["notin".len()..])?,
                )
            } else if words.len() == 2 && words[1].trim_start().starts_with("in") {
                LabelReq::In(
                    words[0].to_string(),
                    set(&words[1].trim_start()["in".len()..])?,
                )
            } else if let Some((k, v)) = part.split_once("!=") {
                LabelReq::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                LabelReq::Eq(k.trim().into(), v.trim().into())
            } else if let Some(k) = part.strip_prefix('!') {
                LabelReq::NotExists(k.trim().into())
            } else {
                LabelReq::Exists(part.into())
            };
            let (key, values): (&str, Vec<&str>) = match &req {
                LabelReq::Eq(k, v) | LabelReq::NotEq(k, v) => (k, vec![v.as_str()]),
                LabelReq::Exists(k) | LabelReq::NotExists(k) => (k, vec![]),
                LabelReq::In(k, _) | LabelReq::NotIn(k, _) => (k, vec![]),
            };
            if !valid_key(key) {
                return Err(fail(format!("invalid label key {key:?}")));
            }
            if let Some(v) = values.iter().find(|v| !valid_value(v)) {
                return Err(fail(format!("invalid label value {v:?}")));
            }
            named += 1 + match &req {
                LabelReq::Eq(..) | LabelReq::NotEq(..) => 1,
                LabelReq::Exists(_) | LabelReq::NotExists(_) => 0,
                LabelReq::In(_, vs) | LabelReq::NotIn(_, vs) => vs.len(),
            };
            if named > MAX_SELECTOR_VALUES {
                return Err(fail(format!(
                    "more than {MAX_SELECTOR_VALUES} label keys and values"
                )));
            }
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }
}

/// The selector as Kubernetes writes it (`a=b,c!=d,e in (x,y),!f`); it parses back to itself.
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match r {
                LabelReq::Eq(k, v) => write!(f, "{k}={v}")?,
                LabelReq::NotEq(k, v) => write!(f, "{k}!={v}")?,
                LabelReq::Exists(k) => write!(f, "{k}")?,
                LabelReq::NotExists(k) => write!(f, "!{k}")?,
                LabelReq::In(k, vs) => write!(f, "{k} in ({})", vs.join(","))?,
                LabelReq::NotIn(k, vs) => write!(f, "{k} notin ({})", vs.join(","))?,
            }
        }
        Ok(())
    }
}

impl Selector {
    /// Whether labels (looked up by key) satisfy every requirement.
    pub fn matches(&self, label: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => label(k).as_deref() == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k).as_deref() != Some(v.as_str()),
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
            LabelReq::In(k, vs) => label(k).is_some_and(|x| vs.contains(&x)),
            LabelReq::NotIn(k, vs) => !label(k).is_some_and(|x| vs.contains(&x)),
        })
    }
}

/// Add one `AND EXISTS (...)` / `AND NOT EXISTS (...)` per requirement; the outer table is `t`.
/// A statement built piece by piece with its parameters numbered `$1, $2, …` — the form
/// both SQLite and PostgreSQL read (sqlx's own builder writes `?` for its `Any` driver).
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

enum Arg {
    Text(String),
    Int(i64),
}

impl Sql {
    pub(crate) fn new(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            args: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    pub(crate) fn bind_text(&mut self, value: &str) -> &mut Sql {
        self.args.push(Arg::Text(value.to_string()));
        let _ = write!(self.text, "${}", self.args.len());
        self
    }

    pub(crate) fn bind_int(&mut self, value: i64) -> &mut Sql {
        self.args.push(Arg::Int(value));
        let _ = write!(self.text, "${}", self.args.len());
        self
    }

    /// `$a, $b, …`, one parameter each.
    pub(crate) fn bind_list(&mut self, values: &[String]) -> &mut Sql {
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind_text(v);
        }
        self
    }

    /// `($a, $b), ($c, $d), …`, one row of two parameters each.
    fn bind_pairs(&mut self, pairs: &[(&str, &str)]) -> &mut Sql {
        for (i, (k, v)) in pairs.iter().enumerate() {
            self.push(if i > 0 { ", (" } else { "(" });
            self.bind_text(k).push(", ").bind_text(v).push(")");
        }
        self
    }

    pub(crate) fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for a in &self.args {
            q = match a {
                Arg::Text(t) => q.bind(t.as_str()),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// What a selector's requirements on one key ask of that key's one value (a workflow has at
/// most one value per key).
#[derive(Default)]
struct KeyRule<'a> {
    /// `k`, `k=v`, `k in (…)`: the label must be there.
    present: bool,
    /// `!k`: the label must not be there.
    absent: bool,
    /// `k=v`, `k in (…)`: the values it may have (all such requirements together).
    allowed: Option<BTreeSet<&'a str>>,
    /// `k!=v`, `k notin (…)`: the values it may not have.
    forbidden: BTreeSet<&'a str>,
}

/// Add the selector's filter on the outer table `t`, whose labels are in `table`.
///
/// The requirements are merged per key, and the statement has the same shape however many
/// there are: one count of the required keys and one `NOT EXISTS` over the labels that break
/// a requirement, the keys and values in `IN` lists. One `EXISTS (…)` per requirement, as it
/// was, made a selector of 3,000 terms an error on SQLite (an `AND` chain deeper than its
/// 1,000-level expression limit) and minutes of planning on PostgreSQL (a semi-join each).
pub(crate) fn push_label_filters(b: &mut Sql, table: &str, s: &Selector) {
    let mut rules: BTreeMap<&str, KeyRule> = BTreeMap::new();
    for req in &s.0 {
        let (key, positive, values): (&str, bool, Option<Vec<&str>>) = match req {
            LabelReq::Eq(k, v) => (k, true, Some(vec![v.as_str()])),
            LabelReq::In(k, vs) => (k, true, Some(vs.iter().map(String::as_str).collect())),
            LabelReq::Exists(k) => (k, true, None),
            LabelReq::NotEq(k, v) => (k, false, Some(vec![v.as_str()])),
            LabelReq::NotIn(k, vs) => (k, false, Some(vs.iter().map(String::as_str).collect())),
            LabelReq::NotExists(k) => (k, false, None),
        };
        let rule = rules.entry(key).or_default();
        match (positive, values) {
            (true, None) => rule.present = true,
            (true, Some(vs)) => {
                rule.present = true;
                let vs: BTreeSet<&str> = vs.into_iter().collect();
                rule.allowed = Some(match rule.allowed.take() {
                    Some(a) => a.intersection(&vs).copied().collect(),
                    None => vs,
                });
            }
            (false, None) => rule.absent = true,
            (false, Some(vs)) => rule.forbidden.extend(vs),
        }
    }
    let mut required = Vec::new();
    let mut absent = Vec::new();
    let mut restricted = Vec::new();
    let mut allowed_pairs = Vec::new();
    let mut forbidden_pairs = Vec::new();
    for (key, rule) in &rules {
        if rule.absent {
            if rule.present {
                b.push(" AND 1 = 0");
                return;
            }
            absent.push(key.to_string());
        } else if let Some(allowed) = &rule.allowed {
            let left: Vec<&str> = allowed.difference(&rule.forbidden).copied().collect();
            if left.is_empty() {
                b.push(" AND 1 = 0");
                return;
            }
            restricted.push(key.to_string());
            allowed_pairs.extend(left.into_iter().map(|v| (*key, v)));
        } else {
            forbidden_pairs.extend(rule.forbidden.iter().map(|v| (*key, *v)));
        }
        if rule.present {
            required.push(key.to_string());
        }
    }
    if !required.is_empty() {
        b.push(" AND (SELECT COUNT(*) FROM ")
            .push(table)
            .push(" l WHERE l.uid = t.uid AND l.key IN (")
            .bind_list(&required)
            .push(")) = ")
            .bind_int(required.len() as i64);
    }
    if absent.is_empty() && forbidden_pairs.is_empty() && restricted.is_empty() {
        return;
    }
    b.push(" AND NOT EXISTS (SELECT 1 FROM ")
        .push(table)
        .push(" l WHERE l.uid = t.uid AND (");
    let mut or = "";
    if !absent.is_empty() {
        b.push("l.key IN (").bind_list(&absent).push(")");
        or = " OR ";
    }
    if !forbidden_pairs.is_empty() {
        b.push(or).push("(l.key, l.value) IN (VALUES ");
        b.bind_pairs(&forbidden_pairs).push(")");
        or = " OR ";
    }
    if !restricted.is_empty() {
        b.push(or)
            .push("(l.key IN (")
            .bind_list(&restricted)
            .push(") AND (l.key, l.value) NOT IN (VALUES ");
        b.bind_pairs(&allowed_pairs).push("))");
    }
    b.push("))");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_as_kubernetes_reads_them() {
        let s: Selector = "app=web, tier!=db,env in (a, b),!legacy,team,zone notin (z1)"
            .parse()
            .unwrap();
        assert_eq!(
            s.0,
            vec![
                LabelReq::Eq("app".into(), "web".into()),
                LabelReq::NotEq("tier".into(), "db".into()),
                LabelReq::In("env".into(), vec!["a".into(), "b".into()]),
                LabelReq::NotExists("legacy".into()),
                LabelReq::Exists("team".into()),
                LabelReq::NotIn("zone".into(), vec!["z1".into()]),
            ]
        );
        assert!("a=b=c".parse::<Selector>().is_err());
        assert!("a in b".parse::<Selector>().is_err());
        assert_eq!("".parse::<Selector>().unwrap(), Selector::default());
    }

    #[test]
    fn selectors_print_as_they_parse() {
        let text = "app=web,tier!=db,env in (a,b),!legacy,team,zone notin (z1),e=,f in ()";
        let s: Selector = text.parse().unwrap();
        assert_eq!(s.to_string(), text);
        assert_eq!(s.to_string().parse::<Selector>().unwrap(), s);
    }

    /// Each key and value is a SQL parameter: a selector naming more than SQLite can bind
    /// is refused as invalid (HTTP 400), not failed in the database (HTTP 500).
    #[test]
    fn selectors_name_a_bounded_number_of_keys_and_values() {
        let terms = |n: usize| {
            (0..n)
                .map(|i| format!("a{i}=1"))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(terms(3000).parse::<Selector>().unwrap().0.len(), 3000);
        assert_eq!(
            terms(MAX_SELECTOR_VALUES / 2)
                .parse::<Selector>()
                .unwrap()
                .0
                .len(),
            5000
        );
        let err = terms(MAX_SELECTOR_VALUES / 2 + 1)
            .parse::<Selector>()
            .unwrap_err();
        assert!(err.why.contains("more than 10000"), "{}", err.why);
        let values = vec!["x"; MAX_SELECTOR_VALUES].join(",");
        assert!(format!("a in ({values})").parse::<Selector>().is_err());
    }
}
