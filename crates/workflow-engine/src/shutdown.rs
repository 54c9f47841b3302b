//! Shutdown (`spec.shutdown`, `argo stop` / `argo terminate`) and timeouts of whole blocks:
//! running leaves are killed with the reason, blocks stop starting new children and end
//! once the children they started have.
//!
//! `Stop` lets exit handlers run; `Terminate` does not. Nothing new starts after either.

use crate::state::{Engine, Frame};
use crate::status::{NodeType, Phase, Time};

impl Engine {
    /// Whether a shutdown stops new work under this node: Terminate stops everything, Stop
    /// everything but exit handlers.
    pub(crate) fn halted(&self, i: usize) -> bool {
        match self.shutdown {
            None => false,
            Some(true) => true,
            Some(false) => !self.nodes[i].status.name.contains(".onExit"),
        }
    }

    /// After a deadline or shutdown, blocks stop scheduling and end once their children did.
    pub(crate) fn shutdown_blocks(&mut self, now: Time) {
        let prev = self.shutdown;
        if self.shutdown.is_none() {
            self.shutdown = Some(false);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            match &self.nodes[i].frame {
                Frame::StepGroup { .. } => self.check_group_done(i, now),
                Frame::Dag { .. } => self.check_dag_done(i, now),
                Frame::TaskGroup { .. } => self.end_halted_task_group(i, now),
                Frame::Retry { .. } => self.pending_retries.push(i),
                _ => {}
            }
        }
        if prev.is_none() && self.deadline.is_some_and(|d| now >= d) {
            // Keep the deadline distinct from a user shutdown in messages.
            self.shutdown = None;
            for i in 0..self.nodes.len() {
                if !self.nodes[i].status.phase.fulfilled()
                    && matches!(self.nodes[i].frame, Frame::StepGroup { .. })
                {
                    if let Frame::StepGroup { stop_new, .. } = &mut self.nodes[i].frame {
                        *stop_new = true;
                    }
                    self.check_group_done(i, now);
                }
            }
        }
    }

    pub(crate) fn kill_under(&mut self, block: usize, reason: &str, now: Time) {
        let bid = self.nodes[block].status.id.clone();
        for i in 0..self.nodes.len() {
            if self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            if (self.nodes[i].status.boundary_id.as_deref() == Some(&bid) || self.is_under(i, &bid))
                && matches!(
                    self.nodes[i].status.node_type,
                    NodeType::Pod | NodeType::HTTP | NodeType::Suspend
                )
            {
                self.kill_started_pod(i, reason);
                self.finish(i, Phase::Failed, Some(reason.into()), now);
            }
        }
        if let Frame::Dag { queue, .. } = &mut self.nodes[block].frame {
            queue.clear();
        }
        self.finish(block, Phase::Failed, Some(reason.into()), now);
    }

    fn is_under(&self, i: usize, boundary: &str) -> bool {
        let mut b = self.nodes[i].status.boundary_id.clone();
        let mut guard = 0;
        while let Some(id) = b {
            if id == boundary {
                return true;
            }
            guard += 1;
            if guard > 1000 {
                return false;
            }
            b = self
                .by_id
                .get(&id)
                .and_then(|&j| self.nodes[j].status.boundary_id.clone());
        }
        false
    }

    pub(crate) fn apply_shutdown(&mut self, now: Time) {
        let terminate = self.shutdown == Some(true);
        for i in 0..self.nodes.len() {
            if self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            if (terminate || !self.nodes[i].status.name.contains(".onExit"))
                && matches!(
                    self.nodes[i].status.node_type,
                    NodeType::Pod | NodeType::HTTP | NodeType::Suspend
                )
            {
                self.kill_started_pod(i, "workflow shutdown");
                let strategy = if terminate { "Terminate" } else { "Stop" };
                self.finish(
                    i,
                    Phase::Failed,
                    Some(format!("Stopped with strategy '{strategy}'")),
                    now,
                );
            }
        }
        self.pod_queue
            .retain(|&i| !self.nodes[i].status.phase.fulfilled());
        for i in 0..self.nodes.len() {
            if self.nodes[i].status.phase.fulfilled() {
                continue;
            }
            match &self.nodes[i].frame {
                Frame::StepGroup { .. } => self.check_group_done(i, now),
                Frame::Dag { .. } => self.check_dag_done(i, now),
                Frame::TaskGroup { .. } => self.end_halted_task_group(i, now),
                Frame::Retry { .. } => self.pending_retries.push(i),
                _ => {}
            }
        }
    }
}
