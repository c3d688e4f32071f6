//! The trace: a running SHA-256 over everything the simulator hands to a node and
//! everything a node asks for, in order, with virtual times and slots. Two runs with the
//! same seed must end with the same digest; any divergence, however small, changes it.
//! Sent bytes are hashed in full (received bytes follow from them and are hashed by length).
//! Each item is first hashed on its own into a [`Record`] (so the simulator's worker
//! threads can hash what their nodes do); the trace chains the records in the
//! simulator's canonical order.

use overlay_core::{Action, Event, Notification, Time};
use sha2::{Digest, Sha256};

/// The hash of one traced item (its time, slot, kind and fields).
pub(crate) type Record = [u8; 32];

fn record(at: Time, slot: usize, tag: u8, fields: &[&[u8]]) -> Record {
    let mut h = Sha256::new();
    h.update(at.as_millis().to_be_bytes());
    h.update((slot as u64).to_be_bytes());
    h.update([tag]);
    for f in fields {
        h.update((f.len() as u64).to_be_bytes());
        h.update(f);
    }
    h.finalize().into()
}

/// The record of an event handed to the node in `slot`.
pub(crate) fn event_record(at: Time, slot: usize, event: &Event) -> Record {
    match event {
        Event::Connected {
            conn,
            direction,
            remote,
        } => {
            let dir = format!("{direction:?}");
            let fields: [&[u8]; 3] = [&conn.0.to_be_bytes(), dir.as_bytes(), remote.0.as_bytes()];
            record(at, slot, 1, &fields)
        }
        Event::ConnectFailed { addr } => record(at, slot, 2, &[addr.0.as_bytes()]),
        Event::Received { conn, bytes } => {
            let len = bytes.len() as u64;
            record(at, slot, 3, &[&conn.0.to_be_bytes(), &len.to_be_bytes()])
        }
        Event::Disconnected { conn } => record(at, slot, 4, &[&conn.0.to_be_bytes()]),
        Event::Tick => record(at, slot, 5, &[]),
        Event::Command(c) => record(at, slot, 6, &[format!("{c:?}").as_bytes()]),
    }
}

/// The record of an action the node in `slot` returned.
pub(crate) fn action_record(at: Time, slot: usize, action: &Action) -> Record {
    match action {
        Action::Connect { addr } => record(at, slot, 11, &[addr.0.as_bytes()]),
        Action::Send { conn, bytes } => record(at, slot, 12, &[&conn.0.to_be_bytes(), bytes]),
        Action::Close { conn, reason } => {
            let reason = format!("{reason:?}");
            record(at, slot, 13, &[&conn.0.to_be_bytes(), reason.as_bytes()])
        }
        Action::Notify(n) => notification_record(at, slot, n),
    }
}

fn notification_record(at: Time, slot: usize, n: &Notification) -> Record {
    match n {
        Notification::RumorAccepted {
            origin, seq, from, ..
        } => {
            let f: [&[u8]; 3] = [
                &origin.0.to_be_bytes(),
                &seq.to_be_bytes(),
                &from.0.to_be_bytes(),
            ];
            record(at, slot, 21, &f)
        }
        Notification::RoutesChanged { changes } => {
            let dests: Vec<u8> = changes
                .iter()
                .flat_map(|c| c.destination.0.to_be_bytes())
                .collect();
            record(at, slot, 22, &[&dests])
        }
        other => record(at, slot, 23, &[format!("{other:?}").as_bytes()]),
    }
}

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

    /// Chains one record.
    pub fn push(&mut self, record: Record) {
        self.records += 1;
        self.hasher.update(record);
    }

    /// An event handed to the node in `slot`.
    pub fn event(&mut self, at: Time, slot: usize, event: &Event) {
        self.push(event_record(at, slot, event));
    }

    /// An action the node in `slot` returned.
    pub fn action(&mut self, at: Time, slot: usize, action: &Action) {
        self.push(action_record(at, slot, action));
    }

    /// A fault or command applied by the simulator itself (crash, cut, partition...).
    pub fn fault(&mut self, at: Time, slot: usize, what: &str) {
        self.push(record(at, slot, 31, &[what.as_bytes()]));
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
