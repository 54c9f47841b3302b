//! Allocate and backfill: admitted gangs placed whole (then one task at a time, so queues
//! split nodes by their shares), and best-effort pods of admitted gangs in what is left.

use std::collections::{BTreeMap, BTreeSet};

use crate::action::Action;
use crate::model::GroupPhase;
use crate::resources::{add, usage};
use crate::session::Session;

/// Run `allocate` or `backfill` (`mode`).
pub(crate) fn execute(s: &mut Session, mode: Action) {
    let Session {
        st,
        out,
        refused,
        reserved,
        enqueue_runs,
    } = s;
    let (refused_groups, enqueue_runs) = (&*refused, *enqueue_runs);
    // Shares change as gangs bind. Gangs of one queue and tenant keep their order
    // (priority, then submission), so each (queue, tenant) is a queue of gangs, and
    // the next gang is the head of the one whose shares are lowest now.
    let (mut qused, mut tused) = st.used_vectors();
    let mut lanes: BTreeMap<(usize, usize), std::collections::VecDeque<usize>> = BTreeMap::new();
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
        if mode == Action::Allocate && st.groups[g].phase == GroupPhase::Pending && enqueue_runs {
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
                    None if st.queues[chain[0]].capability_res.iter().any(|c| c.is_some()) => format!(
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
        if mode == Action::Backfill
            && (st.best_effort_pending(g).is_empty()
                || st.groups[g].phase == GroupPhase::Pending && enqueue_runs)
        {
            continue;
        }
        let q = st.groups[g].queue;
        let need = st.pending_gpu(g);
        if let Some(full) = st.queue_chain(q).into_iter().find(|a| {
            st.queues[*a]
                .capability_gpu
                .is_some_and(|c| qused[*a].gpu as i64 + need > c)
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
                .map(|a| qused[a].gpu as i64)
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
        let attempt = if mode == Action::Backfill {
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
                st.groups[g].phase = GroupPhase::Running;
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
