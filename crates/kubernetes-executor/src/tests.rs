//! The pure parts as data: a template in, the Pod (or the step's end, or the node) out.

use std::sync::Arc;

use expect_test::{expect, Expect};
use serde_json::{json, Value};
use workflow_engine::PodRequest;
use workflow_model::Template;

use crate::nodes::node_spec;
use crate::pod_shape::{merge_pod_spec, pod_manifest, PodContext};
use crate::pod_status::{pod_phase, PodPhase};

fn at(s: &str) -> workflow_engine::Time {
    s.parse().unwrap()
}

/// The pod of `template` (JSON), with ONYX's executor image or without.
fn check_pod(template: Value, executor_image: Option<&str>, expect: Expect) {
    check_pod_at(template, executor_image, false, expect)
}

/// The pod of `template` in a namespace at level `restricted` or not.
fn check_pod_at(template: Value, executor_image: Option<&str>, restricted: bool, expect: Expect) {
    let t: Template = workflow_model::decode(&template).unwrap();
    let req = PodRequest {
        node_id: "wf-123".into(),
        pod_name: "wf-step-123".into(),
        template: Arc::new(t),
        input_artifacts: vec![],
        output_artifacts: vec![],
        volumes: vec![json!({"name": "data", "persistentVolumeClaim": {"claimName": "d"}})],
        deadline: Some(at("2026-12-07T10:01:30Z")),
        capture_result: true,
    };
    let cx = PodContext {
        namespace: "team-a",
        workflow: "wf",
        executor_image,
        grant: Some(r#"{"node":"gpu-01"}"#.into()),
        pod_spec_patch: req.template.pod_spec_patch.as_deref(),
        now: at("2026-12-07T10:00:00Z"),
        restricted,
    };
    let out = match pod_manifest(&req, &cx) {
        Ok(pod) => serde_json::to_string_pretty(&pod).unwrap(),
        Err(e) => format!("error: {e}"),
    };
    expect.assert_eq(&out);
}

#[test]
fn a_container_template_becomes_argos_pod_bound_by_onyx() {
    check_pod(
        json!({"name": "train", "metadata": {"labels": {"team": "vision"},
                 "annotations": {"note": "x"}},
               "nodeSelector": {"nvidia.com/gpu.product": "H100"},
               "container": {"image": "pytorch", "command": ["python"], "args": ["train.py"],
                  "env": [{"name": "A", "value": "1"}],
                  "resources": {"limits": {"nvidia.com/gpu": 8}}},
               "podSpecPatch": "containers:\n- name: main\n  resources:\n    limits:\n      memory: 1Gi\nnodeName: evil\nschedulerName: default-scheduler\n"}),
        None,
        expect![[r#"
            {
              "apiVersion": "v1",
              "kind": "Pod",
              "metadata": {
                "name": "wf-step-123",
                "namespace": "team-a",
                "labels": {
                  "team": "vision",
                  "workflows.argoproj.io/workflow": "wf",
                  "workflows.argoproj.io/completed": "false",
                  "onyx.io/managed": "true"
                },
                "annotations": {
                  "note": "x",
                  "workflows.argoproj.io/node-id": "wf-123",
                  "onyx.io/grant": "{\"node\":\"gpu-01\"}"
                }
              },
              "spec": {
                "restartPolicy": "Never",
                "schedulerName": "onyx",
                "containers": [
                  {
                    "image": "pytorch",
                    "command": [
                      "python"
                    ],
                    "args": [
                      "train.py"
                    ],
                    "env": [
                      {
                        "name": "A",
                        "value": "1"
                      }
                    ],
                    "resources": {
                      "limits": {
                        "nvidia.com/gpu": "8",
                        "memory": "1Gi"
                      }
                    },
                    "name": "main"
                  }
                ],
                "volumes": [
                  {
                    "name": "data",
                    "persistentVolumeClaim": {
                      "claimName": "d"
                    }
                  }
                ],
                "nodeSelector": {
                  "nvidia.com/gpu.product": "H100"
                },
                "activeDeadlineSeconds": 90,
                "automountServiceAccountToken": false
              }
            }"#]],
    );
}

#[test]
fn with_the_executor_image_main_runs_under_onyx_emissary() {
    check_pod(
        json!({"name": "s", "script": {"image": "python", "command": ["python"],
                  "source": "print(1)"},
               "outputs": {"parameters": [{"name": "p", "valueFrom": {"path": "/tmp/p"}}]}}),
        Some("onyx:dev"),
        expect![[r#"
            {
              "apiVersion": "v1",
              "kind": "Pod",
              "metadata": {
                "name": "wf-step-123",
                "namespace": "team-a",
                "labels": {
                  "workflows.argoproj.io/workflow": "wf",
                  "workflows.argoproj.io/completed": "false",
                  "onyx.io/managed": "true"
                },
                "annotations": {
                  "workflows.argoproj.io/node-id": "wf-123",
                  "onyx.io/grant": "{\"node\":\"gpu-01\"}"
                }
              },
              "spec": {
                "restartPolicy": "Never",
                "schedulerName": "onyx",
                "containers": [
                  {
                    "image": "python",
                    "command": [
                      "/var/run/onyx/lib/ld.so",
                      "--library-path",
                      "/var/run/onyx/lib",
                      "/var/run/onyx/onyx",
                      "emissary",
                      "--script",
                      "--",
                      "python"
                    ],
                    "name": "main",
                    "volumeMounts": [
                      {
                        "name": "onyx-executor",
                        "mountPath": "/var/run/onyx"
                      }
                    ],
                    "env": [
                      {
                        "name": "ONYX_OUTPUTS",
                        "value": "{\"result\":true,\"parameters\":[{\"name\":\"p\",\"path\":\"/tmp/p\"}]}"
                      },
                      {
                        "name": "ONYX_SCRIPT",
                        "value": "print(1)"
                      }
                    ]
                  }
                ],
                "initContainers": [
                  {
                    "name": "init",
                    "image": "onyx:dev",
                    "command": [
                      "onyx",
                      "install-executor",
                      "/var/run/onyx"
                    ],
                    "volumeMounts": [
                      {
                        "name": "onyx-executor",
                        "mountPath": "/var/run/onyx"
                      }
                    ]
                  }
                ],
                "volumes": [
                  {
                    "name": "data",
                    "persistentVolumeClaim": {
                      "claimName": "d"
                    }
                  },
                  {
                    "name": "onyx-executor",
                    "emptyDir": {}
                  }
                ],
                "activeDeadlineSeconds": 90,
                "automountServiceAccountToken": false
              }
            }"#]],
    );
}

#[test]
fn templates_that_are_not_pods_and_commandless_containers_under_the_executor_are_refused() {
    check_pod(
        json!({"name": "wait", "suspend": {}}),
        None,
        expect![
            "error: template wait: only container and script templates run as pods on Kubernetes"
        ],
    );
    check_pod(
        json!({"name": "say", "container": {"image": "argoproj/argosay:v2"}}),
        Some("onyx:dev"),
        expect!["error: template say: the container has no command: ONYX's executor runs a container's command and cannot read an image's entrypoint; give `command`"],
    );
    check_pod(
        json!({"name": "p", "container": {"image": "a", "command": ["x"]},
               "podSpecPatch": "[1, 2"}),
        None,
        expect!["error: template p: podSpecPatch: 2:1: malformed YAML: did not find expected ',' or ']' while parsing a flow sequence"],
    );
}

#[test]
fn a_strategic_merge_patch_merges_named_lists_by_name() {
    let mut spec = json!({"containers": [{"name": "main", "image": "a",
        "env": [{"name": "X", "value": "1"}]}], "volumes": [{"name": "v", "emptyDir": {}}]});
    merge_pod_spec(
        &mut spec,
        &json!({"containers": [{"name": "main", "env": [{"name": "X", "value": "2"},
            {"name": "Y", "value": "3"}]}, {"name": "side", "image": "b"}],
            "volumes": [{"name": "v", "emptyDir": null, "configMap": {"name": "c"}}],
            "hostname": "h"}),
    );
    expect![[r#"{"containers":[{"name":"main","image":"a","env":[{"name":"X","value":"2"},{"name":"Y","value":"3"}]},{"name":"side","image":"b"}],"volumes":[{"name":"v","configMap":{"name":"c"}}],"hostname":"h"}"#]]
        .assert_eq(&spec.to_string());
}

fn check_status(pod: Value, expect: Expect) {
    let out = match pod_phase(&pod) {
        PodPhase::Pending(w) => format!("pending {w:?}"),
        PodPhase::Running { node } => format!("running on {node:?}"),
        PodPhase::Done(r) => format!(
            "done exit={:?} result={:?} parameters={:?} message={:?} deadline={}",
            r.exit_code, r.stdout, r.parameters, r.message, r.deadline_exceeded
        ),
    };
    expect.assert_eq(&out);
}

fn ended(code: i64, message: &str) -> Value {
    json!({"spec": {"nodeName": "gpu-01"}, "status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{"name": "main", "state": {"terminated":
            {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
             "message": message}}}]}})
}

#[test]
fn a_pods_status_is_its_steps_phase() {
    check_status(json!({}), expect!["pending None"]);
    check_status(
        json!({"status": {"phase": "Pending", "containerStatuses": [{"name": "main",
            "state": {"waiting": {"reason": "ErrImagePull", "message": "no such image"}}}]}}),
        expect![[r#"pending Some("ErrImagePull: no such image")"#]],
    );
    check_status(
        json!({"status": {"phase": "Pending", "containerStatuses": [{"name": "main",
            "state": {"waiting": {"reason": "ContainerCreating"}}}]}}),
        expect!["pending None"],
    );
    check_status(
        json!({"spec": {"nodeName": "gpu-01"}, "status": {"phase": "Running"}}),
        expect![[r#"running on Some("gpu-01")"#]],
    );
    check_status(
        ended(0, r#"{"result":"hi","parameters":[["p","v"],["q",null]]}"#),
        expect![[
            r#"done exit=Some(0) result=Some("hi") parameters=[("p", Some("v")), ("q", None)] message=None deadline=false"#
        ]],
    );
    check_status(
        ended(2, ""),
        expect![[
            r#"done exit=Some(2) result=None parameters=[] message=Some("Error (exit code 2)") deadline=false"#
        ]],
    );
    // A message the container wrote itself is the failed step's message, never outputs.
    check_status(
        ended(1, "disk full"),
        expect![[
            r#"done exit=Some(1) result=None parameters=[] message=Some("disk full") deadline=false"#
        ]],
    );
    check_status(
        ended(0, r#"{"result":"x","extra":1}"#),
        expect!["done exit=Some(0) result=None parameters=[] message=None deadline=false"],
    );
    check_status(
        json!({"status": {"phase": "Failed", "reason": "DeadlineExceeded",
            "message": "Pod was active on the node longer than the specified deadline"}}),
        expect![[
            r#"done exit=None result=None parameters=[] message=Some("DeadlineExceeded: Pod was active on the node longer than the specified deadline") deadline=true"#
        ]],
    );
    check_status(
        json!({"status": {"phase": "Failed", "reason": "Evicted"}}),
        expect![[
            r#"done exit=None result=None parameters=[] message=Some("Evicted") deadline=false"#
        ]],
    );
}

fn check_node(node: Value, expect: Expect) {
    let (spec, left_out) = node_spec(&node);
    expect.assert_eq(&format!(
        "{} gpu={:?} mig={:?} unschedulable={} taints={:?} left_out={left_out:?}",
        spec.name,
        spec.allocatable.get("nvidia.com/gpu"),
        spec.mig,
        spec.unschedulable,
        spec.taints.iter().map(|t| &t.key).collect::<Vec<_>>()
    ));
}

#[test]
fn nodes_are_read_as_the_scheduler_counts_gpus_and_mig_instances() {
    let ready = json!([{"type": "Ready", "status": "True"}]);
    check_node(
        json!({"metadata": {"name": "gpu-01"}, "status": {"conditions": ready,
            "allocatable": {"nvidia.com/gpu": "2", "cpu": "96"}}}),
        expect![[
            r#"gpu-01 gpu=Some(Text("2")) mig=Some([[], []]) unschedulable=false taints=[] left_out=[]"#
        ]],
    );
    // Mixed strategy: 1 whole GPU, 7 + 2 instances laid out on two partitioned GPUs.
    check_node(
        json!({"metadata": {"name": "mig-01"}, "status": {"conditions": ready,
            "allocatable": {"nvidia.com/gpu": "1", "nvidia.com/mig-1g.10gb": "7",
                "nvidia.com/mig-3g.40gb": "2", "nvidia.com/mig-9g.1tb": "1"}}}),
        expect![[
            r#"mig-01 gpu=Some(Text("3")) mig=Some([[], ["3g.40gb", "3g.40gb"], ["1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb", "1g.10gb"]]) unschedulable=false taints=[] left_out=["mig-01: nvidia.com/mig-9g.1tb is not a MIG profile ONYX knows"]"#
        ]],
    );
    check_node(
        json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true,
            "taints": [{"key": "a", "effect": "NoSchedule"}]},
            "status": {"conditions": ready}}),
        expect![[r#"n gpu=None mig=Some([]) unschedulable=true taints=["a"] left_out=[]"#]],
    );
    check_node(
        json!({"metadata": {"name": "down"}, "status": {"conditions":
            [{"type": "Ready", "status": "Unknown"}]}}),
        expect![[r#"down gpu=None mig=Some([]) unschedulable=true taints=[] left_out=[]"#]],
    );
}

/// `onyx emissary` over a real `sh`: what it writes to the termination message, and the
/// exit code it passes on.
fn check_emissary(outputs: Value, script: Option<&str>, command: &[&str], expect: Expect) {
    let dir = std::env::temp_dir().join(format!(
        "onyx-emissary-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let e = crate::emissary::Emissary {
        outputs: serde_json::from_str(&outputs.to_string().replace("DIR", dir.to_str().unwrap()))
            .unwrap(),
        script: script.map(String::from),
        script_dir: dir.clone(),
        termination_log: dir.join("termination-log"),
    };
    let command = command
        .iter()
        .map(|a| a.replace("DIR", dir.to_str().unwrap()))
        .collect();
    let code = e.run(command);
    let message = std::fs::read_to_string(dir.join("termination-log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    expect.assert_eq(&format!("exit {code}: {message}"));
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn the_emissary_reports_result_and_parameters_in_the_termination_message() {
    check_emissary(
        json!({"result": true, "parameters": [{"name": "p", "path": "DIR/p"},
            {"name": "gone", "path": "DIR/none"}]}),
        None,
        &["sh", "-c", "echo hello; printf v1 > DIR/p"],
        expect![[r#"exit 0: {"result":"hello\n","parameters":[["p","v1"],["gone",null]]}"#]],
    );
    check_emissary(
        json!({}),
        None,
        &["sh", "-c", "exit 3"],
        expect!["exit 3: {}"],
    );
    check_emissary(
        json!({"result": true}),
        Some("echo from the script $0 | sed s,/.*/,/,"),
        &["sh"],
        expect![[r#"exit 0: {"result":"from the script /script\n"}"#]],
    );
    check_emissary(
        json!({}),
        None,
        &["/no/such/program"],
        expect![[
            r#"exit 1: {"error":"starting /no/such/program: No such file or directory (os error 2)"}"#
        ]],
    );
    check_emissary(
        json!({"result": true}),
        None,
        &["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x"],
        expect![[
            r#"exit 0: {"error":"the step's outputs are 5013 bytes, more than the 4096 bytes Kubernetes keeps of a termination message: put large outputs in artifacts"}"#
        ]],
    );
}

#[test]
fn the_executor_installs_the_shared_objects_it_is_mapped_with() {
    let maps = "\
5555-6666 r--p 00000000 fd:01 12 /usr/local/bin/onyx
7f00-7f01 r--p 00000000 fd:01 13 /usr/lib/x86_64-linux-gnu/libc.so.6
7f01-7f02 r-xp 00001000 fd:01 13 /usr/lib/x86_64-linux-gnu/libc.so.6
7f02-7f03 rw-p 00000000 00:00 0
7f03-7f04 r--p 00000000 fd:01 14 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffd-7ffe rw-p 00000000 00:00 0 [stack]
7f05-7f06 r--p 00000000 fd:01 15 /usr/lib/locale/C.utf8/LC_CTYPE
";
    expect![[r#"["/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"]"#]]
        .assert_eq(&format!("{:?}", crate::emissary::shared_objects(maps)));
}

fn check_grant(pod_spec: Value, requests: &[(&str, &str)], priority: &str, expect: Expect) {
    let ask = cluster_shell::Ask {
        namespace: "team-a".into(),
        requests: requests
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        priority_class: priority.into(),
        ..Default::default()
    };
    let out = crate::pod_shape::beyond_grant(&json!({"spec": pod_spec}), &ask);
    expect.assert_eq(&format!("{out:?}"));
}

#[test]
fn a_pod_may_not_ask_for_more_than_it_was_placed_with() {
    let gpus = |n: &str| json!({"limits": {"nvidia.com/gpu": n}});
    check_grant(
        json!({"containers": [{"name": "main", "resources": gpus("2")}]}),
        &[("nvidia.com/gpu", "2")],
        "",
        expect!["None"],
    );
    // A sidecar's GPUs count with main's.
    check_grant(
        json!({"containers": [{"name": "main", "resources": gpus("2")},
            {"name": "hog", "resources": gpus("8")}]}),
        &[("nvidia.com/gpu", "2")],
        "",
        expect![[
            r#"Some("the pod asks for 10 of nvidia.com/gpu and was placed with 2: resources are set in the template's container, not by a patch, a sidecar or an init container")"#
        ]],
    );
    // An init container's, when larger than the containers' sum.
    check_grant(
        json!({"initContainers": [{"name": "i", "resources": {"limits": {"nvidia.com/mig-1g.10gb": 1}}}],
            "containers": [{"name": "main"}]}),
        &[],
        "",
        expect![[
            r#"Some("the pod asks for 1 of nvidia.com/mig-1g.10gb and was placed with 0: resources are set in the template's container, not by a patch, a sidecar or an init container")"#
        ]],
    );
    check_grant(
        json!({"priorityClassName": "system-node-critical", "containers": [{"name": "main"}]}),
        &[],
        "",
        expect![[
            r#"Some("the pod's priority class \"system-node-critical\" is not the one it was scheduled with (\"\")")"#
        ]],
    );
    check_grant(
        json!({"containers": [{"name": "main", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}]}),
        &[],
        "",
        expect![[
            r#"Some("container main: NVIDIA_VISIBLE_DEVICES is the device plugin's to set: ask for GPUs in resources")"#
        ]],
    );
    // CPU and memory are the kubelet's to account; only extended resources are compared.
    check_grant(
        json!({"containers": [{"name": "main", "resources": {"limits": {"cpu": "64", "memory": "1Ti"}}}]}),
        &[],
        "",
        expect!["None"],
    );
}

#[test]
fn a_restricted_namespaces_pod_gets_that_levels_settings() {
    check_pod_at(
        json!({"name": "r", "container": {"image": "a", "command": ["x"]}}),
        None,
        true,
        expect![[r#"
            {
              "apiVersion": "v1",
              "kind": "Pod",
              "metadata": {
                "name": "wf-step-123",
                "namespace": "team-a",
                "labels": {
                  "workflows.argoproj.io/workflow": "wf",
                  "workflows.argoproj.io/completed": "false",
                  "onyx.io/managed": "true"
                },
                "annotations": {
                  "workflows.argoproj.io/node-id": "wf-123",
                  "onyx.io/grant": "{\"node\":\"gpu-01\"}"
                }
              },
              "spec": {
                "restartPolicy": "Never",
                "schedulerName": "onyx",
                "containers": [
                  {
                    "image": "a",
                    "command": [
                      "x"
                    ],
                    "name": "main",
                    "securityContext": {
                      "allowPrivilegeEscalation": false,
                      "capabilities": {
                        "drop": [
                          "ALL"
                        ]
                      }
                    }
                  }
                ],
                "volumes": [
                  {
                    "name": "data",
                    "persistentVolumeClaim": {
                      "claimName": "d"
                    }
                  }
                ],
                "activeDeadlineSeconds": 90,
                "automountServiceAccountToken": false,
                "securityContext": {
                  "runAsNonRoot": true,
                  "seccompProfile": {
                    "type": "RuntimeDefault"
                  }
                }
              }
            }"#]],
    );
}

#[test]
fn onyx_cluster_nodes_prints_what_the_scheduler_sees() {
    let ready = json!([{"type": "Ready", "status": "True"}]);
    let specs: Vec<scheduler::NodeSpec> = [
        json!({"metadata": {"name": "gpu-01", "labels": {"nvidia.com/gpu.product": "H100"}},
            "status": {"conditions": ready, "allocatable": {"nvidia.com/gpu": "8"}}}),
        json!({"metadata": {"name": "mig-01", "labels": {"nvidia.com/gpu.product": "H100"}},
            "spec": {"unschedulable": true,
                "taints": [{"key": "gpu", "value": "shared", "effect": "NoSchedule"}]},
            "status": {"conditions": ready, "allocatable": {"nvidia.com/gpu": "1",
                "nvidia.com/mig-3g.40gb": "2"}}}),
    ]
    .iter()
    .map(|n| node_spec(n).0)
    .collect();
    expect![[r#"
        NAME    GPUS  MIG              MODEL  SCHEDULABLE  TAINTS
        gpu-01  8     -                H100   yes          -
        mig-01  2     3g.40gb+3g.40gb  H100   no           gpu=shared:NoSchedule
    "#]]
    .assert_eq(&crate::nodes::table(&specs));
}

#[test]
fn a_relist_misses_only_pods_that_existed_before_it_began() {
    use std::time::{Duration, Instant};
    let began = Instant::now();
    let before = Some(began - Duration::from_secs(1));
    let after = Some(began + Duration::from_secs(1));
    let seen: std::collections::HashSet<String> = ["ns/listed".to_string()].into();
    let followed = [
        ("ns/listed", before),
        ("ns/deleted-meanwhile", before),
        ("ns/made-during-the-list", after),
        ("ns/still-being-made", None),
    ];
    expect![[r#"["ns/deleted-meanwhile"]"#]].assert_eq(&format!(
        "{:?}",
        crate::executor::missed(followed.into_iter(), began, &seen)
    ));
}
