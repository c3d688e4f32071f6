//! A small in-memory harness that drives 2–5 nodes: it executes their actions (connect,
//! send, close), delivers bytes in order with zero latency, advances virtual time, and
//! lets a test drop, corrupt, capture or inject frames on purpose.

#![allow(dead_code, missing_docs)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;
use std::time::Duration;

use overlay_core::wire::LinkMessage;
use overlay_core::{
    Action, Addr, AsLink, Asn, CloseReason, ClusterKey, Config, ConnId, Direction, Event, Identity,
    Node, NodeId, Notification, Time,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Deterministic 2048-bit test identities, generated once per test binary.
pub fn identity(i: usize) -> Identity {
    static POOL: OnceLock<Vec<Identity>> = OnceLock::new();
    POOL.get_or_init(|| {
        (0..8)
            .map(|i| Identity::generate(&mut ChaCha20Rng::seed_from_u64(1000 + i), 2048).unwrap())
            .collect()
    })[i]
        .clone()
}

pub fn cluster_key(b: u8) -> ClusterKey {
    ClusterKey::from_bytes([b; 32])
}

pub fn link(asn: u32, capacity: u64, cost: u64) -> AsLink {
    AsLink {
        asn: Asn(asn),
        capacity,
        cost,
    }
}

pub fn addr(i: usize) -> Addr {
    Addr::from(format!("10.0.0.{}:1450", i + 1))
}

/// A config for slot `i` with a 1 s gossip period.
pub fn config(i: usize, asn: u32, links: Vec<AsLink>, bootstrap: &[usize]) -> Config {
    let mut c = Config::new(
        NodeId(i as u32 + 1),
        Asn(asn),
        addr(i),
        vec![cluster_key(7)],
    );
    c.links = links;
    c.bootstrap = bootstrap.iter().map(|&b| addr(b)).collect();
    c.gossip_period = Duration::from_secs(1);
    c.route_debounce = Some(Duration::ZERO);
    c.reject_threshold = 3;
    c
}

/// The example cluster of shared/fixtures/example: RC1/AS100, RC2/AS200, RC3/AS300.
pub fn example_configs() -> Vec<Config> {
    vec![
        config(
            0,
            100,
            vec![
                link(10, 2, 5),
                link(20, 5, 5),
                link(200, 10, 5),
                link(300, 10, 5),
            ],
            &[1, 2],
        ),
        config(
            1,
            200,
            vec![link(100, 10, 5), link(300, 100, 1), link(30, 10, 2)],
            &[0, 2],
        ),
        config(
            2,
            300,
            vec![link(100, 10, 5), link(200, 100, 1), link(40, 1, 3)],
            &[1],
        ),
    ]
}

/// All bytes sent in `actions`, in order.
pub fn sent_bytes(actions: &[Action]) -> Vec<u8> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

/// Two fresh nodes, not linked: a dialer (slot 1, AS200) and a listener (slot 0, AS100),
/// and the bytes the dialer sent when its connection (`ConnId(1)`) opened: its hello.
pub fn dialer_and_listener(now: Time) -> (Node, Node, Vec<u8>) {
    let mut dialer = Node::new(
        config(1, 200, vec![], &[0]),
        identity(1),
        [1; 32],
        Time::ZERO,
    )
    .unwrap();
    let listener = Node::new(
        config(0, 100, vec![], &[]),
        identity(0),
        [2; 32],
        Time::ZERO,
    )
    .unwrap();
    dialer.handle(now, Event::Tick);
    let opened = Event::Connected {
        conn: ConnId(1),
        direction: Direction::Outbound,
        remote: addr(0),
    };
    let hello = sent_bytes(&dialer.handle(now, opened));
    (dialer, listener, hello)
}

/// What the tap does with one frame in flight.
pub enum Tap {
    Deliver,
    Drop,
    Replace(Vec<u8>),
}

pub type TapFn = Box<dyn FnMut(usize, usize, &[u8]) -> Tap>;

struct Delivery {
    to: usize,
    event: Event,
}

pub struct Cluster {
    pub nodes: Vec<Option<Node>>,
    pub now: Time,
    /// conn id -> (owner slot, peer slot, peer's conn id)
    pairs: BTreeMap<ConnId, (usize, usize, ConnId)>,
    queue: VecDeque<Delivery>,
    next_conn: u64,
    pub notifications: Vec<(usize, Notification)>,
    /// Every Send seen: (from, to, bytes), for replay tests.
    pub captured: Vec<(usize, usize, ConnId, Vec<u8>)>,
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

impl Cluster {
    pub fn new(configs: Vec<Config>) -> Self {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            now: Time::from_millis(1_000),
            pairs: BTreeMap::new(),
            queue: VecDeque::new(),
            next_conn: 1,
            notifications: Vec::new(),
            captured: Vec::new(),
            tap: None,
            coalesce: false,
            partition: None,
            blocked: Vec::new(),
            dials: Vec::new(),
            closes: Vec::new(),
            configs: configs.clone(),
        };
        for (i, c) in configs.into_iter().enumerate() {
            let node = Node::new(c, identity(i), [i as u8; 32], cluster.now).unwrap();
            cluster.nodes.push(Some(node));
        }
        cluster.tick_all();
        cluster
    }

    /// Adds a node later (slot = next index).
    pub fn add(&mut self, config: Config) -> usize {
        let i = self.nodes.len();
        let node = Node::new(config.clone(), identity(i), [i as u8; 32], self.now).unwrap();
        self.configs.push(config);
        self.nodes.push(Some(node));
        self.deliver(i, Event::Tick);
        self.run();
        i
    }

    pub fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().expect("node is running")
    }

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
            if let Some((_, peer, peer_conn)) = self.pairs.remove(&conn) {
                self.pairs.remove(&peer_conn);
                self.queue.push_back(Delivery {
                    to: peer,
                    event: Event::Disconnected { conn: peer_conn },
                });
            }
        }
    }

    pub fn deliver(&mut self, to: usize, event: Event) {
        self.queue.push_back(Delivery { to, event });
    }

    fn slot_of(&self, a: &Addr) -> Option<usize> {
        self.configs.iter().position(|c| &c.listen_addr == a)
    }

    pub fn execute(&mut self, from: usize, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Connect { addr } => {
                    self.dials.push((from, addr.clone()));
                    let reachable = |j: usize| self.nodes[j].is_some() && !self.cut(from, j);
                    match self.slot_of(&addr).filter(|&j| reachable(j)) {
                        Some(j) => {
                            let a = ConnId(self.next_conn);
                            let b = ConnId(self.next_conn + 1);
                            self.next_conn += 2;
                            self.pairs.insert(a, (from, j, b));
                            self.pairs.insert(b, (j, from, a));
                            self.queue.push_back(Delivery {
                                to: from,
                                event: Event::Connected {
                                    conn: a,
                                    direction: Direction::Outbound,
                                    remote: addr,
                                },
                            });
                            self.queue.push_back(Delivery {
                                to: j,
                                event: Event::Connected {
                                    conn: b,
                                    direction: Direction::Inbound,
                                    remote: Addr::from(format!("ephemeral-{}", b.0)),
                                },
                            });
                        }
                        None => self.queue.push_back(Delivery {
                            to: from,
                            event: Event::ConnectFailed { addr },
                        }),
                    }
                }
                Action::Send { conn, bytes } => {
                    let Some(&(_, to, peer_conn)) = self.pairs.get(&conn) else {
                        continue;
                    };
                    self.captured.push((from, to, peer_conn, bytes.clone()));
                    if self.cut(from, to) {
                        continue;
                    }
                    let bytes = match self.tap.as_mut().map(|t| t(from, to, &bytes)) {
                        None | Some(Tap::Deliver) => bytes,
                        Some(Tap::Drop) => continue,
                        Some(Tap::Replace(b)) => b,
                    };
                    // Bytes still queued for the same connection (with nothing after them
                    // on it) are extended: one read carries both.
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
                        continue;
                    }
                    self.queue.push_back(Delivery {
                        to,
                        event: Event::Received {
                            conn: peer_conn,
                            bytes,
                        },
                    });
                }
                Action::Close { conn, reason } => {
                    self.closes.push((from, reason));
                    if let Some((_, to, peer_conn)) = self.pairs.remove(&conn) {
                        self.pairs.remove(&peer_conn);
                        self.queue.push_back(Delivery {
                            to,
                            event: Event::Disconnected { conn: peer_conn },
                        });
                    }
                }
                Action::Notify(n) => self.notifications.push((from, n)),
            }
        }
    }

    /// Whether a partition separates `a` and `b`.
    pub fn cut(&self, a: usize, b: usize) -> bool {
        self.partition
            .as_ref()
            .is_some_and(|side| side.contains(&a) != side.contains(&b))
            || self.blocked.contains(&(a, b))
            || self.blocked.contains(&(b, a))
    }

    /// Delivers everything queued (and what it causes) at the current time.
    pub fn run(&mut self) {
        let mut steps = 0;
        while let Some(Delivery { to, event }) = self.queue.pop_front() {
            steps += 1;
            assert!(steps < 1_000_000, "message storm");
            let now = self.now;
            let Some(node) = self.nodes[to].as_mut() else {
                continue;
            };
            let actions = node.handle(now, event);
            self.execute(to, actions);
        }
    }

    fn tick_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i]
                .as_ref()
                .and_then(|n| n.next_wakeup())
                .is_some_and(|t| t <= self.now)
            {
                self.deliver(i, Event::Tick);
            }
        }
        self.run();
    }

    /// Advances virtual time by `ms`, waking nodes at their requested times.
    pub fn advance(&mut self, ms: u64) {
        let end = Time::from_millis(self.now.as_millis() + ms);
        loop {
            let next = self
                .nodes
                .iter()
                .flatten()
                .filter_map(|n| n.next_wakeup())
                .min();
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
        self.run();
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

    /// Routes of node `i` as (destination, cost, path) triples.
    pub fn route_table(&self, i: usize) -> Vec<(u32, u64, Vec<u32>)> {
        self.node(i)
            .routes()
            .into_iter()
            .map(|r| {
                (
                    r.destination.0,
                    r.cost,
                    r.path.iter().map(|a| a.0).collect(),
                )
            })
            .collect()
    }
}
