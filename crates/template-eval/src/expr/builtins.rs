//! The builtin functions (`asInt`, `toJson`, `jsonpath`, `len`, `join`, `max`, `sum`, ...)
//! and the arithmetic that `+ - * / % **` and `sum` share.

use serde_json::Value;

use crate::value::{check_len, float, go_format, num, to_json_bounded};

pub(super) fn arith(op: &str, a: &Value, b: &Value) -> Option<Value> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return match op {
            "+" => x.checked_add(y).map(Value::from),
            "-" => x.checked_sub(y).map(Value::from),
            "*" => x.checked_mul(y).map(Value::from),
            // `i64::MIN % -1` overflows: 0, as Go computes it.
            "%" => (y != 0).then(|| Value::from(x.wrapping_rem(y))),
            "/" => Some(float(x as f64 / y as f64)),
            _ => Some(float((x as f64).powf(y as f64))),
        };
    }
    let (x, y) = (num(a)?, num(b)?);
    Some(float(match op {
        "+" => x + y,
        "-" => x - y,
        "*" => x * y,
        "/" => x / y,
        "%" => {
            // Go's `%` on the integers the floats truncate to; a divisor that truncates to
            // zero has no result (as `1 % 0`).
            let (x, y) = (x as i64, y as i64);
            if y == 0 {
                return None;
            }
            x.wrapping_rem(y) as f64
        }
        _ => x.powf(y),
    }))
}

fn to_f64(v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("cannot convert {s:?} to a number")),
        Value::Bool(b) => Ok(if *b { 1.0 } else { 0.0 }),
        other => Err(format!("cannot convert {} to a number", go_format(other))),
    }
}

pub(super) fn builtin(name: &str, args: &[Value]) -> Result<Value, String> {
    let arg = |i: usize| {
        args.get(i)
            .ok_or_else(|| format!("{name} needs {} arguments", i + 1))
    };
    match name {
        "asInt" | "int" => {
            let v = arg(0)?;
            match v {
                Value::Number(n) => Ok(Value::from(
                    n.as_i64()
                        .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
                )),
                Value::String(s) => {
                    if name == "asInt" {
                        s.trim()
                            .parse::<i64>()
                            .map(Value::from)
                            .map_err(|_| format!("cannot convert {s:?} to an int"))
                    } else {
                        s.trim()
                            .parse::<i64>()
                            .map(Value::from)
                            .or_else(|_| s.trim().parse::<f64>().map(|f| Value::from(f as i64)))
                            .map_err(|_| format!("cannot convert {s:?} to an int"))
                    }
                }
                other => Err(format!("cannot convert {} to an int", go_format(other))),
            }
        }
        "asFloat" | "float" => Ok(float(to_f64(arg(0)?)?)),
        "string" | "toString" => Ok(Value::String(go_format(arg(0)?))),
        "toJson" | "toJSON" => to_json_bounded(arg(0)?, false).map(Value::String),
        "fromJson" | "fromJSON" => {
            let s = arg(0)?.as_str().ok_or("fromJSON needs a string")?;
            serde_json::from_str(s).map_err(|e| format!("invalid JSON: {e}"))
        }
        "jsonpath" => {
            let doc = arg(0)?;
            let path = arg(1)?.as_str().ok_or("jsonpath needs a path string")?;
            let parsed = match doc {
                Value::String(s) => {
                    serde_json::from_str(s).map_err(|e| format!("jsonpath: invalid JSON: {e}"))?
                }
                other => other.clone(),
            };
            crate::jsonpath::query(&parsed, path)
        }
        "len" => Ok(Value::from(match arg(0)? {
            Value::String(s) => s.chars().count(),
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            other => return Err(format!("invalid argument for len: {}", go_format(other))),
        } as i64)),
        "abs" => {
            let v = arg(0)?;
            match v.as_i64() {
                Some(i) => Ok(i
                    .checked_abs()
                    .map(Value::from)
                    .unwrap_or_else(|| float((i as f64).abs()))),
                None => Ok(float(to_f64(v)?.abs())),
            }
        }
        "upper" => Ok(Value::String(
            arg(0)?.as_str().unwrap_or_default().to_uppercase(),
        )),
        "lower" => Ok(Value::String(
            arg(0)?.as_str().unwrap_or_default().to_lowercase(),
        )),
        "trim" => Ok(Value::String(
            arg(0)?.as_str().unwrap_or_default().trim().to_string(),
        )),
        "split" => {
            let s = arg(0)?.as_str().unwrap_or_default();
            let sep = arg(1)?.as_str().unwrap_or_default();
            Ok(Value::Array(
                s.split(sep).map(|p| Value::String(p.into())).collect(),
            ))
        }
        "join" => {
            let items = arg(0)?.as_array().cloned().unwrap_or_default();
            let sep = args.get(1).and_then(|v| v.as_str()).unwrap_or("");
            let parts: Vec<String> = items.iter().map(go_format).collect();
            let len = parts.iter().map(String::len).sum::<usize>()
                + sep.len().saturating_mul(parts.len().saturating_sub(1));
            check_len("the result of join", len)?;
            Ok(Value::String(parts.join(sep)))
        }
        "keys" => Ok(Value::Array(
            arg(0)?
                .as_object()
                .map(|o| o.keys().map(|k| Value::String(k.clone())).collect())
                .unwrap_or_default(),
        )),
        "values" => Ok(Value::Array(
            arg(0)?
                .as_object()
                .map(|o| o.values().cloned().collect())
                .unwrap_or_default(),
        )),
        "first" => Ok(arg(0)?
            .as_array()
            .and_then(|a| a.first().cloned())
            .unwrap_or(Value::Null)),
        "last" => Ok(arg(0)?
            .as_array()
            .and_then(|a| a.last().cloned())
            .unwrap_or(Value::Null)),
        "max" | "min" => {
            let items: Vec<Value> = if args.len() == 1 {
                arg(0)?.as_array().cloned().unwrap_or_default()
            } else {
                args.to_vec()
            };
            let mut best: Option<Value> = None;
            for i in items {
                let better = match &best {
                    None => true,
                    Some(b) => {
                        let (x, y) = (to_f64(&i)?, to_f64(b)?);
                        if name == "max" {
                            x > y
                        } else {
                            x < y
                        }
                    }
                };
                if better {
                    best = Some(i);
                }
            }
            Ok(best.unwrap_or(Value::Null))
        }
        "sum" => {
            let items = arg(0)?.as_array().cloned().unwrap_or_default();
            let mut acc = Value::from(0);
            for i in &items {
                acc = arith("+", &acc, i).ok_or("sum needs numbers")?;
            }
            Ok(acc)
        }
        "$slice" => {
            let lo = args.get(1).and_then(|v| v.as_i64());
            let hi = args.get(2).and_then(|v| v.as_i64());
            match arg(0)? {
                Value::Array(a) => {
                    let (l, h) = bounds(a.len(), lo, hi);
                    Ok(Value::Array(a[l..h].to_vec()))
                }
                Value::String(s) => {
                    let chars: Vec<char> = s.chars().collect();
                    let (l, h) = bounds(chars.len(), lo, hi);
                    Ok(Value::String(chars[l..h].iter().collect()))
                }
                other => Err(format!("cannot slice {}", go_format(other))),
            }
        }
        _ => Err(format!("unknown function {name}")),
    }
}

fn bounds(len: usize, lo: Option<i64>, hi: Option<i64>) -> (usize, usize) {
    let fix = |i: i64| -> usize {
        if i < 0 {
            (len as i64 + i).max(0) as usize
        } else {
            (i as usize).min(len)
        }
    };
    let l = lo.map(fix).unwrap_or(0);
    let h = hi.map(fix).unwrap_or(len);
    (l.min(h), h)
}
