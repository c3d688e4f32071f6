//! The certificate authority on disk: `ca init` (a new authority key, and its public key for
//! `trusted_cas`), `cert issue` (a certificate binding a node id, an AS and a node key for a
//! number of days), and reading authority keys and certificates back, with errors that name
//! the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use overlay_core::{
    Asn, CertBody, Certificate, Fingerprint, Identity, NodeId, PublicIdentity, issue_certificate,
};
use rand_chacha::ChaCha20Rng;
use rand_core::Rng;

use overlay_core::Command;
use tracing::{info, warn};

use crate::driver::Handle;
use crate::keys::{self, KeyError};

/// How far before the moment of issue a certificate's validity starts, for clocks behind
/// the authority's.
pub(crate) const BACKDATE: Duration = Duration::from_secs(300);

/// The public key file written beside an authority key: `ca.pem` → `ca.pub.pem`.
pub(crate) fn public_path(ca: &Path) -> PathBuf {
    let stem = ca
        .file_stem()
        .map_or_else(|| "ca".into(), |s| s.to_string_lossy().into_owned());
    ca.with_file_name(format!("{stem}.pub.pem"))
}

/// Creates an authority: its private key at `out` (0600, never overwritten) and its public
/// key beside it (see [`public_path`]). Returns the public key's path and the authority.
pub(crate) fn init(out: &Path, bits: usize) -> Result<(PathBuf, Identity), KeyError> {
    let public = public_path(out);
    for path in [out, public.as_path()] {
        if path.exists() {
            return Err(KeyError::Exists(path.to_path_buf()));
        }
    }
    let ca = keys::generate_identity(out, bits)?;
    let pem = ca.public().to_public_pem().map_err(|e| key_error(out, e))?;
    keys::write_identity(out, &ca)?;
    keys::write_atomically(&public, pem.as_bytes(), 0o644, false)?;
    Ok((public, ca))
}

/// What `cert issue` certifies.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The controller id.
    pub node: u32,
    /// Its AS.
    pub asn: u32,
    /// Days of validity from now (fractions allowed).
    pub days: f64,
    /// The serial; a random one when `None`.
    pub serial: Option<u64>,
}

/// Issues a certificate with the authority key at `ca` for the node key at `key` (a
/// private PKCS#8 key or a public key PEM), and writes it to `out` atomically (a renewal
/// replaces the old file).
pub(crate) fn issue(
    ca: &Path,
    key: &Path,
    request: &Request,
    out: &Path,
) -> Result<Certificate, KeyError> {
    let authority = load_private(ca)?;
    let node_key = load_public(key)?;
    if !(request.days.is_finite() && request.days > 0.0) {
        return Err(KeyError::Key {
            path: out.to_path_buf(),
            message: format!("--days {} must be a positive number", request.days),
        });
    }
    let lifetime = Duration::from_secs_f64((request.days * 86_400.0).min(1e15));
    let mut rng = keys::os_rng()?;
    let serial = request.serial.unwrap_or_else(|| rng.next_u64() >> 1);
    let (node, asn) = (NodeId(request.node), Asn(request.asn));
    let cert = certify(
        &authority,
        (node, asn, &node_key.fingerprint()),
        serial,
        lifetime,
        &mut rng,
    );
    let text = serde_json::to_string_pretty(&cert).unwrap_or_default() + "\n";
    keys::write_atomically(out, text.as_bytes(), 0o644, true)?;
    Ok(cert)
}

/// A certificate from `authority` for `key` as controller `node` of AS `asn`, valid from
/// [`BACKDATE`] ago for `lifetime`.
pub(crate) fn certify(
    authority: &Identity,
    (node, asn, key): (NodeId, Asn, &Fingerprint),
    serial: u64,
    lifetime: Duration,
    rng: &mut ChaCha20Rng,
) -> Certificate {
    let now = unix_ms(SystemTime::now());
    let body = CertBody {
        serial,
        node,
        asn,
        key: key.to_hex(),
        issuer: String::new(),
        not_before: now.saturating_sub(BACKDATE.as_millis() as u64),
        not_after: now.saturating_add(u64::try_from(lifetime.as_millis()).unwrap_or(u64::MAX)),
    };
    issue_certificate(authority, rng, body)
}

/// Reads an authority's public key (`ca.pub.pem`). A private key is refused: it belongs
/// on the authority's host only.
pub(crate) fn load_trusted(path: &Path) -> Result<PublicIdentity, KeyError> {
    let pem = read(path)?;
    if pem.contains("PRIVATE KEY") {
        return Err(KeyError::Key {
            path: path.to_path_buf(),
            message: "is a private key; give the authority's public key (ca.pub.pem)".into(),
        });
    }
    PublicIdentity::from_public_pem(&pem).map_err(|e| key_error(path, e))
}

/// Reads a certificate file.
pub(crate) fn load_certificate(path: &Path) -> Result<Certificate, KeyError> {
    let text = read(path)?;
    serde_json::from_str(&text).map_err(|e| KeyError::Key {
        path: path.to_path_buf(),
        message: format!("not a certificate: {e}"),
    })
}

/// A one-line description of a certificate.
pub(crate) fn describe(cert: &Certificate) -> String {
    let b = &cert.body;
    format!(
        "RC{} AS{} key {} serial {} valid {} to {} (Unix ms), issuer {}",
        b.node.0,
        b.asn.0,
        b.key.get(..16).unwrap_or(&b.key),
        b.serial,
        b.not_before,
        b.not_after,
        b.issuer.get(..16).unwrap_or(&b.issuer)
    )
}

fn load_private(path: &Path) -> Result<Identity, KeyError> {
    Identity::from_pkcs8_pem(&read(path)?).map_err(|e| KeyError::Key {
        path: path.to_path_buf(),
        message: format!("not a PKCS#8 PEM RSA private key: {e}"),
    })
}

fn load_public(path: &Path) -> Result<PublicIdentity, KeyError> {
    let pem = read(path)?;
    match Identity::from_pkcs8_pem(&pem) {
        Ok(identity) => Ok(identity.public().clone()),
        Err(_) => PublicIdentity::from_public_pem(&pem).map_err(|e| KeyError::Key {
            path: path.to_path_buf(),
            message: format!("neither a PKCS#8 private key nor a public key PEM: {e}"),
        }),
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        action: "cannot read",
        source,
    })
}

fn key_error(path: &Path, e: impl std::fmt::Display) -> KeyError {
    KeyError::Key {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Re-reads the certificate file at `path` every `every` and hands a changed, readable one
/// to the node (which refuses, and logs, one that does not certify it). Warns once per
/// distinct read error, and once when the certificate in use has expired. Returns when the
/// node has stopped.
pub(crate) async fn watch(
    path: PathBuf,
    mut current: Option<Certificate>,
    every: Duration,
    handle: Handle,
) {
    let mut last_error = None;
    let mut warned_expiry = false;
    loop {
        smol::Timer::after(every).await;
        match load_certificate(&path) {
            Ok(cert) if current.as_ref() != Some(&cert) => {
                info!(cert = %describe(&cert), "certificate file changed: using it");
                let command = Command::SetCertificate(Box::new(cert.clone()));
                if handle.command(command).await.is_err() {
                    return;
                }
                current = Some(cert);
                last_error = None;
                warned_expiry = false;
            }
            Ok(_) => {}
            Err(e) => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    warn!(error = %text, "cannot read the certificate file; keeping the one in use");
                    last_error = Some(text);
                }
            }
        }
        if let Some(cert) = &current
            && cert.body.not_after < unix_ms(SystemTime::now())
            && !std::mem::replace(&mut warned_expiry, true)
        {
            warn!(
                cert = %describe(cert),
                "this controller's certificate has expired: peers refuse it until a renewed one is written to cert_file"
            );
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authority_issues_certificates_that_its_public_key_checks() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let (public, authority) = init(&ca, 2048).unwrap();
        assert_eq!(public, dir.path().join("ca.pub.pem"));
        assert!(matches!(init(&ca, 2048), Err(KeyError::Exists(_))));
        let rc = dir.path().join("rc.pem");
        let (node, _) = keys::load_or_create_identity(&rc).unwrap();
        let out = dir.path().join("rc.cert");
        let request = Request {
            node: 4,
            asn: 400,
            days: 1.0,
            serial: Some(9),
        };
        let cert = issue(&ca, &rc, &request, &out).unwrap();
        // A renewal replaces the file.
        let renewed = issue(&ca, &rc, &request, &out).unwrap();
        assert_eq!(load_certificate(&out).unwrap(), renewed);
        assert_ne!(cert, renewed);
        let trusted = load_trusted(&public).unwrap();
        assert_eq!(trusted.fingerprint(), authority.fingerprint());
        let trust = overlay_core::Trust::new(vec![trusted], Duration::ZERO);
        let now = overlay_core::Time::from_millis(unix_ms(SystemTime::now()));
        let fp = node.fingerprint();
        assert!(
            trust
                .certifies(now, Some(&renewed), NodeId(4), Asn(400), &fp)
                .is_ok()
        );
        let e = load_trusted(&ca).unwrap_err().to_string();
        assert!(e.contains("private key"), "{e}");
        let bad = Request {
            days: 0.0,
            ..request
        };
        assert!(issue(&ca, &rc, &bad, &out).is_err());
    }
}
