//! What the daemon records for operators beyond the core's counters, by watching the
//! events it feeds the node and the actions it gets back: latency histograms (rumor
//! propagation from the origin's signature to acceptance here, handshake time from the
//! connection to the peer being up) and a bounded ring of the latest rejections. Also the
//! driver's [`Clock`]: the node's [`Time`] anchored to the Unix epoch, so that the
//! `issued_at` of a rumor signed on another daemon can be compared with this one's `now`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use overlay_core::{Action, Addr, ConnId, Event, NodeId, Notification, Time};
use serde::Serialize;

/// Rejections kept for the control API and the page.
pub(crate) const RECENT_REJECTIONS: usize = 64;

/// Upper bounds (seconds) of the latency histograms' buckets. Times are measured in whole
/// milliseconds, so the first bucket holds everything under a millisecond.
pub(crate) const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A monotonic clock whose readings are Unix milliseconds: the wall clock read once at
/// start, plus the monotonic time elapsed since. It never goes back, even when the wall
/// clock is set back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    started: Instant,
    epoch_ms: u64,
}

impl Clock {
    /// A clock starting now.
    pub(crate) fn start() -> Clock {
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Clock {
            started: Instant::now(),
            epoch_ms,
        }
    }

    /// The current time (Unix milliseconds).
    pub(crate) fn now(&self) -> Time {
        Time::from_millis(self.epoch_ms.saturating_add(millis(self.started.elapsed())))
    }

    /// The instant at which this clock reads `time` (now, if that is before the start).
    pub(crate) fn instant(&self, time: Time) -> Instant {
        self.started + Duration::from_millis(time.as_millis().saturating_sub(self.epoch_ms))
    }

    /// Time since the start.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A Prometheus histogram of durations.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: Vec<u64>,
    sum_ms: u64,
    count: u64,
}

impl Histogram {
    /// An empty histogram with these bucket bounds (seconds, increasing).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum_ms: 0,
            count: 0,
        }
    }

    /// Records one duration (in whole milliseconds).
    pub fn observe(&mut self, d: Duration) {
        let ms = millis(d);
        let seconds = ms as f64 / 1000.0;
        let bucket = self.bounds.partition_point(|&bound| bound < seconds);
        if let Some(n) = self.counts.get_mut(bucket) {
            *n += 1;
        }
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The samples of the exposition format, as (suffix with labels, value):
    /// `_bucket{le="..."}` (cumulative, `+Inf` last), `_sum` (seconds) and `_count`.
    pub fn samples(&self) -> Vec<(String, f64)> {
        let mut samples = Vec::with_capacity(self.counts.len() + 2);
        let mut cumulative = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cumulative += n;
            let le = self
                .bounds
                .get(i)
                .map_or_else(|| "+Inf".to_string(), f64::to_string);
            samples.push((format!("_bucket{{le=\"{le}\"}}"), cumulative as f64));
        }
        samples.push(("_sum".into(), self.sum_ms as f64 / 1000.0));
        samples.push(("_count".into(), self.count as f64));
        samples
    }
}

/// One rejected frame, message or handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// When (Unix milliseconds).
    pub at_ms: u64,
    /// The remote address of the connection it came on.
    pub remote: Addr,
    /// The direct peer, when the connection was authenticated.
    pub node: Option<NodeId>,
    /// The reason's metric label (`malformed`, `hop_auth`, ...).
    pub reason: &'static str,
    /// The reason in words.
    pub detail: String,
    /// Whether the direct peer is blamed (counts towards a ban).
    pub blamed: bool,
}

/// An open connection, as far as the telemetry cares.
#[derive(Debug, Clone)]
struct Open {
    remote: Addr,
    /// When it opened, while its handshake is under way.
    handshaking_since: Option<Time>,
}

/// Histograms and recent rejections, fed from the driver's event and action stream.
#[derive(Debug, Clone)]
pub struct Telemetry {
    open: HashMap<ConnId, Open>,
    rejections: VecDeque<Rejection>,
    /// Origin signature → acceptance here, for every rumor accepted as new that carries
    /// its origin's time.
    pub propagation: Histogram,
    /// Connection open → peer up, for every completed handshake.
    pub handshake: Histogram,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry {
            open: HashMap::new(),
            rejections: VecDeque::with_capacity(RECENT_REJECTIONS),
            propagation: Histogram::new(&LATENCY_BUCKETS),
            handshake: Histogram::new(&LATENCY_BUCKETS),
        }
    }
}

impl Telemetry {
    /// Watches an event about to be handed to the node at `now`.
    pub fn event(&mut self, now: Time, event: &Event) {
        match event {
            Event::Connected { conn, remote, .. } => {
                self.open.insert(
                    *conn,
                    Open {
                        remote: remote.clone(),
                        handshaking_since: Some(now),
                    },
                );
            }
            Event::Disconnected { conn } => {
                self.open.remove(conn);
            }
            _ => {}
        }
    }

    /// Watches the actions the node returned at `now`: notifications first, while every
    /// connection they name is still known, then closes.
    pub fn actions(&mut self, now: Time, actions: &[Action]) {
        for action in actions {
            if let Action::Notify(n) = action {
                self.notification(now, n);
            }
        }
        for action in actions {
            if let Action::Close { conn, .. } = action {
                self.open.remove(conn);
            }
        }
    }

    fn notification(&mut self, now: Time, n: &Notification) {
        match n {
            Notification::PeerUp { conn, .. } => {
                let since = self
                    .open
                    .get_mut(conn)
                    .and_then(|o| o.handshaking_since.take());
                if let Some(since) = since {
                    self.handshake.observe(now.since(since));
                }
            }
            // Zero: the origin did not say (a body signed before `issued_at` existed).
            Notification::RumorAccepted { issued_at, .. } if *issued_at != Time::ZERO => {
                self.propagation.observe(now.since(*issued_at));
            }
            Notification::Rejected { conn, node, reason } => {
                if self.rejections.len() == RECENT_REJECTIONS {
                    self.rejections.pop_front();
                }
                self.rejections.push_back(Rejection {
                    at_ms: now.as_millis(),
                    remote: self
                        .open
                        .get(conn)
                        .map_or_else(|| Addr::from(conn.to_string()), |o| o.remote.clone()),
                    node: *node,
                    reason: reason.label(),
                    detail: reason.to_string(),
                    blamed: node.is_some() && reason.blames_peer(),
                });
            }
            _ => {}
        }
    }

    /// The latest rejections, newest first.
    pub fn rejections(&self) -> impl Iterator<Item = &Rejection> {
        self.rejections.iter().rev()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_core::{Direction, RejectReason};

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf() {
        let mut h = Histogram::new(&LATENCY_BUCKETS);
        for ms in [0, 1, 2, 7, 7, 70_000] {
            h.observe(Duration::from_millis(ms));
        }
        let samples = h.samples();
        let value = |name: &str| samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        assert_eq!(value("_bucket{le=\"0.001\"}"), Some(2.0), "0 ms and 1 ms");
        assert_eq!(value("_bucket{le=\"0.0025\"}"), Some(3.0));
        assert_eq!(value("_bucket{le=\"0.005\"}"), Some(3.0));
        assert_eq!(value("_bucket{le=\"0.01\"}"), Some(5.0));
        assert_eq!(value("_bucket{le=\"60\"}"), Some(5.0));
        assert_eq!(value("_bucket{le=\"+Inf\"}"), Some(6.0));
        assert_eq!(value("_count"), Some(6.0));
        assert_eq!(value("_sum"), Some(70.017));
        assert_eq!(samples.len(), LATENCY_BUCKETS.len() + 3);
    }

    #[test]
    fn handshake_time_runs_from_connected_to_peer_up_and_rejections_are_a_bounded_ring() {
        let mut t = Telemetry::default();
        let conn = ConnId(7);
        let remote = Addr::from("127.0.0.1:4000");
        t.event(
            Time::from_millis(1_000),
            &Event::Connected {
                conn,
                direction: Direction::Inbound,
                remote: remote.clone(),
            },
        );
        let up = Action::Notify(Notification::PeerUp {
            conn,
            node: NodeId(2),
            asn: overlay_core::Asn(200),
            addr: remote.clone(),
            fingerprint: overlay_core::Fingerprint([1; 32]),
        });
        t.actions(Time::from_millis(1_030), std::slice::from_ref(&up));
        // A second PeerUp on the same connection is not a second handshake.
        t.actions(Time::from_millis(1_090), &[up]);
        assert_eq!(t.handshake.count(), 1);
        assert_eq!(t.handshake.sum_ms, 30);

        let reject = |reason| {
            Action::Notify(Notification::Rejected {
                conn,
                node: Some(NodeId(2)),
                reason,
            })
        };
        for i in 0..RECENT_REJECTIONS + 5 {
            t.actions(
                Time::from_millis(2_000 + i as u64),
                &[reject(RejectReason::Replay)],
            );
        }
        t.actions(Time::from_millis(9_000), &[reject(RejectReason::HopAuth)]);
        let recent: Vec<&Rejection> = t.rejections().collect();
        assert_eq!(recent.len(), RECENT_REJECTIONS);
        assert_eq!(
            (recent[0].reason, recent[0].blamed, recent[0].at_ms),
            ("hop_auth", false, 9_000)
        );
        assert_eq!(recent[0].remote, remote);
        assert!(recent[1].blamed);
        assert_eq!(recent[RECENT_REJECTIONS - 1].at_ms, 2_006, "oldest dropped");

        // A rejection that closes the connection still names its remote address.
        let close = Action::Close {
            conn,
            reason: overlay_core::CloseReason::FrameTooLarge,
        };
        t.actions(
            Time::from_millis(9_100),
            &[close, reject(RejectReason::FrameTooLarge)],
        );
        assert_eq!(t.rejections().next().unwrap().remote, remote);
        assert!(t.open.is_empty());

        // Once closed, the connection is forgotten (rejections name it by id).
        t.event(
            Time::from_millis(9_200),
            &Event::Connected {
                conn,
                direction: Direction::Inbound,
                remote: remote.clone(),
            },
        );
        t.event(Time::from_millis(9_500), &Event::Disconnected { conn });
        t.actions(Time::from_millis(9_600), &[reject(RejectReason::HopAuth)]);
        assert_eq!(t.rejections().next().unwrap().remote, Addr::from("conn#7"));
        assert!(t.open.is_empty());
    }

    #[test]
    fn propagation_delay_is_now_minus_issued_at_and_unknown_origins_are_skipped() {
        let mut t = Telemetry::default();
        let accepted = |issued_at| {
            Action::Notify(Notification::RumorAccepted {
                origin: NodeId(3),
                seq: 1,
                issued_at: Time::from_millis(issued_at),
                from: NodeId(2),
                age_ms: 0,
                hops: 2,
            })
        };
        t.actions(
            Time::from_millis(1_700_000_000_250),
            &[accepted(1_700_000_000_000), accepted(0)],
        );
        assert_eq!(t.propagation.count(), 1);
        assert_eq!(t.propagation.sum_ms, 250);
    }

    #[test]
    fn the_clock_reads_unix_milliseconds_and_maps_back_to_instants() {
        let clock = Clock::start();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let now = clock.now().as_millis();
        assert!(now.abs_diff(wall) < 1_000, "{now} vs {wall}");
        let later = Time::from_millis(now + 500);
        let at = clock.instant(later);
        assert!(at > Instant::now() + Duration::from_millis(400));
        assert!(clock.instant(Time::ZERO) <= Instant::now());
    }
}
