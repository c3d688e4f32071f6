//! overlay-core: the Sans-IO protocol core of overlay-network, a secure gossip overlay for
//! route controllers.
//!
//! A [`Node`] is a pure state machine: [`Node::handle`] takes the current [`Time`] and an
//! [`Event`] (connection opened, bytes received, connection closed, tick, operator command)
//! and returns [`Action`]s (connect, send bytes, close, notify). The node never reads a
//! clock, never touches a socket or a file, and takes randomness only from the seed it was
//! built with; it reports when it next needs to run with [`Node::next_wakeup`].
//!
//! # Embedding
//!
//! An embedder's loop hands each node the events its transport sees and carries out the
//! actions the node returns; then it calls the node again at [`Node::next_wakeup`]:
//!
//! ```
//! use overlay_core::*;
//! # let config = overlay_core::testing::config(0, 100, vec![], &[]);
//! # let identity = overlay_core::testing::identity(0);
//!
//! let mut node = Node::new(config, identity, [7; 32], Time::ZERO)?; // the seed: 32 bytes
//! for action in node.handle(Time::ZERO, Event::Tick) {
//!     match action {
//!         Action::Connect { addr } => {} // dial; report Event::Connected or ConnectFailed
//!         Action::Send { conn, bytes } => {} // write the bytes, in order
//!         Action::Close { conn, reason } => {} // flush, then close
//!         Action::Notify(n) => {} // peer up, member joined, routes changed, ...
//!     }
//! }
//! assert!(node.next_wakeup().is_some()); // hand it Event::Tick then
//! # Ok::<(), ConfigError>(())
//! ```
//!
//! With the `test-util` feature, `testing::Cluster` is such a loop over in-memory pipes, on
//! virtual time (the tests, benchmarks and fuzz targets all drive nodes with it). Two
//! controllers, RC2 dialing RC1:
//!
//! ```
//! use overlay_core::Asn;
//! use overlay_core::testing::{Cluster, config, link};
//!
//! // config(slot, AS, links, bootstrap slots)
//! let mut cluster = Cluster::new(vec![
//!     config(0, 100, vec![link(200, 100, 1)], &[]),
//!     config(1, 200, vec![link(100, 100, 1)], &[0]),
//! ]);
//! cluster.drive_for(5_000); // five seconds of virtual time
//! assert_eq!(cluster.node(0).peers().len(), 1);
//! let routes = cluster.node(1).routes();
//! let route = routes.iter().find(|r| r.destination == Asn(100)).unwrap();
//! assert_eq!((route.cost, &route.path), (1, &vec![Asn(200), Asn(100)]));
//! ```
//!
//! The public API is this page's list (docs/PROTOCOL.md describes the messages for an
//! implementer; their types, `wire`, are public only with the `test-util` feature, for
//! fault injection, fuzzing and test vectors). Inside, one module per component: `wire`
//! (frames and messages), `identity` (keys and signatures), `linkcrypto` (handshake transcript, hop
//! encryption), `verify` (verification once per process), `reputation` (offenses, bans,
//! evictions) and `discipline` (from a bad message to an eviction), `cert` (certificates),
//! `swarm` and `handshake` (connections, direct peers), `dialing` (whom to dial), `gossip`
//! (rumor store and acceptance), `broadcast` (Plumtree dissemination, sync, anti-entropy),
//! `routing`, `paths` and `bindings` (members and best paths), `scheduler` (time and
//! timers); `node` dispatches between them (docs/ARCHITECTURE.md has their layers).

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod advertising;
mod bindings;
mod broadcast;
mod cert;
mod config;
mod dialing;
mod discipline;
mod event;
mod gossip;
mod handshake;
mod identity;
mod linkcrypto;
mod node;
mod pace;
mod paths;
mod reputation;
mod routing;
mod scheduler;
mod swarm;
mod verify;
/// The wire format's message types, for fault injection, fuzzing and test vectors (the
/// `test-util` feature). Embedders use the re-exports below; without the feature the
/// module is private.
#[cfg(feature = "test-util")]
pub mod wire;
#[cfg(not(feature = "test-util"))]
mod wire;

pub use cert::{CertError, Trust, issue_certificate};
pub use config::{Config, ConfigError, Dissemination};
pub use event::{
    Action, CloseReason, Command, Direction, Event, Metrics, Notification, RejectReason,
};
pub use identity::{ClusterKey, Fingerprint, Identity, PublicIdentity};
pub use node::{Node, Peer, StateSizes, Status};
pub use paths::{Route, best_paths};
pub use routing::{Member, MemberState, RouteChange, speakers};
pub use scheduler::{Time, parse_cron};
pub use verify::Profile;
pub use verify::VerifyCache;
pub use wire::{Addr, AsLink, Asn, CertBody, Certificate, ConnId, NodeId, PROTOCOL_VERSION};

/// Test support and fault injection (the `test-util` feature, never on in release builds):
/// the in-memory cluster harness every test, benchmark and fuzz target drives nodes with
/// (`Cluster`, with a shared pool of test identities), signing rumors as any identity, the
/// handshake's building blocks for test vectors, and the routing engine for benchmarks.
/// `Node::inject`, `Node::inject_sealed` and `Node::sign_rumor` are behind the same feature.
#[cfg(feature = "test-util")]
pub mod testing;
