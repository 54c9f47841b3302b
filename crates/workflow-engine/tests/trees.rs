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

/// Argo compares the substituted words as strings (`heads == tails`) and names the comparison in the skipped node's message.
#[test]
fn when_false_skips_the_step_and_says_what_it_compared() {
    check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  entrypoint: main
  arguments: {parameters: [{name: coin, value: heads}]}
  templates:
  - name: main
    steps:
    - - name: h
        template: say
        when: '{{workflow.parameters.coin}} == heads'
        arguments: {parameters: [{name: msg, value: H}]}
      - name: t
        template: say
        when: '{{workflow.parameters.coin}} == tails'
        arguments: {parameters: [{name: msg, value: T}]}
  - name: say
    inputs: {parameters: [{name: msg}]}
    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}
  - name: fail
    container: {image: argosay, args: [exit, '1']}
"#,
        expect![[r#"
            Succeeded
            STEP   TEMPLATE  PODNAME            DURATION  MESSAGE
            ✔ wf   main                         0s
            ├─✔ h  say       wf-say-3835213644  0s
            └─○ t  say                          0s        when 'heads == tails' evaluated false
        "#]],
    );
}

/// `continueOn: {failed: true}`: the failed task does not fail the DAG, and tasks that depend on it run.
#[test]
fn a_dag_task_continuing_on_failure_lets_its_dependents_run_and_the_dag_succeed() {
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
      - {name: B, template: fail, continueOn: {failed: true}}
      - {name: C, template: say, dependencies: [B], arguments: {parameters: [{name: msg, value: c}]}}
  - name: say
    inputs: {parameters: [{name: msg}]}
    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}
  - name: fail
    container: {image: argosay, args: [exit, '1']}
"#,
        expect![[r#"
            Succeeded
            STEP   TEMPLATE  PODNAME             DURATION  MESSAGE
            ✔ wf   main                          0s
            ├─✖ B  fail      wf-fail-3448666408  0s        Error (exit code 1)
            └─✔ C  say       wf-say-3465444027   0s
        "#]],
    );
}

/// With `dependencies` (not `depends`), a failed dependency without `continueOn` omits the dependent and fails the DAG.
#[test]
fn legacy_dependencies_omit_a_task_whose_dependency_failed() {
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
      - {name: A, template: fail}
      - {name: B, template: say, dependencies: [A], arguments: {parameters: [{name: msg, value: b}]}}
  - name: say
    inputs: {parameters: [{name: msg}]}
    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}
  - name: fail
    container: {image: argosay, args: [exit, '1']}
"#,
        expect![[r#"
            Failed
            STEP   TEMPLATE  PODNAME             DURATION  MESSAGE
            ✖ wf   main                          0s
            ├─✖ A  fail      wf-fail-3498999265  0s        Error (exit code 1)
            └─○ B  say                           0s        omitted: depends condition not met
        "#]],
    );
}

/// The exit handler's failure is the workflow's (Argo: `onExit` node failed).
#[test]
fn a_failing_exit_handler_fails_a_workflow_that_succeeded() {
    check(
        r#"
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata: {name: wf}
spec:
  entrypoint: ok
  onExit: fail
  templates:
  - name: ok
    container: {image: argosay, args: [echo, hi]}
  - name: say
    inputs: {parameters: [{name: msg}]}
    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}
  - name: fail
    container: {image: argosay, args: [exit, '1']}
"#,
        expect![[r#"
            Failed
            STEP         TEMPLATE  PODNAME            DURATION  MESSAGE
            ✔ wf         ok        wf                 0s
            ✖ wf.onExit  fail      wf-fail-403321795  0s        Error (exit code 1)
        "#]],
    );
}

/// A step's own `onExit` runs once the step ends, as `STEP.onExit`.
#[test]
fn a_step_exit_handler_runs_after_its_step() {
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
    - - name: a
        template: say
        onExit: bye
        arguments: {parameters: [{name: msg, value: a}]}
  - name: bye
    container: {image: argosay, args: [echo, bye]}
  - name: say
    inputs: {parameters: [{name: msg}]}
    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}
  - name: fail
    container: {image: argosay, args: [exit, '1']}
"#,
        expect![[r#"
            Succeeded
            STEP            TEMPLATE  PODNAME            DURATION  MESSAGE
            ✔ wf            main                         0s
            └─✔ a           say       wf-say-3986212215  0s
              └─✔ a.onExit  bye       wf-bye-1635936830  0s
        "#]],
    );
}

/// A step that names no template is an Error node with Argo's message, and fails the workflow.
#[test]
fn an_unknown_template_is_an_error_node_naming_it() {
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
    - - name: a
        template: nope
"#,
        expect![[r#"
            Failed
            STEP   TEMPLATE  PODNAME  DURATION  MESSAGE
            ✖ wf   main               0s        child 'wf-3986212215' failed
            └─⚠ a  nope               0s        template nope not found
        "#]],
    );
}
