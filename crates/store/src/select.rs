//! Kubernetes label selectors (`a=b,c!=d,e,!f,g in (x,y),h notin (z)`), parsed and turned
//! into SQL over a `(uid, key, value)` label table.

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
            reqs.push(req);
        }
        Ok(Selector(reqs))
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

pub(crate) fn push_label_filters(b: &mut Sql, table: &str, s: &Selector) {
    for req in &s.0 {
        let (negate, key, values): (bool, &String, Option<&[String]>) = match req {
            LabelReq::Eq(k, v) | LabelReq::NotEq(k, v) => (
                matches!(req, LabelReq::NotEq(..)),
                k,
                Some(std::slice::from_ref(v)),
            ),
            LabelReq::Exists(k) => (false, k, None),
            LabelReq::NotExists(k) => (true, k, None),
            LabelReq::In(k, vs) => (false, k, Some(vs)),
            LabelReq::NotIn(k, vs) => (true, k, Some(vs)),
        };
        b.push(if negate {
            " AND NOT EXISTS (SELECT 1 FROM "
        } else {
            " AND EXISTS (SELECT 1 FROM "
        });
        b.push(table)
            .push(" l WHERE l.uid = t.uid AND l.key = ")
            .bind_text(key);
        if let Some(vs) = values {
            b.push(" AND l.value IN (").bind_list(vs).push(")");
        }
        b.push(")");
    }
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
}
