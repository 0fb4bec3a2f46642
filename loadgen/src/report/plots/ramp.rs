//! The charts of a ramp (and of a throughput search), each against the number of connected
//! clients (or the offered rate), so a reader sees at what load each quantity bends; every one
//! carries the run's parameters and marks where it failed and the limit that bound it.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::draw::*;
// Named, so that they win over plotters' own colours of the same names.
use super::draw::{BLUE, GREEN, GREY, ORANGE};
use crate::model::units::to_mib;
use crate::model::{Sample, StepResult};
use crate::report::files::ReportError;

/// Draws one chart into the file at the path.
type ChartFn<'a> = &'a dyn Fn(&Path) -> Plot;

/// What every chart of a run shows besides its data.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub slo_p99_us: u64,
    /// What the x axis counts.
    pub x: XAxis,
    /// What was measured, in a line: the broker, the rate, the channels, the step.
    pub setup: &'a str,
    /// The machine's cores, for the CPU chart's ceiling.
    pub cores: usize,
    /// Where the run failed, and the limit that bound it.
    pub verdict: Option<&'a Verdict>,
}

/// Draws `latency.png`, `throughput.png`, `broker.png` and (against clients) `connect.png`
/// into `dir`, and returns their paths; draws nothing for a run with no steps.
pub fn plot_all(
    dir: &Path,
    steps: &[StepResult],
    samples: &[Sample],
    ctx: &Context,
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
        ("latency.png", &|p| latency(p, ctx, steps)),
        ("throughput.png", &|p| throughput(p, ctx, steps)),
        ("broker.png", &|p| resources(p, ctx, steps, samples)),
        ("connect.png", &|p| connect(p, ctx, steps)),
    ];
    let mut written = Vec::new();
    // Connecting happens once per step of a ramp; other runs connect once, before measuring.
    let charts = charts
        .into_iter()
        .filter(|(name, _)| ctx.x == XAxis::Clients || *name != "connect.png");
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

fn latency(path: &Path, ctx: &Context, steps: &[StepResult]) -> Plot {
    let root = BitMapBackend::new(path, SINGLE).into_drawing_area();
    root.fill(&WHITE)?;
    let x = ctx.x;
    let area = titled(
        &root,
        &format!("Delivery latency vs {}", x.noun()),
        ctx.setup,
    )?;
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
            color: GREY,
            value: |s| ms(s.latency.p999_us),
        },
    ];
    let slo = ms(ctx.slo_p99_us);
    let values = steps
        .iter()
        .flat_map(|st| series.iter().map(|s| (s.value)(st)));
    let frame = Frame {
        title: "",
        x,
        title_px: TITLE_PX,
        y_desc: "delivery latency (ms, log scale)",
    };
    let x_max = x_reach(x.max(steps), ctx.verdict);
    let bounds = log_bounds(values.chain([slo]));
    let mut chart = log_chart(&area, &frame, x_max, bounds)?;
    step_lines(&mut chart, x, steps, &series)?;
    objective_line(&mut chart, x_max, slo)?;
    verdict_lines(&mut chart, ctx.verdict, bounds)?;
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn throughput(path: &Path, ctx: &Context, steps: &[StepResult]) -> Plot {
    let root = BitMapBackend::new(path, SINGLE).into_drawing_area();
    root.fill(&WHITE)?;
    let x = ctx.x;
    let title = format!("Deliveries per second vs {}", x.noun());
    let area = titled(&root, &title, ctx.setup)?;
    // A step that held no traffic has no rate to show.
    let rate = |s: &StepResult, n: u64| (s.hold_secs > 0.0).then(|| n as f64 / s.hold_secs);
    let y_max = steps
        .iter()
        .filter_map(|s| Some(rate(s, s.delivered)?.max(rate(s, s.expected)?)))
        .fold(1.0, f64::max)
        * HEADROOM;
    let frame = Frame {
        title: "",
        x,
        title_px: TITLE_PX,
        y_desc: "deliveries per second (mean over each hold)",
    };
    let x_max = x_reach(x.max(steps), ctx.verdict);
    let mut chart = linear_chart(&area, &frame, x_max, y_max, |v| count(*v))?;
    let points = |f: fn(&StepResult) -> u64| -> Vec<(f64, f64)> {
        steps
            .iter()
            .filter_map(|s| Some((x.of(s), rate(s, f(s))?)))
            .collect()
    };
    // Where nothing is lost the two coincide: expected is a line, delivered large dots on
    // it, so both stay visible, and a dot below the line is a shortfall.
    chart
        .draw_series(dashed(points(|s| s.expected), ORANGE))?
        .label("expected (publishes × subscribers of their channel)")
        .legend(|(x, y)| legend_dashed(x, y, ORANGE));
    let delivered = points(|s| s.delivered);
    chart.draw_series(LineSeries::new(delivered.clone(), BLUE.stroke_width(1)))?;
    chart
        .draw_series(delivered.iter().map(|&p| Circle::new(p, 6, BLUE.filled())))?
        .label("delivered")
        .legend(|(x, y)| Circle::new((x + 12, y), 6, BLUE.filled()));
    verdict_lines(&mut chart, ctx.verdict, (0.0, y_max))?;
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}

fn resources(path: &Path, ctx: &Context, steps: &[StepResult], samples: &[Sample]) -> Plot {
    let root = BitMapBackend::new(path, DOUBLE).into_drawing_area();
    root.fill(&WHITE)?;
    let x = ctx.x;
    let title = format!("Broker and loadgen resources vs {}", x.noun());
    let area = titled(&root, &title, ctx.setup)?;
    let (top, bottom) = area.split_vertically(50.percent());
    let on_axis = |s: &&Sample| x.of_sample(s).is_some();
    let samples: Vec<Sample> = samples.iter().filter(on_axis).cloned().collect();
    let data_max = x.max(steps).max(
        samples
            .iter()
            .filter_map(|s| x.of_sample(s))
            .fold(0.0, f64::max),
    );
    let x_max = x_reach(data_max, ctx.verdict);
    let ceiling = 100.0 * ctx.cores.max(1) as f64;
    let cpu_desc = format!(
        "CPU (% of one core; {} cores = {ceiling:.0}%)",
        ctx.cores.max(1)
    );
    // The kernel's slab and the machine's CPU where every step has them (runs from before
    // they were sampled have not): at scale the kernel holds most of the memory, and does
    // work that neither the brokers nor loadgen are charged with.
    let mut memory = vec![
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
    ];
    if steps.iter().all(|s| s.kernel_slab_bytes.is_some()) {
        memory.push(ResourceSeries {
            name: "kernel slab (machine-wide)",
            color: GREEN,
            step: |s| to_mib(s.kernel_slab_bytes.unwrap_or(0)),
            sample: |s| s.kernel_slab_bytes.map_or(f64::NAN, to_mib),
        });
    }
    let mut cpu = vec![
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
    ];
    if steps.iter().all(|s| s.host_cpu_pct.is_some()) {
        cpu.push(ResourceSeries {
            name: "the machine (kernel included)",
            color: GREEN,
            step: |s| s.host_cpu_pct.unwrap_or(0.0),
            sample: |s| s.host_cpu_pct.unwrap_or(f64::NAN),
        });
    }
    // A broker loadgen cannot sample reads 0: drawn, it would look like one that costs nothing.
    if !steps
        .iter()
        .any(|s| crate::model::broker_sampled(s.broker_rss_bytes))
    {
        memory.remove(0);
        cpu.remove(0);
    }
    let panels = [
        (
            &top,
            Frame {
                title: "Memory: lines are step peaks, dots per-second samples",
                x,
                title_px: PANEL_TITLE_PX,
                y_desc: "MiB",
            },
            memory,
            None,
        ),
        (
            &bottom,
            Frame {
                title: "CPU: lines are means while publishing, dots per-second samples",
                x,
                title_px: PANEL_TITLE_PX,
                y_desc: &cpu_desc,
            },
            cpu,
            Some(ceiling),
        ),
    ];
    for (area, frame, series, ceiling) in panels {
        let y_max = series
            .iter()
            .flat_map(|r| {
                let by_step = steps.iter().map(r.step);
                by_step.chain(samples.iter().map(r.sample).filter(|v| v.is_finite()))
            })
            .chain(ceiling)
            .fold(10.0, f64::max)
            * HEADROOM;
        let mut chart = linear_chart(area, &frame, x_max, y_max, |v| number(*v))?;
        resource_lines(&mut chart, x, steps, &samples, &series)?;
        if let Some(c) = ceiling {
            chart
                .draw_series(dashed(vec![(0.0, c), (x_max, c)], GREY))?
                .label(format!("all {} cores busy ({c:.0}%)", ctx.cores.max(1)))
                .legend(|(x, y)| legend_dashed(x, y, GREY));
        }
        verdict_lines(&mut chart, ctx.verdict, (0.0, y_max))?;
        legend(&mut chart)?;
    }
    root.present()?;
    Ok(())
}

fn connect(path: &Path, ctx: &Context, steps: &[StepResult]) -> Plot {
    let root = BitMapBackend::new(path, DOUBLE).into_drawing_area();
    root.fill(&WHITE)?;
    let area = titled(&root, "Connecting new clients, per step", ctx.setup)?;
    let (top, bottom) = area.split_vertically(50.percent());
    let x = XAxis::Clients;
    let x_max = x_reach(x.max(steps), ctx.verdict);

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
    let bounds = log_bounds(values);
    let mut chart = log_chart(&top, &frame, x_max, bounds)?;
    step_lines(&mut chart, x, steps, &series)?;
    verdict_lines(&mut chart, ctx.verdict, bounds)?;
    legend(&mut chart)?;

    let rate_max = steps.iter().map(|s| s.connect_rate).fold(1.0, f64::max) * HEADROOM;
    let frame = Frame {
        title: "Connect rate during the step's connect phase",
        x,
        title_px: PANEL_TITLE_PX,
        y_desc: "new connections per second",
    };
    let mut chart = linear_chart(&bottom, &frame, x_max, rate_max, |v| count(*v))?;
    chart
        .draw_series(line(
            steps.iter().map(|s| (s.clients as f64, s.connect_rate)),
            GREEN,
        ))?
        .label("connect rate")
        .legend(|(x, y)| legend_line(x, y, GREEN));
    verdict_lines(&mut chart, ctx.verdict, (0.0, rate_max))?;
    legend(&mut chart)?;
    root.present()?;
    Ok(())
}
