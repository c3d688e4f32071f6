//! Load: a member floods validly signed rumors (`daemon --misbehave flood`, eight times the
//! per-origin rate limit) into four honest daemons that never ban it (`reject_threshold`
//! raised to the maximum, as against an attacker that paces itself under the threshold).
//! Measured on the honest daemons: resident memory (`VmRSS`, `VmHWM` from
//! /proc/<pid>/status) and the propagation delay of an honest link change, without and
//! with the flooder. The link changes come from RC1, an honest controller run in this
//! process (the same `daemon::launch` as the binary) so that the test can change its links;
//! the delay runs from the change to the last honest daemon's log line accepting it
//! (microsecond timestamps, one wall clock, no polling load).
//!
//! The test bounds generously what must hold (every honest change reaches every honest
//! daemon within 10 gossip periods under flood; memory grows by less than 64 MiB); the
//! `#[ignore]`d `flood_load_figures` prints the figures for the README.

#![cfg(feature = "chaos")]

mod common;

use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Cluster, wait_for};
use overlay_core::Command;
use overlay_transport_tcp::config::{self, Overrides, Settings};
use overlay_transport_tcp::driver::Handle;
use overlay_transport_tcp::testing::topology;
use overlay_transport_tcp::{daemon, keys};
use serde_json::{Value, json};

const CONVERGE: Duration = Duration::from_secs(30);
const PERIOD: Duration = Duration::from_millis(500);
/// RC1: the honest origin of the link changes, in this process.
const ORIGIN: usize = 0;
/// RC6: the flooder.
const FLOODER: usize = 5;
/// RC2..RC5: the honest daemons measured.
const HONEST: [usize; 4] = [1, 2, 3, 4];

/// An honest controller run in this process; it leaves when dropped.
struct InProcess {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl InProcess {
    fn start(c: &Cluster, i: usize) -> InProcess {
        let (file, source) = config::load(&c.config(i)).unwrap();
        let settings = Settings::resolve(&file, &source, &Overrides::default(), true).unwrap();
        let (identity, _) = keys::load_or_create_identity(&settings.key_file).unwrap();
        let running = smol::block_on(async {
            let (gossip, rpc) = daemon::bind(&settings, &source, &Overrides::default())
                .await
                .unwrap();
            daemon::launch(&settings, identity, gossip, rpc, None).unwrap()
        });
        let handle = running.handle.clone();
        let thread = std::thread::spawn(move || smol::block_on(running.run()));
        InProcess {
            handle,
            thread: Some(thread),
        }
    }

    fn command(&self, command: Command) {
        smol::block_on(self.handle.command(command)).unwrap();
    }

    /// Its links to direct peers, and the (origin, link) pairs Plumtree made lazy.
    fn links(&self) -> (usize, usize) {
        let sizes = smol::block_on(self.handle.inspect(|v| v.node.sizes())).unwrap();
        (sizes.links, sizes.lazy_pairs)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let _ = smol::block_on(self.handle.command(Command::Leave));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A `/proc/<pid>/status` field in KiB.
fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix(" kB")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("{field} of {pid}"))
}

/// What one run measured.
#[derive(Debug)]
struct Figures {
    /// Propagation delays (ms) of honest link changes without the flooder.
    quiet_ms: Vec<u64>,
    /// The same with the flooder.
    flooded_ms: Vec<u64>,
    /// Honest daemons' VmRSS (KiB) before the flooder started.
    rss_quiet_kib: Vec<u64>,
    /// Their VmRSS at the end of the flood.
    rss_flooded_kib: Vec<u64>,
    /// Their VmHWM (peak RSS, KiB) at the end of the flood.
    hwm_flooded_kib: Vec<u64>,
    /// Flood rumors the honest daemons dropped over the rate limit.
    rate_limited: f64,
    /// Rumors the honest daemons accepted during the flood (the flooder's included).
    accepted_during_flood: f64,
    /// How long the flood lasted.
    flood: Duration,
    /// RC1's (eager, lazy) links after the quiet changes and after the flooded ones.
    origin_links: [(usize, usize); 2],
}

fn sorted(values: &[u64]) -> Vec<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted
}

fn median(values: &[u64]) -> u64 {
    sorted(values)[values.len() / 2]
}

impl Figures {
    fn json(&self) -> Value {
        let mean = |v: &[u64]| v.iter().sum::<u64>() / v.len().max(1) as u64;
        json!({
            "honest_daemons": HONEST.len(),
            "gossip_period_ms": PERIOD.as_millis() as u64,
            "flood_rate": "8 x max_rumors_per_period",
            "flood_s": self.flood.as_secs(),
            "link_changes": self.quiet_ms.len(),
            "delay_quiet_ms": {"median": median(&self.quiet_ms), "all": sorted(&self.quiet_ms)},
            "delay_flooded_ms": {"median": median(&self.flooded_ms), "all": sorted(&self.flooded_ms)},
            "delay_factor_median": median(&self.flooded_ms) as f64 / median(&self.quiet_ms).max(1) as f64,
            "rss_quiet_kib_mean": mean(&self.rss_quiet_kib),
            "rss_flooded_kib_mean": mean(&self.rss_flooded_kib),
            "rss_flooded_kib_max": self.rss_flooded_kib.iter().max(),
            "hwm_flooded_kib_max": self.hwm_flooded_kib.iter().max(),
            "rate_limited_rumors": self.rate_limited,
            "accepted_rumors_during_flood": self.accepted_during_flood,
            "origin_links_lazy_pairs_quiet": self.origin_links[0],
            "origin_links_lazy_pairs_flooded": self.origin_links[1],
        })
    }
}

fn sum(c: &Cluster, name: &str) -> f64 {
    HONEST
        .iter()
        .map(|&i| c.metric(i, name).unwrap_or(0.0))
        .sum()
}

/// Seconds since midnight UTC, now.
fn time_of_day() -> f64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    since.as_secs_f64() % 86_400.0
}

/// Seconds since midnight UTC of a log line (`2026-01-02T03:04:05.678901Z ...`).
fn line_time_of_day(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (_, time) = stamp.split_once('T')?;
    let mut parts = time.split(':').map(str::parse::<f64>);
    let (h, m, s) = (
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    );
    Some(h * 3600.0 + m * 60.0 + s)
}

/// When (seconds since midnight UTC) daemon `i` logged accepting RC1's rumor `seq` or a
/// later one, looking past byte `from` of its log.
fn accepted_at(c: &Cluster, i: usize, from: usize, seq: u64) -> Option<f64> {
    let log = std::fs::read_to_string(c.log(i)).ok()?;
    let marker = format!("rumor accepted origin=RC{} seq=", ORIGIN + 1);
    log.get(from..)?.lines().find_map(|line| {
        let rest = &line[line.find(&marker)? + marker.len()..];
        let got: u64 = rest.split_whitespace().next()?.parse().ok()?;
        (got >= seq).then(|| line_time_of_day(line)).flatten()
    })
}

/// Changes RC1's first link cost and returns the time (ms) until the last honest daemon
/// accepted the advertisement, from the daemons' logs (microsecond timestamps, one wall
/// clock); panics past 10 gossip periods.
fn link_change(c: &mut Cluster, origin: &InProcess) -> u64 {
    let link = &mut c.files[ORIGIN].connected_autonomous_systems[0];
    link.cost = if link.cost > 10 {
        link.cost - 10
    } else {
        link.cost + 10
    };
    let links = c.files[ORIGIN].links();
    let offsets: Vec<usize> = HONEST
        .iter()
        .map(|&i| std::fs::metadata(c.log(i)).map_or(0, |m| m.len() as usize))
        .collect();
    let started = time_of_day();
    origin.command(Command::SetLinks(links));
    let seq = smol::block_on(origin.handle.inspect(|v| v.node.status().seq)).unwrap();
    let seen = wait_for(PERIOD * 10, || {
        HONEST
            .iter()
            .zip(&offsets)
            .map(|(&i, &from)| accepted_at(c, i, from, seq))
            .collect::<Option<Vec<f64>>>()
    });
    let seen = seen.unwrap_or_else(|| panic!("RC1's seq {seq} not everywhere within 10 periods"));
    let last = seen.into_iter().fold(0.0, f64::max);
    // Midnight may fall in between.
    let delay = (last - started).rem_euclid(86_400.0);
    // One gossip period between changes: the samples spread over the run.
    std::thread::sleep(PERIOD);
    (delay * 1000.0).round() as u64
}

fn measure(changes: usize, flood: Duration) -> Figures {
    let key = overlay_core::ClusterKey::from_bytes([31; 32]).to_base64();
    let mut c = Cluster::new(topology::generated(6), "@every 500ms", &key);
    c.env = vec![(
        "RUST_LOG".into(),
        "info,overlay_transport_tcp::events=trace".into(),
    )];
    for i in 0..6 {
        c.files[i].reject_threshold = Some(u32::MAX);
        c.write(i);
    }
    let origin = InProcess::start(&c, ORIGIN);
    for i in HONEST {
        c.start(i);
    }
    let mut live = [true; 6];
    live[FLOODER] = false;
    c.converge(&live, CONVERGE).unwrap();
    let quiet_ms: Vec<u64> = (0..changes).map(|_| link_change(&mut c, &origin)).collect();
    let quiet_links = origin.links();
    let pids: Vec<u32> = HONEST.iter().map(|&i| c.daemon(i).pid()).collect();
    let rss_quiet_kib = pids.iter().map(|&p| proc_kib(p, "VmRSS:")).collect();

    let accepted = sum(&c, "overlay_rumors_accepted_total");
    let started = Instant::now();
    c.start_with(FLOODER, &["--misbehave", "flood"]);
    let flooding = wait_for(CONVERGE, || {
        (sum(&c, "overlay_rejects_total{reason=\"rate_limited\"}") >= 100.0).then_some(())
    });
    assert!(flooding.is_some(), "the flood never arrived");
    let flooded_ms: Vec<u64> = (0..changes).map(|_| link_change(&mut c, &origin)).collect();
    let origin_links = [quiet_links, origin.links()];
    if let Some(rest) = flood.checked_sub(started.elapsed()) {
        std::thread::sleep(rest);
    }
    let rss_flooded_kib = pids.iter().map(|&p| proc_kib(p, "VmRSS:")).collect();
    let hwm_flooded_kib = pids.iter().map(|&p| proc_kib(p, "VmHWM:")).collect();
    let figures = Figures {
        quiet_ms,
        flooded_ms,
        rss_quiet_kib,
        rss_flooded_kib,
        hwm_flooded_kib,
        rate_limited: sum(&c, "overlay_rejects_total{reason=\"rate_limited\"}"),
        accepted_during_flood: sum(&c, "overlay_rumors_accepted_total") - accepted,
        flood: started.elapsed(),
        origin_links,
    };
    // The flooder was never banned (the test's premise), nobody was, and the honest routes
    // (the flooder is a member: its rumors within the rate are valid) are right.
    for i in HONEST {
        assert!(c.daemon(i).running(), "RC{} crashed", i + 1);
        assert_eq!(c.metric(i, "overlay_bans_total"), Some(0.0));
        assert_eq!(c.metric(i, "overlay_evictions_total"), Some(0.0));
    }
    assert!(c.daemon(FLOODER).running());
    c.converge(&[true; 6], CONVERGE).unwrap();
    drop(origin);
    figures
}

#[test]
fn a_flooder_neither_exhausts_honest_memory_nor_stalls_honest_rumors() {
    let f = measure(3, Duration::from_secs(8));
    eprintln!("{}", f.json());
    assert!(f.rate_limited >= 100.0, "{f:?}");
    for (quiet, flooded) in f.rss_quiet_kib.iter().zip(&f.hwm_flooded_kib) {
        assert!(flooded < &(quiet + 64 * 1024), "{f:?}");
    }
}

/// The figures in the README: `cargo test -p overlay-transport-tcp --all-features --test
/// load -- --ignored --nocapture` (about 60 s).
#[test]
#[ignore = "benchmark: prints the load figures (about 60 s)"]
fn flood_load_figures() {
    let f = measure(20, Duration::from_secs(45));
    println!("{}", f.json());
}
