//! Scripted experiments: a cluster built from a Barabási–Albert topology, booted until
//! every node knows every member, put through a scenario (broadcast, churn, partition,
//! byzantine), then measured on one link change: delivery ratio, messages per rumor,
//! last-delivery hop, time to full delivery and to route convergence, wall time and
//! memory. `examples/sim.rs` prints the [`Report`] as JSON.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use overlay_core::{Addr, AsLink, Asn, ClusterKey, Config, Dissemination, NodeId, Time};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;
use serde_json::{Value, json};

use crate::keys::{KEY_BITS, KeyPool};
use crate::misbehave::Misbehavior;
use crate::random::{below, mix};
use crate::sim::{Delivery, LossMode, MemberEvent, NetParams, Sim, SimParams, SlotId};
use crate::topology::Topology;

/// The AS of node `i` is `ASN_BASE + i`.
pub const ASN_BASE: u32 = 64_512;
/// Most bootstrap addresses a node is given (taken from its topology neighbours).
pub const MAX_BOOTSTRAP: usize = 8;

/// What happens between boot and the measured link change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Nothing: the link change is broadcast on a quiet network.
    Broadcast,
    /// 5 % of the nodes crash (half restart one round later), 2 % leave gracefully.
    Churn,
    /// 10 % of the nodes crash silently just before the measured change (Plumtree must
    /// repair the trees they were part of).
    Crash,
    /// Two random halves are split for six rounds (members expire), then healed.
    Partition,
    /// 1 % of the nodes misbehave (forge, flood, replay) and one node holds a wrong
    /// cluster key.
    Byzantine,
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "broadcast" => Ok(Scenario::Broadcast),
            "churn" => Ok(Scenario::Churn),
            "crash" => Ok(Scenario::Crash),
            "partition" => Ok(Scenario::Partition),
            "byzantine" => Ok(Scenario::Byzantine),
            other => Err(format!(
                "unknown scenario {other:?} (broadcast, churn, crash, partition, byzantine)"
            )),
        }
    }
}

/// An experiment's parameters.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Honest controllers.
    pub nodes: usize,
    /// The one seed.
    pub seed: u64,
    /// The scenario.
    pub scenario: Scenario,
    /// Network model (latency, jitter, loss).
    pub net: NetParams,
    /// Apply the loss only once the cluster has booted (the boot itself lossless).
    pub loss_after_boot: bool,
    /// `max_peers` of every node.
    pub max_peers: usize,
    /// Gossip period of every node.
    pub gossip_period: Duration,
    /// Edges each new node brings in the Barabási–Albert topology.
    pub attach: usize,
    /// Plumtree (the core's default) or flooding.
    pub dissemination: Dissemination,
    /// Plumtree's tree optimisation threshold in hops (the core's `optimize_hops`).
    pub optimize_hops: u32,
    /// Gossip rounds run after the boot before anything happens: every origin advertises
    /// once per round, so Plumtree's per-origin trees are pruned (steady state). 0
    /// measures right after the boot, while the trees are still forming.
    pub warmup_rounds: u32,
    /// Gossip rounds run after the scenario and before the measured change: 0 measures the
    /// first rumor through the trees the scenario broke (a crash's holes repaired by
    /// grafts), 1 or more measures the trees Plumtree rebuilt.
    pub settle_rounds: u32,
    /// How long the cluster takes to start: node i starts at i × `join_over` / N, in the
    /// topology's growth order (each node attaches to earlier ones). Zero starts every
    /// node at once (the first advertisement of every origin floods at the same moment).
    pub join_over: Duration,
    /// Simulator worker threads (wall time only: outcomes and digests do not depend on it).
    pub threads: usize,
}

impl Experiment {
    /// Defaults: broadcast, max_peers 10, 10 s gossip period (the product default),
    /// Plumtree, Barabási–Albert with 2 edges per node, 5–50 ms latency, 5 ms jitter, no
    /// loss.
    pub fn new(nodes: usize, seed: u64) -> Self {
        Experiment {
            nodes,
            seed,
            scenario: Scenario::Broadcast,
            net: NetParams::default(),
            loss_after_boot: false,
            max_peers: 10,
            gossip_period: Duration::from_secs(10),
            attach: 2,
            dissemination: Dissemination::Plumtree,
            optimize_hops: 1,
            warmup_rounds: 2,
            settle_rounds: 0,
            join_over: Duration::ZERO,
            threads: SimParams::new(seed).threads,
        }
    }

    /// Keys the experiment needs: one per node, plus the byzantine scenario's outsider
    /// and the fresh keys of the churn scenario's re-keyed restarts.
    pub fn slots(&self) -> usize {
        let extra = match self.scenario {
            Scenario::Byzantine => 1,
            Scenario::Churn => Churn::of(self.nodes).rekeyed,
            _ => 0,
        };
        self.nodes + extra
    }

    /// Sets the field a command-line flag names (`--nodes`, `--seed`, `--loss`,
    /// `--loss-mode`, `--scenario`, `--dissemination`, `--max-peers`, `--period-ms`,
    /// `--optimize-hops`, `--warmup-rounds`, `--settle-rounds`, `--join-ms`, `--threads`)
    /// from its value; `Ok(false)` for another flag. The examples share it.
    pub fn set_flag(&mut self, flag: &str, value: &str) -> Result<bool, String> {
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        let small = |v: &str| u32::try_from(num(v)?).map_err(|e| format!("{flag}: {e}"));
        match flag {
            "--nodes" => self.nodes = num(value)? as usize,
            "--seed" => self.seed = num(value)?,
            "--loss" => {
                self.net.loss = value.parse().map_err(|e| format!("--loss: {e}"))?;
            }
            "--loss-mode" => {
                self.net.loss_mode = match value {
                    "drop" => LossMode::Drop,
                    "reset" => LossMode::Reset,
                    "retransmit" => LossMode::Retransmit { rto_ms: 200 },
                    other => return Err(format!("--loss-mode: unknown {other:?}")),
                }
            }
            "--scenario" => self.scenario = value.parse()?,
            "--dissemination" => {
                self.dissemination = match value {
                    "plumtree" => Dissemination::Plumtree,
                    "flood" => Dissemination::Flood,
                    other => return Err(format!("--dissemination: unknown {other:?}")),
                }
            }
            "--max-peers" => self.max_peers = num(value)? as usize,
            "--period-ms" => self.gossip_period = Duration::from_millis(num(value)?),
            "--optimize-hops" => self.optimize_hops = small(value)?,
            "--warmup-rounds" => self.warmup_rounds = small(value)?,
            "--settle-rounds" => self.settle_rounds = small(value)?,
            "--join-ms" => self.join_over = Duration::from_millis(num(value)?),
            "--threads" => self.threads = (num(value)? as usize).max(1),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The figures of one experiment.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Scenario run.
    pub scenario: Scenario,
    /// Honest controllers.
    pub nodes: usize,
    /// Seed.
    pub seed: u64,
    /// Frame loss probability.
    pub loss: f64,
    /// What a loss does.
    pub loss_mode: LossMode,
    /// Whether the loss started only after the boot.
    pub loss_after_boot: bool,
    /// `max_peers`.
    pub max_peers: usize,
    /// Gossip period, ms.
    pub gossip_period_ms: u64,
    /// Plumtree or flooding.
    pub dissemination: Dissemination,
    /// Gossip rounds run between the boot and the scenario.
    pub warmup_rounds: u32,
    /// Gossip rounds run between the scenario and the measured change.
    pub settle_rounds: u32,
    /// Over how long the nodes started, ms (0: all at once).
    pub join_over_ms: u64,
    /// Simulator worker threads (wall time only).
    pub threads: usize,
    /// Plumtree's tree optimisation threshold in hops.
    pub optimize_hops: u32,
    /// RSA key size of every node.
    pub key_bits: usize,
    /// The topology.
    pub topology: String,
    /// Virtual time until every node knew every member, ms (`None`: not within 20 rounds).
    pub boot_ms: Option<u64>,
    /// Rumor copies sent until the boot settled, per ordered pair of controllers (1.0 =
    /// every controller got every other's first advertisement exactly once).
    pub boot_copies_per_pair: f64,
    /// Wall time of the boot (until every controller knows every other, plus a quarter
    /// round to settle).
    pub boot_wall_seconds: f64,
    /// Wall time of the warm-up rounds.
    pub warmup_wall_seconds: f64,
    /// The node whose link change is measured.
    pub measured_origin: NodeId,
    /// Live nodes that accepted the measured rumor (or a later one of its origin, carrying
    /// the same change), over live nodes other than its origin.
    pub delivery_ratio: f64,
    /// Of those, the nodes whose first copy was a later rumor of the origin.
    pub delivered_by_a_later_rumor: usize,
    /// Rumor copies sent per rumor originated, during the measurement. Exact when
    /// `rumors_measured` is 1; with gossip rounds inside the window it reads low, since the
    /// copies of rumors originated near its end are cut off.
    pub messages_per_rumor: f64,
    /// Rumors originated by live nodes while measuring (the measured one included).
    pub rumors_measured: u64,
    /// The same divided by N-1 (1.0 would be one copy per receiver).
    pub messages_per_rumor_per_n1: f64,
    /// Lazy announcements (rumor ids) sent per rumor originated.
    pub announcements_per_rumor: f64,
    /// Grafts (tree repairs) per rumor originated.
    pub grafts_per_rumor: f64,
    /// Prunes per rumor originated.
    pub prunes_per_rumor: f64,
    /// Depth of the delivery tree of the measured rumor.
    pub last_delivery_hop: u32,
    /// Mean depth of the delivery tree.
    pub mean_delivery_hop: f64,
    /// Virtual time from the link change to the last acceptance, ms.
    pub full_delivery_ms: Option<u64>,
    /// Virtual time from the link change until every live table equals the reference, ms.
    pub route_convergence_ms: Option<u64>,
    /// The same in gossip periods.
    pub route_convergence_rounds: Option<f64>,
    /// Whether every live table equals the reference at the end.
    pub routes_match_reference: bool,
    /// Offenses counted against nodes that never misbehaved, over the whole run (goal 0).
    pub honest_offenses: u64,
    /// Evictions of nodes that never misbehaved, over the whole run (goal 0).
    pub honest_evictions: u64,
    /// The first difference, when they do not.
    pub mismatch: Option<String>,
    /// Figures of the scenario itself.
    pub scenario_figures: Value,
    /// Network counters.
    pub net: Value,
    /// Digest of the event log (equal for equal seeds).
    pub trace_digest: String,
    /// Virtual time simulated, ms.
    pub virtual_ms: u64,
    /// Wall-clock seconds of the simulation (keys excluded).
    pub wall_seconds: f64,
    /// Peak resident memory of the process (VmHWM), bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Resident memory grown while the cluster was built and run, per node, bytes.
    pub state_bytes_per_node: Option<u64>,
}

/// Listen address of node `i`.
pub fn addr(i: usize) -> Addr {
    Addr::from(format!("rc{i}.sim:1450"))
}

/// AS of node `i`.
pub fn asn(i: usize) -> Asn {
    Asn(ASN_BASE + i as u32)
}

/// The experiment's cluster: one node per topology node (AS links and bootstrap peers
/// from the graph), each with the experiment's period and peer limit.
pub fn build(exp: &Experiment, keys: &KeyPool) -> (Sim, Topology) {
    let mut rng = ChaCha20Rng::seed_from_u64(mix(exp.seed ^ 0x70b0));
    let topology = Topology::barabasi_albert(exp.nodes, exp.attach, &mut rng).random_weights(
        &mut rng,
        1..=10,
        &[10, 100, 1_000, 10_000],
    );
    let mut params = SimParams::new(exp.seed);
    params.net = exp.net.clone();
    params.threads = exp.threads;
    if exp.loss_after_boot {
        params.net.loss = 0.0;
    }
    let mut sim = Sim::new(params);
    for i in 0..exp.nodes {
        let mut c = config(exp, i);
        c.links = topology.links(i, asn);
        let mut neighbours = topology.neighbours(i);
        while neighbours.len() > MAX_BOOTSTRAP {
            neighbours.swap_remove(below(&mut rng, neighbours.len() as u64) as usize);
        }
        c.bootstrap = neighbours.into_iter().map(addr).collect();
        if !exp.join_over.is_zero() {
            let join_at = exp.join_over.as_millis() * i as u128 / exp.nodes.max(1) as u128;
            sim.run_until(Time::from_millis(
                u64::try_from(join_at).unwrap_or(u64::MAX),
            ));
        }
        // Configs built here are valid by construction.
        sim.add(c, keys.get(i))
            .unwrap_or_else(|e| unreachable!("config: {e}"));
    }
    (sim, topology)
}

fn config(exp: &Experiment, i: usize) -> Config {
    let mut c = Config::new(
        NodeId(i as u32 + 1),
        asn(i),
        addr(i),
        vec![ClusterKey::from_bytes(*b"overlay-network simulated key 01")],
    );
    c.gossip_period = exp.gossip_period;
    c.max_peers = exp.max_peers;
    c.dissemination = exp.dissemination;
    c.optimize_hops = exp.optimize_hops;
    c
}

/// Runs the experiment with keys from `keys` (at least [`Experiment::slots`]).
pub fn run(exp: &Experiment, keys: &KeyPool) -> Report {
    run_with_progress(exp, keys, &mut |_| {})
}

/// [`run`], handing `progress` one JSON object at the end of the boot and of each warm-up
/// round (`phase`, `virtual_ms`, `wall_seconds`, `rss_bytes`, `peak_rss_bytes`, and the
/// boot's figures), so that a run of hours shows where it is and what it has measured.
pub fn run_with_progress(
    exp: &Experiment,
    keys: &KeyPool,
    progress: &mut dyn FnMut(Value),
) -> Report {
    let started = Instant::now();
    let rss_before = rss("VmRSS:");
    let (mut sim, _) = build(exp, keys);
    let period = exp.gossip_period;
    let mut rng = ChaCha20Rng::seed_from_u64(mix(exp.seed ^ 0x5ce7));
    let mut honest: Vec<SlotId> = (0..exp.nodes).collect();
    let outsider = (exp.scenario == Scenario::Byzantine).then(|| add_outsider(&mut sim, exp, keys));
    let n = exp.nodes;
    let boot = sim.run_until_true(sim.now() + period * 20, Duration::from_millis(50), |s| {
        (0..n).all(|i| s.node(i).is_some_and(|node| node.status().members >= n))
    });
    // Let the last dials and syncs of the boot finish, then run the warm-up rounds.
    sim.run_for((period / 4).min(Duration::from_secs(2)));
    let boot_wall = started.elapsed();
    let boot_totals = dissemination_totals(&sim, &honest);
    let boot_copies_per_pair = boot_totals.copies as f64 / (n * n.saturating_sub(1)).max(1) as f64;
    let mut report_progress = |sim: &Sim, phase: &str, extra: Value| {
        let mut line = json!({
            "phase": phase,
            "virtual_ms": sim.now().as_millis(),
            "wall_seconds": started.elapsed().as_secs_f64(),
            "rss_bytes": rss("VmRSS:"),
            "peak_rss_bytes": rss("VmHWM:"),
        });
        if let (Some(line), Value::Object(extra)) = (line.as_object_mut(), extra) {
            line.extend(extra);
        }
        progress(line);
    };
    report_progress(
        &sim,
        "booted",
        json!({
            "boot_ms": boot.map(|t| t.as_millis()),
            "boot_copies_per_pair": boot_copies_per_pair,
        }),
    );
    // Whole gossip rounds, with a progress line after each.
    let mut run_rounds = |sim: &mut Sim, phase: &str, rounds: u32| {
        for round in 1..=rounds {
            sim.run_for(period);
            report_progress(sim, phase, json!({ "round": round }));
        }
    };
    run_rounds(&mut sim, "warmup_round", exp.warmup_rounds);
    let warmup_wall = started.elapsed() - boot_wall;
    if exp.loss_after_boot {
        sim.set_loss(exp.net.loss, exp.net.loss_mode);
    }
    let figures = match exp.scenario {
        Scenario::Broadcast => json!({}),
        Scenario::Churn => churn(&mut sim, &mut honest, &mut rng, (period, keys)),
        Scenario::Crash => {
            let mut pool = honest.clone();
            let crashed = pick(&mut pool, (n / 10).max(1), &mut rng);
            for &s in &crashed {
                sim.crash(s);
            }
            honest.retain(|s| !crashed.contains(s));
            json!({ "crashed": crashed.len() })
        }
        Scenario::Partition => partition(&mut sim, &honest, &mut rng, period),
        Scenario::Byzantine => byzantine(
            &mut sim,
            &mut honest,
            outsider.unwrap_or(n),
            &mut rng,
            period,
        ),
    };
    run_rounds(&mut sim, "settle_round", exp.settle_rounds);
    let m = measure_change(&mut sim, &honest, &mut rng, period);
    let n1 = honest.len().saturating_sub(1).max(1) as f64;
    let (honest_offenses, honest_evictions) = sim.honest_blame();
    let grown = rss("VmRSS:")
        .zip(rss_before)
        .map(|(a, b)| a.saturating_sub(b));
    Report {
        scenario: exp.scenario,
        nodes: exp.nodes,
        seed: exp.seed,
        loss: exp.net.loss,
        loss_mode: exp.net.loss_mode,
        loss_after_boot: exp.loss_after_boot,
        max_peers: exp.max_peers,
        gossip_period_ms: millis(period),
        dissemination: exp.dissemination,
        warmup_rounds: exp.warmup_rounds,
        settle_rounds: exp.settle_rounds,
        join_over_ms: millis(exp.join_over),
        threads: exp.threads,
        optimize_hops: exp.optimize_hops,
        key_bits: KEY_BITS,
        topology: format!("barabasi_albert(n={}, m={})", exp.nodes, exp.attach),
        boot_ms: boot.map(|t| t.as_millis()),
        boot_copies_per_pair,
        boot_wall_seconds: boot_wall.as_secs_f64(),
        warmup_wall_seconds: warmup_wall.as_secs_f64(),
        measured_origin: m.origin,
        delivery_ratio: m.delivered as f64 / n1,
        delivered_by_a_later_rumor: m.superseded,
        messages_per_rumor: m.messages_per_rumor,
        rumors_measured: m.originated,
        messages_per_rumor_per_n1: m.messages_per_rumor / n1,
        announcements_per_rumor: m.announcements_per_rumor,
        grafts_per_rumor: m.grafts_per_rumor,
        prunes_per_rumor: m.prunes_per_rumor,
        last_delivery_hop: m.last_hop,
        mean_delivery_hop: m.mean_hop,
        full_delivery_ms: m.full_delivery.map(millis),
        route_convergence_ms: m.convergence.map(millis),
        route_convergence_rounds: m
            .convergence
            .map(|d| d.as_secs_f64() / period.as_secs_f64()),
        routes_match_reference: m.mismatch.is_none(),
        honest_offenses,
        honest_evictions,
        mismatch: m.mismatch,
        scenario_figures: figures,
        net: serde_json::to_value(sim.stats()).unwrap_or(Value::Null),
        trace_digest: sim.trace().digest(),
        virtual_ms: sim.now().as_millis(),
        wall_seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: rss("VmHWM:"),
        state_bytes_per_node: grown.map(|g| g / sim.len().max(1) as u64),
    }
}

/// A node with a wrong cluster key that bootstraps from three honest nodes and claims
/// cheap links to them.
fn add_outsider(sim: &mut Sim, exp: &Experiment, keys: &KeyPool) -> SlotId {
    let i = exp.nodes;
    let mut c = config(exp, i);
    c.cluster_keys = vec![ClusterKey::from_bytes([0x66; 32])];
    let targets: Vec<usize> = (0..3.min(exp.nodes)).map(|k| k * exp.nodes / 3).collect();
    c.bootstrap = targets.iter().map(|&t| addr(t)).collect();
    c.links = targets
        .iter()
        .map(|&t| AsLink {
            asn: asn(t),
            capacity: 1 << 20,
            cost: 0,
        })
        .collect();
    sim.add(c, keys.get(i))
        .unwrap_or_else(|e| unreachable!("config: {e}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Picks `k` distinct elements of `from` (removing them).
fn pick(from: &mut Vec<SlotId>, k: usize, rng: &mut ChaCha20Rng) -> Vec<SlotId> {
    (0..k.min(from.len()))
        .map(|_| from.swap_remove(below(rng, from.len() as u64) as usize))
        .collect()
}

/// Waits until every table of `slots` equals the reference of the running `slots`;
/// returns how long that took from `since`.
fn converge(sim: &mut Sim, slots: &[SlotId], since: Time, deadline: Time) -> Option<Duration> {
    let include: Vec<bool> = (0..sim.len()).map(|s| slots.contains(&s)).collect();
    sim.run_until_true(deadline, Duration::from_millis(250), |s| {
        let reference = s.reference(|slot| include[slot]);
        s.check_routes(slots, &reference).is_ok()
    })
    .map(|t| t.since(since))
}

/// How many nodes of `n` the churn scenario crashes, restarts (of those, with a fresh
/// key) and takes out by a leave.
struct Churn {
    crashed: usize,
    restarted: usize,
    rekeyed: usize,
    left: usize,
}

impl Churn {
    fn of(n: usize) -> Churn {
        let crashed = (n / 20).max(1);
        let restarted = crashed / 2;
        Churn {
            crashed,
            restarted,
            rekeyed: restarted / 2,
            left: (n / 50).max(1),
        }
    }
}

fn churn(
    sim: &mut Sim,
    honest: &mut Vec<SlotId>,
    rng: &mut ChaCha20Rng,
    (period, keys): (Duration, &KeyPool),
) -> Value {
    let n = honest.len();
    let counts = Churn::of(n);
    let mut pool = honest.clone();
    let crashed = pick(&mut pool, counts.crashed, rng);
    let left = pick(&mut pool, counts.left, rng);
    let start = sim.now();
    for &s in &crashed {
        sim.crash(s);
    }
    for &s in &left {
        sim.leave(s);
    }
    sim.run_for(period);
    let restarted: Vec<SlotId> = crashed[..counts.restarted].to_vec();
    // The first of them come back with fresh keys (keys after the nodes' own).
    for (k, &s) in restarted.iter().take(counts.rekeyed).enumerate() {
        sim.rekey(s, keys.get(n + k));
    }
    for &s in &restarted {
        let _ = sim.restart(s);
    }
    honest.retain(|s| !left.contains(s) && !crashed[restarted.len()..].contains(s));
    let stayed = n - crashed.len() - left.len();
    let converged = converge(sim, honest, start, start + period * 30);
    let leave_seen: Vec<u64> = left
        .iter()
        .filter_map(|&s| sim.member_events(sim.config(s).node_id, MemberEvent::Left))
        .map(|t| t.count)
        .collect();
    let leave_ms = left
        .iter()
        .filter_map(|&s| sim.member_events(sim.config(s).node_id, MemberEvent::Left))
        .map(|t| t.last.since(start))
        .max();
    let expired_ms = crashed[restarted.len()..]
        .iter()
        .filter_map(|&s| sim.member_events(sim.config(s).node_id, MemberEvent::Expired))
        .map(|t| t.last.since(start))
        .max();
    let leaves_as_failures = left
        .iter()
        .filter(|&&s| {
            sim.member_events(sim.config(s).node_id, MemberEvent::Expired)
                .is_some()
        })
        .count();
    json!({
        "crashed": crashed.len(),
        "restarted": restarted.len(),
        "restarted_with_a_fresh_key": counts.rekeyed,
        "left": left.len(),
        "nodes_that_stayed": stayed,
        "member_left_notifications_per_leaver": leave_seen,
        "leave_withdrawn_ms": leave_ms.map(millis),
        "crash_expired_ms": expired_ms.map(millis),
        "leaves_counted_as_failures": leaves_as_failures,
        "churn_convergence_ms": converged.map(millis),
        "churn_convergence_rounds": converged.map(|d| d.as_secs_f64() / period.as_secs_f64()),
    })
}

fn partition(sim: &mut Sim, honest: &[SlotId], rng: &mut ChaCha20Rng, period: Duration) -> Value {
    let mut pool = honest.to_vec();
    let half = pick(&mut pool, honest.len() / 2, rng);
    sim.partition(&[half]);
    sim.run_for(period * 6);
    let expired: u64 = honest
        .iter()
        .filter_map(|&s| sim.member_events(sim.config(s).node_id, MemberEvent::Expired))
        .map(|t| t.count)
        .sum();
    let healed = sim.now();
    sim.heal();
    let n = honest.len();
    let remerged = sim.run_until_true(healed + period * 30, Duration::from_millis(250), |s| {
        honest
            .iter()
            .all(|&i| s.node(i).is_some_and(|node| node.status().members >= n))
    });
    let converged = converge(sim, honest, healed, healed + period * 30);
    json!({
        "partition_rounds": 6,
        "member_expirations_during_partition": expired,
        "remerged_ms": remerged.map(|t| millis(t.since(healed))),
        "heal_convergence_ms": converged.map(millis),
        "heal_convergence_rounds": converged.map(|d| d.as_secs_f64() / period.as_secs_f64()),
    })
}

fn byzantine(
    sim: &mut Sim,
    honest: &mut Vec<SlotId>,
    outsider: SlotId,
    rng: &mut ChaCha20Rng,
    period: Duration,
) -> Value {
    let mut pool = honest.clone();
    let bad = pick(&mut pool, (honest.len() / 100).max(1), rng);
    let kinds = [Misbehavior::Forge, Misbehavior::Flood, Misbehavior::Replay];
    for (k, &s) in bad.iter().enumerate() {
        sim.misbehave(s, Some(kinds[k % kinds.len()]));
    }
    honest.retain(|s| !bad.contains(s));
    let start = sim.now();
    let good = honest.clone();
    let bad_ids: Vec<NodeId> = bad.iter().map(|&s| sim.config(s).node_id).collect();
    let evicted = sim.run_until_true(start + period * 30, Duration::from_millis(100), |s| {
        good.iter().all(|&h| {
            s.node(h).is_some_and(|node| {
                let ev = node.evictions();
                bad_ids.iter().all(|b| ev.iter().any(|(_, n, _)| n == b))
            })
        })
    });
    let honest_ids: Vec<NodeId> = good.iter().map(|&s| sim.config(s).node_id).collect();
    let honest_evicted = honest_ids
        .iter()
        .filter(|&&id| sim.member_events(id, MemberEvent::Evicted).is_some())
        .count();
    let outsider_id = sim.config(outsider).node_id;
    let outsider_admitted = good.iter().any(|&h| {
        sim.node(h)
            .is_some_and(|n| n.members().iter().any(|m| m.node == outsider_id))
    });
    let still_linked = good
        .iter()
        .filter(|&&h| sim.peer_slots(h).iter().any(|p| bad.contains(p)))
        .count();
    let per_kind: BTreeMap<String, usize> =
        bad.iter()
            .filter_map(|&s| sim.misbehavior(s))
            .fold(BTreeMap::new(), |mut m, k| {
                *m.entry(format!("{k:?}").to_lowercase()).or_default() += 1;
                m
            });
    json!({
        "misbehaving": per_kind,
        "evicted_everywhere_ms": evicted.map(|t| millis(t.since(start))),
        "honest_nodes_evicted": honest_evicted,
        "honest_nodes_still_linked_to_misbehaving": still_linked,
        "wrong_key_node_admitted": outsider_admitted,
        "forged_rumors_sent": sim.forged().len(),
    })
}

struct Measured {
    origin: NodeId,
    delivered: usize,
    superseded: usize,
    originated: u64,
    messages_per_rumor: f64,
    announcements_per_rumor: f64,
    grafts_per_rumor: f64,
    prunes_per_rumor: f64,
    last_hop: u32,
    mean_hop: f64,
    full_delivery: Option<Duration>,
    convergence: Option<Duration>,
    mismatch: Option<String>,
}

/// Later advertisements of the measured origin that also count as delivering its change
/// (its next gossip round may re-advertise the same links before the first copy arrives).
const SUPERSEDING: u64 = 16;

/// Each node's first acceptance of `(origin, seq)` or a later rumor of that origin, with
/// the sequence number it accepted, in time order.
fn first_deliveries(sim: &Sim, origin: NodeId, seq: u64) -> Vec<(Delivery, u64)> {
    let mut first: BTreeMap<SlotId, (Delivery, u64)> = BTreeMap::new();
    for later in seq..=seq + SUPERSEDING {
        for d in sim.deliveries(origin, later) {
            let e = first.entry(d.slot).or_insert((*d, later));
            if d.at < e.0.at {
                *e = (*d, later);
            }
        }
    }
    let mut v: Vec<(Delivery, u64)> = first.into_values().collect();
    v.sort_by_key(|(d, _)| (d.at, d.slot));
    v
}

/// Changes one live node's links and measures the advertisement's dissemination and the
/// routes' convergence among `live`.
fn measure_change(
    sim: &mut Sim,
    live: &[SlotId],
    rng: &mut ChaCha20Rng,
    period: Duration,
) -> Measured {
    let live: Vec<SlotId> = live
        .iter()
        .copied()
        .filter(|&s| sim.node(s).is_some())
        .collect();
    // A restarted node counts its sequence numbers from 0 again until it hears an echo of
    // its old ones: its next rumor may be stale by design. Measure a node never restarted.
    let steady: Vec<SlotId> = live
        .iter()
        .copied()
        .filter(|&s| sim.incarnation(s) == 0)
        .collect();
    let x = steady[below(rng, steady.len() as u64) as usize];
    let (origin, seq, mut links) = {
        let node = sim.node(x).unwrap_or_else(|| unreachable!("live"));
        (
            node.status().node,
            node.status().seq + 1,
            node.config().links.clone(),
        )
    };
    let own = sim.config(x).asn;
    let far = live
        .iter()
        .map(|&s| sim.config(s).asn)
        .find(|a| *a != own && links.iter().all(|l| l.asn != *a));
    if let Some(asn) = far {
        links.push(AsLink {
            asn,
            capacity: 10_000,
            cost: 1,
        });
    }
    if let Some(first) = links.first_mut() {
        first.cost += 7;
    }
    let totals = |sim: &Sim| dissemination_totals(sim, &live);
    let before = totals(sim);
    for later in seq..=seq + SUPERSEDING {
        sim.watch(origin, later);
    }
    let t0 = sim.now();
    sim.set_links(x, links);
    let others = live.len() - 1;
    sim.run_until_true(t0 + period * 10, Duration::from_millis(5), |s| {
        first_deliveries(s, origin, seq).len() >= others
    });
    let deliveries = first_deliveries(sim, origin, seq);
    let delivered = deliveries.len();
    let superseded = deliveries.iter().filter(|(_, later)| *later > seq).count();
    let deliveries: Vec<Delivery> = deliveries.into_iter().map(|(d, _)| d).collect();
    let full_delivery =
        (delivered >= others).then(|| deliveries.last().map_or(Duration::ZERO, |d| d.at.since(t0)));
    let mut hops: BTreeMap<NodeId, u32> = BTreeMap::from([(origin, 0)]);
    for d in &deliveries {
        let h = hops.get(&d.from).copied().unwrap_or(0) + 1;
        hops.insert(sim.config(d.slot).node_id, h);
    }
    let last_hop = hops.values().copied().max().unwrap_or(0);
    let mean_hop = if delivered == 0 {
        0.0
    } else {
        hops.values().map(|&h| f64::from(h)).sum::<f64>() / delivered as f64
    };
    // Settle: let every debounced recomputation run, then compare with the reference.
    let include: Vec<bool> = (0..sim.len()).map(|s| live.contains(&s)).collect();
    let deadline = t0 + period * 10;
    sim.run_for(Duration::from_millis(500));
    let mismatch = loop {
        let reference = sim.reference(|s| include[s]);
        let mismatch = sim.check_routes(&live, &reference).err();
        if mismatch.is_none() || sim.now() >= deadline {
            break mismatch;
        }
        sim.run_for(period / 4);
    };
    // Count over at least one whole round after the change: every origin advertises once,
    // so rumors still in flight at either end of the window weigh little.
    let window_end = t0 + period;
    if sim.now() < window_end {
        sim.run_for(window_end.since(sim.now()));
    }
    let counted = totals(sim).since(&before);
    let originated = counted.originated.max(1);
    let per_rumor = |count: u64| count as f64 / originated as f64;
    let convergence = mismatch.is_none().then(|| {
        live.iter()
            .filter_map(|&s| sim.last_route_change(s))
            .filter(|&t| t >= t0)
            .max()
            .map_or(Duration::ZERO, |t| t.since(t0))
    });
    Measured {
        origin,
        delivered,
        superseded,
        originated,
        messages_per_rumor: per_rumor(counted.copies),
        announcements_per_rumor: per_rumor(counted.announcements),
        grafts_per_rumor: per_rumor(counted.grafts),
        prunes_per_rumor: per_rumor(counted.prunes),
        last_hop,
        mean_hop,
        full_delivery,
        convergence,
        mismatch,
    }
}

/// Dissemination counters summed over some slots.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Totals {
    /// Rumor copies sent (pushed or answered).
    pub copies: u64,
    /// Rumor ids announced lazily.
    pub announcements: u64,
    /// Rumor ids grafted.
    pub grafts: u64,
    /// Prunes sent.
    pub prunes: u64,
    /// Duplicates received.
    pub duplicates: u64,
    /// Rumors originated (sum of sequence numbers).
    pub originated: u64,
}

impl Totals {
    /// What was counted since `before`.
    pub fn since(&self, before: &Totals) -> Totals {
        Totals {
            copies: self.copies.saturating_sub(before.copies),
            announcements: self.announcements.saturating_sub(before.announcements),
            grafts: self.grafts.saturating_sub(before.grafts),
            prunes: self.prunes.saturating_sub(before.prunes),
            duplicates: self.duplicates.saturating_sub(before.duplicates),
            originated: self.originated.saturating_sub(before.originated),
        }
    }
}

/// The dissemination counters of the running nodes among `slots`.
pub fn dissemination_totals(sim: &Sim, slots: &[SlotId]) -> Totals {
    let mut t = Totals::default();
    for node in slots.iter().filter_map(|&s| sim.node(s)) {
        let m = node.metrics();
        t.copies += m.rumors_out;
        t.announcements += m.announcements_out;
        t.grafts += m.grafts_out;
        t.prunes += m.prunes_out;
        t.duplicates += m.rumors_duplicate;
        t.originated += node.status().seq;
    }
    t
}

/// A `/proc/self/status` field (`"VmHWM:"`, `"VmRSS:"`) in bytes.
pub fn rss(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(scenario: Scenario, period: Duration) -> (Experiment, KeyPool) {
        let mut exp = Experiment::new(12, 3);
        exp.gossip_period = period;
        exp.scenario = scenario;
        let keys = KeyPool::cached(&KeyPool::default_dir(), exp.slots()).expect("key cache");
        (exp, keys)
    }

    #[test]
    fn a_broadcast_reaches_everyone_and_repeats_exactly() {
        // Counted over one round: the change and every node's regular advertisement.
        let (exp, keys) = small(Scenario::Broadcast, Duration::from_secs(10));
        let r = run(&exp, &keys);
        assert_eq!(r.delivery_ratio, 1.0);
        assert!(r.routes_match_reference, "{:?}", r.mismatch);
        assert_eq!(r.key_bits, 2048);
        assert!(r.rumors_measured >= 12, "{} rumors", r.rumors_measured);
        assert!(
            r.messages_per_rumor >= 0.9 * 11.0,
            "about every receiver got a copy"
        );
        assert!(r.last_delivery_hop >= 1 && r.full_delivery_ms.is_some());
        same_on_threads(&exp, &keys, &r.trace_digest, &[1, 3]);
    }

    /// Runs `exp` again on each thread count: the same outcome, event for event.
    fn same_on_threads(exp: &Experiment, keys: &KeyPool, digest: &str, counts: &[usize]) {
        for &threads in counts {
            let again = run(
                &Experiment {
                    threads,
                    ..exp.clone()
                },
                keys,
            );
            assert_eq!(again.trace_digest, digest, "{threads} threads");
        }
    }

    #[test]
    fn a_cluster_that_starts_over_time_still_reaches_everyone() {
        let (mut exp, keys) = small(Scenario::Broadcast, Duration::from_secs(10));
        exp.join_over = Duration::from_secs(3);
        let (sim, _) = build(&exp, &keys);
        // The twelfth node starts at 11/12 of the 3 s.
        assert_eq!(sim.now(), Time::from_millis(2750));
        assert_eq!(sim.running().len(), 12);
        let r = run(&exp, &keys);
        assert_eq!(r.join_over_ms, 3000);
        assert!(r.boot_ms.is_some_and(|b| b >= 2750), "{:?}", r.boot_ms);
        assert_eq!(r.delivery_ratio, 1.0);
        assert!(r.routes_match_reference, "{:?}", r.mismatch);
    }

    #[test]
    fn misbehaving_members_are_evicted_and_the_outsider_stays_out() {
        let (exp, keys) = small(Scenario::Byzantine, Duration::from_secs(1));
        let r = run(&exp, &keys);
        let f = &r.scenario_figures;
        assert!(f["evicted_everywhere_ms"].is_u64(), "{f}");
        assert_eq!(f["honest_nodes_evicted"], 0);
        assert_eq!(f["honest_nodes_still_linked_to_misbehaving"], 0);
        assert_eq!(f["wrong_key_node_admitted"], false);
        assert!(r.routes_match_reference, "{:?}", r.mismatch);
        same_on_threads(&exp, &keys, &r.trace_digest, &[1, 2]);
    }

    #[test]
    fn settle_rounds_put_rounds_between_a_crash_and_the_change() {
        let (exp, keys) = small(Scenario::Crash, Duration::from_secs(10));
        let at_once = run(&exp, &keys);
        let settled = run(
            &Experiment {
                settle_rounds: 1,
                ..exp.clone()
            },
            &keys,
        );
        for r in [&at_once, &settled] {
            assert_eq!(r.delivery_ratio, 1.0);
            assert!(r.routes_match_reference, "{:?}", r.mismatch);
        }
        assert_eq!(settled.settle_rounds, 1);
        // Same boot and crash; the change, and the round measured after it, one round later.
        assert_eq!(
            settled.virtual_ms,
            at_once.virtual_ms + millis(exp.gossip_period)
        );
        assert_ne!(settled.trace_digest, at_once.trace_digest);
    }

    #[test]
    fn scenario_names_parse() {
        assert_eq!("churn".parse(), Ok(Scenario::Churn));
        assert!("storm".parse::<Scenario>().is_err());
    }
}
