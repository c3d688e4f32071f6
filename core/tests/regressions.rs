//! Core bugs the hostile tests ran into, reproduced on two `overlay_core::Node`s joined in
//! memory (no IO, exact timing); fixed in the core, kept as regression tests. Those that
//! need real processes and the proxy are in tests/mitm.rs.

use std::time::Duration;

use overlay_core::testing::{Cluster, Tap, config, identity};
use overlay_core::wire::{Digest, LinkMessage};

const PERIOD: Duration = Duration::from_millis(500);

/// Two nodes in AS100 and AS200 that gossip (and advertise) every 500 ms, node 1 dialing
/// node 0, linked.
fn pair() -> Cluster {
    let configs = (0..2)
        .map(|i| {
            let mut c = config(i, 100 * (i as u32 + 1), vec![], &[0][..i]);
            c.gossip_period = PERIOD;
            // Every round advertises: the regression is a round's advert racing an answer.
            c.advert_refresh = 1;
            c.reject_threshold = 10;
            c
        })
        .collect();
    let mut c = Cluster::with_identities(configs, vec![identity(0), identity(1)]);
    c.drive_for(2_000);
    assert!(c.linked(0, 1));
    c
}

/// A digest answered in the same `handle` call as a gossip round: the answer held the
/// older copy of the node's own advertisement, the round pushed the newer one, and pushes
/// went out before answers, so the peer got seq n+1 then n on one link and counted a
/// `replay` offense against an honest node (ten within ten periods would have banned and
/// accused it). Seen on real daemons after a link reset in tests/mitm.rs.
#[test]
fn an_answer_never_follows_a_newer_push_of_the_same_rumor() {
    let mut c = pair();
    assert!(c.blamed(0).is_empty() && c.blamed(1).is_empty());
    let seq = c.node(0).status().seq;
    // Node 1 says it stores nothing (as a controller that has just restarted does); node 0
    // handles that digest two periods later, when its gossip round is overdue.
    let digest = LinkMessage::Digest(Digest {
        after: None,
        upto: None,
        ids: Vec::new(),
        reply: false,
    });
    let conn = c.conn_between(1, 0).expect("linked");
    let now = c.now;
    let sealed = c.node_mut(1).inject(now, conn, &digest);
    c.now = c.now + PERIOD * 2;
    c.execute(1, sealed);
    assert!(c.step(), "the digest reaches node 0");
    assert!(
        c.node(0).status().seq > seq,
        "the gossip round ran in the same call"
    );
    c.drive();
    let blamed = c.blamed(1);
    assert!(blamed.is_empty(), "node 1 blamed honest node 0: {blamed:?}");
}

/// A handshake in flight when its peer gets banned: the listener checked the key at the
/// hello (not banned yet) and not again at the `Finish`, so the link comes up with a banned
/// key. The same holds for a key evicted between hello and `Finish`.
#[test]
fn a_peer_banned_during_a_handshake_does_not_get_linked() {
    // Node 0 honest (the listener on both connections), node 1 the attacker (the dialer).
    let mut c = pair();
    let link = c.conn_between(1, 0).expect("linked");
    // Second connection: the hello reaches node 0, whose welcome is held back.
    c.connect(1, 0);
    c.step();
    c.step();
    let hold = Duration::from_millis(1);
    c.tap = Some(Box::new(move |from, _, _| match from {
        0 => Tap::Delay(hold),
        _ => Tap::Deliver,
    }));
    assert!(c.step(), "the hello reaches node 0");
    c.tap = None;
    // Meanwhile node 1 sends garbage on the first link until node 0 bans it.
    for _ in 0..c.node(0).config().reject_threshold {
        let now = c.now;
        let garbage = c.node_mut(1).inject_sealed(now, link, b"not a message");
        c.execute(1, garbage);
        c.drive();
    }
    assert_eq!(c.node(0).bans().len(), 1, "banned");
    assert!(c.node(0).peers().is_empty(), "first link closed");
    // The welcome reaches node 1, whose finish reaches node 0.
    c.drive_for(hold.as_millis() as u64);
    assert!(
        c.node(0).peers().is_empty(),
        "linked with a banned key: {:?}",
        c.node(0).peers()
    );
}

/// Two parts of a network that formed apart merge. Seen with 60 daemons started one after
/// another: a daemon's only bootstrap peer in the other part was not listening yet when
/// it first dialed, and it then filled its target number of peers from its own part; the
/// other part never heard of this one. Eight of the 60 stayed an island for good, each
/// part with converged tables of its own. A bootstrap peer this node does not reach
/// through the overlay is now dialed even at the target (up to `max_peers`).
#[test]
fn parts_that_formed_apart_merge_through_a_bootstrap_peer() {
    let config = |i: usize, bootstrap: usize| {
        let mut c = config(i, 100 * (i as u32 + 1), vec![], &[bootstrap]);
        c.target_peers = Some(1);
        c
    };
    // Part A (slots 0-3) starts first; slot 3's only way to part B is slot 4, which is not
    // there yet: that dial fails, and slot 2's dial gives slot 3 its one target peer.
    let mut c = Cluster::new((0..4).map(|i| config(i, (i + 1) % 5)).collect());
    c.drive_for(5_000);
    // Part B (slots 4-7) bootstraps only among itself.
    for i in 4..8 {
        c.add(config(i, 4 + (i + 1) % 4));
    }
    c.drive_for(30_000);
    for i in 0..8 {
        let reached: Vec<u32> = c
            .node(i)
            .members()
            .iter()
            .filter(|m| m.reachable)
            .map(|m| m.node.0)
            .collect();
        assert_eq!(reached, (1..=8).collect::<Vec<_>>(), "slot {i}");
    }
    assert!(c.linked(3, 4), "the bootstrap link was made");
}
