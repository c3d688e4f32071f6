//! Routing owns the link-state view of the network: one member record per controller
//! (its AS, address, key, sequence number, links and state), and the best-path table
//! computed (by `paths`) from the live members' advertisements.
//!
//! The path rule is a public contract: an edge X→Y exists iff the live controller of AS X
//! advertises a link to Y; ASes without a live controller are destinations only, never
//! transit; the best path has the lowest total cost, then the fewest hops, then the
//! lexicographically smallest AS path; its capacity is the path's bottleneck. When two live
//! controllers claim one AS, the one with the lower node id speaks for it; a link listed
//! twice in one advertisement counts once, as its last listing.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::bindings::{Bindings, Claim};
use crate::identity::Fingerprint;
use crate::paths::{Route, ShortestPaths, TableEntry, route_in};
use crate::wire::{Addr, AsLink, Asn, NodeId};

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
    /// Its AS.
    pub asn: Asn,
    /// Where it listens.
    pub addr: Addr,
    /// Its key.
    pub fingerprint: Fingerprint,
    /// Sequence number of its newest rumor seen.
    pub seq: u64,
    /// Its advertised links (shared with the advertisement they were parsed from).
    pub links: Arc<[AsLink]>,
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

/// Member records and the routing table.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub struct Routing {
    own_asn: Asn,
    members: BTreeMap<NodeId, Member>,
    /// Which live member each key and each AS speaks for.
    bindings: Bindings,
    table: BTreeMap<Asn, TableEntry>,
    dirty: bool,
    max_members: usize,
}

impl Routing {
    /// An empty view for a node in AS `own_asn`, remembering at most `max_members`.
    #[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
    pub fn new(own_asn: Asn, max_members: usize) -> Self {
        Routing {
            own_asn,
            members: BTreeMap::new(),
            bindings: Bindings::default(),
            table: BTreeMap::new(),
            dirty: true,
            max_members,
        }
    }

    /// Records a live member's advertisement (the caller has checked it is the newest).
    /// Returns `None` when the member table is full of live members.
    #[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
    pub fn advertise(&mut self, member: Member) -> Option<Applied> {
        let node = member.node;
        if !self.members.contains_key(&node) && self.members.len() >= self.max_members {
            let gone = self
                .members
                .iter()
                .find(|(_, m)| m.state != MemberState::Alive)
                .map(|(&id, _)| id)?;
            self.members.remove(&gone);
        }
        let previous = self.members.get(&node);
        let was_alive = previous.is_some_and(|m| m.state == MemberState::Alive);
        let changed = previous.is_some_and(|p| p.links != member.links || p.asn != member.asn);
        let released = previous
            .filter(|p| p.state == MemberState::Alive)
            .map(claim_of)
            .filter(|p| p.key != member.fingerprint || p.asn != member.asn);
        self.dirty |= !was_alive || changed;
        if let Some(old) = released {
            self.dirty |= self.bindings.release(old, claims(&self.members));
        }
        if member.state == MemberState::Alive {
            self.dirty |= self.bindings.claim(claim_of(&member));
        }
        self.members.insert(node, member);
        Some(if was_alive {
            Applied::Updated
        } else {
            Applied::Joined
        })
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
        if let Some(m) = self.members.remove(&node)
            && m.state == MemberState::Alive
        {
            self.dirty = true;
            self.bindings.release(claim_of(&m), claims(&self.members));
        }
    }

    /// The live member that speaks with `key`, if any.
    pub(crate) fn owner_of(&self, key: &Fingerprint) -> Option<NodeId> {
        self.bindings.owner_of(key)
    }

    /// The member that speaks for each AS: the first live member that claimed it (while
    /// it stays alive), by AS.
    pub(crate) fn speakers(&self) -> impl Iterator<Item = &Member> {
        self.bindings
            .speakers()
            .filter_map(|(_, node)| self.members.get(&node))
    }

    /// One member's record.
    pub(crate) fn member(&self, node: NodeId) -> Option<&Member> {
        self.members.get(&node)
    }

    /// All member records (alive and not), by node id.
    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The address of a random member that expired (failed or cut off), if any.
    pub(crate) fn random_expired(&self, pick: u64) -> Option<&Addr> {
        let expired = || {
            self.members
                .values()
                .filter(|m| m.state == MemberState::Expired)
        };
        let n = expired().count() as u64;
        (n > 0)
            .then(|| expired().nth((pick % n) as usize).map(|m| &m.addr))
            .flatten()
    }

    /// How many members are alive.
    pub(crate) fn alive(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.state == MemberState::Alive)
            .count()
    }

    /// Whether the table must be recomputed.
    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Recomputes best paths from the live members; returns what changed.
    #[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
    pub fn recompute(&mut self) -> Vec<RouteChange> {
        self.dirty = false;
        let tree =
            ShortestPaths::compute(self.own_asn, self.speakers().map(|m| (m.asn, &m.links[..])));
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
        key: m.fingerprint,
        asn: m.asn,
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
        match speakers.get(&m.asn) {
            Some(s) if s.node <= m.node => {}
            _ => {
                speakers.insert(m.asn, m);
            }
        }
    }
    speakers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::best_paths;

    fn link(asn: u32, capacity: u64, cost: u64) -> AsLink {
        AsLink {
            asn: Asn(asn),
            capacity,
            cost,
        }
    }

    /// The corrected three-controller example of `shared/fixtures/example`.
    pub(crate) fn example() -> Vec<(Asn, Vec<AsLink>)> {
        vec![
            (
                Asn(100),
                vec![
                    link(10, 2, 5),
                    link(20, 5, 5),
                    link(200, 10, 5),
                    link(300, 10, 5),
                ],
            ),
            (
                Asn(200),
                vec![link(100, 10, 5), link(300, 100, 1), link(30, 10, 2)],
            ),
            (
                Asn(300),
                vec![link(100, 10, 5), link(200, 100, 1), link(40, 1, 3)],
            ),
        ]
    }

    fn table(from: u32) -> BTreeMap<Asn, Route> {
        let speakers = example();
        best_paths(Asn(from), speakers.iter().map(|(a, l)| (*a, l.as_slice())))
    }

    fn check(from: u32, to: u32, cost: u64, path: &[u32]) {
        let t = table(from);
        let r = t.get(&Asn(to)).unwrap();
        assert_eq!(r.cost, cost, "{from}->{to}");
        assert_eq!(
            r.path,
            path.iter().map(|&a| Asn(a)).collect::<Vec<_>>(),
            "{from}->{to}"
        );
        assert_eq!(r.hops as usize, path.len() - 1);
        assert_eq!(r.next_hop, Asn(path[1]));
    }

    #[test]
    fn the_table_rebuilds_every_path_best_paths_found() {
        let mut reported = 0;
        for from in [100, 200, 300] {
            let mut r = Routing::new(Asn(from), 16);
            for (i, (asn, links)) in example().into_iter().enumerate() {
                r.advertise(Member {
                    node: NodeId(i as u32 + 1),
                    asn,
                    addr: Addr::from(format!("10.0.0.{i}:1450")),
                    fingerprint: Fingerprint([i as u8; 32]),
                    seq: 1,
                    links: links.into(),
                    state: MemberState::Alive,
                });
            }
            let changes = r.recompute();
            let expected: Vec<Route> = table(from).into_values().collect();
            assert!(
                expected.iter().any(|route| route.hops >= 2),
                "multi-hop paths"
            );
            assert_eq!(r.routes().collect::<Vec<_>>(), expected, "from AS{from}");
            assert_eq!(r.destinations(), expected.len());
            let after: Vec<Route> = changes.into_iter().filter_map(|c| c.after).collect();
            assert_eq!(after, expected, "every route is new");
            // Reroute: AS 100 drops its link to 200 and makes the one to 300 dear, so paths
            // from 100 now cross 300 and 200; then 200 makes its link to 300 dearer.
            for (node, asn, links) in [
                (
                    1,
                    Asn(100),
                    vec![link(10, 2, 5), link(20, 5, 5), link(300, 10, 50)],
                ),
                (
                    2,
                    Asn(200),
                    vec![link(100, 10, 5), link(300, 100, 9), link(30, 10, 2)],
                ),
            ] {
                let before: BTreeMap<Asn, Route> =
                    r.routes().map(|route| (route.destination, route)).collect();
                let mut m = r.member(NodeId(node)).cloned().unwrap();
                m.asn = asn;
                m.links = links.into();
                m.seq += 1;
                r.advertise(m);
                let changes = r.recompute();
                let now: BTreeMap<Asn, Route> =
                    r.routes().map(|route| (route.destination, route)).collect();
                let mut diff: Vec<Asn> = before
                    .keys()
                    .chain(now.keys())
                    .filter(|d| before.get(d) != now.get(d))
                    .copied()
                    .collect();
                diff.sort();
                diff.dedup();
                let listed: Vec<Asn> = changes.iter().map(|c| c.destination).collect();
                assert_eq!(
                    listed, diff,
                    "from AS{from}: exactly the routes that changed"
                );
                for c in &changes {
                    assert_eq!(c.before.as_ref(), before.get(&c.destination));
                    assert_eq!(c.after.as_ref(), now.get(&c.destination));
                }
                reported += changes.len();
            }
        }
        assert!(reported >= 3, "the reroutes changed routes ({reported})");
    }

    #[test]
    fn a_path_that_moves_upstream_is_reported_though_its_last_step_is_the_same() {
        let mut r = Routing::new(Asn(1), 16);
        let advertise = |r: &mut Routing, asn: u32, links: Vec<AsLink>| {
            r.advertise(Member {
                node: NodeId(asn),
                asn: Asn(asn),
                addr: Addr::from(format!("10.0.0.{asn}:1450")),
                fingerprint: Fingerprint([asn as u8; 32]),
                seq: 1,
                links: links.into(),
                state: MemberState::Alive,
            });
        };
        advertise(&mut r, 1, vec![link(2, 10, 1)]);
        advertise(&mut r, 2, vec![link(3, 10, 1), link(4, 10, 1)]);
        advertise(&mut r, 3, vec![link(5, 10, 1)]);
        advertise(&mut r, 4, vec![link(5, 10, 1)]);
        advertise(&mut r, 5, vec![link(6, 10, 1)]);
        r.recompute();
        let path = |r: &Routing, to: u32| r.route(Asn(to)).map(|route| route.path);
        assert_eq!(
            path(&r, 6),
            Some(vec![Asn(1), Asn(2), Asn(3), Asn(5), Asn(6)])
        );
        // 3 -> 5 gets dearer: 5 is now reached through 4; 6's last step (5 -> 6), cost,
        // hops and next hop stay the same, but its path moved.
        advertise(&mut r, 3, vec![link(5, 10, 2)]);
        let changes = r.recompute();
        let changed: Vec<Asn> = changes.iter().map(|c| c.destination).collect();
        assert_eq!(changed, vec![Asn(5), Asn(6)]);
        assert_eq!(
            path(&r, 6),
            Some(vec![Asn(1), Asn(2), Asn(4), Asn(5), Asn(6)])
        );
    }

    /// A random small AS graph: (node id, AS, links as (target, capacity, cost)). Few ASes
    /// and costs of 0..=3 make ties, shared ASes and repeated links common.
    #[derive(Clone, Debug)]
    struct Adverts(Vec<(u32, u32, Vec<RandomLink>)>);

    /// A random link: (target AS, capacity, cost).
    type RandomLink = (u32, u64, u64);

    impl quickcheck::Arbitrary for Adverts {
        fn arbitrary(g: &mut quickcheck::Gen) -> Self {
            let pick = |g: &mut quickcheck::Gen, n: u32| u32::arbitrary(g) % n;
            let count = 1 + pick(g, 7);
            Adverts(
                (0..count)
                    .map(|_| {
                        let links = (0..pick(g, 5))
                            .map(|_| {
                                let target = 1 + pick(g, 8);
                                (target, 1 + u64::from(pick(g, 5)), u64::from(pick(g, 4)))
                            })
                            .collect();
                        (1 + pick(g, 9), 1 + pick(g, 6), links)
                    })
                    .collect(),
            )
        }

        fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
            Box::new(self.0.shrink().map(Adverts))
        }
    }

    impl Adverts {
        fn members(&self) -> Vec<Member> {
            let mut by_node: BTreeMap<u32, Member> = BTreeMap::new();
            for (node, asn, links) in &self.0 {
                by_node.insert(
                    *node,
                    Member {
                        node: NodeId(*node),
                        asn: Asn(*asn),
                        addr: Addr::from("x"),
                        fingerprint: Fingerprint([0; 32]),
                        seq: 1,
                        links: links
                            .iter()
                            .map(|&(t, cap, cost)| link(t, cap, cost))
                            .collect(),
                        state: MemberState::Alive,
                    },
                );
            }
            by_node.into_values().collect()
        }
    }

    /// A seeded checker: the same cases on every run.
    fn checked(cases: u64) -> quickcheck::QuickCheck {
        quickcheck::QuickCheck::new()
            .tests(cases)
            .rng(quickcheck::Gen::from_size_and_seed(16, 0x5eed_7ab1e))
    }

    /// The path rule by exhaustion: every simple path from `source` whose inner ASes have a
    /// speaker (one of `speakers` per AS), the best by (cost, hops, AS path); a repeated
    /// link counts once, the last.
    fn exhaustive<'a>(
        source: Asn,
        speakers: impl IntoIterator<Item = &'a Member>,
    ) -> BTreeMap<Asn, Route> {
        let mut edges: BTreeMap<Asn, BTreeMap<Asn, (u64, u64)>> = BTreeMap::new();
        for m in speakers {
            let out = edges.entry(m.asn).or_default();
            for l in m.links.iter() {
                out.insert(l.asn, (l.cost, l.capacity));
            }
        }
        let mut best: BTreeMap<Asn, Route> = BTreeMap::new();
        let mut stack = vec![(vec![source], 0u64, u64::MAX)];
        while let Some((path, cost, capacity)) = stack.pop() {
            let Some(&at) = path.last() else { continue };
            for (&to, &(c, cap)) in edges.get(&at).into_iter().flatten() {
                if path.contains(&to) {
                    continue;
                }
                let mut next = path.clone();
                next.push(to);
                let route = Route {
                    destination: to,
                    cost: cost + c,
                    hops: next.len() as u32 - 1,
                    capacity: capacity.min(cap),
                    next_hop: next[1],
                    path: next.clone(),
                };
                let key = |r: &Route| (r.cost, r.hops, r.path.clone());
                if best.get(&to).is_none_or(|b| key(&route) < key(b)) {
                    best.insert(to, route.clone());
                }
                stack.push((next, route.cost, route.capacity));
            }
        }
        best
    }

    #[test]
    fn best_paths_follow_the_path_rule_on_random_graphs() {
        fn property(adverts: Adverts, source: u8) -> bool {
            let members = adverts.members();
            let source = Asn(1 + u32::from(source) % 6);
            let found = best_paths(
                source,
                members
                    .iter()
                    .filter(|m| m.state == MemberState::Alive)
                    .map(|m| (m.asn, &m.links[..])),
            );
            found == exhaustive(source, speakers(&members).into_values())
        }
        checked(2000).quickcheck(property as fn(Adverts, u8) -> bool);
    }

    #[test]
    fn recompute_reports_exactly_the_routes_that_changed() {
        fn property(steps: Vec<Adverts>, withdrawn: Vec<u8>) -> bool {
            let mut r = Routing::new(Asn(1), 64);
            let mut before: BTreeMap<Asn, Route> = BTreeMap::new();
            for (i, adverts) in steps.iter().enumerate() {
                for m in adverts.members() {
                    r.advertise(m);
                }
                if let Some(&w) = withdrawn.get(i) {
                    r.withdraw(NodeId(1 + u32::from(w) % 9), MemberState::Left, None);
                }
                let changes = r.recompute();
                let now: BTreeMap<Asn, Route> =
                    r.routes().map(|route| (route.destination, route)).collect();
                if now != exhaustive(Asn(1), r.speakers()) {
                    return false;
                }
                let diff: Vec<(Asn, Option<&Route>, Option<&Route>)> = before
                    .keys()
                    .chain(now.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .filter(|d| before.get(d) != now.get(d))
                    .map(|d| (*d, before.get(d), now.get(d)))
                    .collect();
                let listed: Vec<(Asn, Option<&Route>, Option<&Route>)> = changes
                    .iter()
                    .map(|c| (c.destination, c.before.as_ref(), c.after.as_ref()))
                    .collect();
                if listed != diff {
                    return false;
                }
                before = now;
            }
            true
        }
        checked(500).quickcheck(property as fn(Vec<Adverts>, Vec<u8>) -> bool);
    }

    #[test]
    fn fixture_example_routes() {
        check(100, 200, 5, &[100, 200]);
        check(100, 300, 5, &[100, 300]);
        check(100, 30, 7, &[100, 200, 30]);
        check(100, 40, 8, &[100, 300, 40]);
        check(200, 100, 5, &[200, 100]);
        check(200, 20, 10, &[200, 100, 20]);
        check(200, 40, 4, &[200, 300, 40]);
        check(300, 30, 3, &[300, 200, 30]);
        check(300, 10, 10, &[300, 100, 10]);
        assert_eq!(table(100).get(&Asn(30)).unwrap().capacity, 10);
        assert_eq!(table(300).get(&Asn(10)).unwrap().capacity, 2);
        assert_eq!(table(100).len(), 6);
    }

    #[test]
    fn stub_ases_are_never_transit() {
        // 1 -> 2 (stub, no controller) -> 3 would be cheap, but 2 cannot forward.
        let speakers = [(Asn(1), vec![link(2, 1, 1), link(3, 1, 10)])];
        let t = best_paths(Asn(1), speakers.iter().map(|(a, l)| (*a, l.as_slice())));
        assert_eq!(t[&Asn(3)].cost, 10);
        assert_eq!(t[&Asn(3)].path, vec![Asn(1), Asn(3)]);
    }

    #[test]
    fn ties_break_on_hops_then_smallest_path() {
        // Cost 2 via 5 (two hops) or direct cost 2 (one hop): fewer hops wins.
        // Cost 4 to 9 via 3 or via 2 (both 2 hops): smaller path [1,2,9] wins.
        let speakers = [
            (
                Asn(1),
                vec![link(5, 1, 1), link(7, 1, 2), link(3, 1, 2), link(2, 1, 2)],
            ),
            (Asn(5), vec![link(7, 1, 1)]),
            (Asn(3), vec![link(9, 1, 2)]),
            (Asn(2), vec![link(9, 1, 2)]),
        ];
        let t = best_paths(Asn(1), speakers.iter().map(|(a, l)| (*a, l.as_slice())));
        assert_eq!(t[&Asn(7)].path, vec![Asn(1), Asn(7)]);
        assert_eq!(t[&Asn(9)].path, vec![Asn(1), Asn(2), Asn(9)]);
    }

    #[test]
    fn lower_node_id_speaks_for_a_shared_as_and_withdrawal_reroutes() {
        let member = |node: u32, asn: u32, links: Vec<AsLink>| Member {
            node: NodeId(node),
            asn: Asn(asn),
            addr: Addr::from("x"),
            fingerprint: Fingerprint([node as u8; 32]),
            seq: 1,
            links: links.into(),
            state: MemberState::Alive,
        };
        let mut r = Routing::new(Asn(1), 16);
        r.advertise(member(1, 1, vec![link(2, 5, 1)]));
        r.advertise(member(2, 2, vec![link(3, 5, 1)]));
        r.advertise(member(3, 2, vec![link(4, 5, 1)]));
        let changes = r.recompute();
        assert_eq!(changes.len(), 2);
        assert!(r.route(Asn(3)).is_some());
        assert!(r.route(Asn(4)).is_none());
        assert!(r.withdraw(NodeId(2), MemberState::Left, Some(2)));
        let changes = r.recompute();
        assert!(r.route(Asn(4)).is_some() && r.route(Asn(3)).is_none());
        assert_eq!(changes.len(), 2);
        assert!(!r.is_dirty());
        assert_eq!(r.alive(), 2);
    }
}
