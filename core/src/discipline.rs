//! Discipline: the chain from a bad message to an eviction. A rejection is counted and
//! reported; when it blames an authenticated peer it is an offense; offenses past the
//! threshold (or one proven by the peer's own signature) ban the key, which closes its
//! link and has this node accuse it; accusations from a quorum of members evict the key.
//! It decides and returns [`Sanction`]s; the node carries them out in order.

use crate::event::{CloseReason, Metrics, Notification, RejectReason};
use crate::identity::Fingerprint;
use crate::reputation::{Reputation, ReputationPolicy, Verdict};
use crate::routing::Routing;
use crate::scheduler::Time;
use crate::wire::{ConnId, NodeId};

/// What the other components must do about a misbehaving key, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Sanction {
    /// Close the established link to this key, if there is one.
    Close(Fingerprint, CloseReason),
    /// Sign and spread an accusation of `node` with this key.
    Accuse(NodeId, Fingerprint),
    /// Withdraw the member and drop its rumors: it was evicted under the key it is bound to.
    Withdraw(NodeId),
    /// Tell the embedder.
    Notify(Notification),
}

/// The authenticated direct peer a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sender {
    /// Its id.
    pub node: NodeId,
    /// Its key.
    pub fingerprint: Fingerprint,
    /// Whether its link is still up (a ban then closes it and is told to the network).
    pub linked: bool,
}

/// The reputation of keys, and the rejections, bans and evictions counted.
#[derive(Clone, Debug)]
pub(crate) struct Discipline {
    me: NodeId,
    reputation: Reputation,
    metrics: Metrics,
}

impl Discipline {
    /// Discipline for node `me` keeping `reputation`.
    pub(crate) fn new(me: NodeId, reputation: Reputation) -> Self {
        Discipline {
            me,
            reputation,
            metrics: Metrics::default(),
        }
    }

    /// Judges with `policy` from now on (a reconfiguration); offenses, bans and
    /// accusations recorded stay.
    pub(crate) fn set_policy(&mut self, policy: ReputationPolicy) {
        self.reputation.set_policy(policy);
    }

    /// Something from `conn` (from `sender` when authenticated) was rejected for `reason`.
    pub(crate) fn rejected(
        &mut self,
        now: Time,
        conn: ConnId,
        sender: Option<Sender>,
        reason: RejectReason,
        routing: &Routing,
    ) -> Vec<Sanction> {
        self.metrics.reject(&reason);
        let blamed = sender.filter(|_| reason.blames_peer());
        let mut sanctions = vec![Sanction::Notify(Notification::Rejected {
            conn,
            node: sender.map(|s| s.node),
            reason,
        })];
        if let Some(peer) = blamed
            && let Verdict::Banned(until) = self.reputation.offense(now, peer.fingerprint)
            && peer.linked
        {
            self.cut_off(
                now,
                peer.node,
                peer.fingerprint,
                until,
                routing,
                &mut sanctions,
            );
        }
        sanctions
    }

    /// Something was ignored for `reason` (nobody is blamed); only counted.
    pub(crate) fn ignored(&mut self, reason: &RejectReason) {
        self.metrics.reject(reason);
    }

    /// A rumor proves, by its signer's own signature, that the key `fp` (speaking for
    /// `node`) signed for an identity not its own: the key is banned at once, its link (if
    /// it is a direct peer) closed, and it is accused; the relay is not blamed.
    pub(crate) fn convicted(
        &mut self,
        now: Time,
        node: NodeId,
        fp: Fingerprint,
        reason: &RejectReason,
        routing: &Routing,
    ) -> Vec<Sanction> {
        self.metrics.reject(reason);
        let mut sanctions = Vec::new();
        if !self.reputation.is_banned(&fp) {
            let until = self.reputation.convict(now, fp);
            self.cut_off(now, node, fp, until, routing, &mut sanctions);
        }
        sanctions
    }

    /// The consequences of banning `fp` (speaking for `node`) until `until`: its link is
    /// closed, the ban reported, and the network told (this node's accusation counts
    /// towards the quorum too).
    fn cut_off(
        &mut self,
        now: Time,
        node: NodeId,
        fp: Fingerprint,
        until: Time,
        routing: &Routing,
        sanctions: &mut Vec<Sanction>,
    ) {
        self.metrics.bans += 1;
        sanctions.push(Sanction::Close(fp, CloseReason::Banned));
        sanctions.push(Sanction::Notify(Notification::PeerBanned {
            node,
            fingerprint: fp,
            until,
        }));
        sanctions.push(Sanction::Accuse(node, fp));
        sanctions.extend(self.accusation(now, self.me, node, fp, routing));
    }

    /// `accuser` accuses `accused` with key `fp`; when that completes the quorum the key
    /// is evicted (and the id withdrawn when that key is the one it is bound to: an
    /// accusation naming some other key must not withdraw the real owner).
    pub(crate) fn accusation(
        &mut self,
        now: Time,
        accuser: NodeId,
        accused: NodeId,
        fp: Fingerprint,
        routing: &Routing,
    ) -> Vec<Sanction> {
        let Some(eviction) = self.reputation.accusation(now, accuser, accused, fp) else {
            return Vec::new();
        };
        self.metrics.evictions += 1;
        let mut sanctions = Vec::new();
        if routing.bound_key(accused) == Some(fp) {
            sanctions.push(Sanction::Withdraw(accused));
        }
        self.reputation.discard_accuser(accused);
        sanctions.push(Sanction::Close(fp, CloseReason::Evicted));
        sanctions.push(Sanction::Notify(Notification::MemberEvicted {
            node: accused,
            accusers: eviction.accusers,
        }));
        sanctions
    }

    /// The reputation record (bans, evictions, expiry).
    pub(crate) fn reputation(&self) -> &Reputation {
        &self.reputation
    }

    /// Expires bans, evictions and accusations due by `now`; returns the nodes whose
    /// eviction ended.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<NodeId> {
        self.reputation
            .expire(now)
            .into_iter()
            .map(|(node, _)| node)
            .collect()
    }

    /// Rejections, bans and evictions counted so far.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::reputation::ReputationPolicy;
    use crate::routing::{Member, MemberState};
    use crate::verify::Profile;
    use crate::wire::{Addr, Asn};

    fn discipline(quorum: usize) -> Discipline {
        Discipline::new(
            NodeId(1),
            Reputation::new(ReputationPolicy {
                reject_threshold: 2,
                offense_window: Duration::from_secs(60),
                ban_duration: Duration::from_secs(600),
                ban_quorum: quorum,
                max_tracked: 8,
            }),
        )
    }

    fn routing_with(node: NodeId, fp: Fingerprint) -> Routing {
        let mut routing = Routing::new(Asn(1), 8);
        routing.advertise(Member {
            node,
            seq: 1,
            profile: Arc::new(Profile {
                asn: Asn(2),
                addr: Addr("10.0.0.2:1".into()),
                fingerprint: fp,
                links: Arc::from(Vec::new()),
                peers: None,
            }),
            reachable: true,
            first_hop: None,
            state: MemberState::Alive,
        });
        routing
    }

    const T: Time = Time::ZERO;

    /// A sanction in a word or two, to compare sequences.
    fn kind(s: &Sanction) -> String {
        match s {
            Sanction::Close(_, reason) => format!("close {reason:?}"),
            Sanction::Accuse(n, _) => format!("accuse {}", n.0),
            Sanction::Withdraw(n) => format!("withdraw {}", n.0),
            Sanction::Notify(Notification::Rejected { .. }) => "rejected".into(),
            Sanction::Notify(Notification::PeerBanned { .. }) => "banned".into(),
            Sanction::Notify(Notification::MemberEvicted { .. }) => "evicted".into(),
            Sanction::Notify(other) => format!("{other:?}"),
        }
    }

    #[test]
    fn offenses_past_the_threshold_close_ban_and_accuse_and_one_accuser_can_evict() {
        let (node, fp) = (NodeId(2), Fingerprint([2; 32]));
        let routing = routing_with(node, fp);
        let mut d = discipline(1);
        let peer = Sender {
            node,
            fingerprint: fp,
            linked: true,
        };
        let first = d.rejected(T, ConnId(5), Some(peer), RejectReason::Replay, &routing);
        assert!(
            matches!(first.as_slice(), [Sanction::Notify(_)]),
            "{first:?}"
        );
        let second = d.rejected(T, ConnId(5), Some(peer), RejectReason::Replay, &routing);
        let kinds: Vec<String> = second.iter().map(kind).collect();
        assert_eq!(
            kinds,
            [
                "rejected",
                "close Banned",
                "banned",
                "accuse 2",
                "withdraw 2",
                "close Evicted",
                "evicted",
            ]
        );
        assert!(d.reputation().is_banned(&fp) && d.reputation().is_evicted(&fp));
        let m = d.metrics();
        assert_eq!(
            (m.bans, m.evictions, m.rejects.get("replay")),
            (1, 1, Some(&2))
        );
    }

    #[test]
    fn what_blames_nobody_or_an_unlinked_peer_bans_no_link() {
        let (node, fp) = (NodeId(2), Fingerprint([2; 32]));
        let routing = routing_with(node, fp);
        let mut d = discipline(2);
        for _ in 0..5 {
            let s = d.rejected(T, ConnId(5), None, RejectReason::Replay, &routing);
            assert_eq!(s.len(), 1);
            let honest = Sender {
                node,
                fingerprint: fp,
                linked: true,
            };
            let s = d.rejected(T, ConnId(5), Some(honest), RejectReason::Busy, &routing);
            assert_eq!(s.len(), 1, "a reason that blames nobody is no offense");
        }
        assert!(!d.reputation().is_banned(&fp));
        let gone = Sender {
            node,
            fingerprint: fp,
            linked: false,
        };
        d.rejected(T, ConnId(5), Some(gone), RejectReason::Replay, &routing);
        let s = d.rejected(T, ConnId(5), Some(gone), RejectReason::Replay, &routing);
        assert_eq!(s.len(), 1, "banned, but no link to close: {s:?}");
        assert!(d.reputation().is_banned(&fp));
        assert_eq!(d.metrics().bans, 0);
    }

    #[test]
    fn an_eviction_naming_another_key_does_not_withdraw_the_bound_owner() {
        let (node, fp) = (NodeId(2), Fingerprint([2; 32]));
        let routing = routing_with(node, fp);
        let mut d = discipline(1);
        let other = Fingerprint([9; 32]);
        let s = d.accusation(T, NodeId(3), node, other, &routing);
        assert!(
            !s.iter().any(|s| matches!(s, Sanction::Withdraw(_))),
            "{s:?}"
        );
        assert!(s.contains(&Sanction::Close(other, CloseReason::Evicted)));
    }

    #[test]
    fn a_conviction_bans_once() {
        let (node, fp) = (NodeId(2), Fingerprint([2; 32]));
        let routing = routing_with(node, fp);
        let mut d = discipline(3);
        let reason = RejectReason::Impersonation(NodeId(7));
        let first = d.convicted(T, node, fp, &reason, &routing);
        assert_eq!(
            first.first(),
            Some(&Sanction::Close(fp, CloseReason::Banned))
        );
        assert!(d.convicted(T, node, fp, &reason, &routing).is_empty());
        assert_eq!(d.metrics().rejects.get("impersonation"), Some(&2));
        assert_eq!(d.metrics().bans, 1);
    }
}
