//! A trigger's `conditions`: dependency names joined by `&&`, `||` and `!`, with parentheses.
//! Names may hold `-`, `_` and `.` (`test-dep`), as Argo Events' sensors write them.

use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Dep(String),
    Not(Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    /// No dependencies at all: never holds.
    Never,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    And,
    Or,
    Not,
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let pair = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1
            }
            ')' => {
                out.push(Token::Close);
                i += 1
            }
            '!' => {
                out.push(Token::Not);
                i += 1
            }
            '&' if pair == Some('&') => {
                out.push(Token::And);
                i += 2
            }
            '|' if pair == Some('|') => {
                out.push(Token::Or);
                i += 2
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-' | '.'))
                {
                    i += 1;
                }
                out.push(Token::Name(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} at character {}", i + 1)),
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, String> {
        let token = self.peek().cloned();
        self.at += 1;
        match token {
            Some(Token::Not) => Ok(Condition::Not(Box::new(self.unary()?))),
            Some(Token::Name(n)) => Ok(Condition::Dep(n)),
            Some(Token::Open) => {
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err("expected )".into());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(other) => Err(format!("expected a dependency name, got {other:?}")),
            None => Err("expected a dependency name, got the end".into()),
        }
    }
}

impl Condition {
    pub fn parse(text: &str) -> Result<Condition, String> {
        let mut p = Parser {
            tokens: tokens(text)?,
            at: 0,
        };
        let c = p.or()?;
        if p.at != p.tokens.len() {
            return Err(format!(
                "unexpected {:?} after the expression",
                p.tokens[p.at]
            ));
        }
        Ok(c)
    }

    /// Every dependency, AND'ed: a trigger's condition when it names none.
    pub fn all(deps: &[String]) -> Condition {
        deps.iter()
            .map(|d| Condition::Dep(d.clone()))
            .reduce(|a, b| Condition::And(Box::new(a), Box::new(b)))
            .unwrap_or(Condition::Never)
    }

    pub fn names(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.collect(&mut out);
        out
    }

    fn collect(&self, out: &mut BTreeSet<String>) {
        match self {
            Condition::Dep(d) => {
                out.insert(d.clone());
            }
            Condition::Not(c) => c.collect(out),
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Condition::Never => {}
        }
    }

    pub fn holds(&self, seen: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Condition::Dep(d) => seen(d),
            Condition::Not(c) => !c.holds(seen),
            Condition::And(a, b) => a.holds(seen) && b.holds(seen),
            Condition::Or(a, b) => a.holds(seen) || b.holds(seen),
            Condition::Never => false,
        }
    }
}
