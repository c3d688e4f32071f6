//! overlay-core: the Sans-IO protocol core of overlay-network, a secure gossip overlay for
//! route controllers.
//!
//! A [`Node`] is a pure state machine: [`Node::handle`] takes the current [`Time`] and an
//! [`Event`] (connection opened, bytes received, connection closed, tick, operator command)
//! and returns [`Action`]s (connect, send bytes, close, notify). The node never reads a
//! clock, never touches a socket or a file, and takes randomness only from the seed it was
//! built with; it reports when it next needs to run with [`Node::next_wakeup`].
//!
//! # Example: two controllers in one loop
//!
//! A complete embedding in a few lines: the "network" is a queue of events, connections are
//! pairs of [`ConnId`]s, and time jumps to the earliest [`Node::next_wakeup`].
//!
//! ```
//! use std::collections::VecDeque;
//! use overlay_core::*;
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let key = ClusterKey::from_bytes([7; 32]);
//! let addrs = [Addr::from("10.0.0.1:1450"), Addr::from("10.0.0.2:1450")];
//! let link = |asn| vec![AsLink { asn: Asn(asn), capacity: 100, cost: 1 }];
//! let mut configs = [
//!     Config::new(NodeId(1), Asn(100), addrs[0].clone(), vec![key.clone()]),
//!     Config::new(NodeId(2), Asn(200), addrs[1].clone(), vec![key]),
//! ];
//! configs[0].links = link(200);
//! configs[1].links = link(100);
//! configs[1].bootstrap = vec![addrs[0].clone()]; // RC2 dials RC1
//! let mut rng = ChaCha20Rng::seed_from_u64(1);
//! let mut nodes: Vec<Node> = configs
//!     .into_iter()
//!     .enumerate()
//!     .map(|(i, c)| {
//!         let identity = Identity::generate(&mut rng, 2048).unwrap();
//!         Node::new(c, identity, [i as u8; 32], Time::ZERO).unwrap()
//!     })
//!     .collect();
//!
//! let mut now = Time::ZERO;
//! let mut queue: VecDeque<(usize, Event)> = (0..2).map(|i| (i, Event::Tick)).collect();
//! while now < Time::from_millis(5_000) {
//!     let Some((i, event)) = queue.pop_front() else {
//!         // Nothing in flight: sleep until the earliest timer and wake that node.
//!         let (i, at) = (0..2)
//!             .filter_map(|i| Some((i, nodes[i].next_wakeup()?)))
//!             .min_by_key(|&(_, at)| at)
//!             .unwrap();
//!         now = now.max(at);
//!         queue.push_back((i, Event::Tick));
//!         continue;
//!     };
//!     let other = 1 - i; // ConnId(j) is node j's end of the one connection
//!     for action in nodes[i].handle(now, event) {
//!         match action {
//!             Action::Connect { addr } => {
//!                 queue.push_back((i, Event::Connected {
//!                     conn: ConnId(i as u64), direction: Direction::Outbound, remote: addr,
//!                 }));
//!                 queue.push_back((other, Event::Connected {
//!                     conn: ConnId(other as u64), direction: Direction::Inbound,
//!                     remote: Addr::from("10.0.0.2:50000"),
//!                 }));
//!             }
//!             Action::Send { bytes, .. } => {
//!                 queue.push_back((other, Event::Received { conn: ConnId(other as u64), bytes }))
//!             }
//!             Action::Close { .. } => {
//!                 queue.push_back((other, Event::Disconnected { conn: ConnId(other as u64) }))
//!             }
//!             Action::Notify(_) => {} // peer up, member joined, routes changed, ...
//!         }
//!     }
//! }
//! assert_eq!(nodes[0].peers().len(), 1);
//! let route = nodes[1].routes().into_iter().find(|r| r.destination == Asn(100)).unwrap();
//! assert_eq!((route.cost, route.path), (1, vec![Asn(200), Asn(100)]));
//! ```
//!
//! The public API is this page's list; [`wire`] holds the message types an outsider needs to
//! speak the protocol. Inside, one private module per component: `wire` (frames and
//! messages), `identity` (keys and signatures), `linkcrypto` (handshake transcript, hop
//! encryption), `verify` (verification once per process), `reputation` (offenses, bans,
//! evictions), `cert`
//! (certificates), `swarm` (connections, handshake, direct peers), `gossip` (rumor store and
//! acceptance), `broadcast` (Plumtree dissemination, sync, anti-entropy), `routing` and
//! `bindings` (members and best paths), `scheduler` (time and timers); `node` dispatches
//! between them (docs/ARCHITECTURE.md has their layers).

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
pub mod wire;

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
pub use verify::VerifyCache;
pub use wire::{Addr, AsLink, Asn, CertBody, Certificate, ConnId, NodeId};

/// Test support and fault injection (the `test-util` feature, never on in release builds):
/// signing rumors as any identity, the handshake's building blocks for test vectors, and
/// the routing engine for benchmarks. `Node::inject`, `Node::inject_sealed` and
/// `Node::sign_rumor` are behind the same feature.
#[cfg(feature = "test-util")]
pub mod testing {
    pub use crate::gossip::sign as sign_rumor;
    pub use crate::handshake::{REFUSED, hello_proof};
    pub use crate::identity::Proof;
    pub use crate::linkcrypto::{LinkCipher, Role, Transcript, derive_link_ciphers};
    pub use crate::routing::{Applied, Routing};
}
