//! Preempt (inside a queue, toward higher priority) and reclaim (across queues, from those
//! over their deserved share): victims chosen one unit at a time, only as many as the
//! preemptor needs, evicted only when it then fits.

use std::collections::BTreeSet;

use crate::model::{GroupPhase, PodPhase};
use crate::resources::{add, gpu_milli, usage, Dim};
use crate::session::Session;
use crate::state::State;
use crate::statement::Statement;

/// Run `preempt`, or `reclaim` when `reclaim` is set.
pub(crate) fn execute(s: &mut Session, reclaim: bool) {
    let Session {
        st,
        out,
        refused,
        enqueue_runs,
        ..
    } = s;
    let (refused_groups, enqueue_runs) = (&*refused, *enqueue_runs);
    // Shares for reclaim: GPUs where the cluster has them (the scarce resource, the
    // spec's fairness); every resource, as Volcano's proportion, where it has none.
    let by_resources = st.cluster_gpu() == 0;
    let (held0, _) = st.used_vectors();
    let deserved_res = st.proportion_deserved(&held0);
    for g in st.group_order() {
        if refused_groups.contains(&g)
            || st.pending_pods(g).is_empty()
            || st.groups[g].phase == GroupPhase::Pending && enqueue_runs
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
                        .any(|p| st.pods[*p].phase == PodPhase::Running)
            })
            .filter(|v| {
                let vq = st.groups[*v].queue;
                if reclaim {
                    vq != q
                        && st.queues[vq].reclaimable
                        && if by_resources {
                            !Dim::ALL
                                .into_iter()
                                .all(|d| held0[vq][d] <= deserved_res[vq][d])
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
            let trial = Statement::begin(st);
            let mut ok = 0;
            for p in st.pending_pods(g) {
                if let Some(n) = st.best_node(p, &BTreeSet::new()) {
                    let req = st.pods[p].req.clone();
                    if st.take(n, &req, p, st.plugins.contains("dynamic-mig")) {
                        ok += 1;
                    }
                }
            }
            trial.discard(st);
            let need = st.pending_need(g);
            let (qused, _) = st.used_vectors();
            let queue_room = st.queue_chain(q).iter().all(|a| {
                Dim::ALL.into_iter().all(|d| {
                    st.queues[*a].capability_res[d].is_none_or(|c| qused[*a][d] + need[d] <= c)
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
        // Victims are released tentatively: what they free is for the trial fits only.
        let evictions = Statement::begin(st);
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
                .filter(|p| st.pods[*p].phase == PodPhase::Running)
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
                .filter(|p| st.pods[**p].preemptable && (reclaim || st.pods[**p].priority < prio))
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
                .filter(|p| st.pods[*p].phase == PodPhase::Running && !chosen.contains(p))
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
                    for p in chosen
                        .iter()
                        .filter(|p| st.groups[st.pods[**p].group].queue == vq)
                    {
                        add(&mut left, usage(&st.pods[*p].req), -1);
                    }
                    if Dim::ALL.into_iter().all(|d| left[d] <= deserved_res[vq][d]) {
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
            let trial = Statement::begin(st);
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
            trial.discard(st);
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
                st.pods[p].phase = PodPhase::Releasing;
                let left = st.groups[v]
                    .pods
                    .iter()
                    .filter(|x| st.pods[**x].phase == PodPhase::Running)
                    .count();
                if (left as u32) < st.groups[v].min_member.max(1) {
                    st.groups[v].phase = GroupPhase::Pending;
                }
            }
            // The freed resources stay with the victims until they are gone: the gang
            // is pipelined onto those nodes and binds in a later cycle.
            evictions.discard(st);
            out.pipelined
                .insert(st.groups[g].key.clone(), nodes_used.into_iter().collect());
        } else {
            // Nothing is evicted: the victims keep what they hold.
            evictions.discard(st);
        }
    }
}
