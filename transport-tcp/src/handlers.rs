//! Event handlers (`event_handlers`): each runs its command through `/bin/sh -c` for the
//! events it names, one run at a time, with the event as one JSON object on stdin and
//! `OVERLAY_EVENT` and `OVERLAY_NODE` in its environment. Its queue is bounded: when it
//! falls behind, events are dropped and counted. A run past its timeout is killed. Nothing
//! here can block gossip.

use std::sync::Arc;

use tracing::{debug, warn};

use overlay_core::NodeId;

use crate::child;
use crate::config::Handler;
use crate::counters::Counters;
use crate::events::Subscription;

/// Events a handler may fall behind before it loses some.
pub(crate) const QUEUE: usize = 64;

/// Runs handler number `index` of controller `own` on the events of `subscription`, until
/// the daemon stops or a reload replaces it.
pub(crate) async fn run(
    index: usize,
    handler: Handler,
    subscription: Subscription,
    own: NodeId,
    counters: Arc<Counters>,
) {
    let label = |extra: &str| format!("{{handler=\"{index}\"{extra}}}");
    let dropped = Arc::clone(&subscription.dropped);
    counters.link("event_handler_dropped_total", label(""), dropped);
    while let Ok(notice) = subscription.rx.recv().await {
        if !handler.events.contains(&notice.event) {
            continue;
        }
        let mut command = smol::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&handler.command)
            .env("OVERLAY_EVENT", notice.event.name())
            .env("OVERLAY_NODE", notice.node.unwrap_or(own.0).to_string());
        let input = serde_json::to_vec(&*notice).unwrap_or_default();
        counters.add("event_handler_runs_total", label(""));
        match child::run(command, input, handler.timeout).await {
            Ok(_) => debug!(handler = index, event = %notice.event, "event handler ran"),
            Err(failure) => {
                warn!(handler = index, event = %notice.event, command = %handler.command, "event handler failed: {failure}");
                let reason = format!(",reason=\"{}\"", failure.label());
                counters.add("event_handler_failures_total", label(&reason));
            }
        }
    }
}
