//! Protocol behaviour of 2–5 nodes driven by the in-memory harness: handshake, capacity,
//! peer lists, routes, triggered updates, hop authentication, bans and eviction, admission,
//! leave, expiry and key rotation.

use overlay_core::testing::REFUSED;
use overlay_core::testing::*;
use overlay_core::wire::{LinkMessage, RumorBody, RumorContent, SignedRumor};
use overlay_core::{CloseReason, Command, MemberState, NodeId, Notification, RejectReason};
use serde_json::value::RawValue;

fn has_peer_up(c: &Cluster, i: usize, node: u32) -> bool {
    c.notes(i)
        .any(|n| matches!(n, Notification::PeerUp { node: id, .. } if id.0 == node))
}

fn rejected(c: &Cluster, i: usize, pred: impl Fn(&RejectReason) -> bool) -> usize {
    c.notes(i)
        .filter(|n| matches!(n, Notification::Rejected { reason, .. } if pred(reason)))
        .count()
}

fn any_ban(c: &Cluster) -> bool {
    c.notifications
        .iter()
        .any(|(_, n)| matches!(n, Notification::PeerBanned { .. }))
}

fn converged_example() -> Cluster {
    let mut c = Cluster::new(example_configs());
    c.drive_for(3_000);
    c
}

/// Two controllers without links; RC2 (AS200) bootstraps from RC1 (AS100).
fn two_nodes() -> Cluster {
    Cluster::new(vec![
        config(0, 100, vec![], &[]),
        config(1, 200, vec![], &[0]),
    ])
}

#[test]
fn handshake_accepts_and_both_sides_see_the_peer() {
    let mut c = two_nodes();
    c.drive_for(10);
    assert!(c.linked(0, 1) && c.linked(1, 0));
    assert!(has_peer_up(&c, 0, 2) && has_peer_up(&c, 1, 1));
    // Nothing is advertised yet: a node's first advert waits the gain's hold-down (a
    // quarter period) so that it lists the links made meanwhile, and a member counts once
    // both adverts list the link.
    assert_eq!(c.node(0).status().members, 0);
    c.drive_for(400);
    assert_eq!(c.node(0).status().members, 2);
    assert_eq!(c.node(1).status().members, 2);
    assert_eq!(c.node(0).metrics().handshakes, 1);
}

#[test]
fn simultaneous_dials_leave_exactly_one_link() {
    let mut c = Cluster::new(vec![
        config(0, 100, vec![], &[1]),
        config(1, 200, vec![], &[0]),
    ]);
    c.drive_for(2_000);
    assert_eq!(c.node(0).peers().len(), 1);
    assert_eq!(c.node(1).peers().len(), 1);
    assert_eq!(c.node(0).peers()[0].conn, c.conn_between(0, 1).unwrap());
}

#[test]
fn full_listener_refuses_with_its_peer_list_and_the_dialer_follows_it() {
    let mut full = config(0, 100, vec![], &[]);
    full.max_peers = 1;
    full.min_peers = 1;
    let mut c = Cluster::new(vec![full, config(1, 200, vec![], &[0])]);
    c.drive_for(10);
    assert!(c.linked(0, 1));
    let newcomer = c.add(config(2, 300, vec![], &[0]));
    c.drive_for(10);
    assert!(!c.linked(newcomer, 0), "the full node must refuse");
    assert!(c.closes.contains(&(0, CloseReason::AtCapacity)));
    assert!(c.closes.contains(&(newcomer, CloseReason::AtCapacity)));
    assert!(
        c.dials.contains(&(newcomer, addr(1))),
        "the newcomer dials the address from the refusal"
    );
    assert!(c.linked(newcomer, 1));
    assert_eq!(c.node(0).peers().len(), 1, "max_peers holds");
}

#[test]
fn accepting_hello_peer_list_infects_the_dialer() {
    let mut hub = config(0, 100, vec![], &[]);
    hub.target_peers = Some(1);
    let mut spokes: Vec<_> = (1..4)
        .map(|i| {
            let mut s = config(i, 100 + i as u32 * 100, vec![], &[0]);
            s.target_peers = Some(1);
            s
        })
        .collect();
    let mut configs = vec![hub];
    configs.append(&mut spokes);
    let mut c = Cluster::new(configs);
    c.drive_for(10);
    let mut joiner = config(4, 900, vec![], &[0]);
    joiner.target_peers = Some(4);
    // Only the hub's first frame (its welcome) reaches the joiner: it can learn the other
    // addresses from nowhere but the welcome's peer list.
    let mut frames_from_hub = 0;
    c.tap = Some(Box::new(move |from, to, _| {
        if from == 0 && to == 4 {
            frames_from_hub += 1;
            if frames_from_hub > 1 {
                return Tap::Drop;
            }
        }
        Tap::Deliver
    }));
    let j = c.add(joiner);
    c.drive_for(10);
    for spoke in 1..4 {
        assert!(
            c.dials.contains(&(j, addr(spoke))),
            "joiner dials spoke {spoke}"
        );
        assert!(c.linked(j, spoke));
    }
}

#[test]
fn routes_equal_the_fixture_example_table() {
    let c = converged_example();
    // shared/fixtures/example/README.md: (from, to, cost, path)
    let expected: &[(usize, u32, u64, &[u32])] = &[
        (0, 200, 5, &[100, 200]),
        (0, 300, 5, &[100, 300]),
        (0, 30, 7, &[100, 200, 30]),
        (0, 40, 8, &[100, 300, 40]),
        (1, 100, 5, &[200, 100]),
        (1, 20, 10, &[200, 100, 20]),
        (1, 40, 4, &[200, 300, 40]),
        (2, 30, 3, &[300, 200, 30]),
        (2, 10, 10, &[300, 100, 10]),
    ];
    for &(from, to, cost, path) in expected {
        let table = c.route_table(from);
        let route = table
            .iter()
            .find(|r| r.0 == to)
            .unwrap_or_else(|| panic!("node {from} has no route to AS{to}: {table:?}"));
        assert_eq!(
            (route.1, route.2.as_slice()),
            (cost, path),
            "from node {from} to AS{to}"
        );
    }
    // Every controller reaches the six other ASes.
    for i in 0..3 {
        assert_eq!(c.node(i).routes().len(), 6);
    }
    let to40 = c
        .node(0)
        .routes()
        .into_iter()
        .find(|r| r.destination.0 == 40)
        .unwrap();
    assert_eq!((to40.capacity, to40.hops, to40.next_hop.0), (1, 2, 300));
}

#[test]
fn link_change_triggers_an_update_without_waiting_for_a_round() {
    let mut c = converged_example();
    assert_eq!(c.route_table(2).iter().find(|r| r.0 == 30).unwrap().1, 3);
    let links = vec![link(100, 10, 5), link(300, 100, 1), link(30, 10, 9)];
    c.deliver(1, overlay_core::Event::Command(Command::SetLinks(links)));
    c.drive(); // no time passes
    let to30 = c.route_table(2).into_iter().find(|r| r.0 == 30).unwrap();
    assert_eq!((to30.1, to30.2), (10, vec![300, 200, 30]));
    let from100 = c.route_table(0).into_iter().find(|r| r.0 == 30).unwrap();
    assert_eq!(from100.1, 14);
    assert!(
        c.notes(2)
            .any(|n| matches!(n, Notification::RoutesChanged { changes } if changes.iter().any(|ch| ch.destination.0 == 30)))
    );
}

#[test]
fn invalid_link_command_is_refused_with_a_typed_error() {
    let mut c = converged_example();
    c.deliver(
        0,
        overlay_core::Event::Command(Command::SetLinks(vec![link(100, 1, 1)])),
    );
    c.drive();
    assert!(
        c.notes(0)
            .any(|n| matches!(n, Notification::CommandFailed(_)))
    );
    assert_eq!(c.node(0).config().links.len(), 4);
}

#[test]
fn tampered_frame_is_rejected_without_blame_and_the_link_recovers() {
    let mut c = Cluster::new(vec![
        config(0, 100, vec![link(200, 1, 1)], &[]),
        config(1, 200, vec![link(100, 1, 1)], &[0]),
    ]);
    // Past the first adverts (a quarter period).
    c.drive_for(400);
    assert!(c.linked(0, 1));
    let mut flipped = 0;
    c.tap = Some(Box::new(move |from, _, bytes| {
        if from == 0 && flipped < 3 {
            flipped += 1;
            let mut b = bytes.to_vec();
            let last = b.len() - 1;
            b[last] ^= 0x40;
            return Tap::Replace(b);
        }
        Tap::Deliver
    }));
    let before = c
        .node(1)
        .members()
        .into_iter()
        .find(|m| m.node.0 == 1)
        .unwrap()
        .seq;
    c.deliver(
        0,
        overlay_core::Event::Command(Command::SetLinks(vec![link(200, 1, 7)])),
    );
    c.drive();
    let seq_now = c
        .node(1)
        .members()
        .into_iter()
        .find(|m| m.node.0 == 1)
        .unwrap()
        .seq;
    assert_eq!(seq_now, before, "the tampered advert must not be accepted");
    assert!(rejected(&c, 1, |r| *r == RejectReason::HopAuth) >= 1);
    // Two more changes: three altered frames in a row reset the link.
    for cost in [8, 7] {
        let links = vec![link(200, 1, cost)];
        c.deliver(0, overlay_core::Event::Command(Command::SetLinks(links)));
        c.drive();
    }
    c.drive_for(5_000);
    assert!(
        c.closes.contains(&(1, CloseReason::HopAuthFailures)),
        "link reset"
    );
    assert!(!any_ban(&c), "nobody is blamed for an altered frame");
    assert!(c.linked(0, 1), "the nodes reconnect");
    let to200 = c
        .node(0)
        .routes()
        .into_iter()
        .find(|r| r.destination.0 == 200)
        .unwrap();
    assert_eq!(to200.cost, 7);
    assert_eq!(
        c.node(1)
            .routes()
            .into_iter()
            .find(|r| r.destination.0 == 100)
            .unwrap()
            .cost,
        1
    );
}

#[test]
fn replayed_frame_is_rejected() {
    let mut c = two_nodes();
    c.drive_for(100);
    let (_, _, conn, frame) = c
        .captured
        .iter()
        .rev()
        .find(|(from, to, _, _)| *from == 0 && *to == 1)
        .cloned()
        .unwrap();
    let accepted = c.node(1).metrics().rumors_accepted;
    c.deliver(1, overlay_core::Event::Received { conn, bytes: frame });
    c.drive();
    assert_eq!(rejected(&c, 1, |r| *r == RejectReason::HopAuth), 1);
    assert_eq!(c.node(1).metrics().rumors_accepted, accepted);
    assert!(c.linked(0, 1), "one bad frame does not reset the link");
    c.drive_for(3_000);
    assert!(
        c.linked(0, 1),
        "the chain is intact: later frames still open"
    );
}

/// A copy of `rumor` with a higher sequence number and the old signature.
fn forged(rumor: &SignedRumor, seq: u64) -> SignedRumor {
    let mut body: RumorBody = serde_json::from_str(rumor.body.get()).unwrap();
    body.seq = seq;
    let mut f = rumor.clone();
    f.seq = seq;
    f.body = RawValue::from_string(serde_json::to_string(&body).unwrap())
        .unwrap()
        .into();
    f
}

#[test]
fn forged_rumors_get_the_sender_banned_accused_and_evicted_by_quorum() {
    let mut configs: Vec<_> = (0..4)
        .map(|i| config(i, 100 * (i as u32 + 1), vec![], &[]))
        .collect();
    configs[1].bootstrap = vec![addr(0)];
    configs[2].bootstrap = vec![addr(0)];
    configs[3].bootstrap = vec![addr(0), addr(1), addr(2)];
    let mut c = Cluster::new(configs);
    c.drive_for(2_000);
    for honest in 0..3 {
        assert!(c.linked(3, honest));
    }
    let bad = NodeId(4);
    let genuine = c.node(3).advert_of(bad).unwrap();
    let mut seq = genuine.seq + 100;
    for victim in [0, 1] {
        for _ in 0..3 {
            seq += 1;
            let msg = LinkMessage::Rumors {
                rumors: vec![forged(&genuine, seq)],
            };
            if c.linked(3, victim) {
                c.inject(3, victim, &msg);
            }
        }
    }
    // Accusations reach nodes whose eager path ran through the forger by lazy
    // announcement and graft: that takes a lazy interval and a graft timeout.
    c.drive_for(1_000);
    for victim in [0, 1] {
        assert_eq!(
            rejected(&c, victim, |r| *r == RejectReason::BadSignature),
            3
        );
        assert!(
            c.notes(victim)
                .any(|n| matches!(n, Notification::PeerBanned { node, .. } if *node == bad))
        );
    }
    for honest in 0..3 {
        assert!(
            c.notes(honest)
                .any(|n| matches!(n, Notification::MemberEvicted { node, accusers } if *node == bad && accusers.len() >= 2)),
            "node {honest} evicts the forger"
        );
        assert!(
            !c.linked(honest, 3),
            "node {honest} dropped its link to the forger"
        );
        let m = c
            .node(honest)
            .members()
            .into_iter()
            .find(|m| m.node == bad)
            .unwrap();
        assert_eq!(m.state, MemberState::Evicted);
        assert!(
            c.node(honest)
                .routes()
                .iter()
                .all(|r| r.destination.0 != 400)
        );
    }
    // Honest nodes are never evicted, and the forger cannot come back.
    assert!(
        !c.notifications
            .iter()
            .any(|(_, n)| matches!(n, Notification::MemberEvicted { node, .. } if *node != bad))
    );
    c.drive_for(10_000);
    for honest in 0..3 {
        assert!(!c.linked(honest, 3));
    }
    assert!(c.notes(3).any(|n| matches!(
        n,
        Notification::Rejected {
            reason: RejectReason::Refused(_),
            ..
        }
    )));
}

#[test]
fn a_peer_resending_older_rumors_on_its_link_is_blamed_for_replay() {
    let mut c = two_nodes();
    c.drive_for(100);
    let old = c.node_mut(1).sign_rumor(
        1_000,
        RumorContent::Leave {
            asn: overlay_core::Asn(200),
        },
    );
    let new = c.node_mut(1).sign_rumor(
        1_001,
        RumorContent::Advert {
            asn: overlay_core::Asn(200),
            addr: addr(1),
            links: Vec::new().into(),
            cert: None,
            peers: None,
        },
    );
    c.inject(
        1,
        0,
        &LinkMessage::Rumors {
            rumors: vec![new.clone()],
        },
    );
    let dups = c.node(0).metrics().rumors_duplicate;
    c.inject(1, 0, &LinkMessage::Rumors { rumors: vec![new] });
    assert_eq!(
        c.node(0).metrics().rumors_duplicate,
        dups + 1,
        "same seq again: a duplicate"
    );
    assert_eq!(rejected(&c, 0, |r| *r == RejectReason::Replay), 0);
    c.inject(1, 0, &LinkMessage::Rumors { rumors: vec![old] });
    assert_eq!(
        rejected(&c, 0, |r| *r == RejectReason::Replay),
        1,
        "older seq: a replay"
    );
    let m = c
        .node(0)
        .members()
        .into_iter()
        .find(|m| m.node.0 == 2)
        .unwrap();
    assert_eq!((m.seq, m.state), (1_001, MemberState::Alive));
}

#[test]
fn a_single_accuser_never_evicts_with_quorum_two() {
    let mut configs: Vec<_> = (0..3)
        .map(|i| config(i, 100 * (i as u32 + 1), vec![], &[]))
        .collect();
    configs[1].bootstrap = vec![addr(0)];
    configs[2].bootstrap = vec![addr(0)];
    let mut c = Cluster::new(configs);
    c.drive_for(2_000);
    // Node 3 (slot 2) accuses node 1 (slot 0) falsely, many times.
    let victim_fp = c.node(0).fingerprint();
    let rumors: Vec<_> = (0..5)
        .map(|k| {
            c.node_mut(2).sign_rumor(
                1_000 + k,
                RumorContent::Accuse {
                    accused: NodeId(1),
                    fingerprint: victim_fp.to_hex(),
                    reason: "lies".into(),
                },
            )
        })
        .collect();
    c.inject(2, 1, &LinkMessage::Rumors { rumors });
    c.drive_for(3_000);
    assert!(
        !c.notifications
            .iter()
            .any(|(_, n)| matches!(n, Notification::MemberEvicted { .. }))
    );
    assert!(c.linked(0, 1) && c.linked(1, 2));
}

#[test]
fn wrong_cluster_key_is_refused_and_never_admitted() {
    let mut intruder = config(1, 200, vec![link(100, 1, 1)], &[0]);
    intruder.cluster_keys = vec![cluster_key(9)];
    let mut c = Cluster::new(vec![config(0, 100, vec![link(200, 1, 1)], &[]), intruder]);
    c.drive_for(5_000);
    assert!(!c.linked(0, 1));
    assert!(rejected(&c, 0, |r| *r == RejectReason::UnknownClusterKey) >= 1);
    assert!(c.node(0).members().iter().all(|m| m.node.0 != 2));
    assert!(c.node(0).routes().iter().all(|r| r.path.len() == 2));
    assert_eq!(c.node(0).status().members, 1);
}

#[test]
fn leave_withdraws_routes_at_once_and_is_not_a_failure() {
    let mut c = converged_example();
    assert!(c.node(0).routes().iter().any(|r| r.destination.0 == 40));
    c.deliver(2, overlay_core::Event::Command(Command::Leave));
    c.drive(); // no time passes
    for i in 0..2 {
        assert!(
            c.notes(i)
                .any(|n| matches!(n, Notification::MemberLeft { node } if node.0 == 3))
        );
        assert!(
            c.node(i).routes().iter().all(|r| r.destination.0 != 40),
            "AS40 was only reachable via AS300"
        );
        let m = c
            .node(i)
            .members()
            .into_iter()
            .find(|m| m.node.0 == 3)
            .unwrap();
        assert_eq!(m.state, MemberState::Left);
    }
    assert_eq!(c.node(2).next_wakeup(), None);
    assert!(c.node(2).status().left);
    c.drive_for(10_000);
    assert!(
        !c.notifications
            .iter()
            .any(|(_, n)| matches!(n, Notification::MemberExpired { .. }))
    );
    assert!(c.notes(0).all(|n| !matches!(
        n,
        Notification::PeerDown {
            reason: CloseReason::HeartbeatTimeout,
            ..
        }
    )));
}

#[test]
fn leave_arriving_in_one_read_with_the_goodbye_is_applied() {
    let mut c = Cluster::new(example_configs());
    c.coalesce = true;
    c.drive_for(3_000);
    assert_eq!(
        c.route_table(0).len(),
        6,
        "converges with coalesced reads too"
    );
    c.deliver(2, overlay_core::Event::Command(Command::Leave));
    c.drive();
    for i in 0..2 {
        assert!(
            c.notes(i)
                .any(|n| matches!(n, Notification::MemberLeft { node } if node.0 == 3)),
            "node {i} saw the leave"
        );
    }
}

/// A crashed controller is withdrawn as soon as its peers unlist it (its links reset, or
/// their heartbeats time out): unreachable, no route through it, though its advertisement
/// lives on until it expires, two refreshes later.
#[test]
fn a_crashed_node_is_withdrawn_at_once_and_expires_after_the_advertisement_age() {
    let mut c = converged_example();
    assert!(c.node(0).routes().iter().any(|r| r.destination.0 == 40));
    c.crash(2);
    c.drive_for(1_000);
    for i in 0..2 {
        assert!(
            c.node(i).routes().iter().all(|r| r.destination.0 != 40),
            "node {i} still routes through the crashed AS300"
        );
        let m = c.node(i).members().into_iter().find(|m| m.node.0 == 3);
        assert!(m.is_some_and(|m| m.state == MemberState::Alive && !m.reachable));
        assert_eq!(
            c.node(i).status().members,
            2,
            "the crashed one is not counted"
        );
    }
    let expired = |c: &Cluster| {
        c.notifications
            .iter()
            .any(|(_, n)| matches!(n, Notification::MemberExpired { node } if node.0 == 3))
    };
    assert!(!expired(&c), "its advertisement lives on");
    let age = c.node(0).config().advert_max_age();
    c.drive_for(age.as_millis() as u64 + 1_000);
    assert!(expired(&c), "expired after {age:?}");
    assert!(
        !c.notifications
            .iter()
            .any(|(_, n)| matches!(n, Notification::MemberLeft { .. }))
    );
}

/// A controller that goes silent without closing anything (a hung host, a cut cable) is
/// withdrawn once its peers' heartbeats time out: 3 intervals, then the hold-down. Its
/// members are told it was cut off, and that it is back once the cut heals.
#[test]
fn a_silent_node_is_withdrawn_after_the_heartbeat_timeout() {
    let mut c = converged_example();
    let heartbeat = c.node(0).config().heartbeat();
    c.blocked.extend([(2, 0), (2, 1)]);
    c.drive_for(heartbeat.as_millis() as u64 * 2);
    assert!(
        c.node(0).routes().iter().any(|r| r.destination.0 == 40),
        "within the heartbeat timeout"
    );
    c.drive_for(heartbeat.as_millis() as u64 + 1_000);
    for i in 0..2 {
        assert!(
            c.node(i).routes().iter().all(|r| r.destination.0 != 40),
            "node {i}: withdrawn within the heartbeat timeout and a second"
        );
    }
    // Each is told once that RC3 was cut off, and once that it is reached again.
    let told = |c: &Cluster, i: usize, back: bool| {
        c.notes(i)
            .filter(|n| match n {
                Notification::MemberUnreachable { node } => !back && node.0 == 3,
                Notification::MemberReachable { node } => back && node.0 == 3,
                _ => false,
            })
            .count()
    };
    assert_eq!((told(&c, 0, false), told(&c, 1, false)), (1, 1));
    assert_eq!((told(&c, 0, true), told(&c, 1, true)), (0, 0));
    c.blocked.clear();
    c.drive_for(5_000);
    assert!(c.node(0).routes().iter().any(|r| r.destination.0 == 40));
    assert_eq!((told(&c, 0, true), told(&c, 1, true)), (1, 1));
    assert_eq!(told(&c, 0, false), 1);
}

#[test]
fn restarted_node_rejoins_with_a_sequence_number_above_its_old_one() {
    let mut c = converged_example();
    let old_seq = c
        .node(0)
        .members()
        .into_iter()
        .find(|m| m.node.0 == 3)
        .unwrap()
        .seq;
    c.crash(2);
    c.drive_for(500);
    let config = example_configs().remove(2);
    let node = overlay_core::Node::new(config, identity(2), [99; 32], c.now).unwrap();
    c.nodes[2] = Some(node);
    c.drive_for(3_000);
    let m = c
        .node(0)
        .members()
        .into_iter()
        .find(|m| m.node.0 == 3)
        .unwrap();
    assert!(m.seq > old_seq, "{} > {old_seq}", m.seq);
    assert_eq!(m.state, MemberState::Alive);
    assert!(c.node(0).routes().iter().any(|r| r.destination.0 == 40));
}

#[test]
fn dead_link_is_closed_by_heartbeat_timeout() {
    let mut c = two_nodes();
    c.drive_for(100);
    c.tap = Some(Box::new(
        |from, _, _| if from == 1 { Tap::Drop } else { Tap::Deliver },
    ));
    c.drive_for(4_000);
    assert!(c.closes.contains(&(0, CloseReason::HeartbeatTimeout)));
}

#[test]
fn cluster_keys_rotate_without_downtime() {
    // Rotation in progress: node 0 already uses the new key, node 1 accepts both,
    // node 2 still has only the old one.
    let (old, new) = (cluster_key(7), cluster_key(8));
    let mut configs = vec![
        config(0, 100, vec![], &[1, 2]),
        config(1, 200, vec![], &[]),
        config(2, 300, vec![], &[1]),
    ];
    configs[0].cluster_keys = vec![new.clone(), old.clone()];
    configs[1].cluster_keys = vec![old.clone(), new.clone()];
    configs[2].cluster_keys = vec![old.clone()];
    let mut c = Cluster::new(configs);
    c.drive_for(3_000);
    assert!(c.linked(0, 1), "new key accepted by a node that has both");
    assert!(
        rejected(&c, 2, |r| *r == RejectReason::UnknownClusterKey) >= 1,
        "node 2 refuses the new key"
    );
    assert!(c.linked(1, 2), "old key still works");
    for i in 0..3 {
        assert_eq!(c.node(i).status().members, 3, "node {i} sees everyone");
    }
}

/// Rumor copies sent per rumor originated, over `rounds` gossip rounds of a converged
/// five-node full mesh.
fn copies_per_rumor(mode: overlay_core::Dissemination) -> f64 {
    let configs: Vec<_> = (0..5)
        .map(|i| {
            let mut cfg = config(i, 100 + i as u32, vec![], &[0, 1, 2, 3, 4]);
            cfg.dissemination = mode;
            cfg.target_peers = Some(4);
            // Every round, so that the steady state keeps originating rumors to count.
            cfg.advert_refresh = 1;
            cfg
        })
        .collect();
    let mut c = Cluster::new(configs);
    c.drive_for(10_000);
    let total = |c: &Cluster, f: fn(&overlay_core::Metrics) -> u64| -> u64 {
        (0..5).map(|i| f(&c.node(i).metrics())).sum()
    };
    let out0 = total(&c, |m| m.rumors_out);
    let seq0: u64 = (0..5).map(|i| c.node(i).status().seq).sum();
    c.drive_for(10_000);
    let out1 = total(&c, |m| m.rumors_out);
    let seq1: u64 = (0..5).map(|i| c.node(i).status().seq).sum();
    for i in 0..5 {
        assert_eq!(c.node(i).status().members, 5);
        assert_eq!(c.node(i).peers().len(), 4, "full mesh");
    }
    (out1 - out0) as f64 / (seq1 - seq0) as f64
}

#[test]
fn plumtree_prunes_the_mesh_to_a_tree_and_sends_each_rumor_about_n_minus_1_times() {
    let plumtree = copies_per_rumor(overlay_core::Dissemination::Plumtree);
    let flood = copies_per_rumor(overlay_core::Dissemination::Flood);
    // N-1 = 4 copies reach everyone once; flooding in a 5-mesh sends 4 + 4·3 = 16.
    assert!(
        plumtree <= 4.0 * 1.2,
        "plumtree sends {plumtree} copies per rumor"
    );
    assert!(flood >= 12.0, "flooding sends {flood} copies per rumor");
}

#[test]
fn lazy_announcements_and_grafts_repair_the_tree_when_a_node_crashes() {
    // Node 0 reaches only nodes 1 and 2; 3 and 4 hear node 0's rumors through them.
    let configs: Vec<_> = (0..5)
        .map(|i| {
            let mut cfg = config(i, 100 + i as u32, vec![], &[0, 1, 2, 3, 4]);
            cfg.target_peers = Some(4);
            cfg
        })
        .collect();
    let mut c = Cluster::with_blocked(configs, vec![(0, 3), (0, 4)]);
    c.drive_for(10_000);
    let lazy: usize = (0..5).map(|i| c.node(i).sizes().lazy_pairs).sum();
    assert!(lazy > 0, "duplicates pruned some links");
    // Crash node 1: whoever got node 0's rumors through it must graft them from node 2.
    c.crash(1);
    let alive = [0, 2, 3, 4];
    let before = c.node(0).status().seq;
    let grafts =
        |c: &Cluster| -> u64 { alive.iter().map(|&i| c.node(i).metrics().grafts_out).sum() };
    let grafts_before = grafts(&c);
    let changes_before = c.notifications.len();
    c.deliver(
        0,
        overlay_core::Event::Command(Command::SetLinks(vec![link(777, 1, 1)])),
    );
    c.drive_for(600); // lazy interval + graft timeout, well under a gossip round
    for &i in &alive[1..] {
        let m = c
            .node(i)
            .members()
            .into_iter()
            .find(|m| m.node.0 == 1)
            .unwrap();
        assert!(m.seq > before, "node {i} got the update");
        assert!(m.profile.links.iter().any(|l| l.asn.0 == 777));
    }
    let hops: Vec<u32> = c.notifications[changes_before..]
        .iter()
        .filter_map(|(_, n)| match n {
            Notification::RumorAccepted { origin, hops, .. } if origin.0 == 1 => Some(*hops),
            _ => None,
        })
        .collect();
    assert!(
        hops.iter().any(|&h| h >= 2),
        "some node got it through node 2: {hops:?}"
    );
    assert!(grafts(&c) > grafts_before, "the repair went through grafts");
}

/// Everything one side wrote in one `handle` call arrives in one read (as TCP often does):
/// the dialer's Finish and its first sealed frames must all be opened.
#[test]
fn sealed_frames_coalesced_with_the_last_handshake_frame_are_kept() {
    let configs = vec![config(0, 100, vec![], &[]), config(1, 200, vec![], &[])];
    let mut c = Cluster::new(configs);
    c.coalesce = true;
    c.connect(1, 0);
    c.drive_for(400);
    assert_eq!(
        c.node(0).metrics().rejects.get("hop_auth"),
        None,
        "frames after Finish were lost"
    );
    assert_eq!(c.node(0).status().members, 2);
    assert_eq!(c.node(1).status().members, 2);
}

#[test]
fn a_partition_longer_than_the_advert_age_re_merges_after_healing() {
    let configs: Vec<_> = (0..6)
        .map(|i| {
            let mut cfg = config(i, 100 + i as u32, vec![link(900, 1, 1)], &[(i + 1) % 6]);
            cfg.max_peers = 4;
            cfg
        })
        .collect();
    let mut c = Cluster::new(configs);
    c.drive_for(5_000);
    for i in 0..6 {
        assert_eq!(c.node(i).status().members, 6);
    }
    c.partition = Some(vec![0, 1, 2]);
    c.drive_for(10_000); // heartbeats cut the links, then every advert from across expires
    for i in 0..6 {
        assert_eq!(c.node(i).status().members, 3, "node {i} sees only its side");
    }
    c.partition = None;
    c.drive_for(30_000);
    for i in 0..6 {
        assert_eq!(
            c.node(i).status().members,
            6,
            "node {i} sees both sides again"
        );
    }
}

#[test]
fn bytes_that_never_complete_a_frame_do_not_keep_a_link_alive() {
    let mut c = two_nodes();
    c.drive_for(100);
    let conn = c.conn_between(0, 1).unwrap();
    // Node 1 goes silent; someone announces a 4 KiB frame on its link and trickles its
    // body one byte every 300 ms instead.
    c.tap = Some(Box::new(
        |from, _, _| if from == 1 { Tap::Drop } else { Tap::Deliver },
    ));
    c.deliver(
        0,
        overlay_core::Event::Received {
            conn,
            bytes: 4096u32.to_be_bytes().to_vec(),
        },
    );
    for _ in 0..15 {
        c.deliver(
            0,
            overlay_core::Event::Received {
                conn,
                bytes: vec![0],
            },
        );
        c.drive_for(300);
    }
    assert!(c.closes.contains(&(0, CloseReason::HeartbeatTimeout)));
}

/// Plaintext handshake frames a node sent on `conn` (its first frames).
fn handshake_sends(actions: &[overlay_core::Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            overlay_core::Action::Send { bytes, .. } => {
                Some(String::from_utf8_lossy(bytes.get(4..).unwrap_or_default()).into_owned())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn hellos_without_the_cluster_key_proof_or_replayed_get_no_rsa_work() {
    use overlay_core::wire::{Handshake, encode_frame, to_json};
    use overlay_core::{ConnId, Direction, Event, Time};
    let t = Time::from_millis(1);
    let (_dialer, mut listener, hello_frame) = dialer_and_listener(t);
    let inbound = |conn| Event::Connected {
        conn,
        direction: Direction::Inbound,
        remote: addr(1),
    };
    // A stranger who knows the key id but not the key: the proof is wrong.
    let Handshake::Hello(mut forged) = serde_json::from_slice(&hello_frame[4..]).unwrap() else {
        panic!("not a hello")
    };
    forged.proof[0] ^= 1;
    listener.handle(t, inbound(ConnId(10)));
    let answer = listener.handle(
        t,
        Event::Received {
            conn: ConnId(10),
            bytes: encode_frame(&to_json(&Handshake::Hello(forged))),
        },
    );
    let sent = handshake_sends(&answer);
    assert!(sent.iter().all(|f| !f.contains("welcome")), "{sent:?}");
    // One text for every refusal: the reason stays with the listener.
    assert!(sent.iter().any(|f| f.contains(REFUSED)), "{sent:?}");
    assert!(answer.iter().any(|a| matches!(
        a,
        overlay_core::Action::Notify(Notification::Rejected {
            reason: RejectReason::BadProof,
            ..
        })
    )));
    // The genuine hello is answered once; replayed on another connection it is refused.
    listener.handle(t, inbound(ConnId(11)));
    let first = handshake_sends(&listener.handle(
        t,
        Event::Received {
            conn: ConnId(11),
            bytes: hello_frame.clone(),
        },
    ));
    assert!(first.iter().any(|f| f.contains("welcome")), "{first:?}");
    listener.handle(t, inbound(ConnId(12)));
    let replay = handshake_sends(&listener.handle(
        t,
        Event::Received {
            conn: ConnId(12),
            bytes: hello_frame,
        },
    ));
    assert!(replay.iter().all(|f| !f.contains("welcome")), "{replay:?}");
    assert!(replay.iter().any(|f| f.contains(REFUSED)), "{replay:?}");
}

#[test]
fn a_recorded_hello_replayed_after_the_skew_window_or_a_restart_gets_no_rsa_work() {
    use overlay_core::{ConnId, Direction, Event, Time};
    let t = Time::from_millis(1);
    let (_dialer, listener, hello_frame) = dialer_and_listener(t);
    // The listener restarts (its nonce memory is gone) and the recording is played to it
    // once the hello is older than its clock-skew bound (1 s here), as to any other node.
    let mut restarted = listener.clone();
    let later = Time::from_millis(1_100);
    restarted.handle(
        later,
        Event::Connected {
            conn: ConnId(20),
            direction: Direction::Inbound,
            remote: addr(1),
        },
    );
    let answer = restarted.handle(
        later,
        Event::Received {
            conn: ConnId(20),
            bytes: hello_frame,
        },
    );
    let sent = handshake_sends(&answer);
    assert!(sent.iter().all(|f| !f.contains("welcome")), "{sent:?}");
    assert!(answer.iter().any(|a| matches!(
        a,
        overlay_core::Action::Notify(Notification::Rejected {
            reason: RejectReason::Untimely,
            ..
        })
    )));
}

#[test]
fn a_refusal_says_nothing_of_live_ids_or_bans() {
    use overlay_core::wire::{Handshake, encode_frame, to_json};
    use overlay_core::{ConnId, Direction, Event, Time};
    // A dialer claiming node 1's own id (a live id here) is refused with the same text as
    // any other refusal.
    let t = Time::from_millis(1);
    let (_dialer, mut listener, hello_frame) = dialer_and_listener(t);
    let Handshake::Hello(hello) = serde_json::from_slice(&hello_frame[4..]).unwrap() else {
        panic!("not a hello")
    };
    let mut claim = hello.clone();
    claim.identity.node = listener.status().node;
    claim.identity.nonce[0] ^= 1;
    claim.proof = overlay_core::testing::hello_proof(&cluster_key(7), &claim.identity);
    listener.handle(
        t,
        Event::Connected {
            conn: ConnId(20),
            direction: Direction::Inbound,
            remote: addr(1),
        },
    );
    let answer = listener.handle(
        t,
        Event::Received {
            conn: ConnId(20),
            bytes: encode_frame(&to_json(&Handshake::Hello(claim))),
        },
    );
    let sent = handshake_sends(&answer);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0].contains(REFUSED) && !sent[0].contains("conflict"),
        "{sent:?}"
    );
}
