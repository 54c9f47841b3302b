//! A safe event reader over libyaml (the `unsafe-libyaml` port). go-yaml, which Kubernetes
//! uses, is itself a port of libyaml, so the two accept the same documents — including the
//! lenient indentation of flow collections and quoted scalars that strict YAML 1.2 parsers
//! refuse.

use std::collections::HashMap;
use std::ffi::CStr;
use std::mem::MaybeUninit;

#[allow(clippy::unsafe_removed_from_name)]
use unsafe_libyaml as sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Marker {
    line: usize,
    col: usize,
}

impl Marker {
    /// 1-based line.
    pub fn line(&self) -> usize {
        self.line
    }
    /// 0-based column.
    pub fn col(&self) -> usize {
        self.col
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    pub start: Marker,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub suffix: String,
}

#[derive(Debug)]
pub enum Event {
    Nothing,
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    /// The id of the anchor referred to.
    Alias(usize),
    /// Value, style, anchor id (0 when none), tag.
    Scalar(String, ScalarStyle, usize, Option<Tag>),
    /// Anchor id.
    SequenceStart(usize),
    SequenceEnd,
    /// Anchor id.
    MappingStart(usize),
    MappingEnd,
}

#[derive(Debug)]
pub struct ScanError {
    marker: Marker,
    info: String,
}

impl ScanError {
    pub fn marker(&self) -> &Marker {
        &self.marker
    }
    pub fn info(&self) -> &str {
        &self.info
    }
}

struct Pinned {
    sys: MaybeUninit<sys::yaml_parser_t>,
    _input: Vec<u8>,
    initialized: bool,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if self.initialized {
            // SAFETY: initialized by yaml_parser_initialize and not deleted before.
            unsafe { sys::yaml_parser_delete(self.sys.as_mut_ptr()) }
        }
    }
}

pub struct Parser {
    pin: Box<Pinned>,
    anchors: HashMap<String, usize>,
    /// Anchors defined so far (ids are 1, 2, …; a redefinition takes a new one).
    defined: usize,
    done: bool,
}

impl Parser {
    pub fn new(text: &str) -> Parser {
        let mut pin = Box::new(Pinned {
            sys: MaybeUninit::uninit(),
            _input: text.as_bytes().to_vec(),
            initialized: false,
        });
        // SAFETY: the parser lives in a Box (it never moves) together with the input bytes it
        // points to; both are freed together in Drop.
        unsafe {
            let p = pin.sys.as_mut_ptr();
            if !sys::yaml_parser_initialize(p).fail {
                pin.initialized = true;
                sys::yaml_parser_set_encoding(p, sys::YAML_UTF8_ENCODING);
                let input = pin._input.as_ptr();
                let len = pin._input.len() as u64;
                sys::yaml_parser_set_input_string(p, input, len);
            }
        }
        Parser {
            pin,
            anchors: HashMap::new(),
            defined: 0,
            done: false,
        }
    }

    fn anchor_id(&mut self, ptr: *const u8, define: bool) -> usize {
        if ptr.is_null() {
            return 0;
        }
        // SAFETY: libyaml anchors are NUL-terminated strings owned by the event.
        let name = unsafe { CStr::from_ptr(ptr as *const std::ffi::c_char) }
            .to_string_lossy()
            .into_owned();
        if define {
            // A redefined anchor gets a new id: later aliases refer to the latest definition.
            // (Counting the map's names instead gave the next anchor the id of a redefined
            // one, so that aliases to the earlier anchor expanded to the later one's value.)
            self.defined += 1;
            self.anchors.insert(name, self.defined);
            self.defined
        } else {
            *self.anchors.get(&name).unwrap_or(&usize::MAX)
        }
    }

    fn tag(ptr: *const u8) -> Option<Tag> {
        if ptr.is_null() {
            return None;
        }
        // SAFETY: as above.
        let full = unsafe { CStr::from_ptr(ptr as *const std::ffi::c_char) }
            .to_string_lossy()
            .into_owned();
        let suffix = full
            .strip_prefix("tag:yaml.org,2002:")
            .map(str::to_string)
            .unwrap_or(full);
        Some(Tag { suffix })
    }

    fn error(&self) -> ScanError {
        // SAFETY: the parser is initialized; problem/context are static C strings or null.
        unsafe {
            let p = &*self.pin.sys.as_ptr();
            let problem = if p.problem.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(p.problem).to_string_lossy().into_owned()
            };
            let context = if p.context.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p.context).to_string_lossy().into_owned()
            };
            let info = if context.is_empty() {
                problem
            } else {
                format!("{problem} {context}")
            };
            ScanError {
                marker: Marker {
                    line: p.problem_mark.line as usize + 1,
                    col: p.problem_mark.column as usize,
                },
                info,
            }
        }
    }
}

impl Iterator for Parser {
    type Item = Result<(Event, Span), ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.pin.initialized {
            self.done = true;
            return Some(Err(ScanError {
                marker: Marker::default(),
                info: "cannot initialize the YAML parser".into(),
            }));
        }
        let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
        // SAFETY: the parser is initialized; a successfully parsed event is converted and then
        // deleted exactly once.
        unsafe {
            let p = self.pin.sys.as_mut_ptr();
            if sys::yaml_parser_parse(p, event.as_mut_ptr()).fail {
                self.done = true;
                return Some(Err(self.error()));
            }
            let ev = &*event.as_ptr();
            let span = Span {
                start: Marker {
                    line: ev.start_mark.line as usize + 1,
                    col: ev.start_mark.column as usize,
                },
            };
            let out = match ev.type_ {
                sys::YAML_STREAM_START_EVENT => Event::StreamStart,
                sys::YAML_STREAM_END_EVENT => {
                    self.done = true;
                    Event::StreamEnd
                }
                sys::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
                sys::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
                sys::YAML_ALIAS_EVENT => Event::Alias(self.anchor_id(ev.data.alias.anchor, false)),
                sys::YAML_SCALAR_EVENT => {
                    let s = ev.data.scalar;
                    let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                    let style = match s.style {
                        sys::YAML_SINGLE_QUOTED_SCALAR_STYLE => ScalarStyle::SingleQuoted,
                        sys::YAML_DOUBLE_QUOTED_SCALAR_STYLE => ScalarStyle::DoubleQuoted,
                        sys::YAML_LITERAL_SCALAR_STYLE => ScalarStyle::Literal,
                        sys::YAML_FOLDED_SCALAR_STYLE => ScalarStyle::Folded,
                        _ => ScalarStyle::Plain,
                    };
                    let anchor = self.anchor_id(s.anchor, true);
                    Event::Scalar(
                        String::from_utf8_lossy(bytes).into_owned(),
                        style,
                        anchor,
                        Self::tag(s.tag),
                    )
                }
                sys::YAML_SEQUENCE_START_EVENT => {
                    let s = ev.data.sequence_start;
                    Event::SequenceStart(self.anchor_id(s.anchor, true))
                }
                sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
                sys::YAML_MAPPING_START_EVENT => {
                    let s = ev.data.mapping_start;
                    Event::MappingStart(self.anchor_id(s.anchor, true))
                }
                sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
                _ => Event::Nothing,
            };
            sys::yaml_event_delete(event.as_mut_ptr());
            Some(Ok((out, span)))
        }
    }
}
