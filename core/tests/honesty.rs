//! Honest nodes are never blamed: each test here drives a path on which an honest peer
//! used to collect offenses (a restarted origin's lower sequence numbers relayed on a link
//! that delivered higher ones, a starved receiver reading a backlog, an operator changing
//! links in quick succession, a newer version's messages, requests read late) and checks
//! that nothing is blamed, while the dishonest twin of the same path still is; and that one
//! dishonest member cannot evict anyone (accusations under unbound ids, or naming a key the
//! accused id is not bound to).

use std::sync::Arc;

use overlay_core::testing::*;
use overlay_core::wire::{LinkMessage, RumorContent, RumorId, SignedRumor};
use overlay_core::{Command, Config, Event, Node, NodeId, Notification, RejectReason, Time};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::value::RawValue;

fn banned(c: &Cluster) -> bool {
    c.notifications
        .iter()
        .any(|(_, n)| matches!(n, Notification::PeerBanned { .. }))
}

fn accepted(c: &Cluster, i: usize, origin: u32, seq: u64) -> bool {
    c.notes(i).any(|n| {
        matches!(n, Notification::RumorAccepted { origin: o, seq: s, .. }
            if o.0 == origin && *s == seq)
    })
}

/// A config that advertises every round, so that adverts live 4 periods (4 s).
fn every_round(mut c: Config) -> Config {
    c.advert_refresh = 1;
    c
}

/// Two linked controllers, 0 and 1, advertising every round, and a third (slot 2, not in
/// the cluster) whose rumors node 1 relays to node 0.
fn relay_setup() -> (Cluster, Node) {
    let mut c = Cluster::new(vec![
        every_round(config(0, 100, vec![], &[])),
        every_round(config(1, 200, vec![], &[0])),
    ]);
    c.drive_for(100);
    let origin = Node::new(config(2, 300, vec![], &[]), identity(2), [2; 32], c.now).unwrap();
    (c, origin)
}

fn advert(node: &mut Node, now: Time, seq: u64) -> SignedRumor {
    node.handle(now, Event::Tick);
    let asn = node.config().asn;
    let addr = node.config().listen_addr.clone();
    node.sign_rumor(
        seq,
        RumorContent::Advert {
            asn,
            addr,
            links: Vec::new().into(),
            cert: None,
            peers: None,
        },
    )
}

/// An advertisement of cluster node `i` with sequence number `seq`, signed now (the node
/// is woken first, so that its clock reads now).
fn own_advert(c: &mut Cluster, i: usize, seq: u64) -> SignedRumor {
    c.deliver(i, Event::Tick);
    c.drive();
    let node = c.node_mut(i);
    let content = RumorContent::Advert {
        asn: node.config().asn,
        addr: node.config().listen_addr.clone(),
        links: Vec::new().into(),
        cert: None,
        peers: None,
    };
    node.sign_rumor(seq, content)
}

/// Node `i` is told its links are now `to` alone; returns its sequence number after.
fn set_links(c: &mut Cluster, i: usize, to: overlay_core::AsLink) -> u64 {
    let now = c.now;
    let actions = c
        .node_mut(i)
        .handle(now, Event::Command(Command::SetLinks(vec![to])));
    c.execute(i, actions);
    c.drive();
    c.node(i).status().seq
}

fn push(rumors: Vec<SignedRumor>) -> LinkMessage {
    LinkMessage::Rumors { rumors }
}

#[test]
fn a_relay_forwarding_a_restarted_origins_lower_sequence_is_not_blamed() {
    let (mut c, mut origin) = relay_setup();
    let old = advert(&mut origin, c.now, 500);
    c.inject(1, 0, &push(vec![old]));
    assert!(accepted(&c, 0, 3, 500));
    // The origin restarts and counts from 1 again; its old advertisement expires at node
    // 1 first, which then relays the new incarnation on the link that delivered 500.
    c.drive_for(1_000);
    let new = advert(&mut origin, c.now, 3);
    c.inject(1, 0, &push(vec![new.clone()]));
    assert_eq!(
        c.blamed(0),
        vec![],
        "a lower relayed sequence number blames nobody"
    );
    // Once node 0's own copy and tombstone have lapsed, the new incarnation is accepted
    // from that same link.
    c.drive_for(9_000);
    let newer = advert(&mut origin, c.now, 4);
    c.inject(1, 0, &push(vec![newer]));
    assert!(accepted(&c, 0, 3, 4), "the new incarnation is learned");
    assert_eq!(c.blamed(0), vec![]);
    assert!(!banned(&c));
}

#[test]
fn a_peer_replaying_its_own_older_rumor_is_still_blamed() {
    let (mut c, _) = relay_setup();
    let seq = c.node(1).status().seq;
    let newer = own_advert(&mut c, 1, seq + 10);
    let older = own_advert(&mut c, 1, seq + 5);
    c.inject(1, 0, &push(vec![newer]));
    c.inject(1, 0, &push(vec![older]));
    assert_eq!(c.blamed(0), vec![RejectReason::Replay]);
}

#[test]
fn a_starved_receiver_reading_a_backlog_blames_nobody_but_a_flood_is_blamed() {
    let (mut c, _) = relay_setup();
    let base = c.node(1).status().seq + 100;
    // Fifteen of node 1's own adverts signed 200 ms apart (5 per period besides its own
    // advertisement, under the limit of 8), read by node 0 all at once: twice the burst
    // an arrival-time bucket allows.
    let mut backlog = Vec::new();
    for k in 0..15 {
        backlog.push(own_advert(&mut c, 1, base + k));
        c.drive_for(200);
    }
    c.inject(1, 0, &push(backlog));
    assert_eq!(c.blamed(0), vec![], "a backlog signed at the allowed rate");
    assert!(accepted(&c, 0, 2, base + 14), "and the newest is stored");
    // The same number signed at one instant is signed evidence of a flood.
    let flood: Vec<SignedRumor> = (0..15)
        .map(|k| own_advert(&mut c, 1, base + 100 + k))
        .collect();
    c.inject(1, 0, &push(flood));
    assert!(c.blamed(0).contains(&RejectReason::RateLimited));
    assert!(banned(&c), "the flooder is banned");
}

#[test]
fn links_changed_many_times_within_a_period_are_paced_and_blame_nobody() {
    let (mut c, _) = relay_setup();
    let before = c.node(1).status().seq;
    for cost in 1..=20 {
        set_links(&mut c, 1, link(100, 10, cost));
    }
    let signed = c.node(1).status().seq - before;
    assert!(
        signed <= 7,
        "{signed} rumors signed within one period (limit 8)"
    );
    c.drive_for(3_000);
    assert_eq!(c.blamed(0), vec![]);
    let member = c
        .node(0)
        .members()
        .into_iter()
        .find(|m| m.node == NodeId(2))
        .unwrap();
    assert_eq!(
        member.profile.links[0].cost, 20,
        "the last change is advertised"
    );
}

#[test]
fn a_newer_versions_messages_are_ignored_but_malformed_known_ones_are_blamed() {
    let (mut c, _) = relay_setup();
    let conn = c.conn_between(1, 0).unwrap();
    let seal = |c: &mut Cluster, text: &str| {
        let now = c.now;
        let actions = c.node_mut(1).inject_sealed(now, conn, text.as_bytes());
        c.execute(1, actions);
        c.drive();
    };
    for _ in 0..10 {
        seal(&mut c, r#"{"shiny_new":{"x":[1,2,3]}}"#);
        seal(&mut c, r#""shiny_flag""#);
        seal(&mut c, r#"{"prune":{"origins":[],"added_later":true}}"#);
    }
    // A rumor of a kind this version does not know, validly signed by its origin.
    let body = r#"{"origin":2,"seq":900,"issued_at":1000,"pubkey":"","content":{"shiny_kind":{}}}"#;
    let sig = identity(1).sign(&mut ChaCha20Rng::seed_from_u64(1), body.as_bytes());
    let rumor = SignedRumor {
        origin: NodeId(2),
        seq: 900,
        subject: None,
        body: Arc::from(RawValue::from_string(body.into()).unwrap()),
        sig: sig.into(),
        age_ms: 0,
        hops: 0,
    };
    for _ in 0..10 {
        c.inject(1, 0, &push(vec![rumor.clone()]));
    }
    assert_eq!(c.blamed(0), vec![], "nothing of a newer version is blamed");
    assert!(c.linked(0, 1));
    assert_eq!(
        c.node(0).metrics().rejects.get("unknown"),
        Some(&21),
        "20 link messages and one rumor (the rest are duplicates)"
    );
    seal(&mut c, r#"{"prune":{"origins":"not a list"}}"#);
    assert_eq!(
        c.blamed(0).len(),
        1,
        "a known kind that does not parse is blamed"
    );
}

#[test]
fn requests_past_the_round_budget_are_refused_without_blame() {
    let mut configs = vec![config(0, 100, vec![], &[]), config(1, 200, vec![], &[0])];
    configs[0].max_members = 4; // 16 requested ids per round
    let mut c = Cluster::new(configs);
    c.drive_for(100);
    let ids = vec![RumorId(NodeId(1), None, 1); 16];
    for _ in 0..5 {
        c.inject(1, 0, &LinkMessage::Pull { ids: ids.clone() });
    }
    assert_eq!(c.blamed(0), vec![]);
    assert!(c.notes(0).any(|n| matches!(
        n,
        Notification::Rejected {
            reason: RejectReason::Busy,
            ..
        }
    )));
    assert!(c.linked(0, 1));
}

#[test]
fn lifetimes_run_from_the_signed_issue_time_not_the_unsigned_age() {
    let (mut c, mut origin) = relay_setup();
    let mut aged = advert(&mut origin, c.now, 10);
    let mut stale = advert(&mut origin, c.now, 11);
    // A relay claims the advertisement is ancient: it still lives its full signed life.
    aged.age_ms = u64::MAX;
    c.inject(1, 0, &push(vec![aged]));
    assert!(accepted(&c, 0, 3, 10));
    c.drive_for(2_500);
    assert!(
        c.node(0).advert_of(NodeId(3)).is_some(),
        "not expired by a claimed age"
    );
    // An advertisement signed 5.5 s ago, relayed as brand new, is not brought back.
    c.drive_for(3_000);
    assert!(
        c.node(0).advert_of(NodeId(3)).is_none(),
        "expired at issue + 4 s"
    );
    stale.age_ms = 0;
    c.inject(1, 0, &push(vec![stale]));
    assert!(!accepted(&c, 0, 3, 11));
    assert_eq!(c.node(0).metrics().rejects.get("untimely"), Some(&1));
    assert_eq!(c.blamed(0), vec![]);
}

/// An accusation of `accused` (naming key `fingerprint`) signed by `signer`'s key under the
/// id `as_id`.
fn accusation(
    c: &Cluster,
    signer: usize,
    as_id: u32,
    accused: u32,
    fingerprint: &str,
) -> SignedRumor {
    overlay_core::testing::sign_rumor(
        NodeId(as_id),
        1_000 + u64::from(as_id),
        c.now,
        &identity(signer),
        &mut ChaCha20Rng::seed_from_u64(u64::from(as_id)),
        RumorContent::Accuse {
            accused: NodeId(accused),
            fingerprint: fingerprint.into(),
            reason: "made up".into(),
        },
    )
    .envelope(0, 0)
}

fn star(n: usize) -> Cluster {
    let mut configs = vec![config(0, 100, vec![], &[])];
    configs.extend((1..n).map(|i| config(i, 100 + 100 * i as u32, vec![], &[0])));
    let mut c = Cluster::new(configs);
    c.drive_for(500);
    c
}

fn evicted(c: &Cluster, i: usize) -> bool {
    c.notes(i)
        .any(|n| matches!(n, Notification::MemberEvicted { .. }))
}

#[test]
fn one_member_signing_accusations_under_unbound_ids_evicts_nobody() {
    let mut c = star(3);
    let victim = c.node(2).fingerprint().to_hex();
    // A quorum of 2 accusations of node 2 (id 3) as ids 50 and 51, signed with a key no
    // live member speaks for, relayed by node 1.
    let sybils = vec![
        accusation(&c, 6, 50, 3, &victim),
        accusation(&c, 6, 51, 3, &victim),
    ];
    c.inject(1, 0, &push(sybils));
    assert!(!evicted(&c, 0), "unbound accusers are no quorum");
    assert_eq!(c.node(0).metrics().rejects.get("not_member"), Some(&2));
    let key = overlay_core::wire::RumorKey {
        origin: NodeId(50),
        subject: Some(NodeId(3)),
    };
    assert!(
        c.node(0).stored_rumor(&key).is_none(),
        "nor do they fill the store"
    );
    // Node 1 signing them with its own key is impersonation: it is banned.
    c.inject(1, 0, &push(vec![accusation(&c, 1, 52, 3, &victim)]));
    assert_eq!(c.node(0).metrics().rejects.get("impersonation"), Some(&1));
    assert!(banned_node(&c, 0, 2));
    assert!(!evicted(&c, 0));
    assert!(c.linked(0, 2));
}

#[test]
fn an_accusation_naming_another_key_does_not_withdraw_the_id() {
    let mut c = star(4);
    // Two live members accuse id 4 (node 3), but name a key that is not bound to it.
    let other = identity(7).fingerprint().to_hex();
    let a = accusation(&c, 1, 2, 4, &other);
    let b = accusation(&c, 2, 3, 4, &other);
    c.inject(1, 0, &push(vec![a]));
    c.inject(2, 0, &push(vec![b]));
    assert!(evicted(&c, 0), "the named key is evicted");
    let member = c
        .node(0)
        .members()
        .into_iter()
        .find(|m| m.node == NodeId(4))
        .unwrap();
    assert_eq!(
        member.state,
        overlay_core::MemberState::Alive,
        "the id is not"
    );
    assert!(c.linked(0, 3));
}

/// An advertisement of AS300 with a link to AS 999, signed by key `signer` as `as_id`.
fn claim_of_as(c: &Cluster, signer: usize, as_id: u32, seq: u64) -> SignedRumor {
    overlay_core::testing::sign_rumor(
        NodeId(as_id),
        seq,
        c.now,
        &identity(signer),
        &mut ChaCha20Rng::seed_from_u64(9),
        RumorContent::Advert {
            asn: overlay_core::Asn(300),
            addr: addr(7),
            links: vec![link(999, 1000, 1), link(100, 1000, 1)].into(),
            cert: None,
            peers: None,
        },
    )
    .envelope(0, 0)
}

/// Node 0 (AS100) linked to AS200 and AS300, whose controllers are nodes 1 and 2.
fn routed_star() -> Cluster {
    let mut c = Cluster::new(vec![
        config(0, 100, vec![link(200, 10, 1), link(300, 10, 1)], &[]),
        config(1, 200, vec![link(100, 10, 1)], &[0]),
        config(2, 300, vec![link(100, 10, 1)], &[0]),
    ]);
    c.drive_for(1_000);
    c
}

fn routes_to(c: &Cluster, i: usize, asn: u32) -> bool {
    c.route_table(i).iter().any(|(d, _, _)| *d == asn)
}

#[test]
fn a_member_with_a_fresh_key_cannot_hijack_an_as_by_signing_as_a_lower_id() {
    let mut c = routed_star();
    assert!(!routes_to(&c, 0, 999));
    // Node 1 makes itself a second identity (a key no member speaks for) and claims AS300,
    // spoken for by node 2 (id 3), as the unbound lower id 0.
    c.inject(1, 0, &push(vec![claim_of_as(&c, 6, 0, 5_000)]));
    assert!(
        accepted(&c, 0, 0, 5_000),
        "a valid advertisement of a new member"
    );
    c.drive_for(100);
    assert!(
        !routes_to(&c, 0, 999),
        "but AS300 stays node 2's: {:?}",
        c.route_table(0)
    );
    // A live member's key signing as another id, relayed: not believed, nobody blamed.
    c.inject(2, 0, &push(vec![claim_of_as(&c, 1, 0, 7_000)]));
    assert!(!accepted(&c, 0, 0, 7_000));
    assert_eq!(c.blamed(0), vec![]);
    // Once node 2 is gone, the claimant speaks for AS300.
    c.crash(2);
    c.drive_for(6_000);
    c.inject(1, 0, &push(vec![claim_of_as(&c, 6, 0, 6_000)]));
    assert!(routes_to(&c, 0, 999), "{:?}", c.route_table(0));
}

fn banned_node(c: &Cluster, i: usize, node: u32) -> bool {
    c.notes(i)
        .any(|n| matches!(n, Notification::PeerBanned { node: b, .. } if b.0 == node))
}

#[test]
fn a_member_signing_for_another_id_with_its_own_key_is_banned_at_once() {
    let mut c = routed_star();
    c.inject(1, 0, &push(vec![claim_of_as(&c, 1, 0, 5_000)]));
    assert!(banned_node(&c, 0, 2), "one signed proof is enough");
    assert!(c.conn_between(0, 1).is_none(), "its link is closed");
    assert!(!routes_to(&c, 0, 999));
}

#[test]
fn a_relayed_rumor_signed_for_another_id_convicts_its_signer_not_the_relay() {
    let mut c = routed_star();
    // Node 1's key, which speaks for the live member id 2, signs as id 7; node 2 relays it.
    c.inject(2, 0, &push(vec![claim_of_as(&c, 1, 7, 5_000)]));
    assert!(!accepted(&c, 0, 7, 5_000));
    assert!(banned_node(&c, 0, 2), "the signer is banned");
    assert!(!banned_node(&c, 0, 3));
    assert_eq!(c.blamed(0), vec![], "the relay is not blamed");
    assert!(c.conn_between(0, 2).is_some());
    assert!(
        c.conn_between(0, 1).is_none(),
        "the signer's own link is closed"
    );
    assert_eq!(c.node(0).metrics().rejects.get("impersonation"), Some(&1));
}

#[test]
fn a_member_signing_as_a_live_member_with_its_own_key_is_blamed() {
    let mut c = routed_star();
    let victim = c
        .node(0)
        .members()
        .into_iter()
        .find(|m| m.node == NodeId(3))
        .unwrap();
    c.inject(1, 0, &push(vec![claim_of_as(&c, 1, 3, victim.seq + 1)]));
    assert!(
        banned_node(&c, 0, 2),
        "the signer is banned, not its victim"
    );
    assert!(!banned_node(&c, 0, 3));
}

/// Two linked nodes; node 0 answers at most 16 requested ids per round.
fn small_budget() -> Cluster {
    let mut configs = vec![config(0, 100, vec![], &[]), config(1, 200, vec![], &[0])];
    configs[0].max_members = 4;
    let mut c = Cluster::new(configs);
    // Past both nodes' first advertisements (a quarter period after start), before the
    // first gossip round renews the budgets.
    c.drive_for(400);
    c
}

fn busy(c: &Cluster, i: usize) -> usize {
    c.notes(i)
        .filter(|n| {
            matches!(
                n,
                Notification::Rejected {
                    reason: RejectReason::Busy,
                    ..
                }
            )
        })
        .count()
}

#[test]
fn an_empty_digest_asking_for_a_reply_costs_what_the_reply_lists() {
    let mut c = small_budget();
    let stored = 2; // both nodes' advertisements
    let empty = overlay_core::wire::Digest {
        after: None,
        upto: None,
        ids: Vec::new(),
        reply: true,
    };
    for _ in 0..10 {
        c.inject(1, 0, &LinkMessage::Digest(empty.clone()));
    }
    // Each costs 1 + 2: at most five fit in the budget of 16 (the link's first digest
    // exchange used some of it), the others are refused.
    assert!(
        busy(&c, 0) >= 10 - 16 / (1 + stored),
        "{} refused",
        busy(&c, 0)
    );
    assert_eq!(c.blamed(0), vec![]);
}

#[test]
fn announcements_count_against_the_request_budget() {
    let mut c = small_budget();
    let ids: Vec<overlay_core::wire::Announcement> = (0..8)
        .map(|k| overlay_core::wire::Announcement(NodeId(40 + k), None, 1, 1))
        .collect();
    for _ in 0..3 {
        c.inject(1, 0, &LinkMessage::IHave { ids: ids.clone() });
    }
    assert!(
        busy(&c, 0) >= 1,
        "24 announced ids are past the budget of 16"
    );
    assert_eq!(c.blamed(0), vec![]);
}

/// An advertisement of `as_id` (AS 700 + id) with `links` links, signed by key `signer`.
fn big_advert(c: &Cluster, signer: usize, as_id: u32, links: u32) -> SignedRumor {
    overlay_core::testing::sign_rumor(
        NodeId(as_id),
        1,
        c.now,
        &identity(signer),
        &mut ChaCha20Rng::seed_from_u64(3),
        RumorContent::Advert {
            asn: overlay_core::Asn(700 + as_id),
            addr: addr(6),
            links: (0..links).map(|k| link(10_000 + k, 1, 1)).collect(),
            cert: None,
            peers: None,
        },
    )
    .envelope(0, 0)
}

#[test]
fn a_padded_body_is_refused_and_blamed_on_its_signer() {
    let mut c = relay_setup().0;
    let seq = c.node(1).status().seq + 10;
    let compact = own_advert(&mut c, 1, seq);
    // The same body with 10 KiB of blanks before its closing brace, signed by node 1.
    let text = compact.body.get();
    let padded = format!("{}{}}}", &text[..text.len() - 1], " ".repeat(10 * 1024));
    let sig = identity(1).sign(&mut ChaCha20Rng::seed_from_u64(4), padded.as_bytes());
    let rumor = SignedRumor {
        body: Arc::from(RawValue::from_string(padded).unwrap()),
        sig: sig.into(),
        ..compact
    };
    c.inject(1, 0, &push(vec![rumor]));
    assert!(!accepted(&c, 0, 2, seq), "not stored");
    assert!(matches!(c.blamed(0)[..], [RejectReason::Violation(_)]));
}

#[test]
fn the_store_keeps_a_byte_budget() {
    let mut configs = vec![config(0, 100, vec![], &[]), config(1, 200, vec![], &[0])];
    configs[0].max_members = 4; // 64 KiB of bodies
    let mut c = Cluster::new(configs);
    c.drive_for(100);
    // Two new members (keys no member speaks for) with 1000 links each: about 40 KiB each.
    c.inject(1, 0, &push(vec![big_advert(&c, 5, 60, 1000)]));
    c.inject(1, 0, &push(vec![big_advert(&c, 6, 61, 1000)]));
    assert!(accepted(&c, 0, 60, 1));
    assert!(!accepted(&c, 0, 61, 1), "past the byte budget");
    assert_eq!(c.blamed(0), vec![]);
}

/// Node 3 announces `origin`'s rumor `seq` to node 2 as if it were next to the origin.
fn announce_hops_zero(c: &mut Cluster, origin: u32, seq: u64) {
    let ann = overlay_core::wire::Announcement(NodeId(origin), None, seq, 0);
    c.inject(3, 2, &LinkMessage::IHave { ids: vec![ann] });
}

/// The origin (node 0) changes its links; returns the new advertisement's seq.
fn change_links(c: &mut Cluster, cost: u64) -> u64 {
    set_links(c, 0, link(200, 10, cost))
}

#[test]
fn a_peer_lying_about_its_hop_count_is_not_believed_where_link_state_names_a_parent() {
    // A line 0 - 1 - 2, and node 3 linked to node 2 only: it never has node 1's rumors
    // before node 2 does, but claims to be next to node 1.
    let configs = vec![
        config(0, 100, vec![], &[]),
        config(1, 200, vec![], &[0]),
        config(2, 300, vec![], &[1]),
        config(3, 400, vec![], &[2]),
    ];
    // Blocked from the start: handshakes pass on other addresses than direct peers'.
    let mut c = Cluster::with_blocked(configs, vec![(0, 2), (0, 3), (1, 3)]);
    c.drive_for(3_000);
    let seq = change_links(&mut c, 1);
    assert!(
        accepted(&c, 2, 1, seq),
        "node 2 has it at once, through node 1"
    );
    // The lie (node 3 first gets itself made lazy, then announces hop count 0). Node 2's
    // link state names node 1 as its first hop toward node 1: the hop count is ignored
    // (without a parent it is believed once at most; see the broadcast unit tests).
    let prune = LinkMessage::Prune {
        origins: vec![NodeId(1)],
    };
    c.inject(3, 2, &prune);
    announce_hops_zero(&mut c, 1, seq);
    let seq = change_links(&mut c, 2);
    assert!(
        accepted(&c, 2, 1, seq),
        "node 1 still pushes node 1's rumors to node 2"
    );
    assert_eq!(c.blamed(2), vec![]);
}

/// Opens an inbound connection to node `i` from `remote` that never says a word.
fn idle_inbound(c: &mut Cluster, i: usize, conn: u64, remote: &str) {
    c.deliver(
        i,
        Event::Connected {
            conn: overlay_core::ConnId(conn),
            direction: overlay_core::Direction::Inbound,
            remote: overlay_core::Addr::from(remote),
        },
    );
    c.drive();
}

#[test]
fn idle_strangers_neither_stop_dialing_nor_crowd_in_from_one_host() {
    // Node 0 listens; node 1 will only be dialed by node 0 (its bootstrap).
    let mut c = Cluster::new(vec![
        config(0, 100, vec![], &[1]),
        config(1, 200, vec![], &[]),
    ]);
    c.blocked = vec![(0, 1)];
    for k in 0..30 {
        idle_inbound(&mut c, 0, 90_000 + k, &format!("192.0.2.{k}:40000"));
    }
    c.blocked.clear();
    c.drive_for(2_000);
    assert!(c.linked(0, 1), "node 0 still dials out");
    // From one host, four pending handshakes at a time.
    let before = c.closes.len();
    for k in 0..6 {
        idle_inbound(
            &mut c,
            1,
            95_000 + k,
            &format!("198.51.100.7:{}", 40_000 + k),
        );
    }
    let refused = c.closes[before..]
        .iter()
        .filter(|(i, r)| *i == 1 && *r == overlay_core::CloseReason::AtCapacity)
        .count();
    assert_eq!(refused, 2);
}
