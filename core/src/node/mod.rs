//! The node: a thin dispatcher. It matches each [`Event`] and each due timer, hands it to
//! the component that owns it (swarm, gossip, broadcast, routing, discipline, scheduler),
//! carries their results to the components that react, and hands out the [`Action`]s the
//! components wrote into its one [`Outbox`]. The rules themselves live in the components.

mod adverts;
mod build;
mod trees;
mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

pub use view::{Peer, StateSizes, Status};

use crate::advertising::Advertising;
use crate::broadcast::Broadcast;
use crate::cert::Trust;
use crate::config::Config;
use crate::discipline::{Discipline, Sanction, Sender};
use crate::event::{Action, CloseReason, Command, Event, Notification, Outbox, RejectReason};
use crate::gossip::{Accepted, Admission, Gossip, Kind, Outcome};
use crate::handshake::{Io, Me, PeerInfo};
use crate::identity::{Fingerprint, Identity, Keyring};
use crate::routing::{Change, MemberState, Routing};
use crate::scheduler::{Scheduler, Time, Timer};
use crate::swarm::{Swarm, SwarmEvent};
use crate::wire::{CertificateText, ConnId, LinkMessage, NodeId, RumorContent, SignedRumor};
use trees::parent_of;

/// A route controller's protocol state machine. Feed it events with [`Node::handle`],
/// execute the returned actions, and call it again at [`Node::next_wakeup`]. A clone is an
/// independent copy in the same state (simulator snapshots, fuzzing) that shares only the
/// verification cache.
#[derive(Clone)]
pub struct Node {
    config: Config,
    identity: Identity,
    keyring: Keyring,
    rng: ChaCha20Rng,
    now: Time,
    scheduler: Scheduler,
    swarm: Swarm,
    gossip: Gossip,
    broadcast: Broadcast,
    routing: Routing,
    discipline: Discipline,
    /// When to sign the next advertisement.
    adverts: Advertising,
    /// The cluster's authorities, if it has any.
    trust: Option<Trust>,
    left: bool,
    /// Signing that waits for the pace: a fresh advertisement, accusations.
    unsigned: Unsigned,
    out: Outbox,
}

/// Rumors this node means to sign once its signing pace allows.
#[derive(Clone, Debug, Default)]
struct Unsigned {
    advert: bool,
    accusations: Vec<(NodeId, Fingerprint)>,
}

impl Node {
    /// Processes one event at time `now` (never earlier than a previous call's) and any
    /// timers due by then; returns what the embedder must do.
    pub fn handle(&mut self, now: Time, event: Event) -> Vec<Action> {
        self.now = self.now.max(now);
        if self.left {
            return Vec::new();
        }
        match event {
            Event::Connected {
                conn,
                direction,
                remote,
            } => {
                let (swarm, me, mut io) = self.parts();
                if swarm.opened(conn, direction, remote, &me, &mut io) {
                    let deadline = self.now + self.config.handshake_timeout;
                    self.scheduler.set(Timer::HandshakeDeadline(conn), deadline);
                }
            }
            Event::ConnectFailed { addr } => {
                self.swarm.connect_failed(&addr, self.now, &mut self.rng);
                if self.adverts.unreachable(&addr) {
                    self.peers_changed();
                }
                let retry = self.now + Duration::from_millis(100);
                self.scheduler.set_earliest(Timer::Dial, retry);
            }
            Event::Received { conn, bytes } => {
                self.swarm.received(conn, &bytes);
                loop {
                    let (swarm, me, mut io) = self.parts();
                    let Some(events) = swarm.next_frame(conn, &me, &mut io) else {
                        break;
                    };
                    self.on_swarm(events);
                }
            }
            Event::Disconnected { conn } => {
                let events = self.swarm.lost(conn).into_iter().collect();
                self.on_swarm(events);
            }
            Event::Tick => {}
            Event::Command(command) => self.command(command),
        }
        while !self.left {
            let Some(timer) = self.scheduler.pop_due(self.now) else {
                break;
            };
            self.timer(timer);
        }
        self.finish()
    }

    /// The swarm, with this node as the handshake sees it and the swarm's time, randomness
    /// and sink, borrowed side by side.
    fn parts(&mut self) -> (&mut Swarm, Me<'_>, Io<'_>) {
        let me = Me {
            identity: &self.identity,
            keyring: &self.keyring,
            config: &self.config,
            trust: self.trust.as_ref(),
            reputation: self.discipline.reputation(),
            routing: &self.routing,
            adverts: &self.adverts,
        };
        let io = Io {
            now: self.now,
            rng: &mut self.rng,
            out: &mut self.out,
        };
        (&mut self.swarm, me, io)
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Leave => self.leave(),
            Command::SetLinks(links) => {
                let mut candidate = self.config.clone();
                candidate.links = links;
                match candidate.validate() {
                    Ok(()) => {
                        self.config = candidate;
                        self.advertise();
                    }
                    Err(e) => self.out.notify(Notification::CommandFailed(e)),
                }
            }
            Command::Connect(addr) => {
                self.swarm.learn(&addr, self.now, &mut self.rng);
                self.swarm.dial(addr, &mut self.out);
            }
            Command::Reconfigure(config) => {
                if let Err(e) = self.reconfigure(*config) {
                    self.out.notify(Notification::CommandFailed(e));
                }
            }
            Command::SetCertificate(cert) => {
                let mut candidate = self.config.clone();
                candidate.certificate = Some(*cert);
                match build::certified(&candidate, &self.identity, self.now) {
                    Ok(_) => {
                        self.config = candidate;
                        self.advertise();
                    }
                    Err(e) => self.out.notify(Notification::CommandFailed(e)),
                }
            }
        }
    }

    fn timer(&mut self, timer: Timer) {
        let now = self.now;
        match timer {
            Timer::GossipRound => self.round(),
            Timer::Heartbeat => {
                let events = self.swarm.heartbeat(now, &mut self.out);
                self.on_swarm(events);
                let next = now + self.config.heartbeat();
                self.scheduler.set(Timer::Heartbeat, next);
            }
            Timer::Dial => {
                let reserved = self.adverts.reserved(now, None);
                self.swarm
                    .maintain(now, reserved, &mut self.rng, &mut self.out);
                let interval = self.config.gossip_period.min(Duration::from_secs(1));
                self.scheduler.set(Timer::Dial, now + interval);
            }
            Timer::HandshakeDeadline(conn) => {
                if self.swarm.is_handshaking(conn) {
                    let closed =
                        self.swarm
                            .close(conn, CloseReason::HandshakeTimeout, &mut self.out);
                    self.on_swarm(closed.into_iter().collect());
                }
            }
            Timer::BanExpiry => {
                for node in self.discipline.expire(now) {
                    self.routing.forget(node);
                }
                self.schedule_ban_expiry();
            }
            Timer::RouteRecompute => self.recompute_routes(),
            Timer::LazyPush => self.flush(true),
            Timer::Graft => {
                {
                    let parent_of = parent_of(&self.routing, &self.swarm);
                    self.broadcast.graft_due(now, &self.gossip, &parent_of);
                }
                self.schedule_graft();
            }
            Timer::AntiEntropy => {
                self.broadcast.anti_entropy(&mut self.rng, &self.gossip);
                let next = now + self.config.anti_entropy();
                self.scheduler.set(Timer::AntiEntropy, next);
            }
            Timer::Sign => self.sign_waiting(),
            Timer::Advertise => {
                if self.adverts.differs(&self.current_peers()) {
                    self.advertise();
                }
            }
        }
    }

    /// The gossip round: an advertisement when the refresh is due, expiry, the
    /// broadcast's round, and one try at a member that went silent (a healed partition
    /// re-merges through it).
    fn round(&mut self) {
        if self.adverts.round() {
            self.advertise();
        }
        for (key, kind) in self.gossip.expire(self.now) {
            if kind == Kind::Advert
                && self
                    .routing
                    .withdraw(key.origin, MemberState::Expired, None)
            {
                let expired = Notification::MemberExpired { node: key.origin };
                self.out.notify(expired);
            }
        }
        self.broadcast.new_round(self.now);
        let pick = self.rng.next_u64();
        if let Some(addr) = self.routing.random_lost(pick).cloned() {
            self.swarm
                .reconnect(&addr, self.now, &mut self.rng, &mut self.out);
        }
        let routing = &self.routing;
        let reached = |key: &Fingerprint| {
            routing
                .owner_of(key)
                .and_then(|node| routing.member(node))
                .is_some_and(|m| m.reachable)
        };
        self.swarm
            .rejoin(self.now, &mut self.rng, &mut self.out, reached);
        self.schedule_round();
    }

    fn schedule_graft(&mut self) {
        match self.broadcast.next_graft() {
            Some(at) => self.scheduler.set(Timer::Graft, at),
            None => self.scheduler.cancel(Timer::Graft),
        }
    }

    fn schedule_round(&mut self) {
        let pick = self.rng.next_u64();
        let at = self.now + build::jittered(self.config.gossip_period, pick);
        self.scheduler.set(Timer::GossipRound, at);
    }

    fn schedule_ban_expiry(&mut self) {
        match self.discipline.reputation().next_expiry() {
            Some(at) => self.scheduler.set(Timer::BanExpiry, at),
            None => self.scheduler.cancel(Timer::BanExpiry),
        }
    }

    fn on_swarm(&mut self, events: Vec<SwarmEvent>) {
        for event in events {
            match event {
                SwarmEvent::PeerUp { conn, peer } => {
                    self.scheduler.cancel(Timer::HandshakeDeadline(conn));
                    self.broadcast.link_up(conn, &self.gossip);
                    self.link_parents(conn);
                    self.out.notify(Notification::PeerUp {
                        conn,
                        node: peer.node,
                        asn: peer.asn,
                        addr: peer.listen,
                        fingerprint: peer.fingerprint,
                    });
                    self.scheduler.set_earliest(Timer::Dial, self.now);
                    self.adverts.returned(peer.node);
                    self.peers_changed();
                }
                SwarmEvent::Message { conn, peer, msg } => self.message(conn, &peer, msg),
                SwarmEvent::Rejected { conn, peer, reason } => {
                    self.rejected(conn, peer.as_ref(), reason)
                }
                SwarmEvent::Closed { conn, peer, reason } => {
                    self.scheduler.cancel(Timer::HandshakeDeadline(conn));
                    self.gossip.link_closed(conn);
                    self.broadcast.link_down(conn);
                    if let Some(peer) = peer {
                        self.peer_down(conn, peer, reason);
                    }
                    if self.swarm.below(self.config.min_peers) {
                        self.scheduler.set_earliest(Timer::Dial, self.now);
                    }
                }
            }
        }
    }

    fn message(&mut self, conn: ConnId, peer: &PeerInfo, msg: LinkMessage) {
        if let Err(e) = msg.check() {
            self.rejected(conn, Some(peer), e.into());
            return;
        }
        let now = self.now;
        let requested = match msg {
            LinkMessage::Rumors { rumors } => {
                self.rumors(conn, peer, rumors, true);
                Ok(())
            }
            LinkMessage::Answer { rumors } => {
                self.rumors(conn, peer, rumors, false);
                Ok(())
            }
            LinkMessage::IHave { ids } => {
                let parent_of = parent_of(&self.routing, &self.swarm);
                let announced = self
                    .broadcast
                    .announced(now, conn, &ids, &self.gossip, &parent_of);
                if let Some(at) = self.broadcast.next_graft() {
                    self.scheduler.set_earliest(Timer::Graft, at);
                }
                announced
            }
            LinkMessage::Graft { ids, origins } => {
                self.broadcast
                    .grafted(now, conn, &ids, &origins, &self.gossip)
            }
            LinkMessage::Pull { ids } => self.broadcast.pulled(now, conn, &ids, &self.gossip),
            LinkMessage::Prune { origins } => {
                self.broadcast.pruned(conn, &origins);
                Ok(())
            }
            LinkMessage::Digest(digest) => self.broadcast.digest(now, conn, &digest, &self.gossip),
            LinkMessage::Heartbeat | LinkMessage::Bye { .. } => Ok(()),
        };
        if let Err(reason) = requested {
            self.rejected(conn, Some(peer), reason);
        }
    }

    /// Runs a batch of rumors through the pipeline; a push shapes its origins' trees (see
    /// [`Broadcast::pushed`]).
    fn rumors(&mut self, conn: ConnId, peer: &PeerInfo, rumors: Vec<SignedRumor>, pushed: bool) {
        let mut origins = BTreeMap::new();
        for rumor in rumors {
            if self.swarm.link_to(&peer.fingerprint) != Some(conn) {
                return;
            }
            let origin = rumor.origin;
            if let Some(duplicate) = self.rumor(conn, peer, rumor) {
                *origins.entry(origin).or_insert(true) &= duplicate;
            }
        }
        if pushed && !origins.is_empty() {
            let parent_of = parent_of(&self.routing, &self.swarm);
            self.broadcast.pushed(conn, &origins, &parent_of);
        }
    }

    /// One rumor through the pipeline; returns whether it was a duplicate, if it was
    /// accepted or a duplicate.
    fn rumor(&mut self, conn: ConnId, peer: &PeerInfo, rumor: SignedRumor) -> Option<bool> {
        let (age_ms, hops) = (rumor.age_ms, rumor.hops);
        let reputation = self.discipline.reputation();
        let routing = &self.routing;
        let admission = Admission {
            excluded: &|fp| reputation.is_excluded(fp),
            bound: &|node| routing.bound_key(node),
            owner: &|fp| routing.owner_of(fp),
            sender_key: peer.fingerprint,
            trust: self.trust.as_ref(),
        };
        match self
            .gossip
            .receive(self.now, conn, peer.node, rumor, &admission)
        {
            Outcome::Accepted(accepted) => {
                let body = &accepted.admitted.body;
                self.out.notify(Notification::RumorAccepted {
                    origin: accepted.key.origin,
                    seq: body.seq,
                    issued_at: Time::from_millis(body.issued_at),
                    from: peer.node,
                    age_ms,
                    hops,
                });
                self.apply(*accepted, Some(conn));
                return Some(false);
            }
            Outcome::Duplicate => return Some(true),
            Outcome::OwnEcho(seq) => {
                self.gossip.skip_past(seq);
                self.advertise();
            }
            Outcome::Ignored(reason) => self.discipline.ignored(&reason),
            Outcome::Rejected(reason) => self.rejected(conn, Some(peer), reason),
            Outcome::Convicted { node, key, reason } => {
                let sanctions =
                    self.discipline
                        .convicted(self.now, node, key, &reason, &self.routing);
                self.enforce(sanctions);
            }
        }
        None
    }

    /// Hands a new rumor's change of membership to the components that react, then
    /// forwards the rumor.
    fn apply(&mut self, accepted: Accepted, from: Option<ConnId>) {
        let Accepted {
            key,
            admitted,
            certified_until,
        } = accepted;
        let node = admitted.body.origin;
        match self.routing.apply(&admitted) {
            Change::Advertised { asn, addr, joined } => {
                let key = admitted.fingerprint;
                self.swarm.advertised(&addr, key, self.now, &mut self.rng);
                if let Some(until) = certified_until {
                    self.swarm.renew(&admitted.fingerprint, until);
                }
                if joined {
                    self.out
                        .notify(Notification::MemberJoined { node, asn, addr });
                }
            }
            Change::Left { addr, was_alive } => {
                if let Some(addr) = addr {
                    self.swarm.forget(&addr);
                }
                if was_alive {
                    self.out.notify(Notification::MemberLeft { node });
                }
            }
            Change::Accused {
                accused,
                fingerprint,
            } => {
                let sanctions =
                    self.discipline
                        .accusation(self.now, node, accused, fingerprint, &self.routing);
                self.enforce(sanctions);
                self.schedule_ban_expiry();
            }
            Change::Nothing => {}
        }
        let parent = parent_of(&self.routing, &self.swarm)(key.origin);
        self.broadcast
            .spread(self.now, &self.gossip, &key, (from, parent), &mut self.rng);
    }

    fn rejected(&mut self, conn: ConnId, peer: Option<&PeerInfo>, reason: RejectReason) {
        let sender = peer.map(|p| Sender {
            node: p.node,
            fingerprint: p.fingerprint,
            linked: self.swarm.link_to(&p.fingerprint).is_some(),
        });
        let sanctions = self
            .discipline
            .rejected(self.now, conn, sender, reason, &self.routing);
        self.enforce(sanctions);
    }

    /// Carries out what discipline decided, in order; a ban's accusation may have changed
    /// when reputation records next expire.
    fn enforce(&mut self, sanctions: Vec<Sanction>) {
        let accused = sanctions.iter().any(|s| matches!(s, Sanction::Accuse(..)));
        for sanction in sanctions {
            match sanction {
                Sanction::Close(fp, reason) => {
                    if let Some(conn) = self.swarm.link_to(&fp) {
                        let closed = self.swarm.close(conn, reason, &mut self.out);
                        self.on_swarm(closed.into_iter().collect());
                    }
                }
                Sanction::Accuse(node, fp) => self.accuse(node, fp),
                Sanction::Withdraw(node) => {
                    self.routing.withdraw(node, MemberState::Evicted, None);
                    self.gossip.drop_origin(self.now, node);
                }
                Sanction::Notify(n) => self.out.notify(n),
            }
        }
        if accused {
            self.schedule_ban_expiry();
        }
    }

    /// Signs and spreads an accusation of `accused`, or keeps it for the signing pace.
    fn accuse(&mut self, accused: NodeId, fingerprint: Fingerprint) {
        if !self.gossip.may_sign(self.now) {
            if self.unsigned.accusations.len() < self.config.max_members {
                self.unsigned.accusations.push((accused, fingerprint));
            }
            self.wait_to_sign();
            return;
        }
        let content = RumorContent::Accuse {
            accused,
            fingerprint: fingerprint.to_hex(),
            reason: "invalid messages past reject_threshold".into(),
        };
        let key = self
            .gossip
            .originate(self.now, &self.identity, &mut self.rng, content)
            .body
            .id()
            .key();
        self.broadcast
            .spread(self.now, &self.gossip, &key, (None, None), &mut self.rng);
    }

    /// Sets the signing timer for when the pace next allows.
    fn wait_to_sign(&mut self) {
        let at = self.gossip.next_signing(self.now);
        self.scheduler.set_earliest(Timer::Sign, at);
    }

    /// Signs what waited for the pace, advertisement first, as far as the pace allows.
    fn sign_waiting(&mut self) {
        if std::mem::take(&mut self.unsigned.advert) {
            self.advertise();
        }
        let waiting = std::mem::take(&mut self.unsigned.accusations);
        for (accused, fingerprint) in waiting {
            self.accuse(accused, fingerprint);
        }
    }

    /// Leaving: a signed leave pushed on every link (lazy ones too: they are about to
    /// close and could not graft), a bye and a close on each, and no timers.
    fn leave(&mut self) {
        let content = RumorContent::Leave {
            asn: self.config.asn,
        };
        let key = self
            .gossip
            .originate(self.now, &self.identity, &mut self.rng, content)
            .body
            .id()
            .key();
        self.broadcast.push_everywhere(self.now, &self.gossip, &key);
        self.flush(true);
        self.swarm.leave(self.now, &mut self.out);
        self.routing
            .withdraw(self.config.node_id, MemberState::Left, None);
        self.scheduler = Scheduler::new();
        self.left = true;
    }

    fn recompute_routes(&mut self) {
        let changes = self.routing.update(self.now);
        self.reparent_changed();
        for (node, reached) in self.routing.take_reach_changes() {
            self.out.notify(if reached {
                Notification::MemberReachable { node }
            } else {
                Notification::MemberUnreachable { node }
            });
        }
        if !changes.is_empty() {
            self.out.notify(Notification::RoutesChanged { changes });
        }
    }

    /// Sends what broadcast queued; announcements only when `announcements` (lazy timer).
    fn flush(&mut self, announcements: bool) {
        // A rumor pushed on several links goes out as the same bytes on each: serialised once.
        let mut last: Option<(LinkMessage, Vec<u8>)> = None;
        for (conn, msg) in self.broadcast.take(announcements) {
            let shared = last
                .as_ref()
                .filter(|(rumors, _)| rumors.same_rumors_as(&msg))
                .map(|(_, bytes)| bytes.clone());
            let bytes = shared.unwrap_or_else(|| {
                let bytes = crate::wire::to_json(&msg);
                if matches!(msg, LinkMessage::Rumors { .. } | LinkMessage::Answer { .. }) {
                    last = Some((msg, bytes.clone()));
                }
                bytes
            });
            self.swarm
                .send_sealed(self.now, conn, &bytes, &mut self.out);
        }
    }

    fn finish(&mut self) -> Vec<Action> {
        self.flush(false);
        if self.broadcast.has_announcements() && !self.left {
            let at = self.now + self.config.lazy();
            self.scheduler.set_earliest(Timer::LazyPush, at);
        }
        if let Some(due) = self.routing.due(self.now, self.config.debounce())
            && !self.left
        {
            if due <= self.now {
                self.recompute_routes();
            } else {
                self.scheduler.set_earliest(Timer::RouteRecompute, due);
            }
        }
        self.out.take()
    }

    /// Fault injection: seals an arbitrary link message to the direct peer on `conn`,
    /// bypassing every rule this node follows itself. For tests, fuzzing and the chaos
    /// build; honest embedders never need it.
    #[cfg(feature = "test-util")]
    pub fn inject(&mut self, now: Time, conn: ConnId, msg: &LinkMessage) -> Vec<Action> {
        self.inject_sealed(now, conn, &crate::wire::to_json(msg))
    }

    /// Fault injection: seals arbitrary plaintext (not necessarily a valid message) to the
    /// direct peer on `conn`.
    #[cfg(feature = "test-util")]
    pub fn inject_sealed(&mut self, now: Time, conn: ConnId, plaintext: &[u8]) -> Vec<Action> {
        self.now = self.now.max(now);
        self.swarm
            .send_sealed(self.now, conn, plaintext, &mut self.out);
        self.out.take()
    }

    /// Signs `content` as this node with an explicit sequence number, without storing or
    /// sending it (fault injection and tests: replays, floods, forged variants).
    #[cfg(feature = "test-util")]
    pub fn sign_rumor(&mut self, seq: u64, content: RumorContent) -> SignedRumor {
        crate::gossip::sign(
            self.config.node_id,
            seq,
            self.now,
            &self.identity,
            &mut self.rng,
            content,
        )
        .envelope(0, 0)
    }
}
