//! The sprig functions (Masterminds/sprig v3) that Argo exposes as `sprig.*`, without `env`
//! and `expandenv`. Numbers follow sprig: `add`, `sub`, `mul`, `div`, `max`, `min` work on
//! int64 and truncate floats, as sprig's `toInt64` does.

use base64::Engine;
use serde_json::Value;

use crate::value::{check_len, equal, float, go_format, to_json_bounded};

fn to_i64(v: &Value) -> i64 {
    match v {
        Value::Number(n) => n
            .as_i64()
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .or_else(|_| s.trim().parse::<f64>().map(|f| f as i64))
            .unwrap_or(0),
        Value::Bool(b) => *b as i64,
        _ => 0,
    }
}

fn to_f64(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.trim().parse().unwrap_or(0.0),
        Value::Bool(b) => *b as i64 as f64,
        _ => 0.0,
    }
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(other) => go_format(other),
        None => String::new(),
    }
}

fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

pub(crate) fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    let a = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    let ints: Vec<i64> = args.iter().map(to_i64).collect();
    Ok(match name {
        // Go's int64 arithmetic wraps (and `MinInt64 / -1` is `MinInt64`), never panics.
        "add" => Value::from(ints.iter().fold(0i64, |x, y| x.wrapping_add(*y))),
        "add1" => Value::from(to_i64(&a(0)).wrapping_add(1)),
        "sub" => Value::from(to_i64(&a(0)).wrapping_sub(to_i64(&a(1)))),
        "mul" => Value::from(ints.iter().fold(1i64, |x, y| x.wrapping_mul(*y))),
        "div" => {
            let d = to_i64(&a(1));
            if d == 0 {
                return Err("integer divide by zero".into());
            }
            Value::from(to_i64(&a(0)).wrapping_div(d))
        }
        "mod" => {
            let d = to_i64(&a(1));
            if d == 0 {
                return Err("integer divide by zero".into());
            }
            Value::from(to_i64(&a(0)).wrapping_rem(d))
        }
        "max" => Value::from(ints.iter().copied().max().unwrap_or(0)),
        "min" => Value::from(ints.iter().copied().min().unwrap_or(0)),
        "addf" => float(args.iter().map(to_f64).sum()),
        "subf" => float(to_f64(&a(0)) - to_f64(&a(1))),
        "mulf" => float(args.iter().map(to_f64).product()),
        "divf" => float(to_f64(&a(0)) / to_f64(&a(1))),
        "maxf" => float(args.iter().map(to_f64).fold(f64::MIN, f64::max)),
        "minf" => float(args.iter().map(to_f64).fold(f64::MAX, f64::min)),
        "floor" => float(to_f64(&a(0)).floor()),
        "ceil" => float(to_f64(&a(0)).ceil()),
        "round" => {
            let p = 10f64.powi(to_i64(&a(1)) as i32);
            float((to_f64(&a(0)) * p).round() / p)
        }
        "int" | "int64" | "atoi" => Value::from(to_i64(&a(0))),
        "float64" => float(to_f64(&a(0))),
        "toString" => Value::String(s(args.first())),
        "b64enc" => {
            let text = s(args.first());
            check_len("the result of b64enc", text.len() / 3 * 4 + 4)?;
            Value::String(base64::engine::general_purpose::STANDARD.encode(text))
        }
        "b64dec" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s(args.first()).trim())
                .map_err(|e| format!("b64dec: {e}"))?;
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
        "upper" => Value::String(s(args.first()).to_uppercase()),
        "lower" => Value::String(s(args.first()).to_lowercase()),
        "title" => Value::String(
            s(args.first())
                .split(' ')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
                .join(" "),
        ),
        "trim" => Value::String(s(args.first()).trim().to_string()),
        "trimAll" => Value::String(
            s(args.get(1))
                .trim_matches(|c| s(args.first()).contains(c))
                .to_string(),
        ),
        "trimPrefix" => Value::String(
            s(args.get(1))
                .strip_prefix(&s(args.first()))
                .map(str::to_string)
                .unwrap_or_else(|| s(args.get(1))),
        ),
        "trimSuffix" => Value::String(
            s(args.get(1))
                .strip_suffix(&s(args.first()))
                .map(str::to_string)
                .unwrap_or_else(|| s(args.get(1))),
        ),
        "replace" => {
            let (old, new, text) = (s(args.first()), s(args.get(1)), s(args.get(2)));
            let n = if old.is_empty() {
                text.chars().count() + 1
            } else {
                text.matches(old.as_str()).count()
            };
            let len = text
                .len()
                .saturating_add(n.saturating_mul(new.len()))
                .saturating_sub(n.saturating_mul(old.len()));
            check_len("the result of replace", len)?;
            Value::String(text.replace(&old, &new))
        }
        "contains" => Value::Bool(s(args.get(1)).contains(&s(args.first()))),
        "hasPrefix" => Value::Bool(s(args.get(1)).starts_with(&s(args.first()))),
        "hasSuffix" => Value::Bool(s(args.get(1)).ends_with(&s(args.first()))),
        "repeat" => {
            let text = s(args.get(1));
            let n = usize::try_from(to_i64(&a(0)).max(0)).unwrap_or(usize::MAX);
            check_len("the result of repeat", text.len().saturating_mul(n))?;
            Value::String(text.repeat(n))
        }
        "quote" => joined(
            "quote",
            args.iter().map(|v| format!("{:?}", s(Some(v)))).collect(),
            " ",
        )?,
        "squote" => joined(
            "squote",
            args.iter().map(|v| format!("'{}'", s(Some(v)))).collect(),
            " ",
        )?,
        "cat" => joined(
            "cat",
            args.iter()
                .filter(|v| !v.is_null())
                .map(|v| s(Some(v)))
                .collect(),
            " ",
        )?,
        "nospace" => Value::String(
            s(args.first())
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
        ),
        "trunc" => {
            let text = s(args.get(1));
            let n = to_i64(&a(0));
            let chars: Vec<char> = text.chars().collect();
            let out: String = if n >= 0 {
                chars.iter().take(n as usize).collect()
            } else {
                let keep = usize::try_from(n.unsigned_abs()).unwrap_or(usize::MAX);
                chars
                    .iter()
                    .skip(chars.len().saturating_sub(keep))
                    .collect()
            };
            Value::String(out)
        }
        "substr" => {
            let chars: Vec<char> = s(args.get(2)).chars().collect();
            let start = to_i64(&a(0)).clamp(0, chars.len() as i64) as usize;
            let end = to_i64(&a(1));
            let end = if end < 0 {
                chars.len()
            } else {
                (end as usize).min(chars.len())
            };
            Value::String(chars[start.min(end)..end].iter().collect())
        }
        "indent" | "nindent" => {
            let width = usize::try_from(to_i64(&a(0)).max(0)).unwrap_or(usize::MAX);
            let text = s(args.get(1));
            let lines = text.lines().count().max(1);
            check_len(
                "the result of indent",
                width
                    .saturating_add(1)
                    .saturating_mul(lines)
                    .saturating_add(text.len()),
            )?;
            let pad = " ".repeat(width);
            let body = text
                .lines()
                .map(|l| format!("{pad}{l}"))
                .collect::<Vec<_>>()
                .join("\n");
            Value::String(if name == "nindent" {
                format!("\n{body}")
            } else {
                body
            })
        }
        "split" | "splitList" => {
            let sep = s(args.first());
            let text = s(args.get(1));
            let parts = text
                .split(sep.as_str())
                .map(|p| Value::String(p.to_string()));
            if name == "split" {
                Value::Object(
                    parts
                        .enumerate()
                        .map(|(i, p)| (format!("_{i}"), p))
                        .collect(),
                )
            } else {
                Value::Array(parts.collect())
            }
        }
        "join" => {
            let items = a(1).as_array().cloned().unwrap_or_default();
            joined(
                "join",
                items.iter().map(|v| s(Some(v))).collect(),
                &s(args.first()),
            )?
        }
        "list" => Value::Array(args.to_vec()),
        "dict" => Value::Object(
            args.chunks(2)
                .map(|c| (s(c.first()), c.get(1).cloned().unwrap_or(Value::Null)))
                .collect(),
        ),
        "first" => a(0)
            .as_array()
            .and_then(|x| x.first().cloned())
            .unwrap_or(Value::Null),
        "last" => a(0)
            .as_array()
            .and_then(|x| x.last().cloned())
            .unwrap_or(Value::Null),
        "has" => Value::Bool(
            a(1).as_array()
                .is_some_and(|x| x.iter().any(|v| equal(v, &a(0)))),
        ),
        "empty" => Value::Bool(empty(&a(0))),
        "default" => {
            if empty(&a(1)) {
                a(0)
            } else {
                a(1)
            }
        }
        "coalesce" => args
            .iter()
            .find(|v| !empty(v))
            .cloned()
            .unwrap_or(Value::Null),
        "ternary" => {
            if a(2).as_bool().unwrap_or(false) {
                a(0)
            } else {
                a(1)
            }
        }
        "toJson" | "toRawJson" => Value::String(to_json_bounded(&a(0), false)?),
        "toPrettyJson" => Value::String(to_json_bounded(&a(0), true)?),
        "fromJson" => serde_json::from_str(&s(args.first())).unwrap_or(Value::Null),
        "regexMatch" => Value::Bool(compile(&s(args.first()))?.is_match(&s(args.get(1)))),
        "regexFind" => Value::String(
            compile(&s(args.first()))?
                .find(&s(args.get(1)))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
        ),
        "regexReplaceAll" => {
            let re = compile(&s(args.first()))?;
            let (text, repl) = (s(args.get(1)), s(args.get(2)));
            // Each replacement is at most the template with every `$` group the whole match.
            let dollars = repl.matches('$').count();
            let mut out = String::new();
            let mut last = 0;
            for caps in re.captures_iter(&text) {
                let Some(m) = caps.get(0) else { continue };
                out.push_str(&text[last..m.start()]);
                let most = repl.len().saturating_add(dollars.saturating_mul(m.len()));
                check_len(
                    "the result of regexReplaceAll",
                    out.len().saturating_add(most),
                )?;
                caps.expand(&repl, &mut out);
                last = m.end();
            }
            out.push_str(&text[last..]);
            check_len("the result of regexReplaceAll", out.len())?;
            Value::String(out)
        }
        "date" => {
            let when = match a(1) {
                Value::Number(n) => {
                    chrono::DateTime::from_timestamp(n.as_i64().unwrap_or(0), 0).unwrap_or_default()
                }
                Value::String(t) => chrono::DateTime::parse_from_rfc3339(&t)
                    .map(|d| d.to_utc())
                    .unwrap_or_default(),
                _ => chrono::DateTime::<chrono::Utc>::default(),
            };
            let mut out = String::new();
            use std::fmt::Write;
            write!(
                out,
                "{}",
                when.format(&go_layout_to_strftime(&s(args.first())))
            )
            .map_err(|_| "date: invalid layout".to_string())?;
            Value::String(out)
        }
        _ => return Err(format!("unknown sprig function {name}")),
    })
}

/// `parts` joined by `sep`, or an error when the result would pass `MAX_VALUE_BYTES`.
fn joined(name: &str, parts: Vec<String>, sep: &str) -> Result<Value, String> {
    let len = parts
        .iter()
        .fold(0usize, |n, p| n.saturating_add(p.len()))
        .saturating_add(sep.len().saturating_mul(parts.len().saturating_sub(1)));
    check_len(&format!("the result of {name}"), len)?;
    Ok(Value::String(parts.join(sep)))
}

/// A regular expression whose compiled program stays small (compiling is the costly part).
pub(crate) fn compile(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// Translate a Go time layout (`2006-01-02T15:04:05Z07:00`) into a strftime pattern.
pub(crate) fn go_layout_to_strftime(layout: &str) -> String {
    const TABLE: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Monday", "%A"),
        ("Z07:00", "%:z"),
        ("-07:00", "%:z"),
        ("-0700", "%z"),
        ("2006", "%Y"),
        ("Jan", "%b"),
        ("Mon", "%a"),
        ("MST", "%Z"),
        ("01", "%m"),
        ("02", "%d"),
        ("15", "%H"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("PM", "%p"),
        (".000", "%.3f"),
        ("_2", "%e"),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (go, f) in TABLE {
            if let Some(r) = rest.strip_prefix(go) {
                out.push_str(f);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integer_math_truncates_like_sprig() {
        assert_eq!(
            call("add", &[json!(1.9), json!(2), json!("3")]).unwrap(),
            json!(6)
        );
        assert_eq!(call("max", &[json!(15), json!(57.2)]).unwrap(), json!(57));
        assert_eq!(call("b64dec", &[json!("aGk=")]).unwrap(), json!("hi"));
    }

    #[test]
    fn date_uses_go_layouts() {
        assert_eq!(
            call(
                "date",
                &[json!("2006-01-02"), json!("2024-03-05T10:00:00Z")]
            )
            .unwrap(),
            json!("2024-03-05")
        );
    }
}
