//! The simulator's network model and faults, each checked on a small cluster: crashes
//! and restarts, cuts that stall links until the heartbeat ends them, the three loss
//! modes; a joiner's sync; and regressions for three core bugs the simulator found
//! (coalesced leave and bye, partitions that never re-merged, `max_peers` exceeded at boot).

mod common;

use std::time::Duration;

use overlay_core::{CloseReason, Config, MemberState, NodeId, Notification};
use overlay_transport_mem::experiment::addr;
use overlay_transport_mem::{LossMode, Sim, SlotId, SlotState};

use common::*;

fn down_reasons(sim: &Sim, slot: SlotId) -> Vec<CloseReason> {
    sim.log()
        .iter()
        .filter(|l| l.slot == slot)
        .filter_map(|l| match &l.note {
            Notification::PeerDown { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn recorded(seed: u64) -> overlay_transport_mem::SimParams {
    let mut p = params(seed);
    p.record = true;
    p
}

#[test]
fn a_crash_resets_peers_and_a_restart_rejoins_with_the_same_identity() {
    let mut sim = cluster(1, 5, 0, recorded(1), &|_, _| {});
    sim.run_for(PERIOD * 3);
    let peers = sim.peer_slots(2);
    assert!(!peers.is_empty());
    let fingerprint = sim.identity(2).fingerprint();
    sim.crash(2);
    assert_eq!(sim.state(2), SlotState::Crashed);
    sim.run_for(Duration::from_millis(100));
    for p in peers {
        assert!(
            down_reasons(&sim, p).contains(&CloseReason::Lost),
            "slot {p} saw the reset"
        );
    }
    sim.run_for(PERIOD * 6);
    let id = sim.config(2).node_id;
    for s in sim.running() {
        assert!(!reaches(&sim, s, id), "slot {s} still reaches it");
    }
    sim.restart(2).unwrap();
    assert_eq!(sim.incarnation(2), 1);
    assert_eq!(sim.node(2).unwrap().fingerprint(), fingerprint);
    converged(&mut sim, &|_| true, PERIOD * 30).unwrap();
    assert_eq!(sim.node(2).unwrap().status().members, 5);
}

#[test]
fn a_cut_stalls_a_link_until_the_heartbeat_closes_it() {
    let mut sim = cluster(2, 4, 1, recorded(2), &|_, _| {});
    sim.run_for(PERIOD * 3);
    assert!(sim.peer_slots(1).contains(&2));
    sim.cut(1, 2);
    sim.run_for(PERIOD * 5);
    assert!(sim.stats().stalls > 0);
    assert!(!sim.peer_slots(1).contains(&2), "the stalled link is gone");
    assert!(down_reasons(&sim, 1).contains(&CloseReason::HeartbeatTimeout));
    sim.uncut(1, 2);
    converged(&mut sim, &|_| true, PERIOD * 90).unwrap();
}

#[test]
fn a_link_reset_and_made_again_is_not_advertised() {
    let mut p = recorded(7);
    p.keep_frames = true;
    let mut sim = cluster(7, 5, 0, p, &|_, _| {});
    sim.run_for(PERIOD * 5);
    let peer = sim.peer_slots(0)[0];
    // A redial takes longer than the shortest hold (100 ms): two latencies to connect,
    // then the handshake's round trips.
    sim.set_latency(0, peer, Duration::from_millis(60));
    let seqs = |sim: &Sim| [0, peer].map(|s| sim.node(s).map(|n| n.status().seq));
    let before = seqs(&sim);
    // Replayed frames fail node 0's hop authentication until it resets the link (three in
    // a row, written at once so that no good frame comes between them).
    for _ in 0..3 {
        assert!(sim.replay_frame(peer, 0));
    }
    sim.run_for(PERIOD * 3);
    assert!(down_reasons(&sim, 0).contains(&CloseReason::HopAuthFailures));
    assert!(sim.peer_slots(0).contains(&peer), "both ends redialed");
    assert_eq!(seqs(&sim), before, "neither end advertised the reset");
    converged(&mut sim, &|_| true, PERIOD * 10).unwrap();
}

#[test]
fn peers_at_capacity_that_lose_their_links_get_them_back_and_keep_their_slots() {
    // A ring where every node is at max_peers. Node 0 stalls past its peers' heartbeat
    // timeout: they close their links and redial it, it redials them when it wakes, and
    // each of them would otherwise fill the slot with a random candidate meanwhile.
    let full = |_: usize, c: &mut Config| {
        c.max_peers = 2;
        c.target_peers = Some(2);
    };
    let mut sim = cluster(9, 6, 0, recorded(9), &full);
    sim.run_for(PERIOD * 5);
    let ring = |sim: &Sim| {
        let sorted = |mut v: Vec<SlotId>| {
            v.sort_unstable();
            v
        };
        (0..6)
            .map(|s| sorted(sim.peer_slots(s)))
            .collect::<Vec<_>>()
    };
    let seqs = |sim: &Sim| {
        (0..6)
            .map(|s| sim.node(s).map(|n| n.status().seq))
            .collect::<Vec<_>>()
    };
    let before = (ring(&sim), seqs(&sim));
    sim.stall(
        0,
        sim.config(1).heartbeat_timeout() + Duration::from_millis(300),
    );
    sim.run_for(PERIOD * 4);
    let downs: Vec<CloseReason> = (0..6).flat_map(|s| down_reasons(&sim, s)).collect();
    assert!(downs.contains(&CloseReason::HeartbeatTimeout), "{downs:?}");
    assert_eq!(
        (ring(&sim), seqs(&sim)),
        before,
        "the same ring, and no advert"
    );
    converged(&mut sim, &|_| true, PERIOD * 10).unwrap();
}

#[test]
fn a_crashed_peer_is_advertised_lost_once_its_redial_fails() {
    let mut sim = cluster(8, 5, 0, recorded(8), &|_, _| {});
    sim.run_for(PERIOD * 5);
    let peers = sim.peer_slots(2);
    let id = sim.config(2).node_id;
    sim.crash(2);
    // A reset, a redial refused after two latencies (at most 100 ms), the shortest hold.
    sim.run_for(Duration::from_millis(400));
    for p in peers {
        let listed = sim.node(p).and_then(|n| n.member(sim.config(p).node_id));
        let peers_listed = listed
            .and_then(|m| m.profile.peers.clone())
            .unwrap_or_default();
        assert!(
            !peers_listed.contains(&id),
            "slot {p} still advertises the crashed peer"
        );
    }
}

fn with_loss(mode: LossMode) -> Sim {
    let mut p = recorded(3);
    p.net.loss = 0.2;
    p.net.loss_mode = mode;
    let mut sim = cluster(3, 5, 4, p, &|_, _| {});
    sim.run_for(PERIOD * 8);
    sim.set_loss(0.0, mode);
    sim
}

fn rejects(sim: &Sim, label: &str) -> u64 {
    (0..sim.len())
        .filter_map(|s| sim.node(s))
        .map(|n| n.metrics().rejects.get(label).copied().unwrap_or(0))
        .sum()
}

#[test]
fn dropped_frames_break_the_hop_chain_and_links_recover() {
    let mut sim = with_loss(LossMode::Drop);
    assert!(sim.stats().frames_lost > 0);
    assert!(
        rejects(&sim, "hop_auth") > 0,
        "a lost frame fails the next one's hop auth"
    );
    converged(&mut sim, &|_| true, PERIOD * 90).unwrap();
}

#[test]
fn reset_and_retransmit_losses_never_fail_hop_auth() {
    for mode in [LossMode::Reset, LossMode::Retransmit { rto_ms: 200 }] {
        let mut sim = with_loss(mode);
        assert!(sim.stats().frames_lost > 0);
        assert_eq!(rejects(&sim, "hop_auth"), 0, "{mode:?}");
        if mode == LossMode::Reset {
            assert!(sim.stats().resets > 0);
        }
        converged(&mut sim, &|_| true, PERIOD * 90).unwrap();
    }
}

#[test]
fn the_trace_hash_tells_seeds_apart() {
    let digest = |seed| {
        let mut sim = cluster(4, 4, 2, params(seed), &|_, _| {});
        sim.run_for(PERIOD * 2);
        sim.trace().digest()
    };
    assert_eq!(digest(9), digest(9));
    assert_ne!(digest(9), digest(10));
}

/// Regression (core bug found here, fixed in core 7baf202): `Node::leave` sends its leave
/// rumor and a `Bye` back to back; when both arrived in one `Received` (a TCP read), the
/// link was closed on the `Bye` before the batch was handled, and the leave was lost.
#[test]
fn a_leave_is_learned_when_it_shares_a_read_with_the_bye() {
    let mut p = params(15_154_412_053_829_022_746);
    p.coalesce_reads = true;
    let mut sim = cluster(15_154_412_053_829_022_746, 4, 1, p, &|_, _| {});
    sim.run_for(PERIOD * 3);
    let id = sim.config(0).node_id;
    sim.leave(0);
    sim.run_for(PERIOD);
    for s in sim.running() {
        assert_eq!(
            member_state(&sim, s, id),
            Some(MemberState::Left),
            "slot {s}"
        );
    }
}

/// Regression (core limitation found here, fixed in core e6d05c9): after a partition longer
/// than the advertisement age each side forgot the other and re-formed its overlay at
/// `target_peers`; once healed nobody dialed across and the overlay stayed split.
#[test]
fn a_long_partition_re_merges_after_healing() {
    let mut sim = cluster(5, 16, 4, params(5), &|_, c| c.max_peers = 4);
    sim.run_for(PERIOD * 3);
    converged(&mut sim, &|_| true, PERIOD * 10).unwrap();
    sim.partition(&[(0..8).collect()]);
    sim.run_for(PERIOD * 8);
    sim.heal();
    converged(&mut sim, &|_| true, PERIOD * 120).unwrap();
}

/// Regression (core bug found here, since fixed in core): `max_peers` was exceeded at boot
/// when a hello arrived while the node's own outbound dial was still connecting (the
/// capacity check counted open connections, not dials in progress).
#[test]
fn max_peers_holds_while_dials_are_in_flight() {
    let seed = 15_913_608_310_381_640_784;
    let mut sim = cluster(seed, 13, 4, params(seed), &|_, c| {
        c.max_peers = 1;
        c.max_members = 9;
    });
    let until = sim.now() + PERIOD * 3;
    while sim.next_due().is_some_and(|t| t <= until) {
        sim.step();
        for &slot in sim.handled() {
            let peers = sim.node(slot).unwrap().peers().len();
            assert!(peers <= 1, "slot {slot} at {}: {peers} peers", sim.now());
        }
    }
}

/// A joiner that links to several members at once receives the store about once: each
/// rumor their digests list is pulled from one link only (before pulls, every peer sent it
/// everything it lacked: one copy of the store per link).
#[test]
fn a_joiner_linked_to_several_members_receives_the_store_once() {
    let n = 16;
    // A long period: no member re-advertises while the joiner syncs.
    let slow = Duration::from_secs(30);
    // One latency for every link: the joiner's links come up, and their digests cross, at
    // the same moment.
    let mut same_latency = params(3);
    same_latency.net.latency_max = same_latency.net.latency_min;
    let mut sim = cluster(3, n, 3, same_latency, &|_, c| c.gossip_period = slow);
    // Gained peers are advertised after a quarter period (7.5 s): then every member is
    // reachable everywhere.
    sim.run_for(Duration::from_secs(10));
    let members = sim.node(0).unwrap().status().members;
    assert_eq!(members, n, "the cluster knows itself");
    let mut joiner = Config::new(NodeId(n as u32 + 1), asn(n), addr(n), vec![key()]);
    joiner.gossip_period = slow;
    joiner.bootstrap = (0..6).map(addr).collect();
    let slot = sim.add(joiner, keys().get(n)).unwrap();
    sim.run_for(Duration::from_millis(500));
    let node = sim.node(slot).unwrap();
    let links = node.peers().len();
    assert!(links >= 4, "linked to {links} peers");
    let stored = node.sizes().rumors;
    // Its own first advert waits the gain's hold-down.
    assert_eq!(stored, n, "the joiner has every member's advert");
    // The store once, not once per link (5 links would be 80 copies).
    let received = node.metrics().rumors_in as usize;
    assert!(
        received <= n + n / 4,
        "{received} rumor copies for {n} members over {links} links",
    );
    // Once its peers list it (after their gains' hold-down), it reaches every member.
    sim.run_for(Duration::from_secs(10));
    let members = sim.node(slot).unwrap().status().members;
    assert_eq!(members, n + 1, "the joiner reaches every member");
}
