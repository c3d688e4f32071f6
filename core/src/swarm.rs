//! The swarm owns the connections and the bounded set of direct peers: framing per
//! connection, driving each connection's handshake (the checks themselves are in
//! `handshake`), capacity refusals with peer lists, sealed links, heartbeats,
//! duplicate-link resolution, and the dial table (bootstrap, learned and member addresses)
//! with exponential backoff.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_core::CryptoRng;
use x25519_dalek::StaticSecret;

use crate::event::{Action, CloseReason, Direction, Metrics, RejectReason};
use crate::handshake::{
    Io, Me, PeerInfo, Phase, SeenHellos, Step, hello_identity, hello_proof, on_finish, on_hello,
    on_welcome, send_plain,
};
use crate::identity::{Fingerprint, TAG_LEN};
use crate::scheduler::Time;
use crate::wire::{
    Addr, ConnId, FrameDecoder, Handshake, Hello, LINK_MESSAGE_KINDS, LinkMessage, MAX_HELLO_PEERS,
    Refuse, check_addr, check_peer_list, from_json, from_json_versioned, to_json,
};

/// Largest handshake frame accepted before a peer is authenticated.
pub(crate) const MAX_HANDSHAKE_FRAME: usize = 16 * 1024;
/// Consecutive hop-authentication failures after which a link is reset.
pub(crate) const HOP_FAILURE_LIMIT: u32 = 3;
/// Most dial candidates remembered.
pub(crate) const MAX_CANDIDATES: usize = 256;
/// First reconnect backoff (short: at a cluster's start, peers begin listening within
/// moments of each other).
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest reconnect backoff.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(64);

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

#[derive(Debug, Clone)]
struct Candidate {
    failures: u32,
    next_try: Time,
    bootstrap: bool,
    /// The node this address led to last time it was dialed.
    reached: Option<Fingerprint>,
}

/// Connections, links and the dial table.
#[derive(Clone)]
pub(crate) struct Swarm {
    policy: SwarmPolicy,
    conns: BTreeMap<ConnId, Conn>,
    candidates: BTreeMap<Addr, Candidate>,
    dialing: BTreeSet<Addr>,
    own_addrs: BTreeSet<Addr>,
    /// New addresses learned so far (for the reservoir sample).
    learned: u64,
    seen_hellos: SeenHellos,
}

impl Swarm {
    /// A swarm that listens on `listen` and starts from the `bootstrap` addresses.
    pub(crate) fn new(policy: SwarmPolicy, listen: &Addr, bootstrap: &[Addr]) -> Self {
        let hello_window = policy.hello_window;
        let candidates = bootstrap
            .iter()
            .filter(|a| *a != listen && check_addr(a).is_ok())
            .map(|a| {
                let c = Candidate {
                    failures: 0,
                    next_try: Time::ZERO,
                    bootstrap: true,
                    reached: None,
                };
                (a.clone(), c)
            })
            .collect();
        Swarm {
            policy,
            conns: BTreeMap::new(),
            candidates,
            dialing: BTreeSet::new(),
            own_addrs: BTreeSet::from([listen.clone()]),
            learned: 0,
            seen_hellos: SeenHellos::new(hello_window),
        }
    }

    /// Adds a dial candidate (from a peer list or a member's advertisement). The table is
    /// a reservoir sample: once full, the n-th new address replaces a random entry with
    /// probability `MAX_CANDIDATES / n`, so it stays a uniform sample of the members seen
    /// and dialing from it keeps the overlay random. Bootstrap addresses always stay.
    pub(crate) fn learn<R: CryptoRng + ?Sized>(&mut self, addr: &Addr, now: Time, rng: &mut R) {
        if self.own_addrs.contains(addr)
            || self.candidates.contains_key(addr)
            || check_addr(addr).is_err()
        {
            return;
        }
        self.learned = self.learned.saturating_add(1);
        if self.candidates.len() >= MAX_CANDIDATES {
            if rng.next_u64() % self.learned >= MAX_CANDIDATES as u64 {
                return;
            }
            let replaceable = self
                .candidates
                .iter()
                .filter(|(a, c)| !c.bootstrap && !self.dialing.contains(*a))
                .count();
            let pick = (rng.next_u64() % replaceable.max(1) as u64) as usize;
            let victim = self
                .candidates
                .iter()
                .filter(|(a, c)| !c.bootstrap && !self.dialing.contains(*a))
                .nth(pick)
                .map(|(a, _)| a.clone());
            match victim {
                Some(v) => self.candidates.remove(&v),
                None => return,
            };
        }
        self.candidates.insert(
            addr.clone(),
            Candidate {
                failures: 0,
                next_try: now,
                bootstrap: false,
                reached: None,
            },
        );
    }

    /// Forgets a candidate address (its node left or was evicted), unless it is a bootstrap.
    pub(crate) fn forget(&mut self, addr: &Addr) {
        if self.candidates.get(addr).is_some_and(|c| !c.bootstrap) {
            self.candidates.remove(addr);
        }
    }

    fn backoff<R: CryptoRng + ?Sized>(&mut self, addr: &Addr, now: Time, rng: &mut R) {
        if let Some(c) = self.candidates.get_mut(addr) {
            c.failures = c.failures.saturating_add(1);
            let exp = BACKOFF_BASE
                .saturating_mul(1 << (c.failures - 1).min(8))
                .min(BACKOFF_MAX);
            // +-25% jitter so that restarted clusters do not dial in lockstep.
            let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
            let jitter = rng.next_u64() % (ms / 2 + 1);
            c.next_try = now + Duration::from_millis(ms - ms / 4 + jitter);
        }
    }

    fn is_connected_to(&self, addr: &Addr) -> bool {
        // An address that led to a node before (perhaps an alias: a DNS name, a NAT or
        // proxy address) counts as connected while a link to that node is up.
        let reached = self.candidates.get(addr).and_then(|c| c.reached);
        self.conns.values().any(|c| {
            &c.remote == addr
                || c.peer()
                    .is_some_and(|p| &p.listen == addr || Some(p.fingerprint) == reached)
        })
    }

    /// Dials candidates while the node has fewer than the target number of peers.
    pub(crate) fn maintain<R: CryptoRng + ?Sized>(
        &mut self,
        now: Time,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        let busy = self.dial_budget_used();
        let Some(room) = self
            .policy
            .target_peers
            .checked_sub(busy)
            .filter(|&r| r > 0)
        else {
            return;
        };
        let mut eligible: Vec<Addr> = self
            .candidates
            .iter()
            .filter(|(a, c)| {
                c.next_try <= now && !self.dialing.contains(*a) && !self.is_connected_to(a)
            })
            .map(|(a, _)| a.clone())
            .collect();
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
    pub(crate) fn dial(&mut self, addr: Addr, out: &mut Vec<Action>) {
        if self.dial_budget_used() >= self.policy.max_peers
            || self.own_addrs.contains(&addr)
            || self.dialing.contains(&addr)
        {
            return;
        }
        self.dialing.insert(addr.clone());
        out.push(Action::Connect { addr });
    }

    /// Tries a member that failed (or was cut off by a partition) again, even when the node
    /// has its target number of peers (up to `max_peers`), respecting the address's
    /// backoff: if the partition healed, the new link's sync re-merges the two sides.
    pub(crate) fn reconnect<R: CryptoRng + ?Sized>(
        &mut self,
        addr: &Addr,
        now: Time,
        rng: &mut R,
        out: &mut Vec<Action>,
    ) {
        self.learn(addr, now, rng);
        let ready = self.candidates.get(addr).is_some_and(|c| c.next_try <= now);
        if ready && !self.is_connected_to(addr) {
            self.dial(addr.clone(), out);
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
        self.conns.len() - pending_inbound + self.dialing.len()
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
        self.dialing.remove(addr);
        self.backoff(addr, now, rng);
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
                self.dialing.remove(&remote);
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
    pub(crate) fn received(&mut self, conn: ConnId, bytes: &[u8], metrics: &mut Metrics) {
        if let Some(c) = self.conns.get_mut(&conn) {
            metrics.bytes_in += bytes.len() as u64;
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
        io.metrics.frames_in += 1;
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
        let now = io.now;
        // What a handshake step may tell the peer; not worked out for the frames of a link.
        let (peers_for_hello, capacity_left) = if self.is_handshaking(conn) {
            let claimed = self
                .conns
                .iter()
                .filter(|(id, c)| **id != conn && !matches!(c.phase, Phase::AwaitHello))
                .count()
                + self.dialing.len();
            (self.peer_addrs(conn), claimed < self.policy.max_peers)
        } else {
            (Vec::new(), false)
        };
        let c = self.conns.get_mut(&conn)?;
        if let Phase::Established {
            peer,
            rx,
            hop_failures,
            ..
        } = &mut c.phase
        {
            let plain = match rx.open(frame) {
                Ok(p) => p,
                Err(_) => {
                    *hop_failures += 1;
                    events.push(SwarmEvent::Rejected {
                        conn,
                        peer: Some(peer.clone()),
                        reason: RejectReason::HopAuth,
                    });
                    return (*hop_failures >= HOP_FAILURE_LIMIT)
                        .then_some(CloseReason::HopAuthFailures);
                }
            };
            *hop_failures = 0;
            c.last_rx = now;
            match from_json_versioned::<LinkMessage>(&plain, None, &LINK_MESSAGE_KINDS) {
                Ok(LinkMessage::Bye { reason }) => {
                    return Some(CloseReason::Bye(crate::wire::clipped(&reason)));
                }
                Ok(msg) => events.push(SwarmEvent::Message {
                    conn,
                    peer: peer.clone(),
                    msg,
                }),
                Err(e) => events.push(SwarmEvent::Rejected {
                    conn,
                    peer: Some(peer.clone()),
                    reason: e.into(),
                }),
            }
            return None;
        }
        let msg: Handshake = match from_json(frame) {
            Ok(m) => m,
            Err(e) => {
                let reason = RejectReason::from(e);
                events.push(SwarmEvent::Rejected {
                    conn,
                    peer: None,
                    reason: reason.clone(),
                });
                return Some(CloseReason::HandshakeFailed(reason));
            }
        };
        let phase = std::mem::replace(&mut c.phase, Phase::AwaitHello);
        let direction = c.direction;
        let result = match (phase, msg) {
            (Phase::AwaitWelcome { .. }, Handshake::Refuse(refusal)) if refusal.at_capacity => {
                check_peer_list(&refusal.peers)
                    .map(|()| Step::Refused {
                        peers: refusal.peers,
                    })
                    .map_err(RejectReason::from)
            }
            (_, Handshake::Refuse(Refuse { reason, .. })) => {
                Err(RejectReason::Refused(crate::wire::clipped(&reason)))
            }
            (Phase::AwaitHello, Handshake::Hello(hello)) if direction == Direction::Inbound => {
                on_hello(
                    me,
                    hello,
                    (peers_for_hello, capacity_left),
                    &mut self.seen_hellos,
                    conn,
                    io,
                )
            }
            (Phase::AwaitWelcome { secret, hello }, Handshake::Welcome(welcome)) => {
                on_welcome(me, secret, hello, welcome, peers_for_hello, conn, io)
            }
            (
                Phase::AwaitFinish {
                    transcript,
                    key,
                    shared,
                    peer,
                    public,
                },
                Handshake::Finish(finish),
            ) => on_finish(transcript, &key, &shared, peer, &public, finish),
            _ => Err(RejectReason::Violation(
                "unexpected handshake message".into(),
            )),
        };
        let step = match result {
            Ok(step) => step,
            Err(reason) => {
                events.push(SwarmEvent::Rejected {
                    conn,
                    peer: None,
                    reason: reason.clone(),
                });
                let close = match reason {
                    RejectReason::SelfConnection => CloseReason::SelfConnection,
                    other => CloseReason::HandshakeFailed(other),
                };
                if close == CloseReason::SelfConnection {
                    let remote = c.remote.clone();
                    self.own_addrs.insert(remote.clone());
                    self.candidates.remove(&remote);
                }
                if direction == Direction::Outbound && close != CloseReason::SelfConnection {
                    let remote = c.remote.clone();
                    self.backoff(&remote, now, io.rng);
                }
                return Some(close);
            }
        };
        match step {
            Step::Wait(phase) => {
                c.phase = phase;
                None
            }
            Step::Refused { peers } => {
                let remote = c.remote.clone();
                for addr in &peers {
                    self.learn(addr, now, io.rng);
                }
                if direction == Direction::Outbound {
                    self.backoff(&remote, now, io.rng);
                }
                Some(CloseReason::AtCapacity)
            }
            Step::Established {
                peer,
                tx,
                rx,
                learned,
            } => {
                c.phase = Phase::Established {
                    peer: peer.clone(),
                    tx,
                    rx,
                    hop_failures: 0,
                };
                // Keep what is already buffered: the peer's first sealed frames may have
                // arrived in the same read as its last handshake frame.
                c.decoder.set_max(self.policy.max_frame_bytes + TAG_LEN);
                c.last_rx = now;
                io.metrics.handshakes += 1;
                let remote = c.remote.clone();
                if let Some(cand) = self.candidates.get_mut(&remote) {
                    cand.failures = 0;
                    if direction == Direction::Outbound {
                        cand.reached = Some(peer.fingerprint);
                    }
                }
                for addr in &learned {
                    self.learn(addr, now, io.rng);
                }
                self.learn(&peer.listen, now, io.rng);
                if let Some(loser) = self.duplicate_of(conn, &peer, me) {
                    events.extend(self.close(loser, CloseReason::DuplicateLink, io.out));
                    if loser == conn {
                        return None;
                    }
                }
                // The key may have been banned or evicted, or the id bound to another key,
                // while the handshake was in flight: check again where links come into being.
                if (me.excluded)(&peer.fingerprint) {
                    return Some(CloseReason::Banned);
                }
                if (me.bound)(peer.node).is_some_and(|fp| fp != peer.fingerprint) {
                    let reason = RejectReason::IdentityConflict(peer.node);
                    return Some(CloseReason::HandshakeFailed(reason));
                }
                // A hello and our own dial may both have been admitted while the other was
                // in flight: `max_peers` is enforced here, where links come into being.
                if self.links().filter(|(id, _)| *id != conn).count() >= self.policy.max_peers {
                    return Some(CloseReason::AtCapacity);
                }
                events.push(SwarmEvent::PeerUp { conn, peer });
                None
            }
        }
    }

    /// When `conn` duplicates another link to the same node: the connection to close
    /// (the one dialed by the larger fingerprint, so both ends agree).
    fn duplicate_of(&self, conn: ConnId, peer: &PeerInfo, me: &Me<'_>) -> Option<ConnId> {
        let own = me.identity.fingerprint();
        let dialer = |c: &Conn| match c.direction {
            Direction::Outbound => own,
            Direction::Inbound => peer.fingerprint,
        };
        let (&other, other_conn) = self.conns.iter().find(|(id, c)| {
            **id != conn && c.peer().is_some_and(|p| p.fingerprint == peer.fingerprint)
        })?;
        let this = self.conns.get(&conn)?;
        Some(if dialer(this) < dialer(other_conn) {
            other
        } else {
            conn
        })
    }

    fn peer_addrs(&self, except: ConnId) -> Vec<Addr> {
        self.conns
            .iter()
            .filter(|(id, _)| **id != except)
            .filter_map(|(_, c)| c.peer().map(|p| p.listen.clone()))
            .take(MAX_HELLO_PEERS)
            .collect()
    }

    /// Seals and sends a message on an established link.
    pub(crate) fn send(
        &mut self,
        now: Time,
        conn: ConnId,
        msg: &LinkMessage,
        metrics: &mut Metrics,
        out: &mut Vec<Action>,
    ) {
        self.send_sealed(now, conn, &to_json(msg), metrics, out);
    }

    /// Seals and sends a plaintext frame body on an established link (at most
    /// `max_frame_bytes`).
    pub(crate) fn send_sealed(
        &mut self,
        now: Time,
        conn: ConnId,
        plain: &[u8],
        metrics: &mut Metrics,
        out: &mut Vec<Action>,
    ) {
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
        metrics.frames_out += 1;
        metrics.bytes_out += bytes.len() as u64;
        c.last_tx = now;
        out.push(Action::Send { conn, bytes });
    }

    /// Closes a connection: emits the close action and forgets it.
    pub(crate) fn close(
        &mut self,
        conn: ConnId,
        reason: CloseReason,
        out: &mut Vec<Action>,
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

    /// Sends heartbeats on idle links and closes links silent for three intervals.
    pub(crate) fn heartbeat(
        &mut self,
        now: Time,
        metrics: &mut Metrics,
        out: &mut Vec<Action>,
    ) -> Vec<SwarmEvent> {
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
            } else if now.since(last_rx) >= hb * 3 {
                events.extend(self.close(conn, CloseReason::HeartbeatTimeout, out));
            } else if now.since(last_tx) >= hb {
                self.send(now, conn, &LinkMessage::Heartbeat, metrics, out);
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
        self.candidates.len()
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
