//! The scenarios run between boot and the measured change: churn (crashes, restarts with
//! old and fresh keys, leaves), a partition and its healing, and byzantine members with an
//! outsider holding the wrong cluster key; each returns its own figures.

use super::*;

/// A node with a wrong cluster key that bootstraps from three honest nodes and claims
/// cheap links to them.
pub(super) fn add_outsider(sim: &mut Sim, exp: &Experiment, keys: &KeyPool) -> SlotId {
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

/// Whether the running node of `slot` reaches none of `gone` (as a node not running does).
pub(super) fn reaches_none(sim: &Sim, slot: SlotId, gone: &[NodeId]) -> bool {
    sim.node(slot).is_none_or(|node| {
        gone.iter()
            .all(|&d| node.member(d).is_none_or(|m| !m.reachable))
    })
}

/// Whether the node of `slot` runs and knows at least `members` members.
pub(super) fn knows(sim: &Sim, slot: SlotId, members: usize) -> bool {
    sim.node(slot)
        .is_some_and(|node| node.status().members >= members)
}

/// Picks `k` distinct elements of `from` (removing them).
pub(super) fn pick(from: &mut Vec<SlotId>, k: usize, rng: &mut ChaCha20Rng) -> Vec<SlotId> {
    (0..k.min(from.len()))
        .map(|_| from.swap_remove(below(rng, from.len() as u64) as usize))
        .collect()
}

/// Waits until every table of `slots` equals the reference of the running `slots`;
/// returns how long that took from `since`.
pub(super) fn converge(
    sim: &mut Sim,
    slots: &[SlotId],
    since: Time,
    deadline: Time,
) -> Option<Duration> {
    let include: Vec<bool> = (0..sim.len()).map(|s| slots.contains(&s)).collect();
    sim.run_until_true(deadline, Duration::from_millis(250), |s| {
        let reference = s.reference(|slot| include[slot]);
        s.check_routes(slots, &reference).is_ok()
    })
    .map(|t| t.since(since))
}

/// How many nodes of `n` the churn scenario crashes, restarts (of those, with a fresh
/// key) and takes out by a leave.
pub(super) struct Churn {
    crashed: usize,
    restarted: usize,
    pub(super) rekeyed: usize,
    left: usize,
}

impl Churn {
    pub(super) fn of(n: usize) -> Churn {
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

pub(super) fn churn(
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

/// Crashes a tenth of the nodes; its figure is how long until no running node reaches any
/// of them (and so routes through none of them).
pub(super) fn crash(
    sim: &mut Sim,
    honest: &mut Vec<SlotId>,
    rng: &mut ChaCha20Rng,
    period: Duration,
) -> Value {
    let mut pool = honest.clone();
    let crashed = pick(&mut pool, (honest.len() / 10).max(1), rng);
    let start = sim.now();
    for &s in &crashed {
        sim.crash(s);
    }
    honest.retain(|s| !crashed.contains(s));
    let dead: Vec<NodeId> = crashed.iter().map(|&s| sim.config(s).node_id).collect();
    let live = honest.clone();
    let withdrawn = sim.run_until_true(start + period * 30, Duration::from_millis(50), |s| {
        live.iter().all(|&h| reaches_none(s, h, &dead))
    });
    json!({
        "crashed": crashed.len(),
        "crash_withdrawn_ms": withdrawn.map(|t| millis(t.since(start))),
    })
}

pub(super) fn partition(
    sim: &mut Sim,
    honest: &[SlotId],
    rng: &mut ChaCha20Rng,
    period: Duration,
) -> Value {
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
        honest.iter().all(|&i| knows(s, i, n))
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

pub(super) fn byzantine(
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
