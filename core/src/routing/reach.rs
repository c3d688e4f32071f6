//! Liveness by reachability, the two-way check of OSPF and IS-IS: a member is alive for
//! routing only when this node reaches it over overlay links both of whose ends list each
//! other in their current adverts. A controller that crashes is unlisted by its peers once
//! their heartbeats time out, and so becomes unreachable everywhere within seconds; a side
//! of a partition becomes unreachable to the other the same way. An advert without a peer
//! list (a version before it) counts as listing every member that lists it, and such a
//! member is reachable while its advert lives, as before.

use std::collections::{BTreeMap, VecDeque};

use super::{Member, MemberState};
use crate::wire::NodeId;

/// The live members `own` reaches over two-way links (`own` included, when it is a live
/// member), each with the direct peer a shortest such path from `own` starts with: its
/// first hop, the overlay's next hop toward it. `own`, and members reached only from a
/// legacy member that `own` does not reach, have none.
pub(super) fn reachable(
    own: NodeId,
    members: &BTreeMap<NodeId, Member>,
) -> BTreeMap<NodeId, Option<NodeId>> {
    let mut seen = BTreeMap::new();
    let mut queue = VecDeque::new();
    if alive(members, own).is_some() {
        seen.insert(own, None);
        queue.push_back(own);
    }
    search(own, members, &mut seen, &mut queue);
    // A legacy member is reachable while its advert lives, wherever it is.
    for m in members.values() {
        if m.state == MemberState::Alive && m.profile.peers.is_none() && !seen.contains_key(&m.node)
        {
            seen.insert(m.node, None);
            queue.push_back(m.node);
        }
    }
    search(own, members, &mut seen, &mut queue);
    seen
}

fn alive(members: &BTreeMap<NodeId, Member>, id: NodeId) -> Option<&Member> {
    members.get(&id).filter(|m| m.state == MemberState::Alive)
}

/// Breadth-first from what `queue` holds, over two-way links; a member found from `own`
/// gets itself as first hop, one found from another member gets that member's.
fn search(
    own: NodeId,
    members: &BTreeMap<NodeId, Member>,
    seen: &mut BTreeMap<NodeId, Option<NodeId>>,
    queue: &mut VecDeque<NodeId>,
) {
    let lists =
        |m: &Member, other: NodeId| m.profile.peers.as_ref().is_none_or(|p| p.contains(&other));
    while let Some(u) = queue.pop_front() {
        let Some(from) = alive(members, u) else {
            continue;
        };
        // `own` is filed without a first hop: what it finds gets itself below.
        let hop = seen.get(&u).copied().flatten();
        let legacy: Vec<NodeId>;
        let next: &[NodeId] = match &from.profile.peers {
            Some(listed) => listed,
            // A legacy member lists nobody: whoever lists it links to it.
            None => {
                legacy = members
                    .values()
                    .filter(|m| m.profile.peers.as_ref().is_some_and(|p| p.contains(&u)))
                    .map(|m| m.node)
                    .collect();
                &legacy
            }
        };
        for &v in next {
            let two_way = alive(members, v).is_some_and(|to| lists(to, u) && lists(from, v));
            if two_way && !seen.contains_key(&v) {
                seen.insert(v, if u == own { Some(v) } else { hop });
                queue.push_back(v);
            }
        }
    }
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
            first_hop: None,
            state,
        };
        (NodeId(node), m)
    }

    fn ids(reached: &BTreeMap<NodeId, Option<NodeId>>) -> Vec<u32> {
        reached.keys().map(|n| n.0).collect()
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
    fn each_reached_member_has_the_first_hop_of_a_shortest_path() {
        let alive = MemberState::Alive;
        let members: BTreeMap<_, _> = [
            member(1, Some(&[2, 3]), alive),
            member(2, Some(&[1, 4]), alive),
            member(3, Some(&[1, 4, 6]), alive),
            member(4, Some(&[2, 3, 5]), alive),
            member(5, Some(&[4]), alive),
            // 6 lists 3, 3 lists 6, but 6 is far: two hops through 3.
            member(6, Some(&[3]), alive),
        ]
        .into();
        let hops: Vec<(u32, Option<u32>)> = reachable(NodeId(1), &members)
            .into_iter()
            .map(|(n, hop)| (n.0, hop.map(|h| h.0)))
            .collect();
        assert_eq!(
            hops,
            [
                (1, None),
                (2, Some(2)),
                (3, Some(3)),
                (4, Some(2)),
                (5, Some(2)),
                (6, Some(3))
            ]
        );
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
