//! The Prometheus text exposition of a node's counters (the core's protocol metrics, the
//! driver's transport counters and the operator's commands) and latency histograms,
//! served at `/metrics`.

use std::fmt::Write;

use crate::driver::View;

/// One metric family: its name (after `overlay_`), type, help text and samples (label
/// set, value).
type Family = (&'static str, &'static str, &'static str, Vec<(String, f64)>);

/// The operator's command counters: name (after `overlay_`), help text.
const COMMANDS: [(&str, &str); 5] = [
    (
        "cost_estimator_runs_total",
        "Runs of the cost estimator (cost_estimator_path).",
    ),
    (
        "cost_estimator_failures_total",
        "Cost estimator runs that failed and kept the links, by reason (spawn, exit, timeout, invalid).",
    ),
    (
        "event_handler_runs_total",
        "Event handler runs, by handler (its index in event_handlers).",
    ),
    (
        "event_handler_failures_total",
        "Event handler runs that failed, by handler and reason (spawn, exit, timeout).",
    ),
    (
        "event_handler_dropped_total",
        "Events an event handler lost because its queue was full, by handler.",
    ),
];

/// Renders every metric in the Prometheus text format (version 0.0.4); `commands` are the
/// operator's counters (family, labels, value).
pub(crate) fn render(view: &View<'_>, commands: &[(&'static str, String, u64)]) -> String {
    let mut out = String::new();
    let families = [
        identity(view),
        rumors(view),
        links(view),
        sockets(view),
        events(view),
        operator(commands),
    ];
    for (name, kind, help, samples) in families.into_iter().flatten() {
        let _ = writeln!(out, "# HELP overlay_{name} {help}");
        let _ = writeln!(out, "# TYPE overlay_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "overlay_{name}{labels} {value}");
        }
    }
    out
}

/// The operator's command counters, every family named even before its first count.
fn operator(commands: &[(&'static str, String, u64)]) -> Vec<Family> {
    COMMANDS
        .iter()
        .map(|&(name, help)| {
            let mut samples: Vec<(String, f64)> = commands
                .iter()
                .filter(|(family, _, _)| *family == name)
                .map(|(_, labels, v)| (labels.clone(), *v as f64))
                .collect();
            if samples.is_empty() && name == "cost_estimator_runs_total" {
                samples.push((String::new(), 0.0));
            }
            (name, "counter", help, samples)
        })
        .collect()
}

/// One unlabelled sample.
fn one(v: impl TryInto<u64>) -> Vec<(String, f64)> {
    vec![(String::new(), v.try_into().unwrap_or(u64::MAX) as f64)]
}

/// Who this controller is and what it sees: identity, peers, members, routes.
fn identity(view: &View<'_>) -> Vec<Family> {
    let status = view.node.status();
    let info = format!(
        "{{node=\"{}\",asn=\"{}\",fingerprint=\"{}\",version=\"{}\"}}",
        status.node.0,
        status.asn.0,
        status.fingerprint,
        env!("CARGO_PKG_VERSION")
    );
    vec![
        (
            "info",
            "gauge",
            "Constant 1, labelled with this controller's identity.",
            vec![(info, 1.0)],
        ),
        (
            "peers",
            "gauge",
            "Established direct peers.",
            one(status.peers),
        ),
        (
            "members",
            "gauge",
            "Live members, this controller included.",
            one(status.members),
        ),
        (
            "routes",
            "gauge",
            "Destinations in the routing table.",
            one(status.routes),
        ),
    ]
}

/// The core's rumor counters and rejections.
fn rumors(view: &View<'_>) -> Vec<Family> {
    let m = view.node.metrics();
    let rejects = m
        .rejects
        .iter()
        .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n as f64))
        .collect();
    vec![
        (
            "rumors_in_total",
            "counter",
            "Rumors received, before any check.",
            one(m.rumors_in),
        ),
        (
            "rumors_accepted_total",
            "counter",
            "Rumors accepted as new.",
            one(m.rumors_accepted),
        ),
        (
            "rumors_duplicate_total",
            "counter",
            "Rumors dropped as duplicates or stale before any signature check.",
            one(m.rumors_duplicate),
        ),
        (
            "rumors_out_total",
            "counter",
            "Rumor copies sent to direct peers.",
            one(m.rumors_out),
        ),
        (
            "signatures_verified_total",
            "counter",
            "Origin signatures verified.",
            one(m.signatures_verified),
        ),
        (
            "rejects_total",
            "counter",
            "Frames or messages rejected, by reason.",
            rejects,
        ),
    ]
}

/// The core's link counters, the handshake and propagation latencies, and its verdicts.
fn links(view: &View<'_>) -> Vec<Family> {
    let m = view.node.metrics();
    let telemetry = view.telemetry;
    vec![
        (
            "handshakes_total",
            "counter",
            "Handshakes completed.",
            one(m.handshakes),
        ),
        (
            "handshake_seconds",
            "histogram",
            "Time from a connection opening to its handshake completing.",
            telemetry.handshake.samples(),
        ),
        (
            "rumor_propagation_seconds",
            "histogram",
            "Time from a rumor's signature at its origin to its acceptance here (origin clock to this clock).",
            telemetry.propagation.samples(),
        ),
        (
            "bans_total",
            "counter",
            "Direct peers this controller banned.",
            one(m.bans),
        ),
        (
            "evictions_total",
            "counter",
            "Members evicted by a quorum.",
            one(m.evictions),
        ),
        (
            "route_changes_total",
            "counter",
            "Routing table changes (destinations changed, summed).",
            one(m.route_changes),
        ),
        (
            "frames_in_total",
            "counter",
            "Frames received.",
            one(m.frames_in),
        ),
        (
            "frames_out_total",
            "counter",
            "Frames sent.",
            one(m.frames_out),
        ),
        (
            "frame_bytes_in_total",
            "counter",
            "Frame bytes received.",
            one(m.bytes_in),
        ),
        (
            "frame_bytes_out_total",
            "counter",
            "Frame bytes sent.",
            one(m.bytes_out),
        ),
    ]
}

/// The driver's sockets, dials and write queues.
fn sockets(view: &View<'_>) -> Vec<Family> {
    let t = view.stats;
    vec![
        (
            "connections",
            "gauge",
            "TCP connections open.",
            one(t.connections),
        ),
        (
            "connections_closing",
            "gauge",
            "Closed TCP connections whose sockets still flush or linger.",
            one(t.closing),
        ),
        (
            "connections_accepted_total",
            "counter",
            "Inbound connections accepted.",
            one(t.accepted),
        ),
        (
            "connections_refused_total",
            "counter",
            "Inbound connections closed at once: too many sockets held (open, closing, dialing).",
            one(t.refused),
        ),
        (
            "dials_total",
            "counter",
            "Outbound connections attempted.",
            one(t.dials),
        ),
        (
            "dial_failures_total",
            "counter",
            "Outbound connections that failed or timed out.",
            one(t.dial_failures),
        ),
        (
            "slow_peer_drops_total",
            "counter",
            "Connections dropped because their write queue filled up.",
            one(t.slow_peer_drops),
        ),
        (
            "write_queue_bytes",
            "gauge",
            "Bytes waiting in write queues.",
            one(t.queued_bytes),
        ),
    ]
}

/// The peer and membership events the driver counted, and its uptime.
fn events(view: &View<'_>) -> Vec<Family> {
    let t = view.stats;
    vec![
        (
            "peers_up_total",
            "counter",
            "Direct peers that came up.",
            one(t.peers_up),
        ),
        (
            "peers_down_total",
            "counter",
            "Direct peers that went down.",
            one(t.peers_down),
        ),
        (
            "members_joined_total",
            "counter",
            "Members that joined or came back.",
            one(t.members_joined),
        ),
        (
            "members_left_total",
            "counter",
            "Members that left gracefully.",
            one(t.members_left),
        ),
        (
            "members_expired_total",
            "counter",
            "Members silent past advert_max_age.",
            one(t.members_expired),
        ),
        (
            "uptime_seconds",
            "gauge",
            "Seconds since the daemon started.",
            vec![(String::new(), view.uptime.as_secs_f64())],
        ),
    ]
}
