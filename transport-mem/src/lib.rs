//! overlay-transport-mem: in-memory pipes and a deterministic, seeded N-node simulator
//! driving `overlay-core` with virtual time.

#![forbid(unsafe_code)]
