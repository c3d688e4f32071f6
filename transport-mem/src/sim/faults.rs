//! Faults and commands the simulator applies: commands to nodes, leaves, crashes,
//! restarts, rekeys, stalls, cuts, partitions, loss and latency changes, and misbehaving
//! members' attacks and frame replays.

use super::*;

impl Sim {
    /// Hands an operator command to a running node.
    pub fn command(&mut self, slot: SlotId, command: Command) {
        self.deliver(slot, Event::Command(command));
    }

    /// Replaces a node's AS links (it advertises them at once).
    pub fn set_links(&mut self, slot: SlotId, links: Vec<AsLink>) {
        self.command(slot, Command::SetLinks(links));
    }

    /// Graceful leave: the node gossips its leave and says goodbye, then its process exits.
    pub fn leave(&mut self, slot: SlotId) {
        if self.slots[slot].running().is_none() {
            return;
        }
        self.command(slot, Command::Leave);
        self.trace.fault(self.now, slot, "leave");
        self.slots[slot].state = SlotState::Left;
        self.exit(slot);
    }

    /// Crash without leave: the node's state is lost; peers see their connections reset.
    pub fn crash(&mut self, slot: SlotId) {
        if self.slots[slot].running().is_none() {
            return;
        }
        self.trace.fault(self.now, slot, "crash");
        let s = &mut self.slots[slot];
        s.state = SlotState::Crashed;
        s.node = None;
        s.stalled_until = None;
        s.held.clear();
        self.exit(slot);
    }

    /// Gives a crashed node a fresh key: its next [`Sim::restart`] comes back under the
    /// same node id with a new identity (an operator who re-keyed it).
    pub fn rekey(&mut self, slot: SlotId, identity: Identity) {
        if self.slots[slot].state == SlotState::Crashed {
            self.trace.fault(self.now, slot, "rekey");
            self.slots[slot].identity = identity;
        }
    }

    /// Stalls a running node for `d`, as a CPU-starved process: it reads nothing and runs
    /// no timer meanwhile, then reads everything that arrived at once, late.
    pub fn stall(&mut self, slot: SlotId, d: Duration) {
        let s = &mut self.slots[slot];
        if s.running().is_none() || s.stalled_until.is_some() {
            return;
        }
        let until = self.now + d;
        s.stalled_until = Some(until);
        let incarnation = s.incarnation;
        self.trace
            .fault(self.now, slot, &format!("stall {}", d.as_millis()));
        self.push(until, Due::Thaw(slot, incarnation));
    }

    /// Ends a stall: what was held is handed to the node now, then its timers run.
    pub(super) fn thaw(&mut self, slot: SlotId) {
        let s = &mut self.slots[slot];
        s.stalled_until = None;
        s.wake_at = None;
        for event in std::mem::take(&mut s.held) {
            self.hand(slot, event);
        }
        self.schedule_wake(slot);
    }

    /// Restarts a crashed node with the same configuration and identity (fresh state and
    /// RNG seed, as a restarted process).
    pub fn restart(&mut self, slot: SlotId) -> Result<(), ConfigError> {
        if self.slots[slot].state != SlotState::Crashed {
            return Ok(());
        }
        let incarnation = self.slots[slot].incarnation + 1;
        let s = &self.slots[slot];
        let node = Node::with_cache(
            s.config.clone(),
            s.identity.clone(),
            self.node_seed(slot, incarnation),
            self.now,
            self.cache.clone(),
        )?;
        let s = &mut self.slots[slot];
        s.node = Some(node);
        s.state = SlotState::Running;
        s.incarnation = incarnation;
        s.wake_at = None;
        s.old_advert = None;
        self.trace.fault(self.now, slot, "restart");
        self.schedule_wake(slot);
        if self.slots[slot].misbehavior.is_some() {
            self.push(self.now, Due::Misbehave(slot, incarnation));
        }
        Ok(())
    }

    /// Cuts the path between two nodes (streams stall, dials time out) until
    /// [`Sim::uncut`] or [`Sim::heal`].
    pub fn cut(&mut self, a: SlotId, b: SlotId) {
        self.trace.fault(self.now, a, &format!("cut {b}"));
        self.cuts.insert((a.min(b), a.max(b)));
    }

    /// Restores the path between two nodes.
    pub fn uncut(&mut self, a: SlotId, b: SlotId) {
        self.trace.fault(self.now, a, &format!("uncut {b}"));
        self.cuts.remove(&(a.min(b), a.max(b)));
        self.resume_stalled();
    }

    /// Splits the network: each listed group can reach only itself; unlisted slots form
    /// one more group.
    pub fn partition(&mut self, groups: &[Vec<SlotId>]) {
        self.trace
            .fault(self.now, 0, &format!("partition {groups:?}"));
        self.groups.iter_mut().for_each(|g| *g = 0);
        for (i, group) in groups.iter().enumerate() {
            for &slot in group {
                if let Some(g) = self.groups.get_mut(slot) {
                    *g = i as u32 + 1;
                }
            }
        }
        self.resume_stalled();
    }

    /// Removes every partition and cut; stalled streams resume.
    pub fn heal(&mut self) {
        self.trace.fault(self.now, 0, "heal");
        self.groups.iter_mut().for_each(|g| *g = 0);
        self.cuts.clear();
        self.resume_stalled();
    }

    pub(super) fn resume_stalled(&mut self) {
        let mut resume = Vec::new();
        for (&id, c) in &mut self.conns {
            let (a, b) = (c.end(Side::Dialer).slot, c.end(Side::Listener).slot);
            let open =
                self.groups[a] == self.groups[b] && !self.cuts.contains(&(a.min(b), a.max(b)));
            for side in [Side::Dialer, Side::Listener] {
                if open && c.stalled[side.index()] {
                    c.stalled[side.index()] = false;
                    resume.push((id, side, a, b));
                }
            }
        }
        for (id, side, a, b) in resume {
            let at = self.now + self.latency(a, b);
            self.push(at, Due::Arrive(id, side));
        }
    }

    /// Sets the frame loss probability from now on.
    pub fn set_loss(&mut self, loss: f64, mode: LossMode) {
        self.trace
            .fault(self.now, 0, &format!("loss {loss} {mode:?}"));
        self.params.net.loss = loss;
        self.params.net.loss_mode = mode;
    }

    /// Fixes the one-way latency between two nodes.
    pub fn set_latency(&mut self, a: SlotId, b: SlotId, latency: Duration) {
        self.latency_overrides.insert((a.min(b), a.max(b)), latency);
    }

    /// Makes a node misbehave (or behave again with `None`) from now on.
    pub fn misbehave(&mut self, slot: SlotId, how: Option<Misbehavior>) {
        self.trace
            .fault(self.now, slot, &format!("misbehave {how:?}"));
        let was = std::mem::replace(&mut self.slots[slot].misbehavior, how);
        self.slots[slot].dishonest |= how.is_some();
        if was.is_none() && how.is_some() {
            let incarnation = self.slots[slot].incarnation;
            self.push(self.now, Due::Misbehave(slot, incarnation));
        }
    }

    pub(super) fn attack(&mut self, slot: SlotId, how: Misbehavior) {
        let now = self.now;
        if how == Misbehavior::ReplayFrames {
            let peers: Vec<SlotId> = self.peer_slots(slot);
            for peer in peers {
                self.replay_frame(slot, peer);
            }
            return;
        }
        let s = &mut self.slots[slot];
        let Some(node) = s.node.as_mut() else {
            return;
        };
        if s.old_advert.is_none() {
            s.old_advert = node.advert_of(s.config.node_id);
        }
        let Some(attack) = attack(node, how, s.old_advert.as_ref(), &mut s.attacks) else {
            return;
        };
        self.forged.extend(attack.forged);
        let conns: Vec<ConnId> = node.peers().into_iter().map(|p| p.conn).collect();
        for conn in conns {
            let Some(node) = self.slots[slot].node.as_mut() else {
                return;
            };
            let actions = node.inject(now, conn, &attack.msg);
            self.execute(slot, actions);
        }
    }

    /// Sends the last frame `from` wrote to `to` again (needs `keep_frames`, or `from`
    /// misbehaving). Returns whether there was one.
    pub fn replay_frame(&mut self, from: SlotId, to: SlotId) -> bool {
        let found = self.conns.iter().find_map(|(&id, c)| {
            [Side::Dialer, Side::Listener].into_iter().find_map(|side| {
                let (me, peer) = (c.end(side), c.end(side.other()));
                let live = me.state.is_open() && peer.state.is_open();
                (live && me.slot == from && peer.slot == to)
                    .then(|| c.last_frame[side.index()].clone().map(|f| (id, side, f)))
                    .flatten()
            })
        });
        let Some((id, side, frame)) = found else {
            return false;
        };
        self.trace
            .fault(self.now, from, &format!("replay frame to {to}"));
        self.stats.frames_replayed += 1;
        let at = self.now + self.frame_delay(from, to);
        if let Some(c) = self.conns.get_mut(&id)
            && let Some(arrival) = c.duplex.from(side).write(at, frame)
        {
            self.push(arrival, Due::Arrive(id, side.other()));
        }
        true
    }
}
