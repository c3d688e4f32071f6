//! networkx node-link JSON, as SNDlib and Topology Zoo graphs are commonly redistributed:
//! `nodes` (each with an `id`, optional `name` or `label`, `pos` as `[longitude, latitude]`
//! or `Latitude`/`Longitude`, optional `stub`) and `edges` or `links` (`source`, `target`,
//! optional `dist` in km, `cost`, `capacity`).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Position;
use super::read::{Fault, Link, Parsed};

/// A node-link document.
pub(super) fn parse(text: &str) -> Result<Parsed, Fault> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| Fault::at(format!("line {}", e.line()), format!("not JSON: {e}")))?;
    let nodes = doc
        .get("nodes")
        .and_then(Value::as_array)
        .ok_or_else(|| Fault::at("nodes", "missing or not a list"))?;
    let edges = doc
        .get("edges")
        .or_else(|| doc.get("links"))
        .and_then(Value::as_array)
        .ok_or_else(|| Fault::at("edges", "missing or not a list (nor links)"))?;
    let mut parsed = Parsed::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let at = format!("nodes[{i}]");
        let node = node
            .as_object()
            .ok_or_else(|| Fault::at(&at, "not an object"))?;
        let id = node
            .get("id")
            .map(key)
            .ok_or_else(|| Fault::at(&at, "no id"))?;
        let name = ["name", "label"]
            .iter()
            .find_map(|k| node.get(*k).map(key))
            .or_else(|| Some(id.clone()));
        if index.insert(id.clone(), i).is_some() {
            return Err(Fault::at(at, format!("id {id} appears twice")));
        }
        parsed.nodes.push(super::Site {
            name,
            position: position(node).map_err(|what| Fault::at(&at, what))?,
            stub: node.get("stub").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    for (i, edge) in edges.iter().enumerate() {
        let at = format!("edges[{i}]");
        let end = |field: &str| {
            let id = edge
                .get(field)
                .map(key)
                .ok_or_else(|| Fault::at(&at, format!("no {field}")))?;
            index
                .get(&id)
                .copied()
                .ok_or_else(|| Fault::at(&at, format!("{field} {id} is not a node")))
        };
        let number = |field: &str| edge.get(field).and_then(Value::as_f64);
        parsed.edges.push(Link {
            a: end("source")?,
            b: end("target")?,
            km: number("dist").filter(|d| d.is_finite() && *d >= 0.0),
            cost: number("cost").map(|c| c.max(1.0) as u64),
            capacity: number("capacity").map(|c| c.max(1.0) as u64),
        });
    }
    Ok(parsed)
}

/// An id or name as text (numbers and strings alike).
fn key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `pos: [lon, lat]`, else `Latitude` / `Longitude`; `Ok(None)` when neither is there.
fn position(node: &Map<String, Value>) -> Result<Option<Position>, String> {
    let pair = match node.get("pos").and_then(Value::as_array) {
        Some(xy) => match (
            xy.first().and_then(Value::as_f64),
            xy.get(1).and_then(Value::as_f64),
        ) {
            (Some(lon), Some(lat)) => Some((lat, lon)),
            _ => return Err("pos is not [longitude, latitude]".into()),
        },
        None => match (
            node.get("Latitude").and_then(Value::as_f64),
            node.get("Longitude").and_then(Value::as_f64),
        ) {
            (Some(lat), Some(lon)) => Some((lat, lon)),
            _ => None,
        },
    };
    match pair {
        None => Ok(None),
        Some((lat, lon)) => Position::new(lat, lon)
            .map(Some)
            .ok_or_else(|| format!("position ({lat}, {lon}) is off the globe")),
    }
}
