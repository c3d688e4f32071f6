//! Shared machinery of the fuzz targets: a node under test (A) with one authenticated peer
//! (B) that can seal anything to it, both in the core's test harness (`testing::Cluster`)
//! with identities from its shared pool, a pool of genuinely signed rumors to pick and
//! mutate, structured operations the fuzzer composes, and the invariants checked after each
//! step.

#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use overlay_core::wire::{
    Announcement, AsLink, Digest, Handshake, Hello, HelloIdentity, LinkMessage, RumorContent,
    RumorId, RumorKey, SignedRumor, encode_frame, to_json,
};
use overlay_core::testing::{Cluster, identity};
use overlay_core::{
    Action, Addr, Asn, ClusterKey, Command, Config, ConnId, Direction, Event, Identity, NodeId,
    Notification, Time,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Node ids of the pool's extra origins.
const ORIGINS: [u32; 3] = [3, 4, 5];
/// Members A remembers: small, so that caps are reached.
const MAX_MEMBERS: usize = 16;

struct Fixture {
    a: Identity,
    b: Identity,
    others: Vec<Identity>,
    /// Genuine rumors of B and of the other origins.
    pool: Vec<SignedRumor>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (a, b) = (identity(0), identity(1));
        let others: Vec<Identity> = (0..ORIGINS.len()).map(|i| identity(2 + i)).collect();
        let mut pool = Vec::new();
        let signers = std::iter::once((NodeId(2), &b)).chain(ORIGINS.iter().map(|&o| NodeId(o)).zip(&others));
        for (origin, id) in signers {
            for seq in 1..=6u64 {
                let content = match seq {
                    5 => RumorContent::Leave { asn: Asn(origin.0 * 100) },
                    6 => RumorContent::Accuse {
                        accused: NodeId(1),
                        fingerprint: a.fingerprint().to_hex(),
                        reason: "fuzz".into(),
                    },
                    _ => RumorContent::Advert {
                        asn: Asn(origin.0 * 100),
                        addr: Addr::from(format!("10.0.0.{}:1450", origin.0)),
                        links: [AsLink { asn: Asn(100), capacity: seq, cost: seq }].into(),
                        cert: None,
                        peers: Some([NodeId(2)].into()),
                    },
                };
                // Sequence numbers far above what B's own rounds reach in a run.
                pool.push(overlay_core::testing::sign_rumor(origin, 1_000 + seq, Time::ZERO, id, &mut rng, content).envelope(0, 0));
            }
        }
        Fixture { a, b, others, pool }
    })
}

fn cluster_key() -> ClusterKey {
    ClusterKey::from_bytes([42; 32])
}

/// A rumor from the pool, possibly altered.
#[derive(Arbitrary, Debug, Clone)]
pub struct Pick {
    index: u8,
    alter: Alter,
}

/// How a picked rumor is altered before it is sent.
#[derive(Arbitrary, Debug, Clone)]
pub enum Alter {
    /// As signed.
    None,
    /// Envelope sequence number changed (no longer matches the body).
    Seq(u16),
    /// Envelope origin changed.
    Origin(u8),
    /// Unsigned fields changed (legitimately mutable).
    AgeHops(u32, u8),
    /// One signature byte flipped.
    Sig(u16, u8),
}

/// One message B seals to A.
#[derive(Arbitrary, Debug, Clone)]
pub enum Msg {
    /// Eager push.
    Rumors(Vec<Pick>),
    /// Answer.
    Answer(Vec<Pick>),
    /// Announcements.
    IHave(Vec<(u8, Option<u8>, u16, u8)>),
    /// Graft (rumors, and origins to push again).
    Graft(Vec<(u8, Option<u8>, u16)>, Vec<u8>),
    /// Pull (rumors).
    Pull(Vec<(u8, Option<u8>, u16)>),
    /// Prune (origins).
    Prune(Vec<u8>),
    /// Digest.
    Digest(Option<(u8, Option<u8>)>, Option<(u8, Option<u8>)>, Vec<(u8, Option<u8>, u16)>, bool),
    /// Heartbeat.
    Heartbeat,
    /// Bye.
    Bye(String),
    /// Arbitrary plaintext.
    Raw(Vec<u8>),
}

/// One step of a fuzz run.
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    /// B seals a message to A; optional flips of plaintext bytes, then of sealed bytes;
    /// delivered in two chunks split at `split`.
    Send { msg: Msg, plain_flip: Option<(u16, u8)>, frame_flip: Option<(u16, u8)>, split: u16 },
    /// Raw bytes on A's link to B (not sealed).
    Garbage(Vec<u8>),
    /// A new inbound connection on A carrying a hello (or garbage).
    Inbound { hello: Option<FuzzHello>, extra: Vec<u8> },
    /// Time passes (at most 4 s: every gossip round signs adverts, which is slow).
    Advance(u16),
    /// B disconnects, then dials A again (a fresh handshake).
    Reconnect,
    /// An operator command on A.
    Command(FuzzCommand),
}

/// A hello from an unknown dialer.
#[derive(Arbitrary, Debug, Clone)]
pub struct FuzzHello {
    node: u8,
    asn: u8,
    version: u16,
    key: u8,
    right_cluster_key: bool,
    listen: String,
}

/// Operator commands.
#[derive(Arbitrary, Debug, Clone)]
pub enum FuzzCommand {
    /// Leave.
    Leave,
    /// New links.
    SetLinks(Vec<(u16, u8, u8)>),
    /// Dial.
    Connect(String),
}

fn id(origin: u8, subject: Option<u8>, seq: u16) -> RumorId {
    RumorId(NodeId(u32::from(origin % 8)), subject.map(|s| NodeId(u32::from(s % 8))), u64::from(seq))
}

fn rumor_ids(list: &[(u8, Option<u8>, u16)]) -> Vec<RumorId> {
    list.iter().map(|&(o, s, q)| id(o, s, q)).collect()
}

fn origin_ids(list: &[u8]) -> Vec<NodeId> {
    list.iter().map(|&o| id(o, None, 0).0).collect()
}

fn key(k: Option<(u8, Option<u8>)>) -> Option<RumorKey> {
    k.map(|(o, s)| id(o, s, 0).key())
}

/// Rumors picked from the pool and altered; the ids of those whose signature was broken
/// (and that no genuine copy in the same message carries) go to `forged`.
fn picks(p: &[Pick], forged: &mut BTreeSet<(NodeId, u64)>) -> Vec<SignedRumor> {
    let pool = &fixture().pool;
    let mut genuine = BTreeSet::new();
    let rumors = p
        .iter()
        .map(|pick| {
            let mut r = pool[usize::from(pick.index) % pool.len()].clone();
            match pick.alter {
                Alter::None => {
                    genuine.insert((r.origin, r.seq));
                }
                Alter::Seq(s) => r.seq = u64::from(s),
                Alter::Origin(o) => r.origin = NodeId(u32::from(o % 8)),
                Alter::AgeHops(age, hops) => {
                    r.age_ms = u64::from(age);
                    r.hops = u32::from(hops);
                    genuine.insert((r.origin, r.seq));
                }
                Alter::Sig(at, x) => {
                    let mut sig = r.sig.decode();
                    let i = usize::from(at) % sig.len();
                    sig[i] ^= x.max(1);
                    r.sig = sig.into();
                    forged.insert((r.origin, r.seq));
                }
            }
            r
        })
        .collect();
    forged.retain(|id| !genuine.contains(id));
    rumors
}

fn plaintext(msg: &Msg, forged: &mut BTreeSet<(NodeId, u64)>) -> Vec<u8> {
    let m = match msg {
        Msg::Rumors(p) => LinkMessage::Rumors { rumors: picks(p, forged) },
        Msg::Answer(p) => LinkMessage::Answer { rumors: picks(p, forged) },
        Msg::IHave(ids) => LinkMessage::IHave {
            ids: ids
                .iter()
                .map(|&(o, s, q, h)| {
                    let i = id(o, s, q);
                    Announcement(i.0, i.1, i.2, u32::from(h))
                })
                .collect(),
        },
        Msg::Graft(ids, origins) => LinkMessage::Graft {
            ids: rumor_ids(ids),
            origins: origin_ids(origins),
        },
        Msg::Pull(ids) => LinkMessage::Pull { ids: rumor_ids(ids) },
        Msg::Prune(origins) => LinkMessage::Prune { origins: origin_ids(origins) },
        Msg::Digest(after, upto, ids, reply) => LinkMessage::Digest(Digest {
            after: key(*after),
            upto: key(*upto),
            ids: rumor_ids(ids),
            reply: *reply,
        }),
        Msg::Heartbeat => LinkMessage::Heartbeat,
        Msg::Bye(reason) => LinkMessage::Bye { reason: reason.clone() },
        Msg::Raw(bytes) => return bytes.clone(),
    };
    to_json(&m)
}

fn flip(bytes: &mut [u8], f: Option<(u16, u8)>) {
    if let Some((at, x)) = f
        && !bytes.is_empty()
    {
        let i = usize::from(at) % bytes.len();
        bytes[i] ^= x;
    }
}

/// The node under test (A, slot 0), its peer (B, slot 1), and what the checks need.
#[derive(Clone)]
pub struct Pair {
    c: Cluster,
    next_conn: u64,
    accepted: BTreeSet<(NodeId, u64)>,
    /// Notifications already looked at.
    seen: usize,
}

fn config(node: u32, asn: u32, listen: &str) -> Config {
    let mut c = Config::new(NodeId(node), Asn(asn), Addr::from(listen), vec![cluster_key()]);
    c.gossip_period = Duration::from_secs(1);
    c.max_members = MAX_MEMBERS;
    c.max_peers = 4;
    c.reject_threshold = 20;
    c.ban_duration = Duration::from_secs(30);
    c.route_debounce = Some(Duration::ZERO);
    c
}

impl Default for Pair {
    fn default() -> Self {
        Self::new()
    }
}

impl Pair {
    /// A and B, linked and synced: built once, then cloned (RSA signing is slow).
    pub fn new() -> Self {
        static LINKED: OnceLock<Pair> = OnceLock::new();
        LINKED.get_or_init(Self::build).clone()
    }

    fn build() -> Self {
        let f = fixture();
        let configs = vec![config(1, 100, "a:1"), config(2, 200, "b:1")];
        let c = Cluster::with_identities(configs, vec![f.a.clone(), f.b.clone()]);
        let mut pair = Pair { c, next_conn: 0, accepted: BTreeSet::new(), seen: 0 };
        pair.c.connect(1, 0);
        pair.c.drive();
        pair.observe();
        pair
    }

    /// A's and B's ends of their link, when it is up.
    fn link(&self) -> Option<(ConnId, ConnId)> {
        Some((self.c.conn_between(0, 1)?, self.c.conn_between(1, 0)?))
    }

    /// Looks at A's new notifications: nothing is accepted twice.
    fn observe(&mut self) {
        for (slot, n) in &self.c.notifications[self.seen..] {
            if let (0, Notification::RumorAccepted { origin, seq, .. }) = (slot, n) {
                assert!(self.accepted.insert((*origin, *seq)), "({origin}, {seq}) accepted twice");
            }
        }
        self.seen = self.c.notifications.len();
    }

    /// Runs one operation and checks the invariants.
    pub fn step(&mut self, op: &Op) {
        let before = self.accepted.clone();
        let mut forged = BTreeSet::new();
        let now = self.c.now;
        match op {
            Op::Send { msg, plain_flip, frame_flip, split } => {
                let mut plain = plaintext(msg, &mut forged);
                // A flip in a signed body breaks its signature; one in an unsigned field
                // (age, hops) is legitimate: `check` compares stored bodies with the pool.
                flip(&mut plain, *plain_flip);
                let Some((ac, bc)) = self.link() else { return };
                for action in self.c.node_mut(1).inject_sealed(now, bc, &plain) {
                    if let Action::Send { mut bytes, .. } = action {
                        flip(&mut bytes, *frame_flip);
                        let cut = usize::from(*split) % (bytes.len() + 1);
                        let tail = bytes.split_off(cut);
                        self.c.deliver(0, Event::Received { conn: ac, bytes });
                        self.c.deliver(0, Event::Received { conn: ac, bytes: tail });
                    }
                }
            }
            Op::Garbage(bytes) => {
                if let Some((ac, _)) = self.link() {
                    self.c.deliver(0, Event::Received { conn: ac, bytes: bytes.clone() });
                }
            }
            Op::Inbound { hello, extra } => {
                // A stranger's connection, unknown to the harness: what A answers goes nowhere.
                let conn = ConnId(1_000_000 + self.next_conn);
                self.next_conn += 1;
                self.c.deliver(0, Event::Connected { conn, direction: Direction::Inbound, remote: Addr::from("x") });
                let mut bytes = hello.as_ref().map(|h| encode_frame(&to_json(&hello_of(h)))).unwrap_or_default();
                bytes.extend_from_slice(extra);
                self.c.deliver(0, Event::Received { conn, bytes });
                self.c.deliver(0, Event::Disconnected { conn });
            }
            Op::Advance(ms) => self.c.drive_for(u64::from(*ms % 4096)),
            Op::Reconnect => {
                if let Some((_, bc)) = self.link() {
                    self.c.drop_connection(bc);
                    self.c.drive();
                }
                self.c.connect(1, 0);
            }
            Op::Command(cmd) => {
                let command = match cmd {
                    FuzzCommand::Leave => Command::Leave,
                    FuzzCommand::SetLinks(links) => Command::SetLinks(
                        links.iter().map(|&(asn, cap, cost)| AsLink { asn: Asn(u32::from(asn)), capacity: u64::from(cap), cost: u64::from(cost) }).collect(),
                    ),
                    FuzzCommand::Connect(addr) => Command::Connect(Addr::from(addr.clone())),
                };
                self.c.deliver(0, Event::Command(command));
            }
        }
        self.c.drive();
        self.observe();
        // A forged copy is never accepted: whatever A accepted in this step is a
        // genuine copy (the peer may have sent one too), which `check` verifies below.
        for id in self.accepted.difference(&before) {
            if forged.contains(id) {
                assert!(self.genuinely_signed(id.0), "{id:?} stored with a broken signature");
            }
        }
        self.check();
    }

    /// Whether every rumor A stores for `origin` (membership and accusations of A) verifies
    /// under the origin's real key.
    fn genuinely_signed(&self, origin: NodeId) -> bool {
        let f = fixture();
        let key = match origin.0 {
            2 => &f.b,
            o => match ORIGINS.iter().position(|&x| x == o) {
                Some(i) => &f.others[i],
                None => return true,
            },
        };
        [None, Some(NodeId(1))].into_iter().all(|subject| {
            self.c
                .node(0)
                .stored_rumor(&RumorKey { origin, subject })
                .is_none_or(|r| key.public().verify(r.body.get().as_bytes(), &r.sig.decode()).is_ok())
        })
    }

    /// Invariants that hold after every step.
    fn check(&self) {
        let a = self.c.node(0);
        let s = a.sizes();
        let cfg = a.config();
        assert!(s.connections <= cfg.max_peers * 2 + 8, "{s:?}");
        assert!(s.members <= MAX_MEMBERS, "{s:?}");
        assert!(s.rumors <= MAX_MEMBERS * 2 && s.tombstones <= MAX_MEMBERS * 2, "{s:?}");
        assert!(s.per_link_keys <= 512 && s.rate_buckets <= MAX_MEMBERS, "{s:?}");
        assert!(s.missing <= MAX_MEMBERS * 2, "{s:?}");
        assert!(s.buffered_bytes <= 2 * (cfg.max_frame_bytes + 64), "{s:?}");
        let (off, bans, accused, evicted) = s.reputation;
        assert!(off <= MAX_MEMBERS && bans <= MAX_MEMBERS && accused <= MAX_MEMBERS && evicted <= MAX_MEMBERS);
        // Every stored rumor of the peer and the pool's origins is signed by its real key.
        for origin in std::iter::once(2).chain(ORIGINS) {
            assert!(self.genuinely_signed(NodeId(origin)), "a stored rumor of {origin} is not signed by its key");
        }
        let status = a.status();
        assert_eq!(a.next_wakeup().is_none(), status.left, "a running node always has a timer");
        let peers = a.peers();
        let unique: BTreeSet<_> = peers.iter().map(|p| p.fingerprint).collect();
        assert_eq!(unique.len(), peers.len(), "one link per peer");
    }
}

fn hello_of(h: &FuzzHello) -> Handshake {
    let f = fixture();
    let id = &f.others[usize::from(h.key) % f.others.len()];
    let key_id = if h.right_cluster_key { cluster_key().id() } else { format!("{:016x}", h.key) };
    let identity = HelloIdentity {
        version: h.version % 3,
        node: NodeId(u32::from(h.node % 8)),
        asn: Asn(u32::from(h.asn)),
        pubkey: id.public().der().to_vec(),
        nonce: [h.key; 32],
        ephemeral: [h.node; 32],
        listen: Addr::from(h.listen.clone()),
        key_id,
        // Fresh, or (odd keys) from long ago.
        issued_at: if h.key.is_multiple_of(2) { 1_000 } else { 0 },
        cert: None,
    };
    // A real member's proof, or a stranger's guess.
    let proof = if h.right_cluster_key {
        overlay_core::testing::hello_proof(&cluster_key(), &identity)
    } else {
        [h.asn; 32]
    };
    Handshake::Hello(Hello { identity, proof })
}
