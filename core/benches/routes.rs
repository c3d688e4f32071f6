//! Cost of one route recomputation over a large member table (what every node pays, once
//! per debounce, while members keep arriving), against a bare Dijkstra of `petgraph` over
//! the same graph built beforehand, measured in the same run. Prints the ratios.
//!
//! `cargo bench -p overlay-core --bench routes`

#![forbid(unsafe_code)]
// The benchmark itself measures wall time; the core under test never does.
#![allow(missing_docs, clippy::disallowed_types, clippy::disallowed_methods)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use overlay_core::Fingerprint;
use overlay_core::testing::Routing;
use overlay_core::wire::Addr;
use overlay_core::{AsLink, Asn, Member, MemberState, NodeId, Profile};
use petgraph::graphmap::DiGraphMap;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Links advertised per AS (the simulator's topologies have about as many).
const LINKS: usize = 6;

/// `n` members, one per AS, each linked to `LINKS` random other ASes.
fn members(n: u32) -> Vec<Member> {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    (1..=n)
        .map(|asn| Member {
            node: NodeId(asn),
            seq: 1,
            profile: Arc::new(Profile {
                asn: Asn(asn),
                addr: Addr::from(format!("10.0.0.1:{asn}")),
                fingerprint: Fingerprint([0; 32]),
                links: (0..LINKS)
                    .map(|_| AsLink {
                        asn: Asn(1 + rng.next_u32() % n),
                        capacity: 1 + u64::from(rng.next_u32() % 100),
                        cost: 1 + u64::from(rng.next_u32() % 10),
                    })
                    .collect(),
                peers: None,
            }),
            reachable: true,
            first_hop: None,
            state: MemberState::Alive,
        })
        .collect()
}

fn main() {
    let mut crit = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    for n in [1000u32, 5000] {
        let all = members(n);
        let mut graph: DiGraphMap<Asn, u64> = DiGraphMap::new();
        for m in &all {
            for l in m.profile.links.iter() {
                graph.add_edge(m.profile.asn, l.asn, l.cost);
            }
        }
        let mut bare = Duration::ZERO;
        let mut bare_runs = 0u32;
        crit.bench_function(&format!("bare_petgraph_dijkstra_{n}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(petgraph::algo::dijkstra(&graph, Asn(1), None, |e| *e.2));
                }
                let d = start.elapsed();
                bare += d;
                bare_runs += iters as u32;
                d
            })
        });
        // A member's links change (one more, one dearer), as when a member joins or moves.
        let mut routing = Routing::new(Asn(1), 2 * n as usize);
        for m in &all {
            routing.advertise(m.clone());
        }
        routing.recompute();
        let mut changed = all.last().cloned().expect("members");
        let mut recompute = Duration::ZERO;
        let mut recompute_runs = 0u32;
        crit.bench_function(&format!("routing_recompute_{n}"), |b| {
            b.iter_custom(|iters| {
                let mut d = Duration::ZERO;
                for i in 0..iters {
                    changed.seq += 1;
                    let mut links = changed.profile.links.to_vec();
                    links.truncate(LINKS);
                    links.push(AsLink {
                        asn: Asn(2 + (i as u32 % (n - 1))),
                        capacity: 10,
                        cost: 1,
                    });
                    Arc::make_mut(&mut changed.profile).links = links.into();
                    routing.advertise(changed.clone());
                    let start = Instant::now();
                    black_box(routing.recompute());
                    d += start.elapsed();
                }
                recompute += d;
                recompute_runs += iters as u32;
                d
            })
        });
        let per = |d: Duration, k: u32| d.as_secs_f64() / f64::from(k.max(1));
        let (b, r) = (per(bare, bare_runs), per(recompute, recompute_runs));
        println!(
            "{{\"members\": {n}, \"bare_dijkstra_us\": {:.1}, \"recompute_us\": {:.1}, \"recompute_over_bare\": {:.2}}}",
            b * 1e6,
            r * 1e6,
            r / b
        );
    }
    crit.final_summary();
}
