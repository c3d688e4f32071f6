//! Shared by the end-to-end tests and the benchmark: real `overlay-network` processes on
//! 127.0.0.1 (or inside network namespaces a test created) with generated configs in a
//! temporary folder, each killed when its guard is dropped (also when a test fails), CLI
//! calls, and bounded waits; [`proxy`] is a man-in-the-middle for the adversarial tests.

#![allow(dead_code)]

pub mod proxy;

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use overlay_transport_tcp::client::Client;
use overlay_transport_tcp::config::FileConfig;
use overlay_transport_tcp::testing::topology;
use serde_json::Value;

/// The binary under test: `OVERLAY_NETWORK_BIN` if set, else cargo's for tests, else the
/// one built beside the running example (`target/<profile>/examples/..`).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OVERLAY_NETWORK_BIN") {
        return PathBuf::from(path);
    }
    if let Some(path) = option_env!("CARGO_BIN_EXE_overlay-network") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("own path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    profile.join("overlay-network")
}

/// A command for the binary with a clean environment for what it reads.
pub fn command() -> Command {
    command_via(&[])
}

/// Like [`command`], run through `wrapper` (e.g. `["ip", "netns", "exec", "ns1"]`) when
/// it is not empty.
pub fn command_via(wrapper: &[String]) -> Command {
    let mut c = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(binary());
            c
        }
        None => Command::new(binary()),
    };
    c.env_remove("OVERLAY_CLUSTER_KEY")
        .env_remove("OVERLAY_RPC_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    c
}

/// Runs the CLI to completion (every subcommand bounds its own time).
pub fn cli(args: &[&str]) -> Output {
    command().args(args).output().expect("run overlay-network")
}

/// A free loopback address (the port is released for the daemon to take). Ports are handed
/// out upwards from a random start per test process, below Linux's ephemeral range
/// (32768-60999), where the kernel picks the ports of `bind(:0)` and the source ports of
/// outgoing connections: neither another test of this process (tests run in parallel) nor
/// a connection of a running daemon can take the port before the daemon binds it, which can
/// be seconds later (it makes its RSA key first).
pub fn free_addr() -> SocketAddr {
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_768;
    static START: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = *START.get_or_init(|| {
        let draw = RandomState::new().hash_one((std::process::id(), Instant::now()));
        u32::try_from(draw % u64::from(SPAN)).expect("below SPAN")
    });
    for _ in 0..1000 {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = u16::try_from(LOW + (start + n) % SPAN).expect("below 32768");
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("a bound address");
        }
    }
    panic!("no free loopback port below 32768 in 1000 tries")
}

/// Polls `check` every 100 ms until it returns `Some`, or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running daemon; killed (SIGKILL) and reaped when dropped.
pub struct Daemon {
    child: Option<Child>,
    /// Its log (stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `overlay-network daemon --config <config> <extra...>`, logging to `log`.
    pub fn start(config: &Path, log: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_via(&[], config, log, extra, env)
    }

    /// Like [`Daemon::start`], through `wrapper` (see [`command_via`]).
    pub fn start_via(
        wrapper: &[String],
        config: &Path,
        log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut c = command_via(wrapper);
        c.arg("daemon").arg("--config").arg(config).args(extra);
        for (k, v) in env {
            c.env(k, v);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn the daemon");
        Daemon {
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process is still running (not exited, e.g. crashed).
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Sends a signal (`"TERM"`, `"KILL"`, `"INT"`) with kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let ok = Command::new("kill")
            .args(["-s", name, &pid])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -s {name} {pid}");
    }

    /// Waits (bounded) for the process to exit; `None` if it is still running.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_for(limit, || child.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A cluster of daemons with generated configs in a temporary folder.
pub struct Cluster {
    /// The folder (configs, keys, logs).
    pub dir: tempfile::TempDir,
    /// The configs as written.
    pub files: Vec<FileConfig>,
    /// Control API addresses.
    pub rpc: Vec<SocketAddr>,
    /// Running daemons (`None`: stopped).
    pub daemons: Vec<Option<Daemon>>,
    /// Per controller, what its daemon and CLI calls run through (see [`command_via`];
    /// empty: directly, the control API reached over loopback).
    pub wrappers: Vec<Vec<String>>,
    /// Environment variables of every daemon started from now on (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl Cluster {
    /// Moves `files` onto free loopback ports, sets the gossip period and `cluster_key`,
    /// and writes `rc<id>.json` for each. Nothing is started.
    pub fn new(mut files: Vec<FileConfig>, cron: &str, cluster_key: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("temporary folder");
        let addrs: Vec<SocketAddr> = files.iter().map(|_| free_addr()).collect();
        topology::relocate(&mut files, &addrs);
        let rpc: Vec<SocketAddr> = files.iter().map(|_| free_addr()).collect();
        for (file, rpc) in files.iter_mut().zip(&rpc) {
            file.cron = cron.into();
            file.cluster_keys = vec![cluster_key.into()];
            file.rpc_addr = Some(rpc.to_string());
        }
        let cluster = Cluster {
            dir,
            daemons: files.iter().map(|_| None).collect(),
            wrappers: files.iter().map(|_| Vec::new()).collect(),
            env: Vec::new(),
            files,
            rpc,
        };
        for i in 0..cluster.files.len() {
            cluster.write(i);
        }
        cluster
    }

    /// A generated layout of `n` controllers gossiping on `cron`, with a fresh cluster key,
    /// a node key made beforehand for each and logs at WARN; nothing is started (the
    /// benchmarks' cluster).
    pub fn generated_with_keys(n: usize, cron: &str) -> Cluster {
        let key = overlay_transport_tcp::keys::new_cluster_key()
            .expect("OS randomness")
            .to_base64();
        let mut cluster = Cluster::new(topology::generated(n), cron, &key);
        for (i, file) in cluster.files.iter_mut().enumerate() {
            file.log_level = "WARN".into();
            let pem = cluster.dir.path().join(format!("rc{}.pem", i + 1));
            let out = cli(&["keygen", "--out", pem.to_str().expect("utf-8 path")]);
            assert!(out.status.success(), "keygen: {out:?}");
        }
        for i in 0..n {
            cluster.write(i);
        }
        cluster
    }

    /// Rewrites controller `i`'s config.
    pub fn write(&self, i: usize) {
        std::fs::write(self.config(i), self.files[i].to_json()).expect("write config");
    }

    /// Controller `i`'s config path.
    pub fn config(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("rc{}.json", self.files[i].me.id))
    }

    /// Starts controller `i`.
    pub fn start(&mut self, i: usize) {
        self.start_with(i, &[]);
    }

    /// Starts controller `i` with extra daemon arguments.
    pub fn start_with(&mut self, i: usize, extra: &[&str]) {
        let log = self.log(i);
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let daemon = Daemon::start_via(&self.wrappers[i], &self.config(i), &log, extra, &env);
        self.daemons[i] = Some(daemon);
    }

    /// Controller `i`'s log file.
    pub fn log(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("rc{}.log", self.files[i].me.id))
    }

    /// Starts every controller.
    pub fn start_all(&mut self) {
        for i in 0..self.files.len() {
            self.start(i);
        }
    }

    /// The running daemon `i`.
    pub fn daemon(&mut self, i: usize) -> &mut Daemon {
        self.daemons[i].as_mut().expect("daemon running")
    }

    /// The `/v1/routes` answer of controller `i` (`None` if it does not answer), through
    /// `routes --json` when it runs behind a wrapper.
    pub fn routes(&self, i: usize) -> Option<Value> {
        if self.wrappers[i].is_empty() {
            return self.api(i, "/v1/routes");
        }
        let rpc = self.rpc[i].to_string();
        let out = command_via(&self.wrappers[i])
            .args(["routes", "--rpc", &rpc, "--json"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The `/v1/status` answer of controller `i`.
    pub fn status(&self, i: usize) -> Option<Value> {
        self.api(i, "/v1/status")
    }

    /// A control API answer of controller `i`, parsed.
    pub fn api(&self, i: usize, path: &str) -> Option<Value> {
        let body = Client::new(self.rpc[i].to_string(), None).get(path).ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// A counter from controller `i`'s `/metrics` (one scrape per call: to compare
    /// several series, scrape once and use [`metric_in`]).
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let body = Client::new(self.rpc[i].to_string(), None)
            .get("/metrics")
            .ok()?;
        metric_in(&String::from_utf8_lossy(&body), name)
    }

    /// Waits until every controller marked live answers exactly the routes the path rule
    /// gives over the live controllers' links; on time-out, says who differs.
    pub fn converge(&self, live: &[bool], limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let expected = topology::expected_routes(&self.files, live);
        let mut last = String::new();
        let done = wait_for(limit, || {
            for (i, want) in expected.iter().enumerate() {
                let Some(want) = want else { continue };
                let got = self.routes(i);
                if got.as_ref().map(|g| &g["routes"]) != Some(want) {
                    last = format!("RC{}: {got:?}", self.files[i].me.id);
                    return None;
                }
            }
            Some(())
        });
        match done {
            Some(()) => Ok(started.elapsed()),
            None => Err(format!(
                "not converged within {limit:?}; last difference {last}"
            )),
        }
    }
}

/// The value of the series `name` (with its labels) in one `/metrics` scrape.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
