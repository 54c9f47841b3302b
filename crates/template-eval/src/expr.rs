//! An interpreter for the part of expr-lang (github.com/expr-lang/expr) that Argo workflows use.
//!
//! Values are JSON values. Integers stay integers through `+ - * %`; `/` always gives a float,
//! as in expr-lang. Unknown top-level names are [`EvalError::Unresolved`], the condition under
//! which Argo leaves a tag for later.

use serde_json::{Map, Number, Value};

use crate::error::EvalError;
use crate::sprig;
use crate::value::{
    approx_size, check_len, check_size, equal, float, go_format, num, to_json_bounded, too_big,
    truthy, MAX_VALUE_BYTES,
};

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
    /// How deep the parser's own recursion is: one level per sub-expression (brackets,
    /// parentheses, arguments), per operator precedence an operand is parsed at, and per
    /// prefix operator.
    nesting: usize,
}

pub use crate::value::MAX_EXPR_DEPTH;

/// Most items a `..` range may have.
pub const MAX_RANGE_ITEMS: usize = 100_000;

/// Most steps (nodes of the syntax tree visited, closure calls included) one evaluation may
/// take, so that nested `map`s over ranges cannot keep the engine busy for hours.
pub const MAX_EVAL_STEPS: usize = 1_000_000;

fn too_deep() -> String {
    format!("the expression nests deeper than {MAX_EXPR_DEPTH} levels (MAX_EXPR_DEPTH)")
}

/// A parsed subtree with its depth.
type Parsed = Result<(Ast, usize), String>;

/// `ast` with depth `depth`, unless that is deeper than [`MAX_EXPR_DEPTH`].
fn node(ast: Ast, depth: usize) -> Parsed {
    if depth > MAX_EXPR_DEPTH {
        Err(too_deep())
    } else {
        Ok((ast, depth))
    }
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
    /// One level deeper in the parser's recursion (left again by `leave`; an error ends the
    /// whole parse, so an unbalanced count after one does not matter).
    fn enter(&mut self) -> Result<(), String> {
        self.nesting += 1;
        if self.nesting > MAX_EXPR_DEPTH {
            return Err(too_deep());
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.nesting -= 1;
    }

    fn expression(&mut self) -> Parsed {
        self.enter()?;
        let (cond, dc) = self.binary(0)?;
        let out = if self.eat_op("?") {
            let (a, da) = self.expression()?;
            self.expect_op(":")?;
            let (b, db) = self.expression()?;
            node(
                Ast::Ternary(Box::new(cond), Box::new(a), Box::new(b)),
                1 + dc.max(da).max(db),
            )?
        } else {
            (cond, dc)
        };
        self.leave();
        Ok(out)
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

    fn binary(&mut self, min_prec: u8) -> Parsed {
        // Each precedence level an operand is parsed at is a level of recursion.
        self.enter()?;
        let (mut left, mut dl) = self.unary()?;
        while let Some((op, prec)) = self.binary_op() {
            if prec < min_prec {
                break;
            }
            self.bump();
            if op == "not in" {
                self.bump();
            }
            // `**` is right-associative: a chain of them recurses once per operator.
            let next_min = if op == "**" { prec } else { prec + 1 };
            let (right, dr) = self.binary(next_min)?;
            (left, dl) = node(
                Ast::Binary(op, Box::new(left), Box::new(right)),
                1 + dl.max(dr),
            )?;
        }
        self.leave();
        Ok((left, dl))
    }

    fn unary(&mut self) -> Parsed {
        let op = match self.peek() {
            Tok::Op("!") => "!",
            Tok::Ident(w) if w == "not" => "!",
            Tok::Op("-") => "-",
            Tok::Op("+") => "+",
            _ => return self.postfix(),
        };
        self.bump();
        self.enter()?;
        let (e, d) = self.unary()?;
        self.leave();
        if op == "+" {
            return Ok((e, d));
        }
        node(Ast::Unary(op, Box::new(e)), d + 1)
    }

    // The parser recurses once per level of nesting (expression, binary, unary, postfix,
    // primary, then expression again): each arm that needs many locals is a function of its
    // own, so that the frames on that path stay small even unoptimized.

    fn postfix(&mut self) -> Parsed {
        let mut e = self.primary()?;
        loop {
            e = if self.eat_op(".") || self.eat_op("?.") {
                self.member(e)?
            } else if self.eat_op("[") {
                self.index(e)?
            } else if matches!(self.peek(), Tok::Op("(")) {
                self.bump();
                self.call(e)?
            } else {
                return Ok(e);
            };
        }
    }

    /// `e.name` (after the `.`).
    #[inline(never)]
    fn member(&mut self, (e, de): (Ast, usize)) -> Parsed {
        match self.bump() {
            Tok::Ident(name) => node(
                Ast::Member(Box::new(e), Box::new(Ast::Lit(Value::String(name))), false),
                de + 1,
            ),
            other => Err(format!(
                "expected a name after '.', found {}",
                describe(&other)
            )),
        }
    }

    /// `e[i]`, `e[lo:hi]`, `e[:hi]`, `e[lo:]` (after the `[`).
    fn index(&mut self, e: (Ast, usize)) -> Parsed {
        let lo = if self.eat_op(":") {
            None
        } else {
            let idx = self.expression()?;
            if !self.eat_op(":") {
                self.expect_op("]")?;
                return node(
                    Ast::Member(Box::new(e.0), Box::new(idx.0), true),
                    1 + e.1.max(idx.1),
                );
            }
            Some(idx)
        };
        let hi = if matches!(self.peek(), Tok::Op("]")) {
            None
        } else {
            Some(self.expression()?)
        };
        self.expect_op("]")?;
        slice(e, lo, hi)
    }

    /// A call's arguments (after the `(`); a predicate function's second argument on is a
    /// closure.
    fn call(&mut self, (e, de): (Ast, usize)) -> Parsed {
        let predicate = matches!(&e, Ast::Ident(n) if PREDICATE_FUNCS.contains(&n.as_str()));
        let mut args = Vec::new();
        let mut depth = de;
        if !self.eat_op(")") {
            loop {
                if predicate && !args.is_empty() {
                    let braced = self.eat_op("{");
                    let (body, db) = self.expression()?;
                    if braced {
                        self.expect_op("}")?;
                    }
                    depth = depth.max(db + 1);
                    args.push(Ast::Closure(Box::new(body)));
                } else {
                    let (a, da) = self.expression()?;
                    depth = depth.max(da);
                    args.push(a);
                }
                if self.eat_op(")") {
                    break;
                }
                self.expect_op(",")?;
            }
        }
        node(Ast::Call(Box::new(e), args), depth + 1)
    }

    fn primary(&mut self) -> Parsed {
        match self.bump() {
            Tok::Num(v) => Ok((Ast::Lit(v), 1)),
            Tok::Str(s) => Ok((Ast::Lit(Value::String(s)), 1)),
            Tok::Hash => Ok(self.pointer()),
            Tok::Ident(name) => Ok((ident(name), 1)),
            Tok::Op("(") => {
                let e = self.expression()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("[") => self.array(),
            Tok::Op("{") => self.map(),
            other => Err(unexpected(&other)),
        }
    }

    /// `#` or `#name` (after the `#`).
    #[inline(never)]
    fn pointer(&mut self) -> (Ast, usize) {
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
                return (Ast::Pointer, 1);
            }
            self.bump();
            return (
                Ast::Member(
                    Box::new(Ast::Pointer),
                    Box::new(Ast::Lit(Value::String(name))),
                    false,
                ),
                2,
            );
        }
        (Ast::Pointer, 1)
    }

    /// A list literal (after the `[`).
    fn array(&mut self) -> Parsed {
        let mut items = Vec::new();
        let mut depth = 0;
        if !self.eat_op("]") {
            loop {
                let (item, d) = self.expression()?;
                depth = depth.max(d);
                items.push(item);
                if self.eat_op("]") {
                    break;
                }
                self.expect_op(",")?;
                if self.eat_op("]") {
                    break;
                }
            }
        }
        node(Ast::Array(items), depth + 1)
    }

    /// A map literal (after the `{`).
    fn map(&mut self) -> Parsed {
        let mut entries = Vec::new();
        let mut depth = 0;
        if !self.eat_op("}") {
            loop {
                let key = match self.bump() {
                    Tok::Op("(") => {
                        let (k, dk) = self.expression()?;
                        self.expect_op(")")?;
                        depth = depth.max(dk);
                        k
                    }
                    other => map_key(other)?,
                };
                self.expect_op(":")?;
                let (v, dv) = self.expression()?;
                depth = depth.max(dv);
                entries.push((key, v));
                if self.eat_op("}") {
                    break;
                }
                self.expect_op(",")?;
                if self.eat_op("}") {
                    break;
                }
            }
        }
        node(Ast::Map(entries), depth + 1)
    }
}

fn ident(name: String) -> Ast {
    match name.as_str() {
        "true" => Ast::Lit(Value::Bool(true)),
        "false" => Ast::Lit(Value::Bool(false)),
        "nil" => Ast::Lit(Value::Null),
        _ => Ast::Ident(name),
    }
}

#[inline(never)]
fn unexpected(t: &Tok) -> String {
    format!("unexpected {}", describe(t))
}

/// A literal map key: a name, a string or a number.
#[inline(never)]
fn map_key(t: Tok) -> Result<Ast, String> {
    match t {
        Tok::Ident(n) => Ok(Ast::Lit(Value::String(n))),
        Tok::Str(s) => Ok(Ast::Lit(Value::String(s))),
        Tok::Num(n) => Ok(Ast::Lit(Value::String(n.to_string()))),
        other => Err(format!("expected a map key, found {}", describe(&other))),
    }
}

fn slice(e: (Ast, usize), lo: Option<(Ast, usize)>, hi: Option<(Ast, usize)>) -> Parsed {
    let depth =
        e.1.max(lo.as_ref().map_or(1, |l| l.1))
            .max(hi.as_ref().map_or(1, |h| h.1));
    node(
        Ast::Call(
            Box::new(Ast::Ident("$slice".into())),
            vec![
                e.0,
                lo.map_or(Ast::Lit(Value::Null), |l| l.0),
                hi.map_or(Ast::Lit(Value::Null), |h| h.0),
            ],
        ),
        depth + 1,
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
    let mut p = Parser {
        toks,
        pos: 0,
        nesting: 0,
    };
    let (ast, _) = p.expression().map_err(syntax)?;
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

pub(crate) fn arith(op: &str, a: &Value, b: &Value) -> Option<Value> {
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
