//! Bindings: who may speak for what, among live members. A key speaks for the first live
//! member id seen with it (another id signed with that key is not believed), and an AS is
//! spoken for by the first live member that claimed it, for as long as that member stays
//! alive: a later claimant, whatever its node id, adds no edges to the routing graph (it
//! cannot hijack an AS by signing as a lower id). When the speaker goes, the live claimant
//! with the lowest node id takes over. Keys are filed under the first half of their
//! fingerprint (16 bytes, not 36 per member), and the caller confirms a lookup on the
//! whole fingerprint.

use std::collections::BTreeMap;

use crate::identity::Fingerprint;
use crate::wire::{Asn, NodeId};

/// A live member as the bindings see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim {
    /// The member.
    pub node: NodeId,
    /// Its key.
    pub key: Fingerprint,
    /// The AS it claims.
    pub asn: Asn,
}

/// The half of a fingerprint a key is filed under. Two keys sharing one take about 2^64
/// key generations to find; the second of such a pair owns nothing here (its lookups are
/// refused on the whole fingerprint), as if a key were reused.
fn filed(key: &Fingerprint) -> u128 {
    key.0
        .first_chunk()
        .map_or(0, |half| u128::from_be_bytes(*half))
}

/// Key and AS bindings of live members.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bindings {
    owners: BTreeMap<u128, NodeId>,
    speakers: BTreeMap<Asn, NodeId>,
}

impl Bindings {
    /// Records that `claim` is alive; the caller released its previous claim first if the
    /// key or the AS changed. Returns whether the AS's speaker changed.
    pub(crate) fn claim(&mut self, claim: Claim) -> bool {
        self.owners.entry(filed(&claim.key)).or_insert(claim.node);
        match self.speakers.get(&claim.asn) {
            Some(_) => false,
            None => {
                self.speakers.insert(claim.asn, claim.node);
                true
            }
        }
    }

    /// Records that `claim` is no longer alive (or no longer claims its key and AS); the
    /// AS passes to the lowest live claimant among `others`. Returns whether the AS's
    /// speaker changed.
    pub(crate) fn release(&mut self, claim: Claim, others: impl Iterator<Item = Claim>) -> bool {
        let filed = filed(&claim.key);
        if self.owners.get(&filed) == Some(&claim.node) {
            self.owners.remove(&filed);
        }
        if self.speakers.get(&claim.asn) != Some(&claim.node) {
            return false;
        }
        let next = others
            .filter(|c| c.asn == claim.asn && c.node != claim.node)
            .map(|c| c.node)
            .min();
        match next {
            Some(node) => self.speakers.insert(claim.asn, node),
            None => self.speakers.remove(&claim.asn),
        };
        true
    }

    /// The live member id filed under `key`'s half, if any: the caller confirms that
    /// member's key is `key`.
    pub(crate) fn owner_of(&self, key: &Fingerprint) -> Option<NodeId> {
        self.owners.get(&filed(key)).copied()
    }

    /// The member that speaks for each AS.
    pub(crate) fn speakers(&self) -> impl Iterator<Item = (Asn, NodeId)> + '_ {
        self.speakers.iter().map(|(&asn, &node)| (asn, node))
    }

    /// Whether `node` speaks for `asn`.
    #[cfg(test)]
    pub(crate) fn speaks(&self, asn: Asn, node: NodeId) -> bool {
        self.speakers.get(&asn) == Some(&node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(node: u32, key: u8, asn: u32) -> Claim {
        Claim {
            node: NodeId(node),
            key: Fingerprint([key; 32]),
            asn: Asn(asn),
        }
    }

    #[test]
    fn the_first_live_claimant_keeps_an_as_until_it_goes() {
        let mut b = Bindings::default();
        assert!(b.claim(claim(7, 7, 300)));
        assert!(
            !b.claim(claim(1, 1, 300)),
            "a lower id claiming later is no speaker"
        );
        assert!(b.speaks(Asn(300), NodeId(7)));
        let others = [claim(1, 1, 300), claim(3, 3, 300), claim(2, 2, 200)];
        assert!(b.release(claim(7, 7, 300), others.into_iter()));
        assert!(
            b.speaks(Asn(300), NodeId(1)),
            "the lowest live claimant takes over"
        );
        assert!(b.release(claim(1, 1, 300), std::iter::empty()));
        assert_eq!(b.speakers().count(), 0);
    }

    #[test]
    fn a_key_speaks_for_its_first_live_id() {
        let mut b = Bindings::default();
        b.claim(claim(4, 9, 400));
        b.claim(claim(5, 9, 500));
        assert_eq!(b.owner_of(&Fingerprint([9; 32])), Some(NodeId(4)));
        b.release(claim(5, 9, 500), std::iter::empty());
        assert_eq!(b.owner_of(&Fingerprint([9; 32])), Some(NodeId(4)));
        b.release(claim(4, 9, 400), std::iter::empty());
        assert_eq!(b.owner_of(&Fingerprint([9; 32])), None);
    }
}
