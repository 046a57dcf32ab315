//! The tables and the `--json` lines.

use std::fmt::Write;

use super::scenarios::{Measured, Row, title, utilisation_note};

/// One JSON object with exactly the row's fields, on one line. Floats are printed with fixed
/// precision so that two runs with the same seed print the same bytes.
pub fn json_line(row: &Row) -> String {
    format!(
        "{{\"scenario\":{},\"strategy\":\"{}\",\"requests\":{},\"completed\":{},\"failed\":{},\
         \"attempts\":{},\"throttled_attempts\":{},\"quota_utilization\":{:.4},\"p50_ms\":{:.1},\
         \"p99_ms\":{:.1},\"amplification\":{:.3}}}",
        row.scenario,
        row.strategy.name(),
        row.requests,
        row.completed,
        row.failed,
        row.attempts,
        row.throttled_attempts,
        row.quota_utilization,
        row.p50_ms,
        row.p99_ms,
        row.amplification,
    )
}

fn seconds(ms: f64) -> String {
    if ms == 0.0 {
        "-".into()
    } else if ms < 1_000.0 {
        format!("{ms:.0} ms")
    } else if ms < 10_000.0 {
        format!("{:.2} s", ms / 1e3)
    } else {
        format!("{:.1} s", ms / 1e3)
    }
}

/// A scenario's table: one row per measured strategy, then the footer notes.
pub fn table(scenario: u8, rows: &[Measured], notes: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Scenario {scenario}: {}", title(scenario));
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>9} {:>7} {:>8} {:>9} {:>11} {:>8} {:>8} {:>13}",
        "strategy",
        "requests",
        "completed",
        "failed",
        "attempts",
        "throttled",
        "utilisation",
        "p50",
        "p99",
        "amplification"
    );
    for m in rows {
        let r = &m.row;
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>9} {:>7} {:>8} {:>9} {:>10.1}% {:>8} {:>8} {:>12.2}x",
            r.strategy.name(),
            r.requests,
            r.completed,
            r.failed,
            r.attempts,
            r.throttled_attempts,
            r.quota_utilization * 100.0,
            seconds(r.p50_ms),
            seconds(r.p99_ms),
            r.amplification,
        );
    }
    let _ = writeln!(
        out,
        "  throttled: attempts the service answered 429 / ProvisionedThroughputExceeded; \
         p50/p99: completed requests, arrival to answer"
    );
    let _ = writeln!(out, "  utilisation: {}", utilisation_note(scenario));
    if rows.iter().any(|m| m.per_app.len() > 1) {
        for m in rows {
            let apps: Vec<String> = m
                .per_app
                .iter()
                .map(|a| {
                    format!(
                        "{} {}/{} ({}, {})",
                        a.name,
                        a.completed,
                        a.failed,
                        seconds(a.p50_ms),
                        seconds(a.p99_ms)
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  {:<24} per app, completed/failed (p50, p99): {}",
                m.row.strategy.name(),
                apps.join(", ")
            );
        }
    }
    for note in notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}
