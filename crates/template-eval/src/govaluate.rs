//! govaluate (github.com/Knetic/govaluate) as Argo uses it for `when`: every bare word is a
//! string (Argo turns variable tokens into string tokens before evaluating), numbers are
//! float64, `==` is deep equality without conversion, `<`/`>` compare two numbers or two
//! strings, `=~`/`!~` match a Go (RE2) regular expression.

use serde_json::Value;

use crate::error::EvalError;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Bool(bool),
    Op(&'static str),
    Eof,
}

const OPS: &[&str] = &[
    "**", "==", "!=", ">=", "<=", "=~", "!~", "&&", "||", "??", ">>", "<<", "(", ")", "[", "]",
    ",", "?", ":", ">", "<", "+", "-", "*", "/", "%", "!", "&", "|", "^", "~",
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
            if c == '0' && chars.get(i + 1) == Some(&'x') {
                i += 2;
                while i < chars.len() && chars[i].is_ascii_hexdigit() {
                    i += 1;
                }
                let text: String = chars[start + 2..i].iter().collect();
                let v = i64::from_str_radix(&text, 16)
                    .map_err(|_| format!("invalid hex number 0x{text}"))?;
                out.push(Tok::Num(v as f64));
                continue;
            }
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let v: f64 = text
                .parse()
                .map_err(|_| format!("invalid number '{text}'"))?;
            out.push(Tok::Num(v));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "true" => Tok::Bool(true),
                "false" => Tok::Bool(false),
                "in" | "IN" => Tok::Op("in"),
                _ => Tok::Str(word),
            });
            continue;
        }
        if c == '\'' || c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err("unclosed string literal".into());
                };
                i += 1;
                if ch == c {
                    break;
                }
                if ch == '\\' {
                    if let Some(&next) = chars.get(i) {
                        s.push(next);
                        i += 1;
                        continue;
                    }
                }
                s.push(ch);
            }
            out.push(Tok::Str(s));
            continue;
        }
        if c == '[' {
            // govaluate's escaped variable name, `[name with spaces]`: a string for Argo.
            if let Some(end) = chars[i + 1..].iter().position(|c| *c == ']') {
                out.push(Tok::Str(chars[i + 1..i + 1 + end].iter().collect()));
                i += end + 2;
                continue;
            }
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match OPS.iter().find(|op| rest.starts_with(**op)) {
            Some(op) => {
                out.push(Tok::Op(op));
                i += op.len();
            }
            None => return Err(format!("Invalid token: '{c}'")),
        }
    }
    out.push(Tok::Eof);
    Ok(out)
}

#[derive(Debug, Clone)]
enum Ast {
    Lit(Value),
    List(Vec<Ast>),
    Unary(&'static str, Box<Ast>),
    Binary(&'static str, Box<Ast>, Box<Ast>),
    Ternary(Box<Ast>, Box<Ast>, Box<Ast>),
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    /// How deep the parser's own recursion is (parentheses, prefix operators, ternaries).
    nesting: usize,
}

/// A parsed subtree with its depth.
type Parsed = Result<(Ast, usize), String>;

fn too_deep() -> String {
    format!(
        "the expression nests deeper than {} levels (MAX_EXPR_DEPTH)",
        crate::value::MAX_EXPR_DEPTH
    )
}

/// `ast` with depth `depth`, unless that is deeper than `MAX_EXPR_DEPTH` (as in `expr`).
fn node(ast: Ast, depth: usize) -> Parsed {
    if depth > crate::value::MAX_EXPR_DEPTH {
        Err(too_deep())
    } else {
        Ok((ast, depth))
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos]
    }
    fn bump(&mut self) -> Tok {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn enter(&mut self) -> Result<(), String> {
        self.nesting += 1;
        if self.nesting > crate::value::MAX_EXPR_DEPTH {
            return Err(too_deep());
        }
        Ok(())
    }
    fn ternary(&mut self) -> Parsed {
        self.enter()?;
        let (c, dc) = self.binary(0)?;
        let out = if matches!(self.peek(), Tok::Op("?")) {
            self.bump();
            let (a, da) = self.ternary()?;
            if !matches!(self.bump(), Tok::Op(":")) {
                return Err("expected ':' in a ternary".into());
            }
            let (b, db) = self.ternary()?;
            node(
                Ast::Ternary(Box::new(c), Box::new(a), Box::new(b)),
                1 + dc.max(da).max(db),
            )?
        } else if matches!(self.peek(), Tok::Op("??")) {
            self.bump();
            let (b, db) = self.ternary()?;
            node(Ast::Binary("??", Box::new(c), Box::new(b)), 1 + dc.max(db))?
        } else {
            (c, dc)
        };
        self.nesting -= 1;
        Ok(out)
    }
    fn prec(op: &str) -> Option<u8> {
        Some(match op {
            "||" => 1,
            "&&" => 2,
            "==" | "!=" | ">" | "<" | ">=" | "<=" | "=~" | "!~" | "in" => 3,
            "|" | "^" | "&" => 4,
            ">>" | "<<" => 5,
            "+" | "-" => 6,
            "*" | "/" | "%" => 7,
            "**" => 8,
            _ => return None,
        })
    }
    fn binary(&mut self, min: u8) -> Parsed {
        // Each precedence level an operand is parsed at is a level of recursion.
        self.enter()?;
        let (mut left, mut dl) = self.unary()?;
        while let Tok::Op(op) = self.peek() {
            let op = *op;
            let Some(p) = Self::prec(op) else { break };
            if p < min {
                break;
            }
            self.bump();
            // `**` is right-associative: a chain of them recurses once per operator.
            let (right, dr) = self.binary(if op == "**" { p } else { p + 1 })?;
            (left, dl) = node(
                Ast::Binary(op, Box::new(left), Box::new(right)),
                1 + dl.max(dr),
            )?;
        }
        self.nesting -= 1;
        Ok((left, dl))
    }
    fn unary(&mut self) -> Parsed {
        match self.peek() {
            Tok::Op(op @ ("!" | "-" | "~")) => {
                let op = *op;
                self.bump();
                self.enter()?;
                let (e, d) = self.unary()?;
                self.nesting -= 1;
                node(Ast::Unary(op, Box::new(e)), d + 1)
            }
            _ => self.primary(),
        }
    }
    fn primary(&mut self) -> Parsed {
        match self.bump() {
            Tok::Num(n) => Ok((Ast::Lit(crate::value::float(n)), 1)),
            Tok::Str(s) => Ok((Ast::Lit(Value::String(s)), 1)),
            Tok::Bool(b) => Ok((Ast::Lit(Value::Bool(b)), 1)),
            Tok::Op("(") => {
                let (first, df) = self.ternary()?;
                if matches!(self.peek(), Tok::Op(",")) {
                    let mut items = vec![first];
                    let mut depth = df;
                    while matches!(self.peek(), Tok::Op(",")) {
                        self.bump();
                        let (item, d) = self.ternary()?;
                        depth = depth.max(d);
                        items.push(item);
                    }
                    if !matches!(self.bump(), Tok::Op(")")) {
                        return Err("unbalanced parenthesis".into());
                    }
                    return node(Ast::List(items), depth + 1);
                }
                if !matches!(self.bump(), Tok::Op(")")) {
                    return Err("unbalanced parenthesis".into());
                }
                Ok((first, df))
            }
            Tok::Eof => Err("unexpected end of expression".into()),
            Tok::Op(op) => Err(format!("unexpected operator '{op}'")),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        _ => "nil",
    }
}

fn eval_ast(ast: &Ast) -> Result<Value, String> {
    Ok(match ast {
        Ast::Lit(v) => v.clone(),
        Ast::List(items) => Value::Array(items.iter().map(eval_ast).collect::<Result<_, _>>()?),
        Ast::Unary(op, e) => {
            let v = eval_ast(e)?;
            match (*op, &v) {
                ("!", Value::Bool(b)) => Value::Bool(!b),
                ("-", Value::Number(n)) => crate::value::float(-n.as_f64().unwrap_or(0.0)),
                ("~", Value::Number(n)) => {
                    crate::value::float(!(n.as_f64().unwrap_or(0.0) as i64) as f64)
                }
                _ => {
                    return Err(format!(
                        "Value '{}' cannot be used with the modifier '{op}'",
                        crate::value::go_format(&v)
                    ))
                }
            }
        }
        Ast::Ternary(c, a, b) => match eval_ast(c)? {
            Value::Bool(true) => eval_ast(a)?,
            Value::Bool(false) => eval_ast(b)?,
            other => {
                return Err(format!(
                    "Value '{}' cannot be used with the ternary operator",
                    crate::value::go_format(&other)
                ))
            }
        },
        Ast::Binary(op, l, r) => {
            let a = eval_ast(l)?;
            if *op == "&&" || *op == "||" {
                let Value::Bool(x) = a else {
                    return Err(format!("Value '{}' cannot be used with the logical operator '{op}', it is not a bool", crate::value::go_format(&a)));
                };
                if (*op == "&&" && !x) || (*op == "||" && x) {
                    return Ok(Value::Bool(x));
                }
                let b = eval_ast(r)?;
                return match b {
                    Value::Bool(y) => Ok(Value::Bool(y)),
                    other => Err(format!("Value '{}' cannot be used with the logical operator '{op}', it is not a bool", crate::value::go_format(&other))),
                };
            }
            if *op == "??" {
                return if a.is_null() { eval_ast(r) } else { Ok(a) };
            }
            let b = eval_ast(r)?;
            let mismatch = || {
                format!(
                    "Value '{}' cannot be used with the comparator '{op}', it is not a number",
                    crate::value::go_format(&a)
                )
            };
            match *op {
                "==" => Value::Bool(a == b),
                "!=" => Value::Bool(a != b),
                ">" | "<" | ">=" | "<=" => {
                    let ord = match (&a, &b) {
                        (Value::String(x), Value::String(y)) => x.cmp(y),
                        (Value::Number(x), Value::Number(y)) => {
                            x.as_f64().partial_cmp(&y.as_f64()).ok_or_else(mismatch)?
                        }
                        _ => return Err(mismatch()),
                    };
                    Value::Bool(match *op {
                        ">" => ord.is_gt(),
                        "<" => ord.is_lt(),
                        ">=" => ord.is_ge(),
                        _ => ord.is_le(),
                    })
                }
                "=~" | "!~" => {
                    let (Value::String(x), Value::String(pattern)) = (&a, &b) else {
                        return Err(format!("Value '{}' cannot be used with the comparator '{op}', it is not a string", crate::value::go_format(&a)));
                    };
                    let re = crate::sprig::compile(pattern).map_err(|e| {
                        format!("Unable to compile regexp pattern '{pattern}': {e}")
                    })?;
                    Value::Bool(re.is_match(x) == (*op == "=~"))
                }
                "in" => match &b {
                    Value::Array(items) => Value::Bool(items.contains(&a)),
                    _ => {
                        return Err(format!(
                        "Value '{}' cannot be used with the comparator 'in', it is not an array",
                        crate::value::go_format(&b)
                    ))
                    }
                },
                "+" => match (&a, &b) {
                    (Value::Number(x), Value::Number(y)) => {
                        crate::value::float(x.as_f64().unwrap_or(0.0) + y.as_f64().unwrap_or(0.0))
                    }
                    (Value::String(_), _) | (_, Value::String(_)) => Value::String(format!(
                        "{}{}",
                        crate::value::go_format(&a),
                        crate::value::go_format(&b)
                    )),
                    _ => {
                        return Err(format!(
                            "Value '{}' cannot be used with the modifier '+'",
                            crate::value::go_format(&a)
                        ))
                    }
                },
                _ => {
                    let (Value::Number(x), Value::Number(y)) = (&a, &b) else {
                        return Err(format!(
                            "Value '{}' ({}) cannot be used with the modifier '{op}', it is not a number",
                            crate::value::go_format(if a.is_number() { &b } else { &a }),
                            type_name(if a.is_number() { &b } else { &a })
                        ));
                    };
                    let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                    crate::value::float(match *op {
                        "-" => x - y,
                        "*" => x * y,
                        "/" => x / y,
                        "%" => x % y,
                        "**" => x.powf(y),
                        "|" => ((x as i64) | (y as i64)) as f64,
                        "&" => ((x as i64) & (y as i64)) as f64,
                        "^" => ((x as i64) ^ (y as i64)) as f64,
                        ">>" => ((x as i64) >> (y as i64 & 63)) as f64,
                        _ => ((x as i64) << (y as i64 & 63)) as f64,
                    })
                }
            }
        }
    })
}

/// Evaluate a govaluate expression with no parameters (Argo's `when`).
pub fn eval(src: &str) -> Result<Value, EvalError> {
    let toks = lex(src).map_err(|message| EvalError::Syntax {
        expr: src.into(),
        message,
    })?;
    let mut p = Parser {
        toks,
        pos: 0,
        nesting: 0,
    };
    let (ast, _) = p.ternary().map_err(|message| EvalError::Syntax {
        expr: src.into(),
        message,
    })?;
    if !matches!(p.peek(), Tok::Eof) {
        return Err(EvalError::Syntax {
            expr: src.into(),
            message: format!("unexpected {:?} after the expression", p.peek()),
        });
    }
    eval_ast(&ast).map_err(|message| EvalError::Runtime {
        expr: src.into(),
        message,
    })
}

/// Argo's `shouldExecute`: the `when` expression must evaluate to a boolean.
pub fn should_execute(when: &str) -> Result<bool, EvalError> {
    if when.trim().is_empty() {
        return Ok(true);
    }
    match eval(when)? {
        Value::Bool(b) => Ok(b),
        other => Err(EvalError::Runtime {
            expr: when.into(),
            message: format!(
                "Expected boolean evaluation for '{when}'. Got {}",
                crate::value::go_format(&other)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_words_are_strings() {
        assert!(should_execute("heads == heads").unwrap());
        assert!(!should_execute("tails == heads").unwrap());
        assert!(should_execute("Failed != Succeeded").unwrap());
        assert!(should_execute("YES == YES").unwrap());
    }

    #[test]
    fn numbers_are_floats_and_strings_never_equal_numbers() {
        assert!(should_execute("5 > 3").unwrap());
        assert!(should_execute("2 == 2.0").unwrap());
        assert!(!should_execute("'2' == 2").unwrap());
        assert!(should_execute("4 != 1 && 4 != 2").unwrap());
        assert!(should_execute("9 < 10").unwrap());
    }

    #[test]
    fn regex_in_and_logic() {
        assert!(should_execute("heads =~ hea").unwrap());
        assert!(!should_execute("tails =~ hea").unwrap());
        assert!(should_execute("a in (a, b)").unwrap());
        assert!(should_execute("(1 > 2) || !(false)").unwrap());
        assert!(should_execute("true == true").unwrap());
    }

    #[test]
    fn errors() {
        assert!(matches!(
            should_execute("heads heads"),
            Err(EvalError::Syntax { .. })
        ));
        assert!(matches!(
            should_execute("1 +"),
            Err(EvalError::Syntax { .. })
        ));
        assert!(matches!(
            should_execute("a > 1"),
            Err(EvalError::Runtime { .. })
        ));
        assert!(matches!(
            should_execute("1 + 1"),
            Err(EvalError::Runtime { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "[-a-z0-9 +*/%()=!<>&|'\"~?:,.\\[\\]]{0,60}") {
            let _ = should_execute(&s);
        }
    }
}
