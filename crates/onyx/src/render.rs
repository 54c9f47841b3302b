//! Text views of a workflow, in the style of `argo get` and `argo submit --watch`.

use std::collections::HashMap;
use std::io::Write;

use workflow_engine::Engine;

use crate::runner::Watcher;

pub use workflow_engine::tree::{icon, summary};

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
