//! Node configuration: identity in the network, own AS links, peers, timing, limits and
//! cluster keys, validated with typed errors that name the offending field.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::identity::{ClusterKey, PublicIdentity};
use crate::scheduler::{CronError, parse_cron};
use crate::wire::{Addr, AsLink, Asn, Certificate, NodeId, check_addr};

/// How rumors spread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dissemination {
    /// Eager push on a spanning tree, lazy announcements elsewhere (near N-1 messages per
    /// rumor).
    #[default]
    Plumtree,
    /// Every rumor to every direct peer but the sender (about N × peers messages).
    Flood,
}

/// Most links the per-origin masks can tell apart (`max_peers` is capped at this).
pub(crate) const MAX_LINK_SLOTS: usize = 128;

/// Smallest `max_frame_bytes` accepted: a full advertisement must fit in one frame.
pub(crate) const MIN_FRAME_BYTES: usize = 16 * 1024;

/// A configuration the node refuses, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// No cluster key: nodes could not authenticate each other.
    #[error("cluster_keys: at least one cluster key is required")]
    NoClusterKey,
    /// `max_peers` is zero.
    #[error("max_peers: must be at least 1")]
    MaxPeersZero,
    /// `max_peers` above what the per-origin dissemination trees can track.
    #[error("max_peers: {0} is above the maximum of {max}", max = MAX_LINK_SLOTS)]
    TooManyPeers(usize),
    /// `min_peers` above `max_peers`.
    #[error("min_peers: {min} is above max_peers {max}")]
    MinAboveMax {
        /// Configured minimum.
        min: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The gossip period could not be parsed.
    #[error("cron: {0}")]
    Cron(#[from] CronError),
    /// The gossip period is shorter than 10 ms.
    #[error("gossip_period: {0:?} is shorter than 10ms")]
    PeriodTooShort(Duration),
    /// `reject_threshold` is zero.
    #[error("reject_threshold: must be at least 1")]
    ThresholdZero,
    /// `ban_quorum` is zero.
    #[error("ban_quorum: must be at least 1")]
    QuorumZero,
    /// `max_frame_bytes` cannot hold an advertisement.
    #[error("max_frame_bytes: {0} is below the minimum of {MIN_FRAME_BYTES}")]
    FrameTooSmall(usize),
    /// `max_rumors_per_period` leaves no room for an advertisement and a leave.
    #[error(
        "max_rumors_per_period: {0} leaves no room for an advertisement and a leave (at least 2)"
    )]
    RumorRateTooLow(u32),
    /// `max_clock_skew` is not below `max_advert_age`.
    #[error("max_clock_skew: {skew:?} must be below max_advert_age {age:?}")]
    SkewTooLarge {
        /// Configured skew bound.
        skew: Duration,
        /// Advertisement age limit in effect.
        age: Duration,
    },
    /// `max_advert_age` would expire live nodes between two refreshes.
    #[error(
        "max_advert_age: {age:?} must be at least two refreshes ({refresh:?} each: advert_refresh \
         gossip periods)"
    )]
    AdvertAgeTooShort {
        /// Configured age.
        age: Duration,
        /// The refresh interval: `advert_refresh` gossip periods.
        refresh: Duration,
    },
    /// A link to the node's own AS.
    #[error("links: AS {0} is this node's own AS")]
    SelfLink(Asn),
    /// The same neighbour AS twice.
    #[error("links: AS {0} is listed twice")]
    DuplicateLink(Asn),
    /// Too many links for one advertisement.
    #[error("links: {0} links exceed the maximum of {max}", max = crate::wire::MAX_ADVERT_LINKS)]
    TooManyLinks(usize),
    /// An empty or oversized address.
    #[error("{field}: invalid address {addr:?}")]
    BadAddr {
        /// Which field.
        field: &'static str,
        /// The address.
        addr: String,
    },
    /// A limit that must be positive is zero.
    #[error("{0}: must be greater than zero")]
    Zero(&'static str),
    /// With `trusted_cas`, no certificate, or one that does not certify this node.
    #[error("cert_file: {0}")]
    Certificate(String),
    /// A reconfiguration changes a field that is fixed while the node runs.
    #[error("{0}: cannot change while the node runs")]
    Fixed(&'static str),
}

/// Everything a node needs besides its identity, clock and randomness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This controller's id (`self.id`).
    pub node_id: NodeId,
    /// This controller's AS (`self.autonomous_system_number`).
    pub asn: Asn,
    /// The address others dial to reach this node; advertised to the network.
    pub listen_addr: Addr,
    /// Own AS links `[{asn, capacity, cost}]`.
    pub links: Vec<AsLink>,
    /// Addresses dialed at start and whenever the node has fewer than `min_peers`.
    pub bootstrap: Vec<Addr>,
    /// The node dials known members while it has fewer direct peers than this.
    pub min_peers: usize,
    /// Hard cap on direct peers (established plus handshaking); hellos beyond it are refused.
    pub max_peers: usize,
    /// Direct peers the node dials towards (between `min_peers` and `max_peers`); the
    /// rest of `max_peers` is headroom for joiners. Default: `max(min_peers, max_peers / 2)`.
    pub target_peers: Option<usize>,
    /// Period of gossip rounds (a batch of triggered changes, expiry, anti-entropy).
    pub gossip_period: Duration,
    /// An unchanged advertisement is signed again every this many gossip rounds; a change
    /// of links or direct peers advertises at once (damped). 1: every round. Default: 30.
    pub advert_refresh: u32,
    /// Heartbeat interval on idle links; a link silent for 3 intervals is closed.
    /// Default: the gossip period, at most 5 s.
    pub heartbeat_interval: Option<Duration>,
    /// A connection must finish its handshake within this time.
    pub handshake_timeout: Duration,
    /// Offenses (invalid messages on an authenticated link) that get a peer banned.
    pub reject_threshold: u32,
    /// How long a ban or an eviction lasts.
    pub ban_duration: Duration,
    /// Distinct accusing members needed to evict a node.
    pub ban_quorum: usize,
    /// Largest frame body accepted or sent.
    pub max_frame_bytes: usize,
    /// An advertisement not refreshed for this long is dropped (its node is considered
    /// failed). Default: two refreshes plus the clock-skew bound, at least 4 gossip
    /// periods.
    pub max_advert_age: Option<Duration>,
    /// Accepted cluster keys; the first is used when dialing.
    pub cluster_keys: Vec<ClusterKey>,
    /// Routes are recomputed at most this often. Default: a tenth of the gossip period,
    /// at most 100 ms.
    pub route_debounce: Option<Duration>,
    /// Most members (origins) remembered; further origins are ignored.
    pub max_members: usize,
    /// Rumors an origin may sign per gossip period (at least 2). A direct peer that signs
    /// more of its own within one period of its signed clock is blamed; this node paces
    /// its own signing one under it.
    pub max_rumors_per_period: u32,
    /// How far ahead of this node's clock a rumor's signed issue time may be; rumors
    /// further ahead are ignored. Lifetimes run from the signed issue time, so a clock
    /// behind by `s` shortens its rumors' lives by `s`. Default: one gossip period.
    pub max_clock_skew: Option<Duration>,
    /// Plumtree (default) or flooding.
    pub dissemination: Dissemination,
    /// Announcements to lazy links are gathered this long. Default: a tenth of the gossip
    /// period, at most 100 ms.
    pub lazy_interval: Option<Duration>,
    /// An announced rumor not delivered within this time is grafted. Default: a quarter of
    /// the gossip period, at most 500 ms.
    pub graft_timeout: Option<Duration>,
    /// Period of anti-entropy digest exchanges with one random peer. Default: 5 gossip
    /// periods.
    pub anti_entropy_period: Option<Duration>,
    /// Plumtree tree optimisation threshold in hops (0 disables; default 1).
    pub optimize_hops: u32,
    /// Random links a node also pushes a rumor on when its origin has no tree here yet (no
    /// peer grafted or pruned it); the others get announcements and are lazy for that
    /// origin from then on. Default 0: peers that know this node is the origin's parent
    /// have grafted it, and the rest pull the rumor at its first announcement. At
    /// `max_peers` or more, every link is pushed on and the origin's first rumor floods.
    pub eager_fanout: u32,
    /// Public keys of the certificate authorities this node trusts (several, so that they
    /// can rotate). Empty: open membership, where any holder of the cluster key may join.
    pub trusted_cas: Vec<PublicIdentity>,
    /// This node's certificate from one of `trusted_cas` (required with them).
    pub certificate: Option<Certificate>,
}

impl Config {
    /// A configuration with the defaults of the original design (10 s period, 1..10 peers).
    pub fn new(
        node_id: NodeId,
        asn: Asn,
        listen_addr: Addr,
        cluster_keys: Vec<ClusterKey>,
    ) -> Self {
        Config {
            node_id,
            asn,
            listen_addr,
            links: Vec::new(),
            bootstrap: Vec::new(),
            min_peers: 1,
            max_peers: 10,
            target_peers: None,
            gossip_period: Duration::from_secs(10),
            advert_refresh: 30,
            heartbeat_interval: None,
            handshake_timeout: Duration::from_secs(10),
            reject_threshold: 10,
            ban_duration: Duration::from_secs(3600),
            ban_quorum: 2,
            max_frame_bytes: 1 << 20,
            max_advert_age: None,
            cluster_keys,
            route_debounce: None,
            max_members: 10_000,
            max_rumors_per_period: 8,
            max_clock_skew: None,
            dissemination: Dissemination::Plumtree,
            lazy_interval: None,
            graft_timeout: None,
            anti_entropy_period: None,
            optimize_hops: 1,
            eager_fanout: 0,
            trusted_cas: Vec::new(),
            certificate: None,
        }
    }

    /// Sets the gossip period from a cron spec (`"@every 10s"`, `"@every 500ms"`).
    pub fn with_cron(mut self, spec: &str) -> Result<Self, ConfigError> {
        self.gossip_period = parse_cron(spec)?;
        Ok(self)
    }

    /// The heartbeat interval in effect.
    pub fn heartbeat(&self) -> Duration {
        self.heartbeat_interval
            .unwrap_or_else(|| self.gossip_period.min(Duration::from_secs(5)))
    }

    /// How long a link may stay silent before it is closed: three heartbeat intervals.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat() * 3
    }

    /// The clock-skew bound in effect.
    pub fn clock_skew(&self) -> Duration {
        self.max_clock_skew.unwrap_or(self.gossip_period)
    }

    /// The interval of unchanged advertisements: `advert_refresh` gossip periods.
    pub fn refresh(&self) -> Duration {
        self.gossip_period.saturating_mul(self.advert_refresh)
    }

    /// The advertisement age limit in effect.
    pub fn advert_max_age(&self) -> Duration {
        self.max_advert_age.unwrap_or_else(|| {
            let default = self.refresh().saturating_mul(2) + self.clock_skew();
            default.max(self.gossip_period * 4)
        })
    }

    /// The route recomputation debounce in effect.
    pub fn debounce(&self) -> Duration {
        self.route_debounce
            .unwrap_or_else(|| (self.gossip_period / 10).min(Duration::from_millis(100)))
    }

    /// The lazy announcement interval in effect.
    pub fn lazy(&self) -> Duration {
        self.lazy_interval
            .unwrap_or_else(|| (self.gossip_period / 10).min(Duration::from_millis(100)))
    }

    /// The graft timeout in effect.
    pub fn graft(&self) -> Duration {
        self.graft_timeout
            .unwrap_or_else(|| (self.gossip_period / 4).min(Duration::from_millis(500)))
    }

    /// The anti-entropy period in effect.
    pub fn anti_entropy(&self) -> Duration {
        self.anti_entropy_period.unwrap_or(self.gossip_period * 5)
    }

    /// The number of direct peers the node dials towards.
    pub fn target(&self) -> usize {
        self.target_peers
            .unwrap_or(self.max_peers / 2)
            .clamp(self.min_peers, self.max_peers)
    }

    /// Checks every field; the error names the first wrong one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster_keys.is_empty() {
            return Err(ConfigError::NoClusterKey);
        }
        if self.max_peers == 0 {
            return Err(ConfigError::MaxPeersZero);
        }
        if self.max_peers > MAX_LINK_SLOTS {
            return Err(ConfigError::TooManyPeers(self.max_peers));
        }
        if self.min_peers > self.max_peers {
            return Err(ConfigError::MinAboveMax {
                min: self.min_peers,
                max: self.max_peers,
            });
        }
        if self.gossip_period < Duration::from_millis(10) {
            return Err(ConfigError::PeriodTooShort(self.gossip_period));
        }
        if self.reject_threshold == 0 {
            return Err(ConfigError::ThresholdZero);
        }
        if self.ban_quorum == 0 {
            return Err(ConfigError::QuorumZero);
        }
        if self.max_frame_bytes < MIN_FRAME_BYTES {
            return Err(ConfigError::FrameTooSmall(self.max_frame_bytes));
        }
        if self.advert_refresh == 0 {
            return Err(ConfigError::Zero("advert_refresh"));
        }
        if self.advert_max_age() < self.refresh().saturating_mul(2) {
            return Err(ConfigError::AdvertAgeTooShort {
                age: self.advert_max_age(),
                refresh: self.refresh(),
            });
        }
        for (field, value) in [
            ("heartbeat_interval", self.heartbeat()),
            ("handshake_timeout", self.handshake_timeout),
            ("ban_duration", self.ban_duration),
            ("lazy_interval", self.lazy()),
            ("graft_timeout", self.graft()),
            ("anti_entropy_period", self.anti_entropy()),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero(field));
            }
        }
        if self.max_members == 0 {
            return Err(ConfigError::Zero("max_members"));
        }
        if self.max_rumors_per_period < 2 {
            return Err(ConfigError::RumorRateTooLow(self.max_rumors_per_period));
        }
        if self.clock_skew() >= self.advert_max_age() {
            return Err(ConfigError::SkewTooLarge {
                skew: self.clock_skew(),
                age: self.advert_max_age(),
            });
        }
        if self.links.len() > crate::wire::MAX_ADVERT_LINKS {
            return Err(ConfigError::TooManyLinks(self.links.len()));
        }
        let mut seen = BTreeSet::new();
        for link in &self.links {
            if link.asn == self.asn {
                return Err(ConfigError::SelfLink(link.asn));
            }
            if !seen.insert(link.asn) {
                return Err(ConfigError::DuplicateLink(link.asn));
            }
        }
        let bad_addr = |field: &'static str, addr: &Addr| ConfigError::BadAddr {
            field,
            addr: addr.0.to_string(),
        };
        check_addr(&self.listen_addr).map_err(|_| bad_addr("listen_addr", &self.listen_addr))?;
        for addr in &self.bootstrap {
            check_addr(addr).map_err(|_| bad_addr("bootstrap", addr))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Config {
        Config::new(
            NodeId(1),
            Asn(100),
            Addr::from("127.0.0.1:8080"),
            vec![ClusterKey::from_bytes([1; 32])],
        )
    }

    #[test]
    fn defaults_are_valid_and_derived_from_the_period() {
        let c = base().with_cron("@every 500ms").unwrap();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.heartbeat(), Duration::from_millis(500));
        // Two refreshes of 30 rounds, plus one period of clock skew.
        assert_eq!(c.advert_max_age(), Duration::from_millis(30_500));
        let every_round = Config {
            advert_refresh: 1,
            ..c.clone()
        };
        assert_eq!(every_round.advert_max_age(), Duration::from_secs(2));
        assert_eq!(c.debounce(), Duration::from_millis(50));
        assert_eq!(c.target(), 5);
    }

    #[test]
    fn each_wrong_field_is_named() {
        type Mutation = Box<dyn Fn(&mut Config)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|c| c.cluster_keys.clear()), "cluster_keys"),
            (Box::new(|c| c.max_peers = 0), "max_peers"),
            (Box::new(|c| c.min_peers = 11), "min_peers"),
            (Box::new(|c| c.reject_threshold = 0), "reject_threshold"),
            (Box::new(|c| c.ban_quorum = 0), "ban_quorum"),
            (
                Box::new(|c| c.max_rumors_per_period = 1),
                "max_rumors_per_period",
            ),
            (
                Box::new(|c| {
                    c.advert_refresh = 1;
                    c.max_advert_age = Some(Duration::from_secs(30));
                    c.max_clock_skew = Some(Duration::from_secs(40));
                }),
                "max_clock_skew",
            ),
            (Box::new(|c| c.advert_refresh = 0), "advert_refresh"),
            (
                Box::new(|c| c.max_advert_age = Some(Duration::from_secs(500))),
                "max_advert_age",
            ),
            (Box::new(|c| c.max_frame_bytes = 100), "max_frame_bytes"),
            (
                Box::new(|c| c.max_advert_age = Some(Duration::from_secs(1))),
                "max_advert_age",
            ),
            (
                Box::new(|c| c.gossip_period = Duration::from_millis(1)),
                "gossip_period",
            ),
            (Box::new(|c| c.listen_addr = Addr::from("")), "listen_addr"),
            (
                Box::new(|c| c.bootstrap = vec![Addr::from("")]),
                "bootstrap",
            ),
            (
                Box::new(|c| {
                    c.links = vec![AsLink {
                        asn: Asn(100),
                        capacity: 1,
                        cost: 1,
                    }]
                }),
                "links",
            ),
            (
                Box::new(|c| {
                    let l = AsLink {
                        asn: Asn(7),
                        capacity: 1,
                        cost: 1,
                    };
                    c.links = vec![l, l];
                }),
                "links",
            ),
        ];
        for (mutate, field) in cases {
            let mut c = base();
            mutate(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err:?} should name {field}");
        }
        assert!(
            base()
                .with_cron("every 10s")
                .unwrap_err()
                .to_string()
                .starts_with("cron")
        );
    }
}
