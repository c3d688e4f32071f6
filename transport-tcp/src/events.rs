//! What the driver tells the operator about the node's notifications: a log line each
//! ([`log`]), and the operator events ([`Notice`]: `member-join`,
//! `peer-down`, `route-change`, ...) published to subscribers ([`Events`]: the event
//! handlers, `GET /v1/events` and so `overlay-network watch`). A subscriber that does not
//! keep up loses events, counted, and never slows the node.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use overlay_core::{ConnId, Notification, RejectReason, Time};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use smol::channel::{self, Receiver, Sender, TrySendError};
use tracing::{debug, error, info, trace, warn};

/// The kinds of operator events, by their public names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A controller was first heard of, or came back (`reason` `reachable`: reached again
    /// after it was cut off).
    MemberJoin,
    /// A controller left gracefully.
    MemberLeave,
    /// A controller was cut off (crashed, or beyond a partition; `reason` `unreachable`),
    /// or went silent past the advertisement age limit (`expired`).
    MemberFailed,
    /// A controller was evicted by a quorum of accusers.
    MemberEvicted,
    /// A direct peer came up.
    PeerUp,
    /// A direct peer's link ended.
    PeerDown,
    /// The routing table changed.
    RouteChange,
}

impl Kind {
    /// Every kind, in the order of their names in the documentation.
    pub const ALL: [Kind; 7] = [
        Kind::MemberJoin,
        Kind::MemberLeave,
        Kind::MemberFailed,
        Kind::MemberEvicted,
        Kind::PeerUp,
        Kind::PeerDown,
        Kind::RouteChange,
    ];

    /// The public name (`member-join`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::MemberJoin => "member-join",
            Kind::MemberLeave => "member-leave",
            Kind::MemberFailed => "member-failed",
            Kind::MemberEvicted => "member-evicted",
            Kind::PeerUp => "peer-up",
            Kind::PeerDown => "peer-down",
            Kind::RouteChange => "route-change",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One operator event: `{"event": KIND, "time_ms": T, "node": ID, ...}`, where `node` is
/// the member or peer it is about (absent for `route-change`, which has `changes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    /// What happened.
    pub event: Kind,
    /// When (Unix milliseconds).
    pub time_ms: u64,
    /// The member or peer it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// The rest: `asn` and `addr`, `reason`, `accusers`, or the route `changes`.
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

impl Notice {
    /// The operator event of a notification, if it has one.
    pub fn of(now: Time, n: &Notification) -> Option<Notice> {
        let (event, node, detail) = match n {
            Notification::MemberJoined { node, asn, addr } => (
                Kind::MemberJoin,
                Some(node.0),
                json!({"asn": asn, "addr": addr}),
            ),
            Notification::MemberLeft { node } => (Kind::MemberLeave, Some(node.0), json!({})),
            Notification::MemberReachable { node } => (
                Kind::MemberJoin,
                Some(node.0),
                json!({"reason": "reachable"}),
            ),
            Notification::MemberUnreachable { node } => (
                Kind::MemberFailed,
                Some(node.0),
                json!({"reason": "unreachable"}),
            ),
            Notification::MemberExpired { node } => (
                Kind::MemberFailed,
                Some(node.0),
                json!({"reason": "expired"}),
            ),
            Notification::MemberEvicted { node, accusers } => (
                Kind::MemberEvicted,
                Some(node.0),
                json!({ "accusers": accusers }),
            ),
            Notification::PeerUp {
                node, asn, addr, ..
            } => (
                Kind::PeerUp,
                Some(node.0),
                json!({"asn": asn, "addr": addr}),
            ),
            Notification::PeerDown { node, reason, .. } => (
                Kind::PeerDown,
                Some(node.0),
                json!({ "reason": reason.to_string() }),
            ),
            Notification::RoutesChanged { changes } => {
                (Kind::RouteChange, None, json!({ "changes": changes }))
            }
            _ => return None,
        };
        let Value::Object(detail) = detail else {
            return None;
        };
        Some(Notice {
            event,
            time_ms: now.as_millis(),
            node,
            detail,
        })
    }

    /// One human line: `member-leave RC7`, `route-change AS30: cost 7 via AS200, ...`.
    pub fn line(&self) -> String {
        let mut line = self.event.name().to_string();
        if let Some(node) = self.node {
            line.push_str(&format!(" RC{node}"));
        }
        for key in ["asn", "addr", "reason"] {
            if let Some(v) = self.detail.get(key) {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                line.push_str(&format!(" {key}={v}"));
            }
        }
        if let Some(Value::Array(changes)) = self.detail.get("changes") {
            let parts: Vec<String> = changes.iter().map(route_change).collect();
            line.push(' ');
            line.push_str(&parts.join(", "));
        }
        line
    }
}

/// `AS30 cost 7 path 100 200 30`, or `AS30 withdrawn`.
fn route_change(change: &Value) -> String {
    let destination = &change["destination"];
    match change.get("after").filter(|a| !a.is_null()) {
        Some(after) => {
            let path: Vec<String> = after["path"]
                .as_array()
                .map(|p| p.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            format!(
                "AS{destination} cost {} path {}",
                after["cost"],
                path.join(" ")
            )
        }
        None => format!("AS{destination} withdrawn"),
    }
}

struct Subscriber {
    tx: Sender<Arc<Notice>>,
    dropped: Arc<AtomicU64>,
}

/// The subscribers to operator events; cloned handles share them.
#[derive(Clone, Default)]
pub struct Events {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

/// A subscription: its events, and how many it lost by not keeping up.
pub struct Subscription {
    /// The events, in order.
    pub rx: Receiver<Arc<Notice>>,
    /// Events this subscriber lost (its queue was full).
    pub dropped: Arc<AtomicU64>,
}

impl Events {
    /// A new subscriber that may fall `capacity` events behind before it loses some.
    pub fn subscribe(&self, capacity: usize) -> Subscription {
        let (tx, rx) = channel::bounded(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let subscriber = Subscriber {
            tx,
            dropped: dropped.clone(),
        };
        self.lock().push(subscriber);
        Subscription { rx, dropped }
    }

    /// Hands `notice` to every subscriber without waiting; forgets those gone.
    pub(crate) fn publish(&self, notice: Notice) {
        let notice = Arc::new(notice);
        self.lock()
            .retain(|s| match s.tx.try_send(Arc::clone(&notice)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Logs a notification; `remote` names a connection.
pub(crate) fn log(n: &Notification, remote: impl Fn(ConnId) -> String) {
    match n {
        Notification::PeerUp {
            node,
            asn,
            addr,
            fingerprint,
            ..
        } => {
            info!(%node, %asn, %addr, fingerprint = %fingerprint.short(), "peer up");
        }
        Notification::PeerDown { node, reason, .. } => info!(%node, %reason, "peer down"),
        Notification::RumorAccepted {
            origin, seq, from, ..
        } => trace!(%origin, seq, %from, "rumor accepted"),
        Notification::MemberJoined { node, asn, addr } => {
            info!(%node, %asn, %addr, "member joined");
        }
        Notification::MemberLeft { node } => info!(%node, "member left"),
        Notification::MemberUnreachable { node } => {
            warn!(%node, "member unreachable: no longer reached over two-way links")
        }
        Notification::MemberReachable { node } => info!(%node, "member reachable again"),
        Notification::MemberExpired { node } => {
            warn!(%node, "member expired: silent past advert_max_age")
        }
        Notification::MemberEvicted { node, accusers } => {
            warn!(%node, ?accusers, "member evicted by a quorum of accusers");
        }
        Notification::PeerBanned {
            node,
            fingerprint,
            until,
        } => warn!(%node, fingerprint = %fingerprint.short(), %until, "peer banned"),
        Notification::RoutesChanged { changes } => {
            info!(changes = changes.len(), "routes changed");
            for c in changes {
                match &c.after {
                    Some(r) => {
                        debug!(destination = %c.destination, cost = r.cost, path = ?r.path, "route")
                    }
                    None => debug!(destination = %c.destination, "route withdrawn"),
                }
            }
        }
        Notification::CommandFailed(e) => error!(error = %e, "command refused"),
        Notification::Rejected { conn, node, reason } => {
            let remote = remote(*conn);
            match reason {
                RejectReason::IdentityConflict(id) => error!(
                    %remote,
                    "duplicate identity: the controller at {remote} claims {id}, which \
                     another key already speaks for; every controller needs its own self.id"
                ),
                RejectReason::UnknownClusterKey | RejectReason::BadProof => warn!(
                    %remote,
                    "handshake refused: {reason} (the two sides use different cluster keys)"
                ),
                RejectReason::Refused(why) => {
                    warn!(%remote, "handshake refused by the peer: {why}")
                }
                r if r.blames_peer() => warn!(%remote, ?node, reason = %r, "message rejected"),
                r => debug!(%remote, ?node, reason = %r, "message rejected"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use overlay_core::{Asn, NodeId, Route, RouteChange};

    use super::*;

    #[test]
    fn notices_have_public_names_and_a_human_line() {
        let change = RouteChange {
            destination: Asn(30),
            before: None,
            after: Some(Route {
                destination: Asn(30),
                cost: 7,
                hops: 2,
                capacity: 10,
                path: vec![Asn(100), Asn(200), Asn(30)],
                next_hop: Asn(200),
            }),
        };
        let routes = Notification::RoutesChanged {
            changes: vec![change],
        };
        let notice = Notice::of(Time::from_millis(5), &routes).unwrap();
        let json = serde_json::to_value(&notice).unwrap();
        assert_eq!(json["event"], "route-change");
        assert_eq!(json["changes"][0]["after"]["cost"], 7);
        assert_eq!(notice.line(), "route-change AS30 cost 7 path 100 200 30");
        let left = Notice::of(Time::ZERO, &Notification::MemberLeft { node: NodeId(7) }).unwrap();
        assert_eq!(serde_json::to_value(&left).unwrap()["node"], 7);
        assert_eq!(left.line(), "member-leave RC7");
        let cut = Notification::MemberUnreachable { node: NodeId(3) };
        let cut = Notice::of(Time::ZERO, &cut).unwrap();
        assert_eq!(cut.line(), "member-failed RC3 reason=unreachable");
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.name()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }

    #[test]
    fn a_subscriber_that_falls_behind_loses_events_counted() {
        let events = Events::default();
        let slow = events.subscribe(2);
        let gone = events.subscribe(2);
        drop(gone);
        for i in 0..5 {
            let n = Notification::MemberLeft { node: NodeId(i) };
            events.publish(Notice::of(Time::ZERO, &n).unwrap());
        }
        assert_eq!(slow.rx.len(), 2);
        assert_eq!(slow.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(events.lock().len(), 1, "the closed subscriber is forgotten");
    }
}
