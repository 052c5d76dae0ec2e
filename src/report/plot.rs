//! Line charts as PNG and SVG with plotters. Text is drawn with DejaVu Sans, bundled in the
//! binary and registered at first use: no system fonts, fontconfig or freetype needed.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
/// Width and height of every chart, in pixels.
pub const SIZE: (u32, u32) = (1100, 560);

/// One colour per series, in order: the Tableau 10 palette, then four more distinct hues, and
/// grey last (the upper bound's: no strategy is drawn in it unless there are 14).
/// Past these, a series is told apart by its dash pattern as well (see [`Line::dashed`]).
const PALETTE: [RGBColor; 14] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(0, 0, 128),
    RGBColor(128, 0, 0),
    RGBColor(0, 100, 0),
    RGBColor(80, 80, 0),
    RGBColor(127, 127, 127),
];

/// The colour index of the upper bound (grey, last in the palette).
pub const BOUND_COLOUR: usize = PALETTE.len() - 1;

/// How many series get a colour of their own.
pub const DISTINCT: usize = PALETTE.len();

/// The colour of the `i`-th series.
pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// Outcome colours of the results-at-a-glance chart.
pub mod outcome {
    use plotters::style::RGBColor;
    /// Completed.
    pub const COMPLETED: RGBColor = RGBColor(44, 160, 44);
    /// Given up.
    pub const FAILED: RGBColor = RGBColor(214, 39, 40);
    /// Could never fit.
    pub const UNSERVABLE: RGBColor = RGBColor(127, 127, 127);
    /// Unfinished when the run stopped.
    pub const PENDING: RGBColor = RGBColor(255, 187, 60);
}

fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .map_err(|_| "the bundled font could not be loaded".to_string())
    })
    .clone()
}

/// One line of a line chart.
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
    /// X values where the value lies beyond any axis (e.g. a p99 wait never reached, fewer
    /// than 99% being done): drawn as × in a band of the line's own above the finite values,
    /// the line running up to them, so that they can never pass for small values.
    pub beyond: Vec<f64>,
}

/// One series of a bar chart: a value per category.
#[derive(Debug, Clone)]
pub struct Bars {
    /// Legend text.
    pub label: String,
    /// Fill colour.
    pub colour: RGBColor,
    /// One value per category.
    pub values: Vec<f64>,
    /// A second value per category drawn as a narrower, solid bar inside the first (which is
    /// then drawn light), e.g. the mean inside the peak.
    pub inner: Option<Vec<f64>>,
    /// Write each value on its bar (inside a stacked segment tall enough to hold it, above a
    /// side-by-side bar).
    pub labelled: bool,
}

/// What a panel draws.
#[derive(Debug, Clone)]
pub enum Body {
    /// Lines over a numeric x axis.
    Lines(Vec<Line>),
    /// Bars over named categories: side by side (grouped), or stacked.
    Bars {
        /// Category names, left to right.
        categories: Vec<String>,
        /// The series.
        series: Vec<Bars>,
        /// Stack the series in each category instead of putting them side by side.
        stacked: bool,
        /// One colour per category instead of per series (a single series, e.g. one bar per
        /// strategy in that strategy's colour); the legend then names the categories.
        by_category: Option<Vec<RGBColor>>,
    },
}

/// A chart panel.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Title above the panel.
    pub title: String,
    /// X axis description, with units.
    pub x_desc: String,
    /// Y axis description, with units.
    pub y_desc: String,
    /// What is drawn.
    pub body: Body,
    /// Labels the numeric x axis (lines only; e.g. log scales show the quantity).
    pub x_label: fn(f64) -> String,
    /// Smallest y shown.
    pub y_min: f64,
    /// Largest y shown (`None`: the data's maximum, with a little room above).
    pub y_max: Option<f64>,
    /// X values are counts: label whole numbers only (lines only).
    pub integer_x: bool,
    /// Y values are counts: label whole numbers only.
    pub integer_y: bool,
    /// What the band above the finite values holds, written in it (lines with
    /// [`Line::beyond`] points only).
    pub band: Option<String>,
    /// A note under the legend; a panel with nothing to draw shows only its title and this
    /// note, never empty axes.
    pub note: Option<String>,
}

impl Panel {
    /// A line chart starting at y = 0, with plain labels.
    pub fn lines(title: String, x_desc: &str, y_desc: &str, lines: Vec<Line>) -> Panel {
        Panel {
            title,
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            body: Body::Lines(lines),
            x_label: plain_label,
            y_min: 0.0,
            y_max: None,
            integer_x: false,
            integer_y: false,
            band: None,
            note: None,
        }
    }

    /// A bar chart over `categories`.
    pub fn bars(title: String, y_desc: &str, categories: Vec<String>, series: Vec<Bars>, stacked: bool) -> Panel {
        Panel {
            title,
            x_desc: String::new(),
            y_desc: y_desc.into(),
            body: Body::Bars {
                categories,
                series,
                stacked,
                by_category: None,
            },
            x_label: plain_label,
            y_min: 0.0,
            y_max: None,
            integer_x: false,
            integer_y: false,
            band: None,
            note: None,
        }
    }
}

/// Width of the legend column to the right of each panel, in pixels.
const LEGEND_W: u32 = 300;

/// A legend entry: a line swatch (solid or dashed) or a filled box, and its text.
enum Swatch {
    Line(RGBColor, bool),
    Box(RGBColor),
}

/// Names that fit `room` characters: a prefix shared by all (up to a `-`, `_`, `/` or `.`)
/// left out when some name is too long, then each cut to `room`. Returns the prefix left out.
fn shorten(names: &[String], room: usize) -> (String, Vec<String>) {
    let mut prefix = String::new();
    if names.len() > 1 && names.iter().any(|n| n.chars().count() > room) {
        let first = &names[0];
        let common = names[1..].iter().fold(first.len(), |len, n| {
            first
                .bytes()
                .zip(n.bytes())
                .take(len)
                .take_while(|(a, b)| a == b)
                .count()
        });
        // Cut at the last separator inside the shared part, so whole words are left out.
        if let Some(cut) = first[..common].rfind(['-', '_', '/', '.']) {
            prefix = first[..=cut].to_string();
        }
    }
    let names = names.iter().map(|n| fit(&n[prefix.len()..], room)).collect();
    (prefix, names)
}

/// Characters of a legend entry.
const LEGEND_CHARS: usize = 29;

/// Characters of a category name written upright under its bars.
const UPRIGHT_CHARS: usize = 24;

/// Cuts `s` to at most `n` characters, marking the cut.
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// Each of `texts` cut to at most `n` characters, so that texts that differ stay different:
/// where cutting the end would make two alike, the middle is cut instead (the end kept).
fn fit_distinct(texts: &[String], n: usize) -> Vec<String> {
    let cut: Vec<String> = texts.iter().map(|t| fit(t, n)).collect();
    cut.iter()
        .zip(texts)
        .map(|(c, t)| {
            let clash = cut.iter().zip(texts).any(|(c2, t2)| c2 == c && t2 != t);
            let len = t.chars().count();
            if !clash || len <= n {
                return c.clone();
            }
            let head = (n - 1) / 2;
            let tail = n - 1 - head;
            let chars: Vec<char> = t.chars().collect();
            format!(
                "{}…{}",
                chars[..head].iter().collect::<String>(),
                chars[len - tail..].iter().collect::<String>()
            )
        })
        .collect()
}

/// `text` broken at spaces into lines of at most `n` characters (a longer word is cut into
/// pieces of `n`).
fn wrap_words(text: &str, n: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        while word.len() > n {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            out.push(word.drain(..n).collect());
        }
        let word: String = word.into_iter().collect();
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > n {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// Lines a legend entry may take when wrapped.
const LEGEND_LINES: usize = 3;
/// Characters of a line of the note under the legend.
const NOTE_CHARS: usize = 36;

/// The legend: each entry's swatch and text, wrapped onto up to [`LEGEND_LINES`] lines when
/// the panel has the room (else one line each, cut so that texts that differ stay
/// different), then the panel's note.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(Swatch, String)],
    note: Option<&str>,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing failed: {e:?}");
    let style = TextStyle::from((FAMILY, 15).into_font()).color(&BLACK);
    let (_, h) = area.dim_in_pixel();
    let texts: Vec<String> = entries.iter().map(|(_, t)| t.clone()).collect();
    let wrapped: Vec<Vec<String>> = fit_distinct(&texts, LEGEND_LINES * LEGEND_CHARS)
        .iter()
        .map(|t| {
            let mut lines = wrap_words(t, LEGEND_CHARS);
            if lines.len() > LEGEND_LINES {
                let rest = lines[LEGEND_LINES - 1..].join(" ");
                lines.truncate(LEGEND_LINES - 1);
                lines.push(fit(&rest, LEGEND_CHARS));
            }
            lines
        })
        .collect();
    let note_lines = note.map_or(0, |n| wrap_words(n, NOTE_CHARS).len() as i32);
    let tall: i32 = wrapped.iter().map(|l| 24 + 18 * (l.len() as i32 - 1)).sum();
    let texts: Vec<Vec<String>> = if 52 + tall + 12 + 17 * note_lines <= h as i32 {
        wrapped
    } else {
        fit_distinct(&texts, LEGEND_CHARS)
            .into_iter()
            .map(|t| vec![t])
            .collect()
    };
    let mut y = 52;
    for ((swatch, _), lines) in entries.iter().zip(texts) {
        match swatch {
            Swatch::Line(c, dashed) => {
                if *dashed {
                    for x in [4, 16, 28] {
                        area.draw(&PathElement::new(vec![(x, y), (x + 7, y)], c.stroke_width(3)))
                            .map_err(err)?;
                    }
                } else {
                    area.draw(&PathElement::new(vec![(4, y), (36, y)], c.stroke_width(3)))
                        .map_err(err)?;
                }
            }
            Swatch::Box(c) => {
                area.draw(&Rectangle::new([(8, y - 7), (30, y + 7)], c.filled()))
                    .map_err(err)?;
            }
        }
        for (i, text) in lines.iter().enumerate() {
            area.draw(&Text::new(text.clone(), (44, y - 8 + 18 * i as i32), style.clone()))
                .map_err(err)?;
        }
        y += 24 + 18 * (lines.len() as i32 - 1);
    }
    if let Some(note) = note {
        let small = TextStyle::from((FAMILY, 13).into_font()).color(&BLACK);
        y += 4;
        for line in wrap_words(note, NOTE_CHARS) {
            area.draw(&Text::new(line, (4, y), small.clone())).map_err(err)?;
            y += 17;
        }
    }
    Ok(())
}

/// Whole numbers only (for counts): other tick positions get no label.
fn whole(v: f64, label: impl Fn(f64) -> String) -> String {
    if (v - v.round()).abs() < 1e-9 {
        label(v.round())
    } else {
        String::new()
    }
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &Panel) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| format!("drawing failed: {e:?}");
    let (w, _) = area.dim_in_pixel();
    let (plot_area, legend_area) = area.split_horizontally(w.saturating_sub(LEGEND_W));
    let nothing = match &p.body {
        Body::Lines(lines) => lines.iter().all(|l| l.points.is_empty() && l.beyond.is_empty()),
        Body::Bars { categories, .. } => categories.is_empty(),
    };
    if let (true, Some(note)) = (nothing, &p.note) {
        // Nothing to plot: the title and why, instead of empty axes.
        plot_area
            .draw(&Text::new(
                p.title.clone(),
                (60, 16),
                (FAMILY, 22).into_font().color(&BLACK),
            ))
            .map_err(err)?;
        let style = TextStyle::from((FAMILY, 17).into_font()).color(&BLACK);
        for (i, line) in wrap_words(note, 80).into_iter().enumerate() {
            plot_area
                .draw(&Text::new(line, (60, 90 + 26 * i as i32), style.clone()))
                .map_err(err)?;
        }
        return Ok(());
    }
    let y_data = match &p.body {
        Body::Lines(lines) => lines
            .iter()
            .flat_map(|l| l.points.iter().map(|q| q.1))
            .fold(p.y_min, f64::max),
        Body::Bars { series, stacked, .. } => {
            let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
            (0..n)
                .map(|i| {
                    let vals = series.iter().map(|s| s.values.get(i).copied().unwrap_or(0.0));
                    if *stacked {
                        vals.sum()
                    } else {
                        vals.fold(0.0, f64::max)
                    }
                })
                .fold(p.y_min, f64::max)
        }
    };
    let y_top = match p.y_max {
        Some(m) => m,
        None if y_data > p.y_min => y_data + (y_data - p.y_min) * 0.05,
        None => p.y_min + 1.0,
    };
    // Lines with values beyond any axis get a lane each in a band above `y_top`.
    let banded: Vec<usize> = match &p.body {
        Body::Lines(lines) => (0..lines.len()).filter(|&k| !lines[k].beyond.is_empty()).collect(),
        Body::Bars { .. } => Vec::new(),
    };
    let lane = (y_top - p.y_min) * 0.06;
    let y_hi = if banded.is_empty() {
        y_top
    } else {
        y_top + lane * (banded.len() as f64 + 1.5)
    };
    let y_labels = |chart_h: f64| -> usize {
        let by_size = (chart_h / 40.0).max(2.0) as usize;
        if p.integer_y && y_hi - p.y_min < by_size as f64 {
            (y_hi - p.y_min).floor() as usize + 1
        } else {
            by_size
        }
    };
    let mut entries: Vec<(Swatch, String)> = Vec::new();
    match &p.body {
        Body::Lines(lines) => {
            let xs = lines
                .iter()
                .flat_map(|l| l.points.iter().map(|q| q.0).chain(l.beyond.iter().copied()));
            let (x_lo, x_hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
            let (x_lo, x_hi) = if x_lo.is_finite() && x_hi > x_lo {
                (x_lo, x_hi)
            } else if x_lo.is_finite() {
                (x_lo - 1.0, x_lo + 1.0)
            } else {
                (0.0, 1.0)
            };
            let mut chart = ChartBuilder::on(&plot_area)
                .caption(&p.title, (FAMILY, 22))
                .margin(16)
                .x_label_area_size(48)
                .y_label_area_size(78)
                .build_cartesian_2d(x_lo..x_hi, p.y_min..y_hi)
                .map_err(err)?;
            let (_, ph) = chart.plotting_area().dim_in_pixel();
            let x_label = p.x_label;
            let x_count = if p.integer_x && x_hi - x_lo <= 20.0 {
                (x_hi - x_lo).floor() as usize + 1
            } else {
                10
            };
            let integer_x = p.integer_x;
            let integer_y = p.integer_y;
            chart
                .configure_mesh()
                .x_desc(&p.x_desc)
                .y_desc(&p.y_desc)
                .x_labels(x_count)
                .y_labels(y_labels(ph as f64))
                .x_label_formatter(&|x| if integer_x { whole(*x, x_label) } else { x_label(*x) })
                .y_label_formatter(&|y| {
                    if *y > y_top + 1e-9 * (y_top - p.y_min).abs() {
                        // The band holds no values: no number there.
                        String::new()
                    } else if integer_y {
                        whole(*y, short_number)
                    } else {
                        short_number(*y)
                    }
                })
                .label_style((FAMILY, 15))
                .axis_desc_style((FAMILY, 16))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err)?;
            if !banded.is_empty() {
                // The band: a rule under it and what it holds.
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x_lo, y_top + lane * 0.5), (x_hi, y_top + lane * 0.5)],
                        BLACK.mix(0.5).stroke_width(1),
                    )))
                    .map_err(err)?;
                let text = p.band.clone().unwrap_or_else(|| "beyond the axis".to_string());
                chart
                    .plotting_area()
                    .draw(
                        &(EmptyElement::at((x_lo, y_hi))
                            + Text::new(text, (6, 2), TextStyle::from((FAMILY, 13).into_font()).color(&BLACK))),
                    )
                    .map_err(err)?;
            }
            for (k, line) in lines.iter().enumerate() {
                let c = colour(line.colour);
                // Its values beyond the axis, in its lane of the band, merged with the rest.
                let lane_y = banded
                    .iter()
                    .position(|&b| b == k)
                    .map(|i| y_top + lane * (i as f64 + 1.0));
                let ceiling: Vec<(f64, f64)> =
                    lane_y.map_or(Vec::new(), |y| line.beyond.iter().map(|&x| (x, y)).collect());
                let mut all: Vec<(f64, f64)> = line.points.iter().chain(&ceiling).copied().collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0));
                // A line drawn over an earlier one (within half a percent of the y axis at
                // every point) would be hidden: it is dashed, marked at its points (when there
                // are few) and its legend says under which it lies.
                let close = (y_hi - p.y_min).abs() * 0.005;
                let under = lines[..k]
                    .iter()
                    .find(|l| {
                        !l.points.is_empty()
                            && l.points.len() == line.points.len()
                            && l.beyond == line.beyond
                            && l.points
                                .iter()
                                .zip(&line.points)
                                .all(|(a, b)| a.0 == b.0 && (a.1 - b.1).abs() <= close)
                    })
                    .map(|l| l.label.clone());
                // Past the palette, a repeated colour gets a dash pattern of its own.
                let dashed = line.dashed || line.colour >= DISTINCT || under.is_some();
                let style = c.stroke_width(2);
                if dashed {
                    let (dash, gap) = if line.colour >= DISTINCT { (3, 4) } else { (8, 5) };
                    chart
                        .draw_series(DashedLineSeries::new(all.iter().copied(), dash, gap, style))
                        .map_err(err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(all.iter().copied(), style))
                        .map_err(err)?;
                }
                chart
                    .draw_series(ceiling.iter().map(|&q| Cross::new(q, 6, c.stroke_width(2))))
                    .map_err(err)?;
                let label = match &under {
                    Some(other) => {
                        if line.points.len() <= 60 {
                            chart
                                .draw_series(line.points.iter().map(|&q| Circle::new(q, 4, c.filled())))
                                .map_err(err)?;
                        }
                        format!("{} (same as {other})", line.label)
                    }
                    None => line.label.clone(),
                };
                entries.push((Swatch::Line(c, dashed), label));
            }
        }
        Body::Bars {
            categories,
            series,
            stacked,
            by_category,
        } => {
            let n = categories.len().max(1);
            // Category names at the whole-number ticks; a prefix they all share is left out
            // (the axis description names it). Names too long for the room each category has
            // are written upright (read bottom to top), cut so that names that differ stay
            // different.
            let (pw_est, _) = plot_area.dim_in_pixel();
            let room = ((pw_est.saturating_sub(16 * 2 + 78) as f64 / n as f64) / 8.5).max(3.0) as usize;
            let (prefix, flat) = shorten(categories, room);
            let upright = flat.iter().any(|c| c.ends_with('…'));
            let names: Vec<String> = if upright {
                let bare: Vec<String> = categories.iter().map(|c| c[prefix.len()..].to_string()).collect();
                fit_distinct(&bare, UPRIGHT_CHARS)
            } else {
                flat
            };
            let label_font = TextStyle::from((FAMILY, 15).into_font()).color(&BLACK);
            // Each name's width as drawn (its height, upright).
            let widths: Vec<u32> = names
                .iter()
                .map(|c| {
                    plot_area
                        .estimate_text_size(c, &label_font)
                        .map_or(c.chars().count() as u32 * 9, |s| s.0)
                })
                .collect();
            let longest = widths.iter().copied().max().unwrap_or(0);
            // Rotated glyphs come out a little wider than estimated: room to spare.
            let label_area = if upright { 40 + longest * 11 / 10 } else { 48 };
            let mut chart = ChartBuilder::on(&plot_area)
                .caption(&p.title, (FAMILY, 22))
                .margin(16)
                .x_label_area_size(label_area)
                .y_label_area_size(78)
                .build_cartesian_2d(-0.5..(n as f64 - 0.5), p.y_min..y_hi)
                .map_err(err)?;
            let (_, ph) = chart.plotting_area().dim_in_pixel();
            let x_desc = if prefix.is_empty() {
                p.x_desc.clone()
            } else {
                format!("{} (names after \"{prefix}\")", p.x_desc)
            };
            let integer_y = p.integer_y;
            chart
                .configure_mesh()
                .x_desc(&x_desc)
                .y_desc(&p.y_desc)
                .x_labels(n + 1)
                .y_labels(y_labels(ph as f64))
                .x_label_formatter(&|x| {
                    let i = x.round();
                    if !upright && (x - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < names.len() {
                        names[i as usize].clone()
                    } else {
                        String::new()
                    }
                })
                .y_label_formatter(&|y| {
                    if integer_y {
                        whole(*y, short_number)
                    } else {
                        short_number(*y)
                    }
                })
                .disable_x_mesh()
                .label_style((FAMILY, 15))
                .axis_desc_style((FAMILY, 16))
                .light_line_style(WHITE.mix(0.0))
                .draw()
                .map_err(err)?;
            if upright {
                // Written downwards from just under the axis, so no estimate of its length
                // decides where it starts.
                let style = label_font.transform(FontTransform::Rotate90);
                let base = plot_area.get_base_pixel();
                for (i, name) in names.iter().enumerate() {
                    let (bx, by) = chart.backend_coord(&(i as f64, p.y_min));
                    plot_area
                        .draw(&Text::new(name.clone(), (bx - base.0, by - base.1 + 12), style.clone()))
                        .map_err(err)?;
                }
            }
            let k = series.len().max(1) as f64;
            let group_w = 0.8;
            let y_range = y_hi - p.y_min;
            let label_style = TextStyle::from((FAMILY, 14).into_font()).color(&BLACK);
            for (j, s) in series.iter().enumerate() {
                let mut rects = Vec::new();
                let mut texts = Vec::new();
                for (i, &v) in s.values.iter().enumerate() {
                    let centre = i as f64;
                    let fill = by_category.as_ref().and_then(|c| c.get(i).copied()).unwrap_or(s.colour);
                    let (x0, x1, y0) = if *stacked {
                        let below: f64 = series[..j]
                            .iter()
                            .map(|o| o.values.get(i).copied().unwrap_or(0.0))
                            .sum();
                        (centre - group_w / 2.0, centre + group_w / 2.0, below)
                    } else {
                        let w = group_w / k;
                        let x0 = centre - group_w / 2.0 + w * j as f64;
                        (x0 + w * 0.05, x0 + w * 0.95, 0.0)
                    };
                    let outer = if s.inner.is_some() {
                        fill.mix(0.35).filled()
                    } else {
                        fill.filled()
                    };
                    rects.push(Rectangle::new([(x0, p.y_min.max(y0)), (x1, y0 + v)], outer));
                    if let Some(inner) = &s.inner {
                        let m = inner.get(i).copied().unwrap_or(0.0);
                        let pad = (x1 - x0) * 0.25;
                        rects.push(Rectangle::new([(x0 + pad, y0), (x1 - pad, y0 + m)], fill.filled()));
                    }
                    if s.labelled {
                        let text = if v.fract() == 0.0 {
                            format!("{v:.0}")
                        } else {
                            short_number(v)
                        };
                        let x = (x0 + x1) / 2.0;
                        if *stacked && v >= 0.06 * y_range {
                            texts.push((text, (x, y0 + v / 2.0), 6));
                        } else if !*stacked {
                            texts.push((text, (x, y0 + v + 0.01 * y_range), 18));
                        }
                    }
                }
                chart.draw_series(rects).map_err(err)?;
                for (text, at, up) in texts {
                    let w = text.chars().count() as i32 * 4;
                    chart
                        .plotting_area()
                        .draw(&(EmptyElement::at(at) + Text::new(text, (-w, -up), label_style.clone())))
                        .map_err(err)?;
                }
                match by_category {
                    Some(colours) => {
                        for (c, name) in colours.iter().zip(categories) {
                            entries.push((Swatch::Box(*c), name.clone()));
                        }
                    }
                    None => entries.push((Swatch::Box(s.colour), s.label.clone())),
                }
            }
        }
    }
    draw_legend(&legend_area, &entries, p.note.as_deref())
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
        let p = Panel::lines(
            "t".into(),
            "x (s)",
            "y",
            vec![Line {
                label: "a".into(),
                colour: 0,
                dashed: false,
                points: vec![(0.0, 1.0), (1.0, 2.0)],
                beyond: Vec::new(),
            }],
        );
        write_chart(&dir.path().join("c"), &[p]).unwrap();
        let png = std::fs::read(dir.path().join("c.png")).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).map(str::trim).collect();
        assert!(texts.contains(&"a") && texts.contains(&"x (s)"), "{texts:?}");
    }

    #[test]
    fn legend_texts_that_differ_stay_different() {
        let texts: Vec<String> = [
            "exact_cooldown, shared_pool.base_load=0.5",
            "exact_cooldown, shared_pool.base_load=0.9",
            "flux",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let cut = fit_distinct(&texts, LEGEND_CHARS);
        assert!(cut.iter().all(|c| c.chars().count() <= LEGEND_CHARS), "{cut:?}");
        assert_ne!(cut[0], cut[1], "{cut:?}");
        assert!(cut[0].ends_with("=0.5") && cut[1].ends_with("=0.9"), "{cut:?}");
        assert_eq!(cut[2], "flux");
    }

    #[test]
    fn a_line_drawn_over_another_is_named_in_the_legend() {
        let dir = tempfile::tempdir().unwrap();
        let same = vec![(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)];
        let line = |label: &str, colour: usize| Line {
            label: label.into(),
            colour,
            dashed: false,
            points: same.clone(),
            beyond: Vec::new(),
        };
        let panel = Panel::lines("t".into(), "x", "y", vec![line("flux", 0), line("exact_cooldown", 1)]);
        write_chart(&dir.path().join("c"), &[panel]).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
        assert!(
            svg.contains("exact_cooldown (same as flux)"),
            "the hidden line is not named"
        );
    }

    /// A panel with nothing to draw says why instead of showing empty axes (vertex-dsq's
    /// utilisation panel was a blank grid from 0 to 1).
    #[test]
    fn a_panel_with_nothing_to_draw_shows_its_note_not_empty_axes() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Panel::lines("t: nothing".into(), "project", "use / limit", Vec::new());
        p.note = Some("No project has a limit of its own here.".into());
        write_chart(&dir.path().join("c"), &[p]).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
        assert!(svg.contains("No project has a limit of its own here."), "{svg}");
        assert!(!svg.contains("use / limit"), "no axes: {svg}");
    }
}
