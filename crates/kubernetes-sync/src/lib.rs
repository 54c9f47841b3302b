//! Argo's `argoproj.io` objects between a Kubernetes cluster and ONYX, for the server that
//! leads with `--executor kubernetes`:
//!
//! - **In** (GitOps): WorkflowTemplates, ClusterWorkflowTemplates and CronWorkflows in the
//!   cluster — where Argo CD syncs them from Git — are kept in ONYX's store as the API would
//!   keep them (`control_plane::objects`: Argo's lint, the namespace's admission rules); one
//!   deleted from the cluster is deleted from ONYX. An object ONYX refuses is logged and left
//!   out, as Argo's controller leaves out an invalid template.
//! - **kubectl's Workflows**: a Workflow created in the cluster (`kubectl create`) is submitted
//!   to ONYX through every check a submission through the API passes; ONYX marks it
//!   `onyx.io/accepted=true` (or `false`, with phase `Error` and why, as Argo shows a workflow
//!   that fails validation). Deleting it deletes the workflow.
//! - **Out**: every ONYX workflow has its Workflow object in the cluster, its status kept to
//!   what `kubectl get workflows` shows — phase, progress, start, finish and message (the
//!   nodes stay in ONYX: etcd's object limit is 1.5 MB) — written when one of those changes.
//!
//! The pure parts — which object ONYX keeps from a cluster object, and the status it writes —
//! are functions of their input (`from_cluster`, `status_summary`); the rest is the watches.

use std::collections::HashMap;
use std::sync::Arc;

use control_plane::objects::{self, Kind};
use control_plane::state::AppState;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

/// The label ONYX marks a cluster Workflow with once it has taken it (`true`) or refused it
/// (`false`).
pub const ACCEPTED_LABEL: &str = "onyx.io/accepted";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Start the watches; they run as long as the server leads.
pub fn start(state: Arc<AppState>, client: kube::Client) {
    for (kind, plural) in [
        (&objects::WT, "workflowtemplates"),
        (&objects::CWT, "clusterworkflowtemplates"),
        (&objects::CRON, "cronworkflows"),
    ] {
        tokio::spawn(objects_in(state.clone(), client.clone(), kind, plural));
    }
    tokio::spawn(workflows_in(state.clone(), client.clone()));
    tokio::spawn(workflows_out(state, client));
}

/// The object ONYX keeps of a cluster object: Argo's fields, without what the API server
/// adds (resource version, uid, managed fields, kubectl's last applied configuration).
pub fn from_cluster(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o["metadata"].as_object_mut() {
        for f in [
            "resourceVersion",
            "uid",
            "managedFields",
            "generation",
            "creationTimestamp",
            "selfLink",
        ] {
            m.remove(f);
        }
        if let Some(a) = m.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove("kubectl.kubernetes.io/last-applied-configuration");
            if a.is_empty() {
                m.remove("annotations");
            }
        }
    }
    o
}

/// What a workflow's Workflow object in the cluster shows of its status (the columns of
/// `kubectl get workflows`).
pub fn status_summary(wf: &Value) -> Value {
    let st = &wf["status"];
    let mut out = serde_json::Map::new();
    for f in ["phase", "progress", "startedAt", "finishedAt", "message"] {
        if let Some(v) = st.get(f).filter(|v| !v.is_null()) {
            out.insert(f.into(), v.clone());
        }
    }
    Value::Object(out)
}

async fn objects_in(state: Arc<AppState>, client: kube::Client, kind: &'static Kind, plural: &str) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource(kind.kind, plural));
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let obj = from_cluster(&serde_json::to_value(&o).unwrap_or_default());
                let ns = obj["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let name = obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let body = json!({kind.body_field: obj});
                let kept = match objects::get_obj(&state, kind, &ns, &name).await {
                    Ok(_) => objects::update_obj(&state, kind, &ns, &name, &body).await,
                    Err(_) => objects::create_obj(&state, kind, &ns, &body).await,
                };
                match kept {
                    Ok(_) => tracing::info!("{} {ns}/{name} taken from the cluster", kind.kind),
                    Err(e) => {
                        tracing::warn!("{} {ns}/{name} in the cluster is not taken: {e}", kind.kind)
                    }
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                let name = o.metadata.name.clone().unwrap_or_default();
                let scope = objects::scope(kind, &ns).to_string();
                if let Err(e) = state
                    .ctl
                    .store
                    .delete_object(kind.kind, &scope, &name)
                    .await
                {
                    tracing::warn!("{} {ns}/{name} deleted from the cluster: {e}", kind.kind);
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("watching the cluster's {plural}: {e}"),
        }
    }
}

async fn workflows_in(state: Arc<AppState>, client: kube::Client) {
    let ar = resource("Workflow", "workflows");
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let labels = o.metadata.labels.clone().unwrap_or_default();
                if labels.contains_key(ACCEPTED_LABEL) {
                    continue;
                }
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                let name = o.metadata.name.clone().unwrap_or_default();
                let mut manifest = from_cluster(&serde_json::to_value(&o).unwrap_or_default());
                if let Some(m) = manifest.as_object_mut() {
                    m.remove("status");
                }
                let answer = control_plane::submit::submit(&state, &ns, manifest, &[], false).await;
                let patch = match answer {
                    Ok(_) | Err(control_plane::error::ApiError::AlreadyExists(_)) => {
                        tracing::info!("workflow {ns}/{name} from the cluster accepted");
                        json!({"metadata": {"labels": {ACCEPTED_LABEL: "true"}}})
                    }
                    Err(e) => {
                        tracing::warn!("workflow {ns}/{name} from the cluster refused: {e}");
                        json!({"metadata": {"labels": {ACCEPTED_LABEL: "false"}},
                               "status": {"phase": "Error", "message": e.to_string()}})
                    }
                };
                let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
                if let Err(e) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!("marking workflow {ns}/{name} in the cluster: {e}");
                }
            }
            Ok(watcher::Event::Delete(o)) => {
                let ns = o.metadata.namespace.clone().unwrap_or_default();
                let name = o.metadata.name.clone().unwrap_or_default();
                let accepted = o
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(ACCEPTED_LABEL))
                    .is_some_and(|v| v == "true");
                if !accepted {
                    continue;
                }
                if let Ok(Some(row)) = state.ctl.store.workflow(&ns, &name).await {
                    if let Err(e) = state.ctl.delete(&row).await {
                        tracing::warn!("workflow {ns}/{name} deleted in the cluster: {e}");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::debug!("watching the cluster's workflows: {e}"),
        }
    }
}

async fn workflows_out(state: Arc<AppState>, client: kube::Client) {
    let ar = resource("Workflow", "workflows");
    let mut rx = state.ctl.subscribe();
    // What each object in the cluster shows now, so that only changes are written.
    let mut shown: HashMap<(String, String), Value> = HashMap::new();
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("{n} workflow changes passed before the cluster was told; the next change of each brings its object up to date");
                continue;
            }
            Err(_) => return,
        };
        let key = (ev.namespace.clone(), ev.name.clone());
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ev.namespace, &ar);
        if ev.kind == "DELETED" {
            shown.remove(&key);
            match api.delete(&ev.name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {}
                Err(e) => {
                    tracing::warn!("deleting workflow {}/{} in the cluster: {e}", key.0, key.1)
                }
            }
            continue;
        }
        let status = status_summary(&ev.object);
        if shown.get(&key) == Some(&status) {
            continue;
        }
        let patch = json!({"status": status});
        let written = match api
            .patch(&ev.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(kube::error::ErrorResponse { code: 404, .. })) => {
                let wf = &ev.object;
                let mut labels = wf["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                labels[ACCEPTED_LABEL] = json!("true");
                let obj = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                    "metadata": {"name": ev.name, "namespace": ev.namespace, "labels": labels},
                    "spec": wf["spec"], "status": status});
                match serde_json::from_value::<DynamicObject>(obj) {
                    Ok(o) => api.create(&PostParams::default(), &o).await.map(|_| ()),
                    Err(e) => {
                        tracing::warn!("workflow {}/{}: {e}", key.0, key.1);
                        continue;
                    }
                }
            }
            other => other.map(|_| ()),
        };
        match written {
            Ok(()) => {
                shown.insert(key, status);
            }
            Err(e) => tracing::debug!("workflow {}/{} in the cluster: {e}", key.0, key.1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn a_cluster_object_loses_what_the_api_server_added() {
        let o = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
            "metadata": {"name": "t", "namespace": "a", "uid": "u", "resourceVersion": "7",
                "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z",
                "managedFields": [{}], "labels": {"app": "x"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"entrypoint": "main"}});
        expect![[r#"{"apiVersion":"argoproj.io/v1alpha1","kind":"WorkflowTemplate","metadata":{"name":"t","namespace":"a","labels":{"app":"x"}},"spec":{"entrypoint":"main"}}"#]]
            .assert_eq(&from_cluster(&o).to_string());
    }

    #[test]
    fn the_status_written_to_the_cluster_is_what_kubectl_shows() {
        let wf = json!({"status": {"phase": "Running", "progress": "1/2",
            "startedAt": "2026-01-01T00:00:00Z", "finishedAt": null,
            "nodes": {"a": {}}, "message": "m"}});
        expect![[r#"{"phase":"Running","progress":"1/2","startedAt":"2026-01-01T00:00:00Z","message":"m"}"#]]
            .assert_eq(&status_summary(&wf).to_string());
    }
}
