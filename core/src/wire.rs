//! The wire: identifiers shared by every component, length-prefixed frames and their
//! reassembly from arbitrary chunks, and the versioned JSON messages.
//!
//! A frame is a 4-byte big-endian body length followed by the body. Handshake bodies are
//! plaintext JSON ([`Handshake`]); after the handshake every body is a sealed
//! [`LinkMessage`] (see `linkcrypto::LinkCipher`). Rumors carry their origin-signed body as raw
//! JSON ([`SignedRumor::body`]) so that forwarding never re-serialises what was signed.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

/// The protocol version spoken in hellos.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes of the length prefix.
pub const FRAME_HEADER_LEN: usize = 4;
/// Most addresses a hello carries.
pub const MAX_HELLO_PEERS: usize = 32;
/// Longest accepted address.
pub const MAX_ADDR_LEN: usize = 256;
/// Most AS links one advertisement may carry.
pub const MAX_ADVERT_LINKS: usize = 1024;
/// Most rumors one frame may carry.
pub const MAX_BATCH: usize = 1024;
/// Most rumor ids in one announcement, graft, pull or digest.
pub const MAX_IDS: usize = 4096;
/// Longest free-text reason accepted from a peer.
pub const MAX_REASON_LEN: usize = 256;

/// A connection handle chosen by the embedder (unique among its open connections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// A route controller's numeric id (`self.id` in the configs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RC{}", self.0)
    }
}

/// An autonomous system number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Asn(pub u32);

impl fmt::Display for Asn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AS{}", self.0)
    }
}

/// A transport address, opaque to the core (e.g. `"127.0.0.1:1450"`); clones share the text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Addr(pub Arc<str>);

impl Addr {
    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Addr {
    fn from(s: &str) -> Self {
        Addr(s.into())
    }
}

impl From<String> for Addr {
    fn from(s: String) -> Self {
        Addr(s.into())
    }
}

/// One link of an AS to a neighbouring AS, as configured and advertised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AsLink {
    /// The neighbouring AS.
    pub asn: Asn,
    /// Link capacity (Mbps in the original configs).
    pub capacity: u64,
    /// Routing cost of the link.
    pub cost: u64,
}

/// Why bytes could not be turned into frames or messages.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The length prefix announces more than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// Announced body length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The body is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The message is valid JSON but breaks a limit or a rule of the protocol.
    #[error("protocol violation: {0}")]
    Violation(String),
    /// Well-formed, but of a kind this version does not know (a newer version's link
    /// message or rumor kind): ignored, never blamed.
    #[error("unknown kind: {0}")]
    Unknown(String),
}

/// Buffer capacity a [`FrameDecoder`] keeps once it has handed out the frames it held
/// (beyond it, a buffer grown by a burst is released or shrunk).
pub const RETAINED_CAPACITY: usize = 16 * 1024;

/// Reassembles frames from arbitrary chunks. Holds at most one partial frame plus what the
/// last chunk carried; rejects a length prefix over `max_body` before buffering the body.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
    max_body: usize,
}

impl FrameDecoder {
    /// A decoder for bodies of at most `max_body` bytes.
    pub fn new(max_body: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_body,
        }
    }

    /// Changes the largest body accepted from now on; buffered bytes are kept.
    pub fn set_max(&mut self, max_body: usize) {
        self.max_body = max_body;
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Gives back what a burst of large frames grew the buffer to, instead of keeping it
    /// for the life of the link: all of it once empty, down to [`RETAINED_CAPACITY`] once
    /// it holds less.
    fn release_burst(&mut self) {
        if self.buf.capacity() <= RETAINED_CAPACITY {
            return;
        }
        if self.buf.is_empty() {
            self.buf = Vec::new();
        } else if self.buf.len() <= RETAINED_CAPACITY {
            self.buf.shrink_to(RETAINED_CAPACITY);
        }
    }

    /// Bytes held but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame body, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some(header) = pending.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header) as usize;
        if len > self.max_body {
            return Err(WireError::FrameTooLarge {
                len,
                max: self.max_body,
            });
        }
        let Some(body) = pending.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len) else {
            return Ok(None);
        };
        let body = body.to_vec();
        self.start += FRAME_HEADER_LEN + len;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.start == 0 {
            self.release_burst();
        }
        Ok(Some(body))
    }
}

/// Frames `body`: 4-byte big-endian length, then the body.
pub fn encode_frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Serialises a message to JSON bytes.
pub fn to_json<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising our own plain data types cannot fail.
    serde_json::to_vec(msg).unwrap_or_default()
}

/// Parses a JSON message.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// `text` cut to at most [`MAX_REASON_LEN`] bytes, at a character boundary (peer-supplied
/// text is never cut inside a character).
pub fn clipped(text: &str) -> String {
    let mut end = text.len().min(MAX_REASON_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_string()
}

/// Bytes a signed rumor body may carry beyond its compact serialisation (room for fields
/// a newer version adds; not for padding).
pub const MAX_BODY_SLACK: usize = 256;

/// Bytes of stored rumor bodies budgeted per member (the store's and the verification
/// cache's byte budgets are this times their member counts).
pub const BODY_BYTES_PER_MEMBER: usize = 16 * 1024;

/// The tags of [`LinkMessage`]'s variants.
pub const LINK_MESSAGE_KINDS: [&str; 9] = [
    "rumors",
    "answer",
    "ihave",
    "graft",
    "pull",
    "prune",
    "digest",
    "heartbeat",
    "bye",
];

/// The tags of [`RumorContent`]'s variants.
pub const RUMOR_KINDS: [&str; 3] = ["advert", "leave", "accuse"];

/// Parses a JSON value of an externally tagged enum type `T` (at the top, or at `field` of
/// the top object). When that fails on well-formed JSON whose tag names no variant in
/// `known`, the error is [`WireError::Unknown`]: a newer version's kind, to be ignored.
pub fn from_json_versioned<T: DeserializeOwned>(
    bytes: &[u8],
    field: Option<&str>,
    known: &[&str],
) -> Result<T, WireError> {
    from_json(bytes).map_err(|e| {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            return e;
        };
        let tagged = match field {
            Some(f) => value.get(f),
            None => Some(&value),
        };
        let tag = match tagged {
            Some(serde_json::Value::String(tag)) => Some(tag.as_str()),
            Some(serde_json::Value::Object(map)) if map.len() == 1 => {
                map.keys().next().map(String::as_str)
            }
            _ => None,
        };
        match tag {
            Some(tag) if !known.contains(&tag) => WireError::Unknown(clipped(tag)),
            _ => e,
        }
    })
}

/// Base64 (standard, padded) for byte fields in JSON.
pub mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Encodes bytes as base64 text.
    pub fn encode(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    /// Decodes base64 text.
    pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
        STANDARD.decode(text)
    }

    /// Serde: `Vec<u8>` as base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    /// Serde: base64 into `Vec<u8>`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <&str>::deserialize(d)?;
        decode(text).map_err(D::Error::custom)
    }

    /// Serde for shared byte strings (`Arc<[u8]>`).
    pub mod shared {
        use super::*;
        use std::sync::Arc;

        /// Serde: `Arc<[u8]>` as base64.
        pub fn serialize<S: Serializer>(bytes: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&encode(bytes))
        }

        /// Serde: base64 into `Arc<[u8]>`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
            super::deserialize(d).map(Arc::from)
        }
    }

    /// Serde for fixed 32-byte values (nonces, ephemeral keys, MACs).
    pub mod array32 {
        use super::*;

        /// Serde: `[u8; 32]` as base64.
        pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&encode(bytes))
        }

        /// Serde: base64 into `[u8; 32]`.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
            let bytes = super::deserialize(d)?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| D::Error::custom("expected 32 bytes"))
        }
    }
}

/// Binary data that travels as base64 text (a rumor's signature): kept as the text it
/// arrived in, so that forwarding it never encodes it again, and decoded only where it is
/// checked. Deserialising checks its form (length, alphabet, padding) and its size, not
/// its last bits: text that does not decode fails where it is checked, as a bad signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base64Text(Arc<str>);

/// Longest base64 text accepted (a 4096-bit RSA signature is 684 characters).
pub const MAX_BASE64_TEXT: usize = 1024;

impl Base64Text {
    /// The base64 text of `bytes`.
    pub fn encode(bytes: &[u8]) -> Self {
        Base64Text(b64::encode(bytes).into())
    }

    /// The bytes (empty if the text does not decode).
    pub fn decode(&self) -> Vec<u8> {
        b64::decode(&self.0).unwrap_or_default()
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both share one allocation (copies of one received text).
    pub fn ptr_eq(&self, other: &Base64Text) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Whether `text` has the form of padded standard base64 of at most
    /// [`MAX_BASE64_TEXT`] characters.
    fn well_formed(text: &str) -> bool {
        let body = text.trim_end_matches('=');
        text.len().is_multiple_of(4)
            && text.len() <= MAX_BASE64_TEXT
            && text.len() - body.len() <= 2
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    }
}

impl From<Vec<u8>> for Base64Text {
    fn from(bytes: Vec<u8>) -> Self {
        Base64Text::encode(&bytes)
    }
}

impl Serialize for Base64Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Base64Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        if !Base64Text::well_formed(&text) {
            return Err(D::Error::custom("not base64 text of a signature"));
        }
        Ok(Base64Text(text.into()))
    }
}

/// Largest certificate body accepted, in bytes.
pub const MAX_CERT_BODY: usize = 1024;
/// Largest certificate signature accepted, in bytes (a 4096-bit RSA signature is 512).
pub const MAX_CERT_SIG: usize = 512;

/// What an authority certifies: key `key` speaks for controller `node` of AS `asn` from
/// `not_before` to `not_after` (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBody {
    /// The authority's number for this certificate.
    pub serial: u64,
    /// The certified controller id.
    pub node: NodeId,
    /// The AS it may speak for.
    pub asn: Asn,
    /// Hex SHA-256 of the certified RSA key (SubjectPublicKeyInfo DER).
    pub key: String,
    /// Hex SHA-256 of the authority's public key.
    pub issuer: String,
    /// Start of validity, Unix ms.
    pub not_before: u64,
    /// End of validity, Unix ms.
    pub not_after: u64,
}

/// An authority-signed [`CertBody`]. On the wire and in files:
/// `{"body": base64(body JSON), "sig": base64(RSA signature)}`; the body travels as the
/// bytes that were signed, so it is never re-serialised.
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The parsed body.
    pub body: CertBody,
    /// The signed body bytes.
    pub signed: Arc<[u8]>,
    /// The authority's signature of `signed` (see `cert::signing_input`).
    pub sig: Arc<[u8]>,
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.signed == other.signed && self.sig == other.sig
    }
}

impl Eq for Certificate {}

#[derive(Serialize, Deserialize)]
struct CertWire {
    #[serde(with = "b64::shared")]
    body: Arc<[u8]>,
    #[serde(with = "b64::shared")]
    sig: Arc<[u8]>,
}

impl Serialize for Certificate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CertWire {
            body: Arc::clone(&self.signed),
            sig: Arc::clone(&self.sig),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Certificate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = CertWire::deserialize(d)?;
        if wire.body.len() > MAX_CERT_BODY || wire.sig.len() > MAX_CERT_SIG {
            return Err(D::Error::custom("oversized certificate"));
        }
        let body = serde_json::from_slice(&wire.body).map_err(D::Error::custom)?;
        Ok(Certificate {
            body,
            signed: wire.body,
            sig: wire.sig,
        })
    }
}

/// Longest certificate text an advertisement may carry, in bytes (the largest body and
/// signature, base64, in their JSON object).
pub const MAX_CERT_TEXT: usize = 2 * (MAX_CERT_BODY + MAX_CERT_SIG) + 64;

/// A [`Certificate`] as an advertisement carries it: its JSON text, exactly as the origin
/// signed it. Every advertisement of an origin carries the same text, so a receiver parses
/// and verifies it once (see `Trust`), and forwarding or measuring the body never encodes
/// it again.
#[derive(Debug, Clone)]
pub struct CertificateText(Arc<RawValue>);

impl CertificateText {
    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The certificate it holds.
    pub fn parse(&self) -> Result<Certificate, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl From<&Certificate> for CertificateText {
    fn from(cert: &Certificate) -> Self {
        let text = String::from_utf8(to_json(cert)).unwrap_or_default();
        // serde_json output is always valid JSON.
        let raw = RawValue::from_string(text)
            .unwrap_or_else(|_| RawValue::from_string("null".into()).unwrap_or_default());
        CertificateText(raw.into())
    }
}

impl PartialEq for CertificateText {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for CertificateText {}

impl Serialize for CertificateText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for CertificateText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = <Arc<RawValue>>::deserialize(d)?;
        if raw.get().len() > MAX_CERT_TEXT {
            return Err(D::Error::custom("oversized certificate"));
        }
        Ok(CertificateText(raw))
    }
}

/// The first message of each side, and the dialer's closing message, in plaintext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Handshake {
    /// Dialer → listener: who I am, my fresh nonce and ephemeral key, which cluster key I use.
    Hello(Hello),
    /// Listener → dialer: who I am and my peers' addresses, signed over the transcript and
    /// proven with the cluster key.
    Welcome(Welcome),
    /// Dialer → listener: my peers' addresses, signed over the transcript and proven.
    Finish(Finish),
    /// Either side, unauthenticated: why the handshake cannot go on (at capacity, with the
    /// listener's peers to try instead; unknown cluster key, banned, ...). The addresses are
    /// only dial candidates: any link to them needs a full handshake.
    Refuse(Refuse),
}

/// The identity part both hellos share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloIdentity {
    /// Protocol version spoken.
    pub version: u16,
    /// Sender's controller id.
    pub node: NodeId,
    /// Sender's AS.
    pub asn: Asn,
    /// Sender's RSA public key, SubjectPublicKeyInfo DER.
    #[serde(with = "b64")]
    pub pubkey: Vec<u8>,
    /// Fresh random nonce.
    #[serde(with = "b64::array32")]
    pub nonce: [u8; 32],
    /// Fresh X25519 public key.
    #[serde(with = "b64::array32")]
    pub ephemeral: [u8; 32],
    /// Where the sender accepts connections.
    pub listen: Addr,
    /// Id of the cluster key in use (see `ClusterKey::id`).
    pub key_id: String,
    /// The sender's clock (Unix ms) when it wrote the hello: a listener refuses hellos
    /// further than its clock-skew bound from its own clock, and remembers the nonces of
    /// that window, so a recorded hello cannot be replayed to make it sign.
    pub issued_at: u64,
    /// The sender's certificate, where the cluster has an authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<Certificate>,
}

/// Dialer's hello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Who the dialer is.
    #[serde(flatten)]
    pub identity: HelloIdentity,
    /// HMAC of the hello's fields with the cluster key: the listener checks it before any
    /// RSA work, so a stranger cannot make it sign.
    #[serde(with = "b64::array32")]
    pub proof: [u8; 32],
}

/// Listener's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// Who the listener is.
    #[serde(flatten)]
    pub identity: HelloIdentity,
    /// Addresses of the listener's direct peers.
    pub peers: Vec<Addr>,
    /// HMAC of the transcript with the cluster key.
    #[serde(with = "b64::array32")]
    pub proof: [u8; 32],
    /// RSA signature of the transcript.
    #[serde(with = "b64")]
    pub sig: Vec<u8>,
}

/// Dialer's closing handshake message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finish {
    /// Addresses of the dialer's direct peers.
    pub peers: Vec<Addr>,
    /// HMAC of the transcript with the cluster key.
    #[serde(with = "b64::array32")]
    pub proof: [u8; 32],
    /// RSA signature of the transcript.
    #[serde(with = "b64")]
    pub sig: Vec<u8>,
}

/// An unauthenticated refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refuse {
    /// Human-readable reason.
    pub reason: String,
    /// The listener is at `max_peers`; `peers` are its direct peers, to try instead.
    #[serde(default)]
    pub at_capacity: bool,
    /// Addresses of the refusing node's direct peers (with `at_capacity`).
    #[serde(default)]
    pub peers: Vec<Addr>,
}

/// What travels on an established, encrypted link. Externally tagged
/// (`{"rumors":{...}}`, `"heartbeat"`): an internally tagged enum would buffer its content
/// and lose the raw signed bodies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMessage {
    /// Origin-signed rumors pushed eagerly (a duplicate here prunes the link).
    Rumors {
        /// The rumors.
        rumors: Vec<SignedRumor>,
    },
    /// Origin-signed rumors sent on request (graft, pull): duplicates are expected.
    Answer {
        /// The rumors.
        rumors: Vec<SignedRumor>,
    },
    /// Lazy announcement: the sender has these rumors.
    #[serde(rename = "ihave")]
    IHave {
        /// The rumors announced.
        ids: Vec<Announcement>,
    },
    /// Tree repair: send me these rumors, and push their origins' rumors (and those of
    /// `origins`) to me eagerly from now on.
    Graft {
        /// The rumors wanted.
        ids: Vec<RumorId>,
        /// Further origins to push again, without resending anything.
        #[serde(default)]
        origins: Vec<NodeId>,
    },
    /// Synchronisation: send me these rumors (this sequence number or newer), which your
    /// digest listed and I lack; the trees stay as they are.
    Pull {
        /// The rumors wanted.
        ids: Vec<RumorId>,
    },
    /// I received duplicates of these origins' rumors from you: only announce them to me.
    Prune {
        /// The origins.
        origins: Vec<NodeId>,
    },
    /// What the sender stores, for synchronisation and anti-entropy.
    Digest(Digest),
    /// Keep-alive on an idle link.
    Heartbeat,
    /// The sender is closing the link on purpose.
    Bye {
        /// Why.
        reason: String,
    },
}

impl LinkMessage {
    /// Whether `other` carries the same copies of the same rumors (a push or an answer
    /// that several links get): it then serialises to the same bytes, so a sender
    /// serialises it once. Cheap (pointer comparisons); false for other messages.
    pub fn same_rumors_as(&self, other: &LinkMessage) -> bool {
        let same = |a: &[SignedRumor], b: &[SignedRumor]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_copy(y))
        };
        match (self, other) {
            (LinkMessage::Rumors { rumors: a }, LinkMessage::Rumors { rumors: b })
            | (LinkMessage::Answer { rumors: a }, LinkMessage::Answer { rumors: b }) => same(a, b),
            _ => false,
        }
    }
}

/// A rumor's identity: its key and sequence number, sent as `[origin, subject, seq]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RumorId(pub NodeId, pub Option<NodeId>, pub u64);

impl RumorId {
    /// The key part.
    pub fn key(&self) -> RumorKey {
        RumorKey {
            origin: self.0,
            subject: self.1,
        }
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.2
    }
}

/// A lazy announcement, sent as `[origin, subject, seq, hops]`: the rumor, and the hops it
/// would have crossed when delivered through the announcer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement(pub NodeId, pub Option<NodeId>, pub u64, pub u32);

impl Announcement {
    /// The rumor announced.
    pub fn id(&self) -> RumorId {
        RumorId(self.0, self.1, self.2)
    }

    /// Hops through the announcer.
    pub fn hops(&self) -> u32 {
        self.3
    }
}

/// One range of the sender's store, `(after, upto]` in key order (`None` = unbounded), with
/// the newest sequence number per key. A store larger than [`MAX_IDS`] goes in several
/// digests with adjacent ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Exclusive lower bound of the range.
    pub after: Option<RumorKey>,
    /// Inclusive upper bound of the range.
    pub upto: Option<RumorKey>,
    /// Every rumor the sender stores in the range.
    pub ids: Vec<RumorId>,
    /// Whether the receiver should answer with its own digest (anti-entropy), besides
    /// sending what the sender lacks.
    pub reply: bool,
}

impl Digest {
    /// Checks the id count, the range and that every id lies in it.
    pub fn check(&self) -> Result<(), WireError> {
        if self.ids.len() > MAX_IDS {
            return Err(WireError::Violation(format!(
                "digest of {} ids",
                self.ids.len()
            )));
        }
        if let (Some(a), Some(u)) = (self.after, self.upto)
            && a >= u
        {
            return Err(WireError::Violation("empty digest range".into()));
        }
        let inside =
            |k: RumorKey| self.after.is_none_or(|a| k > a) && self.upto.is_none_or(|u| k <= u);
        if !self.ids.iter().all(|id| inside(id.key())) {
            return Err(WireError::Violation("digest id outside its range".into()));
        }
        Ok(())
    }
}

/// Checks the length of an id list from a peer.
pub fn check_ids<T>(ids: &[T]) -> Result<(), WireError> {
    if ids.len() > MAX_IDS {
        return Err(WireError::Violation(format!(
            "{} ids in one message",
            ids.len()
        )));
    }
    Ok(())
}

/// Which state a rumor updates: one per origin for membership (adverts and leaves), one per
/// (accuser, accused) for accusations. Newest sequence number wins per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RumorKey {
    /// The origin that signed it.
    pub origin: NodeId,
    /// The accused node for accusations, `None` for membership.
    pub subject: Option<NodeId>,
}

/// A rumor as it travels: routing envelope (unsigned, checked against the body after
/// verification), the origin-signed body as raw JSON, and its hop-by-hop age.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedRumor {
    /// Claimed origin (must equal `body.origin`).
    pub origin: NodeId,
    /// Claimed sequence number (must equal `body.seq`).
    pub seq: u64,
    /// Claimed subject (must match the body's kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<NodeId>,
    /// The signed [`RumorBody`], byte for byte as the origin serialised it (shared, never
    /// re-serialised).
    pub body: Arc<RawValue>,
    /// PKCS#1 v1.5 SHA-256 signature of `body` by the origin, as base64 text.
    pub sig: Base64Text,
    /// Milliseconds the rumor has existed, accumulated hop by hop (unsigned; used for
    /// expiry so that state synced late does not outlive its origin).
    #[serde(default)]
    pub age_ms: u64,
    /// Links the rumor has crossed since its origin (unsigned; for tracing).
    #[serde(default)]
    pub hops: u32,
}

impl SignedRumor {
    /// The key this rumor updates, per its envelope.
    pub fn key(&self) -> RumorKey {
        RumorKey {
            origin: self.origin,
            subject: self.subject,
        }
    }

    /// Its identity.
    pub fn id(&self) -> RumorId {
        RumorId(self.origin, self.subject, self.seq)
    }

    /// Whether `other` is the same copy: the same shared body and signature and the same
    /// envelope (so it serialises to the same bytes).
    pub fn same_copy(&self, other: &SignedRumor) -> bool {
        Arc::ptr_eq(&self.body, &other.body)
            && self.sig.ptr_eq(&other.sig)
            && (self.origin, self.seq, self.subject, self.age_ms, self.hops)
                == (
                    other.origin,
                    other.seq,
                    other.subject,
                    other.age_ms,
                    other.hops,
                )
    }

    /// Approximate encoded size, for batching under the frame limit.
    pub fn encoded_len(&self) -> usize {
        self.body.get().len() + self.sig.as_str().len() + 96
    }
}

/// What an origin signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RumorBody {
    /// The signer.
    pub origin: NodeId,
    /// The signer's sequence number (one counter per origin across all kinds).
    pub seq: u64,
    /// The signer's clock (its `Time`, in ms) when it signed: with clocks anchored to the
    /// Unix epoch, receivers measure propagation delay from it. Never used for decisions.
    #[serde(default)]
    pub issued_at: u64,
    /// The signer's RSA public key (SubjectPublicKeyInfo DER), so that every rumor can be
    /// verified on its own.
    #[serde(with = "b64")]
    pub pubkey: Vec<u8>,
    /// What the rumor says.
    pub content: RumorContent,
}

impl RumorBody {
    /// The identity the signer gave this body (what a matching envelope claims).
    pub fn id(&self) -> RumorId {
        RumorId(self.origin, self.content.subject(), self.seq)
    }
}

/// The kinds of rumor (externally tagged: `{"advert":{...}}`, which parses without
/// buffering).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RumorContent {
    /// Link-state advertisement: the origin is alive, runs AS `asn`, listens on `addr`.
    Advert {
        /// The origin's AS.
        asn: Asn,
        /// Where the origin accepts connections.
        addr: Addr,
        /// The origin's AS links (shared by every member record made from this rumor).
        links: Arc<[AsLink]>,
        /// The origin's certificate, where the cluster has an authority, as the JSON text
        /// the origin signed (a receiver's `Trust` parses and checks each text once).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cert: Option<CertificateText>,
    },
    /// The origin leaves the network on purpose.
    Leave {
        /// The origin's AS.
        asn: Asn,
    },
    /// The origin accuses `accused` (with key `fingerprint`) of sending invalid messages.
    Accuse {
        /// Accused controller.
        accused: NodeId,
        /// Hex SHA-256 of the accused's public key.
        fingerprint: String,
        /// What the accused did.
        reason: String,
    },
}

impl RumorContent {
    /// The subject part of the rumor key this content updates.
    pub fn subject(&self) -> Option<NodeId> {
        match self {
            RumorContent::Accuse { accused, .. } => Some(*accused),
            _ => None,
        }
    }

    /// Checks sizes and shapes a well-behaved origin never exceeds.
    pub fn check_limits(&self) -> Result<(), WireError> {
        match self {
            RumorContent::Advert { addr, links, .. } => {
                check_addr(addr)?;
                if links.len() > MAX_ADVERT_LINKS {
                    return Err(WireError::Violation(format!(
                        "advert with {} links (max {MAX_ADVERT_LINKS})",
                        links.len()
                    )));
                }
                Ok(())
            }
            RumorContent::Leave { .. } => Ok(()),
            RumorContent::Accuse {
                fingerprint,
                reason,
                ..
            } => {
                if fingerprint.len() != 64 || reason.len() > MAX_REASON_LEN {
                    return Err(WireError::Violation("oversized accusation".into()));
                }
                Ok(())
            }
        }
    }
}

/// Checks one address from a peer.
pub fn check_addr(addr: &Addr) -> Result<(), WireError> {
    if addr.0.is_empty() || addr.0.len() > MAX_ADDR_LEN {
        return Err(WireError::Violation(format!(
            "address of {} bytes",
            addr.0.len()
        )));
    }
    Ok(())
}

/// Checks a peer list from a hello.
pub fn check_peer_list(peers: &[Addr]) -> Result<(), WireError> {
    if peers.len() > MAX_HELLO_PEERS {
        return Err(WireError::Violation(format!(
            "{} peers in hello (max {MAX_HELLO_PEERS})",
            peers.len()
        )));
    }
    peers.iter().try_for_each(check_addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_reassemble_from_any_chunking() {
        let bodies: Vec<Vec<u8>> = vec![b"a".to_vec(), vec![], vec![7; 300], b"last".to_vec()];
        let stream: Vec<u8> = bodies.iter().flat_map(|b| encode_frame(b)).collect();
        for chunk in 1..stream.len() {
            let mut dec = FrameDecoder::new(1000);
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                dec.push(piece);
                while let Some(frame) = dec.next_frame().unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got, bodies, "chunk size {chunk}");
            assert_eq!(dec.buffered(), 0);
        }
    }

    #[test]
    fn a_burst_of_large_frames_does_not_pin_its_buffer() {
        let mut dec = FrameDecoder::new(1 << 20);
        let big = vec![7u8; 200_000];
        dec.push(&encode_frame(&big));
        assert_eq!(dec.next_frame().unwrap(), Some(big));
        assert_eq!(dec.buffered(), 0);
        assert!(
            dec.buf.capacity() <= RETAINED_CAPACITY,
            "{}",
            dec.buf.capacity()
        );
        // A small frame split over two pushes keeps its (small) buffer between them.
        let frame = encode_frame(b"0123456789");
        dec.push(&frame[..6]);
        dec.push(&frame[6..]);
        assert_eq!(dec.next_frame().unwrap(), Some(b"0123456789".to_vec()));
        assert_eq!(dec.buffered(), 0);
        // Nor when the reads keep ending inside a frame, so the buffer never drains.
        let mut bytes = encode_frame(&vec![7u8; 200_000]);
        bytes.extend_from_slice(&frame[..6]);
        dec.push(&bytes);
        assert_eq!(dec.next_frame().unwrap().map(|f| f.len()), Some(200_000));
        assert!(
            dec.buf.capacity() <= RETAINED_CAPACITY,
            "{}",
            dec.buf.capacity()
        );
        dec.push(&frame[6..]);
        assert_eq!(dec.next_frame().unwrap(), Some(b"0123456789".to_vec()));
    }

    #[test]
    fn oversized_prefix_is_refused_before_buffering() {
        let mut dec = FrameDecoder::new(16);
        dec.push(&17u32.to_be_bytes());
        assert_eq!(
            dec.next_frame(),
            Err(WireError::FrameTooLarge { len: 17, max: 16 })
        );
    }

    #[test]
    fn signed_rumor_body_survives_reserialisation_byte_for_byte() {
        let body = r#"{"origin":1,"seq":2, "weird":  "spacing"}"#;
        let json = format!(r#"{{"origin":1,"seq":2,"body":{body},"sig":"AAEC"}}"#);
        let rumor: SignedRumor = from_json(json.as_bytes()).unwrap();
        assert_eq!(rumor.body.get(), body);
        let again: SignedRumor = from_json(&to_json(&rumor)).unwrap();
        assert_eq!(again.body.get(), body);
        assert_eq!(again.sig.decode(), [0, 1, 2]);
        assert_eq!(again.sig.as_str(), "AAEC", "sent on as the text that came");
        for bad in ["AAE", "AA=C", "AA$C", "A==="] {
            let json = format!(r#"{{"origin":1,"seq":2,"body":{body},"sig":"{bad}"}}"#);
            assert!(from_json::<SignedRumor>(json.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn link_messages_carry_raw_bodies() {
        let json = r#"{"rumors":{"rumors":[{"origin":1,"seq":2,"body":{"a": 1},"sig":""}]}}"#;
        let msg: LinkMessage = from_json(json.as_bytes()).unwrap();
        let LinkMessage::Rumors { rumors } = &msg else {
            panic!("{msg:?}")
        };
        assert_eq!(rumors[0].body.get(), r#"{"a": 1}"#);
        let again: LinkMessage = from_json(&to_json(&msg)).unwrap();
        assert!(matches!(again, LinkMessage::Rumors { .. }));
        assert!(matches!(
            from_json::<LinkMessage>(br#""heartbeat""#),
            Ok(LinkMessage::Heartbeat)
        ));
    }

    #[test]
    fn digests_check_their_ranges() {
        let key = |o| RumorKey {
            origin: NodeId(o),
            subject: None,
        };
        let d = |after, upto, ids: Vec<u32>| Digest {
            after,
            upto,
            ids: ids
                .into_iter()
                .map(|o| RumorId(NodeId(o), None, 1))
                .collect(),
            reply: false,
        };
        assert!(d(None, None, vec![1, 2]).check().is_ok());
        assert!(d(Some(key(1)), Some(key(3)), vec![2, 3]).check().is_ok());
        assert!(d(Some(key(1)), Some(key(3)), vec![1]).check().is_err());
        assert!(d(Some(key(3)), Some(key(3)), vec![]).check().is_err());
        assert!(d(None, Some(key(2)), vec![4]).check().is_err());
        let json = to_json(&LinkMessage::IHave {
            ids: vec![Announcement(NodeId(3), Some(NodeId(4)), 9, 2)],
        });
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"ihave":{"ids":[[3,4,9,2]]}}"#
        );
    }

    #[test]
    fn peer_lists_are_bounded() {
        let many: Vec<Addr> = (0..=MAX_HELLO_PEERS)
            .map(|i| Addr::from(format!("h{i}")))
            .collect();
        assert!(check_peer_list(&many).is_err());
        assert!(check_peer_list(&many[..3]).is_ok());
        assert!(check_peer_list(&[Addr::from("")]).is_err());
    }
}
