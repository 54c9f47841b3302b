//! The enqueue action (Volcano's `enqueue` with the proportion plugin's `JobEnqueueable`):
//! which Pending PodGroups become Inqueue, so that allocate may place them.
//!
//! Rules, as Volcano v1.7 and v1.10 have them:
//! - a group whose queue does not exist is skipped: it stays Pending;
//! - a group without `minResources` is let in;
//! - otherwise it is let in when its `minResources`, plus what its queue holds and what the
//!   queue's Inqueue groups reserve, fit the queue's real capability: the queue's
//!   `capability` (unbounded where it names no amount), no more than the cluster's total less
//!   the other queues' guarantees. v1.7 compares every resource; v1.10 only those the group
//!   asks for (`LessEqualWithDimension`). ONYX's hierarchical queues also bound a group by
//!   each ancestor's `capability`.
//! - what a group let in reserves counts against the next group of its queue in this cycle.

use std::collections::BTreeSet;

use crate::model::GroupPhase;
use crate::outcome::Outcome;
use crate::resources::{add, Dim, Resources};
use crate::state::State;

impl State {
    pub(crate) fn enqueue(&mut self, refused: &BTreeSet<usize>, out: &mut Outcome) {
        let (used, _) = self.used_vectors();
        let mut reserved = vec![Resources::default(); self.queues.len()];
        for g in &self.groups {
            if let (Some(min), GroupPhase::Inqueue) = (g.min_res, g.phase) {
                for a in self.queue_chain(g.queue) {
                    add(&mut reserved[a], min, 1);
                }
            }
        }
        let mut guaranteed = Resources::default();
        for q in self.queues.iter().filter(|q| !q.missing) {
            add(&mut guaranteed, q.guarantee_res.map(|x| x.unwrap_or(0)), 1);
        }
        for g in self.group_order() {
            if self.groups[g].phase != GroupPhase::Pending || refused.contains(&g) {
                continue;
            }
            let q = self.groups[g].queue;
            if self.queues[q].missing {
                continue;
            }
            let Some(min) = self.groups[g].min_res else {
                self.groups[g].phase = GroupPhase::Inqueue;
                continue;
            };
            let chain = self.queue_chain(q);
            let fits = chain.iter().all(|&a| {
                Dim::ALL.into_iter().all(|d| {
                    if self.volcano_1_10 && min[d] == 0 {
                        return true;
                    }
                    let own = self.queues[a].capability_res[d];
                    let bound = if a == q {
                        // proportion's realCapability: the cluster less others' guarantees.
                        let room = self.total[d] - guaranteed[d]
                            + self.queues[a].guarantee_res[d].unwrap_or(0);
                        Some(own.map_or(room, |c| c.min(room)))
                    } else {
                        own
                    };
                    bound.is_none_or(|b| used[a][d] + reserved[a][d] + min[d] <= b)
                })
            });
            if fits {
                self.groups[g].phase = GroupPhase::Inqueue;
                for a in chain {
                    add(&mut reserved[a], min, 1);
                }
            }
        }
        for g in &self.groups {
            if self.queues[g.queue].missing {
                for &p in &g.pods {
                    out.reasons
                        .entry(self.pods[p].key.clone())
                        .or_insert_with(|| {
                            format!("queue {} does not exist", self.queues[g.queue].name)
                        });
                }
            }
        }
    }
}
