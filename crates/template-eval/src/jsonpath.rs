//! The JSONPath subset Argo's `jsonpath()` expression function is used with: `$`, `.name`,
//! `['name']`, `[n]` (negative from the end), `[*]`, `.*` and `..name` (recursive descent).
//! A path that selects one value returns it; wildcards and descent return a list.

use serde_json::Value;

use crate::value::{approx_size, too_big, MAX_VALUE_BYTES};

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(i64),
    Wildcard,
    Descend(String),
}

fn parse(path: &str) -> Result<Vec<Step>, String> {
    let p = path.trim();
    let mut rest = p.strip_prefix('$').unwrap_or(p);
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("..") {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            steps.push(Step::Descend(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let name = &r[..end];
            if name.is_empty() {
                return Err(format!("invalid JSONPath {path:?}: empty name"));
            }
            steps.push(if name == "*" {
                Step::Wildcard
            } else {
                Step::Key(name.to_string())
            });
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("invalid JSONPath {path:?}: missing ']'"))?;
            let inner = r[..end].trim();
            steps.push(if inner == "*" {
                Step::Wildcard
            } else if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                Step::Key(q.to_string())
            } else if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Step::Key(q.to_string())
            } else {
                Step::Index(
                    inner
                        .parse()
                        .map_err(|_| format!("invalid JSONPath {path:?}: bad index {inner:?}"))?,
                )
            });
            rest = &r[end + 1..];
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            steps.push(Step::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    Ok(steps)
}

/// Collects selected values, refusing to hold more than `MAX_VALUE_BYTES` of them (`..name`
/// copies nested matches once per enclosing match).
struct Out {
    values: Vec<Value>,
    size: usize,
}

impl Out {
    fn push(&mut self, v: Value) -> Result<(), String> {
        self.size += approx_size(&v, MAX_VALUE_BYTES) + 1;
        if self.size > MAX_VALUE_BYTES {
            return Err(too_big("the JSONPath result", self.size));
        }
        self.values.push(v);
        Ok(())
    }
}

fn descend(v: &Value, name: &str, out: &mut Out) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(name) {
                out.push(x.clone())?;
            }
            for x in m.values() {
                descend(x, name, out)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                descend(x, name, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Evaluate `path` on `doc`.
pub fn query(doc: &Value, path: &str) -> Result<Value, String> {
    let steps = parse(path)?;
    let mut current = vec![doc.clone()];
    let mut multi = false;
    for step in &steps {
        let mut next = Out {
            values: Vec::new(),
            size: 0,
        };
        for v in &current {
            match step {
                Step::Key(k) => match v.get(k) {
                    Some(x) => next.push(x.clone())?,
                    None if !multi => return Err(format!("unknown key {k}")),
                    None => {}
                },
                Step::Index(i) => {
                    let a = v
                        .as_array()
                        .ok_or_else(|| format!("cannot index {v} with [{i}]"))?;
                    let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                    match a.get(idx as usize) {
                        Some(x) => next.push(x.clone())?,
                        None if !multi => return Err(format!("index [{i}] out of bounds")),
                        None => {}
                    }
                }
                Step::Wildcard => {
                    multi = true;
                    let items: Box<dyn Iterator<Item = &Value>> = match v {
                        Value::Array(a) => Box::new(a.iter()),
                        Value::Object(m) => Box::new(m.values()),
                        _ => Box::new(std::iter::empty()),
                    };
                    for x in items {
                        next.push(x.clone())?;
                    }
                }
                Step::Descend(name) => {
                    multi = true;
                    descend(v, name, &mut next)?;
                }
            }
        }
        current = next.values;
    }
    Ok(if multi {
        Value::Array(current)
    } else {
        current.into_iter().next().unwrap_or(Value::Null)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selects_like_argo_examples() {
        let d = json!([{"value": "true"}, {"value": "false"}]);
        assert_eq!(query(&d, "$[0].value").unwrap(), json!("true"));
        assert_eq!(query(&d, "$[-1].value").unwrap(), json!("false"));
        assert_eq!(query(&d, "$[*].value").unwrap(), json!(["true", "false"]));
        let d = json!({"a": {"b": [1, 2]}, "c d": 3});
        assert_eq!(query(&d, "$.a.b[1]").unwrap(), json!(2));
        assert_eq!(query(&d, "$['c d']").unwrap(), json!(3));
        assert_eq!(query(&d, "$..b").unwrap(), json!([[1, 2]]));
        assert!(query(&d, "$.missing").is_err());
    }
}
