//! Logging on stderr for the daemon and the demo, its level changeable while running (a
//! reload of `log_level`) unless `RUST_LOG` sets the filter.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// What changes the log level of the running process.
type LogLevel = reload::Handle<EnvFilter, Registry>;

static LOG_LEVEL: OnceLock<LogLevel> = OnceLock::new();

/// Sets up logging on stderr: `RUST_LOG` if set, else `level`.
pub fn init_logging(level: LevelFilter) {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = LOG_LEVEL.set(handle);
    }
}

/// `RUST_LOG` if set, else `level`.
fn filter_for(level: LevelFilter) -> EnvFilter {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        _ => EnvFilter::default().add_directive(level.into()),
    }
}

/// Logs at `level` from now on (unless `RUST_LOG` sets the filter).
pub(crate) fn set_log_level(level: LevelFilter) {
    if let Some(handle) = LOG_LEVEL.get() {
        let _ = handle.reload(filter_for(level));
    }
}
