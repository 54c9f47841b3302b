//! The engine's behaviour as data: each test runs a workflow on the simulated executor (every
//! pod ends at once, as its `argosay` arguments say) and compares the whole node tree, as
//! `argo get` prints it, with the expectation written under it. `UPDATE_EXPECT=1 cargo test`
//! rewrites the expectations; review the diff as you would a change of behaviour.

mod support;

use expect_test::{expect, Expect};
use support::Sim;

/// Run `yaml` to its end; the phase and the tree.
fn check(yaml: &str, expected: Expect) {
    let sim = Sim::new(yaml, &[])
        .expect("the engine accepts the workflow")
        .run();
    let wf = sim.json();
    let got = format!(
        "{}\n{}",
        wf["status"]["phase"].as_str().unwrap_or("<none>"),
        workflow_engine::tree::tree(&wf)
    );
    expected.assert_eq(&got);
}

#[test]
fn steps_run_group_after_group() {
    check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - {name: hello, template: say, arguments: {parameters: [{name: msg, value: hi}]}}
    - - {name: left, template: say, arguments: {parameters: [{name: msg, value: l}]}}
      - {name: right, template: say, arguments: {parameters: [{name: msg, value: r}]}}
  - name: say
    inputs: {parameters: [{name: msg}]}
    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}
"#,
        expect![[r#"
            Succeeded
            STEP       TEMPLATE  PODNAME            DURATION  MESSAGE
            ✔ wf       main                         0s
            ├─✔ hello  say       wf-say-2592359500  0s
            ├─✔ left   say       wf-say-113162674   0s
            └─✔ right  say       wf-say-1242998367  0s
        "#]],
    );
}

#[test]
fn a_failed_dag_task_skips_its_dependents_and_fails_the_dag() {
    check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    dag:
      tasks:
      - {name: a, template: ok}
      - {name: b, template: boom, dependencies: [a]}
      - {name: c, template: ok, dependencies: [b]}
      - {name: d, template: ok, depends: "b.Failed"}
  - name: ok
    container: {image: argosay, args: [echo, fine]}
  - name: boom
    container: {image: argosay, args: [exit, '1']}
"#,
        expect![[r#"
            Failed
            STEP   TEMPLATE  PODNAME             DURATION  MESSAGE
            ✖ wf   main                          0s
            ├─✔ a  ok        wf-ok-2962115457    0s
            ├─✖ b  boom      wf-boom-2911782600  0s        Error (exit code 1)
            ├─○ c  ok                            0s        omitted: depends condition not met
            └─✔ d  ok        wf-ok-3012448314    0s
        "#]],
    );
}

#[test]
fn a_retried_step_shows_its_attempts_and_the_exit_handler_runs_last() {
    check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  entrypoint: main
  onExit: bye
  templates:
  - name: main
    retryStrategy: {limit: 2}
    container: {image: argosay, args: [exit, '1']}
  - name: bye
    container: {image: argosay, args: [echo, '{{workflow.status}}']}
"#,
        expect![[r#"
            Failed
            STEP         TEMPLATE  PODNAME             DURATION  MESSAGE
            ✖ wf         main                          0s        No more retries left
            ├─✖ wf(0)    main      wf-main-200985491   0s        Error (exit code 1)
            ├─✖ wf(1)    main      wf-main-805126870   0s        Error (exit code 1)
            └─✖ wf(2)    main      wf-main-2550146341  0s        Error (exit code 1)
            ✔ wf.onExit  bye       wf-bye-403321795    0s
        "#]],
    );
}

#[test]
fn a_loop_expands_one_node_per_item_and_when_skips() {
    check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  entrypoint: main
  templates:
  - name: main
    steps:
    - - name: each
        template: say
        arguments: {parameters: [{name: msg, value: '{{item}}'}]}
        withItems: [a, b, c]
      - name: never
        template: say
        arguments: {parameters: [{name: msg, value: x}]}
        when: "1 == 2"
  - name: say
    inputs: {parameters: [{name: msg}]}
    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}
"#,
        expect![[r#"
            Succeeded
            STEP           TEMPLATE  PODNAME            DURATION  MESSAGE
            ✔ wf           main                         0s
            ├─✔ each(0:a)  say       wf-say-3812636079  0s
            ├─✔ each(1:b)  say       wf-say-2218437181  0s
            ├─✔ each(2:c)  say       wf-say-2963599807  0s
            └─○ never      say                          0s        when '1 == 2' evaluated false
        "#]],
    );
}
