//! The reputation of peers: offenses, bans, accusations and eviction by quorum.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::identity::Fingerprint;
use crate::scheduler::Time;
use crate::wire::NodeId;

/// Limits and durations of the reputation system.
#[derive(Clone, Debug)]
pub(crate) struct ReputationPolicy {
    /// Offenses within `offense_window` that get a peer banned.
    pub reject_threshold: u32,
    /// How long offenses are remembered.
    pub offense_window: Duration,
    /// How long a ban or an eviction lasts.
    pub ban_duration: Duration,
    /// Distinct accusers needed to evict a node.
    pub ban_quorum: usize,
    /// Most peers tracked for offenses, bans and evictions each.
    pub max_tracked: usize,
}

/// What the reputation system decided about an offense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Counted; the peer stays (offenses so far in the window).
    Counted(u32),
    /// The threshold was reached: the peer is now banned until the given time.
    Banned(Time),
}

/// A node evicted by a quorum of accusers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Eviction {
    /// The evicted node.
    pub node: NodeId,
    /// Its key.
    pub fingerprint: Fingerprint,
    /// Who accused it.
    pub accusers: Vec<NodeId>,
    /// When the eviction ends.
    pub until: Time,
}

#[derive(Debug, Clone, Default)]
struct Accused {
    node: Option<NodeId>,
    /// accuser -> when that accusation expires
    accusers: BTreeMap<NodeId, Time>,
}

/// Offenses, bans, accusations and evictions, all bounded and all expiring.
#[derive(Debug, Clone)]
pub(crate) struct Reputation {
    policy: ReputationPolicy,
    offenses: HashMap<Fingerprint, VecDeque<Time>>,
    bans: HashMap<Fingerprint, Time>,
    accused: HashMap<Fingerprint, Accused>,
    evicted: HashMap<Fingerprint, (NodeId, Time)>,
}

impl Reputation {
    /// An empty record.
    pub(crate) fn new(policy: ReputationPolicy) -> Self {
        Reputation {
            policy,
            offenses: HashMap::new(),
            bans: HashMap::new(),
            accused: HashMap::new(),
            evicted: HashMap::new(),
        }
    }

    /// Runs with `policy` from now on (a reconfiguration); what is stored stays.
    pub(crate) fn set_policy(&mut self, policy: ReputationPolicy) {
        self.policy = policy;
    }

    /// Counts an offense of the peer with key `fp`; bans it at the threshold.
    pub(crate) fn offense(&mut self, now: Time, fp: Fingerprint) -> Verdict {
        if let Some(&until) = self.bans.get(&fp) {
            return Verdict::Banned(until);
        }
        if !self.offenses.contains_key(&fp) && self.offenses.len() >= self.policy.max_tracked {
            self.offenses.retain(|_, times| times.len() > 1);
            if self.offenses.len() >= self.policy.max_tracked {
                self.offenses.clear();
            }
        }
        let window = self.policy.offense_window;
        let times = self.offenses.entry(fp).or_default();
        while times.front().is_some_and(|&t| now.since(t) > window) {
            times.pop_front();
        }
        times.push_back(now);
        let count = u32::try_from(times.len()).unwrap_or(u32::MAX);
        if count >= self.policy.reject_threshold {
            Verdict::Banned(self.convict(now, fp))
        } else {
            Verdict::Counted(count)
        }
    }

    /// Bans the key `fp` at once (its misbehaviour is proven by its own signature, or it
    /// reached the offense threshold); returns when the ban ends. A key already banned
    /// keeps its ban.
    pub(crate) fn convict(&mut self, now: Time, fp: Fingerprint) -> Time {
        if let Some(&until) = self.bans.get(&fp) {
            return until;
        }
        self.offenses.remove(&fp);
        let until = now + self.policy.ban_duration;
        if self.bans.len() < self.policy.max_tracked {
            self.bans.insert(fp, until);
        }
        until
    }

    /// Records that `accuser` accuses the node `accused` with key `fp`. Returns the eviction
    /// when this accusation completes the quorum.
    pub(crate) fn accusation(
        &mut self,
        now: Time,
        accuser: NodeId,
        accused: NodeId,
        fp: Fingerprint,
    ) -> Option<Eviction> {
        if accuser == accused || self.evicted.contains_key(&fp) {
            return None;
        }
        if !self.accused.contains_key(&fp) && self.accused.len() >= self.policy.max_tracked {
            return None;
        }
        let entry = self.accused.entry(fp).or_default();
        entry.node = Some(accused);
        if entry.accusers.len() >= self.policy.max_tracked && !entry.accusers.contains_key(&accuser)
        {
            return None;
        }
        entry
            .accusers
            .insert(accuser, now + self.policy.ban_duration);
        if entry.accusers.len() < self.policy.ban_quorum {
            return None;
        }
        let accusers: Vec<NodeId> = entry.accusers.keys().copied().collect();
        self.accused.remove(&fp);
        let until = now + self.policy.ban_duration;
        if self.evicted.len() >= self.policy.max_tracked {
            return None;
        }
        self.evicted.insert(fp, (accused, until));
        Some(Eviction {
            node: accused,
            fingerprint: fp,
            accusers,
            until,
        })
    }

    /// Forgets accusations made by `accuser` (it was itself evicted, or left).
    pub(crate) fn discard_accuser(&mut self, accuser: NodeId) {
        for entry in self.accused.values_mut() {
            entry.accusers.remove(&accuser);
        }
        self.accused.retain(|_, e| !e.accusers.is_empty());
    }

    /// Whether the key is banned locally.
    pub(crate) fn is_banned(&self, fp: &Fingerprint) -> bool {
        self.bans.contains_key(fp)
    }

    /// Whether the key was evicted by quorum.
    pub(crate) fn is_evicted(&self, fp: &Fingerprint) -> bool {
        self.evicted.contains_key(fp)
    }

    /// Whether the key may not connect or be listened to (banned or evicted).
    pub(crate) fn is_excluded(&self, fp: &Fingerprint) -> bool {
        self.is_banned(fp) || self.is_evicted(fp)
    }

    /// Evicted keys with their node ids and end times.
    pub(crate) fn evictions(&self) -> impl Iterator<Item = (&Fingerprint, NodeId, Time)> {
        self.evicted
            .iter()
            .map(|(fp, &(node, until))| (fp, node, until))
    }

    /// Banned keys with their end times.
    pub(crate) fn bans(&self) -> impl Iterator<Item = (&Fingerprint, Time)> {
        self.bans.iter().map(|(fp, &until)| (fp, until))
    }

    /// The earliest time at which something expires.
    pub(crate) fn next_expiry(&self) -> Option<Time> {
        let bans = self.bans.values().copied();
        let evictions = self.evicted.values().map(|&(_, t)| t);
        let accusations = self
            .accused
            .values()
            .flat_map(|a| a.accusers.values().copied());
        bans.chain(evictions).chain(accusations).min()
    }

    /// Drops everything expired by `now`; returns the nodes whose eviction ended.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<(NodeId, Fingerprint)> {
        self.bans.retain(|_, &mut until| until > now);
        for entry in self.accused.values_mut() {
            entry.accusers.retain(|_, &mut until| until > now);
        }
        self.accused.retain(|_, e| !e.accusers.is_empty());
        let mut ended = Vec::new();
        self.evicted.retain(|fp, &mut (node, until)| {
            let keep = until > now;
            if !keep {
                ended.push((node, *fp));
            }
            keep
        });
        ended
    }

    /// Entries held, for cap checks: (offenders, bans, accused, evicted).
    pub(crate) fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.offenses.len(),
            self.bans.len(),
            self.accused.len(),
            self.evicted.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReputationPolicy {
        ReputationPolicy {
            reject_threshold: 3,
            offense_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(600),
            ban_quorum: 2,
            max_tracked: 8,
        }
    }

    #[test]
    fn offenses_ban_at_threshold_and_expire() {
        let mut r = Reputation::new(policy());
        let fp = Fingerprint([1; 32]);
        let t0 = Time::from_millis(0);
        assert_eq!(r.offense(t0, fp), Verdict::Counted(1));
        // Outside the window the first offense is forgotten.
        assert_eq!(
            r.offense(Time::from_millis(61_000), fp),
            Verdict::Counted(1)
        );
        assert_eq!(
            r.offense(Time::from_millis(62_000), fp),
            Verdict::Counted(2)
        );
        let until = Time::from_millis(63_000 + 600_000);
        assert_eq!(
            r.offense(Time::from_millis(63_000), fp),
            Verdict::Banned(until)
        );
        assert!(r.is_banned(&fp));
        assert_eq!(r.next_expiry(), Some(until));
        r.expire(until);
        assert!(!r.is_banned(&fp));
    }

    #[test]
    fn eviction_needs_a_quorum_of_distinct_accusers() {
        let mut r = Reputation::new(policy());
        let fp = Fingerprint([2; 32]);
        let now = Time::from_millis(5);
        assert_eq!(r.accusation(now, NodeId(1), NodeId(9), fp), None);
        assert_eq!(
            r.accusation(now, NodeId(1), NodeId(9), fp),
            None,
            "same accuser twice"
        );
        assert_eq!(
            r.accusation(now, NodeId(9), NodeId(9), fp),
            None,
            "self-accusation"
        );
        let ev = r.accusation(now, NodeId(2), NodeId(9), fp).unwrap();
        assert_eq!(ev.accusers, vec![NodeId(1), NodeId(2)]);
        assert!(r.is_evicted(&fp));
        assert_eq!(r.expire(ev.until), vec![(NodeId(9), fp)]);
        assert!(!r.is_excluded(&fp));
    }

    #[test]
    fn tracking_is_bounded() {
        let mut r = Reputation::new(policy());
        for i in 0..100u8 {
            r.offense(Time::ZERO, Fingerprint([i; 32]));
            r.accusation(
                Time::ZERO,
                NodeId(1),
                NodeId(u32::from(i) + 10),
                Fingerprint([i; 32]),
            );
        }
        let (offenders, bans, accused, evicted) = r.sizes();
        assert!(offenders <= 8 && bans <= 8 && accused <= 8 && evicted <= 8);
        // A quorum against each of 100 keys: the evictions are capped too.
        let mut r = Reputation::new(policy());
        for i in 0..100u8 {
            for accuser in [1, 2] {
                r.accusation(
                    Time::ZERO,
                    NodeId(accuser),
                    NodeId(u32::from(i) + 10),
                    Fingerprint([i; 32]),
                );
            }
        }
        assert_eq!(r.sizes().3, 8);
    }
}
