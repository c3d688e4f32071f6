//! Shortest paths over AS links: Dijkstra on (cost, then hops) with ties broken by the
//! lexicographically smallest AS path, over a graph of dense indices, kept as a table of
//! predecessors from which each route's AS path is rebuilt. Routing runs it over the live
//! members' advertisements; `best_paths` is the same computation for any set of links.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::wire::{AsLink, Asn};

/// A best path to one destination AS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Route {
    /// Destination AS.
    pub destination: Asn,
    /// Sum of link costs.
    pub cost: u64,
    /// Number of AS hops.
    pub hops: u32,
    /// Bottleneck capacity along the path.
    pub capacity: u64,
    /// The AS path, from this node's AS to the destination.
    pub path: Vec<Asn>,
    /// The first AS after this node's.
    pub next_hop: Asn,
}

/// One destination of the table as it is kept: the AS path (and so the next hop) is not
/// stored per destination but rebuilt from the predecessors (a table of N destinations
/// holds N entries of 24 bytes, not N paths).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TableEntry {
    cost: u64,
    capacity: u64,
    hops: u32,
    /// The AS before the destination on the path (this node's AS for a neighbour).
    pub(crate) previous: Asn,
}

/// The route to `destination` in a table kept from `source`, its AS path rebuilt from the
/// predecessors.
pub(crate) fn route_in(
    table: &BTreeMap<Asn, TableEntry>,
    source: Asn,
    destination: Asn,
) -> Option<Route> {
    let entry = table.get(&destination)?;
    let mut path = vec![destination];
    let mut at = entry;
    while at.previous != source && path.len() <= table.len() {
        path.push(at.previous);
        at = table.get(&at.previous)?;
    }
    path.push(source);
    path.reverse();
    let next_hop = path.get(1).copied().unwrap_or(destination);
    Some(Route {
        destination,
        cost: entry.cost,
        hops: entry.hops,
        capacity: entry.capacity,
        path,
        next_hop,
    })
}

/// Best paths from `source` over the adjacency advertised by each AS that has a live
/// controller (`speakers`: AS and its links; an AS listed twice keeps its first entry).
/// Dijkstra on (cost, hops), ties broken by the lexicographically smallest AS path.
pub fn best_paths<'a>(
    source: Asn,
    speakers: impl Iterator<Item = (Asn, &'a [AsLink])>,
) -> BTreeMap<Asn, Route> {
    let table = ShortestPaths::compute(source, speakers).table();
    table
        .keys()
        .filter_map(|&dest| route_in(&table, source, dest))
        .map(|route| (route.destination, route))
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Distance {
    cost: u64,
    hops: u32,
}

/// One destination of a shortest-path tree, in the order Dijkstra settled it.
pub(crate) struct Settled {
    pub(crate) destination: Asn,
    pub(crate) entry: TableEntry,
    /// Position of the predecessor in the settled list (`None`: the source).
    pub(crate) parent: Option<usize>,
}

/// A shortest-path tree: every reached destination, each after its predecessor. Built
/// over a graph of dense indices (one hash lookup per advertised link, no per-destination
/// path), so a recomputation over thousands of members costs little more than Dijkstra.
pub(crate) struct ShortestPaths {
    pub(crate) settled: Vec<Settled>,
}

impl ShortestPaths {
    /// The tree of best paths from `source` over the speakers' advertised links.
    pub(crate) fn compute<'a>(
        source: Asn,
        speakers: impl Iterator<Item = (Asn, &'a [AsLink])>,
    ) -> Self {
        let (graph, from) = graph_of(source, speakers);
        Self::dijkstra(&graph, source, from)
    }

    #[expect(
        clippy::indexing_slicing,
        reason = "every index is a NodeIndex of `graph`, and every per-vertex vector is \
                  sized to the graph's vertex count before it is indexed"
    )]
    /// Dijkstra from `from` (cost, then hops, then the smaller AS path), keeping each
    /// destination's predecessor and bottleneck capacity.
    fn dijkstra(graph: &DiGraph<Asn, (u64, u64)>, source: Asn, from: NodeIndex) -> Self {
        let n = graph.node_count();
        let mut dist: Vec<Option<Distance>> = vec![None; n];
        let mut pred: Vec<NodeIndex> = vec![from; n];
        let mut capacity: Vec<u64> = vec![u64::MAX; n];
        // Where each settled destination is in `settled` (the source is never listed).
        let mut position: Vec<Option<usize>> = vec![None; n];
        let mut settled = Vec::new();
        let mut heap = BinaryHeap::new();
        let zero = Distance { cost: 0, hops: 0 };
        dist[from.index()] = Some(zero);
        heap.push(Reverse((zero, source, from)));
        let path_less = |pred: &[NodeIndex], mut a: NodeIndex, mut b: NodeIndex| {
            // Equal hop counts: walk back together to the common ancestor; the last pair
            // that differed is the first difference from the source.
            let mut less = false;
            while a != b {
                less = graph[a] < graph[b];
                a = pred[a.index()];
                b = pred[b.index()];
            }
            less
        };

        while let Some(Reverse((d, _, u))) = heap.pop() {
            if position[u.index()].is_some() || dist[u.index()] != Some(d) {
                continue;
            }
            if u != from {
                let p = pred[u.index()];
                position[u.index()] = Some(settled.len());
                settled.push(Settled {
                    destination: graph[u],
                    entry: TableEntry {
                        cost: d.cost,
                        capacity: capacity[u.index()],
                        hops: d.hops,
                        previous: graph[p],
                    },
                    parent: position[p.index()],
                });
            }
            for edge in graph.edges(u) {
                let v = edge.target();
                let (cost, cap) = *edge.weight();
                if v == from || position[v.index()].is_some() {
                    continue;
                }
                let candidate = Distance {
                    cost: d.cost.saturating_add(cost),
                    hops: d.hops + 1,
                };
                let better = match dist[v.index()] {
                    None => true,
                    Some(current) => match candidate.cmp(&current) {
                        Ordering::Less => true,
                        Ordering::Greater => false,
                        Ordering::Equal => path_less(&pred, u, pred[v.index()]),
                    },
                };
                if better {
                    dist[v.index()] = Some(candidate);
                    pred[v.index()] = u;
                    capacity[v.index()] = capacity[u.index()].min(cap);
                    heap.push(Reverse((candidate, graph[v], v)));
                }
            }
        }
        ShortestPaths { settled }
    }

    /// The tree as a table, by destination.
    pub(crate) fn table(&self) -> BTreeMap<Asn, TableEntry> {
        self.settled
            .iter()
            .map(|s| (s.destination, s.entry))
            .collect()
    }
}

/// The routing graph: one vertex per AS, an edge X→Y for each link the speaker of X
/// advertises (a link listed twice: the last one counts). Returns it with the source's
/// vertex.
#[expect(
    clippy::indexing_slicing,
    reason = "`spoken` and `linked` are resized to the vertex count before each index"
)]
fn graph_of<'a>(
    source: Asn,
    speakers: impl Iterator<Item = (Asn, &'a [AsLink])>,
) -> (DiGraph<Asn, (u64, u64)>, NodeIndex) {
    let mut graph: DiGraph<Asn, (u64, u64)> = DiGraph::new();
    let mut index: HashMap<Asn, NodeIndex> = HashMap::new();
    let mut vertex = |graph: &mut DiGraph<Asn, (u64, u64)>, asn: Asn| {
        *index.entry(asn).or_insert_with(|| graph.add_node(asn))
    };
    let from = vertex(&mut graph, source);
    let mut spoken: Vec<bool> = Vec::new();
    let mut linked: Vec<Option<NodeIndex>> = Vec::new();
    for (asn, links) in speakers {
        let u = vertex(&mut graph, asn);
        spoken.resize(graph.node_count(), false);
        if std::mem::replace(&mut spoken[u.index()], true) {
            continue;
        }
        for link in links.iter().rev() {
            let v = vertex(&mut graph, link.asn);
            linked.resize(graph.node_count(), None);
            if linked[v.index()] != Some(u) {
                linked[v.index()] = Some(u);
                graph.add_edge(u, v, (link.cost, link.capacity));
            }
        }
    }
    (graph, from)
}
