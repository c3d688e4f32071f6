//! In-memory pipes: ordered byte streams in virtual time. A [`Pipe`] is one direction
//! (bytes written with an arrival time, read in order, an end-of-stream after the last
//! byte); a [`Duplex`] is the two directions of one connection. Nothing here knows the
//! protocol: embedders' tests can use them to connect any two byte-stream endpoints.

use std::collections::VecDeque;

use overlay_core::Time;

/// One direction of an ordered byte stream. Chunks arrive at the time they were written
/// for, but never before an earlier chunk: jitter or a late chunk delays everything behind
/// it (head-of-line blocking), as on TCP.
#[derive(Debug, Default, Clone)]
pub struct Pipe {
    chunks: VecDeque<(Time, Vec<u8>)>,
    tail: Time,
    eof: Option<Time>,
    in_flight: usize,
}

impl Pipe {
    /// An empty, open pipe.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `bytes` to arrive at `at`, or right when the previous chunk arrives if that
    /// is later. Returns the arrival time, or `None` when the writing end is closed.
    pub fn write(&mut self, at: Time, bytes: Vec<u8>) -> Option<Time> {
        if self.eof.is_some() {
            return None;
        }
        self.tail = self.tail.max(at);
        self.in_flight += bytes.len();
        self.chunks.push_back((self.tail, bytes));
        Some(self.tail)
    }

    /// Closes the writing end: the end of stream arrives after the last chunk, at `at` at
    /// the earliest. Returns when it arrives (the first close wins).
    pub fn close(&mut self, at: Time) -> Time {
        *self.eof.get_or_insert(self.tail.max(at))
    }

    /// Everything that has arrived by `now`, concatenated (empty when nothing has).
    pub fn read(&mut self, now: Time) -> Vec<u8> {
        let mut out = Vec::new();
        while self.chunks.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, bytes)) = self.chunks.pop_front() else {
                break;
            };
            self.in_flight -= bytes.len();
            if out.is_empty() {
                out = bytes;
            } else {
                out.extend_from_slice(&bytes);
            }
        }
        out
    }

    /// The next chunk, as it was written, if it has arrived by `now`.
    pub fn read_chunk(&mut self, now: Time) -> Option<Vec<u8>> {
        if self.chunks.front().is_none_or(|(at, _)| *at > now) {
            return None;
        }
        let (_, bytes) = self.chunks.pop_front()?;
        self.in_flight -= bytes.len();
        Some(bytes)
    }

    /// Whether the reader has everything and the end of stream has arrived by `now`.
    pub fn at_eof(&self, now: Time) -> bool {
        self.chunks.is_empty() && self.eof.is_some_and(|t| t <= now)
    }

    /// When the next chunk (or the end of stream) arrives.
    pub fn next_arrival(&self) -> Option<Time> {
        self.chunks.front().map(|(t, _)| *t).or(self.eof)
    }

    /// Bytes written and not yet read.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the writing end is closed.
    pub fn is_closed(&self) -> bool {
        self.eof.is_some()
    }

    /// Discards everything in flight (the stream was reset).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.in_flight = 0;
    }
}

/// The two ends of a duplex stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The end that opened the connection.
    Dialer,
    /// The end that accepted it.
    Listener,
}

impl Side {
    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::Dialer => Side::Listener,
            Side::Listener => Side::Dialer,
        }
    }

    /// 0 for the dialer, 1 for the listener.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Both directions of one connection: what each side writes, the other reads.
#[derive(Debug, Default, Clone)]
pub struct Duplex {
    pipes: [Pipe; 2],
}

impl Duplex {
    /// An open connection with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// The pipe that `from` writes into.
    pub fn from(&mut self, from: Side) -> &mut Pipe {
        &mut self.pipes[from.index()]
    }

    /// The pipe that `to` reads from.
    pub fn to(&mut self, to: Side) -> &mut Pipe {
        &mut self.pipes[to.other().index()]
    }

    /// Bytes in flight in both directions.
    pub fn in_flight(&self) -> usize {
        self.pipes.iter().map(Pipe::in_flight).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::from_millis(ms)
    }

    #[test]
    fn chunks_arrive_in_order_even_when_written_for_earlier_times() {
        let mut p = Pipe::new();
        assert_eq!(p.write(t(10), b"ab".to_vec()), Some(t(10)));
        assert_eq!(p.write(t(5), b"c".to_vec()), Some(t(10)), "no overtaking");
        assert_eq!(p.write(t(12), b"d".to_vec()), Some(t(12)));
        assert_eq!(p.read(t(9)), b"");
        assert_eq!(p.in_flight(), 4);
        assert_eq!(p.read_chunk(t(11)).as_deref(), Some(&b"ab"[..]));
        assert_eq!(p.read(t(11)), b"c");
        assert_eq!(p.read_chunk(t(11)), None);
        assert_eq!(p.next_arrival(), Some(t(12)));
        assert_eq!(p.read(t(12)), b"d");
        assert_eq!(p.in_flight(), 0);
    }

    #[test]
    fn end_of_stream_follows_the_last_byte() {
        let mut p = Pipe::new();
        p.write(t(20), b"x".to_vec());
        assert_eq!(p.close(t(3)), t(20));
        assert_eq!(p.write(t(30), b"late".to_vec()), None);
        assert!(!p.at_eof(t(20)), "the byte is still unread");
        assert_eq!(p.read(t(20)), b"x");
        assert!(p.at_eof(t(20)));
    }

    #[test]
    fn duplex_directions_are_independent() {
        let mut d = Duplex::new();
        d.from(Side::Dialer).write(t(1), b"hello".to_vec());
        d.from(Side::Listener).write(t(2), b"welcome".to_vec());
        assert_eq!(d.in_flight(), 12);
        assert_eq!(d.to(Side::Listener).read(t(5)), b"hello");
        assert_eq!(d.to(Side::Dialer).read(t(5)), b"welcome");
        d.from(Side::Dialer).write(t(6), b"lost".to_vec());
        d.to(Side::Listener).clear();
        assert_eq!(d.in_flight(), 0);
    }
}
