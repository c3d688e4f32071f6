#!/usr/bin/env bash
# Benchmark of the overlay-network daemon: 10 daemons on loopback, 500 ms gossip period.
# Prints one JSON line: time from start to all routes converged, and rumors/s that one
# daemon (RC1) forwards in steady state.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p overlay-transport-tcp --bins --examples
exec target/release/examples/bench "$@"
