//! Certificates on the wire: the body an authority signs, the signed certificate as
//! files and hellos carry it, and the compact text an advertisement carries.

use super::*;

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
