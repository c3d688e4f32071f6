//! The sentry guards the node: RSA identities and signatures, the cluster keyring, the
//! handshake's transcript, proofs and link-key derivation, hop encryption with chained
//! nonces, and the reputation of peers (offenses, bans, accusations, eviction by quorum).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chacha20::{R20, hchacha};
use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::scheduler::Time;
use crate::wire::{
    Addr, Base64Text, FRAME_HEADER_LEN, HelloIdentity, NodeId, RumorBody, RumorId, SignedRumor, b64,
};

/// Smallest RSA modulus accepted, in bits.
pub(crate) const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits (bounds the cost of one verification).
pub(crate) const MAX_RSA_BITS: usize = 4096;
/// Bytes of the authentication tag of a sealed frame.
pub(crate) const TAG_LEN: usize = 16;

/// Failures of keys, signatures and sealed frames.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SentryError {
    /// The PEM/DER text is not a usable RSA key.
    #[error("invalid RSA key: {0}")]
    BadKey(String),
    /// The RSA modulus is outside the accepted sizes.
    #[error("RSA key of {0} bits (accepted: {MIN_RSA_BITS} to {MAX_RSA_BITS})")]
    KeySize(usize),
    /// A signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A cluster key is not 32 bytes of base64.
    #[error("cluster key must be 32 bytes of base64: {0}")]
    BadClusterKey(String),
    /// A sealed frame failed authentication (tampered, replayed, reordered or dropped).
    #[error("hop authentication failed")]
    HopAuth,
    /// The private-key operation failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// SHA-256 of a node's public key (SubjectPublicKeyInfo DER).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER public key.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Fingerprint(out))
    }

    /// The first 8 hex digits, for logs.
    pub fn short(&self) -> String {
        self.to_hex().chars().take(8).collect()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <&str>::deserialize(d)?;
        Fingerprint::from_hex(text).ok_or_else(|| serde::de::Error::custom("bad fingerprint"))
    }
}

/// A verified public key with its DER form and fingerprint.
#[derive(Clone, Debug)]
pub struct PublicIdentity {
    key: PublicKey,
    der: Vec<u8>,
    fingerprint: Fingerprint,
}

impl PublicIdentity {
    /// Parses a SubjectPublicKeyInfo DER RSA key of an accepted size.
    pub fn from_der(der: &[u8]) -> Result<Self, SentryError> {
        let key =
            PublicKey::from_public_key_der(der).map_err(|e| SentryError::BadKey(e.to_string()))?;
        let bits = key.size() * 8;
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(SentryError::KeySize(bits));
        }
        Ok(PublicIdentity {
            key,
            der: der.to_vec(),
            fingerprint: Fingerprint::of_der(der),
        })
    }

    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) RSA key of an accepted size.
    pub fn from_public_pem(pem: &str) -> Result<Self, SentryError> {
        let key =
            PublicKey::from_public_key_pem(pem).map_err(|e| SentryError::BadKey(e.to_string()))?;
        let der = key
            .to_public_key_der()
            .map_err(|e| SentryError::BadKey(e.to_string()))?;
        Self::from_der(der.as_bytes())
    }

    /// The PEM `PUBLIC KEY` form.
    pub fn to_public_pem(&self) -> Result<String, SentryError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| SentryError::BadKey(e.to_string()))
    }

    /// Checks a PKCS#1 v1.5 SHA-256 signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> Result<(), SentryError> {
        self.key
            .pkcs1v15_verify::<Sha256>(msg, sig)
            .map_err(|_| SentryError::BadSignature)
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER encoding.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.size() * 8
    }
}

/// A node's RSA identity: private key, public key, fingerprint.
#[derive(Clone)]
pub struct Identity {
    key: PrivateKey,
    public: PublicIdentity,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.public.fingerprint.short())
    }
}

impl Identity {
    /// Generates a key of `bits` (2048 by default in the tools; 4096 allowed).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, bits: usize) -> Result<Self, SentryError> {
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
            return Err(SentryError::KeySize(bits));
        }
        let key = PrivateKey::new(rng, bits).map_err(|e| SentryError::BadKey(e.to_string()))?;
        Self::from_private(key)
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, SentryError> {
        let key =
            PrivateKey::from_pkcs8_pem(pem).map_err(|e| SentryError::BadKey(e.to_string()))?;
        Self::from_private(key)
    }

    fn from_private(key: PrivateKey) -> Result<Self, SentryError> {
        let der = key
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| SentryError::BadKey(e.to_string()))?;
        let public = PublicIdentity::from_der(der.as_bytes())?;
        Ok(Identity { key, public })
    }

    /// Writes the private key as PKCS#8 PEM.
    pub fn to_pkcs8_pem(&self) -> Result<String, SentryError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| SentryError::BadKey(e.to_string()))
    }

    /// The public half.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// SHA-256 of the public key's DER.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public.fingerprint
    }

    /// PKCS#1 v1.5 SHA-256 signature of `msg` (blinded with `rng`).
    pub fn sign<R: CryptoRng + ?Sized>(&self, rng: &mut R, msg: &[u8]) -> Vec<u8> {
        // Signing with a valid 2048..4096-bit key and a SHA-256 digest cannot fail.
        self.key
            .pkcs1v15_sign_with_rng::<Sha256, R>(rng, msg)
            .unwrap_or_default()
    }
}

/// A 32-byte shared secret that admits nodes to the cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey(id {})", self.id())
    }
}

impl ClusterKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ClusterKey(bytes)
    }

    /// Parses base64 (standard alphabet) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SentryError> {
        let bytes =
            b64::decode(text.trim()).map_err(|e| SentryError::BadClusterKey(e.to_string()))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(ClusterKey)
            .map_err(|_| SentryError::BadClusterKey(format!("{} bytes", bytes.len())))
    }

    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        ClusterKey(bytes)
    }

    /// Base64 text of the key.
    pub fn to_base64(&self) -> String {
        b64::encode(&self.0)
    }

    /// A public id of the key (16 hex digits of a hash), safe to send in hellos.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"overlay-network cluster key id")
            .chain_update(self.0)
            .finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    fn hmac(&self, what: Proof, transcript: &[u8; 32]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(what.label());
        mac.update(transcript);
        mac
    }

    /// Proof that the sender of a handshake message holds this key, bound to the transcript.
    pub fn prove(&self, what: Proof, transcript: &[u8; 32]) -> [u8; 32] {
        self.hmac(what, transcript).finalize().into_bytes().into()
    }

    /// Checks a proof in constant time.
    pub fn check_proof(&self, what: Proof, transcript: &[u8; 32], proof: &[u8; 32]) -> bool {
        self.hmac(what, transcript).verify_slice(proof).is_ok()
    }
}

/// The cluster keys a node accepts; the first one is used when dialing.
#[derive(Clone, Debug)]
pub(crate) struct Keyring {
    primary: ClusterKey,
    others: Vec<ClusterKey>,
}

impl Keyring {
    /// A keyring whose first key is used; `None` when empty.
    pub(crate) fn new(keys: Vec<ClusterKey>) -> Option<Self> {
        let mut keys = keys.into_iter();
        let primary = keys.next()?;
        Some(Keyring {
            primary,
            others: keys.collect(),
        })
    }

    /// The key used when dialing.
    pub(crate) fn primary(&self) -> &ClusterKey {
        &self.primary
    }

    /// The key with this id, if accepted.
    pub(crate) fn by_id(&self, id: &str) -> Option<&ClusterKey> {
        std::iter::once(&self.primary)
            .chain(&self.others)
            .find(|k| k.id() == id)
    }
}

/// Which handshake message a cluster-key proof belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// The dialer's hello (checked before the listener does any RSA work).
    Hello,
    /// The listener's welcome.
    Welcome,
    /// The dialer's finish.
    Finish,
}

impl Proof {
    fn label(self) -> &'static [u8] {
        match self {
            Proof::Hello => b"overlay-network v1 hello proof",
            Proof::Welcome => b"overlay-network v1 welcome proof",
            Proof::Finish => b"overlay-network v1 finish proof",
        }
    }
}

/// Which side of a handshake a message or key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub enum Role {
    /// The side that dialed.
    Dialer,
    /// The side that accepted the connection.
    Listener,
}

impl Role {
    fn label(self) -> &'static [u8] {
        match self {
            Role::Dialer => b"overlay-network v1 dialer",
            Role::Listener => b"overlay-network v1 listener",
        }
    }
}

/// Hashes the handshake transcript field by field (each length-prefixed).
#[derive(Clone)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub struct Transcript(Sha256);

impl Default for Transcript {
    fn default() -> Self {
        Transcript::new()
    }
}

#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
impl Transcript {
    /// A transcript with the protocol label.
    pub fn new() -> Self {
        let mut t = Transcript(Sha256::new());
        t.field(b"overlay-network handshake v1");
        t
    }

    /// Adds one field.
    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update((bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds every field of a hello.
    pub fn hello(&mut self, h: &HelloIdentity) -> &mut Self {
        self.field(&h.version.to_be_bytes())
            .field(&h.node.0.to_be_bytes())
            .field(&h.asn.0.to_be_bytes())
            .field(&h.pubkey)
            .field(&h.nonce)
            .field(&h.ephemeral)
            .field(h.listen.0.as_bytes())
            .field(h.key_id.as_bytes())
            .field(&h.issued_at.to_be_bytes());
        if let Some(cert) = &h.cert {
            self.field(&cert.signed).field(&cert.sig);
        }
        self
    }

    /// Adds a list of addresses.
    pub fn addrs(&mut self, addrs: &[Addr]) -> &mut Self {
        self.field(&(addrs.len() as u64).to_be_bytes());
        for a in addrs {
            self.field(a.0.as_bytes());
        }
        self
    }

    /// The hash so far.
    pub fn digest(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

/// The message an identity signs in a handshake.
pub(crate) fn handshake_signing_input(role: Role, transcript: &[u8; 32]) -> Vec<u8> {
    [role.label(), transcript.as_slice()].concat()
}

/// One direction of an established link: XChaCha20-Poly1305 with a nonce chained from the
/// previous frame (`next = SHA-256(label ‖ nonce ‖ tag)[..24]`), so that a replayed,
/// reordered, dropped or altered frame fails authentication.
///
/// XChaCha20-Poly1305 is built as its specification (draft-irtf-cfrg-xchacha) defines it:
/// the HChaCha20 subkey of the key and the nonce's first 16 bytes, then the IETF
/// ChaCha20-Poly1305 AEAD (ring's) under that subkey with the nonce `0⁴ ‖ nonce[16..24]`.
/// A test checks it byte for byte against RustCrypto's `XChaCha20Poly1305`; ring's AEAD is
/// about three times faster on link-sized frames.
#[derive(Clone)]
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub struct LinkCipher {
    key: [u8; 32],
    nonce: [u8; 24],
    frames: u64,
}

impl fmt::Debug for LinkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LinkCipher(frame {})", self.frames)
    }
}

impl LinkCipher {
    fn new(key: [u8; 32], nonce: [u8; 24]) -> Self {
        LinkCipher {
            key,
            nonce,
            frames: 0,
        }
    }

    /// The ChaCha20-Poly1305 key and nonce of the current frame.
    fn frame_aead(&self) -> Option<(LessSafeKey, Nonce)> {
        let (head, tail) = self.nonce.split_at(16);
        let subkey = hchacha::<R20>(&self.key.into(), &<[u8; 16]>::try_from(head).ok()?.into());
        let key = UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice()).ok()?;
        let mut nonce = [0u8; 12];
        nonce.get_mut(4..)?.copy_from_slice(tail);
        Some((LessSafeKey::new(key), Nonce::assume_unique_for_key(nonce)))
    }

    fn advance(&mut self, ciphertext: &[u8]) {
        let tag = ciphertext
            .get(ciphertext.len().saturating_sub(TAG_LEN)..)
            .unwrap_or_default();
        let next = Sha256::new()
            .chain_update(b"overlay-network nonce chain")
            .chain_update(self.nonce)
            .chain_update(tag)
            .finalize();
        self.nonce
            .copy_from_slice(next.get(..24).unwrap_or(&[0; 24]));
        self.frames += 1;
    }

    /// Encrypts one frame body and advances the chain.
    #[cfg(any(test, feature = "test-util"))]
    #[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.sealed(plaintext, false)
    }

    /// Encrypts one frame body and advances the chain; returns the whole frame (length
    /// prefix and ciphertext) in one buffer.
    #[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
    pub fn seal_frame(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.sealed(plaintext, true)
    }

    fn sealed(&mut self, plaintext: &[u8], framed: bool) -> Vec<u8> {
        let start = if framed { FRAME_HEADER_LEN } else { 0 };
        let len = plaintext.len() + TAG_LEN;
        let mut out = Vec::with_capacity(start + len);
        if framed {
            out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
        out.extend_from_slice(plaintext);
        // Sealing fails only for messages beyond 256 GiB (frames are capped far below).
        let tag = self.frame_aead().and_then(|(key, nonce)| {
            key.seal_in_place_separate_tag(nonce, Aad::empty(), out.get_mut(start..)?)
                .ok()
        });
        match tag {
            Some(tag) => out.extend_from_slice(tag.as_ref()),
            None => out.truncate(start),
        }
        self.advance(out.get(start..).unwrap_or_default());
        out
    }

    /// Decrypts one frame body; on success advances the chain, on failure leaves it as is.
    pub(crate) fn open(&mut self, ciphertext: &[u8]) -> Result<Vec<u8>, SentryError> {
        let (key, nonce) = self.frame_aead().ok_or(SentryError::HopAuth)?;
        let mut buffer = ciphertext.to_vec();
        let len = key
            .open_in_place(nonce, Aad::empty(), &mut buffer)
            .map_err(|_| SentryError::HopAuth)?
            .len();
        buffer.truncate(len);
        self.advance(ciphertext);
        Ok(buffer)
    }
}

/// Derives both directions of a link from the cluster key, the X25519 shared secret and the
/// final transcript. Returns `(send, receive)` for `role`.
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub fn derive_link_ciphers(
    cluster_key: &ClusterKey,
    dh_shared: &[u8; 32],
    transcript: &[u8; 32],
    role: Role,
) -> (LinkCipher, LinkCipher) {
    let ikm = [cluster_key.0.as_slice(), dh_shared.as_slice()].concat();
    let hk = Hkdf::<Sha256>::new(Some(transcript), &ikm);
    let direction = |label: &[u8]| {
        let mut key = [0u8; 32];
        let mut nonce = [0u8; 24];
        // 32 and 24 bytes are far below HKDF-SHA256's 8160-byte limit.
        let _ = hk.expand(&[label, b" key"].concat(), &mut key);
        let _ = hk.expand(&[label, b" nonce"].concat(), &mut nonce);
        LinkCipher::new(key, nonce)
    };
    let d2l = direction(b"dialer to listener");
    let l2d = direction(b"listener to dialer");
    match role {
        Role::Dialer => (d2l, l2d),
        Role::Listener => (l2d, d2l),
    }
}

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
pub struct AdmittedRumor {
    /// The parsed body.
    pub body: RumorBody,
    /// Fingerprint of the key in the body.
    pub fingerprint: Fingerprint,
    /// The signed body as received (what stores keep and forward).
    pub raw: Arc<RawValue>,
    /// The signature.
    pub sig: Base64Text,
}

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
        AdmittedRumor {
            fingerprint: Fingerprint::of_der(&body.pubkey),
            body,
            raw,
            sig,
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
    pub fn admitted(&self, rumor: &SignedRumor) -> Option<Arc<AdmittedRumor>> {
        let inner = self.lock();
        let known = inner.admitted.get(&rumor.id())?;
        let same_body = Arc::ptr_eq(&known.raw, &rumor.body) || known.raw.get() == rumor.body.get();
        (same_body && known.sig == rumor.sig).then(|| Arc::clone(known))
    }

    /// Verifies the signature of `rumor` with the key in its body and remembers it under
    /// its body's id, so that the same bytes are never parsed or verified again.
    pub fn admit(&self, rumor: AdmittedRumor) -> Result<Arc<AdmittedRumor>, SentryError> {
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

/// Limits and durations of the reputation system.
#[derive(Clone, Debug)]
pub(crate) struct ReputationPolicy {
    /// Offenses within `offense_window` that get a peer banned.
    pub reject_threshold: u32,
    /// How long offenses are remembered.
    pub offense_window: Duration,
    /// How long a ban or an eviction lasts.
    pub ban_duration: Duration,
    /// Distinct accusers needed to evict a node.
    pub ban_quorum: usize,
    /// Most peers tracked for offenses, bans and evictions each.
    pub max_tracked: usize,
}

/// What the sentry decided about an offense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Counted; the peer stays (offenses so far in the window).
    Counted(u32),
    /// The threshold was reached: the peer is now banned until the given time.
    Banned(Time),
}

/// A node evicted by a quorum of accusers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Eviction {
    /// The evicted node.
    pub node: NodeId,
    /// Its key.
    pub fingerprint: Fingerprint,
    /// Who accused it.
    pub accusers: Vec<NodeId>,
    /// When the eviction ends.
    pub until: Time,
}

#[derive(Debug, Clone, Default)]
struct Accused {
    node: Option<NodeId>,
    /// accuser -> when that accusation expires
    accusers: BTreeMap<NodeId, Time>,
}

/// Offenses, bans, accusations and evictions, all bounded and all expiring.
#[derive(Debug, Clone)]
pub(crate) struct Reputation {
    policy: ReputationPolicy,
    offenses: HashMap<Fingerprint, VecDeque<Time>>,
    bans: HashMap<Fingerprint, Time>,
    accused: HashMap<Fingerprint, Accused>,
    evicted: HashMap<Fingerprint, (NodeId, Time)>,
}

impl Reputation {
    /// An empty record.
    pub(crate) fn new(policy: ReputationPolicy) -> Self {
        Reputation {
            policy,
            offenses: HashMap::new(),
            bans: HashMap::new(),
            accused: HashMap::new(),
            evicted: HashMap::new(),
        }
    }

    /// Counts an offense of the peer with key `fp`; bans it at the threshold.
    pub(crate) fn offense(&mut self, now: Time, fp: Fingerprint) -> Verdict {
        if let Some(&until) = self.bans.get(&fp) {
            return Verdict::Banned(until);
        }
        if !self.offenses.contains_key(&fp) && self.offenses.len() >= self.policy.max_tracked {
            self.offenses.retain(|_, times| times.len() > 1);
            if self.offenses.len() >= self.policy.max_tracked {
                self.offenses.clear();
            }
        }
        let window = self.policy.offense_window;
        let times = self.offenses.entry(fp).or_default();
        while times.front().is_some_and(|&t| now.since(t) > window) {
            times.pop_front();
        }
        times.push_back(now);
        let count = u32::try_from(times.len()).unwrap_or(u32::MAX);
        if count >= self.policy.reject_threshold {
            Verdict::Banned(self.convict(now, fp))
        } else {
            Verdict::Counted(count)
        }
    }

    /// Bans the key `fp` at once (its misbehaviour is proven by its own signature, or it
    /// reached the offense threshold); returns when the ban ends. A key already banned
    /// keeps its ban.
    pub(crate) fn convict(&mut self, now: Time, fp: Fingerprint) -> Time {
        if let Some(&until) = self.bans.get(&fp) {
            return until;
        }
        self.offenses.remove(&fp);
        let until = now + self.policy.ban_duration;
        if self.bans.len() < self.policy.max_tracked {
            self.bans.insert(fp, until);
        }
        until
    }

    /// Records that `accuser` accuses the node `accused` with key `fp`. Returns the eviction
    /// when this accusation completes the quorum.
    pub(crate) fn accusation(
        &mut self,
        now: Time,
        accuser: NodeId,
        accused: NodeId,
        fp: Fingerprint,
    ) -> Option<Eviction> {
        if accuser == accused || self.evicted.contains_key(&fp) {
            return None;
        }
        if !self.accused.contains_key(&fp) && self.accused.len() >= self.policy.max_tracked {
            return None;
        }
        let entry = self.accused.entry(fp).or_default();
        entry.node = Some(accused);
        if entry.accusers.len() >= self.policy.max_tracked && !entry.accusers.contains_key(&accuser)
        {
            return None;
        }
        entry
            .accusers
            .insert(accuser, now + self.policy.ban_duration);
        if entry.accusers.len() < self.policy.ban_quorum {
            return None;
        }
        let accusers: Vec<NodeId> = entry.accusers.keys().copied().collect();
        self.accused.remove(&fp);
        let until = now + self.policy.ban_duration;
        if self.evicted.len() >= self.policy.max_tracked {
            return None;
        }
        self.evicted.insert(fp, (accused, until));
        Some(Eviction {
            node: accused,
            fingerprint: fp,
            accusers,
            until,
        })
    }

    /// Forgets accusations made by `accuser` (it was itself evicted, or left).
    pub(crate) fn discard_accuser(&mut self, accuser: NodeId) {
        for entry in self.accused.values_mut() {
            entry.accusers.remove(&accuser);
        }
        self.accused.retain(|_, e| !e.accusers.is_empty());
    }

    /// Whether the key is banned locally.
    pub(crate) fn is_banned(&self, fp: &Fingerprint) -> bool {
        self.bans.contains_key(fp)
    }

    /// Whether the key was evicted by quorum.
    pub(crate) fn is_evicted(&self, fp: &Fingerprint) -> bool {
        self.evicted.contains_key(fp)
    }

    /// Whether the key may not connect or be listened to (banned or evicted).
    pub(crate) fn is_excluded(&self, fp: &Fingerprint) -> bool {
        self.is_banned(fp) || self.is_evicted(fp)
    }

    /// Evicted keys with their node ids and end times.
    pub(crate) fn evictions(&self) -> impl Iterator<Item = (&Fingerprint, NodeId, Time)> {
        self.evicted
            .iter()
            .map(|(fp, &(node, until))| (fp, node, until))
    }

    /// Banned keys with their end times.
    pub(crate) fn bans(&self) -> impl Iterator<Item = (&Fingerprint, Time)> {
        self.bans.iter().map(|(fp, &until)| (fp, until))
    }

    /// The earliest time at which something expires.
    pub(crate) fn next_expiry(&self) -> Option<Time> {
        let bans = self.bans.values().copied();
        let evictions = self.evicted.values().map(|&(_, t)| t);
        let accusations = self
            .accused
            .values()
            .flat_map(|a| a.accusers.values().copied());
        bans.chain(evictions).chain(accusations).min()
    }

    /// Drops everything expired by `now`; returns the nodes whose eviction ended.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<(NodeId, Fingerprint)> {
        self.bans.retain(|_, &mut until| until > now);
        for entry in self.accused.values_mut() {
            entry.accusers.retain(|_, &mut until| until > now);
        }
        self.accused.retain(|_, e| !e.accusers.is_empty());
        let mut ended = Vec::new();
        self.evicted.retain(|fp, &mut (node, until)| {
            let keep = until > now;
            if !keep {
                ended.push((node, *fp));
            }
            keep
        });
        ended
    }

    /// Entries held, for cap checks: (offenders, bans, accused, evicted).
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.offenses.len(),
            self.bans.len(),
            self.accused.len(),
            self.evicted.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Asn, RumorContent, from_json};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn policy() -> ReputationPolicy {
        ReputationPolicy {
            reject_threshold: 3,
            offense_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(600),
            ban_quorum: 2,
            max_tracked: 8,
        }
    }

    #[test]
    fn the_link_cipher_is_xchacha20_poly1305_byte_for_byte() {
        use chacha20poly1305::aead::{Aead, KeyInit as _};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let (key, nonce) = ([0x42; 32], *b"overlay-network-nonce-24");
        let reference = XChaCha20Poly1305::new(&key.into());
        for len in [0, 1, 63, 64, 65, 1300, 16_384] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut cipher = LinkCipher::new(key, nonce);
            let sealed = cipher.seal(&plain);
            let expected = reference
                .encrypt(&XNonce::from(nonce), plain.as_slice())
                .unwrap();
            assert_eq!(sealed, expected, "{len} bytes");
            let framed = LinkCipher::new(key, nonce).seal_frame(&plain);
            assert_eq!(framed, crate::wire::encode_frame(&expected));
            let mut opener = LinkCipher::new(key, nonce);
            assert_eq!(opener.open(&sealed).unwrap(), plain);
            let mut tampered = sealed.clone();
            if let Some(b) = tampered.last_mut() {
                *b ^= 1;
            }
            assert_eq!(
                LinkCipher::new(key, nonce).open(&tampered),
                Err(SentryError::HopAuth)
            );
        }
    }

    #[test]
    fn chained_nonces_reject_replay_reorder_drop_and_tamper() {
        let key = ClusterKey::from_bytes([9; 32]);
        let transcript = [1; 32];
        let dh = [2; 32];
        let (mut tx, _) = derive_link_ciphers(&key, &dh, &transcript, Role::Dialer);
        let (_, mut rx) = derive_link_ciphers(&key, &dh, &transcript, Role::Listener);
        let f1 = tx.seal(b"one");
        let f2 = tx.seal(b"two");
        let f3 = tx.seal(b"three");
        assert_eq!(rx.open(&f1).unwrap(), b"one");
        assert_eq!(rx.open(&f1), Err(SentryError::HopAuth), "replay");
        assert_eq!(rx.open(&f3), Err(SentryError::HopAuth), "drop/reorder");
        let mut bad = f2.clone();
        bad[0] ^= 1;
        assert_eq!(rx.open(&bad), Err(SentryError::HopAuth), "tamper");
        assert_eq!(rx.open(&f2).unwrap(), b"two", "chain intact after rejects");
        assert_eq!(rx.open(&f3).unwrap(), b"three");
        // A different cluster key derives a different link.
        let (_, mut other) = derive_link_ciphers(
            &ClusterKey::from_bytes([8; 32]),
            &dh,
            &transcript,
            Role::Listener,
        );
        assert_eq!(other.open(&f1), Err(SentryError::HopAuth));
    }

    #[test]
    fn identity_roundtrips_and_signatures_verify() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let id = Identity::generate(&mut rng, 2048).unwrap();
        let pem = id.to_pkcs8_pem().unwrap();
        let again = Identity::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(id.fingerprint(), again.fingerprint());
        let sig = id.sign(&mut rng, b"msg");
        let public = PublicIdentity::from_der(id.public().der()).unwrap();
        assert_eq!(public.bits(), 2048);
        assert!(public.verify(b"msg", &sig).is_ok());
        assert_eq!(public.verify(b"msh", &sig), Err(SentryError::BadSignature));
        assert!(Identity::generate(&mut rng, 1024).is_err());
        assert!(PublicIdentity::from_der(b"garbage").is_err());
        let fp = id.fingerprint();
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()), Some(fp));
    }

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

    #[test]
    fn cluster_key_proofs_bind_role_and_transcript() {
        let key = ClusterKey::from_bytes([3; 32]);
        let t = [4; 32];
        let proof = key.prove(Proof::Welcome, &t);
        assert!(key.check_proof(Proof::Welcome, &t, &proof));
        assert!(!key.check_proof(Proof::Finish, &t, &proof));
        assert!(!key.check_proof(Proof::Welcome, &[5; 32], &proof));
        assert!(!ClusterKey::from_bytes([6; 32]).check_proof(Proof::Welcome, &t, &proof));
        assert_eq!(ClusterKey::from_base64(&key.to_base64()), Ok(key.clone()));
        assert!(ClusterKey::from_base64("c2hvcnQ=").is_err());
        let ring = Keyring::new(vec![ClusterKey::from_bytes([1; 32]), key.clone()]).unwrap();
        assert_eq!(ring.by_id(&key.id()), Some(&key));
        assert!(Keyring::new(vec![]).is_none());
    }

    #[test]
    fn offenses_ban_at_threshold_and_expire() {
        let mut r = Reputation::new(policy());
        let fp = Fingerprint([1; 32]);
        let t0 = Time::from_millis(0);
        assert_eq!(r.offense(t0, fp), Verdict::Counted(1));
        // Outside the window the first offense is forgotten.
        assert_eq!(
            r.offense(Time::from_millis(61_000), fp),
            Verdict::Counted(1)
        );
        assert_eq!(
            r.offense(Time::from_millis(62_000), fp),
            Verdict::Counted(2)
        );
        let until = Time::from_millis(63_000 + 600_000);
        assert_eq!(
            r.offense(Time::from_millis(63_000), fp),
            Verdict::Banned(until)
        );
        assert!(r.is_banned(&fp));
        assert_eq!(r.next_expiry(), Some(until));
        r.expire(until);
        assert!(!r.is_banned(&fp));
    }

    #[test]
    fn eviction_needs_a_quorum_of_distinct_accusers() {
        let mut r = Reputation::new(policy());
        let fp = Fingerprint([2; 32]);
        let now = Time::from_millis(5);
        assert_eq!(r.accusation(now, NodeId(1), NodeId(9), fp), None);
        assert_eq!(
            r.accusation(now, NodeId(1), NodeId(9), fp),
            None,
            "same accuser twice"
        );
        assert_eq!(
            r.accusation(now, NodeId(9), NodeId(9), fp),
            None,
            "self-accusation"
        );
        let ev = r.accusation(now, NodeId(2), NodeId(9), fp).unwrap();
        assert_eq!(ev.accusers, vec![NodeId(1), NodeId(2)]);
        assert!(r.is_evicted(&fp));
        assert_eq!(r.expire(ev.until), vec![(NodeId(9), fp)]);
        assert!(!r.is_excluded(&fp));
    }

    #[test]
    fn tracking_is_bounded() {
        let mut r = Reputation::new(policy());
        for i in 0..100u8 {
            r.offense(Time::ZERO, Fingerprint([i; 32]));
            r.accusation(
                Time::ZERO,
                NodeId(1),
                NodeId(u32::from(i) + 10),
                Fingerprint([i; 32]),
            );
        }
        let (offenders, bans, accused, evicted) = r.sizes();
        assert!(offenders <= 8 && bans <= 8 && accused <= 8 && evicted <= 8);
        // A quorum against each of 100 keys: the evictions are capped too.
        let mut r = Reputation::new(policy());
        for i in 0..100u8 {
            for accuser in [1, 2] {
                r.accusation(
                    Time::ZERO,
                    NodeId(accuser),
                    NodeId(u32::from(i) + 10),
                    Fingerprint([i; 32]),
                );
            }
        }
        assert_eq!(r.sizes().3, 8);
    }
}
