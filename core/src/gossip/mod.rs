//! Gossip owns the rumors: the store of the newest signed rumor per key (advertisements,
//! leaves, accusations) with lifetimes from their signed issue times, the acceptance
//! pipeline (replay, duplicate, rate and identity checks before any RSA work, then
//! verification and the signed-time checks), what each link recently delivered, this
//! node's own sequence numbers, signed rumors and signing pace, and the store's digests.
//! Who gets which rumor when is `broadcast`'s business.

mod accept;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand_core::CryptoRng;
use serde_json::value::RawValue;

use crate::event::Metrics;
use crate::identity::Identity;
use crate::pace::{RateLimit, SignedRate};
use crate::scheduler::Time;
use crate::verify::{AdmittedRumor, VerifyCache};
use crate::wire::{
    BODY_BYTES_PER_MEMBER, ConnId, Digest, MAX_IDS, NodeId, RumorBody, RumorContent, RumorId,
    RumorKey, SignedRumor, to_json,
};
pub(crate) use accept::{Accepted, Admission, Outcome};

/// Limits and ages the gossip component works with.
#[derive(Clone, Debug)]
pub(crate) struct GossipPolicy {
    /// Gossip period (rate-limit refill period).
    pub period: Duration,
    /// Age at which advertisements and leaves expire.
    pub advert_max_age: Duration,
    /// Age at which accusations expire.
    pub accusation_max_age: Duration,
    /// How far ahead of this node's clock a signed issue time may be.
    pub max_clock_skew: Duration,
    /// Rumors accepted per origin per period.
    pub rumors_per_period: u32,
    /// Most origins remembered (store keys are capped at twice this).
    pub max_members: usize,
}

/// Which kind of content a stored rumor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A link-state advertisement.
    Advert,
    /// A leave.
    Leave,
    /// An accusation.
    Accuse,
}

impl Kind {
    fn of(content: &RumorContent) -> Kind {
        match content {
            RumorContent::Advert { .. } => Kind::Advert,
            RumorContent::Leave { .. } => Kind::Leave,
            RumorContent::Accuse { .. } => Kind::Accuse,
        }
    }
}

/// One stored rumor: the signed body, signature and parse it shares with the verify cache
/// (and, in a simulator, with every node), and the unsigned part of the envelope it came in
/// (its age held to 32 bits: about 49 days, far past any rumor's lifetime; it decides
/// nothing).
#[derive(Debug, Clone)]
struct Stored {
    admitted: Arc<AdmittedRumor>,
    age_ms: u32,
    hops: u32,
    received_at: Time,
    expires_at: Time,
    /// The link that delivered it (`None` for own rumors).
    from: Option<ConnId>,
}

impl Stored {
    fn seq(&self) -> u64 {
        self.admitted.body.seq
    }

    fn kind(&self) -> Kind {
        Kind::of(&self.admitted.body.content)
    }

    /// The rumor as it arrived.
    #[cfg(feature = "test-util")]
    fn received(&self) -> SignedRumor {
        self.admitted.envelope(u64::from(self.age_ms), self.hops)
    }

    /// A copy to send at `now`, its age brought up to date.
    fn outgoing(&self, now: Time) -> SignedRumor {
        let held = u64::try_from(now.since(self.received_at).as_millis()).unwrap_or(u64::MAX);
        self.admitted.envelope(
            u64::from(self.age_ms).saturating_add(held),
            self.hops.saturating_add(1),
        )
    }
}

/// Entries per generation of a link's recent-delivery record.
pub(crate) const RECENT_WINDOW: usize = 256;

/// What one link delivered recently: the last sequence number per key, in two generations
/// of at most [`RECENT_WINDOW`] keys (the older one is dropped when the newer fills up),
/// and the issue times of the peer's own rumors. A peer's own sequence numbers only rise
/// on one link (one process, one connection), so a lower one of its own is a replay; a
/// lower one it forwards is not (the origin restarted, or the peer's copy expired and it
/// learned an older one since): it is checked against the store like any other.
#[derive(Debug, Default, Clone)]
struct RecentWindow {
    current: BTreeMap<RumorKey, u64>,
    previous: BTreeMap<RumorKey, u64>,
    own: SignedRate,
}

impl RecentWindow {
    fn get(&self, key: &RumorKey) -> Option<u64> {
        self.current
            .get(key)
            .or_else(|| self.previous.get(key))
            .copied()
    }

    fn insert(&mut self, key: RumorKey, seq: u64) {
        if self.current.len() >= RECENT_WINDOW && !self.current.contains_key(&key) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, seq);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// An origin's rate bucket. A full one is the same as none, so full ones are dropped at
/// each round ([`Gossip::expire`]): only origins that spoke lately cost memory.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens in thousandths.
    milli_tokens: u64,
    last: Time,
}

impl Bucket {
    /// Adds the tokens earned since the last refill, up to `cap`.
    fn refill(&mut self, now: Time, cap: u64, period_ms: u64) {
        let elapsed = u64::try_from(now.since(self.last).as_millis()).unwrap_or(u64::MAX);
        let refill = elapsed.saturating_mul(cap) / period_ms;
        self.milli_tokens = self.milli_tokens.saturating_add(refill).min(cap);
        self.last = now;
    }
}

/// Signs `content` as `origin` with sequence number `seq` at time `issued_at`: the body,
/// its signature and its parse (send it as `.envelope(0, 0)`).
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub fn sign<R: CryptoRng + ?Sized>(
    origin: NodeId,
    seq: u64,
    issued_at: Time,
    identity: &Identity,
    rng: &mut R,
    content: RumorContent,
) -> AdmittedRumor {
    let body = RumorBody {
        origin,
        seq,
        issued_at: issued_at.as_millis(),
        pubkey: identity.public().der().to_vec(),
        content,
    };
    let text = String::from_utf8(to_json(&body)).unwrap_or_default();
    let sig = identity.sign(rng, text.as_bytes());
    // serde_json output is always valid JSON.
    let raw = RawValue::from_string(text)
        .unwrap_or_else(|_| RawValue::from_string("null".to_string()).unwrap_or_default());
    AdmittedRumor::new(body, Arc::from(raw), sig.into())
}

/// The rumor store and dissemination state.
#[derive(Debug, Clone)]
pub(crate) struct Gossip {
    me: NodeId,
    policy: GossipPolicy,
    store: BTreeMap<RumorKey, Stored>,
    /// Highest sequence number of keys no longer stored, so they cannot come back.
    tombstones: BTreeMap<RumorKey, (u64, Time)>,
    /// Per link, the highest sequence number it recently delivered per key.
    delivered: HashMap<ConnId, RecentWindow>,
    buckets: HashMap<NodeId, Bucket>,
    cache: VerifyCache,
    seq: u64,
    /// Issue times of this node's own recent rumors (its signing pace).
    signed: SignedRate,
    /// Body bytes stored.
    bytes: usize,
    /// Rumors received, accepted and duplicate; signatures verified.
    metrics: Metrics,
}

impl Gossip {
    /// An empty store for node `me`, verifying through `cache`.
    pub(crate) fn new(me: NodeId, policy: GossipPolicy, cache: VerifyCache) -> Self {
        Gossip {
            me,
            policy,
            store: BTreeMap::new(),
            tombstones: BTreeMap::new(),
            delivered: HashMap::new(),
            buckets: HashMap::new(),
            cache,
            seq: 0,
            signed: SignedRate::default(),
            bytes: 0,
            metrics: Metrics::default(),
        }
    }

    /// Runs with `policy` from now on (a reconfiguration); what is stored stays.
    pub(crate) fn set_policy(&mut self, policy: GossipPolicy) {
        self.policy = policy;
    }

    /// The signing rate every origin is held to (and this node paces itself by).
    fn rate_limit(&self) -> RateLimit {
        RateLimit {
            cap: self.policy.rumors_per_period,
            period: self.policy.period,
            horizon: self.policy.advert_max_age + self.policy.max_clock_skew,
        }
    }

    /// Whether `key` is known (stored or tombstoned) at sequence number `seq` or newer.
    pub(crate) fn knows(&self, key: &RumorKey, seq: u64) -> bool {
        self.store
            .get(key)
            .map(Stored::seq)
            .or_else(|| self.tombstones.get(key).map(|&(seq, _)| seq))
            .is_some_and(|newest| newest >= seq)
    }

    /// A rate bucket's capacity (thousandths of a token) and refill period (ms).
    fn bucket_size(&self) -> (u64, u64) {
        let cap = u64::from(self.policy.rumors_per_period) * 1000;
        let period_ms = u64::try_from(self.policy.period.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        (cap, period_ms)
    }

    fn expiry_for(&self, kind: Kind) -> Duration {
        match kind {
            Kind::Advert | Kind::Leave => self.policy.advert_max_age,
            Kind::Accuse => self.policy.accusation_max_age,
        }
    }

    /// Stores a rumor received (or signed) at `now` from `from` with the envelope's
    /// `(age_ms, hops)` (kept for tracing only), expiring at `expires_at`.
    fn insert(
        &mut self,
        now: Time,
        key: RumorKey,
        admitted: Arc<AdmittedRumor>,
        (age_ms, hops): (u64, u32),
        (from, expires_at): (Option<ConnId>, Time),
    ) {
        self.tombstones.remove(&key);
        self.put(
            key,
            Stored {
                admitted,
                age_ms: u32::try_from(age_ms).unwrap_or(u32::MAX),
                hops,
                received_at: now,
                expires_at,
                from,
            },
        );
    }

    /// Signs and stores a rumor of this node; returns it (spread its key with
    /// `Broadcast::spread`). Callers other than a leave check [`Gossip::may_sign`] first.
    pub(crate) fn originate<R: CryptoRng + ?Sized>(
        &mut self,
        now: Time,
        identity: &Identity,
        rng: &mut R,
        content: RumorContent,
    ) -> Arc<AdmittedRumor> {
        self.seq = self.seq.saturating_add(1);
        let limit = self.rate_limit();
        self.signed.record(now.as_millis(), now.as_millis(), &limit);
        let expires_at = now + self.expiry_for(Kind::of(&content));
        let admitted = sign(self.me, self.seq, now, identity, rng, content);
        let admitted = Arc::new(admitted);
        let key = admitted.body.id().key();
        self.insert(now, key, Arc::clone(&admitted), (0, 0), (None, expires_at));
        admitted
    }

    /// Whether this node may sign an ordinary rumor now without coming near the rate it
    /// holds others to (one slot of it always kept for a leave).
    pub(crate) fn may_sign(&self, now: Time) -> bool {
        self.signed.may_sign(now.as_millis(), &self.rate_limit())
    }

    /// When this node may sign again, if it may not now.
    pub(crate) fn next_signing(&self, now: Time) -> Time {
        Time::from_millis(self.signed.next_slot(now.as_millis(), &self.rate_limit()))
    }

    /// Whether storing a body of `bytes` under `key` would pass the store's caps: 2 ×
    /// `max_members` rumors, and [`BODY_BYTES_PER_MEMBER`] × `max_members` body bytes.
    fn full(&self, key: &RumorKey, bytes: usize) -> bool {
        let replaced = self.store.get(key).map(|s| s.admitted.raw.get().len());
        let bytes_after = (self.bytes + bytes).saturating_sub(replaced.unwrap_or(0));
        let budget = self
            .policy
            .max_members
            .saturating_mul(BODY_BYTES_PER_MEMBER);
        (replaced.is_none() && self.store.len() >= self.policy.max_members * 2)
            || bytes_after > budget
    }

    /// Rumors stored.
    pub(crate) fn len(&self) -> usize {
        self.store.len()
    }

    /// This node's last sequence number.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Moves this node's sequence number past `seen` (an echo of an earlier incarnation).
    pub(crate) fn skip_past(&mut self, seen: u64) {
        self.seq = self.seq.max(seen);
    }

    /// A copy of the stored rumor `key` to send at `now` (age and hops brought up to date).
    pub(crate) fn outgoing(&self, now: Time, key: &RumorKey) -> Option<SignedRumor> {
        self.store.get(key).map(|s| s.outgoing(now))
    }

    /// How the stored rumor `key` arrived: its sequence number, the hops it had crossed and
    /// the link that delivered it.
    pub(crate) fn arrival(&self, key: &RumorKey) -> Option<(u64, u32, Option<ConnId>)> {
        self.store.get(key).map(|s| (s.seq(), s.hops, s.from))
    }

    /// Whether the peer on `conn` recently delivered `key` at `seq` or newer (it has it).
    pub(crate) fn peer_has(&self, conn: ConnId, key: &RumorKey, seq: u64) -> bool {
        self.delivered
            .get(&conn)
            .and_then(|w| w.get(key))
            .is_some_and(|s| s >= seq)
    }

    /// The store as digests of at most `MAX_IDS` ids with adjacent ranges covering every key.
    pub(crate) fn digests(&self, reply: bool) -> Vec<Digest> {
        let ids: Vec<RumorId> = self
            .store
            .iter()
            .map(|(k, s)| RumorId(k.origin, k.subject, s.seq()))
            .collect();
        let mut digests = Vec::new();
        let mut after = None;
        let mut chunks = ids.chunks(MAX_IDS).peekable();
        while let Some(chunk) = chunks.next() {
            let upto = if chunks.peek().is_some() {
                chunk.last().map(RumorId::key)
            } else {
                None
            };
            digests.push(Digest {
                after,
                upto,
                ids: chunk.to_vec(),
                reply,
            });
            after = upto;
        }
        if digests.is_empty() {
            digests.push(Digest {
                after: None,
                upto: None,
                ids: Vec::new(),
                reply,
            });
        }
        digests
    }

    /// Forgets what a closed link delivered.
    pub(crate) fn link_closed(&mut self, conn: ConnId) {
        self.delivered.remove(&conn);
    }

    /// Removes every rumor of `origin` (evicted), keeping tombstones so they stay out.
    pub(crate) fn drop_origin(&mut self, now: Time, origin: NodeId) {
        let keys: Vec<RumorKey> = self
            .store
            .range(
                RumorKey {
                    origin,
                    subject: None,
                }..,
            )
            .take_while(|(k, _)| k.origin == origin)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(s) = self.take(&key) {
                self.tombstone(now, key, s.seq());
            }
        }
    }

    /// Stores `stored` under `key`, counting its body bytes.
    fn put(&mut self, key: RumorKey, stored: Stored) {
        self.bytes += stored.admitted.raw.get().len();
        if let Some(old) = self.store.insert(key, stored) {
            self.bytes = self.bytes.saturating_sub(old.admitted.raw.get().len());
        }
    }

    /// Removes what is stored under `key`, counting its body bytes.
    fn take(&mut self, key: &RumorKey) -> Option<Stored> {
        let stored = self.store.remove(key)?;
        self.bytes = self.bytes.saturating_sub(stored.admitted.raw.get().len());
        Some(stored)
    }

    fn tombstone(&mut self, now: Time, key: RumorKey, seq: u64) {
        if self.tombstones.len() >= self.policy.max_members * 2
            && let Some((&oldest, _)) = self.tombstones.iter().min_by_key(|(_, (_, until))| *until)
        {
            self.tombstones.remove(&oldest);
        }
        self.tombstones
            .insert(key, (seq, now + self.policy.advert_max_age));
    }

    /// Drops rumors past their age limit and the rate buckets that are full again;
    /// returns each expired key with its kind.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<(RumorKey, Kind)> {
        let (cap, period_ms) = self.bucket_size();
        self.buckets.retain(|_, b| {
            b.refill(now, cap, period_ms);
            b.milli_tokens < cap
        });
        if self.buckets.capacity() > 4 * self.buckets.len() + 64 {
            self.buckets.shrink_to_fit();
        }
        let expired: Vec<(RumorKey, Kind, u64)> = self
            .store
            .iter()
            .filter(|(k, s)| s.expires_at <= now && k.origin != self.me)
            .map(|(k, s)| (*k, s.kind(), s.seq()))
            .collect();
        for &(key, _, seq) in &expired {
            self.take(&key);
            self.tombstone(now, key, seq);
        }
        self.tombstones.retain(|_, (_, until)| *until > now);
        expired.into_iter().map(|(k, kind, _)| (k, kind)).collect()
    }

    /// The stored rumor for `key` as it arrived, if any.
    #[cfg(feature = "test-util")]
    pub(crate) fn get(&self, key: &RumorKey) -> Option<SignedRumor> {
        self.store.get(key).map(Stored::received)
    }

    /// Rumors received, accepted and duplicate, and signatures verified, so far.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Sizes for cap checks: (stored rumors, tombstones, links tracked, origins rate-limited,
    /// keys cached).
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize, usize) {
        (
            self.store.len(),
            self.tombstones.len(),
            self.delivered
                .values()
                .map(RecentWindow::len)
                .max()
                .unwrap_or(0),
            self.buckets.len(),
            self.cache.sizes().0,
        )
    }
}
