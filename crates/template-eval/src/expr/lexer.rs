//! The lexer: an expression's text as tokens (numbers, strings, names, operators, `#`), and
//! the names it mentions.

use serde_json::{Number, Value};

use crate::error::EvalError;

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
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

pub(super) fn lex(src: &str) -> Result<Vec<Tok>, String> {
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
