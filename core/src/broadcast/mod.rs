//! Broadcast owns dissemination over the direct links: Plumtree (eager push along each
//! origin's tree, lazy `IHave` announcements on the other links, graft or pull of a rumor
//! announced but not delivered in time; the trees' shape is `trees`), digest-based
//! synchronisation of new links and periodic anti-entropy (each end pulls what the other's
//! digest lists and it lacks, each rumor from one link at a time), per-link limits on what
//! peers may ask for, and the per-link outbox batched into frames. Flooding is kept as a
//! mode for comparison.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rand_core::Rng;

mod outbox;
mod trees;

pub(crate) use crate::config::{Dissemination, MAX_LINK_SLOTS};
use crate::event::{Metrics, RejectReason};
use crate::gossip::Gossip;
use crate::scheduler::Time;
use crate::wire::{Announcement, ConnId, Digest, LinkMessage, NodeId, RumorId, RumorKey};
use outbox::LinkQueue;
pub(crate) use trees::{ParentOf, Previous};

/// Timing and limits of dissemination.
#[derive(Clone, Debug)]
pub(crate) struct BroadcastPolicy {
    /// Plumtree or flooding.
    pub mode: Dissemination,
    /// How long an announced rumor may take to arrive before it is grafted.
    pub graft_timeout: Duration,
    /// Largest frame body.
    pub max_frame_bytes: usize,
    /// Most rumors waited for at once (announced and missing; pulled).
    pub max_missing: usize,
    /// Ids a peer may graft or pull, and digest ids it may send, per gossip round.
    pub max_requests_per_round: usize,
    /// A rumor pulled from one link is not pulled from another for this long, unless that
    /// link closes first.
    pub pull_timeout: Duration,
    /// Tree optimisation: when a lazy link announces a rumor that would have arrived this
    /// many hops sooner than through the eager link that delivered it, the two swap roles
    /// (0 disables).
    pub optimize_hops: u32,
    /// Random links also pushed to when a rumor's origin has no tree here yet.
    pub eager_fanout: usize,
}

/// Most peers remembered as announcers of one missing rumor.
const MAX_ANNOUNCERS: usize = 4;

#[derive(Debug, Clone)]
struct Missing {
    announcers: Vec<ConnId>,
    deadline: Time,
}

/// A rumor pulled from one link.
#[derive(Debug, Clone, Copy)]
struct Pending {
    conn: ConnId,
    seq: u64,
    until: Time,
}

/// Per-link dissemination state. Plumtree runs one tree per origin: for each origin, the
/// links that only get announcements of its rumors (all links start eager), so a rumor
/// travels along a tree of its own origin instead of one tree shared by all origins:
/// where link state names each node's first hop toward the origin, a shortest-path tree
/// (see `trees`). (Starting new origins from a tree shared by all origins was measured:
/// slower to converge, with grafts for rounds.)
#[derive(Debug, Clone)]
pub(crate) struct Broadcast {
    me: NodeId,
    policy: BroadcastPolicy,
    /// A bit index per established link, for the per-origin masks.
    slots: BTreeMap<ConnId, u8>,
    /// Per origin, the links (slot bits) that are lazy for its rumors.
    lazy: BTreeMap<NodeId, u128>,
    missing: BTreeMap<RumorId, Missing>,
    /// Rumors pulled and not yet due: the link asked, the sequence number and until when.
    pulls: HashMap<RumorKey, Pending>,
    outbox: BTreeMap<ConnId, LinkQueue>,
    /// Ids each link asked for (grafts, pulls, digest entries) in the current round.
    requests: BTreeMap<ConnId, usize>,
    /// Per origin, the link tree optimisation made eager and that has not delivered one of
    /// its rumors since: if a rumor of that origin has to be grafted from another link
    /// meanwhile, it broke the promise of its announced hop count.
    promoted: HashMap<NodeId, ConnId>,
    /// Per origin, the links (slot bits) that broke such a promise: never promoted again.
    distrusted: HashMap<NodeId, u128>,
    /// Rumors, announcements, grafts and prunes sent.
    metrics: Metrics,
}

impl Broadcast {
    /// No links yet, for node `me`.
    pub(crate) fn new(me: NodeId, policy: BroadcastPolicy) -> Self {
        Broadcast {
            me,
            policy,
            slots: BTreeMap::new(),
            lazy: BTreeMap::new(),
            missing: BTreeMap::new(),
            pulls: HashMap::new(),
            outbox: BTreeMap::new(),
            requests: BTreeMap::new(),
            promoted: HashMap::new(),
            distrusted: HashMap::new(),
            metrics: Metrics::default(),
        }
    }

    /// Runs with `policy` from now on (a reconfiguration); what is stored stays.
    pub(crate) fn set_policy(&mut self, policy: BroadcastPolicy) {
        self.policy = policy;
    }

    fn out(&mut self, conn: ConnId) -> &mut LinkQueue {
        self.outbox.entry(conn).or_default()
    }

    fn bit(&self, conn: ConnId) -> u128 {
        self.slots.get(&conn).map_or(0, |&slot| 1u128 << slot)
    }

    /// The bits of `links`.
    fn mask(&self, links: impl Iterator<Item = ConnId>) -> u128 {
        links.fold(0, |m, c| m | self.bit(c))
    }

    /// Whether `conn` only gets announcements of `origin`'s rumors. A node is the root of
    /// its own rumors' tree: it pushes them on every link.
    fn is_lazy(&self, conn: ConnId, origin: NodeId) -> bool {
        if origin == self.me {
            return false;
        }
        self.lazy
            .get(&origin)
            .is_some_and(|mask| mask & self.bit(conn) != 0)
    }

    /// Makes `conn` lazy (or eager) for `origin`. The first graft or prune of an origin not
    /// planted here plants its tree with every other link lazy: its first rumor is then
    /// pushed only where a peer asked for it (a child that already knows this node is its
    /// parent) and announced elsewhere, not pushed on a random link as well.
    fn set_lazy(&mut self, conn: ConnId, origin: NodeId, lazy: bool) {
        if self.is_lazy(conn, origin) == lazy && self.lazy.contains_key(&origin) {
            return;
        }
        if !self.start_tree(origin, None) {
            return;
        }
        let bit = self.bit(conn);
        if let Some(mask) = self.lazy.get_mut(&origin) {
            if lazy {
                *mask |= bit;
            } else {
                *mask &= !bit;
            }
        }
    }

    /// Records `origin`'s tree as planted here with the `lazy` links lazy (`None`: every
    /// link), unless it is, or is this node, or the dissemination floods, or too many
    /// origins are tracked (that one keeps flooding). Whether the origin has a tree here
    /// now. An origin's entry stays when its mask empties: its tree is planted once.
    fn start_tree(&mut self, origin: NodeId, lazy: Option<&[ConnId]>) -> bool {
        if self.policy.mode == Dissemination::Flood || origin == self.me {
            return false;
        }
        if self.lazy.contains_key(&origin) {
            return true;
        }
        if self.lazy.len() >= self.policy.max_missing {
            return false;
        }
        let mask = match lazy {
            Some(links) => self.mask(links.iter().copied()),
            None => self.mask(self.slots.keys().copied()),
        };
        self.lazy.insert(origin, mask);
        true
    }

    /// A link came up: it is eager for every origin, and both ends send their digests so
    /// each learns at once what the other has (a joiner converges, partitions re-merge).
    pub(crate) fn link_up(&mut self, conn: ConnId, store: &Gossip) {
        let used: BTreeSet<u8> = self.slots.values().copied().collect();
        let Some(slot) = (0..MAX_LINK_SLOTS as u8).find(|s| !used.contains(s)) else {
            return;
        };
        self.slots.insert(conn, slot);
        self.out(conn).digests = store.digests(false);
    }

    /// A link went down.
    pub(crate) fn link_down(&mut self, conn: ConnId) {
        let bit = self.bit(conn);
        for mask in self.lazy.values_mut() {
            *mask &= !bit;
        }
        self.distrusted.retain(|_, mask| {
            *mask &= !bit;
            *mask != 0
        });
        self.promoted.retain(|_, c| *c != conn);
        self.slots.remove(&conn);
        self.outbox.remove(&conn);
        self.requests.remove(&conn);
        for m in self.missing.values_mut() {
            m.announcers.retain(|&c| c != conn);
        }
        self.pulls.retain(|_, p| p.conn != conn);
    }

    /// Spreads a rumor this node just accepted (`from` its sender) or originated (`from` is
    /// `None`): pushed on the links eager for its origin, announced on the others and on
    /// the origin's `parent` link (upstream: it has the rumor or gets it from its own).
    pub(crate) fn spread<R: Rng + ?Sized>(
        &mut self,
        now: Time,
        store: &Gossip,
        key: &RumorKey,
        (from, parent): (Option<ConnId>, Option<ConnId>),
        rng: &mut R,
    ) {
        let Some(rumor) = store.outgoing(now, key) else {
            return;
        };
        let id = rumor.id();
        self.delivered(id);
        if from.is_some() && self.promoted.get(&key.origin) == from.as_ref() {
            self.promoted.remove(&key.origin);
        }
        let links: Vec<ConnId> = self
            .slots
            .keys()
            .copied()
            .filter(|&c| Some(c) != from && !store.peer_has(c, key, id.seq()))
            .collect();
        self.plant(key.origin, &links, parent, rng);
        for conn in links {
            if self.is_lazy(conn, key.origin) || Some(conn) == parent {
                self.out(conn)
                    .ihave
                    .push(Announcement(id.0, id.1, id.2, rumor.hops));
            } else {
                self.out(conn).push.push(rumor.clone());
            }
        }
    }

    /// Pushes a rumor on every link, lazy ones too (a leave: the links are about to close).
    pub(crate) fn push_everywhere(&mut self, now: Time, store: &Gossip, key: &RumorKey) {
        let Some(rumor) = store.outgoing(now, key) else {
            return;
        };
        let links: Vec<ConnId> = self.slots.keys().copied().collect();
        for conn in links {
            self.out(conn).push.push(rumor.clone());
        }
    }

    /// Stops waiting for `id` and anything older of its key.
    fn delivered(&mut self, id: RumorId) {
        let stale: Vec<RumorId> = self
            .missing
            .range(RumorId(id.0, id.1, 0)..=id)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.missing.remove(&k);
        }
    }

    /// The peer announced rumors: wait for the missing ones, graft them if they are late;
    /// for ones already here, swap links if the announcer's path is much shorter.
    /// Announcements count against the link's request budget (each may cost a graft).
    pub(crate) fn announced(
        &mut self,
        now: Time,
        conn: ConnId,
        anns: &[Announcement],
        store: &Gossip,
        parent_of: ParentOf<'_>,
    ) -> Result<(), RejectReason> {
        self.allow_requests(conn, anns.len())?;
        for ann in anns {
            let id = ann.id();
            if store.knows(&id.key(), id.seq()) {
                self.optimise(conn, ann, store, parent_of);
                continue;
            }
            if !self.missing.contains_key(&id) && self.missing.len() >= self.policy.max_missing {
                continue;
            }
            // The first rumor of an origin without a parent here has no tree to come
            // along yet: grafted from its first announcer at once.
            let unheard = !store.knows(&id.key(), 0) && parent_of(id.0).is_none();
            let wait = if unheard {
                Duration::ZERO
            } else {
                self.policy.graft_timeout
            };
            let m = self.missing.entry(id).or_insert(Missing {
                announcers: Vec::new(),
                deadline: now + wait,
            });
            if !m.announcers.contains(&conn) && m.announcers.len() < MAX_ANNOUNCERS {
                m.announcers.push(conn);
            }
        }
        Ok(())
    }

    /// When the next graft is due.
    pub(crate) fn next_graft(&self) -> Option<Time> {
        self.missing.values().map(|m| m.deadline).min()
    }

    /// Grafts every rumor still missing at its deadline from the next peer that announced
    /// it (that link becomes eager for the rumor's origin); gives up when no announcer is
    /// left. Where the origin has a parent that is not that peer, the rumor is pulled
    /// instead (the tree stays) and the parent grafted again for the origin.
    pub(crate) fn graft_due(&mut self, now: Time, store: &Gossip, parent_of: ParentOf<'_>) {
        let due: Vec<RumorId> = self
            .missing
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let have = store.knows(&id.key(), id.seq());
            let next = self.missing.get_mut(&id).and_then(|m| {
                m.deadline = now + self.policy.graft_timeout;
                (!m.announcers.is_empty()).then(|| m.announcers.remove(0))
            });
            match (next, parent_of(id.0)) {
                (Some(conn), Some(parent)) if !have && parent != conn => {
                    // A repair all the same: counted with the grafts.
                    self.metrics.grafts_out += 1;
                    self.out(conn).pull.push(id);
                    self.ask_graft(parent, id.0);
                }
                (Some(conn), _) if !have => {
                    self.broken_promise(conn, id.0);
                    self.out(conn).graft.push(id);
                }
                _ => {
                    self.missing.remove(&id);
                }
            }
        }
    }

    /// Counts ids a peer asks for; `busy` past the per-round limit (not answered, and not
    /// blamed: a node starved of CPU reads several of a peer's rounds at once).
    fn allow_requests(&mut self, conn: ConnId, n: usize) -> Result<(), RejectReason> {
        let used = self.requests.entry(conn).or_default();
        *used = used.saturating_add(n);
        if *used <= self.policy.max_requests_per_round {
            Ok(())
        } else {
            Err(RejectReason::Busy)
        }
    }

    /// The peer grafted: push its origins' rumors to it eagerly again, and answer what it
    /// asked for.
    pub(crate) fn grafted(
        &mut self,
        now: Time,
        conn: ConnId,
        ids: &[RumorId],
        origins: &[NodeId],
        store: &Gossip,
    ) -> Result<(), RejectReason> {
        self.allow_requests(conn, ids.len() + origins.len())?;
        for &origin in origins.iter().chain(ids.iter().map(|id| &id.0)) {
            self.set_lazy(conn, origin, false);
        }
        self.answer(now, conn, ids, store);
        Ok(())
    }

    /// The peer pulled rumors our digest listed: answer them, trees unchanged.
    pub(crate) fn pulled(
        &mut self,
        now: Time,
        conn: ConnId,
        ids: &[RumorId],
        store: &Gossip,
    ) -> Result<(), RejectReason> {
        self.allow_requests(conn, ids.len())?;
        self.answer(now, conn, ids, store);
        Ok(())
    }

    /// Queues the stored rumors `ids` asks for (at its sequence number or newer).
    fn answer(&mut self, now: Time, conn: ConnId, ids: &[RumorId], store: &Gossip) {
        let answers = ids
            .iter()
            .filter_map(|id| store.outgoing(now, &id.key()).filter(|r| r.seq >= id.seq()));
        self.out(conn).answer.extend(answers);
    }

    /// The peer sent a digest: pull what it lists newer than we store, unless already
    /// pulled from another link and not yet due, and send our digest if asked (the peer
    /// pulls what it lacks from that). Pulling, not being sent whatever we lack, is what
    /// keeps a joiner from receiving the whole store from every peer it links to at once.
    pub(crate) fn digest(
        &mut self,
        now: Time,
        conn: ConnId,
        digest: &Digest,
        store: &Gossip,
    ) -> Result<(), RejectReason> {
        // A reply is our whole digest: it costs what it lists, not one unit.
        let reply = digest.reply && digest.after.is_none();
        let cost = digest.ids.len().max(1) + if reply { store.len() } else { 0 };
        self.allow_requests(conn, cost)?;
        let until = now + self.policy.pull_timeout;
        let mut wanted = Vec::new();
        for id in &digest.ids {
            let key = id.key();
            if store.knows(&key, id.seq()) {
                continue;
            }
            let pending = self.pulls.get(&key);
            if pending.is_some_and(|p| p.seq >= id.seq() && p.until > now) {
                continue;
            }
            // A full table still pulls; it only stops remembering from where.
            if pending.is_some() || self.pulls.len() < self.policy.max_missing {
                self.pulls.insert(
                    key,
                    Pending {
                        conn,
                        seq: id.seq(),
                        until,
                    },
                );
            }
            wanted.push(*id);
        }
        let out = self.out(conn);
        out.pull.extend(wanted);
        if reply {
            out.digests.extend(store.digests(false));
        }
        Ok(())
    }

    /// Anti-entropy: sends this node's digest to one random link, asking for its digest.
    pub(crate) fn anti_entropy<R: Rng + ?Sized>(&mut self, rng: &mut R, store: &Gossip) {
        let links: Vec<ConnId> = self.slots.keys().copied().collect();
        if links.is_empty() {
            return;
        }
        let pick = links
            .get((rng.next_u64() % links.len() as u64) as usize)
            .copied();
        if let Some(conn) = pick {
            self.out(conn).digests.extend(store.digests(true));
        }
    }

    /// A new round: per-link request allowances start again, and pulls past their time
    /// are forgotten.
    pub(crate) fn new_round(&mut self, now: Time) {
        self.requests.clear();
        self.pulls.retain(|_, p| p.until > now);
    }

    /// Whether announcements are waiting for the lazy timer.
    pub(crate) fn has_announcements(&self) -> bool {
        self.outbox.values().any(|o| !o.ihave.is_empty())
    }

    /// Drains the outbox into link messages that each fit in a frame. Announcements wait
    /// for the lazy timer unless `announcements` is set.
    pub(crate) fn take(&mut self, announcements: bool) -> Vec<(ConnId, LinkMessage)> {
        let budget = self.policy.max_frame_bytes / 2;
        let mut messages = Vec::new();
        for (&conn, out) in self.outbox.iter_mut() {
            let drained = out.drain(announcements, budget, &mut self.metrics);
            messages.extend(drained.into_iter().map(|msg| (conn, msg)));
        }
        self.outbox.retain(|_, o| !o.ihave.is_empty());
        messages
    }

    /// Rumors, announcements, grafts and prunes sent so far.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Links, and (origin, link) pairs that are lazy.
    pub(crate) fn links(&self) -> (usize, usize) {
        let lazy = self.lazy.values().map(|m| m.count_ones() as usize).sum();
        (self.slots.len(), lazy)
    }

    /// Rumors waited for.
    pub(crate) fn missing(&self) -> usize {
        self.missing.len()
    }
}

#[cfg(test)]
mod tests;
