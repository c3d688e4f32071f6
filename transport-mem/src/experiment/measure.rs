//! The measured link change: one steady node changes its links; the advertisement's
//! delivery (ratio, hops, time), its cost in messages per rumor, and the routes'
//! convergence against the reference; plus the dissemination totals and memory figures.

use super::*;

/// What the measured change showed.
pub(super) struct Measured {
    pub(super) origin: NodeId,
    pub(super) delivered: usize,
    pub(super) superseded: usize,
    pub(super) originated: u64,
    pub(super) messages_per_rumor: f64,
    pub(super) announcements_per_rumor: f64,
    pub(super) grafts_per_rumor: f64,
    pub(super) prunes_per_rumor: f64,
    pub(super) last_hop: u32,
    pub(super) mean_hop: f64,
    pub(super) full_delivery: Option<Duration>,
    pub(super) convergence: Option<Duration>,
    pub(super) mismatch: Option<String>,
    /// The origin's slot.
    pub(super) origin_slot: SlotId,
    /// Each receiver's first delivery: ms after the change, hop, the slot it came from
    /// (`None`: unknown) and its own slot, in time order.
    pub(super) deliveries: Vec<(u64, u32, Option<SlotId>, SlotId)>,
    /// Each live node's last route change, ms after the change (0: none after it).
    pub(super) settled_ms: Vec<u64>,
}

/// Later advertisements of the measured origin that also count as delivering its change
/// (its next gossip round may re-advertise the same links before the first copy arrives).
const SUPERSEDING: u64 = 16;

/// Each node's first acceptance of `(origin, seq)` or a later rumor of that origin, with
/// the sequence number it accepted, in time order.
pub(super) fn first_deliveries(sim: &Sim, origin: NodeId, seq: u64) -> Vec<(Delivery, u64)> {
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
pub(super) fn measure_change(
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
    let x = steady_origin(sim, &live, rng);
    let (origin, seq) = {
        let status = sim.node(x).unwrap_or_else(|| unreachable!("live")).status();
        (status.node, status.seq + 1)
    };
    let links = changed_links(sim, x, &live);
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
    let (last_hop, mean_hop, each_hop) = hops(sim, origin, &deliveries);
    let timeline = delivery_series(sim, t0, &deliveries, each_hop);
    let mismatch = settle(sim, &live, t0 + period * 10, period);
    // Count over at least one whole round after the change: every origin advertises once,
    // so rumors still in flight at either end of the window weigh little.
    let window_end = t0 + period;
    if sim.now() < window_end {
        sim.run_for(window_end.since(sim.now()));
    }
    let counted = totals(sim).since(&before);
    let originated = counted.originated.max(1);
    let per_rumor = |count: u64| count as f64 / originated as f64;
    let settled_ms = last_changes(sim, &live, t0);
    let convergence = mismatch
        .is_none()
        .then(|| Duration::from_millis(settled_ms.iter().copied().max().unwrap_or(0)));
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
        origin_slot: x,
        deliveries: timeline,
        settled_ms,
    }
}

/// A live node never restarted, drawn: a restarted node counts its sequence numbers from 0
/// again until it hears an echo of its old ones, so its next rumor may be stale by design.
fn steady_origin(sim: &Sim, live: &[SlotId], rng: &mut ChaCha20Rng) -> SlotId {
    let steady: Vec<SlotId> = live
        .iter()
        .copied()
        .filter(|&s| sim.incarnation(s) == 0)
        .collect();
    steady[below(rng, steady.len() as u64) as usize]
}

/// Each live node's last route change after `t0`, ms (0: none since).
fn last_changes(sim: &Sim, live: &[SlotId], t0: Time) -> Vec<u64> {
    live.iter()
        .map(|&s| {
            sim.last_route_change(s)
                .filter(|&t| t >= t0)
                .map_or(0, |t| millis(t.since(t0)))
        })
        .collect()
}

/// Each delivery as the report plots it: ms after `t0`, hop, the slot it came from, and
/// the receiver's slot.
fn delivery_series(
    sim: &Sim,
    t0: Time,
    deliveries: &[Delivery],
    hops: Vec<u32>,
) -> Vec<(u64, u32, Option<SlotId>, SlotId)> {
    deliveries
        .iter()
        .zip(hops)
        .map(|(d, hop)| (millis(d.at.since(t0)), hop, sim.slot_of(d.from), d.slot))
        .collect()
}

/// The links of `x` after the change: a new link to some AS of `live` it had none to, and
/// its first link 7 dearer.
fn changed_links(sim: &Sim, x: SlotId, live: &[SlotId]) -> Vec<AsLink> {
    let mut links = sim.config(x).links.clone();
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
    links
}

/// The last and the mean hop count of `deliveries` (each node's first, in time order) of
/// a rumor from `origin`, and each delivery's.
fn hops(sim: &Sim, origin: NodeId, deliveries: &[Delivery]) -> (u32, f64, Vec<u32>) {
    let mut hops: BTreeMap<NodeId, u32> = BTreeMap::from([(origin, 0)]);
    let mut each = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let h = hops.get(&d.from).copied().unwrap_or(0) + 1;
        hops.insert(sim.config(d.slot).node_id, h);
        each.push(h);
    }
    let last = hops.values().copied().max().unwrap_or(0);
    let mean = if deliveries.is_empty() {
        0.0
    } else {
        hops.values().map(|&h| f64::from(h)).sum::<f64>() / deliveries.len() as f64
    };
    (last, mean, each)
}

/// Lets every debounced recomputation run, then compares the tables of `live` with the
/// reference until they match or `deadline`; returns the last difference, if any.
fn settle(sim: &mut Sim, live: &[SlotId], deadline: Time, period: Duration) -> Option<String> {
    let include: Vec<bool> = (0..sim.len()).map(|s| live.contains(&s)).collect();
    sim.run_for(Duration::from_millis(500));
    loop {
        let reference = sim.reference(|s| include[s]);
        let mismatch = sim.check_routes(live, &reference).err();
        if mismatch.is_none() || sim.now() >= deadline {
            return mismatch;
        }
        sim.run_for(period / 4);
    }
}

/// A `/proc/self/status` field (`"VmHWM:"`, `"VmRSS:"`) in bytes.
pub fn rss(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
