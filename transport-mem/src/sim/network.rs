//! The simulated network: dials, connection ends opening and resetting, frames written
//! and arriving with latency, jitter and loss, cuts that stall streams, closes and exits.

use super::*;
use crate::topology::latency_of_km;

impl Sim {
    pub(super) fn blocked(&self, a: SlotId, b: SlotId) -> bool {
        self.groups[a] != self.groups[b] || self.cuts.contains(&(a.min(b), a.max(b)))
    }

    /// Places `slot` at `place` (geographic latency, [`NetParams::geo_floor`]).
    pub fn place(&mut self, slot: SlotId, place: Option<Position>) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.place = place;
        }
    }

    /// The fixed one-way latency between two slots.
    pub fn latency(&self, a: SlotId, b: SlotId) -> Duration {
        let key = (a.min(b), a.max(b));
        if let Some(&d) = self.latency_overrides.get(&key) {
            return d;
        }
        let net = &self.params.net;
        let places = (self.slots[a].place, self.slots[b].place);
        if let (Some(floor), (Some(pa), Some(pb))) = (net.geo_floor, places) {
            return latency_of_km(pa.km_to(&pb), floor);
        }
        let min = net.latency_min.as_millis() as u64;
        let span = (net.latency_max.as_millis() as u64).saturating_sub(min) + 1;
        let h = mix(mix(self.params.seed ^ 0x1a7e) ^ ((key.0 as u64) << 32 | key.1 as u64));
        Duration::from_millis(min + h % span)
    }

    pub(super) fn frame_delay(&mut self, a: SlotId, b: SlotId) -> Duration {
        let jitter = self.params.net.jitter.as_millis() as u64;
        self.latency(a, b) + Duration::from_millis(below(&mut self.rng, jitter + 1))
    }

    pub(super) fn listening(&self, slot: SlotId) -> bool {
        self.slots[slot].running().is_some()
    }

    pub(super) fn dial(&mut self, from: SlotId, addr: Addr) {
        self.stats.dials += 1;
        let incarnation = self.slots[from].incarnation;
        let target = self.addrs.get(&addr).copied();
        let fail_at = match target {
            Some(to) if self.listening(to) && !self.blocked(from, to) => {
                let latency = self.latency(from, to);
                let id = self.next_conn;
                self.next_conn += 1;
                let ends = [from, to].map(|slot| {
                    let s = &mut self.slots[slot];
                    let conn = ConnId(s.next_conn);
                    s.next_conn += 1;
                    s.conns.insert(conn, id);
                    End {
                        slot,
                        incarnation: s.incarnation,
                        conn,
                        state: EndState::Pending,
                    }
                });
                self.conns.insert(
                    id,
                    Connection {
                        duplex: Duplex::new(),
                        ends,
                        dialed: addr,
                        last_frame: [None, None],
                        stalled: [false; 2],
                    },
                );
                self.push(self.now + latency, Due::Open(id, Side::Listener));
                self.push(self.now + latency * 2, Due::Open(id, Side::Dialer));
                return;
            }
            Some(to) if !self.blocked(from, to) => self.now + self.latency(from, to) * 2,
            _ => self.now + self.params.net.connect_timeout,
        };
        self.stats.dials_failed += 1;
        self.push(
            fail_at,
            Due::DialFailed {
                slot: from,
                incarnation,
                addr,
            },
        );
    }

    pub(super) fn open(&mut self, id: u64, side: Side) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.end(side).state != EndState::Pending {
            return;
        }
        c.end_mut(side).state = EndState::Open;
        let (slot, conn) = (c.end(side).slot, c.end(side).conn);
        let dialer = c.end(Side::Dialer).slot;
        let pending = c.duplex.to(side).next_arrival();
        let remote = match side {
            Side::Dialer => c.dialed.clone(),
            Side::Listener => Addr::from(format!("{}~{id}", self.slots[dialer].config.listen_addr)),
        };
        let direction = match side {
            Side::Dialer => Direction::Outbound,
            Side::Listener => Direction::Inbound,
        };
        self.hand(
            slot,
            Event::Connected {
                conn,
                direction,
                remote,
            },
        );
        if let Some(at) = pending {
            self.push(at, Due::Arrive(id, side));
        }
    }

    pub(super) fn send(&mut self, from: SlotId, conn: ConnId, bytes: Vec<u8>) {
        let Some(&id) = self.slots[from].conns.get(&conn) else {
            return;
        };
        let keep = self.params.keep_frames || self.slots[from].misbehavior.is_some();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let side = c.side_of(from, conn);
        let to = c.end(side.other()).slot;
        if !c.end(side).state.is_open() {
            return;
        }
        self.stats.frames += 1;
        self.stats.bytes += bytes.len() as u64;
        if c.end(side.other()).state == EndState::Closed {
            // The other end is closed: the write reaches it and is answered by a reset.
            if !self.blocked(from, to) {
                self.schedule_reset_after(id, side, 2);
            }
            return;
        }
        if c.end(side).state == EndState::Resetting {
            // A reset is on its way: what is written after the loss never arrives, as
            // nothing after a lost segment reaches a TCP reader before the connection dies.
            return;
        }
        if keep {
            c.last_frame[side.index()] = Some(bytes.clone());
        }
        let mut late = Duration::ZERO;
        let net = &self.params.net;
        if net.loss > 0.0 && chance(&mut self.rng, net.loss) {
            self.stats.frames_lost += 1;
            match net.loss_mode {
                LossMode::Drop => return,
                LossMode::Reset => {
                    self.schedule_reset_after(id, side, 1);
                    self.schedule_reset_after(id, side.other(), 1);
                    return;
                }
                LossMode::Retransmit { rto_ms } => late = Duration::from_millis(rto_ms),
            }
        }
        let at = self.now + self.frame_delay(from, to) + late;
        if let Some(c) = self.conns.get_mut(&id)
            && let Some(arrival) = c.duplex.from(side).write(at, bytes)
        {
            self.push(arrival, Due::Arrive(id, side.other()));
        }
    }

    pub(super) fn arrive(&mut self, id: u64, side: Side) {
        let blocked = match self.conns.get(&id) {
            Some(c) => self.blocked(c.end(side).slot, c.end(side.other()).slot),
            None => return,
        };
        let (now, coalesce) = (self.now, self.params.coalesce_reads);
        loop {
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if !c.end(side).state.is_open() {
                return;
            }
            if blocked {
                if !c.stalled[side.index()] {
                    c.stalled[side.index()] = true;
                    self.stats.stalls += 1;
                }
                return;
            }
            let (slot, conn) = (c.end(side).slot, c.end(side).conn);
            let pipe = c.duplex.to(side);
            let bytes = if coalesce {
                Some(pipe.read(now)).filter(|b| !b.is_empty())
            } else {
                pipe.read_chunk(now)
            };
            match bytes {
                Some(bytes) => self.hand(slot, Event::Received { conn, bytes }),
                None => {
                    if pipe.at_eof(now) {
                        c.end_mut(side).state = EndState::Closed;
                        self.slots[slot].conns.remove(&conn);
                        self.remove_if_closed(id);
                        self.hand(slot, Event::Disconnected { conn });
                    }
                    return;
                }
            }
        }
    }

    /// The node in `from` closed `conn`: flush, then the other end reads end of stream.
    pub(super) fn close(&mut self, from: SlotId, conn: ConnId) {
        let Some(id) = self.slots[from].conns.remove(&conn) else {
            return;
        };
        let now = self.now;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let side = c.side_of(from, conn);
        let to = c.end(side.other()).slot;
        c.end_mut(side).state = EndState::Closed;
        c.duplex.to(side).clear();
        let other_open = c.end(side.other()).state != EndState::Closed;
        let latency = self.latency(from, to);
        if other_open && let Some(c) = self.conns.get_mut(&id) {
            let eof = c.duplex.from(side).close(now + latency);
            self.push(eof, Due::Arrive(id, side.other()));
        }
        self.remove_if_closed(id);
    }

    /// Resets one end of a connection after `latencies` one-way latencies.
    pub(super) fn schedule_reset_after(&mut self, id: u64, side: Side, latencies: u32) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let end = c.end_mut(side);
        if matches!(end.state, EndState::Closed | EndState::Resetting) {
            return;
        }
        if end.state == EndState::Open {
            end.state = EndState::Resetting;
        }
        let (a, b) = (c.end(side).slot, c.end(side.other()).slot);
        let at = self.now + self.latency(a, b) * latencies;
        self.push(at, Due::Reset(id, side));
    }

    /// Tells one end its connection is gone (or, for a dial not yet answered, that it failed).
    pub(super) fn reset_end(&mut self, id: u64, side: Side) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let end = c.end(side);
        let (slot, conn, state, incarnation) = (end.slot, end.conn, end.state, end.incarnation);
        if state == EndState::Closed {
            return;
        }
        c.end_mut(side).state = EndState::Closed;
        c.duplex.to(side).clear();
        c.duplex.from(side).clear();
        let dialed = c.dialed.clone();
        self.stats.resets += 1;
        self.remove_if_closed(id);
        if self.slots[slot].incarnation != incarnation {
            return;
        }
        self.slots[slot].conns.remove(&conn);
        match (state, side) {
            (EndState::Pending, Side::Dialer) => {
                self.hand(slot, Event::ConnectFailed { addr: dialed })
            }
            (EndState::Pending, Side::Listener) => {}
            _ => self.hand(slot, Event::Disconnected { conn }),
        }
    }

    pub(super) fn remove_if_closed(&mut self, id: u64) {
        if self.conns.get(&id).is_some_and(Connection::closed) {
            self.conns.remove(&id);
        }
    }

    /// Ends every connection of `slot` as a process exit does: peers see a reset.
    pub(super) fn exit(&mut self, slot: SlotId) {
        for (conn, id) in std::mem::take(&mut self.slots[slot].conns) {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let side = c.side_of(slot, conn);
            c.end_mut(side).state = EndState::Closed;
            c.duplex.to(side).clear();
            let other = c.end(side.other()).slot;
            if !self.blocked(slot, other) {
                self.schedule_reset_after(id, side.other(), 1);
            }
            self.remove_if_closed(id);
        }
        self.slots[slot].wake_at = None;
    }
}
