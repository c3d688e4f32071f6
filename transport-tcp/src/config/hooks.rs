//! The configuration's commands: the cost estimator (`cost_estimator_path`, a command
//! line) and the event handlers (`event_handlers`), checked and resolved. Relative program
//! paths (`./x`, `dir/x`) are beside the configuration file; bare names are searched in
//! `PATH` when run.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigFileError, FileConfig, Source, resolve};
use crate::events::Kind;

/// Longest a handler may run unless its `timeout` says otherwise.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(30);

/// An event handler as written (`event_handlers[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerEntry {
    /// Event names (`member-join`, ..., `route-change`), or `*` for all of them.
    pub events: Vec<String>,
    /// A shell command line (`/bin/sh -c`), given the event as JSON on stdin.
    pub command: String,
    /// Longest one run may take, `<n><unit>` (default 30s); it is killed after that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// An event handler, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// The events it runs on.
    pub events: Vec<Kind>,
    /// The shell command line.
    pub command: String,
    /// Longest one run may take.
    pub timeout: Duration,
}

/// The cost estimator's command line, split into the program and its arguments (`None`
/// when `cost_estimator_path` is empty).
pub(super) fn estimator(
    file: &FileConfig,
    source: &Source,
) -> Result<Option<Vec<String>>, ConfigFileError> {
    let text = file.cost_estimator_path.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let mut argv = shlex::split(text)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            source.error(
                "cost_estimator_path",
                format!("{text:?} is not a command line (check its quotes)"),
            )
        })?;
    let program = Path::new(&argv[0]);
    if program.is_relative() && program.components().count() > 1 {
        argv[0] = resolve::beside(source.path(), program)
            .display()
            .to_string();
    }
    Ok(Some(argv))
}

/// The event handlers, each event name checked.
pub(super) fn handlers(
    file: &FileConfig,
    source: &Source,
) -> Result<Vec<Handler>, ConfigFileError> {
    let mut handlers = Vec::new();
    for (i, entry) in file.event_handlers.iter().enumerate() {
        let field = |name: &str| format!("event_handlers[{i}].{name}");
        if entry.command.trim().is_empty() {
            return Err(source.error(field("command"), "is empty"));
        }
        if entry.events.is_empty() {
            return Err(source.error(field("events"), "names no event (use \"*\" for all)"));
        }
        let mut events = Vec::new();
        for (j, name) in entry.events.iter().enumerate() {
            match (name.as_str(), Kind::parse(name)) {
                ("*", _) => events.extend(Kind::ALL),
                (_, Some(kind)) => events.push(kind),
                (_, None) => {
                    let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                    return Err(source.error(
                        format!("event_handlers[{i}].events[{j}]"),
                        format!("unknown event {name:?} (one of {}, or *)", known.join(", ")),
                    ));
                }
            }
        }
        events.sort();
        events.dedup();
        let timeout = match &entry.timeout {
            Some(text) => resolve::duration(text).map_err(|m| source.error(field("timeout"), m))?,
            None => DEFAULT_HANDLER_TIMEOUT,
        };
        handlers.push(Handler {
            events,
            command: entry.command.clone(),
            timeout,
        });
    }
    Ok(handlers)
}
