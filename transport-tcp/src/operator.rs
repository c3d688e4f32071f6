//! What an operator changes in a running daemon, in one place: the settings in effect, a
//! reload from the configuration file (SIGHUP, `POST /v1/reload`), the cluster keyring
//! (`/v1/keyring`), the log level, the event handlers and cost estimator it starts, and the
//! counters of those commands (served at `/metrics`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use overlay_core::Command;
use smol::Task;
use smol::lock::Mutex as AsyncMutex;
use tracing::{error, info};

use crate::config::{self, ConfigFileError, Overrides, Settings};
use crate::counters::Counters;
use crate::driver::{Handle, Stopped};
use crate::{estimator, handlers};

/// Why a reload or keyring change was refused (one line, naming the file and field).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The configuration is wrong, or changes a field fixed while running.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// The request itself is wrong (e.g. removing the key in use).
    #[error("{0}")]
    Request(String),
    /// The node has stopped.
    #[error("the node has stopped")]
    Stopped,
}

impl From<Stopped> for Refused {
    fn from(_: Stopped) -> Self {
        Refused::Stopped
    }
}

/// A running daemon's operator side; shared by the control API, the signal handler and
/// the estimator.
pub(crate) struct Operator {
    pub(crate) handle: Handle,
    /// The configuration file and the command line's overrides (`None`: started from
    /// settings alone, which cannot be reloaded).
    pub(crate) source: Option<(PathBuf, Overrides)>,
    /// The settings in effect.
    settings: Arc<Mutex<Settings>>,
    /// One reload or keyring change at a time.
    pub(crate) busy: AsyncMutex<()>,
    pub(crate) counters: Arc<Counters>,
    handlers: Mutex<Vec<Task<()>>>,
}

impl Operator {
    /// The operator of a daemon started with `settings`; starts its event handlers and cost
    /// estimator.
    pub(crate) fn start(
        handle: Handle,
        settings: Settings,
        source: Option<(PathBuf, Overrides)>,
    ) -> (Arc<Operator>, Task<()>) {
        let operator = Arc::new(Operator {
            handle,
            source,
            settings: Arc::new(Mutex::new(settings)),
            busy: AsyncMutex::new(()),
            counters: Arc::default(),
            handlers: Mutex::new(Vec::new()),
        });
        operator.restart_handlers();
        let estimator = smol::spawn(estimator::run(
            operator.handle.clone(),
            Arc::clone(&operator.settings),
            Arc::clone(&operator.counters),
        ));
        (operator, estimator)
    }

    /// The settings in effect.
    pub(crate) fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.settings)
    }

    /// Starts the configured event handlers, stopping those running (and their commands).
    fn restart_handlers(&self) {
        let (specs, own) = {
            let s = self.settings();
            (s.handlers.clone(), s.core.node_id)
        };
        let events = self.handle.events();
        let tasks = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let subscription = events.subscribe(handlers::QUEUE);
                let counters = Arc::clone(&self.counters);
                smol::spawn(handlers::run(i, spec, subscription, own, counters))
            })
            .collect();
        *self.handlers.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
    }

    /// Re-reads the configuration file (and the cluster key and certificate files) and
    /// applies what changed; changes nothing when any of it is wrong or changes a field
    /// fixed while running. Returns the names of the fields that changed.
    pub(crate) async fn reload(&self) -> Result<Vec<&'static str>, Refused> {
        let _one = self.busy.lock().await;
        let reloaded = self.reload_file().await;
        if let Err(e) = &reloaded {
            error!("reload refused: {e}");
        }
        reloaded
    }

    async fn reload_file(&self) -> Result<Vec<&'static str>, Refused> {
        let Some((path, overrides)) = &self.source else {
            return Err(Refused::Request(
                "this controller was not started from a configuration file".into(),
            ));
        };
        let (file, source) = config::load(path)?;
        let mut next = Settings::resolve(&file, &source, overrides, true)?;
        let current = self.settings().clone();
        fixed(&current, &next, &source)?;
        next.core.listen_addr = current.core.listen_addr.clone();
        if next.estimator.is_some() && next.core.links == current.core.links {
            // Keep the estimator's links until its next run.
            next.core.links = self
                .handle
                .inspect(|v| v.node.config().links.clone())
                .await?;
        }
        // The new level first, so that what the change does is logged at it.
        crate::logging::set_log_level(next.log_level);
        let applied = self
            .handle
            .checked(Command::Reconfigure(Box::new(next.core.clone())))
            .await?;
        if let Err(e) = applied {
            crate::logging::set_log_level(current.log_level);
            return Err(config::core_error(&file, &source, &e).into());
        }
        let changed = changes(&current, &next);
        let rehandle = next.handlers != current.handlers;
        *self.settings() = next;
        if rehandle {
            self.restart_handlers();
        }
        info!(file = %path.display(), ?changed, "configuration reloaded");
        Ok(changed)
    }

    /// Runs the node with `keys` (the first one dials) from now on, and remembers them.
    pub(crate) async fn set_cluster_keys(
        &self,
        keys: Vec<overlay_core::ClusterKey>,
    ) -> Result<(), Refused> {
        let mut core = self.settings().core.clone();
        core.cluster_keys = keys;
        core.links = self
            .handle
            .inspect(|v| v.node.config().links.clone())
            .await?;
        self.handle
            .checked(Command::Reconfigure(Box::new(core.clone())))
            .await?
            .map_err(|e| Refused::Request(e.to_string()))?;
        self.settings().core.cluster_keys = core.cluster_keys;
        Ok(())
    }
}

/// The settings, even if a holder panicked.
pub(crate) fn lock(settings: &Mutex<Settings>) -> MutexGuard<'_, Settings> {
    settings.lock().unwrap_or_else(|e| e.into_inner())
}

/// Refuses a change of a field that cannot change while running, naming it.
fn fixed(current: &Settings, next: &Settings, source: &config::Source) -> Result<(), Refused> {
    let fields = [
        ("self.id", current.core.node_id != next.core.node_id),
        (
            "self.autonomous_system_number",
            current.core.asn != next.core.asn,
        ),
        ("self.ip", current.listen != next.listen),
        ("key_file", current.key_file != next.key_file),
        ("rpc_addr", current.rpc != next.rpc),
        ("rpc_token", current.rpc_token != next.rpc_token),
    ];
    match fields.iter().find(|(_, differs)| *differs) {
        Some((field, _)) => {
            let message = "cannot change while the daemon runs (restart it to change this); \
                           nothing was changed";
            Err(source.error(*field, message).into())
        }
        None => Ok(()),
    }
}

/// The names of the reloadable settings that differ.
fn changes(a: &Settings, b: &Settings) -> Vec<&'static str> {
    let (x, y) = (&a.core, &b.core);
    let fields = [
        ("connected_autonomous_systems", x.links != y.links),
        ("connected_route_controllers", x.bootstrap != y.bootstrap),
        ("min_peers", x.min_peers != y.min_peers),
        ("max_peers", x.max_peers != y.max_peers),
        ("cron", x.gossip_period != y.gossip_period),
        ("log_level", a.log_level != b.log_level),
        ("cluster_keys", x.cluster_keys != y.cluster_keys),
        ("trusted_cas", x.trusted_cas != y.trusted_cas),
        ("cert_file", x.certificate != y.certificate),
        ("cost_estimator_path", a.estimator != b.estimator),
        ("event_handlers", a.handlers != b.handlers),
        (
            "limits",
            (
                x.reject_threshold,
                x.ban_quorum,
                x.ban_duration,
                x.max_frame_bytes,
                x.advert_refresh,
                x.max_advert_age,
                x.max_members,
                x.max_clock_skew,
            ) != (
                y.reject_threshold,
                y.ban_quorum,
                y.ban_duration,
                y.max_frame_bytes,
                y.advert_refresh,
                y.max_advert_age,
                y.max_members,
                y.max_clock_skew,
            ),
        ),
    ];
    fields
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect()
}
