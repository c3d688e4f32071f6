//! Unit tests of broadcast: per-origin trees and pruning, tree optimisation, grafts in
//! turn, pulls from one link at a time, and per-link request limits.

use super::*;
use crate::gossip::{Admission, GossipPolicy, Outcome, sign};
use crate::identity::Identity;
use crate::verify::VerifyCache;
use crate::wire::{Addr, Asn, NodeId, RumorContent, SignedRumor};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn policy(mode: Dissemination) -> BroadcastPolicy {
    BroadcastPolicy {
        mode,
        graft_timeout: Duration::from_millis(200),
        max_frame_bytes: 1 << 20,
        max_missing: 16,
        max_requests_per_round: 64,
        pull_timeout: Duration::from_secs(1),
        optimize_hops: 3,
        // An origin's first rumor floods (Plumtree's own start) unless a test says otherwise.
        eager_fanout: MAX_LINK_SLOTS,
    }
}

/// Node 1's empty store.
fn empty_store() -> Gossip {
    Gossip::new(
        NodeId(1),
        GossipPolicy {
            period: Duration::from_secs(1),
            advert_max_age: Duration::from_secs(4),
            accusation_max_age: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(1),
            rumors_per_period: 8,
            max_members: 16,
        },
        VerifyCache::new(16),
    )
}

/// A store holding one rumor of node 9 that arrived on `via` after `hops` hops.
fn store_with_rumor(via: ConnId, hops: u32) -> (Gossip, SignedRumor) {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let id = Identity::generate(&mut rng, 2048).unwrap();
    let content = RumorContent::Advert {
        asn: Asn(9),
        addr: Addr::from("x"),
        links: std::sync::Arc::from([]),
        cert: None,
        peers: None,
    };
    let mut rumor = sign(NodeId(9), 1, Time::ZERO, &id, &mut rng, content).envelope(0, 0);
    rumor.hops = hops;
    let mut store = empty_store();
    let admission = Admission {
        excluded: &|_| false,
        bound: &|_| None,
        owner: &|_| None,
        sender_key: crate::identity::Fingerprint([0; 32]),
        trust: None,
    };
    let outcome = store.receive(Time::ZERO, via, NodeId(2), rumor.clone(), &admission);
    assert!(matches!(outcome, Outcome::Accepted(_)));
    (store, rumor)
}

fn sent(b: &mut Broadcast) -> Vec<(ConnId, String)> {
    b.take(true)
        .into_iter()
        .map(|(c, m)| (c, String::from_utf8(crate::wire::to_json(&m)).unwrap()))
        .collect()
}

/// Node 1's Plumtree with `links` up (all eager).
fn plumtree_with_links(links: &[ConnId], store: &Gossip) -> Broadcast {
    let mut bc = Broadcast::new(NodeId(1), policy(Dissemination::Plumtree));
    for &conn in links {
        bc.link_up(conn, store);
    }
    bc
}

/// Node 1's Plumtree with links 1, 2 and 3 up, over a store holding node 9's rumor that
/// arrived on link 1 after `hops` hops.
fn three_links(hops: u32) -> ([ConnId; 3], Gossip, SignedRumor, Broadcast) {
    let links = [ConnId(1), ConnId(2), ConnId(3)];
    let (store, rumor) = store_with_rumor(links[0], hops);
    let bc = plumtree_with_links(&links, &store);
    (links, store, rumor, bc)
}

/// What `bc` sends when it spreads `rumor`, which came on `from`, without a parent.
fn spread_from(
    bc: &mut Broadcast,
    store: &Gossip,
    rumor: &SignedRumor,
    from: ConnId,
) -> Vec<(ConnId, String)> {
    bc.spread(
        Time::ZERO,
        store,
        &rumor.key(),
        (Some(from), None),
        &mut rng(),
    );
    sent(bc)
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(1)
}

const PRUNE_9: &str = r#"{"prune":{"origins":[9]}}"#;
const GRAFT_9: &str = r#"{"graft":{"ids":[],"origins":[9]}}"#;

/// Whether `out` holds `message` for `conn`.
fn has(out: &[(ConnId, String)], conn: ConnId, message: &str) -> bool {
    out.iter().any(|(c, m)| *c == conn && m == message)
}

fn no_parent(_: NodeId) -> Option<ConnId> {
    None
}

/// A push on `conn` of rumors of these origins, all already here, without parents.
fn duplicate_push(bc: &mut Broadcast, conn: ConnId, ids: &[u32]) {
    let origins: BTreeMap<NodeId, bool> = ids.iter().map(|&i| (NodeId(i), true)).collect();
    bc.pushed(conn, &origins, &no_parent);
}

#[test]
fn trees_are_per_origin_and_every_duplicate_prunes() {
    let ([a, b, c], store, rumor, mut bc) = three_links(1);
    sent(&mut bc);
    // Node 8's and node 9's first rumors went out on every link.
    for origin in [8, 9] {
        bc.plant(NodeId(origin), &[], None, &mut rng());
    }
    // Duplicates of node 8's rumors came over c, then of node 9's over b.
    duplicate_push(&mut bc, c, &[8]);
    duplicate_push(&mut bc, b, &[9]);
    assert_eq!(
        sent(&mut bc),
        vec![
            (b, r#"{"prune":{"origins":[9]}}"#.to_string()),
            (c, r#"{"prune":{"origins":[8]}}"#.to_string()),
        ]
    );
    assert!(
        bc.is_lazy(c, NodeId(8)) && !bc.is_lazy(b, NodeId(8)),
        "8's own tree"
    );
    assert!(
        bc.is_lazy(b, NodeId(9)) && !bc.is_lazy(c, NodeId(9)),
        "9's own tree"
    );
    assert!(
        !bc.is_lazy(b, NodeId(7)),
        "a new origin's first rumor floods"
    );
    // Already lazy here, but the peer may still push: it is told again.
    duplicate_push(&mut bc, b, &[9]);
    assert_eq!(
        sent(&mut bc),
        vec![(b, r#"{"prune":{"origins":[9]}}"#.to_string())]
    );
    // Duplicates of our own rumors: the peer stops pushing them; a peer's prune of them
    // changes nothing, we keep pushing ours.
    duplicate_push(&mut bc, c, &[1]);
    assert_eq!(
        sent(&mut bc),
        vec![(c, r#"{"prune":{"origins":[1]}}"#.to_string())]
    );
    bc.pruned(c, &[NodeId(1)]);
    assert!(!bc.is_lazy(c, NodeId(1)));
    let out = spread_from(&mut bc, &store, &rumor, a);
    assert!(
        out.contains(&(b, r#"{"ihave":{"ids":[[9,null,1,2]]}}"#.to_string())),
        "{out:?}"
    );
    assert!(
        out.iter()
            .any(|(conn, m)| *conn == c && m.starts_with(r#"{"rumors""#)),
        "{out:?}"
    );
    // The links are gone: so is their place in every tree.
    bc.link_down(b);
    bc.link_down(c);
    assert_eq!(bc.links(), (1, 0));
}

#[test]
fn a_much_shorter_lazy_path_swaps_with_the_eager_one() {
    let ([a, b, c], store, rumor, mut bc) = three_links(6);
    sent(&mut bc);
    let ann = |hops| Announcement(rumor.origin, None, rumor.seq, hops);
    // Two hops shorter: below the threshold of three.
    bc.announced(Time::ZERO, c, &[ann(4)], &store, &no_parent)
        .unwrap();
    assert!(sent(&mut bc).is_empty());
    bc.announced(Time::ZERO, b, &[ann(2)], &store, &no_parent)
        .unwrap();
    let out = sent(&mut bc);
    assert!(has(&out, a, PRUNE_9), "{out:?}");
    assert!(has(&out, b, GRAFT_9), "{out:?}");
    // One promotion at a time: an even shorter claim waits for b to deliver.
    bc.announced(Time::ZERO, c, &[ann(0)], &store, &no_parent)
        .unwrap();
    assert!(sent(&mut bc).is_empty());
}

#[test]
fn a_promoted_link_that_then_fails_to_deliver_is_never_promoted_again() {
    let ([_, b, c], store, rumor, mut bc) = three_links(6);
    let ann = |seq, hops| Announcement(rumor.origin, None, seq, hops);
    // b claims hop 0: promoted.
    bc.announced(Time::ZERO, b, &[ann(rumor.seq, 0)], &store, &no_parent)
        .unwrap();
    let out = sent(&mut bc);
    assert!(has(&out, b, GRAFT_9), "{out:?}");
    // The next rumor only c announces; it is grafted from c: b broke its promise.
    bc.announced(Time::ZERO, c, &[ann(rumor.seq + 1, 1)], &store, &no_parent)
        .unwrap();
    bc.graft_due(Time::from_millis(200), &store, &no_parent);
    let out = sent(&mut bc);
    assert!(has(&out, b, PRUNE_9), "{out:?}");
    // The same claim again is not believed.
    bc.announced(Time::ZERO, b, &[ann(rumor.seq, 0)], &store, &no_parent)
        .unwrap();
    assert!(sent(&mut bc).is_empty());
}

#[test]
fn where_link_state_names_a_parent_other_pushers_are_pruned_and_the_parent_grafted() {
    let ([a, b, c], store, rumor, mut bc) = three_links(6);
    let parent = |origin: NodeId| (origin == NodeId(9)).then_some(c);
    // A first arrival from a, which is not the parent: a is pruned, c grafted.
    let first: BTreeMap<NodeId, bool> = [(NodeId(9), false)].into();
    bc.pushed(a, &first, &parent);
    let out = sent(&mut bc);
    assert!(has(&out, a, PRUNE_9), "{out:?}");
    assert!(has(&out, c, GRAFT_9), "{out:?}");
    // A duplicate from the parent prunes nothing, and no hop count moves the tree.
    let duplicate: BTreeMap<NodeId, bool> = [(NodeId(9), true)].into();
    bc.pushed(c, &duplicate, &parent);
    let ann = Announcement(rumor.origin, None, rumor.seq, 0);
    bc.announced(Time::ZERO, b, &[ann], &store, &parent)
        .unwrap();
    assert!(sent(&mut bc).is_empty());
    // The member's first parent: grafted, every other link pruned.
    bc.reparent(NodeId(9), b, Previous::First);
    let mut out = sent(&mut bc);
    out.sort();
    assert_eq!(
        out,
        vec![
            (a, r#"{"prune":{"origins":[9]}}"#.to_string()),
            (b, r#"{"graft":{"ids":[],"origins":[9]}}"#.to_string()),
            (c, r#"{"prune":{"origins":[9]}}"#.to_string()),
        ]
    );
    // A later parent: grafted, and only the previous one pruned.
    bc.reparent(NodeId(9), a, Previous::Was(Some(b)));
    let mut out = sent(&mut bc);
    out.sort();
    assert_eq!(
        out,
        vec![
            (a, r#"{"graft":{"ids":[],"origins":[9]}}"#.to_string()),
            (b, r#"{"prune":{"origins":[9]}}"#.to_string()),
        ]
    );
}

#[test]
fn missing_rumors_are_grafted_from_announcers_in_turn_and_flooding_never_prunes() {
    let ([a, b, c], store, _, mut bc) = three_links(1);
    duplicate_push(&mut bc, b, &[9]);
    duplicate_push(&mut bc, c, &[9]);
    sent(&mut bc);
    // Newer than the rumor of node 9 stored here: waited for, then grafted.
    let unknown = Announcement(NodeId(9), None, 3, 1);
    bc.announced(Time::ZERO, b, &[unknown], &store, &no_parent)
        .unwrap();
    bc.announced(Time::ZERO, c, &[unknown], &store, &no_parent)
        .unwrap();
    assert_eq!(bc.next_graft(), Some(Time::from_millis(200)));
    bc.graft_due(Time::from_millis(200), &store, &no_parent);
    assert_eq!(
        sent(&mut bc),
        vec![(
            b,
            r#"{"graft":{"ids":[[9,null,3]],"origins":[]}}"#.to_string()
        )]
    );
    bc.graft_due(Time::from_millis(400), &store, &no_parent);
    assert_eq!(
        sent(&mut bc),
        vec![(
            c,
            r#"{"graft":{"ids":[[9,null,3]],"origins":[]}}"#.to_string()
        )]
    );
    bc.graft_due(Time::from_millis(600), &store, &no_parent);
    assert_eq!(bc.missing(), 0, "no announcer left: give up");

    let mut flood = Broadcast::new(NodeId(1), policy(Dissemination::Flood));
    flood.link_up(a, &store);
    duplicate_push(&mut flood, a, &[7]);
    assert_eq!(flood.links(), (1, 0));
}

#[test]
fn a_graft_or_prune_before_the_first_rumor_plants_the_tree_and_unheard_origins_are_grafted_at_once()
{
    // A child grafted node 9 from us before its first rumor came: only it gets the push.
    let ([a, b, c], store, rumor, mut bc) = three_links(1);
    bc.grafted(Time::ZERO, b, &[], &[NodeId(9)], &store)
        .expect("within the budget");
    assert!(bc.is_lazy(c, NodeId(9)) && !bc.is_lazy(b, NodeId(9)));
    let out = spread_from(&mut bc, &store, &rumor, a);
    assert_eq!(pushed_and_announced(&out), (1, 1), "{out:?}");
    assert!(has_push(&out, b));
    // A prune first: every link lazy, the rumor announced on both.
    let ([a, b, _], store, rumor, mut bc) = three_links(1);
    bc.pruned(b, &[NodeId(9)]);
    let out = spread_from(&mut bc, &store, &rumor, a);
    assert_eq!(pushed_and_announced(&out), (0, 2));
    // A rumor of an origin never heard of, without a parent here: grafted at once; with a
    // parent, waited for from it first.
    let ([a, b, _], store, _, mut bc) = three_links(1);
    let unheard = Announcement(NodeId(7), None, 1, 1);
    bc.announced(Time::ZERO, b, &[unheard], &store, &no_parent)
        .unwrap();
    assert_eq!(bc.next_graft(), Some(Time::ZERO));
    let mut bc = plumtree_with_links(&[a, b], &store);
    let parent = |_: NodeId| Some(a);
    bc.announced(Time::ZERO, b, &[unheard], &store, &parent)
        .unwrap();
    assert_eq!(bc.next_graft(), Some(Time::from_millis(200)));
}

/// Whether `out` pushes rumors on `conn`.
fn has_push(out: &[(ConnId, String)], conn: ConnId) -> bool {
    out.iter()
        .any(|(c, m)| *c == conn && m.starts_with(r#"{"rumors""#))
}

#[test]
fn what_digests_list_is_pulled_from_one_link_at_a_time() {
    let (a, b) = (ConnId(1), ConnId(2));
    let (full, rumor) = store_with_rumor(a, 1);
    let digest = full.digests(false).remove(0);
    let empty = empty_store();
    let mut bc = plumtree_with_links(&[a, b], &empty);
    sent(&mut bc);
    let pull = |conn| (conn, r#"{"pull":{"ids":[[9,null,1]]}}"#.to_string());
    let at = Time::from_millis;
    let digest_from = |bc: &mut Broadcast, conn, t| {
        bc.digest(at(t), conn, &digest, &empty).unwrap();
        sent(bc)
    };
    assert_eq!(digest_from(&mut bc, a, 0), vec![pull(a)]);
    assert_eq!(digest_from(&mut bc, b, 10), vec![], "already pulled from a");
    assert_eq!(digest_from(&mut bc, b, 999), vec![], "a still has time");
    assert_eq!(
        digest_from(&mut bc, b, 1000),
        vec![pull(b)],
        "a's pull is due"
    );
    assert_eq!(digest_from(&mut bc, a, 1500), vec![], "now pulled from b");
    bc.link_down(b);
    assert_eq!(digest_from(&mut bc, a, 1600), vec![pull(a)], "b closed");

    // The side that has it answers a pull, trees unchanged; a node that has the rumor
    // pulls nothing.
    let mut holder = plumtree_with_links(&[a], &full);
    sent(&mut holder);
    holder.pulled(at(0), a, &[rumor.id()], &full).unwrap();
    let answered = sent(&mut holder);
    assert_eq!(answered.len(), 1);
    assert!(answered[0].1.starts_with(r#"{"answer":{"rumors":["#));
    assert_eq!(holder.links(), (1, 0));
    holder.digest(at(0), a, &digest, &full).unwrap();
    assert_eq!(sent(&mut holder), vec![]);
}

#[test]
fn peers_asking_for_too_much_are_refused() {
    let (a, _) = (ConnId(1), ());
    let (store, rumor) = store_with_rumor(a, 1);
    let mut bc = plumtree_with_links(&[a], &store);
    let ids = vec![rumor.id(); 64];
    assert!(bc.grafted(Time::ZERO, a, &ids, &[], &store).is_ok());
    assert_eq!(
        bc.grafted(Time::ZERO, a, &ids[..1], &[], &store),
        Err(RejectReason::Busy)
    );
    bc.new_round(Time::ZERO);
    assert!(bc.grafted(Time::ZERO, a, &ids[..1], &[], &store).is_ok());
}

/// Pushes and announcements among what `spread` sent.
fn pushed_and_announced(out: &[(ConnId, String)]) -> (usize, usize) {
    let count = |kind: &str| out.iter().filter(|(_, m)| m.starts_with(kind)).count();
    (count(r#"{"rumors""#), count(r#"{"ihave""#))
}

#[test]
fn a_new_origin_is_pushed_on_the_eager_fanout_and_announced_on_the_other_links() {
    let links: Vec<ConnId> = (1..=6).map(ConnId).collect();
    let (store, rumor) = store_with_rumor(links[0], 1);
    // What `bc` sends when it spreads node 9's rumor, which came on the first link.
    let spread = |bc: &mut Broadcast, parent: Option<ConnId>| {
        let from = (Some(links[0]), parent);
        bc.spread(Time::ZERO, &store, &rumor.key(), from, &mut rng());
        sent(bc)
    };
    let mut bc = plumtree_with_links(&links, &store);
    bc.policy.eager_fanout = 2;
    sent(&mut bc);
    let out = spread(&mut bc, None);
    assert_eq!(pushed_and_announced(&out), (2, 3), "{out:?}");
    // A graft makes a lazy link eager, and the tree is not planted again.
    let lazy = links[1..]
        .iter()
        .copied()
        .find(|&c| bc.is_lazy(c, NodeId(9)))
        .expect("a lazy link");
    bc.grafted(Time::ZERO, lazy, &[], &[NodeId(9)], &store)
        .expect("within the budget");
    sent(&mut bc);
    assert_eq!(pushed_and_announced(&spread(&mut bc, None)), (3, 2));
    // A fanout of every link: the first rumor of an origin floods.
    let mut flood = plumtree_with_links(&links, &store);
    sent(&mut flood);
    assert_eq!(pushed_and_announced(&spread(&mut flood, None)), (5, 0));
    // Fanout 0 (the default): announced on every link.
    let mut lazy = plumtree_with_links(&links, &store);
    lazy.policy.eager_fanout = 0;
    sent(&mut lazy);
    assert_eq!(pushed_and_announced(&spread(&mut lazy, None)), (0, 5));
    // The origin's parent here is upstream: announced to, never pushed to, even when
    // the rumor came from elsewhere and the link is eager.
    let mut flood = plumtree_with_links(&links, &store);
    sent(&mut flood);
    let out = spread(&mut flood, Some(links[1]));
    assert_eq!(pushed_and_announced(&out), (4, 1), "{out:?}");
    assert!(
        out.iter()
            .any(|(c, m)| *c == links[1] && m.starts_with(r#"{"ihave""#))
    );
}
