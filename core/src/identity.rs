//! Identities: RSA node keys, their fingerprints and signatures, the cluster keys and the
//! keyring, and the cluster-key proofs of the handshake.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::wire::b64;

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

/// Two public identities are the same key when their DER forms are.
impl PartialEq for PublicIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for PublicIdentity {}

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

    /// The raw key (input to the link keys' derivation).
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
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

#[cfg(test)]
mod tests {
    use super::*;

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

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
}
