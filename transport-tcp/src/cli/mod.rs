//! The `overlay-network` command line (clap): subcommands, their flags (a public contract),
//! and what each one prints. The operator's commands on a running daemon (`members`,
//! `watch`, `reload`, `keyring`) and the packaging helpers (`completions`, `man`) are in
//! [`operate`].

mod operate;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;
use thiserror::Error;

use crate::authority;
use crate::client::{Client, ClientError};
use crate::config::{self, ConfigFileError, Overrides, Settings};
use crate::daemon::{self, DaemonArgs, DaemonError};
use crate::demo::{self, DemoError, DemoOptions};
use crate::keys::{self, KeyError};
use crate::render;

/// A secure gossip overlay for route controllers.
#[derive(Debug, Parser)]
#[command(name = "overlay-network", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a route controller.
    Daemon {
        /// Configuration file: seed JSON (`.json`) or raw format (`.conf`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Node key (PKCS#8 PEM), created if missing (default: `<config stem>.pem` beside the config).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// File with the cluster keys (base64, one per line; the first is used to dial).
        #[arg(long, value_name = "FILE")]
        cluster_key_file: Option<PathBuf>,
        /// Gossip address to bind and advertise, overriding `self.ip`/`port`.
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Control API address, overriding `rpc_addr`.
        #[arg(long, value_name = "ADDR")]
        rpc: Option<String>,
        /// Fault injection (chaos build only): misbehave on purpose in this way.
        #[cfg(feature = "chaos")]
        #[arg(long, value_name = "MODE", value_enum)]
        misbehave: Option<crate::chaos::Mode>,
    },
    /// Write a new node key, or print a new cluster key.
    Keygen {
        /// Where to write the node key (never overwritten).
        #[arg(long, value_name = "FILE", required_unless_present = "cluster_key")]
        out: Option<PathBuf>,
        /// RSA key size: 2048 or 4096.
        #[arg(long, default_value_t = keys::DEFAULT_BITS, value_parser = parse_bits)]
        bits: usize,
        /// Print a new base64 cluster key instead (written to --out if given).
        #[arg(long)]
        cluster_key: bool,
    },
    /// Manage a certificate authority.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Issue or show controller certificates.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Print the JSON form of configuration files; with several, also check them as one
    /// cluster (no identity or address claimed twice).
    ParseConfig {
        /// Configuration files (`.conf` or `.json`).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Only validate; print nothing on success.
        #[arg(long)]
        check: bool,
    },
    /// Show a controller's status.
    Status {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a controller's routing table.
    Routes {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
        /// Print `{"node", "asn", "routes": [...]}`.
        #[arg(long)]
        json: bool,
    },
    /// Show a controller's direct peers.
    Peers {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the AS graph a controller sees (Graphviz DOT, or the API's JSON), e.g.
    /// `overlay-network topology --rpc ADDR | dot -Tsvg > network.svg`.
    Topology {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
        /// `dot` (`GET /v1/topology.dot`) or `json` (`GET /v1/topology`).
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Show the controllers a controller knows (members), with their state.
    Members {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
        /// Print `{"node", "asn", "members": [{"node", "asn", "addr", "state", ...}]}`.
        #[arg(long)]
        json: bool,
    },
    /// Print a controller's events as they happen (member-join, member-leave,
    /// member-failed, member-evicted, peer-up, peer-down, route-change), until interrupted.
    Watch {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
        /// One JSON object per line instead of a human line.
        #[arg(long)]
        json: bool,
    },
    /// Make a controller re-read its configuration, cluster key and certificate files and
    /// apply what changed (as SIGHUP does); exits 1, printing why, if nothing could change.
    Reload {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// List or change a running controller's cluster keyring (no restart).
    #[command(subcommand)]
    Keyring(operate::KeyringCmd),
    /// Print shell completions for bash, zsh or fish.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man page (roff) to stdout, or to a file.
    Man {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Make a controller leave the network gracefully (it then exits).
    Leave {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Print the version.
    Version,
    /// Run a whole cluster on loopback and show it work.
    Demo {
        /// A generated cluster of N controllers instead of the 3-controller example.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(2..=64))]
        nodes: Option<u16>,
        /// Keep running (until Ctrl-C) and print each controller's page and RPC address.
        #[arg(long)]
        keep: bool,
    },
}

/// How `topology` prints the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// The control API's JSON.
    Json,
}

/// `overlay-network ca ...`.
#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Create an authority: its private key at --out (mode 0600, never overwritten) and its
    /// public key beside it (`<stem>.pub.pem`), which controllers list in `trusted_cas`.
    Init {
        /// Where to write the authority's private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// RSA key size: 2048 or 4096.
        #[arg(long, default_value_t = 4096, value_parser = parse_bits)]
        bits: usize,
    },
}

/// `overlay-network cert ...`.
#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Certify that a node key speaks for controller ID of AS ASN, for N days; the file at
    /// --out is replaced atomically (renewal), and a running daemon picks it up.
    Issue {
        /// The authority's private key.
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// The controller id.
        #[arg(long, value_name = "ID")]
        node: u32,
        /// The controller's AS.
        #[arg(long, value_name = "ASN")]
        asn: u32,
        /// The node's key: its PKCS#8 private key, or its public key PEM.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Days of validity (fractions allowed; keep it short and renew, see PROTOCOL.md).
        #[arg(long, value_name = "N")]
        days: f64,
        /// Serial number (default: random).
        #[arg(long)]
        serial: Option<u64>,
        /// Where to write the certificate.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print what a certificate file certifies.
    Show {
        /// The certificate.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Where the control API is.
#[derive(Debug, Args)]
pub struct RpcArgs {
    /// Control API address (`rpc_addr` of the daemon), e.g. 127.0.0.1:18080.
    #[arg(long, value_name = "ADDR")]
    pub rpc: String,
    /// Bearer token, when the daemon has `rpc_token`.
    #[arg(long, env = "OVERLAY_RPC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token: without `rpc_token`, the daemon writes the token that
    /// state-changing requests (`leave`) need to `<key file stem>.rpc-token` at start.
    #[arg(
        long,
        value_name = "FILE",
        env = "OVERLAY_RPC_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
}

/// Why a subcommand failed.
#[derive(Debug, Error)]
pub enum CliError {
    /// A configuration or key is wrong, or the daemon could not start.
    #[error(transparent)]
    Daemon(#[from] DaemonError),
    /// The control API did not answer well.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The demo failed.
    #[error(transparent)]
    Demo(#[from] DemoError),
    /// The token file could not be read.
    #[error("{path}: cannot read the control API token: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The control API's answer was not JSON.
    #[error("unexpected answer from the control API: {0}")]
    Answer(#[from] serde_json::Error),
    /// The daemon refused a change (the one-line reason it gave).
    #[error("{0}")]
    Refused(String),
    /// A file could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Cmd::Daemon {
            config,
            key,
            cluster_key_file,
            listen,
            rpc,
            #[cfg(feature = "chaos")]
            misbehave,
        } => daemon::run(&DaemonArgs {
            config,
            overrides: Overrides {
                key_file: key,
                cluster_key_file,
                listen,
                rpc,
                env_cluster_key: std::env::var("OVERLAY_CLUSTER_KEY").ok(),
            },
            #[cfg(feature = "chaos")]
            misbehave,
        })?,
        Cmd::Keygen {
            out,
            bits,
            cluster_key,
        } => keygen(out, bits, cluster_key)?,
        Cmd::ParseConfig { files, check } => parse_config(&files, check)?,
        Cmd::Status { rpc, json } => show(&rpc, "/v1/status", json, render::status)?,
        Cmd::Routes { rpc, json } => show(&rpc, "/v1/routes", json, render::routes)?,
        Cmd::Peers { rpc, json } => show(&rpc, "/v1/peers", json, render::peers)?,
        Cmd::Topology { rpc, format } => {
            let path = match format {
                GraphFormat::Dot => "/v1/topology.dot",
                GraphFormat::Json => "/v1/topology",
            };
            print!("{}", String::from_utf8_lossy(&client(&rpc)?.get(path)?));
        }
        Cmd::Ca(command) => ca(command)?,
        Cmd::Cert(command) => cert(command)?,
        Cmd::Members { rpc, json } => show(&rpc, "/v1/members", json, render::members)?,
        Cmd::Watch { rpc, json } => operate::watch(&client(&rpc)?, json)?,
        Cmd::Reload { rpc } => operate::reload(&client(&rpc)?)?,
        Cmd::Keyring(command) => operate::keyring(command)?,
        Cmd::Completions { shell } => operate::completions(shell),
        Cmd::Man { out } => operate::man(out.as_deref())?,
        Cmd::Leave { rpc } => {
            let answer: Value = serde_json::from_slice(&client(&rpc)?.post("/v1/leave")?)?;
            println!("RC{} is leaving the network", answer["node"]);
        }
        Cmd::Version => println!(
            "overlay-network {} (protocol {}){}",
            env!("CARGO_PKG_VERSION"),
            overlay_core::PROTOCOL_VERSION,
            if cfg!(feature = "chaos") {
                " CHAOS BUILD: fault injection compiled in"
            } else {
                ""
            }
        ),
        Cmd::Demo { nodes, keep } => demo::run(&DemoOptions {
            nodes: nodes.map(usize::from),
            keep,
        })?,
    }
    Ok(())
}

/// `ca init`.
fn ca(command: CaCmd) -> Result<(), CliError> {
    let CaCmd::Init { out, bits } = command;
    let (public, ca) = authority::init(&out, bits)?;
    println!(
        "authority key written to {} (mode 0600); list {} in trusted_cas\n{}",
        out.display(),
        public.display(),
        ca.fingerprint()
    );
    Ok(())
}

/// `cert issue` and `cert show`.
fn cert(command: CertCmd) -> Result<(), CliError> {
    match command {
        CertCmd::Issue {
            ca,
            node,
            asn,
            key,
            days,
            serial,
            out,
        } => {
            let request = authority::Request {
                node,
                asn,
                days,
                serial,
            };
            let cert = authority::issue(&ca, &key, &request, &out)?;
            println!("{}: {}", out.display(), authority::describe(&cert));
        }
        CertCmd::Show { file } => {
            let cert = authority::load_certificate(&file)?;
            println!("{}", authority::describe(&cert));
        }
    }
    Ok(())
}

pub(crate) fn client(rpc: &RpcArgs) -> Result<Client, CliError> {
    let token = match &rpc.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| CliError::TokenFile {
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_string(),
        ),
        None => rpc.token.clone(),
    };
    Ok(Client::new(rpc.rpc.clone(), token))
}

/// GETs `path` and prints it as JSON (exactly as served) or as text.
fn show(rpc: &RpcArgs, path: &str, json: bool, text: fn(&Value) -> String) -> Result<(), CliError> {
    let body = client(rpc)?.get(path)?;
    let answer: Value = serde_json::from_slice(&body)?;
    if json {
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        print!("{}", text(&answer));
    }
    Ok(())
}

impl From<ConfigFileError> for CliError {
    fn from(e: ConfigFileError) -> Self {
        CliError::Daemon(e.into())
    }
}

impl From<KeyError> for CliError {
    fn from(e: KeyError) -> Self {
        CliError::Daemon(e.into())
    }
}

fn parse_bits(text: &str) -> Result<usize, String> {
    match text {
        "2048" | "4096" => text.parse().map_err(|_| text.to_string()),
        _ => Err("must be 2048 or 4096".into()),
    }
}

fn keygen(out: Option<PathBuf>, bits: usize, cluster_key: bool) -> Result<(), CliError> {
    if cluster_key {
        let key = keys::new_cluster_key()?.to_base64();
        match out {
            Some(path) => {
                keys::write_new_secret(&path, format!("{key}\n").as_bytes())?;
                println!("cluster key written to {} (mode 0600)", path.display());
            }
            None => println!("{key}"),
        }
        return Ok(());
    }
    let Some(path) = out else {
        return Ok(());
    };
    if path.exists() {
        return Err(KeyError::Exists(path).into());
    }
    let identity = keys::generate_identity(&path, bits)?;
    keys::write_identity(&path, &identity)?;
    println!("{}", identity.fingerprint());
    Ok(())
}

fn parse_config(files: &[PathBuf], check: bool) -> Result<(), CliError> {
    let mut loaded = Vec::new();
    for path in files {
        let (file, source) = config::load(path)?;
        let settings = Settings::resolve(&file, &source, &Overrides::default(), false)?;
        loaded.push((file, source, settings.listen));
    }
    for (i, (file, source, listen)) in loaded.iter().enumerate() {
        for (other, other_source, other_listen) in &loaded[..i] {
            if other_listen == listen {
                return Err(source
                    .error(
                        "self.ip",
                        format!(
                            "{listen} is also the address of {}",
                            other_source.path().display()
                        ),
                    )
                    .into());
            }
            if other.me.id == file.me.id {
                return Err(source
                    .error(
                        "self.id",
                        format!(
                            "duplicate identity: RC{} is also claimed by {}",
                            file.me.id,
                            other_source.path().display()
                        ),
                    )
                    .into());
            }
        }
    }
    if !check {
        for (file, _, _) in &loaded {
            println!("{}", file.to_json());
        }
    }
    Ok(())
}
