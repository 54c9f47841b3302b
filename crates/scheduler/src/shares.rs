//! Fairness: what each queue and tenant uses, deserves and is guaranteed (Volcano's
//! proportion, capacity and drf plugins), and the order gangs are served in.

use crate::resources::{add, gpu_milli, usage, Dim, Resources};
use crate::state::{queue_chain, State};

/// Queue share, tenant share, negated priority, submission order: smaller is served first.
pub(crate) type GroupKey = (Vec<i128>, i128, i64, usize);

impl State {
    /// The GPU-equivalent allocation (thousandths) of the queue and the queues under it.
    pub(crate) fn queue_used(&self, q: usize) -> i64 {
        self.pods
            .iter()
            .filter(|p| {
                self.is_within(self.groups[p.group].queue, q) && p.node.is_some() && p.phase.holds()
            })
            .map(|p| gpu_milli(&p.req))
            .sum()
    }

    /// Volcano's proportion plugin over every resource, for leaf queues side by side: the
    /// cluster is handed out by weight, round after round, each queue capped at what it asks
    /// for (what it holds plus its pending pods), until nothing is left or every queue has
    /// what it asks.
    pub(crate) fn proportion_deserved(&self, used: &[Resources]) -> Vec<Resources> {
        let n = self.queues.len();
        let mut request: Vec<Resources> = used.to_vec();
        for g in 0..self.groups.len() {
            let need = self.pending_need(g);
            add(&mut request[self.groups[g].queue], need, 1);
        }
        let takes = |q: usize| !self.queues[q].missing && self.queues[q].children.is_empty();
        let mut deserved = vec![Resources::default(); n];
        let mut met: Vec<bool> = (0..n).map(|q| !takes(q)).collect();
        for _ in 0..16 {
            let mut remaining = self.total;
            for d in &deserved {
                add(&mut remaining, *d, -1);
            }
            let weight: i128 = (0..n)
                .filter(|q| !met[*q])
                .map(|q| self.queues[q].weight as i128)
                .sum();
            if weight == 0 || remaining.iter().all(|r| r <= 0) {
                break;
            }
            let open: Vec<usize> = (0..n).filter(|q| !met[*q]).collect();
            for q in open {
                let w = self.queues[q].weight as i128;
                for d in Dim::ALL {
                    let more = remaining[d].max(0) * w / weight;
                    deserved[q][d] = (deserved[q][d] + more).min(request[q][d]);
                }
                met[q] = Dim::ALL
                    .into_iter()
                    .all(|d| deserved[q][d] >= request[q][d]);
            }
        }
        deserved
    }

    /// Whether a queue holds at least what it deserves in every resource (proportion's
    /// `Overused`).
    pub(crate) fn overused(deserved: &Resources, held: &Resources) -> bool {
        Dim::ALL.into_iter().all(|d| deserved[d] <= held[d])
    }

    pub(crate) fn cluster_gpu(&self) -> i64 {
        self.nodes.iter().map(|n| n.gpus.len() as i64 * 1000).sum()
    }

    /// Deserved share: explicit, else the parent's (the cluster's, under the root) split among
    /// siblings by weight (proportion plugin).
    pub(crate) fn deserved(&self, q: usize) -> i64 {
        if let Some(d) = self.queues[q].deserved_gpu {
            return d;
        }
        let above = match self.queues[q].parent {
            Some(p) => self.deserved(p),
            None => self.cluster_gpu(),
        };
        (above as f64 * self.weight_fraction_among_siblings(q)) as i64
    }

    /// The queue's weight over its siblings' (queues with the same parent) weights.
    pub(crate) fn weight_fraction_among_siblings(&self, q: usize) -> f64 {
        let parent = self.queues[q].parent;
        let total_w: u32 = self
            .queues
            .iter()
            .filter(|x| x.parent == parent)
            .map(|x| x.weight)
            .sum();
        self.queues[q].weight as f64 / total_w.max(1) as f64
    }

    /// GPUs (thousandths) that queue `q` may not take because other queues' guarantees keep
    /// them: the unused part of each outermost guarantee whose subtree `q` is not in, and the
    /// queue names, for the waiting reason.
    pub(crate) fn guaranteed_to_others(&self, q: usize, qused: &[Resources]) -> (i64, Vec<String>) {
        let mut kept = 0;
        let mut names = Vec::new();
        for (r, queue) in self.queues.iter().enumerate() {
            let Some(g) = queue.guarantee_gpu else {
                continue;
            };
            let outermost = self.queue_chain(r)[1..]
                .iter()
                .all(|a| self.queues[*a].guarantee_gpu.is_none());
            if !outermost || self.is_within(q, r) {
                continue;
            }
            let unused = g - qused[r].gpu as i64;
            if unused > 0 {
                kept += unused;
                names.push(queue.name.clone());
            }
        }
        (kept, names)
    }

    /// Whether queue `q` is `ancestor` or under it.
    pub(crate) fn is_within(&self, q: usize, ancestor: usize) -> bool {
        let mut at = Some(q);
        while let Some(x) = at {
            if x == ancestor {
                return true;
            }
            at = self.queues[x].parent;
        }
        false
    }

    /// The queue and its ancestors, the queue first.
    pub(crate) fn queue_chain(&self, q: usize) -> Vec<usize> {
        queue_chain(&self.queues, q)
    }

    /// Usage per queue summed over its subtree (a parent holds what its children hold).
    pub(crate) fn rolled_up(&self, direct: &[Resources]) -> Vec<Resources> {
        let mut out = vec![Resources::default(); self.queues.len()];
        for (q, u) in direct.iter().enumerate() {
            for a in self.queue_chain(q) {
                add(&mut out[a], *u, 1);
            }
        }
        out
    }

    /// What the pods that hold resources hold, per queue and per tenant.
    pub(crate) fn used_vectors(&self) -> (Vec<Resources>, Vec<Resources>) {
        let mut by_queue = vec![Resources::default(); self.queues.len()];
        let mut by_tenant = vec![Resources::default(); self.tenants.len()];
        for p in &self.pods {
            if p.node.is_some() && p.phase.holds() {
                let g = &self.groups[p.group];
                add(&mut by_queue[g.queue], usage(&p.req), 1);
                add(&mut by_tenant[g.tenant], usage(&p.req), 1);
            }
        }
        (self.rolled_up(&by_queue), by_tenant)
    }

    /// A queue's share (thousandths): its dominant resource against what it deserves — the
    /// explicit `deserved` GPUs, else the cluster's resources split by queue weight (Volcano's
    /// proportion plugin).
    pub(crate) fn queue_share(&self, q: usize, used: &Resources) -> i128 {
        let fraction: f64 = self
            .queue_chain(q)
            .iter()
            .map(|a| self.weight_fraction_among_siblings(*a))
            .product();
        Dim::ALL
            .into_iter()
            .map(|r| {
                let deserved = if r == Dim::Gpu {
                    self.deserved(q) as i128
                } else {
                    (self.total[r] as f64 * fraction) as i128
                };
                used[r] * 1000 / deserved.max(1)
            })
            .max()
            .unwrap_or(0)
    }

    /// A tenant's dominant share (thousandths of the cluster), divided by its weight (DRF).
    pub(crate) fn tenant_share(&self, t: usize, used: &Resources) -> i128 {
        Dim::ALL
            .into_iter()
            .map(|r| used[r] * 1000 / self.total[r].max(1))
            .max()
            .unwrap_or(0)
            / self.tenants[t].weight as i128
    }

    /// The order gangs are served in: queues furthest below their fair share first, in a
    /// queue the tenant with the smallest dominant share (DRF), then higher priority, then
    /// submission order.
    pub(crate) fn group_key(&self, g: usize, qused: &[Resources], tused: &[Resources]) -> GroupKey {
        let group = &self.groups[g];
        // Hierarchical queues compare top-down: siblings under the root by their shares, then
        // the children of the lower one, down to the gang's own queue.
        let mut chain = self.queue_chain(group.queue);
        chain.reverse();
        (
            chain
                .iter()
                .map(|q| self.queue_share(*q, &qused[*q]))
                .collect(),
            self.tenant_share(group.tenant, &tused[group.tenant]),
            -group.priority,
            group.order,
        )
    }

    pub(crate) fn group_order(&self) -> Vec<usize> {
        let (qused, tused) = self.used_vectors();
        let mut order: Vec<usize> = (0..self.groups.len()).collect();
        order.sort_by_cached_key(|g| self.group_key(*g, &qused, &tused));
        order
    }

    /// Why the tenant's quota keeps `need` out, if it does.
    pub(crate) fn over_quota(
        &self,
        t: usize,
        used: &Resources,
        need: &Resources,
    ) -> Option<String> {
        let tenant = &self.tenants[t];
        Dim::ALL.into_iter().find_map(|r| {
            let q = tenant.quota[r]?;
            (used[r] + need[r] > q).then(|| {
                let show = |v: i128| match r {
                    Dim::Memory => format!("{}Gi", v / (1 << 30)),
                    _ => format!("{}", v as f64 / 1000.0),
                };
                format!(
                    "namespace {} is at its {} quota (holds {} of {}, asks {})",
                    tenant.namespace,
                    r.name(),
                    show(used[r]),
                    show(q),
                    show(need[r])
                )
            })
        })
    }
}
