//! The swarm's side of a handshake: each plain frame of a connection still handshaking
//! is the next step (the checks themselves are in `handshake`), and a link that comes into
//! being passes the last checks (one link per node, the key still welcome, room left).

use rand_core::CryptoRng;

use super::{Conn, Swarm, SwarmEvent};
use crate::event::{CloseReason, Direction, Outbox, RejectReason};
use crate::handshake::{Io, Me, PeerInfo, Phase, Step, on_finish, on_hello, on_welcome};
use crate::identity::TAG_LEN;
use crate::scheduler::Time;
use crate::wire::{Addr, ConnId, Handshake, MAX_HELLO_PEERS, Refuse, check_peer_list, from_json};

/// Known addresses besides the direct peers that a handshake step passes on.
const HELLO_SAMPLE: usize = 8;

impl Swarm {
    /// A plain frame of a connection still handshaking: the next step of its handshake.
    pub(super) fn handshake_frame(
        &mut self,
        conn: ConnId,
        frame: &[u8],
        me: &Me<'_>,
        io: &mut Io<'_>,
        events: &mut Vec<SwarmEvent>,
    ) -> Option<CloseReason> {
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
        let c = self.conns.get_mut(&conn)?;
        let phase = std::mem::replace(&mut c.phase, Phase::AwaitHello);
        let (direction, remote) = (c.direction, c.remote.clone());
        match self.handshake_step(conn, phase, msg, me, io) {
            Ok(step) => self.stepped(conn, step, me, io, events),
            Err(reason) => {
                events.push(SwarmEvent::Rejected {
                    conn,
                    peer: None,
                    reason: reason.clone(),
                });
                if reason == RejectReason::SelfConnection {
                    self.table.is_self(&remote);
                    return Some(CloseReason::SelfConnection);
                }
                if direction == Direction::Outbound {
                    self.table.backoff(&remote, io.now, io.rng);
                }
                Some(CloseReason::HandshakeFailed(reason))
            }
        }
    }

    /// What the handshake message `msg` does to a connection in `phase`.
    fn handshake_step(
        &mut self,
        conn: ConnId,
        phase: Phase,
        msg: Handshake,
        me: &Me<'_>,
        io: &mut Io<'_>,
    ) -> Result<Step, RejectReason> {
        let inbound = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.direction == Direction::Inbound);
        // What a handshake step may tell the peer: other links, and whether there is room.
        let claimed = self
            .conns
            .iter()
            .filter(|(id, c)| **id != conn && !matches!(c.phase, Phase::AwaitHello))
            .count()
            + self.table.in_flight();
        let peers = self.peer_addrs(conn, io.rng);
        match (phase, msg) {
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
            (Phase::AwaitHello, Handshake::Hello(hello)) if inbound => {
                // Our own dial to the same node does not count: one of the two links will
                // be closed as a duplicate (both ends redialing at once must not refuse
                // each other), and neither does that node's kept slot.
                let now = io.now;
                let room = |peer: &PeerInfo| {
                    let ours = self
                        .conns
                        .iter()
                        .filter(|(id, c)| **id != conn && c.direction == Direction::Outbound)
                        .filter(|(_, c)| c.remote == peer.listen && c.peer().is_none())
                        .count()
                        + usize::from(self.table.dialing(&peer.listen));
                    let reserved = me.adverts.reserved(now, Some(peer.node));
                    claimed.saturating_sub(ours) + reserved < self.policy.max_peers
                };
                on_hello(me, hello, (peers, &room), &mut self.seen_hellos, conn, io)
            }
            (Phase::AwaitWelcome { secret, hello }, Handshake::Welcome(welcome)) => {
                on_welcome(me, secret, hello, welcome, peers, conn, io)
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
        }
    }

    /// Carries out a handshake step that succeeded.
    fn stepped(
        &mut self,
        conn: ConnId,
        step: Step,
        me: &Me<'_>,
        io: &mut Io<'_>,
        events: &mut Vec<SwarmEvent>,
    ) -> Option<CloseReason> {
        let c = self.conns.get_mut(&conn)?;
        let (direction, remote) = (c.direction, c.remote.clone());
        match step {
            Step::Wait(phase) => {
                c.phase = phase;
                None
            }
            Step::Refused { peers } => {
                for addr in &peers {
                    self.table.learn(addr, io.now, io.rng);
                }
                if direction == Direction::Outbound {
                    self.table.backoff(&remote, io.now, io.rng);
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
                c.last_rx = io.now;
                self.metrics.handshakes += 1;
                let dialed = (direction == Direction::Outbound).then_some(peer.fingerprint);
                self.table.succeeded(&remote, dialed);
                for addr in learned.iter().chain([&peer.listen]) {
                    self.table.learn(addr, io.now, io.rng);
                }
                self.admit(conn, peer, me, (io.now, io.out), events)
            }
        }
    }

    /// The last checks on a link that has just come into being: one link per node, the
    /// key still welcome, the id still its own, and room under `max_peers`.
    fn admit(
        &mut self,
        conn: ConnId,
        peer: PeerInfo,
        me: &Me<'_>,
        (now, out): (Time, &mut Outbox),
        events: &mut Vec<SwarmEvent>,
    ) -> Option<CloseReason> {
        if let Some(loser) = self.duplicate_of(conn, &peer, me) {
            events.extend(self.close(loser, CloseReason::DuplicateLink, out));
            if loser == conn {
                return None;
            }
        }
        // The key may have been banned or evicted, or the id bound to another key,
        // while the handshake was in flight: check again where links come into being.
        if me.excluded(&peer.fingerprint) {
            return Some(CloseReason::Banned);
        }
        if me.bound(peer.node).is_some_and(|fp| fp != peer.fingerprint) {
            let reason = RejectReason::IdentityConflict(peer.node);
            return Some(CloseReason::HandshakeFailed(reason));
        }
        // A hello and our own dial may both have been admitted while the other was
        // in flight: `max_peers` is enforced here, where links come into being, with the
        // slots of other peers expected back kept for them.
        let links = self.links().filter(|(id, _)| *id != conn).count();
        if links + me.adverts.reserved(now, Some(peer.node)) >= self.policy.max_peers {
            return Some(CloseReason::AtCapacity);
        }
        events.push(SwarmEvent::PeerUp { conn, peer });
        None
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

    /// The addresses a handshake step on `except` passes on: the direct peers, then up to
    /// [`HELLO_SAMPLE`] other known addresses at random (never the one `except` was
    /// dialed at: it leads to the peer itself).
    fn peer_addrs<R: CryptoRng + ?Sized>(&self, except: ConnId, rng: &mut R) -> Vec<Addr> {
        let mut addrs: Vec<Addr> = self
            .conns
            .iter()
            .filter(|(id, _)| **id != except)
            .filter_map(|(_, c)| c.peer().map(|p| p.listen.clone()))
            .take(MAX_HELLO_PEERS)
            .collect();
        let dialed = self
            .conns
            .get(&except)
            .filter(|c| c.direction == Direction::Outbound)
            .map(|c| &c.remote);
        let room = HELLO_SAMPLE.min(MAX_HELLO_PEERS - addrs.len());
        let skip = |a: &Addr| addrs.contains(a) || Some(a) == dialed;
        let sample = self.table.sample(room, skip, rng);
        addrs.extend(sample);
        addrs
    }
}
