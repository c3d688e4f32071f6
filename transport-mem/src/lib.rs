//! overlay-transport-mem: in-memory pipes and a deterministic, seeded N-node simulator
//! driving `overlay-core` with virtual time.
//!
//! - [`pipe`]: ordered byte streams in virtual time, for any embedder's tests.
//! - [`sim`]: the simulator ([`Sim`]): nodes, the (time, sequence) queue, the network model
//!   (latency, jitter, loss, cuts, partitions) and faults (crash, restart, leave,
//!   misbehaving members), an event-log hash ([`trace`]) for determinism.
//! - [`topology`]: ring, line, star, Erdős–Rényi and Barabási–Albert graphs with random
//!   link costs and capacities; AS links and bootstrap peers come from them.
//! - [`keys`]: a pool of RSA-2048 identities cached on disk.
//! - [`reference`]: an independent implementation of the routing contract, to check
//!   every node's table.
//! - [`experiment`]: the scripted scenarios (broadcast, churn, partition, byzantine) and
//!   the figures they measure, as printed by `examples/sim.rs`.

#![forbid(unsafe_code)]

pub mod experiment;
pub mod keys;
pub mod misbehave;
pub mod pipe;
mod random;
pub mod reference;
pub mod sim;
pub mod topology;
pub mod trace;

pub use keys::KeyPool;
pub use misbehave::Misbehavior;
pub use pipe::{Duplex, Pipe, Side};
pub use reference::{RefRoute, Reference};
pub use sim::{Delivery, LossMode, MemberEvent, NetParams, Sim, SimParams, SlotId, SlotState};
pub use topology::{Topology, Weights};
