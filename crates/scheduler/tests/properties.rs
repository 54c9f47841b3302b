//! For random clusters and workloads: no node is ever over-committed and no gang is ever
//! partly bound, whatever the actions.

use std::collections::BTreeMap;

use proptest::prelude::*;
use scheduler::{
    run, GroupPhase, GroupSpec, NodeSpec, PodPhase, PodSpec, Quantity, Scenario, TenantSpec,
};

fn q(v: f64) -> Quantity {
    Quantity::Number(v)
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let nodes = proptest::collection::vec((1u32..=8, 4u32..64), 1..5);
    let groups = proptest::collection::vec((1u32..4, 1u32..5, 0u32..9, 0u32..3), 1..6);
    (nodes, groups, proptest::bool::ANY, 0u32..24).prop_map(|(nodes, groups, preempt, quota)| {
        let mut s = Scenario {
            name: "random".into(),
            actions: if preempt {
                vec![
                    "enqueue".into(),
                    "allocate".into(),
                    "preempt".into(),
                    "reclaim".into(),
                ]
            } else {
                vec!["enqueue".into(), "allocate".into(), "backfill".into()]
            },
            tenants: vec![TenantSpec {
                namespace: "t".into(),
                weight: 1,
                quota: BTreeMap::from([("nvidia.com/gpu".to_string(), q(quota as f64))]),
            }],
            ..Default::default()
        };
        for (i, (gpus, cpu)) in nodes.iter().enumerate() {
            let mut alloc = BTreeMap::new();
            alloc.insert("cpu".to_string(), q(*cpu as f64));
            alloc.insert("nvidia.com/gpu".to_string(), q(*gpus as f64));
            s.nodes.push(NodeSpec {
                name: format!("n{i}"),
                allocatable: alloc,
                ..Default::default()
            });
        }
        for (gi, (min, size, gpus, cpu)) in groups.iter().enumerate() {
            s.groups.push(GroupSpec {
                name: format!("g{gi}"),
                namespace: "t".into(),
                queue: "default".into(),
                min_member: (*min).min(*size),
                min_task_member: BTreeMap::new(),
                min_resources: BTreeMap::new(),
                priority_class: String::new(),
                phase: GroupPhase::Pending,
            });
            for pi in 0..*size {
                let mut req = BTreeMap::new();
                req.insert("cpu".to_string(), q(*cpu as f64));
                req.insert("nvidia.com/gpu".to_string(), q(*gpus as f64));
                s.pods.push(PodSpec {
                    name: format!("g{gi}-p{pi}"),
                    namespace: "t".into(),
                    group: format!("g{gi}"),
                    phase: PodPhase::Pending,
                    requests: req,
                    preemptable: true,
                    ..Default::default()
                });
            }
        }
        s
    })
}

proptest! {
    #[test]
    fn no_over_commit_and_no_partial_gang(s in scenario()) {
        let out = run(&s).expect("a valid scenario runs");
        // Per node: what was bound fits its CPU and GPUs.
        for n in &s.nodes {
            let (mut cpu, mut gpu) = (0.0, 0.0);
            for p in &s.pods {
                if out.binds.get(&format!("{}/{}", p.namespace, p.name)) == Some(&n.name) {
                    let get = |k: &str| match p.requests.get(k) { Some(Quantity::Number(v)) => *v, _ => 0.0 };
                    cpu += get("cpu");
                    gpu += get("nvidia.com/gpu");
                }
            }
            let cap = |k: &str| match n.allocatable.get(k) { Some(Quantity::Number(v)) => *v, _ => 0.0 };
            prop_assert!(cpu <= cap("cpu") + 1e-9, "{} over-committed on CPU", n.name);
            prop_assert!(gpu <= cap("nvidia.com/gpu") + 1e-9, "{} over-committed on GPUs", n.name);
        }
        // The tenant never holds more than its quota.
        let quota = match s.tenants[0].quota.get("nvidia.com/gpu") { Some(Quantity::Number(v)) => *v, _ => 0.0 };
        let held: f64 = s.pods.iter().filter(|p| out.binds.contains_key(&format!("t/{}", p.name))).map(|p| match p.requests.get("nvidia.com/gpu") { Some(Quantity::Number(v)) => *v, _ => 0.0 }).sum();
        prop_assert!(held <= quota + 1e-9, "tenant holds {held} GPUs over its quota {quota}");
        // Each bound pod gets as many devices as it asked for, and no device goes twice.
        let mut seen = std::collections::BTreeSet::new();
        for (pod, devices) in &out.devices {
            let p = s.pods.iter().find(|p| format!("t/{}", p.name) == *pod).expect("a bound pod");
            let want = match p.requests.get("nvidia.com/gpu") { Some(Quantity::Number(v)) => *v as usize, _ => 0 };
            prop_assert_eq!(devices.len(), want, "{} devices", pod);
            for d in devices {
                prop_assert!(seen.insert((out.binds[pod].clone(), d.clone())), "device {} of {} given twice", d, out.binds[pod]);
            }
        }
        // Per gang: nothing bound, or at least minMember bound.
        for g in &s.groups {
            let bound = s.pods.iter().filter(|p| p.group == g.name && out.binds.contains_key(&format!("t/{}", p.name))).count() as u32;
            prop_assert!(bound == 0 || bound >= g.min_member, "gang {} partly bound: {bound} of min {}", g.name, g.min_member);
        }
    }

    /// A second cycle over what the first bound, with a higher-priority gang arriving:
    /// preemption takes each victim gang down to its minMember, or whole, never below it,
    /// and evicts only running pods of lower priority.
    #[test]
    fn preemption_never_leaves_a_gang_below_its_min_member(s in scenario(), want in 1u32..9, size in 1u32..4) {
        let first = run(&s).expect("a valid scenario runs");
        let mut s2 = s.clone();
        s2.actions = vec!["preempt".into()];
        s2.priority_classes = vec![scheduler::PriorityClass { name: "high".into(), value: 1000 }];
        s2.tenants.clear();
        for p in &mut s2.pods {
            if let Some(n) = first.binds.get(&format!("t/{}", p.name)) {
                p.phase = PodPhase::Running;
                p.node = n.clone();
                p.devices = first.devices.get(&format!("t/{}", p.name)).cloned().unwrap_or_default();
            }
        }
        for g in &mut s2.groups {
            if s2.pods.iter().any(|p| p.group == g.name && p.phase == PodPhase::Running) {
                g.phase = GroupPhase::Running;
            }
        }
        s2.groups.push(GroupSpec {
            name: "hi".into(), namespace: "t".into(), queue: "default".into(), min_member: size,
            min_task_member: BTreeMap::new(), min_resources: BTreeMap::new(),
            priority_class: "high".into(), phase: GroupPhase::Inqueue,
        });
        for i in 0..size {
            s2.pods.push(PodSpec {
                name: format!("hi-{i}"), namespace: "t".into(), group: "hi".into(),
                phase: PodPhase::Pending,
                requests: BTreeMap::from([("cpu".to_string(), q(1.0)), ("nvidia.com/gpu".to_string(), q(want as f64))]),
                preemptable: true, ..Default::default()
            });
        }
        let out = run(&s2).expect("the second cycle runs");
        for e in &out.evictions {
            let p = s2.pods.iter().find(|p| format!("t/{}", p.name) == *e).expect("an evicted pod");
            prop_assert_eq!(p.phase, PodPhase::Running, "{} evicted though not running", e);
            prop_assert!(p.group != "hi", "the preemptor evicted itself");
        }
        for g in &s2.groups {
            let running = s2.pods.iter().filter(|p| p.group == g.name && p.phase == PodPhase::Running).count() as u32;
            let left = s2.pods.iter().filter(|p| p.group == g.name && p.phase == PodPhase::Running && !out.evictions.contains(&format!("t/{}", p.name))).count() as u32;
            prop_assert!(left == running || left == 0 || left >= g.min_member, "gang {} left with {} of min {}", g.name, left, g.min_member);
        }
    }
}
