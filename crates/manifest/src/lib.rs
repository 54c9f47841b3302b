//! Reads Kubernetes-style YAML manifests into `serde_json::Value` documents.
//!
//! Kubernetes (through `sigs.k8s.io/yaml` and go-yaml v2) resolves plain scalars by YAML 1.1
//! rules: `yes`/`on`/`y` are booleans, `0x1F` and `017` are integers, `~` is null. We resolve the
//! same way so that a manifest means here what it means to `kubectl`. Every value keeps the
//! line and column where it started, keyed by its field path (`spec.templates[2].name`), so
//! later stages can point at the exact place of a problem.

use std::collections::HashMap;

mod libyaml;

use libyaml::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// A position in a source file, 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML document converted to JSON, with where each field path started.
#[derive(Debug, Clone, Default)]
pub struct Document {
    pub value: Value,
    /// Where the document starts in its file.
    pub start: Location,
    locations: HashMap<String, Location>,
    /// The text of plain scalars that resolved to booleans or numbers, by path: Kubernetes
    /// keeps that text when the field they land in is a string (`name: n` is "n", not false).
    originals: HashMap<String, String>,
}

impl Document {
    /// The source text of a plain scalar that YAML 1.1 resolved to a boolean or number.
    pub fn original_text(&self, path: &str) -> Option<&str> {
        self.originals.get(path).map(String::as_str)
    }

    /// The location of a field path such as `spec.templates[0].name`, or of the nearest
    /// enclosing field that has one.
    pub fn location_of(&self, path: &str) -> Location {
        let mut p = path.to_string();
        loop {
            if let Some(l) = self.locations.get(&p) {
                return *l;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.locations.get("").copied().unwrap_or(self.start),
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("{line}:{column}: malformed YAML: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{line}:{column}: {message}")]
    Unsupported {
        line: usize,
        column: usize,
        message: String,
    },
}

impl ManifestError {
    pub fn location(&self) -> Location {
        match self {
            ManifestError::Syntax { line, column, .. }
            | ManifestError::Unsupported { line, column, .. } => Location {
                line: *line,
                column: *column,
            },
        }
    }
}

/// Most values one stream may expand to; bounds alias bombs.
const MAX_VALUES: usize = 2_000_000;

/// Deepest nesting of sequences and mappings a document may have, aliases expanded — what
/// `serde_json` accepts of the same object as JSON (128). Building, cloning, formatting and
/// dropping a value recurse once per level: unbounded, `[[[[…` of a few thousand levels (or
/// an alias chain that nests a deep anchor again and again) overflows a server thread's
/// stack and aborts the process.
pub const MAX_DEPTH: usize = 128;

/// Parse every document of a YAML stream. Empty documents (a lone `---`) are dropped, as
/// `kubectl apply` drops them.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ManifestError> {
    let mut builder = Builder {
        events: Parser::new(text),
        budget: MAX_VALUES,
        anchors: HashMap::new(),
        locations: HashMap::new(),
        originals: HashMap::new(),
    };
    let mut docs = Vec::new();
    while let Some((event, span)) = builder.next()? {
        match event {
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::StreamEnd => break,
            Event::DocumentStart => {
                let start = loc(&span);
                let (event, span) = builder.next()?.ok_or_else(|| ManifestError::Syntax {
                    line: start.line,
                    column: start.column,
                    message: "unexpected end of input".into(),
                })?;
                if matches!(event, Event::DocumentEnd) {
                    continue;
                }
                builder.locations.clear();
                builder.originals.clear();
                let value = builder.value(event, span, String::new(), 0)?;
                if value.is_null() {
                    continue;
                }
                docs.push(Document {
                    value,
                    start,
                    locations: std::mem::take(&mut builder.locations),
                    originals: std::mem::take(&mut builder.originals),
                });
            }
            other => {
                let l = loc(&span);
                return Err(ManifestError::Syntax {
                    line: l.line,
                    column: l.column,
                    message: format!("unexpected {other:?}"),
                });
            }
        }
    }
    Ok(docs)
}

fn loc(span: &Span) -> Location {
    Location {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

struct Builder {
    events: Parser,
    budget: usize,
    /// Anchored values with how many values each expands to and how deep each nests.
    anchors: HashMap<usize, (Value, usize, usize)>,
    locations: HashMap<String, Location>,
    originals: HashMap<String, String>,
}

impl Builder {
    fn next(&mut self) -> Result<Option<(Event, Span)>, ManifestError> {
        match self.events.next() {
            None => Ok(None),
            Some(Ok(e)) => Ok(Some(e)),
            Some(Err(e)) => Err(ManifestError::Syntax {
                line: e.marker().line(),
                column: e.marker().col() + 1,
                message: e.info().to_string(),
            }),
        }
    }

    fn expect_next(&mut self, at: &Span) -> Result<(Event, Span), ManifestError> {
        self.next()?.ok_or_else(|| {
            let l = loc(at);
            ManifestError::Syntax {
                line: l.line,
                column: l.column,
                message: "unexpected end of input".into(),
            }
        })
    }

    fn too_deep(span: &Span) -> ManifestError {
        let l = loc(span);
        ManifestError::Unsupported {
            line: l.line,
            column: l.column,
            message: format!("document too deep: more than {MAX_DEPTH} nested collections"),
        }
    }

    /// The value starting with `event`, nested inside `depth` collections.
    fn value(
        &mut self,
        event: Event,
        span: Span,
        path: String,
        depth: usize,
    ) -> Result<Value, ManifestError> {
        self.locations.insert(path.clone(), loc(&span));
        if self.budget == 0 {
            let l = loc(&span);
            return Err(ManifestError::Unsupported {
                line: l.line,
                column: l.column,
                message: format!(
                    "document too large: more than {MAX_VALUES} values (alias expansion?)"
                ),
            });
        }
        self.budget -= 1;
        let (value, anchor) = match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| t.suffix.clone());
                let v = resolve_scalar(&text, style, tag.as_deref());
                if matches!(v, Value::Bool(_) | Value::Number(_)) {
                    self.originals.insert(path.clone(), text.clone());
                }
                (v, anchor)
            }
            Event::Alias(id) => {
                let (v, size, height) = self.anchors.get(&id).cloned().ok_or_else(|| {
                    let l = loc(&span);
                    ManifestError::Syntax {
                        line: l.line,
                        column: l.column,
                        message: "alias to an unknown anchor".into(),
                    }
                })?;
                if size > self.budget {
                    let l = loc(&span);
                    return Err(ManifestError::Unsupported {
                        line: l.line,
                        column: l.column,
                        message: format!(
                            "document too large: more than {MAX_VALUES} values (alias expansion?)"
                        ),
                    });
                }
                if depth + height > MAX_DEPTH {
                    return Err(Self::too_deep(&span));
                }
                self.budget -= size;
                (v, 0)
            }
            Event::SequenceStart(anchor) => {
                if depth >= MAX_DEPTH {
                    return Err(Self::too_deep(&span));
                }
                let mut items = Vec::new();
                loop {
                    let (ev, sp) = self.expect_next(&span)?;
                    if matches!(ev, Event::SequenceEnd) {
                        break;
                    }
                    let child = format!("{path}[{}]", items.len());
                    items.push(self.value(ev, sp, child, depth + 1)?);
                }
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor) => {
                if depth >= MAX_DEPTH {
                    return Err(Self::too_deep(&span));
                }
                let mut map = Map::new();
                let mut merged = Map::new();
                loop {
                    let (ev, sp) = self.expect_next(&span)?;
                    if matches!(ev, Event::MappingEnd) {
                        break;
                    }
                    let key_loc = loc(&sp);
                    let key = match self.value(ev, sp, format!("{path}\u{0}key"), depth + 1)? {
                        Value::String(s) => s,
                        Value::Null => "null".to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(ManifestError::Unsupported {
                                line: key_loc.line,
                                column: key_loc.column,
                                message: "a mapping key must be a scalar".into(),
                            })
                        }
                    };
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    let (ev, sp) = self.expect_next(&span)?;
                    let is_merge = key == "<<";
                    let v = self.value(ev, sp, child.clone(), depth + 1)?;
                    self.locations.insert(child, key_loc);
                    if is_merge {
                        let sources = match v {
                            Value::Array(a) => a,
                            other => vec![other],
                        };
                        for s in sources {
                            if let Value::Object(o) = s {
                                for (k, v) in o {
                                    merged.entry(k).or_insert(v);
                                }
                            }
                        }
                    } else {
                        map.insert(key, v);
                    }
                }
                self.locations.remove(&format!("{path}\u{0}key"));
                for (k, v) in merged {
                    map.entry(k).or_insert(v);
                }
                (Value::Object(map), anchor)
            }
            other => {
                let l = loc(&span);
                return Err(ManifestError::Syntax {
                    line: l.line,
                    column: l.column,
                    message: format!("unexpected {other:?}"),
                });
            }
        };
        if anchor > 0 {
            let (size, height) = measure(&value);
            self.anchors.insert(anchor, (value.clone(), size, height));
        }
        Ok(value)
    }
}

/// How many values `v` holds, and how many collections deep it nests (0 for a scalar).
fn measure(v: &Value) -> (usize, usize) {
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::Array(a) => Box::new(a.iter()),
        Value::Object(o) => Box::new(o.values()),
        _ => return (1, 0),
    };
    children.fold((1, 1), |(size, height), c| {
        let (s, h) = measure(c);
        (size + s, height.max(h + 1))
    })
}

/// The string Kubernetes' YAML reader (sigs.k8s.io/yaml over go-yaml v2) puts in a string
/// field that got a plain scalar YAML 1.1 reads as a boolean or a number: `true`/`false`, an
/// integer's digits, a float as Go's `strconv.FormatFloat(f, 'g', -1, 32)` writes it. `None`
/// for any other value.
pub fn string_field_text(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Value::Number(n) => n.as_f64().map(go_float32_g),
        _ => None,
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`: the shortest digits that read back as the
/// same float32, in `%e` form when the exponent is below -4 or at least 6.
fn go_float32_g(f: f64) -> String {
    let f = f as f32;
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Rust's `{:e}` gives the same shortest digits: `d.ddde±x`.
    let e = format!("{:e}", f.abs());
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{point}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let nd = digits.len() as i32;
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point >= nd {
        format!("{digits}{}", "0".repeat((point - nd) as usize))
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{body}")
}

/// Resolve one scalar the way go-yaml v2 (YAML 1.1) does. Quoted and block scalars are
/// always strings; explicit `!!str`, `!!int`, ... tags win over the plain-scalar rules.
pub fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Value {
    match tag {
        Some("str") => return Value::String(text.to_string()),
        Some("int") | Some("float") | Some("bool") | Some("null") => {
            return resolve_plain(text);
        }
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    resolve_plain(text)
}

fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            // JSON has no infinities; Kubernetes would refuse such a manifest, keep the text.
            return Value::String(text.to_string());
        }
        _ => {}
    }
    if let Some(i) = parse_yaml11_int(text) {
        return Value::Number(i.into());
    }
    if looks_like_float(text) {
        if let Ok(f) = text.replace('_', "").parse::<f64>() {
            if let Some(n) = Number::from_f64(f) {
                if f.fract() == 0.0 && f.abs() < 1e15 {
                    return Value::Number((f as i64).into());
                }
                return Value::Number(n);
            }
        }
    }
    Value::String(text.to_string())
}

fn parse_yaml11_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    // Digits only: `from_str_radix` would also take a sign after the prefix (`0x-5`,
    // `-0-1000000000000000000000`), which Go's `ParseInt` refuses — and negating the
    // `i64::MIN` such a second sign can produce overflowed.
    let digits = |s: &str, radix: u32| -> Option<u64> {
        if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
            return None;
        }
        u64::from_str_radix(s, radix).ok()
    };
    let magnitude = if let Some(h) = clean.strip_prefix("0x") {
        digits(h, 16)?
    } else if let Some(b) = clean.strip_prefix("0b") {
        digits(b, 2)?
    } else if let Some(o) = clean.strip_prefix("0o") {
        digits(o, 8)?
    } else if clean.len() > 1 && clean.starts_with('0') {
        digits(&clean[1..], 8)?
    } else {
        digits(&clean, 10)?
    };
    let v = if neg {
        -i128::from(magnitude)
    } else {
        i128::from(magnitude)
    };
    i64::try_from(v).ok()
}

fn looks_like_float(text: &str) -> bool {
    let t = text.trim_start_matches(['-', '+']);
    let mut digits = false;
    for (i, c) in t.char_indices() {
        match c {
            '0'..='9' => digits = true,
            '.' | '_' => {}
            'e' | 'E' => {
                let rest = &t[i + 1..];
                let rest = rest.trim_start_matches(['-', '+']);
                return digits && !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
            }
            _ => return false,
        }
    }
    digits && t.contains('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml11_scalars_resolve_as_kubernetes_reads_them() {
        let docs = parse_documents(
            "a: yes\nb: off\nc: 0x1F\nd: 017\ne: '017'\nf: ~\ng: 1.5\nh: 1_000\ni: \"yes\"\nj: 2.0\nk: 1e3\nl: v1.2\n",
        )
        .unwrap();
        assert_eq!(
            docs[0].value,
            json!({"a": true, "b": false, "c": 31, "d": 15, "e": "017", "f": null,
                   "g": 1.5, "h": 1000, "i": "yes", "j": 2, "k": 1000, "l": "v1.2"})
        );
    }

    #[test]
    fn multi_document_streams_skip_empty_documents_and_keep_locations() {
        let text =
            "---\nkind: A\n---\n---\nkind: B\nspec:\n  templates:\n  - name: x\n    bad: 1\n";
        let docs = parse_documents(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].value["kind"], "B");
        assert_eq!(
            docs[1].location_of("spec.templates[0].bad"),
            Location { line: 9, column: 5 }
        );
        assert_eq!(
            docs[1].location_of("spec.templates[0].missing"),
            Location { line: 8, column: 5 }
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let docs = parse_documents("base: &b {x: 1, z: 2}\nother:\n  <<: *b\n  z: 3\n").unwrap();
        assert_eq!(docs[0].value["other"], json!({"z": 3, "x": 1}));
    }

    #[test]
    fn malformed_yaml_reports_line_and_column() {
        let err = parse_documents("a: [1, 2\nb: c\n").unwrap_err();
        match err {
            ManifestError::Syntax { line, .. } => assert!(line >= 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = parse_documents(&text).unwrap_err();
        assert!(err.to_string().contains("document too large"), "{err}");
    }

    #[test]
    fn lenient_indentation_as_go_yaml() {
        let docs =
            parse_documents("a:\n  flags: [\n    \"x\", \"y\"\n  ]\nb: [\"\n   hello\n  \"]\n")
                .unwrap();
        assert_eq!(docs[0].value["a"]["flags"], json!(["x", "y"]));
        assert_eq!(docs[0].value["b"][0], json!(" hello "));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(s in "\\PC{0,200}") {
            let _ = parse_documents(&s);
        }

        #[test]
        fn never_panics_on_yamlish_input(s in "[-:\\[\\]{}&*!|>'\" \n#a-z0-9,?]{0,120}") {
            let _ = parse_documents(&s);
        }
    }

    #[test]
    fn string_fields_get_the_text_kubernetes_makes_of_a_scalar() {
        use serde_json::json;
        let cases = [
            (json!(false), "false"),
            (json!(true), "true"),
            (json!(511), "511"),
            (json!(1.10), "1.1"),
            (json!(1.0), "1"),
            (json!(123456.0), "123456"),
            (json!(1234567.0), "1.234567e+06"),
            (json!(1e6), "1e+06"),
            (json!(0.0001), "0.0001"),
            (json!(0.00001), "1e-05"),
            (json!(-2.5), "-2.5"),
            (json!(1.2345678901), "1.2345679"),
        ];
        for (v, text) in cases {
            assert_eq!(string_field_text(&v).as_deref(), Some(text), "{v}");
        }
        assert_eq!(string_field_text(&json!("n")), None);
    }
}
