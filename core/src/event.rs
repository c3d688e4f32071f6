//! The node's vocabulary with its embedder: [`Event`]s in, [`Action`]s out, the
//! [`Notification`]s inside actions, typed reasons for closes and rejections, and the
//! [`Metrics`] counters (each component keeps its own; the node adds them up), and the
//! [`Outbox`] every component writes its actions into.

use std::collections::BTreeMap;

use serde::Serialize;
use thiserror::Error;

use crate::config::{Config, ConfigError};
use crate::identity::Fingerprint;
use crate::routing::RouteChange;
use crate::scheduler::Time;
use crate::wire::{Addr, AsLink, Asn, Certificate, ConnId, NodeId, WireError};

/// Which side opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A remote node dialed us.
    Inbound,
    /// We dialed (after an [`Action::Connect`]).
    Outbound,
}

/// Something the embedder tells the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A connection is open. For outbound ones `remote` is the address of the
    /// [`Action::Connect`] that asked for it.
    Connected {
        /// Handle chosen by the embedder.
        conn: ConnId,
        /// Who dialed.
        direction: Direction,
        /// Remote address (for inbound ones, as the transport sees it).
        remote: Addr,
    },
    /// A dial asked for by [`Action::Connect`] failed.
    ConnectFailed {
        /// The address that could not be reached.
        addr: Addr,
    },
    /// Bytes arrived on a connection, in any chunking.
    Received {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The connection is gone (closed by the remote side or failed).
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// Nothing happened but time passed: run due timers (every event does that too).
    Tick,
    /// An operator's command.
    Command(Command),
}

/// What an operator or embedding program can ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Leave the network gracefully: gossip a signed leave, close every link, stop.
    Leave,
    /// Replace own AS links and advertise them at once.
    SetLinks(Vec<AsLink>),
    /// Dial this address now.
    Connect(Addr),
    /// Use this renewed certificate from now on, and advertise it at once (refused with
    /// [`Notification::CommandFailed`] unless it certifies this node's id, AS and key).
    SetCertificate(Box<Certificate>),
    /// Run with this configuration from now on: links, bootstrap addresses, peer bounds,
    /// gossip period, limits, cluster keys and trust anchors. Links and reputation stay;
    /// changed links are advertised at once. Refused with [`Notification::CommandFailed`]
    /// (changing nothing) when invalid or when it changes the id, the AS or the listen
    /// address.
    Reconfigure(Box<Config>),
}

/// Something the node asks the embedder to do or wants it to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a connection and report it with [`Event::Connected`] (or [`Event::ConnectFailed`]).
    Connect {
        /// Where to dial.
        addr: Addr,
    },
    /// Write these bytes, in order, after everything sent before on this connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Flush what was sent, then close. The node has already forgotten the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// For the embedder's information.
    Notify(Notification),
}

/// What the embedder may want to know (log, metrics, UI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A handshake completed: a direct peer is up.
    PeerUp {
        /// The connection.
        conn: ConnId,
        /// The peer.
        node: NodeId,
        /// Its AS.
        asn: Asn,
        /// Where it listens.
        addr: Addr,
        /// Its key.
        fingerprint: Fingerprint,
    },
    /// A direct peer's link ended.
    PeerDown {
        /// The connection.
        conn: ConnId,
        /// The peer.
        node: NodeId,
        /// Why.
        reason: CloseReason,
    },
    /// A rumor was accepted as new (verified, stored, forwarded). For tracing dissemination:
    /// `from` is the direct peer it came from, `age_ms` how long it had been held on the way.
    RumorAccepted {
        /// Its origin.
        origin: NodeId,
        /// Its sequence number.
        seq: u64,
        /// The origin's clock when it signed (see `RumorBody::issued_at`).
        issued_at: Time,
        /// The direct peer that delivered it.
        from: NodeId,
        /// Milliseconds it had been held by nodes on the way (transit time not included).
        age_ms: u64,
        /// Links it crossed from its origin.
        hops: u32,
    },
    /// A controller was first heard of (or came back).
    MemberJoined {
        /// The member.
        node: NodeId,
        /// Its AS.
        asn: Asn,
        /// Where it listens.
        addr: Addr,
    },
    /// A controller left gracefully.
    MemberLeft {
        /// The member.
        node: NodeId,
    },
    /// A live member this node reached is no longer reached over two-way links (it
    /// crashed, or a partition cut it off): it is not routed through until reached again.
    MemberUnreachable {
        /// The member.
        node: NodeId,
    },
    /// A member that was cut off is reached again.
    MemberReachable {
        /// The member.
        node: NodeId,
    },
    /// A controller was silent past the advertisement age limit (a failure).
    MemberExpired {
        /// The member.
        node: NodeId,
    },
    /// A controller was evicted by a quorum of accusers.
    MemberEvicted {
        /// The member.
        node: NodeId,
        /// The accusers.
        accusers: Vec<NodeId>,
    },
    /// This node banned a direct peer and accused it to the network.
    PeerBanned {
        /// The peer.
        node: NodeId,
        /// Its key.
        fingerprint: Fingerprint,
        /// End of the ban.
        until: Time,
    },
    /// The routing table changed.
    RoutesChanged {
        /// One entry per destination whose route changed.
        changes: Vec<RouteChange>,
    },
    /// An operator command was refused (e.g. invalid links).
    CommandFailed(ConfigError),
    /// A frame or message was rejected.
    Rejected {
        /// The connection it came on.
        conn: ConnId,
        /// The direct peer, when authenticated.
        node: Option<NodeId>,
        /// Why.
        reason: RejectReason,
    },
}

/// Why a connection was closed.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The remote side closed it or it failed.
    #[error("connection lost")]
    Lost,
    /// The remote side said goodbye.
    #[error("peer closed: {0}")]
    Bye(String),
    /// This node is leaving.
    #[error("leaving")]
    Leaving,
    /// The handshake did not finish in time.
    #[error("handshake timeout")]
    HandshakeTimeout,
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    HandshakeFailed(RejectReason),
    /// The listener is at `max_peers` (it sent its peer list).
    #[error("peer at capacity")]
    AtCapacity,
    /// Nothing was heard for three heartbeat intervals.
    #[error("heartbeat timeout")]
    HeartbeatTimeout,
    /// Frames kept failing hop authentication (the link may have been tampered with).
    #[error("link reset after hop authentication failures")]
    HopAuthFailures,
    /// A frame's length prefix exceeded the maximum.
    #[error("frame too large")]
    FrameTooLarge,
    /// The peer sent too many invalid messages and is banned.
    #[error("peer banned")]
    Banned,
    /// The peer was evicted by a quorum.
    #[error("peer evicted")]
    Evicted,
    /// A second link to the same node.
    #[error("duplicate link")]
    DuplicateLink,
    /// This node dialed itself.
    #[error("connection to self")]
    SelfConnection,
    /// The peer's certificate expired and no renewed one arrived.
    #[error("peer's certificate expired")]
    CertificateExpired,
}

/// Why a frame or a message was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The frame failed hop authentication (not blamed on anyone).
    #[error("hop authentication failed")]
    HopAuth,
    /// The length prefix exceeded the maximum.
    #[error("frame too large")]
    FrameTooLarge,
    /// Not a valid message.
    #[error("malformed: {0}")]
    Malformed(String),
    /// Valid JSON that breaks a limit or a rule.
    #[error("protocol violation: {0}")]
    Violation(String),
    /// The origin's signature does not verify.
    #[error("bad origin signature")]
    BadSignature,
    /// The origin's public key is unusable.
    #[error("bad public key: {0}")]
    BadKey(String),
    /// The envelope disagrees with the signed body.
    #[error("envelope does not match the signed body")]
    EnvelopeMismatch,
    /// The peer sent a rumor it had already sent (or an older one) on this link.
    #[error("replayed rumor")]
    Replay,
    /// The origin sent rumors faster than `max_rumors_per_period`.
    #[error("rate limited")]
    RateLimited,
    /// Another key already speaks for this node id.
    #[error("identity conflict for {0}")]
    IdentityConflict(NodeId),
    /// The hello used a cluster key this node does not accept.
    #[error("unknown cluster key")]
    UnknownClusterKey,
    /// The cluster-key proof did not verify.
    #[error("bad cluster key proof")]
    BadProof,
    /// The handshake signature did not verify.
    #[error("bad handshake signature")]
    BadHandshakeSignature,
    /// Protocol version not spoken here.
    #[error("unsupported protocol version {0}")]
    Version(u16),
    /// The remote refused the handshake (unauthenticated reason).
    #[error("refused by peer: {0}")]
    Refused(String),
    /// Banned or evicted key.
    #[error("banned or evicted")]
    Excluded,
    /// The remote end is this node itself.
    #[error("connection to self")]
    SelfConnection,
    /// A message or rumor kind this version does not know (a newer version's): ignored.
    #[error("unknown to this version: {0}")]
    Unknown(String),
    /// A peer's requests past this round's budget: not answered, not blamed (a starved
    /// node reads several of the peer's rounds at once).
    #[error("requests past this round's budget")]
    Busy,
    /// The peer signed, with its own key, a rumor claiming another node id.
    #[error("signed for node id {0}, which is not the signer's")]
    Impersonation(NodeId),
    /// An accusation signed by an id that is not a live member bound to the signing key:
    /// ignored (an honest accuser's advertisement may simply not have arrived yet).
    #[error("accuser {0} is not a live member under that key")]
    NotMember(NodeId),
    /// A rumor whose signed issue time is past its lifetime, or ahead of this node's
    /// clock by more than the skew bound: ignored.
    #[error("issued outside its lifetime")]
    Untimely,
    /// Where the cluster has an authority: a hello or advertisement without a valid
    /// certificate for its id, AS and key, or another rumor from an id that is not a live
    /// certified member. Ignored (a relay cannot fix what the origin signed, and validity
    /// depends on clocks).
    #[error("not certified: {0}")]
    Uncertified(String),
}

impl RejectReason {
    /// Whether the direct peer is to blame when this arrives on an authenticated link.
    pub fn blames_peer(&self) -> bool {
        matches!(
            self,
            RejectReason::Malformed(_)
                | RejectReason::Violation(_)
                | RejectReason::BadSignature
                | RejectReason::BadKey(_)
                | RejectReason::EnvelopeMismatch
                | RejectReason::Replay
                | RejectReason::RateLimited
                | RejectReason::Impersonation(_)
        )
    }

    /// A short stable label, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::HopAuth => "hop_auth",
            RejectReason::FrameTooLarge => "frame_too_large",
            RejectReason::Malformed(_) => "malformed",
            RejectReason::Violation(_) => "violation",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::BadKey(_) => "bad_key",
            RejectReason::EnvelopeMismatch => "envelope_mismatch",
            RejectReason::Replay => "replay",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::IdentityConflict(_) => "identity_conflict",
            RejectReason::UnknownClusterKey => "unknown_cluster_key",
            RejectReason::BadProof => "bad_proof",
            RejectReason::BadHandshakeSignature => "bad_handshake_signature",
            RejectReason::Version(_) => "version",
            RejectReason::Refused(_) => "refused",
            RejectReason::Excluded => "excluded",
            RejectReason::SelfConnection => "self_connection",
            RejectReason::Unknown(_) => "unknown",
            RejectReason::Busy => "busy",
            RejectReason::Untimely => "untimely",
            RejectReason::NotMember(_) => "not_member",
            RejectReason::Impersonation(_) => "impersonation",
            RejectReason::Uncertified(_) => "uncertified",
        }
    }
}

impl From<WireError> for RejectReason {
    fn from(e: WireError) -> Self {
        match e {
            WireError::FrameTooLarge { .. } => RejectReason::FrameTooLarge,
            WireError::Malformed(m) => RejectReason::Malformed(m),
            WireError::Violation(m) => RejectReason::Violation(m),
            WireError::Unknown(m) => RejectReason::Unknown(m),
        }
    }
}

/// Counters since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metrics {
    /// Frames received (complete).
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Rumors received (before any check).
    pub rumors_in: u64,
    /// Rumors accepted as new.
    pub rumors_accepted: u64,
    /// Rumors dropped as duplicates or stale before any signature check.
    pub rumors_duplicate: u64,
    /// Rumors sent (counting each copy, pushed or answered).
    pub rumors_out: u64,
    /// Rumor ids announced to lazy links.
    pub announcements_out: u64,
    /// Rumor ids grafted from lazy links, or pulled from them when the origin's parent did
    /// not push (tree repairs).
    pub grafts_out: u64,
    /// Prunes sent (duplicate pushes).
    pub prunes_out: u64,
    /// Signatures verified.
    pub signatures_verified: u64,
    /// Rejections by reason label.
    pub rejects: BTreeMap<&'static str, u64>,
    /// Handshakes completed.
    pub handshakes: u64,
    /// Peers this node banned.
    pub bans: u64,
    /// Members evicted by quorum.
    pub evictions: u64,
    /// Routing table changes (destinations changed, summed).
    pub route_changes: u64,
}

impl Metrics {
    /// Adds `other`'s counts to these (the node's metrics are the sum of its components').
    pub(crate) fn absorb(&mut self, other: &Metrics) {
        self.frames_in += other.frames_in;
        self.frames_out += other.frames_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.rumors_in += other.rumors_in;
        self.rumors_accepted += other.rumors_accepted;
        self.rumors_duplicate += other.rumors_duplicate;
        self.rumors_out += other.rumors_out;
        self.announcements_out += other.announcements_out;
        self.grafts_out += other.grafts_out;
        self.prunes_out += other.prunes_out;
        self.signatures_verified += other.signatures_verified;
        for (label, n) in &other.rejects {
            *self.rejects.entry(label).or_default() += n;
        }
        self.handshakes += other.handshakes;
        self.bans += other.bans;
        self.evictions += other.evictions;
        self.route_changes += other.route_changes;
    }

    /// Counts one rejection.
    pub(crate) fn reject(&mut self, reason: &RejectReason) {
        *self.rejects.entry(reason.label()).or_default() += 1;
    }
}

/// The one sink of a node's actions: every component writes what it asks of the embedder
/// here, in order, and the node hands the lot out at the end of each call.
#[derive(Clone, Debug, Default)]
pub(crate) struct Outbox {
    actions: Vec<Action>,
}

impl Outbox {
    /// Queues an action.
    pub(crate) fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    /// Queues a notification.
    pub(crate) fn notify(&mut self, n: Notification) {
        self.actions.push(Action::Notify(n));
    }

    /// Everything queued so far, leaving the box empty.
    pub(crate) fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbed_metrics_add_up_field_by_field() {
        let mut a = Metrics {
            frames_in: 2,
            route_changes: 1,
            ..Metrics::default()
        };
        a.reject(&RejectReason::Replay);
        let mut b = Metrics {
            frames_in: 3,
            bans: 4,
            ..Metrics::default()
        };
        b.reject(&RejectReason::Replay);
        b.reject(&RejectReason::HopAuth);
        a.absorb(&b);
        assert_eq!((a.frames_in, a.bans, a.route_changes), (5, 4, 1));
        assert_eq!(a.rejects.get("replay"), Some(&2));
        assert_eq!(a.rejects.get("hop_auth"), Some(&1));
    }

    #[test]
    fn the_outbox_hands_out_actions_in_order_once() {
        let mut out = Outbox::default();
        out.push(Action::Connect {
            addr: Addr("a:1".into()),
        });
        out.notify(Notification::MemberLeft { node: NodeId(1) });
        let taken = out.take();
        assert!(matches!(
            taken.as_slice(),
            [Action::Connect { .. }, Action::Notify(_)]
        ));
        assert!(out.take().is_empty());
    }
}
