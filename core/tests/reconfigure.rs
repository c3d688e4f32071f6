//! Reconfiguring running nodes (`Command::Reconfigure`): links advertised at once, fixed
//! fields and invalid configurations refused without a change, the gossip period and
//! peer bounds taking effect, and a cluster key rotated without a restart.

use std::time::Duration;

use overlay_core::testing::*;
use overlay_core::{Command, Config, ConfigError, Event, Notification};

fn converged_example() -> Cluster {
    let mut c = Cluster::new(example_configs());
    c.drive_for(3_000);
    c
}

fn reconfigure(c: &mut Cluster, i: usize, config: Config) {
    c.deliver(i, Event::Command(Command::Reconfigure(Box::new(config))));
    c.drive();
}

fn refusals(c: &Cluster, i: usize) -> Vec<ConfigError> {
    c.notes(i)
        .filter_map(|n| match n {
            Notification::CommandFailed(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn cost_to(c: &Cluster, i: usize, asn: u32) -> Option<u64> {
    c.route_table(i)
        .into_iter()
        .find(|r| r.0 == asn)
        .map(|r| r.1)
}

#[test]
fn new_links_are_advertised_at_once_and_routes_follow() {
    let mut c = converged_example();
    assert_eq!(cost_to(&c, 2, 30), Some(3));
    let mut config = c.node(1).config().clone();
    config.links = vec![link(100, 10, 5), link(300, 100, 1), link(30, 10, 9)];
    reconfigure(&mut c, 1, config.clone());
    assert_eq!(cost_to(&c, 2, 30), Some(10), "no time passed");
    assert_eq!(c.node(1).config(), &config);
    assert!(refusals(&c, 1).is_empty());
}

#[test]
fn a_fixed_field_or_an_invalid_value_changes_nothing() {
    let mut c = converged_example();
    let before = c.node(0).config().clone();
    let routes = c.route_table(2);
    let mut moved = before.clone();
    moved.node_id = overlay_core::NodeId(77);
    moved.gossip_period = Duration::from_secs(3);
    reconfigure(&mut c, 0, moved);
    let mut other_as = before.clone();
    other_as.asn = overlay_core::Asn(9);
    reconfigure(&mut c, 0, other_as);
    let mut invalid = before.clone();
    invalid.max_peers = 0;
    invalid.links.clear();
    reconfigure(&mut c, 0, invalid);
    assert_eq!(
        refusals(&c, 0),
        [
            ConfigError::Fixed("node_id"),
            ConfigError::Fixed("asn"),
            ConfigError::MaxPeersZero
        ]
    );
    assert_eq!(c.node(0).config(), &before, "nothing changed");
    assert_eq!(c.route_table(2), routes, "the links stayed advertised");
}

#[test]
fn a_shorter_gossip_period_takes_effect_at_once() {
    let mut c = converged_example();
    let mut config = c.node(0).config().clone();
    config.gossip_period = Duration::from_millis(200);
    config.advert_refresh = 1;
    // Rumors from RC1 accepted by RC2.
    let sent = |c: &Cluster| {
        c.notes(1)
            .filter(|n| matches!(n, Notification::RumorAccepted { origin, .. } if origin.0 == 1))
            .count()
    };
    let before = sent(&c);
    reconfigure(&mut c, 0, config);
    c.drive_for(2_000);
    // One advert per 200 ms round (±10 % jitter) where the 1 s period gave two at most.
    assert!(sent(&c) - before >= 8, "{} adverts", sent(&c) - before);
}

#[test]
fn new_bootstrap_addresses_are_dialed() {
    let mut configs = example_configs();
    configs.iter_mut().for_each(|c| c.bootstrap.clear());
    let mut c = Cluster::new(configs);
    c.drive_for(2_000);
    assert!(!c.linked(0, 1));
    let mut config = c.node(1).config().clone();
    config.bootstrap = vec![addr(0), addr(2)];
    reconfigure(&mut c, 1, config);
    c.drive_for(2_000);
    assert!(c.linked(0, 1) && c.linked(1, 2));
    assert_eq!(cost_to(&c, 0, 30), Some(7), "through AS200");
}

#[test]
fn a_cluster_key_is_rotated_without_a_restart() {
    let mut c = converged_example();
    let old = cluster_key(7);
    let new = cluster_key(8);
    // Every node accepts the new key, then dials with it, then forgets the old one.
    for keys in [
        vec![old.clone(), new.clone()],
        vec![new.clone(), old.clone()],
        vec![new.clone()],
    ] {
        for i in 0..3 {
            let mut config = c.node(i).config().clone();
            config.cluster_keys = keys.clone();
            reconfigure(&mut c, i, config);
        }
        c.drive_for(500);
    }
    // The links made with the old key stay; once they drop, the new key makes new ones.
    let conns: Vec<_> = (0..3)
        .flat_map(|a| (0..3).map(move |b| (a, b)))
        .filter_map(|(a, b)| c.conn_between(a, b))
        .collect();
    conns.into_iter().for_each(|conn| c.drop_connection(conn));
    c.drive_for(3_000);
    assert!(c.linked(0, 1) && c.linked(1, 2));
    assert_eq!(cost_to(&c, 0, 30), Some(7), "through AS200");
    for i in 0..3 {
        assert!(refusals(&c, i).is_empty());
        assert!(c.blamed(i).is_empty(), "{:?}", c.blamed(i));
    }
    // A controller still holding only the old key is not let in.
    let mut late = config(3, 400, vec![link(100, 1, 1)], &[0]);
    late.cluster_keys = vec![old];
    let late = c.add(late);
    c.drive_for(2_000);
    assert!(!c.linked(late, 0));
}
