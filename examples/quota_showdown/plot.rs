//! `--plot DIR`: an SVG per scenario, with `plotters` (SVG backend only), over time, one
//! colour per strategy, in 6-second bins:
//!
//! - admitted units per second, with the quota's rate (dashed) and each tower-headroom row's
//!   effective limit (dotted: its own quota's learned limit in the plotted unit — requests in
//!   the request-count scenarios 1, 3 and 4, tokens or WCU in the others — sampled once a
//!   minute);
//! - the quota utilisation: the share of the quota's rate used, with the 80% line (dashed);
//! - throttled attempts per second, and (dotted) fallback hops: calls a fallback target (the
//!   second model or region) served per second, in the scenarios with one (3, 4 and 7).
//!
//! Scenario 6 adds a panel of the neighbour's tokens per second in each strategy's run. Its
//! tokens are counted when the calls settle (the simulator knows each caller's tokens at
//! settlement), which is what the quota keeps.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use tower::BoxError;

use super::scenarios::{Measured, minutes, quota_rate};

/// Seconds per plotted bin: per-second counts of a per-minute quota are too spiky to read.
const BIN: usize = 6;

const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(23, 190, 207),
];

/// Per-second averages over bins of [`BIN`] seconds, as (minutes, value) points up to `span`.
fn binned(values: impl Iterator<Item = f64>, span: f64) -> Points {
    let values: Vec<f64> = values.collect();
    values
        .chunks(BIN)
        .enumerate()
        .map(|(i, chunk)| {
            let minutes = (i * BIN) as f64 / 60.0;
            (minutes, chunk.iter().sum::<f64>() / chunk.len() as f64)
        })
        .filter(|(minutes, _)| *minutes <= span)
        .collect()
}

type Points = Vec<(f64, f64)>;
type Lines<'a> = Vec<(&'a str, Points)>;
/// A dotted line: the colour index of its strategy, its label, its points.
type Dotted = (usize, String, Points);

/// A step line of one value per minute (the value at the end of minute `k` drawn over it),
/// in units per second: each value is per `window` seconds.
fn per_minute_steps(values: &[Option<u64>], window: f64) -> Points {
    let mut points = Vec::new();
    for (k, value) in values.iter().enumerate() {
        if let Some(v) = value {
            let rate = *v as f64 / window;
            points.push((k as f64, rate));
            points.push((k as f64 + 1.0, rate));
        }
    }
    points
}

/// One panel: `lines` (one colour per strategy, by index), an optional dashed quota line, and
/// dotted extra lines (with the colour index of their strategy).
#[allow(clippy::too_many_arguments)]
fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    caption: String,
    y_desc: &str,
    span: f64,
    lines: &Lines<'_>,
    quota: Option<f64>,
    dotted: &[Dotted],
) -> Result<(), BoxError> {
    let y_max = lines
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .chain(
            dotted
                .iter()
                .flat_map(|(_, _, points)| points.iter().map(|p| p.1)),
        )
        .fold(quota.unwrap_or(1.0), f64::max)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..span, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc(y_desc)
        .light_line_style(WHITE)
        .draw()?;
    if let Some(rate) = quota {
        chart.draw_series(DashedLineSeries::new(
            [(0.0, rate), (span, rate)],
            6,
            4,
            BLACK.stroke_width(1),
        ))?;
    }
    for (i, (name, points)) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    for (i, label, points) in dotted {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(DashedLineSeries::new(
                points.iter().copied(),
                2,
                3,
                color.stroke_width(2),
            ))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 8, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// The window, in seconds, of scenario `n`'s quota: DynamoDB's capacity is per second, the
/// model quotas per minute.
fn window(n: u8) -> f64 {
    if n == 5 { 1.0 } else { 60.0 }
}

/// The tower-headroom rows' effective limits, dotted, where they are in the plotted unit.
fn effective_limits(n: u8, rows: &[Measured], rate: f64) -> Vec<Dotted> {
    rows.iter()
        .enumerate()
        .filter(|(_, m)| m.series.effective_limit.iter().any(Option::is_some))
        .map(|(i, m)| {
            (
                i,
                format!("{}: effective limit", m.row.strategy.name()),
                per_minute_steps(&m.series.effective_limit, window(n)),
            )
        })
        // A limit far above the quota is another dimension's (tokens beside requests).
        .filter(|(_, _, points)| points.iter().all(|p| p.1 <= 10.0 * rate))
        .collect()
}

/// Writes `DIR/showdown-scenarioN.svg` and returns its path.
pub fn scenario(dir: &Path, n: u8, rows: &[Measured]) -> Result<PathBuf, BoxError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("showdown-scenario{n}.svg"));
    let span = minutes(n) as f64 + 2.0;
    let (rate, unit) = quota_rate(n);
    let lines = |f: &dyn Fn(&Measured) -> Points| -> Lines<'_> {
        rows.iter().map(|m| (m.row.strategy.name(), f(m))).collect()
    };
    let admitted = lines(&|m| binned(m.series.admitted.iter().copied(), span));
    let utilisation = lines(&|m| binned(m.series.admitted.iter().map(|&u| 100.0 * u / rate), span));
    let throttled = lines(&|m| binned(m.series.throttled.iter().map(|&t| t as f64), span));
    let hops: Vec<Dotted> = rows
        .iter()
        .enumerate()
        .filter(|(_, m)| m.series.fallback.iter().any(|&c| c > 0))
        .map(|(i, m)| {
            (
                i,
                format!("{}: fallback hops", m.row.strategy.name()),
                binned(m.series.fallback.iter().map(|&c| c as f64), span),
            )
        })
        .collect();
    let limits = effective_limits(n, rows, rate);

    let shared = rows.iter().any(|m| m.row.shared.is_some());
    let height = if shared { 1250 } else { 930 };
    let root = SVGBackend::new(path.as_path(), (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, rest) = root.split_vertically(400);
    panel(
        &top,
        if shared {
            format!(
                "Scenario {n}: our {unit}/s, settled (dashed: the quota; dotted: the stacks' own limits)"
            )
        } else {
            format!(
                "Scenario {n}: admitted {unit}/s (dashed: the quota; dotted: the stacks' own limits)"
            )
        },
        unit,
        span,
        &admitted,
        Some(rate),
        &limits,
    )?;
    let rest = if shared {
        let neighbour = lines(&|m| binned(m.series.neighbour.iter().copied(), span));
        let (middle, rest) = rest.split_vertically(300);
        panel(
            &middle,
            format!("Scenario {n}: the neighbour's {unit}/s, settled, in each strategy's run"),
            unit,
            span,
            &neighbour,
            Some(rate),
            &[],
        )?;
        rest
    } else {
        rest
    };
    let (middle, bottom) = rest.split_vertically(250);
    panel(
        &middle,
        format!("Scenario {n}: quota utilisation, % of the quota's rate used (dashed: 80%)"),
        "% used",
        span,
        &utilisation,
        Some(80.0),
        &[],
    )?;
    panel(
        &bottom,
        if hops.is_empty() {
            format!("Scenario {n}: throttled attempts/s")
        } else {
            format!("Scenario {n}: throttled attempts/s (dotted: calls a fallback target served/s)")
        },
        "per second",
        span,
        &throttled,
        None,
        &hops,
    )?;
    root.present()?;
    Ok(path.clone())
}
