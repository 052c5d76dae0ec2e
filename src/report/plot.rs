//! Line charts as PNG and SVG with plotters. Text is drawn with DejaVu Sans, bundled in the
//! binary and registered at first use: no system fonts, fontconfig or freetype needed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
/// Width and height of every chart, in pixels.
pub const SIZE: (u32, u32) = (1000, 560);

/// One colour per strategy, in order (the Tableau 10 palette).
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// The colour of the `i`-th strategy.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the bundled font could not be loaded".to_string())
    })
    .clone()
}

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// Colour index.
    pub colour: usize,
    /// Dashed rather than solid.
    pub dashed: bool,
    /// Points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// A chart: one panel of lines.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// X axis description, with units.
    pub x_desc: String,
    /// Y axis description, with units.
    pub y_desc: String,
    /// The lines.
    pub lines: Vec<Line>,
    /// X values are log10 of the quantity; labels show the quantity via `x_label`.
    pub x_label: fn(f64) -> String,
    /// Smallest y shown (the top is the data's maximum plus room for the legend).
    pub y_min: f64,
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing failed: {e:?}");
    let xs = p.lines.iter().flat_map(|l| l.points.iter().map(|q| q.0));
    let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let (x_lo, x_hi) = if x_lo.is_finite() && x_hi > x_lo {
        (x_lo, x_hi)
    } else {
        (0.0, 1.0)
    };
    let y_data = p
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|q| q.1))
        .fold(p.y_min, f64::max);
    let (_, h) = area.dim_in_pixel();
    // Room above the data for the legend: one row per line.
    let legend_px = (p.lines.len() as f64 * 22.0 + 24.0).min(h as f64 * 0.6);
    let plot_px = (h as f64 - 110.0).max(100.0);
    let span = if y_data > p.y_min { y_data - p.y_min } else { 1.0 };
    let y_hi = p.y_min + span * plot_px / (plot_px - legend_px).max(plot_px * 0.4);
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, (FAMILY, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(x_lo..x_hi, p.y_min..y_hi)
        .map_err(err)?;
    let x_label = p.x_label;
    chart
        .configure_mesh()
        .x_desc(&p.x_desc)
        .y_desc(&p.y_desc)
        .x_label_formatter(&|x| x_label(*x))
        .y_label_formatter(&|y| short_number(*y))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    for line in &p.lines {
        let c = colour(line.colour);
        let style = c.stroke_width(2);
        let legend = move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2));
        if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(line.points.iter().copied(), 8, 5, style))
                .map_err(err)?
                .label(&line.label)
                .legend(legend);
        } else {
            chart
                .draw_series(LineSeries::new(line.points.iter().copied(), style))
                .map_err(err)?
                .label(&line.label)
                .legend(legend);
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.5))
        .label_font((FAMILY, 15))
        .draw()
        .map_err(err)?;
    Ok(())
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, panels: &[Panel]) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| format!("drawing failed: {e:?}"))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (area, p) in areas.iter().zip(panels) {
        draw_panel(area, p)?;
    }
    root.present().map_err(|e| format!("cannot write the chart: {e:?}"))
}

/// Writes `panels` stacked vertically to `base.png` and `base.svg`.
pub fn write_chart(base: &Path, panels: &[Panel]) -> Result<(), String> {
    register_font()?;
    let (w, h) = (SIZE.0, SIZE.1 * panels.len().max(1) as u32);
    let png = base.with_extension("png");
    draw(BitMapBackend::new(&png, (w, h)).into_drawing_area(), panels)
        .map_err(|e| format!("{}: {e}", png.display()))?;
    let svg = base.with_extension("svg");
    draw(SVGBackend::new(&svg, (w, h)).into_drawing_area(), panels).map_err(|e| format!("{}: {e}", svg.display()))
}

/// A number for an axis label: `1.5k`, `2M`, `0.25`.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else if a >= 1.0 || a == 0.0 {
        trim(format!("{v:.2}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

/// Labels an axis of log10(milliseconds) in human units.
pub fn log_ms_label(x: f64) -> String {
    let ms = 10f64.powf(x);
    if ms < 999.5 {
        format!("{} ms", short_number(ms))
    } else {
        format!("{} s", short_number(ms / 1000.0))
    }
}

/// Labels a plain axis.
pub fn plain_label(x: f64) -> String {
    short_number(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_log_labels_are_short() {
        assert_eq!(short_number(1500.0), "1.5k");
        assert_eq!(short_number(2_000_000.0), "2M");
        assert_eq!(short_number(0.25), "0.25");
        assert_eq!(short_number(12.0), "12");
        assert_eq!(log_ms_label(0.0), "1 ms");
        assert_eq!(log_ms_label(3.0), "1 s");
        assert_eq!(log_ms_label(5.0), "100 s");
        assert_eq!(log_ms_label(7.0), "10k s");
    }

    #[test]
    fn writes_png_and_svg_without_system_fonts() {
        let dir = tempfile::tempdir().unwrap();
        let p = Panel {
            title: "t".into(),
            x_desc: "x (s)".into(),
            y_desc: "y".into(),
            lines: vec![Line {
                label: "a".into(),
                colour: 0,
                dashed: false,
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
            x_label: plain_label,
            y_min: 0.0,
        };
        write_chart(&dir.path().join("c"), &[p]).unwrap();
        let png = std::fs::read(dir.path().join("c.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).map(str::trim).collect();
        assert!(texts.contains(&"a") && texts.contains(&"x (s)"), "{texts:?}");
    }
}
