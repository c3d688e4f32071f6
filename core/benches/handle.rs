//! Received-rumor throughput of `Node::handle` (hop decryption, parse, duplicate check,
//! RSA verification, store, re-encryption and forwarding to two peers) against a bare RSA
//! verification measured in the same run, and the cost of a duplicate. Prints the ratios.
//!
//! `cargo bench -p overlay-core --bench handle`

#![forbid(unsafe_code)]
// The benchmark itself measures wall time; the core under test never does.
#![allow(missing_docs, clippy::disallowed_types, clippy::disallowed_methods)]

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::Criterion;
use harness::{Cluster, config};
use overlay_core::gossip::sign;
use overlay_core::sentry::PublicIdentity;
use overlay_core::wire::{Addr, LinkMessage, RumorContent, SignedRumor};
use overlay_core::{Asn, ConnId, Event, Identity, NodeId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::hint::black_box;

const ORIGINS: u32 = 40;
const SEQS: u64 = 50;

thread_local! {
    static VERIFY: Cell<(Duration, u64)> = const { Cell::new((Duration::ZERO, 0)) };
    static HANDLE: Cell<(Duration, u64)> = const { Cell::new((Duration::ZERO, 0)) };
    static DUPLICATE: Cell<(Duration, u64)> = const { Cell::new((Duration::ZERO, 0)) };
}

fn add(cell: &'static std::thread::LocalKey<Cell<(Duration, u64)>>, d: Duration, n: u64) {
    cell.with(|c| {
        let (t, k) = c.get();
        c.set((t + d, k + n));
    });
}

fn mean(cell: &'static std::thread::LocalKey<Cell<(Duration, u64)>>) -> f64 {
    cell.with(|c| {
        let (t, k) = c.get();
        t.as_secs_f64() / k.max(1) as f64
    })
}

/// Rumors from many origins, in increasing sequence order per origin.
fn rumor_pool() -> Vec<SignedRumor> {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let origins: Vec<Identity> = (0..ORIGINS)
        .map(|_| Identity::generate(&mut rng, 2048).unwrap())
        .collect();
    let mut pool = Vec::new();
    for seq in 1..=SEQS {
        for (i, id) in origins.iter().enumerate() {
            let content = RumorContent::Advert {
                asn: Asn(64_000 + i as u32),
                addr: Addr::from(format!("192.0.2.{i}:1450")),
                links: vec![overlay_core::AsLink {
                    asn: Asn(1),
                    capacity: 10,
                    cost: seq,
                }]
                .into(),
                cert: None,
            };
            pool.push(
                sign(
                    NodeId(100 + i as u32),
                    seq,
                    overlay_core::Time::ZERO,
                    id,
                    &mut rng,
                    content,
                )
                .envelope(0, 0),
            );
        }
    }
    pool
}

/// B (slot 0) linked to A, C and D; B forwards what A sends to C and D.
fn star() -> Cluster {
    let mut hub = config(0, 100, vec![], &[]);
    hub.max_rumors_per_period = u32::MAX;
    // Routes are recomputed at most every 100 ms, as by default; not per rumor.
    hub.route_debounce = None;
    let spokes = (1..4).map(|i| {
        let mut s = config(i, 100 + i as u32, vec![], &[0]);
        s.target_peers = Some(1);
        s
    });
    let mut c = Cluster::new(std::iter::once(hub).chain(spokes).collect());
    c.advance(50);
    assert_eq!(c.node(0).peers().len(), 3);
    c
}

/// Frames sealed by `from` for B carrying one rumor each, and B's connection to `from`.
fn frames(c: &mut Cluster, from: usize, rumors: &[SignedRumor]) -> (ConnId, Vec<Vec<u8>>) {
    let conn = c.conn_between(from, 0).unwrap();
    let b_conn = c.conn_between(0, from).unwrap();
    let now = c.now;
    let frames = rumors
        .iter()
        .map(|r| {
            let msg = LinkMessage::Rumors {
                rumors: vec![r.clone()],
            };
            let actions = c.node_mut(from).inject(now, conn, &msg);
            match actions.into_iter().next() {
                Some(overlay_core::Action::Send { bytes, .. }) => bytes,
                other => panic!("expected a send, got {other:?}"),
            }
        })
        .collect();
    (b_conn, frames)
}

/// Feeds frames to B; returns the time spent inside `handle`.
fn feed(c: &mut Cluster, conn: ConnId, frames: Vec<Vec<u8>>) -> Duration {
    let now = c.now;
    let node = c.node_mut(0);
    let start = Instant::now();
    for bytes in frames {
        black_box(node.handle(now, Event::Received { conn, bytes }));
    }
    start.elapsed()
}

fn run(iters: u64, pool: &[SignedRumor], duplicates: bool) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let n = left.min(pool.len());
        left -= n;
        let mut c = star();
        let accepted = c.node(0).metrics().rumors_accepted;
        let (conn, first) = frames(&mut c, 1, &pool[..n]);
        let elapsed = feed(&mut c, conn, first);
        assert_eq!(
            c.node(0).metrics().rumors_accepted - accepted,
            n as u64,
            "all rumors accepted"
        );
        if duplicates {
            let (conn, again) = frames(&mut c, 2, &pool[..n]);
            let dups = c.node(0).metrics().rumors_duplicate;
            let elapsed = feed(&mut c, conn, again);
            assert_eq!(
                c.node(0).metrics().rumors_duplicate - dups,
                n as u64,
                "all duplicates"
            );
            add(&DUPLICATE, elapsed, n as u64);
            total += elapsed;
        } else {
            add(&HANDLE, elapsed, n as u64);
            total += elapsed;
        }
    }
    total
}

fn main() {
    let pool = rumor_pool();
    let mut crit = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    let sample = &pool[0];
    let body: overlay_core::wire::RumorBody = serde_json::from_str(sample.body.get()).unwrap();
    let public = PublicIdentity::from_der(&body.pubkey).unwrap();
    crit.bench_function("bare_rsa2048_verify", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                public
                    .verify(
                        black_box(sample.body.get().as_bytes()),
                        black_box(&sample.sig),
                    )
                    .unwrap();
            }
            let d = start.elapsed();
            add(&VERIFY, d, iters);
            d
        })
    });
    crit.bench_function("handle_new_rumor_verify_forward_x2", |b| {
        b.iter_custom(|iters| run(iters, &pool, false))
    });
    crit.bench_function("handle_duplicate_rumor", |b| {
        b.iter_custom(|iters| run(iters, &pool, true))
    });
    crit.final_summary();

    let (verify, handle, dup) = (mean(&VERIFY), mean(&HANDLE), mean(&DUPLICATE));
    println!(
        "{{\"verify_us\": {:.1}, \"handle_new_rumor_us\": {:.1}, \"handle_duplicate_us\": {:.1}, \
         \"handle_throughput_over_verify\": {:.3}, \"duplicate_cost_over_verify\": {:.3}}}",
        verify * 1e6,
        handle * 1e6,
        dup * 1e6,
        verify / handle,
        dup / verify
    );
}
