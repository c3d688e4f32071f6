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
    // A restarted node counts its sequence numbers from 0 again until it hears an echo of
    // its old ones: its next rumor may be stale by design. Measure a node never restarted.
    let steady: Vec<SlotId> = live
        .iter()
        .copied()
        .filter(|&s| sim.incarnation(s) == 0)
        .collect();
    let x = steady[below(rng, steady.len() as u64) as usize];
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
    let (last_hop, mean_hop) = hops(sim, origin, &deliveries);
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
/// a rumor from `origin`.
fn hops(sim: &Sim, origin: NodeId, deliveries: &[Delivery]) -> (u32, f64) {
    let mut hops: BTreeMap<NodeId, u32> = BTreeMap::from([(origin, 0)]);
    for d in deliveries {
        let h = hops.get(&d.from).copied().unwrap_or(0) + 1;
        hops.insert(sim.config(d.slot).node_id, h);
    }
    let last = hops.values().copied().max().unwrap_or(0);
    let mean = if deliveries.is_empty() {
        0.0
    } else {
        hops.values().map(|&h| f64::from(h)).sum::<f64>() / deliveries.len() as f64
    };
    (last, mean)
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
    /// Frames received.
    pub frames_in: u64,
    /// Frame bytes received.
    pub bytes_in: u64,
    /// Rumor copies received (before any check).
    pub copies_in: u64,
    /// Rumors accepted as new: what a node verifies with RSA when no other node of its
    /// process shares its verification cache (the simulator's nodes share one).
    pub accepted: u64,
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
            frames_in: self.frames_in.saturating_sub(before.frames_in),
            bytes_in: self.bytes_in.saturating_sub(before.bytes_in),
            copies_in: self.copies_in.saturating_sub(before.copies_in),
            accepted: self.accepted.saturating_sub(before.accepted),
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
        t.frames_in += m.frames_in;
        t.bytes_in += m.bytes_in;
        t.copies_in += m.rumors_in;
        t.accepted += m.rumors_accepted;
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
