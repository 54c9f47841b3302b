//! Where a pod can go and what it takes there: node selectors and taints, CPU, memory and
//! pod slots, and GPUs as whole devices, fractions or MIG instances (re-partitioning an idle
//! GPU when dynamic MIG is on, within its geometry). A gang is tried whole: either every
//! member has a node, or nothing is taken.

use std::collections::BTreeSet;

use crate::model::PodPhase;
use crate::model::{untolerated, Taint};
use crate::resources::{gpu_milli, take_on, Req};
use crate::state::State;
use crate::statement::Statement;

impl State {
    pub(crate) fn selector_ok(&self, p: usize, n: usize) -> bool {
        let node = &self.nodes[n];
        !node.unschedulable
            && self.pods[p]
                .selector
                .iter()
                .all(|(k, v)| node.labels.get(k) == Some(v))
            && self.untolerated(p, n).is_none()
    }

    /// A taint of node `n` that bars pod `p`.
    pub(crate) fn untolerated(&self, p: usize, n: usize) -> Option<&Taint> {
        untolerated(&self.nodes[n].taints, &self.pods[p].tolerations)
    }

    /// Whether `req` fits node `n` now (with dynamic MIG, an idle GPU may be re-partitioned).
    pub(crate) fn fits(&self, n: usize, req: &Req) -> bool {
        let mut copy = self.nodes[n].clone();
        take_on(
            &mut copy,
            req,
            usize::MAX,
            self.plugins.contains("dynamic-mig"),
        )
    }

    pub(crate) fn take(&mut self, n: usize, req: &Req, pod: usize, dynamic: bool) -> bool {
        let mut copy = self.nodes[n].clone();
        if take_on(&mut copy, req, pod, dynamic) {
            self.nodes[n] = copy;
            true
        } else {
            false
        }
    }

    pub(crate) fn release(&mut self, pod: usize) {
        let Some(n) = self.pods[pod].node else { return };
        let req = self.pods[pod].req.clone();
        let node = &mut self.nodes[n];
        node.cpu_free += req.cpu;
        node.mem_free += req.mem;
        node.pods_free += 1;
        if req.whole_node {
            node.exclusive = false;
        }
        for g in node.gpus.iter_mut() {
            for inst in g.instances.iter_mut() {
                if inst.1 == Some(pod) {
                    inst.1 = None;
                }
            }
        }
        for g in node.gpus.iter_mut() {
            g.shares.retain(|(p, _)| *p != pod);
        }
    }

    /// Best node for a pod: feasible, then the tightest fit (fewest whole GPUs left free,
    /// then least GPU share, then least CPU), which keeps whole nodes whole and packs slices.
    pub(crate) fn best_node(&self, p: usize, exclude: &BTreeSet<usize>) -> Option<usize> {
        let req = &self.pods[p].req;
        (0..self.nodes.len())
            .filter(|n| !exclude.contains(n) && self.selector_ok(p, *n) && self.fits(*n, req))
            .min_by_key(|n| {
                let node = &self.nodes[*n];
                let whole_free = node
                    .gpus
                    .iter()
                    .filter(|g| g.instances.is_empty() && g.used() == 0)
                    .count() as i64;
                let wants_gpu = req.gpus > 0 || req.gpu_milli > 0 || !req.mig.is_empty();
                let free_share: i64 = node
                    .gpus
                    .iter()
                    .map(|g| {
                        if g.instances.is_empty() {
                            1000 - g.used()
                        } else {
                            0
                        }
                    })
                    .sum();
                // GPU pods take the node they fill most; CPU-only pods go where no GPU is
                // left whole, so whole GPUs (and whole nodes) stay free for GPU work.
                (
                    whole_free,
                    free_share * wants_gpu as i64,
                    node.cpu_free,
                    *n as i64,
                )
            })
    }

    /// Try to place a group's pending pods; commit only if the gang is satisfied.
    /// Place gang `g`'s pending pods, all or nothing for its `minMember`; `limit` caps how
    /// many are taken this turn (Volcano's allocate takes a job's tasks until it is ready,
    /// then one at a time, each turn going to the queue whose share is lowest).
    pub(crate) fn try_group(
        &mut self,
        g: usize,
        exclude: &BTreeSet<usize>,
        limit: Option<usize>,
    ) -> Option<Vec<(usize, usize)>> {
        let pending = self.pending_pods(g);
        if pending.is_empty() {
            return None;
        }
        let stmt = Statement::begin(self);
        let mut placed = Vec::new();
        for p in pending {
            // A task that fits nowhere is passed over; the next is tried (Volcano's allocate
            // goes on through a job's tasks until the job is ready).
            if limit.is_some_and(|k| placed.len() >= k.max(1)) {
                break;
            }
            if let Some(n) = self.best_node(p, exclude) {
                let req = self.pods[p].req.clone();
                let dynamic = self.plugins.contains("dynamic-mig");
                if self.take(n, &req, p, dynamic) {
                    placed.push((p, n));
                }
            }
        }
        let ready = self.ready_count(g) + placed.len();
        let tasks_ok = self.groups[g].min_task.iter().all(|(task, min)| {
            let have = self.groups[g]
                .pods
                .iter()
                .filter(|p| {
                    self.pods[**p].task == *task
                        && (self.pods[**p].phase.holds() || placed.iter().any(|(x, _)| x == *p))
                })
                .count();
            have as u32 >= *min
        });
        if ready as u32 >= self.groups[g].min_member && tasks_ok && !placed.is_empty() {
            for (p, n) in &placed {
                self.pods[*p].node = Some(*n);
                self.pods[*p].phase = PodPhase::Bound;
            }
            stmt.commit();
            Some(placed)
        } else {
            stmt.discard(self);
            None
        }
    }

    /// A gang's pending best-effort pods (no CPU, memory or GPU asked), higher pod priority
    /// first, then as listed: the order Volcano's backfill picks them in (TaskOrderFn).
    pub(crate) fn best_effort_pending(&self, g: usize) -> Vec<usize> {
        let mut be: Vec<usize> = self
            .pending_pods(g)
            .into_iter()
            .filter(|p| {
                let r = &self.pods[*p].req;
                r.cpu == 0 && r.mem == 0 && gpu_milli(r) == 0
            })
            .collect();
        be.sort_by_key(|p| std::cmp::Reverse(self.pods[*p].priority));
        be
    }

    /// Volcano's backfill for one gang: its best-effort pods one after another on the best
    /// node each, kept when the gang is then ready (its `minMember`), else given back.
    pub(crate) fn try_best_effort(
        &mut self,
        g: usize,
        exclude: &BTreeSet<usize>,
    ) -> Option<Vec<(usize, usize)>> {
        let stmt = Statement::begin(self);
        let mut placed = Vec::new();
        for p in self.best_effort_pending(g) {
            let Some(n) = self.best_node(p, exclude) else {
                break;
            };
            let req = self.pods[p].req.clone();
            if self.take(n, &req, p, false) {
                placed.push((p, n));
            }
        }
        if !placed.is_empty()
            && (self.ready_count(g) + placed.len()) as u32 >= self.groups[g].min_member
        {
            for (p, n) in &placed {
                self.pods[*p].node = Some(*n);
                self.pods[*p].phase = PodPhase::Bound;
            }
            stmt.commit();
            Some(placed)
        } else {
            stmt.discard(self);
            None
        }
    }

    /// The devices pod `p` holds on its node (see `PodSpec::devices`).
    pub(crate) fn devices_of(&self, p: usize) -> Vec<String> {
        let Some(n) = self.pods[p].node else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (gi, g) in self.nodes[n].gpus.iter().enumerate() {
            for _ in g.shares.iter().filter(|(holder, _)| *holder == p) {
                out.push(gi.to_string());
            }
            for (ii, _) in g
                .instances
                .iter()
                .enumerate()
                .filter(|(_, (_, holder))| *holder == Some(p))
            {
                out.push(format!("{gi}/{ii}"));
            }
        }
        out
    }
}
