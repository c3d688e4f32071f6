//! A man in the middle between two real daemons on 127.0.0.1 (tests/common/proxy.rs), and
//! unauthenticated clients that send garbage or trickle their handshake. Every tampered
//! frame must be rejected by hop authentication, the link must survive what the chained
//! nonces allow (a replayed or injected frame) and be reset or closed otherwise, neither
//! daemon may crash or blame its peer, and the routes must come back to the expected table.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::proxy::{Fault, Proxy};
use common::{Cluster, cli, wait_for};
use overlay_transport_tcp::testing::topology;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(30);

/// Two controllers whose only link goes through a proxy: RC1 bootstraps from the proxy in
/// front of RC2, RC2 knows nobody. Both see each other's address in the handshake and are
/// connected to it, so neither dials the other directly while the link is up.
struct Mitm {
    c: Cluster,
    proxy: Proxy,
}

impl Mitm {
    fn start() -> Mitm {
        let key = overlay_core::ClusterKey::from_bytes([11; 32]).to_base64();
        let mut c = Cluster::new(topology::generated(2), "@every 500ms", &key);
        let target: SocketAddr = c.files[1].me.ip.parse().unwrap();
        let proxy = Proxy::start(target);
        c.files[0].connected_route_controllers[0].ip = proxy.addr.to_string();
        c.files[1].connected_route_controllers.clear();
        c.write(0);
        c.write(1);
        c.start_all();
        c.converge(&[true; 2], CONVERGE).unwrap();
        assert_eq!(proxy.accepted(), 1, "one link, through the proxy");
        let m = Mitm { c, proxy };
        // Sealed frames flow (gossip rounds, heartbeats).
        m.wait_relayed(0, 3);
        m
    }

    /// Waits until the proxy has handled `more` sealed frames after the first `after`.
    fn wait_relayed(&self, after: usize, more: usize) {
        let relayed = wait_for(CONVERGE, || {
            (self.proxy.sealed_frames() >= after + more).then_some(())
        });
        assert!(relayed.is_some(), "the link carries no frames");
    }

    fn count(&self, i: usize, name: &str) -> f64 {
        self.c.metric(i, name).unwrap_or(0.0)
    }

    fn hop_auth_rejects(&self, i: usize) -> f64 {
        self.count(i, HOP_AUTH)
    }

    fn peers_down(&self, i: usize) -> f64 {
        self.count(i, "overlay_peers_down_total")
    }

    /// Sets a one-shot fault and waits until the proxy has applied it.
    fn apply(&self, fault: Fault) {
        let before = self.proxy.applied();
        self.proxy.set(fault);
        let done = wait_for(CONVERGE, || (self.proxy.applied() > before).then_some(()));
        assert!(done.is_some(), "{fault:?} never applied");
    }

    /// Waits until controller `i`'s counter `name` reaches `at_least`.
    fn wait_count(&self, i: usize, name: &str, at_least: f64) {
        let reached = wait_for(CONVERGE, || (self.count(i, name) >= at_least).then_some(()));
        assert!(
            reached.is_some(),
            "RC{}: {name} = {} < {at_least}\n{}",
            i + 1,
            self.count(i, name),
            std::fs::read_to_string(self.c.log(i)).unwrap_or_default()
        );
    }

    /// Both daemons alive, nobody banned, accused or blamed, every member alive, and the
    /// routes back to the expected table.
    fn assert_recovered(&mut self) {
        self.c.converge(&[true; 2], CONVERGE).unwrap();
        for i in 0..2 {
            assert!(self.c.daemon(i).running(), "RC{} crashed", i + 1);
            assert_eq!(self.count(i, "overlay_bans_total"), 0.0);
            assert_eq!(self.count(i, "overlay_evictions_total"), 0.0);
            // A blamed rejection of an authenticated peer is logged with its node.
            let log = std::fs::read_to_string(self.c.log(i)).unwrap();
            let blamed: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("message rejected") && l.contains("node=Some("))
                .collect();
            assert!(blamed.is_empty(), "RC{} blamed its peer: {blamed:?}", i + 1);
            let members = self.c.api(i, "/v1/members").unwrap();
            let states: Vec<&Value> = members["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| &m["state"])
                .collect();
            assert_eq!(states, ["alive", "alive"], "RC{}", i + 1);
        }
    }
}

const HOP_AUTH: &str = "overlay_rejects_total{reason=\"hop_auth\"}";

#[test]
fn replayed_and_injected_frames_are_rejected_and_the_link_survives_until_three_in_a_row() {
    let mut m = Mitm::start();
    let down = [m.peers_down(0), m.peers_down(1)];

    // A replayed frame no longer matches the chained nonce: rejected, chain intact.
    m.apply(Fault::Replay);
    m.wait_count(1, HOP_AUTH, 1.0);
    // A good frame in between, or the next failures would be the 2nd and 3rd in a row.
    m.wait_relayed(m.proxy.sealed_frames(), 1);
    // Two injected frames of garbage: two more rejections, the chain still intact.
    m.apply(Fault::Garbage(2));
    m.wait_count(1, HOP_AUTH, 3.0);
    m.wait_relayed(m.proxy.sealed_frames(), 5);
    assert_eq!(m.hop_auth_rejects(1), 3.0, "later frames authenticate");
    assert_eq!(
        [m.peers_down(0), m.peers_down(1)],
        down,
        "the link survived"
    );
    assert_eq!(m.proxy.accepted(), 1, "no reconnection");
    m.assert_recovered();

    // Three failures in a row reset the link; the controllers link again.
    m.apply(Fault::Garbage(3));
    m.wait_count(1, HOP_AUTH, 6.0);
    m.wait_count(1, "overlay_peers_down_total", down[1] + 1.0);
    assert!(
        std::fs::read_to_string(m.c.log(1))
            .unwrap()
            .contains("link reset after hop authentication failures")
    );
    m.assert_recovered();
}

/// `fault` breaks the nonce chain: that frame and every later one fail hop
/// authentication, so RC2 resets the link after three of them (or by the heartbeat timeout
/// if fewer come within 1.5 s), both ends see it go, and the controllers link again.
fn the_chain_breaks_and_the_link_resets(fault: Fault) {
    let mut m = Mitm::start();
    m.apply(fault);
    m.wait_count(1, HOP_AUTH, 1.0);
    for i in 0..2 {
        m.wait_count(i, "overlay_peers_down_total", 1.0);
    }
    m.assert_recovered();
}

#[test]
fn a_flipped_bit_is_rejected_and_the_link_resets_and_recovers() {
    the_chain_breaks_and_the_link_resets(Fault::Flip);
}

#[test]
fn a_dropped_frame_breaks_the_nonce_chain_and_the_link_resets() {
    the_chain_breaks_and_the_link_resets(Fault::Drop);
}

#[test]
fn an_oversized_length_prefix_closes_the_connection_before_buffering() {
    let mut m = Mitm::start();
    m.apply(Fault::Oversize);
    m.wait_count(1, "overlay_rejects_total{reason=\"frame_too_large\"}", 1.0);
    m.wait_count(1, "overlay_peers_down_total", 1.0);
    assert!(
        std::fs::read_to_string(m.c.log(1))
            .unwrap()
            .contains("frame too large")
    );
    m.assert_recovered();
}

#[test]
fn a_half_open_link_is_closed_by_the_heartbeat_timeout() {
    let mut m = Mitm::start();
    // Nothing relayed, no close passed on: the ends only notice the silence. The first to
    // time out dials the other's advertised address; the other then drops the stuck link
    // as a duplicate (if its own timeout has not fired first).
    m.proxy.set(Fault::Hold);
    for i in 0..2 {
        m.wait_count(i, "overlay_peers_down_total", 1.0);
    }
    let logs: String = (0..2)
        .map(|i| std::fs::read_to_string(m.c.log(i)).unwrap())
        .collect();
    assert!(logs.contains("reason=heartbeat timeout"), "{logs}");
    // They link again around the stuck proxy.
    m.c.converge(&[true; 2], CONVERGE).unwrap();
    m.proxy.set(Fault::Pass);
    m.assert_recovered();
}

#[test]
fn a_trickled_link_is_reset_by_the_heartbeat_timeout_and_recovers() {
    let mut m = Mitm::start();
    let relayed = m.proxy.sealed_frames();
    // One byte every 100 ms: a frame never completes. Bytes alone are no sign of life
    // (only authenticated frames are), so RC2 drops the link after three heartbeat
    // intervals (1.5 s), and RC1 dials RC2's advertised address instead.
    m.proxy.set(Fault::Trickle);
    m.wait_count(1, "overlay_peers_down_total", 1.0);
    assert!(m.proxy.sealed_frames() <= relayed + 1, "stalled");
    assert!(
        std::fs::read_to_string(m.c.log(1))
            .unwrap()
            .contains("reason=heartbeat timeout")
    );
    m.c.converge(&[true; 2], CONVERGE).unwrap();
    m.proxy.set(Fault::Pass);
    m.assert_recovered();
}

#[test]
fn unauthenticated_garbage_and_slowloris_handshakes_are_closed_and_the_link_stays_up() {
    let mut m = Mitm::start();
    let target: SocketAddr = m.c.files[1].me.ip.parse().unwrap();
    let down = m.peers_down(1);

    // Garbage instead of a hello: closed at once.
    let mut garbage = TcpStream::connect(target).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    garbage.write_all(&[0, 0, 0, 8]).unwrap();
    garbage.write_all(b"\x93garbage").unwrap();
    let mut buf = [0u8; 64];
    let closed = matches!(garbage.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "garbage handshake not closed");

    // More slow connections than the core takes (max_peers + 8 = 18 unauthenticated ones;
    // from loopback, so the per-host cap does not apply), each sending one byte of a hello
    // every 500 ms: the extra ones are closed at once, the others at the handshake deadline
    // (10 s). The authenticated link is unhurt.
    let hello = b"\x00\x00\x01\x00{\"hello\":{\"identity\":";
    let mut slow: Vec<(TcpStream, Option<Duration>)> = (0..40)
        .map(|_| {
            let s = TcpStream::connect(target).unwrap();
            s.set_nonblocking(true).unwrap();
            (s, None)
        })
        .collect();
    let started = Instant::now();
    for sent in 0.. {
        let open = slow.iter().filter(|(_, closed)| closed.is_none()).count();
        if open == 0 || started.elapsed() > Duration::from_secs(20) {
            break;
        }
        for (s, closed) in slow.iter_mut().filter(|(_, closed)| closed.is_none()) {
            let mut probe = [0u8; 1];
            let gone = match s.read(&mut probe) {
                Ok(0) => true,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                Ok(_) => false,
            };
            let byte = [hello[sent.min(hello.len() - 1)]];
            if gone || s.write_all(&byte).is_err() {
                *closed = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let closed: Vec<Duration> = slow.iter().filter_map(|(_, c)| *c).collect();
    assert_eq!(closed.len(), 40, "slow handshakes still open after 20 s");
    let early = closed
        .iter()
        .filter(|c| **c < Duration::from_secs(5))
        .count();
    let at_deadline = closed
        .iter()
        .filter(|c| **c >= Duration::from_secs(9))
        .count();
    assert!(early >= 40 - 18, "over the cap, closed at once: {closed:?}");
    assert!(
        at_deadline >= 1,
        "the others held until the deadline: {closed:?}"
    );
    assert_eq!(m.peers_down(1), down, "the authenticated link stayed up");
    m.assert_recovered();
}

/// A bootstrap address that leads to a controller already linked under another address
/// (a DNS name, a NAT or proxy address; here the proxy, relaying faithfully) is not dialed
/// again and again. Found by these tests (a handshake and a `duplicate link` at every dial
/// tick), fixed in the core; kept as a regression test.
#[test]
fn a_bootstrap_alias_of_a_linked_controller_is_not_dialed_again_and_again() {
    let key = overlay_core::ClusterKey::from_bytes([12; 32]).to_base64();
    let mut c = Cluster::new(topology::generated(2), "@every 500ms", &key);
    // RC2 gets the smaller fingerprint, so the link RC2 dials wins every duplicate.
    let mut keys: Vec<(String, std::path::PathBuf)> = (0..2)
        .map(|k| {
            let path = c.dir.path().join(format!("key{k}.pem"));
            let out = cli(&["keygen", "--out", path.to_str().unwrap()]);
            (
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                path,
            )
        })
        .collect();
    keys.sort();
    std::fs::rename(&keys[0].1, c.dir.path().join("rc2.pem")).unwrap();
    std::fs::rename(&keys[1].1, c.dir.path().join("rc1.pem")).unwrap();
    // RC1 knows RC2 only through an alias (the proxy, relaying faithfully); RC2 dials RC1.
    let proxy = Proxy::start(c.files[1].me.ip.parse().unwrap());
    c.files[0].connected_route_controllers[0].ip = proxy.addr.to_string();
    c.write(0);
    c.start_all();
    c.converge(&[true; 2], CONVERGE).unwrap();
    let count = |c: &Cluster| c.metric(0, "overlay_handshakes_total").unwrap_or(0.0);
    let before = count(&c);
    std::thread::sleep(Duration::from_secs(5));
    let redials = count(&c) - before;
    assert!(
        redials <= 1.0,
        "{redials} handshakes in 5 s with a controller RC1 is linked to; proxy relayed {} connections",
        proxy.accepted()
    );
}
