//! The running cluster keyring (`overlay-network keyring`, `/v1/keyring`): list the keys
//! by id, install a key, use one to dial, remove one. Changes apply at once without a
//! restart (links made with a key stay up). With a cluster key file (`--cluster-key-file`),
//! the file is rewritten atomically so that a restart or a reload keeps the change;
//! otherwise the change lasts until the next reload or restart.

use overlay_core::ClusterKey;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use crate::config::KeySource;
use crate::keys;
use crate::operator::{Operator, Refused};

/// A change of the keyring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Change {
    /// Accept a new key (appended; it does not dial yet).
    Install,
    /// Dial with this key (it moves to the front).
    Use,
    /// Stop accepting this key (refused for the key in use).
    Remove,
}

/// `{"keys": [{"id", "primary"}], "file": PATH|null}`: the keyring, without the secrets.
pub(crate) fn list(operator: &Operator) -> Value {
    let file = persisted_to(operator);
    let keys: Vec<Value> = operator
        .settings()
        .core
        .cluster_keys
        .iter()
        .enumerate()
        .map(|(i, k)| json!({"id": k.id(), "primary": i == 0}))
        .collect();
    json!({"keys": keys, "file": file})
}

/// Where keyring changes are kept, if anywhere.
fn persisted_to(operator: &Operator) -> Option<String> {
    let s = operator.settings();
    match (&s.cluster_key_file, s.key_source) {
        (Some(path), KeySource::File) => Some(path.display().to_string()),
        _ => None,
    }
}

/// Applies `change` to the key given as base64 (or, but for `install`, as its id);
/// answers the new keyring.
pub(crate) async fn apply(
    operator: &Operator,
    change: Change,
    key: &str,
) -> Result<Value, Refused> {
    let _one = operator.busy.lock().await;
    let mut ring = operator.settings().core.cluster_keys.clone();
    let position = ring
        .iter()
        .position(|k| k.id() == key.trim() || k.to_base64() == key.trim());
    match (change, position) {
        (Change::Install, Some(_)) => return Ok(list(operator)),
        (Change::Install, None) => {
            let new = ClusterKey::from_base64(key)
                .map_err(|e| Refused::Request(format!("not a cluster key: {e}")))?;
            ring.push(new);
        }
        (_, None) => {
            return Err(Refused::Request(format!(
                "no such key in the keyring: {}",
                key.get(..16).unwrap_or(key)
            )));
        }
        (Change::Use, Some(i)) => {
            let k = ring.remove(i);
            ring.insert(0, k);
        }
        (Change::Remove, Some(0)) => {
            return Err(Refused::Request(
                "refused: this is the key in use (dialing); `keyring use` another key first".into(),
            ));
        }
        (Change::Remove, Some(i)) => {
            ring.remove(i);
        }
    }
    let ids: Vec<String> = ring.iter().map(ClusterKey::id).collect();
    operator.set_cluster_keys(ring.clone()).await?;
    if let Some(path) = persisted_to(operator) {
        let text: String = ring
            .iter()
            .map(|k| format!("{}\n", k.to_base64()))
            .collect();
        keys::write_atomically(path.as_ref(), text.as_bytes(), 0o600, true)
            .map_err(|e| Refused::Request(format!("applied, but not saved: {e}")))?;
    }
    info!(?change, keys = ?ids, "cluster keyring changed");
    Ok(list(operator))
}
