//! The node: a thin dispatcher. It matches each [`Event`], hands it to the component that
//! owns it (swarm, gossip, routing, reputation, scheduler), carries their results to the
//! components that react, and collects the [`Action`]s.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::Serialize;

use crate::broadcast::{Broadcast, BroadcastPolicy};
use crate::cert::Trust;
use crate::config::{Config, ConfigError};
use crate::event::{Action, CloseReason, Command, Event, Metrics, Notification, RejectReason};
use crate::gossip::{Accepted, Admission, Gossip, GossipPolicy, Kind, Outcome};
use crate::handshake::{Io, Me, PeerInfo};
use crate::identity::{Fingerprint, Identity, Keyring};
use crate::paths::Route;
use crate::reputation::{Reputation, ReputationPolicy, Verdict};
use crate::routing::{Applied, Member, MemberState, Routing};
use crate::scheduler::{Scheduler, Time, Timer};
use crate::swarm::{Swarm, SwarmEvent, SwarmPolicy};
use crate::verify::VerifyCache;
use crate::wire::{
    Addr, AsLink, CertificateText, ConnId, LinkMessage, MAX_BATCH, NodeId, RumorContent,
    SignedRumor, check_ids,
};

/// Builds the swarm's view of this node from disjoint fields (so the swarm can be
/// borrowed mutably at the same time).
macro_rules! me {
    ($node:ident) => {
        Me {
            identity: &$node.identity,
            keyring: &$node.keyring,
            node: $node.config.node_id,
            asn: $node.config.asn,
            listen: &$node.config.listen_addr,
            excluded: &|fp: &Fingerprint| $node.reputation.is_excluded(fp),
            bound: &|node: NodeId| bound_key(&$node.routing, node),
            trust: $node.trust.as_ref(),
            cert: $node.config.certificate.as_ref(),
        }
    };
}

/// The swarm's time, randomness, counters and output, borrowed from the node.
macro_rules! io {
    ($node:ident) => {
        Io {
            now: $node.now,
            rng: &mut $node.rng,
            metrics: &mut $node.metrics,
            out: &mut $node.out,
        }
    };
}

/// A direct peer as reported to the embedder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// The connection.
    pub conn: ConnId,
    /// Its controller id.
    pub node: NodeId,
    /// Its AS.
    pub asn: crate::wire::Asn,
    /// Where it listens.
    pub addr: Addr,
    /// Its key.
    pub fingerprint: Fingerprint,
}

/// A summary of the node's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Own id.
    pub node: NodeId,
    /// Own AS.
    pub asn: crate::wire::Asn,
    /// Own key.
    pub fingerprint: Fingerprint,
    /// Own sequence number.
    pub seq: u64,
    /// Established direct peers.
    pub peers: usize,
    /// Live members (including this node).
    pub members: usize,
    /// Routes in the table.
    pub routes: usize,
    /// Whether the node has left.
    pub left: bool,
    /// End of own certificate's validity (Unix ms); `None` in open membership.
    pub certified_until: Option<u64>,
}

/// Sizes of every bounded structure, to check caps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateSizes {
    /// Open connections.
    pub connections: usize,
    /// Dial candidates.
    pub candidates: usize,
    /// Member records.
    pub members: usize,
    /// Stored rumors.
    pub rumors: usize,
    /// Tombstones.
    pub tombstones: usize,
    /// Largest per-link delivery record.
    pub per_link_keys: usize,
    /// Rate-limited origins.
    pub rate_buckets: usize,
    /// Cached public keys.
    pub cached_keys: usize,
    /// Bytes in partial frames.
    pub buffered_bytes: usize,
    /// Set timers.
    pub timers: usize,
    /// Links in the dissemination table.
    pub links: usize,
    /// (origin, link) pairs that only get announcements (the pruned part of the per-origin
    /// trees).
    pub lazy_pairs: usize,
    /// Rumors announced but not yet delivered.
    pub missing: usize,
    /// Reputation records (offenders, bans, accused, evicted).
    pub reputation: (usize, usize, usize, usize),
}

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
    reputation: Reputation,
    /// The cluster's authorities, if it has any.
    trust: Option<Trust>,
    metrics: Metrics,
    left: bool,
    last_routes: Option<Time>,
    /// Signing that waits for the pace: a fresh advertisement, accusations.
    unsigned: Unsigned,
    out: Vec<Action>,
}

/// Rumors this node means to sign once its signing pace allows.
#[derive(Clone, Debug, Default)]
struct Unsigned {
    advert: bool,
    accusations: Vec<(NodeId, Fingerprint)>,
}

impl Node {
    /// A node with a validated `config`, its RSA `identity`, a 32-byte RNG seed (the only
    /// randomness it uses) and the current time.
    pub fn new(
        config: Config,
        identity: Identity,
        seed: [u8; 32],
        now: Time,
    ) -> Result<Self, ConfigError> {
        let cache = VerifyCache::new(config.max_members.saturating_mul(4));
        Self::with_cache(config, identity, seed, now, cache)
    }

    /// Like [`Node::new`], verifying through a [`VerifyCache`] that other nodes of this
    /// process may share (a simulator of thousands of nodes checks each signature once).
    pub fn with_cache(
        config: Config,
        identity: Identity,
        seed: [u8; 32],
        now: Time,
        cache: VerifyCache,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let trust = certified(&config, &identity, now)?;
        let keyring = Keyring::new(config.cluster_keys.clone()).ok_or(ConfigError::NoClusterKey)?;
        let swarm = Swarm::new(
            SwarmPolicy {
                max_peers: config.max_peers,
                target_peers: config.target(),
                max_frame_bytes: config.max_frame_bytes,
                heartbeat: config.heartbeat(),
                hello_window: config.clock_skew(),
            },
            &config.listen_addr,
            &config.bootstrap,
        );
        let gossip = Gossip::new(
            config.node_id,
            GossipPolicy {
                period: config.gossip_period,
                advert_max_age: config.advert_max_age(),
                accusation_max_age: config.ban_duration,
                max_clock_skew: config.clock_skew(),
                rumors_per_period: config.max_rumors_per_period,
                max_members: config.max_members,
            },
            cache,
        );
        let broadcast = Broadcast::new(
            config.node_id,
            BroadcastPolicy {
                mode: config.dissemination,
                graft_timeout: config.graft(),
                max_frame_bytes: config.max_frame_bytes,
                max_missing: config.max_members.saturating_mul(2),
                max_requests_per_round: config.max_members.saturating_mul(4),
                pull_timeout: config.gossip_period,
                optimize_hops: config.optimize_hops,
            },
        );
        let reputation = Reputation::new(ReputationPolicy {
            reject_threshold: config.reject_threshold,
            offense_window: config.gossip_period * 10,
            ban_duration: config.ban_duration,
            ban_quorum: config.ban_quorum,
            max_tracked: config.max_members,
        });
        let mut node = Node {
            routing: Routing::new(config.asn, config.max_members),
            identity,
            keyring,
            rng: ChaCha20Rng::from_seed(seed),
            now,
            scheduler: Scheduler::new(),
            swarm,
            gossip,
            broadcast,
            reputation,
            trust,
            metrics: Metrics::default(),
            left: false,
            last_routes: None,
            unsigned: Unsigned::default(),
            out: Vec::new(),
            config,
        };
        node.advertise();
        node.scheduler.set(Timer::Dial, now);
        node.scheduler
            .set(Timer::Heartbeat, now + node.config.heartbeat());
        node.scheduler
            .set(Timer::AntiEntropy, now + node.config.anti_entropy());
        node.schedule_round();
        Ok(node)
    }

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
                let me = me!(self);
                let mut io = io!(self);
                if self.swarm.opened(conn, direction, remote, &me, &mut io) {
                    self.scheduler.set(
                        Timer::HandshakeDeadline(conn),
                        self.now + self.config.handshake_timeout,
                    );
                }
            }
            Event::ConnectFailed { addr } => {
                self.swarm.connect_failed(&addr, self.now, &mut self.rng);
                self.scheduler
                    .set_earliest(Timer::Dial, self.now + Duration::from_millis(100));
            }
            Event::Received { conn, bytes } => {
                self.swarm.received(conn, &bytes, &mut self.metrics);
                loop {
                    let me = me!(self);
                    let mut io = io!(self);
                    let Some(events) = self.swarm.next_frame(conn, &me, &mut io) else {
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
                    Err(e) => self.notify(Notification::CommandFailed(e)),
                }
            }
            Command::Connect(addr) => {
                self.swarm.learn(&addr, self.now, &mut self.rng);
                self.swarm.dial(addr, &mut self.out);
            }
            Command::SetCertificate(cert) => {
                let mut candidate = self.config.clone();
                candidate.certificate = Some(*cert);
                match certified(&candidate, &self.identity, self.now) {
                    Ok(_) => {
                        self.config = candidate;
                        self.advertise();
                    }
                    Err(e) => self.notify(Notification::CommandFailed(e)),
                }
            }
        }
    }

    fn timer(&mut self, timer: Timer) {
        match timer {
            Timer::GossipRound => {
                self.advertise();
                for (key, kind) in self.gossip.expire(self.now) {
                    if kind == Kind::Advert
                        && self
                            .routing
                            .withdraw(key.origin, MemberState::Expired, None)
                    {
                        self.notify(Notification::MemberExpired { node: key.origin });
                    }
                }
                self.broadcast.new_round(self.now);
                let pick = self.rng.next_u64();
                if let Some(addr) = self.routing.random_expired(pick).cloned() {
                    self.swarm
                        .reconnect(&addr, self.now, &mut self.rng, &mut self.out);
                }
                self.schedule_round();
            }
            Timer::Heartbeat => {
                let events = self
                    .swarm
                    .heartbeat(self.now, &mut self.metrics, &mut self.out);
                self.on_swarm(events);
                self.scheduler
                    .set(Timer::Heartbeat, self.now + self.config.heartbeat());
            }
            Timer::Dial => {
                self.swarm.maintain(self.now, &mut self.rng, &mut self.out);
                let interval = self.config.gossip_period.min(Duration::from_secs(1));
                self.scheduler.set(Timer::Dial, self.now + interval);
            }
            Timer::HandshakeDeadline(conn) => {
                if self.swarm.is_handshaking(conn) {
                    let events = self
                        .swarm
                        .close(conn, CloseReason::HandshakeTimeout, &mut self.out)
                        .into_iter()
                        .collect();
                    self.on_swarm(events);
                }
            }
            Timer::BanExpiry => {
                for (node, _) in self.reputation.expire(self.now) {
                    self.routing.forget(node);
                }
                self.schedule_ban_expiry();
            }
            Timer::RouteRecompute => self.recompute_routes(),
            Timer::LazyPush => self.flush(true),
            Timer::Graft => {
                self.broadcast.graft_due(self.now, &self.gossip);
                self.schedule_graft();
            }
            Timer::AntiEntropy => {
                self.broadcast.anti_entropy(&mut self.rng, &self.gossip);
                self.scheduler
                    .set(Timer::AntiEntropy, self.now + self.config.anti_entropy());
            }
            Timer::Sign => self.sign_waiting(),
        }
    }

    fn schedule_graft(&mut self) {
        match self.broadcast.next_graft() {
            Some(at) => self.scheduler.set(Timer::Graft, at),
            None => self.scheduler.cancel(Timer::Graft),
        }
    }

    fn schedule_round(&mut self) {
        // +-10% jitter keeps nodes from advertising in lockstep.
        let ms = u64::try_from(self.config.gossip_period.as_millis()).unwrap_or(u64::MAX);
        let jitter = self.rng.next_u64() % (ms / 5 + 1);
        self.scheduler.set(
            Timer::GossipRound,
            self.now + Duration::from_millis(ms - ms / 10 + jitter),
        );
    }

    fn schedule_ban_expiry(&mut self) {
        match self.reputation.next_expiry() {
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
                    self.notify(Notification::PeerUp {
                        conn,
                        node: peer.node,
                        asn: peer.asn,
                        addr: peer.listen,
                        fingerprint: peer.fingerprint,
                    });
                    self.scheduler.set_earliest(Timer::Dial, self.now);
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
                        self.notify(Notification::PeerDown {
                            conn,
                            node: peer.node,
                            reason,
                        });
                    }
                    if self.swarm.below(self.config.min_peers) {
                        self.scheduler.set_earliest(Timer::Dial, self.now);
                    }
                }
            }
        }
    }

    fn message(&mut self, conn: ConnId, peer: &PeerInfo, msg: LinkMessage) {
        let checked = match &msg {
            LinkMessage::Rumors { rumors } | LinkMessage::Answer { rumors }
                if rumors.len() > MAX_BATCH =>
            {
                Err(RejectReason::Violation(format!(
                    "batch of {} rumors",
                    rumors.len()
                )))
            }
            LinkMessage::IHave { ids } => check_ids(ids).map_err(RejectReason::from),
            LinkMessage::Graft { ids, origins } => check_ids(ids)
                .and_then(|()| check_ids(origins))
                .map_err(RejectReason::from),
            LinkMessage::Pull { ids } => check_ids(ids).map_err(RejectReason::from),
            LinkMessage::Prune { origins } => check_ids(origins).map_err(RejectReason::from),
            LinkMessage::Digest(digest) => digest.check().map_err(RejectReason::from),
            _ => Ok(()),
        };
        if let Err(reason) = checked {
            self.rejected(conn, Some(peer), reason);
            return;
        }
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
                let announced = self.broadcast.announced(self.now, conn, &ids, &self.gossip);
                if let Some(at) = self.broadcast.next_graft() {
                    self.scheduler.set_earliest(Timer::Graft, at);
                }
                announced
            }
            LinkMessage::Graft { ids, origins } => {
                self.broadcast
                    .grafted(self.now, conn, &ids, &origins, &self.gossip)
            }
            LinkMessage::Pull { ids } => self.broadcast.pulled(self.now, conn, &ids, &self.gossip),
            LinkMessage::Prune { origins } => {
                self.broadcast.pruned(conn, &origins);
                Ok(())
            }
            LinkMessage::Digest(digest) => {
                self.broadcast.digest(self.now, conn, &digest, &self.gossip)
            }
            LinkMessage::Heartbeat | LinkMessage::Bye { .. } => Ok(()),
        };
        if let Err(reason) = requested {
            self.rejected(conn, Some(peer), reason);
        }
    }

    /// Runs a batch of rumors through the pipeline; duplicates in an eager push prune the
    /// link for their origins.
    fn rumors(&mut self, conn: ConnId, peer: &PeerInfo, rumors: Vec<SignedRumor>, pushed: bool) {
        let mut duplicates = BTreeSet::new();
        for rumor in rumors {
            if self.swarm.link_to(&peer.fingerprint) != Some(conn) {
                return;
            }
            let origin = rumor.origin;
            if self.rumor(conn, peer, rumor) {
                duplicates.insert(origin);
            }
        }
        if pushed && !duplicates.is_empty() {
            self.broadcast.duplicate_push(conn, &duplicates);
        }
    }

    /// One rumor through the pipeline; returns whether it was a duplicate.
    fn rumor(&mut self, conn: ConnId, peer: &PeerInfo, rumor: SignedRumor) -> bool {
        let (age_ms, hops) = (rumor.age_ms, rumor.hops);
        let reputation = &self.reputation;
        let routing = &self.routing;
        let excluded = |fp: &Fingerprint| reputation.is_excluded(fp);
        let bound = |node: NodeId| bound_key(routing, node);
        let owner = |fp: &Fingerprint| routing.owner_of(fp);
        let admission = Admission {
            excluded: &excluded,
            bound: &bound,
            owner: &owner,
            sender_key: peer.fingerprint,
            trust: self.trust.as_ref(),
        };
        match self.gossip.receive(
            self.now,
            conn,
            peer.node,
            rumor,
            &admission,
            &mut self.metrics,
        ) {
            Outcome::Accepted(accepted) => {
                self.notify(Notification::RumorAccepted {
                    origin: accepted.key.origin,
                    seq: accepted.admitted.body.seq,
                    issued_at: Time::from_millis(accepted.admitted.body.issued_at),
                    from: peer.node,
                    age_ms,
                    hops,
                });
                self.apply(*accepted, Some(conn));
            }
            Outcome::Duplicate => return true,
            Outcome::OwnEcho(seq) => {
                self.gossip.skip_past(seq);
                self.advertise();
            }
            Outcome::Ignored(reason) => {
                *self.metrics.rejects.entry(reason.label()).or_default() += 1;
            }
            Outcome::Rejected(reason) => self.rejected(conn, Some(peer), reason),
            Outcome::Convicted { node, key, reason } => self.convicted(node, key, reason),
        }
        false
    }

    /// Applies a new rumor to routing or reputation, then forwards it.
    fn apply(&mut self, accepted: Accepted, from: Option<ConnId>) {
        let Accepted {
            key,
            admitted,
            certified_until,
        } = accepted;
        let body = &admitted.body;
        let origin = body.origin;
        match &body.content {
            RumorContent::Advert {
                asn, addr, links, ..
            } => {
                self.swarm.learn(addr, self.now, &mut self.rng);
                if let Some(until) = certified_until {
                    self.swarm.renew(&admitted.fingerprint, until);
                }
                let member = Member {
                    node: origin,
                    asn: *asn,
                    addr: addr.clone(),
                    fingerprint: admitted.fingerprint,
                    seq: body.seq,
                    links: Arc::clone(links),
                    state: MemberState::Alive,
                };
                if self.routing.advertise(member) == Some(Applied::Joined) {
                    self.notify(Notification::MemberJoined {
                        node: origin,
                        asn: *asn,
                        addr: addr.clone(),
                    });
                }
            }
            RumorContent::Leave { .. } => {
                if let Some(addr) = self.routing.member(origin).map(|m| m.addr.clone()) {
                    self.swarm.forget(&addr);
                }
                if self
                    .routing
                    .withdraw(origin, MemberState::Left, Some(body.seq))
                {
                    self.notify(Notification::MemberLeft { node: origin });
                }
            }
            RumorContent::Accuse {
                accused,
                fingerprint: accused_fp,
                ..
            } => {
                if let Some(fp) = Fingerprint::from_hex(accused_fp) {
                    self.accusation(origin, *accused, fp);
                }
            }
        }
        self.broadcast.spread(self.now, &self.gossip, &key, from);
    }

    fn accusation(&mut self, accuser: NodeId, accused: NodeId, fp: Fingerprint) {
        if let Some(eviction) = self.reputation.accusation(self.now, accuser, accused, fp) {
            self.metrics.evictions += 1;
            // The key is out either way; the id only when that key is the one it is bound
            // to (an accusation naming some other key must not withdraw the real owner).
            if bound_key(&self.routing, accused) == Some(fp) {
                self.routing.withdraw(accused, MemberState::Evicted, None);
                self.gossip.drop_origin(self.now, accused);
            }
            self.reputation.discard_accuser(accused);
            if let Some(conn) = self.swarm.link_to(&fp) {
                let events = self
                    .swarm
                    .close(conn, CloseReason::Evicted, &mut self.out)
                    .into_iter()
                    .collect();
                self.on_swarm(events);
            }
            self.notify(Notification::MemberEvicted {
                node: accused,
                accusers: eviction.accusers,
            });
        }
        self.schedule_ban_expiry();
    }

    fn rejected(&mut self, conn: ConnId, peer: Option<&PeerInfo>, reason: RejectReason) {
        *self.metrics.rejects.entry(reason.label()).or_default() += 1;
        let blamed = reason.blames_peer();
        self.notify(Notification::Rejected {
            conn,
            node: peer.map(|p| p.node),
            reason,
        });
        let Some(peer) = peer.filter(|_| blamed) else {
            return;
        };
        if let Verdict::Banned(until) = self.reputation.offense(self.now, peer.fingerprint)
            && self.swarm.link_to(&peer.fingerprint).is_some()
        {
            self.cut_off(peer.node, peer.fingerprint, until);
        }
    }

    /// A rumor proves, by its signer's own signature, that the key `fp` (speaking for
    /// `node`) signed for an identity not its own: the key is banned at once, its link (if
    /// it is a direct peer) closed, and it is accused; the relay is not blamed.
    fn convicted(&mut self, node: NodeId, fp: Fingerprint, reason: RejectReason) {
        *self.metrics.rejects.entry(reason.label()).or_default() += 1;
        if self.reputation.is_banned(&fp) {
            return;
        }
        let until = self.reputation.convict(self.now, fp);
        self.cut_off(node, fp, until);
    }

    /// The consequences of banning `fp` (speaking for `node`) until `until`: its link is
    /// closed, the ban reported, and the network told.
    fn cut_off(&mut self, node: NodeId, fp: Fingerprint, until: Time) {
        self.metrics.bans += 1;
        if let Some(conn) = self.swarm.link_to(&fp) {
            let events = self
                .swarm
                .close(conn, CloseReason::Banned, &mut self.out)
                .into_iter()
                .collect();
            self.on_swarm(events);
        }
        self.notify(Notification::PeerBanned {
            node,
            fingerprint: fp,
            until,
        });
        self.accuse(node, fp);
        self.accusation(self.config.node_id, node, fp);
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
        let key = self.gossip.originate(
            self.now,
            &self.identity,
            &mut self.rng,
            RumorContent::Accuse {
                accused,
                fingerprint: fingerprint.to_hex(),
                reason: "invalid messages past reject_threshold".into(),
            },
        );
        self.broadcast.spread(self.now, &self.gossip, &key, None);
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

    /// Signs and floods a fresh advertisement of own links (when the signing pace allows;
    /// otherwise one advertisement of the links then in effect waits for it).
    fn advertise(&mut self) {
        if !self.gossip.may_sign(self.now) {
            self.unsigned.advert = true;
            self.wait_to_sign();
            return;
        }
        self.unsigned.advert = false;
        let links: Arc<[AsLink]> = self.config.links.as_slice().into();
        let content = RumorContent::Advert {
            asn: self.config.asn,
            addr: self.config.listen_addr.clone(),
            links: Arc::clone(&links),
            cert: self.config.certificate.as_ref().map(CertificateText::from),
        };
        let key = self
            .gossip
            .originate(self.now, &self.identity, &mut self.rng, content);
        self.routing.advertise(Member {
            node: self.config.node_id,
            asn: self.config.asn,
            addr: self.config.listen_addr.clone(),
            fingerprint: self.identity.fingerprint(),
            seq: self.gossip.seq(),
            links,
            state: MemberState::Alive,
        });
        self.broadcast.spread(self.now, &self.gossip, &key, None);
    }

    fn leave(&mut self) {
        let key = self.gossip.originate(
            self.now,
            &self.identity,
            &mut self.rng,
            RumorContent::Leave {
                asn: self.config.asn,
            },
        );
        // Pushed on every link, lazy ones too: they are about to close and could not graft.
        self.broadcast.push_everywhere(self.now, &self.gossip, &key);
        self.flush(true);
        for conn in self.swarm.link_ids() {
            let bye = LinkMessage::Bye {
                reason: "leaving".into(),
            };
            self.swarm
                .send(self.now, conn, &bye, &mut self.metrics, &mut self.out);
            self.swarm.close(conn, CloseReason::Leaving, &mut self.out);
        }
        self.routing
            .withdraw(self.config.node_id, MemberState::Left, None);
        self.scheduler = Scheduler::new();
        self.left = true;
    }

    fn recompute_routes(&mut self) {
        self.last_routes = Some(self.now);
        let changes = self.routing.recompute();
        if !changes.is_empty() {
            self.metrics.route_changes += changes.len() as u64;
            self.notify(Notification::RoutesChanged { changes });
        }
    }

    /// Sends what broadcast queued; announcements only when `announcements` (lazy timer).
    fn flush(&mut self, announcements: bool) {
        // A rumor pushed on several links goes out as the same bytes on each: serialised once.
        let mut last: Option<(LinkMessage, Vec<u8>)> = None;
        for (conn, msg) in self.broadcast.take(announcements, &mut self.metrics) {
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
                .send_sealed(self.now, conn, &bytes, &mut self.metrics, &mut self.out);
        }
    }

    fn finish(&mut self) -> Vec<Action> {
        self.flush(false);
        if self.broadcast.has_announcements() && !self.left {
            self.scheduler
                .set_earliest(Timer::LazyPush, self.now + self.config.lazy());
        }
        if self.routing.is_dirty() && !self.left {
            let due = self
                .last_routes
                .map_or(self.now, |t| t + self.config.debounce());
            if due <= self.now {
                self.recompute_routes();
            } else {
                self.scheduler.set_earliest(Timer::RouteRecompute, due);
            }
        }
        std::mem::take(&mut self.out)
    }

    fn notify(&mut self, n: Notification) {
        self.out.push(Action::Notify(n));
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
            .send_sealed(self.now, conn, plaintext, &mut self.metrics, &mut self.out);
        std::mem::take(&mut self.out)
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

    /// When the node next needs [`Event::Tick`] (or any event); `None` after leaving.
    pub fn next_wakeup(&self) -> Option<Time> {
        self.scheduler.next_wakeup()
    }

    /// The routing table, by destination.
    pub fn routes(&self) -> Vec<Route> {
        self.routing.routes().collect()
    }

    /// Every member record, by node id (including this node).
    pub fn members(&self) -> Vec<Member> {
        self.routing.members().cloned().collect()
    }

    /// The member that speaks for each AS (whose links are edges of the routing graph):
    /// the first live member that claimed it, while it stays alive.
    pub fn speakers(&self) -> Vec<Member> {
        self.routing.speakers().cloned().collect()
    }

    /// Established direct peers.
    pub fn peers(&self) -> Vec<Peer> {
        self.swarm
            .links()
            .map(|(conn, p)| Peer {
                conn,
                node: p.node,
                asn: p.asn,
                addr: p.listen.clone(),
                fingerprint: p.fingerprint,
            })
            .collect()
    }

    /// Keys banned by this node, with the end of each ban.
    pub fn bans(&self) -> Vec<(Fingerprint, Time)> {
        let mut bans: Vec<_> = self.reputation.bans().map(|(fp, t)| (*fp, t)).collect();
        bans.sort();
        bans
    }

    /// Keys evicted by quorum, with node ids and ends.
    pub fn evictions(&self) -> Vec<(Fingerprint, NodeId, Time)> {
        let mut evictions: Vec<_> = self
            .reputation
            .evictions()
            .map(|(fp, n, t)| (*fp, n, t))
            .collect();
        evictions.sort();
        evictions
    }

    /// A summary.
    pub fn status(&self) -> Status {
        Status {
            node: self.config.node_id,
            asn: self.config.asn,
            fingerprint: self.identity.fingerprint(),
            seq: self.gossip.seq(),
            peers: self.swarm.links().count(),
            members: self.routing.alive(),
            routes: self.routing.destinations(),
            left: self.left,
            certified_until: self
                .trust
                .as_ref()
                .and(self.config.certificate.as_ref())
                .map(|c| c.body.not_after),
        }
    }

    /// Counters since start.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The node's key fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    /// The stored signed rumor of `origin`'s membership (advert or leave), if any.
    pub fn advert_of(&self, origin: NodeId) -> Option<SignedRumor> {
        self.stored_rumor(&crate::wire::RumorKey {
            origin,
            subject: None,
        })
    }

    /// The stored signed rumor for any key (accusations included), if any.
    pub fn stored_rumor(&self, key: &crate::wire::RumorKey) -> Option<SignedRumor> {
        self.gossip.get(key)
    }

    /// Sizes of every bounded structure.
    pub fn sizes(&self) -> StateSizes {
        let (rumors, tombstones, per_link_keys, rate_buckets, cached_keys) = self.gossip.sizes();
        let (links, lazy_pairs) = self.broadcast.links();
        StateSizes {
            connections: self.swarm.connections(),
            candidates: self.swarm.candidates(),
            members: self.routing.members().count(),
            rumors,
            tombstones,
            per_link_keys,
            rate_buckets,
            cached_keys,
            buffered_bytes: self.swarm.buffered(),
            timers: self.scheduler.len(),
            links,
            lazy_pairs,
            missing: self.broadcast.missing(),
            reputation: self.reputation.sizes(),
        }
    }
}

/// The key a live node id is bound to.
/// The trust anchors of `config`, if it has any, after checking that its certificate
/// certifies this node's id, AS and `identity` at `now`.
fn certified(
    config: &Config,
    identity: &Identity,
    now: Time,
) -> Result<Option<Trust>, ConfigError> {
    if config.trusted_cas.is_empty() {
        return Ok(None);
    }
    let trust = Trust::new(config.trusted_cas.clone(), config.clock_skew());
    trust
        .certifies(
            now,
            config.certificate.as_ref(),
            config.node_id,
            config.asn,
            &identity.fingerprint(),
        )
        .map_err(|e| ConfigError::Certificate(e.to_string()))?;
    Ok(Some(trust))
}

fn bound_key(routing: &Routing, node: NodeId) -> Option<Fingerprint> {
    routing
        .member(node)
        .filter(|m| m.state == MemberState::Alive)
        .map(|m| m.fingerprint)
}
