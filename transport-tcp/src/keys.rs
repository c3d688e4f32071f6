//! Key material on disk and OS randomness: the node's RSA key (loaded, or created on first
//! start with mode 0600 through an atomic write), new cluster keys, and RNG seeds.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use overlay_core::{ClusterKey, Identity};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use thiserror::Error;

/// Default RSA key size for new node keys.
pub const DEFAULT_BITS: usize = 2048;

/// A key file could not be read, parsed or written.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Reading or writing failed.
    #[error("{path}: {action}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a usable PKCS#8 RSA key, or generation failed.
    #[error("{path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Refusing to replace an existing file.
    #[error("{0}: already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// The OS random source failed.
    #[error("OS random source failed: {0}")]
    Random(String),
}

/// 32 bytes from the OS random source.
pub fn os_seed() -> Result<[u8; 32], KeyError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(seed)
}

/// A cryptographic RNG seeded from the OS.
pub fn os_rng() -> Result<ChaCha20Rng, KeyError> {
    Ok(ChaCha20Rng::from_seed(os_seed()?))
}

/// A new random cluster key.
pub fn new_cluster_key() -> Result<ClusterKey, KeyError> {
    Ok(ClusterKey::generate(&mut os_rng()?))
}

/// A new RSA identity of `bits` bits (2048 or 4096).
pub fn generate_identity(path: &Path, bits: usize) -> Result<Identity, KeyError> {
    Identity::generate(&mut os_rng()?, bits).map_err(|e| KeyError::Key {
        path: path.to_path_buf(),
        message: format!("cannot generate a {bits}-bit key: {e}"),
    })
}

/// Writes a new identity to `path` (0600, atomically); fails if the file exists.
pub fn write_identity(path: &Path, identity: &Identity) -> Result<(), KeyError> {
    let pem = identity.to_pkcs8_pem().map_err(|e| KeyError::Key {
        path: path.to_path_buf(),
        message: format!("cannot encode the key: {e}"),
    })?;
    write_new_secret(path, pem.as_bytes())
}

/// The node's identity from `path`, creating a new 2048-bit key there if the file does not
/// exist. Returns whether it was created.
pub fn load_or_create_identity(path: &Path) -> Result<(Identity, bool), KeyError> {
    match fs::read_to_string(path) {
        Ok(pem) => {
            let identity = Identity::from_pkcs8_pem(&pem).map_err(|e| KeyError::Key {
                path: path.to_path_buf(),
                message: format!("not a PKCS#8 PEM RSA private key: {e}"),
            })?;
            Ok((identity, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = generate_identity(path, DEFAULT_BITS)?;
            write_identity(path, &identity)?;
            Ok((identity, true))
        }
        Err(source) => Err(KeyError::Io {
            path: path.to_path_buf(),
            action: "cannot read the key",
            source,
        }),
    }
}

/// Whether a key file can be read by group or others.
pub fn is_exposed(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

/// Writes a secret to a new file atomically (see [`write_atomically`]), mode 0600; fails if
/// the file exists.
pub fn write_new_secret(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    write_atomically(path, bytes, 0o600, false)
}

/// Writes a file atomically: a temporary file of mode `mode` beside it, fsync, then into
/// place, then the folder is synced. A crash leaves the old file or the whole new one,
/// never a part. Without `replace`, the file is placed with a hard link, which fails
/// rather than replace an existing file; with it, by a rename.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    replace: bool,
) -> Result<(), KeyError> {
    let io = |action: &'static str| {
        move |source| KeyError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    };
    if !replace && path.exists() {
        return Err(KeyError::Exists(path.to_path_buf()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io("cannot create a temporary file"))?;
        file.write_all(bytes).map_err(io("cannot write"))?;
        file.sync_all().map_err(io("cannot sync"))?;
        let placed = if replace {
            fs::rename(&tmp, path)
        } else {
            fs::hard_link(&tmp, path)
        };
        placed.map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
            _ => io("cannot move the file into place")(e),
        })?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot sync the folder"))
    })();
    // The temporary name is ours alone; it goes whether it was placed or not.
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_new_secret(&path, b"first").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(!is_exposed(&path));
        assert!(matches!(
            write_new_secret(&path, b"second"),
            Err(KeyError::Exists(_))
        ));
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn a_created_identity_is_loaded_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rc.pem");
        let (created, new) = load_or_create_identity(&path).unwrap();
        assert!(new);
        let (loaded, new) = load_or_create_identity(&path).unwrap();
        assert!(!new);
        assert_eq!(created.fingerprint(), loaded.fingerprint());
        fs::write(dir.path().join("bad.pem"), "nope").unwrap();
        let e = load_or_create_identity(&dir.path().join("bad.pem")).unwrap_err();
        assert!(e.to_string().contains("PKCS#8"), "{e}");
    }
}
