//! Argo's `fields` query parameter (list, get and watch of workflows): which parts of the
//! answer to send. `a.b,c` keeps those paths and the maps that lead to them; a leading `-`
//! (`-a.b,c`) sends everything but them. Paths name map keys joined by `.`; a list is crossed
//! without a step of its own (`items.metadata.name` reaches each item's name). A path leads to
//! a key when the path begins with the key's path as text, as in Argo's `util/fields`.

use std::collections::HashMap;

use serde_json::Value;

use crate::error::ApiError;

/// The most paths one `fields` parameter may name.
pub const MAX_FIELDS: usize = 100;

/// A parsed `fields` parameter. The empty selection sends everything.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    exclude: bool,
    paths: Vec<String>,
}

impl Fields {
    pub fn parse(text: &str) -> Fields {
        let (exclude, text) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let paths = if text.is_empty() {
            Vec::new()
        } else {
            text.split(',').map(str::to_string).collect()
        };
        Fields { exclude, paths }
    }

    /// The `fields` of a request's query. Applying a selection costs each key of the answer a
    /// look at every path, so at most [`MAX_FIELDS`] paths are taken.
    pub fn of(q: &HashMap<String, String>) -> Result<Fields, ApiError> {
        let fields = q
            .get("fields")
            .map_or_else(Fields::default, |f| Fields::parse(f));
        if fields.paths.len() > MAX_FIELDS {
            return Err(ApiError::InvalidArgument(format!(
                "fields: {} paths, more than the {MAX_FIELDS} a request may select",
                fields.paths.len()
            )));
        }
        Ok(fields)
    }

    /// The same selection with `prefix` taken off each path: a watch's `result.object.x`
    /// applies to each workflow as `x`.
    pub fn without_prefix(mut self, prefix: &str) -> Fields {
        for p in &mut self.paths {
            if let Some(rest) = p.strip_prefix(prefix) {
                *p = rest.to_string();
            }
        }
        self
    }

    pub fn is_everything(&self) -> bool {
        self.paths.is_empty()
    }

    /// Drop from `v` what the selection leaves out.
    pub fn apply(&self, v: &mut Value) {
        if !self.is_everything() {
            self.clean("", v);
        }
    }

    fn clean(&self, path: &str, v: &mut Value) {
        match v {
            Value::Object(map) => map.retain(|key, child| {
                let full = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                let named = self.paths.contains(&full);
                let keep = if self.exclude {
                    !named
                } else {
                    named || self.paths.iter().any(|p| p.starts_with(&full))
                };
                if keep && !named {
                    self.clean(&full, child);
                }
                keep
            }),
            Value::Array(items) => {
                for item in items {
                    self.clean(path, item);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Fields;
    use serde_json::{json, Value};

    fn workflow_list() -> Value {
        json!({
            "metadata": {"resourceVersion": "0"},
            "items": [
                {"metadata": {"name": "a", "uid": "1", "labels": {"x": "y"}},
                 "spec": {"entrypoint": "main"},
                 "status": {"phase": "Succeeded", "nodes": {"a": {"phase": "Succeeded"}}}},
                {"metadata": {"name": "b", "uid": "2"},
                 "status": {"phase": "Running"}}
            ]
        })
    }

    fn check(fields: &str, expected: Value) {
        let mut v = workflow_list();
        Fields::parse(fields).apply(&mut v);
        assert_eq!(v, expected, "fields={fields}");
    }

    #[test]
    fn included_paths_keep_the_maps_that_lead_to_them_and_nothing_else() {
        check(
            "metadata,items.metadata.name,items.status.phase",
            json!({
                "metadata": {"resourceVersion": "0"},
                "items": [
                    {"metadata": {"name": "a"}, "status": {"phase": "Succeeded"}},
                    {"metadata": {"name": "b"}, "status": {"phase": "Running"}}
                ]
            }),
        );
    }

    #[test]
    fn a_leading_minus_sends_everything_but_the_paths() {
        check(
            "-items.status.nodes,items.spec",
            json!({
                "metadata": {"resourceVersion": "0"},
                "items": [
                    {"metadata": {"name": "a", "uid": "1", "labels": {"x": "y"}},
                     "status": {"phase": "Succeeded"}},
                    {"metadata": {"name": "b", "uid": "2"}, "status": {"phase": "Running"}}
                ]
            }),
        );
    }

    #[test]
    fn paths_match_by_text_prefix_as_argo_does() {
        // `metadata.namespace` begins with the text `metadata.name`, so asking for the
        // namespace brings the name along, as it does from Argo; `uid` stays out.
        let mut v = json!({"metadata": {"name": "a", "namespace": "n", "uid": "1"}});
        Fields::parse("metadata.namespace").apply(&mut v);
        assert_eq!(v, json!({"metadata": {"name": "a", "namespace": "n"}}));
    }

    #[test]
    fn no_fields_or_an_empty_one_sends_everything() {
        check("", workflow_list());
        check("-", workflow_list());
    }

    #[test]
    fn a_watch_selection_applies_to_each_workflow_without_its_prefix() {
        let mut wf = workflow_list()["items"][0].clone();
        Fields::parse("result.object.metadata.name,result.object.status.phase")
            .without_prefix("result.object.")
            .apply(&mut wf);
        assert_eq!(
            wf,
            json!({"metadata": {"name": "a"}, "status": {"phase": "Succeeded"}})
        );
    }

    #[test]
    fn a_request_selects_at_most_max_fields_paths() {
        use std::collections::HashMap;
        let q = |n: usize| {
            let paths: Vec<String> = (0..n).map(|i| format!("items.p{i}")).collect();
            HashMap::from([("fields".to_string(), paths.join(","))])
        };
        assert!(Fields::of(&q(super::MAX_FIELDS)).is_ok());
        let e = Fields::of(&q(super::MAX_FIELDS + 1))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "fields: 101 paths, more than the 100 a request may select"
        );
    }
}
