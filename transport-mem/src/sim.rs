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
use crate::trace::Trace;

pub use crate::lanes::SlotId;

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

/// A notification as it was logged.
#[derive(Clone, Debug)]
pub struct Logged {
    /// When.
    pub at: Time,
    /// Which node.
    pub slot: SlotId,
    /// What.
    pub note: Notification,
}

/// One acceptance of a watched rumor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The node that accepted it.
    pub slot: SlotId,
    /// The direct peer it came from.
    pub from: NodeId,
    /// When.
    pub at: Time,
}

/// Membership notifications, counted per subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberEvent {
    /// `MemberJoined`.
    Joined,
    /// `MemberLeft`.
    Left,
    /// `MemberExpired`.
    Expired,
    /// `MemberEvicted`.
    Evicted,
}

/// How often, first and last, a membership notification was seen about one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    /// How many notifications (over all nodes).
    pub count: u64,
    /// The first.
    pub first: Time,
    /// The last.
    pub last: Time,
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

    // ---- the network ------------------------------------------------------------------

    fn blocked(&self, a: SlotId, b: SlotId) -> bool {
        self.groups[a] != self.groups[b] || self.cuts.contains(&(a.min(b), a.max(b)))
    }

    /// The fixed one-way latency between two slots.
    pub fn latency(&self, a: SlotId, b: SlotId) -> Duration {
        let key = (a.min(b), a.max(b));
        if let Some(&d) = self.latency_overrides.get(&key) {
            return d;
        }
        let net = &self.params.net;
        let min = net.latency_min.as_millis() as u64;
        let span = (net.latency_max.as_millis() as u64).saturating_sub(min) + 1;
        let h = mix(mix(self.params.seed ^ 0x1a7e) ^ ((key.0 as u64) << 32 | key.1 as u64));
        Duration::from_millis(min + h % span)
    }

    fn frame_delay(&mut self, a: SlotId, b: SlotId) -> Duration {
        let jitter = self.params.net.jitter.as_millis() as u64;
        self.latency(a, b) + Duration::from_millis(below(&mut self.rng, jitter + 1))
    }

    fn listening(&self, slot: SlotId) -> bool {
        self.slots[slot].running().is_some()
    }

    fn dial(&mut self, from: SlotId, addr: Addr) {
        self.stats.dials += 1;
        let incarnation = self.slots[from].incarnation;
        let target = self.addrs.get(&addr).copied();
        let fail_at = match target {
            Some(to) if self.listening(to) && !self.blocked(from, to) => {
                let latency = self.latency(from, to);
                let id = self.next_conn;
                self.next_conn += 1;
                let ends = [from, to].map(|slot| {
                    let s = &mut self.slots[slot];
                    let conn = ConnId(s.next_conn);
                    s.next_conn += 1;
                    s.conns.insert(conn, id);
                    End {
                        slot,
                        incarnation: s.incarnation,
                        conn,
                        state: EndState::Pending,
                    }
                });
                self.conns.insert(
                    id,
                    Connection {
                        duplex: Duplex::new(),
                        ends,
                        dialed: addr,
                        last_frame: [None, None],
                        stalled: [false; 2],
                    },
                );
                self.push(self.now + latency, Due::Open(id, Side::Listener));
                self.push(self.now + latency * 2, Due::Open(id, Side::Dialer));
                return;
            }
            Some(to) if !self.blocked(from, to) => self.now + self.latency(from, to) * 2,
            _ => self.now + self.params.net.connect_timeout,
        };
        self.stats.dials_failed += 1;
        self.push(
            fail_at,
            Due::DialFailed {
                slot: from,
                incarnation,
                addr,
            },
        );
    }

    fn open(&mut self, id: u64, side: Side) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.end(side).state != EndState::Pending {
            return;
        }
        c.end_mut(side).state = EndState::Open;
        let (slot, conn) = (c.end(side).slot, c.end(side).conn);
        let dialer = c.end(Side::Dialer).slot;
        let pending = c.duplex.to(side).next_arrival();
        let remote = match side {
            Side::Dialer => c.dialed.clone(),
            Side::Listener => Addr::from(format!("{}~{id}", self.slots[dialer].config.listen_addr)),
        };
        let direction = match side {
            Side::Dialer => Direction::Outbound,
            Side::Listener => Direction::Inbound,
        };
        self.hand(
            slot,
            Event::Connected {
                conn,
                direction,
                remote,
            },
        );
        if let Some(at) = pending {
            self.push(at, Due::Arrive(id, side));
        }
    }

    fn send(&mut self, from: SlotId, conn: ConnId, bytes: Vec<u8>) {
        let Some(&id) = self.slots[from].conns.get(&conn) else {
            return;
        };
        let keep = self.params.keep_frames || self.slots[from].misbehavior.is_some();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let side = c.side_of(from, conn);
        let to = c.end(side.other()).slot;
        if !c.end(side).state.is_open() {
            return;
        }
        self.stats.frames += 1;
        self.stats.bytes += bytes.len() as u64;
        if c.end(side.other()).state == EndState::Closed {
            // The other end is closed: the write reaches it and is answered by a reset.
            if !self.blocked(from, to) {
                self.schedule_reset_after(id, side, 2);
            }
            return;
        }
        if keep {
            c.last_frame[side.index()] = Some(bytes.clone());
        }
        let mut late = Duration::ZERO;
        let net = &self.params.net;
        if net.loss > 0.0 && chance(&mut self.rng, net.loss) {
            self.stats.frames_lost += 1;
            match net.loss_mode {
                LossMode::Drop => return,
                LossMode::Reset => {
                    self.schedule_reset_after(id, side, 1);
                    self.schedule_reset_after(id, side.other(), 1);
                    return;
                }
                LossMode::Retransmit { rto_ms } => late = Duration::from_millis(rto_ms),
            }
        }
        let at = self.now + self.frame_delay(from, to) + late;
        if let Some(c) = self.conns.get_mut(&id)
            && let Some(arrival) = c.duplex.from(side).write(at, bytes)
        {
            self.push(arrival, Due::Arrive(id, side.other()));
        }
    }

    fn arrive(&mut self, id: u64, side: Side) {
        let blocked = match self.conns.get(&id) {
            Some(c) => self.blocked(c.end(side).slot, c.end(side.other()).slot),
            None => return,
        };
        let (now, coalesce) = (self.now, self.params.coalesce_reads);
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if !c.end(side).state.is_open() {
                return;
            }
            if blocked {
                if !c.stalled[side.index()] {
                    c.stalled[side.index()] = true;
                    self.stats.stalls += 1;
                }
                return;
            }
            let (slot, conn) = (c.end(side).slot, c.end(side).conn);
            let pipe = c.duplex.to(side);
            let bytes = if coalesce {
                Some(pipe.read(now)).filter(|b| !b.is_empty())
            } else {
                pipe.read_chunk(now)
            };
            match bytes {
                Some(bytes) => self.hand(slot, Event::Received { conn, bytes }),
                None => {
                    if pipe.at_eof(now) {
                        c.end_mut(side).state = EndState::Closed;
                        self.slots[slot].conns.remove(&conn);
                        self.remove_if_closed(id);
                        self.hand(slot, Event::Disconnected { conn });
                    }
                    return;
                }
            }
        }
    }

    /// The node in `from` closed `conn`: flush, then the other end reads end of stream.
    fn close(&mut self, from: SlotId, conn: ConnId) {
        let Some(id) = self.slots[from].conns.remove(&conn) else {
            return;
        };
        let now = self.now;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let side = c.side_of(from, conn);
        let to = c.end(side.other()).slot;
        c.end_mut(side).state = EndState::Closed;
        c.duplex.to(side).clear();
        let other_open = c.end(side.other()).state != EndState::Closed;
        let latency = self.latency(from, to);
        if other_open && let Some(c) = self.conns.get_mut(&id) {
            let eof = c.duplex.from(side).close(now + latency);
            self.push(eof, Due::Arrive(id, side.other()));
        }
        self.remove_if_closed(id);
    }

    /// Resets one end of a connection after `latencies` one-way latencies.
    fn schedule_reset_after(&mut self, id: u64, side: Side, latencies: u32) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let end = c.end_mut(side);
        if matches!(end.state, EndState::Closed | EndState::Resetting) {
            return;
        }
        if end.state == EndState::Open {
            end.state = EndState::Resetting;
        }
        let (a, b) = (c.end(side).slot, c.end(side.other()).slot);
        let at = self.now + self.latency(a, b) * latencies;
        self.push(at, Due::Reset(id, side));
    }

    /// Tells one end its connection is gone (or, for a dial not yet answered, that it failed).
    fn reset_end(&mut self, id: u64, side: Side) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let end = c.end(side);
        let (slot, conn, state, incarnation) = (end.slot, end.conn, end.state, end.incarnation);
        if state == EndState::Closed {
            return;
        }
        c.end_mut(side).state = EndState::Closed;
        c.duplex.to(side).clear();
        c.duplex.from(side).clear();
        let dialed = c.dialed.clone();
        self.stats.resets += 1;
        self.remove_if_closed(id);
        if self.slots[slot].incarnation != incarnation {
            return;
        }
        self.slots[slot].conns.remove(&conn);
        match (state, side) {
            (EndState::Pending, Side::Dialer) => {
                self.hand(slot, Event::ConnectFailed { addr: dialed })
            }
            (EndState::Pending, Side::Listener) => {}
            _ => self.hand(slot, Event::Disconnected { conn }),
        }
    }

    fn remove_if_closed(&mut self, id: u64) {
        if self.conns.get(&id).is_some_and(Connection::closed) {
            self.conns.remove(&id);
        }
    }

    /// Ends every connection of `slot` as a process exit does: peers see a reset.
    fn exit(&mut self, slot: SlotId) {
        for (conn, id) in std::mem::take(&mut self.slots[slot].conns) {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let side = c.side_of(slot, conn);
            c.end_mut(side).state = EndState::Closed;
            c.duplex.to(side).clear();
            let other = c.end(side.other()).slot;
            if !self.blocked(slot, other) {
                self.schedule_reset_after(id, side.other(), 1);
            }
            self.remove_if_closed(id);
        }
        self.slots[slot].wake_at = None;
    }

    // ---- faults and commands ----------------------------------------------------------

    /// Hands an operator command to a running node.
    pub fn command(&mut self, slot: SlotId, command: Command) {
        self.deliver(slot, Event::Command(command));
    }

    /// Replaces a node's AS links (it advertises them at once).
    pub fn set_links(&mut self, slot: SlotId, links: Vec<AsLink>) {
        self.command(slot, Command::SetLinks(links));
    }

    /// Graceful leave: the node gossips its leave and says goodbye, then its process exits.
    pub fn leave(&mut self, slot: SlotId) {
        if self.slots[slot].running().is_none() {
            return;
        }
        self.command(slot, Command::Leave);
        self.trace.fault(self.now, slot, "leave");
        self.slots[slot].state = SlotState::Left;
        self.exit(slot);
    }

    /// Crash without leave: the node's state is lost; peers see their connections reset.
    pub fn crash(&mut self, slot: SlotId) {
        if self.slots[slot].running().is_none() {
            return;
        }
        self.trace.fault(self.now, slot, "crash");
        let s = &mut self.slots[slot];
        s.state = SlotState::Crashed;
        s.node = None;
        s.stalled_until = None;
        s.held.clear();
        self.exit(slot);
    }

    /// Gives a crashed node a fresh key: its next [`Sim::restart`] comes back under the
    /// same node id with a new identity (an operator who re-keyed it).
    pub fn rekey(&mut self, slot: SlotId, identity: Identity) {
        if self.slots[slot].state == SlotState::Crashed {
            self.trace.fault(self.now, slot, "rekey");
            self.slots[slot].identity = identity;
        }
    }

    /// Stalls a running node for `d`, as a CPU-starved process: it reads nothing and runs
    /// no timer meanwhile, then reads everything that arrived at once, late.
    pub fn stall(&mut self, slot: SlotId, d: Duration) {
        let s = &mut self.slots[slot];
        if s.running().is_none() || s.stalled_until.is_some() {
            return;
        }
        let until = self.now + d;
        s.stalled_until = Some(until);
        let incarnation = s.incarnation;
        self.trace
            .fault(self.now, slot, &format!("stall {}", d.as_millis()));
        self.push(until, Due::Thaw(slot, incarnation));
    }

    /// Ends a stall: what was held is handed to the node now, then its timers run.
    fn thaw(&mut self, slot: SlotId) {
        let s = &mut self.slots[slot];
        s.stalled_until = None;
        s.wake_at = None;
        for event in std::mem::take(&mut s.held) {
            self.hand(slot, event);
        }
        self.schedule_wake(slot);
    }

    /// Restarts a crashed node with the same configuration and identity (fresh state and
    /// RNG seed, as a restarted process).
    pub fn restart(&mut self, slot: SlotId) -> Result<(), ConfigError> {
        if self.slots[slot].state != SlotState::Crashed {
            return Ok(());
        }
        let incarnation = self.slots[slot].incarnation + 1;
        let s = &self.slots[slot];
        let node = Node::with_cache(
            s.config.clone(),
            s.identity.clone(),
            self.node_seed(slot, incarnation),
            self.now,
            self.cache.clone(),
        )?;
        let s = &mut self.slots[slot];
        s.node = Some(node);
        s.state = SlotState::Running;
        s.incarnation = incarnation;
        s.wake_at = None;
        s.old_advert = None;
        self.trace.fault(self.now, slot, "restart");
        self.schedule_wake(slot);
        if self.slots[slot].misbehavior.is_some() {
            self.push(self.now, Due::Misbehave(slot, incarnation));
        }
        Ok(())
    }

    /// Cuts the path between two nodes (streams stall, dials time out) until
    /// [`Sim::uncut`] or [`Sim::heal`].
    pub fn cut(&mut self, a: SlotId, b: SlotId) {
        self.trace.fault(self.now, a, &format!("cut {b}"));
        self.cuts.insert((a.min(b), a.max(b)));
    }

    /// Restores the path between two nodes.
    pub fn uncut(&mut self, a: SlotId, b: SlotId) {
        self.trace.fault(self.now, a, &format!("uncut {b}"));
        self.cuts.remove(&(a.min(b), a.max(b)));
        self.resume_stalled();
    }

    /// Splits the network: each listed group can reach only itself; unlisted slots form
    /// one more group.
    pub fn partition(&mut self, groups: &[Vec<SlotId>]) {
        self.trace
            .fault(self.now, 0, &format!("partition {groups:?}"));
        self.groups.iter_mut().for_each(|g| *g = 0);
        for (i, group) in groups.iter().enumerate() {
            for &slot in group {
                if let Some(g) = self.groups.get_mut(slot) {
                    *g = i as u32 + 1;
                }
            }
        }
        self.resume_stalled();
    }

    /// Removes every partition and cut; stalled streams resume.
    pub fn heal(&mut self) {
        self.trace.fault(self.now, 0, "heal");
        self.groups.iter_mut().for_each(|g| *g = 0);
        self.cuts.clear();
        self.resume_stalled();
    }

    fn resume_stalled(&mut self) {
        let mut resume = Vec::new();
        for (&id, c) in &mut self.conns {
            let (a, b) = (c.end(Side::Dialer).slot, c.end(Side::Listener).slot);
            let open =
                self.groups[a] == self.groups[b] && !self.cuts.contains(&(a.min(b), a.max(b)));
            for side in [Side::Dialer, Side::Listener] {
                if open && c.stalled[side.index()] {
                    c.stalled[side.index()] = false;
                    resume.push((id, side, a, b));
                }
            }
        }
        for (id, side, a, b) in resume {
            let at = self.now + self.latency(a, b);
            self.push(at, Due::Arrive(id, side));
        }
    }

    /// Sets the frame loss probability from now on.
    pub fn set_loss(&mut self, loss: f64, mode: LossMode) {
        self.trace
            .fault(self.now, 0, &format!("loss {loss} {mode:?}"));
        self.params.net.loss = loss;
        self.params.net.loss_mode = mode;
    }

    /// Fixes the one-way latency between two nodes.
    pub fn set_latency(&mut self, a: SlotId, b: SlotId, latency: Duration) {
        self.latency_overrides.insert((a.min(b), a.max(b)), latency);
    }

    /// Makes a node misbehave (or behave again with `None`) from now on.
    pub fn misbehave(&mut self, slot: SlotId, how: Option<Misbehavior>) {
        self.trace
            .fault(self.now, slot, &format!("misbehave {how:?}"));
        let was = std::mem::replace(&mut self.slots[slot].misbehavior, how);
        self.slots[slot].dishonest |= how.is_some();
        if was.is_none() && how.is_some() {
            let incarnation = self.slots[slot].incarnation;
            self.push(self.now, Due::Misbehave(slot, incarnation));
        }
    }

    fn attack(&mut self, slot: SlotId, how: Misbehavior) {
        let now = self.now;
        if how == Misbehavior::ReplayFrames {
            let peers: Vec<SlotId> = self.peer_slots(slot);
            for peer in peers {
                self.replay_frame(slot, peer);
            }
            return;
        }
        let s = &mut self.slots[slot];
        let Some(node) = s.node.as_mut() else {
            return;
        };
        if s.old_advert.is_none() {
            s.old_advert = node.advert_of(s.config.node_id);
        }
        let Some(attack) = attack(node, how, s.old_advert.as_ref(), &mut s.attacks) else {
            return;
        };
        self.forged.extend(attack.forged);
        let conns: Vec<ConnId> = node.peers().into_iter().map(|p| p.conn).collect();
        for conn in conns {
            let Some(node) = self.slots[slot].node.as_mut() else {
                return;
            };
            let actions = node.inject(now, conn, &attack.msg);
            self.execute(slot, actions);
        }
    }

    /// Sends the last frame `from` wrote to `to` again (needs `keep_frames`, or `from`
    /// misbehaving). Returns whether there was one.
    pub fn replay_frame(&mut self, from: SlotId, to: SlotId) -> bool {
        let found = self.conns.iter().find_map(|(&id, c)| {
            [Side::Dialer, Side::Listener].into_iter().find_map(|side| {
                let (me, peer) = (c.end(side), c.end(side.other()));
                let live = me.state.is_open() && peer.state.is_open();
                (live && me.slot == from && peer.slot == to)
                    .then(|| c.last_frame[side.index()].clone().map(|f| (id, side, f)))
                    .flatten()
            })
        });
        let Some((id, side, frame)) = found else {
            return false;
        };
        self.trace
            .fault(self.now, from, &format!("replay frame to {to}"));
        self.stats.frames_replayed += 1;
        let at = self.now + self.frame_delay(from, to);
        if let Some(c) = self.conns.get_mut(&id)
            && let Some(arrival) = c.duplex.from(side).write(at, frame)
        {
            self.push(arrival, Due::Arrive(id, side.other()));
        }
        true
    }

    // ---- observation ------------------------------------------------------------------

    fn observe(&mut self, slot: SlotId, note: Notification) {
        let now = self.now;
        let mut tally = |node: NodeId, kind: MemberEvent| {
            let t = self.members.entry((node, kind)).or_insert(Tally {
                count: 0,
                first: now,
                last: now,
            });
            t.count += 1;
            t.last = now;
        };
        match &note {
            Notification::RumorAccepted {
                origin, seq, from, ..
            } => {
                if let Some(v) = self.watches.get_mut(&(*origin, *seq)) {
                    v.push(Delivery {
                        slot,
                        from: *from,
                        at: now,
                    });
                }
            }
            Notification::RoutesChanged { .. } => self.slots[slot].last_route_change = Some(now),
            Notification::MemberJoined { node, .. } => tally(*node, MemberEvent::Joined),
            Notification::MemberLeft { node } => tally(*node, MemberEvent::Left),
            Notification::MemberExpired { node } => tally(*node, MemberEvent::Expired),
            Notification::MemberEvicted { node, .. } => tally(*node, MemberEvent::Evicted),
            Notification::Rejected {
                node: Some(node),
                reason,
                ..
            } if reason.blames_peer() => *self.offenses.entry(*node).or_default() += 1,
            _ => {}
        }
        if self.params.record {
            self.log.push(Logged {
                at: now,
                slot,
                note,
            });
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The node of a slot (running or left; `None` when crashed).
    pub fn node(&self, slot: SlotId) -> Option<&Node> {
        self.slots[slot].node.as_ref()
    }

    /// The configuration a slot was started with.
    pub fn config(&self, slot: SlotId) -> &Config {
        &self.slots[slot].config
    }

    /// The identity of a slot.
    pub fn identity(&self, slot: SlotId) -> &Identity {
        &self.slots[slot].identity
    }

    /// Where a slot stands.
    pub fn state(&self, slot: SlotId) -> SlotState {
        self.slots[slot].state
    }

    /// How many times a slot was restarted.
    pub fn incarnation(&self, slot: SlotId) -> u32 {
        self.slots[slot].incarnation
    }

    /// The first slot started with this node id.
    pub fn slot_of(&self, node: NodeId) -> Option<SlotId> {
        self.by_node.get(&node).copied()
    }

    /// Slots whose node is running.
    pub fn running(&self) -> Vec<SlotId> {
        (0..self.slots.len())
            .filter(|&s| self.slots[s].running().is_some())
            .collect()
    }

    /// Slots of running nodes directly linked to `slot`.
    pub fn peer_slots(&self, slot: SlotId) -> Vec<SlotId> {
        let Some(node) = self.slots[slot].running() else {
            return Vec::new();
        };
        node.peers()
            .iter()
            .filter_map(|p| self.addrs.get(&p.addr).copied())
            .collect()
    }

    /// The misbehavior set for a slot.
    pub fn misbehavior(&self, slot: SlotId) -> Option<Misbehavior> {
        self.slots[slot].misbehavior
    }

    /// The hash of the event log.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Network counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Every notification, if [`SimParams::record`] is set.
    pub fn log(&self) -> &[Logged] {
        &self.log
    }

    /// Starts recording the acceptances of rumor `(origin, seq)`.
    pub fn watch(&mut self, origin: NodeId, seq: u64) {
        self.watches.entry((origin, seq)).or_default();
    }

    /// Acceptances of a watched rumor, in order.
    pub fn deliveries(&self, origin: NodeId, seq: u64) -> &[Delivery] {
        self.watches.get(&(origin, seq)).map_or(&[], Vec::as_slice)
    }

    /// Membership notifications about `node` of one kind, over all nodes.
    pub fn member_events(&self, node: NodeId, kind: MemberEvent) -> Option<Tally> {
        self.members.get(&(node, kind)).copied()
    }

    /// Offenses counted against `node` by its direct peers (rejections that blame it).
    pub fn offenses_against(&self, node: NodeId) -> u64 {
        self.offenses.get(&node).copied().unwrap_or(0)
    }

    /// Offenses counted against, and evictions of, the node ids of slots that never
    /// misbehaved: `(honest_offenses, honest_evictions)`, both 0 when no honest node was
    /// ever blamed.
    pub fn honest_blame(&self) -> (u64, u64) {
        let honest: BTreeSet<NodeId> = self
            .slots
            .iter()
            .filter(|s| !s.dishonest)
            .map(|s| s.config.node_id)
            .collect();
        let offenses = honest.iter().map(|&n| self.offenses_against(n)).sum();
        let evictions = honest
            .iter()
            .filter_map(|&n| self.member_events(n, MemberEvent::Evicted))
            .map(|t| t.count)
            .sum();
        (offenses, evictions)
    }

    /// `(origin, seq)` pairs that misbehaving members sent without the origin's signature.
    pub fn forged(&self) -> &BTreeSet<(NodeId, u64)> {
        &self.forged
    }

    /// When a slot's routing table last changed.
    pub fn last_route_change(&self, slot: SlotId) -> Option<Time> {
        self.slots[slot].last_route_change
    }

    /// Bytes in flight in every pipe.
    pub fn in_flight(&self) -> usize {
        self.conns.values().map(|c| c.duplex.in_flight()).sum()
    }

    /// The reference view of the running nodes that `include` admits (their current links).
    pub fn reference(&self, include: impl Fn(SlotId) -> bool) -> Reference {
        Reference::new(
            self.running()
                .into_iter()
                .filter(|&s| include(s))
                .filter_map(|s| {
                    self.slots[s].running().map(|n| {
                        let c = n.config();
                        (c.node_id, c.asn, c.links.clone())
                    })
                }),
        )
    }

    /// Checks the routing tables of `slots` against `reference`; the error names the first
    /// node that differs and how.
    pub fn check_routes(&self, slots: &[SlotId], reference: &Reference) -> Result<(), String> {
        let mut by_asn: BTreeMap<Asn, _> = BTreeMap::new();
        for &slot in slots {
            let Some(node) = self.slots[slot].running() else {
                continue;
            };
            let asn = node.config().asn;
            let expected = by_asn
                .entry(asn)
                .or_insert_with(|| reference.routes_from(asn));
            reference
                .check_against(expected, &node.routes())
                .map_err(|e| format!("slot {slot} ({}): {e}", node.config().node_id))?;
        }
        Ok(())
    }
}
