//! Why a pod or gang waits, in the words `kubectl describe` would use: the scheduler's own
//! reasons, never a guess.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::PodPhase;
use crate::resources::{add, gpu_milli, usage, Resources};
use crate::state::State;
use crate::statement::Statement;

impl State {
    pub(crate) fn pending_pods(&self, g: usize) -> Vec<usize> {
        self.groups[g]
            .pods
            .iter()
            .copied()
            .filter(|p| self.pods[*p].phase == PodPhase::Pending && self.pods[*p].node.is_none())
            .collect()
    }

    pub(crate) fn ready_count(&self, g: usize) -> usize {
        self.groups[g]
            .pods
            .iter()
            .filter(|p| {
                matches!(
                    self.pods[**p].phase,
                    PodPhase::Running | PodPhase::Bound | PodPhase::Succeeded
                )
            })
            .count()
    }

    /// Why pod `p` fits no node, as `kubectl describe` says it: `0/3 nodes are available:
    /// 1 node(s) were unschedulable, 2 Insufficient nvidia.com/gpu.`
    pub(crate) fn why_not(&self, p: usize) -> String {
        let req = &self.pods[p].req;
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut available = 0;
        for (n, node) in self.nodes.iter().enumerate() {
            let whole_free = node
                .gpus
                .iter()
                .filter(|g| g.instances.is_empty() && g.used() == 0)
                .count() as u32;
            let reason = if node.unschedulable {
                "node(s) were unschedulable".to_string()
            } else if let Some(t) = self.untolerated(p, n) {
                format!("node(s) had untolerated taint {{{}: {}}}", t.key, t.value)
            } else if !self.selector_ok(p, n) {
                "node(s) didn't match Pod's node affinity/selector".into()
            } else if node.exclusive {
                "node(s) were held whole by one pod".into()
            } else if req.whole_node && node.pods_free != node.pods_cap {
                "node(s) were not empty (the queue hands out whole nodes)".into()
            } else if node.cpu_free < req.cpu {
                "Insufficient cpu".into()
            } else if node.mem_free < req.mem {
                "Insufficient memory".into()
            } else if node.pods_free < 1 {
                "Too many pods".into()
            } else if whole_free < req.gpus {
                "Insufficient nvidia.com/gpu".into()
            } else if !self.fits(n, req) {
                match req.mig.keys().next() {
                    Some(profile) => format!("Insufficient nvidia.com/mig-{profile}"),
                    None => "Insufficient GPU share".into(),
                }
            } else {
                available += 1;
                continue;
            };
            *counts.entry(reason).or_default() += 1;
        }
        let parts: Vec<String> = counts.iter().map(|(r, c)| format!("{c} {r}")).collect();
        format!(
            "{available}/{} nodes are available: {}.",
            self.nodes.len(),
            parts.join(", ")
        )
    }

    /// Why a gang that did not bind waits, for each of its pending pods.
    pub(crate) fn why_gang_waits(&mut self, g: usize) -> Vec<(usize, String)> {
        let pending = self.pending_pods(g);
        let (key, min_member, size) = {
            let group = &self.groups[g];
            (group.key.clone(), group.min_member, group.pods.len())
        };
        if min_member <= 1 {
            return pending.iter().map(|p| (*p, self.why_not(*p))).collect();
        }
        let why = if (size as u32) < min_member {
            format!("gang {key} waits for its pods: {size} of minMember {min_member} exist")
        } else {
            // Place what fits, as a trial, to say how far the gang gets and what stops it.
            let trial = Statement::begin(self);
            let dynamic = self.plugins.contains("dynamic-mig");
            let mut fit = 0;
            let mut stop = None;
            for p in &pending {
                let req = self.pods[*p].req.clone();
                match self.best_node(*p, &BTreeSet::new()) {
                    Some(n) if self.take(n, &req, *p, dynamic) => fit += 1,
                    _ => {
                        if stop.is_none() {
                            stop = Some(self.why_not(*p));
                        }
                    }
                }
            }
            trial.discard(self);
            format!(
                "gang {key} cannot place {min_member} pods at once ({fit} fit now): {}",
                stop.unwrap_or_default()
            )
        };
        pending.iter().map(|p| (*p, why.clone())).collect()
    }

    /// GPU equivalents (thousandths) the gang's pending pods ask for.
    pub(crate) fn pending_gpu(&self, g: usize) -> i64 {
        self.pending_pods(g)
            .iter()
            .map(|p| gpu_milli(&self.pods[*p].req))
            .sum()
    }

    /// What a group's pending pods ask for, as one vector.
    pub(crate) fn pending_need(&self, g: usize) -> Resources {
        let mut need = Resources::default();
        for p in self.pending_pods(g) {
            add(&mut need, usage(&self.pods[p].req), 1);
        }
        need
    }
}
