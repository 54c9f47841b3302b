//! Memoization (`template.memoize`): a node whose cache entry is fresh ends at once with the
//! saved outputs; a node that succeeds saves its outputs under its key.
//!
//! Owns `Engine::memo` and each node's `memo_key`. The cache lives in the engine's state, so
//! it is rebuilt by replaying the event log like everything else; it never reads or writes a
//! ConfigMap (the shell has none to offer the engine).

use serde_json::{json, Value};
use workflow_model::Memoize;

use crate::deadlines::parse_duration;
use crate::state::Engine;
use crate::status::{Phase, Time};

impl Engine {
    /// Look node `i` up in its cache and record `memoizationStatus`. On a hit the node is
    /// finished with the saved outputs and `true` returned; on a miss the node remembers its
    /// key, for `memo_save` when it succeeds.
    pub(crate) fn memo_hit(&mut self, i: usize, m: &Memoize, now: Time) -> bool {
        let cache = m
            .cache
            .as_ref()
            .and_then(|c| c.pointer("/configMap/name"))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let key = m.key.clone();
        let max_age = m.max_age.as_deref().and_then(parse_duration);
        let hit = self
            .memo
            .get(&(cache.clone(), key.clone()))
            .filter(|(_, at)| max_age.is_none_or(|a| now - *at <= a))
            .cloned();
        self.nodes[i].status.memoization_status =
            Some(json!({"hit": hit.is_some(), "key": key, "cacheName": cache}));
        if let Some((outputs, _)) = hit {
            self.nodes[i].status.outputs = Some(outputs);
            self.finish(i, Phase::Succeeded, None, now);
            return true;
        }
        self.nodes[i].memo_key = Some((cache, key));
        false
    }

    /// A memoized node succeeded: its outputs are what later hits of its key get.
    pub(crate) fn memo_save(&mut self, i: usize, now: Time) {
        if let Some((cache, key)) = self.nodes[i].memo_key.clone() {
            let outputs = self.nodes[i].status.outputs.clone().unwrap_or_default();
            self.memo.insert((cache, key), (outputs, now));
        }
    }
}
