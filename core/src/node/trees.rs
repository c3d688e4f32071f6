//! Link-state parents for the dissemination trees: the link to each member's first hop
//! (from routing's reachability search) is where its rumors should come from; this node
//! tells broadcast when a first hop changes and, for every member, when a link comes up.

use super::*;
use crate::broadcast::Previous;

impl Node {
    /// Hands broadcast the members whose first hop changed at the last recomputation.
    pub(super) fn reparent_changed(&mut self) {
        for change in self.routing.take_hop_changes() {
            let link = |hop| link_to_node(&self.routing, &self.swarm, hop);
            let Some(parent) = change.now.and_then(link) else {
                continue;
            };
            let previous = if change.first {
                Previous::First
            } else {
                Previous::Was(change.before.and_then(link))
            };
            self.broadcast.reparent(change.member, parent, previous);
        }
    }

    /// A link came up: tells broadcast which members it is the parent of, and which not.
    pub(super) fn link_parents(&mut self, conn: ConnId) {
        let parent_of = parent_of(&self.routing, &self.swarm);
        let parents: Vec<(NodeId, ConnId)> = (self.routing.members())
            .filter_map(|m| Some((m.node, parent_of(m.node)?)))
            .collect();
        self.broadcast.link_parents(conn, &parents);
    }
}

/// The established link to live member `node`, if any.
fn link_to_node(routing: &Routing, swarm: &Swarm, node: NodeId) -> Option<ConnId> {
    swarm.link_to(&routing.bound_key(node)?)
}

/// The link to `origin`'s first hop, when this node's link state names one and the link is
/// up: where its rumors should come from.
pub(super) fn parent_of<'a>(
    routing: &'a Routing,
    swarm: &'a Swarm,
) -> impl Fn(NodeId) -> Option<ConnId> + 'a {
    |origin| link_to_node(routing, swarm, routing.member(origin)?.first_hop?)
}
