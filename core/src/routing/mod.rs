//! Routing owns the link-state view of the network: one member record per controller
//! (its AS, address, key, sequence number, links and state), and the best-path table
//! computed (by `paths`) from the live members' advertisements; what an accepted rumor
//! does to the members; and when the table is recomputed (debounced).
//!
//! The path rule is a public contract: an edge X→Y exists iff the live controller of AS X
//! advertises a link to Y; ASes without a live controller are destinations only, never
//! transit; the best path has the lowest total cost, then the fewest hops, then the
//! lexicographically smallest AS path; its capacity is the path's bottleneck. When two live
//! controllers claim one AS, the one with the lower node id speaks for it; a link listed
//! twice in one advertisement counts once, as its last listing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::bindings::{Bindings, Claim};
use crate::identity::Fingerprint;
use crate::paths::{Route, ShortestPaths, TableEntry, route_in};
use crate::scheduler::Time;
use crate::verify::{AdmittedRumor, Profile};
use crate::wire::{Addr, Asn, NodeId, RumorContent};

/// Where a member stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Advertising.
    Alive,
    /// Left gracefully.
    Left,
    /// Silent past the advertisement age limit.
    Expired,
    /// Evicted by a quorum of accusers.
    Evicted,
}

/// What this node knows of one controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Controller id.
    pub node: NodeId,
    /// Sequence number of its newest rumor seen.
    pub seq: u64,
    /// What its newest advertisement says of it (shared with that advertisement).
    #[serde(flatten)]
    pub profile: Arc<Profile>,
    /// Whether this node reached it over two-way links at the last recomputation (only a
    /// reachable live member is routed through).
    pub reachable: bool,
    /// The direct peer a shortest two-way path from this node toward it starts with, at
    /// the last recomputation (its parent in this node's trees of its rumors).
    pub first_hop: Option<NodeId>,
    /// Its state.
    pub state: MemberState,
}

/// How the route to one destination changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteChange {
    /// Destination AS.
    pub destination: Asn,
    /// Route before, if any.
    pub before: Option<Route>,
    /// Route after, if any.
    pub after: Option<Route>,
}

/// What applying an advertisement did to the member list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub enum Applied {
    /// A controller not alive before is alive now.
    Joined,
    /// A live controller's record was refreshed or changed.
    Updated,
}

/// What an accepted rumor changed among the members, for the components that react.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// A member advertised; `joined` when it was not alive before.
    Advertised {
        /// Its AS.
        asn: Asn,
        /// Where it listens (a dial candidate).
        addr: Addr,
        /// Whether it is new or back.
        joined: bool,
    },
    /// A member left on purpose.
    Left {
        /// Its last known address (no longer worth dialing).
        addr: Option<Addr>,
        /// Whether it was alive until now.
        was_alive: bool,
    },
    /// The origin accuses `accused`, whose key is `fingerprint`.
    Accused {
        /// The accused node.
        accused: NodeId,
        /// The key accused.
        fingerprint: Fingerprint,
    },
    /// Nothing (an accusation naming no valid key).
    Nothing,
}

/// Member records and the routing table.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub struct Routing {
    own_asn: Asn,
    /// This node's id, when liveness is by reachability from it (a node's own routing);
    /// `None`: every live member counts (tests and benchmarks of the path rule alone).
    own: Option<NodeId>,
    members: BTreeMap<NodeId, Member>,
    /// Which live member each key and each AS speaks for.
    bindings: Bindings,
    table: BTreeMap<Asn, TableEntry>,
    dirty: bool,
    max_members: usize,
    /// When the table was last recomputed (for the debounce).
    recomputed: Option<Time>,
    /// Route changes so far (destinations changed, summed).
    route_changes: u64,
    /// Live members that were reachable and then were cut off (crashed, or beyond a
    /// partition), until they are reached again or stop being members.
    cut_off: BTreeSet<NodeId>,
    /// Reachability changes of the last recomputations, not yet taken: (member, reached).
    reach_changes: Vec<(NodeId, bool)>,
    /// First-hop changes of the last recomputations, not yet taken.
    hop_changes: Vec<HopChange>,
}

/// A member's first hop changed: rumors of it should now come from `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HopChange {
    /// The member.
    pub member: NodeId,
    /// Its first hop before, if any.
    pub before: Option<NodeId>,
    /// Its first hop now, if any.
    pub now: Option<NodeId>,
    /// Whether it had none since it was last new (not one cut off and reached again).
    pub first: bool,
}

impl Routing {
    /// An empty view for a node in AS `own_asn`, remembering at most `max_members`.
    #[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
    pub fn new(own_asn: Asn, max_members: usize) -> Self {
        Routing {
            own_asn,
            own: None,
            members: BTreeMap::new(),
            bindings: Bindings::default(),
            table: BTreeMap::new(),
            dirty: true,
            max_members,
            recomputed: None,
            route_changes: 0,
            cut_off: BTreeSet::new(),
            reach_changes: Vec::new(),
            hop_changes: Vec::new(),
        }
    }

    /// The routing of node `own` in AS `own_asn`: a member is routed through only while
    /// `own` reaches it over two-way links.
    pub(crate) fn for_node(own: NodeId, own_asn: Asn, max_members: usize) -> Self {
        Routing {
            own: Some(own),
            ..Self::new(own_asn, max_members)
        }
    }

    /// Remembers at most `max_members` from now on (a reconfiguration); members already
    /// known stay.
    pub(crate) fn set_max_members(&mut self, max_members: usize) {
        self.max_members = max_members;
    }

    /// Records a live member's advertisement (the caller has checked it is the newest).
    /// Returns `None` when the member table is full of live members.
    #[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
    pub fn advertise(&mut self, mut member: Member) -> Option<Applied> {
        let node = member.node;
        if !self.members.contains_key(&node) && self.members.len() >= self.max_members {
            let gone = self
                .members
                .iter()
                .find(|(_, m)| m.state != MemberState::Alive)
                .map(|(&id, _)| id)?;
            self.members.remove(&gone);
            self.cut_off.remove(&gone);
        }
        let previous = self.members.get(&node);
        let was_alive = previous.is_some_and(|m| m.state == MemberState::Alive);
        let changed = previous.is_some_and(|p| {
            let (old, new) = (&p.profile, &member.profile);
            old.links != new.links || old.asn != new.asn || old.peers != new.peers
        });
        let released = previous
            .filter(|p| p.state == MemberState::Alive)
            .map(claim_of)
            .filter(|p| p.key != member.profile.fingerprint || p.asn != member.profile.asn);
        self.dirty |= !was_alive || changed;
        if let Some(old) = released {
            self.dirty |= self.bindings.release(old, claims(&self.members));
        }
        if member.state == MemberState::Alive {
            self.dirty |= self.bindings.claim(claim_of(&member));
        }
        // Reachability is the last recomputation's until the next one.
        member.reachable = was_alive && previous.is_some_and(|p| p.reachable);
        member.first_hop = previous.and_then(|p| p.first_hop);
        self.members.insert(node, member);
        Some(if was_alive {
            Applied::Updated
        } else {
            Applied::Joined
        })
    }

    /// Applies an accepted rumor to the members: an advertisement records the member (with
    /// the profile it shares), a leave withdraws it; an accusation changes nothing here and
    /// is handed on.
    pub(crate) fn apply(&mut self, admitted: &AdmittedRumor) -> Change {
        let body = &admitted.body;
        let origin = body.origin;
        if let Some(profile) = &admitted.profile {
            let member = Member {
                node: origin,
                seq: body.seq,
                profile: Arc::clone(profile),
                reachable: false,
                first_hop: None,
                state: MemberState::Alive,
            };
            let joined = self.advertise(member) == Some(Applied::Joined);
            return Change::Advertised {
                asn: profile.asn,
                addr: profile.addr.clone(),
                joined,
            };
        }
        match &body.content {
            RumorContent::Advert { .. } => Change::Nothing,
            RumorContent::Leave { .. } => Change::Left {
                addr: self.member(origin).map(|m| m.profile.addr.clone()),
                was_alive: self.withdraw(origin, MemberState::Left, Some(body.seq)),
            },
            RumorContent::Accuse {
                accused,
                fingerprint,
                ..
            } => match Fingerprint::from_hex(fingerprint) {
                Some(fingerprint) => Change::Accused {
                    accused: *accused,
                    fingerprint,
                },
                None => Change::Nothing,
            },
        }
    }

    /// Marks a member as no longer alive; returns whether it was alive.
    pub(crate) fn withdraw(&mut self, node: NodeId, state: MemberState, seq: Option<u64>) -> bool {
        let Some(member) = self.members.get_mut(&node) else {
            return false;
        };
        let was_alive = member.state == MemberState::Alive;
        member.state = state;
        if let Some(seq) = seq {
            member.seq = member.seq.max(seq);
        }
        let released = claim_of(member);
        if was_alive {
            self.bindings.release(released, claims(&self.members));
        }
        if was_alive {
            self.dirty = true;
        }
        was_alive
    }

    /// Forgets a member entirely.
    pub(crate) fn forget(&mut self, node: NodeId) {
        self.cut_off.remove(&node);
        if let Some(m) = self.members.remove(&node)
            && m.state == MemberState::Alive
        {
            self.dirty = true;
            self.bindings.release(claim_of(&m), claims(&self.members));
        }
    }

    /// The live member that speaks with `key`, if any.
    pub(crate) fn owner_of(&self, key: &Fingerprint) -> Option<NodeId> {
        self.bindings
            .owner_of(key)
            .filter(|&node| self.bound_key(node) == Some(*key))
    }

    /// The member that speaks for each AS, by AS: the first live member that claimed it
    /// (while it stays alive), if it was reachable at the last recomputation; otherwise
    /// the reachable claimant with the lowest node id, if any.
    pub(crate) fn speakers(&self) -> impl Iterator<Item = &Member> {
        self.bindings.speakers().filter_map(|(asn, node)| {
            let speaker = self.members.get(&node).filter(|m| m.reachable);
            speaker.or_else(|| {
                self.members
                    .values()
                    .filter(|m| m.profile.asn == asn && m.reachable)
                    .min_by_key(|m| m.node)
            })
        })
    }

    /// The key a live node id is bound to, if any.
    pub(crate) fn bound_key(&self, node: NodeId) -> Option<Fingerprint> {
        self.member(node)
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.profile.fingerprint)
    }

    /// A member record.
    pub(crate) fn member(&self, node: NodeId) -> Option<&Member> {
        self.members.get(&node)
    }

    /// All member records (alive and not), by node id.
    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The address of a random member that expired or is unreachable (failed or cut
    /// off), if any.
    pub(crate) fn random_lost(&self, pick: u64) -> Option<&Addr> {
        let expired = || {
            self.members.values().filter(|m| {
                m.state == MemberState::Expired || (m.state == MemberState::Alive && !m.reachable)
            })
        };
        let n = expired().count() as u64;
        (n > 0)
            .then(|| expired().nth((pick % n) as usize).map(|m| &m.profile.addr))
            .flatten()
    }

    /// How many members are alive and were reachable at the last recomputation.
    pub(crate) fn alive(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.state == MemberState::Alive && m.reachable)
            .count()
    }

    /// When the table is next due for recomputing, if it must be: at once the first time,
    /// then no sooner than `debounce` after the last time (a burst of advertisements costs
    /// one recomputation).
    pub(crate) fn due(&self, now: Time, debounce: std::time::Duration) -> Option<Time> {
        self.dirty
            .then(|| self.recomputed.map_or(now, |t| t + debounce))
    }

    /// Recomputes the table at `now` (see [`Routing::due`]) and counts the changes.
    pub(crate) fn update(&mut self, now: Time) -> Vec<RouteChange> {
        self.recomputed = Some(now);
        let changes = self.recompute();
        self.route_changes += changes.len() as u64;
        changes
    }

    /// The live members cut off (`false`) or reached again (`true`) since the last call,
    /// in order. A member that is new, or that left or expired, is not among them.
    pub(crate) fn take_reach_changes(&mut self) -> Vec<(NodeId, bool)> {
        std::mem::take(&mut self.reach_changes)
    }

    /// The members whose first hop changed since the last call, in order.
    pub(crate) fn take_hop_changes(&mut self) -> Vec<HopChange> {
        std::mem::take(&mut self.hop_changes)
    }

    /// Route changes so far (destinations changed, summed).
    pub(crate) fn route_changes(&self) -> u64 {
        self.route_changes
    }

    /// Recomputes best paths from the live members; returns what changed.
    #[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
    pub fn recompute(&mut self) -> Vec<RouteChange> {
        self.dirty = false;
        let reached = self.own.map(|own| reach::reachable(own, &self.members));
        for m in self.members.values_mut() {
            let was = m.reachable;
            let hop = reached.as_ref().and_then(|r| r.get(&m.node));
            m.reachable = m.state == MemberState::Alive && (reached.is_none() || hop.is_some());
            let first_hop = hop.copied().flatten();
            if first_hop != m.first_hop {
                self.hop_changes.push(HopChange {
                    member: m.node,
                    before: m.first_hop,
                    now: first_hop,
                    first: m.first_hop.is_none() && !self.cut_off.contains(&m.node),
                });
                m.first_hop = first_hop;
            }
            if m.state != MemberState::Alive {
                self.cut_off.remove(&m.node);
            } else if was && !m.reachable && self.cut_off.insert(m.node) {
                self.reach_changes.push((m.node, false));
            } else if m.reachable && self.cut_off.remove(&m.node) {
                self.reach_changes.push((m.node, true));
            }
        }
        let tree = ShortestPaths::compute(
            self.own_asn,
            self.speakers()
                .map(|m| (m.profile.asn, &m.profile.links[..])),
        );
        let table = tree.table();
        // A path changed when its last step or its predecessor's path did: the tree lists
        // every destination after its predecessor, so one pass in that order settles them,
        // and an old route is rebuilt only where something changed.
        let mut moved = vec![false; tree.settled.len()];
        let mut changes = Vec::new();
        for (at, step) in tree.settled.iter().enumerate() {
            let old = self.table.get(&step.destination);
            let entry = &step.entry;
            let path_moved = old.is_none_or(|o| o.previous != entry.previous)
                || step
                    .parent
                    .is_some_and(|p| moved.get(p).copied().unwrap_or(false));
            if let Some(m) = moved.get_mut(at) {
                *m = path_moved;
            }
            if path_moved || old != Some(entry) {
                changes.push(RouteChange {
                    destination: step.destination,
                    before: self.route(step.destination),
                    after: route_in(&table, self.own_asn, step.destination),
                });
            }
        }
        for dest in self.table.keys() {
            if !table.contains_key(dest) {
                changes.push(RouteChange {
                    destination: *dest,
                    before: self.route(*dest),
                    after: None,
                });
            }
        }
        changes.sort_by_key(|c| c.destination);
        self.table = table;
        changes
    }

    /// The current table, by destination.
    pub(crate) fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        self.table.keys().filter_map(|&dest| self.route(dest))
    }

    /// How many destinations the table has.
    pub(crate) fn destinations(&self) -> usize {
        self.table.len()
    }

    /// The current route to one destination (its AS path rebuilt from the predecessors).
    pub(crate) fn route(&self, destination: Asn) -> Option<Route> {
        route_in(&self.table, self.own_asn, destination)
    }
}

fn claim_of(m: &Member) -> Claim {
    Claim {
        node: m.node,
        key: m.profile.fingerprint,
        asn: m.profile.asn,
    }
}

/// The live members' claims.
fn claims(members: &BTreeMap<NodeId, Member>) -> impl Iterator<Item = Claim> + '_ {
    members
        .values()
        .filter(|m| m.state == MemberState::Alive)
        .map(claim_of)
}

/// The member a node makes speaker of each AS when all its live claimants arrive at once:
/// the one with the lowest node id. (A node keeps the first live claimant it saw while it
/// stays alive: the `Node::speakers` of a running node.) Only speakers' links are edges of
/// the routing graph.
pub fn speakers<'a>(members: impl IntoIterator<Item = &'a Member>) -> BTreeMap<Asn, &'a Member> {
    let mut speakers: BTreeMap<Asn, &Member> = BTreeMap::new();
    for m in members
        .into_iter()
        .filter(|m| m.state == MemberState::Alive)
    {
        match speakers.get(&m.profile.asn) {
            Some(s) if s.node <= m.node => {}
            _ => {
                speakers.insert(m.profile.asn, m);
            }
        }
    }
    speakers
}

mod reach;

#[cfg(test)]
mod tests;
