//! Go's view of the JSON values templates and expressions produce: `%v` formatting, and the
//! number, truth and equality rules expr-lang and govaluate share. A leaf of the crate.

use serde_json::{Number, Value};

/// Go's `fmt.Sprintf("%v", v)` for the values an expression can produce.
pub fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format_number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(go_format).collect();
            format!("[{}]", parts.join(" "))
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", k, go_format(&o[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

pub(crate) fn format_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{}", f as i64)
    } else {
        let s = format!("{f}");
        if f.abs() >= 1e21 {
            format!("{f:e}")
        } else {
            s
        }
    }
}

pub(crate) fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    }
}

pub(crate) fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

pub(crate) fn float(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// expr-lang's equality: numbers compare by value whatever their type.
pub(crate) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        _ => a == b,
    }
}

/// The deepest an expression (expr-lang or govaluate) may nest: levels of its syntax tree
/// (`a.b.c` is three, `!!x` is three) and of the parser's recursion (a level per bracket,
/// parenthesis or argument, per operator precedence an operand is parsed at, and per prefix
/// operator: `(1 + (1 + x))` takes about three a parenthesis). A deeper expression is a
/// syntax error naming this limit, so that neither parsing, evaluating nor dropping an
/// expression can exhaust the stack.
pub const MAX_EXPR_DEPTH: usize = 100;

/// The largest string, list or map (measured as its JSON text) that an expression or a sprig
/// function may build. A bigger one is an evaluation error naming this limit, so that no
/// expression can make the engine hold gigabytes (`sprig.repeat`, `map` over a range, ...).
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// About how many bytes `v` takes as JSON text; counting stops once past `limit` (so the cost
/// is at most proportional to `limit`, whatever the value).
pub(crate) fn approx_size(v: &Value, limit: usize) -> usize {
    let mut total = 0usize;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total = total.saturating_add(match v {
            Value::Null => 4,
            Value::Bool(_) => 5,
            Value::Number(n) => match n.as_i64() {
                Some(i) => i.unsigned_abs().checked_ilog10().unwrap_or(0) as usize + 2,
                None => 8,
            },
            Value::String(s) => s.len() + 2,
            Value::Array(a) => {
                stack.extend(a.iter());
                2 + a.len()
            }
            Value::Object(o) => {
                for (k, x) in o {
                    total = total.saturating_add(k.len() + 4);
                    stack.push(x);
                }
                2
            }
        });
        if total > limit {
            return total;
        }
    }
    total
}

/// The error for a built value over [`MAX_VALUE_BYTES`].
pub(crate) fn too_big(what: &str, size: usize) -> String {
    format!(
        "{what} would be {size} bytes or more, more than the limit of {MAX_VALUE_BYTES} bytes (MAX_VALUE_BYTES)"
    )
}

/// `Ok(())` when `v` is within [`MAX_VALUE_BYTES`].
pub(crate) fn check_size(what: &str, v: &Value) -> Result<(), String> {
    let n = approx_size(v, MAX_VALUE_BYTES);
    if n > MAX_VALUE_BYTES {
        Err(too_big(what, n))
    } else {
        Ok(())
    }
}

/// A string of `len` bytes is within [`MAX_VALUE_BYTES`].
pub(crate) fn check_len(what: &str, len: usize) -> Result<(), String> {
    if len > MAX_VALUE_BYTES {
        Err(too_big(what, len))
    } else {
        Ok(())
    }
}

/// A `fmt::Write`/`io::Write` sink that refuses to grow past [`MAX_VALUE_BYTES`] (for JSON
/// serialization, whose output can be much larger than the value: escapes, indentation).
pub(crate) struct Bounded(pub(crate) Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_VALUE_BYTES {
            return Err(std::io::Error::other("too big"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `v` as JSON text (pretty or not), or an error naming [`MAX_VALUE_BYTES`].
pub(crate) fn to_json_bounded(v: &Value, pretty: bool) -> Result<String, String> {
    let mut w = Bounded(Vec::new());
    let r = if pretty {
        serde_json::to_writer_pretty(&mut w, v)
    } else {
        serde_json::to_writer(&mut w, v)
    };
    match r {
        Ok(()) => String::from_utf8(w.0).map_err(|e| e.to_string()),
        Err(e) if e.is_io() => Err(too_big("the JSON text", MAX_VALUE_BYTES + 1)),
        Err(e) => Err(e.to_string()),
    }
}
