//! GraphML as the Internet Topology Zoo publishes it, read with quick-xml: `<key>`s name the
//! attributes; nodes carry `label`, `Latitude`, `Longitude` and `Internal` (0: an external
//! network, taken as a stub; a `stub` attribute of true does the same); edges carry
//! `LinkSpeedRaw` (bit/s, taken as capacity in Mbit/s) and, in other GraphML files, `dist`
//! (km), `cost` and `capacity`.

use std::collections::BTreeMap;

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::read::{Fault, Link, Parsed, line_of};
use super::{Position, Site};

/// Attributes of one `<node>` or `<edge>`, by attribute name.
type Data = BTreeMap<String, String>;

/// The element being read and what it has collected so far.
#[derive(Default)]
struct Open {
    /// `node` or `edge` with its id or ends, and its data.
    element: Option<(Element, Data)>,
    /// The attribute name of the `<data>` being read, and its text.
    data: Option<(String, String)>,
}

enum Element {
    Node(String),
    Edge(String, String),
}

/// A GraphML document.
pub(super) fn parse(text: &str) -> Result<Parsed, Fault> {
    let mut reader = Reader::from_str(text);
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    let mut nodes: Vec<(String, Data)> = Vec::new();
    let mut edges: Vec<(String, String, Data, usize)> = Vec::new();
    let mut open = Open::default();
    loop {
        let at = |pos: u64| format!("line {}", line_of(text, pos as usize));
        let event = reader
            .read_event()
            .map_err(|e| Fault::at(at(reader.error_position()), format!("not XML: {e}")))?;
        let here = at(reader.buffer_position());
        match event {
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == "key" => {
                let id = attr(&e, "id", &here)?;
                let name = attr(&e, "attr.name", &here)?;
                keys.insert(id, name);
            }
            Event::Start(e) if is_element(&e) => {
                open.element = Some((element(&e, &here)?, Data::new()));
            }
            Event::Empty(e) if is_element(&e) => {
                open.element = Some((element(&e, &here)?, Data::new()));
                close(&mut open, &mut nodes, &mut edges, &here);
            }
            Event::Start(e) if e.local_name().as_ref() == "data" => {
                let key = attr(&e, "key", &here)?;
                let name = keys.get(&key).cloned().unwrap_or(key);
                open.data = Some((name, String::new()));
            }
            Event::Text(t) => {
                if let Some((_, value)) = &mut open.data {
                    value.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                if let Some((_, value)) = &mut open.data {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => value.push(c),
                        _ => value.push_str(resolve_predefined_entity(&r).unwrap_or("?")),
                    }
                }
            }
            Event::End(e) if e.local_name().as_ref() == "data" => {
                if let (Some((name, value)), Some((_, data))) =
                    (open.data.take(), &mut open.element)
                {
                    data.insert(name, value.trim().to_string());
                }
            }
            Event::End(ref e) if matches!(e.local_name().as_ref(), "node" | "edge") => {
                close(&mut open, &mut nodes, &mut edges, &here);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assemble(nodes, edges)
}

/// Whether `e` opens a `<node>` or an `<edge>`.
fn is_element(e: &BytesStart<'_>) -> bool {
    matches!(e.local_name().as_ref(), "node" | "edge")
}

/// The node (its id) or edge (its ends) `e` opens.
fn element(e: &BytesStart<'_>, here: &str) -> Result<Element, Fault> {
    if e.local_name().as_ref() == "node" {
        Ok(Element::Node(attr(e, "id", here)?))
    } else {
        Ok(Element::Edge(
            attr(e, "source", here)?,
            attr(e, "target", here)?,
        ))
    }
}

/// Files the element `open` holds.
fn close(
    open: &mut Open,
    nodes: &mut Vec<(String, Data)>,
    edges: &mut Vec<(String, String, Data, usize)>,
    here: &str,
) {
    let line = here.trim_start_matches("line ").parse().unwrap_or_default();
    match open.element.take() {
        Some((Element::Node(id), data)) => nodes.push((id, data)),
        Some((Element::Edge(a, b), data)) => edges.push((a, b, data, line)),
        None => {}
    }
}

/// The value of attribute `name` of `e`.
fn attr(e: &BytesStart<'_>, name: &str, here: &str) -> Result<String, Fault> {
    let tag = e.local_name().as_ref().to_string();
    let missing = || Fault::at(here, format!("<{tag}> has no {}", name));
    let a = e
        .try_get_attribute(name)
        .map_err(|err| Fault::at(here, format!("<{tag}>: {err}")))?
        .ok_or_else(missing)?;
    a.normalized_value(XmlVersion::Implicit1_0)
        .map(|v| v.into_owned())
        .map_err(|err| Fault::at(here, format!("<{tag}>: {err}")))
}

/// Sites and links of the collected elements.
fn assemble(
    nodes: Vec<(String, Data)>,
    edges: Vec<(String, String, Data, usize)>,
) -> Result<Parsed, Fault> {
    let mut parsed = Parsed::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (id, data) in nodes {
        let at = format!("node {id}");
        let number = |name: &str| -> Result<Option<f64>, Fault> {
            data.get(name)
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| Fault::at(&at, format!("{name} {v:?} is not a number")))
                })
                .transpose()
        };
        let position = match (number("Latitude")?, number("Longitude")?) {
            (Some(lat), Some(lon)) => Some(
                Position::new(lat, lon)
                    .ok_or_else(|| Fault::at(&at, format!("({lat}, {lon}) is off the globe")))?,
            ),
            _ => None,
        };
        let stub = data.get("Internal").is_some_and(|v| v == "0")
            || data.get("stub").is_some_and(|v| v == "true" || v == "1");
        if index.insert(id.clone(), parsed.nodes.len()).is_some() {
            return Err(Fault::at(at, "appears twice"));
        }
        parsed.nodes.push(Site {
            name: data.get("label").cloned().or(Some(id)),
            position,
            stub,
        });
    }
    for (a, b, data, line) in edges {
        let at = format!("line {line}");
        let end = |id: &str| {
            index
                .get(id)
                .copied()
                .ok_or_else(|| Fault::at(&at, format!("edge end {id} is not a node")))
        };
        let number = |name: &str| data.get(name).and_then(|v| v.parse::<f64>().ok());
        let mbits = number("LinkSpeedRaw").map(|bps| (bps / 1e6).round());
        parsed.edges.push(Link {
            a: end(&a)?,
            b: end(&b)?,
            km: number("dist").filter(|d| d.is_finite() && *d >= 0.0),
            cost: number("cost").map(|c| c.max(1.0) as u64),
            capacity: number("capacity").or(mbits).map(|c| c.max(1.0) as u64),
        });
    }
    Ok(parsed)
}
