//! PNG charts of a ramp, each against the number of connected clients, so a reader sees at
//! what load each quantity bends.
//!
//! Text is drawn by plotters' pure-Rust `ab_glyph` renderer with DejaVu Sans embedded in the
//! binary (`assets/DejaVuSans.ttf`): the charts render the same on a bare container with no
//! fontconfig, FreeType or fonts installed, where the usual system-font lookup draws nothing.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

pub use self::draw::XAxis;
use self::draw::*;
use super::csv::to_mib;
use super::ReportError;
use crate::model::{Sample, StepResult};

pub mod compare;
mod draw;
mod spectrum;
pub mod sweep;

pub use self::spectrum::plot_spectrum;

const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
const SINGLE: (u32, u32) = (1000, 600);
const DOUBLE: (u32, u32) = (1000, 850);

// Tableau 10: distinct for most colour-blind readers, and familiar.
const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREEN: RGBColor = RGBColor(44, 160, 44);
const RED: RGBColor = RGBColor(214, 39, 40);
const PURPLE: RGBColor = RGBColor(148, 103, 189);
const GREY: RGBColor = RGBColor(110, 110, 110);

/// Draws one chart into the file at the path.
type ChartFn<'a> = &'a dyn Fn(&Path) -> Plot;

/// Draws `latency.png`, `throughput.png`, `broker.png` and (against clients) `connect.png`
/// into `dir` with `x` on the x axis, and returns their paths; draws nothing for a run with
/// no steps.
pub fn plot_all(
    dir: &Path,
    steps: &[StepResult],
    samples: &[Sample],
    slo_p99_us: u64,
    x: XAxis,
) -> Result<Vec<PathBuf>, ReportError> {
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    if !font_registered() {
        return Err(ReportError::Plot {
            path: dir.join("latency.png"),
            message: "the embedded font could not be loaded".into(),
        });
    }
    let charts: [(&str, ChartFn); 4] = [
        ("latency.png", &|p| latency(p, x, steps, slo_p99_us)),
        ("throughput.png", &|p| throughput(p, x, steps)),
        ("broker.png", &|p| resources(p, x, steps, samples)),
        ("connect.png", &|p| connect(p, steps)),
    ];
    let mut written = Vec::new();
    // Connecting happens once per step of a ramp; other runs connect once, before measuring.
    let charts = charts
        .into_iter()
        .filter(|(name, _)| x == XAxis::Clients || *name != "connect.png");
    for (name, draw) in charts {
        let path = dir.join(name);
        draw(&path).map_err(|e| ReportError::Plot {
            path: path.clone(),
            message: e.to_string(),
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Registers the embedded font as plotters' "sans-serif", once per process.
fn font_registered() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok())
}

fn latency(path: &Path, x: XAxis, steps: &[StepResult], slo_us: u64) -> Plot {
    let root = BitMapBackend::new(path, SINGLE).into_drawing_area();
    root.fill(&WHITE)?;
    let series = [
        StepSeries {
            name: "p50",
            color: BLUE,
            value: |s| ms(s.latency.p50_us),
        },
        StepSeries {
            name: "p90",
            color: GREEN,
            value: |s| ms(s.latency.p90_us),
        },
        StepSeries {
            name: "p99",
            color: ORANGE,
            value: |s| ms(s.latency.p99_us),
        },
        StepSeries {
            name: "p99.9",
            color: PURPLE,
            value: |s| ms(s.latency.p999_us),
        },
    ];
    let slo = ms(slo_us);
    let values = steps
        .iter()
        .flat_map(|st| series.iter().map(|s| (s.value)(st)));
    let title = format!("Delivery latency vs {}", x.noun());
    let frame = Frame {
        title: &title,
        x,
        title_px: TITLE_PX,
        y_desc: "delivery latency (ms, log scale)",
    };
    let x_max = x.max(steps);
    let mut chart = log_chart(&root, &frame, x_max, log_bounds(values.chain([slo])))?;
    step_lines(&mut chart, x, steps, &series)?;
    objective_line(&mut chart, x_max, slo)?;
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn throughput(path: &Path, x: XAxis, steps: &[StepResult]) -> Plot {
    let root = BitMapBackend::new(path, SINGLE).into_drawing_area();
    root.fill(&WHITE)?;
    // A step that held no traffic has no rate to show.
    let rate = |s: &StepResult, n: u64| (s.hold_secs > 0.0).then(|| n as f64 / s.hold_secs);
    let y_max = steps
        .iter()
        .filter_map(|s| Some(rate(s, s.delivered)?.max(rate(s, s.expected)?)))
        .fold(1.0, f64::max);
    let title = format!("Deliveries per second vs {}", x.noun());
    let frame = Frame {
        title: &title,
        x,
        title_px: TITLE_PX,
        y_desc: "deliveries per second (mean over each hold)",
    };
    let mut chart = linear_chart(&root, &frame, x.max(steps), y_max * HEADROOM, |v| count(*v))?;
    let points = |f: fn(&StepResult) -> u64| -> Vec<(f64, f64)> {
        steps
            .iter()
            .filter_map(|s| Some((x.of(s), rate(s, f(s))?)))
            .collect()
    };
    // Expected goes on top, dashed: where nothing is lost the two coincide, and the dashes
    // show through the delivered line instead of hiding under it.
    chart
        .draw_series(line(points(|s| s.delivered), BLUE))?
        .label("delivered")
        .legend(|(x, y)| legend_line(x, y, BLUE));
    chart
        .draw_series(dashed(points(|s| s.expected), GREY))?
        .label("expected (publishes × subscribers)")
        .legend(|(x, y)| legend_dashed(x, y, GREY));
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn resources(path: &Path, x: XAxis, steps: &[StepResult], samples: &[Sample]) -> Plot {
    let root = BitMapBackend::new(path, DOUBLE).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!("Broker and loadgen resources vs {}", x.noun());
    let root = root
        .margin(10, 0, 0, 0)
        .titled(&title, ("sans-serif", TITLE_PX))?;
    let (top, bottom) = root.split_vertically(50.percent());
    let on_axis = |s: &&Sample| x.of_sample(s).is_some();
    let samples: Vec<Sample> = samples.iter().filter(on_axis).cloned().collect();
    let x_max = x.max(steps).max(
        samples
            .iter()
            .filter_map(|s| x.of_sample(s))
            .fold(0.0, f64::max),
    );
    let panels = [
        (
            &top,
            Frame {
                title: "Memory (resident set size): lines are step means, dots per-second samples",
                x,
                title_px: PANEL_TITLE_PX,
                y_desc: "RSS (MiB)",
            },
            [
                ResourceSeries {
                    name: "broker RSS",
                    color: BLUE,
                    step: |s| to_mib(s.broker_rss_bytes),
                    sample: |s| to_mib(s.broker_rss_bytes),
                },
                ResourceSeries {
                    name: "loadgen RSS",
                    color: ORANGE,
                    step: |s| to_mib(s.loadgen_rss_bytes),
                    sample: |s| to_mib(s.loadgen_rss_bytes),
                },
            ],
        ),
        (
            &bottom,
            Frame {
                title: "CPU (100% = one core busy): lines are step means, dots per-second samples",
                x,
                title_px: PANEL_TITLE_PX,
                y_desc: "CPU (% of one core)",
            },
            [
                ResourceSeries {
                    name: "broker CPU",
                    color: BLUE,
                    step: |s| s.broker_cpu_pct,
                    sample: |s| s.broker_cpu_pct,
                },
                ResourceSeries {
                    name: "loadgen CPU",
                    color: ORANGE,
                    step: |s| s.loadgen_cpu_pct,
                    sample: |s| s.loadgen_cpu_pct,
                },
            ],
        ),
    ];
    for (area, frame, series) in panels {
        let y_max = series
            .iter()
            .flat_map(|r| {
                let by_step = steps.iter().map(r.step);
                by_step.chain(samples.iter().map(r.sample))
            })
            .fold(10.0, f64::max);
        let mut chart = linear_chart(area, &frame, x_max, y_max * HEADROOM, |v| number(*v))?;
        resource_lines(&mut chart, x, steps, &samples, &series)?;
        legend(&mut chart)?;
    }
    root.present()?;
    Ok(())
}

fn connect(path: &Path, steps: &[StepResult]) -> Plot {
    let root = BitMapBackend::new(path, DOUBLE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root
        .margin(10, 0, 0, 0)
        .titled("Connecting new clients, per step", ("sans-serif", TITLE_PX))?;
    let (top, bottom) = root.split_vertically(50.percent());
    let x = XAxis::Clients;
    let x_max = x.max(steps);

    let series = [
        StepSeries {
            name: "p50",
            color: BLUE,
            value: |s| ms(s.connect_p50_us),
        },
        StepSeries {
            name: "p99",
            color: ORANGE,
            value: |s| ms(s.connect_p99_us),
        },
    ];
    let values = steps
        .iter()
        .flat_map(|st| series.iter().map(|s| (s.value)(st)));
    let frame = Frame {
        title: "Connect + subscribe latency of the step's new clients",
        x,
        title_px: PANEL_TITLE_PX,
        y_desc: "latency (ms, log scale)",
    };
    let mut chart = log_chart(&top, &frame, x_max, log_bounds(values))?;
    step_lines(&mut chart, x, steps, &series)?;
    legend(&mut chart)?;

    // One series, named by the panel title: no legend, so no headroom either.
    let rate_max = steps.iter().map(|s| s.connect_rate).fold(1.0, f64::max) * 1.1;
    let frame = Frame {
        title: "Connect rate during the step's connect phase",
        x,
        title_px: PANEL_TITLE_PX,
        y_desc: "new connections per second",
    };
    let mut chart = linear_chart(&bottom, &frame, x_max, rate_max, |v| count(*v))?;
    chart.draw_series(line(
        steps.iter().map(|s| (s.clients as f64, s.connect_rate)),
        GREEN,
    ))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests;
