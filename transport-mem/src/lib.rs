//! overlay-transport-mem: in-memory pipes and a deterministic, seeded N-node simulator
//! driving `overlay-core` with virtual time.
//!
//! - [`pipe`]: ordered byte streams in virtual time, for any embedder's tests.
//! - [`sim`]: the simulator ([`Sim`]): nodes, the time queue run in lookahead windows
//!   whose nodes are handed their events on worker threads, the network model (latency,
//!   jitter, loss, cuts, partitions) and faults (crash, restart, leave, misbehaving
//!   members), an event-log hash ([`trace`]) for determinism on any number of threads.
//! - [`topology`]: ring, line, star, Erdős–Rényi and Barabási–Albert graphs with random
//!   link costs and capacities, or a real network read from a file (Topology Zoo GraphML,
//!   node-link JSON, CAIDA AS relationships); AS links and bootstrap peers come from them.
//! - [`keys`]: a pool of RSA-2048 identities cached on disk.
//! - [`reference`]: an independent implementation of the routing contract, to check
//!   every node's table.
//! - [`experiment`]: the scripted scenarios (broadcast, churn, partition, byzantine) and
//!   the figures they measure, as printed by `examples/sim.rs`.
//!
//! A script: five nodes on a ring, 1 % frame loss, a crash, a partition, a restart, and
//! every routing table checked against the reference.
//!
//! ```
//! use std::time::Duration;
//! use overlay_core::{ClusterKey, Config, NodeId};
//! use overlay_transport_mem::experiment::{addr, asn};
//! use overlay_transport_mem::{KeyPool, Sim, SimParams, Topology};
//!
//! let keys = KeyPool::cached(&KeyPool::default_dir(), 5)?; // RSA-2048, cached on disk
//! let ring = Topology::ring(5);
//! let mut params = SimParams::new(42); // the one seed
//! params.net.loss = 0.01; // LossMode::Drop by default
//! let mut sim = Sim::new(params);
//! for i in 0..5 {
//!     let key = ClusterKey::from_bytes([7; 32]);
//!     let mut c = Config::new(NodeId(i as u32 + 1), asn(i), addr(i), vec![key]);
//!     c.links = ring.links(i, asn); // AS links from the topology
//!     c.bootstrap = ring.neighbours(i).into_iter().map(addr).collect();
//!     c.gossip_period = Duration::from_secs(1);
//!     sim.add(c, keys.get(i))?;
//! }
//! sim.run_for(Duration::from_secs(5));
//! sim.crash(3);
//! sim.partition(&[vec![0, 1]]);
//! sim.run_for(Duration::from_secs(2));
//! sim.heal();
//! sim.restart(3)?;
//! sim.run_for(Duration::from_secs(15));
//! let reference = sim.reference(|_| true); // every running node speaks
//! assert_eq!(sim.check_routes(&sim.running(), &reference), Ok(()));
//! println!("{} events, trace {}", sim.stats().events, sim.trace().digest());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod experiment;
mod keys;
mod lanes;
mod misbehave;
mod pipe;
mod random;
mod reference;
mod sim;
mod topology;
mod trace;

pub use keys::{KEY_BITS, KeyPool};
pub use misbehave::Misbehavior;
pub use pipe::{Duplex, Pipe, Side};
pub use reference::{RefRoute, Reference};
pub use sim::{
    Delivery, Logged, LossMode, MemberEvent, NetParams, NetStats, Sim, SimParams, SlotId,
    SlotState, Tally, Totals, dissemination_totals,
};
pub use topology::{
    Format, Position, ReadOptions, Site, StubRule, Topology, TopologyError, Weights,
};
pub use trace::Trace;
