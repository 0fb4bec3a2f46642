//! The look shared by every chart: frames, axes, lines, legends and number formats, so the
//! four charts read alike and each chart function only says what it plots.

use std::error::Error;

use plotters::coord::combinators::{BindKeyPoints, IntoLogRange, LogCoord, WithKeyPoints};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

use crate::model::units::{short, trimmed, Style};
use crate::model::{Sample, StepResult};

/// The embedded font (see the module's doc).
pub(super) const FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");
pub(super) const SINGLE: (u32, u32) = (1000, 600);
pub(super) const DOUBLE: (u32, u32) = (1000, 850);

// Tableau 10: distinct for most colour-blind readers, and familiar.
pub(super) const BLUE: RGBColor = RGBColor(31, 119, 180);
pub(super) const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub(super) const GREEN: RGBColor = RGBColor(44, 160, 44);
pub(super) const RED: RGBColor = RGBColor(214, 39, 40);
pub(super) const PURPLE: RGBColor = RGBColor(148, 103, 189);
pub(super) const GREY: RGBColor = RGBColor(110, 110, 110);

/// Registers the embedded font as plotters' "sans-serif", once per process.
pub(super) fn font_registered() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok())
}

pub(super) type Plot = Result<(), Box<dyn Error>>;
pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// A chart drawn through a borrowed area (`'b`) of a bitmap that borrows its path (`'a`).
type Chart<'b, 'a, Y> = ChartContext<'b, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;
pub(super) type Linear<'b, 'a> = Chart<'b, 'a, RangedCoordf64>;
pub(super) type Log<'b, 'a> = Chart<'b, 'a, WithKeyPoints<LogCoord<f64>>>;

pub(super) const TITLE_PX: u32 = 26;
pub(super) const PANEL_TITLE_PX: u32 = 20;
pub(super) const LABEL_PX: u32 = 16;
pub(super) const DESC_PX: u32 = 18;
pub(super) const SUBTITLE_PX: u32 = 16;
/// Characters of subtitle per line: what fits the 1,000-pixel charts at [`SUBTITLE_PX`].
const SUBTITLE_CHARS: usize = 110;
const GREY_TEXT: RGBColor = RGBColor(90, 90, 90);

/// Linear charts reach this multiple of their largest value, and log charts keep the top 30%
/// of their decades free, so the legend in the upper left never covers data.
pub(super) const HEADROOM: f64 = 1.4;
const LOG_DATA_SHARE: f64 = 0.7;

/// What the x axis of a chart counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAxis {
    /// Connected clients, for a ramp.
    Clients,
    /// Messages per second offered by the publishers, for a throughput search.
    OfferedRate,
}

impl XAxis {
    pub(super) fn desc(self) -> &'static str {
        match self {
            XAxis::Clients => "connected clients",
            XAxis::OfferedRate => "offered rate (messages published per second)",
        }
    }

    /// For titles: "… vs clients".
    pub(super) fn noun(self) -> &'static str {
        match self {
            XAxis::Clients => "clients",
            XAxis::OfferedRate => "offered rate",
        }
    }

    pub(super) fn of(self, s: &StepResult) -> f64 {
        match self {
            XAxis::Clients => s.clients as f64,
            XAxis::OfferedRate => s.offered_rate,
        }
    }

    /// Where a per-second sample sits on this axis, if it has a place on it.
    pub(super) fn of_sample(self, s: &Sample) -> Option<f64> {
        match self {
            XAxis::Clients => Some(s.clients as f64),
            XAxis::OfferedRate => None,
        }
    }

    /// The x range: from 0 to a little past the largest value.
    pub(super) fn max(self, steps: &[StepResult]) -> f64 {
        steps.iter().map(|s| self.of(s)).fold(10.0, f64::max) * 1.05
    }
}

/// A chart's title and axes.
pub(super) struct Frame<'t> {
    pub title: &'t str,
    pub x: XAxis,
    /// Whole-image charts get a larger title than the panels of a two-panel image.
    pub title_px: u32,
    pub y_desc: &'t str,
}

/// One quantity per step, drawn as a line against clients.
pub(super) struct StepSeries {
    pub name: &'static str,
    pub color: RGBColor,
    pub value: fn(&StepResult) -> f64,
}

/// A resource measured per step (the line) and per second (faint dots behind it).
pub(super) struct ResourceSeries {
    pub name: &'static str,
    pub color: RGBColor,
    pub step: fn(&StepResult) -> f64,
    pub sample: fn(&Sample) -> f64,
}

pub(super) fn linear_chart<'b, 'a>(
    area: &'b Area<'a>,
    frame: &Frame,
    x_max: f64,
    y_max: f64,
    y_fmt: fn(&f64) -> String,
) -> Result<Linear<'b, 'a>, Box<dyn Error>> {
    let mut chart = builder(area, frame).build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc(frame.x.desc())
        .y_desc(frame.y_desc)
        .x_label_formatter(&|v| count(*v))
        .y_label_formatter(&y_fmt)
        .label_style(("sans-serif", LABEL_PX))
        .axis_desc_style(("sans-serif", DESC_PX))
        .draw()?;
    Ok(chart)
}

/// A chart with a log y axis, for latencies that span several orders of magnitude.
pub(super) fn log_chart<'b, 'a>(
    area: &'b Area<'a>,
    frame: &Frame,
    x_max: f64,
    (lo, hi): (f64, f64),
) -> Result<Log<'b, 'a>, Box<dyn Error>> {
    let mut chart = builder(area, frame).build_cartesian_2d(0f64..x_max, log_axis(lo, hi))?;
    chart
        .configure_mesh()
        .x_desc(frame.x.desc())
        .y_desc(frame.y_desc)
        .x_label_formatter(&|v| count(*v))
        .y_label_formatter(&|v| number(*v))
        .label_style(("sans-serif", LABEL_PX))
        .axis_desc_style(("sans-serif", DESC_PX))
        .draw()?;
    Ok(chart)
}

fn builder<'b, 'a>(
    area: &'b Area<'a>,
    frame: &Frame,
) -> ChartBuilder<'b, 'static, BitMapBackend<'a>> {
    let mut b = ChartBuilder::on(area);
    if !frame.title.is_empty() {
        b.caption(frame.title, ("sans-serif", frame.title_px));
    }
    b.margin(15).x_label_area_size(50).y_label_area_size(80);
    b
}

/// Titles a whole image: `title`, and under it what was measured (`setup`, the run's
/// parameters) in smaller grey type, wrapped to the width, so a chart read on its own still
/// says what it shows. Returns the area below the two.
pub(super) fn titled<'a>(
    root: &Area<'a>,
    title: &str,
    setup: &str,
) -> Result<Area<'a>, Box<dyn Error>> {
    let area = root
        .margin(8, 0, 0, 0)
        .titled(title, ("sans-serif", TITLE_PX))?;
    let (width, _) = area.dim_in_pixel();
    let style = TextStyle::from(("sans-serif", SUBTITLE_PX).into_font())
        .color(&GREY_TEXT)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let lines = wrap(setup, SUBTITLE_CHARS);
    for (i, line) in lines.iter().enumerate() {
        let y = (i as u32 * (SUBTITLE_PX + 4)) as i32;
        area.draw(&Text::new(
            line.clone(),
            (width as i32 / 2, y),
            style.clone(),
        ))?;
    }
    let used = lines.len() as u32 * (SUBTITLE_PX + 4) + 4;
    let (_, below) = area.split_vertically(used);
    Ok(below)
}

/// `text` in lines of at most `width` characters, broken after a "; " or ", " where it can
/// (a comma inside a number, as in "2,000", is not a break).
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices([';', ',']) {
        if text[i + 1..].starts_with(' ') {
            pieces.push(&text[start..=i]);
            start = i + 1;
        }
    }
    pieces.push(&text[start..]);
    let mut lines = Vec::new();
    let mut line = String::new();
    for piece in pieces {
        if !line.is_empty() && line.chars().count() + piece.chars().count() > width {
            lines.push(line.trim().to_string());
            line.clear();
        }
        line.push_str(piece);
    }
    if !line.trim().is_empty() {
        lines.push(line.trim().to_string());
    }
    lines
}

/// Where a run failed and the limit that bound it, drawn on every chart of the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// The failing step's place on the x axis (clients, or the offered rate) and what the
    /// line is labelled: "step 4 failed: the broker ran out of open files".
    pub failed_at: Option<(f64, String)>,
    /// A limit that bound the run, at its place on the x axis: "broker open files: 20,000".
    pub limit: Option<(f64, String)>,
}

/// The verdict as vertical lines from `y_lo` to `y_hi`, with legend entries: the limit as a
/// wide pale purple band, and the failing step as a black dashed line drawn over it (the two
/// often fall together: a ramp fails at the limit; red stays the latency objective's).
pub(super) fn verdict_lines<'b, 'a: 'b, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'b, 'a, Y>,
    verdict: Option<&Verdict>,
    (y_lo, y_hi): (f64, f64),
) -> Plot {
    let Some(v) = verdict else { return Ok(()) };
    if let Some((x, label)) = &v.limit {
        let band = PURPLE.mix(0.45).stroke_width(8);
        chart
            .draw_series(LineSeries::new([(*x, y_lo), (*x, y_hi)], band))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], band));
    }
    if let Some((x, label)) = &v.failed_at {
        chart
            .draw_series(dashed(vec![(*x, y_lo), (*x, y_hi)], BLACK))?
            .label(label.as_str())
            .legend(move |(x, y)| legend_dashed(x, y, BLACK));
    }
    Ok(())
}

/// How far the x axis must reach for the verdict's lines, at most half again past the data
/// (a limit far beyond the run says nothing on this chart).
pub(super) fn x_reach(data_max: f64, verdict: Option<&Verdict>) -> f64 {
    let limit = verdict
        .and_then(|v| v.limit.as_ref())
        .map(|(x, _)| *x * 1.05)
        .filter(|x| *x <= data_max * 1.5)
        .unwrap_or(0.0);
    data_max.max(limit)
}

/// One line per series, with its legend entry.
pub(super) fn step_lines<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    x: XAxis,
    steps: &[StepResult],
    series: &[StepSeries],
) -> Plot {
    for s in series {
        let color = s.color;
        chart
            .draw_series(line(
                steps.iter().map(|st| (x.of(st), (s.value)(st))),
                color,
            ))?
            .label(s.name)
            .legend(move |(x, y)| legend_line(x, y, color));
    }
    Ok(())
}

/// Each resource as faint per-second dots with the step means drawn over them as a line.
pub(super) fn resource_lines(
    chart: &mut Linear,
    x: XAxis,
    steps: &[StepResult],
    samples: &[Sample],
    series: &[ResourceSeries],
) -> Plot {
    for s in series {
        let dot = s.color.mix(0.25).filled();
        chart.draw_series(samples.iter().filter_map(|sa| {
            let at = x.of_sample(sa)?;
            Some(Circle::new((at, (s.sample)(sa)), 2, dot))
        }))?;
    }
    let lines: Vec<StepSeries> = series
        .iter()
        .map(|s| StepSeries {
            name: s.name,
            color: s.color,
            value: s.step,
        })
        .collect();
    step_lines(chart, x, steps, &lines)
}

/// The latency objective as a dashed red line across the chart, with its legend entry.
pub(super) fn objective_line<'b, 'a: 'b, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'b, 'a, Y>,
    x_max: f64,
    slo_ms: f64,
) -> Plot {
    objective_line_in(chart, x_max, slo_ms, RED)
}

/// [`objective_line`] in `colour`: black where red is a broker's (Redis, in compare's charts).
pub(super) fn objective_line_in<'b, 'a: 'b, Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'b, 'a, Y>,
    x_max: f64,
    slo_ms: f64,
    colour: RGBColor,
) -> Plot {
    chart
        .draw_series(dashed(vec![(0.0, slo_ms), (x_max, slo_ms)], colour))?
        .label(format!("objective: p99 ≤ {} ms", number(slo_ms)))
        .legend(move |(x, y)| legend_dashed(x, y, colour));
    Ok(())
}

/// The legend every chart shares, in the upper left (where the headroom keeps it off the data).
pub(super) fn legend<'b, 'a: 'b, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'b, BitMapBackend<'a>, Cartesian2d<X, Y>>,
) -> Plot {
    legend_at(chart, SeriesLabelPosition::UpperLeft)
}

/// The shared legend style at `position`.
pub(super) fn legend_at<'b, 'a: 'b, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'b, BitMapBackend<'a>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Plot {
    chart
        .configure_series_labels()
        .position(position)
        .margin(12)
        .label_font(("sans-serif", LABEL_PX))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

pub(super) fn line<DB: DrawingBackend>(
    points: impl IntoIterator<Item = (f64, f64)>,
    color: RGBColor,
) -> LineSeries<DB, (f64, f64)> {
    LineSeries::new(points, color.stroke_width(3)).point_size(4)
}

pub(super) fn dashed(
    points: Vec<(f64, f64)>,
    color: RGBColor,
) -> DashedLineSeries<std::vec::IntoIter<(f64, f64)>, u32> {
    DashedLineSeries::new(points, 12, 8, color.stroke_width(2))
}

pub(super) fn legend_line(x: i32, y: i32, color: RGBColor) -> PathElement<(i32, i32)> {
    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
}

pub(super) fn legend_dashed(
    x: i32,
    y: i32,
    color: RGBColor,
) -> DashedPathElement<std::vec::IntoIter<(i32, i32)>, u32> {
    DashedPathElement::new(vec![(x, y), (x + 24, y)], 7, 4, color.stroke_width(2))
}

/// A log-scale range around the values, widened a bit below and by [`LOG_DATA_SHARE`] above;
/// values ≤ 0 are skipped because they have no place on a log axis.
pub(super) fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.01, 10.0);
    }
    let (lo, hi) = (lo / 1.6, (hi * 1.6).max(lo * 10.0));
    (lo, (lo.ln() + (hi / lo).ln() / LOG_DATA_SHARE).exp())
}

/// A log axis labelled at 1-2-5 steps (1-3 past three decades, powers of ten past five),
/// with a grid line at every integer multiple of a power of ten: plotters' own log axis labels
/// only powers of ten, which leaves a typical 0.3–300 ms range with three labels and the
/// bottom of the chart unlabelled.
pub(super) fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let decades = (lo.log10().floor() as i32)..=(hi.log10().ceil() as i32);
    let steps: &[f64] = match decades.clone().count() - 1 {
        0..=3 => &[1.0, 2.0, 5.0],
        4..=5 => &[1.0, 3.0],
        _ => &[1.0],
    };
    let in_range = |v: &f64| (lo..=hi).contains(v);
    let ticks = decades
        .clone()
        .flat_map(|d| steps.iter().map(move |m| m * 10f64.powi(d)))
        .filter(in_range);
    let grid = decades
        .flat_map(|d| (1..10).map(move |m| f64::from(m) * 10f64.powi(d)))
        .filter(in_range);
    LogCoord::from(IntoLogRange::log_scale(lo..hi))
        .with_key_points(ticks.collect())
        .with_light_points(grid)
}

/// Microseconds to milliseconds, floored at 1 µs so a log axis can show it.
pub(super) fn ms(us: u64) -> f64 {
    us.max(1) as f64 / 1000.0
}

/// A count for an axis: 950, 1.5k, 20k, 1.2M.
pub(super) fn count(v: f64) -> String {
    short(v, Style::Axis)
}

/// A number with at most three significant decimals and no trailing zeros.
pub(super) fn number(v: f64) -> String {
    trimmed(v)
}
