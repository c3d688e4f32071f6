//! overlay-transport-tcp: the smol/async-io TCP driver around `overlay-core`
//! ([`driver`], [`telemetry`]), the `overlay-network` daemon ([`daemon`]) with its
//! configuration files ([`config`]), keys ([`keys`]), certificates ([`authority`]) and HTTP control API ([`api`],
//! [`metrics`], [`graph`], [`web`], [`client`]), the command line ([`cli`], [`render`]),
//! and the demo ([`demo`], [`topology`]). With the `chaos` feature (tests only), `chaos`
//! makes a controller misbehave on purpose.

#![forbid(unsafe_code)]

pub mod api;
pub mod authority;
#[cfg(feature = "chaos")]
pub mod chaos;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod driver;
pub mod graph;
pub mod keys;
pub mod metrics;
pub mod render;
pub mod telemetry;
pub mod topology;
pub mod web;
