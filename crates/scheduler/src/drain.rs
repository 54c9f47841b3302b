//! Drain (ONYX's): every pod on a cordoned node is evicted, and a gang is moved whole.

use std::collections::BTreeSet;

use crate::model::{GroupPhase, PodPhase};
use crate::session::Session;

pub(crate) fn execute(s: &mut Session) {
    let Session { st, out, .. } = s;
    // Every pod on a cordoned node is evicted, and a gang is moved whole: its
    // members on other nodes go too, so it restarts together elsewhere.
    let cordoned: BTreeSet<usize> = (0..st.nodes.len())
        .filter(|n| st.nodes[*n].unschedulable)
        .collect();
    let gangs: BTreeSet<usize> = st
        .pods
        .iter()
        .filter(|p| p.phase == PodPhase::Running && p.node.is_some_and(|n| cordoned.contains(&n)))
        .map(|p| p.group)
        .collect();
    for g in gangs {
        for p in st.groups[g].pods.clone() {
            if st.pods[p].phase == PodPhase::Running {
                out.evictions.insert(st.pods[p].key.clone());
                st.pods[p].phase = PodPhase::Releasing;
            }
        }
        st.groups[g].phase = GroupPhase::Pending;
    }
}
