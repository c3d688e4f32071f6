//! Rumors: the envelope that travels, the body its origin signs, and its contents.

use super::*;

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
        /// The origin's direct overlay peers (node ids, ascending) when it signed: the
        /// two-way check of liveness. Left out by versions before it (liveness by the
        /// advert's age alone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peers: Option<Arc<[NodeId]>>,
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
            RumorContent::Advert {
                addr, links, peers, ..
            } => {
                check_addr(addr)?;
                if links.len() > MAX_ADVERT_LINKS {
                    return Err(WireError::Violation(format!(
                        "advert with {} links (max {MAX_ADVERT_LINKS})",
                        links.len()
                    )));
                }
                let peers = peers.as_deref().unwrap_or_default();
                if peers.len() > MAX_ADVERT_PEERS {
                    return Err(WireError::Violation(format!(
                        "advert with {} peers (max {MAX_ADVERT_PEERS})",
                        peers.len()
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
