//! Configuration files: the seed's JSON format and raw `.conf` format (both read into
//! [`FileConfig`]), the conversion between them, and their resolution into what the daemon
//! runs with ([`Settings`]: the core [`Config`], listen and RPC addresses, key file, log
//! level). Every error is one line naming the file, the line when known, and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use overlay_core::wire::PROTOCOL_VERSION;
use overlay_core::{Addr, AsLink, Asn, ClusterKey, Config, ConfigError, NodeId, parse_cron};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::level_filters::LevelFilter;

/// The gossip port used when `self.ip` has none and `port` is not set.
pub const DEFAULT_PORT: u16 = 1450;
/// The default RPC port is the gossip port plus this.
pub const RPC_PORT_OFFSET: u16 = 10000;

/// A route controller entry (`self` and `connected_route_controllers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RcEntry {
    /// Controller id.
    pub id: u32,
    /// Its AS number.
    pub autonomous_system_number: u32,
    /// `ip` or `ip:port` (peers need the port).
    pub ip: String,
}

/// A link of this controller's AS (`connected_autonomous_systems`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsEntry {
    /// Neighbouring AS number.
    pub number: u32,
    /// Link capacity (Mbps).
    pub link_capacity: u64,
    /// Routing cost.
    pub cost: u64,
}

/// A configuration file as written: the seed's fields in the seed's order, then the
/// optional fields this daemon adds (omitted from output when unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Allows starting without a cluster key (a fixed, insecure development key is used).
    #[serde(default)]
    pub development_mode: bool,
    /// Protocol version; only 1 is spoken.
    #[serde(default = "default_protocol")]
    pub protocol: u16,
    /// Gossip port when `self.ip` has none.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Dial known members while fewer direct peers than this.
    #[serde(default = "default_min_peers")]
    pub min_peers: usize,
    /// Hard cap on direct peers.
    #[serde(default = "default_max_peers")]
    pub max_peers: usize,
    /// Gossip period, `@every <n><unit>`.
    #[serde(default = "default_cron")]
    pub cron: String,
    /// Kept for compatibility with the original tool; unused (a warning is logged).
    #[serde(default)]
    pub cost_estimator_path: String,
    /// Log level: ERROR, WARN, INFO, DEBUG or TRACE.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// This controller.
    #[serde(rename = "self")]
    pub me: RcEntry,
    /// Bootstrap peers.
    #[serde(default)]
    pub connected_route_controllers: Vec<RcEntry>,
    /// Own AS links.
    #[serde(default)]
    pub connected_autonomous_systems: Vec<AsEntry>,
    /// Node key (PKCS#8 PEM); relative paths are beside the config. Default `<stem>.pem`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Accepted cluster keys (base64); the first is used when dialing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_keys: Vec<String>,
    /// Control API address. Default `127.0.0.1:<gossip port + 10000>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_addr: Option<String>,
    /// Bearer token required by the control API (and needed to bind it off loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_token: Option<String>,
    /// Invalid messages from one peer (within 10 gossip periods) that get it banned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_threshold: Option<u32>,
    /// How long a ban or an eviction lasts, `<n><unit>` (e.g. `"1h"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_duration: Option<String>,
    /// Distinct accusers needed to evict a controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ban_quorum: Option<usize>,
    /// Largest frame accepted or sent, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<usize>,
    /// A controller silent this long is considered failed, `<n><unit>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advert_max_age: Option<String>,
    /// Most members remembered (default 10 000); it also sets the caps that scale with it
    /// (stored rumors, caches, the per-link request budget of 4 × this per round).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_members: Option<usize>,
    /// How far ahead of this host's clock a rumor's signed issue time may be, `<n><unit>`
    /// (default: one gossip period). Rumors live from their signed issue time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_clock_skew: Option<String>,
    /// Public keys (PEM files, relative paths beside the config) of the certificate
    /// authorities trusted; several, so that they can rotate. Empty: open membership.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_cas: Vec<PathBuf>,
    /// This controller's certificate (from `overlay-network cert issue`); required with
    /// `trusted_cas`. Re-read while running, so a renewal needs no restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
}

fn default_protocol() -> u16 {
    PROTOCOL_VERSION
}
fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_min_peers() -> usize {
    1
}
fn default_max_peers() -> usize {
    10
}
fn default_cron() -> String {
    "@every 10s".into()
}
fn default_log_level() -> String {
    "INFO".into()
}

impl FileConfig {
    /// A configuration with the seed's defaults for controller `me`.
    pub fn new(me: RcEntry) -> Self {
        FileConfig {
            development_mode: false,
            protocol: default_protocol(),
            port: default_port(),
            min_peers: default_min_peers(),
            max_peers: default_max_peers(),
            cron: default_cron(),
            cost_estimator_path: String::new(),
            log_level: default_log_level(),
            me,
            connected_route_controllers: Vec::new(),
            connected_autonomous_systems: Vec::new(),
            key_file: None,
            cluster_keys: Vec::new(),
            rpc_addr: None,
            rpc_token: None,
            reject_threshold: None,
            ban_duration: None,
            ban_quorum: None,
            max_frame_bytes: None,
            advert_max_age: None,
            max_clock_skew: None,
            max_members: None,
            trusted_cas: Vec::new(),
            cert_file: None,
        }
    }

    /// The JSON form, one line, fields in the seed's order (as the original tool printed).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Own AS links as the core sees them.
    pub fn links(&self) -> Vec<AsLink> {
        self.connected_autonomous_systems
            .iter()
            .map(|a| AsLink {
                asn: Asn(a.number),
                capacity: a.link_capacity,
                cost: a.cost,
            })
            .collect()
    }
}

/// A configuration the daemon refuses: one line naming where and which field.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{location}: {field}: {message}")]
pub struct ConfigFileError {
    /// `FILE:LINE` when the line is known, else `FILE`.
    pub location: String,
    /// The field, as named in the file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Where each entry of a file is, to name lines in errors.
#[derive(Debug, Clone, Default)]
pub struct Source {
    path: PathBuf,
    /// Line of each top-level field (JSON) or entry (`.conf`: `self`,
    /// `connected_route_controllers[i]`, `connected_autonomous_systems[i]`).
    lines: BTreeMap<String, usize>,
}

impl Source {
    /// A source with no line information (for generated configurations).
    pub fn unnamed(path: impl Into<PathBuf>) -> Self {
        Source {
            path: path.into(),
            lines: BTreeMap::new(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `FILE:LINE` for a field path such as `connected_route_controllers[1].ip`.
    fn locate(&self, field: &str) -> String {
        let entry = field.split('.').next().unwrap_or(field);
        let top = entry.split('[').next().unwrap_or(entry);
        match self.lines.get(entry).or_else(|| self.lines.get(top)) {
            Some(line) => format!("{}:{line}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }

    /// An error about `field`.
    pub fn error(&self, field: impl Into<String>, message: impl fmt::Display) -> ConfigFileError {
        let field = field.into();
        ConfigFileError {
            location: self.locate(&field),
            field,
            message: message.to_string(),
        }
    }
}

/// Reads a configuration file: `.conf` is the raw format, anything else JSON.
pub fn load(path: &Path) -> Result<(FileConfig, Source), ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
        location: path.display().to_string(),
        field: "file".into(),
        message: format!("cannot read: {e}"),
    })?;
    if path.extension().is_some_and(|e| e == "conf") {
        parse_conf(path, &text)
    } else {
        parse_json(path, &text)
    }
}

/// Parses the JSON format.
pub fn parse_json(path: &Path, text: &str) -> Result<(FileConfig, Source), ConfigFileError> {
    let config: FileConfig = serde_json::from_str(text).map_err(|e| {
        let field = json_error_field(&e.to_string());
        ConfigFileError {
            location: format!("{}:{}:{}", path.display(), e.line(), e.column()),
            field,
            message: strip_position(&e.to_string()),
        }
    })?;
    let mut lines = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find('"') {
            let after = &rest[start + 1..];
            let Some(end) = after.find('"') else { break };
            let key = &after[..end];
            if after[end + 1..].trim_start().starts_with(':') {
                lines.entry(key.to_string()).or_insert(i + 1);
            }
            rest = &after[end + 1..];
        }
    }
    Ok((
        config,
        Source {
            path: path.to_path_buf(),
            lines,
        },
    ))
}

/// The field a serde error talks about (`unknown field `x``, `missing field `x``), else the
/// whole document.
fn json_error_field(message: &str) -> String {
    for marker in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            return rest.split('`').next().unwrap_or(rest).to_string();
        }
    }
    "json".into()
}

/// serde_json appends " at line L column C"; the location already says it.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Parses the raw format: own entry `ID ASN IP`, the number of peers, one `ID ASN IP:PORT`
/// line per peer, the number of links, one `ASN CAPACITY COST` line per link. Text after
/// `;` is a comment; blank lines are skipped.
pub fn parse_conf(path: &Path, text: &str) -> Result<(FileConfig, Source), ConfigFileError> {
    let mut source = Source::unnamed(path);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split(';').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty());
    let mut last_line = 0;
    let mut next = |field: &str, source: &mut Source| {
        let (n, line) = lines.next().ok_or_else(|| ConfigFileError {
            location: format!("{}:{}", path.display(), last_line + 1),
            field: field.to_string(),
            message: "the file ends here".into(),
        })?;
        last_line = n;
        source.lines.insert(field.to_string(), n);
        Ok::<_, ConfigFileError>(line.split_whitespace().collect::<Vec<_>>())
    };

    let words = next("self", &mut source)?;
    let me = rc_entry(&source, "self", &words)?;
    let mut config = FileConfig::new(me);

    let words = next("connected_route_controllers", &mut source)?;
    let peers = count(&source, "connected_route_controllers", &words)?;
    for i in 0..peers {
        let field = format!("connected_route_controllers[{i}]");
        let words = next(&field, &mut source)?;
        config
            .connected_route_controllers
            .push(rc_entry(&source, &field, &words)?);
    }

    let words = next("connected_autonomous_systems", &mut source)?;
    let links = count(&source, "connected_autonomous_systems", &words)?;
    for i in 0..links {
        let field = format!("connected_autonomous_systems[{i}]");
        let words = next(&field, &mut source)?;
        let [asn, capacity, cost] = fields::<3>(&source, &field, &words, "ASN CAPACITY COST")?;
        config.connected_autonomous_systems.push(AsEntry {
            number: number(&source, &field, "number", asn)?,
            link_capacity: number(&source, &field, "link_capacity", capacity)?,
            cost: number(&source, &field, "cost", cost)?,
        });
    }
    if let Ok(words) = next("end", &mut source) {
        return Err(source.error(
            "end",
            format!(
                "unexpected {:?} after the {links} links announced",
                words.join(" ")
            ),
        ));
    }
    source.lines.remove("end");
    Ok((config, source))
}

fn rc_entry(source: &Source, field: &str, words: &[&str]) -> Result<RcEntry, ConfigFileError> {
    let [id, asn, ip] = fields::<3>(source, field, words, "ID ASN IP")?;
    Ok(RcEntry {
        id: number(source, field, "id", id)?,
        autonomous_system_number: number(source, field, "autonomous_system_number", asn)?,
        ip: ip.to_string(),
    })
}

fn count(source: &Source, field: &str, words: &[&str]) -> Result<usize, ConfigFileError> {
    let [n] = fields::<1>(source, field, words, "a count")?;
    n.parse()
        .map_err(|_| source.error(field, format!("expected a count, found {n:?}")))
}

fn fields<'a, const N: usize>(
    source: &Source,
    field: &str,
    words: &[&'a str],
    expected: &str,
) -> Result<[&'a str; N], ConfigFileError> {
    <[&str; N]>::try_from(words).map_err(|_| {
        source.error(
            field,
            format!("expected {expected}, found {:?}", words.join(" ")),
        )
    })
}

fn number<T: std::str::FromStr>(
    source: &Source,
    entry: &str,
    name: &str,
    word: &str,
) -> Result<T, ConfigFileError> {
    word.parse().map_err(|_| {
        source.error(
            format!("{entry}.{name}"),
            format!("expected a whole number, found {word:?}"),
        )
    })
}

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
        let err = |field: &str, message: String| source.error(field, message);
        let mut warnings = Vec::new();
        if file.protocol != PROTOCOL_VERSION {
            return Err(err(
                "protocol",
                format!(
                    "version {} is not spoken here (this build speaks {PROTOCOL_VERSION})",
                    file.protocol
                ),
            ));
        }
        if !file.cost_estimator_path.is_empty() {
            warnings.push(format!(
                "cost_estimator_path {:?} is not supported and is ignored: link costs come from \
                 connected_autonomous_systems",
                file.cost_estimator_path
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

        let listen = match &overrides.listen {
            Some(text) => text.parse::<SocketAddr>().map_err(|_| ConfigFileError {
                location: "command line".into(),
                field: "--listen".into(),
                message: format!("{text:?} is not an IP:port address"),
            })?,
            None => own_address(&file.me.ip, file.port).map_err(|m| err("self.ip", m))?,
        };
        if listen.ip().is_unspecified() {
            return Err(err(
                "self.ip",
                format!(
                    "{} cannot be advertised to peers; use this host's address",
                    listen.ip()
                ),
            ));
        }

        let mut bootstrap = Vec::new();
        let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
        for (i, peer) in file.connected_route_controllers.iter().enumerate() {
            let field = format!("connected_route_controllers[{i}]");
            if peer.id == file.me.id {
                return Err(err(
                    &format!("{field}.id"),
                    format!(
                        "duplicate identity: RC{} is this controller's own id (self.id)",
                        peer.id
                    ),
                ));
            }
            if let Some(first) = seen.insert(peer.id, i) {
                return Err(err(
                    &format!("{field}.id"),
                    format!(
                        "duplicate identity: RC{} is also connected_route_controllers[{first}]",
                        peer.id
                    ),
                ));
            }
            let addr = peer_address(&peer.ip).map_err(|m| err(&format!("{field}.ip"), m))?;
            if addr == listen.to_string() {
                return Err(err(
                    &format!("{field}.ip"),
                    format!("{addr} is this controller's own address"),
                ));
            }
            bootstrap.push(Addr::from(addr));
        }

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

        let (cluster_keys, key_source) = cluster_keys(file, source, overrides)?;
        let key_source = match key_source {
            KeySource::Missing if file.development_mode => KeySource::Development,
            KeySource::Missing if require_cluster_key => {
                return Err(err(
                    "cluster_keys",
                    "no cluster key: set cluster_keys, OVERLAY_CLUSTER_KEY or \
                     --cluster-key-file (make one with `overlay-network keygen --cluster-key`), \
                     or set development_mode for an insecure test cluster"
                        .into(),
                ));
            }
            other => other,
        };
        let cluster_keys = match key_source {
            KeySource::Development => vec![ClusterKey::from_bytes(DEVELOPMENT_KEY)],
            _ => cluster_keys,
        };

        let mut core = Config::new(
            NodeId(file.me.id),
            Asn(file.me.autonomous_system_number),
            Addr::from(listen.to_string()),
            cluster_keys,
        );
        core.links = file.links();
        core.bootstrap = bootstrap;
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
        if let Some(text) = &file.advert_max_age {
            core.max_advert_age = Some(duration(text).map_err(|m| err("advert_max_age", m))?);
        }
        if let Some(v) = file.max_members {
            core.max_members = v;
        }
        if let Some(text) = &file.max_clock_skew {
            core.max_clock_skew = Some(duration(text).map_err(|m| err("max_clock_skew", m))?);
        }
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
fn beside(config: &Path, path: &Path) -> PathBuf {
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
fn core_error(file: &FileConfig, source: &Source, e: &ConfigError) -> ConfigFileError {
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

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/seed");

    fn seed(name: &str) -> PathBuf {
        Path::new(SEED).join(name)
    }

    #[test]
    fn conf_files_convert_to_the_seed_json_byte_for_byte() {
        for rc in ["rc1", "rc2", "rc3"] {
            let (conf, _) = load(&seed(&format!("{rc}.conf"))).unwrap();
            let json = std::fs::read_to_string(seed(&format!("{rc}.json"))).unwrap();
            assert_eq!(conf.to_json(), json.trim_end(), "{rc}");
            let (parsed, _) = load(&seed(&format!("{rc}.json"))).unwrap();
            assert_eq!(parsed, conf, "{rc}");
        }
    }

    fn conf_error(text: &str) -> String {
        parse_conf(Path::new("x.conf"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn conf_errors_name_the_line_and_the_field() {
        assert_eq!(
            conf_error("1 100 10.0.0.1:1\n1 ; peers\n2 x 10.0.0.2:1\n0\n"),
            "x.conf:3: connected_route_controllers[0].autonomous_system_number: \
             expected a whole number, found \"x\""
        );
        assert_eq!(
            conf_error("1 100 10.0.0.1:1\n0\n\n2\n10 2 5\n"),
            "x.conf:6: connected_autonomous_systems[1]: the file ends here"
        );
        assert_eq!(
            conf_error("1 100\n"),
            "x.conf:1: self: expected ID ASN IP, found \"1 100\""
        );
        assert_eq!(
            conf_error("1 100 ip\n0\n0\n7\n"),
            "x.conf:4: end: unexpected \"7\" after the 0 links announced"
        );
    }

    #[test]
    fn json_errors_name_the_line_and_the_field() {
        let e = parse_json(Path::new("x.json"), "{\n\"self\": {\"id\": 1, \"autonomous_system_number\": 1, \"ip\": \"a\"},\n\"crom\": 1}")
            .unwrap_err();
        assert_eq!(e.location, "x.json:3:6");
        assert_eq!(e.field, "crom");
    }

    fn resolve(file: &FileConfig) -> Result<Settings, ConfigFileError> {
        Settings::resolve(
            file,
            &Source::unnamed("t.json"),
            &Overrides::default(),
            true,
        )
    }

    fn base() -> FileConfig {
        let mut f = FileConfig::new(RcEntry {
            id: 1,
            autonomous_system_number: 100,
            ip: "127.0.0.1".into(),
        });
        f.cluster_keys = vec![ClusterKey::from_bytes([3; 32]).to_base64()];
        f
    }

    #[test]
    fn addresses_and_defaults_resolve() {
        let s = resolve(&base()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:1450");
        assert_eq!(s.rpc.to_string(), "127.0.0.1:11450");
        assert_eq!(s.key_file, PathBuf::from("t.pem"));
        assert_eq!(s.core.gossip_period, Duration::from_secs(10));
        assert_eq!(s.key_source, KeySource::Config);
    }

    #[test]
    fn wrong_fields_are_named() {
        type Mutation = fn(&mut FileConfig);
        let cases: [(Mutation, &str); 10] = [
            (|f| f.cluster_keys.clear(), "cluster_keys"),
            (|f| f.me.ip = "10.0.0.1:x".into(), "self.ip"),
            (|f| f.me.ip = "0.0.0.0".into(), "self.ip"),
            (
                |f| {
                    f.connected_route_controllers = vec![RcEntry {
                        id: 2,
                        autonomous_system_number: 2,
                        ip: "10.0.0.2".into(),
                    }]
                },
                "connected_route_controllers[0].ip",
            ),
            (
                |f| {
                    f.connected_route_controllers = vec![RcEntry {
                        id: 1,
                        autonomous_system_number: 2,
                        ip: "10.0.0.2:1".into(),
                    }]
                },
                "connected_route_controllers[0].id",
            ),
            (|f| f.rpc_addr = Some("10.0.0.1:1".into()), "rpc_addr"),
            (|f| f.cron = "@hourly".into(), "cron"),
            (|f| f.ban_duration = Some("forever".into()), "ban_duration"),
            (|f| f.protocol = 2, "protocol"),
            (
                |f| {
                    f.connected_autonomous_systems = vec![AsEntry {
                        number: 100,
                        link_capacity: 1,
                        cost: 1,
                    }]
                },
                "connected_autonomous_systems[0]",
            ),
        ];
        for (mutate, field) in cases {
            let mut f = base();
            mutate(&mut f);
            let e = resolve(&f).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn key_sources_take_precedence_in_order() {
        let mut f = base();
        let env = ClusterKey::from_bytes([9; 32]);
        let overrides = Overrides {
            env_cluster_key: Some(env.to_base64()),
            ..Overrides::default()
        };
        let s = Settings::resolve(&f, &Source::unnamed("t.json"), &overrides, true).unwrap();
        assert_eq!(s.key_source, KeySource::Env);
        assert_eq!(s.core.cluster_keys[0].to_base64(), env.to_base64());
        f.cluster_keys.clear();
        f.development_mode = true;
        assert_eq!(resolve(&f).unwrap().key_source, KeySource::Development);
        f.development_mode = false;
        let check = Settings::resolve(&f, &Source::unnamed("t"), &Overrides::default(), false);
        assert_eq!(check.unwrap().key_source, KeySource::Missing);
    }
}
