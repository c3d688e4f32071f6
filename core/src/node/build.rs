//! Building a node from its configuration: each component's policy read from the config,
//! the trust anchors checked against the node's own certificate, the first timers; and
//! reconfiguring a running node from a new configuration the same way.

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::{Node, Unsigned};
use crate::advertising::{AdvertPolicy, Advertising};
use crate::broadcast::{Broadcast, BroadcastPolicy};
use crate::cert::Trust;
use crate::config::{Config, ConfigError};
use crate::discipline::Discipline;
use crate::event::Outbox;
use crate::gossip::{Gossip, GossipPolicy};
use crate::identity::{Identity, Keyring};
use crate::reputation::{Reputation, ReputationPolicy};
use crate::routing::Routing;
use crate::scheduler::{Scheduler, Time, Timer};
use crate::swarm::{Swarm, SwarmPolicy};
use crate::verify::VerifyCache;

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
        let p = Policies::of(&config);
        let mut node = Node {
            swarm: Swarm::new(p.swarm, &config.listen_addr, &config.bootstrap),
            gossip: Gossip::new(config.node_id, p.gossip, cache),
            broadcast: Broadcast::new(config.node_id, p.broadcast),
            discipline: Discipline::new(config.node_id, Reputation::new(p.reputation)),
            routing: Routing::for_node(config.node_id, config.asn, config.max_members),
            adverts: Advertising::new(p.adverts),
            identity,
            keyring,
            rng: ChaCha20Rng::from_seed(seed),
            now,
            scheduler: Scheduler::new(),
            trust,
            left: false,
            unsigned: Unsigned::default(),
            out: Outbox::default(),
            config,
        };
        let first = node.adverts.first_due(now);
        node.scheduler.set(Timer::Advertise, first);
        node.scheduler.set(Timer::Dial, now);
        node.scheduler
            .set(Timer::Heartbeat, now + node.config.heartbeat());
        node.scheduler
            .set(Timer::AntiEntropy, now + node.config.anti_entropy());
        node.schedule_round();
        Ok(node)
    }
}

impl Node {
    /// Runs with a new configuration from now on ([`crate::Command::Reconfigure`]): every
    /// component's policy, the bootstrap list, the cluster keyring and the trust anchors.
    /// Links, gossip and reputation recorded stay. Changed links or a changed certificate
    /// are advertised at once; a changed gossip period restarts the round timers. Nothing
    /// changes when `config` is invalid or changes the id, the AS or the listen address.
    pub(super) fn reconfigure(&mut self, config: Config) -> Result<(), ConfigError> {
        config.validate()?;
        let fixed = [
            ("node_id", config.node_id == self.config.node_id),
            ("asn", config.asn == self.config.asn),
            ("listen_addr", config.listen_addr == self.config.listen_addr),
        ];
        if let Some((field, _)) = fixed.iter().find(|(_, same)| !same) {
            return Err(ConfigError::Fixed(field));
        }
        let trust = certified(&config, &self.identity, self.now)?;
        let keyring = Keyring::new(config.cluster_keys.clone()).ok_or(ConfigError::NoClusterKey)?;
        let p = Policies::of(&config);
        self.swarm.reconfigure(p.swarm, &config.bootstrap);
        self.gossip.set_policy(p.gossip);
        self.broadcast.set_policy(p.broadcast);
        self.discipline.set_policy(p.reputation);
        self.adverts.set_policy(p.adverts);
        self.routing.set_max_members(config.max_members);
        let readvertise =
            config.links != self.config.links || config.certificate != self.config.certificate;
        let timing = config.gossip_period != self.config.gossip_period
            || config.heartbeat() != self.config.heartbeat()
            || config.anti_entropy() != self.config.anti_entropy();
        self.trust = trust;
        self.keyring = keyring;
        self.config = config;
        if timing {
            self.scheduler
                .set(Timer::Heartbeat, self.now + self.config.heartbeat());
            self.scheduler
                .set(Timer::AntiEntropy, self.now + self.config.anti_entropy());
            self.schedule_round();
        }
        if readvertise {
            self.advertise();
        }
        Ok(())
    }
}

/// Every component's policy, read from one configuration.
struct Policies {
    swarm: SwarmPolicy,
    gossip: GossipPolicy,
    broadcast: BroadcastPolicy,
    reputation: ReputationPolicy,
    adverts: AdvertPolicy,
}

impl Policies {
    fn of(config: &Config) -> Self {
        Policies {
            swarm: SwarmPolicy {
                max_peers: config.max_peers,
                target_peers: config.target(),
                max_frame_bytes: config.max_frame_bytes,
                heartbeat: config.heartbeat(),
                heartbeat_timeout: config.heartbeat_timeout(),
                hello_window: config.clock_skew(),
            },
            gossip: GossipPolicy {
                period: config.gossip_period,
                advert_max_age: config.advert_max_age(),
                accusation_max_age: config.ban_duration,
                max_clock_skew: config.clock_skew(),
                rumors_per_period: config.max_rumors_per_period,
                max_members: config.max_members,
            },
            broadcast: BroadcastPolicy {
                mode: config.dissemination,
                graft_timeout: config.graft(),
                max_frame_bytes: config.max_frame_bytes,
                max_missing: config.max_members.saturating_mul(2),
                max_requests_per_round: config.max_members.saturating_mul(4),
                pull_timeout: config.gossip_period,
                optimize_hops: config.optimize_hops,
                eager_fanout: config.eager_fanout as usize,
            },
            reputation: ReputationPolicy {
                reject_threshold: config.reject_threshold,
                offense_window: config.gossip_period * 10,
                ban_duration: config.ban_duration,
                ban_quorum: config.ban_quorum,
                max_tracked: config.max_members,
            },
            adverts: AdvertPolicy {
                refresh: config.advert_refresh,
                hold_min: config.lazy(),
                hold_max: config.gossip_period,
                hold_gain: (config.gossip_period / 4).max(config.lazy()),
                hold_redial: config
                    .gossip_period
                    .min(Duration::from_secs(1))
                    .max(config.lazy()),
            },
        }
    }
}

/// The trust anchors of `config`, if it has any, after checking that its certificate
/// certifies this node's id, AS and `identity` at `now`.
pub(super) fn certified(
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

/// The gossip round's period with +-10% jitter, so that nodes do not advertise in
/// lockstep.
pub(super) fn jittered(period: Duration, pick: u64) -> Duration {
    let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(ms - ms / 10 + pick % (ms / 5 + 1))
}
