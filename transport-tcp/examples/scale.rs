//! Benchmark (not a test): starts N `overlay-network` daemons on loopback (default 100, a
//! generated layout, gossip every 500 ms, keys made beforehand) and prints one JSON
//! object: the time from start to every routing table converged (and how much of it went
//! to starting the processes one after another, what the boot cost in CPU, rumors,
//! signature verifications and handshakes), each daemon's resident
//! memory, the CPU each uses in steady state (from /proc), and how long until a `kill -9`
//! of the best-connected daemon is withdrawn everywhere (every other table converged
//! without it). Run it with `transport-tcp/scale.sh [daemons] [advert_refresh]` (release
//! build).

#![forbid(unsafe_code)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::json;

const STEADY: Duration = Duration::from_secs(10);

/// `utime + stime` of a process, in clock ticks, and its VmRSS in bytes.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((ticks, kb * 1024))
}

fn main() {
    let daemons: usize = std::env::args()
        .nth(1)
        .map_or(100, |a| a.parse().expect("daemons: a number"));
    let refresh: Option<u32> = std::env::args()
        .nth(2)
        .map(|a| a.parse().expect("advert_refresh: a number"));
    let mut cluster = Cluster::generated_with_keys(daemons, "@every 500ms");
    for i in 0..daemons {
        cluster.files[i].advert_refresh = refresh;
        cluster.write(i);
    }
    let started = Instant::now();
    cluster.start_all();
    let all_started = started.elapsed();
    let live = vec![true; daemons];
    let converged = cluster.converge(&live, Duration::from_secs(120));
    let converge_ms = started.elapsed().as_millis();

    let pids: Vec<u32> = (0..daemons).map(|i| cluster.daemon(i).pid()).collect();
    let before: Vec<Option<(u64, u64)>> = pids.iter().map(|&p| proc_usage(p)).collect();
    // What the boot cost: CPU of all daemons until converged, and the protocol's work.
    let boot_cpu_s = before.iter().flatten().map(|&(t, _)| t).sum::<u64>() as f64 / 100.0;
    let total = |name: &str| -> f64 { (0..daemons).filter_map(|i| cluster.metric(i, name)).sum() };
    let boot_verified = total("overlay_signatures_verified_total");
    let boot_accepted = total("overlay_rumors_accepted_total");
    let boot_handshakes = total("overlay_handshakes_total");
    std::thread::sleep(STEADY);
    let after: Vec<Option<(u64, u64)>> = pids.iter().map(|&p| proc_usage(p)).collect();
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .filter_map(|(b, a)| Some((a.as_ref()?.0 - b.as_ref()?.0) as f64))
        .map(|t| t / ticks_per_s / STEADY.as_secs_f64())
        .collect();
    let rss: Vec<u64> = after.iter().flatten().map(|&(_, r)| r).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let rss_f: Vec<f64> = rss.iter().map(|&r| r as f64).collect();

    // Kill -9 the daemon with the most direct peers; wait until every other table is the
    // path rule's over the others.
    let peers = |i: usize| {
        cluster
            .status(i)
            .and_then(|s| s["peers"].as_u64())
            .unwrap_or(0)
    };
    let best = (0..daemons).max_by_key(|&i| peers(i)).unwrap_or(0);
    let best_peers = peers(best);
    cluster.daemon(best).signal("KILL");
    let killed = Instant::now();
    let mut live = vec![true; daemons];
    live[best] = false;
    let withdrawn = cluster.converge(&live, Duration::from_secs(120));
    println!(
        "{}",
        json!({
            "daemons": daemons,
            "gossip_period_ms": 500,
            "advert_refresh": refresh.unwrap_or(30),
            "converged": converged.is_ok(),
            "not_converged": converged.as_ref().err().map(|e| e.chars().take(600).collect::<String>()),
            "start_to_converged_ms": converge_ms,
            "starting_all_processes_ms": all_started.as_millis(),
            "last_start_to_converged_ms": converge_ms - all_started.as_millis(),
            "boot_cpu_core_seconds_all_daemons": (boot_cpu_s * 100.0).round() / 100.0,
            "boot_rumors_accepted_per_daemon": (boot_accepted / daemons as f64).round(),
            "boot_signatures_verified_per_daemon": (boot_verified / daemons as f64).round(),
            "boot_handshakes_per_daemon": (boot_handshakes / daemons as f64 * 10.0).round() / 10.0,
            "rss_bytes_per_daemon_mean": mean(&rss_f).round(),
            "rss_bytes_per_daemon_max": rss.iter().max(),
            "steady_cpu_cores_per_daemon_mean": (mean(&cpu) * 1e4).round() / 1e4,
            "steady_cpu_cores_all_daemons": (cpu.iter().sum::<f64>() * 1e3).round() / 1e3,
            "steady_window_s": STEADY.as_secs(),
            "killed": format!("RC{}", cluster.files[best].me.id),
            "killed_peers": best_peers,
            "kill_withdrawn_everywhere_ms": withdrawn.ok().map(|_| killed.elapsed().as_millis()),
            "heartbeat_timeout_ms": 1500,
        })
    );
}
