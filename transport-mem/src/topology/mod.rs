//! Topologies: generated (ring, line, star, Erdős–Rényi and Barabási–Albert graphs with
//! random link costs and capacities) or read from a file ([`read`](Topology::read):
//! GraphML, networkx node-link JSON, CAIDA AS relationships), on petgraph. One graph serves
//! twice: its edges are the AS links each controller advertises, and a node's neighbours are
//! its bootstrap peers. Nodes may carry a name, a position and a stub mark (an AS without a
//! controller); stubs are numbered after every controller.

use std::ops::RangeInclusive;

use overlay_core::{AsLink, Asn};
use petgraph::algo::connected_components;
use petgraph::graphmap::UnGraphMap;
use petgraph::unionfind::UnionFind;
use petgraph::visit::{Bfs, Walker};
use rand_core::Rng;

use crate::random::{below, chance};

mod caida;
mod geo;
mod graphml;
mod nodelink;
mod read;

pub use geo::Position;
pub(crate) use geo::{cost_of_km, latency_of_km};
pub(crate) use read::line_of;
pub use read::{Format, ReadOptions, StubRule, TopologyError};

/// What is known of one node besides its links.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Site {
    /// Its name in the file (a city, an AS number).
    pub name: Option<String>,
    /// Where it is.
    pub position: Option<Position>,
    /// An AS without a controller: a destination of routes, never a member.
    pub stub: bool,
}

/// Cost and capacity of one link (the same in both directions when generated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    /// Routing cost.
    pub cost: u64,
    /// Capacity.
    pub capacity: u64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            cost: 1,
            capacity: 100,
        }
    }
}

/// An undirected graph on nodes `0..n`.
#[derive(Clone, Debug)]
pub struct Topology {
    graph: UnGraphMap<usize, Weights>,
    n: usize,
    sites: Vec<Site>,
    name: String,
}

impl Topology {
    /// `n` nodes and the given edges (default weights; self-loops and out-of-range ends
    /// are skipped).
    pub fn from_edges(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut graph = UnGraphMap::new();
        for i in 0..n {
            graph.add_node(i);
        }
        for (a, b) in edges {
            if a != b && a < n && b < n {
                graph.add_edge(a, b, Weights::default());
            }
        }
        Topology {
            graph,
            n,
            sites: vec![Site::default(); n],
            name: format!("graph(n={n})"),
        }
    }

    /// The same graph under another name.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// What it is: a generator with its parameters, or the file it was read from.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Node `i`'s name, position and stub mark.
    pub fn site(&self, i: usize) -> Option<&Site> {
        self.sites.get(i)
    }

    /// Nodes that run a controller: `0..controllers()` (stubs come after them).
    pub fn controllers(&self) -> usize {
        self.sites.iter().filter(|s| !s.stub).count()
    }

    /// `0 - 1 - ... - (n-1)`.
    pub fn line(n: usize) -> Self {
        Self::from_edges(n, (1..n).map(|i| (i - 1, i))).named(format!("line(n={n})"))
    }

    /// A line closed into a cycle.
    pub fn ring(n: usize) -> Self {
        let closing = (n > 2).then(|| (n - 1, 0));
        Self::from_edges(n, (1..n).map(|i| (i - 1, i)).chain(closing)).named(format!("ring(n={n})"))
    }

    /// Node 0 linked to every other node.
    pub fn star(n: usize) -> Self {
        Self::from_edges(n, (1..n).map(|i| (0, i))).named(format!("star(n={n})"))
    }

    /// G(n, p), made connected by linking each further component to a random node of the
    /// ones before it.
    pub fn erdos_renyi<R: Rng + ?Sized>(n: usize, p: f64, rng: &mut R) -> Self {
        let mut edges = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                if chance(rng, p) {
                    edges.push((a, b));
                }
            }
        }
        let mut t = Self::from_edges(n, edges).named(format!("erdos_renyi(n={n}, p={p})"));
        t.connect(rng);
        t
    }

    /// Preferential attachment: a clique of `m + 1` nodes, then each new node links to `m`
    /// distinct earlier nodes chosen with probability proportional to their degree.
    pub fn barabasi_albert<R: Rng + ?Sized>(n: usize, m: usize, rng: &mut R) -> Self {
        let m = m.max(1);
        let seed = (m + 1).min(n);
        let mut edges = Vec::new();
        // Every edge end once: a uniform pick from it is a degree-proportional pick.
        let mut ends: Vec<usize> = Vec::new();
        for a in 0..seed {
            for b in a + 1..seed {
                edges.push((a, b));
                ends.extend([a, b]);
            }
        }
        for v in seed..n {
            let mut chosen: Vec<usize> = Vec::with_capacity(m);
            while chosen.len() < m.min(v) {
                let u = ends[below(rng, ends.len() as u64) as usize];
                if !chosen.contains(&u) {
                    chosen.push(u);
                }
            }
            for u in chosen {
                edges.push((u, v));
                ends.extend([u, v]);
            }
        }
        Self::from_edges(n, edges).named(format!("barabasi_albert(n={n}, m={m})"))
    }

    /// Redraws every link's cost uniformly from `costs` and its capacity from `capacities`.
    pub fn random_weights<R: Rng + ?Sized>(
        mut self,
        rng: &mut R,
        costs: RangeInclusive<u64>,
        capacities: &[u64],
    ) -> Self {
        let span = costs.end().saturating_sub(*costs.start()) + 1;
        for (a, b, _) in self.edges() {
            let w = Weights {
                cost: costs.start() + below(rng, span),
                capacity: capacities
                    .get(below(rng, capacities.len() as u64) as usize)
                    .copied()
                    .unwrap_or(100),
            };
            self.graph.add_edge(a, b, w);
        }
        self
    }

    /// Links each component after the first to a random node of the earlier ones.
    fn connect<R: Rng + ?Sized>(&mut self, rng: &mut R) {
        let mut joined: Vec<usize> = Vec::new();
        let mut seen = vec![false; self.n];
        for start in 0..self.n {
            if seen[start] {
                continue;
            }
            let component: Vec<usize> = Bfs::new(&self.graph, start).iter(&self.graph).collect();
            for &v in &component {
                seen[v] = true;
            }
            if !joined.is_empty() {
                let to = joined[below(rng, joined.len() as u64) as usize];
                self.graph.add_edge(start, to, Weights::default());
            }
            joined.extend(component);
        }
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Neighbours of `i`, ascending.
    pub fn neighbours(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> = self.graph.neighbors(i).collect();
        v.sort_unstable();
        v
    }

    /// Bootstrap peers of each controller: the controllers it reaches through stubs only
    /// (its neighbours, when it has no stub neighbour), ascending. Where the controllers
    /// would form several groups that way, the first of each later group and controller 0
    /// list each other too, so that the overlay can form as one (controllers reach each
    /// other across the Internet, whatever their ASes' links).
    pub fn peers(&self) -> Vec<Vec<usize>> {
        let c = self.controllers();
        let mut peers: Vec<Vec<usize>> = (0..c)
            .map(|i| {
                let mut found = std::collections::BTreeSet::new();
                let mut stack = vec![i];
                let mut seen = std::collections::BTreeSet::from([i]);
                while let Some(u) = stack.pop() {
                    for v in self.graph.neighbors(u) {
                        if !seen.insert(v) {
                            continue;
                        }
                        if v < c {
                            found.insert(v);
                        } else {
                            stack.push(v);
                        }
                    }
                }
                found.into_iter().collect()
            })
            .collect();
        let mut groups = UnionFind::new(c);
        for (i, near) in peers.iter().enumerate() {
            for &v in near {
                groups.union(i, v);
            }
        }
        let mut joined = std::collections::BTreeSet::new();
        for start in 0..c {
            if joined.insert(groups.find(start)) && start > 0 {
                peers[start].push(0);
                peers[0].push(start);
            }
        }
        for p in &mut peers {
            p.sort_unstable();
        }
        peers
    }

    /// Every edge once, as `(smaller, larger, weights)`, sorted.
    pub fn edges(&self) -> Vec<(usize, usize, Weights)> {
        let mut e: Vec<_> = self
            .graph
            .all_edges()
            .map(|(a, b, w)| (a.min(b), a.max(b), *w))
            .collect();
        e.sort_unstable_by_key(|&(a, b, _)| (a, b));
        e
    }

    /// Whether every node can reach every other.
    pub fn is_connected(&self) -> bool {
        self.n <= 1 || connected_components(&self.graph) == 1
    }

    /// The AS links node `i` advertises: one per neighbour, in the AS that `asn` maps it to.
    pub fn links(&self, i: usize, asn: impl Fn(usize) -> Asn) -> Vec<AsLink> {
        self.neighbours(i)
            .into_iter()
            .filter_map(|j| {
                self.graph.edge_weight(i, j).map(|w| AsLink {
                    asn: asn(j),
                    capacity: w.capacity,
                    cost: w.cost,
                })
            })
            .collect()
    }

    /// The underlying petgraph graph (for analyses such as diameters or cuts).
    pub fn graph(&self) -> &UnGraphMap<usize, Weights> {
        &self.graph
    }
}

#[cfg(test)]
mod file_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn regular_shapes_have_their_edge_counts() {
        assert_eq!(Topology::line(5).edges().len(), 4);
        assert_eq!(Topology::ring(5).edges().len(), 5);
        assert_eq!(Topology::ring(2).edges().len(), 1);
        assert_eq!(Topology::star(5).neighbours(0), vec![1, 2, 3, 4]);
        assert_eq!(Topology::star(5).neighbours(3), vec![0]);
        for t in [Topology::line(7), Topology::ring(7), Topology::star(7)] {
            assert!(t.is_connected());
        }
        assert!(!Topology::from_edges(3, [(0, 1)]).is_connected());
    }

    #[test]
    fn random_graphs_are_connected_and_seeded() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let er = Topology::erdos_renyi(60, 0.01, &mut rng);
        assert!(er.is_connected());
        let ba = Topology::barabasi_albert(200, 2, &mut rng);
        assert!(ba.is_connected());
        assert_eq!(
            ba.edges().len(),
            3 + 2 * 197,
            "a triangle, then 2 edges per node"
        );
        let hub = (0..200).map(|i| ba.neighbours(i).len()).max().unwrap();
        assert!(
            hub >= 12,
            "preferential attachment grows hubs (max degree {hub})"
        );
        let again = Topology::barabasi_albert(200, 2, &mut ChaCha20Rng::seed_from_u64(1));
        let first = Topology::barabasi_albert(200, 2, &mut ChaCha20Rng::seed_from_u64(1));
        assert_eq!(again.edges(), first.edges());
    }

    #[test]
    fn weights_and_links_follow_the_graph() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let t = Topology::ring(4).random_weights(&mut rng, 2..=5, &[10, 1000]);
        for (_, _, w) in t.edges() {
            assert!((2..=5).contains(&w.cost) && [10, 1000].contains(&w.capacity));
        }
        let links = t.links(0, |j| Asn(100 + j as u32));
        let asns: Vec<u32> = links.iter().map(|l| l.asn.0).collect();
        assert_eq!(asns, vec![101, 103]);
        let back = t.links(1, |j| Asn(100 + j as u32));
        assert_eq!(back[0].cost, links[0].cost, "symmetric weights");
    }
}
