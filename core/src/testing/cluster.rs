//! The in-memory cluster harness, in the manner of quinn-proto's `Pair`: nodes joined by
//! zero-latency in-order pipes, virtual time, and taps that drop, delay or rewrite frames.
//! It is the one delivery loop of the tests, benchmarks and fuzz targets: `step` delivers
//! one event, `drive` delivers until quiet, `drive_for` advances virtual time, waking each
//! node at its timers.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::pool::identity;
use crate::wire::LinkMessage;
use crate::{
    Action, Addr, CloseReason, Config, ConnId, Direction, Event, Identity, Node, Notification,
    RejectReason, Time,
};

/// What a tap does with one frame in flight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tap {
    /// Deliver it.
    Deliver,
    /// Lose it.
    Drop,
    /// Deliver these bytes instead.
    Replace(Vec<u8>),
    /// Deliver it this much later (frames after it on the connection may overtake it).
    Delay(Duration),
}

/// A tap: sees each frame as `(from slot, to slot, bytes)` and decides its fate.
pub type TapFn = Box<dyn FnMut(usize, usize, &[u8]) -> Tap + Send + Sync>;

/// Steps past which [`Cluster::drive`] calls the traffic a storm and panics.
const STORM: usize = 1_000_000;

#[derive(Clone, Debug)]
struct Delivery {
    to: usize,
    event: Event,
}

/// Nodes in slots, the connections between them, the events in flight and what the test
/// looks at afterwards. A clone copies everything but the tap.
pub struct Cluster {
    /// The nodes by slot (`None`: crashed).
    pub nodes: Vec<Option<Node>>,
    /// Virtual time.
    pub now: Time,
    /// conn id -> (owner slot, peer slot, peer's conn id)
    pairs: BTreeMap<ConnId, (usize, usize, ConnId)>,
    queue: VecDeque<Delivery>,
    /// Frames a tap delayed, with when they arrive.
    delayed: Vec<(Time, Delivery)>,
    next_conn: u64,
    /// Every notification: (slot, notification).
    pub notifications: Vec<(usize, Notification)>,
    /// Every Send seen: (from, to, the receiver's conn, bytes), for replay tests.
    pub captured: Vec<(usize, usize, ConnId, Vec<u8>)>,
    /// The tap every frame passes, if any.
    pub tap: Option<TapFn>,
    /// Deliver everything one node wrote on a connection in one `handle` call as a single
    /// read (as TCP often does), instead of one read per send.
    pub coalesce: bool,
    /// Nodes on one side of a partition: nothing crosses between them and the others.
    pub partition: Option<Vec<usize>>,
    /// Pairs of nodes that cannot reach each other (either way).
    pub blocked: Vec<(usize, usize)>,
    /// Every Connect asked: (from, address).
    pub dials: Vec<(usize, Addr)>,
    /// Every Close: (from, reason).
    pub closes: Vec<(usize, CloseReason)>,
    configs: Vec<Config>,
}

impl Clone for Cluster {
    fn clone(&self) -> Self {
        Cluster {
            nodes: self.nodes.clone(),
            now: self.now,
            pairs: self.pairs.clone(),
            queue: self.queue.clone(),
            delayed: self.delayed.clone(),
            next_conn: self.next_conn,
            notifications: self.notifications.clone(),
            captured: self.captured.clone(),
            tap: None,
            coalesce: self.coalesce,
            partition: self.partition.clone(),
            blocked: self.blocked.clone(),
            dials: self.dials.clone(),
            closes: self.closes.clone(),
            configs: self.configs.clone(),
        }
    }
}

impl Cluster {
    /// A node per config (slot `i` with pool identity `i` and RNG seed `[i; 32]`), started
    /// at 1 s and driven until quiet.
    pub fn new(configs: Vec<Config>) -> Self {
        Self::with_blocked(configs, Vec::new())
    }

    /// Like [`Cluster::new`], with the pairs `blocked` (by index) unable to connect or
    /// exchange frames from the start.
    pub fn with_blocked(configs: Vec<Config>, blocked: Vec<(usize, usize)>) -> Self {
        let identities = (0..configs.len()).map(identity).collect();
        Self::start(configs, identities, blocked)
    }

    /// Like [`Cluster::new`] with the given identities.
    pub fn with_identities(configs: Vec<Config>, identities: Vec<Identity>) -> Self {
        Self::start(configs, identities, Vec::new())
    }

    fn start(
        configs: Vec<Config>,
        identities: Vec<Identity>,
        blocked: Vec<(usize, usize)>,
    ) -> Self {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            now: Time::from_millis(1_000),
            pairs: BTreeMap::new(),
            queue: VecDeque::new(),
            delayed: Vec::new(),
            next_conn: 1,
            notifications: Vec::new(),
            captured: Vec::new(),
            tap: None,
            coalesce: false,
            partition: None,
            blocked,
            dials: Vec::new(),
            closes: Vec::new(),
            configs: configs.clone(),
        };
        for (i, (c, id)) in configs.into_iter().zip(identities).enumerate() {
            let node = Node::new(c, id, [i as u8; 32], cluster.now).unwrap();
            cluster.nodes.push(Some(node));
        }
        cluster.tick_all();
        cluster
    }

    /// Adds a node later (slot = next index, pool identity of that slot).
    pub fn add(&mut self, config: Config) -> usize {
        let i = self.nodes.len();
        let node = Node::new(config.clone(), identity(i), [i as u8; 32], self.now).unwrap();
        self.configs.push(config);
        self.nodes.push(Some(node));
        self.deliver(i, Event::Tick);
        self.drive();
        i
    }

    /// The running node in slot `i`.
    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// The running node in slot `i`, mutably.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        self.nodes[i].as_mut().expect("node is running")
    }

    /// Crashes a node: its connections just drop, no leave.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
        let gone: Vec<ConnId> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.0 == i)
            .map(|(c, _)| *c)
            .collect();
        for conn in gone {
            self.drop_connection(conn);
        }
    }

    /// Ends the connection `conn` of its owner as a network failure would: both ends are
    /// told it is gone.
    pub fn drop_connection(&mut self, conn: ConnId) {
        if let Some((owner, peer, peer_conn)) = self.pairs.remove(&conn) {
            self.pairs.remove(&peer_conn);
            self.deliver(owner, Event::Disconnected { conn });
            self.deliver(peer, Event::Disconnected { conn: peer_conn });
        }
    }

    /// Queues `event` for slot `to`.
    pub fn deliver(&mut self, to: usize, event: Event) {
        self.queue.push_back(Delivery { to, event });
    }

    fn slot_of(&self, a: &Addr) -> Option<usize> {
        self.configs.iter().position(|c| &c.listen_addr == a)
    }

    /// Opens a connection from slot `from` to slot `to` as if `from` had dialed it;
    /// returns `from`'s and `to`'s connection ids (the events are queued).
    pub fn connect(&mut self, from: usize, to: usize) -> (ConnId, ConnId) {
        let a = ConnId(self.next_conn);
        let b = ConnId(self.next_conn + 1);
        self.next_conn += 2;
        self.pairs.insert(a, (from, to, b));
        self.pairs.insert(b, (to, from, a));
        let remote = self.configs[to].listen_addr.clone();
        let (outbound, inbound) = (Direction::Outbound, Direction::Inbound);
        let ephemeral = Addr::from(format!("ephemeral-{}", b.0));
        self.deliver(
            from,
            Event::Connected {
                conn: a,
                direction: outbound,
                remote,
            },
        );
        self.deliver(
            to,
            Event::Connected {
                conn: b,
                direction: inbound,
                remote: ephemeral,
            },
        );
        (a, b)
    }

    /// Carries out what slot `from` asked for.
    pub fn execute(&mut self, from: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Connect { addr } => {
                    self.dials.push((from, addr.clone()));
                    let reachable = |j: usize| self.nodes[j].is_some() && !self.cut(from, j);
                    match self.slot_of(&addr).filter(|&j| reachable(j)) {
                        Some(j) => {
                            self.connect(from, j);
                        }
                        None => self.deliver(from, Event::ConnectFailed { addr }),
                    }
                }
                Action::Send { conn, bytes } => self.send(from, conn, bytes),
                Action::Close { conn, reason } => {
                    self.closes.push((from, reason));
                    if let Some((_, to, peer_conn)) = self.pairs.remove(&conn) {
                        self.pairs.remove(&peer_conn);
                        self.deliver(to, Event::Disconnected { conn: peer_conn });
                    }
                }
                Action::Notify(n) => self.notifications.push((from, n)),
            }
        }
    }

    /// One frame from `from` on its connection `conn`, through the tap.
    fn send(&mut self, from: usize, conn: ConnId, bytes: Vec<u8>) {
        let Some(&(_, to, peer_conn)) = self.pairs.get(&conn) else {
            return;
        };
        self.captured.push((from, to, peer_conn, bytes.clone()));
        if self.cut(from, to) {
            return;
        }
        let bytes = match self.tap.as_mut().map(|t| t(from, to, &bytes)) {
            None | Some(Tap::Deliver) => bytes,
            Some(Tap::Drop) => return,
            Some(Tap::Replace(b)) => b,
            Some(Tap::Delay(d)) => {
                let event = Event::Received {
                    conn: peer_conn,
                    bytes,
                };
                self.delayed.push((self.now + d, Delivery { to, event }));
                return;
            }
        };
        // Bytes still queued for the same connection (with nothing after them on it) are
        // extended: one read carries both.
        if self.coalesce
            && let Some(Delivery {
                event: Event::Received { bytes: pending, .. },
                ..
            }) = self.queue.iter_mut().rev().find(|d| {
                d.to == to
                    && matches!(d.event, Event::Received { conn, .. }
                        | Event::Disconnected { conn } if conn == peer_conn)
            })
        {
            pending.extend_from_slice(&bytes);
            return;
        }
        let event = Event::Received {
            conn: peer_conn,
            bytes,
        };
        self.deliver(to, event);
    }

    /// Whether a partition or a block separates `a` and `b`.
    pub fn cut(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|side| side.contains(&a) != side.contains(&b))
            || self.blocked.contains(&(a, b))
            || self.blocked.contains(&(b, a))
    }

    /// Delivers the next queued event at the current time and carries out what it caused;
    /// false when nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some(Delivery { to, event }) = self.queue.pop_front() else {
            return false;
        };
        let now = self.now;
        if let Some(node) = self.nodes[to].as_mut() {
            let actions = node.handle(now, event);
            self.execute(to, actions);
        }
        true
    }

    /// Steps until nothing is queued (at the current time); panics on a storm of a million
    /// steps.
    pub fn drive(&mut self) {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            assert!(steps < STORM, "message storm");
        }
    }

    fn tick_all(&mut self) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(at, _)| *at <= self.now);
        self.delayed = later;
        self.queue.extend(due.into_iter().map(|(_, d)| d));
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .as_ref()
                .and_then(|n| n.next_wakeup())
                .is_some_and(|t| t <= self.now)
            {
                self.deliver(i, Event::Tick);
            }
        }
        self.drive();
    }

    /// Delivers what is queued, then advances virtual time by `ms`, waking nodes at their
    /// timers and delivering delayed frames when they are due; drives everything each
    /// causes.
    pub fn drive_for(&mut self, ms: u64) {
        let end = Time::from_millis(self.now.as_millis() + ms);
        // What is already queued happens now, not at the end.
        self.drive();
        loop {
            let timers = self.nodes.iter().flatten().filter_map(|n| n.next_wakeup());
            let next = timers.chain(self.delayed.iter().map(|(at, _)| *at)).min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.tick_all();
                }
                _ => break,
            }
        }
        self.now = end;
        self.tick_all();
    }

    /// Sends a link message from node `from` to its direct peer `to`, bypassing the rules.
    pub fn inject(&mut self, from: usize, to: usize, msg: &LinkMessage) {
        let conn = self
            .conn_between(from, to)
            .expect("a link between the two nodes");
        let now = self.now;
        let actions = self.node_mut(from).inject(now, conn, msg);
        self.execute(from, actions);
        self.drive();
    }

    /// `from`'s connection to `to`, if established.
    pub fn conn_between(&self, from: usize, to: usize) -> Option<ConnId> {
        let peer_fp = self.node(to).fingerprint();
        self.node(from)
            .peers()
            .into_iter()
            .find(|p| p.fingerprint == peer_fp)
            .map(|p| p.conn)
    }

    /// Whether `a` and `b` both run and have a link.
    pub fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].is_some() && self.nodes[b].is_some() && self.conn_between(a, b).is_some()
    }

    /// Notifications of one node.
    pub fn notes(&self, i: usize) -> impl Iterator<Item = &Notification> {
        self.notifications
            .iter()
            .filter(move |(n, _)| *n == i)
            .map(|(_, n)| n)
    }

    /// The rejections node `i` blamed its peers for (its offenses against them), in order.
    pub fn blamed(&self, i: usize) -> Vec<RejectReason> {
        self.notes(i)
            .filter_map(|n| match n {
                Notification::Rejected { reason, .. } if reason.blames_peer() => {
                    Some(reason.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Routes of node `i` as (destination, cost, path) triples.
    pub fn route_table(&self, i: usize) -> Vec<(u32, u64, Vec<u32>)> {
        self.node(i)
            .routes()
            .into_iter()
            .map(|r| {
                let path = r.path.iter().map(|a| a.0).collect();
                (r.destination.0, r.cost, path)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config, example_configs, link};

    #[test]
    fn the_example_cluster_converges_and_a_delayed_frame_arrives_late() {
        let mut c = Cluster::new(example_configs());
        c.drive_for(5_000);
        assert!(c.linked(0, 1) && c.linked(1, 2));
        assert_eq!(c.route_table(2).len(), c.route_table(0).len());
        // Every frame from 0 to 1 now waits 300 ms: none arrives sooner.
        c.tap = Some(Box::new(|from, _, _| match from {
            0 => Tap::Delay(Duration::from_millis(300)),
            _ => Tap::Deliver,
        }));
        let before = c.notes(1).count();
        let sent = c.captured.len();
        c.drive_for(1_200);
        assert!(
            c.captured[sent..]
                .iter()
                .any(|(from, to, ..)| (*from, *to) == (0, 1))
        );
        assert!(c.notes(1).count() >= before);
        assert!(c.linked(0, 1), "a 300 ms delay is no failure");
    }

    #[test]
    fn a_dropped_connection_is_redialed_and_a_clone_runs_on_its_own() {
        let configs = vec![
            config(0, 100, vec![link(200, 1, 1)], &[]),
            config(1, 200, vec![], &[0]),
        ];
        let mut c = Cluster::new(configs);
        c.drive_for(3_000);
        let conn = c.conn_between(1, 0).expect("linked");
        let copy = c.clone();
        c.drop_connection(conn);
        c.drive();
        assert_ne!(c.conn_between(1, 0), Some(conn), "that connection is gone");
        c.drive_for(3_000);
        assert!(c.linked(0, 1), "the dialer dials again");
        assert!(c.dials.iter().filter(|(from, _)| *from == 1).count() >= 2);
        assert_eq!(
            copy.conn_between(1, 0),
            Some(conn),
            "the clone kept its own link"
        );
    }
}
