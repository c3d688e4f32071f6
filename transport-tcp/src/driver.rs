//! The smol/async-io driver around one [`Node`]: it accepts and dials TCP connections,
//! feeds bytes, connection events, commands and wake-ups to [`Node::handle`], and executes
//! the returned actions. It makes no protocol decision. Resources are bounded: a write queue
//! per connection (a peer that does not drain it is dropped, never stalling the others),
//! fixed-size reads, a dial timeout, a cap on open connections and a bounded inbox.

use std::collections::{HashMap, VecDeque};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use overlay_core::{
    Action, Addr, Command, Config, ConfigError, ConnId, Direction, Event, Identity, Node,
    Notification, Time,
};
use serde::Serialize;
use smol::channel::{self, Receiver, Sender};
use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::{TcpListener, TcpStream};
use smol::{Task, Timer};
use thiserror::Error;
use tracing::{debug, info, trace, warn};

use crate::events::{self, Events, Notice};
use crate::telemetry::{Clock, Telemetry};

/// Resource bounds of the driver.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes queued for one connection before it is dropped as too slow.
    pub write_queue_bytes: usize,
    /// Size of one read from a socket.
    pub read_chunk: usize,
    /// Time allowed to open an outbound connection.
    pub dial_timeout: Duration,
    /// Time one queued write may take before the connection is dropped.
    pub write_stall: Duration,
    /// Time allowed, when closing or leaving, to flush queued writes and see the peer close.
    pub linger: Duration,
    /// Sockets held open: connections, those still closing (flushing or lingering) and
    /// dials in flight. Further inbound connections are closed at once.
    pub max_connections: usize,
    /// Inputs (reads, accepts, dial results, commands) waiting for the node.
    pub inbox: usize,
}

impl Limits {
    /// Bounds suited to a node configuration: the write queue holds at least four maximal
    /// frames, and connections are capped at twice `max_peers` plus headroom for joiners.
    pub fn for_config(config: &Config) -> Self {
        let mut limits = Limits {
            write_queue_bytes: 0,
            read_chunk: 64 * 1024,
            dial_timeout: Duration::from_secs(5),
            write_stall: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            max_connections: 0,
            inbox: 256,
        };
        limits.resize(config);
        limits
    }

    /// Sets the bounds that follow the configuration (the write queue and the connection
    /// cap), as at start and after a reconfiguration.
    pub fn resize(&mut self, config: &Config) {
        self.write_queue_bytes = (4 * config.max_frame_bytes).max(4 << 20);
        self.max_connections = 2 * config.max_peers + 16;
    }
}

/// Counters kept by the transport (the node keeps the protocol's own).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransportStats {
    /// Connections open now.
    pub connections: usize,
    /// Closed connections whose sockets are still flushing or lingering now.
    pub closing: usize,
    /// Outbound connections being opened now.
    pub dialing: usize,
    /// Inbound connections accepted.
    pub accepted: u64,
    /// Inbound connections closed at once because `max_connections` sockets were held
    /// (open, closing or dialing).
    pub refused: u64,
    /// Outbound connections attempted.
    pub dials: u64,
    /// Outbound connections that failed or timed out.
    pub dial_failures: u64,
    /// Connections dropped because their write queue was full or a write stalled.
    pub slow_peer_drops: u64,
    /// Bytes waiting in write queues now.
    pub queued_bytes: usize,
    /// Direct peers that came up.
    pub peers_up: u64,
    /// Direct peers that went down.
    pub peers_down: u64,
    /// Members that joined (or came back).
    pub members_joined: u64,
    /// Members that left gracefully.
    pub members_left: u64,
    /// Members that went silent past `advert_max_age`.
    pub members_expired: u64,
}

/// What the control API and embedders may read, inside the driver.
pub struct View<'a> {
    /// The node.
    pub node: &'a Node,
    /// Transport counters.
    pub stats: &'a TransportStats,
    /// Histograms and recent rejections.
    pub telemetry: &'a Telemetry,
    /// The node's time now (Unix milliseconds).
    pub now: Time,
    /// Time since the driver started.
    pub uptime: Duration,
}

/// The driver has stopped (the node left or the driver was dropped).
#[derive(Debug, Clone, Copy, Error)]
#[error("the node has stopped")]
pub struct Stopped;

type Inspector = Box<dyn FnOnce(&View<'_>) + Send>;

/// Fault injection (the `chaos` feature): changes the node, returns actions to execute.
#[cfg(feature = "chaos")]
type Tamper = Box<dyn FnOnce(&mut Node, Time) -> Vec<Action> + Send>;

/// What tasks tell the driver.
enum Input {
    Accepted(TcpStream, SocketAddr),
    Dialed(Addr, Result<TcpStream, String>),
    Bytes(ConnId, Vec<u8>),
    Closed(ConnId),
    Command(Command),
    /// A command whose refusal (or `None`) is sent back.
    Checked(Command, Sender<Option<ConfigError>>),
    Inspect(Inspector),
    #[cfg(feature = "chaos")]
    Tamper(Tamper),
}

/// A cloneable handle to a running driver: operator commands and read access.
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Input>,
    events: Events,
}

impl Handle {
    /// Hands an operator command to the node.
    pub async fn command(&self, command: Command) -> Result<(), Stopped> {
        self.tx
            .send(Input::Command(command))
            .await
            .map_err(|_| Stopped)
    }

    /// Hands an operator command to the node and returns why it was refused, if it was
    /// (e.g. a [`Command::Reconfigure`] with an invalid configuration).
    pub async fn checked(&self, command: Command) -> Result<Result<(), ConfigError>, Stopped> {
        let (reply, answer) = channel::bounded(1);
        self.tx
            .send(Input::Checked(command, reply))
            .await
            .map_err(|_| Stopped)?;
        let refused = answer.recv().await.map_err(|_| Stopped)?;
        Ok(refused.map_or(Ok(()), Err))
    }

    /// The node's operator events (see [`Events::subscribe`]).
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Runs `f` on the node's state inside the driver and returns its result.
    pub async fn inspect<R: Send + 'static>(
        &self,
        f: impl FnOnce(&View<'_>) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (reply, answer) = channel::bounded(1);
        let inspector: Inspector = Box::new(move |view| {
            let _ = reply.try_send(f(view));
        });
        self.tx
            .send(Input::Inspect(inspector))
            .await
            .map_err(|_| Stopped)?;
        answer.recv().await.map_err(|_| Stopped)
    }

    /// Fault injection (the `chaos` feature): runs `f` on the node inside the driver,
    /// executes the actions it returns as if the node had asked for them, and returns its
    /// result.
    #[cfg(feature = "chaos")]
    pub async fn tamper<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Node, Time) -> (Vec<Action>, R) + Send + 'static,
    ) -> Result<R, Stopped> {
        let (reply, answer) = channel::bounded(1);
        let tamper: Tamper = Box::new(move |node, now| {
            let (actions, result) = f(node, now);
            let _ = reply.try_send(result);
            actions
        });
        self.tx
            .send(Input::Tamper(tamper))
            .await
            .map_err(|_| Stopped)?;
        answer.recv().await.map_err(|_| Stopped)
    }
}

/// One open connection.
struct Conn {
    stream: TcpStream,
    remote: Addr,
    queue: Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    writer: Task<()>,
    _reader: Task<()>,
}

/// Drives one node over TCP until it leaves.
pub struct Driver {
    node: Node,
    clock: Clock,
    limits: Limits,
    conns: HashMap<ConnId, Conn>,
    next_conn: u64,
    tx: Sender<Input>,
    rx: Receiver<Input>,
    stats: TransportStats,
    telemetry: Telemetry,
    closing: Vec<Task<()>>,
    events: Events,
    /// The refusal of the command being handled, if any.
    refused: Option<ConfigError>,
    _accept: Task<()>,
}

impl Driver {
    /// A driver for a node built from `config` (whose `listen_addr` is `listener`'s
    /// address), `identity` and a 32-byte random `seed`. The node's [`Time`] is Unix
    /// milliseconds (see [`Clock`]).
    pub fn new(
        config: Config,
        identity: Identity,
        seed: [u8; 32],
        listener: TcpListener,
        limits: Limits,
    ) -> Result<(Driver, Handle), ConfigError> {
        let clock = Clock::start();
        let node = Node::new(config, identity, seed, clock.now())?;
        let (tx, rx) = channel::bounded(limits.inbox);
        let accept = smol::spawn(accept_loop(listener, tx.clone()));
        let driver = Driver {
            node,
            clock,
            limits,
            conns: HashMap::new(),
            next_conn: 1,
            tx: tx.clone(),
            rx,
            stats: TransportStats::default(),
            telemetry: Telemetry::default(),
            closing: Vec::new(),
            events: Events::default(),
            refused: None,
            _accept: accept,
        };
        let events = driver.events.clone();
        Ok((driver, Handle { tx, events }))
    }

    fn now(&self) -> Time {
        self.clock.now()
    }

    /// Runs until the node has left, then lets the last writes flush (bounded by `linger`).
    pub async fn run(mut self) {
        self.feed(Event::Tick);
        while let Some(wake) = self.node.next_wakeup() {
            let deadline = self.clock.instant(wake);
            let input = future::or(async { self.rx.recv().await.ok() }, async {
                Timer::at(deadline).await;
                None
            })
            .await;
            let event = match input {
                None => Some(Event::Tick),
                Some(input) => self.input(input),
            };
            if let Some(event) = event {
                self.feed(event);
            }
        }
        info!("left the network; flushing");
        for (_, conn) in self.conns.drain() {
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        let closing = std::mem::take(&mut self.closing);
        future::or(
            async {
                for task in closing {
                    task.await;
                }
            },
            async {
                Timer::after(self.limits.linger).await;
            },
        )
        .await;
    }

    /// Turns a task's report into an event for the node (if any).
    fn input(&mut self, input: Input) -> Option<Event> {
        match input {
            Input::Accepted(stream, peer) => {
                if self.sockets() >= self.limits.max_connections {
                    self.stats.refused += 1;
                    debug!(%peer, "inbound connection refused: max_connections sockets held");
                    let _ = stream.shutdown(Shutdown::Both);
                    return None;
                }
                self.stats.accepted += 1;
                Some(self.open(stream, Direction::Inbound, Addr::from(peer.to_string())))
            }
            Input::Dialed(addr, Ok(stream)) => {
                self.stats.dialing = self.stats.dialing.saturating_sub(1);
                Some(self.open(stream, Direction::Outbound, addr))
            }
            Input::Dialed(addr, Err(e)) => {
                self.stats.dialing = self.stats.dialing.saturating_sub(1);
                self.stats.dial_failures += 1;
                debug!(%addr, error = %e, "dial failed");
                Some(Event::ConnectFailed { addr })
            }
            Input::Bytes(conn, bytes) => self
                .conns
                .contains_key(&conn)
                .then_some(Event::Received { conn, bytes }),
            Input::Closed(conn) => self.drop_conn(conn).then_some(Event::Disconnected { conn }),
            Input::Command(command) => Some(Event::Command(command)),
            Input::Checked(command, reply) => {
                let reconfigure = matches!(command, Command::Reconfigure(_));
                self.refused = None;
                self.feed(Event::Command(command));
                let refused = self.refused.take();
                if reconfigure && refused.is_none() {
                    self.limits.resize(self.node.config());
                }
                let _ = reply.try_send(refused);
                None
            }
            Input::Inspect(f) => {
                self.stats.connections = self.conns.len();
                self.stats.closing = self.closing_count();
                self.stats.queued_bytes = self
                    .conns
                    .values()
                    .map(|c| c.queued.load(Ordering::Relaxed))
                    .sum();
                f(&View {
                    node: &self.node,
                    stats: &self.stats,
                    telemetry: &self.telemetry,
                    now: self.now(),
                    uptime: self.clock.uptime(),
                });
                None
            }
            #[cfg(feature = "chaos")]
            Input::Tamper(f) => {
                let now = self.now();
                let actions = f(&mut self.node, now);
                let events: Vec<Event> = actions
                    .into_iter()
                    .filter_map(|a| self.execute(a))
                    .collect();
                events.into_iter().for_each(|e| self.feed(e));
                None
            }
        }
    }

    /// Hands an event to the node and executes the actions, including those caused by
    /// connections the driver had to drop meanwhile.
    fn feed(&mut self, event: Event) {
        let mut events = VecDeque::from([event]);
        while let Some(event) = events.pop_front() {
            let now = self.now();
            self.telemetry.event(now, &event);
            let actions = self.node.handle(now, event);
            self.telemetry.actions(now, &actions);
            // Notifications first, while every connection they name is still known.
            for action in &actions {
                if let Action::Notify(n) = action {
                    self.notify(n);
                }
            }
            for action in actions {
                if let Some(event) = self.execute(action) {
                    events.push_back(event);
                }
            }
        }
    }

    fn execute(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Connect { addr } => {
                self.stats.dials += 1;
                self.stats.dialing += 1;
                let tx = self.tx.clone();
                let timeout = self.limits.dial_timeout;
                smol::spawn(async move {
                    let dial = async {
                        TcpStream::connect(addr.as_str())
                            .await
                            .map_err(|e| e.to_string())
                    };
                    let result = future::or(dial, async {
                        Timer::after(timeout).await;
                        Err(format!("timed out after {timeout:?}"))
                    })
                    .await;
                    let _ = tx.send(Input::Dialed(addr, result)).await;
                })
                .detach();
                None
            }
            Action::Send { conn, bytes } => {
                let c = self.conns.get(&conn)?;
                let queued = c.queued.load(Ordering::Relaxed);
                if queued + bytes.len() > self.limits.write_queue_bytes {
                    self.stats.slow_peer_drops += 1;
                    warn!(%conn, remote = %c.remote, queued, "write queue full: dropping the slow connection");
                    self.drop_conn(conn);
                    return Some(Event::Disconnected { conn });
                }
                c.queued.fetch_add(bytes.len(), Ordering::Relaxed);
                let _ = c.queue.try_send(bytes);
                None
            }
            Action::Close { conn, reason } => {
                if let Some(c) = self.conns.remove(&conn) {
                    debug!(%conn, remote = %c.remote, %reason, "closing");
                    // Dropping the queue's sender lets the writer flush what is queued,
                    // then shut the connection down.
                    self.closing_count();
                    self.closing.push(c.writer);
                }
                None
            }
            Action::Notify(_) => None,
        }
    }

    /// Registers a new connection and starts its reader and writer.
    fn open(&mut self, stream: TcpStream, direction: Direction, remote: Addr) -> Event {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let _ = stream.set_nodelay(true);
        let (queue, pending) = channel::unbounded();
        let queued = Arc::new(AtomicUsize::new(0));
        let reader = smol::spawn(read_loop(
            conn,
            stream.clone(),
            self.tx.clone(),
            self.limits.read_chunk,
        ));
        let writer = smol::spawn(write_loop(
            stream.clone(),
            pending,
            queued.clone(),
            self.limits.write_stall,
            self.limits.linger,
        ));
        trace!(%conn, %remote, ?direction, "connection open");
        self.conns.insert(
            conn,
            Conn {
                stream,
                remote: remote.clone(),
                queue,
                queued,
                writer,
                _reader: reader,
            },
        );
        Event::Connected {
            conn,
            direction,
            remote,
        }
    }

    /// File descriptors held for connections: open ones, closed ones still flushing or
    /// lingering, and dials in flight (a lingering socket holds its descriptor as long as
    /// an open one, so the cap on connections counts it).
    fn sockets(&mut self) -> usize {
        self.conns.len() + self.closing_count() + self.stats.dialing
    }

    /// Forgets the closing connections that have finished; returns how many are left.
    fn closing_count(&mut self) -> usize {
        self.closing.retain(|t| !t.is_finished());
        self.closing.len()
    }

    /// Forgets a connection without flushing; returns whether it was open.
    fn drop_conn(&mut self, conn: ConnId) -> bool {
        match self.conns.remove(&conn) {
            Some(c) => {
                let _ = c.stream.shutdown(Shutdown::Both);
                true
            }
            None => false,
        }
    }

    /// Logs a notification, counts it, and publishes its operator event.
    fn notify(&mut self, n: &Notification) {
        if let Notification::CommandFailed(e) = n {
            self.refused = Some(e.clone());
        }
        let conns = &self.conns;
        let remote = |conn: ConnId| {
            conns
                .get(&conn)
                .map_or_else(|| conn.to_string(), |c| c.remote.to_string())
        };
        events::log(n, remote);
        let counter = match n {
            Notification::PeerUp { .. } => Some(&mut self.stats.peers_up),
            Notification::PeerDown { .. } => Some(&mut self.stats.peers_down),
            Notification::MemberJoined { .. } => Some(&mut self.stats.members_joined),
            Notification::MemberLeft { .. } => Some(&mut self.stats.members_left),
            Notification::MemberExpired { .. } => Some(&mut self.stats.members_expired),
            _ => None,
        };
        if let Some(counter) = counter {
            *counter += 1;
        }
        if let Some(notice) = Notice::of(self.clock.now(), n) {
            self.events.publish(notice);
        }
    }
}

async fn accept_loop(listener: TcpListener, tx: Sender<Input>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if tx.send(Input::Accepted(stream, peer)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(error = %e, "accept failed");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn read_loop(conn: ConnId, mut stream: TcpStream, tx: Sender<Input>, chunk: usize) {
    let mut buf = vec![0u8; chunk];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let bytes = buf.get(..n).unwrap_or_default().to_vec();
                if tx.send(Input::Bytes(conn, bytes)).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Input::Closed(conn)).await;
}

/// Writes queued buffers in order. When the queue's sender is gone (close), flushes,
/// shuts the write side and waits (bounded) for the peer to close, so that the last frames
/// are not lost to a reset. A stalled or failed write shuts the connection down, which the
/// reader reports.
async fn write_loop(
    mut stream: TcpStream,
    pending: Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    stall: Duration,
    linger: Duration,
) {
    while let Ok(bytes) = pending.recv().await {
        let written = future::or(async { stream.write_all(&bytes).await.is_ok() }, async {
            Timer::after(stall).await;
            false
        })
        .await;
        if !written {
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        queued.fetch_sub(bytes.len(), Ordering::Relaxed);
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 4096];
    future::or(
        async { while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {} },
        async {
            Timer::after(linger).await;
        },
    )
    .await;
    let _ = stream.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_core::{Asn, ClusterKey, NodeId};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::io::Write;

    /// Polls the driver's counters until `done` holds (10 s at most).
    async fn wait_for(
        handle: &Handle,
        done: impl Fn(&TransportStats) -> bool + Clone + Send + 'static,
    ) {
        for _ in 0..200 {
            let d = done.clone();
            if handle.inspect(move |v| d(v.stats)).await.unwrap_or(false) {
                return;
            }
            Timer::after(Duration::from_millis(50)).await;
        }
        panic!("the driver's counters never got there");
    }

    #[test]
    fn sockets_still_lingering_after_a_close_count_against_the_connection_cap() {
        smol::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let key = ClusterKey::from_bytes([9; 32]);
            let config = Config::new(NodeId(1), Asn(100), Addr::from(addr.to_string()), vec![key]);
            let identity = Identity::generate(&mut ChaCha20Rng::seed_from_u64(1), 2048).unwrap();
            let mut limits = Limits::for_config(&config);
            limits.max_connections = 3;
            limits.linger = Duration::from_secs(20);
            let (driver, handle) =
                Driver::new(config, identity, [1; 32], listener, limits).unwrap();
            let running = smol::spawn(driver.run());
            // Each client sends an oversized length prefix: the node closes the connection,
            // and its socket lingers, waiting for a close the client never sends.
            let mut clients = Vec::new();
            for n in 1..=3 {
                let mut client = std::net::TcpStream::connect(addr).unwrap();
                client.write_all(&[0xff; 4]).unwrap();
                clients.push(client);
                wait_for(&handle, move |s| s.closing == n && s.connections == 0).await;
            }
            let fourth = std::net::TcpStream::connect(addr).unwrap();
            wait_for(&handle, |s| s.refused == 1).await;
            let stats = handle.inspect(|v| v.stats.clone()).await.unwrap();
            assert_eq!(
                (stats.accepted, stats.connections, stats.closing),
                (3, 0, 3)
            );
            drop((clients, fourth));
            drop(running);
        });
    }
}
