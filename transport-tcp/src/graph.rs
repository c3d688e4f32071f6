//! The network as one controller sees it, built once from its state: the AS graph
//! (controllers, stub ASes, the links the live controllers advertise, which of them carry
//! this controller's best paths), its routes, direct peers, members, banned and evicted
//! keys, and the latest rejections. Rendered as JSON (`GET /v1/topology`, which the page at
//! `GET /` draws as SVG) and as Graphviz DOT (`GET /v1/topology.dot`,
//! `overlay-network topology`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use overlay_core::{Asn, Fingerprint, Member, NodeId, Peer, Route};
use serde::Serialize;

use crate::driver::View;
use crate::telemetry::Rejection;

/// What an AS is in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AsKind {
    /// A live controller speaks for it: it advertises links and may be transit.
    Controller,
    /// No live controller: a destination only, never transit.
    Stub,
}

/// One AS of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct AsNode {
    /// The AS number.
    pub asn: Asn,
    /// Controller or stub.
    pub kind: AsKind,
    /// The live controller that speaks for it (the lowest id when several claim it).
    pub controller: Option<NodeId>,
    /// This controller's own AS.
    pub own: bool,
    /// A direct peer of this controller speaks for it.
    pub peer: bool,
    /// This controller has a route to it (or it is its own AS).
    pub reachable: bool,
}

/// One advertised link: the live controller of `from` advertises a link to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Link {
    /// The advertising AS.
    pub from: Asn,
    /// The neighbouring AS.
    pub to: Asn,
    /// Routing cost.
    pub cost: u64,
    /// Capacity.
    pub capacity: u64,
    /// Some best path of this controller crosses it.
    pub best: bool,
}

/// Why a key is shut out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Exclusion {
    /// This controller banned it (a direct peer that sent too many invalid messages).
    Banned,
    /// A quorum of members accused it.
    Evicted,
}

/// A banned or evicted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Excluded {
    /// The key.
    pub fingerprint: Fingerprint,
    /// The controller id it spoke for, when known.
    pub node: Option<NodeId>,
    /// Banned or evicted.
    pub why: Exclusion,
    /// End of the ban or eviction (Unix milliseconds).
    pub until_ms: u64,
}

/// The network as one controller sees it (the `GET /v1/topology` answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Graph {
    /// This controller.
    pub node: NodeId,
    /// Its AS.
    pub asn: Asn,
    /// Its key.
    pub fingerprint: Fingerprint,
    /// When this view was taken (Unix milliseconds).
    pub at_ms: u64,
    /// Every AS of the graph, by number.
    pub ases: Vec<AsNode>,
    /// Every advertised link of the live controllers, by (from, to).
    pub links: Vec<Link>,
    /// This controller's routing table (the `routes --json` rows).
    pub routes: Vec<Route>,
    /// Its direct peers, by node id.
    pub peers: Vec<Peer>,
    /// Every member record, by node id, with its state.
    pub members: Vec<Member>,
    /// Banned and evicted keys.
    pub excluded: Vec<Excluded>,
    /// The latest rejections, newest first.
    pub rejections: Vec<Rejection>,
}

impl Graph {
    /// The view of the node inside the driver.
    pub(crate) fn of(view: &View<'_>) -> Graph {
        let node = view.node;
        let config = node.config();
        let members = node.members();
        let routes = node.routes();
        let mut peers = node.peers();
        peers.sort_by_key(|p| p.node);
        let speakers = node.speakers();
        let speakers = speakers.iter().map(|m| (m.profile.asn, m)).collect();
        let (ases, links) = as_graph(config.asn, &speakers, &routes, &peers);
        let node_of = |fingerprint: &Fingerprint| {
            members
                .iter()
                .find(|m| m.profile.fingerprint == *fingerprint)
                .map(|m| m.node)
        };
        let bans = node
            .bans()
            .into_iter()
            .map(|(fingerprint, until)| Excluded {
                node: node_of(&fingerprint),
                fingerprint,
                why: Exclusion::Banned,
                until_ms: until.as_millis(),
            });
        let evictions = node
            .evictions()
            .into_iter()
            .map(|(fingerprint, id, until)| Excluded {
                fingerprint,
                node: Some(id),
                why: Exclusion::Evicted,
                until_ms: until.as_millis(),
            });
        Graph {
            node: config.node_id,
            asn: config.asn,
            fingerprint: node.fingerprint(),
            at_ms: view.now.as_millis(),
            ases,
            links,
            excluded: bans.chain(evictions).collect(),
            rejections: view.telemetry.rejections().cloned().collect(),
            routes,
            peers,
            members,
        }
    }

    /// The AS graph in Graphviz DOT: controllers are boxes (this controller's bold, its
    /// direct peers' doubled), stub ASes dashed ellipses, links arrows labelled with cost
    /// and capacity, bold where a best path of this controller crosses them.
    pub(crate) fn dot(&self) -> String {
        let controllers = self
            .ases
            .iter()
            .filter(|a| a.kind == AsKind::Controller)
            .count();
        let mut out = String::new();
        let _ = writeln!(out, "digraph overlay {{");
        let _ = writeln!(
            out,
            "  graph [label=\"AS graph seen by {} ({}): {} controllers, {} stub ASes; \
             link labels: cost / capacity\", labelloc=t, rankdir=LR];",
            self.node,
            self.asn,
            controllers,
            self.ases.len() - controllers
        );
        let _ = writeln!(out, "  node [fontname=\"Helvetica\"];");
        let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=10];");
        for a in &self.ases {
            let mut attrs = match (a.kind, a.controller) {
                (AsKind::Controller, Some(rc)) => {
                    let mut attrs = vec![
                        "shape=box".to_string(),
                        format!("label=\"{}\\n{}\"", a.asn, rc),
                    ];
                    if a.own {
                        attrs.push("style=\"filled,bold\"".into());
                        attrs.push("fillcolor=\"#9cc3f0\"".into());
                    } else {
                        attrs.push("style=filled".into());
                        attrs.push("fillcolor=\"#dce9f8\"".into());
                    }
                    if a.peer {
                        attrs.push("peripheries=2".into());
                    }
                    attrs
                }
                _ => vec![
                    "shape=ellipse".to_string(),
                    "style=dashed".into(),
                    format!("label=\"{}\\nstub\"", a.asn),
                ],
            };
            if !a.reachable {
                attrs.push("color=gray".into());
            }
            let _ = writeln!(out, "  as{} [{}];", a.asn.0, attrs.join(", "));
        }
        for l in &self.links {
            let style = if l.best {
                ", style=bold, color=\"#d9480f\""
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  as{} -> as{} [label=\"{} / {}\"{style}];",
                l.from.0, l.to.0, l.cost, l.capacity
            );
        }
        let _ = writeln!(out, "}}");
        out
    }
}

/// The ASes and links of the routing graph, by the core's path rule: an edge X→Y exists
/// iff the controller that speaks for X (`speakers`, the node's choice among X's live
/// controllers) advertises a link to Y; ASes without a live controller are stubs. The own
/// AS is always present.
fn as_graph(
    own: Asn,
    speakers: &BTreeMap<Asn, &Member>,
    routes: &[Route],
    peers: &[Peer],
) -> (Vec<AsNode>, Vec<Link>) {
    let on_paths: BTreeSet<(Asn, Asn)> = routes
        .iter()
        .flat_map(|r| {
            r.path
                .windows(2)
                .filter_map(|w| Some((*w.first()?, *w.get(1)?)))
        })
        .collect();
    let on_paths = &on_paths;
    let mut links: Vec<Link> = speakers
        .iter()
        .flat_map(|(&from, m)| {
            m.profile.links.iter().map(move |l| Link {
                from,
                to: l.asn,
                cost: l.cost,
                capacity: l.capacity,
                best: on_paths.contains(&(from, l.asn)),
            })
        })
        .collect();
    links.sort_by_key(|l| (l.from, l.to));
    let reachable: BTreeSet<Asn> = routes.iter().map(|r| r.destination).collect();
    let peer_nodes: BTreeSet<NodeId> = peers.iter().map(|p| p.node).collect();
    let mut numbers: BTreeSet<Asn> = speakers.keys().copied().collect();
    numbers.insert(own);
    numbers.extend(links.iter().map(|l| l.to));
    let ases = numbers
        .into_iter()
        .map(|asn| {
            let controller = speakers.get(&asn).map(|m| m.node);
            AsNode {
                asn,
                kind: if controller.is_some() {
                    AsKind::Controller
                } else {
                    AsKind::Stub
                },
                controller,
                own: asn == own,
                peer: controller.is_some_and(|n| peer_nodes.contains(&n)),
                reachable: asn == own || reachable.contains(&asn),
            }
        })
        .collect();
    (ases, links)
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_core::MemberState;
    use overlay_core::best_paths;
    use overlay_core::{Addr, AsLink, ConnId, Profile};
    use std::sync::Arc;

    fn member(node: u32, asn: u32, state: MemberState, links: &[(u32, u64, u64)]) -> Member {
        Member {
            node: NodeId(node),
            seq: 1,
            profile: Arc::new(Profile {
                asn: Asn(asn),
                addr: Addr::from(format!("127.0.0.1:{}", 8000 + node)),
                fingerprint: Fingerprint([u8::try_from(node).unwrap(); 32]),
                links: links
                    .iter()
                    .map(|&(asn, capacity, cost)| AsLink {
                        asn: Asn(asn),
                        capacity,
                        cost,
                    })
                    .collect(),
                peers: None,
            }),
            reachable: state == MemberState::Alive,
            first_hop: None,
            state,
        }
    }

    /// The example fixture's three controllers, RC3 as given, plus RC4 claiming AS300
    /// too (ignored: RC3 has the lower id) and RC5 (AS500) that has left.
    fn example(rc3: MemberState) -> Vec<Member> {
        vec![
            member(
                1,
                100,
                MemberState::Alive,
                &[(10, 2, 5), (20, 5, 5), (200, 10, 5), (300, 10, 5)],
            ),
            member(
                2,
                200,
                MemberState::Alive,
                &[(100, 10, 5), (300, 100, 1), (30, 10, 2)],
            ),
            member(3, 300, rc3, &[(100, 10, 5), (200, 100, 1), (40, 1, 3)]),
            member(4, 300, MemberState::Alive, &[(999, 1, 1)]),
            member(5, 500, MemberState::Left, &[(100, 1, 1)]),
        ]
    }

    use overlay_core::speakers;

    fn routes_of(own: u32, members: &[Member], speakers: &[usize]) -> Vec<Route> {
        best_paths(
            Asn(own),
            speakers
                .iter()
                .map(|&i| (members[i].profile.asn, &members[i].profile.links[..])),
        )
        .into_values()
        .collect()
    }

    fn peer(node: u32, asn: u32) -> Peer {
        Peer {
            conn: ConnId(u64::from(node)),
            node: NodeId(node),
            asn: Asn(asn),
            addr: Addr::from("x"),
            fingerprint: Fingerprint([0; 32]),
        }
    }

    #[test]
    fn the_graph_follows_the_path_rule_and_marks_best_paths() {
        let members = example(MemberState::Alive);
        let routes = routes_of(200, &members, &[0, 1, 2]);
        let (ases, links) = as_graph(Asn(200), &speakers(&members), &routes, &[peer(1, 100)]);
        let summary: Vec<(u32, AsKind, Option<u32>, bool, bool)> = ases
            .iter()
            .map(|a| (a.asn.0, a.kind, a.controller.map(|n| n.0), a.own, a.peer))
            .collect();
        use AsKind::{Controller as C, Stub as S};
        assert_eq!(
            summary,
            vec![
                (10, S, None, false, false),
                (20, S, None, false, false),
                (30, S, None, false, false),
                (40, S, None, false, false),
                (100, C, Some(1), false, true),
                (200, C, Some(2), true, false),
                (300, C, Some(3), false, false),
            ],
            "RC4's AS999 link and the departed RC5's AS500 are not in the graph"
        );
        assert!(ases.iter().all(|a| a.reachable));
        assert_eq!(links.len(), 10);
        let best: Vec<(u32, u32)> = links
            .iter()
            .filter(|l| l.best)
            .map(|l| (l.from.0, l.to.0))
            .collect();
        // AS200's tree: 200→100 (→10, →20), 200→300 (→40), 200→30.
        assert_eq!(
            best,
            vec![
                (100, 10),
                (100, 20),
                (200, 30),
                (200, 100),
                (200, 300),
                (300, 40)
            ]
        );
        let l = links
            .iter()
            .find(|l| (l.from.0, l.to.0) == (300, 40))
            .unwrap();
        assert_eq!((l.cost, l.capacity), (3, 1));
    }

    #[test]
    fn an_as_without_a_live_controller_is_a_stub_and_its_links_are_gone() {
        let members = example(MemberState::Expired);
        // RC4 now speaks for AS300: its only link is to AS999.
        let routes = routes_of(100, &members, &[0, 1, 3]);
        let (ases, links) = as_graph(Asn(100), &speakers(&members), &routes, &[]);
        let as300 = ases.iter().find(|a| a.asn == Asn(300)).unwrap();
        assert_eq!(as300.controller, Some(NodeId(4)));
        assert!(
            !links.iter().any(|l| l.to == Asn(40)),
            "RC3's links withdrawn"
        );
        assert!(!ases.iter().any(|a| a.asn == Asn(40)));
        assert!(
            ases.iter()
                .any(|a| a.asn == Asn(999) && a.kind == AsKind::Stub)
        );

        // With only RC1 alive, its neighbours are stubs, still reachable directly.
        let alone = vec![members[0].clone()];
        let routes = routes_of(100, &alone, &[0]);
        let (ases, links) = as_graph(Asn(100), &speakers(&alone), &routes, &[]);
        assert_eq!(links.len(), 4);
        assert!(
            ases.iter()
                .filter(|a| !a.own)
                .all(|a| a.kind == AsKind::Stub && a.reachable)
        );
    }

    #[test]
    fn dot_has_one_statement_per_as_and_link() {
        let members = example(MemberState::Alive);
        let routes = routes_of(100, &members, &[0, 1, 2]);
        let (ases, links) = as_graph(Asn(100), &speakers(&members), &routes, &[peer(2, 200)]);
        let graph = Graph {
            node: NodeId(1),
            asn: Asn(100),
            fingerprint: Fingerprint([1; 32]),
            at_ms: 0,
            ases,
            links,
            routes,
            peers: vec![],
            members,
            excluded: vec![],
            rejections: vec![],
        };
        let dot = graph.dot();
        assert!(
            dot.starts_with("digraph overlay {\n") && dot.ends_with("}\n"),
            "{dot}"
        );
        assert!(dot.contains("3 controllers, 4 stub ASes"), "{dot}");
        assert!(dot.contains(
            "  as100 [shape=box, label=\"AS100\\nRC1\", style=\"filled,bold\", fillcolor=\"#9cc3f0\"];"
        ));
        assert!(dot.contains("  as200 [shape=box, label=\"AS200\\nRC2\", style=filled, fillcolor=\"#dce9f8\", peripheries=2];"));
        assert!(dot.contains("  as40 [shape=ellipse, style=dashed, label=\"AS40\\nstub\"];"));
        assert!(dot.contains("  as300 -> as40 [label=\"3 / 1\", style=bold, color=\"#d9480f\"];"));
        assert!(dot.contains("  as200 -> as100 [label=\"5 / 10\"];"));
        assert_eq!(dot.matches(" -> ").count(), 10);
        assert_eq!(dot.matches(" [shape=").count(), 7);
    }
}
