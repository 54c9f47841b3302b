//! A hostile workflow can only end itself: recursion, loops and node counts past the
//! engine's limits make that workflow Error with a message naming the limit, and never
//! exhaust the engine's stack or memory.

mod support;

use serde_json::Value;
use support::{wf, Sim};
use workflow_engine::{EngineLimits, MAX_DEPTH_MESSAGE, MAX_STACK_DEPTH};

const SAY: &str = "  - name: say\n    inputs: {parameters: [{name: msg}]}\n    container: {image: argosay, args: [echo, '{{inputs.parameters.msg}}']}\n";

/// Run on a thread with a 2 MiB stack (a tokio worker's and a test thread's default), so
/// that unbounded recursion fails here rather than passing on a larger main stack.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow or panic")
}

fn run_with(yaml: &str, limits: EngineLimits) -> Sim {
    let mut sim = Sim::new(yaml, &[]).expect("engine accepts the workflow");
    sim.engine.set_limits(limits);
    sim.run()
}

fn nodes(s: &Sim) -> Vec<Value> {
    s.json()["status"]["nodes"]
        .as_object()
        .map(|m| m.values().cloned().collect())
        .unwrap_or_default()
}

fn errors_with(s: &Sim, message: &str) -> Vec<Value> {
    nodes(s)
        .into_iter()
        .filter(|n| n["phase"] == "Error" && n["message"] == message)
        .collect()
}

/// How many templates deep a node is: its boundary chain (steps and DAG nodes) plus one.
fn depth(s: &Sim, node: &Value) -> usize {
    let all = s.json()["status"]["nodes"].clone();
    let mut d = 1;
    let mut b = node["boundaryID"].as_str().map(str::to_string);
    while let Some(id) = b {
        d += 1;
        b = all[&id]["boundaryID"].as_str().map(str::to_string);
    }
    d
}

#[test]
fn a_steps_template_that_calls_itself_errors_at_argos_depth() {
    let s = small_stack(|| {
        run_with(
            &wf("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: again\n        template: main\n"),
            EngineLimits::default(),
        )
    });
    assert_eq!(s.phase(), "Error");
    assert_eq!(s.json()["status"]["message"], MAX_DEPTH_MESSAGE);
    let errored = errors_with(&s, MAX_DEPTH_MESSAGE);
    assert_eq!(errored.len(), 1, "{errored:?}");
    // Argo's executeTemplate: the node is made as Skipped and errors, at depth 100.
    assert_eq!(errored[0]["type"], "Skipped");
    assert_eq!(depth(&s, &errored[0]), MAX_STACK_DEPTH);
    assert_eq!(s.count_type("Steps"), MAX_STACK_DEPTH - 1);
}

#[test]
fn a_dag_template_that_calls_itself_errors_too() {
    let s = small_stack(|| {
        run_with(
            &wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - {{name: hi, template: say, arguments: {{parameters: [{{name: msg, value: hi}}]}}}}\n      - {{name: again, template: main, depends: hi}}\n{SAY}")),
            EngineLimits::default(),
        )
    });
    assert_eq!(s.phase(), "Error");
    assert_eq!(s.json()["status"]["message"], MAX_DEPTH_MESSAGE);
    let errored = errors_with(&s, MAX_DEPTH_MESSAGE);
    assert_eq!(errored.len(), 1);
    assert_eq!(depth(&s, &errored[0]), MAX_STACK_DEPTH);
    // Every level ran its pod before recursing, but the 99th, whose pod would be 100 deep.
    assert_eq!(s.started.len(), MAX_STACK_DEPTH - 2);
}

/// Counts up by recursion, one pod per level: each level's recursive step starts only when
/// its pod has ended (a later event), so the depth must come with the block, not the call.
fn counter(limit: usize) -> String {
    wf(&format!("  entrypoint: count\n  arguments: {{parameters: [{{name: level, value: '0'}}]}}\n  templates:\n  - name: count\n    inputs: {{parameters: [{{name: level}}]}}\n    steps:\n    - - name: work\n        template: say\n        arguments: {{parameters: [{{name: msg, value: '{{{{inputs.parameters.level}}}}'}}]}}\n    - - name: next\n        template: count\n        when: '{{{{inputs.parameters.level}}}} < {limit}'\n        arguments: {{parameters: [{{name: level, value: '{{{{=asInt(inputs.parameters.level) + 1}}}}'}}]}}\n{SAY}"))
}

#[test]
fn finite_recursion_deeper_than_the_limit_errors_across_events() {
    let s = small_stack(|| run_with(&counter(300), EngineLimits::default()));
    assert_eq!(s.phase(), "Error");
    assert_eq!(s.json()["status"]["message"], MAX_DEPTH_MESSAGE);
    let errored = errors_with(&s, MAX_DEPTH_MESSAGE);
    assert_eq!(errored.len(), 1);
    assert_eq!(depth(&s, &errored[0]), MAX_STACK_DEPTH);
    // Levels 1 to 98 ran their pod; level 99's pod would be template 100.
    assert_eq!(s.started.len(), MAX_STACK_DEPTH - 2);
}

#[test]
fn recursion_within_the_limit_still_succeeds() {
    let s = small_stack(|| run_with(&counter(40), EngineLimits::default()));
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.started.len(), 41);
    // A smaller limit is honoured the same way.
    let s = run_with(
        &counter(40),
        EngineLimits {
            max_stack_depth: 10,
            ..EngineLimits::default()
        },
    );
    assert_eq!(s.phase(), "Error");
    assert_eq!(depth(&s, &errors_with(&s, MAX_DEPTH_MESSAGE)[0]), 10);
}

#[test]
fn loops_past_max_loop_items_error_the_workflow() {
    let steps = |with: &str| {
        wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: each\n        template: say\n        arguments: {{parameters: [{{name: msg, value: '{{{{item}}}}'}}]}}\n        {with}\n{SAY}"))
    };
    let s = small_stack(move || {
        run_with(
            &steps("withSequence: {count: '1000000'}"),
            EngineLimits::default(),
        )
    });
    let msg =
        "withSequence expands to 1000000 items, more than the limit of 100000 (max_loop_items)";
    assert_eq!(s.phase(), "Error");
    assert_eq!(s.json()["status"]["message"], msg);
    assert_eq!(s.node("[0]")["message"], msg);
    assert!(s.started.is_empty());

    let small = EngineLimits {
        max_loop_items: 3,
        ..EngineLimits::default()
    };
    let s = run_with(&steps("withItems: [a, b, c, d]"), small.clone());
    assert_eq!(s.phase(), "Error");
    assert_eq!(
        s.json()["status"]["message"],
        "withItems expands to 4 items, more than the limit of 3 (max_loop_items)"
    );
    let s = run_with(&steps("withParam: '[1, 2, 3, 4, 5]'"), small.clone());
    assert_eq!(
        s.json()["status"]["message"],
        "withParam expands to 5 items, more than the limit of 3 (max_loop_items)"
    );
    // At the limit, the loop runs.
    let s = run_with(&steps("withItems: [a, b, c]"), small.clone());
    assert_eq!(s.phase(), "Succeeded");
    assert_eq!(s.started.len(), 3);

    // A DAG task's loop: the task errors, and so does the workflow.
    let dag = wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - name: each\n        template: say\n        arguments: {{parameters: [{{name: msg, value: '{{{{item}}}}'}}]}}\n        withSequence: {{start: '1', end: '5'}}\n{SAY}"));
    let s = run_with(&dag, small);
    assert_eq!(s.phase(), "Error");
    assert_eq!(
        s.json()["status"]["message"],
        "withSequence expands to 5 items, more than the limit of 3 (max_loop_items)"
    );
}

#[test]
fn sequences_at_the_ends_of_int64_never_panic() {
    let steps = |seq: &str| {
        wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: each\n        template: say\n        arguments: {{parameters: [{{name: msg, value: '{{{{item}}}}'}}]}}\n        withSequence: {seq}\n{SAY}"))
    };
    for (seq, phase) in [
        (
            "{start: '9223372036854775807', count: '9223372036854775807'}",
            "Error",
        ),
        ("{start: '9223372036854775807', count: '2'}", "Failed"),
        (
            "{start: '-9223372036854775808', end: '9223372036854775807'}",
            "Error",
        ),
        ("{start: '9223372036854775806', count: '2'}", "Succeeded"),
        (
            "{count: '2', format: '%99999999999999999999999999d'}",
            "Succeeded",
        ),
        ("{count: '2', format: '%999999d'}", "Succeeded"),
    ] {
        let s = small_stack({
            let y = steps(seq);
            move || run_with(&y, EngineLimits::default())
        });
        assert_eq!(s.phase(), phase, "{seq}: {}", s.json()["status"]["message"]);
    }
}

#[test]
fn workflows_past_max_nodes_stop_in_error() {
    let limits = EngineLimits {
        max_nodes: 50,
        ..EngineLimits::default()
    };
    let msg = "the workflow would have more than 50 nodes, the most it may have (max_nodes)";
    let mut tasks = String::new();
    for i in 0..100 {
        tasks.push_str(&format!("      - {{name: t{i}, template: say, arguments: {{parameters: [{{name: msg, value: '{i}'}}]}}}}\n"));
    }
    let dag = wf(&format!(
        "  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n{tasks}{SAY}"
    ));
    let s = run_with(&dag, limits.clone());
    assert_eq!(s.phase(), "Error");
    assert_eq!(s.json()["status"]["message"], msg);
    assert!(nodes(&s).len() <= 51, "{}", nodes(&s).len());

    // A fan-out that would grow without end: every item runs the template again.
    let fan = wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    steps:\n    - - name: hi\n        template: say\n        arguments: {{parameters: [{{name: msg, value: hi}}]}}\n    - - name: again\n        template: main\n        withItems: [1, 2, 3]\n{SAY}"));
    let s = small_stack(move || run_with(&fan, limits));
    assert_eq!(s.phase(), "Error");
    assert_eq!(s.json()["status"]["message"], msg);
    assert!(nodes(&s).len() <= 60, "{}", nodes(&s).len());

    // The same in a DAG task group, with pods still running when the limit is reached.
    let fan = wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n    dag:\n      tasks:\n      - {{name: hi, template: slow}}\n      - name: again\n        template: main\n        withItems: [1, 2, 3]\n  - name: slow\n    container: {{image: argosay, args: [sleep, '5']}}\n{SAY}"));
    let s = small_stack(move || {
        run_with(
            &fan,
            EngineLimits {
                max_nodes: 50,
                ..EngineLimits::default()
            },
        )
    });
    assert_eq!(s.phase(), "Error");
    assert_eq!(s.json()["status"]["message"], msg);
    assert!(s.engine.is_finished());
}

#[test]
fn a_stopped_task_group_ends_with_the_items_it_started() {
    // What stops a workflow at `max_nodes` is a terminate: a DAG task's loop that has items
    // left to start ends once its running item has, so the workflow ends too.
    let mut sim = Sim::new(&wf("  entrypoint: main\n  templates:\n  - name: main\n    parallelism: 1\n    dag:\n      tasks:\n      - name: each\n        template: slow\n        withItems: [1, 2, 3]\n  - name: slow\n    container: {image: argosay, args: [sleep, '100']}\n"), &[]).unwrap();
    let acts = sim.engine.start(sim.now);
    assert_eq!(acts.len(), 1);
    sim.engine.handle(
        workflow_engine::Event::Shutdown { terminate: true },
        sim.now,
    );
    assert!(sim.engine.is_finished());
    assert_eq!(sim.engine.phase().as_str(), "Failed");
    assert_eq!(sim.node_phase("each"), "Failed");
}

#[test]
fn durations_past_what_a_time_can_hold_never_panic() {
    // A timeout, deadline, suspend or backoff that large is one that never comes.
    for body in [
        "    timeout: '1e300'\n    container: {image: argosay, args: [echo, hi]}\n",
        "    timeout: '99999999999999999999h'\n    container: {image: argosay, args: [echo, hi]}\n",
        "    timeout: '-1e300'\n    container: {image: argosay, args: [echo, hi]}\n",
        "    activeDeadlineSeconds: 9223372036854775807\n    container: {image: argosay, args: [echo, hi]}\n",
        "    activeDeadlineSeconds: -9223372036854775808\n    container: {image: argosay, args: [echo, hi]}\n",
        "    retryStrategy: {limit: 3, backoff: {duration: '1e300', factor: '1e300', maxDuration: '1e300'}}\n    container: {image: argosay, args: [fail-once]}\n",
        "    retryStrategy: {limit: 3, backoff: {duration: '1s', factor: '1e300'}}\n    container: {image: argosay, args: [exit, '1']}\n",
    ] {
        let yaml = wf(&format!("  entrypoint: main\n  templates:\n  - name: main\n{body}"));
        let mut sim = Sim::new(&yaml, &[]).expect("engine accepts the workflow");
        sim.engine.set_limits(EngineLimits::default());
        let s = sim.run();
        assert_ne!(s.phase(), "Pending", "{body}");
    }
    let yaml = wf("  entrypoint: main\n  activeDeadlineSeconds: 9223372036854775807\n  templates:\n  - name: main\n    suspend: {duration: '1e300'}\n");
    let mut sim = Sim::new(&yaml, &[]).expect("engine accepts the workflow");
    sim.engine.start(sim.now);
    assert!(sim.engine.next_wakeup().is_some());
    sim.engine.handle(workflow_engine::Event::Tick, sim.now);
}
