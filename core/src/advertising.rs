//! When this node signs a fresh advertisement: first a gain hold-down after it starts, so
//! that its first advert lists the links it made meanwhile (one advert per booting node,
//! not one empty and one with its links); at once when its links change; after a
//! hold-down when it lost a direct peer (OSPF-style throttling: the hold doubles while
//! changes keep coming, up to one gossip period, and falls back once they stop, so that a
//! flapping link costs a few adverts, not one per flap); after a longer one (a quarter
//! period at least) when it only gained peers, so that the links a node makes as it boots
//! or joins go out in one advert, not one each; and otherwise every `advert_refresh`
//! gossip rounds. A loss is urgent (routes through a failed controller must go), a gain
//! is not (a link both ends list a moment later changes no route that works today). A peer
//! lost to a transport failure (a reset, hop-authentication failures, a heartbeat timeout)
//! is redialed at once and *expected back*: its loss waits until the redial fails or
//! `hold_redial` passes, so that a link reset and made again is never advertised.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::scheduler::Time;
use crate::wire::{Addr, NodeId};

/// The refresh interval and the hold-down bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AdvertPolicy {
    /// Rounds between adverts of an unchanged state.
    pub refresh: u32,
    /// The first hold-down after a change of peers.
    pub hold_min: Duration,
    /// The longest hold-down.
    pub hold_max: Duration,
    /// The hold-down after peers were only gained.
    pub hold_gain: Duration,
    /// How long a peer lost to a transport failure is expected back.
    pub hold_redial: Duration,
}

/// What the last advert said and when the next is due.
#[derive(Clone, Debug)]
pub(crate) struct Advertising {
    policy: AdvertPolicy,
    /// Gossip rounds since the last advert.
    rounds: u32,
    /// The direct peers the last advert listed (`None`: nothing signed yet).
    advertised: Option<Arc<[NodeId]>>,
    /// The current hold-down between adverts for peer changes.
    hold: Duration,
    /// When the last advert for a peer change was signed.
    last_change: Option<Time>,
    /// Peers lost to a transport failure and redialed: their address, and until when they
    /// are expected back (at most one per link this node had).
    expected: BTreeMap<NodeId, (Addr, Time)>,
}

impl Advertising {
    /// Nothing advertised yet.
    pub(crate) fn new(policy: AdvertPolicy) -> Self {
        Advertising {
            policy,
            rounds: 0,
            advertised: None,
            hold: policy.hold_min,
            last_change: None,
            expected: BTreeMap::new(),
        }
    }

    /// Runs with `policy` from now on (a reconfiguration); what is stored stays.
    pub(crate) fn set_policy(&mut self, policy: AdvertPolicy) {
        self.policy = policy;
    }

    /// An advert listing `peers` was signed at `now`.
    pub(crate) fn signed(&mut self, now: Time, peers: Arc<[NodeId]>) {
        if *peers != *self.listed() {
            let recent = self
                .last_change
                .is_some_and(|t| now.since(t) < self.policy.hold_max * 2);
            self.hold = if recent {
                (self.hold * 2).min(self.policy.hold_max)
            } else {
                self.policy.hold_min
            };
            self.last_change = Some(now);
        }
        self.rounds = 0;
        self.advertised = Some(peers);
    }

    /// The direct peers the last advert listed (none before the first).
    fn listed(&self) -> &[NodeId] {
        self.advertised.as_deref().unwrap_or_default()
    }

    /// When a node started at `now` signs its first advert: after the gain hold-down, so
    /// that the links it makes as it boots go out in that one advert.
    pub(crate) fn first_due(&self, now: Time) -> Time {
        now + self.policy.hold_gain
    }

    /// A gossip round began: whether the refresh is due.
    pub(crate) fn round(&mut self) -> bool {
        self.rounds = self.rounds.saturating_add(1);
        self.rounds >= self.policy.refresh
    }

    /// Whether `peers` differ from what the last advert listed (always, before the first).
    pub(crate) fn differs(&self, peers: &[NodeId]) -> bool {
        self.advertised.as_deref() != Some(peers)
    }

    /// `peer`, listening at `addr`, was lost to a transport failure and is being redialed:
    /// its loss waits `hold_redial` for it to come back.
    pub(crate) fn expect(&mut self, now: Time, peer: NodeId, addr: Addr) {
        self.expected
            .insert(peer, (addr, now + self.policy.hold_redial));
    }

    /// How many peers other than `except` are expected back at `now`: each keeps the slot
    /// of the link it lost under `max_peers` until it returns or its time is up, so that
    /// neither a random dial nor another node's hello takes it meanwhile.
    pub(crate) fn reserved(&self, now: Time, except: Option<NodeId>) -> usize {
        self.expected
            .iter()
            .filter(|&(&node, &(_, until))| until > now && Some(node) != except)
            .count()
    }

    /// `peer` is linked again.
    pub(crate) fn returned(&mut self, peer: NodeId) {
        self.expected.remove(&peer);
    }

    /// A dial to `addr` failed: the peers expected back from there are not coming.
    /// Whether any was expected.
    pub(crate) fn unreachable(&mut self, addr: &Addr) -> bool {
        let before = self.expected.len();
        self.expected.retain(|_, (a, _)| a != addr);
        self.expected.len() < before
    }

    /// The direct peers are now `peers`: when to advertise them, if they differ from the
    /// last advert's (never sooner than the hold-down after the last such advert; a gain
    /// alone waits `hold_gain` at least; a loss of peers expected back waits until they are
    /// due).
    pub(crate) fn changed(&mut self, now: Time, peers: &[NodeId]) -> Option<Time> {
        self.expected.retain(|_, (_, until)| *until > now);
        if self.advertised.is_none() || !self.differs(peers) {
            return None;
        }
        let lost: Vec<&NodeId> = self
            .listed()
            .iter()
            .filter(|p| !peers.contains(p))
            .collect();
        let gained = peers.iter().any(|p| !self.listed().contains(p));
        let unexpected = lost.iter().any(|p| !self.expected.contains_key(p));
        let back_by = lost
            .iter()
            .filter_map(|p| self.expected.get(p).map(|&(_, until)| until))
            .fold(now, Time::max);
        let soonest = if unexpected {
            now + self.policy.hold_min
        } else {
            let gain = if gained {
                self.policy.hold_gain
            } else {
                Duration::ZERO
            };
            back_by.max(now + gain.max(self.policy.hold_min))
        };
        let held = self.last_change.map_or(soonest, |t| t + self.hold);
        Some(soonest.max(held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AdvertPolicy {
        AdvertPolicy {
            refresh: 3,
            hold_min: Duration::from_millis(100),
            hold_max: Duration::from_secs(10),
            hold_gain: Duration::from_millis(2_500),
            hold_redial: Duration::from_millis(1_000),
        }
    }

    fn peers(ids: &[u32]) -> Arc<[NodeId]> {
        ids.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn an_unchanged_state_is_advertised_every_refresh_rounds() {
        let mut a = Advertising::new(policy());
        a.signed(Time::ZERO, peers(&[]));
        let due: Vec<bool> = (0..7).map(|_| a.round()).collect();
        assert_eq!(due, [false, false, true, true, true, true, true]);
        a.signed(Time::ZERO, peers(&[]));
        assert!(!a.round(), "an advert restarts the count");
    }

    #[test]
    fn a_peer_expected_back_is_not_advertised_lost_until_it_is_due_or_unreachable() {
        let at = Time::from_millis;
        let addr = Addr::from("b:1");
        let mut a = Advertising::new(policy());
        a.signed(at(0), peers(&[2, 3]));
        a.expect(at(50_000), NodeId(2), addr.clone());
        // Lost and expected back: due when the redial's time is up, not in 100 ms.
        assert_eq!(a.changed(at(50_000), &peers(&[3])), Some(at(51_000)));
        // Back in time: nothing to advertise.
        a.returned(NodeId(2));
        assert_eq!(a.changed(at(50_300), &peers(&[2, 3])), None);
        // Lost again, and the redial fails: the shortest hold.
        a.expect(at(60_000), NodeId(2), addr.clone());
        a.unreachable(&addr);
        assert_eq!(a.changed(at(60_100), &peers(&[3])), Some(at(60_200)));
        // An unexpected loss beside an expected one does not wait for it.
        a.expect(at(70_000), NodeId(2), addr);
        assert_eq!(a.changed(at(70_000), &peers(&[])), Some(at(70_100)));
        // Past its time, an expected peer is lost like any other.
        assert_eq!(a.changed(at(71_000), &peers(&[3])), Some(at(71_100)));
    }

    #[test]
    fn the_first_advert_waits_the_gain_hold_down_and_lists_the_links_made_meanwhile() {
        let at = Time::from_millis;
        let mut a = Advertising::new(policy());
        assert_eq!(a.first_due(at(40)), at(2_540));
        // Links made before it change nothing: the first advert will list them.
        assert_eq!(a.changed(at(100), &peers(&[2])), None);
        assert!(
            a.differs(&peers(&[])),
            "before the first advert, always due"
        );
        a.signed(at(2_540), peers(&[2, 3]));
        assert!(!a.differs(&peers(&[2, 3])));
        // A later gain waits its hold-down from then.
        assert_eq!(a.changed(at(3_000), &peers(&[2, 3, 4])), Some(at(5_500)));
    }

    #[test]
    fn a_peer_expected_back_keeps_its_slot_until_it_returns_or_its_time_is_up() {
        let at = Time::from_millis;
        let mut a = Advertising::new(policy());
        a.signed(at(0), peers(&[2, 3, 4]));
        a.expect(at(10_000), NodeId(2), Addr::from("b:1"));
        a.expect(at(10_500), NodeId(3), Addr::from("c:1"));
        assert_eq!(a.reserved(at(10_600), None), 2, "two slots kept");
        assert_eq!(
            a.reserved(at(10_600), Some(NodeId(2))),
            1,
            "2 takes its own"
        );
        a.returned(NodeId(3));
        assert_eq!(a.reserved(at(10_600), None), 1);
        assert_eq!(a.reserved(at(11_000), None), 0, "2's time is up");
    }

    #[test]
    fn peer_changes_wait_for_a_hold_down_that_doubles_while_they_keep_coming() {
        let at = Time::from_millis;
        let mut a = Advertising::new(policy());
        a.signed(at(0), peers(&[]));
        assert_eq!(a.changed(at(1_000), &peers(&[])), None, "no change");
        let mut now = 1_000;
        let mut holds = Vec::new();
        for flap in 0..11u32 {
            let set = if flap % 2 == 0 {
                peers(&[2])
            } else {
                peers(&[])
            };
            let due = a.changed(at(now), &set).expect("a change");
            holds.push(due.as_millis() - now);
            now = due.as_millis();
            a.signed(at(now), set);
        }
        assert_eq!(holds[0], 2_500, "a gain waits the gain's hold");
        assert_eq!(holds[1], 100, "a loss waits the shortest hold");
        let losses: Vec<u64> = holds.iter().skip(1).step_by(2).copied().collect();
        assert!(losses.windows(2).all(|w| w[1] >= w[0]), "{holds:?}");
        assert_eq!(*holds.last().unwrap_or(&0), 10_000, "{holds:?}");
        // Quiet for two hold_max: the next change waits the shortest hold again.
        now += 20_000;
        let due = a.changed(at(now), &peers(&[2, 3])).expect("a change");
        assert_eq!(due, at(now + 2_500), "gains wait");
        a.signed(due, peers(&[2, 3]));
        let next = a.changed(due + Duration::from_millis(1), &peers(&[3]));
        assert_eq!(
            next,
            Some(due + Duration::from_millis(101)),
            "a loss does not"
        );
    }
}
