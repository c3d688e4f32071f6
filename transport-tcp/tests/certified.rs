//! End-to-end tests of certified clusters with real daemons on 127.0.0.1: an authority made
//! with `ca init`, certificates from `cert issue`, `trusted_cas` and `cert_file` in the
//! configs. Certified controllers converge; an uncertified one never links; a certificate
//! for another key stops the daemon with a one-line error naming `cert_file`; a renewed
//! certificate file keeps a controller in past its old certificate's end, and one that is
//! not renewed drops out. Every wait is bounded and every daemon is killed when its guard
//! drops.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Cluster, Daemon, cli, wait_for};
use overlay_transport_tcp::testing::topology;

const CONVERGE: Duration = Duration::from_secs(30);

fn key(byte: u8) -> String {
    overlay_core::ClusterKey::from_bytes([byte; 32]).to_base64()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Runs the CLI and asserts it succeeded; returns its stdout.
fn ok(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Creates the authority `ca.pem` in the cluster's folder, a key for each of the first
/// controllers, and a certificate of `days[i]` for controller `i`; points their configs at
/// them.
fn certify(c: &mut Cluster, days: &[&str]) {
    let dir = c.dir.path().to_path_buf();
    ok(&[
        "ca",
        "init",
        "--out",
        &path(&dir, "ca.pem"),
        "--bits",
        "2048",
    ]);
    for (i, days) in days.iter().enumerate() {
        let id = c.files[i].me.id;
        ok(&["keygen", "--out", &path(&dir, &format!("rc{id}.pem"))]);
        issue(c, i, days);
        c.files[i].trusted_cas = vec![PathBuf::from("ca.pub.pem")];
        c.files[i].cert_file = Some(PathBuf::from(format!("rc{id}.cert")));
        c.write(i);
    }
}

/// (Re)issues controller `i`'s certificate for `days`.
fn issue(c: &Cluster, i: usize, days: &str) {
    let dir = c.dir.path();
    let (id, asn) = (c.files[i].me.id, c.files[i].me.autonomous_system_number);
    ok(&[
        "cert",
        "issue",
        "--ca",
        &path(dir, "ca.pem"),
        "--node",
        &id.to_string(),
        "--asn",
        &asn.to_string(),
        "--key",
        &path(dir, &format!("rc{id}.pem")),
        "--days",
        days,
        "--out",
        &path(dir, &format!("rc{id}.cert")),
    ]);
}

fn members(c: &Cluster, i: usize) -> Vec<u64> {
    c.api(i, "/v1/members")
        .and_then(|m| {
            m["members"].as_array().map(|all| {
                all.iter()
                    .filter(|m| m["state"] == "alive")
                    .filter_map(|m| m["node"].as_u64())
                    .collect()
            })
        })
        .unwrap_or_default()
}

#[test]
fn certified_controllers_converge_and_an_uncertified_one_never_links() {
    let mut files = topology::generated(4);
    files[3].connected_route_controllers = files[..3].iter().map(|f| f.me.clone()).collect();
    let mut c = Cluster::new(files, "@every 500ms", &key(61));
    certify(&mut c, &["1"; 3]);
    c.start_all();
    let live = [true, true, true, false];
    c.converge(&live, CONVERGE)
        .expect("the certified three converge");
    assert!(
        !c.daemon(0).log_text().contains("membership is open"),
        "a certified controller does not warn of open membership"
    );
    let until = c.status(0).expect("status")["certified_until"].as_u64();
    assert!(until.is_some(), "the status shows the certificate's end");
    assert!(c.daemon(3).log_text().contains("membership is open"));
    // The open-mode controller holds the cluster key but no certificate: refused by all.
    std::thread::sleep(Duration::from_secs(3));
    let peers = c.status(3).expect("status")["peers"].as_u64();
    assert_eq!(peers, Some(0), "the uncertified controller has no peer");
    for i in 0..3 {
        assert!(!members(&c, i).contains(&u64::from(c.files[3].me.id)));
    }
    assert_eq!(members(&c, 0).len(), 3, "the members list is read");
    let refused = (0..3)
        .filter_map(|i| c.metric(i, "overlay_rejects_total{reason=\"uncertified\"}"))
        .sum::<f64>();
    assert!(refused >= 1.0, "refusals are counted as uncertified");
}

#[test]
fn a_certificate_for_another_key_stops_the_daemon_naming_cert_file() {
    let mut c = Cluster::new(topology::generated(2), "@every 500ms", &key(62));
    certify(&mut c, &["1"; 2]);
    // Controller 2 points at controller 1's certificate.
    c.files[1].cert_file = Some(PathBuf::from(format!("rc{}.cert", c.files[0].me.id)));
    c.write(1);
    let log = c.dir.path().join("bad.log");
    let mut daemon = Daemon::start(&c.config(1), &log, &[], &[]);
    let status = daemon
        .wait(Duration::from_secs(20))
        .expect("the daemon exits");
    assert!(!status.success());
    let text = daemon.log_text();
    let line = text
        .lines()
        .find(|l| l.contains("cert_file"))
        .unwrap_or_else(|| panic!("no line names cert_file: {text}"));
    assert!(line.contains("another key"), "{line}");
}

#[test]
fn a_renewed_certificate_keeps_a_controller_in_and_an_expired_one_drops_out() {
    let mut c = Cluster::new(topology::generated(3), "@every 500ms", &key(63));
    // Controllers 2 and 3 get certificates of about 20 s (0.00023 days).
    certify(&mut c, &["1", "0.00023", "0.00023"]);
    c.start_all();
    c.converge(&[true; 3], CONVERGE).expect("converged");
    // Controller 2 renews for a day; controller 3 does not.
    issue(&c, 1, "1");
    let (id2, id3) = (u64::from(c.files[1].me.id), u64::from(c.files[2].me.id));
    let dropped = wait_for(Duration::from_secs(40), || {
        (!members(&c, 0).contains(&id3)).then_some(())
    });
    assert!(dropped.is_some(), "the expired controller drops out");
    assert!(members(&c, 0).contains(&id2), "the renewed one stays");
    assert!(c.daemon(1).log_text().contains("certificate file changed"));
    assert!(c.daemon(2).log_text().contains("certificate has expired"));
    // And the tables follow: controller 1 and 2 route as if controller 3 were gone.
    c.converge(&[true, true, false], CONVERGE)
        .expect("routes without the expired controller");
}
