//! The key pool: deterministic RSA-2048 identities, generated once (in parallel) and cached
//! on disk as PKCS#8 PEM, so that a thousand simulated nodes start in seconds. Key `i` is
//! always the key generated from seed `KEY_SEED_BASE + i`: the cache only saves time, it
//! never changes which key a node gets. The key size is never reduced.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::{fs, io, thread};

use overlay_core::Identity;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// RSA modulus size of every pooled key (the protocol's minimum; never lowered).
pub const KEY_BITS: usize = 2048;
/// Seed of key 0; key `i` is generated from `KEY_SEED_BASE + i`.
pub(crate) const KEY_SEED_BASE: u64 = 0x5eed_0000;

/// A pool of identities, indexed from 0.
#[derive(Debug, Clone)]
pub struct KeyPool {
    keys: Vec<Identity>,
}

impl KeyPool {
    /// Generates `n` keys without touching the disk, on all available cores.
    pub fn generate(n: usize) -> KeyPool {
        KeyPool {
            keys: build(n, |i| Ok(generate(i))).unwrap_or_default(),
        }
    }

    /// Loads keys `0..n` from `dir`, generating (and storing) the missing or unreadable
    /// ones (a readable file of the right size is trusted as it is). Files are written atomically, so concurrent test binaries can share a cache.
    pub fn cached(dir: &Path, n: usize) -> io::Result<KeyPool> {
        fs::create_dir_all(dir)?;
        let keys = build(n, |i| {
            let path = dir.join(format!("rsa{KEY_BITS}-{i:05}.pem"));
            if let Ok(pem) = fs::read_to_string(&path)
                && let Ok(id) = Identity::from_pkcs8_pem(&pem)
                && id.public().bits() == KEY_BITS
            {
                return Ok(id);
            }
            let id = generate(i);
            let pem = id.to_pkcs8_pem().map_err(io::Error::other)?;
            // Unique per process and per write: threads and test binaries may race here.
            static WRITES: AtomicU64 = AtomicU64::new(0);
            let n = WRITES.fetch_add(1, Ordering::Relaxed);
            let tmp = dir.join(format!(".{i:05}.{}.{n}.tmp", std::process::id()));
            fs::write(&tmp, pem)?;
            fs::rename(&tmp, &path)?;
            Ok(id)
        })?;
        Ok(KeyPool { keys })
    }

    /// The default cache directory: `$OVERLAY_KEY_CACHE`, else
    /// `$CARGO_TARGET_DIR/overlay-keys`, else `target/overlay-keys` in the workspace.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("OVERLAY_KEY_CACHE") {
            return PathBuf::from(dir);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            PathBuf::from,
        );
        target.join("overlay-keys")
    }

    /// Key `i` (a clone; identities are cheap to clone).
    ///
    /// # Panics
    /// When `i` is outside the pool.
    pub fn get(&self, i: usize) -> Identity {
        self.keys[i].clone()
    }

    /// How many keys the pool holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Generates key `i` from its own seed.
fn generate(i: usize) -> Identity {
    let mut rng = ChaCha20Rng::seed_from_u64(KEY_SEED_BASE + i as u64);
    match Identity::generate(&mut rng, KEY_BITS) {
        Ok(id) => id,
        // 2048 bits is within the core's accepted range: generation cannot fail.
        Err(e) => unreachable!("RSA-{KEY_BITS} generation failed: {e}"),
    }
}

/// Runs `make(i)` for `0..n` on all cores, keeping the order.
fn build(
    n: usize,
    make: impl Fn(usize) -> io::Result<Identity> + Sync,
) -> io::Result<Vec<Identity>> {
    let workers = thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(n.max(1));
    let next = Mutex::new(0usize);
    let done: Mutex<Vec<Option<Identity>>> = Mutex::new(vec![None; n]);
    let result: io::Result<()> = thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| -> io::Result<()> {
                    loop {
                        let i = {
                            let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
                            let i = *next;
                            *next += 1;
                            i
                        };
                        if i >= n {
                            return Ok(());
                        }
                        let id = make(i)?;
                        done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(id);
                    }
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(io::Error::other("keygen panicked")))
        })
    });
    result?;
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(done.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_keys_are_the_generated_ones_and_full_size() {
        let dir = std::env::temp_dir().join(format!("overlay-keys-test-{}", std::process::id()));
        let first = KeyPool::cached(&dir, 2).unwrap();
        let again = KeyPool::cached(&dir, 2).unwrap();
        let fresh = KeyPool::generate(2);
        for i in 0..2 {
            assert_eq!(first.get(i).fingerprint(), fresh.get(i).fingerprint());
            assert_eq!(again.get(i).fingerprint(), fresh.get(i).fingerprint());
            assert_eq!(first.get(i).public().bits(), KEY_BITS);
        }
        assert_ne!(first.get(0).fingerprint(), first.get(1).fingerprint());
        fs::write(dir.join("rsa2048-00001.pem"), "garbage").unwrap();
        let repaired = KeyPool::cached(&dir, 2).unwrap();
        assert_eq!(repaired.get(1).fingerprint(), fresh.get(1).fingerprint());
        fs::remove_dir_all(&dir).unwrap();
    }
}
