//! The parser: tokens to the syntax tree ([`Ast`]), by precedence climbing, refusing trees
//! deeper than [`MAX_EXPR_DEPTH`].

use serde_json::Value;

use super::lexer::{lex, Tok};
use crate::error::EvalError;
use crate::value::MAX_EXPR_DEPTH;

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

pub(super) const PREDICATE_FUNCS: &[&str] = &[
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
