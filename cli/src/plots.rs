//! Plots of a [`BenchReport`], as PNG and SVG (plotters): throughput against RSM size for each
//! transport and message size, and throughput against message size for each transport and
//! RSM size (when the grid has several sizes). One line per strategy; failed points are left
//! out of the lines (the JSON says why they failed).
//!
//! Text is drawn with the DejaVu Sans font compiled into the binary, so plots look the same
//! on machines without fonts installed.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use picsou_core::Strategy;
use picsou_runtime::bench::{BenchReport, BenchResult};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

/// DejaVu Sans (Bitstream Vera license, see assets/DejaVuSans-LICENSE.txt).
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// One chart: named series of (x, y) points.
struct Chart {
    file_stem: String,
    title: String,
    x_desc: &'static str,
    y_desc: &'static str,
    log_x: bool,
    series: Vec<(Strategy, Vec<(f64, f64)>)>,
}

fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the embedded font is invalid".into())
    })
    .clone()
}

/// Draws every chart of `report` into `dir`; returns the files written.
pub(crate) fn draw(report: &BenchReport, dir: &Path) -> Result<Vec<PathBuf>, String> {
    register_font()?;
    let mut files = Vec::new();
    for chart in charts(report) {
        let png = dir.join(format!("{}.png", chart.file_stem));
        render(BitMapBackend::new(&png, (960, 600)).into_drawing_area(), &chart)
            .map_err(|e| format!("cannot draw {}: {e}", png.display()))?;
        files.push(png);
        let svg = dir.join(format!("{}.svg", chart.file_stem));
        render(SVGBackend::new(&svg, (960, 600)).into_drawing_area(), &chart)
            .map_err(|e| format!("cannot draw {}: {e}", svg.display()))?;
        files.push(svg);
    }
    Ok(files)
}

/// Values of one field over the results, sorted and deduplicated.
fn distinct<T: Ord + Copy>(results: &[BenchResult], f: impl Fn(&BenchResult) -> T) -> Vec<T> {
    let mut v: Vec<T> = results.iter().map(f).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Large messages are compared in MB/s, small ones in messages/s.
fn large(size: usize) -> bool {
    size >= 10_000
}

fn charts(report: &BenchReport) -> Vec<Chart> {
    let rs = &report.results;
    let strategies: Vec<Strategy> = report.spec.strategies.clone();
    let mut out = Vec::new();
    for transport in distinct(rs, |r| r.point.transport.name()) {
        for size in distinct(rs, |r| r.point.size) {
            let series = strategies
                .iter()
                .map(|&s| {
                    let pts = rs
                        .iter()
                        .filter(|r| {
                            r.ok && r.point.strategy == s
                                && r.point.transport.name() == transport
                                && r.point.size == size
                        })
                        .map(|r| (r.point.n as f64, if large(size) { r.mb_per_s } else { r.msgs_per_s }))
                        .collect();
                    (s, pts)
                })
                .collect();
            out.push(Chart {
                file_stem: format!("{transport}-{size}B-by-n"),
                title: format!("{transport}, {size} B messages, both RSMs sending"),
                x_desc: "replicas per RSM",
                y_desc: if large(size) {
                    "MB/s per direction (receiver-confirmed)"
                } else {
                    "messages/s per direction (receiver-confirmed)"
                },
                log_x: false,
                series,
            });
        }
        if report.spec.sizes.len() < 2 {
            continue;
        }
        for n in distinct(rs, |r| r.point.n) {
            let series = strategies
                .iter()
                .map(|&s| {
                    let pts = rs
                        .iter()
                        .filter(|r| {
                            r.ok && r.point.strategy == s && r.point.transport.name() == transport && r.point.n == n
                        })
                        .map(|r| (r.point.size as f64, r.mb_per_s))
                        .collect();
                    (s, pts)
                })
                .collect();
            out.push(Chart {
                file_stem: format!("{transport}-n{n}-by-size"),
                title: format!("{transport}, {n}+{n} replicas, both RSMs sending"),
                x_desc: "message size (bytes)",
                y_desc: "MB/s per direction (receiver-confirmed)",
                log_x: true,
                series,
            });
        }
    }
    out
}

fn color(s: Strategy) -> RGBColor {
    match s {
        Strategy::Picsou => RGBColor(214, 39, 40),
        Strategy::Ost => RGBColor(31, 119, 180),
        Strategy::Ata => RGBColor(44, 160, 44),
        Strategy::Ll => RGBColor(255, 127, 14),
        Strategy::Otu => RGBColor(148, 103, 189),
    }
}

fn x_range(chart: &Chart) -> Range<f64> {
    let xs: Vec<f64> = chart.series.iter().flat_map(|(_, p)| p.iter().map(|&(x, _)| x)).collect();
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return if chart.log_x { 1.0..10.0 } else { 0.0..1.0 };
    }
    if chart.log_x { lo / 2.0..hi * 2.0 } else { (lo - 1.0).max(0.0)..hi + 1.0 }
}

fn y_max(chart: &Chart) -> f64 {
    let hi = chart.series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y)).fold(0.0, f64::max);
    if hi > 0.0 { hi * 1.15 } else { 1.0 }
}

fn render<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut builder = ChartBuilder::on(&root);
    builder.caption(&chart.title, (FAMILY, 22)).margin(14).x_label_area_size(48).y_label_area_size(90);
    let y = 0.0..y_max(chart);
    let xr = x_range(chart);
    if chart.log_x {
        let mut c = builder.build_cartesian_2d(xr.log_scale(), y).map_err(err)?;
        c.configure_mesh()
            .x_desc(chart.x_desc)
            .y_desc(chart.y_desc)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .x_label_formatter(&|x| human(*x))
            .y_label_formatter(&|y| human(*y))
            .draw()
            .map_err(err)?;
        for (s, pts) in &chart.series {
            let col = color(*s);
            c.draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
                .map_err(err)?
                .label(s.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled()))).map_err(err)?;
        }
        c.configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    } else {
        let mut c = builder.build_cartesian_2d(xr, y).map_err(err)?;
        c.configure_mesh()
            .x_desc(chart.x_desc)
            .y_desc(chart.y_desc)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| human(*y))
            .draw()
            .map_err(err)?;
        for (s, pts) in &chart.series {
            let col = color(*s);
            c.draw_series(LineSeries::new(pts.iter().copied(), col.stroke_width(2)))
                .map_err(err)?
                .label(s.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
            c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled()))).map_err(err)?;
        }
        c.configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// 1200 → "1.2k", 3_400_000 → "3.4M".
fn human(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_numbers() {
        assert_eq!(human(0.0), "0");
        assert_eq!(human(2.5), "2.5");
        assert_eq!(human(1200.0), "1.2k");
        assert_eq!(human(3_400_000.0), "3.4M");
    }
}
