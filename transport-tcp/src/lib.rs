//! overlay-transport-tcp: the smol/async-io TCP driver around `overlay-core`
//! ([`driver`]), the `overlay-network` daemon ([`daemon`]) with its configuration files
//! ([`config`]), keys ([`keys`]) and HTTP control API ([`api`], [`metrics`], [`client`]),
//! the command line ([`cli`], [`render`]), and the demo ([`demo`], [`topology`]).

#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod driver;
pub mod keys;
pub mod metrics;
pub mod render;
pub mod topology;
