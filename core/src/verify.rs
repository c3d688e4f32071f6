//! Verification once per process: parsed public keys and admitted rumors, each rumor
//! parsed, checked and its signature verified once, whoever receives it, with the profile
//! of its origin that every member record made from it shares.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::identity::{Fingerprint, PublicIdentity, SentryError};
use crate::wire::{
    Addr, AsLink, Asn, Base64Text, NodeId, RumorBody, RumorContent, RumorId, SignedRumor,
};

/// Parsed public keys and admitted rumors. One per node in a daemon; a simulator running
/// thousands of nodes in one process shares one between all of them, so each distinct
/// rumor is parsed, checked and verified once and its body, signature and parsed content
/// are stored once. Sharing changes only the cost, never an outcome: parsing, the limits
/// and verification are deterministic functions of the bytes.
#[derive(Clone)]
pub struct VerifyCache {
    inner: Arc<Mutex<CacheInner>>,
    capacity: usize,
}

#[derive(Default)]
struct CacheInner {
    keys: HashMap<Fingerprint, Arc<PublicIdentity>>,
    admitted: HashMap<RumorId, Arc<AdmittedRumor>>,
    /// Body bytes of the admitted rumors.
    bytes: usize,
}

/// A rumor whose body parsed, kept its limits and carries a valid signature of the key in
/// it: the shared parse of one (body, signature) pair.
#[derive(Debug)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub struct AdmittedRumor {
    /// The parsed body.
    pub body: RumorBody,
    /// Fingerprint of the key in the body.
    pub fingerprint: Fingerprint,
    /// The signed body as received (what stores keep and forward).
    pub raw: Arc<RawValue>,
    /// The signature.
    pub sig: Base64Text,
    /// What an advertisement says of its origin (`None` for leaves and accusations).
    pub profile: Option<Arc<Profile>>,
}

/// What one advertisement says of its origin: its AS, address, key, links and peers. One
/// is made per admitted advertisement and shared by every member record made from it (in
/// a simulator, by every node's), so a member record costs a pointer, not a copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Profile {
    /// Its AS.
    pub asn: Asn,
    /// Where it listens.
    pub addr: Addr,
    /// Its key.
    pub fingerprint: Fingerprint,
    /// Its advertised links.
    pub links: Arc<[AsLink]>,
    /// Its direct overlay peers as the advertisement lists them (`None`: a version before
    /// peer lists).
    pub peers: Option<Arc<[NodeId]>>,
}

#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
impl AdmittedRumor {
    /// The rumor with this body and signature in an envelope with `age_ms` and `hops`.
    pub fn envelope(&self, age_ms: u64, hops: u32) -> SignedRumor {
        SignedRumor {
            origin: self.body.origin,
            seq: self.body.seq,
            subject: self.body.content.subject(),
            body: Arc::clone(&self.raw),
            sig: self.sig.clone(),
            age_ms,
            hops,
        }
    }

    /// A parsed rumor not yet verified: [`VerifyCache::admit`] checks its signature.
    pub fn new(body: RumorBody, raw: Arc<RawValue>, sig: Base64Text) -> Self {
        let fingerprint = Fingerprint::of_der(&body.pubkey);
        let profile = match &body.content {
            RumorContent::Advert {
                asn,
                addr,
                links,
                peers,
                ..
            } => Some(Arc::new(Profile {
                asn: *asn,
                addr: addr.clone(),
                fingerprint,
                links: Arc::clone(links),
                peers: peers.clone(),
            })),
            RumorContent::Leave { .. } | RumorContent::Accuse { .. } => None,
        };
        AdmittedRumor {
            fingerprint,
            body,
            raw,
            sig,
            profile,
        }
    }
}

impl fmt::Debug for VerifyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyCache(capacity {})", self.capacity)
    }
}

impl VerifyCache {
    /// A cache holding at most `capacity` keys and admitted rumors each, and at most
    /// 4 × `capacity` KiB of admitted bodies (when full, the rumors no store holds any more are
    /// dropped, or all of them if that is not enough).
    pub fn new(capacity: usize) -> Self {
        VerifyCache {
            inner: Arc::new(Mutex::new(CacheInner::default())),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic elsewhere cannot leave the maps inconsistent: every update is one insert.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rumor admitted earlier with exactly these body and signature bytes, if the
    /// cache still holds it (found by the id its envelope claims, then compared byte for
    /// byte).
    pub(crate) fn admitted(&self, rumor: &SignedRumor) -> Option<Arc<AdmittedRumor>> {
        let inner = self.lock();
        let known = inner.admitted.get(&rumor.id())?;
        let same_body = Arc::ptr_eq(&known.raw, &rumor.body) || known.raw.get() == rumor.body.get();
        (same_body && known.sig == rumor.sig).then(|| Arc::clone(known))
    }

    /// Verifies the signature of `rumor` with the key in its body and remembers it under
    /// its body's id, so that the same bytes are never parsed or verified again.
    pub(crate) fn admit(&self, rumor: AdmittedRumor) -> Result<Arc<AdmittedRumor>, SentryError> {
        let key = {
            let mut inner = self.lock();
            match inner.keys.get(&rumor.fingerprint) {
                Some(k) => Arc::clone(k),
                None => {
                    let k = Arc::new(PublicIdentity::from_der(&rumor.body.pubkey)?);
                    if inner.keys.len() >= self.capacity {
                        inner.keys.clear();
                    }
                    inner.keys.insert(rumor.fingerprint, Arc::clone(&k));
                    k
                }
            }
        };
        key.verify(rumor.raw.get().as_bytes(), &rumor.sig.decode())?;
        let rumor = Arc::new(rumor);
        let size = rumor.raw.get().len();
        let budget = self.capacity.saturating_mul(4 * 1024);
        let mut inner = self.lock();
        if inner.admitted.len() >= self.capacity || inner.bytes + size > budget {
            // Keep what some store still holds (its body is shared beyond this cache).
            inner.admitted.retain(|_, r| Arc::strong_count(&r.raw) > 1);
            inner.bytes = inner.admitted.values().map(|r| r.raw.get().len()).sum();
            if inner.admitted.len() >= self.capacity / 2 || inner.bytes + size > budget / 2 {
                inner.admitted.clear();
                inner.bytes = 0;
            }
        }
        inner.bytes += size;
        if let Some(old) = inner.admitted.insert(rumor.body.id(), Arc::clone(&rumor)) {
            inner.bytes = inner.bytes.saturating_sub(old.raw.get().len());
        }
        Ok(rumor)
    }

    /// Entries held: (keys, admitted rumors).
    pub fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.keys.len(), inner.admitted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::scheduler::Time;
    use crate::wire::NodeId;
    use crate::wire::{Asn, RumorContent, from_json};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// A signed leave of `node` and the parse the cache is handed.
    fn signed(node: u32, id: &Identity, rng: &mut ChaCha20Rng) -> (SignedRumor, AdmittedRumor) {
        let rumor = crate::gossip::sign(
            NodeId(node),
            1,
            Time::ZERO,
            id,
            rng,
            RumorContent::Leave { asn: Asn(node) },
        )
        .envelope(0, 0);
        let body = from_json(rumor.body.get().as_bytes()).unwrap();
        let parsed = AdmittedRumor::new(body, Arc::clone(&rumor.body), rumor.sig.clone());
        (rumor, parsed)
    }

    #[test]
    fn shared_cache_parses_and_verifies_each_rumor_once() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let id = Identity::generate(&mut rng, 2048).unwrap();
        let cache = VerifyCache::new(16);
        let other = cache.clone();
        let (rumor, parsed) = signed(1, &id, &mut rng);
        assert!(cache.admitted(&rumor).is_none());
        let admitted = cache.admit(parsed).unwrap();
        // Another copy of the same bytes (parsed from the wire: not the same allocation).
        let copy: SignedRumor = from_json(&crate::wire::to_json(&rumor)).unwrap();
        assert!(!Arc::ptr_eq(&copy.body, &rumor.body));
        let shared = other.admitted(&copy).expect("shared with every clone");
        assert!(Arc::ptr_eq(&admitted, &shared) && Arc::ptr_eq(&shared.raw, &rumor.body));
        assert_eq!(shared.fingerprint, id.fingerprint());
        // The same id with other signature bytes is not the admitted rumor, and a
        // signature that does not verify is refused and not remembered.
        let mut forged = rumor.clone();
        forged.sig = vec![0u8; rumor.sig.decode().len()].into();
        assert!(cache.admitted(&forged).is_none());
        let body = from_json(rumor.body.get().as_bytes()).unwrap();
        let refused = cache.admit(AdmittedRumor::new(
            body,
            Arc::clone(&rumor.body),
            forged.sig.clone(),
        ));
        assert_eq!(refused.err(), Some(SentryError::BadSignature));
        assert!(cache.admitted(&rumor).is_some() && cache.admitted(&forged).is_none());
        assert_eq!(cache.sizes(), (1, 1));
    }

    #[test]
    fn a_full_cache_keeps_the_rumors_a_store_still_holds() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let id = Identity::generate(&mut rng, 2048).unwrap();
        let cache = VerifyCache::new(4);
        let mut held = None;
        let mut ids = Vec::new();
        for node in 1..=5 {
            let (rumor, parsed) = signed(node, &id, &mut rng);
            cache.admit(parsed).unwrap();
            ids.push(rumor.id());
            // Only the first rumor's body stays held outside the cache (as a store would).
            if node == 1 {
                held = Some(rumor);
            }
        }
        let admitted = |i: usize| cache.lock().admitted.contains_key(&ids[i]);
        assert!(held.is_some() && admitted(0), "a store holds it");
        assert!(!admitted(1), "nobody held it");
        assert!(admitted(4), "just admitted");
        assert_eq!(cache.sizes(), (1, 2));
    }
}
