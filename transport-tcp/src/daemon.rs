//! One route controller process, assembled: settings and keys in, listeners bound, the
//! driver, the control API and the operator's commands started ([`launch`]), SIGTERM and
//! SIGINT turned into a graceful leave and SIGHUP into a reload, logging set up (its level
//! reloadable; [`run`] is `overlay-network daemon`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_signal::{Signal, Signals};
use overlay_core::{Command, ConfigError, Fingerprint, Identity};
use smol::net::TcpListener;
use smol::stream::StreamExt;
use smol::{Task, future};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::api;
use crate::config::{self, ConfigFileError, KeySource, Overrides, Settings, Source};
use crate::driver::{Driver, Handle, Limits};
use crate::keys::{self, KeyError};
pub use crate::logging::init_logging;
use crate::operator::Operator;
pub use crate::operator::Refused;

/// Why a controller could not start.
#[derive(Debug, Error)]
pub enum DaemonError {
    /// The configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The node key could not be loaded or created.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The node refused its configuration.
    #[error("{0}")]
    Node(#[from] ConfigError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A bound listener's address could not be read.
    #[error("cannot read a listener's address: {0}")]
    Socket(std::io::Error),
}

/// `overlay-network daemon` arguments.
#[derive(Debug, Clone)]
pub struct DaemonArgs {
    /// The configuration file (`.json` or `.conf`).
    pub config: PathBuf,
    /// Overrides from the command line and the environment.
    pub overrides: Overrides,
    /// Fault injection (the `chaos` feature): how this controller misbehaves.
    #[cfg(feature = "chaos")]
    pub misbehave: Option<crate::chaos::Mode>,
}

/// Binds the gossip and control API listeners; errors name the field that set the address.
pub async fn bind(
    settings: &Settings,
    source: &Source,
    overrides: &Overrides,
) -> Result<(TcpListener, TcpListener), ConfigFileError> {
    let field = |flag: &str, option: &Option<String>, file_field: &str| {
        if option.is_some() {
            flag.to_string()
        } else {
            file_field.to_string()
        }
    };
    let gossip = TcpListener::bind(settings.listen).await.map_err(|e| {
        source.error(
            field("--listen", &overrides.listen, "self.ip"),
            format!("cannot listen on {}: {e}", settings.listen),
        )
    })?;
    let rpc = TcpListener::bind(settings.rpc).await.map_err(|e| {
        source.error(
            field("--rpc", &overrides.rpc, "rpc_addr"),
            format!("cannot listen on {} for the control API: {e}", settings.rpc),
        )
    })?;
    Ok((gossip, rpc))
}

/// A started controller: its driver (to be run), its control API (serving), its event
/// handlers and cost estimator (running).
pub struct Running {
    /// Commands and read access.
    pub handle: Handle,
    /// The gossip address, as advertised.
    pub listen: SocketAddr,
    /// The control API address.
    pub rpc: SocketAddr,
    /// The node key's fingerprint.
    pub fingerprint: Fingerprint,
    driver: Driver,
    api: Task<()>,
    operator: Arc<Operator>,
    _estimator: Task<()>,
    _renewal: Option<Task<()>>,
}

/// Starts a controller on bound listeners: the advertised address is the gossip
/// listener's. `reload_from` is the file it was read from, with the command line's overrides,
/// for reloads (`None`: it cannot be reloaded). Nothing happens on the network until
/// [`Running::run`].
pub fn launch(
    settings: &Settings,
    identity: Identity,
    gossip: TcpListener,
    rpc: TcpListener,
    reload_from: Option<(PathBuf, Overrides)>,
) -> Result<Running, DaemonError> {
    let listen = gossip.local_addr().map_err(DaemonError::Socket)?;
    let rpc_addr = rpc.local_addr().map_err(DaemonError::Socket)?;
    let mut config = settings.core.clone();
    config.listen_addr = config_addr(&listen);
    let limits = Limits::for_config(&config);
    let fingerprint = identity.fingerprint();
    let every = settings.core.gossip_period.min(Duration::from_secs(30));
    let certificate = config.certificate.clone();
    let (driver, handle) = Driver::new(config, identity, keys::os_seed()?, gossip, limits)
        .map_err(|e| match (e, &settings.cert_file) {
            (ConfigError::Certificate(message), Some(path)) => ConfigFileError {
                location: path.display().to_string(),
                field: "cert_file".into(),
                message,
            }
            .into(),
            (e, _) => DaemonError::Node(e),
        })?;
    let mut running = settings.clone();
    running.core.listen_addr = config_addr(&listen);
    let (operator, estimator) = Operator::start(handle.clone(), running, reload_from);
    let api = smol::spawn(api::serve(
        rpc,
        Arc::clone(&operator),
        api::Access::create(settings)?,
    ));
    let renewal = settings.cert_file.clone().map(|path| {
        smol::spawn(crate::authority::watch(
            path,
            certificate,
            every,
            handle.clone(),
        ))
    });
    Ok(Running {
        handle,
        listen,
        rpc: rpc_addr,
        fingerprint,
        driver,
        api,
        operator,
        _estimator: estimator,
        _renewal: renewal,
    })
}

fn config_addr(listen: &SocketAddr) -> overlay_core::Addr {
    overlay_core::Addr::from(listen.to_string())
}

impl Running {
    /// Re-reads the configuration file and applies what changed (as SIGHUP does); returns
    /// the names of the fields that changed, or the one-line reason nothing did.
    pub async fn reload(&self) -> Result<Vec<&'static str>, Refused> {
        self.operator.reload().await
    }

    /// Runs the node until it has left, then gives the control API a moment to answer the
    /// request that asked it to leave.
    pub async fn run(self) {
        self.driver.run().await;
        smol::Timer::after(Duration::from_millis(100)).await;
        drop(self.api);
    }
}

/// `overlay-network daemon`: runs until a leave (signal or control API), then returns.
pub fn run(args: &DaemonArgs) -> Result<(), DaemonError> {
    let (file, source) = config::load(&args.config)?;
    let settings = Settings::resolve(&file, &source, &args.overrides, true)?;
    init_logging(settings.log_level);
    for warning in &settings.warnings {
        warn!("{}: {warning}", source.path().display());
    }
    if settings.key_source == KeySource::Development {
        warn!(
            "DEVELOPMENT MODE: no cluster key is configured, so the fixed and publicly known development key is used."
        );
        warn!(
            "DEVELOPMENT MODE: anyone can join this cluster and read its gossip. Never run it like this in production."
        );
    }
    raise_open_files(&settings);
    let (identity, created) = keys::load_or_create_identity(&settings.key_file)?;
    #[cfg(feature = "chaos")]
    let attacker = identity.clone();
    if created {
        info!(key = %settings.key_file.display(), "created a new node key (mode 0600)");
    } else if keys::is_exposed(&settings.key_file) {
        warn!(key = %settings.key_file.display(), "the node key is readable by group or others; chmod 600 it");
    }
    smol::block_on(async {
        let (gossip, rpc) = bind(&settings, &source, &args.overrides).await?;
        let config = Some((args.config.clone(), args.overrides.clone()));
        let running = launch(&settings, identity, gossip, rpc, config)?;
        #[cfg(feature = "chaos")]
        let _chaos = match args.misbehave {
            Some(mode) => Some(crate::chaos::spawn(running.handle.clone(), mode, attacker)?),
            None => None,
        };
        info!(
            node = %settings.core.node_id,
            asn = %settings.core.asn,
            listen = %running.listen,
            rpc = %running.rpc,
            fingerprint = %running.fingerprint,
            key = %settings.key_file.display(),
            "route controller started"
        );
        let mut signals =
            Signals::new([Signal::Term, Signal::Int, Signal::Hup]).map_err(DaemonError::Signals)?;
        let handle = running.handle.clone();
        let operator = Arc::clone(&running.operator);
        let on_signal = async move {
            while let Some(Ok(signal)) = signals.next().await {
                if signal == Signal::Hup {
                    // A refusal is logged; the daemon runs on unchanged.
                    let _ = operator.reload().await;
                    continue;
                }
                info!(?signal, "signal received: leaving the network");
                if handle.command(Command::Leave).await.is_err() {
                    error!("the node had already stopped");
                }
                break;
            }
            // Keep the handlers installed (a second signal must not kill the flush).
            future::pending::<()>().await;
        };
        future::or(running.run(), on_signal).await;
        info!("stopped");
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard one (a connection is a file; a low
/// default such as 1024 would cap the peers, handshakes, API clients and closing sockets
/// together), and warns when even the hard limit is below what the configuration can use.
fn raise_open_files(settings: &Settings) {
    let needed = (4 * settings.core.max_peers + 64) as u64;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < needed => {
            warn!(
                limit,
                needed, "the open-file limit is below what max_peers can use; raise it"
            )
        }
        Ok(limit) => info!(limit, "open-file limit"),
        Err(e) => warn!(error = %e, "could not read or raise the open-file limit"),
    }
}
