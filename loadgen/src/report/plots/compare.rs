//! The charts of `loadgen compare`, every broker overlaid in one picture: bars for the
//! fan-out rates and the memory per connection, one latency spectrum per broker, and the
//! ramps side by side. Each broker keeps its colour in every chart.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::draw::*;
// Named, so that they win over plotters' own colours of the same names.
use super::draw::{BLUE, GREEN, GREY, PURPLE, RED};
use super::spectrum::{spectrum_chart, spectrum_points};
use crate::model::compare::Measurement;
use crate::model::units::{short, Style};
use crate::model::StepResult;
use crate::report::files::ReportError;

/// A broker's colour: hubbub blue, Redis red, NATS green, Mosquitto purple, the plain tokio
/// baseline (and anything else) grey.
fn colour(broker: &str) -> RGBColor {
    match broker {
        "hubbub" => BLUE,
        "redis" => RED,
        "nats" => GREEN,
        "mosquitto" => PURPLE,
        _ => GREY,
    }
}

/// The brokers measured, in the order first seen.
fn brokers<'a>(all: impl Iterator<Item = &'a Measurement>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for m in all {
        if !names.contains(&m.broker) {
            names.push(m.broker.clone());
        }
    }
    names
}

/// `fanout.png`: deliveries per second, a panel per fan-out shape (`shapes`: its caption and
/// its scenarios, one per window; each panel on its own scale, as 10→10 at a window of 100 is
/// a tenth of 1→1000 at 10,000), a group of bars per window, a bar per broker (its median,
/// with every run as a dot). Draws nothing without fan-out results.
pub fn fanout(
    path: &Path,
    all: &[Measurement],
    shapes: &[(String, Vec<String>)],
    setup: &str,
) -> Result<(), ReportError> {
    let rows: Vec<&Measurement> = all
        .iter()
        .filter(|m| {
            m.metric == "deliveries_per_sec" && shapes.iter().any(|(_, s)| s.contains(&m.scenario))
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let panels: Vec<Panel> = shapes
        .iter()
        .map(|(caption, scenarios)| Panel {
            caption: caption.clone(),
            groups: scenarios
                .iter()
                .map(|s| {
                    // "fanout-1x100-w1000": the window names the group.
                    let label = s
                        .rsplit_once("-w")
                        .map_or(s.clone(), |(_, w)| format!("window {w}"));
                    (s.clone(), label)
                })
                .collect(),
        })
        .collect();
    drawn(path, || {
        bars(
            path,
            ("Fan-out: deliveries per second", setup),
            "deliveries per second",
            &panels,
            &rows,
        )
    })
}

/// `memory.png`: the broker's memory per idle subscribed connection, a bar per broker.
pub fn memory(path: &Path, all: &[Measurement], setup: &str) -> Result<(), ReportError> {
    let rows: Vec<&Measurement> = all
        .iter()
        .filter(|m| m.scenario.starts_with("memory") && m.metric == "rss_per_conn_bytes")
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let mut groups: Vec<String> = rows.iter().map(|m| m.scenario.clone()).collect();
    groups.dedup();
    drawn(path, || {
        bars(
            path,
            ("Broker memory per idle subscribed connection", setup),
            "resident memory per connection (bytes)",
            &[Panel::of(&groups)],
            &rows,
        )
    })
}

/// Bars for any measurements: a group per `groups` entry (matched against each row's
/// `scenario`), a bar per broker within it (its median, every run a dot).
pub fn grouped_bars(
    path: &Path,
    titles: (&str, &str),
    y_desc: &str,
    groups: &[String],
    rows: &[Measurement],
) -> Result<(), ReportError> {
    let rows: Vec<&Measurement> = rows.iter().collect();
    if rows.is_empty() {
        return Ok(());
    }
    drawn(path, || {
        bars(path, titles, y_desc, &[Panel::of(groups)], &rows)
    })
}

/// One chart of bars: its caption (none when alone) and its groups, each a scenario and the
/// label drawn under it.
struct Panel {
    caption: String,
    groups: Vec<(String, String)>,
}

impl Panel {
    /// A panel of its own: no caption, each group labelled with its scenario's name.
    fn of(groups: &[String]) -> Self {
        Panel {
            caption: String::new(),
            groups: groups.iter().map(|g| (g.clone(), g.clone())).collect(),
        }
    }
}

/// Height of each panel after the first, stacked under it.
const PANEL_PX: u32 = 400;

/// `titles`: the chart's title and its subtitle (what was measured); the panels stacked.
fn bars(
    path: &Path,
    (title, setup): (&str, &str),
    y_desc: &str,
    panels: &[Panel],
    rows: &[&Measurement],
) -> Plot {
    let classed = rows.iter().any(|m| m.usual_class().is_some());
    let key = match classed {
        true => {
            "bar: median; whisker: min–max; dots: each run; letter: what set it (B broker-, \
                 C client-, W window-, R rate-, M machine-bound)"
        }
        false => "bar: median; whisker: min–max; dots: each run",
    };
    let height = SINGLE.1 + PANEL_PX * (panels.len().max(1) as u32 - 1);
    let image = BitMapBackend::new(path, (SINGLE.0, height)).into_drawing_area();
    image.fill(&WHITE)?;
    let root = titled(&image, title, &format!("{setup}; {key}"))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (panel, area) in panels.iter().zip(&areas) {
        bar_panel(&image, area, y_desc, panel, rows)?;
    }
    image.present()?;
    Ok(())
}

/// One panel's bars, in `area` of `image`.
fn bar_panel(
    image: &Area,
    area: &Area,
    y_desc: &str,
    panel: &Panel,
    rows: &[&Measurement],
) -> Plot {
    let in_panel: Vec<&Measurement> = rows
        .iter()
        .copied()
        .filter(|m| panel.groups.iter().any(|(g, _)| *g == m.scenario))
        .collect();
    let names = brokers(in_panel.iter().copied());
    let y_max = in_panel
        .iter()
        .flat_map(|m| m.runs.iter().copied())
        .fold(1.0, f64::max)
        * HEADROOM;
    let n = panel.groups.len() as f64;
    let mut chart = ChartBuilder::on(area)
        .margin(15)
        .caption(&panel.caption, ("sans-serif", PANEL_TITLE_PX))
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n, 0f64..y_max)?;
    // The x axis is categorical: plotters labels numbers, so the group names are drawn
    // under the axis by hand, one under the middle of each group.
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|_| String::new())
        .y_desc(y_desc)
        .y_label_formatter(&|v| count(*v))
        .label_style(("sans-serif", LABEL_PX))
        .axis_desc_style(("sans-serif", DESC_PX))
        .draw()?;
    let width = 0.8 / names.len() as f64;
    for (j, name) in names.iter().enumerate() {
        let colour = colour(name);
        let mut first = true;
        for (g, (group, _)) in panel.groups.iter().enumerate() {
            let Some(m) = in_panel
                .iter()
                .find(|m| &m.broker == name && &m.scenario == group)
            else {
                continue;
            };
            let x0 = g as f64 + 0.1 + j as f64 * width;
            let mid = x0 + width / 2.0;
            let series = chart.draw_series(m.median().map(|v| {
                Rectangle::new([(x0, 0.0), (x0 + width * 0.9, v)], colour.mix(0.8).filled())
            }))?;
            if std::mem::take(&mut first) {
                series.label(name.as_str()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 18, y + 6)], colour.filled())
                });
            }
            if let Some(s) = m.spread() {
                let (lo, hi) = (s.min, s.max);
                let cap = width * 0.2;
                let whisker = BLACK.stroke_width(2);
                chart.draw_series([
                    PathElement::new(vec![(mid, lo), (mid, hi)], whisker),
                    PathElement::new(vec![(mid - cap, lo), (mid + cap, lo)], whisker),
                    PathElement::new(vec![(mid - cap, hi), (mid + cap, hi)], whisker),
                ])?;
            }
            chart.draw_series(
                m.runs
                    .iter()
                    .map(|&v| Circle::new((mid, v), 3, BLACK.mix(0.6).filled())),
            )?;
            // B broker-bound, C client-bound, W window-bound, R rate-bound, M machine-bound.
            let class = m
                .usual_class()
                .map(|(c, _)| format!(" {}", &c.name()[..1].to_uppercase()))
                .unwrap_or_default();
            let text = m
                .median()
                .map_or("failed".to_string(), |v| short(v, Style::Table) + &class);
            // Centred above the whisker's top, clear of it.
            let at = m.spread().map_or(0.0, |s| s.max);
            let style = TextStyle::from(("sans-serif", LABEL_PX - 2).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart.draw_series(std::iter::once(Text::new(
                text,
                (mid, at + y_max * 0.01),
                style,
            )))?;
        }
    }
    for (g, (_, label)) in panel.groups.iter().enumerate() {
        // backend_coord is in the whole image's pixels, so the label goes on the image.
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        let style = TextStyle::from(("sans-serif", DESC_PX).into_font())
            .pos(Pos::new(HPos::Center, VPos::Top));
        image.draw(&Text::new(label.clone(), (px, py + 10), style))?;
    }
    legend(&mut chart)?;
    Ok(())
}

/// One broker's latency distribution in one latency scenario (its median run).
#[derive(Debug, Clone)]
pub struct Spectrum {
    pub scenario: String,
    pub broker: String,
    /// What set most of its runs' figures (`rate-bound`, …), named in the legend.
    pub class: Option<&'static str>,
    pub histogram: Histogram<u64>,
}

/// `<scenario>.png`: each broker's latency by percentile (its median run), with the objective.
pub fn spectra(
    path: &Path,
    scenario: &str,
    all: &[Spectrum],
    slo_us: u64,
    setup: &str,
) -> Result<(), ReportError> {
    let runs: Vec<&Spectrum> = all.iter().filter(|s| s.scenario == scenario).collect();
    if runs.is_empty() {
        return Ok(());
    }
    drawn(path, || draw_spectra(path, &runs, slo_us, setup))
}

fn draw_spectra(path: &Path, runs: &[&Spectrum], slo_us: u64, setup: &str) -> Plot {
    let lines: Vec<(&Spectrum, Vec<(f64, f64)>)> = runs
        .iter()
        .map(|s| (*s, spectrum_points(&s.histogram)))
        .collect();
    let slo = ms(slo_us);
    let x_max = lines
        .iter()
        .filter_map(|(_, p)| p.last().map(|p| p.0))
        .fold(1.0, f64::max);
    let values = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.1));
    let (lo, hi) = log_bounds(values.chain([slo]));
    let image = BitMapBackend::new(path, SINGLE).into_drawing_area();
    image.fill(&WHITE)?;
    let title = "Delivery latency by percentile at a fixed rate (each broker's median run)";
    let root = titled(&image, title, setup)?;
    let mut chart = spectrum_chart(&root, "", x_max, (lo, hi))?;
    for (s, points) in lines {
        let c = colour(&s.broker);
        let label = match s.class {
            Some(class) => format!("{} ({class})", s.broker),
            None => s.broker.clone(),
        };
        chart
            .draw_series(line(points, c))?
            .label(label)
            .legend(move |(x, y)| legend_line(x, y, c));
    }
    objective_line_in(&mut chart, x_max, slo, BLACK)?;
    legend(&mut chart)?;
    image.present()?;
    Ok(())
}

/// One broker's ramp: its steps, and why it stopped (in words, short).
#[derive(Debug, Clone)]
pub struct Ramp {
    pub broker: String,
    pub steps: Vec<StepResult>,
    pub stopped: String,
}

/// `ramp.png`: for each broker, delivery p99 (top) and broker memory (bottom) against
/// connected clients, up to the step that stopped its ramp.
pub fn ramps(path: &Path, ramps: &[Ramp], slo_us: u64, setup: &str) -> Result<(), ReportError> {
    if ramps.iter().all(|r| r.steps.is_empty()) {
        return Ok(());
    }
    drawn(path, || draw_ramps(path, ramps, slo_us, setup))
}

/// Each broker's line ends in a cross at the step that stopped it, and its legend entry says
/// where and why.
fn draw_ramps(path: &Path, ramps: &[Ramp], slo_us: u64, setup: &str) -> Plot {
    let image = BitMapBackend::new(path, DOUBLE).into_drawing_area();
    image.fill(&WHITE)?;
    let root = titled(&image, "Each broker ramped until a step fails", setup)?;
    let (top, bottom) = root.split_vertically(50.percent());
    let all: Vec<StepResult> = ramps.iter().flat_map(|r| r.steps.iter().cloned()).collect();
    let x = XAxis::Clients;
    let x_max = x.max(&all);
    let slo = ms(slo_us);
    let p99 = |s: &StepResult| ms(s.latency.p99_us);
    let frame = Frame {
        title: "Delivery p99 at each step",
        x,
        title_px: PANEL_TITLE_PX,
        y_desc: "p99 (ms, log scale)",
    };
    let mut chart = log_chart(
        &top,
        &frame,
        x_max,
        log_bounds(all.iter().map(p99).chain([slo])),
    )?;
    for r in ramps {
        let c = colour(&r.broker);
        chart
            .draw_series(line(r.steps.iter().map(|s| (x.of(s), p99(s))), c))?
            .label(format!("{}: {}", r.broker, r.stopped))
            .legend(move |(x, y)| legend_line(x, y, c));
        let last = r.steps.last().map(|s| (x.of(s), p99(s)));
        chart.draw_series(last.map(|p| Cross::new(p, 9, c.stroke_width(3))))?;
    }
    objective_line_in(&mut chart, x_max, slo, BLACK)?;
    legend(&mut chart)?;
    let rss = |s: &StepResult| crate::model::units::to_mib(s.broker_rss_bytes);
    let frame = Frame {
        title: "Broker memory (RSS) at each step",
        x,
        title_px: PANEL_TITLE_PX,
        y_desc: "RSS (MiB)",
    };
    let y_max = all.iter().map(rss).fold(1.0, f64::max) * HEADROOM;
    let mut chart = linear_chart(&bottom, &frame, x_max, y_max, |v| number(*v))?;
    for r in ramps {
        let c = colour(&r.broker);
        chart
            .draw_series(line(r.steps.iter().map(|s| (x.of(s), rss(s))), c))?
            .label(r.broker.as_str())
            .legend(move |(x, y)| legend_line(x, y, c));
        let last = r.steps.last().map(|s| (x.of(s), rss(s)));
        chart.draw_series(last.map(|p| Cross::new(p, 9, c.stroke_width(3))))?;
    }
    legend(&mut chart)?;
    image.present()?;
    Ok(())
}
