//! Latency by percentile: the whole distribution of one run, HDR-histogram style, with the
//! tail stretched out (each step right is one more nine).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::draw::*;
// Named, so that they win over plotters' own colours of the same names.
use super::draw::BLUE;
use crate::report::files::ReportError;

/// Percentiles drawn, as fractions.
const QUANTILES: [f64; 12] = [
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999,
];

/// "Nines" of a quantile: 0.9 → 1, 0.99 → 2, … (0 for the minimum).
fn nines(q: f64) -> f64 {
    -(1.0 - q).log10()
}

fn percentile_label(nines: f64) -> String {
    let q = 100.0 * (1.0 - 10f64.powf(-nines));
    let text = format!("{q:.5}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// The points drawn for `h`: `(nines, latency in ms)`, up to the deepest percentile the
/// sample count supports, and the maximum.
pub fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let n = h.len() as f64;
    let mut points: Vec<(f64, f64)> = QUANTILES
        .iter()
        .filter(|&&q| q == 0.0 || (1.0 - q) * n >= 1.0)
        .map(|&q| (nines(q), ms(h.value_at_quantile(q))))
        .collect();
    if let Some(&(last, _)) = points.last() {
        points.push((last + 0.5, ms(h.max())));
    }
    points
}

/// Draws the latency distribution of `h` against the objective into `path`, titled `title`
/// over `setup` (what was measured).
pub fn plot_spectrum(
    path: &Path,
    h: &Histogram<u64>,
    slo_us: u64,
    title: &str,
    setup: &str,
) -> Result<(), ReportError> {
    drawn(path, || draw(path, h, slo_us, title, setup))
}

/// The frame every percentile chart shares: a nines x axis and a log latency axis.
pub(super) fn spectrum_chart<'b, 'a>(
    root: &'b Area<'a>,
    title: &str,
    x_max: f64,
    (lo, hi): (f64, f64),
) -> Result<Log<'b, 'a>, Box<dyn std::error::Error>> {
    let mut builder = ChartBuilder::on(root);
    if !title.is_empty() {
        builder.caption(title, ("sans-serif", TITLE_PX));
    }
    let mut chart = builder
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, log_axis(lo, hi))?;
    chart
        .configure_mesh()
        .x_desc("percentile (each step right is one more nine; the last point is the maximum)")
        .y_desc("delivery latency (ms, log scale)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|v| percentile_label(*v))
        .y_label_formatter(&|v| number(*v))
        .label_style(("sans-serif", LABEL_PX))
        .axis_desc_style(("sans-serif", DESC_PX))
        .draw()?;
    Ok(chart)
}

fn draw(path: &Path, h: &Histogram<u64>, slo_us: u64, title: &str, setup: &str) -> Plot {
    let points = spectrum_points(h);
    let image = BitMapBackend::new(path, SINGLE).into_drawing_area();
    image.fill(&WHITE)?;
    let root = titled(&image, title, setup)?;
    let slo = ms(slo_us);
    let x_max = points.last().map_or(1.0, |p| p.0).max(1.0);
    let (lo, hi) = log_bounds(points.iter().map(|p| p.1).chain([slo]));
    let mut chart = spectrum_chart(&root, "", x_max, (lo, hi))?;
    chart
        .draw_series(line(points, BLUE))?
        .label("delivery latency")
        .legend(|(x, y)| legend_line(x, y, BLUE));
    objective_line(&mut chart, x_max, slo)?;
    legend(&mut chart)?;
    image.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_points() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        let mut h = crate::model::histogram::new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = spectrum_points(&h);
        // 1,000 samples support up to p99.9; then the maximum.
        assert_eq!(p.len(), 10);
        assert!((p[8].0 - 3.0).abs() < 1e-9);
        assert_eq!(p.last().unwrap().1, 1.0);
        let dir = std::env::temp_dir().join(format!("loadgen-spectrum-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("latency-percentiles.png");
        plot_spectrum(&path, &h, 50_000, "test", "1,000 samples").unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 10_000);
    }
}
