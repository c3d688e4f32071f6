//! Unit tests of routing: the path rule on fixed and random graphs, reported changes,
//! shared ASes, rumor application and route debouncing.

use super::*;
use crate::paths::best_paths;
use crate::wire::{AsLink, RumorBody};

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
                seq: 1,
                profile: Arc::new(Profile {
                    asn,
                    addr: Addr::from(format!("10.0.0.{i}:1450")),
                    fingerprint: Fingerprint([i as u8; 32]),
                    links: links.into(),
                    peers: None,
                }),
                reachable: true,
                first_hop: None,
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
            let profile = Arc::make_mut(&mut m.profile);
            profile.asn = asn;
            profile.links = links.into();
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
            seq: 1,
            profile: Arc::new(Profile {
                asn: Asn(asn),
                addr: Addr::from(format!("10.0.0.{asn}:1450")),
                fingerprint: Fingerprint([asn as u8; 32]),
                links: links.into(),
                peers: None,
            }),
            reachable: true,
            first_hop: None,
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
                    seq: 1,
                    profile: Arc::new(Profile {
                        asn: Asn(*asn),
                        addr: Addr::from("x"),
                        fingerprint: Fingerprint([0; 32]),
                        links: links
                            .iter()
                            .map(|&(t, cap, cost)| link(t, cap, cost))
                            .collect(),
                        peers: None,
                    }),
                    reachable: true,
                    first_hop: None,
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
        let out = edges.entry(m.profile.asn).or_default();
        for l in m.profile.links.iter() {
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
                .map(|m| (m.profile.asn, &m.profile.links[..])),
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
    assert_eq!(r.due(Time::ZERO, std::time::Duration::ZERO), None);
    assert_eq!(r.alive(), 2);
}

fn member(node: u32, asn: u32, links: Vec<AsLink>) -> Member {
    Member {
        node: NodeId(node),
        seq: 1,
        profile: Arc::new(Profile {
            asn: Asn(asn),
            addr: Addr::from("x"),
            fingerprint: Fingerprint([node as u8; 32]),
            links: links.into(),
            peers: None,
        }),
        reachable: true,
        first_hop: None,
        state: MemberState::Alive,
    }
}

/// An admitted rumor of `origin` (unsigned: routing never checks signatures), signed by
/// the key [`no_key`].
fn admitted(origin: u32, seq: u64, content: RumorContent) -> AdmittedRumor {
    let body = RumorBody {
        origin: NodeId(origin),
        seq,
        issued_at: 0,
        pubkey: Vec::new(),
        content,
    };
    let raw = serde_json::value::RawValue::from_string("null".into()).unwrap();
    AdmittedRumor::new(body, Arc::from(raw), Vec::new().into())
}

/// The fingerprint of the empty key [`admitted`] rumors carry.
fn no_key() -> Fingerprint {
    Fingerprint::of_der(&[])
}

fn advert(asn: u32, addr: &str) -> RumorContent {
    RumorContent::Advert {
        asn: Asn(asn),
        addr: Addr(addr.into()),
        links: Arc::from(vec![link(1, 10, 1)]),
        cert: None,
        peers: None,
    }
}

#[test]
fn an_accepted_rumor_changes_the_members_it_names() {
    let mut r = Routing::new(Asn(1), 8);
    let fp = no_key();
    let joined = r.apply(&admitted(2, 1, advert(2, "10.0.0.2:1")));
    assert_eq!(
        joined,
        Change::Advertised {
            asn: Asn(2),
            addr: Addr("10.0.0.2:1".into()),
            joined: true
        }
    );
    assert_eq!(r.bound_key(NodeId(2)), Some(fp));
    let again = r.apply(&admitted(2, 2, advert(2, "10.0.0.2:1")));
    assert!(matches!(again, Change::Advertised { joined: false, .. }));
    let left = r.apply(&admitted(2, 3, RumorContent::Leave { asn: Asn(2) }));
    assert_eq!(
        left,
        Change::Left {
            addr: Some(Addr("10.0.0.2:1".into())),
            was_alive: true
        }
    );
    assert_eq!(r.bound_key(NodeId(2)), None);
    assert_eq!(
        r.member(NodeId(2)).map(|m| (m.state, m.seq)),
        Some((MemberState::Left, 3))
    );
    let stranger = r.apply(&admitted(9, 1, RumorContent::Leave { asn: Asn(9) }));
    assert_eq!(
        stranger,
        Change::Left {
            addr: None,
            was_alive: false
        }
    );
}

#[test]
fn an_accusation_is_handed_on_only_with_a_valid_key() {
    let mut r = Routing::new(Asn(1), 8);
    let accuse = |fingerprint: String| RumorContent::Accuse {
        accused: NodeId(5),
        fingerprint,
        reason: String::new(),
    };
    let fp = Fingerprint([3; 32]);
    assert_eq!(
        r.apply(&admitted(2, 1, accuse(fp.to_hex()))),
        Change::Accused {
            accused: NodeId(5),
            fingerprint: fp
        }
    );
    assert_eq!(
        r.apply(&admitted(2, 2, accuse("zz".into()))),
        Change::Nothing
    );
    assert_eq!(r.members().count(), 0);
}

#[test]
fn recomputation_is_debounced_and_counted() {
    let debounce = std::time::Duration::from_millis(500);
    let at = Time::from_millis;
    let mut r = Routing::new(Asn(1), 8);
    r.advertise(member(1, 1, vec![link(2, 10, 1)]));
    let first = r.due(at(100), debounce);
    assert_eq!(first, Some(at(100)), "at once the first time");
    assert_eq!(r.update(at(100)).len(), 1, "AS 2 is a destination");
    assert_eq!(r.due(at(200), debounce), None, "nothing changed since");
    r.advertise(member(2, 2, vec![link(1, 10, 1), link(3, 10, 1)]));
    let later = r.due(at(200), debounce);
    assert_eq!(later, Some(at(600)), "not before the debounce");
    r.advertise(member(3, 3, vec![link(4, 10, 1)]));
    assert_eq!(r.due(at(300), debounce), Some(at(600)), "a burst costs one");
    let changes = r.update(at(600));
    assert_eq!(changes.len(), 2, "AS 3 and AS 4 are new: {changes:?}");
    assert_eq!(r.route_changes(), 3);
    assert_eq!(r.due(at(700), debounce), None);
}

#[test]
fn a_neighbour_listing_a_dead_peer_keeps_it_reachable_only_until_its_advert_expires() {
    let with_peers = |node: u32, asn: u32, links: Vec<AsLink>, peers: &[u32]| {
        let mut m = member(node, asn, links);
        Arc::make_mut(&mut m.profile).peers = Some(peers.iter().map(|&p| NodeId(p)).collect());
        m
    };
    let mut r = Routing::for_node(NodeId(1), Asn(1), 8);
    r.advertise(with_peers(1, 1, vec![link(2, 1, 1)], &[2]));
    // 2 lies: it still lists 3, which crashed; 3's last advert lists 2.
    r.advertise(with_peers(2, 2, vec![link(3, 1, 1)], &[1, 3]));
    r.advertise(with_peers(3, 3, vec![link(4, 1, 1)], &[2]));
    r.recompute();
    assert!(
        r.route(Asn(4)).is_some(),
        "3 is reachable while the lie holds"
    );
    // 3's advertisement reaches max_advert_age: the lie carries nothing any more.
    r.withdraw(NodeId(3), MemberState::Expired, None);
    r.recompute();
    assert!(r.route(Asn(4)).is_none());
    assert!(r.route(Asn(3)).is_some(), "AS3 is a destination only");
}

#[test]
fn a_key_sharing_the_filed_half_of_another_owns_nothing() {
    let mut r = Routing::new(Asn(1), 8);
    let mut first = member(2, 2, vec![]);
    let mut second = member(3, 3, vec![]);
    let k1 = Fingerprint([7; 32]);
    let mut k2 = k1;
    k2.0[31] = 8;
    Arc::make_mut(&mut first.profile).fingerprint = k1;
    Arc::make_mut(&mut second.profile).fingerprint = k2;
    r.advertise(first);
    r.advertise(second);
    assert_eq!(r.owner_of(&k1), Some(NodeId(2)));
    assert_eq!(r.owner_of(&k2), None, "filed under 2, whose key is another");
    assert_eq!(
        r.bound_key(NodeId(3)),
        Some(k2),
        "3 is still bound to its key"
    );
    r.withdraw(NodeId(2), MemberState::Left, None);
    assert_eq!(r.owner_of(&k1), None);
}

/// Member `node` (AS `node`) listing `peers` as its direct peers.
fn peered(node: u32, peers: &[u32]) -> Member {
    let mut m = member(node, node, Vec::new());
    m.profile = Arc::new(Profile {
        peers: Some(peers.iter().map(|&p| NodeId(p)).collect()),
        ..(*m.profile).clone()
    });
    m
}

#[test]
fn first_hop_changes_tell_a_new_member_from_one_reached_again() {
    let mut r = Routing::for_node(NodeId(1), Asn(1), 16);
    // A line 1 - 2 - 3.
    for m in [peered(1, &[2]), peered(2, &[1, 3]), peered(3, &[2])] {
        r.advertise(m);
    }
    r.recompute();
    let hops: Vec<(u32, Option<u32>, bool)> = r
        .take_hop_changes()
        .iter()
        .map(|c| (c.member.0, c.now.map(|h| h.0), c.first))
        .collect();
    assert_eq!(hops, [(2, Some(2), true), (3, Some(2), true)]);
    // 2 drops 3, which is cut off, then lists it again: 3 is reached again, not new.
    r.advertise(peered(2, &[1]));
    r.recompute();
    let gone = r.take_hop_changes();
    assert_eq!((gone.len(), gone[0].now, gone[0].first), (1, None, false));
    r.advertise(peered(2, &[1, 3]));
    r.recompute();
    let back = r.take_hop_changes();
    assert_eq!(
        (back.len(), back[0].now, back[0].first),
        (1, Some(NodeId(2)), false)
    );
    assert_eq!(
        r.member(NodeId(3)).and_then(|m| m.first_hop),
        Some(NodeId(2))
    );
    // Cut off, then forgotten: when it comes back it is new again.
    r.advertise(peered(2, &[1]));
    r.recompute();
    r.forget(NodeId(3));
    r.take_hop_changes();
    r.advertise(peered(2, &[1, 3]));
    r.advertise(peered(3, &[2]));
    r.recompute();
    let new = r.take_hop_changes();
    assert_eq!(
        (new.len(), new[0].now, new[0].first),
        (1, Some(NodeId(2)), true)
    );
}
