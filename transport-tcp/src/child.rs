//! Running one external command for the daemon (the cost estimator, an event handler):
//! its input written to stdin, its output read up to a bound, all within a time limit
//! after which it is killed. The daemon never waits on it from the node's task.

use std::process::Stdio;
use std::time::Duration;

use smol::future;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::process::Command;

/// Most bytes of a command's output read; the rest is ignored.
pub(crate) const MAX_OUTPUT: u64 = 1 << 20;

/// Why a command failed, with the label its failure counter uses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Failure {
    /// It could not be started.
    #[error("cannot run it: {0}")]
    Spawn(String),
    /// It ran out of time and was killed.
    #[error("no result within {0:?}; killed")]
    Timeout(Duration),
    /// It exited unsuccessfully.
    #[error("{status}{}", if .stderr.is_empty() { String::new() } else { format!(": {}", .stderr) })]
    Exit {
        /// How it exited.
        status: String,
        /// The first line of what it wrote to stderr.
        stderr: String,
    },
    /// Its output was not what was expected.
    #[error("invalid output: {0}")]
    Invalid(String),
}

impl Failure {
    /// The `reason` label of the failure counters.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Failure::Spawn(_) => "spawn",
            Failure::Timeout(_) => "timeout",
            Failure::Exit { .. } => "exit",
            Failure::Invalid(_) => "invalid",
        }
    }
}

/// Runs `command` with `input` on stdin; its stdout when it exits successfully within
/// `timeout`.
pub(crate) async fn run(
    mut command: Command,
    input: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, Failure> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Spawn(e.to_string()))?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let exchange = async {
        if let Some(mut pipe) = stdin.take() {
            // A command that does not read its input is fine.
            let _ = pipe.write_all(&input).await;
        }
        let mut out = Vec::new();
        if let Some(pipe) = stdout.take() {
            let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut out).await;
        }
        let mut err = Vec::new();
        if let Some(pipe) = stderr.take() {
            let _ = pipe.take(4096).read_to_end(&mut err).await;
        }
        let status = child
            .status()
            .await
            .map_err(|e| Failure::Spawn(e.to_string()))?;
        if status.success() {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&err);
        Err(Failure::Exit {
            status: status.to_string(),
            stderr: stderr.lines().next().unwrap_or("").trim().to_string(),
        })
    };
    future::or(exchange, async {
        smol::Timer::after(timeout).await;
        Err(Failure::Timeout(timeout))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn output_exit_and_timeout() {
        smol::block_on(async {
            let second = Duration::from_secs(5);
            let echoed = run(sh("tr a-z A-Z"), b"links".to_vec(), second).await;
            assert_eq!(echoed, Ok(b"LINKS".to_vec()));
            let failed = run(sh("echo broken >&2; exit 3"), Vec::new(), second).await;
            assert_eq!(
                failed.as_ref().map_err(Failure::label),
                Err("exit"),
                "{failed:?}"
            );
            assert!(failed.unwrap_err().to_string().ends_with(": broken"));
            let started = std::time::Instant::now();
            let slow = run(sh("sleep 10"), Vec::new(), Duration::from_millis(200)).await;
            assert_eq!(slow, Err(Failure::Timeout(Duration::from_millis(200))));
            assert!(started.elapsed() < Duration::from_secs(5), "not waited for");
            let missing = Command::new("/nonexistent/estimator");
            let spawn = run(missing, Vec::new(), second).await;
            assert_eq!(spawn.map_err(|e| e.label()), Err("spawn"));
        });
    }
}
