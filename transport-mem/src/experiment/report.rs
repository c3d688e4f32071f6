//! The plotted report (`--report DIR`): what a run records for it ([`Series`]) and
//! `report.html`, one self-contained page: delivery over time as a CDF of receivers, the
//! distribution of delivery hops, copies, announcements and grafts per round, route
//! convergence over time, the topology with the measured rumor's delivery tree, and the
//! JSON figures in a table.

use std::path::Path;

use plotters::style::RGBColor;

use super::charts::{Line, Picture, bars, lines, picture};
use super::measure::Measured;
use super::*;
use crate::topology::Position;

/// What the report plots, gathered while the experiment runs.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Each receiver of the measured change: ms after the change, and hop.
    pub deliveries: Vec<(u64, u32)>,
    /// Each live node's last route change after the measured change, ms (0: none).
    pub settled_ms: Vec<u64>,
    /// Per gossip round: its end in virtual seconds and what the running nodes sent in it.
    pub rounds: Vec<(f64, Totals)>,
    /// Each topology node's place in the picture (longitude × cos(mean latitude) and
    /// latitude when every node has a place; otherwise rings of graph distance around the
    /// measured origin).
    pub places: Vec<(f64, f64)>,
    /// Topology nodes from this one on are stubs.
    pub stubs_from: usize,
    /// The topology's links.
    pub links: Vec<(usize, usize)>,
    /// The measured rumor's delivery tree (parent, child).
    pub tree: Vec<(usize, usize)>,
    /// The measured origin.
    pub origin: usize,
}

impl Series {
    /// The series of a finished run.
    pub(super) fn of(sim: &Sim, topology: &Topology, m: &Measured) -> Series {
        let samples = sim.samples();
        let rounds = samples
            .windows(2)
            .map(|w| (w[1].0.as_millis() as f64 / 1000.0, w[1].1.since(&w[0].1)))
            .collect();
        let links: Vec<(usize, usize)> = topology.edges().iter().map(|&(a, b, _)| (a, b)).collect();
        Series {
            deliveries: m
                .deliveries
                .iter()
                .map(|&(ms, hop, _, _)| (ms, hop))
                .collect(),
            settled_ms: m.settled_ms.clone(),
            rounds,
            places: layout(topology, m.origin_slot),
            stubs_from: topology.controllers(),
            tree: m
                .deliveries
                .iter()
                .filter_map(|&(_, _, from, to)| Some((from?, to)))
                .collect(),
            links,
            origin: m.origin_slot,
        }
    }
}

/// Longitude and latitude when every node has a place; otherwise node i on the ring of its
/// graph distance from `origin`, spread evenly around it.
fn layout(topology: &Topology, origin: usize) -> Vec<(f64, f64)> {
    let n = topology.len();
    let placed: Option<Vec<Position>> = (0..n).map(|i| topology.site(i)?.position).collect();
    if let Some(places) = placed {
        // Equirectangular around the mean latitude: a degree east is cos(lat) of one north.
        let mean = places.iter().map(|p| p.lat).sum::<f64>() / places.len().max(1) as f64;
        let squeeze = mean.to_radians().cos();
        return places.iter().map(|p| (p.lon * squeeze, p.lat)).collect();
    }
    // Hops from the origin; nodes it does not reach go on one ring beyond the deepest.
    let hops = petgraph::algo::dijkstra(topology.graph(), origin, None, |_| 1usize);
    let deepest = hops.values().copied().max().unwrap_or(0);
    let depth: Vec<usize> = (0..n)
        .map(|i| hops.get(&i).copied().unwrap_or(deepest + 1))
        .collect();
    let mut rings: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, &d) in depth.iter().enumerate() {
        rings.entry(d).or_default().push(i);
    }
    let mut places = vec![(0.0, 0.0); n];
    for (d, ring) in rings {
        for (k, &i) in ring.iter().enumerate() {
            let angle = std::f64::consts::TAU * k as f64 / ring.len() as f64;
            places[i] = (d as f64 * angle.cos(), d as f64 * angle.sin());
        }
    }
    places
}

/// Writes `dir/report.html` for a run's report and its JSON (as printed).
pub fn write_report(dir: &Path, report: &Report, json: &Value) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let html = page(report, json);
    let path = dir.join("report.html");
    let temporary = dir.join(".report.html.tmp");
    std::fs::write(&temporary, html)?;
    std::fs::rename(temporary, path)
}

/// A CDF of `values` as (value, fraction at or below it).
fn cdf(mut values: Vec<f64>) -> Vec<(f64, f64)> {
    values.sort_by(f64::total_cmp);
    let n = values.len().max(1) as f64;
    let mut points = vec![(0.0, 0.0)];
    points.extend(
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, (i + 1) as f64 / n)),
    );
    points
}

/// The charts, each an SVG.
fn charts(s: &Series, topology: &str) -> Vec<String> {
    let blue = RGBColor(52, 101, 164);
    let delivery = cdf(s.deliveries.iter().map(|d| d.0 as f64).collect());
    let mut hops: BTreeMap<u32, u64> = BTreeMap::new();
    for d in &s.deliveries {
        *hops.entry(d.1).or_default() += 1;
    }
    let per_round = |name, colour, count: fn(&Totals) -> u64| Line {
        name,
        colour,
        points: s
            .rounds
            .iter()
            .map(|(t, totals)| (*t, count(totals) as f64))
            .collect(),
    };
    let settled = cdf(s.settled_ms.iter().map(|&ms| ms as f64).collect());
    vec![
        lines(
            "delivery",
            "Measured change: receivers reached over time",
            "ms after the change",
            "fraction of receivers",
            &[Line {
                name: "delivered",
                points: delivery,
                colour: blue,
            }],
        ),
        bars(
            "hops",
            "Delivery hops of the measured change",
            "hops from the origin",
            "receivers",
            &hops.into_iter().collect::<Vec<_>>(),
        ),
        lines(
            "rounds",
            "Sent per gossip round",
            "virtual time, s",
            "messages",
            &[
                per_round("rumor copies", blue, |t| t.copies),
                per_round("announcements", RGBColor(78, 154, 6), |t| t.announcements),
                per_round("grafts", RGBColor(204, 0, 0), |t| t.grafts),
            ],
        ),
        lines(
            "convergence",
            "Route convergence after the change",
            "ms after the change",
            "fraction of tables equal to the reference",
            &[Line {
                name: "converged",
                points: settled,
                colour: blue,
            }],
        ),
        picture(
            "topology",
            &format!("{topology}: the measured origin's delivery tree"),
            &Picture {
                places: &s.places,
                stubs_from: s.stubs_from,
                links: &s.links,
                tree: &s.tree,
                origin: s.origin,
            },
        ),
    ]
}

/// Text safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole page.
fn page(report: &Report, json: &Value) -> String {
    let charts = charts(&report.series, &report.topology);
    let rows: String = json
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            format!(
                "<tr><th>{}</th><td>{}</td></tr>\n",
                escape(k),
                escape(&v.to_string())
            )
        })
        .collect();
    let title = format!("Simulation: {}", report.topology);
    let description = report
        .description
        .as_deref()
        .map(escape)
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1em; }}
table {{ border-collapse: collapse; margin-top: 2em; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }}
td {{ font-family: monospace; word-break: break-all; max-width: 60em; }}
</style></head>
<body data-charts="{count}">
<h1>{title}</h1>
<p>{description}</p>
<p>{nodes} controllers, seed {seed}, scenario {scenario:?}; trace {digest}</p>
<div class="charts">
{svgs}
</div>
<table id="figures">
{rows}</table>
<script>
// Marks how many charts the browser laid out with something drawn in them.
window.addEventListener("load", () => {{
  const drawn = [...document.querySelectorAll("svg.chart")].filter((svg) => {{
    const box = svg.getBBox();
    return box.width > 0 && box.height > 0 && svg.querySelectorAll("path, polyline, line, circle, rect").length > 2;
  }});
  document.body.dataset.rendered = String(drawn.length);
}});
</script>
</body></html>
"#,
        count = charts.len(),
        nodes = report.nodes,
        seed = report.seed,
        scenario = report.scenario,
        digest = report.trace_digest,
        svgs = charts.join("\n"),
    )
}
