//! The Prometheus text exposition of a node's counters (the core's protocol metrics and
//! the driver's transport counters) and latency histograms, served at `/metrics`.

use std::fmt::Write;

use crate::driver::View;

/// Renders every metric in the Prometheus text format (version 0.0.4).
pub fn render(view: &View<'_>) -> String {
    let node = view.node;
    let status = node.status();
    let m = node.metrics();
    let t = view.stats;
    let mut out = String::new();
    let mut put = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP overlay_{name} {help}");
        let _ = writeln!(out, "# TYPE overlay_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "overlay_{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v as f64)];
    let size = |v: usize| one(v as u64);
    put(
        "info",
        "gauge",
        "Constant 1, labelled with this controller's identity.",
        &[(
            format!(
                "{{node=\"{}\",asn=\"{}\",fingerprint=\"{}\",version=\"{}\"}}",
                status.node.0,
                status.asn.0,
                status.fingerprint,
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        )],
    );
    put(
        "peers",
        "gauge",
        "Established direct peers.",
        &size(status.peers),
    );
    put(
        "members",
        "gauge",
        "Live members, this controller included.",
        &size(status.members),
    );
    put(
        "routes",
        "gauge",
        "Destinations in the routing table.",
        &size(status.routes),
    );
    put(
        "rumors_in_total",
        "counter",
        "Rumors received, before any check.",
        &one(m.rumors_in),
    );
    put(
        "rumors_accepted_total",
        "counter",
        "Rumors accepted as new.",
        &one(m.rumors_accepted),
    );
    put(
        "rumors_duplicate_total",
        "counter",
        "Rumors dropped as duplicates or stale before any signature check.",
        &one(m.rumors_duplicate),
    );
    put(
        "rumors_out_total",
        "counter",
        "Rumor copies sent to direct peers.",
        &one(m.rumors_out),
    );
    put(
        "signatures_verified_total",
        "counter",
        "Origin signatures verified.",
        &one(m.signatures_verified),
    );
    let rejects: Vec<_> = m
        .rejects
        .iter()
        .map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n as f64))
        .collect();
    put(
        "rejects_total",
        "counter",
        "Frames or messages rejected, by reason.",
        &rejects,
    );
    put(
        "handshakes_total",
        "counter",
        "Handshakes completed.",
        &one(m.handshakes),
    );
    put(
        "handshake_seconds",
        "histogram",
        "Time from a connection opening to its handshake completing.",
        &view.telemetry.handshake.samples(),
    );
    put(
        "rumor_propagation_seconds",
        "histogram",
        "Time from a rumor's signature at its origin to its acceptance here (origin clock to this clock).",
        &view.telemetry.propagation.samples(),
    );
    put(
        "bans_total",
        "counter",
        "Direct peers this controller banned.",
        &one(m.bans),
    );
    put(
        "evictions_total",
        "counter",
        "Members evicted by a quorum.",
        &one(m.evictions),
    );
    put(
        "route_changes_total",
        "counter",
        "Routing table changes (destinations changed, summed).",
        &one(m.route_changes),
    );
    put(
        "frames_in_total",
        "counter",
        "Frames received.",
        &one(m.frames_in),
    );
    put(
        "frames_out_total",
        "counter",
        "Frames sent.",
        &one(m.frames_out),
    );
    put(
        "frame_bytes_in_total",
        "counter",
        "Frame bytes received.",
        &one(m.bytes_in),
    );
    put(
        "frame_bytes_out_total",
        "counter",
        "Frame bytes sent.",
        &one(m.bytes_out),
    );
    put(
        "connections",
        "gauge",
        "TCP connections open.",
        &size(t.connections),
    );
    put(
        "connections_closing",
        "gauge",
        "Closed TCP connections whose sockets still flush or linger.",
        &size(t.closing),
    );
    put(
        "connections_accepted_total",
        "counter",
        "Inbound connections accepted.",
        &one(t.accepted),
    );
    put(
        "connections_refused_total",
        "counter",
        "Inbound connections closed at once: too many sockets held (open, closing, dialing).",
        &one(t.refused),
    );
    put(
        "dials_total",
        "counter",
        "Outbound connections attempted.",
        &one(t.dials),
    );
    put(
        "dial_failures_total",
        "counter",
        "Outbound connections that failed or timed out.",
        &one(t.dial_failures),
    );
    put(
        "slow_peer_drops_total",
        "counter",
        "Connections dropped because their write queue filled up.",
        &one(t.slow_peer_drops),
    );
    put(
        "write_queue_bytes",
        "gauge",
        "Bytes waiting in write queues.",
        &size(t.queued_bytes),
    );
    put(
        "peers_up_total",
        "counter",
        "Direct peers that came up.",
        &one(t.peers_up),
    );
    put(
        "peers_down_total",
        "counter",
        "Direct peers that went down.",
        &one(t.peers_down),
    );
    put(
        "members_joined_total",
        "counter",
        "Members that joined or came back.",
        &one(t.members_joined),
    );
    put(
        "members_left_total",
        "counter",
        "Members that left gracefully.",
        &one(t.members_left),
    );
    put(
        "members_expired_total",
        "counter",
        "Members silent past advert_max_age.",
        &one(t.members_expired),
    );
    put(
        "uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
        &[(String::new(), view.uptime.as_secs_f64())],
    );
    out
}
