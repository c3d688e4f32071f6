//! The report's charts, drawn with plotters to SVG text: line charts, a bar chart and the
//! picture of the topology with the measured rumor's delivery tree.

use plotters::prelude::*;

/// Chart size in pixels.
const SIZE: (u32, u32) = (640, 360);

/// One named line of a line chart.
pub(super) struct Line<'a> {
    pub(super) name: &'a str,
    pub(super) points: Vec<(f64, f64)>,
    pub(super) colour: RGBColor,
}

/// A tick label without needless decimals (`0.25`, `12`, `350000`).
fn short(v: &f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The range of `values`, widened to something drawable.
fn span(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.0..1.0;
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    if hi - lo < 1e-9 {
        lo - 1.0..hi + 1.0
    } else {
        lo - pad..hi + pad
    }
}

/// A line chart as SVG; `id` becomes the SVG's `id`.
pub(super) fn lines(id: &str, title: &str, x: &str, y: &str, lines: &[Line<'_>]) -> String {
    svg(id, SIZE, |root| {
        let xs = span(lines.iter().flat_map(|l| l.points.iter().map(|p| p.0)));
        let ys = span(
            lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.1))
                .chain([0.0]),
        );
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(xs, ys)?;
        chart
            .configure_mesh()
            .x_desc(x)
            .y_desc(y)
            .x_label_formatter(&short)
            .y_label_formatter(&short)
            .draw()?;
        for l in lines {
            let colour = l.colour;
            let dots = if l.points.len() <= 60 { 3 } else { 0 };
            chart
                .draw_series(
                    LineSeries::new(l.points.iter().copied(), colour.stroke_width(2))
                        .point_size(dots),
                )?
                .label(l.name)
                .legend(move |(px, py)| PathElement::new([(px, py), (px + 16, py)], colour));
        }
        if lines.len() > 1 {
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE)
                .draw()?;
        }
        Ok(())
    })
}

/// A bar chart of `(x, count)` as SVG.
pub(super) fn bars(id: &str, title: &str, x: &str, y: &str, bars: &[(u32, u64)]) -> String {
    svg(id, SIZE, |root| {
        let top = bars.iter().map(|b| b.0).max().unwrap_or(0) + 1;
        let most = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1);
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((0u32..top).into_segmented(), 0u64..most + most / 10 + 1)?;
        chart.configure_mesh().x_desc(x).y_desc(y).draw()?;
        chart.draw_series(
            Histogram::vertical(&chart)
                .style(RGBColor(52, 101, 164).filled())
                .margin(4)
                .data(bars.iter().copied()),
        )?;
        Ok(())
    })
}

/// What the topology picture shows.
pub(super) struct Picture<'a> {
    /// Each node's place on the page (any units).
    pub(super) places: &'a [(f64, f64)],
    /// Nodes from this one on are stubs.
    pub(super) stubs_from: usize,
    /// The graph's links.
    pub(super) links: &'a [(usize, usize)],
    /// The delivery tree's edges (parent, child).
    pub(super) tree: &'a [(usize, usize)],
    /// The measured origin.
    pub(super) origin: usize,
}

/// The topology with the delivery tree over it, as SVG.
pub(super) fn picture(id: &str, title: &str, p: &Picture<'_>) -> String {
    svg(id, (640, 520), |root| {
        let (xs, ys) = square(
            span(p.places.iter().map(|q| q.0)),
            span(p.places.iter().map(|q| q.1)),
            (616.0, 470.0),
        );
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .build_cartesian_2d(xs, ys)?;
        let at = |i: usize| p.places.get(i).copied().unwrap_or_default();
        let (grey, red) = (RGBColor(190, 190, 190), RGBColor(204, 0, 0));
        let path =
            |&(a, b): &(usize, usize), style: ShapeStyle| PathElement::new([at(a), at(b)], style);
        chart.draw_series(p.links.iter().map(|e| path(e, grey.stroke_width(1))))?;
        chart.draw_series(p.tree.iter().map(|e| path(e, red.stroke_width(2))))?;
        chart.draw_series(p.places.iter().enumerate().map(|(i, &q)| {
            let (size, colour) = match i {
                _ if i == p.origin => (7, red),
                _ if i >= p.stubs_from => (3, grey),
                _ => (4, RGBColor(52, 101, 164)),
            };
            Circle::new(q, size, colour.filled())
        }))?;
        Ok(())
    })
}

/// The ranges widened so that one unit is as long across as up, on `pixels`.
fn square(
    xs: std::ops::Range<f64>,
    ys: std::ops::Range<f64>,
    pixels: (f64, f64),
) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let (w, h) = (xs.end - xs.start, ys.end - ys.start);
    let scale = (w / pixels.0).max(h / pixels.1);
    let grow = |r: std::ops::Range<f64>, to: f64| {
        let extra = (to - (r.end - r.start)) / 2.0;
        r.start - extra..r.end + extra
    };
    (grow(xs, scale * pixels.0), grow(ys, scale * pixels.1))
}

/// What a chart draws on its white area.
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A drawing's outcome.
type Drawn<'a> = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Draws with `draw` on a white area of `size`, as SVG with this `id` and the `chart`
/// class (the report's check counts them). A drawing that fails leaves what it drew.
fn svg(id: &str, size: (u32, u32), draw: impl for<'a> FnOnce(&Area<'a>) -> Drawn<'a>) -> String {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        let _ = root
            .fill(&WHITE)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present());
    }
    text.replacen("<svg ", &format!("<svg id=\"{id}\" class=\"chart\" "), 1)
}
