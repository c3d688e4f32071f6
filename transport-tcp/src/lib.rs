//! overlay-transport-tcp: the smol/async-io TCP driver around `overlay-core`
//! ([`driver`]), the `overlay-network` daemon ([`daemon`]) with its configuration files
//! ([`config`]) and keys ([`keys`]), a client of its HTTP control API ([`client`]), and the
//! command line ([`cli`]). Inside: the control API, its metrics, graph and web page, the
//! certificate authority, telemetry, rendering and the demo. With the `chaos` feature
//! (tests only), a controller can misbehave on purpose; with `test-util`, [`testing`] has
//! what the tests and benchmarks share (generated clusters of config files).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

mod api;
mod authority;
#[cfg(feature = "chaos")]
mod chaos;
mod child;
pub mod cli;
pub mod client;
pub mod config;
mod counters;
pub mod daemon;
mod demo;
pub mod driver;
mod estimator;
pub mod events;
mod graph;
mod handlers;
mod keyring;
pub mod keys;
mod logging;
mod metrics;
mod operator;
mod render;
mod telemetry;
mod topology;
mod web;

/// Test support (the `test-util` feature): clusters of config files on loopback, and the
/// limits and renderings tests compare against.
#[cfg(feature = "test-util")]
pub mod testing {
    pub use crate::api::MAX_PER_CLIENT;
    pub use crate::render::path;

    /// Clusters of config files: the example cluster, generated ones, relocation to
    /// loopback ports, and the checks of route tables against expected rows.
    pub mod topology {
        pub use crate::topology::*;
    }
}
