#!/usr/bin/env bash
# Benchmark of the overlay-network daemon at scale: N daemons (default 100) on loopback
# (usage: scale.sh [N] [advert_refresh]),
# 500 ms gossip period. Prints one JSON line: time from start to all routes converged,
# resident memory and steady-state CPU per daemon, and how long a kill -9 of the
# best-connected daemon takes to be withdrawn everywhere. Every daemon is killed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p overlay-transport-tcp --bins --examples
exec target/release/examples/scale "$@"
