//! The Pod Security checks' tests: each check's refusal as Kubernetes words it, how the
//! layers of a pod merge, and that no JSON makes the checks panic.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::arbitrary_json::workflow_shaped;

fn wf(templates: Value) -> Value {
    json!({"kind": "Workflow", "spec": {"templates": templates}})
}

fn step(container: Value) -> Value {
    wf(json!([{"name": "main", "container": container}]))
}

/// (field, value, message) of each refusal.
fn refused(level: Level, w: &Value) -> Vec<(String, String, String)> {
    check(level, w, &[])
        .into_iter()
        .map(|r| {
            assert_eq!(r.rule, "pod_security");
            (r.field, r.value, r.message)
        })
        .collect()
}

fn one(field: &str, value: &str, message: &str) -> Vec<(String, String, String)> {
    vec![(field.into(), value.into(), message.into())]
}

/// A container that passes the restricted level on its own.
fn hardened() -> Value {
    json!({"image": "harbor.onyx.internal/x", "securityContext": {
        "allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 1000,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
        "seccompProfile": {"type": "RuntimeDefault"}}})
}

#[test]
fn levels_read_as_the_namespace_label_names_them() {
    let l: Level = serde_json::from_value(json!("restricted")).unwrap();
    assert_eq!(l, Level::Restricted);
    assert_eq!(Level::default(), Level::Baseline);
    assert_eq!(Level::Privileged.to_string(), "privileged");
}

#[test]
fn a_plain_workflow_is_admitted_at_baseline() {
    let w = json!({"spec": {
        "securityContext": {"runAsUser": 0, "fsGroup": 2000,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]},
        "volumes": [{"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
        "templates": [
            {"name": "main", "steps": [[{"name": "a", "template": "t"}]]},
            {"name": "t",
             "metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "runtime/default"}},
             "container": {"image": "debian", "ports": [{"containerPort": 80}],
                           "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE", "CHOWN"]},
                                               "procMount": "Default",
                                               "seLinuxOptions": {"type": "container_t"}}},
             "sidecars": [{"name": "s", "image": "nginx", "ports": [{"containerPort": 8080, "hostPort": 0}]}]},
            {"name": "s", "script": {"image": "python", "source": "print(1)"}}]}});
    assert_eq!(refused(Level::Baseline, &w), vec![]);
    // The same workflow is far from restricted.
    assert!(refused(Level::Restricted, &w).len() > 5);
}

#[test]
fn a_hardened_workflow_is_admitted_at_restricted() {
    let mut init = hardened();
    init["name"] = json!("i");
    let w = json!({"spec": {
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "work", "emptyDir": {}}, {"name": "data", "persistentVolumeClaim": {"claimName": "d"}},
                    {"name": "s", "secret": {"secretName": "s"}}, {"name": "p", "projected": {"sources": []}},
                    {"name": "c", "csi": {"driver": "x"}}, {"name": "e", "ephemeral": {}},
                    {"name": "d", "downwardAPI": {}}],
        "templates": [
            {"name": "main", "steps": [[{"name": "a", "template": "t"}]]},
            {"name": "t", "container": {"image": "x", "securityContext": {
                "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}},
            {"name": "set", "containerSet": {"containers": [
                {"name": "a", "image": "x", "securityContext": {"allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]}},
            {"name": "h", "container": hardened(), "initContainers": [init]}]}});
    assert_eq!(refused(Level::Restricted, &w), vec![]);
    assert_eq!(refused(Level::Baseline, &w), vec![]);
}

#[test]
fn the_privileged_level_admits_everything() {
    let w = json!({"spec": {"hostNetwork": true, "volumes": [{"name": "d", "hostPath": {"path": "/"}}],
        "templates": [{"name": "t", "container": {"image": "x", "securityContext": {
            "privileged": true, "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN"]}}}}]}});
    assert_eq!(check(Level::Privileged, &w, &[]), vec![]);
    assert!(!check(Level::Baseline, &w, &[]).is_empty());
}

#[test]
fn host_namespaces_from_the_spec_and_from_a_pod_spec_patch() {
    let mut w = step(json!({"image": "x"}));
    w["spec"]["hostNetwork"] = json!(true);
    w["spec"]["templates"][0]["podSpecPatch"] = json!("hostPID: true\nhostIPC: false\n");
    let b = "violates PodSecurity \"baseline:latest\": host namespaces";
    assert_eq!(
        refused(Level::Baseline, &w),
        vec![
            (
                "spec.templates[0].podSpecPatch: hostPID".into(),
                "true".into(),
                format!("{b} (hostPID=true)")
            ),
            (
                "spec.hostNetwork".into(),
                "true".into(),
                format!("{b} (hostNetwork=true)")
            ),
        ]
    );
    // A JSON patch on the workflow, seen from two steps, is refused once.
    let mut w = wf(json!([{"name": "a", "container": {"image": "x"}},
                          {"name": "b", "script": {"image": "x", "source": "true"}}]));
    w["spec"]["podSpecPatch"] = json!(r#"{"hostIPC": true}"#);
    assert_eq!(
        refused(Level::Baseline, &w),
        one(
            "spec.podSpecPatch: hostIPC",
            "true",
            &format!("{b} (hostIPC=true)")
        )
    );
}

#[test]
fn privileged_containers() {
    let w = wf(json!([{"name": "t", "container": {"image": "x"},
        "sidecars": [{"name": "dind", "image": "docker:dind", "securityContext": {"privileged": true}}]}]));
    assert_eq!(
        refused(Level::Baseline, &w),
        one(
            "spec.templates[0].sidecars[0].securityContext.privileged",
            "true",
            "violates PodSecurity \"baseline:latest\": privileged (container \"dind\" must not set securityContext.privileged=true)"
        )
    );
}

#[test]
fn capabilities_beyond_the_default_set() {
    let w = step(json!({"image": "x", "securityContext": {"capabilities": {
        "add": ["SYS_ADMIN", "CHOWN", "CAP_CHOWN", "NET_ADMIN"]}}}));
    assert_eq!(
        refused(Level::Baseline, &w),
        one(
            "spec.templates[0].container.securityContext.capabilities.add",
            r#"["SYS_ADMIN","CHOWN","CAP_CHOWN","NET_ADMIN"]"#,
            "violates PodSecurity \"baseline:latest\": non-default capabilities (container \"main\" must not include \"CAP_CHOWN\", \"NET_ADMIN\", \"SYS_ADMIN\" in securityContext.capabilities.add)"
        )
    );
}

#[test]
fn host_path_volumes_of_the_workflow_and_the_template() {
    let mut w = wf(json!([{"name": "t", "container": {"image": "x"},
        "volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]}]));
    w["spec"]["volumes"] =
        json!([{"name": "ok", "emptyDir": {}}, {"name": "root", "hostPath": {"path": "/"}}]);
    let b = "violates PodSecurity \"baseline:latest\": hostPath volumes";
    assert_eq!(
        refused(Level::Baseline, &w),
        vec![
            (
                "spec.templates[0].volumes[0].hostPath".into(),
                r#"{"path":"/var/run/docker.sock"}"#.into(),
                format!("{b} (volume \"sock\")")
            ),
            (
                "spec.volumes[1].hostPath".into(),
                r#"{"path":"/"}"#.into(),
                format!("{b} (volume \"root\")")
            ),
        ]
    );
}

#[test]
fn host_ports() {
    let w = wf(json!([{"name": "t", "containerSet": {"containers": [
        {"name": "web", "image": "x", "ports": [{"containerPort": 80}, {"containerPort": 443, "hostPort": 8443}]}]}}]));
    assert_eq!(
        refused(Level::Baseline, &w),
        one(
            "spec.templates[0].containerSet.containers[0].ports[1].hostPort",
            "8443",
            "violates PodSecurity \"baseline:latest\": hostPort (container \"web\" uses hostPort 8443)"
        )
    );
}

#[test]
fn proc_mount_seccomp_apparmor_selinux_and_host_process() {
    let w = json!({"spec": {
        "securityContext": {"seccompProfile": {"type": "Unconfined"},
                            "seLinuxOptions": {"type": "spc_t", "user": "system_u"},
                            "windowsOptions": {"hostProcess": true},
                            "appArmorProfile": {"type": "Unconfined"}},
        "podMetadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}},
        "templates": [{"name": "t", "initContainers": [{"name": "i", "image": "x", "securityContext": {
            "procMount": "Unmasked", "seccompProfile": {"type": "Unconfined"},
            "seLinuxOptions": {"role": "sysadm_r"}, "windowsOptions": {"hostProcess": true},
            "appArmorProfile": {"type": "Localhost", "localhostProfile": "p"}}}],
            "container": {"image": "x", "securityContext": {"appArmorProfile": {"type": "Unconfined"}}}}]}});
    let got: Vec<(String, String)> = refused(Level::Baseline, &w)
        .into_iter()
        .map(|(f, _, m)| (f, m))
        .collect();
    let b = "violates PodSecurity \"baseline:latest\":";
    let want: Vec<(String, String)> = [
        ("spec.templates[0].initContainers[0].securityContext.procMount",
         "procMount (container \"i\" must not set securityContext.procMount to \"Unmasked\")"),
        ("spec.templates[0].initContainers[0].securityContext.seccompProfile.type",
         "seccompProfile (container \"i\" must not set securityContext.seccompProfile.type to \"Unconfined\")"),
        ("spec.templates[0].initContainers[0].securityContext.seLinuxOptions.role",
         "seLinuxOptions (container \"i\" set forbidden securityContext.seLinuxOptions: role may not be set)"),
        ("spec.templates[0].initContainers[0].securityContext.windowsOptions.hostProcess",
         "hostProcess (container \"i\" must not set securityContext.windowsOptions.hostProcess=true)"),
        ("spec.templates[0].container.securityContext.appArmorProfile.type",
         "forbidden AppArmor profile (container \"main\" must not set securityContext.appArmorProfile.type to \"Unconfined\")"),
        ("spec.securityContext.seccompProfile.type",
         "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"),
        ("spec.securityContext.seLinuxOptions.type",
         "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: type \"spc_t\")"),
        ("spec.securityContext.seLinuxOptions.user",
         "seLinuxOptions (pod set forbidden securityContext.seLinuxOptions: user may not be set)"),
        ("spec.securityContext.windowsOptions.hostProcess",
         "hostProcess (pod must not set securityContext.windowsOptions.hostProcess=true)"),
        ("spec.securityContext.appArmorProfile.type",
         "forbidden AppArmor profile (pod must not set securityContext.appArmorProfile.type to \"Unconfined\")"),
        ("spec.podMetadata.annotations[\"container.apparmor.security.beta.kubernetes.io/main\"]",
         "forbidden AppArmor profile (container.apparmor.security.beta.kubernetes.io/main=\"unconfined\")"),
    ]
    .into_iter()
    .map(|(f, m)| (f.to_string(), format!("{b} {m}")))
    .collect();
    // Pod-level checks come first, then the containers'; compare as sets.
    let mut got_sorted = got.clone();
    got_sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(got_sorted, want_sorted, "{got:#?}");
}

#[test]
fn sysctls_outside_the_safe_set() {
    let w = json!({"spec": {"templates": [{"name": "t", "container": {"image": "x"},
        "securityContext": {"sysctls": [{"name": "kernel.shm_rmid_forced", "value": "1"},
                                        {"name": "kernel.msgmax", "value": "65536"}]}}]}});
    assert_eq!(
        refused(Level::Baseline, &w),
        one(
            "spec.templates[0].securityContext.sysctls[1].name",
            "\"kernel.msgmax\"",
            "violates PodSecurity \"baseline:latest\": forbidden sysctls (kernel.msgmax)"
        )
    );
}

#[test]
fn restricted_wants_every_field_set() {
    let w = step(json!({"image": "x"}));
    let r = "violates PodSecurity \"restricted:latest\":";
    let at = "spec.templates[0].container.securityContext";
    let want: Vec<(String, String, String)> = [
        ("allowPrivilegeEscalation", "allowPrivilegeEscalation != false (container \"main\" must set securityContext.allowPrivilegeEscalation=false)"),
        ("capabilities.drop", "unrestricted capabilities (container \"main\" must set securityContext.capabilities.drop=[\"ALL\"])"),
        ("runAsNonRoot", "runAsNonRoot != true (pod or container \"main\" must set securityContext.runAsNonRoot=true)"),
        ("seccompProfile.type", "seccompProfile (pod or container \"main\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")"),
    ]
    .into_iter()
    .map(|(f, m)| (format!("{at}.{f}"), "unset".to_string(), format!("{r} {m}")))
    .collect();
    assert_eq!(refused(Level::Restricted, &w), want);
}

#[test]
fn restricted_refuses_wrong_values_where_they_are_set() {
    let w = json!({"spec": {
        "securityContext": {"runAsNonRoot": false, "runAsUser": 0, "seccompProfile": {"type": "Unconfined"}},
        "volumes": [{"name": "nfs", "nfs": {"server": "s", "path": "/"}}, {"name": "h", "hostPath": {"path": "/"}}],
        "templates": [{"name": "t", "container": {"image": "x", "securityContext": {
            "allowPrivilegeEscalation": true, "runAsUser": 0,
            "capabilities": {"drop": ["NET_RAW"], "add": ["CHOWN", "NET_BIND_SERVICE"]}}}}]}});
    let r = "violates PodSecurity \"restricted:latest\":";
    let c = "spec.templates[0].container.securityContext";
    let want: Vec<(String, String, String)> = [
        ("spec.securityContext.seccompProfile.type".into(), "\"Unconfined\"",
         "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")"),
        ("spec.securityContext.runAsUser".into(), "0", "runAsUser=0 (pod must not set runAsUser=0)"),
        ("spec.securityContext.runAsNonRoot".into(), "false",
         "runAsNonRoot != true (pod must not set securityContext.runAsNonRoot=false)"),
        ("spec.volumes[0].nfs".into(), r#"{"server":"s","path":"/"}"#,
         "restricted volume types (volume \"nfs\" uses restricted volume type \"nfs\")"),
        ("spec.volumes[1].hostPath".into(), r#"{"path":"/"}"#,
         "restricted volume types (volume \"h\" uses restricted volume type \"hostPath\")"),
        (format!("{c}.capabilities.add"), r#"["CHOWN","NET_BIND_SERVICE"]"#,
         "unrestricted capabilities (container \"main\" must not include \"CHOWN\" in securityContext.capabilities.add)"),
        (format!("{c}.runAsUser"), "0", "runAsUser=0 (container \"main\" must not set runAsUser=0)"),
        (format!("{c}.allowPrivilegeEscalation"), "true",
         "allowPrivilegeEscalation != false (container \"main\" must set securityContext.allowPrivilegeEscalation=false)"),
        (format!("{c}.capabilities.drop"), r#"["NET_RAW"]"#,
         "unrestricted capabilities (container \"main\" must set securityContext.capabilities.drop=[\"ALL\"])"),
    ]
    .into_iter()
    .map(|(f, v, m)| (f, v.to_string(), format!("{r} {m}")))
    .collect();
    assert_eq!(refused(Level::Restricted, &w), want);
}

#[test]
fn a_template_security_context_replaces_the_workflows() {
    // The workflow's pod-level settings do not reach a template that sets its own.
    let w = json!({"spec": {
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "templates": [{"name": "t", "securityContext": {"fsGroup": 1},
                       "container": {"image": "x", "securityContext": {
                           "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}}]}});
    let fields: Vec<String> = refused(Level::Restricted, &w)
        .into_iter()
        .map(|r| r.0)
        .collect();
    let at = "spec.templates[0].container.securityContext";
    assert_eq!(
        fields,
        vec![
            format!("{at}.runAsNonRoot"),
            format!("{at}.seccompProfile.type")
        ]
    );
}

#[test]
fn a_pod_spec_patch_sets_and_breaks_fields() {
    // The patch hardens the main container and the pod; it makes the sidecar privileged.
    let patch = r#"{"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "main", "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}},
                       {"name": "side", "securityContext": {"privileged": true}}]}"#;
    let w = json!({"spec": {"templates": [{"name": "t", "podSpecPatch": patch,
        "container": {"image": "x"},
        "sidecars": [{"name": "side", "image": "x", "securityContext": {
            "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}]}});
    let got = refused(Level::Restricted, &w);
    assert_eq!(
        got,
        one(
            "spec.templates[0].podSpecPatch: containers[1].securityContext.privileged",
            "true",
            "violates PodSecurity \"restricted:latest\": privileged (container \"side\" must not set securityContext.privileged=true)"
        )
    );
    // A patch that is neither JSON nor YAML is skipped.
    let mut w = step(json!({"image": "x"}));
    w["spec"]["podSpecPatch"] = json!("{{workflow.parameters.patch}");
    assert_eq!(refused(Level::Baseline, &w), vec![]);
}

#[test]
fn windows_pods_are_exempt_from_some_restricted_checks() {
    let w = json!({"spec": {"securityContext": {"runAsNonRoot": true},
        "templates": [{"name": "t", "podSpecPatch": "os: {name: windows}",
                       "container": {"image": "x"}}]}});
    assert_eq!(refused(Level::Restricted, &w), vec![]);
}

#[test]
fn template_defaults_and_workflow_templates_are_checked_under_their_name() {
    let lib = json!({"kind": "ClusterWorkflowTemplate", "metadata": {"name": "lib"},
        "spec": {"templateDefaults": {"container": {"securityContext": {"privileged": true}}},
                 "templates": [{"name": "t", "container": {"image": "x",
                     "securityContext": {"capabilities": {"add": ["SYS_PTRACE"]}}}}]}});
    let fields: Vec<String> = check(Level::Baseline, &wf(json!([])), &[lib])
        .into_iter()
        .map(|r| r.field)
        .collect();
    assert_eq!(
        fields,
        vec![
            "ClusterWorkflowTemplate/lib.spec.templates[0].container.securityContext.capabilities.add",
            "ClusterWorkflowTemplate/lib.spec.templateDefaults.container.securityContext.privileged",
        ]
    );
}

#[test]
fn pods_in_a_resource_manifest_are_checked() {
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      hostPID: true\n      containers:\n      - name: c\n        image: x\n        securityContext: {privileged: true}\n";
    let w = wf(json!([{"name": "r", "resource": {"action": "create", "manifest": job}}]));
    let fields: Vec<String> = refused(Level::Baseline, &w)
        .into_iter()
        .map(|r| r.0)
        .collect();
    let at = "spec.templates[0].resource.manifest: spec.template.spec";
    assert_eq!(
        fields,
        vec![
            format!("{at}.hostPID"),
            format!("{at}.containers[0].securityContext.privileged")
        ]
    );
}

#[test]
fn refusals_read_as_kubernetes_words_them() {
    let mut w = step(json!({"image": "x"}));
    w["spec"]["hostNetwork"] = json!(true);
    let r = &check(Level::Baseline, &w, &[])[0];
    assert_eq!(
        r.message,
        "violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
    );
    assert_eq!(
        r.to_string(),
        "admission rule pod_security: spec.hostNetwork is true: violates PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
    );
}

/// JSON shaped like workflows: the fields the checks read, holding anything.
fn json() -> impl Strategy<Value = Value> {
    let keys = vec![
        "spec",
        "templates",
        "templateDefaults",
        "container",
        "script",
        "initContainers",
        "sidecars",
        "containerSet",
        "containers",
        "name",
        "kind",
        "metadata",
        "annotations",
        "podMetadata",
        "container.apparmor.security.beta.kubernetes.io/main",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "securityContext",
        "privileged",
        "capabilities",
        "add",
        "drop",
        "ports",
        "hostPort",
        "procMount",
        "seccompProfile",
        "appArmorProfile",
        "type",
        "seLinuxOptions",
        "user",
        "role",
        "sysctls",
        "windowsOptions",
        "hostProcess",
        "volumes",
        "hostPath",
        "nfs",
        "emptyDir",
        "allowPrivilegeEscalation",
        "runAsNonRoot",
        "runAsUser",
        "podSpecPatch",
        "os",
        "resource",
        "manifest",
        "template",
        "tasks",
    ];
    let texts = vec![
        "[a-zA-Z0-9./:_ -]{0,12}".prop_map(Value::from).boxed(),
        Just(Value::from("ALL")).boxed(),
        Just(Value::from("Unconfined")).boxed(),
        Just(Value::from(
            "{\"hostPID\": true, \"containers\": [{\"name\": \"main\"}]}",
        ))
        .boxed(),
        Just(Value::from(
            "securityContext:\n  runAsUser: 0\nos: {name: windows}\n",
        ))
        .boxed(),
        Just(Value::from(
            "kind: Pod\nspec:\n  containers:\n  - {name: c, ports: [{hostPort: 1}]}\n",
        ))
        .boxed(),
        "[{}\\[\\]:,\"a-z\n -]{0,24}".prop_map(Value::from).boxed(),
    ];
    workflow_shaped(keys, texts)
}

proptest::proptest! {
    #[test]
    fn any_json_is_checked_without_panic(v in json(), t in json()) {
        for level in [Level::Privileged, Level::Baseline, Level::Restricted] {
            let refused = check(level, &v, std::slice::from_ref(&t));
            if level == Level::Privileged {
                proptest::prop_assert!(refused.is_empty());
            }
            for r in refused {
                proptest::prop_assert!(!r.field.is_empty() && !r.value.is_empty());
                proptest::prop_assert_eq!(r.rule, "pod_security");
            }
        }
    }
}

/// The pod as a shell finally makes it — after parameters and patches — checked whole: what
/// submission could not see is refused here.
#[test]
fn a_whole_pod_is_checked_as_it_is_made() {
    let pod = json!({"metadata": {"name": "p"}, "spec": {
        "hostPID": true,
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        "containers": [{"name": "main", "image": "busybox",
            "securityContext": {"privileged": true}}]}});
    let fields: Vec<String> = check_pod(Level::Baseline, &pod)
        .into_iter()
        .map(|r| r.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.hostPID",
            "spec.volumes[0].hostPath",
            "spec.containers[0].securityContext.privileged"
        ],
        "{fields:?}"
    );
    assert!(check_pod(Level::Privileged, &pod).is_empty());
    let plain = json!({"spec": {"containers": [{"name": "main", "image": "busybox"}]}});
    assert!(check_pod(Level::Baseline, &plain).is_empty());
    assert!(!check_pod(Level::Restricted, &plain).is_empty());
}
