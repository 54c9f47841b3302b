//! The evaluator: a syntax tree against the variables, with operators, closures over `#` and
//! the predicate functions, within the step and size limits.

use serde_json::{Map, Value};

use super::builtins::{arith, builtin};
use super::parser::{parse, Ast, PREDICATE_FUNCS};
use crate::error::EvalError;
use crate::sprig;
use crate::value::{
    approx_size, check_len, check_size, equal, float, go_format, num, too_big, truthy,
    MAX_VALUE_BYTES,
};

/// Most items a `..` range may have.
pub const MAX_RANGE_ITEMS: usize = 100_000;

/// Most steps (nodes of the syntax tree visited, closure calls included) one evaluation may
/// take, so that nested `map`s over ranges cannot keep the engine busy for hours.
pub const MAX_EVAL_STEPS: usize = 1_000_000;

/// Evaluate `src` against `env` (a JSON object of variables).
pub fn eval(src: &str, env: &Value) -> Result<Value, EvalError> {
    let ast = parse(src)?;
    let mut ctx = Ctx {
        env,
        pointers: Vec::new(),
        src,
        steps: 0,
        regex: None,
    };
    ctx.eval(&ast)
}

struct Ctx<'a> {
    env: &'a Value,
    pointers: Vec<Value>,
    src: &'a str,
    /// Steps taken so far (see [`MAX_EVAL_STEPS`]).
    steps: usize,
    /// The last regular expression compiled, so that `matches` in a closure compiles once.
    regex: Option<(String, regex::Regex)>,
}

/// Bytes a function may read or make per step of [`MAX_EVAL_STEPS`]: one evaluation's
/// functions handle at most 8 MB in all.
const BYTES_PER_STEP: usize = 8;

/// What compiling a regular expression costs, in steps.
const REGEX_STEPS: usize = 1_000;

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> EvalError {
        EvalError::Runtime {
            expr: self.src.to_string(),
            message: message.into(),
        }
    }

    /// Count `n` steps against [`MAX_EVAL_STEPS`].
    fn step(&mut self, n: usize) -> Result<(), EvalError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > MAX_EVAL_STEPS {
            return Err(self.err(format!(
                "evaluation takes more than {MAX_EVAL_STEPS} steps (MAX_EVAL_STEPS)"
            )));
        }
        Ok(())
    }

    /// `Ok(())` when a value this expression built is within [`MAX_VALUE_BYTES`].
    fn fits(&self, what: &str, v: &Value) -> Result<(), EvalError> {
        check_size(what, v).map_err(|m| self.err(m))
    }

    fn regex(&mut self, pattern: &str) -> Result<regex::Regex, EvalError> {
        if let Some((p, re)) = &self.regex {
            if p == pattern {
                return Ok(re.clone());
            }
        }
        self.step(REGEX_STEPS)?;
        let re = sprig::compile(pattern).map_err(|e| self.err(e))?;
        self.regex = Some((pattern.to_string(), re.clone()));
        Ok(re)
    }

    fn eval(&mut self, ast: &Ast) -> Result<Value, EvalError> {
        self.step(1)?;
        match ast {
            Ast::Lit(v) => Ok(v.clone()),
            Ast::Ident(name) => match self.env.get(name) {
                Some(v) => Ok(v.clone()),
                None => Err(EvalError::Unresolved(name.clone())),
            },
            Ast::Pointer => self
                .pointers
                .last()
                .cloned()
                .ok_or_else(|| self.err("'#' used outside a closure")),
            Ast::Member(obj, key, _) => {
                let o = self.eval(obj)?;
                let k = self.eval(key)?;
                self.index(&o, &k)
            }
            Ast::Unary(op, e) => {
                let v = self.eval(e)?;
                self.unary(op, v)
            }
            Ast::Ternary(c, a, b) => {
                let c = self.eval(c)?;
                match truthy(&c) {
                    Some(true) => self.eval(a),
                    Some(false) => self.eval(b),
                    None => Err(self.err("the condition of '?:' must be a boolean")),
                }
            }
            Ast::Array(items) => self.array(items),
            Ast::Map(entries) => self.map(entries),
            Ast::Closure(_) => Err(self.err("a closure can only be passed to a builtin")),
            Ast::Binary(op, l, r) => self.binary(op, l, r),
            Ast::Call(callee, args) => self.call(callee, args),
        }
    }

    // The evaluator recurses once per level of the syntax tree: the functions on that path
    // (`eval`, `array`, `map`, `binary`, `call`, `predicate_call`) keep small frames, and
    // the work with many locals happens in leaves (`#[inline(never)]`) called after the
    // operands are evaluated, so that the deepest expression fits a small stack even
    // unoptimized.

    fn array(&mut self, items: &[Ast]) -> Result<Value, EvalError> {
        let mut out = Vec::with_capacity(items.len());
        let mut size = 2;
        for i in items {
            let v = self.eval(i)?;
            size += approx_size(&v, MAX_VALUE_BYTES) + 1;
            if size > MAX_VALUE_BYTES {
                return Err(self.too_big("a list", size));
            }
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn map(&mut self, entries: &[(Ast, Ast)]) -> Result<Value, EvalError> {
        let mut m = Map::new();
        let mut size = 2;
        for (k, v) in entries {
            let k = match self.eval(k)? {
                Value::String(s) => s,
                other => go_format(&other),
            };
            let v = self.eval(v)?;
            size += k.len() + 4 + approx_size(&v, MAX_VALUE_BYTES);
            if size > MAX_VALUE_BYTES {
                return Err(self.too_big("a map", size));
            }
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }

    #[inline(never)]
    fn too_big(&self, what: &str, size: usize) -> EvalError {
        self.err(too_big(what, size))
    }

    #[inline(never)]
    fn unary(&self, op: &str, v: Value) -> Result<Value, EvalError> {
        match op {
            "!" => truthy(&v)
                .map(|b| Value::Bool(!b))
                .ok_or_else(|| self.err("'!' needs a boolean")),
            _ => match &v {
                Value::Number(n) if n.is_i64() => {
                    let i = n.as_i64().unwrap_or(0);
                    Ok(i.checked_neg()
                        .map(Value::from)
                        .unwrap_or_else(|| float(-(i as f64))))
                }
                Value::Number(n) => Ok(float(-n.as_f64().unwrap_or(0.0))),
                _ => Err(self.err("'-' needs a number")),
            },
        }
    }

    #[inline(never)]
    fn index(&self, o: &Value, k: &Value) -> Result<Value, EvalError> {
        Ok(match (o, k) {
            (Value::Object(m), Value::String(s)) => m.get(s).cloned().unwrap_or(Value::Null),
            (Value::Array(a), Value::Number(n)) => {
                let i = n
                    .as_i64()
                    .ok_or_else(|| self.err("an index must be an integer"))?;
                let i = if i < 0 { a.len() as i64 + i } else { i };
                a.get(i as usize).cloned().ok_or_else(|| {
                    self.err(format!(
                        "index out of range: {i} (array length is {})",
                        a.len()
                    ))
                })?
            }
            (Value::String(s), Value::Number(n)) => {
                let i = n.as_i64().unwrap_or(0);
                let chars: Vec<char> = s.chars().collect();
                let i = if i < 0 { chars.len() as i64 + i } else { i };
                chars
                    .get(i as usize)
                    .map(|c| Value::String(c.to_string()))
                    .ok_or_else(|| self.err("index out of range"))?
            }
            (Value::Null, _) => {
                return Err(self.err(format!("cannot fetch {} from nil", go_format(k))))
            }
            _ => {
                return Err(self.err(format!(
                    "cannot fetch {} from {}",
                    go_format(k),
                    go_format(o)
                )))
            }
        })
    }

    fn binary(&mut self, op: &str, l: &Ast, r: &Ast) -> Result<Value, EvalError> {
        match op {
            "&&" | "||" => {
                let a = self.eval(l)?;
                let a = self.boolean(op, &a)?;
                if (op == "&&" && !a) || (op == "||" && a) {
                    return Ok(Value::Bool(a));
                }
                let b = self.eval(r)?;
                return self.boolean(op, &b).map(Value::Bool);
            }
            "??" => {
                let a = match self.eval(l) {
                    Ok(v) => v,
                    Err(EvalError::Unresolved(_)) => Value::Null,
                    Err(e) => return Err(e),
                };
                return if a.is_null() { self.eval(r) } else { Ok(a) };
            }
            _ => {}
        }
        let a = self.eval(l)?;
        let b = self.eval(r)?;
        self.apply(op, a, b)
    }

    #[inline(never)]
    fn boolean(&self, op: &str, v: &Value) -> Result<bool, EvalError> {
        truthy(v).ok_or_else(|| self.err(format!("'{op}' needs booleans")))
    }

    /// A binary operator on its evaluated operands.
    #[inline(never)]
    fn apply(&mut self, op: &str, a: Value, b: Value) -> Result<Value, EvalError> {
        let cmp = |ord: Option<std::cmp::Ordering>| -> Result<Value, EvalError> {
            let ord = ord.ok_or_else(|| {
                self.err(format!(
                    "invalid operation: {} {op} {}",
                    go_format(&a),
                    go_format(&b)
                ))
            })?;
            Ok(Value::Bool(match op {
                "<" => ord.is_lt(),
                ">" => ord.is_gt(),
                "<=" => ord.is_le(),
                _ => ord.is_ge(),
            }))
        };
        match op {
            "==" => Ok(Value::Bool(equal(&a, &b))),
            "!=" => Ok(Value::Bool(!equal(&a, &b))),
            "<" | ">" | "<=" | ">=" => match (&a, &b) {
                (Value::String(x), Value::String(y)) => cmp(Some(x.cmp(y))),
                _ => cmp(num(&a).zip(num(&b)).and_then(|(x, y)| x.partial_cmp(&y))),
            },
            "in" | "not in" => {
                let found = match &b {
                    Value::Array(items) => items.iter().any(|i| equal(i, &a)),
                    Value::Object(m) => a.as_str().is_some_and(|k| m.contains_key(k)),
                    Value::Null => false,
                    _ => return Err(self.err("'in' needs a list or a map on its right")),
                };
                Ok(Value::Bool(found == (op == "in")))
            }
            "contains" | "startsWith" | "endsWith" | "matches" => {
                let (Value::String(x), Value::String(y)) = (&a, &b) else {
                    return Err(self.err(format!("'{op}' needs strings")));
                };
                Ok(Value::Bool(match op {
                    "contains" => x.contains(y.as_str()),
                    "startsWith" => x.starts_with(y.as_str()),
                    "endsWith" => x.ends_with(y.as_str()),
                    _ => self.regex(y)?.is_match(x),
                }))
            }
            ".." => {
                let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) else {
                    return Err(self.err("'..' needs integers"));
                };
                let items = (i128::from(y) - i128::from(x) + 1).max(0);
                if items > MAX_RANGE_ITEMS as i128 {
                    return Err(self.err(format!(
                        "{x}..{y} has {items} items, more than the limit of {MAX_RANGE_ITEMS} (MAX_RANGE_ITEMS)"
                    )));
                }
                self.step(items as usize)?;
                Ok(Value::Array((x..=y).map(Value::from).collect()))
            }
            "+" if a.is_string() || b.is_string() => match (&a, &b) {
                (Value::String(x), Value::String(y)) => {
                    check_len("the string", x.len() + y.len()).map_err(|m| self.err(m))?;
                    Ok(Value::String(format!("{x}{y}")))
                }
                _ => Err(self.err(format!(
                    "invalid operation: {} + {}",
                    go_format(&a),
                    go_format(&b)
                ))),
            },
            "+" if a.is_array() && b.is_array() => {
                let size = approx_size(&a, MAX_VALUE_BYTES) + approx_size(&b, MAX_VALUE_BYTES);
                if size > MAX_VALUE_BYTES {
                    return Err(self.err(too_big("the list", size)));
                }
                let mut v = a.as_array().cloned().unwrap_or_default();
                v.extend(b.as_array().cloned().unwrap_or_default());
                Ok(Value::Array(v))
            }
            "+" | "-" | "*" | "/" | "%" | "**" => arith(op, &a, &b).ok_or_else(|| {
                self.err(format!(
                    "invalid operation: {} {op} {}",
                    go_format(&a),
                    go_format(&b)
                ))
            }),
            _ => Err(self.err(format!("unknown operator {op}"))),
        }
    }

    fn call(&mut self, callee: &Ast, args: &[Ast]) -> Result<Value, EvalError> {
        let name = match callee {
            Ast::Ident(n) => n.clone(),
            Ast::Member(obj, key, _) => {
                if let (Ast::Ident(o), Ast::Lit(Value::String(k))) = (&**obj, &**key) {
                    if o == "sprig" {
                        let vals = self.args(args)?;
                        return self.sprig(k, &vals);
                    }
                }
                return Err(self.err("only builtins and sprig functions can be called"));
            }
            _ => return Err(self.err("only builtins and sprig functions can be called")),
        };
        if PREDICATE_FUNCS.contains(&name.as_str()) {
            return self.predicate_call(&name, args);
        }
        let vals = self.args(args)?;
        self.builtin(&name, &vals)
    }

    fn args(&mut self, args: &[Ast]) -> Result<Vec<Value>, EvalError> {
        let mut vals = Vec::with_capacity(args.len());
        for a in args {
            vals.push(self.eval(a)?);
        }
        Ok(vals)
    }

    /// Charge a function's work: the bytes it reads and makes, [`BYTES_PER_STEP`] a step, so
    /// that a loop of string functions over large values is bounded in time, not only in
    /// steps of the syntax tree.
    fn charge(&mut self, vals: &[Value]) -> Result<(), EvalError> {
        let bytes: usize = vals
            .iter()
            .map(|v| crate::value::approx_size(v, MAX_VALUE_BYTES))
            .sum();
        self.step(bytes / BYTES_PER_STEP)
    }

    #[inline(never)]
    fn sprig(&mut self, name: &str, vals: &[Value]) -> Result<Value, EvalError> {
        if name.starts_with("regex") {
            self.step(REGEX_STEPS)?;
        }
        self.charge(vals)?;
        let v = sprig::call(name, vals).map_err(|m| self.err(m))?;
        self.fits(&format!("the result of sprig.{name}"), &v)?;
        self.charge(std::slice::from_ref(&v))?;
        Ok(v)
    }

    #[inline(never)]
    fn builtin(&mut self, name: &str, vals: &[Value]) -> Result<Value, EvalError> {
        self.charge(vals)?;
        let v = builtin(name, vals).map_err(|m| self.err(m))?;
        self.fits(&format!("the result of {name}"), &v)?;
        self.charge(std::slice::from_ref(&v))?;
        Ok(v)
    }

    fn predicate_call(&mut self, name: &str, args: &[Ast]) -> Result<Value, EvalError> {
        let (Some(list), Some(Ast::Closure(body))) = (args.first(), args.get(1)) else {
            if name == "sum" && args.len() == 1 {
                let v = self.eval(&args[0])?;
                return builtin("sum", &[v]).map_err(|m| self.err(m));
            }
            return Err(self.err(format!("{name} needs a list and a predicate")));
        };
        let list = self.eval(list)?;
        let items = match list {
            Value::Array(a) => a,
            Value::Null => Vec::new(),
            other => return Err(self.not_a_list(name, &other)),
        };
        let mut results = Vec::with_capacity(items.len());
        let mut size = 2;
        for item in &items {
            self.pointers.push(item.clone());
            let r = self.eval(body);
            self.pointers.pop();
            let r = r?;
            // Every function keeps all the results until it is done: bound them together.
            size += approx_size(&r, MAX_VALUE_BYTES) + 1;
            if size > MAX_VALUE_BYTES {
                return Err(self.too_big(&format!("the results of {name}"), size));
            }
            results.push(r);
        }
        self.predicate_finish(name, items, results)
    }

    #[inline(never)]
    fn not_a_list(&self, name: &str, v: &Value) -> EvalError {
        self.err(format!("{name} needs a list, found {}", go_format(v)))
    }

    /// A predicate function's value from its items and the closure's results for them.
    #[inline(never)]
    fn predicate_finish(
        &self,
        name: &str,
        items: Vec<Value>,
        results: Vec<Value>,
    ) -> Result<Value, EvalError> {
        let as_bool = |v: &Value| {
            truthy(v)
                .ok_or_else(|| self.err(format!("the predicate of {name} must return a boolean")))
        };
        Ok(match name {
            "map" => Value::Array(results),
            "filter" => {
                let mut out = Vec::new();
                for (item, r) in items.into_iter().zip(&results) {
                    if as_bool(r)? {
                        out.push(item);
                    }
                }
                Value::Array(out)
            }
            "all" => Value::Bool(
                results
                    .iter()
                    .map(as_bool)
                    .collect::<Result<Vec<_>, _>>()?
                    .iter()
                    .all(|b| *b),
            ),
            "any" => Value::Bool(
                results
                    .iter()
                    .map(as_bool)
                    .collect::<Result<Vec<_>, _>>()?
                    .iter()
                    .any(|b| *b),
            ),
            "none" => Value::Bool(
                !results
                    .iter()
                    .map(as_bool)
                    .collect::<Result<Vec<_>, _>>()?
                    .iter()
                    .any(|b| *b),
            ),
            "one" => Value::Bool(
                results
                    .iter()
                    .map(as_bool)
                    .collect::<Result<Vec<_>, _>>()?
                    .iter()
                    .filter(|b| **b)
                    .count()
                    == 1,
            ),
            "count" => Value::from(
                results
                    .iter()
                    .map(as_bool)
                    .collect::<Result<Vec<_>, _>>()?
                    .iter()
                    .filter(|b| **b)
                    .count() as i64,
            ),
            "sum" => builtin("sum", &[Value::Array(results)]).map_err(|m| self.err(m))?,
            "find" | "findLast" | "findIndex" | "findLastIndex" => {
                let flags = results.iter().map(as_bool).collect::<Result<Vec<_>, _>>()?;
                let pos = if name.contains("Last") {
                    flags.iter().rposition(|b| *b)
                } else {
                    flags.iter().position(|b| *b)
                };
                match (name.ends_with("Index"), pos) {
                    (true, Some(p)) => Value::from(p as i64),
                    (true, None) => Value::from(-1),
                    (false, Some(p)) => items[p].clone(),
                    (false, None) => Value::Null,
                }
            }
            "sortBy" => {
                let mut pairs: Vec<(Value, Value)> = results.into_iter().zip(items).collect();
                pairs.sort_by(|a, b| match (&a.0, &b.0) {
                    (Value::String(x), Value::String(y)) => x.cmp(y),
                    _ => num(&a.0)
                        .partial_cmp(&num(&b.0))
                        .unwrap_or(std::cmp::Ordering::Equal),
                });
                Value::Array(pairs.into_iter().map(|p| p.1).collect())
            }
            _ => {
                let mut groups = Map::new();
                for (k, item) in results.iter().zip(items) {
                    let key = go_format(k);
                    if let Some(a) = groups
                        .entry(key)
                        .or_insert_with(|| Value::Array(Vec::new()))
                        .as_array_mut()
                    {
                        a.push(item);
                    }
                }
                Value::Object(groups)
            }
        })
    }
}
