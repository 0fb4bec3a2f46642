//! The look shared by every chart: frames, axes, lines, legends and number formats, so the
//! four charts read alike and each chart function only says what it plots.

use std::error::Error;
use std::path::Path;

use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

pub(super) use super::scale::{log_axis, log_bounds, wrap};
use crate::model::units::{short, trimmed, Style};
use crate::model::{Sample, StepResult};
use crate::report::files::ReportError;

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

/// Draws a chart into `path` with `plot`, once the embedded font is registered; a failure
/// is the report's error, naming the file.
pub(super) fn drawn(path: &Path, plot: impl FnOnce() -> Plot) -> Result<(), ReportError> {
    let fail = |message: String| ReportError::Plot {
        path: path.to_path_buf(),
        message,
    };
    if !font_registered() {
        return Err(fail("the embedded font could not be loaded".into()));
    }
    plot().map_err(|e| fail(e.to_string()))
}

/// Registers the embedded font as plotters' "sans-serif", once per process.
pub(super) fn font_registered() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok())
}

pub(super) type Plot = Result<(), Box<dyn Error>>;
pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
/// A chart drawn through a borrowed area (`'b`) of a bitmap that borrows its path (`'a`).
pub(super) type Chart<'b, 'a, Y> =
    ChartContext<'b, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>;
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

/// Linear charts reach this multiple of their largest value (log charts keep the top of
/// their decades free: [`log_bounds`]), so the legend in the upper left never covers data.
pub(super) const HEADROOM: f64 = 1.4;

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
    let y = Axis {
        coord: (0f64..y_max).into(),
        desc: frame.y_desc,
        label: &y_fmt,
    };
    chart_with(area, frame.title, frame.title_px, frame.x_axis(x_max), y)
}

/// A chart with a log y axis, for latencies that span several orders of magnitude.
pub(super) fn log_chart<'b, 'a>(
    area: &'b Area<'a>,
    frame: &Frame,
    x_max: f64,
    (lo, hi): (f64, f64),
) -> Result<Log<'b, 'a>, Box<dyn Error>> {
    let y = Axis {
        coord: log_axis(lo, hi),
        desc: frame.y_desc,
        label: &number_label,
    };
    chart_with(area, frame.title, frame.title_px, frame.x_axis(x_max), y)
}

impl Frame<'_> {
    /// The x axis of a chart against clients or the offered rate, from 0 to `x_max`.
    fn x_axis(&self, x_max: f64) -> Axis<'_, RangedCoordf64> {
        Axis {
            coord: (0f64..x_max).into(),
            desc: self.x.desc(),
            label: &count_label,
        }
    }
}

/// One axis of a chart: where it runs, what it shows and how its labels are written.
pub(super) struct Axis<'t, C> {
    pub coord: C,
    pub desc: &'t str,
    pub label: &'t dyn Fn(&f64) -> String,
}

/// A chart titled `title` (none if empty) on `area`, with the mesh, labels and margins every
/// chart here shares; the x axis linear, the y axis linear or log.
pub(super) fn chart_with<'b, 'a, Y>(
    area: &'b Area<'a>,
    title: &str,
    title_px: u32,
    x: Axis<RangedCoordf64>,
    y: Axis<Y>,
) -> Result<Chart<'b, 'a, Y>, Box<dyn Error>>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut b = ChartBuilder::on(area);
    if !title.is_empty() {
        b.caption(title, ("sans-serif", title_px));
    }
    b.margin(15).x_label_area_size(50).y_label_area_size(80);
    let mut chart = b.build_cartesian_2d(x.coord, y.coord)?;
    chart
        .configure_mesh()
        .x_desc(x.desc)
        .y_desc(y.desc)
        .x_label_formatter(x.label)
        .y_label_formatter(y.label)
        .label_style(("sans-serif", LABEL_PX))
        .axis_desc_style(("sans-serif", DESC_PX))
        .draw()?;
    Ok(chart)
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
        // A sample without the figure (NaN) has no dot.
        chart.draw_series(samples.iter().filter_map(|sa| {
            let (at, value) = (x.of_sample(sa)?, (s.sample)(sa));
            value.is_finite().then(|| Circle::new((at, value), 2, dot))
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

/// [`count`] as an axis's label formatter.
fn count_label(v: &f64) -> String {
    count(*v)
}

/// [`number`] as an axis's label formatter.
pub(super) fn number_label(v: &f64) -> String {
    number(*v)
}
