//! Operating a running cluster of real `overlay-network` processes on 127.0.0.1 without
//! restarting them: reloads by SIGHUP and by `reload` (links, log level), refused reloads
//! (an invalid file, a field fixed while running) that change nothing, the cost estimator
//! driving link costs and its failures keeping them, event handlers and `watch` seeing a
//! member leave and routes change, `members --json`, and a cluster key rotated across three
//! controllers. Every wait is bounded and every daemon is killed when its guard drops.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{Cluster, cli, command, wait_for};
use overlay_transport_tcp::config::{AsEntry, HandlerEntry};
use overlay_transport_tcp::testing::topology;
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(30);
const CRON: &str = "@every 500ms";

fn key(byte: u8) -> String {
    overlay_core::ClusterKey::from_bytes([byte; 32]).to_base64()
}

fn example() -> Cluster {
    Cluster::new(topology::example().expect("example"), CRON, &key(3))
}

fn rpc(c: &Cluster, i: usize) -> String {
    c.rpc[i].to_string()
}

fn token_file(c: &Cluster, i: usize) -> String {
    c.dir
        .path()
        .join(format!("rc{}.rpc-token", c.files[i].me.id))
        .display()
        .to_string()
}

/// Runs the CLI against controller `i` with its state-changing token.
fn operate(c: &Cluster, i: usize, args: &[&str]) -> std::process::Output {
    let (rpc, token) = (rpc(c, i), token_file(c, i));
    let mut all = args.to_vec();
    all.extend(["--rpc", &rpc, "--token-file", &token]);
    cli(&all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

fn uptime(c: &Cluster, i: usize) -> u64 {
    c.status(i).expect("status")["uptime_ms"]
        .as_u64()
        .expect("uptime")
}

fn cost(c: &Cluster, i: usize, destination: u32) -> Option<u64> {
    c.routes(i)?["routes"]
        .as_array()?
        .iter()
        .find(|r| r["destination"] == destination)?["cost"]
        .as_u64()
}

fn set_cost(c: &mut Cluster, i: usize, to: u32, cost: u64) {
    let link = c.files[i]
        .connected_autonomous_systems
        .iter_mut()
        .find(|l| l.number == to)
        .expect("link");
    link.cost = cost;
    c.write(i);
}

#[test]
fn reloads_by_sighup_and_by_the_cli_apply_changes_without_a_restart() {
    let mut c = example();
    c.start_all();
    c.converge(&[true; 3], CONVERGE).expect("converged");
    let pids: Vec<u32> = (0..3).map(|i| c.daemon(i).pid()).collect();
    let before = uptime(&c, 1);

    // RC2's link to AS30 gets dearer: SIGHUP.
    set_cost(&mut c, 1, 30, 9);
    c.daemon(1).signal("HUP");
    c.converge(&[true; 3], CONVERGE)
        .expect("converged after SIGHUP");
    assert_eq!(cost(&c, 0, 30), Some(14));

    // Again, through the control API, with the log level raised to DEBUG.
    set_cost(&mut c, 1, 30, 3);
    c.files[1].log_level = "DEBUG".into();
    c.write(1);
    let out = operate(&c, 1, &["reload"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        text(&out.stdout),
        "reloaded: connected_autonomous_systems, log_level"
    );
    c.converge(&[true; 3], CONVERGE)
        .expect("converged after reload");
    assert_eq!(cost(&c, 0, 30), Some(8));
    let logged = wait_for(Duration::from_secs(10), || {
        c.daemons[1]
            .as_ref()?
            .log_text()
            .contains(" DEBUG ")
            .then_some(())
    });
    assert!(logged.is_some(), "the new log level took effect");

    // The same processes all along.
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(c.daemon(i).pid(), *pid);
        assert!(c.daemon(i).running());
    }
    assert!(uptime(&c, 1) > before, "not restarted");
    let nothing = operate(&c, 1, &["reload"]);
    assert_eq!(text(&nothing.stdout), "reloaded: nothing changed");
}

#[test]
fn a_refused_reload_changes_nothing_and_says_why_in_one_line() {
    let mut c = example();
    c.start_all();
    c.converge(&[true; 3], CONVERGE).expect("converged");
    let tables: Vec<Value> = (0..3).map(|i| c.routes(i).expect("routes")).collect();
    let good = c.files[0].clone();

    // An invalid value, and a change of a field that is fixed while running.
    c.files[0].max_peers = 0;
    set_cost(&mut c, 0, 200, 1);
    let invalid = operate(&c, 0, &["reload"]);
    let mut moved = good.clone();
    moved.me.id = 42;
    std::fs::write(c.config(0), moved.to_json()).unwrap();
    let fixed = operate(&c, 0, &["reload"]);
    c.daemon(0).signal("HUP");

    let config = c.config(0).display().to_string();
    for (out, field) in [(&invalid, "max_peers"), (&fixed, "self.id")] {
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&config) && stderr.contains(&format!(": {field}: ")),
            "{stderr}"
        );
    }
    assert!(text(&fixed.stderr).contains("cannot change while the daemon runs"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        c.daemon(0).running(),
        "SIGHUP with a bad file does not stop it"
    );
    for (i, table) in tables.iter().enumerate() {
        assert_eq!(c.routes(i).as_ref(), Some(table), "RC{} changed", i + 1);
    }
    let log = c.daemons[0].as_ref().expect("daemon").log_text();
    assert!(log.contains("reload refused"), "{log}");
    // The fixed file is taken again.
    c.files[0] = good;
    c.write(0);
    assert!(operate(&c, 0, &["reload"]).status.success());
}

/// The links member `node` advertises, as controller `i` knows them.
fn advertised_links(c: &Cluster, i: usize, node: u32) -> Option<Vec<Value>> {
    let members = c.api(i, "/v1/members")?;
    let member = members["members"]
        .as_array()?
        .iter()
        .find(|m| m["node"] == node)?;
    member["links"].as_array().cloned()
}

/// An estimator script in `dir` that prints `dir/costs`, or fails as `dir/mode` says.
fn estimator(dir: &Path) -> PathBuf {
    let path = dir.join("estimate.sh");
    let script = format!(
        "#!/bin/sh\nd={}\ncat > \"$d/input.json\"\ncase \"$(cat \"$d/mode\" 2>/dev/null)\" in\n\
         fail) echo 'no probe' >&2; exit 3;;\nslow) sleep 5;;\njunk) echo 'not links';;\n\
         *) cat \"$d/costs\";;\nesac\n",
        dir.display()
    );
    std::fs::write(&path, script).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn the_cost_estimator_drives_link_costs_and_its_failures_keep_them() {
    let mut c = example();
    let dir = c.dir.path().to_path_buf();
    let script = estimator(&dir);
    // RC1's estimator makes its link to AS200 dear (raw format).
    std::fs::write(dir.join("costs"), "10 2 5\n20 5 5\n200 10 50\n300 10 5\n").unwrap();
    c.files[0].cost_estimator_path = format!("{} --probe tcp", script.display());
    c.write(0);
    c.start_all();
    let driven = wait_for(CONVERGE, || (cost(&c, 0, 200)? == 6).then_some(()));
    assert!(
        driven.is_some(),
        "RC1 goes round through AS300 once its link is dear"
    );
    let seen = wait_for(CONVERGE, || {
        let links = advertised_links(&c, 1, 1)?;
        links
            .iter()
            .any(|l| l["asn"] == 200 && l["cost"] == 50)
            .then_some(())
    });
    assert!(seen.is_some(), "RC2 sees the estimated cost");
    let input: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("input.json")).unwrap()).unwrap();
    assert_eq!(input["node"], 1);
    assert_eq!(input["links"][2]["number"], 200);
    assert_eq!(input["links"][2]["cost"], 5, "the configured links");

    // JSON output works too.
    let json: Vec<AsEntry> = c.files[0].connected_autonomous_systems.clone();
    std::fs::write(dir.join("costs"), serde_json::to_string(&json).unwrap()).unwrap();
    let back = wait_for(CONVERGE, || (cost(&c, 0, 200)? == 5).then_some(()));
    assert!(back.is_some(), "the configured costs again");

    // Each kind of failure keeps the links, and is counted.
    for (mode, reason) in [("fail", "exit"), ("slow", "timeout"), ("junk", "invalid")] {
        std::fs::write(dir.join("mode"), mode).unwrap();
        let name = format!("overlay_cost_estimator_failures_total{{reason=\"{reason}\"}}");
        let counted = wait_for(CONVERGE, || (c.metric(0, &name)? >= 2.0).then_some(()));
        assert!(counted.is_some(), "{name}");
        assert_eq!(cost(&c, 0, 200), Some(5), "{mode}: the links are kept");
    }
    assert!(
        c.daemons[0]
            .as_ref()
            .unwrap()
            .log_text()
            .contains("no probe")
    );

    // The shipped example, put in place by a reload: loopback connect times, in units of
    // a microsecond, become the costs of the links to ASes with a controller.
    let example = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/estimators/connect-time.py")
        .canonicalize()
        .expect("the example estimator");
    c.files[0].cost_estimator_path = format!(
        "{} --rpc {} --ms-per-cost 0.001",
        example.display(),
        rpc(&c, 0)
    );
    c.write(0);
    let out = operate(&c, 0, &["reload"]);
    assert_eq!(
        text(&out.stdout),
        "reloaded: cost_estimator_path",
        "{out:?}"
    );
    let measured = wait_for(CONVERGE, || {
        let links = advertised_links(&c, 1, 1)?;
        let cost = |asn: u32| links.iter().find(|l| l["asn"] == asn)?["cost"].as_u64();
        // AS200 and AS300 have controllers (costs measured); AS10 is a stub (kept).
        let (to200, to300, to10) = (cost(200)?, cost(300)?, cost(10)?);
        (to200 > 5 && to200 != 50 && to300 > 5 && to10 == 5).then_some(())
    });
    assert!(
        measured.is_some(),
        "advertised: {:?}",
        advertised_links(&c, 1, 1)
    );
}

#[test]
fn handlers_and_watch_see_a_member_leave_and_routes_change() {
    let mut c = example();
    let dir = c.dir.path().to_path_buf();
    let record = dir.join("events.ndjson");
    let env = dir.join("env.txt");
    c.files[0].event_handlers = vec![
        HandlerEntry {
            events: vec!["member-leave".into(), "route-change".into()],
            command: format!(
                "cat >> {r}; echo >> {r}; echo \"$OVERLAY_EVENT $OVERLAY_NODE\" >> {e}",
                r = record.display(),
                e = env.display()
            ),
            timeout: Some("5s".into()),
        },
        HandlerEntry {
            events: vec!["*".into()],
            command: "exit 1".into(),
            timeout: None,
        },
    ];
    c.write(0);
    c.start_all();
    c.converge(&[true; 3], CONVERGE).expect("converged");

    let mut watch = command()
        .args(["watch", "--json", "--rpc", &rpc(&c, 0)])
        .stdout(Stdio::piped())
        .spawn()
        .expect("watch");
    let (tx, lines) = mpsc::channel();
    let stdout = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The same stream as server-sent events, read raw.
    let mut sse = std::net::TcpStream::connect(c.rpc[0]).expect("connect");
    let request = "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
    std::io::Write::write_all(&mut sse, request.as_bytes()).unwrap();
    sse.set_read_timeout(Some(CONVERGE)).unwrap();
    let (sse_tx, sse_lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(sse).lines().map_while(Result::ok) {
            let _ = sse_tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));

    let out = operate(&c, 2, &["leave"]);
    assert!(out.status.success(), "{out:?}");
    c.converge(&[true, true, false], CONVERGE)
        .expect("converged without RC3");

    let mut seen = Vec::new();
    let watched = wait_for(CONVERGE, || {
        seen.extend(
            lines
                .try_iter()
                .map(|l| serde_json::from_str::<Value>(&l).unwrap()),
        );
        let left = seen
            .iter()
            .any(|e| e["event"] == "member-leave" && e["node"] == 3);
        let routes = seen.iter().any(|e| e["event"] == "route-change");
        (left && routes).then_some(())
    });
    assert!(watched.is_some(), "watch saw {seen:?}");
    let mut raw = Vec::new();
    let streamed = wait_for(CONVERGE, || {
        raw.extend(sse_lines.try_iter());
        let event = raw.iter().position(|l| l == "event: member-leave")?;
        let data = raw.get(event + 1)?.strip_prefix("data: ")?;
        let data: Value = serde_json::from_str(data).ok()?;
        (data["node"] == 3).then_some(())
    });
    assert!(streamed.is_some(), "server-sent events: {raw:?}");
    // A crash is reported within seconds, long before RC2's advertisement would expire.
    c.daemon(1).signal("KILL");
    let failed = wait_for(CONVERGE, || {
        seen.extend(
            lines
                .try_iter()
                .map(|l| serde_json::from_str::<Value>(&l).unwrap()),
        );
        seen.iter()
            .any(|e| {
                e["event"] == "member-failed" && e["node"] == 2 && e["reason"] == "unreachable"
            })
            .then_some(())
    });
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(failed.is_some(), "watch saw {seen:?}");

    let recorded = wait_for(CONVERGE, || {
        let env = std::fs::read_to_string(&env).ok()?;
        env.lines().any(|l| l == "member-leave 3").then_some(())
    });
    assert!(
        recorded.is_some(),
        "the handler ran with OVERLAY_EVENT/OVERLAY_NODE"
    );
    let events: Vec<Value> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "member-leave" && e["node"] == 3)
    );
    let withdrawn = events.iter().any(|e| {
        e["event"] == "route-change"
            && e["changes"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["destination"] == 40))
    });
    assert!(withdrawn, "AS40 went with RC3: {events:?}");
    let failures = "overlay_event_handler_failures_total{handler=\"1\",reason=\"exit\"}";
    assert!(
        c.metric(0, failures).is_some_and(|n| n >= 2.0),
        "{failures}"
    );

    let members = cli(&["members", "--json", "--rpc", &rpc(&c, 0)]);
    let members: Value = serde_json::from_slice(&members.stdout).expect("members --json");
    let rc3 = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["node"] == 3)
        .expect("RC3 is remembered");
    assert_eq!(
        (rc3["asn"].as_u64(), rc3["state"].as_str()),
        (Some(300), Some("left"))
    );
    assert!(rc3["addr"].is_string());
    let table = text(&cli(&["members", "--rpc", &rpc(&c, 0)]).stdout);
    assert!(
        table
            .lines()
            .any(|l| l.contains("RC3") && l.contains("left")),
        "{table}"
    );
}

#[test]
fn a_cluster_key_rotates_across_three_controllers_without_a_restart() {
    let mut c = example();
    let old = key(3);
    let new = key(4);
    let dir = c.dir.path().to_path_buf();
    let key_file = |i: usize| dir.join(format!("rc{}.keys", i + 1));
    for i in 0..3 {
        std::fs::write(key_file(i), format!("{old}\n")).unwrap();
    }
    for i in 0..3 {
        let file = key_file(i).display().to_string();
        c.start_with(i, &["--cluster-key-file", &file]);
    }
    c.converge(&[true; 3], CONVERGE).expect("converged");
    let pids: Vec<u32> = (0..3).map(|i| c.daemon(i).pid()).collect();
    let new_id = overlay_core::ClusterKey::from_base64(&new).unwrap().id();
    let old_id = overlay_core::ClusterKey::from_base64(&old).unwrap().id();

    for (step, key) in [("install", &new), ("use", &new_id), ("remove", &old_id)] {
        for i in 0..3 {
            let out = operate(&c, i, &["keyring", step, key]);
            assert!(out.status.success(), "{step} on RC{}: {out:?}", i + 1);
        }
    }
    for i in 0..3 {
        let list = operate(&c, i, &["keyring", "list", "--json"]);
        let list: Value = serde_json::from_slice(&list.stdout).unwrap();
        assert_eq!(list["keys"].as_array().unwrap().len(), 1);
        assert_eq!(list["keys"][0]["id"], new_id.as_str());
        assert_eq!(
            std::fs::read_to_string(key_file(i)).unwrap(),
            format!("{new}\n")
        );
    }
    let refused = operate(&c, 0, &["keyring", "remove", &new]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("key in use"), "{refused:?}");

    // A controller with only the new key joins; the three never restarted.
    let joiner = topology::generated(4).remove(3);
    let mut late = Cluster::new(vec![joiner], CRON, &new);
    late.files[0].connected_route_controllers = vec![c.files[0].me.clone()];
    late.write(0);
    late.start(0);
    let joined = wait_for(CONVERGE, || {
        let members = c.api(0, "/v1/members")?;
        let n = members["members"].as_array()?.len();
        (n == 4).then_some(())
    });
    assert!(
        joined.is_some(),
        "the controller with the new key was admitted"
    );
    for (i, pid) in pids.iter().enumerate() {
        assert_eq!(c.daemon(i).pid(), *pid);
    }
}

#[test]
fn completions_and_the_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = cli(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            script.contains("keyring") && script.contains("reload"),
            "{shell}"
        );
    }
    let page = cli(&["man"]);
    assert!(page.status.success());
    let page = String::from_utf8_lossy(&page.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH overlay-network"),
        "{page}"
    );
    assert!(page.contains("watch"), "the subcommands are listed");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("overlay-network.1");
    let out = cli(&["man", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), page);
    assert_eq!(cli(&["completions", "tcsh"]).status.code(), Some(2));
}
