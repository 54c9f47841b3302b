//! Engine behaviour on workflows written for these tests, against a simulated executor.
//! Each rule cites the Argo behaviour it checks.

mod support;

use support::{wf, Sim};

const SAY: &str = "  - name: say\n    inputs: {parameters: [{name: msg}]}\n    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}\n  - name: fail\n    container: {image: argosay, args: [exit, '1']}\n";

fn run(yaml: &str) -> Sim {
    Sim::new(yaml, &[])
        .expect("engine accepts the workflow")
        .run()
}

#[test]
fn steps_run_in_groups_and_pass_outputs() {
    let s = run(&wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: a\n        template: say\n        arguments: {{parameters: [{{name: msg, value: hello}}]}}\n    - - name: b\n        template: say\n        arguments: {{parameters: [{{name: msg, value: 'got {{{{steps.a.outputs.result}}}}'}}]}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node("b")["outputs"]["result"], "got hello");
    assert_eq!(s.node("[0]")["type"], "StepGroup");
    assert_eq!(s.node("[1]")["type"], "StepGroup");
    // Argo links the second group under the first group's step (outbound) nodes.
    let a_children = s.node("a")["children"].clone();
    assert_eq!(a_children[0], s.node("[1]")["id"]);
    assert_eq!(s.node("wf")["type"], "Steps");
}

#[test]
fn failed_step_fails_the_group_unless_continue_on() {
    let s = run(&wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: f\n        template: fail\n        continueOn: {{failed: true}}\n    - - name: after\n        template: say\n        arguments: {{parameters: [{{name: msg, value: 'code {{{{steps.f.exitCode}}}} {{{{steps.f.status}}}}'}}]}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node_phase("f"), "Failed");
    assert_eq!(s.node("after")["outputs"]["result"], "code 1 Failed");

    let s = run(&wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: f\n        template: fail\n    - - name: never\n        template: fail\n{SAY}")));
    assert_eq!(s.phase(), "Failed");
    assert_eq!(s.node_phase("never"), "<none>");
    assert!(s.json()["status"]["message"]
        .as_str()
        .unwrap()
        .starts_with("child '"));
}

#[test]
fn dag_depends_logic_omits_and_inherits_failure() {
    // B fails; D runs on B.Failed; E depends on B (succeeded) and is Omitted; as a target
    // that inherits B's failure, E fails the DAG (Argo's assessDAGPhase).
    let s = run(&wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - {{name: A, template: say, arguments: {{parameters: [{{name: msg, value: a}}]}}}}\n      - {{name: B, template: fail, depends: A}}\n      - {{name: D, template: say, depends: B.Failed, arguments: {{parameters: [{{name: msg, value: d}}]}}}}\n      - {{name: E, template: say, depends: B, arguments: {{parameters: [{{name: msg, value: e}}]}}}}\n{SAY}"
    )));
    assert_eq!(s.node_phase("D"), "Succeeded");
    assert_eq!(s.node_phase("E"), "Omitted");
    assert_eq!(s.node("E")["message"], "omitted: depends condition not met");
    assert_eq!(s.phase(), "Failed");
}

#[test]
fn dag_target_runs_only_what_it_needs_and_passes_task_outputs() {
    let s = run(&wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    outputs: {{parameters: [{{name: out, valueFrom: {{parameter: '{{{{tasks.C.outputs.result}}}}'}}}}]}}\n    dag:\n      target: C\n      tasks:\n      - {{name: A, template: say, arguments: {{parameters: [{{name: msg, value: a}}]}}}}\n      - {{name: B, template: say, arguments: {{parameters: [{{name: msg, value: b}}]}}}}\n      - {{name: C, template: say, depends: A, arguments: {{parameters: [{{name: msg, value: 'after {{{{tasks.A.outputs.result}}}}'}}]}}}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node_phase("B"), "<none>");
    assert_eq!(s.node("C")["outputs"]["result"], "after a");
    assert_eq!(s.node("wf")["outputs"]["parameters"][0]["value"], "after a");
}

#[test]
fn loops_expand_items_params_and_sequences_with_aggregated_outputs() {
    let s = run(&wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: items\n        template: say\n        withItems: [x, {{k: v}}, 3]\n        arguments: {{parameters: [{{name: msg, value: '{{{{item}}}}'}}]}}\n    - - name: seq\n        template: say\n        withSequence: {{start: '1', end: '3', format: 'n%02d'}}\n        arguments: {{parameters: [{{name: msg, value: '{{{{item}}}}'}}]}}\n    - - name: param\n        template: say\n        withParam: '{{{{steps.seq.outputs.result}}}}'\n        arguments: {{parameters: [{{name: msg, value: 'p-{{{{item}}}}'}}]}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node_phase("items(0:x)"), "Succeeded");
    assert_eq!(s.node("items(1:k:v)")["outputs"]["result"], r#"{"k":"v"}"#);
    assert_eq!(s.node("seq(1:n02)")["outputs"]["result"], "n02");
    assert_eq!(s.node("param(2:n03)")["outputs"]["result"], "p-n03");
}

#[test]
fn retries_make_retry_nodes_with_numbered_attempts() {
    let s = run(&wf(
        "  entrypoint: flaky\n  templates:\n  - name: flaky\n    retryStrategy: {limit: 3}\n    container: {image: argosay, args: [fail-once]}\n",
    ));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node("wf")["type"], "Retry");
    assert_eq!(s.node_phase("wf(0)"), "Failed");
    assert_eq!(s.node_phase("wf(1)"), "Succeeded");
    assert_eq!(s.count_type("Pod"), 2);

    // Limit 1 means two tries; the retry node fails with "No more retries left".
    let s = run(&wf("  entrypoint: bad\n  templates:\n  - name: bad\n    retryStrategy: {limit: 1}\n    container: {image: argosay, args: [exit, '1']}\n"));
    assert_eq!(s.phase(), "Failed");
    assert_eq!(s.count_type("Pod"), 2);
    assert_eq!(s.node("wf")["message"], "No more retries left");
}

#[test]
fn retry_policy_expression_and_backoff() {
    // OnError does not retry a Failed node.
    let s = run(&wf("  entrypoint: bad\n  templates:\n  - name: bad\n    retryStrategy: {limit: 5, retryPolicy: OnError}\n    container: {image: argosay, args: [exit, '1']}\n"));
    assert_eq!(s.count_type("Pod"), 1);
    // The expression stops retrying when the exit code is 1.
    let s = run(&wf("  entrypoint: bad\n  templates:\n  - name: bad\n    retryStrategy: {limit: 5, expression: 'asInt(lastRetry.exitCode) > 1'}\n    container: {image: argosay, args: [exit, '1']}\n"));
    assert_eq!(s.count_type("Pod"), 1);
    assert_eq!(
        s.node("wf")["message"],
        "retryStrategy.expression evaluated to false"
    );
    // Backoff 10s, factor 2: tries at 0, 10, 30 seconds.
    let s = run(&wf("  entrypoint: bad\n  templates:\n  - name: bad\n    retryStrategy: {limit: 2, backoff: {duration: '10s', factor: 2}}\n    container: {image: argosay, args: [exit, '1']}\n"));
    assert_eq!(s.count_type("Pod"), 3);
    assert_eq!(s.elapsed(), 30);
}

#[test]
fn exit_handler_sees_workflow_status_and_failures() {
    let s = run(&wf(&format!(
        "  entrypoint: fail\n  onExit: report\n  templates:\n  - name: report\n    steps:\n    - - name: ok\n        template: say\n        when: '{{{{workflow.status}}}} == Succeeded'\n        arguments: {{parameters: [{{name: msg, value: ok}}]}}\n      - name: cry\n        template: say\n        when: '{{{{workflow.status}}}} != Succeeded'\n        arguments: {{parameters: [{{name: msg, value: '{{{{workflow.failures}}}}'}}]}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Failed");
    assert_eq!(s.node_phase("ok"), "Skipped");
    assert_eq!(s.node_phase("cry"), "Succeeded");
    let failures: serde_json::Value =
        serde_json::from_str(s.node("cry")["outputs"]["result"].as_str().unwrap()).unwrap();
    assert_eq!(failures[0]["phase"], "Failed");
    assert_eq!(s.node_phase("wf.onExit"), "Succeeded");
}

#[test]
fn output_parameters_from_files_defaults_and_globals() {
    let s = run(&wf(
        "  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: gen\n        template: gen\n    - - name: use\n        template: use\n        arguments: {parameters: [{name: v, value: '{{steps.gen.outputs.parameters.p}}-{{steps.gen.outputs.parameters.missing}}-{{workflow.outputs.parameters.g}}'}]}\n  - name: gen\n    container: {image: argosay, args: [echo, value, /tmp/p]}\n    outputs:\n      parameters:\n      - {name: p, globalName: g, valueFrom: {path: /tmp/p}}\n      - {name: missing, valueFrom: {path: /tmp/none, default: dflt}}\n  - name: use\n    inputs: {parameters: [{name: v}]}\n    container: {image: argosay, args: [echo, '{{inputs.parameters.v}}']}\n",
    ));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node("use")["outputs"]["result"], "value-dflt-value");
    assert_eq!(s.json()["status"]["outputs"]["parameters"][0]["name"], "g");
}

#[test]
fn missing_output_file_without_default_is_an_error() {
    let s = run(&wf("  entrypoint: gen\n  templates:\n  - name: gen\n    container: {image: argosay, args: [echo, x]}\n    outputs: {parameters: [{name: p, valueFrom: {path: /tmp/none}}]}\n"));
    assert_eq!(s.phase(), "Error");
    assert!(s.node("wf")["message"]
        .as_str()
        .unwrap()
        .contains("failed to get output parameter 'p'"));
}

#[test]
fn expression_tags_and_input_enums() {
    let s = run(&wf(
        "  entrypoint: main\n  arguments: {parameters: [{name: 'n', value: '4'}]}\n  templates:\n  - name: main\n    steps:\n    - - name: calc\n        template: say\n        arguments: {parameters: [{name: msg, value: \"{{=asInt(workflow.parameters.n) * 10 + 2}} {{=sprig.upper('x')}} {{=jsonpath('{\\\"a\\\": [5]}', '$.a[0]')}}\"}]}\n  - name: say\n    inputs: {parameters: [{name: msg}]}\n    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}\n",
    ));
    assert_eq!(s.node("calc")["outputs"]["result"], "42 X 5");
    let err = Sim::new(&wf("  entrypoint: m\n  arguments: {parameters: [{name: c, value: red, enum: [blue, green]}]}\n  templates:\n  - name: m\n    container: {image: x}\n"), &[]).err().unwrap();
    assert!(
        err.to_string().contains("not one of [blue, green]"),
        "{err}"
    );
}

#[test]
fn missing_required_parameter_is_refused_with_a_hint() {
    let err = Sim::new(&wf("  entrypoint: m\n  arguments: {parameters: [{name: ticket}]}\n  templates:\n  - name: m\n    container: {image: x}\n"), &[]).err().unwrap();
    assert!(
        err.to_string().contains(
            "spec.arguments.parameters.ticket.value is required; pass it with -p ticket=VALUE"
        ),
        "{err}"
    );
    // Passing it with -p works.
    let s = Sim::new(&wf("  entrypoint: m\n  arguments: {parameters: [{name: ticket}]}\n  templates:\n  - name: m\n    container: {image: argosay, args: [echo, '{{workflow.parameters.ticket}}']}\n"), &[("ticket", "T-1")]).unwrap().run();
    assert_eq!(s.node("wf")["outputs"]["result"], "T-1");
}

#[test]
fn workflow_parallelism_limits_running_pods() {
    let s = run(&wf(&format!(
        "  entrypoint: main\n  parallelism: 2\n  templates:\n  - name: main\n    steps:\n    - - name: s\n        template: sleep\n        withItems: [1, 2, 3, 4, 5]\n  - name: sleep\n    container: {{image: argosay, args: [sleep, '10']}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.max_running, 2);
    assert_eq!(s.elapsed(), 30);
}

#[test]
fn template_parallelism_and_fail_fast_in_steps() {
    let s = run(&wf(
        "  entrypoint: main\n  templates:\n  - name: main\n    parallelism: 1\n    failFast: true\n    steps:\n    - - name: s\n        template: maybe\n        withItems: ['0', '0', '1', '0', '0']\n        arguments: {parameters: [{name: c, value: '{{item}}'}]}\n  - name: maybe\n    inputs: {parameters: [{name: c}]}\n    container: {image: argosay, args: [exit, '{{inputs.parameters.c}}']}\n",
    ));
    assert_eq!(s.phase(), "Failed");
    assert_eq!(s.max_running, 1);
    assert_eq!(
        s.count_type("Pod"),
        3,
        "items after the failure never start"
    );
}

#[test]
fn deadlines_and_timeouts_fail_running_pods() {
    let s = run(&wf("  entrypoint: main\n  templates:\n  - name: main\n    activeDeadlineSeconds: 5\n    container: {image: argosay, args: [sleep, '100']}\n"));
    assert_eq!(s.phase(), "Failed");
    assert_eq!(s.elapsed(), 5);
    assert_eq!(s.killed.len(), 1);
    assert_eq!(
        s.node("wf")["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    let s = run(&wf("  entrypoint: main\n  activeDeadlineSeconds: 7\n  templates:\n  - name: main\n    steps:\n    - - {name: a, template: sleep}\n  - name: sleep\n    container: {image: argosay, args: [sleep, '100']}\n"));
    assert_eq!(s.phase(), "Failed");
    assert_eq!(s.elapsed(), 7);
}

#[test]
fn unschedulable_pod_waits_until_the_deadline() {
    let s = run(&wf("  entrypoint: main\n  activeDeadlineSeconds: 30\n  templates:\n  - name: main\n    nodeSelector: {kubernetes.io/arch: no-such-arch}\n    container: {image: argosay}\n"));
    assert_eq!(s.phase(), "Failed");
    assert_eq!(s.elapsed(), 30);
    assert!(s.started.is_empty());
}

#[test]
fn suspend_with_duration_and_manual_resume_with_supplied_default() {
    let s = run(&wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - {name: wait, template: wait}\n  - name: wait\n    suspend: {duration: '20s'}\n"));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.elapsed(), 20);
    let mut sim = Sim::new(&wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - {name: approve, template: approve}\n    - - name: go\n        template: say\n        when: '{{steps.approve.outputs.parameters.ok}} == yes'\n        arguments: {parameters: [{name: msg, value: go}]}\n  - name: approve\n    suspend: {}\n    outputs: {parameters: [{name: ok, valueFrom: {supplied: {}, default: 'yes'}}]}\n  - name: say\n    inputs: {parameters: [{name: msg}]}\n    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}\n"), &[]).unwrap();
    sim.resume_after = Some(chrono::Duration::seconds(60));
    let s = sim.run();
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node_phase("go"), "Succeeded");
    assert_eq!(s.elapsed(), 60);
}

#[test]
fn mutex_serialises_templates() {
    let s = run(&wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: s\n        template: locked\n        withItems: [1, 2, 3]\n  - name: locked\n    synchronization: {mutex: {name: m}}\n    container: {image: argosay, args: [sleep, '10']}\n"));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.max_running, 1);
    assert_eq!(s.elapsed(), 30);
}

#[test]
fn semaphore_limit_comes_from_a_config_map() {
    let yaml = format!("{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: limits}}\ndata: {{two: '2'}}\n", wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: s\n        template: locked\n        withItems: [1, 2, 3, 4]\n  - name: locked\n    synchronization: {semaphore: {configMapKeyRef: {name: limits, key: two}}}\n    container: {image: argosay, args: [sleep, '10']}\n"));
    let s = run(&yaml);
    assert_eq!(s.max_running, 2);
    assert_eq!(s.elapsed(), 20);
}

#[test]
fn memoized_step_is_a_cache_hit_the_second_time() {
    let s = run(&wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - {name: a, template: m}\n    - - {name: b, template: m}\n  - name: m\n    memoize: {key: k1, cache: {configMap: {name: c}}}\n    container: {image: argosay, args: [echo, cached]}\n"));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.count_type("Pod"), 2);
    assert_eq!(
        s.started.len(),
        1,
        "the second step is served from the cache"
    );
    assert_eq!(s.node("b")["memoizationStatus"]["hit"], true);
    assert_eq!(s.node("b")["outputs"]["result"], "cached");
}

#[test]
fn shutdown_terminate_skips_exit_handlers_and_stop_runs_them() {
    for (terminate, exit_runs) in [(true, false), (false, true)] {
        let mut sim = Sim::new(&wf("  entrypoint: main\n  onExit: bye\n  templates:\n  - name: main\n    container: {image: argosay, args: [sleep, '100']}\n  - name: bye\n    container: {image: argosay, args: [echo, bye]}\n"), &[]).unwrap();
        let acts = sim.engine.start(sim.now);
        assert_eq!(acts.len(), 1);
        let acts = sim
            .engine
            .handle(workflow_engine::Event::Shutdown { terminate }, sim.now);
        let kills = acts
            .iter()
            .filter(|a| matches!(a, workflow_engine::Action::KillPod { .. }))
            .count();
        assert_eq!(kills, 1);
        let starts = acts
            .iter()
            .filter(|a| matches!(a, workflow_engine::Action::StartPod(_)))
            .count();
        assert_eq!(starts, usize::from(exit_runs));
        if !exit_runs {
            assert!(sim.engine.is_finished());
            assert_eq!(sim.engine.phase().as_str(), "Failed");
        }
    }
}

#[test]
fn workflow_template_ref_and_template_ref() {
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata: {{name: lib}}\nspec:\n  entrypoint: hello\n  arguments: {{parameters: [{{name: msg, value: from-template}}]}}\n  templates:\n  - name: hello\n    steps:\n    - - name: inner\n        template: say\n        arguments: {{parameters: [{{name: msg, value: '{{{{workflow.parameters.msg}}}}'}}]}}\n{SAY}---\n{}",
        wf("  workflowTemplateRef: {name: lib}\n  arguments: {parameters: [{name: msg, value: from-workflow}]}\n")
    );
    let s = run(&yaml);
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node("inner")["outputs"]["result"], "from-workflow");
    let yaml = format!(
        "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata: {{name: lib}}\nspec:\n  templates:\n  - name: outer\n    steps:\n    - - {{name: inner, template: say, arguments: {{parameters: [{{name: msg, value: scoped}}]}}}}\n{SAY}---\n{}",
        wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: r\n        templateRef: {name: lib, template: outer}\n")
    );
    let s = run(&yaml);
    assert_eq!(s.phase(), "Succeeded", "{}", s.json());
    assert_eq!(s.node("inner")["outputs"]["result"], "scoped");
    assert_eq!(s.node("inner")["templateRef"]["name"], "lib");
}

#[test]
fn node_ids_and_names_follow_argo() {
    let s = run(&wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: a\n        template: say\n        arguments: {{parameters: [{{name: msg, value: x}}]}}\n{SAY}")));
    let a = s.node("a");
    assert_eq!(a["name"], "wf[0].a");
    assert_eq!(
        a["id"],
        format!("wf-{}", workflow_engine::fnv32a("wf[0].a"))
    );
    assert_eq!(a["boundaryID"], "wf");
    assert_eq!(
        s.started[0],
        format!("wf-say-{}", workflow_engine::fnv32a("wf[0].a"))
    );
}

#[test]
fn engine_is_deterministic() {
    let yaml = wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - {{name: A, template: say, arguments: {{parameters: [{{name: msg, value: a}}]}}}}\n      - {{name: B, template: say, depends: A, withItems: [1, 2], arguments: {{parameters: [{{name: msg, value: '{{{{item}}}}'}}]}}}}\n{SAY}"));
    let a = run(&yaml).json();
    let b = run(&yaml).json();
    assert_eq!(a["status"], b["status"]);
}

#[test]
fn lifecycle_hooks_fire_on_step_status() {
    let s = run(&wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: work\n        template: say\n        arguments: {{parameters: [{{name: msg, value: w}}]}}\n        hooks:\n          running:\n            expression: steps.work.status == \"Running\"\n            template: note\n          done:\n            expression: steps.work.status == \"Succeeded\"\n            template: note\n          never:\n            expression: steps.work.status == \"Failed\"\n            template: note\n  - name: note\n    container: {{image: argosay, args: [echo, hook]}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node_phase("work.hooks.running"), "Succeeded");
    assert_eq!(s.node_phase("work.hooks.done"), "Succeeded");
    assert_eq!(s.node_phase("work.hooks.never"), "<none>");
}

#[test]
fn workflow_level_exit_hook_and_running_hook() {
    let s = run(&wf(&format!(
        "  entrypoint: main\n  hooks:\n    exit: {{template: note}}\n    running: {{expression: workflow.status == \"Running\", template: note}}\n  templates:\n  - name: main\n    container: {{image: argosay, args: [echo, x]}}\n  - name: note\n    container: {{image: argosay, args: [echo, hook]}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node_phase("wf.onExit"), "Succeeded");
    assert_eq!(s.node_phase("wf.hooks.running"), "Succeeded");
}

/// Argo's e2e `workflow-templates/success-hook.yaml`: once the root ends, `workflow.status`
/// is its phase and hooks on it fire; the workflow ends only after every hook that fired
/// (the `running` one included), and the exit handler runs after them.
#[test]
fn workflow_hooks_on_the_end_status_fire_and_are_waited_for() {
    let s = run(&wf(&format!(
        "  entrypoint: main\n  onExit: note\n  hooks:\n    running: {{expression: workflow.status == \"Running\", template: note}}\n    succeed: {{expression: workflow.status == \"Succeeded\", template: note}}\n    failed: {{expression: workflow.status == \"Failed\", template: note}}\n  templates:\n  - name: main\n    container: {{image: argosay, args: [echo, x]}}\n  - name: note\n    container: {{image: argosay, args: [echo, hook]}}\n{SAY}"
    )));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.node_phase("wf.hooks.running"), "Succeeded");
    assert_eq!(s.node_phase("wf.hooks.succeed"), "Succeeded");
    assert_eq!(s.node_phase("wf.hooks.failed"), "<none>");
    let at = |n: &str| {
        s.node(n)["finishedAt"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        at("wf.onExit") >= at("wf.hooks.succeed"),
        "the exit handler ran after the hook"
    );
}

/// Argo's e2e `workflow-template-invalid-entrypoint.yaml` and `-invalid-onexit.yaml`: a pod the
/// API server would refuse (a volumeMount naming no volume) is an error of the template's
/// execution; at the entry or exit template itself, the workflow ends in Error with Argo's
/// message, and an entry error skips the exit handler.
#[test]
fn a_pod_that_cannot_be_created_errors_the_entry_or_exit_template() {
    let bad_mount = "    container: {image: argosay, volumeMounts: [{name: foo, mountPath: /foo}]}";
    let entry = run(&wf(&format!(
        "  entrypoint: main\n  onExit: note\n  templates:\n  - name: main\n{bad_mount}\n  - name: note\n    container: {{image: argosay}}\n"
    )));
    assert_eq!(entry.phase(), "Error");
    let msg = entry.json()["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.starts_with("error in entry template execution: pods "),
        "{msg}"
    );
    assert!(
        msg.contains("volumeMounts[0].name: Not found: \"foo\""),
        "{msg}"
    );
    assert_eq!(entry.node_phase("wf.onExit"), "<none>");
    let exit = run(&wf(&format!(
        "  entrypoint: main\n  onExit: note\n  templates:\n  - name: main\n    container: {{image: argosay}}\n  - name: note\n{bad_mount}\n"
    )));
    assert_eq!(exit.phase(), "Error");
    let msg = exit.json()["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        msg.starts_with("error in exit template execution : "),
        "{msg}"
    );
    // Inside steps it is the step's error, and the workflow fails as for any failed step.
    let nested = run(&wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    steps: [[{{name: a, template: bad}}]]\n  - name: bad\n{bad_mount}\n"
    )));
    assert_eq!(nested.node_phase("a"), "Error");
    assert_eq!(nested.phase(), "Failed");
}

#[test]
fn http_template_success_condition() {
    // The simulated shell answers every HTTP call with 200 "ok".
    let s = run(&wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - {name: ok, template: ok}\n    - - {name: picky, template: picky}\n  - name: ok\n    http: {url: 'http://127.0.0.1:1/x', successCondition: 'response.statusCode == 200 && response.body == \"ok\"'}\n  - name: picky\n    http: {url: 'http://127.0.0.1:1/y', successCondition: 'response.statusCode == 201'}\n"));
    assert_eq!(s.node_phase("ok"), "Succeeded");
    assert_eq!(s.node("ok")["type"], "HTTP");
    assert_eq!(s.node("ok")["outputs"]["result"], "ok");
    assert_eq!(s.node_phase("picky"), "Failed");
    assert_eq!(s.phase(), "Failed");
}

#[test]
fn steps_template_timeout_fails_the_node_and_kills_its_pods() {
    let s = run(&wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - {name: inner, template: inner}\n  - name: inner\n    timeout: 5s\n    steps:\n    - - {name: slow, template: slow}\n  - name: slow\n    container: {image: argosay, args: [sleep, '100']}\n"));
    assert_eq!(s.phase(), "Failed");
    assert_eq!(s.elapsed(), 5);
    assert_eq!(s.killed.len(), 1);
    assert_eq!(s.node_phase("slow"), "Failed");
}

#[test]
fn pod_name_and_raw_input_artifacts_reach_the_pod() {
    let mut sim = Sim::new(&wf("  entrypoint: main\n  templates:\n  - name: main\n    inputs:\n      artifacts: [{name: cfg, path: /in/cfg, raw: {data: 'hello {{workflow.name}}'}}]\n    container: {image: argosay, args: [echo, '{{pod.name}}']}\n"), &[]).unwrap();
    let acts = sim.engine.start(sim.now);
    let workflow_engine::Action::StartPod(req) = &acts[0] else {
        panic!("{acts:?}")
    };
    assert_eq!(
        req.input_artifacts[0].raw.as_ref().unwrap().data,
        "hello wf"
    );
    let args = req
        .template
        .container
        .as_ref()
        .unwrap()
        .args
        .clone()
        .unwrap();
    assert_eq!(args[1].0, req.pod_name);
    assert_eq!(req.pod_name, "wf", "the root pod's name is the workflow's");
}

#[test]
fn result_is_capped_at_256_kb() {
    let mut sim = Sim::new(
        &wf("  entrypoint: main\n  templates:\n  - name: main\n    container: {image: argosay}\n"),
        &[],
    )
    .unwrap();
    let acts = sim.engine.start(sim.now);
    let workflow_engine::Action::StartPod(req) = &acts[0] else {
        panic!()
    };
    let big = "x".repeat(300 * 1024);
    let ev = workflow_engine::Event::PodDone(workflow_engine::PodResult {
        node_id: req.node_id.clone(),
        exit_code: Some(0),
        stdout: Some(big),
        ..Default::default()
    });
    sim.engine.handle(ev, sim.now);
    let j = sim.engine.to_json();
    assert_eq!(
        j["status"]["nodes"]["wf"]["outputs"]["result"]
            .as_str()
            .unwrap()
            .len(),
        workflow_engine::MAX_RESULT_BYTES
    );
}

/// The server's crash recovery rests on this: replaying the logged events (with their times)
/// through a new engine built from the same inputs gives the same workflow, node for node,
/// and asks for no pod that was not asked for the first time.
#[test]
fn replaying_the_event_log_rebuilds_the_same_state() {
    let yaml = wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - {{name: a, template: say, arguments: {{parameters: [{{name: msg, value: A}}]}}}}\n      - {{name: b, template: flaky, depends: a}}\n      - {{name: c, template: say, depends: a, withItems: [1, 2, 3], arguments: {{parameters: [{{name: msg, value: '{{{{item}}}}'}}]}}}}\n      - {{name: d, template: pause, depends: b && c}}\n      - {{name: e, template: fail, depends: d}}\n      - {{name: f, template: say, depends: e.Failed, arguments: {{parameters: [{{name: msg, value: '{{{{tasks.a.outputs.result}}}}'}}]}}}}\n  - name: flaky\n    retryStrategy: {{limit: 2}}\n    container: {{image: argosay, args: [fail-once, sleep, '5']}}\n  - name: pause\n    suspend: {{duration: '30'}}\n{SAY}"
    ));
    let first = Sim::new(&yaml, &[]).expect("engine").run();
    assert_eq!(first.phase(), "Succeeded");
    assert!(first.log.len() > 10, "the run handled events");
    let (w, store) = support::load(&yaml);
    let mut replayed =
        workflow_engine::Engine::new(&w, "wf", "uid-1", &[], store, first.config(), support::t0())
            .expect("engine");
    let mut pods = Vec::new();
    let mut note = |acts: Vec<workflow_engine::Action>| {
        for a in acts {
            if let workflow_engine::Action::StartPod(r) = a {
                pods.push(r.pod_name.clone());
            }
        }
    };
    note(replayed.start(support::t0()));
    for (at, ev) in first.log.clone() {
        note(replayed.handle(ev, at));
    }
    assert_eq!(replayed.to_json(), first.engine.to_json());
    assert_eq!(pods, first.started, "the same pods, in the same order");
}

/// The engine holds a workflow's templates once; its JSON still shows them as submitted, in
/// place, with `templateDefaults` not merged into them.
#[test]
fn to_json_shows_the_templates_as_submitted() {
    let yaml = wf("  entrypoint: main\n  templateDefaults: {timeout: 1m}\n  templates:\n  - name: main\n    steps: [[{name: a, template: leaf}]]\n  - name: leaf\n    container: {image: argosay}\n  arguments: {parameters: [{name: p, value: v}]}\n");
    let sim = Sim::new(&yaml, &[]).unwrap();
    let j = sim.engine.to_json();
    let keys: Vec<&String> = j["spec"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec!["entrypoint", "templateDefaults", "templates", "arguments"],
        "templates stay where they were"
    );
    assert_eq!(
        j["spec"]["templates"],
        serde_json::json!([
            {"name": "main", "steps": [[{"name": "a", "template": "leaf"}]]},
            {"name": "leaf", "container": {"image": "argosay"}}
        ])
    );
}

/// `argo suspend` sets `spec.suspend: true` on the Workflow and `argo resume` clears it
/// (Argo's `util.SuspendWorkflow`/`ResumeWorkflow` patch the spec); clients read a suspended
/// workflow from there.
#[test]
fn suspend_and_resume_show_in_spec_suspend() {
    let yaml = wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    steps: [[{{name: a, template: say, arguments: {{parameters: [{{name: msg, value: A}}]}}}}]]\n{SAY}"));
    let mut sim = Sim::new(&yaml, &[]).unwrap();
    let now = support::t0();
    assert_eq!(sim.engine.to_json()["spec"].get("suspend"), None);
    sim.engine.handle(workflow_engine::Event::Suspend, now);
    assert_eq!(sim.engine.to_json()["spec"]["suspend"], true);
    sim.engine.handle(
        workflow_engine::Event::Resume {
            node: None,
            supplied: Default::default(),
        },
        now,
    );
    assert_eq!(sim.engine.to_json()["spec"].get("suspend"), None);
}

/// Argo's `computeMetrics`: a template's metrics when its node ends (`status`, `duration`,
/// `outputs.*` in scope, `when` filtering), the workflow's realtime gauges at its start and
/// all its metrics at its end; a metric without help is skipped and recorded as the
/// `MetricsError` condition, never failing a node.
#[test]
fn custom_metrics_are_emitted_when_nodes_and_the_workflow_end() {
    use workflow_engine::{MetricValue, Time};
    let s = run(&wf("  entrypoint: main\n  metrics:\n    prometheus:\n    - name: wf_duration\n      help: Workflow duration\n      gauge: {realtime: true, value: '{{workflow.duration}}'}\n    - name: wf_result\n      help: Workflows by status\n      labels: [{key: status, value: '{{workflow.status}}'}]\n      counter: {value: '1'}\n  templates:\n  - name: main\n    steps:\n    - - name: a\n        template: num\n    - - name: b\n        template: fail\n        continueOn: {failed: true}\n  - name: num\n    metrics:\n      prometheus:\n      - name: num_hist\n        help: Numbers\n        when: '{{status}} == Succeeded'\n        histogram: {buckets: [10, 2.5, 5], value: '{{outputs.result}}'}\n      - name: no_help\n        counter: {value: '1'}\n    container: {image: argosay, args: [echo, '4']}\n  - name: fail\n    metrics:\n      prometheus:\n      - name: result_counter\n        help: Results\n        labels: [{key: name, value: fail}, {key: status, value: '{{status}}'}]\n        counter: {value: '1'}\n      - name: skipped_when_succeeded\n        help: Only on success\n        when: '{{status}} == Succeeded'\n        counter: {value: '1'}\n    container: {image: argosay, args: [exit, '1']}\n"));
    assert_eq!(s.phase(), "Succeeded");
    let by_name = |n: &str| s.metrics.iter().filter(|m| m.name == n).collect::<Vec<_>>();
    let hist = by_name("num_hist");
    assert_eq!(hist.len(), 1);
    assert_eq!(
        hist[0].value,
        MetricValue::Histogram {
            buckets: vec![2.5, 5.0, 10.0],
            value: 4.0
        }
    );
    let results = by_name("result_counter");
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].labels,
        vec![
            ("name".to_string(), "fail".to_string()),
            ("status".to_string(), "Failed".to_string())
        ]
    );
    assert_eq!(results[0].value, MetricValue::Counter(1.0));
    assert!(by_name("skipped_when_succeeded").is_empty());
    assert!(by_name("no_help").is_empty());
    // The workflow's realtime gauge at its start (still counting) and at its end (frozen).
    let durations = by_name("wf_duration");
    assert_eq!(durations.len(), 2);
    let ends: Vec<Option<Time>> = durations
        .iter()
        .map(|m| match &m.value {
            MetricValue::Realtime { until, .. } => *until,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(ends[0].is_none() && ends[1].is_some(), "{ends:?}");
    let wf_result = by_name("wf_result");
    assert_eq!(
        wf_result[0].labels,
        vec![("status".to_string(), "Succeeded".to_string())]
    );
    let conditions = &s.json()["status"]["conditions"];
    assert_eq!(conditions[0]["type"], "MetricsError");
    assert!(conditions[0]["message"]
        .as_str()
        .unwrap()
        .contains("must contain a help string"));
}

/// Argo's retry keeps what succeeded (`FormulateRetryWorkflow`): a kept pod is not started
/// again, ends with its old status (times and outputs), and what follows reads its outputs.
#[test]
fn a_retry_keeps_succeeded_pods_as_they_were() {
    let yaml = wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: a\n        template: say\n        arguments: {{parameters: [{{name: msg, value: hello}}]}}\n    - - name: b\n        template: say\n        arguments: {{parameters: [{{name: msg, value: 'got {{{{steps.a.outputs.result}}}}'}}]}}\n{SAY}"
    ));
    let first = run(&yaml);
    let a = first.node("a");
    let id = a["id"].as_str().unwrap().to_string();
    let mut kept = serde_json::Map::new();
    kept.insert(id.clone(), a.clone());
    let mut again = Sim::new(&yaml, &[]).unwrap();
    again.now = first.now + chrono::Duration::hours(1);
    again.engine.keep(&kept);
    let again = again.run();
    assert_eq!(again.phase(), "Succeeded");
    assert_eq!(again.node("a"), a, "kept exactly");
    assert_eq!(again.node("b")["outputs"]["result"], "got hello");
    assert_eq!(again.started.len(), 1, "only b ran: {:?}", again.started);
}

/// Argo passes the workflow's `spec.arguments` to exit handlers (`GetExitHook(spec.arguments)`):
/// a `spec.onExit` template, a step's `onExit`, and an `exit` hook without arguments of its own
/// get the workflow's parameters as inputs; an `exit` hook with arguments gets its own.
#[test]
fn exit_handlers_get_the_workflows_arguments() {
    let s = Sim::new(
        &wf(&format!(
            "  entrypoint: main\n  onExit: notify\n  arguments: {{parameters: [{{name: who, value: ops}}, {{name: msg, value: '{{{{workflow.name}}}} done'}}]}}\n  templates:\n  - name: main\n    steps:\n    - - name: a\n        template: say\n        arguments: {{parameters: [{{name: msg, value: hi}}]}}\n        onExit: notify\n      - name: b\n        template: say\n        arguments: {{parameters: [{{name: msg, value: hi}}]}}\n        hooks: {{exit: {{template: say}}}}\n      - name: c\n        template: say\n        arguments: {{parameters: [{{name: msg, value: hi}}]}}\n        hooks: {{exit: {{template: say, arguments: {{parameters: [{{name: msg, value: own}}]}}}}}}\n  - name: notify\n    inputs: {{parameters: [{{name: who}}]}}\n    container: {{image: argosay, args: [echo, 'to {{{{inputs.parameters.who}}}}']}}\n{SAY}"
        )),
        &[("who", "team-a")],
    )
    .expect("engine accepts the workflow")
    .run();
    assert_eq!(s.phase(), "Succeeded", "{}", s.json());
    assert_eq!(s.node("wf.onExit")["outputs"]["result"], "to team-a");
    assert_eq!(s.node("a.onExit")["outputs"]["result"], "to team-a");
    assert_eq!(s.node("b.onExit")["outputs"]["result"], "wf done");
    assert_eq!(s.node("c.onExit")["outputs"]["result"], "own");
}
