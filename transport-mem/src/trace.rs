//! The trace: a running SHA-256 over everything the simulator hands to a node and
//! everything a node asks for, in order, with virtual times and slots. Two runs with the
//! same seed must end with the same digest; any divergence, however small, changes it.
//! Sent bytes are hashed in full (received bytes follow from them and are hashed by length).

use overlay_core::{Action, Event, Notification, Time};
use sha2::{Digest, Sha256};

/// The hash of the event log.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    hasher: Sha256,
    records: u64,
}

impl Trace {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&mut self, at: Time, slot: usize, tag: u8, fields: &[&[u8]]) {
        self.records += 1;
        self.hasher.update(at.as_millis().to_be_bytes());
        self.hasher.update((slot as u64).to_be_bytes());
        self.hasher.update([tag]);
        for f in fields {
            self.hasher.update((f.len() as u64).to_be_bytes());
            self.hasher.update(f);
        }
    }

    /// An event handed to the node in `slot`.
    pub fn event(&mut self, at: Time, slot: usize, event: &Event) {
        match event {
            Event::Connected {
                conn,
                direction,
                remote,
            } => {
                let dir = format!("{direction:?}");
                let fields: [&[u8]; 3] =
                    [&conn.0.to_be_bytes(), dir.as_bytes(), remote.0.as_bytes()];
                self.record(at, slot, 1, &fields);
            }
            Event::ConnectFailed { addr } => self.record(at, slot, 2, &[addr.0.as_bytes()]),
            Event::Received { conn, bytes } => {
                let len = bytes.len() as u64;
                self.record(at, slot, 3, &[&conn.0.to_be_bytes(), &len.to_be_bytes()]);
            }
            Event::Disconnected { conn } => self.record(at, slot, 4, &[&conn.0.to_be_bytes()]),
            Event::Tick => self.record(at, slot, 5, &[]),
            Event::Command(c) => self.record(at, slot, 6, &[format!("{c:?}").as_bytes()]),
        }
    }

    /// An action the node in `slot` returned.
    pub fn action(&mut self, at: Time, slot: usize, action: &Action) {
        match action {
            Action::Connect { addr } => self.record(at, slot, 11, &[addr.0.as_bytes()]),
            Action::Send { conn, bytes } => {
                self.record(at, slot, 12, &[&conn.0.to_be_bytes(), bytes])
            }
            Action::Close { conn, reason } => {
                let reason = format!("{reason:?}");
                self.record(at, slot, 13, &[&conn.0.to_be_bytes(), reason.as_bytes()]);
            }
            Action::Notify(n) => self.notification(at, slot, n),
        }
    }

    fn notification(&mut self, at: Time, slot: usize, n: &Notification) {
        match n {
            Notification::RumorAccepted {
                origin, seq, from, ..
            } => {
                let f: [&[u8]; 3] = [
                    &origin.0.to_be_bytes(),
                    &seq.to_be_bytes(),
                    &from.0.to_be_bytes(),
                ];
                self.record(at, slot, 21, &f);
            }
            Notification::RoutesChanged { changes } => {
                let dests: Vec<u8> = changes
                    .iter()
                    .flat_map(|c| c.destination.0.to_be_bytes())
                    .collect();
                self.record(at, slot, 22, &[&dests]);
            }
            other => self.record(at, slot, 23, &[format!("{other:?}").as_bytes()]),
        }
    }

    /// A fault or command applied by the simulator itself (crash, cut, partition...).
    pub fn fault(&mut self, at: Time, slot: usize, what: &str) {
        self.record(at, slot, 31, &[what.as_bytes()]);
    }

    /// Records so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The digest of everything so far, as hex.
    pub fn digest(&self) -> String {
        self.hasher
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_core::ConnId;

    #[test]
    fn digest_depends_on_order_time_and_content() {
        let recv = |n: usize| Event::Received {
            conn: ConnId(1),
            bytes: vec![0; n],
        };
        let mut a = Trace::new();
        a.event(Time::from_millis(1), 0, &Event::Tick);
        a.event(Time::from_millis(2), 0, &recv(3));
        let mut b = Trace::new();
        b.event(Time::from_millis(1), 0, &Event::Tick);
        b.event(Time::from_millis(2), 0, &recv(3));
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.records(), 2);
        let mut c = Trace::new();
        c.event(Time::from_millis(1), 0, &Event::Tick);
        c.event(Time::from_millis(3), 0, &recv(3));
        assert_ne!(a.digest(), c.digest());
        b.action(
            Time::from_millis(2),
            0,
            &Action::Send {
                conn: ConnId(1),
                bytes: vec![1],
            },
        );
        let mut d = a.clone();
        d.action(
            Time::from_millis(2),
            0,
            &Action::Send {
                conn: ConnId(1),
                bytes: vec![2],
            },
        );
        assert_ne!(b.digest(), d.digest(), "sent bytes are hashed in full");
    }
}
