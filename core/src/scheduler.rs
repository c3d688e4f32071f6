//! Time and timers: the core's monotonic [`Time`], the cron-spec parser for the gossip
//! period, and the [`Scheduler`] timer table from which the node reports its next wake-up.
//!
//! The core never reads a clock. The embedder passes `now` into every call; the scheduler
//! only compares those values with the deadlines it stores.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Add;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::wire::ConnId;

/// A point on the embedder's monotonic clock, in milliseconds from an epoch of its choice.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// A time `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Time(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// How long ago `earlier` was, or zero if it is not earlier.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// The later of the two times.
    pub fn max(self, other: Time) -> Time {
        Time(self.0.max(other.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Why a cron spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CronError {
    /// Only the `@every <n><unit>` form is supported.
    #[error("unsupported cron spec {0:?}: expected \"@every <n><unit>\", e.g. \"@every 10s\"")]
    Unsupported(String),
    /// The number in front of the unit is missing or not a whole number.
    #[error("bad interval {0:?} in cron spec: expected a whole number followed by ms, s, m or h")]
    BadNumber(String),
    /// The unit is not one of ms, s, m, h.
    #[error("unknown unit {0:?} in cron spec: expected ms, s, m or h")]
    BadUnit(String),
    /// A zero interval would spin.
    #[error("cron interval must be greater than zero")]
    Zero,
    /// Longer than a day is certainly a typo.
    #[error("cron interval {0:?} is longer than one day")]
    TooLong(String),
}

/// Parses a gossip period: `"@every 10s"`, `"@every 500ms"`, `"@every 1m"`, `"@every 2h"`.
pub fn parse_cron(spec: &str) -> Result<Duration, CronError> {
    let rest = spec
        .trim()
        .strip_prefix("@every")
        .ok_or_else(|| CronError::Unsupported(spec.to_string()))?;
    if !rest.starts_with(char::is_whitespace) {
        return Err(CronError::Unsupported(spec.to_string()));
    }
    let interval = rest.trim();
    let split = interval
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| CronError::BadUnit(String::new()))?;
    let (digits, unit) = interval.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| CronError::BadNumber(interval.to_string()))?;
    let ms_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        other => return Err(CronError::BadUnit(other.to_string())),
    };
    let ms = n
        .checked_mul(ms_per_unit)
        .ok_or_else(|| CronError::TooLong(interval.to_string()))?;
    if ms == 0 {
        return Err(CronError::Zero);
    }
    if ms > 86_400_000 {
        return Err(CronError::TooLong(interval.to_string()));
    }
    Ok(Duration::from_millis(ms))
}

/// Every kind of deadline the node keeps. Each timer is set at most once at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// Re-advertise own links, expire old state.
    GossipRound,
    /// Send heartbeats on idle links, close silent ones.
    Heartbeat,
    /// Try to reach `min_peers` by dialing known members (with backoff).
    Dial,
    /// A connection that has not finished its handshake by now is closed.
    HandshakeDeadline(ConnId),
    /// The earliest ban, eviction or accusation expiry.
    BanExpiry,
    /// Recompute the routing table (debounced).
    RouteRecompute,
    /// Send the announcements gathered for lazy links.
    LazyPush,
    /// Graft rumors announced but not delivered in time.
    Graft,
    /// Exchange digests with one random peer.
    AntiEntropy,
    /// Sign what waited for the signing pace (an advertisement, accusations).
    Sign,
    /// Advertise a change of direct peers, once its hold-down has passed.
    Advertise,
}

/// The timer table: at most one deadline per [`Timer`], ordered by time.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scheduler {
    deadlines: BTreeMap<Timer, Time>,
    queue: BTreeSet<(Time, Timer)>,
}

impl Scheduler {
    /// An empty table.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Sets (or moves) `timer` to fire at `at`.
    pub(crate) fn set(&mut self, timer: Timer, at: Time) {
        if let Some(old) = self.deadlines.insert(timer, at) {
            self.queue.remove(&(old, timer));
        }
        self.queue.insert((at, timer));
    }

    /// Sets `timer` to `at` unless it is already due earlier.
    pub(crate) fn set_earliest(&mut self, timer: Timer, at: Time) {
        match self.deadlines.get(&timer) {
            Some(&existing) if existing <= at => {}
            _ => self.set(timer, at),
        }
    }

    /// Removes `timer` if it is set.
    pub(crate) fn cancel(&mut self, timer: Timer) {
        if let Some(at) = self.deadlines.remove(&timer) {
            self.queue.remove(&(at, timer));
        }
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<Timer> {
        let &(at, timer) = self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.remove(&(at, timer));
        self.deadlines.remove(&timer);
        Some(timer)
    }

    /// The earliest deadline, if any timer is set.
    pub(crate) fn next_wakeup(&self) -> Option<Time> {
        self.queue.first().map(|&(at, _)| at)
    }

    /// How many timers are set.
    pub(crate) fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether no timer is set.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_specs() {
        assert_eq!(parse_cron("@every 10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_cron("@every 500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_cron("@every 1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_cron("  @every   2h "), Ok(Duration::from_secs(7200)));
    }

    #[test]
    fn refuses_everything_else() {
        assert!(matches!(
            parse_cron("*/5 * * * *"),
            Err(CronError::Unsupported(_))
        ));
        assert!(matches!(
            parse_cron("@every10s"),
            Err(CronError::Unsupported(_))
        ));
        assert!(matches!(
            parse_cron("@every s"),
            Err(CronError::BadNumber(_))
        ));
        assert!(matches!(
            parse_cron("@every 10"),
            Err(CronError::BadUnit(_))
        ));
        assert!(matches!(
            parse_cron("@every 10d"),
            Err(CronError::BadUnit(_))
        ));
        assert_eq!(parse_cron("@every 0s"), Err(CronError::Zero));
        assert!(matches!(
            parse_cron("@every 25h"),
            Err(CronError::TooLong(_))
        ));
        assert!(matches!(
            parse_cron("@every 99999999999999999999s"),
            Err(CronError::BadNumber(_))
        ));
        assert!(matches!(
            parse_cron("@every 9999999999999999s"),
            Err(CronError::TooLong(_))
        ));
    }

    #[test]
    fn timers_fire_in_order_and_can_move() {
        let mut s = Scheduler::new();
        s.set(Timer::GossipRound, Time::from_millis(100));
        s.set(Timer::Heartbeat, Time::from_millis(50));
        s.set(Timer::HandshakeDeadline(ConnId(7)), Time::from_millis(70));
        s.set(Timer::Heartbeat, Time::from_millis(120));
        s.set_earliest(Timer::GossipRound, Time::from_millis(150));
        assert_eq!(s.next_wakeup(), Some(Time::from_millis(70)));
        assert_eq!(s.pop_due(Time::from_millis(60)), None);
        assert_eq!(
            s.pop_due(Time::from_millis(200)),
            Some(Timer::HandshakeDeadline(ConnId(7)))
        );
        s.cancel(Timer::GossipRound);
        assert_eq!(s.pop_due(Time::from_millis(200)), Some(Timer::Heartbeat));
        assert_eq!(s.pop_due(Time::from_millis(200)), None);
        assert!(s.is_empty());
    }
}
