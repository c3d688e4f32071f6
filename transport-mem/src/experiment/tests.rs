//! Tests of the scripted experiments: delivery, repeatability across thread counts,
//! staggered starts, eviction of misbehaving members, settle rounds, scenario names.

use super::*;

fn small(scenario: Scenario, period: Duration) -> (Experiment, KeyPool) {
    let mut exp = Experiment::new(12, 3);
    exp.gossip_period = period;
    exp.scenario = scenario;
    let keys = KeyPool::cached(&KeyPool::default_dir(), exp.slots()).expect("key cache");
    (exp, keys)
}

#[test]
fn a_broadcast_reaches_everyone_and_repeats_exactly() {
    // Counted over one round: the change (nothing else changed, so nothing else is
    // advertised), then with every node advertising every round.
    let (exp, keys) = small(Scenario::Broadcast, Duration::from_secs(10));
    let r = run(&exp, &keys);
    assert_eq!(r.delivery_ratio, 1.0);
    assert!(r.routes_match_reference, "{:?}", r.mismatch);
    assert_eq!(r.key_bits, 2048);
    assert!(r.rumors_measured >= 1, "{} rumors", r.rumors_measured);
    let every_round = run(
        &Experiment {
            advert_refresh: Some(1),
            ..exp.clone()
        },
        &keys,
    );
    assert!(every_round.routes_match_reference);
    assert!(
        every_round.rumors_measured >= 12,
        "{} rumors",
        every_round.rumors_measured
    );
    assert!(
        r.messages_per_rumor >= 0.9 * 11.0,
        "about every receiver got a copy"
    );
    assert!(r.last_delivery_hop >= 1 && r.full_delivery_ms.is_some());
    // A quiet steady round: no advert (the refresh is 30 rounds away), no link made again.
    assert_eq!(r.steady_adverts_per_node_per_round, Some(0.0));
    assert_eq!(r.steady_handshakes_per_node_per_round, Some(0.0));
    assert!(every_round.steady_adverts_per_node_per_round >= Some(1.0));
    same_on_threads(&exp, &keys, &r.trace_digest, &[1, 3]);
}

/// Runs `exp` again on each thread count: the same outcome, event for event.
fn same_on_threads(exp: &Experiment, keys: &KeyPool, digest: &str, counts: &[usize]) {
    for &threads in counts {
        let again = run(
            &Experiment {
                threads,
                ..exp.clone()
            },
            keys,
        );
        assert_eq!(again.trace_digest, digest, "{threads} threads");
    }
}

#[test]
fn a_cluster_that_starts_over_time_still_reaches_everyone() {
    let (mut exp, keys) = small(Scenario::Broadcast, Duration::from_secs(10));
    exp.join_over = Duration::from_secs(3);
    let (sim, _) = build(&exp, &keys);
    // The twelfth node starts at 11/12 of the 3 s.
    assert_eq!(sim.now(), Time::from_millis(2750));
    assert_eq!(sim.running().len(), 12);
    let r = run(&exp, &keys);
    assert_eq!(r.join_over_ms, 3000);
    assert!(r.boot_ms.is_some_and(|b| b >= 2750), "{:?}", r.boot_ms);
    assert_eq!(r.delivery_ratio, 1.0);
    assert!(r.routes_match_reference, "{:?}", r.mismatch);
}

#[test]
fn misbehaving_members_are_evicted_and_the_outsider_stays_out() {
    let (exp, keys) = small(Scenario::Byzantine, Duration::from_secs(1));
    let r = run(&exp, &keys);
    let f = &r.scenario_figures;
    assert!(f["evicted_everywhere_ms"].is_u64(), "{f}");
    assert_eq!(f["honest_nodes_evicted"], 0);
    assert_eq!(f["honest_nodes_still_linked_to_misbehaving"], 0);
    assert_eq!(f["wrong_key_node_admitted"], false);
    assert!(r.routes_match_reference, "{:?}", r.mismatch);
    same_on_threads(&exp, &keys, &r.trace_digest, &[1, 2]);
}

#[test]
fn settle_rounds_put_rounds_between_a_crash_and_the_change() {
    let (exp, keys) = small(Scenario::Crash, Duration::from_secs(10));
    let at_once = run(&exp, &keys);
    let settled = run(
        &Experiment {
            settle_rounds: 1,
            ..exp.clone()
        },
        &keys,
    );
    for r in [&at_once, &settled] {
        assert_eq!(r.delivery_ratio, 1.0);
        assert!(r.routes_match_reference, "{:?}", r.mismatch);
    }
    assert_eq!(settled.settle_rounds, 1);
    // Same boot and crash; the change, and the round measured after it, one round later.
    assert_eq!(
        settled.virtual_ms,
        at_once.virtual_ms + millis(exp.gossip_period)
    );
    assert_ne!(settled.trace_digest, at_once.trace_digest);
}

#[test]
fn scenario_names_parse() {
    assert_eq!("churn".parse(), Ok(Scenario::Churn));
    assert!("storm".parse::<Scenario>().is_err());
}

#[test]
fn a_topology_zoo_network_routes_as_the_reference_after_a_crash_and_a_partition() {
    // GARR (Italy, January 2012): 48 points of presence, geographic latency.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("topologies/Garr201201.json");
    let mut exp = Experiment::new(0, 5);
    for (flag, value) in [
        ("--topology", file.to_str().expect("utf-8 path")),
        ("--latency", "geo"),
        ("--period-ms", "1000"),
    ] {
        assert_eq!(exp.set_flag(flag, value), Ok(true));
    }
    exp.finish().expect("the committed file reads");
    assert_eq!(exp.nodes, 48);
    let keys = KeyPool::cached(&KeyPool::default_dir(), exp.slots()).expect("key cache");
    let (sim, _) = build(&exp, &keys);
    // Milan and Rome, about 480 km apart: 3 ms of fibre over the 2 ms floor.
    assert_eq!(sim.latency(6, 10), Duration::from_millis(5));
    // A pair without both places keeps the random model (5–50 ms).
    let mut sim = sim;
    sim.place(6, None);
    assert!((5..=50).contains(&sim.latency(6, 10).as_millis()));
    for scenario in [Scenario::Crash, Scenario::Partition] {
        let exp = Experiment {
            scenario,
            ..exp.clone()
        };
        let r = run(&exp, &keys);
        assert!(
            r.topology.starts_with("Garr201201.json (48 controllers"),
            "{}",
            r.topology
        );
        assert!(r.routes_match_reference, "{scenario:?}: {:?}", r.mismatch);
        assert_eq!(r.delivery_ratio, 1.0, "{scenario:?}");
        assert_eq!(
            (r.honest_offenses, r.honest_evictions),
            (0, 0),
            "{scenario:?}"
        );
        if scenario == Scenario::Crash {
            assert!(
                r.scenario_figures["crash_withdrawn_ms"].is_u64(),
                "{}",
                r.scenario_figures
            );
            let again = run(&exp, &keys);
            assert_eq!(
                again.trace_digest, r.trace_digest,
                "same seed and file, same run"
            );
        }
    }
}
