//! Building a node from its configuration: each component's policy read from the config,
//! the trust anchors checked against the node's own certificate, the first timers.

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
        let mut node = Node {
            swarm: swarm(&config),
            gossip: gossip(&config, cache),
            broadcast: broadcast(&config),
            discipline: Discipline::new(config.node_id, reputation(&config)),
            routing: Routing::for_node(config.node_id, config.asn, config.max_members),
            adverts: Advertising::new(AdvertPolicy {
                refresh: config.advert_refresh,
                hold_min: config.lazy(),
                hold_max: config.gossip_period,
                hold_gain: (config.gossip_period / 4).max(config.lazy()),
            }),
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
        node.advertise();
        node.scheduler.set(Timer::Dial, now);
        node.scheduler
            .set(Timer::Heartbeat, now + node.config.heartbeat());
        node.scheduler
            .set(Timer::AntiEntropy, now + node.config.anti_entropy());
        node.schedule_round();
        Ok(node)
    }
}

fn swarm(config: &Config) -> Swarm {
    let policy = SwarmPolicy {
        max_peers: config.max_peers,
        target_peers: config.target(),
        max_frame_bytes: config.max_frame_bytes,
        heartbeat: config.heartbeat(),
        hello_window: config.clock_skew(),
    };
    Swarm::new(policy, &config.listen_addr, &config.bootstrap)
}

fn gossip(config: &Config, cache: VerifyCache) -> Gossip {
    let policy = GossipPolicy {
        period: config.gossip_period,
        advert_max_age: config.advert_max_age(),
        accusation_max_age: config.ban_duration,
        max_clock_skew: config.clock_skew(),
        rumors_per_period: config.max_rumors_per_period,
        max_members: config.max_members,
    };
    Gossip::new(config.node_id, policy, cache)
}

fn broadcast(config: &Config) -> Broadcast {
    let policy = BroadcastPolicy {
        mode: config.dissemination,
        graft_timeout: config.graft(),
        max_frame_bytes: config.max_frame_bytes,
        max_missing: config.max_members.saturating_mul(2),
        max_requests_per_round: config.max_members.saturating_mul(4),
        pull_timeout: config.gossip_period,
        optimize_hops: config.optimize_hops,
    };
    Broadcast::new(config.node_id, policy)
}

fn reputation(config: &Config) -> Reputation {
    Reputation::new(ReputationPolicy {
        reject_threshold: config.reject_threshold,
        offense_window: config.gossip_period * 10,
        ban_duration: config.ban_duration,
        ban_quorum: config.ban_quorum,
        max_tracked: config.max_members,
    })
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
