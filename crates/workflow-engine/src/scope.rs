//! The variables one steps or DAG block sees: its own (`inputs.*`, loop items, aggregated loop
//! outputs) and, per finished child, what `steps.<name>.*` / `tasks.<name>.*` resolve to.
//!
//! A leaf: plain data structures, no knowledge of the engine. Own variables always win over
//! recorded results of the same name; recording a child again replaces its entry whole.

use std::sync::Arc;

use template_eval::{Lookup, Vars};
use workflow_model::Artifact;

/// Artifacts in scope by name (`steps.a.outputs.artifacts.x`); persistent, cheap to clone.
pub(crate) type ArtMap = template_eval::PersistentMap<Artifact>;

/// Variables and artifacts visible inside one steps or DAG template instance.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub(crate) vars: ScopeVars,
    pub(crate) artifacts: ArtMap,
}

/// A block's variables: its own (`inputs.*`, items, aggregated loop outputs) and, per
/// finished step or task, what `steps.<name>.*` / `tasks.<name>.*` resolve to, kept as one
/// entry under `steps.<name>` (status, id, times, outputs). One persistent-map insert per
/// finished task instead of seven: at 10^5 tasks those inserts, each a walk through a map
/// too large for the cache, were a fifth of the engine's time. Own variables win over
/// results of the same name (a loop's aggregated outputs over its last item's; a hook's
/// `tasks.<name>.status` over the recorded one). Step and task names have no dots (Argo's
/// `[a-zA-Z0-9][-a-zA-Z0-9]*`), so `steps.<name>` is the name up to its second dot.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScopeVars {
    pub(crate) own: Vars,
    pub(crate) results: template_eval::PersistentMap<Arc<[(String, String)]>>,
}

impl ScopeVars {
    /// A block's scope before any of its steps or tasks has finished.
    pub(crate) fn over(own: Vars) -> ScopeVars {
        ScopeVars {
            own,
            ..Default::default()
        }
    }

    pub(crate) fn insert(&mut self, name: String, value: String) {
        self.own.insert(name, value);
    }

    /// The variables of a finished step or task, by the rest of their names.
    pub(crate) fn record(&mut self, prefix: &str, entries: Vec<(String, String)>) {
        if prefix.matches('.').count() == 1 {
            self.results.insert(prefix.to_string(), entries.into());
        } else {
            // A name with a dot could not be split back; keep its variables as own ones.
            for (rest, value) in entries {
                self.own.insert(format!("{prefix}.{rest}"), value);
            }
        }
    }
}

impl Lookup for ScopeVars {
    fn lookup(&self, name: &str) -> Option<&str> {
        if let Some(v) = self.own.get(name) {
            return Some(v);
        }
        let first = name.find('.')?;
        let second = first + 1 + name[first + 1..].find('.')?;
        let (prefix, rest) = (&name[..second], &name[second + 1..]);
        self.results
            .get(prefix)?
            .iter()
            .find(|(k, _)| k == rest)
            .map(|(_, v)| v.as_str())
    }

    fn each(&self, f: &mut dyn FnMut(&str, &str)) {
        let mut name = String::new();
        for (prefix, entries) in &self.results {
            for (rest, value) in entries.iter() {
                name.clear();
                name.push_str(prefix);
                name.push('.');
                name.push_str(rest);
                if !self.own.contains_key(&name) {
                    f(&name, value);
                }
            }
        }
        self.own.each(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use template_eval::Lookup;

    #[test]
    fn a_scope_resolves_recorded_results_and_its_own_variables_first() {
        let mut scope = ScopeVars::default();
        scope.insert("inputs.parameters.x".into(), "1".into());
        scope.record(
            "tasks.train",
            vec![
                ("status".into(), "Succeeded".into()),
                ("outputs.result".into(), "42".into()),
                ("outputs.parameters.loss".into(), "0.1".into()),
            ],
        );
        assert_eq!(scope.lookup("tasks.train.status"), Some("Succeeded"));
        assert_eq!(scope.lookup("tasks.train.outputs.result"), Some("42"));
        assert_eq!(
            scope.lookup("tasks.train.outputs.parameters.loss"),
            Some("0.1")
        );
        assert_eq!(scope.lookup("tasks.train.exitCode"), None);
        assert_eq!(scope.lookup("tasks.eval.status"), None);
        assert_eq!(scope.lookup("inputs.parameters.x"), Some("1"));
        assert_eq!(scope.lookup("tasks"), None);
        // A later record of the same step replaces the earlier one whole.
        scope.record("tasks.train", vec![("status".into(), "Failed".into())]);
        assert_eq!(scope.lookup("tasks.train.status"), Some("Failed"));
        assert_eq!(scope.lookup("tasks.train.outputs.result"), None);
        // Own variables win: a loop's aggregated outputs, a hook's status override.
        let mut hook_view = scope.clone();
        hook_view.insert("tasks.train.status".into(), "Running".into());
        assert_eq!(hook_view.lookup("tasks.train.status"), Some("Running"));
        assert_eq!(scope.lookup("tasks.train.status"), Some("Failed"));
        // Every variable is listed once, by its full name (expressions build their env so).
        let mut seen = Vec::new();
        hook_view.each(&mut |k, v| seen.push(format!("{k}={v}")));
        seen.sort();
        assert_eq!(
            seen,
            vec!["inputs.parameters.x=1", "tasks.train.status=Running"]
        );
        // A name with a dot cannot be split back into step and field: kept as own variables.
        scope.record("steps.a.b", vec![("status".into(), "Succeeded".into())]);
        assert_eq!(scope.lookup("steps.a.b.status"), Some("Succeeded"));
    }
}
