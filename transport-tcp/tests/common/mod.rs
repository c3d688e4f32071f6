//! Shared by the end-to-end tests and the benchmark: real `overlay-network` processes on
//! 127.0.0.1 with generated configs in a temporary folder, each killed when its guard is
//! dropped (also when a test fails), CLI calls, and bounded waits.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use overlay_transport_tcp::client::Client;
use overlay_transport_tcp::config::FileConfig;
use overlay_transport_tcp::topology;
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
    let mut c = Command::new(binary());
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

/// A free loopback address (the port is released for the daemon to take).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
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
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut c = command();
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

    /// Sends a signal (`"TERM"`, `"KILL"`, `"INT"`) with kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
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
            files,
            rpc,
        };
        for i in 0..cluster.files.len() {
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
        let log = self
            .dir
            .path()
            .join(format!("rc{}.log", self.files[i].me.id));
        self.daemons[i] = Some(Daemon::start(&self.config(i), &log, &[], &[]));
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

    /// The `/v1/routes` answer of controller `i` (`None` if it does not answer).
    pub fn routes(&self, i: usize) -> Option<Value> {
        self.api(i, "/v1/routes")
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

    /// A counter from controller `i`'s `/metrics`.
    pub fn metric(&self, i: usize, name: &str) -> Option<f64> {
        let body = Client::new(self.rpc[i].to_string(), None)
            .get("/metrics")
            .ok()?;
        let text = String::from_utf8_lossy(&body).to_string();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
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
