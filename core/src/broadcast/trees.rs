//! The shape of each origin's tree: planting an origin's first rumor, pruning links that
//! push what this node has or gets better elsewhere, grafting, Plumtree's hop-count
//! optimisation, and link-state parents. When this node's link state names a first hop
//! toward an origin and the link to it is up, that link is the origin's parent here: its
//! rumors are grafted from it and pruned from every other link, so they come along a
//! shortest path of the overlay, each node once. The hop-count optimisation only runs for
//! origins without a parent.

use std::collections::BTreeMap;

use rand_core::Rng;

use super::{Broadcast, Dissemination};
use crate::gossip::Gossip;
use crate::wire::{Announcement, ConnId, NodeId};

/// The link a rumor of an origin should come from, if this node's link state names one.
pub(crate) type ParentOf<'a> = &'a dyn Fn(NodeId) -> Option<ConnId>;

/// What an origin's parent replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Previous {
    /// Nothing: the member's first parent since it was new.
    First,
    /// An earlier first hop, and the link to it if that is up.
    Was(Option<ConnId>),
}

impl Broadcast {
    /// Asks the peer on `conn` to only announce `origin`'s rumors to this node.
    fn ask_prune(&mut self, conn: ConnId, origin: NodeId) {
        let out = self.out(conn);
        out.graft_origins.remove(&origin);
        out.prune.insert(origin);
    }

    /// Asks the peer on `conn` to push `origin`'s rumors to this node.
    pub(super) fn ask_graft(&mut self, conn: ConnId, origin: NodeId) {
        let out = self.out(conn);
        out.prune.remove(&origin);
        out.graft_origins.insert(origin);
    }

    /// A rumor of `origin`, which has no tree here yet (no peer grafted or pruned it), is
    /// about to go out on `links`: all but `eager_fanout` random ones (by default all)
    /// other than its `parent` become lazy for `origin`, so that its first rumor does not
    /// flood. Peers that know
    /// this node is the origin's parent grafted it already; the others pull it when it is
    /// announced. Parents, duplicates and grafts shape the tree from then on.
    pub(super) fn plant<R: Rng + ?Sized>(
        &mut self,
        origin: NodeId,
        links: &[ConnId],
        parent: Option<ConnId>,
        rng: &mut R,
    ) {
        if self.lazy.contains_key(&origin) {
            return;
        }
        let mut lazy: Vec<ConnId> = links
            .iter()
            .copied()
            .filter(|&c| Some(c) != parent)
            .collect();
        for _ in 0..self.policy.eager_fanout.min(lazy.len()) {
            let pick = (rng.next_u64() % lazy.len() as u64) as usize;
            lazy.swap_remove(pick);
        }
        self.start_tree(origin, Some(&lazy));
    }

    /// A push on `conn` brought rumors of these origins (`true`: all of them already
    /// here). A link that is not an origin's parent is pruned for it, and the parent
    /// grafted. Without a parent, a duplicate prunes the link, which closes a cycle of the
    /// origin's tree (Plumtree), in both directions.
    pub(crate) fn pushed(
        &mut self,
        conn: ConnId,
        origins: &BTreeMap<NodeId, bool>,
        parent_of: ParentOf<'_>,
    ) {
        if self.policy.mode == Dissemination::Flood {
            return;
        }
        for (&origin, &duplicate) in origins {
            let parent = (origin != self.me).then(|| parent_of(origin)).flatten();
            match parent {
                Some(parent) if parent == conn => {}
                Some(parent) => {
                    self.ask_prune(conn, origin);
                    self.ask_graft(parent, origin);
                }
                None if duplicate => {
                    // The link closes a cycle of the origin's tree: lazy both ways (a
                    // child's graft makes it eager again; a child never pushes to its
                    // parent, so no duplicate of its undoes that). This node's own
                    // rumors echoed back only stop coming.
                    if origin != self.me {
                        self.set_lazy(conn, origin, true);
                    }
                    self.ask_prune(conn, origin);
                }
                None => {}
            }
        }
    }

    /// This node's link state names a new parent for `origin` (`parent`: the link to its
    /// first hop): graft its rumors from that link. A member's first parent also prunes
    /// every other link (strays of the boot's planted trees and grafts); a later one prunes
    /// the link to the previous first hop if it is up, and leaves other strays to be
    /// pruned when they push (every link was pruned once already, and new links are
    /// pruned when they come up).
    pub(crate) fn reparent(&mut self, origin: NodeId, parent: ConnId, previous: Previous) {
        if self.policy.mode == Dissemination::Flood || origin == self.me {
            return;
        }
        let others: Vec<ConnId> = match previous {
            Previous::First => self.slots.keys().copied().collect(),
            Previous::Was(old) => old.into_iter().collect(),
        };
        for conn in others.into_iter().filter(|&c| c != parent) {
            self.ask_prune(conn, origin);
        }
        self.ask_graft(parent, origin);
    }

    /// A link came up: for each origin with a parent here (`parents`: origin, parent
    /// link), ask the peer to push its rumors if the link is the parent, and only to
    /// announce them otherwise (a new link starts eager for every origin).
    pub(crate) fn link_parents(&mut self, conn: ConnId, parents: &[(NodeId, ConnId)]) {
        if self.policy.mode == Dissemination::Flood {
            return;
        }
        for &(origin, parent) in parents {
            if origin == self.me {
                continue;
            }
            if parent == conn {
                self.ask_graft(conn, origin);
            } else {
                self.ask_prune(conn, origin);
            }
        }
    }

    /// The peer pruned this link for these origins: only announce their rumors to it.
    pub(crate) fn pruned(&mut self, conn: ConnId, origins: &[NodeId]) {
        for &origin in origins {
            self.set_lazy(conn, origin, true);
        }
    }

    /// Plumtree's optimisation, per origin without a parent and one promotion at a time:
    /// the link `conn` announced `ann`, which it would have delivered at least
    /// `optimize_hops` hops sooner than the link that did; graft `conn` for that origin and
    /// prune the other.
    pub(super) fn optimise(
        &mut self,
        conn: ConnId,
        ann: &Announcement,
        store: &Gossip,
        parent_of: ParentOf<'_>,
    ) {
        let threshold = self.policy.optimize_hops;
        let origin = ann.0;
        let distrusted = self
            .distrusted
            .get(&origin)
            .is_some_and(|mask| mask & self.bit(conn) != 0);
        if threshold == 0 || distrusted || self.promoted.contains_key(&origin) {
            return;
        }
        let Some((seq, hops, Some(parent))) = store.arrival(&ann.id().key()) else {
            return;
        };
        if seq != ann.id().seq()
            || parent == conn
            || hops < ann.hops().saturating_add(threshold)
            || parent_of(origin).is_some()
        {
            return;
        }
        self.ask_graft(conn, origin);
        self.ask_prune(parent, origin);
        if self.promoted.len() < self.policy.max_missing {
            self.promoted.insert(origin, conn);
        }
    }

    /// A rumor of `origin` had to be grafted from `conn`: a link that tree optimisation
    /// promoted for that origin on the strength of its announced (unsigned) hop count, and
    /// that has not delivered since, is pruned and never promoted again for it.
    /// Nobody is blamed: the hop count proves nothing either way.
    pub(super) fn broken_promise(&mut self, conn: ConnId, origin: NodeId) {
        let Some(promoted) = self.promoted.get(&origin).copied() else {
            return;
        };
        self.promoted.remove(&origin);
        if promoted == conn {
            return;
        }
        self.ask_prune(promoted, origin);
        if self.distrusted.len() < self.policy.max_missing || self.distrusted.contains_key(&origin)
        {
            let bit = self.bit(promoted);
            *self.distrusted.entry(origin).or_default() |= bit;
        }
    }
}
