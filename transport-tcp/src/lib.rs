//! overlay-transport-tcp: the smol/async-io TCP driver around `overlay-core`, the control
//! API and the `overlay-network` command line.

#![forbid(unsafe_code)]
