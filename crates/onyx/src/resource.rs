//! ONYX's own object store for `resource` templates on one machine: ConfigMaps, Secrets and
//! Workflows (a created Workflow runs as a child of this process). Other kinds cannot be
//! honoured without a cluster and are refused with a clear message.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use local_executor::resource::matches;
use serde_json::{json, Value};
use workflow_model::{Object, Template};

/// Kinds the local store keeps.
const LOCAL_KINDS: &[&str] = &["configmap", "secret", "workflow"];

#[derive(Default)]
pub struct ObjectStore {
    objects: Mutex<BTreeMap<(String, String), Value>>,
    changed: Condvar,
}

/// Starts a child workflow in the background; given the object, returns its final name.
pub type Spawner = Arc<dyn Fn(Value) -> Result<String, String> + Send + Sync>;

fn kind_key(kind: &str) -> String {
    let k = kind.to_ascii_lowercase();
    match k.as_str() {
        "configmaps" | "cm" => "configmap".into(),
        "secrets" => "secret".into(),
        "workflows" | "wf" => "workflow".into(),
        _ => k,
    }
}

/// A ConfigMap's `data` as strings.
pub fn config_map_data(obj: &Value) -> BTreeMap<String, String> {
    obj.get("data")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string()),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

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
                let data = config_map_data(v);
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

    fn remove_matching(&self, kind: &str, selector: &str) -> usize {
        let mut objs = self.objects.lock().expect("store lock");
        let reqs: Vec<(String, String)> = selector
            .split(',')
            .filter_map(|r| {
                r.split_once('=').map(|(k, v)| {
                    (
                        k.trim().trim_end_matches('=').to_string(),
                        v.trim().trim_start_matches('=').to_string(),
                    )
                })
            })
            .collect();
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

pub struct ResourceOutcome {
    pub ok: bool,
    pub message: String,
    pub outputs: Vec<(String, String)>,
}

fn refuse(message: String) -> ResourceOutcome {
    ResourceOutcome {
        ok: false,
        message,
        outputs: Vec::new(),
    }
}

/// Carry out a resource template. Blocks while waiting for its conditions.
pub fn run_resource(
    store: &ObjectStore,
    t: &Template,
    workflow: &str,
    spawn: &Spawner,
    deadline: Option<Instant>,
) -> ResourceOutcome {
    let Some(r) = &t.resource else {
        return refuse("not a resource template".into());
    };
    let manifest: Option<Value> = match r.manifest.as_deref() {
        Some(m) => match manifest::parse_documents(m) {
            Ok(docs) => docs.into_iter().next().map(|d| d.value),
            Err(e) => return refuse(format!("resource manifest: {e}")),
        },
        None => None,
    };
    let action = r.action.as_str();
    // Target from flags (`kubectl delete configmap NAME`, `--selector x=y`) or the manifest.
    let mut flag_kind = None;
    let mut flag_name = None;
    let mut selector = None;
    let mut it = r.flags.iter();
    while let Some(f) = it.next() {
        if f == "--selector" || f == "-l" {
            selector = it.next().cloned();
        } else if let Some(s) = f.strip_prefix("--selector=") {
            selector = Some(s.to_string());
        } else if f.starts_with('-') {
            continue;
        } else if flag_kind.is_none() {
            flag_kind = Some(f.clone());
        } else if flag_name.is_none() {
            flag_name = Some(f.clone());
        }
    }
    let kind = flag_kind
        .clone()
        .or_else(|| {
            manifest
                .as_ref()
                .and_then(|m| m.get("kind"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    if manifest.as_ref().is_some_and(volcano_job::is_volcano_job) {
        return refuse(
            "a Volcano Job (batch.volcano.sh/v1alpha1) runs under `onyx server`, which schedules its replicas as one gang; `onyx run` keeps ConfigMaps, Secrets and Workflows".into(),
        );
    }
    if (action != "patch"
        || flag_kind.is_some()
        || manifest.as_ref().and_then(|m| m.get("kind")).is_some())
        && !LOCAL_KINDS.contains(&kind_key(&kind).as_str())
    {
        return refuse(format!(
                "resource kind '{kind}' cannot be honoured on one machine without Kubernetes; the local executor keeps ConfigMaps, Secrets and Workflows"
            ));
    }
    let mut name = flag_name.or_else(|| {
        manifest
            .as_ref()
            .and_then(|m| m.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    match action {
        "create" | "apply" | "replace" => {
            let Some(mut obj) = manifest.clone() else {
                return refuse("resource action needs a manifest".into());
            };
            if kind_key(&kind) == "workflow" {
                if action == "create"
                    && name
                        .as_deref()
                        .is_some_and(|n| store.get("workflow", n).is_some())
                {
                    return refuse(format!(
                        "workflows.argoproj.io \"{}\" already exists",
                        name.unwrap_or_default()
                    ));
                }
                if t.resource.as_ref().and_then(|r| r.set_owner_reference) == Some(true) {
                    obj["metadata"]["ownerReferences"] = json!([{"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": workflow}]);
                }
                match spawn(obj.clone()) {
                    Ok(n) => name = Some(n),
                    Err(e) => return refuse(e),
                }
            } else {
                if obj.pointer("/metadata/name").is_none() {
                    if let Some(g) = obj
                        .pointer("/metadata/generateName")
                        .and_then(Value::as_str)
                    {
                        obj["metadata"]["name"] =
                            Value::String(format!("{g}{}", crate::names::random_suffix()));
                    }
                }
                name = obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if action == "create"
                    && name
                        .as_deref()
                        .is_some_and(|n| store.get(&kind, n).is_some())
                {
                    return refuse(format!(
                        "{} \"{}\" already exists",
                        kind_key(&kind),
                        name.unwrap_or_default()
                    ));
                }
                store.put(obj);
            }
        }
        "delete" => {
            if let Some(sel) = selector {
                store.remove_matching(&kind, &sel);
            } else if let Some(n) = &name {
                let existed = store.get(&kind, n).is_some();
                if !existed && !r.flags.iter().any(|f| f == "--ignore-not-found") {
                    return refuse(format!("{} \"{n}\" not found", kind_key(&kind)));
                }
                let mut objs = store.objects.lock().expect("store lock");
                objs.remove(&(kind_key(&kind), n.clone()));
            }
            return ResourceOutcome {
                ok: true,
                message: String::new(),
                outputs: Vec::new(),
            };
        }
        "get" => {}
        "patch" => {
            let n = name.clone().unwrap_or_else(|| workflow.to_string());
            let k = if kind.is_empty() {
                "workflow".to_string()
            } else {
                kind.clone()
            };
            let mut obj = store
                .get(&k, &n)
                .unwrap_or_else(|| json!({"kind": k, "metadata": {"name": n}}));
            if let Some(p) = &manifest {
                if let Value::Array(ops) = p {
                    for op in ops {
                        apply_json_patch_op(&mut obj, op);
                    }
                } else {
                    merge(&mut obj, p);
                }
            }
            store.put(obj);
            name = Some(n);
        }
        other => return refuse(format!("unknown resource action '{other}'")),
    }
    let name = name.unwrap_or_default();
    let success = r.success_condition.clone().filter(|s| !s.trim().is_empty());
    let failure = r.failure_condition.clone().filter(|s| !s.trim().is_empty());
    loop {
        let obj = store.get(&kind, &name);
        let Some(obj) = obj else {
            if action == "get" && success.is_none() {
                return refuse(format!("{} \"{name}\" not found", kind_key(&kind)));
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return refuse("timed out waiting for the resource".into());
            }
            store.wait_change(Duration::from_millis(500));
            continue;
        };
        if let Some(f) = &failure {
            if matches(&obj, f) {
                return refuse(format!("failure condition '{f}' met"));
            }
        }
        let done = success.as_ref().is_none_or(|s| matches(&obj, s));
        if done {
            let outputs = match local_executor::resource::outputs(&obj, t) {
                Ok(o) => o,
                Err(e) => return refuse(e),
            };
            return ResourceOutcome {
                ok: true,
                message: String::new(),
                outputs,
            };
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return refuse("timed out waiting for the success condition".into());
        }
        store.wait_change(Duration::from_millis(500));
    }
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn apply_json_patch_op(obj: &mut Value, op: &Value) {
    let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
    let parts: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, parents)) = parts.split_last() else {
        return;
    };
    let mut cur = obj;
    for p in parents {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .map(|m| m.entry(p.clone()).or_insert(json!({})))
            .expect("object");
    }
    match op.get("op").and_then(Value::as_str) {
        Some("add") | Some("replace") => {
            if let Some(m) = cur.as_object_mut() {
                m.insert(
                    last.clone(),
                    op.get("value").cloned().unwrap_or(Value::Null),
                );
            }
        }
        Some("remove") => {
            if let Some(m) = cur.as_object_mut() {
                m.remove(last);
            }
        }
        _ => {}
    }
}
