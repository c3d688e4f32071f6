//! Routing owns the link-state view of the network: one member record per controller
//! (its AS, address, key, sequence number, links and state), and the best-path table
//! computed from the live members' advertisements.
//!
//! The path rule is a public contract: an edge X→Y exists iff the live controller of AS X
//! advertises a link to Y; ASes without a live controller are destinations only, never
//! transit; the best path has the lowest total cost, then the fewest hops, then the
//! lexicographically smallest AS path; its capacity is the path's bottleneck. When two live
//! controllers claim one AS, the one with the lower node id speaks for it.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use petgraph::graphmap::DiGraphMap;
use serde::Serialize;

use crate::sentry::Fingerprint;
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

/// A best path to one destination AS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Destination AS.
    pub destination: Asn,
    /// Sum of link costs.
    pub cost: u64,
    /// Number of AS hops.
    pub hops: u32,
    /// Bottleneck capacity along the path.
    pub capacity: u64,
    /// The AS path, from this node's AS to the destination.
    pub path: Vec<Asn>,
    /// The first AS after this node's.
    pub next_hop: Asn,
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
pub enum Applied {
    /// A controller not alive before is alive now.
    Joined,
    /// A live controller's record was refreshed or changed.
    Updated,
}

/// One destination of the table as it is kept: the AS path is not stored per destination
/// but rebuilt from the predecessors (a table of N destinations holds N entries, not N
/// paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TableEntry {
    cost: u64,
    capacity: u64,
    hops: u32,
    next_hop: Asn,
    /// The AS before the destination on the path (this node's AS for a neighbour).
    previous: Asn,
}

impl TableEntry {
    fn of(route: &Route, source: Asn) -> Self {
        let before_last = route.path.len().saturating_sub(2);
        TableEntry {
            cost: route.cost,
            capacity: route.capacity,
            hops: route.hops,
            next_hop: route.next_hop,
            previous: route.path.get(before_last).copied().unwrap_or(source),
        }
    }
}

/// Member records and the routing table.
#[derive(Debug, Clone)]
pub struct Routing {
    own_asn: Asn,
    members: BTreeMap<NodeId, Member>,
    table: BTreeMap<Asn, TableEntry>,
    dirty: bool,
    max_members: usize,
}

impl Routing {
    /// An empty view for a node in AS `own_asn`, remembering at most `max_members`.
    pub fn new(own_asn: Asn, max_members: usize) -> Self {
        Routing {
            own_asn,
            members: BTreeMap::new(),
            table: BTreeMap::new(),
            dirty: true,
            max_members,
        }
    }

    /// Records a live member's advertisement (the caller has checked it is the newest).
    /// Returns `None` when the member table is full of live members.
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
        if !was_alive || previous.is_some_and(|p| p.links != member.links || p.asn != member.asn) {
            self.dirty = true;
        }
        self.members.insert(node, member);
        Some(if was_alive {
            Applied::Updated
        } else {
            Applied::Joined
        })
    }

    /// Marks a member as no longer alive; returns whether it was alive.
    pub fn withdraw(&mut self, node: NodeId, state: MemberState, seq: Option<u64>) -> bool {
        let Some(member) = self.members.get_mut(&node) else {
            return false;
        };
        let was_alive = member.state == MemberState::Alive;
        member.state = state;
        if let Some(seq) = seq {
            member.seq = member.seq.max(seq);
        }
        if was_alive {
            self.dirty = true;
        }
        was_alive
    }

    /// Forgets a member entirely.
    pub fn forget(&mut self, node: NodeId) {
        if let Some(m) = self.members.remove(&node) {
            self.dirty |= m.state == MemberState::Alive;
        }
    }

    /// One member's record.
    pub fn member(&self, node: NodeId) -> Option<&Member> {
        self.members.get(&node)
    }

    /// All member records (alive and not), by node id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The address of a random member that expired (failed or cut off), if any.
    pub fn random_expired(&self, pick: u64) -> Option<&Addr> {
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
    pub fn alive(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.state == MemberState::Alive)
            .count()
    }

    /// Whether the table must be recomputed.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Recomputes best paths from the live members; returns what changed.
    pub fn recompute(&mut self) -> Vec<RouteChange> {
        self.dirty = false;
        let new = best_paths(
            self.own_asn,
            speakers(self.members.values())
                .into_iter()
                .map(|(asn, m)| (asn, &m.links[..])),
        );
        let table: BTreeMap<Asn, TableEntry> = new
            .iter()
            .map(|(dest, route)| (*dest, TableEntry::of(route, self.own_asn)))
            .collect();
        // A path changed when its last step or its predecessor's path did: settle them in
        // order of hops, and rebuild an old route only where something changed.
        let mut by_hops: Vec<(&Asn, &Route, &TableEntry)> = new
            .iter()
            .zip(table.values())
            .map(|((dest, route), entry)| (dest, route, entry))
            .collect();
        by_hops.sort_by_key(|(_, route, _)| route.hops);
        let mut path_changed: HashMap<Asn, bool> = HashMap::new();
        let mut changes = Vec::new();
        for (dest, route, entry) in by_hops {
            let old = self.table.get(dest);
            let moved = old.is_none_or(|o| o.previous != entry.previous)
                || path_changed.get(&entry.previous).copied().unwrap_or(false);
            path_changed.insert(*dest, moved);
            if moved || old != Some(entry) {
                changes.push(RouteChange {
                    destination: *dest,
                    before: self.route(*dest),
                    after: Some(route.clone()),
                });
            }
        }
        for dest in self.table.keys() {
            if !new.contains_key(dest) {
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
    pub fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        self.table.keys().filter_map(|&dest| self.route(dest))
    }

    /// How many destinations the table has.
    pub fn destinations(&self) -> usize {
        self.table.len()
    }

    /// The current route to one destination (its AS path rebuilt from the predecessors).
    pub fn route(&self, destination: Asn) -> Option<Route> {
        let entry = self.table.get(&destination)?;
        let mut path = vec![destination];
        let mut at = entry;
        while at.previous != self.own_asn && path.len() <= self.table.len() {
            path.push(at.previous);
            at = self.table.get(&at.previous)?;
        }
        path.push(self.own_asn);
        path.reverse();
        Some(Route {
            destination,
            cost: entry.cost,
            hops: entry.hops,
            capacity: entry.capacity,
            path,
            next_hop: entry.next_hop,
        })
    }
}

/// The member that speaks for each AS: its live controller, the one with the lowest node
/// id when several claim the AS. Only speakers' links are edges of the routing graph.
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

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Distance {
    cost: u64,
    hops: u32,
}

/// Best paths from `source` over the adjacency advertised by each AS that has a live
/// controller (`speakers`: AS and its links). Dijkstra on (cost, hops), ties broken by the
/// lexicographically smallest AS path.
pub fn best_paths<'a>(
    source: Asn,
    speakers: impl Iterator<Item = (Asn, &'a [AsLink])>,
) -> BTreeMap<Asn, Route> {
    let mut graph: DiGraphMap<Asn, (u64, u64)> = DiGraphMap::new();
    for (asn, links) in speakers {
        graph.add_node(asn);
        for link in links {
            graph.add_edge(asn, link.asn, (link.cost, link.capacity));
        }
    }
    graph.add_node(source);

    let mut dist: HashMap<Asn, Distance> = HashMap::new();
    let mut pred: HashMap<Asn, Asn> = HashMap::new();
    let mut done: HashMap<Asn, ()> = HashMap::new();
    let mut heap = BinaryHeap::new();
    dist.insert(source, Distance { cost: 0, hops: 0 });
    heap.push(Reverse((Distance { cost: 0, hops: 0 }, source)));

    while let Some(Reverse((d, u))) = heap.pop() {
        if done.insert(u, ()).is_some() || dist.get(&u) != Some(&d) {
            continue;
        }
        for (_, v, &(cost, _)) in graph.edges(u) {
            if v == source || done.contains_key(&v) {
                continue;
            }
            let candidate = Distance {
                cost: d.cost.saturating_add(cost),
                hops: d.hops + 1,
            };
            let better = match dist.get(&v) {
                None => true,
                Some(current) => match candidate.cmp(current) {
                    Ordering::Less => true,
                    Ordering::Greater => false,
                    Ordering::Equal => pred
                        .get(&v)
                        .is_some_and(|&p| path_to(&pred, source, u) < path_to(&pred, source, p)),
                },
            };
            if better {
                dist.insert(v, candidate);
                pred.insert(v, u);
                heap.push(Reverse((candidate, v)));
            }
        }
    }

    let mut routes = BTreeMap::new();
    for (&dest, &d) in &dist {
        if dest == source {
            continue;
        }
        let path = path_to(&pred, source, dest);
        let capacity = path
            .windows(2)
            .filter_map(|w| match w {
                [a, b] => graph.edge_weight(*a, *b).map(|&(_, cap)| cap),
                _ => None,
            })
            .min()
            .unwrap_or(0);
        let next_hop = path.get(1).copied().unwrap_or(dest);
        routes.insert(
            dest,
            Route {
                destination: dest,
                cost: d.cost,
                hops: d.hops,
                capacity,
                path,
                next_hop,
            },
        );
    }
    routes
}

/// The AS path from `source` to `to` along predecessor links.
fn path_to(pred: &HashMap<Asn, Asn>, source: Asn, to: Asn) -> Vec<Asn> {
    let mut path = vec![to];
    let mut at = to;
    while at != source {
        match pred.get(&at) {
            Some(&p) => {
                path.push(p);
                at = p;
            }
            None => break,
        }
    }
    path.reverse();
    path
}

#[cfg(test)]
mod tests {
    use super::*;

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
