//! The simulator's quickcheck properties of the protocol (issue 4): 1 convergence,
//! 2 integrity, 3 admission, 4 eviction, 5 bounds, 6 leave, 7 determinism; and (issue 7)
//! 8 delivery through Plumtree's lazy path when eager links fail; 10 nodes started one at
//! a time, in any order, form one overlay (property 9 is in `honesty.rs`); (issue 21)
//! 11 a settled overlay delivers each rumor once, along shortest paths.
//!
//! Every input carries the simulation seed; quickcheck prints the shrunk input (seed
//! included) when a property fails, and the failure message repeats it. The default run
//! has `OVERLAY_QC_TESTS` cases per property (default 12) on at most 8 nodes;
//! `cargo test --release -p overlay-transport-mem -- --ignored` runs 60 cases on up to 24
//! nodes. `OVERLAY_QC_SEED` changes quickcheck's own generator seed.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use overlay_core::{AsLink, Asn, ClusterKey, Config, MemberState, Metrics, NodeId};
use overlay_transport_mem::experiment::addr;
use overlay_transport_mem::{LossMode, MemberEvent, Misbehavior, Sim, SlotId, SlotState};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult, Testable};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

mod common;

use common::*;

thread_local! {
    /// Largest cluster generated (set by the runner: small by default, larger when ignored).
    static MAX_NODES: Cell<usize> = const { Cell::new(8) };
}

fn check<A: Arbitrary + Debug>(prop: fn(A) -> TestResult, cases: u64, max_nodes: usize)
where
    fn(A) -> TestResult: Testable,
{
    MAX_NODES.with(|m| m.set(max_nodes));
    let seed = env("OVERLAY_QC_SEED", 0x0de7_1a45);
    QuickCheck::new()
        .tests(cases)
        .max_tests(cases * 4)
        .rng(Gen::from_size_and_seed(16, seed))
        .quickcheck(prop);
}

/// `prop` with the default number of cases on the default cluster sizes.
fn check_default<A: Arbitrary + Debug>(prop: fn(A) -> TestResult)
where
    fn(A) -> TestResult: Testable,
{
    check(prop, default_cases(), MAX_NODES.with(Cell::get));
}

fn default_cases() -> u64 {
    env("OVERLAY_QC_TESTS", 12)
}

// ---- inputs ---------------------------------------------------------------------------

/// A fault; node indexes are taken modulo the cluster size.
#[derive(Clone, Debug)]
enum Fault {
    Cut(u8, u8),
    Partition(u16),
    Crash(u8),
    CrashAndRestart(u8),
    Loss(u8),
    SetCost(u8, u8),
}

impl Arbitrary for Fault {
    fn arbitrary(g: &mut Gen) -> Self {
        let a = u8::arbitrary(g);
        let b = u8::arbitrary(g);
        match u8::arbitrary(g) % 6 {
            0 => Fault::Cut(a, b),
            1 => Fault::Partition(u16::arbitrary(g)),
            2 => Fault::Crash(a),
            3 => Fault::CrashAndRestart(a),
            4 => Fault::Loss(a % 20),
            _ => Fault::SetCost(a, b % 5),
        }
    }
}

/// A cluster and a fault schedule, one fault per gossip round.
type Schedule = common::Schedule<Fault>;

impl Arbitrary for Schedule {
    fn arbitrary(g: &mut Gen) -> Self {
        Schedule::generate(g, MAX_NODES.with(Cell::get), 0..5)
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        self.shrunk()
    }
}

impl Schedule {
    /// Applies the faults one gossip round apart, `check`ing every step; then heals,
    /// restarts what `CrashAndRestart` crashed and stops the loss.
    fn run(
        &self,
        sim: &mut Sim,
        check: &mut dyn FnMut(&Sim, SlotId) -> Result<(), String>,
    ) -> Result<(), String> {
        let n = self.nodes;
        let at = |x: u8| x as usize % n;
        let mut restart = Vec::new();
        drive(sim, PERIOD * 3, check)?;
        for fault in &self.faults {
            match *fault {
                Fault::Cut(a, b) => sim.cut(at(a), at(b)),
                Fault::Partition(mask) => {
                    let group: Vec<SlotId> = (0..n).filter(|i| mask >> (i % 16) & 1 == 1).collect();
                    sim.partition(&[group]);
                }
                Fault::Crash(a) => sim.crash(at(a)),
                Fault::CrashAndRestart(a) => {
                    sim.crash(at(a));
                    restart.push(at(a));
                }
                Fault::Loss(p) => sim.set_loss(f64::from(p) / 100.0, LossMode::Drop),
                Fault::SetCost(a, cost) => {
                    if let Some(node) = sim
                        .node(at(a))
                        .filter(|_| sim.state(at(a)) == SlotState::Running)
                    {
                        let links: Vec<AsLink> = node
                            .config()
                            .links
                            .iter()
                            .map(|l| AsLink {
                                cost: u64::from(cost),
                                ..*l
                            })
                            .collect();
                        sim.set_links(at(a), links);
                    }
                }
            }
            drive(sim, PERIOD, check)?;
        }
        sim.heal();
        sim.set_loss(0.0, LossMode::Drop);
        for slot in restart {
            sim.restart(slot).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Steps until `until`, checking every node handed events after each step (window).
fn drive(
    sim: &mut Sim,
    for_: Duration,
    check: &mut dyn FnMut(&Sim, SlotId) -> Result<(), String>,
) -> Result<(), String> {
    let until = sim.now() + for_;
    while sim.next_due().is_some_and(|t| t <= until) {
        sim.step();
        for &slot in sim.handled() {
            check(sim, slot)?;
        }
    }
    sim.run_until(until);
    Ok(())
}

fn no_check(_: &Sim, _: SlotId) -> Result<(), String> {
    Ok(())
}

// ---- 1. convergence -------------------------------------------------------------------

fn convergence(s: Schedule) -> TestResult {
    let mut sim = cluster(s.seed, s.nodes, s.shape, params(s.seed), &|_, _| {});
    if let Err(e) = s.run(&mut sim, &mut no_check) {
        return fail(&s, e);
    }
    // Past the advertisement age of anything that died, then until equal to the reference.
    sim.run_for(PERIOD * 5);
    let within = PERIOD * 90;
    match one_overlay(&mut sim, within).and_then(|()| converged(&mut sim, &|_| true, within)) {
        Ok(()) => TestResult::passed(),
        Err(e) => fail(
            &s,
            format!("not one converged overlay 95 rounds after healing: {e}"),
        ),
    }
}

#[test]
fn p1_convergence_after_healed_faults() {
    check_default(convergence as fn(Schedule) -> TestResult);
}

// ---- 2. integrity ---------------------------------------------------------------------

/// Honest nodes with one or two members that forge, replay, flood, impersonate or replay
/// frames, plus deliberate frame replays between honest nodes.
#[derive(Clone, Debug)]
struct Attackers {
    seed: u64,
    nodes: usize,
    shape: u8,
    bad: Vec<(u8, u8)>,
}

impl Arbitrary for Attackers {
    fn arbitrary(g: &mut Gen) -> Self {
        let max = MAX_NODES.with(Cell::get);
        Attackers {
            seed: u64::arbitrary(g),
            nodes: 4 + usize::arbitrary(g) % (max - 3),
            shape: u8::arbitrary(g),
            bad: (0..1 + usize::arbitrary(g) % 2)
                .map(|_| (u8::arbitrary(g), u8::arbitrary(g)))
                .collect(),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let me = self.clone();
        Box::new(
            (self.nodes > 4)
                .then(|| Attackers {
                    nodes: me.nodes - 1,
                    ..me.clone()
                })
                .into_iter(),
        )
    }
}

impl Attackers {
    fn slots(&self) -> Vec<(SlotId, Misbehavior)> {
        let mut out: Vec<(SlotId, Misbehavior)> = Vec::new();
        for &(slot, kind) in &self.bad {
            let slot = slot as usize % self.nodes;
            let victim = NodeId(((slot + 1) % self.nodes) as u32 + 1);
            let how = match kind % 5 {
                0 => Misbehavior::Forge,
                1 => Misbehavior::Replay,
                2 => Misbehavior::Flood,
                3 => Misbehavior::Impersonate(victim),
                _ => Misbehavior::ReplayFrames,
            };
            if out.iter().all(|(s, _)| *s != slot) {
                out.push((slot, how));
            }
        }
        out
    }
}

fn integrity(a: Attackers) -> TestResult {
    let mut p = params(a.seed);
    p.record = true;
    p.keep_frames = true;
    let mut sim = cluster(a.seed, a.nodes, a.shape, p, &|_, _| {});
    sim.run_for(PERIOD * 2);
    let bad = a.slots();
    for &(slot, how) in &bad {
        sim.misbehave(slot, Some(how));
    }
    let honest: Vec<SlotId> = (0..a.nodes)
        .filter(|s| bad.iter().all(|(b, _)| b != s))
        .collect();
    for round in 0..8 {
        let from = honest[round % honest.len()];
        if let Some(&to) = sim.peer_slots(from).first() {
            sim.replay_frame(from, to);
        }
        sim.run_for(PERIOD);
    }
    let mut seen: BTreeMap<(SlotId, NodeId, u64), usize> = BTreeMap::new();
    for l in sim.log() {
        if let overlay_core::Notification::RumorAccepted { origin, seq, .. } = l.note {
            if sim.forged().contains(&(origin, seq)) {
                return fail(
                    &a,
                    format!("slot {} accepted forged rumor {origin}#{seq}", l.slot),
                );
            }
            *seen.entry((l.slot, origin, seq)).or_default() += 1;
        }
    }
    if let Some(((slot, origin, seq), n)) = seen.iter().find(|(_, n)| **n > 1) {
        return fail(&a, format!("slot {slot} accepted {origin}#{seq} {n} times"));
    }
    // Every stored membership rumor verifies under its origin's real key.
    for &h in &honest {
        let Some(node) = sim.node(h) else { continue };
        for m in node.members() {
            let Some(rumor) = node.advert_of(m.node) else {
                continue;
            };
            let Some(origin) = sim.slot_of(m.node) else {
                return fail(
                    &a,
                    format!("slot {h} stores a rumor of unknown origin {}", m.node),
                );
            };
            let public = sim.identity(origin).public();
            if public
                .verify(rumor.body.get().as_bytes(), &rumor.sig.decode())
                .is_err()
            {
                return fail(
                    &a,
                    format!(
                        "slot {h} stores a rumor of {} its origin did not sign",
                        m.node
                    ),
                );
            }
        }
    }
    let hop_auth: u64 = (0..a.nodes)
        .filter_map(|s| sim.node(s))
        .map(|n| n.metrics().rejects.get("hop_auth").copied().unwrap_or(0))
        .sum();
    if sim.stats().frames_replayed > 0 && hop_auth == 0 {
        return fail(&a, "frames were replayed but no node rejected one");
    }
    TestResult::passed()
}

#[test]
fn p2_integrity_under_forgery_replay_and_flooding() {
    check_default(integrity as fn(Attackers) -> TestResult);
}

// ---- 3. admission ---------------------------------------------------------------------

fn admission(s: Schedule) -> TestResult {
    let n = s.nodes;
    let stub = Asn(9_000);
    let mut sim = cluster(s.seed, n, s.shape, params(s.seed), &|i, c| {
        // Honest ASes link to AS 9000, which the outsider claims with free links back.
        if i % 2 == 0 {
            c.links.push(AsLink {
                asn: stub,
                capacity: 10,
                cost: 9,
            });
        }
        if i == 0 {
            c.bootstrap.push(addr(n));
        }
    });
    let mut c = Config::new(
        NodeId(n as u32 + 1),
        stub,
        addr(n),
        vec![ClusterKey::from_bytes([9; 32])],
    );
    c.gossip_period = PERIOD;
    c.bootstrap = (0..n).map(addr).collect();
    c.links = (0..n)
        .map(|i| AsLink {
            asn: asn(i),
            capacity: 1 << 20,
            cost: 0,
        })
        .collect();
    let outsider = sim.add(c, keys().get(n)).expect("valid config");
    let outsider_id = NodeId(n as u32 + 1);
    let outsider_fp = sim.identity(outsider).fingerprint();
    let honest = move |slot: SlotId| slot != outsider;
    let mut violation = |sim: &Sim, slot: SlotId| -> Result<(), String> {
        if slot == outsider {
            return Ok(());
        }
        let node = sim.node(slot).ok_or("honest node gone")?;
        if node
            .members()
            .iter()
            .any(|m| m.node == outsider_id || m.profile.fingerprint == outsider_fp)
        {
            return Err(format!("slot {slot} lists the outsider as a member"));
        }
        if node.peers().iter().any(|p| p.fingerprint == outsider_fp) {
            return Err(format!("slot {slot} has the outsider as a peer"));
        }
        if let Some(r) = node
            .routes()
            .iter()
            .find(|r| r.path[..r.path.len() - 1].contains(&stub))
        {
            return Err(format!(
                "slot {slot} routes through the outsider's AS: {r:?}"
            ));
        }
        Ok(())
    };
    if let Err(e) = s.run(&mut sim, &mut violation) {
        return fail(&s, e);
    }
    if let Err(e) = drive(&mut sim, PERIOD * 4, &mut violation) {
        return fail(&s, e);
    }
    if let Err(e) = converged(&mut sim, &honest, PERIOD * 90) {
        return fail(&s, format!("honest routes: {e}"));
    }
    let refused: u64 = (0..=n)
        .filter_map(|x| sim.node(x))
        .map(|node| {
            let r = &node.metrics().rejects;
            r.get("unknown_cluster_key").copied().unwrap_or(0)
                + r.get("refused").copied().unwrap_or(0)
        })
        .sum();
    if refused == 0 {
        return fail(
            &s,
            "the outsider was never refused: the property was not exercised",
        );
    }
    TestResult::passed()
}

#[test]
fn p3_wrong_cluster_key_is_never_admitted() {
    check_default(admission as fn(Schedule) -> TestResult);
}

// ---- 4. eviction ----------------------------------------------------------------------

fn eviction(a: Attackers) -> TestResult {
    let quorum = 1 + a.bad[0].1 as usize % 2;
    let mut p = params(a.seed);
    p.misbehave_every = Duration::from_millis(500);
    let mut sim = cluster(a.seed, a.nodes, a.shape, p, &|_, c| c.ban_quorum = quorum);
    sim.run_for(PERIOD * 2);
    let bad = a.bad[0].0 as usize % a.nodes;
    let how =
        [Misbehavior::Forge, Misbehavior::Replay, Misbehavior::Flood][a.bad[0].1 as usize % 3];
    sim.misbehave(bad, Some(how));
    sim.run_for(PERIOD * 12);
    let bad_fp = sim.identity(bad).fingerprint();
    let honest: Vec<SlotId> = (0..a.nodes).filter(|&s| s != bad).collect();
    let banners = honest
        .iter()
        .filter(|&&h| {
            sim.node(h)
                .is_some_and(|n| n.bans().iter().any(|(fp, _)| *fp == bad_fp))
        })
        .count();
    if banners == 0 {
        return fail(&a, format!("nobody banned {how:?} slot {bad}"));
    }
    for &h in &honest {
        let node = sim.node(h).expect("honest nodes run");
        if node.peers().iter().any(|p| p.fingerprint == bad_fp) {
            return fail(
                &a,
                format!("slot {h} is still linked to {how:?} slot {bad}"),
            );
        }
        if banners >= quorum && !node.evictions().iter().any(|(fp, _, _)| *fp == bad_fp) {
            return fail(
                &a,
                format!("slot {h} did not evict slot {bad} ({banners} banners, quorum {quorum})"),
            );
        }
        for (fp, id, _) in node.evictions() {
            if fp != bad_fp {
                return fail(&a, format!("slot {h} evicted honest {id}"));
            }
        }
    }
    for &h in &honest {
        let id = sim.config(h).node_id;
        if sim.member_events(id, MemberEvent::Evicted).is_some() {
            return fail(&a, format!("honest {id} was evicted somewhere"));
        }
    }
    TestResult::passed()
}

#[test]
fn p4_misbehaving_members_are_cut_off_and_evicted() {
    check_default(eviction as fn(Attackers) -> TestResult);
}

// ---- 5. bounds ------------------------------------------------------------------------

fn bounds(s: Schedule) -> TestResult {
    let max_peers = 1 + (s.seed % 3) as usize;
    let max_members = (s.nodes / 2).max(2) + (s.seed >> 8) as usize % s.nodes;
    let p = params(s.seed);
    let cache_cap = p.verify_cache;
    let mut sim = cluster(s.seed, s.nodes, s.shape, p, &|_, c| {
        c.max_peers = max_peers;
        c.max_members = max_members;
    });
    let mut within = |sim: &Sim, slot: SlotId| -> Result<(), String> {
        let Some(node) = sim.node(slot) else {
            return Ok(());
        };
        let z = node.sizes();
        let peers = node.peers().len();
        let checks = [
            ("peers", peers, max_peers),
            ("connections", z.connections, 2 * max_peers + 8),
            ("candidates", z.candidates, 256),
            ("members", z.members, max_members),
            ("rumors", z.rumors, 2 * max_members),
            ("tombstones", z.tombstones, 2 * max_members),
            ("per_link_keys", z.per_link_keys, 2 * 256),
            ("rate_buckets", z.rate_buckets, max_members),
            ("cached_keys", z.cached_keys, cache_cap),
            ("missing", z.missing, 2 * max_members),
            ("dissemination links", z.links, peers),
            ("offenders", z.reputation.0, max_members),
            ("bans", z.reputation.1, max_members),
            ("timers", z.timers, 16 + z.connections),
        ];
        for (what, value, cap) in checks {
            if value > cap {
                return Err(format!(
                    "slot {slot} at {}: {what} {value} > {cap}",
                    sim.now()
                ));
            }
        }
        Ok(())
    };
    if let Err(e) = s
        .run(&mut sim, &mut within)
        .and_then(|()| drive(&mut sim, PERIOD * 5, &mut within))
    {
        return fail(&s, e);
    }
    TestResult::passed()
}

#[test]
fn p5_bounds_hold_at_every_step() {
    check_default(bounds as fn(Schedule) -> TestResult);
}

// ---- 6. leave -------------------------------------------------------------------------

fn leave(s: Schedule) -> TestResult {
    let n = s.nodes.max(4);
    let mut sim = cluster(s.seed, n, s.shape, params(s.seed), &|_, _| {});
    sim.run_for(PERIOD * 3);
    let live_before = sim.running();
    let reference = sim.reference(|_| true);
    if let Err(e) = sim.check_routes(&live_before, &reference) {
        return fail(&s, format!("not converged before the leave: {e}"));
    }
    let leaver = s.faults.len() % n;
    let id = sim.config(leaver).node_id;
    let t = sim.now();
    sim.leave(leaver);
    let live = sim.running();
    let done = sim.run_until_true(t + PERIOD, Duration::from_millis(10), |sim| {
        let reference = sim.reference(|_| true);
        live.iter().all(|&x| {
            sim.node(x).is_some_and(|node| {
                node.members()
                    .iter()
                    .any(|m| m.node == id && m.state == MemberState::Left)
            })
        }) && sim.check_routes(&live, &reference).is_ok()
    });
    if done.is_none() {
        let reference = sim.reference(|_| true);
        let why = sim
            .check_routes(&live, &reference)
            .err()
            .unwrap_or_else(|| "member not marked left everywhere".into());
        return fail(
            &s,
            format!("leave of {id} not withdrawn within one gossip period: {why}"),
        );
    }
    sim.run_for(PERIOD * 6);
    if let Some(t) = sim.member_events(id, MemberEvent::Expired) {
        return fail(
            &s,
            format!(
                "the leave of {id} was counted as a failure {} times",
                t.count
            ),
        );
    }
    let left = sim
        .member_events(id, MemberEvent::Left)
        .map_or(0, |t| t.count);
    if left < live.len() as u64 {
        return fail(
            &s,
            format!(
                "{left} MemberLeft notifications for {} live nodes",
                live.len()
            ),
        );
    }
    TestResult::passed()
}

#[test]
fn p6_leave_is_withdrawn_within_a_round_and_not_a_failure() {
    check_default(leave as fn(Schedule) -> TestResult);
}

// ---- 7. determinism -------------------------------------------------------------------

fn trace_of(s: &Schedule, seed: u64) -> (String, u64) {
    let mut p = params(seed);
    p.net.loss = 0.02;
    let mut sim = cluster(s.seed, s.nodes, s.shape, p, &|_, _| {});
    let _ = s.run(&mut sim, &mut no_check);
    sim.run_for(PERIOD * 2);
    (sim.trace().digest(), sim.trace().records())
}

fn determinism(s: Schedule) -> TestResult {
    let first = trace_of(&s, s.seed);
    let again = trace_of(&s, s.seed);
    if first != again {
        return fail(
            &s,
            format!("same seed, different traces: {first:?} vs {again:?}"),
        );
    }
    let other = trace_of(&s, s.seed ^ 1);
    if first.0 == other.0 {
        return fail(&s, "a different seed gave the same trace");
    }
    TestResult::passed()
}

#[test]
fn p7_same_seed_same_trace() {
    check(
        determinism as fn(Schedule) -> TestResult,
        default_cases() / 2 + 1,
        6,
    );
}

// ---- 8. the lazy path -----------------------------------------------------------------

/// A cluster and the origin whose tree links will fail.
#[derive(Clone, Debug)]
struct LazyPath {
    seed: u64,
    nodes: usize,
    shape: u8,
    origin: u8,
}

impl Arbitrary for LazyPath {
    fn arbitrary(g: &mut Gen) -> Self {
        let max = MAX_NODES.with(Cell::get);
        LazyPath {
            seed: u64::arbitrary(g),
            nodes: 4 + usize::arbitrary(g) % (max - 3),
            shape: u8::arbitrary(g),
            origin: u8::arbitrary(g),
        }
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let me = self.clone();
        Box::new(
            (self.nodes > 4)
                .then(|| LazyPath {
                    nodes: me.nodes - 1,
                    ..me.clone()
                })
                .into_iter(),
        )
    }
}

/// The origin's next advertisement after a link change; `later` seqs count too (its next
/// gossip round may overtake the change on the way).
fn change_links(sim: &mut Sim, slot: SlotId, later: u64) -> (NodeId, u64) {
    let node = sim.node(slot).expect("the origin runs");
    let (origin, seq) = (node.status().node, node.status().seq + 1);
    let links: Vec<AsLink> = node
        .config()
        .links
        .iter()
        .map(|l| AsLink {
            cost: l.cost % 9 + 1,
            ..*l
        })
        .collect();
    for s in seq..=seq + later {
        sim.watch(origin, s);
    }
    sim.set_links(slot, links);
    (origin, seq)
}

/// Once the per-origin trees have formed, every link of the origin's tree that does not
/// start at the origin is stalled (cut for less than the heartbeat timeout): the origin's
/// next rumor must still reach every node within the stall, by lazy announcements and
/// grafts (each level of the tree it repairs costs about a lazy interval, a graft timeout
/// and a round trip: 3.25 s for a 22-node line, so the stall lasts 5 s and the heartbeat is
/// 2 s, a 6 s timeout).
fn lazy_path(l: LazyPath) -> TestResult {
    let mut sim = cluster(l.seed, l.nodes, l.shape, params(l.seed), &|_, c| {
        c.heartbeat_interval = Some(STALL_HEARTBEAT);
    });
    sim.run_for(PERIOD * 4);
    let origin_slot = l.origin as usize % l.nodes;
    let (origin, seq) = change_links(&mut sim, origin_slot, 0);
    sim.run_for(PERIOD / 2);
    let tree: Vec<(SlotId, SlotId)> = sim
        .deliveries(origin, seq)
        .iter()
        .filter(|d| d.from != origin)
        .filter_map(|d| Some((sim.slot_of(d.from)?, d.slot)))
        .collect();
    if tree.is_empty() {
        // Every node is a direct peer of the origin: there is no inner tree link.
        return TestResult::discard();
    }
    let grafts = |sim: &Sim| summed(sim, |m| m.grafts_out);
    let grafts_before = grafts(&sim);
    for &(parent, child) in &tree {
        sim.cut(parent, child);
    }
    let (origin, seq) = change_links(&mut sim, origin_slot, 6);
    // Less than the heartbeat timeout (three intervals): the cut links stay up.
    sim.run_for(STALL);
    let reached: std::collections::BTreeSet<SlotId> = (seq..=seq + 6)
        .flat_map(|s| sim.deliveries(origin, s).iter().map(|d| d.slot))
        .collect();
    for &(parent, child) in &tree {
        sim.uncut(parent, child);
    }
    let others = l.nodes - 1;
    if grafts(&sim) > grafts_before {
        GRAFTED_CASES.with(|c| c.set(c.get() + 1));
    }
    if reached.len() == others {
        TestResult::passed()
    } else {
        fail(
            &l,
            format!(
                "{} of {others} nodes got the rumor within {STALL:?} with the tree links {tree:?} stalled",
                reached.len()
            ),
        )
    }
}

/// One metric summed over the running nodes.
fn summed(sim: &Sim, metric: fn(&Metrics) -> u64) -> u64 {
    (0..sim.len())
        .filter_map(|s| sim.node(s))
        .map(|n| metric(&n.metrics()))
        .sum()
}

/// How long property 8 stalls the tree links.
const STALL: Duration = Duration::from_secs(5);
/// Property 8's heartbeat interval: the links outlive the stall (timeout: three intervals).
const STALL_HEARTBEAT: Duration = Duration::from_secs(2);

thread_local! {
    /// Cases of property 8 in which the repair went through grafts (a node with a second
    /// eager path needs none).
    static GRAFTED_CASES: Cell<u32> = const { Cell::new(0) };
}

#[test]
fn p8_delivery_through_the_lazy_path_when_eager_links_fail() {
    check_default(lazy_path as fn(LazyPath) -> TestResult);
    assert!(
        GRAFTED_CASES.with(Cell::get) > 0,
        "no case exercised the lazy path"
    );
}

/// Found by `large_p8_lazy_path`: in a 22-node line the repair went six levels deep and
/// needed 3.25 s, more than the 2.5 s the stall lasted then.
#[test]
fn p8_a_deep_tree_in_a_22_node_line_is_repaired_within_the_stall() {
    let case = LazyPath {
        seed: 13853460955194693469,
        nodes: 22,
        shape: 1,
        origin: 0,
    };
    assert!(!lazy_path(case).is_failure());
}

// ---- 10. staggered starts -------------------------------------------------------------

/// A cluster whose nodes start one at a time; `faults` are the gaps between starts, in
/// units of 8 ms (0 to 2 s).
type Starts = common::Schedule<u8>;

impl Arbitrary for Starts {
    fn arbitrary(g: &mut Gen) -> Self {
        Starts::generate(g, MAX_NODES.with(Cell::get), 1..MAX_NODES.with(Cell::get))
    }

    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        self.shrunk()
    }
}

/// Nodes that start one at a time, in a random order and a random gap apart, converge.
/// Each bootstraps from its topology neighbours of higher index only (one way, as an
/// operator lists "upstream" peers) and is content with one peer: a dial to a neighbour not
/// started yet fails, and parts that formed apart must still merge (they did not: 8 of 60
/// daemons started one after another stayed an island).
fn staggered(s: Starts) -> TestResult {
    let n = s.nodes;
    let configs = configs(s.seed, n, s.shape, &|i, c| {
        let upstream: Vec<_> = (i + 1..n).map(addr).collect();
        c.bootstrap.retain(|a| upstream.contains(a));
        c.target_peers = Some(1);
        // Room for every neighbour: a star's hub is the only way in for its leaves, which
        // list nobody (with fewer slots than leaves, some leaf could never join).
        c.max_peers = c.max_peers.max(n);
    });
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(s.seed);
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
    let mut sim = Sim::new(params(s.seed));
    for (k, &i) in order.iter().enumerate() {
        if let Err(e) = sim.add(configs[i].clone(), identity(i)) {
            return fail(&s, e.to_string());
        }
        let gap = s
            .faults
            .get(k % s.faults.len().max(1))
            .copied()
            .unwrap_or(0);
        sim.run_for(Duration::from_millis(u64::from(gap) * 8));
    }
    let within = PERIOD * 90;
    match one_overlay(&mut sim, within).and_then(|()| converged(&mut sim, &|_| true, within)) {
        Ok(()) => TestResult::passed(),
        Err(e) => fail(&s, format!("not one converged overlay 90 rounds on: {e}")),
    }
}

#[test]
fn p10_nodes_started_one_at_a_time_in_any_order_form_one_overlay() {
    check_default(staggered as fn(Starts) -> TestResult);
}

// ---- 11. link-state trees ---------------------------------------------------------------

/// Once link state has settled (no fault, four rounds), an origin's next rumor reaches every
/// node once, each from its first hop toward the origin: along shortest paths of the
/// overlay, with no duplicate anywhere.
fn link_state_trees(l: LazyPath) -> TestResult {
    let mut sim = cluster(l.seed, l.nodes, l.shape, params(l.seed), &|_, _| {});
    sim.run_for(PERIOD * 4);
    let duplicates = |sim: &Sim| summed(sim, |m| m.rumors_duplicate);
    let before = duplicates(&sim);
    let (origin, seq) = change_links(&mut sim, l.origin as usize % l.nodes, 0);
    sim.run_for(PERIOD / 2);
    let deliveries = sim.deliveries(origin, seq).to_vec();
    let mut problems = Vec::new();
    if deliveries.len() != l.nodes - 1 {
        problems.push(format!(
            "{} of {} nodes got it",
            deliveries.len(),
            l.nodes - 1
        ));
    }
    for d in &deliveries {
        let first_hop = sim
            .node(d.slot)
            .and_then(|n| n.member(origin))
            .and_then(|m| m.first_hop);
        if first_hop != Some(d.from) {
            problems.push(format!(
                "slot {} got it from {:?}, its first hop is {first_hop:?}",
                d.slot, d.from
            ));
        }
    }
    let extra = duplicates(&sim) - before;
    if extra > 0 {
        problems.push(format!("{extra} duplicates"));
    }
    if problems.is_empty() {
        TestResult::passed()
    } else {
        fail(&l, problems.join("; "))
    }
}

#[test]
fn p11_a_settled_overlay_delivers_each_rumor_once_along_shortest_paths() {
    check_default(link_state_trees as fn(LazyPath) -> TestResult);
}

// ---- the larger run -------------------------------------------------------------------

/// `prop` with `OVERLAY_QC_TESTS` (default 60) cases on up to `nodes` nodes.
fn large<A: Arbitrary + Debug>(prop: fn(A) -> TestResult, nodes: usize)
where
    fn(A) -> TestResult: Testable,
{
    check(prop, env("OVERLAY_QC_TESTS", 60), nodes);
}

/// One ignored test per property at the larger scale.
macro_rules! larger_runs {
    ($($name:ident: $prop:ident($input:ty) on $nodes:expr;)*) => {$(
        #[test]
        #[ignore = "larger run: cargo test --release -p overlay-transport-mem -- --ignored"]
        fn $name() {
            large($prop as fn($input) -> TestResult, $nodes);
        }
    )*};
}

larger_runs! {
    large_p1_convergence: convergence(Schedule) on 24;
    large_p2_integrity: integrity(Attackers) on 24;
    large_p3_admission: admission(Schedule) on 24;
    large_p4_eviction: eviction(Attackers) on 24;
    large_p5_bounds: bounds(Schedule) on 24;
    large_p6_leave: leave(Schedule) on 24;
    large_p7_determinism: determinism(Schedule) on 16;
    large_p8_lazy_path: lazy_path(LazyPath) on 24;
    large_p10_staggered: staggered(Starts) on 24;
    large_p11_link_state_trees: link_state_trees(LazyPath) on 24;
}
