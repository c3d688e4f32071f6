//! The handshake messages (hello, welcome, finish, refuse), plaintext JSON.

use super::*;

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
    /// Addresses of the listener's direct peers, then a few others it knows (a random sample).
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
    /// Addresses of the dialer's direct peers, then a few others it knows (a random sample).
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
    /// Addresses of the refusing node's direct peers and a random sample of others it knows
    /// (with `at_capacity`).
    #[serde(default)]
    pub peers: Vec<Addr>,
}
