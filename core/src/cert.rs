//! Certified identities: issuing a certificate with an authority's key, and checking one
//! against the trust anchors (the authorities' public keys): signature, validity period
//! and what it names. A certificate's signature is verified once per node, and the text an
//! advertisement carries is parsed once per node; the period is checked on every use.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::identity::{Fingerprint, Identity, PublicIdentity};
use crate::scheduler::Time;
use crate::wire::{Asn, CertBody, Certificate, CertificateText, NodeId, to_json};

/// Most certificate signatures remembered as verified, and most certificate texts
/// remembered as parsed and verified (then each memory starts over).
const VERIFIED_CAPACITY: usize = 65_536;
/// Most bytes of certificate texts remembered.
const VERIFIED_TEXT_BYTES: usize = 16 << 20;

/// Why a certificate does not certify a claim.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertError {
    /// No certificate came with the claim.
    #[error("no certificate")]
    Missing,
    /// The certificate names an authority this node does not trust.
    #[error("certificate from an unknown authority")]
    UnknownIssuer,
    /// The authority's signature does not verify.
    #[error("certificate signature does not verify")]
    BadSignature,
    /// The validity period has not begun (beyond the clock-skew bound).
    #[error("certificate not valid before {0} ms")]
    NotYetValid(u64),
    /// The validity period is over (beyond the clock-skew bound).
    #[error("certificate expired at {0} ms")]
    Expired(u64),
    /// The certificate is for another key.
    #[error("certificate for another key")]
    OtherKey,
    /// The certificate text does not parse.
    #[error("certificate does not parse")]
    Malformed,
    /// A valid certificate of this very key names another controller or AS: the key's
    /// holder signed for an identity it was not given.
    #[error("key certified for controller {node} in AS {asn}")]
    Misnamed {
        /// The controller the certificate names.
        node: NodeId,
        /// The AS the certificate names.
        asn: Asn,
    },
}

impl CertError {
    /// Whether the failure proves that the key misbehaved (rather than that the claim
    /// cannot be checked, which blames nobody).
    pub fn proves_misbehaviour(&self) -> bool {
        matches!(self, CertError::Misnamed { .. })
    }
}

/// What an authority signs: a domain tag, then the body bytes.
pub(crate) fn signing_input(body: &[u8]) -> Vec<u8> {
    let mut input = b"overlay-network certificate v1\0".to_vec();
    input.extend_from_slice(body);
    input
}

/// Issues a certificate with the authority key `ca`; `body.issuer` is set to its
/// fingerprint.
pub fn issue_certificate<R: CryptoRng + ?Sized>(
    ca: &Identity,
    rng: &mut R,
    mut body: CertBody,
) -> Certificate {
    body.issuer = ca.fingerprint().to_hex();
    let signed: Arc<[u8]> = to_json(&body).into();
    let sig = ca.sign(rng, &signing_input(&signed)).into();
    Certificate { body, signed, sig }
}

/// The authorities a node trusts, and how it checks certificates against them.
#[derive(Clone)]
pub struct Trust {
    anchors: Arc<[PublicIdentity]>,
    skew: Duration,
    verified: Arc<Mutex<Verified>>,
}

/// What a node remembers of the certificates it checked.
#[derive(Default)]
struct Verified {
    /// Digests of (body, signature) pairs whose signature verified.
    signatures: HashSet<[u8; 32]>,
    /// Certificate texts (from advertisements) that parsed and whose signature verified.
    texts: HashMap<Box<str>, Arc<Certificate>>,
    /// Bytes of the texts remembered.
    text_bytes: usize,
}

impl std::fmt::Debug for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Trust({} anchors)", self.anchors.len())
    }
}

impl Trust {
    /// Trusts certificates of `anchors`, with validity periods stretched by `skew` at
    /// both ends for clocks that differ.
    pub fn new(anchors: Vec<PublicIdentity>, skew: Duration) -> Self {
        Trust {
            anchors: anchors.into(),
            skew,
            verified: Arc::default(),
        }
    }

    /// Checks that `cert` is signed by a trust anchor and valid at `now`; returns the end
    /// of its validity (with the skew).
    pub fn check(&self, now: Time, cert: &Certificate) -> Result<Time, CertError> {
        let until = self.valid_at(now, cert)?;
        let digest: [u8; 32] = Sha256::new()
            .chain_update(&cert.signed)
            .chain_update(&cert.sig)
            .finalize()
            .into();
        let mut verified = self.lock();
        if !verified.signatures.contains(&digest) {
            self.verify_signature(cert)?;
            if verified.signatures.len() >= VERIFIED_CAPACITY {
                verified.signatures.clear();
            }
            verified.signatures.insert(digest);
        }
        Ok(until)
    }

    /// Checks that `cert` certifies `key` as controller `node` of AS `asn` at `now`;
    /// returns the end of its validity (with the skew).
    pub fn certifies(
        &self,
        now: Time,
        cert: Option<&Certificate>,
        node: NodeId,
        asn: Asn,
        key: &Fingerprint,
    ) -> Result<Time, CertError> {
        let cert = cert.ok_or(CertError::Missing)?;
        of_key(cert, key)?;
        let until = self.check(now, cert)?;
        names(cert, node, asn)?;
        Ok(until)
    }

    /// Like [`Trust::certifies`], for the certificate text of an advertisement: each text
    /// is parsed and its signature verified once, then remembered. Only the compact text
    /// of a certificate of `key` gets that far, so that no sender can make this node verify
    /// other keys' certificates or variants of one certificate.
    pub fn certifies_text(
        &self,
        now: Time,
        text: Option<&CertificateText>,
        node: NodeId,
        asn: Asn,
        key: &Fingerprint,
    ) -> Result<Time, CertError> {
        let text = text.ok_or(CertError::Missing)?;
        let known = self.lock().texts.get(text.get()).cloned();
        // A new text is checked for `key` before its signature is verified (in `remember`).
        let cert = match known {
            Some(cert) => {
                of_key(&cert, key)?;
                cert
            }
            None => self.remember(text, key)?,
        };
        let until = self.valid_at(now, &cert)?;
        names(&cert, node, asn)?;
        Ok(until)
    }

    /// Parses a certificate text not seen before, checks that it is compact and certifies
    /// `key`, verifies its signature, and remembers it.
    fn remember(
        &self,
        text: &CertificateText,
        key: &Fingerprint,
    ) -> Result<Arc<Certificate>, CertError> {
        let cert = text.parse().map_err(|_| CertError::Malformed)?;
        if to_json(&cert) != text.get().as_bytes() {
            return Err(CertError::Malformed);
        }
        of_key(&cert, key)?;
        self.verify_signature(&cert)?;
        let cert = Arc::new(cert);
        let mut verified = self.lock();
        verified.text_bytes += text.get().len();
        if verified.texts.len() >= VERIFIED_CAPACITY || verified.text_bytes > VERIFIED_TEXT_BYTES {
            verified.texts.clear();
            verified.text_bytes = text.get().len();
        }
        verified.texts.insert(text.get().into(), Arc::clone(&cert));
        Ok(cert)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The end of `cert`'s validity (with the skew), if it is valid at `now`.
    fn valid_at(&self, now: Time, cert: &Certificate) -> Result<Time, CertError> {
        let skew = u64::try_from(self.skew.as_millis()).unwrap_or(u64::MAX);
        let now_ms = now.as_millis();
        if now_ms.saturating_add(skew) < cert.body.not_before {
            return Err(CertError::NotYetValid(cert.body.not_before));
        }
        let until = cert.body.not_after.saturating_add(skew);
        if now_ms > until {
            return Err(CertError::Expired(cert.body.not_after));
        }
        Ok(Time::from_millis(until))
    }

    /// Verifies `cert`'s signature with the trust anchor it names.
    fn verify_signature(&self, cert: &Certificate) -> Result<(), CertError> {
        let issuer = Fingerprint::from_hex(&cert.body.issuer);
        let anchor = self
            .anchors
            .iter()
            .find(|a| Some(a.fingerprint()) == issuer)
            .ok_or(CertError::UnknownIssuer)?;
        anchor
            .verify(&signing_input(&cert.signed), &cert.sig)
            .map_err(|_| CertError::BadSignature)
    }
}

/// Checks that `cert` is for `key`.
fn of_key(cert: &Certificate, key: &Fingerprint) -> Result<(), CertError> {
    if Fingerprint::from_hex(&cert.body.key).as_ref() != Some(key) {
        return Err(CertError::OtherKey);
    }
    Ok(())
}

/// Checks that a verified `cert` names controller `node` of AS `asn`: a valid certificate
/// of the signing key that names another proves the key's holder misbehaved.
fn names(cert: &Certificate, node: NodeId, asn: Asn) -> Result<(), CertError> {
    if cert.body.node != node || cert.body.asn != asn {
        return Err(CertError::Misnamed {
            node: cert.body.node,
            asn: cert.body.asn,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn body(key: &Identity, node: u32, asn: u32, until: u64) -> CertBody {
        CertBody {
            serial: 1,
            node: NodeId(node),
            asn: Asn(asn),
            key: key.fingerprint().to_hex(),
            issuer: String::new(),
            not_before: 1_000,
            not_after: until,
        }
    }

    #[test]
    fn a_certificate_certifies_what_it_names_while_valid() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let ca = Identity::generate(&mut rng, 2048).unwrap();
        let other_ca = Identity::generate(&mut rng, 2048).unwrap();
        let rc = Identity::generate(&mut rng, 2048).unwrap();
        let trust = Trust::new(vec![ca.public().clone()], Duration::from_millis(100));
        let cert = issue_certificate(&ca, &mut rng, body(&rc, 7, 700, 5_000));
        let fp = rc.fingerprint();
        let at = Time::from_millis;
        assert_eq!(
            trust.certifies(at(2_000), Some(&cert), NodeId(7), Asn(700), &fp),
            Ok(at(5_100))
        );
        assert_eq!(
            trust.certifies(at(5_101), Some(&cert), NodeId(7), Asn(700), &fp),
            Err(CertError::Expired(5_000))
        );
        assert_eq!(
            trust.certifies(at(899), Some(&cert), NodeId(7), Asn(700), &fp),
            Err(CertError::NotYetValid(1_000))
        );
        let misnamed = trust.certifies(at(2_000), Some(&cert), NodeId(7), Asn(1), &fp);
        assert!(misnamed.unwrap_err().proves_misbehaviour());
        assert_eq!(
            trust.certifies(
                at(2_000),
                Some(&cert),
                NodeId(7),
                Asn(700),
                &ca.fingerprint()
            ),
            Err(CertError::OtherKey)
        );
        assert_eq!(
            trust.certifies(at(2_000), None, NodeId(7), Asn(700), &fp),
            Err(CertError::Missing)
        );
        let foreign = issue_certificate(&other_ca, &mut rng, body(&rc, 7, 700, 5_000));
        assert_eq!(
            trust.check(at(2_000), &foreign),
            Err(CertError::UnknownIssuer)
        );
        let mut claimed = body(&rc, 7, 700, 5_000);
        claimed.issuer = ca.fingerprint().to_hex();
        let signed: Arc<[u8]> = to_json(&claimed).into();
        let forged = Certificate {
            body: claimed,
            sig: other_ca.sign(&mut rng, &signing_input(&signed)).into(),
            signed,
        };
        assert_eq!(
            trust.check(at(2_000), &forged),
            Err(CertError::BadSignature)
        );
    }

    #[test]
    fn an_advertised_certificate_text_is_checked_once_and_only_in_its_compact_form() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let ca = Identity::generate(&mut rng, 2048).unwrap();
        let rc = Identity::generate(&mut rng, 2048).unwrap();
        let trust = Trust::new(vec![ca.public().clone()], Duration::from_millis(100));
        let cert = issue_certificate(&ca, &mut rng, body(&rc, 7, 700, 5_000));
        let text = CertificateText::from(&cert);
        let (fp, at) = (rc.fingerprint(), Time::from_millis(2_000));
        let certifies = |t: &CertificateText, key: &Fingerprint| {
            trust.certifies_text(at, Some(t), NodeId(7), Asn(700), key)
        };
        assert_eq!(certifies(&text, &fp), Ok(Time::from_millis(5_100)));
        assert_eq!(
            certifies(&text, &fp),
            Ok(Time::from_millis(5_100)),
            "remembered"
        );
        assert_eq!(trust.lock().texts.len(), 1);
        assert_eq!(
            certifies(&text, &ca.fingerprint()),
            Err(CertError::OtherKey)
        );
        let wire = |json: String| -> CertificateText { serde_json::from_str(&json).unwrap() };
        let padded = wire(text.get().replace(",", " ,  "));
        assert_eq!(certifies(&padded, &fp), Err(CertError::Malformed));
        let garbage = wire(r#"{"body":"AAAA","sig":""}"#.into());
        assert_eq!(certifies(&garbage, &fp), Err(CertError::Malformed));
        assert_eq!(trust.lock().texts.len(), 1, "nothing else remembered");
        let misnamed = trust.certifies_text(at, Some(&text), NodeId(7), Asn(1), &fp);
        assert!(misnamed.unwrap_err().proves_misbehaviour());
    }

    #[test]
    fn a_certificate_survives_its_wire_form() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let ca = Identity::generate(&mut rng, 2048).unwrap();
        let cert = issue_certificate(&ca, &mut rng, body(&ca, 1, 1, 9_000));
        let text = String::from_utf8(to_json(&cert)).unwrap();
        let back: Certificate = serde_json::from_str(&text).unwrap();
        assert_eq!(back, cert);
        assert_eq!(back.body, cert.body);
        let oversized = format!(
            r#"{{"body":"{}","sig":""}}"#,
            crate::wire::b64::encode(&[b' '; 2000])
        );
        assert!(serde_json::from_str::<Certificate>(&oversized).is_err());
    }
}
