//! `soak.png`: a soak over time, in two panels that share the time axis: the broker's memory
//! (once a second), with the flat-RSS rule drawn where it was judged, and the healthy
//! subscribers' delivery latency (each counted second's p99, each window's p50 and p99). The
//! counted windows are shaded in both, red where a window lost or was late, so that a step in
//! memory or a spike in latency can be laid against the window, and the burst, it fell in.

use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::*;
use super::scale::log_bounds_keeping;
// Named, so that they win over plotters' own colours of the same names.
use super::draw::{BLUE, GREY, ORANGE, RED};
use crate::model::soak::{Figures, SoakSummary};
use crate::model::units::{grouped, to_mib, trimmed};
use crate::model::Sample;
use crate::report::files::ReportError;

/// Runs this long or shorter are drawn in seconds, longer ones in minutes.
const SECONDS_UP_TO: f64 = 600.0;
/// Counted seconds past which their dots are drawn small and faint.
const MANY_SECONDS: usize = 300;
/// Windows are numbered on the chart when there are at most this many; past it, every fifth.
const NUMBER_EVERY_WINDOW_UP_TO: usize = 15;

/// Draws the soak's chart into `path`; `p99_per_second` is each counted second's p99
/// (seconds since the start, µs).
pub fn plot_soak(
    path: &Path,
    s: &SoakSummary,
    samples: &[Sample],
    p99_per_second: &[(f64, u64)],
) -> Result<(), ReportError> {
    drawn(path, || draw(path, s, samples, p99_per_second))
}

/// The time axis: seconds or minutes since the start, up to `end_secs`.
struct Time {
    per_unit: f64,
    end: f64,
    desc: &'static str,
}

impl Time {
    fn of(end_secs: f64) -> Time {
        let (per_unit, desc) = match end_secs <= SECONDS_UP_TO {
            true => (1.0, "seconds since the start"),
            false => (60.0, "minutes since the start"),
        };
        Time {
            per_unit,
            end: (end_secs / per_unit * 1.02).max(1.0),
            desc,
        }
    }

    fn at(&self, secs: f64) -> f64 {
        secs / self.per_unit
    }

    fn axis(&self) -> Axis<'static, RangedCoordf64> {
        Axis {
            coord: (0f64..self.end).into(),
            desc: self.desc,
            label: &number_label,
        }
    }

    /// A counted window's place on the axis.
    fn window(&self, f: &Figures) -> (f64, f64) {
        let from = f.counted_from_secs;
        (self.at(from), self.at(from + f.counted_secs))
    }
}

fn draw(path: &Path, s: &SoakSummary, samples: &[Sample], p99_per_second: &[(f64, u64)]) -> Plot {
    let image = BitMapBackend::new(path, DOUBLE).into_drawing_area();
    image.fill(&WHITE)?;
    let area = titled(
        &image,
        "Soak: broker memory and delivery latency over time",
        &setup(s),
    )?;
    let (top, bottom) = area.split_vertically(50.percent());
    let last = samples.last().map_or(0.0, |x| x.t_secs);
    let end = s
        .windows
        .iter()
        .map(|w| w.figures.end_secs)
        .fold(last, f64::max);
    let time = Time::of(end);
    memory(&top, s, samples, &time)?;
    latency(&bottom, s, p99_per_second, &time)?;
    image.present()?;
    Ok(())
}

/// What was measured, and the verdict, under the title.
fn setup(s: &SoakSummary) -> String {
    let p = &s.populations;
    let verdict = match (s.interrupted, s.passed) {
        (true, _) => "interrupted".to_string(),
        (false, true) => "every check met".to_string(),
        (false, false) => {
            let failed: Vec<&str> = s
                .checks
                .iter()
                .filter(|c| !c.passed)
                .map(|c| c.kind.question())
                .collect();
            format!("not met: {}", failed.join(", "))
        }
    };
    format!(
        "{} clients: {} healthy on {} channels at {} msg/s, {} churn, {} burst readers, {} slow \
         consumers, {} malformed; {} windows of {} s; {verdict}",
        grouped(p.clients),
        grouped(p.healthy),
        grouped(s.channels),
        grouped(s.rate.round() as u64),
        p.churn,
        p.burst_readers,
        p.slow,
        p.malformed,
        s.windows.len(),
        trimmed(s.window_secs)
    )
}

/// Shades each counted window from `lo` to `hi`: grey, or red where it lost or was late; in
/// the legend when `labelled` (once in the image is enough).
fn shade_windows<Y: Ranged<ValueType = f64>>(
    chart: &mut Chart<'_, '_, Y>,
    s: &SoakSummary,
    time: &Time,
    (lo, hi): (f64, f64),
    labelled: bool,
) -> Plot {
    let failed = |f: &Figures| f.lost > 0 || f.p99_us > s.slo_p99_us;
    let ok_style = GREY.mix(0.12).filled();
    let bad_style = RED.mix(0.15).filled();
    for (bad, style, label) in [
        (false, ok_style, "counted window"),
        (true, bad_style, "window that lost or was late"),
    ] {
        let spans: Vec<_> = s
            .windows
            .iter()
            .filter(|w| failed(&w.figures) == bad)
            .map(|w| time.window(&w.figures))
            .collect();
        if spans.is_empty() {
            continue;
        }
        let drawn = chart.draw_series(
            spans
                .into_iter()
                .map(|(a, b)| Rectangle::new([(a, lo), (b, hi)], style)),
        )?;
        if labelled {
            drawn
                .label(label)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 24, y + 6)], style));
        }
    }
    Ok(())
}

/// The memory panel reaches this multiple of its largest value: its legend (six entries) is
/// tall, and the lines must stay clear of it.
const MEMORY_HEADROOM: f64 = 2.0;
/// The share of the latency panel's decades the data keeps, from the bottom: its legend takes
/// the top of the rest.
const LATENCY_DATA_SHARE: f64 = 0.55;

/// The broker's RSS alone: loadgen's (ten times larger, with 20,000 sockets' buffers) would
/// flatten it; it is in `soak.csv` and `samples.csv`.
fn memory(area: &Area, s: &SoakSummary, samples: &[Sample], time: &Time) -> Plot {
    let broker: Vec<(f64, f64)> = samples
        .iter()
        .map(|x| (time.at(x.t_secs), to_mib(x.broker_rss_bytes)))
        .collect();
    let r = &s.rss_rule;
    let y_max = broker
        .iter()
        .map(|p| p.1)
        .chain([r.limit_mib])
        .fold(10.0, f64::max)
        * MEMORY_HEADROOM;
    let y = Axis {
        coord: (0f64..y_max).into(),
        desc: "resident set (MiB)",
        label: &number_label,
    };
    let title = "Broker memory, once a second; the flat-RSS limit over the last third";
    let mut chart = chart_with(area, title, PANEL_TITLE_PX, time.axis(), y)?;
    shade_windows(&mut chart, s, time, (0.0, y_max), true)?;
    // Low, above the burst ticks: the legend covers the top of the first windows.
    number_windows(&mut chart, s, time, y_max * 0.08)?;
    chart
        .draw_series(LineSeries::new(broker, BLUE.stroke_width(2)))?
        .label("broker RSS")
        .legend(|(x, y)| legend_line(x, y, BLUE));
    rss_rule(&mut chart, s, time)?;
    bursts(&mut chart, s, time, y_max)?;
    legend(&mut chart)?;
    Ok(())
}

/// The flat-RSS rule where it was judged: the baseline's largest over its windows, and the
/// limit over the last third's.
fn rss_rule(chart: &mut Linear, s: &SoakSummary, time: &Time) -> Plot {
    let r = &s.rss_rule;
    let span = |(from, to): (usize, usize)| {
        let at = |n: usize| s.windows.iter().find(|w| w.figures.window == n);
        Some((
            time.at(at(from)?.figures.start_secs),
            time.at(at(to)?.figures.end_secs),
        ))
    };
    if r.baseline_max_mib <= 0.0 {
        return Ok(());
    }
    let lines = [
        (
            r.baseline_windows,
            r.baseline_max_mib,
            GREY,
            format!("first third's largest: {} MiB", trimmed(r.baseline_max_mib)),
        ),
        (
            r.final_windows,
            r.limit_mib,
            RED,
            format!(
                "limit: that + {}% + {} MiB = {} MiB",
                trimmed(r.growth * 100.0),
                trimmed(r.slack_mib),
                trimmed(r.limit_mib)
            ),
        ),
    ];
    for (windows, y, color, label) in lines {
        if let Some((a, b)) = span(windows) {
            chart
                .draw_series(dashed(vec![(a, y), (b, y)], color))?
                .label(label)
                .legend(move |(x, y)| legend_dashed(x, y, color));
        }
    }
    Ok(())
}

/// Each burst as a short purple tick at the foot of the chart.
fn bursts(chart: &mut Linear, s: &SoakSummary, time: &Time, y_max: f64) -> Plot {
    if s.bursts.is_empty() {
        return Ok(());
    }
    let tick = y_max * 0.06;
    let style = PURPLE.stroke_width(3);
    let p = &s.populations;
    chart
        .draw_series(s.bursts.iter().map(|b| {
            let x = time.at(b.at_ms as f64 / 1000.0);
            PathElement::new(vec![(x, 0.0), (x, tick)], style)
        }))?
        .label(format!(
            "burst ({} × {} B)",
            grouped(p.burst_messages),
            grouped(p.burst_bytes)
        ))
        .legend(move |(x, y)| PathElement::new(vec![(x + 12, y - 6), (x + 12, y + 6)], style));
    Ok(())
}

/// The windows' numbers, standing on height `y`: every one, or the first and every fifth.
fn number_windows(chart: &mut Linear, s: &SoakSummary, time: &Time, y: f64) -> Plot {
    let every = match s.windows.len() <= NUMBER_EVERY_WINDOW_UP_TO {
        true => 1,
        false => 5,
    };
    let style = TextStyle::from(("sans-serif", LABEL_PX - 2).into_font())
        .color(&GREY)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(
        s.windows
            .iter()
            .filter(|w| w.figures.window == 1 || w.figures.window % every == 0)
            .map(|w| {
                let (a, b) = time.window(&w.figures);
                Text::new(
                    format!("{}", w.figures.window),
                    ((a + b) / 2.0, y),
                    style.clone(),
                )
            }),
    )?;
    Ok(())
}

fn latency(area: &Area, s: &SoakSummary, p99_per_second: &[(f64, u64)], time: &Time) -> Plot {
    let slo = ms(s.slo_p99_us);
    let per_window = |f: fn(&Figures) -> u64| -> Vec<((f64, f64), f64)> {
        s.windows
            .iter()
            .map(|w| (time.window(&w.figures), ms(f(&w.figures))))
            .collect()
    };
    let (p50, p99) = (per_window(|f| f.p50_us), per_window(|f| f.p99_us));
    let values = p99_per_second.iter().map(|&(_, us)| ms(us));
    let windows = p50.iter().chain(&p99).map(|p| p.1);
    let all = values.chain(windows).chain([slo]);
    let bounds = log_bounds_keeping(all, LATENCY_DATA_SHARE);
    let y = Axis {
        coord: log_axis(bounds.0, bounds.1),
        desc: "delivery latency (ms, log scale)",
        label: &latency_label,
    };
    let title =
        "Healthy subscribers' latency: p99 of each counted second (dots) and window (lines)";
    let mut chart = chart_with(area, title, PANEL_TITLE_PX, time.axis(), y)?;
    shade_windows(&mut chart, s, time, bounds, false)?;
    // Faint and small where there are many, so the windows' lines stay readable over them.
    let (dot, size) = match p99_per_second.len() > MANY_SECONDS {
        true => (ORANGE.mix(0.3).filled(), 2),
        false => (ORANGE.mix(0.6).filled(), 3),
    };
    chart
        .draw_series(
            p99_per_second
                .iter()
                .map(|&(t, us)| Circle::new((time.at(t), ms(us)), size, dot)),
        )?
        .label("p99 of each counted second")
        .legend(move |(x, y)| Circle::new((x + 12, y), 3, dot));
    for (points, name, color) in [(p99, "window p99", ORANGE), (p50, "window p50", BLUE)] {
        chart
            .draw_series(
                points.into_iter().map(|((a, b), v)| {
                    PathElement::new(vec![(a, v), (b, v)], color.stroke_width(4))
                }),
            )?
            .label(name)
            .legend(move |(x, y)| legend_line(x, y, color));
    }
    objective_line(&mut chart, time.end, slo)?;
    legend(&mut chart)?;
    Ok(())
}

/// A latency axis's label: milliseconds, and from a second up seconds ("2 s"), which a failing
/// run's axis reaches and whose milliseconds would be too wide to read.
fn latency_label(ms: &f64) -> String {
    match *ms >= 1000.0 {
        true => format!("{} s", number(ms / 1000.0)),
        false => number(*ms),
    }
}
