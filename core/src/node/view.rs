//! What the node shows its embedder: direct peers, the status summary, bans and
//! evictions, the stored rumors, the counters (the sum of its components'), and the sizes
//! of every bounded structure.

use serde::Serialize;

use super::Node;
use crate::event::Metrics;
use crate::identity::Fingerprint;
use crate::paths::Route;
use crate::routing::Member;
use crate::scheduler::Time;
use crate::wire::{Addr, Asn, ConnId, NodeId};
#[cfg(feature = "test-util")]
use crate::wire::{RumorKey, SignedRumor};

/// A direct peer as reported to the embedder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Peer {
    /// The connection.
    pub conn: ConnId,
    /// Its controller id.
    pub node: NodeId,
    /// Its AS.
    pub asn: Asn,
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
    pub asn: Asn,
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

impl Node {
    /// When the node next needs [`Event::Tick`](crate::Event::Tick) (or any event); `None`
    /// after leaving.
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

    /// One member's record, if this node has one.
    pub fn member(&self, node: NodeId) -> Option<Member> {
        self.routing.member(node).cloned()
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
        let reputation = self.discipline.reputation();
        let mut bans: Vec<_> = reputation.bans().map(|(fp, t)| (*fp, t)).collect();
        bans.sort();
        bans
    }

    /// Keys evicted by quorum, with node ids and ends.
    pub fn evictions(&self) -> Vec<(Fingerprint, NodeId, Time)> {
        let reputation = self.discipline.reputation();
        let mut evictions: Vec<_> = reputation
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

    /// Counters since start: the sum of what each component counted.
    pub fn metrics(&self) -> Metrics {
        let mut metrics = Metrics {
            route_changes: self.routing.route_changes(),
            ..Metrics::default()
        };
        metrics.absorb(self.swarm.metrics());
        metrics.absorb(self.gossip.metrics());
        metrics.absorb(self.broadcast.metrics());
        metrics.absorb(self.discipline.metrics());
        metrics
    }

    /// The configuration in effect.
    pub fn config(&self) -> &crate::config::Config {
        &self.config
    }

    /// The node's key fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }

    /// The stored signed rumor of `origin`'s membership (advert or leave), if any (tests and
    /// fault injection).
    #[cfg(feature = "test-util")]
    pub fn advert_of(&self, origin: NodeId) -> Option<SignedRumor> {
        self.stored_rumor(&RumorKey {
            origin,
            subject: None,
        })
    }

    /// The stored signed rumor for any key (accusations included), if any (tests and fault
    /// injection).
    #[cfg(feature = "test-util")]
    pub fn stored_rumor(&self, key: &RumorKey) -> Option<SignedRumor> {
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
            reputation: self.discipline.reputation().sizes(),
        }
    }
}
