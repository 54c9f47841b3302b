//! An interpreter for the part of expr-lang (github.com/expr-lang/expr) that Argo workflows use.
//!
//! Values are JSON values. Integers stay integers through `+ - * %`; `/` always gives a float,
//! as in expr-lang. Unknown top-level names are [`EvalError::Unresolved`], the condition under
//! which Argo leaves a tag for later.

use serde_json::{Map, Number, Value};

use crate::error::EvalError;
use crate::sprig;
use crate::value::{equal, float, go_format, num, truthy};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(Value),
    Str(String),
    Ident(String),
    Op(&'static str),
    Hash,
    Eof,
}

const OPS: &[&str] = &[
    "??", "?.", "...", "..", "==", "!=", "<=", ">=", "&&", "||", "**", "(", ")", "[", "]", "{",
    "}", ",", ".", ":", "?", "<", ">", "+", "-", "*", "/", "%", "!", "^", "|",
];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            let mut is_float = false;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '_'
                    || (chars[i] == '.'
                        && !is_float
                        && i + 1 < chars.len()
                        && chars[i + 1].is_ascii_digit()))
            {
                if chars[i] == '.' {
                    is_float = true;
                }
                if (chars[i] == 'e' || chars[i] == 'E')
                    && i + 1 < chars.len()
                    && (chars[i + 1] == '-' || chars[i + 1] == '+')
                    && !chars[start..i].contains(&'x')
                {
                    is_float = true;
                    i += 1;
                }
                i += 1;
            }
            let text: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let v = if let Some(h) = text.strip_prefix("0x") {
                i64::from_str_radix(h, 16)
                    .map(Value::from)
                    .map_err(|e| e.to_string())?
            } else if is_float || text.contains(['e', 'E']) {
                let f: f64 = text.parse().map_err(|_| format!("invalid number {text}"))?;
                Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or("invalid number")?
            } else {
                text.parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| format!("invalid number {text}"))?
            };
            out.push(Tok::Num(v));
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == '"' || c == '\'' || c == '`' {
            let quote = c;
            i += 1;
            let mut s = String::new();
            loop {
                if i >= chars.len() {
                    return Err("unterminated string literal".into());
                }
                let ch = chars[i];
                if ch == quote {
                    i += 1;
                    break;
                }
                if ch == '\\' && quote != '`' && i + 1 < chars.len() {
                    i += 1;
                    s.push(match chars[i] {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                    i += 1;
                    continue;
                }
                s.push(ch);
                i += 1;
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c == '#' {
            out.push(Tok::Hash);
            i += 1;
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
        match OPS.iter().find(|op| rest.starts_with(**op)) {
            Some(op) => {
                out.push(Tok::Op(op));
                i += op.chars().count();
            }
            None => return Err(format!("unexpected character '{c}'")),
        }
    }
    out.push(Tok::Eof);
    Ok(out)
}

/// The parsed form of an expression.
#[derive(Debug, Clone)]
pub enum Ast {
    Lit(Value),
    Ident(String),
    /// `#` (the closure's element) or `#name`.
    Pointer,
    Member(Box<Ast>, Box<Ast>, bool),
    Call(Box<Ast>, Vec<Ast>),
    Closure(Box<Ast>),
    Unary(&'static str, Box<Ast>),
    Binary(String, Box<Ast>, Box<Ast>),
    Ternary(Box<Ast>, Box<Ast>, Box<Ast>),
    Array(Vec<Ast>),
    Map(Vec<(Ast, Ast)>),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

const PREDICATE_FUNCS: &[&str] = &[
    "filter",
    "map",
    "all",
    "any",
    "none",
    "one",
    "count",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "sortBy",
    "groupBy",
    "sum",
];

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos]
    }
    fn bump(&mut self) -> Tok {
        let t = self.toks[self.pos].clone();
        if self.pos < self.toks.len() - 1 {
            self.pos += 1;
        }
        t
    }
    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Tok::Op(o) if *o == op) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect_op(&mut self, op: &str) -> Result<(), String> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(format!("expected '{op}', found {}", describe(self.peek())))
        }
    }

    fn expression(&mut self) -> Result<Ast, String> {
        let cond = self.binary(0)?;
        if self.eat_op("?") {
            let a = self.expression()?;
            self.expect_op(":")?;
            let b = self.expression()?;
            return Ok(Ast::Ternary(Box::new(cond), Box::new(a), Box::new(b)));
        }
        Ok(cond)
    }

    fn binary_op(&self) -> Option<(String, u8)> {
        let (op, prec) = match self.peek() {
            Tok::Op("??") => ("??", 1),
            Tok::Op("||") => ("||", 2),
            Tok::Ident(w) if w == "or" => ("||", 2),
            Tok::Op("&&") => ("&&", 3),
            Tok::Ident(w) if w == "and" => ("&&", 3),
            Tok::Op("==") => ("==", 4),
            Tok::Op("!=") => ("!=", 4),
            Tok::Op("<") => ("<", 4),
            Tok::Op(">") => (">", 4),
            Tok::Op("<=") => ("<=", 4),
            Tok::Op(">=") => (">=", 4),
            Tok::Ident(w) if w == "in" => ("in", 4),
            Tok::Ident(w) if w == "matches" => ("matches", 4),
            Tok::Ident(w) if w == "contains" => ("contains", 4),
            Tok::Ident(w) if w == "startsWith" => ("startsWith", 4),
            Tok::Ident(w) if w == "endsWith" => ("endsWith", 4),
            Tok::Ident(w) if w == "not" => {
                if matches!(self.toks.get(self.pos + 1), Some(Tok::Ident(n)) if n == "in") {
                    ("not in", 4)
                } else {
                    return None;
                }
            }
            Tok::Op("..") => ("..", 5),
            Tok::Op("+") => ("+", 6),
            Tok::Op("-") => ("-", 6),
            Tok::Op("*") => ("*", 7),
            Tok::Op("/") => ("/", 7),
            Tok::Op("%") => ("%", 7),
            Tok::Op("**") | Tok::Op("^") => ("**", 9),
            _ => return None,
        };
        Some((op.to_string(), prec))
    }

    fn binary(&mut self, min_prec: u8) -> Result<Ast, String> {
        let mut left = self.unary()?;
        while let Some((op, prec)) = self.binary_op() {
            if prec < min_prec {
                break;
            }
            self.bump();
            if op == "not in" {
                self.bump();
            }
            let next_min = if op == "**" { prec } else { prec + 1 };
            let right = self.binary(next_min)?;
            left = Ast::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Ast, String> {
        match self.peek() {
            Tok::Op("!") => {
                self.bump();
                Ok(Ast::Unary("!", Box::new(self.unary()?)))
            }
            Tok::Ident(w) if w == "not" => {
                self.bump();
                Ok(Ast::Unary("!", Box::new(self.unary()?)))
            }
            Tok::Op("-") => {
                self.bump();
                Ok(Ast::Unary("-", Box::new(self.unary()?)))
            }
            Tok::Op("+") => {
                self.bump();
                self.unary()
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Ast, String> {
        let mut e = self.primary()?;
        loop {
            if self.eat_op(".") || self.eat_op("?.") {
                match self.bump() {
                    Tok::Ident(name) => {
                        e = Ast::Member(Box::new(e), Box::new(Ast::Lit(Value::String(name))), false)
                    }
                    other => {
                        return Err(format!(
                            "expected a name after '.', found {}",
                            describe(&other)
                        ))
                    }
                }
            } else if self.eat_op("[") {
                if self.eat_op(":") {
                    let hi = if matches!(self.peek(), Tok::Op("]")) {
                        None
                    } else {
                        Some(self.expression()?)
                    };
                    self.expect_op("]")?;
                    e = slice(e, None, hi);
                    continue;
                }
                let idx = self.expression()?;
                if self.eat_op(":") {
                    let hi = if matches!(self.peek(), Tok::Op("]")) {
                        None
                    } else {
                        Some(self.expression()?)
                    };
                    self.expect_op("]")?;
                    e = slice(e, Some(idx), hi);
                    continue;
                }
                self.expect_op("]")?;
                e = Ast::Member(Box::new(e), Box::new(idx), true);
            } else if matches!(self.peek(), Tok::Op("(")) {
                self.bump();
                let callee_name = match &e {
                    Ast::Ident(n) => Some(n.clone()),
                    _ => None,
                };
                let mut args = Vec::new();
                if !self.eat_op(")") {
                    loop {
                        let is_predicate = callee_name
                            .as_deref()
                            .is_some_and(|n| PREDICATE_FUNCS.contains(&n))
                            && !args.is_empty();
                        if is_predicate {
                            if self.eat_op("{") {
                                let body = self.expression()?;
                                self.expect_op("}")?;
                                args.push(Ast::Closure(Box::new(body)));
                            } else {
                                args.push(Ast::Closure(Box::new(self.expression()?)));
                            }
                        } else {
                            args.push(self.expression()?);
                        }
                        if self.eat_op(")") {
                            break;
                        }
                        self.expect_op(",")?;
                    }
                }
                e = Ast::Call(Box::new(e), args);
            } else {
                return Ok(e);
            }
        }
    }

    fn primary(&mut self) -> Result<Ast, String> {
        match self.bump() {
            Tok::Num(v) => Ok(Ast::Lit(v)),
            Tok::Str(s) => Ok(Ast::Lit(Value::String(s))),
            Tok::Hash => {
                if let Tok::Ident(name) = self.peek().clone() {
                    if [
                        "endsWith",
                        "startsWith",
                        "contains",
                        "matches",
                        "in",
                        "and",
                        "or",
                        "not",
                    ]
                    .contains(&name.as_str())
                    {
                        return Ok(Ast::Pointer);
                    }
                    self.bump();
                    return Ok(Ast::Member(
                        Box::new(Ast::Pointer),
                        Box::new(Ast::Lit(Value::String(name))),
                        false,
                    ));
                }
                Ok(Ast::Pointer)
            }
            Tok::Ident(name) => Ok(match name.as_str() {
                "true" => Ast::Lit(Value::Bool(true)),
                "false" => Ast::Lit(Value::Bool(false)),
                "nil" => Ast::Lit(Value::Null),
                _ => Ast::Ident(name),
            }),
            Tok::Op("(") => {
                let e = self.expression()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                if !self.eat_op("]") {
                    loop {
                        items.push(self.expression()?);
                        if self.eat_op("]") {
                            break;
                        }
                        self.expect_op(",")?;
                        if self.eat_op("]") {
                            break;
                        }
                    }
                }
                Ok(Ast::Array(items))
            }
            Tok::Op("{") => {
                let mut entries = Vec::new();
                if !self.eat_op("}") {
                    loop {
                        let key = match self.bump() {
                            Tok::Ident(n) => Ast::Lit(Value::String(n)),
                            Tok::Str(s) => Ast::Lit(Value::String(s)),
                            Tok::Num(n) => Ast::Lit(Value::String(n.to_string())),
                            Tok::Op("(") => {
                                let k = self.expression()?;
                                self.expect_op(")")?;
                                k
                            }
                            other => {
                                return Err(format!(
                                    "expected a map key, found {}",
                                    describe(&other)
                                ))
                            }
                        };
                        self.expect_op(":")?;
                        entries.push((key, self.expression()?));
                        if self.eat_op("}") {
                            break;
                        }
                        self.expect_op(",")?;
                        if self.eat_op("}") {
                            break;
                        }
                    }
                }
                Ok(Ast::Map(entries))
            }
            other => Err(format!("unexpected {}", describe(&other))),
        }
    }
}

fn slice(e: Ast, lo: Option<Ast>, hi: Option<Ast>) -> Ast {
    Ast::Call(
        Box::new(Ast::Ident("$slice".into())),
        vec![
            e,
            lo.unwrap_or(Ast::Lit(Value::Null)),
            hi.unwrap_or(Ast::Lit(Value::Null)),
        ],
    )
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Ident(i) => format!("'{i}'"),
        Tok::Op(o) => format!("'{o}'"),
        Tok::Hash => "'#'".into(),
        Tok::Eof => "end of expression".into(),
    }
}

/// Parse an expression.
pub fn parse(src: &str) -> Result<Ast, EvalError> {
    let syntax = |message: String| EvalError::Syntax {
        expr: src.to_string(),
        message,
    };
    let toks = lex(src).map_err(syntax)?;
    let mut p = Parser { toks, pos: 0 };
    let ast = p.expression().map_err(syntax)?;
    if !matches!(p.peek(), Tok::Eof) {
        return Err(syntax(format!(
            "unexpected {} after the expression",
            describe(p.peek())
        )));
    }
    Ok(ast)
}

/// The identifiers of an expression joined with their member names (`workflow.status`), used
/// to know whether an expression mentions a variable that is not known yet.
pub fn identifiers(src: &str) -> Result<Vec<String>, EvalError> {
    let toks = lex(src).map_err(|m| EvalError::Syntax {
        expr: src.into(),
        message: m,
    })?;
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if let Tok::Ident(name) = t {
            out.push(name.clone());
            if let (Some(Tok::Op(".")), Some(Tok::Ident(m))) = (toks.get(i + 1), toks.get(i + 2)) {
                out.push(format!("{name}.{m}"));
            }
        }
    }
    Ok(out)
}

/// Evaluate `src` against `env` (a JSON object of variables).
pub fn eval(src: &str, env: &Value) -> Result<Value, EvalError> {
    let ast = parse(src)?;
    let mut ctx = Ctx {
        env,
        pointers: Vec::new(),
        src,
    };
    ctx.eval(&ast)
}

struct Ctx<'a> {
    env: &'a Value,
    pointers: Vec<Value>,
    src: &'a str,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> EvalError {
        EvalError::Runtime {
            expr: self.src.to_string(),
            message: message.into(),
        }
    }

    fn eval(&mut self, ast: &Ast) -> Result<Value, EvalError> {
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
                match *op {
                    "!" => truthy(&v)
                        .map(|b| Value::Bool(!b))
                        .ok_or_else(|| self.err("'!' needs a boolean")),
                    _ => match &v {
                        Value::Number(n) if n.is_i64() => Ok(Value::from(-n.as_i64().unwrap_or(0))),
                        Value::Number(n) => Ok(float(-n.as_f64().unwrap_or(0.0))),
                        _ => Err(self.err("'-' needs a number")),
                    },
                }
            }
            Ast::Ternary(c, a, b) => {
                let c = self.eval(c)?;
                match truthy(&c) {
                    Some(true) => self.eval(a),
                    Some(false) => self.eval(b),
                    None => Err(self.err("the condition of '?:' must be a boolean")),
                }
            }
            Ast::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(|i| self.eval(i))
                    .collect::<Result<_, _>>()?,
            )),
            Ast::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    let k = self.eval(k)?;
                    let k = match k {
                        Value::String(s) => s,
                        other => go_format(&other),
                    };
                    m.insert(k, self.eval(v)?);
                }
                Ok(Value::Object(m))
            }
            Ast::Closure(_) => Err(self.err("a closure can only be passed to a builtin")),
            Ast::Binary(op, l, r) => self.binary(op, l, r),
            Ast::Call(callee, args) => self.call(callee, args),
        }
    }

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
                let a = truthy(&a).ok_or_else(|| self.err(format!("'{op}' needs booleans")))?;
                if (op == "&&" && !a) || (op == "||" && a) {
                    return Ok(Value::Bool(a));
                }
                let b = self.eval(r)?;
                return truthy(&b)
                    .map(Value::Bool)
                    .ok_or_else(|| self.err(format!("'{op}' needs booleans")));
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
                    _ => regex::Regex::new(y)
                        .map_err(|e| self.err(e.to_string()))?
                        .is_match(x),
                }))
            }
            ".." => {
                let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) else {
                    return Err(self.err("'..' needs integers"));
                };
                Ok(Value::Array((x..=y).map(Value::from).collect()))
            }
            "+" if a.is_string() || b.is_string() => match (&a, &b) {
                (Value::String(x), Value::String(y)) => Ok(Value::String(format!("{x}{y}"))),
                _ => Err(self.err(format!(
                    "invalid operation: {} + {}",
                    go_format(&a),
                    go_format(&b)
                ))),
            },
            "+" if a.is_array() && b.is_array() => {
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
                        let vals = args
                            .iter()
                            .map(|a| self.eval(a))
                            .collect::<Result<Vec<_>, _>>()?;
                        return sprig::call(k, &vals).map_err(|m| self.err(m));
                    }
                }
                return Err(self.err("only builtins and sprig functions can be called"));
            }
            _ => return Err(self.err("only builtins and sprig functions can be called")),
        };
        if PREDICATE_FUNCS.contains(&name.as_str()) {
            return self.predicate_call(&name, args);
        }
        let vals = args
            .iter()
            .map(|a| self.eval(a))
            .collect::<Result<Vec<_>, _>>()?;
        builtin(&name, &vals).map_err(|m| self.err(m))
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
            other => {
                return Err(self.err(format!("{name} needs a list, found {}", go_format(&other))))
            }
        };
        let mut results = Vec::with_capacity(items.len());
        for item in &items {
            self.pointers.push(item.clone());
            let r = self.eval(body);
            self.pointers.pop();
            results.push(r?);
        }
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

pub(crate) fn arith(op: &str, a: &Value, b: &Value) -> Option<Value> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return match op {
            "+" => x.checked_add(y).map(Value::from),
            "-" => x.checked_sub(y).map(Value::from),
            "*" => x.checked_mul(y).map(Value::from),
            "%" => (y != 0).then(|| Value::from(x % y)),
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
            if y == 0.0 {
                return None;
            }
            (x as i64 % y as i64) as f64
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

fn builtin(name: &str, args: &[Value]) -> Result<Value, String> {
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
        "toJson" | "toJSON" => serde_json::to_string(arg(0)?)
            .map(Value::String)
            .map_err(|e| e.to_string()),
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
                Some(i) => Ok(Value::from(i.abs())),
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
            Ok(Value::String(
                items.iter().map(go_format).collect::<Vec<_>>().join(sep),
            ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
