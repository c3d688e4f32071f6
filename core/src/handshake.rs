//! The authenticated handshake (hello / welcome / finish) of one connection: the hello
//! this node sends, the checks on the other side's messages in the order PROTOCOL.md
//! gives (cluster-key proof and freshness before any identity lookup or RSA work), the
//! transcript, signatures and link keys, and the one refusal text. The swarm drives it.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::CryptoRng;
use x25519_dalek::{PublicKey as DhPublic, StaticSecret};

use crate::advertising::Advertising;
use crate::cert::Trust;
use crate::config::Config;
use crate::event::{Action, Outbox, RejectReason};
use crate::identity::{ClusterKey, Fingerprint, Identity, Keyring, Proof, PublicIdentity};
use crate::linkcrypto::{
    LinkCipher, Role, Transcript, derive_link_ciphers, handshake_signing_input,
};
use crate::reputation::Reputation;
use crate::routing::Routing;
use crate::scheduler::Time;
use crate::wire::{
    Addr, Asn, ConnId, Finish, Handshake, Hello, HelloIdentity, NodeId, PROTOCOL_VERSION, Refuse,
    Welcome, check_addr, check_peer_list, encode_frame, to_json,
};

/// An authenticated direct peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PeerInfo {
    /// Its controller id.
    pub node: NodeId,
    /// Its AS.
    pub asn: Asn,
    /// Its key.
    pub fingerprint: Fingerprint,
    /// Where it listens.
    pub listen: Addr,
    /// Where the cluster has an authority: until when its certificate is valid (with the
    /// clock-skew bound; later certificates from its advertisements extend it).
    pub certified_until: Option<Time>,
}

/// This node as the handshake needs it.
pub(crate) struct Me<'a> {
    /// Own identity.
    pub identity: &'a Identity,
    /// Accepted cluster keys.
    pub keyring: &'a Keyring,
    /// Own id, AS, listen address and certificate.
    pub config: &'a Config,
    /// The cluster's authorities, if it has any.
    pub trust: Option<&'a Trust>,
    /// Banned and evicted keys.
    pub reputation: &'a Reputation,
    /// The members, and so the key each live node id is bound to.
    pub routing: &'a Routing,
    /// The peers expected back after a transport failure (their slots are kept).
    pub adverts: &'a Advertising,
}

impl Me<'_> {
    /// Whether a key is banned or evicted.
    pub(crate) fn excluded(&self, fp: &Fingerprint) -> bool {
        self.reputation.is_excluded(fp)
    }

    /// The key a live node id is bound to, if any.
    pub(crate) fn bound(&self, node: NodeId) -> Option<Fingerprint> {
        self.routing.bound_key(node)
    }
}

/// The mutable things a swarm call works with: time, randomness, the actions sink.
pub(crate) struct Io<'a> {
    /// Current time.
    pub now: Time,
    /// The node's seeded RNG.
    pub rng: &'a mut ChaCha20Rng,
    /// Actions out.
    pub out: &'a mut Outbox,
}

/// Where a connection is in its life. The ephemeral secret is a `StaticSecret` only so
/// that a node can be cloned (simulator snapshots, fuzzing); it is used once.
#[derive(Clone)]
pub(crate) enum Phase {
    AwaitHello,
    AwaitWelcome {
        secret: StaticSecret,
        hello: HelloIdentity,
    },
    AwaitFinish {
        transcript: Transcript,
        key: ClusterKey,
        shared: [u8; 32],
        peer: PeerInfo,
        public: PublicIdentity,
    },
    Established {
        peer: PeerInfo,
        tx: LinkCipher,
        rx: LinkCipher,
        hop_failures: u32,
    },
}

pub(crate) enum Step {
    Wait(Phase),
    Refused {
        peers: Vec<Addr>,
    },
    Established {
        peer: PeerInfo,
        tx: LinkCipher,
        rx: LinkCipher,
        learned: Vec<Addr>,
    },
}

pub(crate) fn send_plain(conn: ConnId, msg: &Handshake, out: &mut Outbox) {
    out.push(Action::Send {
        conn,
        bytes: encode_frame(&to_json(msg)),
    });
}

pub(crate) fn hello_identity<R: CryptoRng + ?Sized>(
    me: &Me<'_>,
    now: Time,
    secret: &StaticSecret,
    key: &ClusterKey,
    rng: &mut R,
) -> HelloIdentity {
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    HelloIdentity {
        version: PROTOCOL_VERSION,
        node: me.config.node_id,
        asn: me.config.asn,
        pubkey: me.identity.public().der().to_vec(),
        nonce,
        ephemeral: DhPublic::from(secret).to_bytes(),
        listen: me.config.listen_addr.clone(),
        key_id: key.id(),
        issued_at: now.as_millis(),
        cert: me.config.certificate.clone(),
    }
}

/// Checks the other side's hello identity (and, with an authority, its certificate);
/// returns its key and peer record.
pub(crate) fn check_identity(
    me: &Me<'_>,
    now: Time,
    h: &HelloIdentity,
) -> Result<(PublicIdentity, PeerInfo), RejectReason> {
    if h.version != PROTOCOL_VERSION {
        return Err(RejectReason::Version(h.version));
    }
    check_addr(&h.listen).map_err(RejectReason::from)?;
    let public =
        PublicIdentity::from_der(&h.pubkey).map_err(|e| RejectReason::BadKey(e.to_string()))?;
    let fp = public.fingerprint();
    if fp == me.identity.fingerprint() {
        return Err(RejectReason::SelfConnection);
    }
    if me.excluded(&fp) {
        return Err(RejectReason::Excluded);
    }
    if me.bound(h.node).is_some_and(|b| b != fp) || h.node == me.config.node_id {
        return Err(RejectReason::IdentityConflict(h.node));
    }
    let certified_until = me
        .trust
        .map(|trust| trust.certifies(now, h.cert.as_ref(), h.node, h.asn, &fp))
        .transpose()
        .map_err(|e| RejectReason::Uncertified(e.to_string()))?;
    let peer = PeerInfo {
        node: h.node,
        asn: h.asn,
        fingerprint: fp,
        listen: h.listen.clone(),
        certified_until,
    };
    Ok((public, peer))
}

/// Refuses a hello with one text for every reason but the version (which a dialer of
/// another version needs to hear): the reason itself (a live id, a ban) stays here.
pub(crate) fn refuse(conn: ConnId, reason: RejectReason, out: &mut Outbox) -> RejectReason {
    let text = match reason {
        RejectReason::Version(_) => reason.to_string(),
        _ => REFUSED.to_string(),
    };
    send_plain(
        conn,
        &Handshake::Refuse(Refuse {
            reason: text,
            at_capacity: false,
            peers: Vec::new(),
        }),
        out,
    );
    reason
}

/// The dialer's proof of the cluster key over its hello.
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub fn hello_proof(key: &ClusterKey, hello: &HelloIdentity) -> [u8; 32] {
    key.prove(Proof::Hello, &Transcript::new().hello(hello).digest())
}

/// The text of every refused hello but a version mismatch.
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub const REFUSED: &str = "handshake refused";

/// Most hello nonces remembered: past it, hellos are refused as busy until the oldest
/// nonces age out.
pub(crate) const HELLO_NONCES: usize = 4096;

/// The nonces of the hellos accepted recently, so that a recorded hello cannot be replayed
/// to make this node sign. A hello is accepted only within `window` of this node's clock,
/// so a nonce is remembered for twice that after it arrived, and then it is forgotten: a
/// replay after that is refused as stale.
#[derive(Clone)]
pub(crate) struct SeenHellos {
    window: Duration,
    order: VecDeque<([u8; 32], Time)>,
    set: HashSet<[u8; 32]>,
}

impl SeenHellos {
    pub(crate) fn new(window: Duration) -> Self {
        SeenHellos {
            window,
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Accepts a hello issued at `issued_at` (Unix ms) with `nonce`, arriving at `now`.
    fn admit(&mut self, now: Time, issued_at: u64, nonce: [u8; 32]) -> Result<(), RejectReason> {
        let window = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        if issued_at.abs_diff(now.as_millis()) > window {
            return Err(RejectReason::Untimely);
        }
        while let Some(&(old, at)) = self.order.front() {
            if now.since(at) <= self.window * 2 {
                break;
            }
            self.order.pop_front();
            self.set.remove(&old);
        }
        if self.set.contains(&nonce) {
            return Err(RejectReason::Violation("replayed hello".into()));
        }
        if self.order.len() >= HELLO_NONCES {
            return Err(RejectReason::Busy);
        }
        self.set.insert(nonce);
        self.order.push_back((nonce, now));
        Ok(())
    }
}

/// Whether there is room for a link to this peer (its hello checked).
pub(crate) type Room<'a> = &'a dyn Fn(&PeerInfo) -> bool;

pub(crate) fn on_hello(
    me: &Me<'_>,
    hello: Hello,
    (peers, room): (Vec<Addr>, Room<'_>),
    seen: &mut SeenHellos,
    conn: ConnId,
    io: &mut Io<'_>,
) -> Result<Step, RejectReason> {
    let (now, out) = (io.now, &mut *io.out);
    let Hello {
        identity: hello,
        proof,
    } = hello;
    if hello.version != PROTOCOL_VERSION {
        return Err(refuse(conn, RejectReason::Version(hello.version), out));
    }
    // The cluster key first: nothing about this node's members, bans or bindings is looked
    // at, let alone said, before the dialer has shown it holds the key with a fresh hello;
    // and only such a dialer gets RSA work.
    let key = me
        .keyring
        .by_id(&hello.key_id)
        .ok_or_else(|| refuse(conn, RejectReason::UnknownClusterKey, out))?
        .clone();
    let hello_digest = Transcript::new().hello(&hello).digest();
    if !key.check_proof(Proof::Hello, &hello_digest, &proof) {
        return Err(refuse(conn, RejectReason::BadProof, out));
    }
    seen.admit(now, hello.issued_at, hello.nonce)
        .map_err(|reason| refuse(conn, reason, out))?;
    let (public, peer) = check_identity(me, now, &hello).map_err(|r| match r {
        RejectReason::SelfConnection => r,
        other => refuse(conn, other, out),
    })?;
    if !room(&peer) {
        send_plain(
            conn,
            &Handshake::Refuse(Refuse {
                reason: "at capacity".into(),
                at_capacity: true,
                peers,
            }),
            out,
        );
        return Ok(Step::Refused { peers: Vec::new() });
    }
    let secret = StaticSecret::random_from_rng(io.rng);
    let ours = hello_identity(me, now, &secret, &key, io.rng);
    let mut transcript = Transcript::new();
    transcript.hello(&hello).hello(&ours).addrs(&peers);
    let t1 = transcript.digest();
    let welcome = Welcome {
        identity: ours,
        peers,
        proof: key.prove(Proof::Welcome, &t1),
        sig: me
            .identity
            .sign(io.rng, &handshake_signing_input(Role::Listener, &t1)),
    };
    send_plain(conn, &Handshake::Welcome(welcome), io.out);
    let shared = secret
        .diffie_hellman(&DhPublic::from(hello.ephemeral))
        .to_bytes();
    Ok(Step::Wait(Phase::AwaitFinish {
        transcript,
        key,
        shared,
        peer,
        public,
    }))
}

pub(crate) fn on_welcome(
    me: &Me<'_>,
    secret: StaticSecret,
    ours: HelloIdentity,
    welcome: Welcome,
    peers: Vec<Addr>,
    conn: ConnId,
    io: &mut Io<'_>,
) -> Result<Step, RejectReason> {
    let (public, peer) = check_identity(me, io.now, &welcome.identity)?;
    if welcome.identity.key_id != ours.key_id {
        return Err(RejectReason::UnknownClusterKey);
    }
    let key = me
        .keyring
        .by_id(&ours.key_id)
        .ok_or(RejectReason::UnknownClusterKey)?;
    check_peer_list(&welcome.peers).map_err(RejectReason::from)?;
    let mut transcript = Transcript::new();
    transcript
        .hello(&ours)
        .hello(&welcome.identity)
        .addrs(&welcome.peers);
    let t1 = transcript.digest();
    if !key.check_proof(Proof::Welcome, &t1, &welcome.proof) {
        return Err(RejectReason::BadProof);
    }
    public
        .verify(&handshake_signing_input(Role::Listener, &t1), &welcome.sig)
        .map_err(|_| RejectReason::BadHandshakeSignature)?;
    let t2 = transcript.addrs(&peers).digest();
    let finish = Finish {
        peers,
        proof: key.prove(Proof::Finish, &t2),
        sig: me
            .identity
            .sign(io.rng, &handshake_signing_input(Role::Dialer, &t2)),
    };
    send_plain(conn, &Handshake::Finish(finish), io.out);
    let shared = secret
        .diffie_hellman(&DhPublic::from(welcome.identity.ephemeral))
        .to_bytes();
    let (tx, rx) = derive_link_ciphers(key, &shared, &t2, Role::Dialer);
    Ok(Step::Established {
        peer,
        tx,
        rx,
        learned: welcome.peers,
    })
}

pub(crate) fn on_finish(
    mut transcript: Transcript,
    key: &ClusterKey,
    shared: &[u8; 32],
    peer: PeerInfo,
    public: &PublicIdentity,
    finish: Finish,
) -> Result<Step, RejectReason> {
    check_peer_list(&finish.peers).map_err(RejectReason::from)?;
    let t2 = transcript.addrs(&finish.peers).digest();
    if !key.check_proof(Proof::Finish, &t2, &finish.proof) {
        return Err(RejectReason::BadProof);
    }
    public
        .verify(&handshake_signing_input(Role::Dialer, &t2), &finish.sig)
        .map_err(|_| RejectReason::BadHandshakeSignature)?;
    let (tx, rx) = derive_link_ciphers(key, shared, &t2, Role::Listener);
    Ok(Step::Established {
        peer,
        tx,
        rx,
        learned: finish.peers,
    })
}
