//! Queue trees (and guarantees) that Volcano's admission refuses are refused, with the queue at fault.

fn error_of(queues: &str) -> String {
    let text = format!(
        "name: tree\nnodes:\n  - {{name: n1, allocatable: {{cpu: \"8\", memory: 8Gi, nvidia.com/gpu: 8}}}}\nqueues:\n{queues}"
    );
    let s = scheduler::load(&text).expect("the scenario parses");
    match scheduler::run(&s) {
        Ok(_) => panic!("the tree was accepted:\n{queues}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_queue_trees_are_refused_with_the_queue_at_fault() {
    assert!(error_of("  - {name: a, parent: nowhere}\n")
        .contains("queue a: parent \"nowhere\" is not a queue"));
    assert!(
        error_of("  - {name: a, parent: b}\n  - {name: b, parent: a}\n")
            .contains("its parents form a cycle")
    );
    assert!(error_of(
        "  - {name: p, capability: {nvidia.com/gpu: 4}}\n  - {name: c, parent: p, capability: {nvidia.com/gpu: 8}}\n"
    )
    .contains("queue c: capability 8 nvidia.com/gpu exceeds its parent p's 4 nvidia.com/gpu"));
    assert!(error_of(
        "  - {name: p, deserved: {nvidia.com/gpu: 4}}\n  - {name: c1, parent: p, deserved: {nvidia.com/gpu: 3}}\n  - {name: c2, parent: p, deserved: {nvidia.com/gpu: 2}}\n"
    )
    .contains("queue p: its children deserve 5 nvidia.com/gpu in all, more than its own 4 nvidia.com/gpu"));
    assert!(error_of(
        "  - {name: p, capability: {nvidia.com/gpu: 4}, guarantee: {nvidia.com/gpu: 6}}\n"
    )
    .contains("queue p: guarantee 6 nvidia.com/gpu exceeds its capability 4 nvidia.com/gpu"));
    assert!(error_of(
        "  - {name: p, guarantee: {nvidia.com/gpu: 2}}\n  - {name: c, parent: p, guarantee: {nvidia.com/gpu: 3}}\n"
    )
    .contains("queue p: its children are guaranteed 3 nvidia.com/gpu in all, more than its own 2 nvidia.com/gpu"));
}

#[test]
fn a_sound_tree_is_accepted() {
    let text = "name: tree\nnodes:\n  - {name: n1, allocatable: {cpu: \"8\", memory: 8Gi, nvidia.com/gpu: 8}}\nqueues:\n  - {name: p, capability: {nvidia.com/gpu: 4}, deserved: {nvidia.com/gpu: 4}}\n  - {name: c1, parent: p, deserved: {nvidia.com/gpu: 2}}\n  - {name: c2, parent: p}\n";
    let s = scheduler::load(text).expect("the scenario parses");
    assert!(scheduler::run(&s).is_ok());
}
