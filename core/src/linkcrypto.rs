//! The handshake's transcript and signing inputs, and the link cipher: link keys derived
//! from the transcript, frames sealed with XChaCha20-Poly1305 under chained nonces.

use std::fmt;

use chacha20::{R20, hchacha};
use hkdf::Hkdf;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

use crate::identity::{ClusterKey, SentryError, TAG_LEN};
use crate::wire::{Addr, FRAME_HEADER_LEN, HelloIdentity};

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
    let ikm = [cluster_key.bytes().as_slice(), dh_shared.as_slice()].concat();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
