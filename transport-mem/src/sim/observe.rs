//! What the simulator observes: each node's notifications (watched rumors' deliveries,
//! membership tallies, offenses, the log), and the queries over slots, stats, the trace and
//! routes.

use super::*;

/// A notification as it was logged.
#[derive(Clone, Debug)]
pub struct Logged {
    /// When.
    pub at: Time,
    /// Which node.
    pub slot: SlotId,
    /// What.
    pub note: Notification,
}

/// One acceptance of a watched rumor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The node that accepted it.
    pub slot: SlotId,
    /// The direct peer it came from.
    pub from: NodeId,
    /// When.
    pub at: Time,
}

/// Membership notifications, counted per subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberEvent {
    /// `MemberJoined`.
    Joined,
    /// `MemberLeft`.
    Left,
    /// `MemberExpired`.
    Expired,
    /// `MemberEvicted`.
    Evicted,
}

/// How often, first and last, a membership notification was seen about one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    /// How many notifications (over all nodes).
    pub count: u64,
    /// The first.
    pub first: Time,
    /// The last.
    pub last: Time,
}

impl Sim {
    pub(super) fn observe(&mut self, slot: SlotId, note: Notification) {
        let now = self.now;
        let mut tally = |node: NodeId, kind: MemberEvent| {
            let t = self.members.entry((node, kind)).or_insert(Tally {
                count: 0,
                first: now,
                last: now,
            });
            t.count += 1;
            t.last = now;
        };
        match &note {
            Notification::RumorAccepted {
                origin, seq, from, ..
            } => {
                if let Some(v) = self.watches.get_mut(&(*origin, *seq)) {
                    v.push(Delivery {
                        slot,
                        from: *from,
                        at: now,
                    });
                }
            }
            Notification::RoutesChanged { .. } => self.slots[slot].last_route_change = Some(now),
            Notification::MemberJoined { node, .. } => tally(*node, MemberEvent::Joined),
            Notification::MemberLeft { node } => tally(*node, MemberEvent::Left),
            Notification::MemberExpired { node } => tally(*node, MemberEvent::Expired),
            Notification::MemberEvicted { node, .. } => tally(*node, MemberEvent::Evicted),
            Notification::Rejected {
                node: Some(node),
                reason,
                ..
            } if reason.blames_peer() => *self.offenses.entry(*node).or_default() += 1,
            _ => {}
        }
        if self.params.record {
            self.log.push(Logged {
                at: now,
                slot,
                note,
            });
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The node of a slot (running or left; `None` when crashed).
    pub fn node(&self, slot: SlotId) -> Option<&Node> {
        self.slots[slot].node.as_ref()
    }

    /// The configuration a slot was started with.
    pub fn config(&self, slot: SlotId) -> &Config {
        &self.slots[slot].config
    }

    /// The identity of a slot.
    pub fn identity(&self, slot: SlotId) -> &Identity {
        &self.slots[slot].identity
    }

    /// Where a slot stands.
    pub fn state(&self, slot: SlotId) -> SlotState {
        self.slots[slot].state
    }

    /// How many times a slot was restarted.
    pub fn incarnation(&self, slot: SlotId) -> u32 {
        self.slots[slot].incarnation
    }

    /// The first slot started with this node id.
    pub fn slot_of(&self, node: NodeId) -> Option<SlotId> {
        self.by_node.get(&node).copied()
    }

    /// Slots whose node is running.
    pub fn running(&self) -> Vec<SlotId> {
        (0..self.slots.len())
            .filter(|&s| self.slots[s].running().is_some())
            .collect()
    }

    /// Each running slot's connected component of two-way links (links both ends have up),
    /// named by its lowest slot.
    fn components(&self) -> BTreeMap<SlotId, SlotId> {
        let peers: BTreeMap<SlotId, Vec<SlotId>> = self
            .running()
            .into_iter()
            .map(|s| (s, self.peer_slots(s)))
            .collect();
        let mut component = BTreeMap::new();
        for &start in peers.keys() {
            if component.contains_key(&start) {
                continue;
            }
            let mut stack = vec![start];
            component.insert(start, start);
            while let Some(u) = stack.pop() {
                for &v in peers.get(&u).into_iter().flatten() {
                    let two_way = peers.get(&v).is_some_and(|p| p.contains(&u));
                    if two_way && !component.contains_key(&v) {
                        component.insert(v, start);
                        stack.push(v);
                    }
                }
            }
        }
        component
    }

    /// Slots of running nodes directly linked to `slot`.
    pub fn peer_slots(&self, slot: SlotId) -> Vec<SlotId> {
        let Some(node) = self.slots[slot].running() else {
            return Vec::new();
        };
        node.peers()
            .iter()
            .filter_map(|p| self.addrs.get(&p.addr).copied())
            .collect()
    }

    /// The misbehavior set for a slot.
    pub fn misbehavior(&self, slot: SlotId) -> Option<Misbehavior> {
        self.slots[slot].misbehavior
    }

    /// The hash of the event log.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Network counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Every notification, if [`SimParams::record`] is set.
    pub fn log(&self) -> &[Logged] {
        &self.log
    }

    /// Starts recording the acceptances of rumor `(origin, seq)`.
    pub fn watch(&mut self, origin: NodeId, seq: u64) {
        self.watches.entry((origin, seq)).or_default();
    }

    /// Acceptances of a watched rumor, in order.
    pub fn deliveries(&self, origin: NodeId, seq: u64) -> &[Delivery] {
        self.watches.get(&(origin, seq)).map_or(&[], Vec::as_slice)
    }

    /// Membership notifications about `node` of one kind, over all nodes.
    pub fn member_events(&self, node: NodeId, kind: MemberEvent) -> Option<Tally> {
        self.members.get(&(node, kind)).copied()
    }

    /// Offenses counted against `node` by its direct peers (rejections that blame it).
    pub fn offenses_against(&self, node: NodeId) -> u64 {
        self.offenses.get(&node).copied().unwrap_or(0)
    }

    /// Offenses counted against, and evictions of, the node ids of slots that never
    /// misbehaved: `(honest_offenses, honest_evictions)`, both 0 when no honest node was
    /// ever blamed.
    pub fn honest_blame(&self) -> (u64, u64) {
        let honest: BTreeSet<NodeId> = self
            .slots
            .iter()
            .filter(|s| !s.dishonest)
            .map(|s| s.config.node_id)
            .collect();
        let offenses = honest.iter().map(|&n| self.offenses_against(n)).sum();
        let evictions = honest
            .iter()
            .filter_map(|&n| self.member_events(n, MemberEvent::Evicted))
            .map(|t| t.count)
            .sum();
        (offenses, evictions)
    }

    /// `(origin, seq)` pairs that misbehaving members sent without the origin's signature.
    pub fn forged(&self) -> &BTreeSet<(NodeId, u64)> {
        &self.forged
    }

    /// When a slot's routing table last changed.
    pub fn last_route_change(&self, slot: SlotId) -> Option<Time> {
        self.slots[slot].last_route_change
    }

    /// Bytes in flight in every pipe.
    pub fn in_flight(&self) -> usize {
        self.conns.values().map(|c| c.duplex.in_flight()).sum()
    }

    /// The reference view of the running nodes that `include` admits (their current links).
    pub fn reference(&self, include: impl Fn(SlotId) -> bool) -> Reference {
        Reference::new(
            self.running()
                .into_iter()
                .filter(|&s| include(s))
                .filter_map(|s| {
                    self.slots[s].running().map(|n| {
                        let c = n.config();
                        (c.node_id, c.asn, c.links.clone())
                    })
                }),
        )
    }

    /// Checks the routing tables of `slots` against `reference`, each as seen from its
    /// connected component of two-way links (the controllers it reaches); the error names
    /// the first node that differs and how.
    pub fn check_routes(&self, slots: &[SlotId], reference: &Reference) -> Result<(), String> {
        let components = self.components();
        // One view per component (the controllers its nodes reach), built once.
        let mut reached: BTreeMap<SlotId, BTreeSet<NodeId>> = BTreeMap::new();
        for (&s, &c) in &components {
            reached
                .entry(c)
                .or_default()
                .insert(self.slots[s].config.node_id);
        }
        let mut views: BTreeMap<SlotId, Reference> = BTreeMap::new();
        let mut expected: BTreeMap<(SlotId, Asn), _> = BTreeMap::new();
        for &slot in slots {
            let Some(node) = self.slots[slot].running() else {
                continue;
            };
            let asn = node.config().asn;
            let component = components.get(&slot).copied().unwrap_or(slot);
            let view = views.entry(component).or_insert_with(|| {
                reference.within(reached.get(&component).unwrap_or(&BTreeSet::new()))
            });
            let routes = expected
                .entry((component, asn))
                .or_insert_with(|| view.routes_from(asn));
            reference
                .check_against(routes, &node.routes())
                .map_err(|e| format!("slot {slot} ({}): {e}", node.config().node_id))?;
        }
        Ok(())
    }
}

impl Sim {
    /// From now on, sums the running nodes' dissemination counters once every `every` of
    /// virtual time (at the end of the first window past each multiple: within one
    /// lookahead of it). Observation only: outcomes and the trace are the same without.
    pub fn sample_every(&mut self, every: Duration) {
        self.sampler = Some(Sampler {
            every: every.max(Duration::from_millis(1)),
            next: self.now,
            taken: Vec::new(),
        });
    }

    /// The samples taken: when, and the running nodes' totals then (cumulative; a crashed
    /// node's counts leave the sum with it).
    pub fn samples(&self) -> &[(Time, Totals)] {
        self.sampler.as_ref().map_or(&[], |s| &s.taken)
    }

    /// Takes a sample if one is due.
    pub(super) fn sample(&mut self) {
        let due = self.sampler.as_ref().is_some_and(|s| self.now >= s.next);
        if !due {
            return;
        }
        let all: Vec<SlotId> = (0..self.slots.len()).collect();
        let totals = dissemination_totals(self, &all);
        if let Some(s) = &mut self.sampler {
            s.taken.push((self.now, totals));
            while s.next <= self.now {
                s.next = s.next + s.every;
            }
        }
    }
}

/// Dissemination counters summed over some slots.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Totals {
    /// Rumor copies sent (pushed or answered).
    pub copies: u64,
    /// Rumor ids announced lazily.
    pub announcements: u64,
    /// Rumor ids grafted.
    pub grafts: u64,
    /// Prunes sent.
    pub prunes: u64,
    /// Duplicates received.
    pub duplicates: u64,
    /// Rumors originated (sum of sequence numbers).
    pub originated: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frame bytes received.
    pub bytes_in: u64,
    /// Rumor copies received (before any check).
    pub copies_in: u64,
    /// Rumors accepted as new: what a node verifies with RSA when no other node of its
    /// process shares its verification cache (the simulator's nodes share one).
    pub accepted: u64,
    /// Handshakes completed: links made, and made again after a reset.
    pub handshakes: u64,
}

impl Totals {
    /// What was counted since `before`.
    pub fn since(&self, before: &Totals) -> Totals {
        Totals {
            copies: self.copies.saturating_sub(before.copies),
            announcements: self.announcements.saturating_sub(before.announcements),
            grafts: self.grafts.saturating_sub(before.grafts),
            prunes: self.prunes.saturating_sub(before.prunes),
            duplicates: self.duplicates.saturating_sub(before.duplicates),
            originated: self.originated.saturating_sub(before.originated),
            frames_in: self.frames_in.saturating_sub(before.frames_in),
            bytes_in: self.bytes_in.saturating_sub(before.bytes_in),
            copies_in: self.copies_in.saturating_sub(before.copies_in),
            accepted: self.accepted.saturating_sub(before.accepted),
            handshakes: self.handshakes.saturating_sub(before.handshakes),
        }
    }
}

/// The dissemination counters of the running nodes among `slots`.
pub fn dissemination_totals(sim: &Sim, slots: &[SlotId]) -> Totals {
    let mut t = Totals::default();
    for node in slots.iter().filter_map(|&s| sim.node(s)) {
        let m = node.metrics();
        t.copies += m.rumors_out;
        t.announcements += m.announcements_out;
        t.grafts += m.grafts_out;
        t.prunes += m.prunes_out;
        t.duplicates += m.rumors_duplicate;
        t.originated += node.status().seq;
        t.frames_in += m.frames_in;
        t.bytes_in += m.bytes_in;
        t.copies_in += m.rumors_in;
        t.accepted += m.rumors_accepted;
        t.handshakes += m.handshakes;
    }
    t
}
