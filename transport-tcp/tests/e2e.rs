//! End-to-end tests with real `overlay-network` processes on 127.0.0.1: the example
//! cluster converges to the expected tables and recovers from a CLI leave, SIGTERM, kill -9
//! and restarts; a node with the wrong cluster key is never admitted; the control API's
//! token; the seed fixtures; the CLI's errors; the demo. Every wait is bounded and every
//! daemon is killed when its guard drops.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{Cluster, Daemon, cli, free_addr, wait_for};
use overlay_transport_tcp::config::{FileConfig, RcEntry};
use overlay_transport_tcp::testing::topology;
use serde_json::{Value, json};

const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/seed");
const CONVERGE: Duration = Duration::from_secs(30);

fn key(byte: u8) -> String {
    overlay_core::ClusterKey::from_bytes([byte; 32]).to_base64()
}

fn route(destination: u32, cost: u64, hops: u32, capacity: u64, path: &[u32]) -> Value {
    json!({"destination": destination, "cost": cost, "hops": hops, "capacity": capacity,
           "path": path, "next_hop": path[1]})
}

/// The example's full tables, worked out by hand from fixtures/example (the README's
/// table lists 9 of these 18 rows).
fn example_tables() -> Vec<Value> {
    vec![
        json!({"node": 1, "asn": 100, "routes": [
            route(10, 5, 1, 2, &[100, 10]),
            route(20, 5, 1, 5, &[100, 20]),
            route(30, 7, 2, 10, &[100, 200, 30]),
            route(40, 8, 2, 1, &[100, 300, 40]),
            route(200, 5, 1, 10, &[100, 200]),
            route(300, 5, 1, 10, &[100, 300]),
        ]}),
        json!({"node": 2, "asn": 200, "routes": [
            route(10, 10, 2, 2, &[200, 100, 10]),
            route(20, 10, 2, 5, &[200, 100, 20]),
            route(30, 2, 1, 10, &[200, 30]),
            route(40, 4, 2, 1, &[200, 300, 40]),
            route(100, 5, 1, 10, &[200, 100]),
            route(300, 1, 1, 100, &[200, 300]),
        ]}),
        json!({"node": 3, "asn": 300, "routes": [
            route(10, 10, 2, 2, &[300, 100, 10]),
            route(20, 10, 2, 5, &[300, 100, 20]),
            route(30, 3, 2, 10, &[300, 200, 30]),
            route(40, 3, 1, 1, &[300, 40]),
            route(100, 5, 1, 10, &[300, 100]),
            route(200, 1, 1, 100, &[300, 200]),
        ]}),
    ]
}

#[test]
fn example_cluster_converges_and_recovers_from_leave_sigterm_and_kill() {
    let mut c = Cluster::new(topology::example().unwrap(), "@every 500ms", &key(7));
    c.start_all();

    // Every `routes --json` is exactly the expected table, in the public shape.
    let tables = example_tables();
    let exact: Vec<String> = tables.iter().map(Value::to_string).collect();
    let converged = wait_for(CONVERGE, || {
        (0..3)
            .all(|i| {
                let out = cli(&["routes", "--rpc", &c.rpc[i].to_string(), "--json"]);
                out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == exact[i]
            })
            .then_some(())
    });
    assert!(
        converged.is_some(),
        "{:?}",
        (0..3).map(|i| c.routes(i)).collect::<Vec<_>>()
    );
    let rows = topology::fixture_rows(topology::EXAMPLE_README);
    assert!(topology::check_rows(&rows, &tables).is_empty());

    // Keys were created beside the configs, private.
    let pem = c.dir.path().join("rc1.pem");
    assert_eq!(
        std::fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Routes may converge through RC2 before RC1's own link to RC3 is up: wait for it.
    let status = wait_for(CONVERGE, || c.status(0).filter(|s| s["peers"] == 2));
    let status = status.expect("RC1 links to both other controllers");
    assert_eq!(status["members"], 3);
    assert!(
        c.daemon(0)
            .log_text()
            .contains(status["fingerprint"].as_str().unwrap())
    );
    let text = cli(&["status", "--rpc", &c.rpc[0].to_string()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("RC1 (AS100) running"));
    let peers = cli(&["peers", "--rpc", &c.rpc[0].to_string(), "--json"]);
    let peers: Value = serde_json::from_slice(&peers.stdout).unwrap();
    assert_eq!(peers["peers"].as_array().unwrap().len(), 2);

    // kill -9: the others expire RC3; a restart (same key, same port) brings it back.
    c.daemon(2).signal("KILL");
    assert!(c.daemon(2).wait(Duration::from_secs(5)).is_some());
    c.converge(&[true, true, false], CONVERGE).unwrap();
    c.start(2);
    c.converge(&[true; 3], CONVERGE).unwrap();

    // SIGTERM: a graceful leave, exit 0; the others withdraw it; it can come back.
    c.daemon(2).signal("TERM");
    let status = c.daemon(2).wait(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(c.daemon(2).log_text().contains("leaving the network"));
    c.daemons[2] = None;
    c.converge(&[true, true, false], CONVERGE).unwrap();
    c.start(2);
    c.converge(&[true; 3], CONVERGE).unwrap();

    // `leave` over the control API changes state: without a token it is refused, naming
    // the file where the daemon wrote one (readable by its user only).
    let rpc = c.rpc[1].to_string();
    let refused = cli(&["leave", "--rpc", &rpc]);
    let token_file = c.dir.path().join("rc2.rpc-token");
    assert!(!refused.status.success(), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("401") && said.contains(&*token_file.to_string_lossy()),
        "{said}"
    );
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(c.daemon(1).running(), "a refused leave changes nothing");
    // With the token: the daemon exits 0, the others withdraw it.
    let out = cli(&[
        "leave",
        "--rpc",
        &rpc,
        "--token-file",
        &token_file.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "RC2 is leaving the network"
    );
    let status = c.daemon(1).wait(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    c.daemons[1] = None;
    c.converge(&[true, false, true], CONVERGE).unwrap();
}

#[test]
fn a_node_with_the_wrong_cluster_key_is_never_admitted() {
    let mut c = Cluster::new(topology::generated(2), "@every 500ms", &key(1));
    for i in 0..2 {
        c.files[i].rpc_token = Some("s3cret-token".into());
        c.write(i);
    }
    c.start_all();
    let token = ["--token", "s3cret-token"];

    // An intruder with another key, bootstrapping from both (key from --cluster-key-file).
    let intruder_rpc = free_addr().to_string();
    let mut intruder = FileConfig::new(RcEntry {
        id: 9,
        autonomous_system_number: 900,
        ip: free_addr().to_string(),
    });
    intruder.cron = "@every 500ms".into();
    intruder.rpc_addr = Some(intruder_rpc.clone());
    intruder.connected_route_controllers = c.files.iter().map(|f| f.me.clone()).collect();
    let config = c.dir.path().join("intruder.json");
    std::fs::write(&config, intruder.to_json()).unwrap();
    let key_file = c.dir.path().join("wrong.key");
    std::fs::write(&key_file, format!("{}\n", key(2))).unwrap();
    let log = c.dir.path().join("intruder.log");
    let mut bad = Daemon::start(
        &config,
        &log,
        &["--cluster-key-file", key_file.to_str().unwrap()],
        &[],
    );

    // The control API wants the token.
    let unauthorized = wait_for(CONVERGE, || {
        let out = cli(&["routes", "--rpc", &c.rpc[0].to_string()]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        (!out.status.success() && err.contains("answered 401")).then_some(())
    });
    assert!(
        unauthorized.is_some(),
        "the API must refuse a missing token"
    );
    let authorized = |i: usize| {
        let out = cli(&[
            &["status", "--rpc", &c.rpc[i].to_string(), "--json"][..],
            &token,
        ]
        .concat());
        serde_json::from_slice::<Value>(&out.stdout).ok()
    };
    let linked = wait_for(CONVERGE, || {
        (0..2)
            .all(|i| authorized(i).is_some_and(|s| s["members"] == 2 && s["peers"] == 1))
            .then_some(())
    });
    assert!(linked.is_some(), "{:?} {:?}", authorized(0), authorized(1));

    // The intruder has tried (and been refused) for a while, and is known to nobody.
    let good_logs = || {
        (0..2)
            .map(|i| {
                c.daemons[i]
                    .as_ref()
                    .map(Daemon::log_text)
                    .unwrap_or_default()
            })
            .collect::<String>()
    };
    let refused = wait_for(CONVERGE, || {
        (good_logs().contains("different cluster keys")
            && bad.log_text().contains("handshake refused by the peer"))
        .then_some(())
    });
    assert!(refused.is_some(), "{}\n{}", good_logs(), bad.log_text());
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..2 {
        let s = authorized(i).unwrap();
        assert_eq!(
            (s["members"].clone(), s["peers"].clone()),
            (json!(2), json!(1))
        );
    }
    let out = cli(&["status", "--rpc", &intruder_rpc, "--json"]);
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (s["members"].clone(), s["peers"].clone()),
        (json!(1), json!(0))
    );
    bad.signal("TERM");
    assert!(
        bad.wait(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

#[test]
fn seed_configs_convert_to_the_seed_json_and_fail_only_where_really_wrong() {
    for rc in ["rc1", "rc2", "rc3"] {
        let out = cli(&["parse-config", &format!("{SEED}/{rc}.conf")]);
        assert!(out.status.success(), "{out:?}");
        let json = std::fs::read_to_string(format!("{SEED}/{rc}.json")).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), json, "{rc}");
        assert!(
            cli(&["parse-config", "--check", &format!("{SEED}/{rc}.json")])
                .status
                .success()
        );
    }
    // Together they claim one identity three times.
    let out = cli(&[
        "parse-config",
        "--check",
        &format!("{SEED}/rc1.conf"),
        &format!("{SEED}/rc2.conf"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("rc2.conf:1: self.id: duplicate identity: RC1 is also claimed by"),
        "{err}"
    );

    // Started as they are (copied, so the key is created in a temporary folder).
    let dir = tempfile::tempdir().unwrap();
    let copy = |rc: &str| {
        let path = dir.path().join(format!("{rc}.json"));
        std::fs::copy(format!("{SEED}/{rc}.json"), &path).unwrap();
        path
    };
    let rc1 = copy("rc1");
    let run = |config: &Path, extra: &[&str], env: &[(&str, &str)]| {
        let log = dir.path().join("start.log");
        let _ = std::fs::remove_file(&log);
        let mut d = Daemon::start(config, &log, extra, env);
        let status = d.wait(Duration::from_secs(20));
        (status, d.log_text())
    };
    // No cluster key and no development_mode: refused, naming the file and the field.
    let (status, log) = run(&rc1, &[], &[]);
    assert!(status.is_some_and(|s| !s.success()), "{log}");
    assert!(
        log.contains("rc1.json: cluster_keys: no cluster key"),
        "{log}"
    );
    assert_eq!(log.lines().count(), 1, "{log}");
    // With a key: 10.2.2.1 is not an address of this host.
    let env = [("OVERLAY_CLUSTER_KEY", key(5))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, log) = run(&rc1, &[], &env);
    assert!(status.is_some_and(|s| !s.success()), "{log}");
    assert!(
        log.contains("rc1.json:1: self.ip: cannot listen on 10.2.2.1:1450"),
        "{log}"
    );
    assert!(
        std::fs::metadata(dir.path().join("rc1.pem")).is_ok(),
        "key created on first start"
    );

    // On a loopback address each file alone is fine; rc1 and rc2 together are one
    // identity twice: rc2 dials rc1 (its first peer, rewritten to rc1's port) and is refused.
    let listen1 = free_addr().to_string();
    let rc2 = dir.path().join("rc2.json");
    let text = std::fs::read_to_string(format!("{SEED}/rc2.json")).unwrap();
    std::fs::write(&rc2, text.replace("127.0.0.1:8080", &listen1)).unwrap();
    let rpc1 = free_addr().to_string();
    let mut first = Daemon::start(
        &rc1,
        &dir.path().join("rc1.log"),
        &["--listen", &listen1, "--rpc", &rpc1],
        &env,
    );
    let rpc2 = free_addr().to_string();
    let mut second = Daemon::start(
        &rc2,
        &dir.path().join("rc2.log"),
        &["--listen", &free_addr().to_string(), "--rpc", &rpc2],
        &env,
    );
    let conflict = wait_for(CONVERGE, || {
        (first.log_text() + &second.log_text())
            .contains("duplicate identity")
            .then_some(())
    });
    assert!(
        conflict.is_some(),
        "{}\n{}",
        first.log_text(),
        second.log_text()
    );
    for rpc in [&rpc1, &rpc2] {
        let out = cli(&["status", "--rpc", rpc, "--json"]);
        let s: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(s["peers"], 0, "never linked: {s}");
    }
    first.signal("INT");
    second.signal("TERM");
    assert!(
        first
            .wait(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    assert!(
        second
            .wait(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
}

#[test]
fn cli_errors_are_one_clear_line() {
    let unused = free_addr().to_string();
    let out = cli(&["routes", "--rpc", &unused]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!(
            "overlay-network: error: cannot reach the control API at {unused}"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1);

    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("node.pem");
    let out = cli(&["keygen", "--out", pem.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim().len(),
        64,
        "hex fingerprint"
    );
    let before = std::fs::read(&pem).unwrap();
    let out = cli(&["keygen", "--out", pem.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(
        std::fs::read(&pem).unwrap(),
        before,
        "never lose a user's file"
    );

    let out = cli(&["keygen", "--cluster-key"]);
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(overlay_core::ClusterKey::from_base64(&key).is_ok(), "{key}");

    let bad = dir.path().join("bad.conf");
    std::fs::write(&bad, "1 100 127.0.0.1:1\n1\n2 200\n").unwrap();
    let out = cli(&["parse-config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.conf:3: connected_route_controllers[0]: expected ID ASN IP"),
        "{err}"
    );

    let out = cli(&["version"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("overlay-network "));
}

#[test]
fn the_demo_runs_and_checks_the_fixture_table() {
    let cwd = tempfile::tempdir().unwrap();
    let mut child = common::command()
        .arg("demo")
        .current_dir(cwd.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(60), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(status.is_some_and(|s| s.success()), "{stdout}");
    assert!(
        stdout.contains("OK: all 9 rows of the expected table"),
        "{stdout}"
    );
    assert!(
        stdout.contains("RC1: AS200: 100 200 (cost 5) -> 100 300 200 (cost 6)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("RC2: AS40: 200 300 40 (cost 4) -> unreachable"),
        "{stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(cwd.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left files behind: {left:?}");
}

#[test]
fn one_client_cannot_hold_every_control_api_connection() {
    use std::io::Read;
    use std::net::TcpStream;
    let mut c = Cluster::new(topology::generated(1), "@every 500ms", &key(41));
    c.start(0);
    assert!(wait_for(CONVERGE, || c.status(0)).is_some());
    let max = overlay_transport_tcp::testing::MAX_PER_CLIENT;
    let idle: Vec<TcpStream> = (0..max)
        .map(|_| TcpStream::connect(c.rpc[0]).unwrap())
        .collect();
    // One more from the same address is closed at once, without an answer.
    let mut extra = TcpStream::connect(c.rpc[0]).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut byte = [0u8; 1];
    let closed = match extra.read(&mut byte) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the extra connection was kept open");
    drop(idle);
    assert!(
        wait_for(CONVERGE, || c.status(0)).is_some(),
        "the API answers again once the idle connections are gone"
    );
}

#[test]
fn the_daemon_raises_its_open_file_limit_to_the_hard_limit() {
    // Started with a soft limit of 256 (a shell lowers it, then becomes the daemon).
    let mut c = Cluster::new(topology::generated(1), "@every 500ms", &key(42));
    c.wrappers[0] = ["sh", "-c", "ulimit -Sn 256 && exec \"$0\" \"$@\""]
        .map(String::from)
        .to_vec();
    c.start(0);
    assert!(wait_for(CONVERGE, || c.status(0)).is_some());
    let pid = c.daemon(0).pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers.len(), 2, "{line}");
    assert_eq!(
        numbers[0], numbers[1],
        "soft limit raised to the hard one: {line}"
    );
    assert_ne!(numbers[0], "256", "{line}");
}
