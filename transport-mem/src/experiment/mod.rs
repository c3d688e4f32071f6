//! Scripted experiments: a cluster built from a Barabási–Albert topology, booted until
//! every node knows every member, put through a scenario (broadcast, churn, partition,
//! byzantine), then measured on one link change: delivery ratio, messages per rumor,
//! last-delivery hop, time to full delivery and to route convergence, wall time and
//! memory. `examples/sim.rs` prints the [`Report`] as JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod charts;
mod cluster;
mod file;
mod flags;
mod measure;
mod report;
mod scenarios;
mod timeline;

pub use report::{Series, write_report};
use timeline::run_timeline;
pub use timeline::{Action, Condition, Step};

use cluster::config;
pub use cluster::{addr, asn, build};

pub use measure::rss;
use measure::{Measured, measure_change};
use scenarios::{Churn, add_outsider, byzantine, churn, crash, knows, partition};

use overlay_core::{Addr, AsLink, Asn, ClusterKey, Config, Dissemination, NodeId, Time};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::Serialize;
use serde_json::{Value, json};

use crate::keys::{KEY_BITS, KeyPool};
use crate::misbehave::Misbehavior;
use crate::random::{below, mix};
use crate::sim::{
    Delivery, LossMode, MemberEvent, NetParams, Sim, SimParams, SlotId, Totals,
    dissemination_totals,
};
use crate::topology::{ReadOptions, Topology};

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
    /// Apply the loss only once the cluster has booted (the boot itself lossless; the
    /// warm-up rounds, and so the steady figures, under loss).
    pub loss_after_boot: bool,
    /// `max_peers` of every node.
    pub max_peers: usize,
    /// Gossip period of every node.
    pub gossip_period: Duration,
    /// Rounds between adverts of an unchanged state (the core's `advert_refresh`; `None`:
    /// the core's default).
    pub advert_refresh: Option<u32>,
    /// Edges each new node brings in the Barabási–Albert topology.
    pub attach: usize,
    /// Plumtree (the core's default) or flooding.
    pub dissemination: Dissemination,
    /// Plumtree's tree optimisation threshold in hops (the core's `optimize_hops`).
    pub optimize_hops: u32,
    /// Links pushed to for an origin without a tree yet (the core's `eager_fanout`;
    /// `None`: the core's default).
    pub eager_fanout: Option<u32>,
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
    /// The graph read from a file (`None`: Barabási–Albert with `attach` edges per node).
    topology: Option<Arc<Topology>>,
    /// The file `--topology` names, read by [`Experiment::finish`].
    pub topology_file: Option<PathBuf>,
    /// How a topology file's links and nodes become a topology.
    pub read: ReadOptions,
    /// Geographic latency for nodes with a place (see [`NetParams::geo_floor`]).
    pub geo_latency: bool,
    /// The per-pair floor of geographic latency.
    pub latency_floor: Duration,
    /// Faults applied after the scenario, before the settle rounds (a scenario file's
    /// `[[timeline]]`).
    pub timeline: Vec<Step>,
    /// What the experiment is for (a scenario file's `description`).
    pub description: Option<String>,
    /// The figures to print (`None`: all).
    pub figures: Option<Vec<String>>,
    /// Where to write `report.html` (`--report DIR`); the run then samples the
    /// dissemination counters every gossip round.
    pub report: Option<PathBuf>,
    /// The process's live heap bytes, where the binary counts its allocations: the state
    /// figures then count what stays allocated rather than resident memory (which keeps
    /// the boot's freed traffic).
    pub heap_bytes: Option<fn() -> u64>,
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
            advert_refresh: None,
            attach: 2,
            dissemination: Dissemination::Plumtree,
            optimize_hops: 1,
            eager_fanout: None,
            warmup_rounds: 2,
            settle_rounds: 0,
            join_over: Duration::ZERO,
            threads: SimParams::new(seed).threads,
            topology: None,
            topology_file: None,
            read: ReadOptions::default(),
            geo_latency: false,
            latency_floor: Duration::from_millis(2),
            timeline: Vec::new(),
            description: None,
            figures: None,
            report: None,
            heap_bytes: None,
        }
    }

    /// Runs the experiment on `topology` (one controller per node that is not a stub)
    /// instead of a generated graph.
    pub fn set_topology(&mut self, topology: Topology) {
        self.nodes = topology.controllers();
        self.topology = Some(Arc::new(topology));
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
}

/// The figures of one experiment.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What the experiment is for (from its scenario file).
    pub description: Option<String>,
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
    /// Rounds between adverts of an unchanged state.
    pub advert_refresh: u32,
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
    /// Links pushed to for an origin without a tree yet (0: all).
    pub eager_fanout: u32,
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
    /// Figures of the scenario itself, and under `timeline` one record per timeline step:
    /// `action`, `at_ms` (after the timeline started), `after`, `waited_ms`, `nodes`.
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
    /// Memory the cluster holds at the end of the run, per node, bytes: the live heap grown
    /// since before the build where the binary counts it ([`Experiment::heap_bytes`]),
    /// else the resident memory grown.
    pub state_bytes_per_node: Option<u64>,
    /// The same per member a node knows: per (node, member) pair, bytes.
    pub state_bytes_per_member_pair: Option<u64>,
    /// Resident memory grown while the cluster was built and run, per (node, member) pair.
    pub rss_bytes_per_member_pair: Option<u64>,
    /// Rumor copies each node received per gossip round in the steady warm-up rounds
    /// (`None` with fewer than 2 warm-up rounds).
    pub steady_copies_per_node_per_round: Option<f64>,
    /// Frames each node received per steady round.
    pub steady_frames_per_node_per_round: Option<f64>,
    /// Frame bytes each node received per steady round.
    pub steady_bytes_per_node_per_round: Option<f64>,
    /// RSA verifications each node makes per steady round: the rumors it accepts (a node
    /// verifies each new rumor once; the simulator's nodes share one cache, so their own
    /// counters would show the process's, not a node's).
    pub steady_verifications_per_node_per_round: Option<f64>,
    /// Adverts each node signs per steady round (refreshes and damped peer changes).
    pub steady_adverts_per_node_per_round: Option<f64>,
    /// Handshakes each node completes per steady round: links made again after a reset
    /// (under loss) or a redial.
    pub steady_handshakes_per_node_per_round: Option<f64>,
    /// A link's heartbeat timeout (3 heartbeat intervals), ms.
    pub heartbeat_timeout_ms: u64,
    /// Wall time of the boot and the warm-up per rumor copy received in them, µs.
    pub wall_us_per_copy: Option<f64>,
    /// What the plotted report draws (filled when [`Experiment::report`] is set).
    #[serde(skip)]
    pub series: Series,
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
    let heap_before = exp.heap_bytes.map(|live| live());
    let (mut sim, topology) = build(exp, keys);
    let period = exp.gossip_period;
    if exp.report.is_some() {
        sim.sample_every(period);
    }
    let mut rng = ChaCha20Rng::seed_from_u64(mix(exp.seed ^ 0x5ce7));
    let mut honest: Vec<SlotId> = (0..exp.nodes).collect();
    let outsider = (exp.scenario == Scenario::Byzantine).then(|| add_outsider(&mut sim, exp, keys));
    let n = exp.nodes;
    let boot = sim.run_until_true(sim.now() + period * 20, Duration::from_millis(50), |s| {
        (0..n).all(|i| knows(s, i, n))
    });
    // Let the last dials and syncs of the boot finish, then run the warm-up rounds.
    sim.run_for((period / 4).min(Duration::from_secs(2)));
    let boot_wall = started.elapsed();
    let boot_totals = dissemination_totals(&sim, &honest);
    let per_pair = |count: u64| count as f64 / (n * n.saturating_sub(1)).max(1) as f64;
    let mut phases = Phases {
        started,
        boot,
        boot_copies_per_pair: per_pair(boot_totals.copies),
        boot_wall,
        warmup_wall: Duration::ZERO,
        steady: None,
        copies_before_scenario: 0,
    };
    let mut say =
        |sim: &Sim, phase: &str, extra: Value| progress(phases_line(&started, sim, phase, extra));
    let booted = json!({
        "boot_ms": boot.map(|t| t.as_millis()),
        "boot_copies_per_pair": phases.boot_copies_per_pair,
        "boot_adverts_per_node": boot_totals.originated as f64 / n.max(1) as f64,
        "boot_duplicates_per_pair": per_pair(boot_totals.duplicates),
    });
    say(&sim, "booted", booted);
    if exp.loss_after_boot {
        sim.set_loss(exp.net.loss, exp.net.loss_mode);
    }
    // Whole gossip rounds, with a progress line after each.
    let mut run_rounds = |sim: &mut Sim, phase: &str, rounds: std::ops::RangeInclusive<u32>| {
        for round in rounds {
            sim.run_for(period);
            say(sim, phase, json!({ "round": round }));
        }
    };
    // The first warm-up round still carries the boot's last changes; the rest are steady.
    run_rounds(&mut sim, "warmup_round", 1..=exp.warmup_rounds.min(1));
    let steady_from = dissemination_totals(&sim, &honest);
    run_rounds(&mut sim, "warmup_round", 2..=exp.warmup_rounds);
    let after_warmup = dissemination_totals(&sim, &honest);
    phases.steady =
        (exp.warmup_rounds >= 2).then(|| (after_warmup.since(&steady_from), exp.warmup_rounds - 1));
    phases.warmup_wall = started.elapsed() - phases.boot_wall;
    phases.copies_before_scenario = after_warmup.copies_in;
    let mut figures = scenario(exp, &mut sim, &mut honest, outsider, &mut rng, keys);
    if !exp.timeline.is_empty() {
        let steps = (&exp.timeline[..], period);
        figures["timeline"] = run_timeline(&mut sim, &mut honest, &topology, &mut rng, steps);
    }
    run_rounds(&mut sim, "settle_round", 1..=exp.settle_rounds);
    let m = measure_change(&mut sim, &honest, &mut rng, period);
    let grown =
        |now: Option<u64>, before: Option<u64>| now.zip(before).map(|(a, b)| a.saturating_sub(b));
    let rss_grown = grown(rss("VmRSS:"), rss_before);
    let state = grown(exp.heap_bytes.map(|live| live()), heap_before).or(rss_grown);
    let series = if exp.report.is_some() {
        Series::of(&sim, &topology, &m)
    } else {
        Series::default()
    };
    Report {
        series,
        ..report(
            exp,
            &sim,
            &phases,
            m,
            honest.len(),
            figures,
            (state, rss_grown),
        )
    }
}

/// The times and figures of the phases before the scenario.
struct Phases {
    started: Instant,
    boot: Option<Time>,
    boot_copies_per_pair: f64,
    boot_wall: Duration,
    warmup_wall: Duration,
    /// What the steady warm-up rounds (all but the first) counted, and how many.
    steady: Option<(Totals, u32)>,
    /// Rumor copies received by the end of the warm-up.
    copies_before_scenario: u64,
}

/// One progress line: the phase, virtual and wall time, memory, and `extra`'s fields.
fn phases_line(started: &Instant, sim: &Sim, phase: &str, extra: Value) -> Value {
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
    line
}

/// Runs the experiment's scenario; the nodes it takes out leave `honest`. Returns the
/// scenario's own figures.
fn scenario(
    exp: &Experiment,
    sim: &mut Sim,
    honest: &mut Vec<SlotId>,
    outsider: Option<SlotId>,
    rng: &mut ChaCha20Rng,
    keys: &KeyPool,
) -> Value {
    let period = exp.gossip_period;
    match exp.scenario {
        Scenario::Broadcast => json!({}),
        Scenario::Churn => churn(sim, honest, rng, (period, keys)),
        Scenario::Crash => crash(sim, honest, rng, period),
        Scenario::Partition => partition(sim, honest, rng, period),
        Scenario::Byzantine => byzantine(sim, honest, outsider.unwrap_or(exp.nodes), rng, period),
    }
}

/// The report of a finished run over `live` honest nodes.
fn report(
    exp: &Experiment,
    sim: &Sim,
    phases: &Phases,
    m: Measured,
    live: usize,
    figures: Value,
    (state, rss_grown): (Option<u64>, Option<u64>),
) -> Report {
    let period = exp.gossip_period;
    // The settings every node ran with (the experiment's, over the core's defaults).
    let node_config = config(exp, 0);
    let n1 = live.saturating_sub(1).max(1) as f64;
    let pairs = (sim.len().max(1) as u64).pow(2);
    let (honest_offenses, honest_evictions) = sim.honest_blame();
    let steady = |count: fn(&Totals) -> u64| {
        phases
            .steady
            .map(|(t, rounds)| count(&t) as f64 / (exp.nodes as f64 * f64::from(rounds)))
    };
    Report {
        description: exp.description.clone(),
        scenario: exp.scenario,
        nodes: exp.nodes,
        seed: exp.seed,
        loss: exp.net.loss,
        loss_mode: exp.net.loss_mode,
        loss_after_boot: exp.loss_after_boot,
        max_peers: exp.max_peers,
        gossip_period_ms: millis(period),
        advert_refresh: node_config.advert_refresh,
        dissemination: exp.dissemination,
        warmup_rounds: exp.warmup_rounds,
        settle_rounds: exp.settle_rounds,
        join_over_ms: millis(exp.join_over),
        threads: exp.threads,
        optimize_hops: exp.optimize_hops,
        eager_fanout: node_config.eager_fanout,
        key_bits: KEY_BITS,
        topology: describe(exp),
        boot_ms: phases.boot.map(|t| t.as_millis()),
        boot_copies_per_pair: phases.boot_copies_per_pair,
        boot_wall_seconds: phases.boot_wall.as_secs_f64(),
        warmup_wall_seconds: phases.warmup_wall.as_secs_f64(),
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
        wall_seconds: phases.started.elapsed().as_secs_f64(),
        peak_rss_bytes: rss("VmHWM:"),
        state_bytes_per_node: state.map(|g| g / sim.len().max(1) as u64),
        state_bytes_per_member_pair: state.map(|g| g / pairs),
        rss_bytes_per_member_pair: rss_grown.map(|g| g / pairs),
        steady_copies_per_node_per_round: steady(|t| t.copies_in),
        steady_frames_per_node_per_round: steady(|t| t.frames_in),
        steady_bytes_per_node_per_round: steady(|t| t.bytes_in),
        steady_verifications_per_node_per_round: steady(|t| t.accepted),
        steady_adverts_per_node_per_round: steady(|t| t.originated),
        steady_handshakes_per_node_per_round: steady(|t| t.handshakes),
        heartbeat_timeout_ms: millis(node_config.heartbeat_timeout()),
        wall_us_per_copy: (phases.copies_before_scenario > 0).then(|| {
            (phases.boot_wall + phases.warmup_wall).as_secs_f64() * 1e6
                / phases.copies_before_scenario as f64
        }),
        series: Series::default(),
    }
}

/// Keeps only `figures` of a report's JSON (and what identifies the run: `description`,
/// `topology`, `nodes`, `seed`, `trace_digest`); an error names figures the report lacks.
pub fn select(report: &mut Value, figures: &[String]) -> Result<(), String> {
    let Value::Object(all) = report else {
        return Ok(());
    };
    let missing: Vec<&str> = figures
        .iter()
        .filter(|f| !all.contains_key(f.as_str()))
        .map(String::as_str)
        .collect();
    const ALWAYS: [&str; 5] = ["description", "topology", "nodes", "seed", "trace_digest"];
    all.retain(|k, _| ALWAYS.contains(&k.as_str()) || figures.contains(k));
    match missing.is_empty() {
        true => Ok(()),
        false => Err(format!("no such figures: {}", missing.join(", "))),
    }
}

/// The topology, as the report names it.
fn describe(exp: &Experiment) -> String {
    match &exp.topology {
        None => format!("barabasi_albert(n={}, m={})", exp.nodes, exp.attach),
        Some(t) => format!(
            "{} ({} controllers, {} stubs, {} links)",
            t.name(),
            t.controllers(),
            t.len() - t.controllers(),
            t.edges().len()
        ),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod file_tests;
#[cfg(test)]
mod tests;
