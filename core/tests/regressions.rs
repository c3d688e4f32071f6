//! Core bugs the hostile tests ran into, reproduced on two `overlay_core::Node`s joined in
//! memory (no IO, exact timing); fixed in the core, kept as regression tests. Those that
//! need real processes and the proxy are in tests/mitm.rs.

use std::collections::VecDeque;
use std::time::Duration;

use overlay_core::wire::{Digest, LinkMessage};
use overlay_core::{
    Action, Addr, Asn, ClusterKey, Config, ConnId, Direction, Event, Identity, Node, NodeId,
    Notification, RejectReason, Time,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const PERIOD: Duration = Duration::from_millis(500);
/// Both nodes call their one connection this.
const LINK: ConnId = ConnId(1);

fn node(id: u32, key: &ClusterKey) -> Node {
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(id));
    let identity = Identity::generate(&mut rng, 2048).unwrap();
    let addr = Addr::from(format!("10.0.0.{id}:1450"));
    let mut config = Config::new(NodeId(id), Asn(100 * id), addr, vec![key.clone()]);
    config.gossip_period = PERIOD;
    Node::new(config, identity, [id as u8; 32], Time::ZERO).unwrap()
}

/// Delivers what `from` sends, and every answer, until both are quiet; returns the
/// rejections that blamed the other node.
fn deliver(
    nodes: &mut [Node; 2],
    now: Time,
    from: usize,
    actions: Vec<Action>,
) -> Vec<RejectReason> {
    let mut queue = VecDeque::from([(from, actions)]);
    let mut blamed = Vec::new();
    while let Some((from, actions)) = queue.pop_front() {
        for action in actions {
            match action {
                Action::Send { bytes, .. } => {
                    let to = 1 - from;
                    let out = nodes[to].handle(now, Event::Received { conn: LINK, bytes });
                    queue.push_back((to, out));
                }
                Action::Notify(Notification::Rejected { reason, .. }) if reason.blames_peer() => {
                    blamed.push(reason);
                }
                _ => {}
            }
        }
    }
    blamed
}

/// A digest answered in the same `handle` call as a gossip round: the answer held the
/// older copy of the node's own advertisement, the round pushed the newer one, and pushes
/// went out before answers, so the peer got seq n+1 then n on one link and counted a
/// `replay` offense against an honest node (ten within ten periods would have banned and
/// accused it). Seen on real daemons after a link reset in tests/mitm.rs.
#[test]
fn an_answer_never_follows_a_newer_push_of_the_same_rumor() {
    let key = ClusterKey::from_bytes([5; 32]);
    let mut nodes = [node(1, &key), node(2, &key)];
    let mut now = Time::ZERO;
    let mut blamed = Vec::new();
    for (i, direction, remote) in [
        (1, Direction::Inbound, "10.0.0.1:50000"),
        (0, Direction::Outbound, "10.0.0.2:1450"),
    ] {
        let remote = Addr::from(remote);
        let out = nodes[i].handle(
            now,
            Event::Connected {
                conn: LINK,
                direction,
                remote,
            },
        );
        blamed.extend(deliver(&mut nodes, now, i, out));
    }
    // A few quiet gossip rounds: linked, synced, each holding the other's advertisement.
    for _ in 0..40 {
        now = now + Duration::from_millis(50);
        for i in 0..2 {
            let out = nodes[i].handle(now, Event::Tick);
            blamed.extend(deliver(&mut nodes, now, i, out));
        }
    }
    assert_eq!(nodes[0].peers().len(), 1);
    assert!(blamed.is_empty(), "{blamed:?}");
    let seq = nodes[0].status().seq;

    // Node 2 says it stores nothing (as a controller that has just restarted does); node 1
    // handles that digest two periods later, when its gossip round is overdue.
    let digest = LinkMessage::Digest(Digest {
        after: None,
        upto: None,
        ids: Vec::new(),
        reply: false,
    });
    let sealed = nodes[1].inject(now, LINK, &digest);
    now = now + PERIOD * 2;
    let mut to_node1 = Vec::new();
    for action in sealed {
        if let Action::Send { bytes, .. } = action {
            to_node1.extend(nodes[0].handle(now, Event::Received { conn: LINK, bytes }));
        }
    }
    assert!(
        nodes[0].status().seq > seq,
        "the gossip round ran in the same call"
    );
    let blamed = deliver(&mut nodes, now, 0, to_node1);
    assert!(blamed.is_empty(), "node 2 blamed honest node 1: {blamed:?}");
}

/// Opens connection `conn` from node 1 (dialer) to node 0 (listener); returns what each
/// says first.
fn open(nodes: &mut [Node; 2], now: Time, conn: ConnId) -> (Vec<Action>, Vec<Action>) {
    let inbound = nodes[0].handle(
        now,
        Event::Connected {
            conn,
            direction: Direction::Inbound,
            remote: Addr::from("10.0.0.2:50000"),
        },
    );
    let outbound = nodes[1].handle(
        now,
        Event::Connected {
            conn,
            direction: Direction::Outbound,
            remote: Addr::from("10.0.0.1:1450"),
        },
    );
    (inbound, outbound)
}

/// Hands `node` the bytes that `actions` send on `conn` (one step, no answers delivered);
/// returns what it did in reply.
fn hand_over(node: &mut Node, now: Time, conn: ConnId, actions: Vec<Action>) -> Vec<Action> {
    let mut replies = Vec::new();
    for action in actions {
        if let Action::Send { conn: on, bytes } = action
            && on == conn
        {
            replies.extend(node.handle(now, Event::Received { conn, bytes }));
        }
    }
    replies
}

/// A handshake in flight when its peer gets banned: the listener checked the key at the
/// hello (not banned yet) and not again at the `Finish`, so the link comes up with a banned
/// key. The same holds for a key evicted between hello and `Finish`.
#[test]
fn a_peer_banned_during_a_handshake_does_not_get_linked() {
    let key = ClusterKey::from_bytes([6; 32]);
    // Node 0 honest (listener on both connections), node 1 the attacker (dialer).
    let mut nodes = [node(1, &key), node(2, &key)];
    let now = Time::ZERO;
    let second = ConnId(2);
    // First connection: linked.
    let (inbound, outbound) = open(&mut nodes, now, LINK);
    deliver(&mut nodes, now, 0, inbound);
    deliver(&mut nodes, now, 1, outbound);
    assert_eq!(nodes[0].peers().len(), 1);
    // Second connection: the hello reaches node 0, which answers with its welcome (held).
    let (_, hello) = open(&mut nodes, now, second);
    let welcome = hand_over(&mut nodes[0], now, second, hello);
    // Meanwhile node 1 sends garbage on the first link until node 0 bans it.
    for _ in 0..nodes[0].config().reject_threshold {
        let garbage = nodes[1].inject_sealed(now, LINK, b"not a message");
        deliver(&mut nodes, now, 1, garbage);
    }
    assert_eq!(nodes[0].bans().len(), 1, "banned");
    assert!(nodes[0].peers().is_empty(), "first link closed");
    // The welcome reaches node 1, whose finish reaches node 0.
    let finish = hand_over(&mut nodes[1], now, second, welcome);
    hand_over(&mut nodes[0], now, second, finish);
    assert!(
        nodes[0].peers().is_empty(),
        "linked with a banned key: {:?}",
        nodes[0].peers()
    );
}
