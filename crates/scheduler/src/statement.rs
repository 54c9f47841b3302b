//! Volcano's Statement: changes to what the nodes hold — tasks taken onto them, or released
//! from them — made tentatively, then kept or undone as a whole. Every trial placement of the
//! cycle (a gang placed all or nothing, a preemptor's fit, a waiting gang's reason) goes
//! through one.

use crate::resources::Node;
use crate::state::State;

#[must_use = "a statement is either committed or discarded"]
pub(crate) struct Statement {
    saved: Vec<Node>,
}

impl Statement {
    /// Begin: `discard` goes back to what the nodes hold now.
    pub(crate) fn begin(st: &State) -> Statement {
        Statement {
            saved: st.nodes.clone(),
        }
    }

    /// Keep every change made to the nodes since `begin`.
    pub(crate) fn commit(self) {}

    /// Undo every change made to the nodes since `begin`.
    pub(crate) fn discard(self, st: &mut State) {
        st.nodes = self.saved;
    }
}
