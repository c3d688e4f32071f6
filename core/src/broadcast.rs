//! Broadcast owns dissemination over the direct links: Plumtree (eager push along a
//! self-repairing spanning tree, lazy `IHave` announcements on the other links, graft on a
//! rumor announced but not delivered in time, prune on a duplicate push), digest-based
//! synchronisation of new links and periodic anti-entropy, per-link limits on what peers
//! may ask for, and the per-link outbox batched into frames. Flooding is kept as a mode for
//! comparison.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use rand_core::Rng;
use serde::{Deserialize, Serialize};

use crate::event::{Metrics, RejectReason};
use crate::gossip::Gossip;
use crate::scheduler::Time;
use crate::wire::{
    Announcement, ConnId, Digest, LinkMessage, MAX_BATCH, MAX_IDS, RumorId, RumorKey, SignedRumor,
};

/// How rumors spread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dissemination {
    /// Eager push on a spanning tree, lazy announcements elsewhere (near N-1 messages per
    /// rumor).
    #[default]
    Plumtree,
    /// Every rumor to every direct peer but the sender (about N × peers messages).
    Flood,
}

/// Timing and limits of dissemination.
#[derive(Clone, Debug)]
pub struct BroadcastPolicy {
    /// Plumtree or flooding.
    pub mode: Dissemination,
    /// How long announcements are gathered before they are sent.
    pub lazy_interval: Duration,
    /// How long an announced rumor may take to arrive before it is grafted.
    pub graft_timeout: Duration,
    /// Largest frame body.
    pub max_frame_bytes: usize,
    /// Most rumors waited for at once.
    pub max_missing: usize,
    /// Ids a peer may graft, and digest ids it may send, per gossip round.
    pub max_requests_per_round: usize,
    /// Tree optimisation: when a lazy link announces a rumor that would have arrived this
    /// many hops sooner than through the eager link that delivered it, the two swap roles
    /// (0 disables).
    pub optimize_hops: u32,
}

/// Most peers remembered as announcers of one missing rumor.
const MAX_ANNOUNCERS: usize = 4;

#[derive(Debug, Clone)]
struct Missing {
    announcers: Vec<ConnId>,
    deadline: Time,
}

#[derive(Debug, Default, Clone)]
struct Outbox {
    push: Vec<SignedRumor>,
    answer: Vec<SignedRumor>,
    ihave: Vec<Announcement>,
    graft: Vec<RumorId>,
    /// Send a graft even with no ids (a tree optimisation: just push to me).
    graft_link: bool,
    prune: bool,
    digests: Vec<Digest>,
}

/// Per-link dissemination state.
#[derive(Debug, Clone)]
pub struct Broadcast {
    policy: BroadcastPolicy,
    eager: BTreeSet<ConnId>,
    lazy: BTreeSet<ConnId>,
    missing: BTreeMap<RumorId, Missing>,
    outbox: BTreeMap<ConnId, Outbox>,
    /// Ids each link asked for (grafts, digest entries) in the current round.
    requests: BTreeMap<ConnId, usize>,
}

impl Broadcast {
    /// No links yet.
    pub fn new(policy: BroadcastPolicy) -> Self {
        Broadcast {
            policy,
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            missing: BTreeMap::new(),
            outbox: BTreeMap::new(),
            requests: BTreeMap::new(),
        }
    }

    fn out(&mut self, conn: ConnId) -> &mut Outbox {
        self.outbox.entry(conn).or_default()
    }

    fn make_eager(&mut self, conn: ConnId) {
        self.lazy.remove(&conn);
        self.eager.insert(conn);
    }

    /// A link came up: it starts eager, and both ends send their digests so each learns
    /// at once what the other has (a joiner converges, healed partitions re-merge).
    pub fn link_up(&mut self, conn: ConnId, store: &Gossip) {
        self.make_eager(conn);
        self.out(conn).digests = store.digests(false);
    }

    /// A link went down.
    pub fn link_down(&mut self, conn: ConnId) {
        self.eager.remove(&conn);
        self.lazy.remove(&conn);
        self.outbox.remove(&conn);
        self.requests.remove(&conn);
        for m in self.missing.values_mut() {
            m.announcers.retain(|&c| c != conn);
        }
    }

    /// Spreads a rumor this node just accepted (`from` its sender) or originated (`from` is
    /// `None`): eager push to eager links, announcements to lazy ones.
    pub fn spread(&mut self, now: Time, store: &Gossip, key: &RumorKey, from: Option<ConnId>) {
        let Some(rumor) = store.outgoing(now, key) else {
            return;
        };
        let id = rumor.id();
        self.delivered(id);
        let targets: Vec<ConnId> = match self.policy.mode {
            Dissemination::Plumtree => self.eager.iter().copied().collect(),
            Dissemination::Flood => self.eager.iter().chain(&self.lazy).copied().collect(),
        };
        for conn in targets {
            if Some(conn) != from && !store.peer_has(conn, key, id.seq()) {
                self.out(conn).push.push(rumor.clone());
            }
        }
        if self.policy.mode == Dissemination::Plumtree {
            let lazy: Vec<ConnId> = self.lazy.iter().copied().collect();
            for conn in lazy {
                if Some(conn) != from && !store.peer_has(conn, key, id.seq()) {
                    self.out(conn)
                        .ihave
                        .push(Announcement(id.0, id.1, id.2, rumor.hops));
                }
            }
        }
    }

    /// Pushes a rumor on every link, lazy ones too (a leave: the links are about to close).
    pub fn push_everywhere(&mut self, now: Time, store: &Gossip, key: &RumorKey) {
        let Some(rumor) = store.outgoing(now, key) else {
            return;
        };
        let links: Vec<ConnId> = self.eager.iter().chain(&self.lazy).copied().collect();
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

    /// A pushed rumor was a duplicate: the link closes a cycle of the tree, prune it.
    pub fn duplicate_push(&mut self, conn: ConnId) {
        if self.policy.mode == Dissemination::Plumtree && self.eager.remove(&conn) {
            self.lazy.insert(conn);
            self.out(conn).prune = true;
        }
    }

    /// The peer pruned this link: only announce to it from now on.
    pub fn pruned(&mut self, conn: ConnId) {
        if self.policy.mode == Dissemination::Plumtree && self.eager.remove(&conn) {
            self.lazy.insert(conn);
        }
    }

    /// The peer announced rumors: wait for the missing ones, graft them if they are late;
    /// for ones already here, swap the links if the announcer's path is much shorter.
    pub fn announced(&mut self, now: Time, conn: ConnId, anns: &[Announcement], store: &Gossip) {
        let mut optimised = false;
        for ann in anns {
            let id = ann.id();
            if store.newest_seq(&id.key()).is_some_and(|s| s >= id.seq()) {
                if !optimised {
                    optimised = self.optimise(conn, ann, store);
                }
                continue;
            }
            if !self.missing.contains_key(&id) && self.missing.len() >= self.policy.max_missing {
                continue;
            }
            let m = self.missing.entry(id).or_insert(Missing {
                announcers: Vec::new(),
                deadline: now + self.policy.graft_timeout,
            });
            if !m.announcers.contains(&conn) && m.announcers.len() < MAX_ANNOUNCERS {
                m.announcers.push(conn);
            }
        }
    }

    /// Plumtree's optimisation: the lazy link `conn` would have delivered `ann` at least
    /// `optimize_hops` hops sooner than the eager link that did; make `conn` eager and prune
    /// the other. Returns whether the links swapped.
    fn optimise(&mut self, conn: ConnId, ann: &Announcement, store: &Gossip) -> bool {
        let threshold = self.policy.optimize_hops;
        if threshold == 0
            || self.policy.mode != Dissemination::Plumtree
            || self.eager.contains(&conn)
        {
            return false;
        }
        let Some((seq, hops, Some(parent))) = store.arrival(&ann.id().key()) else {
            return false;
        };
        if seq != ann.id().seq()
            || parent == conn
            || !self.eager.contains(&parent)
            || hops < ann.hops().saturating_add(threshold)
        {
            return false;
        }
        self.make_eager(conn);
        self.out(conn).graft_link = true;
        self.eager.remove(&parent);
        self.lazy.insert(parent);
        self.out(parent).prune = true;
        true
    }

    /// When the next graft is due.
    pub fn next_graft(&self) -> Option<Time> {
        self.missing.values().map(|m| m.deadline).min()
    }

    /// Grafts every rumor still missing at its deadline from the next peer that announced
    /// it (that link becomes eager); gives up when no announcer is left.
    pub fn graft_due(&mut self, now: Time, store: &Gossip) {
        let due: Vec<RumorId> = self
            .missing
            .iter()
            .filter(|(_, m)| m.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let have = store.newest_seq(&id.key()).is_some_and(|s| s >= id.seq());
            let next = self.missing.get_mut(&id).and_then(|m| {
                m.deadline = now + self.policy.graft_timeout;
                (!m.announcers.is_empty()).then(|| m.announcers.remove(0))
            });
            match next {
                Some(conn) if !have => {
                    self.make_eager(conn);
                    self.out(conn).graft.push(id);
                }
                _ => {
                    self.missing.remove(&id);
                }
            }
        }
    }

    /// Counts ids a peer asks for; false past the per-round limit.
    fn allow_requests(&mut self, conn: ConnId, n: usize) -> bool {
        let used = self.requests.entry(conn).or_default();
        *used = used.saturating_add(n);
        *used <= self.policy.max_requests_per_round
    }

    /// The peer grafted: push to it eagerly, and answer what it asked for.
    pub fn grafted(
        &mut self,
        now: Time,
        conn: ConnId,
        ids: &[RumorId],
        store: &Gossip,
    ) -> Result<(), RejectReason> {
        if !self.allow_requests(conn, ids.len()) {
            return Err(RejectReason::RateLimited);
        }
        self.make_eager(conn);
        for id in ids {
            if let Some(r) = store.outgoing(now, &id.key()).filter(|r| r.seq >= id.seq()) {
                self.out(conn).answer.push(r);
            }
        }
        Ok(())
    }

    /// The peer sent a digest: answer with what it lacks, and with our digest if asked.
    pub fn digest(
        &mut self,
        now: Time,
        conn: ConnId,
        digest: &Digest,
        store: &Gossip,
    ) -> Result<(), RejectReason> {
        if !self.allow_requests(conn, digest.ids.len().max(1)) {
            return Err(RejectReason::RateLimited);
        }
        let answers: Vec<SignedRumor> = store
            .newer_than(digest)
            .iter()
            .filter_map(|k| store.outgoing(now, k))
            .collect();
        let out = self.out(conn);
        out.answer.extend(answers);
        if digest.reply && digest.after.is_none() {
            out.digests.extend(store.digests(false));
        }
        Ok(())
    }

    /// Anti-entropy: sends this node's digest to one random link, asking for its digest.
    pub fn anti_entropy<R: Rng + ?Sized>(&mut self, rng: &mut R, store: &Gossip) {
        let links: Vec<ConnId> = self.eager.iter().chain(&self.lazy).copied().collect();
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

    /// A new round: per-link request allowances start again.
    pub fn new_round(&mut self) {
        self.requests.clear();
    }

    /// Whether announcements are waiting for the lazy timer.
    pub fn has_announcements(&self) -> bool {
        self.outbox.values().any(|o| !o.ihave.is_empty())
    }

    /// Drains the outbox into link messages that each fit in a frame. Announcements wait
    /// for the lazy timer unless `announcements` is set.
    pub fn take(
        &mut self,
        announcements: bool,
        metrics: &mut Metrics,
    ) -> Vec<(ConnId, LinkMessage)> {
        let budget = self.policy.max_frame_bytes / 2;
        let mut messages = Vec::new();
        for (&conn, out) in self.outbox.iter_mut() {
            if out.prune {
                metrics.prunes_out += 1;
                messages.push((conn, LinkMessage::Prune));
                out.prune = false;
            }
            for digest in out.digests.drain(..) {
                messages.push((conn, LinkMessage::Digest(digest)));
            }
            for ids in out.graft.drain(..).collect::<Vec<_>>().chunks(MAX_IDS) {
                metrics.grafts_out += ids.len() as u64;
                messages.push((conn, LinkMessage::Graft { ids: ids.to_vec() }));
                out.graft_link = false;
            }
            if std::mem::take(&mut out.graft_link) {
                messages.push((conn, LinkMessage::Graft { ids: Vec::new() }));
            }
            newest_only(&mut out.push, &mut out.answer);
            for (rumors, answer) in [(&mut out.push, false), (&mut out.answer, true)] {
                metrics.rumors_out += rumors.len() as u64;
                for batch in batches(std::mem::take(rumors), budget) {
                    let msg = if answer {
                        LinkMessage::Answer { rumors: batch }
                    } else {
                        LinkMessage::Rumors { rumors: batch }
                    };
                    messages.push((conn, msg));
                }
            }
            if announcements {
                for ids in out.ihave.drain(..).collect::<Vec<_>>().chunks(MAX_IDS) {
                    metrics.announcements_out += ids.len() as u64;
                    messages.push((conn, LinkMessage::IHave { ids: ids.to_vec() }));
                }
            }
        }
        self.outbox.retain(|_, o| !o.ihave.is_empty());
        messages
    }

    /// Links by role: (eager, lazy).
    pub fn links(&self) -> (usize, usize) {
        (self.eager.len(), self.lazy.len())
    }

    /// Rumors waited for.
    pub fn missing(&self) -> usize {
        self.missing.len()
    }
}

/// Keeps one copy of each rumor key, the newest, across a link's pushes and answers: an
/// answer queued earlier may hold an older copy than a push queued since, and a peer that
/// received the newer one first would rightly call the older one a replay.
fn newest_only(push: &mut Vec<SignedRumor>, answer: &mut Vec<SignedRumor>) {
    let mut newest: HashMap<RumorKey, u64> = HashMap::new();
    for r in push.iter().chain(answer.iter()) {
        let seq = newest.entry(r.key()).or_insert(r.seq);
        *seq = (*seq).max(r.seq);
    }
    let mut keep =
        |r: &SignedRumor| newest.get(&r.key()) == Some(&r.seq) && newest.remove(&r.key()).is_some();
    push.retain(&mut keep);
    answer.retain(keep);
}

/// Splits rumors into batches under `budget` bytes and [`MAX_BATCH`] rumors.
fn batches(rumors: Vec<SignedRumor>, budget: usize) -> Vec<Vec<SignedRumor>> {
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut size = 0;
    for rumor in rumors {
        let len = rumor.encoded_len();
        if !batch.is_empty() && (size + len > budget || batch.len() >= MAX_BATCH) {
            out.push(std::mem::take(&mut batch));
            size = 0;
        }
        size += len;
        batch.push(rumor);
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::{Admission, GossipPolicy, Outcome, sign};
    use crate::sentry::{Identity, VerifyCache};
    use crate::wire::{Addr, Asn, NodeId, RumorContent};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn policy(mode: Dissemination) -> BroadcastPolicy {
        BroadcastPolicy {
            mode,
            lazy_interval: Duration::from_millis(100),
            graft_timeout: Duration::from_millis(200),
            max_frame_bytes: 1 << 20,
            max_missing: 16,
            max_requests_per_round: 64,
            optimize_hops: 3,
        }
    }

    /// A store holding one rumor of node 9 that arrived on `via` after `hops` hops.
    fn store_with_rumor(via: ConnId, hops: u32) -> (Gossip, SignedRumor) {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let id = Identity::generate(&mut rng, 2048).unwrap();
        let content = RumorContent::Advert {
            asn: Asn(9),
            addr: Addr::from("x"),
            links: vec![],
        };
        let mut rumor = sign(NodeId(9), 1, Time::ZERO, &id, &mut rng, content);
        rumor.hops = hops;
        let mut store = Gossip::new(
            NodeId(1),
            GossipPolicy {
                period: Duration::from_secs(1),
                advert_max_age: Duration::from_secs(4),
                accusation_max_age: Duration::from_secs(60),
                rumors_per_period: 8,
                max_members: 16,
            },
            VerifyCache::new(16),
        );
        let admission = Admission {
            excluded: &|_| false,
            bound: &|_| None,
        };
        let outcome = store.receive(
            Time::ZERO,
            via,
            NodeId(2),
            rumor.clone(),
            &admission,
            &mut Metrics::default(),
        );
        assert!(matches!(outcome, Outcome::Accepted(_)));
        (store, rumor)
    }

    fn sent(b: &mut Broadcast) -> Vec<(ConnId, String)> {
        b.take(true, &mut Metrics::default())
            .into_iter()
            .map(|(c, m)| (c, String::from_utf8(crate::wire::to_json(&m)).unwrap()))
            .collect()
    }

    #[test]
    fn a_much_shorter_lazy_path_swaps_with_the_eager_one() {
        let (a, b, c) = (ConnId(1), ConnId(2), ConnId(3));
        let (store, rumor) = store_with_rumor(a, 6);
        let mut bc = Broadcast::new(policy(Dissemination::Plumtree));
        for conn in [a, b, c] {
            bc.link_up(conn, &store);
        }
        bc.duplicate_push(b);
        bc.duplicate_push(c);
        sent(&mut bc);
        assert_eq!(bc.links(), (1, 2));
        let ann = |hops| Announcement(rumor.origin, None, rumor.seq, hops);
        // Two hops shorter: below the threshold of three.
        bc.announced(Time::ZERO, c, &[ann(4)], &store);
        assert!(sent(&mut bc).is_empty());
        bc.announced(Time::ZERO, b, &[ann(2)], &store);
        let out = sent(&mut bc);
        assert!(out.contains(&(a, "\"prune\"".to_string())), "{out:?}");
        assert!(
            out.contains(&(b, r#"{"graft":{"ids":[]}}"#.to_string())),
            "{out:?}"
        );
        assert!(bc.eager.contains(&b) && bc.lazy.contains(&a));
    }

    #[test]
    fn missing_rumors_are_grafted_from_announcers_in_turn_and_flooding_never_prunes() {
        let (a, b, c) = (ConnId(1), ConnId(2), ConnId(3));
        let (store, _) = store_with_rumor(a, 1);
        let mut bc = Broadcast::new(policy(Dissemination::Plumtree));
        for conn in [a, b, c] {
            bc.link_up(conn, &store);
        }
        bc.duplicate_push(b);
        bc.duplicate_push(c);
        sent(&mut bc);
        let unknown = Announcement(NodeId(7), None, 3, 1);
        bc.announced(Time::ZERO, b, &[unknown], &store);
        bc.announced(Time::ZERO, c, &[unknown], &store);
        assert_eq!(bc.next_graft(), Some(Time::from_millis(200)));
        bc.graft_due(Time::from_millis(200), &store);
        assert_eq!(
            sent(&mut bc),
            vec![(b, r#"{"graft":{"ids":[[7,null,3]]}}"#.to_string())]
        );
        assert!(bc.eager.contains(&b));
        bc.graft_due(Time::from_millis(400), &store);
        assert_eq!(
            sent(&mut bc),
            vec![(c, r#"{"graft":{"ids":[[7,null,3]]}}"#.to_string())]
        );
        bc.graft_due(Time::from_millis(600), &store);
        assert_eq!(bc.missing(), 0, "no announcer left: give up");

        let mut flood = Broadcast::new(policy(Dissemination::Flood));
        flood.link_up(a, &store);
        flood.duplicate_push(a);
        assert_eq!(flood.links(), (1, 0));
    }

    #[test]
    fn peers_asking_for_too_much_are_refused() {
        let (a, _) = (ConnId(1), ());
        let (store, rumor) = store_with_rumor(a, 1);
        let mut bc = Broadcast::new(policy(Dissemination::Plumtree));
        bc.link_up(a, &store);
        let ids = vec![rumor.id(); 64];
        assert!(bc.grafted(Time::ZERO, a, &ids, &store).is_ok());
        assert_eq!(
            bc.grafted(Time::ZERO, a, &ids[..1], &store),
            Err(RejectReason::RateLimited)
        );
        bc.new_round();
        assert!(bc.grafted(Time::ZERO, a, &ids[..1], &store).is_ok());
    }
}
