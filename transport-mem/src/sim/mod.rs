//! The simulator: N `overlay-core` nodes in one process on virtual time. A queue of
//! deliveries and wake-ups by time (in queued order within a millisecond) drives them;
//! connections are [`Duplex`] pipes with per-pair latency and per-message jitter; faults
//! (loss, cuts, partitions, crashes, restarts, leaves, misbehaving members) are applied by
//! the methods of [`Sim`]. One seed drives everything: node RNG seeds, latencies, jitter
//! and loss.
//!
//! Time advances in windows as long as the smallest latency (the lookahead): nothing a node
//! does reaches another node sooner, so within a window each node's share of the queue
//! (its deliveries, and its timers as they fall due) depends only on the node itself. The
//! nodes of a window are handed their shares on [`SimParams::threads`] worker threads;
//! their actions are then carried out one by one in (time, slot, order) order. Outcomes,
//! and the trace digest, never depend on the number of threads.
//!
//! Network model, in short:
//! - A dial reaches the listener after one latency and the dialer after two (SYN, SYN-ACK).
//!   Dialing an address where no node listens fails after two latencies (refused); across
//!   a cut or partition it fails after `connect_timeout`.
//! - A `Send` is one frame. It arrives after latency + jitter, never before an earlier
//!   frame of the same connection.
//! - Loss ([`LossMode`]) is per frame: `Drop` loses the frame, which breaks the receiver's
//!   hop-nonce chain so that the core resets the link after its hop-authentication
//!   failures (or its heartbeat timeout); `Reset` tears the connection down at once (both
//!   ends see it closed); `Retransmit` delivers it late (a TCP retransmission), delaying
//!   everything behind it.
//! - A cut or partition stalls the streams across it (bytes wait, as TCP keeps
//!   retransmitting) until it heals; the core's heartbeat timeout ends stalled links.
//! - A crash is a process exit: peers see their connections reset after one latency
//!   (or, across a cut, when they next write after it heals). A graceful leave sends what
//!   the core asks (leave rumor, byes) and then exits the same way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use overlay_core::VerifyCache;
use overlay_core::wire::SignedRumor;
use overlay_core::{
    Action, Addr, AsLink, Asn, Command, Config, ConfigError, ConnId, Direction, Event, Identity,
    Node, NodeId, Notification, Time,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use serde::Serialize;

use crate::lanes::{Input, Lane, Lanes, Output};
use crate::misbehave::{Misbehavior, attack};
use crate::pipe::{Duplex, Side};
use crate::random::{below, chance, mix};
use crate::reference::Reference;
use crate::topology::Position;
use crate::trace::Trace;

pub use crate::lanes::SlotId;
pub use observe::{Delivery, Logged, MemberEvent, Tally, Totals, dissemination_totals};

mod faults;
mod network;
mod observe;

/// What a lost frame does to its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LossMode {
    /// The frame vanishes; the receiver's hop chain breaks and the core resets the link.
    Drop,
    /// The connection is reset at once.
    Reset,
    /// The frame arrives `rto_ms` late, and everything behind it waits (no data lost).
    Retransmit {
        /// Retransmission delay, ms.
        rto_ms: u64,
    },
}

impl LossMode {
    /// The mode a name gives: `drop`, `reset`, or `retransmit` (200 ms late).
    pub fn named(name: &str) -> Result<LossMode, String> {
        match name {
            "drop" => Ok(LossMode::Drop),
            "reset" => Ok(LossMode::Reset),
            "retransmit" => Ok(LossMode::Retransmit { rto_ms: 200 }),
            other => Err(format!("unknown {other:?} (drop, reset, retransmit)")),
        }
    }
}

/// The network's behaviour.
#[derive(Clone, Debug)]
pub struct NetParams {
    /// Smallest one-way latency of a pair of nodes.
    pub latency_min: Duration,
    /// Largest one-way latency of a pair (each pair gets a fixed value in between).
    pub latency_max: Duration,
    /// Extra delay per frame, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// What a loss does.
    pub loss_mode: LossMode,
    /// How long a dial across a cut takes to fail.
    pub connect_timeout: Duration,
    /// Geographic latency: a pair of nodes that both have a place ([`Sim::place`]) is
    /// great-circle km / 200 km/ms (light in fibre) apart, plus this floor, rounded up to
    /// a millisecond; other pairs keep the random model. `None`: random for every pair.
    pub geo_floor: Option<Duration>,
}

impl Default for NetParams {
    fn default() -> Self {
        NetParams {
            latency_min: Duration::from_millis(5),
            latency_max: Duration::from_millis(50),
            jitter: Duration::from_millis(5),
            loss: 0.0,
            loss_mode: LossMode::Drop,
            connect_timeout: Duration::from_secs(1),
            geo_floor: None,
        }
    }
}

/// Everything a simulation is built from.
#[derive(Clone, Debug)]
pub struct SimParams {
    /// The one seed.
    pub seed: u64,
    /// The network.
    pub net: NetParams,
    /// Keep every notification in [`Sim::log`] (tests; costly for thousands of nodes).
    pub record: bool,
    /// Keep the last frame of each direction of each connection, for [`Sim::replay_frame`].
    pub keep_frames: bool,
    /// Hand a node everything that has arrived on a connection in one `Received` (as a
    /// TCP read does) instead of one `Received` per frame written.
    pub coalesce_reads: bool,
    /// How often a misbehaving member attacks its peers.
    pub misbehave_every: Duration,
    /// Capacity of the signature cache shared by all nodes (cost only, never outcomes).
    pub verify_cache: usize,
    /// Worker threads that hand nodes their events (cost only, never outcomes).
    pub threads: usize,
}

impl SimParams {
    /// Defaults with this seed.
    pub fn new(seed: u64) -> Self {
        SimParams {
            seed,
            net: NetParams::default(),
            record: false,
            keep_frames: false,
            coalesce_reads: false,
            misbehave_every: Duration::from_millis(250),
            verify_cache: 1 << 18,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        }
    }
}

/// Where a slot's node stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Running.
    Running,
    /// Crashed (can be restarted).
    Crashed,
    /// Left gracefully.
    Left,
}

/// Counters of the simulated network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetStats {
    /// Events handed to nodes.
    pub events: u64,
    /// Frames written.
    pub frames: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Frames lost (dropped, or causing a reset).
    pub frames_lost: u64,
    /// Connection ends reset (loss, crash, writes to a dead end).
    pub resets: u64,
    /// Dials asked for.
    pub dials: u64,
    /// Dials that failed.
    pub dials_failed: u64,
    /// Times a stream stalled at a cut.
    pub stalls: u64,
    /// Frames sent again on purpose (frame replays).
    pub frames_replayed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EndState {
    /// Not yet reported to its node.
    Pending,
    Open,
    /// Open, with a reset on its way to it.
    Resetting,
    Closed,
}

impl EndState {
    fn is_open(self) -> bool {
        matches!(self, EndState::Open | EndState::Resetting)
    }
}

#[derive(Debug)]
struct End {
    slot: SlotId,
    incarnation: u32,
    conn: ConnId,
    state: EndState,
}

#[derive(Debug)]
struct Connection {
    duplex: Duplex,
    ends: [End; 2],
    dialed: Addr,
    last_frame: [Option<Vec<u8>>; 2],
    stalled: [bool; 2],
}

impl Connection {
    fn end(&self, side: Side) -> &End {
        &self.ends[side.index()]
    }

    fn end_mut(&mut self, side: Side) -> &mut End {
        &mut self.ends[side.index()]
    }

    fn side_of(&self, slot: SlotId, conn: ConnId) -> Side {
        let d = self.end(Side::Dialer);
        if d.slot == slot && d.conn == conn {
            Side::Dialer
        } else {
            Side::Listener
        }
    }

    fn closed(&self) -> bool {
        self.ends.iter().all(|e| e.state == EndState::Closed)
    }
}

struct Slot {
    node: Option<Node>,
    config: Config,
    identity: Identity,
    state: SlotState,
    incarnation: u32,
    next_conn: u64,
    conns: BTreeMap<ConnId, u64>,
    wake_at: Option<Time>,
    misbehavior: Option<Misbehavior>,
    /// Whether it ever misbehaved (offenses against it are then not an honest node's).
    dishonest: bool,
    /// A stalled process reads nothing and runs no timer until then.
    stalled_until: Option<Time>,
    /// What arrived while stalled, handed over at once when the stall ends.
    held: Vec<Event>,
    old_advert: Option<SignedRumor>,
    attacks: u64,
    last_route_change: Option<Time>,
    /// Where it is, for geographic latency.
    place: Option<Position>,
}

impl Slot {
    fn running(&self) -> Option<&Node> {
        self.node
            .as_ref()
            .filter(|_| self.state == SlotState::Running)
    }
}

#[derive(Debug)]
enum Due {
    Wake(SlotId),
    Open(u64, Side),
    DialFailed {
        slot: SlotId,
        incarnation: u32,
        addr: Addr,
    },
    Arrive(u64, Side),
    Reset(u64, Side),
    Misbehave(SlotId, u32),
    Thaw(SlotId, u32),
}

/// A seeded, deterministic simulation of many nodes.
pub struct Sim {
    params: SimParams,
    now: Time,
    rng: ChaCha20Rng,
    /// What is due, by time; items due at the same time in the order they were queued.
    queue: BTreeMap<Time, VecDeque<Due>>,
    slots: Vec<Slot>,
    addrs: BTreeMap<Addr, SlotId>,
    by_node: BTreeMap<NodeId, SlotId>,
    conns: BTreeMap<u64, Connection>,
    next_conn: u64,
    groups: Vec<u32>,
    cuts: BTreeSet<(SlotId, SlotId)>,
    latency_overrides: BTreeMap<(SlotId, SlotId), Duration>,
    cache: VerifyCache,
    trace: Trace,
    stats: NetStats,
    log: Vec<Logged>,
    watches: BTreeMap<(NodeId, u64), Vec<Delivery>>,
    members: BTreeMap<(NodeId, MemberEvent), Tally>,
    /// Offenses counted against each node id by its direct peers.
    offenses: BTreeMap<NodeId, u64>,
    forged: BTreeSet<(NodeId, u64)>,
    /// Slots handed events by the last step.
    handled: Vec<SlotId>,
    /// While a window's queue items are taken: the events they hand to nodes.
    inbox: Option<Vec<(SlotId, Time, Input)>>,
    /// Hands nodes their shares of windows.
    lanes: Lanes,
    /// Dissemination totals of the running nodes, taken every so often ([`Sim::sample_every`]).
    sampler: Option<Sampler>,
}

/// When the next sample is due, how often, and those taken.
struct Sampler {
    every: Duration,
    next: Time,
    taken: Vec<(Time, Totals)>,
}

impl Sim {
    /// An empty simulation at time 0.
    pub fn new(params: SimParams) -> Self {
        Sim {
            rng: ChaCha20Rng::seed_from_u64(mix(params.seed)),
            cache: VerifyCache::new(params.verify_cache),
            lanes: Lanes::new(params.threads),
            params,
            now: Time::ZERO,
            queue: BTreeMap::new(),
            slots: Vec::new(),
            addrs: BTreeMap::new(),
            by_node: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_conn: 1,
            groups: Vec::new(),
            cuts: BTreeSet::new(),
            latency_overrides: BTreeMap::new(),
            trace: Trace::new(),
            stats: NetStats::default(),
            log: Vec::new(),
            watches: BTreeMap::new(),
            members: BTreeMap::new(),
            offenses: BTreeMap::new(),
            forged: BTreeSet::new(),
            handled: Vec::new(),
            inbox: None,
            sampler: None,
        }
    }

    /// Starts a node now with `config` and `identity`; it listens on `config.listen_addr`.
    ///
    /// # Panics
    /// When another slot already listens on that address.
    pub fn add(&mut self, config: Config, identity: Identity) -> Result<SlotId, ConfigError> {
        let slot = self.slots.len();
        assert!(
            !self.addrs.contains_key(&config.listen_addr),
            "{} is already in use",
            config.listen_addr
        );
        let node = Node::with_cache(
            config.clone(),
            identity.clone(),
            self.node_seed(slot, 0),
            self.now,
            self.cache.clone(),
        )?;
        self.addrs.insert(config.listen_addr.clone(), slot);
        self.by_node.entry(config.node_id).or_insert(slot);
        self.groups.push(0);
        self.slots.push(Slot {
            node: Some(node),
            config,
            identity,
            state: SlotState::Running,
            incarnation: 0,
            next_conn: 1,
            conns: BTreeMap::new(),
            wake_at: None,
            misbehavior: None,
            dishonest: false,
            stalled_until: None,
            held: Vec::new(),
            old_advert: None,
            attacks: 0,
            last_route_change: None,
            place: None,
        });
        self.trace.fault(self.now, slot, "start");
        self.schedule_wake(slot);
        Ok(slot)
    }

    fn node_seed(&self, slot: SlotId, incarnation: u32) -> [u8; 32] {
        let mut rng = ChaCha20Rng::seed_from_u64(mix(mix(self.params.seed)
            ^ ((slot as u64) << 24)
            ^ u64::from(incarnation)));
        let mut seed = [0; 32];
        rng.fill_bytes(&mut seed);
        seed
    }

    // ---- time -------------------------------------------------------------------------

    /// The current virtual time.
    pub fn now(&self) -> Time {
        self.now
    }

    fn push(&mut self, at: Time, due: Due) {
        self.queue
            .entry(at.max(self.now))
            .or_default()
            .push_back(due);
    }

    /// Whether the next queued item is a misbehaving node's attack.
    fn attack_next(&self) -> bool {
        self.queue
            .first_key_value()
            .is_some_and(|(_, items)| matches!(items.front(), Some(Due::Misbehave(..))))
    }

    /// Takes the next queued item if it is due before `end`.
    fn pop_before(&mut self, end: Time) -> Option<(Time, Due)> {
        let mut first = self.queue.first_entry()?;
        let at = *first.key();
        if at >= end {
            return None;
        }
        let due = first.get_mut().pop_front();
        if first.get().is_empty() {
            first.remove();
        }
        Some((at, due?))
    }

    /// Processes the next window of the queue: every item due before the first one's time
    /// plus the lookahead. Returns the time reached, `None` when nothing is queued.
    pub fn step(&mut self) -> Option<Time> {
        self.step_window(None)
    }

    /// The nodes handed events by the last [`Sim::step`] (to check invariants).
    pub fn handled(&self) -> &[SlotId] {
        &self.handled
    }

    /// How soon, at the least, anything a node does reaches another node.
    fn lookahead(&self) -> Duration {
        let net = &self.params.net;
        let overrides = self.latency_overrides.values().copied();
        overrides
            .chain([net.latency_min, net.connect_timeout])
            .chain(net.geo_floor)
            .min()
            .unwrap_or_default()
            .max(Duration::from_millis(1))
    }

    /// Runs one window, not past `until`: takes its queue items in (time, queued) order
    /// (reading pipes, opening and resetting connections), hands each node its share,
    /// then carries out the nodes' actions in (time, slot, order) order. A misbehaving
    /// node's attack is a window of its own.
    fn step_window(&mut self, until: Option<Time>) -> Option<Time> {
        let first = self.next_due()?;
        let mut end = first + self.lookahead();
        if let Some(until) = until {
            end = end.min(until + Duration::from_millis(1));
        }
        self.handled.clear();
        if self.attack_next() {
            let (at, due) = self.pop_before(end)?;
            self.now = self.now.max(at);
            self.dispatch(at, due);
            return Some(self.now);
        }
        self.inbox = Some(Vec::new());
        while !self.attack_next()
            && let Some((at, due)) = self.pop_before(end)
        {
            self.now = self.now.max(at);
            self.dispatch(at, due);
        }
        let inbox = self.inbox.take().unwrap_or_default();
        self.run_lanes(inbox, end);
        Some(self.now)
    }

    /// Hands every node its share of the window (on worker threads when there is enough),
    /// then carries out what they did in (time, slot, order) order.
    fn run_lanes(&mut self, inbox: Vec<(SlotId, Time, Input)>, end: Time) {
        let mut shares: BTreeMap<SlotId, Vec<(Time, Input)>> = BTreeMap::new();
        for (slot, at, input) in inbox {
            shares.entry(slot).or_default().push((at, input));
        }
        let slots: Vec<SlotId> = shares.keys().copied().collect();
        // Running nodes are lent to the lanes and given back after.
        let lanes: Vec<Lane> = shares
            .into_iter()
            .filter_map(|(slot, share)| {
                let s = &mut self.slots[slot];
                let node = s.node.take_if(|_| s.state == SlotState::Running)?;
                Some(Lane { slot, node, share })
            })
            .collect();
        let outputs = self.lanes.run(lanes, end);
        let mut items = Vec::new();
        for (lane, out) in outputs {
            let slot = lane.slot;
            self.slots[slot].node = Some(lane.node);
            self.stats.events += out.handled;
            if out.handled > 0 {
                self.handled.push(slot);
            }
            items.extend(out.items.into_iter().map(|(at, item)| (at, slot, item)));
        }
        self.handled.sort_unstable();
        // Stable: each slot's items keep their order.
        items.sort_by_key(|&(at, slot, _)| (at, slot));
        let reached = self.now;
        for (at, slot, item) in items {
            match item {
                Output::Record(record) => self.trace.push(record),
                Output::Act(action) => {
                    self.now = at;
                    self.apply(slot, action);
                }
            }
        }
        self.now = reached.max(self.now);
        for slot in slots {
            self.schedule_wake(slot);
        }
    }

    /// When the next queued item is due.
    pub fn next_due(&self) -> Option<Time> {
        self.queue.first_key_value().map(|(&at, _)| at)
    }

    /// Runs everything due up to `until`, then sets the clock to it.
    pub fn run_until(&mut self, until: Time) {
        while self.next_due().is_some_and(|t| t <= until) {
            self.step_window(Some(until));
            self.sample();
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until `done` holds (checked now and every `poll`) or `deadline` passes;
    /// returns the time at which it held.
    pub fn run_until_true(
        &mut self,
        deadline: Time,
        poll: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Time> {
        loop {
            if done(self) {
                return Some(self.now);
            }
            if self.now >= deadline {
                return None;
            }
            let next = (self.now + poll).min(deadline);
            self.run_until(next);
        }
    }

    fn dispatch(&mut self, at: Time, due: Due) {
        match due {
            Due::Wake(slot) => {
                if self.slots[slot].wake_at == Some(at) {
                    self.slots[slot].wake_at = None;
                }
                if self.slots[slot].stalled_until.is_some() {
                    return;
                }
                if let Some(inbox) = self.inbox.as_mut() {
                    inbox.push((slot, at, Input::Wake));
                }
            }
            Due::Open(id, side) => self.open(id, side),
            Due::DialFailed {
                slot,
                incarnation,
                addr,
            } => {
                if self.slots[slot].incarnation == incarnation {
                    self.hand(slot, Event::ConnectFailed { addr });
                }
            }
            Due::Arrive(id, side) => self.arrive(id, side),
            Due::Reset(id, side) => self.reset_end(id, side),
            Due::Misbehave(slot, incarnation) => {
                let s = &self.slots[slot];
                if s.incarnation == incarnation
                    && s.running().is_some()
                    && let Some(how) = s.misbehavior
                {
                    self.attack(slot, how);
                    let next = self.now + self.params.misbehave_every;
                    self.push(next, Due::Misbehave(slot, incarnation));
                }
            }
            Due::Thaw(slot, incarnation) => {
                if self.slots[slot].incarnation == incarnation {
                    self.thaw(slot);
                }
            }
        }
    }

    fn schedule_wake(&mut self, slot: SlotId) {
        let s = &self.slots[slot];
        let Some(next) = s.running().and_then(Node::next_wakeup) else {
            return;
        };
        let next = next.max(self.now);
        if s.wake_at.is_none_or(|w| next < w) {
            self.slots[slot].wake_at = Some(next);
            self.push(next, Due::Wake(slot));
        }
    }

    /// Hands `event` to the node in `slot`: in the window's share of the node when a window
    /// is being taken from the queue, at once otherwise.
    fn hand(&mut self, slot: SlotId, event: Event) {
        if self.slots[slot].stalled_until.is_some() {
            self.slots[slot].held.push(event);
            return;
        }
        match self.inbox.as_mut() {
            Some(inbox) => inbox.push((slot, self.now, Input::Event(event))),
            None => self.deliver(slot, event),
        }
    }

    /// Hands `event` to the node in `slot` (if running) at once and carries out its actions.
    fn deliver(&mut self, slot: SlotId, event: Event) {
        let now = self.now;
        let s = &mut self.slots[slot];
        if s.state != SlotState::Running {
            return;
        }
        let Some(node) = s.node.as_mut() else {
            return;
        };
        self.trace.event(now, slot, &event);
        let actions = node.handle(now, event);
        self.stats.events += 1;
        self.handled.push(slot);
        self.execute(slot, actions);
        self.schedule_wake(slot);
    }

    fn execute(&mut self, slot: SlotId, actions: Vec<Action>) {
        for action in actions {
            self.trace.action(self.now, slot, &action);
            self.apply(slot, action);
        }
    }

    /// Carries out one action of the node in `slot`, now.
    fn apply(&mut self, slot: SlotId, action: Action) {
        match action {
            Action::Connect { addr } => self.dial(slot, addr),
            Action::Send { conn, bytes } => self.send(slot, conn, bytes),
            Action::Close { conn, .. } => self.close(slot, conn),
            Action::Notify(n) => self.observe(slot, n),
        }
    }
}
