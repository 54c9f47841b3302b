//! One scheduling cycle: refuse what can never run, then the configured actions in order —
//! enqueue, allocate gangs whole, preempt inside a queue, reclaim across queues, backfill,
//! drain — each in its own module over one `Session`.

use std::collections::{BTreeMap, BTreeSet};

use crate::action::Action;
use crate::model::Scenario;
use crate::outcome::{Outcome, ScenarioError};
use crate::resources::{add, usage, Resources};
use crate::session::Session;
use crate::state::State;

/// Run one scheduling cycle.
pub fn run(s: &Scenario) -> Result<Outcome, ScenarioError> {
    let mut out = Outcome::default();
    let st = State::build(s, &mut out)?;
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
        let mut gang = Resources::default();
        for p in &st.groups[g].pods {
            add(&mut gang, usage(&st.pods[*p].req), 1);
        }
        if let Some(why) = st.over_quota(t, &Resources::default(), &gang) {
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
    let actions: Vec<Action> = if s.actions.is_empty() {
        Action::DEFAULT.to_vec()
    } else {
        s.actions
            .iter()
            .map(|a| Action::parse(a))
            .collect::<Result<_, _>>()?
    };
    let mut session = Session {
        st,
        out,
        refused: refused_groups,
        reserved: BTreeMap::new(),
        enqueue_runs: actions.contains(&Action::Enqueue),
    };
    for action in actions {
        match action {
            Action::Enqueue => {
                let Session {
                    st, out, refused, ..
                } = &mut session;
                st.enqueue(refused, out)
            }
            Action::Allocate | Action::Backfill => crate::allocate::execute(&mut session, action),
            Action::Preempt => crate::preempt::execute(&mut session, false),
            Action::Reclaim => crate::preempt::execute(&mut session, true),
            Action::Drain => crate::drain::execute(&mut session),
        }
    }
    let Session { st, mut out, .. } = session;
    for g in &st.groups {
        let phase = if out.refused.contains_key(&g.key) {
            "Refused".to_string()
        } else {
            g.phase.as_str().to_string()
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
