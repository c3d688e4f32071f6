//! Helpers shared by the simulator's integration tests: the key pool, small clusters on
//! generated topologies, and polling for convergence to the reference routes.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use overlay_core::{Asn, ClusterKey, Config, Identity, MemberState, NodeId};
use overlay_transport_mem::experiment::addr;
use overlay_transport_mem::{KeyPool, Sim, SimParams, SlotId, Topology};
use quickcheck::{Arbitrary, Gen, TestResult};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const PERIOD: Duration = Duration::from_secs(1);
pub const KEYS: usize = 40;

pub fn keys() -> &'static KeyPool {
    static POOL: OnceLock<KeyPool> = OnceLock::new();
    POOL.get_or_init(|| KeyPool::cached(&KeyPool::default_dir(), KEYS).expect("key cache"))
}

/// Key `i` of the pool, loading more keys from the cache when `i` is past the first
/// [`KEYS`] (large ignored runs).
pub fn identity(i: usize) -> Identity {
    static MORE: Mutex<Option<KeyPool>> = Mutex::new(None);
    if i < KEYS {
        return keys().get(i);
    }
    let mut more = MORE.lock().unwrap_or_else(|e| e.into_inner());
    if more.as_ref().is_none_or(|p| p.len() <= i) {
        let n = (i + 1).max(more.as_ref().map_or(KEYS, KeyPool::len) + 64);
        *more = Some(KeyPool::cached(&KeyPool::default_dir(), n).expect("key cache"));
    }
    more.as_ref().map(|p| p.get(i)).expect("loaded above")
}

pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn asn(i: usize) -> Asn {
    Asn(100 + i as u32)
}

/// A cluster of `n` nodes on topology `shape` (0 ring, 1 line, 2 star, 3 Erdős–Rényi,
/// 4 Barabási–Albert) with random costs 1..=3 (many ties) and a 1 s gossip period.
pub fn cluster(
    seed: u64,
    n: usize,
    shape: u8,
    params: SimParams,
    tweak: &dyn Fn(usize, &mut Config),
) -> Sim {
    let mut sim = Sim::new(params);
    for (i, c) in configs(seed, n, shape, tweak).into_iter().enumerate() {
        sim.add(c, identity(i)).expect("valid config");
    }
    sim
}

/// The configs of [`cluster`]'s nodes, by index (node i has pool identity i).
pub fn configs(seed: u64, n: usize, shape: u8, tweak: &dyn Fn(usize, &mut Config)) -> Vec<Config> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let topology = match shape % 5 {
        0 => Topology::ring(n),
        1 => Topology::line(n),
        2 => Topology::star(n),
        3 => Topology::erdos_renyi(n, 0.3, &mut rng),
        _ => Topology::barabasi_albert(n, 2, &mut rng),
    }
    .random_weights(&mut rng, 1..=3, &[10, 100, 1000]);
    let mut configs = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = Config::new(NodeId(i as u32 + 1), asn(i), addr(i), vec![key()]);
        c.links = topology.links(i, asn);
        c.bootstrap = topology.neighbours(i).into_iter().map(addr).collect();
        c.gossip_period = PERIOD;
        c.reject_threshold = 3;
        tweak(i, &mut c);
        let mut seen = Vec::new();
        c.links.retain(|l| {
            l.asn != c.asn && !seen.contains(&l.asn) && {
                seen.push(l.asn);
                true
            }
        });
        configs.push(c);
    }
    configs
}

pub fn key() -> ClusterKey {
    ClusterKey::from_bytes([7; 32])
}

pub fn params(seed: u64) -> SimParams {
    let mut p = SimParams::new(seed);
    p.net.latency_min = Duration::from_millis(1);
    p.net.latency_max = Duration::from_millis(20);
    p.net.jitter = Duration::from_millis(2);
    p
}

pub fn all(sim: &Sim) -> Vec<SlotId> {
    sim.running()
}

/// Polls until every running node (among `include`) has the reference table.
pub fn converged(
    sim: &mut Sim,
    include: &dyn Fn(SlotId) -> bool,
    within: Duration,
) -> Result<(), String> {
    let mut last = String::new();
    let deadline = sim.now() + within;
    let ok = sim.run_until_true(deadline, Duration::from_millis(250), |s| {
        let live: Vec<SlotId> = all(s).into_iter().filter(|&x| include(x)).collect();
        let reference = s.reference(include);
        match s.check_routes(&live, &reference) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    ok.map(|_| ()).ok_or(last)
}

/// Polls until every running node reaches every other running node over two-way links
/// (one overlay, not parts that each converged on their own), within `within`.
pub fn one_overlay(sim: &mut Sim, within: Duration) -> Result<(), String> {
    let mut last = String::new();
    let deadline = sim.now() + within;
    let ok = sim.run_until_true(deadline, Duration::from_millis(250), |s| {
        let live = all(s);
        let ids: Vec<NodeId> = live.iter().map(|&x| s.config(x).node_id).collect();
        let apart = live.iter().find_map(|&x| {
            let missing = ids.iter().find(|&&id| !reaches(s, x, id))?;
            Some(format!("slot {x} does not reach {missing}"))
        });
        last = apart.clone().unwrap_or_default();
        apart.is_none()
    });
    ok.map(|_| ()).ok_or(last)
}

/// What `slot` knows of member `id`'s state.
pub fn member_state(sim: &Sim, slot: SlotId, id: NodeId) -> Option<MemberState> {
    sim.node(slot)?.member(id).map(|m| m.state)
}

/// Whether the node in `slot` reaches member `id` over two-way links (routes through it).
pub fn reaches(sim: &Sim, slot: SlotId, id: NodeId) -> bool {
    sim.node(slot)
        .and_then(|n| n.member(id))
        .is_some_and(|m| m.reachable)
}

/// A failed case: the message carries the whole input (with its seed), so a failure can be
/// replayed even when quickcheck does not print the arguments.
pub fn fail(input: &dyn std::fmt::Debug, what: impl std::fmt::Display) -> TestResult {
    TestResult::error(format!("{what}\ninput: {input:?}"))
}

/// A cluster (seed, size, topology shape) and a list of faults, as a quickcheck input.
#[derive(Clone, Debug)]
pub struct Schedule<F> {
    pub seed: u64,
    pub nodes: usize,
    pub shape: u8,
    pub faults: Vec<F>,
}

impl<F: Arbitrary> Schedule<F> {
    /// 3 to `max_nodes` nodes and `faults.start` to `faults.end - 1` faults.
    pub fn generate(g: &mut Gen, max_nodes: usize, faults: std::ops::Range<usize>) -> Self {
        let span = faults.end.saturating_sub(faults.start).max(1);
        Schedule {
            seed: u64::arbitrary(g),
            nodes: 3 + usize::arbitrary(g) % (max_nodes - 2),
            shape: u8::arbitrary(g),
            faults: (0..faults.start + usize::arbitrary(g) % span)
                .map(|_| F::arbitrary(g))
                .collect(),
        }
    }

    /// One node fewer, or a shorter fault list.
    pub fn shrunk(&self) -> Box<dyn Iterator<Item = Self>> {
        let me = self.clone();
        let fewer_nodes = (self.nodes > 3).then(|| Schedule {
            nodes: self.nodes - 1,
            ..self.clone()
        });
        Box::new(
            fewer_nodes
                .into_iter()
                .chain(self.faults.shrink().map(move |faults| Schedule {
                    faults,
                    ..me.clone()
                })),
        )
    }
}
