//! The link messages of an established link, and the ids and digests they carry.

use super::*;

/// What travels on an established, encrypted link. Externally tagged
/// (`{"rumors":{...}}`, `"heartbeat"`): an internally tagged enum would buffer its content
/// and lose the raw signed bodies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMessage {
    /// Origin-signed rumors pushed eagerly (a duplicate here prunes the link).
    Rumors {
        /// The rumors.
        rumors: Vec<SignedRumor>,
    },
    /// Origin-signed rumors sent on request (graft, pull): duplicates are expected.
    Answer {
        /// The rumors.
        rumors: Vec<SignedRumor>,
    },
    /// Lazy announcement: the sender has these rumors.
    #[serde(rename = "ihave")]
    IHave {
        /// The rumors announced.
        ids: Vec<Announcement>,
    },
    /// Tree repair: send me these rumors, and push their origins' rumors (and those of
    /// `origins`) to me eagerly from now on.
    Graft {
        /// The rumors wanted.
        ids: Vec<RumorId>,
        /// Further origins to push again, without resending anything.
        #[serde(default)]
        origins: Vec<NodeId>,
    },
    /// Synchronisation: send me these rumors (this sequence number or newer), which your
    /// digest listed and I lack; the trees stay as they are.
    Pull {
        /// The rumors wanted.
        ids: Vec<RumorId>,
    },
    /// I received duplicates of these origins' rumors from you: only announce them to me.
    Prune {
        /// The origins.
        origins: Vec<NodeId>,
    },
    /// What the sender stores, for synchronisation and anti-entropy.
    Digest(Digest),
    /// Keep-alive on an idle link.
    Heartbeat,
    /// The sender is closing the link on purpose.
    Bye {
        /// Why.
        reason: String,
    },
}

impl LinkMessage {
    /// Checks the counts a well-behaved peer never exceeds: at most [`MAX_BATCH`] rumors in
    /// a push or an answer, at most [`MAX_IDS`] ids or origins in a list, and a digest's
    /// range (see [`Digest::check`]). The rumors themselves are checked one by one later.
    pub fn check(&self) -> Result<(), WireError> {
        match self {
            LinkMessage::Rumors { rumors } | LinkMessage::Answer { rumors }
                if rumors.len() > MAX_BATCH =>
            {
                Err(WireError::Violation(format!(
                    "batch of {} rumors",
                    rumors.len()
                )))
            }
            LinkMessage::IHave { ids } => check_ids(ids),
            LinkMessage::Graft { ids, origins } => check_ids(ids).and_then(|()| check_ids(origins)),
            LinkMessage::Pull { ids } => check_ids(ids),
            LinkMessage::Prune { origins } => check_ids(origins),
            LinkMessage::Digest(digest) => digest.check(),
            _ => Ok(()),
        }
    }

    /// Whether `other` carries the same copies of the same rumors (a push or an answer
    /// that several links get): it then serialises to the same bytes, so a sender
    /// serialises it once. Cheap (pointer comparisons); false for other messages.
    pub fn same_rumors_as(&self, other: &LinkMessage) -> bool {
        let same = |a: &[SignedRumor], b: &[SignedRumor]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_copy(y))
        };
        match (self, other) {
            (LinkMessage::Rumors { rumors: a }, LinkMessage::Rumors { rumors: b })
            | (LinkMessage::Answer { rumors: a }, LinkMessage::Answer { rumors: b }) => same(a, b),
            _ => false,
        }
    }
}

/// A rumor's identity: its key and sequence number, sent as `[origin, subject, seq]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RumorId(pub NodeId, pub Option<NodeId>, pub u64);

impl RumorId {
    /// The key part.
    pub fn key(&self) -> RumorKey {
        RumorKey {
            origin: self.0,
            subject: self.1,
        }
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.2
    }
}

/// A lazy announcement, sent as `[origin, subject, seq, hops]`: the rumor, and the hops it
/// would have crossed when delivered through the announcer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement(pub NodeId, pub Option<NodeId>, pub u64, pub u32);

impl Announcement {
    /// The rumor announced.
    pub fn id(&self) -> RumorId {
        RumorId(self.0, self.1, self.2)
    }

    /// Hops through the announcer.
    pub fn hops(&self) -> u32 {
        self.3
    }
}

/// One range of the sender's store, `(after, upto]` in key order (`None` = unbounded), with
/// the newest sequence number per key. A store larger than [`MAX_IDS`] goes in several
/// digests with adjacent ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// Exclusive lower bound of the range.
    pub after: Option<RumorKey>,
    /// Inclusive upper bound of the range.
    pub upto: Option<RumorKey>,
    /// Every rumor the sender stores in the range.
    pub ids: Vec<RumorId>,
    /// Whether the receiver should answer with its own digest (anti-entropy), besides
    /// sending what the sender lacks.
    pub reply: bool,
}

impl Digest {
    /// Checks the id count, the range and that every id lies in it.
    pub fn check(&self) -> Result<(), WireError> {
        if self.ids.len() > MAX_IDS {
            return Err(WireError::Violation(format!(
                "digest of {} ids",
                self.ids.len()
            )));
        }
        if let (Some(a), Some(u)) = (self.after, self.upto)
            && a >= u
        {
            return Err(WireError::Violation("empty digest range".into()));
        }
        let inside =
            |k: RumorKey| self.after.is_none_or(|a| k > a) && self.upto.is_none_or(|u| k <= u);
        if !self.ids.iter().all(|id| inside(id.key())) {
            return Err(WireError::Violation("digest id outside its range".into()));
        }
        Ok(())
    }
}

/// Checks the length of an id list from a peer.
fn check_ids<T>(ids: &[T]) -> Result<(), WireError> {
    if ids.len() > MAX_IDS {
        return Err(WireError::Violation(format!(
            "{} ids in one message",
            ids.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn violation(msg: &LinkMessage) -> String {
        match msg.check() {
            Err(WireError::Violation(text)) => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn link_messages_keep_their_counts() {
        let id = RumorId(NodeId(1), None, 1);
        let ids = |n: usize| vec![id; n];
        let origins = |n: usize| vec![NodeId(1); n];
        for ok in [
            LinkMessage::Pull { ids: ids(MAX_IDS) },
            LinkMessage::Graft {
                ids: ids(MAX_IDS),
                origins: origins(MAX_IDS),
            },
            LinkMessage::Prune {
                origins: origins(MAX_IDS),
            },
            LinkMessage::Heartbeat,
        ] {
            assert_eq!(ok.check(), Ok(()), "{ok:?}");
        }
        let too_many = violation(&LinkMessage::Pull {
            ids: ids(MAX_IDS + 1),
        });
        assert_eq!(too_many, format!("{} ids in one message", MAX_IDS + 1));
        violation(&LinkMessage::Graft {
            ids: Vec::new(),
            origins: origins(MAX_IDS + 1),
        });
        violation(&LinkMessage::Prune {
            origins: origins(MAX_IDS + 1),
        });
        violation(&LinkMessage::IHave {
            ids: vec![Announcement(NodeId(1), None, 1, 1); MAX_IDS + 1],
        });
        let empty_range = LinkMessage::Digest(Digest {
            after: Some(id.key()),
            upto: Some(id.key()),
            ids: Vec::new(),
            reply: false,
        });
        assert_eq!(violation(&empty_range), "empty digest range");
    }

    #[test]
    fn a_batch_past_the_limit_is_a_violation_before_any_rumor_is_read() {
        let rumor: SignedRumor = from_json(br#"{"origin":1,"seq":1,"body":{},"sig":""}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let batch = |n| LinkMessage::Answer {
            rumors: vec![rumor.clone(); n],
        };
        assert_eq!(batch(MAX_BATCH).check(), Ok(()));
        assert_eq!(
            violation(&batch(MAX_BATCH + 1)),
            format!("batch of {} rumors", MAX_BATCH + 1)
        );
    }
}
