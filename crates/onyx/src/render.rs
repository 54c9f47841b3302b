//! Text views of a workflow, in the style of `argo get` and `argo submit --watch`.

use std::collections::HashMap;
use std::io::Write;

use serde_json::Value;
use workflow_engine::Engine;

use crate::runner::Watcher;

pub use workflow_engine::tree::{duration, icon, tree};

/// `argo get`: the header and the node tree.
pub fn summary(wf: &Value) -> String {
    let mut out = String::new();
    let meta = &wf["metadata"];
    let st = &wf["status"];
    let line = |k: &str, v: &str| format!("{:<20} {}\n", format!("{k}:"), v);
    out += &line("Name", meta["name"].as_str().unwrap_or_default());
    out += &line("Namespace", meta["namespace"].as_str().unwrap_or("default"));
    out += &line("Status", st["phase"].as_str().unwrap_or_default());
    if let Some(m) = st["message"].as_str() {
        out += &line("Message", m);
    }
    out += &line(
        "Created",
        meta["creationTimestamp"].as_str().unwrap_or_default(),
    );
    out += &line("Started", st["startedAt"].as_str().unwrap_or_default());
    out += &line("Finished", st["finishedAt"].as_str().unwrap_or_default());
    out += &line("Duration", &duration(st));
    out += &line("Progress", st["progress"].as_str().unwrap_or_default());
    if let Some(Value::Array(ps)) = st.pointer("/outputs/parameters") {
        for p in ps {
            out += &line(
                &format!("Output {}", p["name"].as_str().unwrap_or_default()),
                p["value"].as_str().unwrap_or_default(),
            );
        }
    }
    out += "\n";
    out += &tree(wf);
    out
}

/// Prints each node's phase changes as they happen.
pub struct LineWatcher<W: Write> {
    pub out: W,
    seen: HashMap<String, String>,
}

impl<W: Write> LineWatcher<W> {
    pub fn new(out: W) -> Self {
        LineWatcher {
            out,
            seen: HashMap::new(),
        }
    }
}

impl<W: Write> Watcher for LineWatcher<W> {
    fn update(&mut self, engine: &Engine, changed: &[String]) {
        for id in changed {
            let Some(n) = engine.node(id) else { continue };
            let phase = n.phase.as_str().to_string();
            let key = format!("{}{}", phase, n.message.clone().unwrap_or_default());
            if self.seen.get(&n.id) == Some(&key) {
                continue;
            }
            self.seen.insert(n.id.clone(), key);
            if matches!(
                n.node_type,
                workflow_engine::NodeType::StepGroup | workflow_engine::NodeType::TaskGroup
            ) {
                continue;
            }
            let t = chrono::Utc::now().format("%H:%M:%S");
            let msg = n
                .message
                .as_deref()
                .map(|m| format!("  {m}"))
                .unwrap_or_default();
            let _ = writeln!(
                self.out,
                "{t} {} {:<9} {}{msg}",
                icon(&phase),
                phase,
                n.name
            );
        }
    }
}

/// On a terminal: redraws the whole `argo get` view in place, as `argo submit --watch` does,
/// at most once a second (and whenever something changed).
pub struct TreeWatcher<W: Write> {
    pub out: W,
    last: Option<std::time::Instant>,
}

impl<W: Write> TreeWatcher<W> {
    pub fn new(out: W) -> Self {
        TreeWatcher { out, last: None }
    }
}

impl<W: Write> Watcher for TreeWatcher<W> {
    fn update(&mut self, engine: &Engine, changed: &[String]) {
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
        if changed.is_empty() && !due {
            return;
        }
        if !due && !engine.is_finished() {
            return;
        }
        self.last = Some(std::time::Instant::now());
        let view = summary(&engine.to_json());
        // Home the cursor and clear the screen, then draw.
        let _ = write!(self.out, "\x1b[H\x1b[2J{view}");
        let _ = self.out.flush();
    }
}

/// YAML for printing.
pub fn to_yaml(v: &serde_json::Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}
