//! The wire: identifiers shared by every component, length-prefixed frames and their
//! reassembly from arbitrary chunks, and the versioned JSON messages.
//!
//! A frame is a 4-byte big-endian body length followed by the body. Handshake bodies are
//! plaintext JSON ([`Handshake`]); after the handshake every body is a sealed
//! [`LinkMessage`] (see `linkcrypto::LinkCipher`). Rumors carry their origin-signed body as raw
//! JSON ([`SignedRumor::body`]) so that forwarding never re-serialises what was signed.

// Public with `test-util` (fault injection, fuzzing, test vectors); otherwise only the
// crate root's re-exports are.
#![cfg_attr(not(feature = "test-util"), allow(unreachable_pub))]

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use thiserror::Error;

mod certificate;
mod frames;
mod handshake;
mod link;
mod rumor;

pub use certificate::*;
pub use frames::*;
pub use handshake::*;
pub use link::*;
pub use rumor::*;

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
/// Most direct peers one advert may list (`max_peers` is at most 128).
pub const MAX_ADVERT_PEERS: usize = 256;
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
