//! A link's outbox: what broadcast queued for one direct peer (pushes, answers,
//! announcements, grafts, pulls, prunes, digests), drained into link messages that each fit
//! in a frame, keeping only the newest copy of each rumor.

use std::collections::{BTreeSet, HashMap};

use crate::event::Metrics;
use crate::wire::{
    Announcement, Digest, LinkMessage, MAX_BATCH, MAX_IDS, NodeId, RumorId, RumorKey, SignedRumor,
};

/// What waits to be sent on one link.
#[derive(Debug, Default, Clone)]
pub(super) struct LinkQueue {
    pub(super) push: Vec<SignedRumor>,
    pub(super) answer: Vec<SignedRumor>,
    pub(super) ihave: Vec<Announcement>,
    pub(super) graft: Vec<RumorId>,
    pub(super) pull: Vec<RumorId>,
    /// Origins for which the peer should push to us again without resending (tree
    /// optimisation).
    pub(super) graft_origins: BTreeSet<NodeId>,
    /// Origins for which the peer should only announce to us.
    pub(super) prune: BTreeSet<NodeId>,
    pub(super) digests: Vec<Digest>,
}

impl LinkQueue {
    /// Drains the queue into messages of at most `budget` bytes of rumors each, counting
    /// what goes out; announcements stay for the lazy timer unless `announcements`.
    pub(super) fn drain(
        &mut self,
        announcements: bool,
        budget: usize,
        metrics: &mut Metrics,
    ) -> Vec<LinkMessage> {
        let mut messages = Vec::new();
        if !self.prune.is_empty() {
            metrics.prunes_out += self.prune.len() as u64;
            let origins: Vec<NodeId> = std::mem::take(&mut self.prune).into_iter().collect();
            for chunk in origins.chunks(MAX_IDS) {
                let origins = chunk.to_vec();
                messages.push(LinkMessage::Prune { origins });
            }
        }
        messages.extend(self.digests.drain(..).map(LinkMessage::Digest));
        let ids = std::mem::take(&mut self.graft);
        let origins: Vec<NodeId> = std::mem::take(&mut self.graft_origins)
            .into_iter()
            .collect();
        metrics.grafts_out += ids.len() as u64;
        for (ids, origins) in chunk_pairs(&ids, &origins) {
            messages.push(LinkMessage::Graft { ids, origins });
        }
        for ids in std::mem::take(&mut self.pull).chunks(MAX_IDS) {
            let ids = ids.to_vec();
            messages.push(LinkMessage::Pull { ids });
        }
        newest_only(&mut self.push, &mut self.answer);
        for (rumors, answer) in [(&mut self.push, false), (&mut self.answer, true)] {
            metrics.rumors_out += rumors.len() as u64;
            for batch in batches(std::mem::take(rumors), budget) {
                messages.push(if answer {
                    LinkMessage::Answer { rumors: batch }
                } else {
                    LinkMessage::Rumors { rumors: batch }
                });
            }
        }
        if announcements {
            for ids in self.ihave.drain(..).collect::<Vec<_>>().chunks(MAX_IDS) {
                metrics.announcements_out += ids.len() as u64;
                messages.push(LinkMessage::IHave { ids: ids.to_vec() });
            }
        }
        messages
    }
}

/// Pairs id and origin lists into messages of at most [`MAX_IDS`] entries each.
fn chunk_pairs(ids: &[RumorId], origins: &[NodeId]) -> Vec<(Vec<RumorId>, Vec<NodeId>)> {
    let mut out: Vec<(Vec<RumorId>, Vec<NodeId>)> = ids
        .chunks(MAX_IDS)
        .map(|c| (c.to_vec(), Vec::new()))
        .collect();
    for chunk in origins.chunks(MAX_IDS) {
        out.push((Vec::new(), chunk.to_vec()));
    }
    out
}

/// Keeps one copy of each rumor key, the newest, across a link's pushes and answers: an
/// answer queued earlier may hold an older copy than a push queued since, and a peer that
/// received the newer one first would rightly call the older one a replay.
fn newest_only(push: &mut Vec<SignedRumor>, answer: &mut Vec<SignedRumor>) {
    if push.len() + answer.len() < 2 {
        return;
    }
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
