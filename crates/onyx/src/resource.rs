//! `onyx run`'s objects for `resource` templates: ConfigMaps, Secrets and Workflows in memory
//! (a created Workflow runs as a child of this process). What a resource template does with
//! them is `resource_template::run`, as in the server.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use resource_template::kind_key;
use serde_json::{json, Value};
use workflow_model::Object;

#[derive(Default)]
pub struct ObjectStore {
    objects: Mutex<BTreeMap<(String, String), Value>>,
    changed: Condvar,
}

/// Starts a child workflow in the background; given the object, returns its final name.
pub type Spawner = Arc<dyn Fn(Value) -> Result<String, String> + Send + Sync>;

impl ObjectStore {
    pub fn new() -> Arc<ObjectStore> {
        Arc::new(ObjectStore::default())
    }

    pub fn put(&self, obj: Value) {
        let kind = kind_key(obj.get("kind").and_then(Value::as_str).unwrap_or_default());
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.objects
            .lock()
            .expect("store lock")
            .insert((kind, name), obj);
        self.changed.notify_all();
    }

    pub fn get(&self, kind: &str, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .expect("store lock")
            .get(&(kind_key(kind), name.to_string()))
            .cloned()
    }

    pub fn config_maps(&self) -> std::collections::HashMap<String, BTreeMap<String, String>> {
        let objs = self.objects.lock().expect("store lock");
        let mut out = std::collections::HashMap::new();
        for ((kind, name), v) in objs.iter() {
            if kind == "configmap" {
                let data = resource_template::config_map_data(v);
                out.insert(name.clone(), data);
            }
        }
        out
    }

    pub fn load(&self, objects: &[Object]) {
        for o in objects {
            if let Object::Other(other) = o {
                self.put(other.raw.clone());
            }
        }
    }

    fn remove_matching(&self, kind: &str, reqs: &[(String, String)]) -> usize {
        let mut objs = self.objects.lock().expect("store lock");
        let before = objs.len();
        objs.retain(|(k, _), v| {
            if *k != kind_key(kind) {
                return true;
            }
            let labels = v.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
            !reqs
                .iter()
                .all(|(lk, lv)| labels.get(lk).and_then(Value::as_str) == Some(lv.as_str()))
        });
        before - objs.len()
    }

    fn wait_change(&self, timeout: Duration) {
        let g = self.objects.lock().expect("store lock");
        let _ = self.changed.wait_timeout(g, timeout);
    }
}

/// The objects one resource node of `onyx run` works on, with how it starts child workflows.
pub struct RunObjects<'a> {
    pub store: &'a ObjectStore,
    pub spawn: &'a Spawner,
}

impl resource_template::Objects for RunObjects<'_> {
    fn get(&self, kind: &str, name: &str) -> Option<Value> {
        self.store.get(kind, name)
    }
    fn put(&self, _kind: &str, obj: Value) -> Result<(), String> {
        self.store.put(obj);
        Ok(())
    }
    fn remove(&self, kind: &str, name: &str) -> Result<bool, String> {
        let key = (kind_key(kind), name.to_string());
        let removed = self.store.objects.lock().expect("store lock").remove(&key);
        Ok(removed.is_some())
    }
    fn remove_matching(&self, kind: &str, labels: &[(String, String)]) -> Result<usize, String> {
        Ok(self.store.remove_matching(kind, labels))
    }
    fn create_workflow(&self, obj: Value) -> Result<(), String> {
        (self.spawn)(obj).map(|_| ())
    }
    fn wait_change(&self, timeout: Duration) {
        self.store.wait_change(timeout);
    }
}
