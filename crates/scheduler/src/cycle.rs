//! One scheduling cycle: refuse what can never run, enqueue, allocate gangs whole, preempt
//! inside a queue, reclaim across queues, backfill — the actions in Volcano's order.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::Scenario;
use crate::outcome::{Outcome, ScenarioError};
use crate::resources::{add, gpu_milli, usage};
use crate::state::State;

/// Run one scheduling cycle.
pub fn run(s: &Scenario) -> Result<Outcome, ScenarioError> {
    let mut out = Outcome::default();
    let mut st = State::build(s, &mut out)?;
    // Refuse what can never run here (rather than leave it pending forever).
    let max_gpus = st.nodes.iter().map(|n| n.gpus.len()).max().unwrap_or(0) as u32;
    let total_gpus = st.cluster_gpu() / 1000;
    for i in 0..st.pods.len() {
        let p = &st.pods[i];
        if p.req.gpus > max_gpus {
            out.refused.insert(
                p.key.clone(),
                format!(
                    "requests {} nvidia.com/gpu; the largest node has {max_gpus}",
                    p.req.gpus
                ),
            );
        }
    }
    for g in 0..st.groups.len() {
        let need: i64 = st.groups[g]
            .pods
            .iter()
            .map(|p| st.pods[*p].req.gpus as i64)
            .sum();
        if need > total_gpus && !out.refused.contains_key(&st.groups[g].key) {
            out.refused.insert(
                st.groups[g].key.clone(),
                format!("the gang needs {need} GPUs; the whole cluster has {total_gpus}"),
            );
        }
        let t = st.groups[g].tenant;
        let mut gang = [0i128; 3];
        for p in &st.groups[g].pods {
            add(&mut gang, usage(&st.pods[*p].req), 1);
        }
        if let Some(why) = st.over_quota(t, &[0; 3], &gang) {
            out.refused.insert(
                st.groups[g].key.clone(),
                format!("the gang can never run: {why}"),
            );
        }
        if (st.groups[g].pods.len() as u32) < st.groups[g].min_member
            && !st.groups[g].pods.is_empty()
        {
            out.warnings.push(format!(
                "group {} has fewer pods than minMember",
                st.groups[g].key
            ));
        }
    }
    for g in 0..st.groups.len() {
        let q = &st.queues[st.groups[g].queue];
        if !q.children.is_empty() && !out.refused.contains_key(&st.groups[g].key) {
            out.refused.insert(
                st.groups[g].key.clone(),
                format!(
                    "queue {} has child queues: jobs can only be submitted to leaf queues",
                    q.name
                ),
            );
        }
    }
    let refused_groups: BTreeSet<usize> = (0..st.groups.len())
        .filter(|g| {
            out.refused.contains_key(&st.groups[*g].key)
                || st.groups[*g]
                    .pods
                    .iter()
                    .any(|p| out.refused.contains_key(&st.pods[*p].key))
        })
        .collect();
    let actions: Vec<String> = if s.actions.is_empty() {
        vec!["enqueue".into(), "allocate".into(), "backfill".into()]
    } else {
        s.actions.clone()
    };
    // Nodes a waiting, admitted gang is collecting: lower or equal priority work of other
    // gangs does not take them (no starvation of large gangs).
    let mut reserved: BTreeMap<usize, i64> = BTreeMap::new();
    for action in &actions {
        match action.as_str() {
            "enqueue" => st.enqueue(&refused_groups, &mut out),
            "allocate" | "backfill" => {
                // Shares change as gangs bind. Gangs of one queue and tenant keep their order
                // (priority, then submission), so each (queue, tenant) is a queue of gangs, and
                // the next gang is the head of the one whose shares are lowest now.
                let (mut qused, mut tused) = st.used_vectors();
                let mut lanes: BTreeMap<(usize, usize), std::collections::VecDeque<usize>> =
                    BTreeMap::new();
                let mut waiting: Vec<usize> = (0..st.groups.len())
                    .filter(|g| {
                        !refused_groups.contains(g)
                            && !st.queues[st.groups[*g].queue].missing
                            && !st.pending_pods(*g).is_empty()
                    })
                    .collect();
                waiting.sort_by_key(|g| (-st.groups[*g].priority, st.groups[*g].order));
                for g in waiting {
                    let key = (st.groups[g].queue, st.groups[g].tenant);
                    lanes.entry(key).or_default().push_back(g);
                }
                loop {
                    let next = lanes
                        .iter()
                        .filter_map(|(lane, gangs)| {
                            let g = *gangs.front()?;
                            Some((st.group_key(g, &qused, &tused), *lane))
                        })
                        .min();
                    let Some((_, lane)) = next else { break };
                    let Some(g) = lanes.get_mut(&lane).and_then(|l| l.pop_front()) else {
                        break;
                    };
                    if action == "allocate"
                        && st.groups[g].phase == "Pending"
                        && actions.iter().any(|a| a == "enqueue")
                    {
                        // Not admitted: its queue's capability (or an ancestor's) is taken.
                        let need = st.pending_gpu(g);
                        let chain = st.queue_chain(st.groups[g].queue);
                        let full = chain.iter().copied().find(|a| {
                            st.queues[*a]
                                .capability_gpu
                                .is_some_and(|c| st.queue_used(*a) + need > c)
                        });
                        let why = match full {
                            Some(a) => format!(
                                "queue {} is at its capability; the gang waits to be admitted",
                                st.queues[a].name
                            ),
                            None if st.queues[chain[0]].capability_res.iter().any(Option::is_some) => format!(
                                "queue {} is at its capability; the gang waits to be admitted",
                                st.queues[chain[0]].name
                            ),
                            None => format!(
                                "the gang's minResources do not fit what queue {} may hold now (the cluster, less what is held and reserved, less other queues' guarantees); it waits to be admitted",
                                st.queues[chain[0]].name
                            ),
                        };
                        for p in st.pending_pods(g) {
                            out.reasons.insert(st.pods[p].key.clone(), why.clone());
                        }
                        continue;
                    }
                    // Backfill places best-effort pods only (no CPU, GPU or memory asked), of
                    // gangs already admitted.
                    if action == "backfill"
                        && (st.best_effort_pending(g).is_empty()
                            || st.groups[g].phase == "Pending"
                                && actions.iter().any(|a| a == "enqueue"))
                    {
                        continue;
                    }
                    let q = st.groups[g].queue;
                    let need = st.pending_gpu(g);
                    if let Some(full) = st.queue_chain(q).into_iter().find(|a| {
                        st.queues[*a]
                            .capability_gpu
                            .is_some_and(|c| qused[*a][2] as i64 + need > c)
                    }) {
                        for p in st.pending_pods(g) {
                            out.reasons.insert(
                                st.pods[p].key.clone(),
                                format!("queue {} is at its capability", st.queues[full].name),
                            );
                        }
                        continue;
                    }
                    let (kept, keepers) = st.guaranteed_to_others(q, &qused);
                    if kept > 0 {
                        let used: i64 = (0..st.queues.len())
                            .filter(|a| st.queues[*a].parent.is_none())
                            .map(|a| qused[a][2] as i64)
                            .sum();
                        if st.cluster_gpu() - used - need < kept {
                            for p in st.pending_pods(g) {
                                out.reasons.insert(
                                    st.pods[p].key.clone(),
                                    format!(
                                        "the free GPUs are guaranteed to queue(s) {}",
                                        keepers.join(", ")
                                    ),
                                );
                            }
                            continue;
                        }
                    }
                    let t = st.groups[g].tenant;
                    if let Some(why) = st.over_quota(t, &tused[t], &st.pending_need(g)) {
                        for p in st.pending_pods(g) {
                            out.reasons.insert(st.pods[p].key.clone(), why.clone());
                        }
                        continue;
                    }
                    let prio = st.groups[g].priority;
                    let exclude: BTreeSet<usize> = reserved
                        .iter()
                        .filter(|(_, rp)| **rp >= prio)
                        .map(|(n, _)| *n)
                        .collect();
                    // Volcano's allocate takes a job's tasks until the job is ready, then one
                    // at a time, putting the job back so the queue whose share is now lowest
                    // goes next (two queues split a node by weight). Gangs with per-task
                    // minimums are placed whole, as before.
                    let limit = if st.groups[g].min_task.values().any(|m| *m > 0) {
                        None
                    } else {
                        let ready = st.ready_count(g) as u32;
                        Some(st.groups[g].min_member.saturating_sub(ready).max(1) as usize)
                    };
                    let attempt = if action == "backfill" {
                        st.try_best_effort(g, &exclude)
                    } else {
                        st.try_group(g, &exclude, limit)
                    };
                    match attempt {
                        Some(placed) => {
                            for (p, n) in placed {
                                out.binds
                                    .insert(st.pods[p].key.clone(), st.nodes[n].name.clone());
                                out.devices.insert(st.pods[p].key.clone(), st.devices_of(p));
                                let u = usage(&st.pods[p].req);
                                for a in st.queue_chain(st.groups[g].queue) {
                                    add(&mut qused[a], u, 1);
                                }
                                add(&mut tused[t], u, 1);
                            }
                            st.groups[g].phase = "Running".into();
                            if !st.pending_pods(g).is_empty() {
                                if let Some(l) = lanes.get_mut(&lane) {
                                    l.push_front(g);
                                }
                            }
                        }
                        None => {
                            // Reserve the nodes this gang could use now, for the rest of the cycle.
                            if st.groups[g].min_member > 1 {
                                for p in st.pending_pods(g) {
                                    if let Some(n) = st.best_node(p, &BTreeSet::new()) {
                                        reserved.entry(n).or_insert(prio);
                                    }
                                }
                            }
                            for (p, why) in st.why_gang_waits(g) {
                                out.reasons.insert(st.pods[p].key.clone(), why);
                            }
                        }
                    }
                }
            }
            "preempt" | "reclaim" => {
                let reclaim = action == "reclaim";
                // Shares for reclaim: GPUs where the cluster has them (the scarce resource, the
                // spec's fairness); every resource, as Volcano's proportion, where it has none.
                let by_resources = st.cluster_gpu() == 0;
                let (held0, _) = st.used_vectors();
                let deserved_res = st.proportion_deserved(&held0);
                for g in st.group_order() {
                    if refused_groups.contains(&g)
                        || st.pending_pods(g).is_empty()
                        || st.groups[g].phase == "Pending" && actions.iter().any(|a| a == "enqueue")
                    {
                        continue;
                    }
                    let q = st.groups[g].queue;
                    if reclaim
                        && if by_resources {
                            State::overused(&deserved_res[q], &held0[q])
                        } else {
                            st.queue_used(q) >= st.deserved(q)
                        }
                    {
                        continue; // only queues below their deserved share reclaim
                    }
                    // Victim gangs: same queue and lower priority (preempt), or other reclaimable
                    // queues above their deserved share (reclaim); whole gangs, lowest first.
                    let mut victims: Vec<usize> = (0..st.groups.len())
                        .filter(|v| {
                            *v != g
                                && st.groups[*v]
                                    .pods
                                    .iter()
                                    .any(|p| st.pods[*p].phase == "Running")
                        })
                        .filter(|v| {
                            let vq = st.groups[*v].queue;
                            if reclaim {
                                vq != q
                                    && st.queues[vq].reclaimable
                                    && if by_resources {
                                        !(0..3).all(|d| held0[vq][d] <= deserved_res[vq][d])
                                    } else {
                                        st.queue_used(vq) > st.deserved(vq)
                                    }
                            } else {
                                vq == q && st.groups[*v].priority < st.groups[g].priority
                            }
                        })
                        .filter(|v| st.groups[*v].pods.iter().any(|p| st.pods[*p].preemptable))
                        .collect();
                    // A preemptor that fits as things are takes nothing (Volcano preempts only
                    // where the node's future idle resources fall short).
                    {
                        let trial = st.nodes.clone();
                        let mut ok = 0;
                        for p in st.pending_pods(g) {
                            if let Some(n) = st.best_node(p, &BTreeSet::new()) {
                                let req = st.pods[p].req.clone();
                                if st.take(n, &req, p, st.plugins.contains("dynamic-mig")) {
                                    ok += 1;
                                }
                            }
                        }
                        st.nodes = trial;
                        let need = st.pending_need(g);
                        let (qused, _) = st.used_vectors();
                        let queue_room = st.queue_chain(q).iter().all(|a| {
                            (0..3).all(|d| {
                                st.queues[*a].capability_res[d]
                                    .is_none_or(|c| qused[*a][d] + need[d] <= c)
                            })
                        });
                        if queue_room
                            && ok > 0
                            && (st.ready_count(g) + ok) as u32 >= st.groups[g].min_member.max(1)
                        {
                            continue;
                        }
                    }
                    // Reclaim looks at sibling queues first, then up the tree (the deepest
                    // common ancestor first); within that, lowest priority, newest first.
                    let mine = st.queue_chain(q);
                    victims.sort_by_key(|v| {
                        let theirs = st.queue_chain(st.groups[*v].queue);
                        let shared = mine.iter().filter(|a| theirs.contains(a)).count();
                        (
                            std::cmp::Reverse(shared),
                            st.queues[st.groups[*v].queue].priority,
                            st.groups[*v].priority,
                            std::cmp::Reverse(st.groups[*v].order),
                        )
                    });
                    let saved_nodes = st.nodes.clone();
                    // Victims, one unit at a time: first the tasks a victim gang has beyond its
                    // minMember (Volcano's gang plugin: a job is preempted down to its
                    // minAvailable, newest task first), then — ONYX's priority preemption,
                    // which Volcano v1.7 does not do — whole gangs. Only as many as the
                    // preemptor needs.
                    let mut units: Vec<Vec<usize>> = Vec::new();
                    for v in &victims {
                        let running: Vec<usize> = st.groups[*v]
                            .pods
                            .iter()
                            .copied()
                            .filter(|p| st.pods[*p].phase == "Running")
                            .collect();
                        let slack = running
                            .len()
                            .saturating_sub(st.groups[*v].min_member as usize);
                        // Pods marked not preemptable (`volcano.sh/preemptable: "false"`) stay.
                        // Nor do pods of the preemptor's priority or higher (the priority
                        // plugin compares tasks).
                        let prio = st.groups[g].priority;
                        for p in running
                            .iter()
                            .rev()
                            .filter(|p| {
                                st.pods[**p].preemptable && (reclaim || st.pods[**p].priority < prio)
                            })
                            .take(slack)
                        {
                            units.push(vec![*p]);
                        }
                    }
                    for v in &victims {
                        if st.groups[*v].pods.iter().all(|p| st.pods[*p].preemptable) {
                            units.push(st.groups[*v].pods.clone());
                        }
                    }
                    let mut chosen: Vec<usize> = Vec::new();
                    let mut fits = false;
                    for unit in units {
                        let unit: Vec<usize> = unit
                            .into_iter()
                            .filter(|p| st.pods[*p].phase == "Running" && !chosen.contains(p))
                            .collect();
                        if unit.is_empty() {
                            continue;
                        }
                        // Reclaim never takes a queue below its deserved share (no ping-pong).
                        if reclaim {
                            let vq = st.groups[st.pods[unit[0]].group].queue;
                            if by_resources {
                                // proportion's Reclaimable: take while the queue still holds
                                // more than it deserves in some resource.
                                let mut left = held0[vq];
                                for p in chosen.iter().filter(|p| st.groups[st.pods[**p].group].queue == vq) {
                                    add(&mut left, usage(&st.pods[*p].req), -1);
                                }
                                if (0..3).all(|d| left[d] <= deserved_res[vq][d]) {
                                    continue;
                                }
                            } else {
                                let give: i64 = unit.iter().map(|p| gpu_milli(&st.pods[*p].req)).sum();
                                let given: i64 = chosen
                                    .iter()
                                    .filter(|p| st.groups[st.pods[**p].group].queue == vq)
                                    .map(|p| gpu_milli(&st.pods[*p].req))
                                    .sum();
                                if st.queue_used(vq) - given - give < st.deserved(vq) {
                                    continue;
                                }
                            }
                        }
                        for p in &unit {
                            st.release(*p);
                        }
                        chosen.extend(unit);
                        // Would the gang fit now?
                        let trial = st.nodes.clone();
                        let pend = st.pending_pods(g);
                        let mut ok = 0;
                        for p in &pend {
                            if let Some(n) = st.best_node(*p, &BTreeSet::new()) {
                                let req = st.pods[*p].req.clone();
                                if st.take(n, &req, *p, st.plugins.contains("dynamic-mig")) {
                                    ok += 1;
                                }
                            }
                        }
                        st.nodes = trial;
                        if (st.ready_count(g) + ok) as u32 >= st.groups[g].min_member.max(1) {
                            fits = true;
                            break;
                        }
                    }
                    if fits {
                        let mut nodes_used: BTreeSet<String> = BTreeSet::new();
                        for p in chosen.clone() {
                            let v = st.pods[p].group;
                            out.evictions.insert(st.pods[p].key.clone());
                            out.eviction_reasons.insert(
                                st.pods[p].key.clone(),
                                if reclaim {
                                    format!(
                                        "pod reclaimed: queue {} is over its share and {} of queue {} needs the resources",
                                        st.queues[st.groups[v].queue].name,
                                        st.groups[g].key,
                                        st.queues[st.groups[g].queue].name
                                    )
                                } else {
                                    format!(
                                        "pod preempted by {}, of higher priority in queue {}",
                                        st.groups[g].key,
                                        st.queues[st.groups[g].queue].name
                                    )
                                },
                            );
                            if let Some(n) = st.pods[p].node {
                                nodes_used.insert(st.nodes[n].name.clone());
                            }
                            st.pods[p].phase = "Releasing".into();
                            let left = st.groups[v]
                                .pods
                                .iter()
                                .filter(|x| st.pods[**x].phase == "Running")
                                .count();
                            if (left as u32) < st.groups[v].min_member.max(1) {
                                st.groups[v].phase = "Pending".into();
                            }
                        }
                        // The freed resources stay with the victims until they are gone: the gang
                        // is pipelined onto those nodes and binds in a later cycle.
                        st.nodes = saved_nodes;
                        out.pipelined
                            .insert(st.groups[g].key.clone(), nodes_used.into_iter().collect());
                    } else {
                        // Nothing is evicted: the victims keep what they hold.
                        st.nodes = saved_nodes;
                    }
                }
            }
            "drain" => {
                // Every pod on a cordoned node is evicted, and a gang is moved whole: its
                // members on other nodes go too, so it restarts together elsewhere.
                let cordoned: BTreeSet<usize> = (0..st.nodes.len()).filter(|n| st.nodes[*n].unschedulable).collect();
                let gangs: BTreeSet<usize> = st
                    .pods
                    .iter()
                    .filter(|p| p.phase == "Running" && p.node.is_some_and(|n| cordoned.contains(&n)))
                    .map(|p| p.group)
                    .collect();
                for g in gangs {
                    for p in st.groups[g].pods.clone() {
                        if st.pods[p].phase == "Running" {
                            out.evictions.insert(st.pods[p].key.clone());
                            st.pods[p].phase = "Releasing".into();
                        }
                    }
                    st.groups[g].phase = "Pending".into();
                }
            }
            other => {
                return Err(ScenarioError::Invalid(format!(
                    "unknown action {other:?}: expected enqueue, allocate, backfill, preempt, reclaim, drain"
                )))
            }
        }
    }
    for g in &st.groups {
        let phase = if out.refused.contains_key(&g.key) {
            "Refused".to_string()
        } else {
            g.phase.clone()
        };
        out.group_phases.insert(g.key.clone(), phase);
    }
    // Every node that has MIG instances, or may get them: each GPU's instances by start
    // slot, `[]` for a GPU that has none.
    for n in &st.nodes {
        let has_mig = n.gpus.iter().any(|g| !g.instances.is_empty());
        if has_mig || (st.plugins.contains("dynamic-mig") && !n.gpus.is_empty()) {
            let made: Vec<Vec<String>> = n
                .gpus
                .iter()
                .map(|g| g.instances.iter().map(|(p, _)| p.clone()).collect())
                .collect();
            out.mig_layouts.insert(
                n.name.clone(),
                made.iter().map(|l| crate::mig::by_start(l)).collect(),
            );
            out.mig_instances.insert(n.name.clone(), made);
        }
    }
    Ok(out)
}
