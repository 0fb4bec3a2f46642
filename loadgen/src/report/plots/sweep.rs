//! `fanout.png` of a fan-out sweep (`loadgen fanout --subscribers 1,10,100,… --out DIR`): how
//! steady-state throughput changes as every message goes to more subscribers, and what set it.
//!
//! Two panels over one log subscribers axis rather than two y axes on one chart: deliveries
//! per second (the broker's work) above on a linear axis from zero, and messages published
//! per second (what a publisher sees) below on a log axis, because it falls about as
//! 1/subscribers and would lie flat on zero on a linear one. Each panel draws the median of
//! each count as a line and every run as a faint dot behind it.

use std::error::Error;
use std::path::Path;

use plotters::coord::combinators::{LogCoord, WithKeyPoints};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::*;
// Named, so that they win over plotters' own colours of the same names.
use super::draw::{BLUE, ORANGE};
use crate::model::fanout::{medians, CountMedian, RunRow};
use crate::report::files::ReportError;

type LogX = WithKeyPoints<LogCoord<f64>>;

/// One panel's quantity.
struct Quantity {
    title: &'static str,
    y_desc: &'static str,
    color: RGBColor,
    run: fn(&RunRow) -> f64,
    median: fn(&CountMedian) -> f64,
    /// Whether each median's label carries the letter of what set it.
    classed: bool,
}

/// Draws the sweep in `rows` into `path`, with `setup` (what was measured) under the title;
/// draws nothing for no rows.
pub fn plot_fanout_sweep(path: &Path, rows: &[RunRow], setup: &str) -> Result<(), ReportError> {
    if rows.is_empty() {
        return Ok(());
    }
    let fail = |message: String| ReportError::Plot {
        path: path.to_path_buf(),
        message,
    };
    if !font_registered() {
        return Err(fail("the embedded font could not be loaded".into()));
    }
    draw(path, rows, setup).map_err(|e| fail(e.to_string()))
}

/// The subscriber range shown: the whole decades around `counts`, so the axis is labelled at
/// powers of ten at both ends (1…10000 for 1,10,…,10000; 1…100 for 1,10,50).
pub(crate) fn decades(counts: impl Iterator<Item = usize>) -> (f64, f64) {
    let (lo, hi) = counts
        .filter(|&c| c > 0)
        .fold((usize::MAX, 0), |(lo, hi), c| (lo.min(c), hi.max(c)));
    if lo > hi {
        return (1.0, 10.0);
    }
    let lo = 10f64.powf((lo as f64).log10().floor());
    let hi = 10f64.powf((hi as f64).log10().ceil());
    (lo, hi.max(lo * 10.0))
}

/// How far past the end decades the subscribers axis goes, as a factor: enough that the dots
/// and the value labels at the ends stay clear of the frame.
const X_ROOM: f64 = 1.6;

/// Closest two labels of the subscribers axis may be, in decades, before they collide.
const MIN_TICK_GAP: f64 = 0.2;

/// Where the subscribers axis is labelled: at every count measured, so a reader sees which
/// counts the points are, then at the powers of ten from `lo` to `hi` that leave room.
pub(crate) fn x_ticks(counts: impl Iterator<Item = usize>, (lo, hi): (f64, f64)) -> Vec<f64> {
    let mut counts: Vec<usize> = counts.filter(|&c| c > 0).collect();
    counts.sort_unstable();
    counts.dedup();
    let decades = (lo.log10().round() as i32)..=(hi.log10().round() as i32);
    let mut ticks: Vec<f64> = Vec::new();
    let candidates = counts.into_iter().map(|c| c as f64);
    for t in candidates.chain(decades.map(|d| 10f64.powi(d))) {
        if ticks
            .iter()
            .all(|k| (k.log10() - t.log10()).abs() >= MIN_TICK_GAP)
        {
            ticks.push(t);
        }
    }
    ticks.sort_by(f64::total_cmp);
    ticks
}

/// The subscribers axis: log scale over `(lo, hi)` with a little room past both ends (so the
/// dots there stay off the frame), labelled at `ticks`, a faint grid line at every integer
/// multiple of a power of ten.
fn x_axis((lo, hi): (f64, f64), ticks: &[f64]) -> LogX {
    let (from, to) = (lo / X_ROOM, hi * X_ROOM);
    let grid = ((lo.log10().round() as i32) - 1..=(hi.log10().round() as i32))
        .flat_map(|d| (1..10).map(move |m| f64::from(m) * 10f64.powi(d)))
        .filter(|v| (from..=to).contains(v));
    LogCoord::from(IntoLogRange::log_scale(from..to))
        .with_key_points(ticks.to_vec())
        .with_light_points(grid)
}

/// Which side of its point a median's value label goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    AboveLeft,
    AboveRight,
    BelowLeft,
    BelowRight,
}

/// Where a median's value label goes so that its line does not run through it: on the side
/// its two segments leave free, and off to one side, clear of the runs' dots straight above
/// and below it. `prev` and `next` are the neighbouring medians (in any monotone scale: only
/// which is higher matters).
pub(crate) fn label_side(prev: Option<f64>, y: f64, next: Option<f64>) -> Side {
    let rising_in = prev.map(|p| y > p);
    let rising_out = next.map(|n| n > y);
    match (rising_in, rising_out) {
        // The line leaves up to the right; it comes, if at all, from the left.
        (_, Some(true)) => Side::BelowRight,
        // The line leaves down to the right or flat, or there is no line.
        (_, Some(false)) | (None, None) => Side::AboveRight,
        // The last point: the line comes from the left; away from the right edge.
        (Some(true), None) => Side::AboveLeft,
        (Some(false), None) => Side::BelowLeft,
    }
}

/// The pixel offset and text anchor of a label on `side` of its point.
fn placement(side: Side) -> ((i32, i32), Pos) {
    let gap = 8;
    let (l, r, top, bottom) = (HPos::Left, HPos::Right, VPos::Top, VPos::Bottom);
    match side {
        Side::AboveLeft => ((-gap, -gap), Pos::new(r, bottom)),
        Side::AboveRight => ((gap, -gap), Pos::new(l, bottom)),
        Side::BelowLeft => ((-gap, gap), Pos::new(r, top)),
        Side::BelowRight => ((gap, gap), Pos::new(l, top)),
    }
}

fn draw(path: &Path, rows: &[RunRow], setup: &str) -> Plot {
    let image = BitMapBackend::new(path, DOUBLE).into_drawing_area();
    image.fill(&WHITE)?;
    let root = titled(
        &image,
        "Fan-out at steady state: throughput as the number of subscribers grows",
        &format!(
            "{setup}; letter: what set most runs' rate (B broker-, C client-, W window-, \
             M machine-bound)"
        ),
    )?;
    let (top, bottom) = root.split_vertically(50.percent());
    let medians = medians(rows);
    let span = decades(rows.iter().map(|r| r.subscribers));
    let ticks = x_ticks(medians.iter().map(|m| m.subscribers), span);
    let x = || x_axis(span, &ticks);
    let runs = medians.iter().map(|m| m.runs).max().unwrap_or(0);
    let same_runs = medians.iter().all(|m| m.runs == runs);
    let median_label = if same_runs {
        format!("median of {runs} run{}", if runs == 1 { "" } else { "s" })
    } else {
        "median of each count's runs".to_string()
    };

    let deliveries = Quantity {
        title: "Deliveries per second: messages received by all subscribers together",
        y_desc: "deliveries per second",
        color: BLUE,
        run: |r| r.deliveries_per_sec,
        median: |m| m.deliveries_per_sec.median,
        classed: true,
    };
    let y_max = rows.iter().map(deliveries.run).fold(1.0, f64::max) * HEADROOM;
    let mut chart = panel(&top, &deliveries, x(), 0f64..y_max)?;
    series(&mut chart, &deliveries, rows, &medians, &median_label)?;
    // Upper right: a rate that falls with fan-out leaves that corner free.
    legend_at(&mut chart, SeriesLabelPosition::UpperRight)?;

    let published = Quantity {
        title: "Messages published per second (each one is delivered to every subscriber)",
        y_desc: "messages published per second (log scale)",
        color: ORANGE,
        run: |r| r.publishes_per_sec,
        median: |m| m.publishes_per_sec,
        classed: false,
    };
    // A published rate falls about as 1/subscribers, so the lowest point is the last one; the
    // extra value below it makes room for its label under it.
    let lowest = rows.iter().map(published.run).fold(f64::MAX, f64::min);
    let (y_lo, y_hi) = log_bounds(rows.iter().map(published.run).chain([lowest / 3.0]));
    let mut chart = panel(&bottom, &published, x(), log_axis(y_lo, y_hi))?;
    series(&mut chart, &published, rows, &medians, &median_label)?;
    legend_at(&mut chart, SeriesLabelPosition::UpperRight)?;
    image.present()?;
    Ok(())
}

type Panel<'b, 'a, Y> = ChartContext<'b, BitMapBackend<'a>, Cartesian2d<LogX, Y>>;

/// A panel with subscribers on a log x axis and `q` on the y axis.
fn panel<'b, 'a, Y>(
    area: &'b Area<'a>,
    q: &Quantity,
    x: LogX,
    y: impl AsRangedCoord<CoordDescType = Y, Value = f64>,
) -> Result<Panel<'b, 'a, Y>, Box<dyn Error>>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(q.title, ("sans-serif", PANEL_TITLE_PX))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("subscribers (log scale)")
        .y_desc(q.y_desc)
        .x_label_formatter(&|v| count(*v))
        .y_label_formatter(&|v| count(*v))
        // One faint line between labels (log axes draw their own multiples regardless).
        .y_max_light_lines(1)
        .label_style(("sans-serif", LABEL_PX))
        .axis_desc_style(("sans-serif", DESC_PX))
        .draw()?;
    Ok(chart)
}

/// Every run as a faint dot, the medians as a line over them, each median's value beside it.
fn series<Y>(
    chart: &mut Panel<'_, '_, Y>,
    q: &Quantity,
    rows: &[RunRow],
    medians: &[CountMedian],
    median_label: &str,
) -> Plot
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let color = q.color;
    let dot = color.mix(0.45).filled();
    chart
        .draw_series(
            rows.iter()
                .map(|r| Circle::new((r.subscribers as f64, (q.run)(r)), 4, dot)),
        )?
        .label("each run")
        .legend(move |(x, y)| Circle::new((x + 12, y), 4, dot));
    let points: Vec<(f64, f64)> = medians
        .iter()
        .map(|m| (m.subscribers as f64, (q.median)(m)))
        .collect();
    chart
        .draw_series(line(points.iter().copied(), color))?
        .label(median_label)
        .legend(move |(x, y)| legend_line(x, y, color));
    let font = TextStyle::from(("sans-serif", LABEL_PX).into_font()).color(&color);
    chart.draw_series(points.iter().enumerate().map(|(i, &(x, y))| {
        let prev = i.checked_sub(1).map(|p| points[p].1);
        let next = points.get(i + 1).map(|n| n.1);
        let (offset, pos) = placement(label_side(prev, y, next));
        let class = match medians[i].usual_bottleneck() {
            Some(c) if q.classed => format!(" {}", c[..1].to_uppercase()),
            _ => String::new(),
        };
        EmptyElement::at((x, y)) + Text::new(count(y) + &class, offset, font.pos(pos))
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(subscribers: usize, run: usize, deliveries_per_sec: f64) -> RunRow {
        crate::model::fanout::example_row(subscribers, run, 2_000_000, deliveries_per_sec)
    }

    #[test]
    fn whole_decades_around_the_counts() {
        assert_eq!(
            decades([1, 10, 100, 1000, 10_000].into_iter()),
            (1.0, 10_000.0)
        );
        assert_eq!(decades([1, 10, 50].into_iter()), (1.0, 100.0));
        assert_eq!(decades([100].into_iter()), (100.0, 1000.0));
        assert_eq!(decades([30, 700].into_iter()), (10.0, 1000.0));
        assert_eq!(decades(std::iter::empty()), (1.0, 10.0));
    }

    #[test]
    fn the_measured_counts_are_labelled() {
        let ticks = |c: &[usize]| x_ticks(c.iter().copied(), decades(c.iter().copied()));
        assert_eq!(
            ticks(&[1, 10, 100, 1000, 10_000]),
            [1.0, 10.0, 100.0, 1000.0, 10_000.0]
        );
        assert_eq!(ticks(&[1, 10, 50]), [1.0, 10.0, 50.0, 100.0]);
        // 80 would crowd 100: the decade's label gives way to the count's.
        assert_eq!(ticks(&[2, 80]), [1.0, 2.0, 10.0, 80.0]);
        assert_eq!(ticks(&[100, 120]), [100.0, 1000.0]);
    }

    #[test]
    fn labels_keep_off_their_line() {
        use Side::*;
        assert_eq!(label_side(None, 1.0, None), AboveRight);
        // A peak, a valley.
        assert_eq!(label_side(Some(1.0), 2.0, Some(1.0)), AboveRight);
        assert_eq!(label_side(Some(3.0), 2.0, Some(3.0)), BelowRight);
        assert_eq!(label_side(None, 1.0, Some(2.0)), BelowRight);
        assert_eq!(label_side(Some(1.0), 2.0, Some(3.0)), BelowRight);
        assert_eq!(label_side(Some(3.0), 2.0, Some(1.0)), AboveRight);
        assert_eq!(label_side(Some(2.0), 2.0, Some(2.0)), AboveRight);
        assert_eq!(label_side(Some(1.0), 2.0, None), AboveLeft);
        assert_eq!(label_side(Some(3.0), 2.0, None), BelowLeft);
    }

    #[test]
    fn draws_a_sweep_and_nothing_without_runs() {
        let dir = std::env::temp_dir().join(format!("loadgen-sweep-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.png");
        plot_fanout_sweep(&empty, &[], "nothing").unwrap();
        assert!(!empty.exists());
        let mut rows = Vec::new();
        for (i, s) in [1, 10, 100, 1000, 10_000].into_iter().enumerate() {
            for run in 1..=3 {
                let rate = 1e6 * (1.0 + i as f64) * (0.9 + 0.05 * run as f64);
                rows.push(row(s, run, rate));
            }
        }
        let path = dir.join("fanout.png");
        plot_fanout_sweep(&path, &rows, "1 publisher(s), test").unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 20_000);
        // One count, one run: still a chart.
        plot_fanout_sweep(&dir.join("one.png"), &rows[..1], "one run").unwrap();
    }
}
