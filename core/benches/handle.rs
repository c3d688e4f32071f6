//! Received-rumor throughput of `Node::handle` (hop decryption, parse, duplicate check,
//! RSA verification, store, re-encryption and forwarding to two peers) against a bare RSA
//! verification measured in the same run, the same in a certified cluster (every advert
//! carries its origin's certificate, checked against the authority), and the cost of a
//! duplicate. Prints the ratios.
//!
//! `cargo bench -p overlay-core --bench handle`

#![forbid(unsafe_code)]
// The benchmark itself measures wall time; the core under test never does.
#![allow(missing_docs, clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use criterion::Criterion;
use overlay_core::PublicIdentity;
use overlay_core::testing::sign_rumor as sign;
use overlay_core::testing::{Cluster, config, identity};
use overlay_core::wire::{Addr, LinkMessage, RumorContent, SignedRumor};
use overlay_core::{
    Asn, CertBody, Certificate, ConnId, Event, Identity, NodeId, issue_certificate,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::hint::black_box;

const ORIGINS: u32 = 40;
const SEQS: u64 = 50;

/// The authority of the certified runs.
fn authority() -> Identity {
    Identity::generate(&mut ChaCha20Rng::seed_from_u64(7), 2048).unwrap()
}

/// A certificate from `ca` for `key` as controller `node` of AS `asn`, valid for a day.
fn certificate(ca: &Identity, key: &Identity, node: u32, asn: u32) -> Certificate {
    let body = CertBody {
        serial: u64::from(node),
        node: NodeId(node),
        asn: Asn(asn),
        key: key.fingerprint().to_hex(),
        issuer: String::new(),
        not_before: 0,
        not_after: 86_400_000,
    };
    issue_certificate(ca, &mut ChaCha20Rng::seed_from_u64(u64::from(node)), body)
}

/// Rumors from many origins, in increasing sequence order per origin (the first
/// [`ORIGINS`], one per origin, warm a node up); with `ca`, each advert carries its
/// origin's certificate.
fn rumor_pool(ca: Option<&Identity>) -> Vec<SignedRumor> {
    let mut rng = ChaCha20Rng::seed_from_u64(42);
    let origins: Vec<Identity> = (0..ORIGINS)
        .map(|_| Identity::generate(&mut rng, 2048).unwrap())
        .collect();
    let certs: Vec<Option<Certificate>> = origins
        .iter()
        .enumerate()
        .map(|(i, id)| ca.map(|ca| certificate(ca, id, 100 + i as u32, 64_000 + i as u32)))
        .collect();
    let mut pool = Vec::new();
    for seq in 1..=SEQS + 1 {
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
                cert: certs[i].as_ref().map(Into::into),
                peers: Some(vec![NodeId(1), NodeId(2)].into()),
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

/// B (slot 0) linked to A, C and D; B forwards what A sends to C and D. With `ca`, every
/// node trusts it and holds a certificate from it.
fn star(ca: Option<&Identity>) -> Cluster {
    let mut hub = config(0, 100, vec![], &[]);
    hub.max_rumors_per_period = u32::MAX;
    // Routes are recomputed at most every 100 ms, as by default; not per rumor.
    hub.route_debounce = None;
    let spokes = (1..4).map(|i| {
        let mut s = config(i, 100 + i as u32, vec![], &[0]);
        s.target_peers = Some(1);
        s
    });
    let configs = std::iter::once(hub)
        .chain(spokes)
        .enumerate()
        .map(|(i, mut c)| {
            if let Some(ca) = ca {
                c.trusted_cas = vec![ca.public().clone()];
                c.certificate = Some(certificate(ca, &identity(i), c.node_id.0, c.asn.0));
            }
            c
        });
    let mut c = Cluster::new(configs.collect());
    c.drive_for(50);
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

/// What one benchmark measures: new rumors, their duplicates, or new rumors in a
/// certified cluster (`pool` made with `authority`).
#[derive(Clone, Copy)]
enum Case<'a> {
    New,
    Duplicate,
    Certified(&'a Identity),
}

/// Feeds `rumors` from A to B and checks that B accepted them all; returns the time spent
/// inside `handle`.
fn accept(c: &mut Cluster, rumors: &[SignedRumor]) -> Duration {
    let accepted = c.node(0).metrics().rumors_accepted;
    let (conn, frames) = frames(c, 1, rumors);
    let elapsed = feed(c, conn, frames);
    assert_eq!(
        c.node(0).metrics().rumors_accepted - accepted,
        rumors.len() as u64,
        "all rumors accepted"
    );
    elapsed
}

/// Times `iters` rumors of `pool` in `case`. Each star is warmed up first with one advert
/// per origin (untimed): what is measured is a node in its steady state, which has parsed
/// each origin's key and verified its certificate already (it does both once per key and
/// certificate, and then receives that origin's adverts every round for the certificate's
/// days-long validity).
fn run(iters: u64, pool: &[SignedRumor], case: Case<'_>) -> Duration {
    let (warm_up, pool) = pool.split_at(ORIGINS as usize);
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    let ca = match case {
        Case::Certified(ca) => Some(ca),
        _ => None,
    };
    while left > 0 {
        let n = left.min(pool.len());
        left -= n;
        let mut c = star(ca);
        accept(&mut c, warm_up);
        let elapsed = accept(&mut c, &pool[..n]);
        if matches!(case, Case::Duplicate) {
            let (conn, again) = frames(&mut c, 2, &pool[..n]);
            let dups = c.node(0).metrics().rumors_duplicate;
            total += feed(&mut c, conn, again);
            assert_eq!(
                c.node(0).metrics().rumors_duplicate - dups,
                n as u64,
                "all duplicates"
            );
        } else {
            total += elapsed;
        }
    }
    total
}

/// Rounds of the interleaved pass that the printed figures come from.
const ROUNDS: usize = 31;
/// Rumors of each kind one round times.
const PER_ROUND: u64 = 500;

/// Times `iters` bare verifications of `rumor`'s signature (decoded beforehand).
fn verify(public: &PublicIdentity, rumor: &SignedRumor, iters: u64) -> Duration {
    let sig = rumor.sig.decode();
    let start = Instant::now();
    for _ in 0..iters {
        public
            .verify(black_box(rumor.body.get().as_bytes()), black_box(&sig))
            .unwrap();
    }
    start.elapsed()
}

/// The median of `values`.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let pool = rumor_pool(None);
    let ca = authority();
    let certified = rumor_pool(Some(&ca));
    let mut crit = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    let sample = &pool[0];
    let body: overlay_core::wire::RumorBody = serde_json::from_str(sample.body.get()).unwrap();
    let public = PublicIdentity::from_der(&body.pubkey).unwrap();
    crit.bench_function("bare_rsa2048_verify", |b| {
        b.iter_custom(|iters| verify(&public, sample, iters))
    });
    crit.bench_function("handle_new_rumor_verify_forward_x2", |b| {
        b.iter_custom(|iters| run(iters, &pool, Case::New))
    });
    crit.bench_function("handle_new_certified_rumor_verify_forward_x2", |b| {
        b.iter_custom(|iters| run(iters, &certified, Case::Certified(&ca)))
    });
    crit.bench_function("handle_duplicate_rumor", |b| {
        b.iter_custom(|iters| run(iters, &pool, Case::Duplicate))
    });
    crit.final_summary();

    // The ratios: each round times the same number of bare verifications, new rumors,
    // new certified rumors and duplicates one after the other, so that the machine's
    // drift (a shared virtual machine's) touches all four alike; the medians are printed.
    let n = PER_ROUND;
    let per_item = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    let rounds: Vec<[f64; 4]> = (0..ROUNDS)
        .map(|_| {
            [
                per_item(verify(&public, sample, n)),
                per_item(run(n, &pool, Case::New)),
                per_item(run(n, &certified, Case::Certified(&ca))),
                per_item(run(n, &pool, Case::Duplicate)),
            ]
        })
        .collect();
    let figure = |f: &dyn Fn(&[f64; 4]) -> f64| median(rounds.iter().map(f).collect());
    let spread = |f: &dyn Fn(&[f64; 4]) -> f64| {
        let all: Vec<f64> = rounds.iter().map(f).collect();
        let (lo, hi) = all
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("[{lo:.3}, {hi:.3}]")
    };
    let new_ratio = |r: &[f64; 4]| r[0] / r[1];
    let certified_ratio = |r: &[f64; 4]| r[0] / r[2];
    println!(
        "{{\"rounds\": {ROUNDS}, \"rumors_per_round\": {n}, \"verify_us\": {:.1}, \
         \"handle_new_rumor_us\": {:.1}, \"handle_new_certified_rumor_us\": {:.1}, \
         \"handle_duplicate_us\": {:.1}, \"handle_throughput_over_verify\": {:.3}, \
         \"handle_throughput_over_verify_range\": {}, \
         \"certified_throughput_over_verify\": {:.3}, \
         \"certified_throughput_over_verify_range\": {}, \
         \"duplicate_cost_over_verify\": {:.3}}}",
        figure(&|r| r[0]),
        figure(&|r| r[1]),
        figure(&|r| r[2]),
        figure(&|r| r[3]),
        figure(&new_ratio),
        spread(&new_ratio),
        figure(&certified_ratio),
        spread(&certified_ratio),
        figure(&|r| r[3] / r[0]),
    );
}
