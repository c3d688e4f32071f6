//! Human-readable text for the CLI and the demo, from the control API's JSON answers:
//! route tables, route changes, status, peers and members.

use std::fmt::Write;

use serde_json::Value;

/// `"100 300 200"` for a route's AS path.
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub fn path(route: &Value) -> String {
    route["path"]
        .as_array()
        .map(|p| p.iter().map(Value::to_string).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A `routes --json` answer as a table.
pub(crate) fn routes(answer: &Value) -> String {
    let (routes, mut out) = listing(answer, "routes", "route");
    let _ = writeln!(
        out,
        "  {:<12} {:>6} {:>5} {:>9}  {:<10} PATH",
        "DESTINATION", "COST", "HOPS", "CAPACITY", "NEXT HOP"
    );
    for r in routes {
        let _ = writeln!(
            out,
            "  {:<12} {:>6} {:>5} {:>9}  {:<10} {}",
            format!("AS{}", r["destination"]),
            r["cost"].to_string(),
            r["hops"].to_string(),
            r["capacity"].to_string(),
            format!("AS{}", r["next_hop"]),
            path(r)
        );
    }
    out
}

/// What changed between two `routes --json` answers of one controller, one line each.
pub(crate) fn route_changes(before: &Value, after: &Value) -> Vec<String> {
    let by_destination = |answer: &Value| {
        answer["routes"]
            .as_array()
            .map(|routes| {
                routes
                    .iter()
                    .map(|r| (r["destination"].to_string(), r.clone()))
                    .collect::<std::collections::BTreeMap<_, _>>()
            })
            .unwrap_or_default()
    };
    let (old, new) = (by_destination(before), by_destination(after));
    let describe = |r: Option<&Value>| match r {
        Some(r) => format!("{} (cost {})", path(r), r["cost"]),
        None => "unreachable".into(),
    };
    let mut destinations: Vec<&String> = old.keys().chain(new.keys()).collect();
    destinations.sort_by_key(|d| d.parse::<u64>().unwrap_or(u64::MAX));
    destinations.dedup();
    destinations
        .into_iter()
        .filter(|d| old.get(*d) != new.get(*d))
        .map(|d| {
            format!(
                "AS{d}: {} -> {}",
                describe(old.get(d)),
                describe(new.get(d))
            )
        })
        .collect()
}

/// A `/v1/status` answer as text.
pub(crate) fn status(s: &Value) -> String {
    let state = if s["left"] == Value::Bool(true) {
        "left"
    } else {
        "running"
    };
    let uptime = s["uptime_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
    format!(
        "RC{} (AS{}) {state}\n  fingerprint {}\n  listen      {}\n  peers       {}\n  members     {}\n  routes      {}\n  seq         {}\n  uptime      {uptime:.1}s\n  version     {}\n",
        s["node"],
        s["asn"],
        text(&s["fingerprint"]),
        text(&s["listen"]),
        s["peers"],
        s["members"],
        s["routes"],
        s["seq"],
        text(&s["version"]),
    )
}

/// A `/v1/peers` answer as a table.
pub(crate) fn peers(answer: &Value) -> String {
    let (peers, mut out) = listing(answer, "peers", "direct peer");
    let _ = writeln!(
        out,
        "  {:<8} {:<10} {:<22} FINGERPRINT",
        "NODE", "AS", "ADDRESS"
    );
    for p in peers {
        let _ = writeln!(
            out,
            "  {:<8} {:<10} {:<22} {}",
            format!("RC{}", p["node"]),
            format!("AS{}", p["asn"]),
            text(&p["addr"]),
            text(&p["fingerprint"])
        );
    }
    out
}

/// A `/v1/members` answer as a table; STATE is `alive`, `unreachable` (alive, but not
/// reached over two-way links), `left`, `expired` or `evicted`.
pub(crate) fn members(answer: &Value) -> String {
    let (members, mut out) = listing(answer, "members", "member");
    let _ = writeln!(
        out,
        "  {:<8} {:<10} {:<22} {:<12} {:>6}  PEERS",
        "NODE", "AS", "ADDRESS", "STATE", "LINKS"
    );
    for m in members {
        let state = match (text(&m["state"]).as_str(), &m["reachable"]) {
            ("alive", Value::Bool(false)) => "unreachable".to_string(),
            (state, _) => state.to_string(),
        };
        let peers = m["peers"].as_array().map_or_else(
            || "-".to_string(),
            |p| {
                p.iter()
                    .map(|n| format!("RC{n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        );
        let _ = writeln!(
            out,
            "  {:<8} {:<10} {:<22} {:<12} {:>6}  {peers}",
            format!("RC{}", m["node"]),
            format!("AS{}", m["asn"]),
            text(&m["addr"]),
            state,
            m["links"].as_array().map_or(0, Vec::len),
        );
    }
    out
}

/// The list under `key` of an answer, and a heading naming the controller and counting it.
fn listing<'a>(answer: &'a Value, key: &str, noun: &str) -> (&'a [Value], String) {
    let items = answer[key].as_array().map_or(&[][..], Vec::as_slice);
    let plural = if items.len() == 1 { "" } else { "s" };
    let heading = format!(
        "RC{} (AS{}): {} {noun}{plural}\n",
        answer["node"],
        answer["asn"],
        items.len()
    );
    (items, heading)
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn route_changes_name_each_destination_that_moved() {
        let before = json!({"routes": [
            {"destination": 200, "cost": 5, "path": [100, 200]},
            {"destination": 40, "cost": 8, "path": [100, 300, 40]},
        ]});
        let after = json!({"routes": [
            {"destination": 200, "cost": 6, "path": [100, 300, 200]},
        ]});
        assert_eq!(
            route_changes(&before, &after),
            vec![
                "AS40: 100 300 40 (cost 8) -> unreachable",
                "AS200: 100 200 (cost 5) -> 100 300 200 (cost 6)",
            ]
        );
    }
}
