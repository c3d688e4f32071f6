//! overlay-core: the Sans-IO protocol core of overlay-network, a secure gossip overlay for
//! route controllers.
//!
//! A [`Node`] is a pure state machine: [`Node::handle`] takes the current [`Time`] and an
//! [`Event`] (connection opened, bytes received, connection closed, tick, operator command)
//! and returns [`Action`]s (connect, send bytes, close, notify). The node never reads a
//! clock, never touches a socket or a file, and takes randomness only from the seed it was
//! built with; it reports when it next needs to run with [`Node::next_wakeup`].
//!
//! Components, one per module: [`wire`] (frames and messages), [`sentry`] (identities,
//! signatures, hop encryption, reputation), [`swarm`] (connections, handshake, direct
//! peers), [`gossip`] (rumor store and acceptance), [`broadcast`] (Plumtree dissemination,
//! sync, anti-entropy), [`routing`] (members and best paths), [`scheduler`] (time and
//! timers); [`node`] dispatches between them.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod broadcast;
pub mod config;
pub mod event;
pub mod gossip;
pub mod node;
pub mod routing;
pub mod scheduler;
pub mod sentry;
pub mod swarm;
pub mod wire;

pub use broadcast::Dissemination;
pub use config::{Config, ConfigError};
pub use event::{
    Action, CloseReason, Command, Direction, Event, Metrics, Notification, RejectReason,
};
pub use node::{Node, Peer, StateSizes, Status};
pub use routing::{Member, MemberState, Route, RouteChange};
pub use scheduler::{Time, parse_cron};
pub use sentry::{ClusterKey, Fingerprint, Identity};
pub use wire::{Addr, AsLink, Asn, ConnId, NodeId};
