//! `Node::handle` on an arbitrary sequence of events from an authenticated peer: sealed
//! messages built from genuinely signed rumors and then altered, garbage, new inbound
//! connections with hellos, time passing, reconnects and operator commands. After every
//! step: caps respected, nothing accepted twice, nothing forged accepted, state consistent.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use overlay_fuzz::{Op, Pair};

fuzz_target!(|ops: Vec<Op>| {
    let mut pair = Pair::new();
    for op in ops.iter().take(64) {
        pair.step(op);
    }
});
