//! Liveness by reachability, the two-way check of OSPF and IS-IS: a member is alive for
//! routing only when this node reaches it over overlay links both of whose ends list each
//! other in their current adverts. A controller that crashes is unlisted by its peers once
//! their heartbeats time out, and so becomes unreachable everywhere within seconds; a side
//! of a partition becomes unreachable to the other the same way. An advert without a peer
//! list (a version before it) counts as listing every member that lists it, and such a
//! member is reachable while its advert lives, as before.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{Member, MemberState};
use crate::wire::NodeId;

/// The live members `own` reaches over two-way links (`own` included, when it is a live
/// member).
pub(super) fn reachable(own: NodeId, members: &BTreeMap<NodeId, Member>) -> BTreeSet<NodeId> {
    let alive = |id: &NodeId| members.get(id).filter(|m| m.state == MemberState::Alive);
    let lists =
        |m: &Member, other: NodeId| m.profile.peers.as_ref().is_none_or(|p| p.contains(&other));
    let mut seen: BTreeSet<NodeId> = members
        .values()
        .filter(|m| m.state == MemberState::Alive && m.profile.peers.is_none())
        .map(|m| m.node)
        .collect();
    let mut queue: VecDeque<NodeId> = seen.iter().copied().collect();
    if alive(&own).is_some() && seen.insert(own) {
        queue.push_back(own);
    }
    while let Some(u) = queue.pop_front() {
        let Some(from) = alive(&u) else { continue };
        let next: Vec<NodeId> = match &from.profile.peers {
            Some(listed) => listed.to_vec(),
            // A legacy member lists nobody: whoever lists it links to it.
            None => members
                .values()
                .filter(|m| m.profile.peers.as_ref().is_some_and(|p| p.contains(&u)))
                .map(|m| m.node)
                .collect(),
        };
        for v in next {
            let two_way = alive(&v).is_some_and(|to| lists(to, u) && lists(from, v));
            if two_way && seen.insert(v) {
                queue.push_back(v);
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::identity::Fingerprint;
    use crate::verify::Profile;
    use crate::wire::{Addr, Asn};

    fn member(node: u32, peers: Option<&[u32]>, state: MemberState) -> (NodeId, Member) {
        let m = Member {
            node: NodeId(node),
            seq: 1,
            profile: Arc::new(Profile {
                asn: Asn(node),
                addr: Addr::from("x"),
                fingerprint: Fingerprint([node as u8; 32]),
                links: Arc::from(Vec::new()),
                peers: peers.map(|p| p.iter().map(|&i| NodeId(i)).collect()),
            }),
            reachable: false,
            state,
        };
        (NodeId(node), m)
    }

    fn ids(set: &BTreeSet<NodeId>) -> Vec<u32> {
        set.iter().map(|n| n.0).collect()
    }

    #[test]
    fn only_links_both_ends_list_carry_reachability() {
        let alive = MemberState::Alive;
        let members: BTreeMap<_, _> = [
            member(1, Some(&[2, 3]), alive),
            member(2, Some(&[1, 4]), alive),
            // 3 was 1's peer but no longer lists it (1's advert is stale): one-way.
            member(3, Some(&[5]), alive),
            member(4, Some(&[2]), alive),
            member(5, Some(&[3]), alive),
        ]
        .into();
        assert_eq!(ids(&reachable(NodeId(1), &members)), [1, 2, 4]);
        assert_eq!(ids(&reachable(NodeId(5), &members)), [3, 5]);
    }

    #[test]
    fn a_crashed_member_is_unreachable_once_its_peers_unlist_it() {
        let alive = MemberState::Alive;
        // 3 crashed: it still lists 1 and 2 in its last advert; they no longer list it.
        let members: BTreeMap<_, _> = [
            member(1, Some(&[2]), alive),
            member(2, Some(&[1]), alive),
            member(3, Some(&[1, 2]), alive),
        ]
        .into();
        assert_eq!(ids(&reachable(NodeId(1), &members)), [1, 2]);
    }

    #[test]
    fn expired_members_carry_nothing_and_legacy_ones_stay_reachable() {
        let members: BTreeMap<_, _> = [
            member(1, Some(&[2, 7]), MemberState::Alive),
            member(2, Some(&[1, 3]), MemberState::Expired),
            member(3, Some(&[2]), MemberState::Alive),
            member(7, None, MemberState::Alive),
            member(8, Some(&[7]), MemberState::Alive),
            member(9, None, MemberState::Left),
        ]
        .into();
        // 1 reaches legacy 7, and 8 through it (8 lists 7; 7 lists nobody).
        assert_eq!(ids(&reachable(NodeId(1), &members)), [1, 7, 8]);
    }
}
