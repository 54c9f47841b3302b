//! The resource algorithm over an in-memory [`Objects`], as each shell drives it.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::*;

#[derive(Default)]
struct Memory {
    objects: RefCell<BTreeMap<(String, String), Value>>,
    created_workflows: RefCell<Vec<String>>,
    stopped: std::cell::Cell<bool>,
}

impl Objects for Memory {
    fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let key = (kind.to_string(), name.to_string());
        self.objects.borrow().get(&key).cloned()
    }
    fn put(&self, kind: &str, obj: Value) -> Result<(), String> {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.objects
            .borrow_mut()
            .insert((kind.to_string(), name), obj);
        Ok(())
    }
    fn remove(&self, kind: &str, name: &str) -> Result<bool, String> {
        let key = (kind.to_string(), name.to_string());
        Ok(self.objects.borrow_mut().remove(&key).is_some())
    }
    fn remove_matching(&self, kind: &str, labels: &[(String, String)]) -> Result<usize, String> {
        let mut objects = self.objects.borrow_mut();
        let before = objects.len();
        objects.retain(|(k, _), v| {
            k != kind
                || !labels
                    .iter()
                    .all(|(l, want)| v["metadata"]["labels"][l].as_str() == Some(want.as_str()))
        });
        Ok(before - objects.len())
    }
    fn create_workflow(&self, mut obj: Value) -> Result<(), String> {
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        self.created_workflows.borrow_mut().push(name.clone());
        obj["status"] = json!({"phase": "Succeeded"});
        self.objects
            .borrow_mut()
            .insert(("workflow".into(), name), obj);
        Ok(())
    }
    fn wait_change(&self, _: Duration) {}
    fn cancelled(&self) -> bool {
        self.stopped.get()
    }
}

fn template(yaml: &str) -> Template {
    let text = format!("apiVersion: argoproj.io/v1alpha1\nkind: Workflow\nmetadata: {{name: w}}\nspec:\n  entrypoint: t\n  templates:\n  - name: t\n    resource:\n{yaml}");
    let (objs, diags) = workflow_model::load_str("test", &text);
    assert!(diags.is_empty(), "{diags:?}");
    let workflow_model::Object::Workflow(w) = objs.into_iter().next().unwrap().object else {
        panic!("a workflow")
    };
    w.spec.templates.into_iter().next().unwrap()
}

#[test]
fn a_created_workflow_is_named_for_its_node_and_adopted_when_carried_out_again() {
    let t = template(
        "      action: create\n      successCondition: status.phase == Succeeded\n      manifest: |\n        apiVersion: argoproj.io/v1alpha1\n        kind: Workflow\n        metadata: {generateName: child-}\n        spec: {entrypoint: x}\n",
    );
    let m = Memory::default();
    let first = run(&m, &t, "parent", "uid-1/node-a", None);
    assert!(first.ok, "{first:?}");
    let again = run(&m, &t, "parent", "uid-1/node-a", None);
    assert!(again.ok, "the node's own child is adopted: {again:?}");
    let other = run(&m, &t, "parent", "uid-1/node-b", None);
    assert!(other.ok, "{other:?}");
    let created = m.created_workflows.borrow().clone();
    assert_eq!(
        created.len(),
        2,
        "one child per node, never two: {created:?}"
    );
    assert_eq!(
        created[0],
        format!("child-{}", generated_suffix("uid-1/node-a"))
    );
    assert_ne!(created[0], created[1]);
}

#[test]
fn create_refuses_an_object_another_node_made_and_delete_needs_it_or_ignore_not_found() {
    let create = template(
        "      action: create\n      manifest: |\n        apiVersion: v1\n        kind: ConfigMap\n        metadata: {name: cm, labels: {app: a}}\n        data: {k: v}\n",
    );
    let m = Memory::default();
    assert!(run(&m, &create, "w", "u/n1", None).ok);
    let clash = run(&m, &create, "w", "u/n2", None);
    assert_eq!(clash.message, "configmap \"cm\" already exists");
    assert_eq!(
        config_map_data(&m.get("configmap", "cm").unwrap())["k"],
        "v"
    );

    let delete = template("      action: delete\n      flags: [configmap, cm]\n");
    assert!(run(&m, &delete, "w", "u/n3", None).ok);
    let gone = run(&m, &delete, "w", "u/n3", None);
    assert_eq!(gone.message, "configmap \"cm\" not found");
    let ignore =
        template("      action: delete\n      flags: [configmap, cm, --ignore-not-found]\n");
    assert!(run(&m, &ignore, "w", "u/n3", None).ok);
}

#[test]
fn kinds_without_kubernetes_are_refused_saying_so() {
    let t = template(
        "      action: create\n      manifest: |\n        apiVersion: v1\n        kind: Service\n        metadata: {name: s}\n",
    );
    let out = run(&Memory::default(), &t, "w", "u/n", None);
    assert!(!out.ok);
    assert!(
        out.message
            .contains("resource kind 'Service' cannot be honoured"),
        "{}",
        out.message
    );
}

#[test]
fn patches_merge_or_apply_json_operations() {
    let m = Memory::default();
    m.put(
        "workflow",
        json!({"metadata": {"name": "w", "labels": {"a": "1"}}}),
    )
    .unwrap();
    let json_patch = template(
        "      action: patch\n      mergeStrategy: json\n      flags: [workflow, w]\n      manifest: |\n        - op: add\n          path: /metadata/labels/foo\n          value: bar\n",
    );
    assert!(run(&m, &json_patch, "w", "u/n", None).ok);
    assert_eq!(
        m.get("workflow", "w").unwrap()["metadata"]["labels"],
        json!({"a": "1", "foo": "bar"})
    );
}

#[test]
fn a_node_stopped_before_its_turn_creates_nothing() {
    let t = template(
        "      action: create\n      manifest: |\n        apiVersion: v1\n        kind: ConfigMap\n        metadata: {name: late}\n",
    );
    let m = Memory::default();
    m.stopped.set(true);
    let out = run(&m, &t, "w", "u/n", None);
    assert_eq!(out.message, "stopped");
    assert!(m.get("configmap", "late").is_none());
}
