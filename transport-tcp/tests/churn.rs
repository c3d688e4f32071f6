//! Failures of the world on real processes: a random controller killed with SIGKILL and
//! restarted on the same key and port, and a cluster cut in two halves by a network
//! partition and healed. The partition uses two network namespaces joined by a veth pair
//! and an nftables rule that drops everything on it: silent loss, like a cut cable or a
//! firewall, not a refused connection. It needs root, `ip` (iproute2) and `nft`
//! (nftables); without them the test says so and skips, unless `OVERLAY_REQUIRE_NETNS` is
//! set (CI), where it fails.

mod common;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Cluster;
use overlay_transport_tcp::testing::topology;

const CONVERGE: Duration = Duration::from_secs(30);

fn key(byte: u8) -> String {
    overlay_core::ClusterKey::from_bytes([byte; 32]).to_base64()
}

#[test]
fn a_random_controller_killed_with_sigkill_rejoins_with_the_same_key() {
    let n = 5;
    let mut c = Cluster::new(topology::generated(n), "@every 500ms", &key(41));
    c.start_all();
    c.converge(&[true; 5], CONVERGE).unwrap();
    for round in 0..2 {
        let victim = (RandomState::new().hash_one(round) % n as u64) as usize;
        eprintln!("round {round}: kill -9 RC{}", victim + 1);
        let before = c.status(victim).unwrap();
        c.daemon(victim).signal("KILL");
        assert!(c.daemon(victim).wait(Duration::from_secs(5)).is_some());
        let mut live = [true; 5];
        live[victim] = false;
        c.converge(&live, CONVERGE).unwrap();
        c.start(victim);
        c.converge(&[true; 5], CONVERGE).unwrap();
        let after = c.status(victim).unwrap();
        assert_eq!(after["fingerprint"], before["fingerprint"], "same key");
        // Everyone knows the new incarnation under the same key.
        for i in (0..n).filter(|&i| i != victim) {
            let members = c.api(i, "/v1/members").unwrap();
            let record = members["members"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["node"] == victim + 1)
                .cloned()
                .unwrap();
            assert_eq!(record["state"], "alive");
            assert_eq!(record["fingerprint"], after["fingerprint"]);
        }
    }
}

/// Two network namespaces joined by a veth pair, deleted when dropped (the daemons in
/// them must be killed first: declare this guard before the cluster).
struct Netns {
    names: [String; 2],
    veth: [String; 2],
}

/// The halves' addresses on the veth pair.
const SUBNET: [&str; 2] = ["10.77.0.1", "10.77.0.2"];

fn run(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// Creates the namespaces (named after this process), or says why it cannot.
    fn create() -> Result<Netns, String> {
        let id = std::process::id();
        let netns = Netns {
            names: [format!("ovl{id}a"), format!("ovl{id}b")],
            veth: [format!("ovl{id}va"), format!("ovl{id}vb")],
        };
        run(&["nft", "--version"], None)?;
        for name in &netns.names {
            run(&["ip", "netns", "add", name], None)?;
        }
        let [a, b] = &netns.names;
        let [va, vb] = &netns.veth;
        run(
            &[
                "ip", "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b,
            ],
            None,
        )?;
        for (k, (name, veth)) in netns.names.iter().zip(&netns.veth).enumerate() {
            let addr = format!("{}/24", SUBNET[k]);
            run(&["ip", "-n", name, "addr", "add", &addr, "dev", veth], None)?;
            run(&["ip", "-n", name, "link", "set", veth, "up"], None)?;
            run(&["ip", "-n", name, "link", "set", "lo", "up"], None)?;
        }
        Ok(netns)
    }

    /// The command prefix that runs a program in half `k`.
    fn wrapper(&self, k: usize) -> Vec<String> {
        ["ip", "netns", "exec", &self.names[k]]
            .map(String::from)
            .to_vec()
    }

    /// Drops everything on half A's end of the veth pair, both ways.
    fn cut(&self) {
        let veth = &self.veth[0];
        let rules = format!(
            "table inet partition {{\n\
             chain in {{ type filter hook input priority 0; policy accept; iifname \"{veth}\" drop; }}\n\
             chain out {{ type filter hook output priority 0; policy accept; oifname \"{veth}\" drop; }}\n\
             }}\n"
        );
        run(
            &["ip", "netns", "exec", &self.names[0], "nft", "-f", "-"],
            Some(&rules),
        )
        .unwrap();
    }

    fn heal(&self) {
        let delete = ["nft", "delete", "table", "inet", "partition"];
        let args = [&["ip", "netns", "exec", &self.names[0]][..], &delete].concat();
        run(&args, None).unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = run(&["ip", "netns", "del", name], None);
        }
    }
}

#[test]
fn a_partitioned_cluster_reconverges_on_both_sides_after_healing() {
    let netns = match Netns::create() {
        Ok(n) => n,
        Err(why) => {
            let message = format!("needs root, iproute2 and nftables ({why})");
            assert!(
                std::env::var_os("OVERLAY_REQUIRE_NETNS").is_none(),
                "OVERLAY_REQUIRE_NETNS is set: {message}"
            );
            eprintln!(
                "SKIPPED a_partitioned_cluster_reconverges_on_both_sides_after_healing: {message}"
            );
            return;
        }
    };
    // RC1, RC2 in half A; RC3, RC4 in half B. The ring's bootstrap entries RC2 -> RC3 and
    // RC4 -> RC1 cross the cut, so each half keeps dialing the other.
    let mut c = Cluster::new(topology::generated(4), "@every 500ms", &key(42));
    let addrs: Vec<_> = (0..4)
        .map(|i| format!("{}:{}", SUBNET[i / 2], 14501 + i).parse().unwrap())
        .collect();
    topology::relocate(&mut c.files, &addrs);
    for i in 0..4 {
        c.wrappers[i] = netns.wrapper(i / 2);
        c.write(i);
    }
    c.start_all();
    c.converge(&[true; 4], CONVERGE).unwrap();

    netns.cut();
    // Each half expires the other and routes among its own.
    c.converge(&[true, true, false, false], CONVERGE).unwrap();
    c.converge(&[false, false, true, true], CONVERGE).unwrap();

    netns.heal();
    c.converge(&[true; 4], CONVERGE).unwrap();
    for i in 0..4 {
        assert!(c.daemon(i).running(), "RC{} crashed", i + 1);
    }
}
