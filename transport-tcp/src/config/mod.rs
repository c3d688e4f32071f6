//! Configuration files: the seed's JSON format and raw `.conf` format (both read into
//! [`FileConfig`]), the conversion between them, and their resolution into what the daemon
//! runs with ([`Settings`]: the core [`Config`], listen and RPC addresses, key file, log
//! level). Every error is one line naming the file, the line when known, and the field.

mod hooks;
mod resolve;

pub use hooks::{DEFAULT_HANDLER_TIMEOUT, Handler, HandlerEntry};
pub(crate) use resolve::core_error;
pub use resolve::{DEVELOPMENT_KEY, KeySource, Overrides, Settings, duration};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use overlay_core::PROTOCOL_VERSION;
use overlay_core::{AsLink, Asn};
use serde::{Deserialize, Serialize};
use thiserror::Error;

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

impl From<&AsLink> for AsEntry {
    fn from(link: &AsLink) -> Self {
        AsEntry {
            number: link.asn.0,
            link_capacity: link.capacity,
            cost: link.cost,
        }
    }
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
    /// A command (a path, optionally followed by arguments) run once per gossip round to
    /// set the links' costs; empty: the configured links are used as they are.
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
    /// An unchanged advertisement is signed again every this many gossip rounds (default
    /// 30; 1: every round).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advert_refresh: Option<u32>,
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
    /// Commands run on operator events (`member-join`, `route-change`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_handlers: Vec<HandlerEntry>,
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
            advert_refresh: None,
            advert_max_age: None,
            max_clock_skew: None,
            max_members: None,
            trusted_cas: Vec::new(),
            cert_file: None,
            event_handlers: Vec::new(),
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
        config
            .connected_autonomous_systems
            .push(link_entry(&source, &field, &words)?);
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

/// A link in the raw format: `ASN CAPACITY COST` (the words of one line).
pub(crate) fn link_entry(
    source: &Source,
    field: &str,
    words: &[&str],
) -> Result<AsEntry, ConfigFileError> {
    let [asn, capacity, cost] = fields::<3>(source, field, words, "ASN CAPACITY COST")?;
    Ok(AsEntry {
        number: number(source, field, "number", asn)?,
        link_capacity: number(source, field, "link_capacity", capacity)?,
        cost: number(source, field, "cost", cost)?,
    })
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

#[cfg(test)]
mod tests;
