//! Signing rates, judged on signed time. A direct peer floods when it signed more than
//! `max_rumors_per_period` of its own rumors within one gossip period of its own
//! `issued_at` clock: that is signed evidence, whatever the order, delay or burst in which
//! the rumors arrive (a CPU-starved receiver reading a backlog at once blames nobody). The
//! same record paces this node's own signing one rumor under that limit, the last slot kept
//! for a leave, so that no honest node is ever judged a flooder.

use std::collections::VecDeque;
use std::time::Duration;

/// Issue times (milliseconds of the signer's clock) of recent signed rumors, sorted.
#[derive(Debug, Clone, Default)]
pub(crate) struct SignedRate {
    times: VecDeque<u64>,
}

/// What a signing rate is judged against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimit {
    /// Most rumors one signer may sign within one `period`.
    pub cap: u32,
    /// The window.
    pub period: Duration,
    /// How far back issue times still matter (a rumor older than this is expired).
    pub horizon: Duration,
}

impl RateLimit {
    fn period_ms(&self) -> u64 {
        ms(self.period).max(1)
    }

    /// Most issue times kept: more than an honest signer can produce within the horizon.
    fn max_kept(&self) -> usize {
        let windows = ms(self.horizon) / self.period_ms() + 2;
        usize::try_from(windows.saturating_mul(u64::from(self.cap))).unwrap_or(usize::MAX)
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl SignedRate {
    /// Whether `issued_at` is recent enough to be judged (within the horizon before
    /// `now_ms`); older rumors are left to the arrival-time limit.
    pub(crate) fn judges(now_ms: u64, issued_at: u64, limit: &RateLimit) -> bool {
        issued_at >= now_ms.saturating_sub(ms(limit.horizon))
    }

    /// Records a rumor signed at `issued_at` (forgetting issue times before the horizon),
    /// unless it would be one more than `cap` within one period: then it is not recorded
    /// and the answer is true, a flood proven by the signer's own clock. Issue times
    /// before the horizon are not recorded either (see [`SignedRate::judges`]).
    pub(crate) fn record(&mut self, now_ms: u64, issued_at: u64, limit: &RateLimit) -> bool {
        let oldest = now_ms.saturating_sub(ms(limit.horizon));
        while self.times.front().is_some_and(|&t| t < oldest) {
            self.times.pop_front();
        }
        if issued_at < oldest {
            return false;
        }
        let at = self.times.partition_point(|&t| t <= issued_at);
        self.times.insert(at, issued_at);
        if self.times.len() > limit.max_kept() || self.flooded(limit) {
            self.times.remove(at);
            return true;
        }
        false
    }

    /// Whether more than `cap` kept issue times lie within one period.
    fn flooded(&self, limit: &RateLimit) -> bool {
        let cap = usize::try_from(limit.cap).unwrap_or(usize::MAX);
        let period = limit.period_ms();
        let mut start = 0;
        for (end, &t) in self.times.iter().enumerate() {
            while self.times.get(start).is_some_and(|&s| t - s >= period) {
                start += 1;
            }
            if end + 1 - start > cap {
                return true;
            }
        }
        false
    }

    /// Issue times within the period before `now_ms` (inclusive of `now_ms`).
    fn within(&self, now_ms: u64, limit: &RateLimit) -> impl Iterator<Item = u64> + '_ {
        let from = now_ms.saturating_sub(limit.period_ms() - 1);
        self.times.iter().copied().filter(move |&t| t >= from)
    }

    /// Whether this node may sign one more ordinary rumor at `now_ms`: fewer than
    /// `cap - 1` within the period, so that a leave always fits under the limit.
    pub(crate) fn may_sign(&self, now_ms: u64, limit: &RateLimit) -> bool {
        let reserve = u64::from(limit.cap.saturating_sub(1).max(1));
        (self.within(now_ms, limit).count() as u64) < reserve
    }

    /// When the oldest issue time within the period leaves it (the next signing slot).
    pub(crate) fn next_slot(&self, now_ms: u64, limit: &RateLimit) -> u64 {
        self.within(now_ms, limit)
            .min()
            .map_or(now_ms, |t| t + limit.period_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        cap: 4,
        period: Duration::from_millis(1000),
        horizon: Duration::from_millis(5000),
    };

    #[test]
    fn more_than_cap_within_a_period_is_a_flood_in_any_arrival_order() {
        let mut rate = SignedRate::default();
        // Five rumors signed within 900 ms, arriving newest first.
        for (k, t) in [10_900, 10_700, 10_500, 10_300].into_iter().enumerate() {
            assert!(!rate.record(11_000, t, &LIMIT), "rumor {k}");
        }
        assert!(rate.record(11_000, 10_000, &LIMIT));
        // The rejected one is not kept: the next period's rumors are judged on their own.
        assert_eq!(rate.times.len(), 4);
        assert!(!rate.record(11_000, 11_950, &LIMIT));
    }

    #[test]
    fn a_burst_of_rumors_signed_at_the_allowed_rate_is_no_flood() {
        // Twenty rumors signed 250 ms apart (4 per second) all arrive at once, in reverse.
        let mut paced = SignedRate::default();
        for k in (0..20).rev() {
            assert!(!paced.record(20_000, 15_000 + k * 250, &LIMIT), "rumor {k}");
        }
        // One more in the middle makes five within a second.
        assert!(paced.record(20_000, 17_100, &LIMIT));
    }

    #[test]
    fn issue_times_older_than_the_horizon_are_forgotten() {
        let mut rate = SignedRate::default();
        for t in [1_000, 1_100, 1_200, 1_300] {
            rate.record(1_300, t, &LIMIT);
        }
        assert!(!rate.record(9_000, 1_350, &LIMIT), "expired: not counted");
        assert_eq!(rate.times.len(), 0);
    }

    #[test]
    fn pacing_keeps_own_signing_under_the_limit_with_room_for_a_leave() {
        let mut own = SignedRate::default();
        let mut judged = SignedRate::default();
        let mut now = 0;
        let mut signed = 0;
        while now < 10_000 {
            if own.may_sign(now, &LIMIT) {
                own.record(now, now, &LIMIT);
                assert!(!judged.record(now, now, &LIMIT), "paced rumor at {now}");
                signed += 1;
            } else {
                assert!(own.next_slot(now, &LIMIT) > now);
            }
            now += 50;
        }
        assert_eq!(signed, 30, "three per second");
        assert!(!judged.record(now, now, &LIMIT), "a leave still fits");
    }
}
