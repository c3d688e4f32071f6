//! Resolving a configuration file, with the command line's and the environment's
//! overrides, into the [`Settings`] the daemon runs with: every field checked, each error
//! naming its field, the cluster keys from the first source that has any.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_core::PROTOCOL_VERSION;
use overlay_core::{Addr, Asn, ClusterKey, Config, ConfigError, NodeId, parse_cron};
use tracing::level_filters::LevelFilter;

use super::hooks::{self, Handler};
use super::{ConfigFileError, FileConfig, RPC_PORT_OFFSET, Source};

/// Values given on the command line and in the environment, over the file's.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--key`.
    pub key_file: Option<PathBuf>,
    /// `--cluster-key-file`.
    pub cluster_key_file: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--rpc`.
    pub rpc: Option<String>,
    /// `OVERLAY_CLUSTER_KEY` (comma-separated base64 keys).
    pub env_cluster_key: Option<String>,
}

/// Where the cluster keys in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `--cluster-key-file`.
    File,
    /// `OVERLAY_CLUSTER_KEY`.
    Env,
    /// `cluster_keys` in the config.
    Config,
    /// The fixed development key (`development_mode`).
    Development,
    /// None (only for `parse-config --check`).
    Missing,
}

/// Everything the daemon runs with, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The core's configuration. Its `listen_addr` is fixed once the listener is bound.
    pub core: Config,
    /// Where to bind the gossip listener.
    pub listen: SocketAddr,
    /// Where to bind the control API.
    pub rpc: SocketAddr,
    /// Bearer token for the control API.
    pub rpc_token: Option<String>,
    /// The node key file.
    pub key_file: PathBuf,
    /// Log level.
    pub log_level: LevelFilter,
    /// Where the cluster keys came from.
    pub key_source: KeySource,
    /// The certificate file, re-read while running.
    pub cert_file: Option<PathBuf>,
    /// The cluster key file (`--cluster-key-file`), rewritten by keyring changes.
    pub cluster_key_file: Option<PathBuf>,
    /// The cost estimator's program and arguments.
    pub estimator: Option<Vec<String>>,
    /// The event handlers.
    pub handlers: Vec<Handler>,
    /// Things worth a warning at start-up.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Where the daemon writes the control API token for state-changing requests when no
    /// `rpc_token` is configured: beside the node key, `<key file stem>.rpc-token`.
    pub fn rpc_token_file(&self) -> PathBuf {
        self.key_file.with_extension("rpc-token")
    }
}

/// The fixed, publicly known cluster key of `development_mode`. Never use it in production.
pub const DEVELOPMENT_KEY: [u8; 32] = *b"overlay-network-development-key!";

impl Settings {
    /// Resolves a file (and overrides) into settings, checking every field. With
    /// `require_cluster_key` false a missing cluster key is accepted (`parse-config --check`:
    /// the key may come from the environment at start).
    pub fn resolve(
        file: &FileConfig,
        source: &Source,
        overrides: &Overrides,
        require_cluster_key: bool,
    ) -> Result<Settings, ConfigFileError> {
        let (log_level, mut warnings) = header(file, source)?;
        let listen = listen_addr(file, source, overrides)?;
        let bootstrap = bootstrap(file, source, listen)?;
        let (rpc, rpc_token) = control_api(file, source, overrides, listen)?;
        let (cluster_keys, key_source) = keys(file, source, overrides, require_cluster_key)?;
        let mut core = Config::new(
            NodeId(file.me.id),
            Asn(file.me.autonomous_system_number),
            Addr::from(listen.to_string()),
            cluster_keys,
        );
        core.links = file.links();
        core.bootstrap = bootstrap;
        tunables(file, source, &mut core)?;
        let cert_file = certificates(file, source, &mut core)?;
        if core.trusted_cas.is_empty() {
            warnings.push(
                "membership is open: any holder of the cluster key may join and speak for \
                 an unclaimed AS (set trusted_cas and cert_file to certify controllers)"
                    .into(),
            );
        }
        // Validate everything but the key when none is required yet.
        let mut probe = core.clone();
        if probe.cluster_keys.is_empty() {
            probe.cluster_keys.push(ClusterKey::from_bytes([0; 32]));
        }
        probe.validate().map_err(|e| core_error(file, source, &e))?;
        let key_file = match (&overrides.key_file, &file.key_file) {
            (Some(path), _) => path.clone(),
            (None, Some(path)) => beside(source.path(), path),
            (None, None) => source.path().with_extension("pem"),
        };
        Ok(Settings {
            estimator: hooks::estimator(file, source)?,
            handlers: hooks::handlers(file, source)?,
            cluster_key_file: overrides.cluster_key_file.clone(),
            core,
            listen,
            rpc,
            rpc_token,
            key_file,
            log_level,
            key_source,
            cert_file,
            warnings,
        })
    }
}

/// The protocol version and log level, and the warnings about the file as a whole.
fn header(
    file: &FileConfig,
    source: &Source,
) -> Result<(LevelFilter, Vec<String>), ConfigFileError> {
    let err = |field: &str, message: String| source.error(field, message);
    let warnings = Vec::new();
    if file.protocol != PROTOCOL_VERSION {
        return Err(err(
            "protocol",
            format!(
                "version {} is not spoken here (this build speaks {PROTOCOL_VERSION})",
                file.protocol
            ),
        ));
    }
    let log_level: LevelFilter = file.log_level.parse().map_err(|_| {
        err(
            "log_level",
            format!(
                "{:?} is not one of ERROR, WARN, INFO, DEBUG, TRACE, OFF",
                file.log_level
            ),
        )
    })?;
    Ok((log_level, warnings))
}

/// Where the gossip listener binds: `--listen`, or `self.ip` with `port`; never an
/// unspecified address, which peers could not dial.
fn listen_addr(
    file: &FileConfig,
    source: &Source,
    overrides: &Overrides,
) -> Result<SocketAddr, ConfigFileError> {
    let listen = match &overrides.listen {
        Some(text) => text.parse::<SocketAddr>().map_err(|_| ConfigFileError {
            location: "command line".into(),
            field: "--listen".into(),
            message: format!("{text:?} is not an IP:port address"),
        })?,
        None => own_address(&file.me.ip, file.port).map_err(|m| source.error("self.ip", m))?,
    };
    if listen.ip().is_unspecified() {
        return Err(source.error(
            "self.ip",
            format!(
                "{} cannot be advertised to peers; use this host's address",
                listen.ip()
            ),
        ));
    }
    Ok(listen)
}

/// The peers to dial first: each with its port, none this controller itself, no id twice.
fn bootstrap(
    file: &FileConfig,
    source: &Source,
    listen: SocketAddr,
) -> Result<Vec<Addr>, ConfigFileError> {
    let mut bootstrap = Vec::new();
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, peer) in file.connected_route_controllers.iter().enumerate() {
        let field = format!("connected_route_controllers[{i}]");
        if peer.id == file.me.id {
            return Err(source.error(
                format!("{field}.id"),
                format!(
                    "duplicate identity: RC{} is this controller's own id (self.id)",
                    peer.id
                ),
            ));
        }
        if let Some(first) = seen.insert(peer.id, i) {
            return Err(source.error(
                format!("{field}.id"),
                format!(
                    "duplicate identity: RC{} is also connected_route_controllers[{first}]",
                    peer.id
                ),
            ));
        }
        let addr = peer_address(&peer.ip).map_err(|m| source.error(format!("{field}.ip"), m))?;
        if addr == listen.to_string() {
            return Err(source.error(
                format!("{field}.ip"),
                format!("{addr} is this controller's own address"),
            ));
        }
        bootstrap.push(Addr::from(addr));
    }
    Ok(bootstrap)
}

/// The control API's address and token: off loopback only with a token.
fn control_api(
    file: &FileConfig,
    source: &Source,
    overrides: &Overrides,
    listen: SocketAddr,
) -> Result<(SocketAddr, Option<String>), ConfigFileError> {
    let err = |field: &str, message: String| source.error(field, message);
    let rpc = match (&overrides.rpc, &file.rpc_addr) {
        (Some(text), _) => text.parse::<SocketAddr>().map_err(|_| ConfigFileError {
            location: "command line".into(),
            field: "--rpc".into(),
            message: format!("{text:?} is not an IP:port address"),
        })?,
        (None, Some(text)) => text
            .parse::<SocketAddr>()
            .map_err(|_| err("rpc_addr", format!("{text:?} is not an IP:port address")))?,
        (None, None) => default_rpc(listen.port()).map_err(|m| err("rpc_addr", m))?,
    };
    let rpc_token = file.rpc_token.clone();
    if rpc_token.as_deref().is_some_and(str::is_empty) {
        return Err(err("rpc_token", "must not be empty".into()));
    }
    if !rpc.ip().is_loopback() && rpc_token.is_none() {
        return Err(err(
            "rpc_addr",
            format!("{rpc} is not a loopback address; set rpc_token to expose the control API"),
        ));
    }
    Ok((rpc, rpc_token))
}

/// The cluster keys in effect and where they came from (the development key in
/// `development_mode`); none only when none is required yet.
fn keys(
    file: &FileConfig,
    source: &Source,
    overrides: &Overrides,
    required: bool,
) -> Result<(Vec<ClusterKey>, KeySource), ConfigFileError> {
    let (cluster_keys, key_source) = cluster_keys(file, source, overrides)?;
    match key_source {
        KeySource::Missing if file.development_mode => Ok((
            vec![ClusterKey::from_bytes(DEVELOPMENT_KEY)],
            KeySource::Development,
        )),
        KeySource::Missing if required => Err(source.error(
            "cluster_keys",
            "no cluster key: set cluster_keys, OVERLAY_CLUSTER_KEY or \
             --cluster-key-file (make one with `overlay-network keygen --cluster-key`), \
             or set development_mode for an insecure test cluster",
        )),
        other => Ok((cluster_keys, other)),
    }
}

/// The file's optional protocol settings, over the core's defaults.
fn tunables(file: &FileConfig, source: &Source, core: &mut Config) -> Result<(), ConfigFileError> {
    let err = |field: &str, message: String| source.error(field, message);
    core.min_peers = file.min_peers;
    core.max_peers = file.max_peers;
    core.gossip_period = parse_cron(&file.cron).map_err(|e| err("cron", e.to_string()))?;
    if let Some(v) = file.reject_threshold {
        core.reject_threshold = v;
    }
    if let Some(v) = file.ban_quorum {
        core.ban_quorum = v;
    }
    if let Some(v) = file.max_frame_bytes {
        core.max_frame_bytes = v;
    }
    if let Some(text) = &file.ban_duration {
        core.ban_duration = duration(text).map_err(|m| err("ban_duration", m))?;
    }
    if let Some(v) = file.advert_refresh {
        core.advert_refresh = v;
    }
    if let Some(text) = &file.advert_max_age {
        core.max_advert_age = Some(duration(text).map_err(|m| err("advert_max_age", m))?);
    }
    if let Some(v) = file.max_members {
        core.max_members = v;
    }
    if let Some(text) = &file.max_clock_skew {
        core.max_clock_skew = Some(duration(text).map_err(|m| err("max_clock_skew", m))?);
    }
    Ok(())
}

/// Loads `trusted_cas` and `cert_file` into `core`; returns the certificate's path.
fn certificates(
    file: &FileConfig,
    source: &Source,
    core: &mut Config,
) -> Result<Option<PathBuf>, ConfigFileError> {
    let located = |field: String, e: crate::keys::KeyError| {
        let mut error = source.error(field, &e);
        if let crate::keys::KeyError::Io { path, .. } | crate::keys::KeyError::Key { path, .. } = &e
        {
            error.message = e
                .to_string()
                .replacen(&format!("{}: ", path.display()), "", 1);
            error.location = path.display().to_string();
        }
        error
    };
    for (i, path) in file.trusted_cas.iter().enumerate() {
        let key = crate::authority::load_trusted(&beside(source.path(), path))
            .map_err(|e| located(format!("trusted_cas[{i}]"), e))?;
        core.trusted_cas.push(key);
    }
    let cert_file = file.cert_file.as_ref().map(|p| beside(source.path(), p));
    if let Some(path) = &cert_file {
        core.certificate = Some(
            crate::authority::load_certificate(path).map_err(|e| located("cert_file".into(), e))?,
        );
    } else if !core.trusted_cas.is_empty() {
        return Err(source.error("cert_file", "required with trusted_cas"));
    }
    Ok(cert_file)
}

/// A path from the config, relative to the config's folder.
pub(super) fn beside(config: &Path, path: &Path) -> PathBuf {
    match config.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// The cluster keys from the first source that has any: `--cluster-key-file`,
/// `OVERLAY_CLUSTER_KEY`, then the config's `cluster_keys`.
fn cluster_keys(
    file: &FileConfig,
    source: &Source,
    overrides: &Overrides,
) -> Result<(Vec<ClusterKey>, KeySource), ConfigFileError> {
    let decode = |texts: Vec<String>, field: &str, location: Option<String>| {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                ClusterKey::from_base64(t).map_err(|e| {
                    let mut error = source.error(format!("{field}[{i}]"), e);
                    if let Some(location) = &location {
                        error.location.clone_from(location);
                    }
                    error
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    if let Some(path) = &overrides.cluster_key_file {
        let location = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            location: location.clone(),
            field: "--cluster-key-file".into(),
            message: format!("cannot read: {e}"),
        })?;
        let texts: Vec<String> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        if texts.is_empty() {
            return Err(ConfigFileError {
                location,
                field: "--cluster-key-file".into(),
                message: "no key in the file".into(),
            });
        }
        return Ok((
            decode(texts, "--cluster-key-file", Some(location))?,
            KeySource::File,
        ));
    }
    if let Some(text) = overrides
        .env_cluster_key
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        let texts = text.split(',').map(|t| t.trim().to_string()).collect();
        return Ok((
            decode(texts, "OVERLAY_CLUSTER_KEY", Some("environment".into()))?,
            KeySource::Env,
        ));
    }
    if !file.cluster_keys.is_empty() {
        return Ok((
            decode(file.cluster_keys.clone(), "cluster_keys", None)?,
            KeySource::Config,
        ));
    }
    Ok((Vec::new(), KeySource::Missing))
}

/// Maps the core's validation error (which names the core's field) to the file's field.
pub(crate) fn core_error(file: &FileConfig, source: &Source, e: &ConfigError) -> ConfigFileError {
    let link_index = |asn: Asn| {
        file.connected_autonomous_systems
            .iter()
            .rposition(|a| a.number == asn.0)
            .map_or("connected_autonomous_systems".to_string(), |i| {
                format!("connected_autonomous_systems[{i}]")
            })
    };
    let text = e.to_string();
    let message = text.split_once(": ").map_or(text.as_str(), |(_, m)| m);
    let field = match e {
        ConfigError::SelfLink(asn) | ConfigError::DuplicateLink(asn) => link_index(*asn),
        ConfigError::TooManyLinks(_) => "connected_autonomous_systems".into(),
        ConfigError::Cron(_) | ConfigError::PeriodTooShort(_) => "cron".into(),
        ConfigError::AdvertAgeTooShort { .. } => "advert_max_age".into(),
        ConfigError::SkewTooLarge { .. } => "max_clock_skew".into(),
        ConfigError::RumorRateTooLow(_) => "max_rumors_per_period".into(),
        ConfigError::BadAddr { field, .. } if *field == "listen_addr" => "self.ip".into(),
        ConfigError::BadAddr { .. } => "connected_route_controllers".into(),
        ConfigError::MaxPeersZero | ConfigError::TooManyPeers(_) => "max_peers".into(),
        ConfigError::MinAboveMax { .. } => "min_peers".into(),
        ConfigError::ThresholdZero => "reject_threshold".into(),
        ConfigError::QuorumZero => "ban_quorum".into(),
        ConfigError::FrameTooSmall(_) => "max_frame_bytes".into(),
        ConfigError::NoClusterKey => "cluster_keys".into(),
        ConfigError::Zero(field) => (*field).into(),
        ConfigError::Certificate(_) => "cert_file".into(),
        ConfigError::Fixed("node_id") => "self.id".into(),
        ConfigError::Fixed("asn") => "self.autonomous_system_number".into(),
        ConfigError::Fixed(_) => "self.ip".into(),
    };
    source.error(field, message)
}

/// `ip:port`, or `ip` with the configured port.
fn own_address(text: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| format!("{text:?} is not an IP address or IP:port"))
}

/// A peer address must carry its port: `ip:port` or `host:port`.
fn peer_address(text: &str) -> Result<String, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr.to_string());
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(text.to_string())
        }
        _ if text.parse::<IpAddr>().is_ok() => Err(format!(
            "{text:?} has no port: peers must be given as IP:port"
        )),
        _ => Err(format!("{text:?} is not an IP:port or host:port address")),
    }
}

/// `127.0.0.1:<gossip port + 10000>`, ephemeral when the gossip port is.
fn default_rpc(gossip_port: u16) -> Result<SocketAddr, String> {
    let port = match gossip_port {
        0 => 0,
        p => p.checked_add(RPC_PORT_OFFSET).ok_or_else(|| {
            format!(
                "no default for gossip port {p} (port + {RPC_PORT_OFFSET} is out of range); \
                 set rpc_addr"
            )
        })?,
    };
    Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

/// A duration written like a cron interval: `500ms`, `30s`, `5m`, `1h`.
pub fn duration(text: &str) -> Result<Duration, String> {
    parse_cron(&format!("@every {text}"))
        .map_err(|e| format!("{text:?}: {e}").replace("cron interval", "duration"))
}
