//! The reference routing, written independently of the core's routing module to check it:
//! a label-correcting search (Bellman–Ford style, FIFO queue) whose labels are
//! `(total cost, hops, full AS path)` compared as a tuple, which is the contract's order
//! (lowest cost, then fewest hops, then the lexicographically smallest AS path).
//!
//! The contract: an edge X→Y exists iff the live controller of AS X advertises a link to Y;
//! a controller is live for a node only while that node reaches it over overlay links that
//! both ends list (the two-way check: in a settled overlay, the node's connected component
//! of direct links); an AS without a live controller is a destination only, never transit;
//! when two live controllers claim one AS, the lower node id speaks for it; a route reports
//! the bottleneck capacity of its path.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use overlay_core::{AsLink, Asn, NodeId, Route};

/// The best path to one destination as the contract defines it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRoute {
    /// Sum of link costs.
    pub cost: u64,
    /// Number of AS hops.
    pub hops: u32,
    /// Smallest link capacity on the path.
    pub capacity: u64,
    /// The AS path, source first.
    pub path: Vec<Asn>,
}

/// The network as the live controllers advertise it: for each AS, the links of the
/// controller that speaks for it.
#[derive(Clone, Debug, Default)]
pub struct Reference {
    speakers: BTreeMap<Asn, (NodeId, Vec<AsLink>)>,
    /// Every controller given, speaker or not (to restrict the view to some of them).
    live: Vec<(NodeId, Asn, Vec<AsLink>)>,
}

impl Reference {
    /// The view of the given live controllers `(id, AS, links)`.
    pub fn new(live: impl IntoIterator<Item = (NodeId, Asn, Vec<AsLink>)>) -> Self {
        let live: Vec<_> = live.into_iter().collect();
        let mut speakers: BTreeMap<Asn, (NodeId, Vec<AsLink>)> = BTreeMap::new();
        for (node, asn, links) in &live {
            let lower = speakers.get(asn).is_none_or(|(n, _)| node < n);
            if lower {
                speakers.insert(*asn, (*node, links.clone()));
            }
        }
        Reference { speakers, live }
    }

    /// The view of those controllers among these that `reached` holds: what a node sees
    /// when it reaches exactly them over two-way links.
    pub fn within(&self, reached: &BTreeSet<NodeId>) -> Reference {
        Reference::new(
            self.live
                .iter()
                .filter(|(node, _, _)| reached.contains(node))
                .cloned(),
        )
    }

    /// Best paths from `source` to every reachable AS other than itself.
    pub fn routes_from(&self, source: Asn) -> BTreeMap<Asn, RefRoute> {
        type Label = (u64, u32, Vec<Asn>);
        let mut labels: BTreeMap<Asn, Label> = BTreeMap::new();
        labels.insert(source, (0, 0, vec![source]));
        let mut queue = VecDeque::from([source]);
        let mut queued = BTreeSet::from([source]);
        while let Some(u) = queue.pop_front() {
            queued.remove(&u);
            let Some((_, links)) = self.speakers.get(&u) else {
                continue; // no live controller: a destination only
            };
            let Some((cost, hops, path)) = labels.get(&u).cloned() else {
                continue;
            };
            for link in links {
                if link.asn == source {
                    continue;
                }
                let mut next = path.clone();
                next.push(link.asn);
                let candidate = (cost.saturating_add(link.cost), hops + 1, next);
                if labels
                    .get(&link.asn)
                    .is_none_or(|current| candidate < *current)
                {
                    labels.insert(link.asn, candidate);
                    if queued.insert(link.asn) {
                        queue.push_back(link.asn);
                    }
                }
            }
        }
        labels.remove(&source);
        labels
            .into_iter()
            .map(|(dest, (cost, hops, path))| {
                let capacity = path
                    .windows(2)
                    .filter_map(|w| self.link(w[0], w[1]).map(|l| l.capacity))
                    .min()
                    .unwrap_or(0);
                (
                    dest,
                    RefRoute {
                        cost,
                        hops,
                        capacity,
                        path,
                    },
                )
            })
            .collect()
    }

    fn link(&self, from: Asn, to: Asn) -> Option<&AsLink> {
        self.speakers
            .get(&from)
            .and_then(|(_, links)| links.iter().find(|l| l.asn == to))
    }

    /// Checks a node's table against the reference from `source`; the error names the
    /// first difference.
    pub fn check(&self, source: Asn, table: &[Route]) -> Result<(), String> {
        self.check_against(&self.routes_from(source), table)
    }

    /// Like [`Reference::check`] with routes computed before (to check many nodes of one
    /// AS, or one table repeatedly, without recomputing).
    pub fn check_against(
        &self,
        expected: &BTreeMap<Asn, RefRoute>,
        table: &[Route],
    ) -> Result<(), String> {
        if table.len() != expected.len() {
            let got: BTreeSet<Asn> = table.iter().map(|r| r.destination).collect();
            let want: BTreeSet<Asn> = expected.keys().copied().collect();
            return Err(format!(
                "{} routes, expected {}: missing {:?}, extra {:?}",
                table.len(),
                expected.len(),
                want.difference(&got).collect::<Vec<_>>(),
                got.difference(&want).collect::<Vec<_>>()
            ));
        }
        for route in table {
            let Some(want) = expected.get(&route.destination) else {
                return Err(format!("unexpected route to {}", route.destination));
            };
            let same = route.cost == want.cost
                && route.hops == want.hops
                && route.capacity == want.capacity
                && route.path == want.path
                && Some(&route.next_hop) == want.path.get(1);
            if !same {
                return Err(format!(
                    "to {}: got {route:?}, expected {want:?}",
                    route.destination
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(asn: u32, capacity: u64, cost: u64) -> AsLink {
        AsLink {
            asn: Asn(asn),
            capacity,
            cost,
        }
    }

    fn asns(v: &[u32]) -> Vec<Asn> {
        v.iter().map(|&a| Asn(a)).collect()
    }

    /// The three-controller example of the README, worked out by hand.
    fn example() -> Reference {
        Reference::new([
            (
                NodeId(1),
                Asn(100),
                vec![l(10, 2, 5), l(20, 5, 5), l(200, 10, 5), l(300, 10, 5)],
            ),
            (
                NodeId(2),
                Asn(200),
                vec![l(100, 10, 5), l(300, 100, 1), l(30, 10, 2)],
            ),
            (
                NodeId(3),
                Asn(300),
                vec![l(100, 10, 5), l(200, 100, 1), l(40, 1, 3)],
            ),
        ])
    }

    #[test]
    fn hand_computed_routes_of_the_example() {
        let r = example().routes_from(Asn(100));
        assert_eq!(r.len(), 6);
        assert_eq!(r[&Asn(30)].path, asns(&[100, 200, 30]));
        assert_eq!((r[&Asn(30)].cost, r[&Asn(30)].capacity), (7, 10));
        assert_eq!(r[&Asn(40)].path, asns(&[100, 300, 40]));
        assert_eq!((r[&Asn(40)].cost, r[&Asn(40)].capacity), (8, 1));
        let from_200 = example().routes_from(Asn(200));
        assert_eq!(from_200[&Asn(10)].path, asns(&[200, 100, 10]));
        assert_eq!(from_200[&Asn(10)].cost, 10, "5 + 5 beats 1 + 5 + 5");
        assert_eq!(from_200[&Asn(10)].capacity, 2);
        assert_eq!(from_200[&Asn(40)].path, asns(&[200, 300, 40]));
    }

    #[test]
    fn ties_go_to_fewer_hops_then_the_smaller_path() {
        // 1 -> 2 -> 4 and 1 -> 3 -> 4 cost 2; 1 -> 4 direct costs 2 too (fewest hops).
        let direct = Reference::new([
            (NodeId(1), Asn(1), vec![l(2, 1, 1), l(3, 1, 1), l(4, 1, 2)]),
            (NodeId(2), Asn(2), vec![l(4, 1, 1)]),
            (NodeId(3), Asn(3), vec![l(4, 1, 1)]),
        ]);
        assert_eq!(direct.routes_from(Asn(1))[&Asn(4)].path, asns(&[1, 4]));
        let two = Reference::new([
            (NodeId(1), Asn(1), vec![l(3, 1, 1), l(2, 1, 1)]),
            (NodeId(2), Asn(2), vec![l(4, 5, 1)]),
            (NodeId(3), Asn(3), vec![l(4, 1, 1)]),
        ]);
        let r = two.routes_from(Asn(1));
        assert_eq!(r[&Asn(4)].path, asns(&[1, 2, 4]));
        assert_eq!(r[&Asn(4)].capacity, 1);
    }

    #[test]
    fn silent_ases_are_destinations_only_and_the_lower_id_speaks() {
        // AS 2 has no controller: 1 -> 2 -> 3 must not be used.
        let r = Reference::new([
            (NodeId(1), Asn(1), vec![l(2, 1, 1)]),
            (NodeId(3), Asn(3), vec![l(2, 1, 1)]),
        ]);
        let from_1 = r.routes_from(Asn(1));
        assert!(from_1.contains_key(&Asn(2)) && !from_1.contains_key(&Asn(3)));
        let shared = Reference::new([
            (NodeId(9), Asn(1), vec![l(5, 1, 1)]),
            (NodeId(4), Asn(1), vec![l(6, 1, 1)]),
        ]);
        let keys: Vec<Asn> = shared.routes_from(Asn(1)).into_keys().collect();
        assert_eq!(keys, asns(&[6]));
    }

    #[test]
    fn check_names_the_difference() {
        let r = example();
        let wrong = vec![Route {
            destination: Asn(10),
            cost: 5,
            hops: 1,
            capacity: 2,
            path: asns(&[100, 10]),
            next_hop: Asn(10),
        }];
        let err = r.check(Asn(100), &wrong).unwrap_err();
        assert!(err.contains("1 routes, expected 6"), "{err}");
    }
}
