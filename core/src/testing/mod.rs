//! Test support (the `test-util` feature): the in-memory cluster harness, the shared pool
//! of test identities and configurations, and re-exports of internals that tests, test
//! vectors and benchmarks need. A misuse of the harness panics, as a test should.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: a harness misused by a test panics, which fails that test"
)]

mod cluster;
mod pool;

pub use cluster::{Cluster, Tap, TapFn};
pub use pool::{
    POOL_SIZE, addr, cluster_key, config, dialer_and_listener, example_configs, identity, link,
};

pub use crate::gossip::sign as sign_rumor;
pub use crate::handshake::{REFUSED, hello_proof};
pub use crate::identity::Proof;
pub use crate::linkcrypto::{LinkCipher, Role, Transcript, derive_link_ciphers};
pub use crate::routing::{Applied, Routing};
