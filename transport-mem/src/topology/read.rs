//! Reading a topology from a file: the format (by extension, else by the first character),
//! the rules that give links their weights and nodes their stub marks, and the one-line
//! errors that name the file and the line or field at fault.
//!
//! Weights: a link's own `cost` and `capacity` when the file gives them; otherwise its
//! length (the file's, else the great-circle distance between its ends' positions) gives the
//! cost, `ceil(km / 250)`, at least 1; otherwise the cost and capacity of [`ReadOptions`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::{Site, Topology, Weights, caida, cost_of_km, graphml, nodelink};

/// The file formats [`Topology::read`] understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// GraphML as the Internet Topology Zoo publishes it (`.graphml`, `.xml`).
    GraphMl,
    /// networkx node-link JSON (`.json`).
    NodeLink,
    /// CAIDA AS relationships, `as1|as2|rel[|source]` (`.txt`).
    CaidaRel,
}

impl Format {
    /// The format of a file called `path` that starts with `text`: by extension, else `<`
    /// is GraphML, `{` node-link JSON, anything else AS relationships.
    pub fn guess(path: &Path, text: &str) -> Format {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        match ext.to_ascii_lowercase().as_str() {
            "graphml" | "xml" => Format::GraphMl,
            "json" => Format::NodeLink,
            "txt" => Format::CaidaRel,
            _ => match text.trim_start().chars().next() {
                Some('<') => Format::GraphMl,
                Some('{') => Format::NodeLink,
                _ => Format::CaidaRel,
            },
        }
    }
}

/// Which nodes are stubs (ASes without a controller).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StubRule {
    /// Those the file marks: GraphML `Internal` = 0 (the Zoo's external networks), a
    /// node-link node's `"stub": true`.
    #[default]
    File,
    /// Those the file marks and every node with one neighbour.
    Leaves,
    /// None: every node runs a controller.
    None,
}

impl FromStr for StubRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "file" => Ok(StubRule::File),
            "leaves" => Ok(StubRule::Leaves),
            "none" => Ok(StubRule::None),
            other => Err(format!("unknown stub rule {other:?} (file, leaves, none)")),
        }
    }
}

/// How a file's links and nodes become a topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    /// Cost of a link whose file gives neither a cost nor a length nor both ends' places.
    pub link_cost: u64,
    /// Capacity of a link whose file gives none.
    pub link_capacity: u64,
    /// Which nodes are stubs.
    pub stubs: StubRule,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            link_cost: 1,
            link_capacity: 100,
            stubs: StubRule::File,
        }
    }
}

/// Why a topology file could not be read: `file: where: what`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyError {
    /// The file.
    pub file: String,
    /// The line, node or field at fault, when known.
    pub at: Option<String>,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{}: {at}: {}", self.file, self.what),
            None => write!(f, "{}: {}", self.file, self.what),
        }
    }
}

impl std::error::Error for TopologyError {}

/// A fault found while parsing, before the file name is attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Fault {
    pub(super) at: Option<String>,
    pub(super) what: String,
}

impl Fault {
    pub(super) fn at(at: impl Into<String>, what: impl Into<String>) -> Fault {
        Fault {
            at: Some(at.into()),
            what: what.into(),
        }
    }
}

/// What a parser found: nodes in file order and links between their indices.
#[derive(Clone, Debug, Default)]
pub(super) struct Parsed {
    pub(super) nodes: Vec<Site>,
    pub(super) edges: Vec<Link>,
}

/// One link as a file gives it.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Link {
    pub(super) a: usize,
    pub(super) b: usize,
    pub(super) km: Option<f64>,
    pub(super) cost: Option<u64>,
    pub(super) capacity: Option<u64>,
}

/// 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map_or(0, |head| head.bytes().filter(|&b| b == b'\n').count())
        + 1
}

impl Topology {
    /// Reads a topology file (format by [`Format::guess`]).
    pub fn read(path: &Path, opts: &ReadOptions) -> Result<Topology, TopologyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TopologyError {
            file: file.clone(),
            at: None,
            what: e.to_string(),
        })?;
        Topology::parse(&file, &text, Format::guess(path, &text), opts)
    }

    /// Parses `text`, the contents of `file` in `format`.
    pub fn parse(
        file: &str,
        text: &str,
        format: Format,
        opts: &ReadOptions,
    ) -> Result<Topology, TopologyError> {
        let parsed = match format {
            Format::GraphMl => graphml::parse(text),
            Format::NodeLink => nodelink::parse(text),
            Format::CaidaRel => caida::parse(text),
        };
        let fail = |f: Fault| TopologyError {
            file: file.to_string(),
            at: f.at,
            what: f.what,
        };
        let parsed = parsed.map_err(fail)?;
        if parsed.nodes.is_empty() {
            return Err(fail(Fault {
                at: None,
                what: "no nodes".into(),
            }));
        }
        let base = Path::new(file)
            .file_name()
            .map_or(file.to_string(), |n| n.to_string_lossy().into_owned());
        Ok(assemble(parsed, opts).named(base))
    }
}

/// The topology of a parsed file: weights by the module's rule, stubs by `opts.stubs`,
/// controllers numbered first (in file order), then stubs.
fn assemble(mut p: Parsed, opts: &ReadOptions) -> Topology {
    let mut neighbours = vec![std::collections::BTreeSet::new(); p.nodes.len()];
    for l in &p.edges {
        neighbours[l.a].insert(l.b);
        neighbours[l.b].insert(l.a);
    }
    for (site, near) in p.nodes.iter_mut().zip(&neighbours) {
        site.stub = match opts.stubs {
            StubRule::File => site.stub,
            StubRule::Leaves => site.stub || near.len() == 1,
            StubRule::None => false,
        };
    }
    // Controllers first, stubs after, each in file order.
    let mut order: Vec<usize> = (0..p.nodes.len()).collect();
    order.sort_by_key(|&i| p.nodes[i].stub);
    let mut index = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        index[old] = new;
    }
    let mut weights: BTreeMap<(usize, usize), Weights> = BTreeMap::new();
    for l in &p.edges {
        let (a, b) = (index[l.a], index[l.b]);
        if a == b {
            continue;
        }
        let place = |i: usize| p.nodes[i].position;
        let km = l.km.or_else(|| Some(place(l.a)?.km_to(&place(l.b)?)));
        let w = Weights {
            cost: l
                .cost
                .or(km.map(cost_of_km))
                .unwrap_or(opts.link_cost)
                .max(1),
            capacity: l.capacity.unwrap_or(opts.link_capacity).max(1),
        };
        let slot = weights.entry((a.min(b), a.max(b))).or_insert(w);
        if w.cost < slot.cost {
            *slot = w; // a multigraph's parallel links: the cheapest one
        }
    }
    let mut t = Topology::from_edges(order.len(), weights.keys().copied());
    for (&(a, b), &w) in &weights {
        t.graph.add_edge(a, b, w);
    }
    t.sites = order.iter().map(|&i| p.nodes[i].clone()).collect();
    t
}
