//! `overlay-network demo`: a whole cluster in one process on loopback ephemeral ports (the
//! example fixture by default, a generated layout with `--nodes N`). It shows convergence,
//! checks every table against the expected routes, changes a link cost, makes one
//! controller leave, and exits (or, with `--keep`, keeps running until Ctrl-C).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use overlay_core::{Command, Identity};
use serde_json::Value;
use smol::net::TcpListener;
use smol::stream::StreamExt;
use smol::{Task, Timer, future};
use thiserror::Error;
use tracing::level_filters::LevelFilter;

use crate::api;
use crate::authority::certify;
use crate::config::{FileConfig, Overrides, Settings, Source};
use crate::daemon::{self, DaemonError};
use crate::driver::{Handle, Stopped};
use crate::keys::{self, KeyError};
use crate::render;
use crate::topology::{self, EXAMPLE_README};

/// How long one phase may take to converge.
const PHASE_TIMEOUT: Duration = Duration::from_secs(30);

/// `overlay-network demo` options.
#[derive(Debug, Clone, Default)]
pub(crate) struct DemoOptions {
    /// A generated layout of this many controllers instead of the example.
    pub nodes: Option<usize>,
    /// Keep running after the script, printing each controller's page and RPC address.
    pub keep: bool,
}

/// Why the demo failed.
#[derive(Debug, Error)]
pub enum DemoError {
    /// A controller could not be configured or started.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// A loopback socket could not be opened.
    #[error("cannot open a loopback socket: {0}")]
    Socket(#[from] std::io::Error),
    /// A controller stopped unexpectedly.
    #[error(transparent)]
    Stopped(#[from] Stopped),
    /// The cluster did not converge in time.
    #[error("{phase}: the routes did not converge within {PHASE_TIMEOUT:?}")]
    NotConverged {
        /// Which step.
        phase: String,
    },
    /// The converged routes contradict the fixture's table.
    #[error("the routes contradict fixtures/example/README.md: {0}")]
    Fixture(String),
}

/// A folder of this run's own (mode 0700) for what the controllers write (their control
/// API tokens), removed when the demo ends, so that the demo leaves nothing behind.
struct StateDir(std::path::PathBuf);

impl StateDir {
    fn create() -> std::io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let path =
            std::env::temp_dir().join(format!("overlay-network-demo-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&path)?;
        Ok(StateDir(path))
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One controller of the demo cluster.
struct DemoNode {
    name: String,
    handle: Handle,
    rpc: SocketAddr,
    task: Option<Task<()>>,
}

/// Runs the demo; returns when it is over.
pub(crate) fn run(options: &DemoOptions) -> Result<(), DemoError> {
    daemon::init_logging(LevelFilter::WARN);
    smol::block_on(demo(options))
}

async fn demo(options: &DemoOptions) -> Result<(), DemoError> {
    let started = Instant::now();
    let (mut files, title) = match options.nodes {
        None => (
            topology::example().map_err(DaemonError::from)?,
            "the 3-controller example cluster (fixtures/example)".to_string(),
        ),
        Some(n) => (
            topology::generated(n),
            format!("a generated cluster of {n} controllers"),
        ),
    };
    println!("overlay-network demo: {title}, on loopback, gossip every 500 ms");
    let state = StateDir::create()?;
    let mut nodes = start(&mut files, &state).await?;

    let mut live = vec![true; files.len()];
    println!("\nconverging ... (per controller: direct peers/live members/routes)");
    let tables = converge(&nodes, &files, &live, "start-up", started).await?;
    for table in tables.iter().flatten() {
        print!("\n{}", render::routes(table));
    }
    let tables: Vec<Value> = tables.into_iter().flatten().collect();
    check_tables(options, &tables)?;

    // A link cost changes.
    let changed = change_a_link(&mut files[0]);
    println!(
        "\n{} raises the cost of its link to AS{} from {} to {} ...",
        nodes[0].name, changed.0, changed.1, changed.2
    );
    nodes[0]
        .handle
        .command(Command::SetLinks(files[0].links()))
        .await?;
    let after = converge(&nodes, &files, &live, "link change", started).await?;
    print_changes(&nodes, &tables, &after);

    // A controller leaves.
    let last = nodes.len() - 1;
    println!("\n{} leaves the network ...", nodes[last].name);
    nodes[last].handle.command(Command::Leave).await?;
    if let Some(task) = nodes[last].task.take() {
        task.await;
    }
    live[last] = false;
    let before: Vec<Value> = after.into_iter().flatten().collect();
    let after = converge(&nodes, &files, &live, "leave", started).await?;
    print_changes(&nodes, &before, &after);

    if options.keep {
        keep_running(&nodes, &state).await?;
    }
    stop(&mut nodes).await;
    println!(
        "\nevery controller has left; demo done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts a controller for each file on loopback (ports chosen by the system), with one
/// fresh cluster key, a node key each and an authority's certificate for each; keys and
/// tokens go to `state`.
async fn start(files: &mut [FileConfig], state: &StateDir) -> Result<Vec<DemoNode>, DemoError> {
    let mut listeners = Vec::new();
    for _ in files.iter() {
        listeners.push((
            TcpListener::bind("127.0.0.1:0").await?,
            TcpListener::bind("127.0.0.1:0").await?,
        ));
    }
    let addrs = listeners
        .iter()
        .map(|(g, _)| g.local_addr())
        .collect::<Result<Vec<_>, _>>()?;
    topology::relocate(files, &addrs);
    let cluster_key = keys::new_cluster_key()
        .map_err(DaemonError::from)?
        .to_base64();
    for (file, (_, rpc)) in files.iter_mut().zip(&listeners) {
        file.cron = "@every 500ms".into();
        file.log_level = "WARN".into();
        file.cluster_keys = vec![cluster_key.clone()];
        file.rpc_addr = Some(rpc.local_addr()?.to_string());
    }
    println!(
        "generating {} RSA-2048 node keys and an authority that certifies each controller's \
         id, AS and key for a day ...",
        files.len()
    );
    let mut identities = generate_identities(files.len() + 1).map_err(DaemonError::from)?;
    let authority = identities
        .pop()
        .ok_or_else(|| DaemonError::from(KeyError::Random("no authority key".into())))?;
    let mut rng = keys::os_rng().map_err(DaemonError::from)?;
    let mut nodes = Vec::new();
    for ((file, identity), (gossip, rpc)) in files.iter().zip(identities).zip(listeners) {
        let source = Source::unnamed(format!("RC{}", file.me.id));
        let mut settings = Settings::resolve(file, &source, &Overrides::default(), true)
            .map_err(DaemonError::from)?;
        settings.core.trusted_cas = vec![authority.public().clone()];
        settings.key_file = state.0.join(format!("rc{}.pem", file.me.id));
        let claim = (
            settings.core.node_id,
            settings.core.asn,
            &identity.fingerprint(),
        );
        let serial = u64::from(file.me.id);
        let day = Duration::from_secs(86_400);
        settings.core.certificate = Some(certify(&authority, claim, serial, day, &mut rng));
        let running = daemon::launch(&settings, identity, gossip, rpc, None)?;
        println!(
            "  RC{} (AS{}) listens on {}, control API on {}",
            file.me.id, file.me.autonomous_system_number, running.listen, running.rpc
        );
        nodes.push(DemoNode {
            name: format!("RC{}", file.me.id),
            handle: running.handle.clone(),
            rpc: running.rpc,
            task: Some(smol::spawn(running.run())),
        });
    }
    Ok(nodes)
}

/// Checks the converged tables: against the fixture's expected rows for the example
/// cluster (every table already matches the path rule).
fn check_tables(options: &DemoOptions, tables: &[Value]) -> Result<(), DemoError> {
    if options.nodes.is_some() {
        println!("\nOK: every table matches the path rule over the configured links.");
        return Ok(());
    }
    let rows = topology::fixture_rows(EXAMPLE_README);
    let wrong = topology::check_rows(&rows, tables);
    if !wrong.is_empty() {
        return Err(DemoError::Fixture(wrong.join("; ")));
    }
    println!(
        "\nOK: all {} rows of the expected table in fixtures/example/README.md match, and \
         every table matches the path rule.",
        rows.len()
    );
    Ok(())
}

/// `--keep`: prints how to look at the running cluster and waits for Ctrl-C.
async fn keep_running(nodes: &[DemoNode], state: &StateDir) -> Result<(), DemoError> {
    println!("\nthe cluster keeps running; see each controller's network page, or try:");
    let running: Vec<&DemoNode> = nodes.iter().filter(|n| n.task.is_some()).collect();
    for node in &running {
        println!("  {}: http://{}/", node.name, node.rpc);
    }
    for node in &running {
        println!(
            "  overlay-network routes --rpc {}    # {}",
            node.rpc, node.name
        );
    }
    if let Some(node) = running.first() {
        let token = state
            .0
            .join(format!("{}.rpc-token", node.name.to_lowercase()));
        println!(
            "  overlay-network leave --rpc {} --token-file {}",
            node.rpc,
            token.display()
        );
    }
    println!("press Ctrl-C to make every controller leave and exit");
    let mut signals = Signals::new([Signal::Int, Signal::Term])?;
    signals.next().await;
    Ok(())
}

/// Makes every controller still running leave, and waits up to 5 s for them to stop.
async fn stop(nodes: &mut [DemoNode]) {
    for node in nodes.iter() {
        if node.task.is_some() {
            let _ = node.handle.command(Command::Leave).await;
        }
    }
    let stopping = nodes.iter_mut().filter_map(|n| n.task.take());
    let all = async {
        for task in stopping {
            task.await;
        }
    };
    future::or(all, async {
        Timer::after(Duration::from_secs(5)).await;
    })
    .await;
}

/// New RSA-2048 keys, made on all cores.
fn generate_identities(n: usize) -> Result<Vec<Identity>, KeyError> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n)
            .map(|i| {
                scope.spawn(move || {
                    keys::generate_identity(std::path::Path::new(&format!("RC{i}")), 2048)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(KeyError::Random("key generation panicked".into())))
            })
            .collect()
    })
}

/// Multiplies by four the cost of the first link to another controller's AS; returns the
/// AS, the old and the new cost.
fn change_a_link(file: &mut FileConfig) -> (u32, u64, u64) {
    let peers: Vec<u32> = file
        .connected_route_controllers
        .iter()
        .map(|p| p.autonomous_system_number)
        .collect();
    let index = file
        .connected_autonomous_systems
        .iter()
        .position(|l| peers.contains(&l.number))
        .unwrap_or(0);
    let link = &mut file.connected_autonomous_systems[index];
    let old = link.cost;
    link.cost = old * 4;
    (link.number, old, link.cost)
}

fn print_changes(nodes: &[DemoNode], before: &[Value], after: &[Option<Value>]) {
    for (node, new) in nodes.iter().zip(after) {
        let Some(new) = new else { continue };
        let old = before.iter().find(|b| b["node"] == new["node"]);
        let changes = old
            .map(|old| render::route_changes(old, new))
            .unwrap_or_default();
        if changes.is_empty() {
            println!("  {}: no change", node.name);
        }
        for change in changes {
            println!("  {}: {change}", node.name);
        }
    }
}

/// Waits until every live controller's table is the expected one, printing progress;
/// returns each live controller's `routes --json` answer.
async fn converge(
    nodes: &[DemoNode],
    files: &[FileConfig],
    live: &[bool],
    phase: &str,
    started: Instant,
) -> Result<Vec<Option<Value>>, DemoError> {
    let expected = topology::expected_routes(files, live);
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let members = live.iter().filter(|l| **l).count();
    let mut last = String::new();
    loop {
        let mut answers = Vec::new();
        let mut done = 0;
        let mut detail = Vec::new();
        for (node, want) in nodes.iter().zip(&expected) {
            let Some(want) = want else {
                answers.push(None);
                continue;
            };
            let (answer, status) = node
                .handle
                .inspect(|v| (api::routes(v), v.node.status()))
                .await?;
            if &answer["routes"] == want {
                done += 1;
            }
            detail.push(format!(
                "{} {}p/{}m/{}r",
                node.name, status.peers, status.members, status.routes
            ));
            answers.push(Some(answer));
        }
        let mut line = format!("converged {done}/{members}");
        if detail.len() <= 5 {
            line = format!("{line}   {}", detail.join("  "));
        }
        if line != last {
            println!("  {:>5.1}s  {line}", started.elapsed().as_secs_f64());
            last = line;
        }
        if done == members {
            return Ok(answers);
        }
        if Instant::now() > deadline {
            return Err(DemoError::NotConverged {
                phase: phase.into(),
            });
        }
        Timer::after(Duration::from_millis(100)).await;
    }
}
