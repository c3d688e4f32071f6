//! Benchmark (not a test): starts 10 `overlay-network` daemons on loopback (a generated
//! layout, gossip every 500 ms, keys made beforehand), measures the time from start to every
//! routing table converged, then how many rumors one daemon forwards per second in steady
//! state, and prints both as JSON. Run it with `transport-tcp/bench.sh` (release build).

#![forbid(unsafe_code)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::json;

const DAEMONS: usize = 10;
const WINDOW: Duration = Duration::from_secs(10);

fn main() {
    let mut cluster = Cluster::generated_with_keys(DAEMONS, "@every 500ms");

    let started = Instant::now();
    cluster.start_all();
    cluster
        .converge(&[true; DAEMONS], Duration::from_secs(60))
        .expect("convergence");
    let converge_ms = started.elapsed().as_millis();

    let counters = |c: &Cluster| {
        [
            "overlay_rumors_out_total",
            "overlay_rumors_in_total",
            "overlay_rumors_accepted_total",
            "overlay_frame_bytes_out_total",
        ]
        .map(|name| c.metric(0, name).expect("metrics of RC1"))
    };
    let before = counters(&cluster);
    let window_start = Instant::now();
    std::thread::sleep(WINDOW);
    let after = counters(&cluster);
    let seconds = window_start.elapsed().as_secs_f64();
    let rate = |i: usize| ((after[i] - before[i]) / seconds * 10.0).round() / 10.0;
    let peers = cluster.status(0).map(|s| s["peers"].clone());
    println!(
        "{}",
        json!({
            "daemons": DAEMONS,
            "gossip_period_ms": 500,
            "start_to_converged_ms": converge_ms,
            "sampled": "RC1",
            "sampled_peers": peers,
            "window_s": (seconds * 10.0).round() / 10.0,
            "rumors_forwarded_per_s": rate(0),
            "rumors_received_per_s": rate(1),
            "rumors_accepted_per_s": rate(2),
            "frame_bytes_out_per_s": rate(3),
        })
    );
}
