//! `resource` templates other than Volcano Jobs, carried out by `resource_template::run` over
//! the store, as `onyx run` carries them out over its memory: ConfigMaps and Secrets kept in
//! the workflow's namespace, Workflows submitted as children through the server's own
//! submission (the same admission, Pod Security and parameter checks as the API; never in
//! another namespace). The algorithm blocks while it waits for a condition, so each node runs
//! on a blocking thread and reaches the store through the runtime's handle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use store::ObjectRow;

use super::Controller;

/// Submits a workflow in a namespace through the API's checks (bound by the server).
pub type ChildSubmitter = Arc<
    dyn Fn(String, Value) -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync,
>;

/// The store's objects, as one resource node of a workflow in `namespace` sees them.
pub(super) struct StoreObjects {
    pub(super) ctl: Arc<Controller>,
    pub(super) namespace: String,
    pub(super) handle: tokio::runtime::Handle,
    /// Set when the node is killed or its workflow ends or is deleted.
    pub(super) cancelled: Arc<AtomicBool>,
}

/// The store's kind for a kind as `resource_template::kind_key` spells it.
fn stored_kind(kind: &str) -> Result<&'static str, String> {
    match kind {
        "configmap" => Ok("ConfigMap"),
        "secret" => Ok("Secret"),
        other => Err(format!("resource kind '{other}' is not kept by the server")),
    }
}

impl StoreObjects {
    fn block<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        self.handle.block_on(f)
    }

    fn workflow(&self, name: &str) -> Option<store::WorkflowRow> {
        self.block(self.ctl.store.workflow(&self.namespace, name))
            .ok()
            .flatten()
    }
}

impl resource_template::Objects for StoreObjects {
    fn get(&self, kind: &str, name: &str) -> Option<Value> {
        if kind == "workflow" {
            let row = self.workflow(name)?;
            return Some(self.block(self.ctl.current(&row)));
        }
        let row = self
            .block(
                self.ctl
                    .store
                    .object(stored_kind(kind).ok()?, &self.namespace, name),
            )
            .ok()??;
        serde_json::from_str(&row.body).ok()
    }

    fn put(&self, kind: &str, mut obj: Value) -> Result<(), String> {
        if kind == "workflow" {
            return Err(
                "patching a Workflow from a resource template is not supported by the server (onyx run supports it)".into(),
            );
        }
        let stored = stored_kind(kind)?;
        let name = obj["metadata"]["name"]
            .as_str()
            .filter(|n| access::is_object_name(n))
            .ok_or_else(|| {
                format!(
                    "{kind} name {:?}: expected a lowercase RFC 1123 name",
                    obj["metadata"]["name"]
                )
            })?
            .to_string();
        obj["metadata"]["namespace"] = Value::String(self.namespace.clone());
        let row = ObjectRow {
            kind: stored.into(),
            namespace: self.namespace.clone(),
            name,
            created_ns: store::now_ns(),
            body: obj.to_string(),
        };
        // Create, or replace what is there (`kubectl apply`'s outcome; `create` was refused
        // before this when another node's object is there).
        match self.block(self.ctl.store.put_object(row.clone(), true)) {
            Err(store::StoreError::AlreadyExists(_)) => self
                .block(self.ctl.store.put_object(row, false))
                .map_err(|e| e.to_string()),
            other => other.map_err(|e| e.to_string()),
        }
    }

    fn remove(&self, kind: &str, name: &str) -> Result<bool, String> {
        if kind == "workflow" {
            let Some(row) = self.workflow(name) else {
                return Ok(false);
            };
            return self
                .block(self.ctl.delete(&row))
                .map(|()| true)
                .map_err(|e| e.to_string());
        }
        let stored = stored_kind(kind)?;
        let exists = self
            .block(self.ctl.store.object(stored, &self.namespace, name))
            .map_err(|e| e.to_string())?
            .is_some();
        if exists {
            self.block(self.ctl.store.delete_object(stored, &self.namespace, name))
                .map_err(|e| e.to_string())?;
        }
        Ok(exists)
    }

    fn remove_matching(&self, kind: &str, labels: &[(String, String)]) -> Result<usize, String> {
        let stored = stored_kind(kind)?;
        let rows = self
            .block(self.ctl.store.objects(stored, Some(&self.namespace)))
            .map_err(|e| e.to_string())?;
        let mut removed = 0;
        for row in rows {
            let obj: Value = serde_json::from_str(&row.body).unwrap_or_default();
            let matched = labels.iter().all(|(k, v)| {
                obj.pointer("/metadata/labels")
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    == Some(v.as_str())
            });
            if matched {
                self.block(
                    self.ctl
                        .store
                        .delete_object(stored, &self.namespace, &row.name),
                )
                .map_err(|e| e.to_string())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn create_workflow(&self, obj: Value) -> Result<(), String> {
        let submit = self
            .ctl
            .children
            .get()
            .ok_or("this server does not submit workflows from resource templates")?
            .clone();
        self.block(submit(self.namespace.clone(), obj))
    }

    fn wait_change(&self, timeout: Duration) {
        std::thread::sleep(timeout);
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }
}
