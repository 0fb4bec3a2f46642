//! Scales and text layout for the charts: a log axis labelled where a reader looks, the range
//! it spans, and a subtitle wrapped to the width. Pure functions of numbers and text, apart
//! from [`draw`](super::draw) so that the look of the charts stays in one file of a sitting.

use plotters::coord::combinators::{BindKeyPoints, IntoLogRange, LogCoord, WithKeyPoints};

/// Log charts keep the top 30% of their decades free, so the legend in the upper left never
/// covers data.
const LOG_DATA_SHARE: f64 = 0.7;

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

/// A log-scale range around the values, widened a bit below and by [`LOG_DATA_SHARE`] above;
/// values ≤ 0 are skipped because they have no place on a log axis.
pub(super) fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    log_bounds_keeping(values, LOG_DATA_SHARE)
}

/// [`log_bounds`] with the data in the bottom `share` of the decades (a chart with a taller
/// legend keeps less).
pub(super) fn log_bounds_keeping(values: impl Iterator<Item = f64>, share: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.01, 10.0);
    }
    let (lo, hi) = (lo / 1.6, (hi * 1.6).max(lo * 10.0));
    (lo, (lo.ln() + (hi / lo).ln() / share).exp())
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
