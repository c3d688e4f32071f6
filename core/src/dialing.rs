//! The dial table: the addresses this node may dial (bootstrap, learned from peer lists
//! and members' advertisements), kept as a bounded uniform sample; the dials in flight;
//! exponential backoff with jitter per address; and the node's own addresses, never
//! dialed. The swarm decides when to dial; this table decides what.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand_core::CryptoRng;

use crate::identity::Fingerprint;
use crate::scheduler::Time;
use crate::wire::{Addr, check_addr};

/// Most dial candidates remembered.
pub(crate) const MAX_CANDIDATES: usize = 256;
/// First reconnect backoff (short: at a cluster's start, peers begin listening within
/// moments of each other).
pub(crate) const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest reconnect backoff.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(64);

#[derive(Debug, Clone)]
struct Candidate {
    failures: u32,
    next_try: Time,
    bootstrap: bool,
    /// The node this address led to last time it was dialed.
    reached: Option<Fingerprint>,
}

/// Candidates, dials in flight and own addresses.
#[derive(Clone, Debug)]
pub(crate) struct DialTable {
    candidates: BTreeMap<Addr, Candidate>,
    dialing: BTreeSet<Addr>,
    own_addrs: BTreeSet<Addr>,
    /// New addresses learned so far (for the reservoir sample).
    learned: u64,
}

impl DialTable {
    /// A table for a node listening on `listen`, starting from the `bootstrap` addresses.
    pub(crate) fn new(listen: &Addr, bootstrap: &[Addr]) -> Self {
        let candidates = bootstrap
            .iter()
            .filter(|a| *a != listen && check_addr(a).is_ok())
            .map(|a| {
                let c = Candidate {
                    failures: 0,
                    next_try: Time::ZERO,
                    bootstrap: true,
                    reached: None,
                };
                (a.clone(), c)
            })
            .collect();
        DialTable {
            candidates,
            dialing: BTreeSet::new(),
            own_addrs: BTreeSet::from([listen.clone()]),
            learned: 0,
        }
    }

    /// Makes `bootstrap` the bootstrap addresses (a reconfiguration): new ones are added,
    /// due at once; former ones stay as ordinary candidates, which the sample may replace.
    pub(crate) fn set_bootstrap(&mut self, bootstrap: &[Addr]) {
        for c in self.candidates.values_mut() {
            c.bootstrap = false;
        }
        for addr in bootstrap {
            if self.own_addrs.contains(addr) || check_addr(addr).is_err() {
                continue;
            }
            let c = self.candidates.entry(addr.clone()).or_insert(Candidate {
                failures: 0,
                next_try: Time::ZERO,
                bootstrap: true,
                reached: None,
            });
            c.bootstrap = true;
        }
    }

    /// Adds a dial candidate. The table is a reservoir sample: once full, the n-th new
    /// address replaces a random entry with probability `MAX_CANDIDATES / n`, so it stays a
    /// uniform sample of the members seen and dialing from it keeps the overlay random.
    /// Bootstrap addresses always stay.
    pub(crate) fn learn<R: CryptoRng + ?Sized>(&mut self, addr: &Addr, now: Time, rng: &mut R) {
        if self.own_addrs.contains(addr)
            || self.candidates.contains_key(addr)
            || check_addr(addr).is_err()
        {
            return;
        }
        self.learned = self.learned.saturating_add(1);
        if self.candidates.len() >= MAX_CANDIDATES {
            if rng.next_u64() % self.learned >= MAX_CANDIDATES as u64 {
                return;
            }
            let replaceable =
                |(a, c): &(&Addr, &Candidate)| !c.bootstrap && !self.dialing.contains(*a);
            let count = self.candidates.iter().filter(replaceable).count();
            let pick = (rng.next_u64() % count.max(1) as u64) as usize;
            let victim = self
                .candidates
                .iter()
                .filter(replaceable)
                .nth(pick)
                .map(|(a, _)| a.clone());
            match victim {
                Some(v) => self.candidates.remove(&v),
                None => return,
            };
        }
        let fresh = Candidate {
            failures: 0,
            next_try: now,
            bootstrap: false,
            reached: None,
        };
        self.candidates.insert(addr.clone(), fresh);
    }

    /// Forgets a candidate address (its node left or was evicted), unless it is a bootstrap.
    pub(crate) fn forget(&mut self, addr: &Addr) {
        if self.candidates.get(addr).is_some_and(|c| !c.bootstrap) {
            self.candidates.remove(addr);
        }
    }

    /// Another failure of `addr`: its next try backs off exponentially, with +-25% jitter
    /// so that restarted clusters do not dial in lockstep.
    pub(crate) fn backoff<R: CryptoRng + ?Sized>(&mut self, addr: &Addr, now: Time, rng: &mut R) {
        if let Some(c) = self.candidates.get_mut(addr) {
            c.failures = c.failures.saturating_add(1);
            let exp = BACKOFF_BASE
                .saturating_mul(1 << (c.failures - 1).min(8))
                .min(BACKOFF_MAX);
            let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX);
            let jitter = rng.next_u64() % (ms / 2 + 1);
            c.next_try = now + Duration::from_millis(ms - ms / 4 + jitter);
        }
    }

    /// A handshake over a connection to `addr` succeeded (one this node dialed led to
    /// `reached`): its failures are forgotten.
    pub(crate) fn succeeded(&mut self, addr: &Addr, reached: Option<Fingerprint>) {
        if let Some(c) = self.candidates.get_mut(addr) {
            c.failures = 0;
            if reached.is_some() {
                c.reached = reached;
            }
        }
    }

    /// `addr` turned out to be this node itself: never dialed again.
    pub(crate) fn is_self(&mut self, addr: &Addr) {
        self.own_addrs.insert(addr.clone());
        self.candidates.remove(addr);
    }

    /// A member with key `key` advertised `addr` as its own: a candidate that never led to a
    /// node is taken to lead to it (so a bootstrap that refuses this node for want of room
    /// counts as reached while its member is; a dial that succeeds says otherwise).
    pub(crate) fn advertised(&mut self, addr: &Addr, key: Fingerprint) {
        if let Some(c) = self.candidates.get_mut(addr) {
            c.reached.get_or_insert(key);
        }
    }

    /// The node an address led to last time it was dialed.
    pub(crate) fn reached(&self, addr: &Addr) -> Option<Fingerprint> {
        self.candidates.get(addr).and_then(|c| c.reached)
    }

    /// Whether `addr` is a candidate due for a try at `now`.
    pub(crate) fn ready(&self, addr: &Addr, now: Time) -> bool {
        self.candidates.get(addr).is_some_and(|c| c.next_try <= now)
    }

    /// Up to `n` candidates picked at random, none of them `skip`ped: what a handshake
    /// passes on besides the direct peers, so that addresses spread beyond each node's
    /// neighbourhood before any advertisement has (peer sampling, as Cyclon's shuffle).
    pub(crate) fn sample<R: CryptoRng + ?Sized>(
        &self,
        n: usize,
        skip: impl Fn(&Addr) -> bool,
        rng: &mut R,
    ) -> Vec<Addr> {
        let mut pool: Vec<&Addr> = self.candidates.keys().filter(|a| !skip(a)).collect();
        let mut picked = Vec::new();
        while picked.len() < n && !pool.is_empty() {
            let i = (rng.next_u64() % pool.len() as u64) as usize;
            picked.push(pool.swap_remove(i).clone());
        }
        picked
    }

    /// Candidates due at `now`, not being dialed and not `connected`, in address order.
    pub(crate) fn eligible(&self, now: Time, connected: impl Fn(&Addr) -> bool) -> Vec<Addr> {
        self.due(now, connected, |_| true)
    }

    /// Bootstrap addresses due at `now`, not being dialed and not `connected`, whose node
    /// (the one each led to last time; any, if it never led to one) is not `reached`.
    pub(crate) fn unreached_bootstrap(
        &self,
        now: Time,
        connected: impl Fn(&Addr) -> bool,
        reached: impl Fn(&Fingerprint) -> bool,
    ) -> Vec<Addr> {
        self.due(now, connected, |c| {
            c.bootstrap && !c.reached.as_ref().is_some_and(&reached)
        })
    }

    fn due(
        &self,
        now: Time,
        connected: impl Fn(&Addr) -> bool,
        wanted: impl Fn(&Candidate) -> bool,
    ) -> Vec<Addr> {
        self.candidates
            .iter()
            .filter(|(a, c)| {
                c.next_try <= now && wanted(c) && !self.dialing.contains(*a) && !connected(a)
            })
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Records a dial of `addr`; false (nothing to dial) for an own address or one already
    /// being dialed.
    pub(crate) fn start(&mut self, addr: &Addr) -> bool {
        if self.own_addrs.contains(addr) || self.dialing.contains(addr) {
            return false;
        }
        self.dialing.insert(addr.clone())
    }

    /// The dial of `addr` ended (connected, or failed).
    pub(crate) fn ended(&mut self, addr: &Addr) {
        self.dialing.remove(addr);
    }

    /// Dials in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.dialing.len()
    }

    /// Whether a dial to `addr` is in flight.
    pub(crate) fn dialing(&self, addr: &Addr) -> bool {
        self.dialing.contains(addr)
    }

    /// Candidates known.
    pub(crate) fn len(&self) -> usize {
        self.candidates.len()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    fn addr(i: usize) -> Addr {
        Addr::from(format!("10.0.{}.{}:7000", i / 250, i % 250 + 1).as_str())
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_its_bootstrap_addresses() {
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let own = Addr::from("10.9.9.9:7000");
        let mut t = DialTable::new(&own, &[addr(0), own.clone()]);
        assert_eq!(t.len(), 1, "never its own address");
        for i in 1..2000 {
            t.learn(&addr(i), Time::ZERO, &mut rng);
        }
        assert_eq!(t.len(), MAX_CANDIDATES);
        assert!(t.ready(&addr(0), Time::ZERO), "the bootstrap stays");
        t.forget(&addr(0));
        assert!(t.ready(&addr(0), Time::ZERO), "even when its node leaves");
        assert!(!t.start(&own));
    }

    #[test]
    fn a_new_bootstrap_list_is_kept_and_the_old_one_can_be_forgotten() {
        let mut t = DialTable::new(&addr(99), &[addr(1), addr(2)]);
        t.set_bootstrap(&[addr(2), addr(3), addr(99)]);
        assert_eq!(t.len(), 3, "never its own address");
        t.forget(&addr(1));
        t.forget(&addr(2));
        t.forget(&addr(3));
        assert_eq!(t.eligible(Time::ZERO, |_| false), [addr(2), addr(3)]);
    }

    #[test]
    fn failures_back_off_exponentially_until_a_success() {
        let mut rng = ChaCha20Rng::from_seed([2; 32]);
        let mut t = DialTable::new(&addr(99), &[addr(1)]);
        let at = Time::from_millis;
        for failures in 1..=12u32 {
            t.backoff(&addr(1), at(0), &mut rng);
            let full = BACKOFF_BASE
                .saturating_mul(1 << (failures - 1).min(8))
                .min(BACKOFF_MAX);
            let ms = full.as_millis() as u64;
            assert!(!t.ready(&addr(1), at(ms - ms / 4 - 1)), "{failures}");
            assert!(t.ready(&addr(1), at(ms + ms / 4)), "{failures}");
        }
        t.succeeded(&addr(1), Some(Fingerprint([5; 32])));
        t.backoff(&addr(1), at(0), &mut rng);
        assert!(t.ready(&addr(1), at(313)), "failures were forgotten");
        assert_eq!(t.reached(&addr(1)), Some(Fingerprint([5; 32])));
    }

    #[test]
    fn a_dial_in_flight_or_to_itself_is_not_started_again() {
        let mut t = DialTable::new(&addr(99), &[addr(1), addr(2)]);
        assert!(t.start(&addr(1)));
        assert!(!t.start(&addr(1)));
        assert_eq!(t.eligible(Time::ZERO, |_| false), [addr(2)]);
        assert_eq!(
            t.eligible(Time::ZERO, |a| *a == addr(2)),
            Vec::<Addr>::new()
        );
        t.ended(&addr(1));
        t.is_self(&addr(1));
        assert!(!t.start(&addr(1)));
        assert_eq!(t.in_flight(), 0);
    }
}
