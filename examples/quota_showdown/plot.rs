//! `--plot DIR`: an SVG per scenario, with `plotters` (SVG backend only): admitted units per
//! second (top) and throttled attempts per second (bottom) over time, one line per strategy,
//! in 6-second bins, with the quota's rate as a dashed line.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use tower::BoxError;

use super::scenarios::{Measured, quota_rate};

/// Seconds per plotted bin: per-second counts of a per-minute quota are too spiky to read.
const BIN: usize = 6;
/// The plotted span, in minutes: the ten minutes of traffic and the start of the tail.
const SPAN_MINUTES: f64 = 12.0;

const COLORS: [RGBColor; 6] = [
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(23, 190, 207),
];

/// Per-second averages over bins of [`BIN`] seconds, as (minutes, value) points.
fn binned(values: impl Iterator<Item = f64> + Clone) -> Vec<(f64, f64)> {
    let values: Vec<f64> = values.collect();
    values
        .chunks(BIN)
        .enumerate()
        .map(|(i, chunk)| {
            let minutes = (i * BIN) as f64 / 60.0;
            (minutes, chunk.iter().sum::<f64>() / chunk.len() as f64)
        })
        .filter(|(minutes, _)| *minutes <= SPAN_MINUTES)
        .collect()
}

/// Writes `DIR/showdown-scenarioN.svg` and returns its path.
pub fn scenario(dir: &Path, n: u8, rows: &[Measured]) -> Result<PathBuf, BoxError> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("showdown-scenario{n}.svg"));
    let (rate, unit) = quota_rate(n);
    let admitted: Vec<(&str, Vec<(f64, f64)>)> = rows
        .iter()
        .map(|m| {
            (
                m.row.strategy.name(),
                binned(m.series.admitted.iter().copied()),
            )
        })
        .collect();
    let throttled: Vec<(&str, Vec<(f64, f64)>)> = rows
        .iter()
        .map(|m| {
            (
                m.row.strategy.name(),
                binned(m.series.throttled.iter().map(|&t| t as f64)),
            )
        })
        .collect();
    let top_max = admitted
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(rate, f64::max)
        * 1.15;
    let bottom_max = throttled
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        * 1.15;

    let root = SVGBackend::new(path.as_path(), (1000, 680)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    let panels = [
        (
            &top,
            format!("Scenario {n}: admitted {unit}/s (dashed: the quota)"),
            unit,
            top_max,
            &admitted,
            Some(rate),
        ),
        (
            &bottom,
            format!("Scenario {n}: throttled attempts/s"),
            "throttles",
            bottom_max,
            &throttled,
            None,
        ),
    ];
    for (area, caption, y_desc, y_max, lines, quota) in panels {
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..SPAN_MINUTES, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc(y_desc)
            .light_line_style(WHITE)
            .draw()?;
        if let Some(rate) = quota {
            chart.draw_series(DashedLineSeries::new(
                [(0.0, rate), (SPAN_MINUTES, rate)],
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
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(path.clone())
}
