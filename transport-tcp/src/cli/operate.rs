//! The operator's subcommands on a running daemon: `watch` (its events as they happen),
//! `reload`, `keyring list|install|use|remove`; and the packaging helpers `completions`
//! and `man`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::{CommandFactory, Subcommand};
use serde_json::{Value, json};

use super::{Cli, CliError, RpcArgs, client};
use crate::client::{Client, ClientError};
use crate::events::Notice;

/// Time allowed for a reload or keyring change (a reload may wait for the node).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// `overlay-network keyring ...`.
#[derive(Debug, Subcommand)]
pub enum KeyringCmd {
    /// List the keys by id; the primary one dials.
    List {
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
        /// Print `{"keys": [{"id", "primary"}], "file"}`.
        #[arg(long)]
        json: bool,
    },
    /// Accept a new key (base64) besides those in use.
    Install {
        /// The key (from `overlay-network keygen --cluster-key`).
        key: String,
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Dial with this key from now on (the key, or its id from `keyring list`).
    Use {
        /// The key or its id.
        key: String,
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
    },
    /// Stop accepting this key (refused for the key in use).
    Remove {
        /// The key or its id.
        key: String,
        /// Where the control API is.
        #[command(flatten)]
        rpc: RpcArgs,
    },
}

/// A refusal's one-line reason (the daemon's `{"error": ...}`), else the error as is.
fn refusal(e: ClientError) -> CliError {
    match &e {
        ClientError::Status { body, .. } => {
            match serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
            {
                Some(line) => CliError::Refused(line),
                None => e.into(),
            }
        }
        _ => e.into(),
    }
}

/// `reload`: prints what changed, or fails with the daemon's reason.
pub(super) fn reload(client: &Client) -> Result<(), CliError> {
    let answer = client
        .post_json("/v1/reload", &json!({}), CHANGE_TIMEOUT)
        .map_err(refusal)?;
    let answer: Value = serde_json::from_slice(&answer)?;
    let changed: Vec<&str> = answer["changed"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if changed.is_empty() {
        println!("reloaded: nothing changed");
    } else {
        println!("reloaded: {}", changed.join(", "));
    }
    Ok(())
}

/// `keyring ...`.
pub(super) fn keyring(command: KeyringCmd) -> Result<(), CliError> {
    let (rpc, change, key) = match command {
        KeyringCmd::List { rpc, json } => {
            let answer: Value = serde_json::from_slice(&client(&rpc)?.get("/v1/keyring")?)?;
            if json {
                println!("{answer}");
            } else {
                print!("{}", ring(&answer));
            }
            return Ok(());
        }
        KeyringCmd::Install { key, rpc } => (rpc, "install", key),
        KeyringCmd::Use { key, rpc } => (rpc, "use", key),
        KeyringCmd::Remove { key, rpc } => (rpc, "remove", key),
    };
    let body = json!({"change": change, "key": key});
    let answer = client(&rpc)?
        .post_json("/v1/keyring", &body, CHANGE_TIMEOUT)
        .map_err(refusal)?;
    print!("{}", ring(&serde_json::from_slice(&answer)?));
    Ok(())
}

/// A keyring answer as text: one key id per line, the primary marked.
fn ring(answer: &Value) -> String {
    let mut out = String::new();
    for key in answer["keys"].as_array().map_or(&[][..], Vec::as_slice) {
        let mark = if key["primary"] == Value::Bool(true) {
            "  (primary: dials)"
        } else {
            ""
        };
        out.push_str(&format!("{}{mark}\n", key["id"].as_str().unwrap_or("?")));
    }
    match answer["file"].as_str() {
        Some(file) => out.push_str(&format!("saved in {file}\n")),
        None => out.push_str(
            "not saved: without --cluster-key-file, a reload or restart goes back to the configured keys\n",
        ),
    }
    out
}

/// `watch`: each event as a human line (or its JSON), until interrupted or the daemon
/// ends the stream.
pub(super) fn watch(client: &Client, json: bool) -> Result<(), CliError> {
    let mut stdout = std::io::stdout();
    client.stream("/v1/events", |line| {
        if line.is_empty() {
            return true;
        }
        let text = if json {
            line.to_string()
        } else {
            match serde_json::from_str::<Notice>(line) {
                Ok(n) => format!("{} {}", clock(n.time_ms), n.line()),
                Err(_) => line.to_string(),
            }
        };
        writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_ok()
    })?;
    Ok(())
}

/// `HH:MM:SS.mmm` (UTC) of Unix milliseconds.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

/// `completions SHELL`.
pub(super) fn completions(shell: clap_complete::Shell) {
    let mut command = Cli::command();
    clap_complete::generate(
        shell,
        &mut command,
        "overlay-network",
        &mut std::io::stdout(),
    );
}

/// `man [--out FILE]`.
pub(super) fn man(out: Option<&Path>) -> Result<(), CliError> {
    let mut page = Vec::new();
    let written = clap_mangen::Man::new(Cli::command()).render(&mut page);
    let written = written.and_then(|()| match out {
        Some(path) => crate::keys::write_atomically(path, &page, 0o644, true)
            .map_err(|e| std::io::Error::other(e.to_string())),
        None => std::io::stdout().write_all(&page),
    });
    written.map_err(|source| CliError::Write {
        path: out.map_or_else(|| "stdout".into(), Path::to_path_buf),
        source,
    })
}
