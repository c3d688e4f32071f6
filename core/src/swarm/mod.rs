//! The swarm owns the connections and the bounded set of direct peers: framing per
//! connection, driving each connection's handshake (the checks themselves are in
//! `handshake`), capacity refusals with peer lists, sealed links, heartbeats,
//! duplicate-link resolution, and when to dial (what to dial is the `dialing` table's).

use std::collections::BTreeMap;
use std::time::Duration;

use rand_core::CryptoRng;
use x25519_dalek::StaticSecret;

mod handshaking;

use crate::dialing::DialTable;
use crate::event::{Action, CloseReason, Direction, Metrics, Outbox, RejectReason};
use crate::handshake::{
    Io, Me, PeerInfo, Phase, SeenHellos, hello_identity, hello_proof, send_plain,
};
use crate::identity::Fingerprint;
use crate::scheduler::Time;
use crate::wire::{
    Addr, ConnId, FrameDecoder, Handshake, Hello, LINK_MESSAGE_KINDS, LinkMessage,
    from_json_versioned, to_json,
};

/// Largest handshake frame accepted before a peer is authenticated.
pub(crate) const MAX_HANDSHAKE_FRAME: usize = 16 * 1024;
/// Consecutive hop-authentication failures after which a link is reset.
pub(crate) const HOP_FAILURE_LIMIT: u32 = 3;

/// Limits the swarm works with.
#[derive(Clone, Debug)]
pub(crate) struct SwarmPolicy {
    /// Hard cap on established plus handshaking peers.
    pub max_peers: usize,
    /// Peers the node dials towards.
    pub target_peers: usize,
    /// Largest frame body on an established link.
    pub max_frame_bytes: usize,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Silence after which a link is closed.
    pub heartbeat_timeout: Duration,
    /// How far a hello's issue time may be from this node's clock.
    pub hello_window: Duration,
}

/// What the swarm reports to the node.
#[derive(Debug)]
pub(crate) enum SwarmEvent {
    /// A handshake completed.
    PeerUp {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: PeerInfo,
    },
    /// A message arrived on an established link.
    Message {
        /// The connection.
        conn: ConnId,
        /// The peer.
        peer: PeerInfo,
        /// The message.
        msg: LinkMessage,
    },
    /// A frame or message was rejected.
    Rejected {
        /// The connection.
        conn: ConnId,
        /// The peer, when authenticated (only then can it be blamed).
        peer: Option<PeerInfo>,
        /// Why.
        reason: RejectReason,
    },
    /// A connection ended (closed by us: the close action is already out; or lost).
    Closed {
        /// The connection.
        conn: ConnId,
        /// The peer, if the link was established.
        peer: Option<PeerInfo>,
        /// Why.
        reason: CloseReason,
    },
}

#[derive(Clone)]
struct Conn {
    direction: Direction,
    remote: Addr,
    decoder: FrameDecoder,
    phase: Phase,
    last_rx: Time,
    last_tx: Time,
}

impl Conn {
    fn peer(&self) -> Option<&PeerInfo> {
        match &self.phase {
            Phase::Established { peer, .. } => Some(peer),
            _ => None,
        }
    }
}

/// Connections, links and the dial table.
#[derive(Clone)]
pub(crate) struct Swarm {
    policy: SwarmPolicy,
    conns: BTreeMap<ConnId, Conn>,
    table: DialTable,
    seen_hellos: SeenHellos,
    /// Frames, bytes and handshakes counted here.
    metrics: Metrics,
}

impl Swarm {
    /// A swarm that listens on `listen` and starts from the `bootstrap` addresses.
    pub(crate) fn new(policy: SwarmPolicy, listen: &Addr, bootstrap: &[Addr]) -> Self {
        let hello_window = policy.hello_window;
        Swarm {
            policy,
            conns: BTreeMap::new(),
            table: DialTable::new(listen, bootstrap),
            seen_hellos: SeenHellos::new(hello_window),
            metrics: Metrics::default(),
        }
    }

    /// Runs with a new policy and bootstrap list from now on (a reconfiguration): links
    /// already up stay, whatever the new `max_peers`; the hello replay window keeps its
    /// length.
    pub(crate) fn reconfigure(&mut self, policy: SwarmPolicy, bootstrap: &[Addr]) {
        self.policy = policy;
        self.table.set_bootstrap(bootstrap);
    }

    /// Adds a dial candidate (from a peer list or a member's advertisement).
    pub(crate) fn learn<R: CryptoRng + ?Sized>(&mut self, addr: &Addr, now: Time, rng: &mut R) {
        self.table.learn(addr, now, rng);
    }

    /// A member with key `key` advertised `addr`: a dial candidate, and (if that address
    /// never led to a node) taken to lead to that member.
    pub(crate) fn advertised<R: CryptoRng + ?Sized>(
        &mut self,
        addr: &Addr,
        key: Fingerprint,
        now: Time,
        rng: &mut R,
    ) {
        self.table.learn(addr, now, rng);
        self.table.advertised(addr, key);
    }

    /// Forgets a candidate address (its node left or was evicted), unless it is a bootstrap.
    pub(crate) fn forget(&mut self, addr: &Addr) {
        self.table.forget(addr);
    }

    fn is_connected_to(&self, addr: &Addr) -> bool {
        // An address that led to a node before (perhaps an alias: a DNS name, a NAT or
        // proxy address) counts as connected while a link to that node is up.
        let reached = self.table.reached(addr);
        self.conns.values().any(|c| {
            &c.remote == addr
                || c.peer()
                    .is_some_and(|p| &p.listen == addr || Some(p.fingerprint) == reached)
        })
    }

    /// Dials candidates while the node has fewer than the target number of peers, counting
    /// the `reserved` slots of peers expected back as taken.
    pub(crate) fn maintain<R: CryptoRng + ?Sized>(
        &mut self,
        now: Time,
        reserved: usize,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        let busy = self.dial_budget_used() + reserved;
        let Some(room) = self
            .policy
            .target_peers
            .checked_sub(busy)
            .filter(|&r| r > 0)
        else {
            return;
        };
        let mut eligible = self.table.eligible(now, |a| self.is_connected_to(a));
        // Partial Fisher-Yates: a random sample keeps the overlay random.
        for i in 0..room.min(eligible.len()) {
            let j = i + (rng.next_u64() as usize) % (eligible.len() - i);
            eligible.swap(i, j);
        }
        for addr in eligible.into_iter().take(room) {
            self.dial(addr, out);
        }
    }

    /// Asks the embedder to dial `addr` unless that would exceed `max_peers`.
    pub(crate) fn dial(&mut self, addr: Addr, out: &mut Outbox) {
        if self.dial_budget_used() < self.policy.max_peers && self.table.start(&addr) {
            out.push(Action::Connect { addr });
        }
    }

    /// Tries a member that failed (or was cut off by a partition) again, even when the node
    /// has its target number of peers (up to `max_peers`), respecting the address's
    /// backoff: if the partition healed, the new link's sync re-merges the two sides.
    pub(crate) fn reconnect<R: CryptoRng + ?Sized>(
        &mut self,
        addr: &Addr,
        now: Time,
        rng: &mut R,
        out: &mut Outbox,
    ) {
        self.table.learn(addr, now, rng);
        let ready = self.table.ready(addr, now);
        if ready && !self.is_connected_to(addr) {
            self.dial(addr.clone(), out);
        }
    }

    /// Dials one bootstrap address whose node this node does not reach through the overlay
    /// (`reached` says which keys it does; an address that never led to a node counts as
    /// not reached), even when it has its target number of peers (up to `max_peers`),
    /// respecting the address's backoff. Parts of a network that formed apart (a bootstrap
    /// peer was not listening yet when this node started, or was never picked, and each
    /// part then filled its peers from within) merge this way. A bootstrap whose node is
    /// reached through the overlay is not dialed, so seeds that everybody lists are not
    /// loaded by everybody.
    pub(crate) fn rejoin<R: CryptoRng + ?Sized>(
        &mut self,
        now: Time,
        rng: &mut R,
        out: &mut Outbox,
        reached: impl Fn(&Fingerprint) -> bool,
    ) {
        let due = self
            .table
            .unreached_bootstrap(now, |a| self.is_connected_to(a), reached);
        if due.is_empty() {
            return;
        }
        let pick = (rng.next_u64() % due.len() as u64) as usize;
        if let Some(addr) = due.into_iter().nth(pick) {
            self.dial(addr, out);
        }
    }

    /// Whether the node has fewer established or pending peers than `min`.
    pub(crate) fn below(&self, min: usize) -> bool {
        self.dial_budget_used() < min
    }

    /// Connections that count against dialing: established links, this node's own
    /// handshakes and dials. Inbound connections still unauthenticated do not, so that
    /// strangers holding connections open cannot stop this node from dialing out.
    fn dial_budget_used(&self) -> usize {
        let pending_inbound = self
            .conns
            .values()
            .filter(|c| c.direction == Direction::Inbound && c.peer().is_none())
            .count();
        self.conns.len() - pending_inbound + self.table.in_flight()
    }

    /// Whether another unauthenticated inbound connection from `remote` is refused: at
    /// most `max_peers + 8` in all, and [`PENDING_PER_HOST`] from one host.
    fn pending_full(&self, remote: &Addr) -> bool {
        let host = host_of(remote);
        let pending = self
            .conns
            .values()
            .filter(|c| c.direction == Direction::Inbound && c.peer().is_none());
        let (all, same) = pending.fold((0, 0), |(all, same), c| {
            (all + 1, same + usize::from(host_of(&c.remote) == host))
        });
        // Loopback is one host for many controllers in tests and single-host clusters.
        let loopback = host.starts_with("127.") || host == "[::1]" || host == "localhost";
        all >= self.policy.max_peers + 8 || (same >= PENDING_PER_HOST && !loopback)
    }

    /// A dial failed.
    pub(crate) fn connect_failed<R: CryptoRng + ?Sized>(
        &mut self,
        addr: &Addr,
        now: Time,
        rng: &mut R,
    ) {
        self.table.ended(addr);
        self.table.backoff(addr, now, rng);
    }

    /// A connection opened. Outbound ones start the handshake with a hello.
    pub(crate) fn opened(
        &mut self,
        conn: ConnId,
        direction: Direction,
        remote: Addr,
        me: &Me<'_>,
        io: &mut Io<'_>,
    ) -> bool {
        let (now, out) = (io.now, &mut *io.out);
        if self.conns.contains_key(&conn) {
            return false;
        }
        // Bound connections that have not authenticated yet (slow or idle dialers), in all
        // and per host.
        if direction == Direction::Inbound && self.pending_full(&remote) {
            out.push(Action::Close {
                conn,
                reason: CloseReason::AtCapacity,
            });
            return false;
        }
        let phase = match direction {
            Direction::Inbound => Phase::AwaitHello,
            Direction::Outbound => {
                self.table.ended(&remote);
                let secret = StaticSecret::random_from_rng(io.rng);
                let hello = hello_identity(me, now, &secret, me.keyring.primary(), io.rng);
                let proof = hello_proof(me.keyring.primary(), &hello);
                send_plain(
                    conn,
                    &Handshake::Hello(Hello {
                        identity: hello.clone(),
                        proof,
                    }),
                    out,
                );
                Phase::AwaitWelcome { secret, hello }
            }
        };
        self.conns.insert(
            conn,
            Conn {
                direction,
                remote,
                decoder: FrameDecoder::new(MAX_HANDSHAKE_FRAME.min(self.policy.max_frame_bytes)),
                phase,
                last_rx: now,
                last_tx: now,
            },
        );
        true
    }

    /// Whether the connection is still handshaking.
    pub(crate) fn is_handshaking(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.peer().is_none())
    }

    /// Bytes arrived: buffer them for [`Swarm::next_frame`].
    /// Only an authenticated frame counts as a sign of life (see `frame`): bytes trickled
    /// without ever completing one do not keep a link open.
    pub(crate) fn received(&mut self, conn: ConnId, bytes: &[u8]) {
        if let Some(c) = self.conns.get_mut(&conn) {
            self.metrics.bytes_in += bytes.len() as u64;
            c.decoder.push(bytes);
        }
    }

    /// Handles the next complete frame buffered on `conn` and returns what it caused;
    /// `None` when no frame is complete (or the connection is gone). The node handles each
    /// frame's events before the next frame, so a close or a ban takes effect at once.
    pub(crate) fn next_frame(
        &mut self,
        conn: ConnId,
        me: &Me<'_>,
        io: &mut Io<'_>,
    ) -> Option<Vec<SwarmEvent>> {
        let c = self.conns.get_mut(&conn)?;
        let mut events = Vec::new();
        let frame = match c.decoder.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(e) => {
                events.push(SwarmEvent::Rejected {
                    conn,
                    peer: c.peer().cloned(),
                    reason: e.into(),
                });
                events.extend(self.close(conn, CloseReason::FrameTooLarge, io.out));
                return Some(events);
            }
        };
        self.metrics.frames_in += 1;
        if let Some(done) = self.frame(conn, &frame, me, io, &mut events) {
            events.extend(self.close(conn, done, io.out));
        }
        Some(events)
    }

    /// Handles one frame; returns a reason when the connection must close.
    fn frame(
        &mut self,
        conn: ConnId,
        frame: &[u8],
        me: &Me<'_>,
        io: &mut Io<'_>,
        events: &mut Vec<SwarmEvent>,
    ) -> Option<CloseReason> {
        match self.conns.get(&conn)?.phase {
            Phase::Established { .. } => self.link_frame(conn, frame, io.now, events),
            _ => self.handshake_frame(conn, frame, me, io, events),
        }
    }

    /// A sealed frame of an established link: opened with the link's next nonce, then read
    /// as a link message. A few failures in a row reset the link.
    fn link_frame(
        &mut self,
        conn: ConnId,
        frame: &[u8],
        now: Time,
        events: &mut Vec<SwarmEvent>,
    ) -> Option<CloseReason> {
        let c = self.conns.get_mut(&conn)?;
        let Phase::Established {
            peer,
            rx,
            hop_failures,
            ..
        } = &mut c.phase
        else {
            return None;
        };
        let Ok(plain) = rx.open(frame) else {
            *hop_failures += 1;
            events.push(SwarmEvent::Rejected {
                conn,
                peer: Some(peer.clone()),
                reason: RejectReason::HopAuth,
            });
            return (*hop_failures >= HOP_FAILURE_LIMIT).then_some(CloseReason::HopAuthFailures);
        };
        *hop_failures = 0;
        c.last_rx = now;
        let peer = peer.clone();
        match from_json_versioned::<LinkMessage>(&plain, None, &LINK_MESSAGE_KINDS) {
            Ok(LinkMessage::Bye { reason }) => {
                return Some(CloseReason::Bye(crate::wire::clipped(&reason)));
            }
            Ok(msg) => events.push(SwarmEvent::Message { conn, peer, msg }),
            Err(e) => events.push(SwarmEvent::Rejected {
                conn,
                peer: Some(peer),
                reason: e.into(),
            }),
        }
        None
    }

    /// Seals and sends a message on an established link.
    pub(crate) fn send(&mut self, now: Time, conn: ConnId, msg: &LinkMessage, out: &mut Outbox) {
        self.send_sealed(now, conn, &to_json(msg), out);
    }

    /// Seals and sends a plaintext frame body on an established link (at most
    /// `max_frame_bytes`).
    pub(crate) fn send_sealed(&mut self, now: Time, conn: ConnId, plain: &[u8], out: &mut Outbox) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Phase::Established { tx, .. } = &mut c.phase else {
            return;
        };
        if plain.len() > self.policy.max_frame_bytes {
            return;
        }
        let bytes = tx.seal_frame(plain);
        self.metrics.frames_out += 1;
        self.metrics.bytes_out += bytes.len() as u64;
        c.last_tx = now;
        out.push(Action::Send { conn, bytes });
    }

    /// Closes a connection: emits the close action and forgets it.
    pub(crate) fn close(
        &mut self,
        conn: ConnId,
        reason: CloseReason,
        out: &mut Outbox,
    ) -> Option<SwarmEvent> {
        let c = self.conns.remove(&conn)?;
        out.push(Action::Close {
            conn,
            reason: reason.clone(),
        });
        Some(SwarmEvent::Closed {
            conn,
            peer: c.peer().cloned(),
            reason,
        })
    }

    /// The embedder reports the connection gone.
    pub(crate) fn lost(&mut self, conn: ConnId) -> Option<SwarmEvent> {
        let c = self.conns.remove(&conn)?;
        Some(SwarmEvent::Closed {
            conn,
            peer: c.peer().cloned(),
            reason: CloseReason::Lost,
        })
    }

    /// The node leaves: a bye on every link, then its close (nothing is reported back).
    pub(crate) fn leave(&mut self, now: Time, out: &mut Outbox) {
        for conn in self.link_ids() {
            let bye = LinkMessage::Bye {
                reason: "leaving".into(),
            };
            self.send(now, conn, &bye, out);
            self.close(conn, CloseReason::Leaving, out);
        }
    }

    /// Sends heartbeats on idle links and closes links silent for the heartbeat timeout.
    pub(crate) fn heartbeat(&mut self, now: Time, out: &mut Outbox) -> Vec<SwarmEvent> {
        let hb = self.policy.heartbeat;
        let mut events = Vec::new();
        let links: Vec<(ConnId, Time, Time, bool)> = self
            .conns
            .iter()
            .filter_map(|(&id, c)| {
                let expired = c.peer()?.certified_until.is_some_and(|until| until < now);
                Some((id, c.last_rx, c.last_tx, expired))
            })
            .collect();
        for (conn, last_rx, last_tx, expired) in links {
            if expired {
                events.extend(self.close(conn, CloseReason::CertificateExpired, out));
            } else if now.since(last_rx) >= self.policy.heartbeat_timeout {
                events.extend(self.close(conn, CloseReason::HeartbeatTimeout, out));
            } else if now.since(last_tx) >= hb {
                self.send(now, conn, &LinkMessage::Heartbeat, out);
            }
        }
        events
    }

    /// Extends the certificate validity of the link to `fp` to `until` (a renewed
    /// certificate arrived in its advertisement).
    pub(crate) fn renew(&mut self, fp: &Fingerprint, until: Time) {
        for c in self.conns.values_mut() {
            if let Phase::Established { peer, .. } = &mut c.phase
                && peer.fingerprint == *fp
            {
                peer.certified_until = peer.certified_until.map(|old| old.max(until));
            }
        }
    }

    /// Established links, by connection.
    pub(crate) fn links(&self) -> impl Iterator<Item = (ConnId, &PeerInfo)> {
        self.conns
            .iter()
            .filter_map(|(&id, c)| c.peer().map(|p| (id, p)))
    }

    /// Connection ids of established links.
    pub(crate) fn link_ids(&self) -> Vec<ConnId> {
        self.links().map(|(id, _)| id).collect()
    }

    /// The connection of an established link to `fp`, if any.
    pub(crate) fn link_to(&self, fp: &Fingerprint) -> Option<ConnId> {
        self.links()
            .find(|(_, p)| &p.fingerprint == fp)
            .map(|(id, _)| id)
    }

    /// Open connections (established or handshaking).
    pub(crate) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Dial candidates known.
    pub(crate) fn candidates(&self) -> usize {
        self.table.len()
    }

    /// Frames, bytes and handshakes so far.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Bytes buffered in partial frames, summed over connections.
    pub(crate) fn buffered(&self) -> usize {
        self.conns.values().map(|c| c.decoder.buffered()).sum()
    }
}

/// Unauthenticated inbound connections accepted from one host at a time (loopback
/// excepted).
pub(crate) const PENDING_PER_HOST: usize = 4;

/// The host part of `ip:port` (`[v6]:port` keeps its brackets), or the whole address.
fn host_of(addr: &Addr) -> &str {
    addr.0.rsplit_once(':').map_or(&addr.0, |(host, _)| host)
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use crate::event::{CloseReason, Command, Event, Notification};
    use crate::testing::{Cluster, config, link};

    #[test]
    fn leaving_says_bye_on_every_link_and_then_closes_it() {
        let configs = vec![
            config(0, 100, vec![link(200, 1, 1)], &[]),
            config(1, 200, vec![], &[0]),
            config(2, 300, vec![], &[0]),
        ];
        let mut c = Cluster::new(configs);
        c.drive_for(3_000);
        assert!(c.linked(0, 1) && c.linked(0, 2));
        c.deliver(0, Event::Command(Command::Leave));
        c.drive();
        let closes: Vec<_> = c.closes.iter().filter(|(from, _)| *from == 0).collect();
        assert_eq!(closes.len(), 2, "{closes:?}");
        assert!(closes.iter().all(|(_, r)| *r == CloseReason::Leaving));
        for peer in [1, 2] {
            let told = c.notes(peer).any(|n| {
                matches!(n, Notification::PeerDown { reason: CloseReason::Bye(r), .. } if r == "leaving")
            });
            assert!(told, "node {peer} heard the bye before the close");
        }
        assert!(c.node(0).next_wakeup().is_none(), "no timers after leaving");
    }
}
