//! Tests of configuration files: conversion, errors naming line and field, resolution
//! and the order of key sources.

use std::time::Duration;

use overlay_core::ClusterKey;

use super::*;

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/seed");

fn seed(name: &str) -> PathBuf {
    Path::new(SEED).join(name)
}

#[test]
fn conf_files_convert_to_the_seed_json_byte_for_byte() {
    for rc in ["rc1", "rc2", "rc3"] {
        let (conf, _) = load(&seed(&format!("{rc}.conf"))).unwrap();
        let json = std::fs::read_to_string(seed(&format!("{rc}.json"))).unwrap();
        assert_eq!(conf.to_json(), json.trim_end(), "{rc}");
        let (parsed, _) = load(&seed(&format!("{rc}.json"))).unwrap();
        assert_eq!(parsed, conf, "{rc}");
    }
}

fn conf_error(text: &str) -> String {
    parse_conf(Path::new("x.conf"), text)
        .unwrap_err()
        .to_string()
}

#[test]
fn conf_errors_name_the_line_and_the_field() {
    assert_eq!(
        conf_error("1 100 10.0.0.1:1\n1 ; peers\n2 x 10.0.0.2:1\n0\n"),
        "x.conf:3: connected_route_controllers[0].autonomous_system_number: \
         expected a whole number, found \"x\""
    );
    assert_eq!(
        conf_error("1 100 10.0.0.1:1\n0\n\n2\n10 2 5\n"),
        "x.conf:6: connected_autonomous_systems[1]: the file ends here"
    );
    assert_eq!(
        conf_error("1 100\n"),
        "x.conf:1: self: expected ID ASN IP, found \"1 100\""
    );
    assert_eq!(
        conf_error("1 100 ip\n0\n0\n7\n"),
        "x.conf:4: end: unexpected \"7\" after the 0 links announced"
    );
}

#[test]
fn json_errors_name_the_line_and_the_field() {
    let e = parse_json(
        Path::new("x.json"),
        "{\n\"self\": {\"id\": 1, \"autonomous_system_number\": 1, \"ip\": \"a\"},\n\"crom\": 1}",
    )
    .unwrap_err();
    assert_eq!(e.location, "x.json:3:6");
    assert_eq!(e.field, "crom");
}

fn resolve(file: &FileConfig) -> Result<Settings, ConfigFileError> {
    Settings::resolve(
        file,
        &Source::unnamed("t.json"),
        &Overrides::default(),
        true,
    )
}

fn base() -> FileConfig {
    let mut f = FileConfig::new(RcEntry {
        id: 1,
        autonomous_system_number: 100,
        ip: "127.0.0.1".into(),
    });
    f.cluster_keys = vec![ClusterKey::from_bytes([3; 32]).to_base64()];
    f
}

#[test]
fn addresses_and_defaults_resolve() {
    let s = resolve(&base()).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:1450");
    assert_eq!(s.rpc.to_string(), "127.0.0.1:11450");
    assert_eq!(s.key_file, PathBuf::from("t.pem"));
    assert_eq!(s.core.gossip_period, Duration::from_secs(10));
    assert_eq!(s.key_source, KeySource::Config);
}

#[test]
fn wrong_fields_are_named() {
    type Mutation = fn(&mut FileConfig);
    let cases: [(Mutation, &str); 10] = [
        (|f| f.cluster_keys.clear(), "cluster_keys"),
        (|f| f.me.ip = "10.0.0.1:x".into(), "self.ip"),
        (|f| f.me.ip = "0.0.0.0".into(), "self.ip"),
        (
            |f| {
                f.connected_route_controllers = vec![RcEntry {
                    id: 2,
                    autonomous_system_number: 2,
                    ip: "10.0.0.2".into(),
                }]
            },
            "connected_route_controllers[0].ip",
        ),
        (
            |f| {
                f.connected_route_controllers = vec![RcEntry {
                    id: 1,
                    autonomous_system_number: 2,
                    ip: "10.0.0.2:1".into(),
                }]
            },
            "connected_route_controllers[0].id",
        ),
        (|f| f.rpc_addr = Some("10.0.0.1:1".into()), "rpc_addr"),
        (|f| f.cron = "@hourly".into(), "cron"),
        (|f| f.ban_duration = Some("forever".into()), "ban_duration"),
        (|f| f.protocol = 2, "protocol"),
        (
            |f| {
                f.connected_autonomous_systems = vec![AsEntry {
                    number: 100,
                    link_capacity: 1,
                    cost: 1,
                }]
            },
            "connected_autonomous_systems[0]",
        ),
    ];
    for (mutate, field) in cases {
        let mut f = base();
        mutate(&mut f);
        let e = resolve(&f).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

#[test]
fn key_sources_take_precedence_in_order() {
    let mut f = base();
    let env = ClusterKey::from_bytes([9; 32]);
    let overrides = Overrides {
        env_cluster_key: Some(env.to_base64()),
        ..Overrides::default()
    };
    let s = Settings::resolve(&f, &Source::unnamed("t.json"), &overrides, true).unwrap();
    assert_eq!(s.key_source, KeySource::Env);
    assert_eq!(s.core.cluster_keys[0].to_base64(), env.to_base64());
    f.cluster_keys.clear();
    f.development_mode = true;
    assert_eq!(resolve(&f).unwrap().key_source, KeySource::Development);
    f.development_mode = false;
    let check = Settings::resolve(&f, &Source::unnamed("t"), &Overrides::default(), false);
    assert_eq!(check.unwrap().key_source, KeySource::Missing);
}
