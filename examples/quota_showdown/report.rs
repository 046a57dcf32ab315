//! The tables and the `--json` lines.

use std::fmt::Write;

use super::scenarios::{Measured, NEIGHBOUR_FROM, NEIGHBOUR_UNTIL, Row, title, utilisation_note};

/// A JSON number for an optional integer.
fn opt(value: Option<u64>) -> String {
    value.map_or_else(|| "null".into(), |v| v.to_string())
}

/// One JSON object with exactly the row's fields, on one line. Floats are printed with fixed
/// precision so that two runs with the same seed print the same bytes.
pub fn json_line(row: &Row) -> String {
    let mut out = format!(
        "{{\"scenario\":{},\"name\":\"{}\",\"strategy\":\"{}\",\"requests\":{},\"completed\":{},\
         \"failed\":{},\"attempts\":{},\"throttled_attempts\":{},\"quota_utilization\":{:.4},\
         \"p50_ms\":{:.1},\"p99_ms\":{:.1},\"amplification\":{:.3},\"apps\":[",
        row.scenario,
        row.name,
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
    );
    for (i, app) in row.apps.iter().enumerate() {
        let _ = write!(
            out,
            "{}{{\"app\":\"{}\",\"completed\":{},\"failed\":{},\"p50_ms\":{:.1},\"p99_ms\":{:.1}}}",
            if i == 0 { "" } else { "," },
            app.name,
            app.completed,
            app.failed,
            app.p50_ms,
            app.p99_ms
        );
    }
    out.push(']');
    if let Some(shared) = &row.shared {
        let limits: Vec<String> = shared
            .effective_limit_per_minute
            .iter()
            .map(|&l| opt(l))
            .collect();
        let n = &shared.neighbour;
        let _ = write!(
            out,
            ",\"effective_limit_per_minute\":[{}],\"neighbour\":{{\"calls\":{},\"throttled\":{},\
             \"throttled_calls\":{},\"failed\":{},\"settled_tokens\":{}}},\"remainder_tokens\":{},\
             \"our_mean_settled_cost\":{:.1}",
            limits.join(","),
            n.calls,
            n.throttled,
            n.throttled_calls,
            n.failed,
            n.settled_tokens,
            shared.remainder_tokens,
            shared.our_mean_settled_cost
        );
    }
    if let Some(h) = &row.hot_key {
        let _ = write!(
            out,
            ",\"hot_key_attempts\":{},\"hot_key_throttled\":{},\"other_keys_throttled\":{},\
             \"reads_throttled\":{},\"key_range_throttles\":{},\"provisioned_throttles\":{}",
            h.key_attempts,
            h.key_throttled,
            h.other_throttled,
            h.reads_throttled,
            h.key_range_throttles,
            h.provisioned_throttles,
        );
        let named = h
            .report_named_at_s
            .map_or("null".to_owned(), |at| at.to_string());
        let _ = write!(out, ",\"hot_key_report_named_at_s\":{named}");
    }
    if let Some(daily) = &row.daily {
        let _ = write!(
            out,
            ",\"daily_throttles\":{},\"primary_completed\":{},\"fallback_completed\":{},\
             \"spent_at_s\":{},\"first_fallback_at_s\":{}",
            daily.daily_throttles,
            daily.primary_completed,
            daily.fallback_completed,
            opt(daily.spent_at_s),
            opt(daily.first_fallback_at_s),
        );
    }
    if let Some(billing) = &row.billing {
        let _ = write!(
            out,
            ",\"billing_spent_at_s\":{},\"insufficient_quota_attempts\":{},\
             \"retried_after_insufficient_quota\":{}",
            opt(billing.spent_at_s),
            billing.insufficient_quota_attempts,
            billing.retried_after_insufficient_quota,
        );
    }
    out.push('}');
    out
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
    if scenario == 6 {
        let _ = writeln!(
            out,
            "  requests, attempts, throttled, amplification: our two apps only (the neighbour below)"
        );
    }
    let windows = rows.first().map_or(0, |m| m.whole_windows);
    let _ = writeln!(
        out,
        "  utilisation: {}",
        utilisation_note(scenario, windows)
    );
    if rows.iter().any(|m| m.row.apps.len() > 1) {
        for m in rows {
            let apps: Vec<String> = m
                .row
                .apps
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
    if rows.iter().any(|m| m.row.shared.is_some()) {
        shared_account(&mut out, rows);
    }
    if rows.iter().any(|m| m.row.daily.is_some()) {
        daily_quota(&mut out, rows);
    }
    for m in rows {
        if let Some(h) = &m.row.hot_key {
            let _ = writeln!(
                out,
                "  {:<24} hot key: {} of {} attempts throttled; other keys throttled {}; reads throttled {}; key-range / provisioned throttles {} / {}",
                m.row.strategy.name(),
                h.key_throttled,
                h.key_attempts,
                h.other_throttled,
                h.reads_throttled,
                h.key_range_throttles,
                h.provisioned_throttles,
            );
            if let Some(at) = h.report_named_at_s {
                let _ = writeln!(
                    out,
                    "  {:<24} the client's hot-key report names the hot key {at} s after its first burst",
                    ""
                );
            }
        }
    }
    for m in rows {
        if let Some(billing) = &m.row.billing {
            let _ = writeln!(
                out,
                "  {:<24} billing cap spent at {}; insufficient_quota answers {}; calls sent again after one {}",
                m.row.strategy.name(),
                billing
                    .spent_at_s
                    .map_or_else(|| "-".to_string(), |s| format!("{s} s")),
                billing.insufficient_quota_attempts,
                billing.retried_after_insufficient_quota
            );
        }
    }
    for note in notes {
        let _ = writeln!(out, "  note: {note}");
    }
    out
}

/// Scenario 6's block: the neighbour, the remainder, our cost per call, and the stacks'
/// effective limits.
fn shared_account(out: &mut String, rows: &[Measured]) {
    let _ = writeln!(
        out,
        "  neighbour: an unmanaged client on the same account (no admission; 3 attempts, 1 s \
         and 2 s apart) in minutes {NEIGHBOUR_FROM}-{NEIGHBOUR_UNTIL}, the same calls in every row"
    );
    let _ = writeln!(
        out,
        "  {:<24} {:>9} {:>9} {:>10} {:>7} {:>13} {:>11} {:>15}",
        "",
        "nb calls",
        "nb thrott",
        "nb thr.cal",
        "nb fail",
        "nb settled",
        "remainder",
        "our cost/call"
    );
    for m in rows {
        let Some(shared) = &m.row.shared else {
            continue;
        };
        let n = &shared.neighbour;
        let _ = writeln!(
            out,
            "  {:<24} {:>9} {:>9} {:>10} {:>7} {:>13} {:>11} {:>15.0}",
            m.row.strategy.name(),
            n.calls,
            n.throttled,
            n.throttled_calls,
            n.failed,
            n.settled_tokens,
            shared.remainder_tokens,
            shared.our_mean_settled_cost
        );
    }
    let _ = writeln!(
        out,
        "  nb thrott: the neighbour's throttled attempts; nb thr.cal: its calls throttled at least \
         once; nb settled: its settled tokens; remainder: the quota over the whole windows less the \
         neighbour's tokens; our cost/call: our settled tokens per completed call"
    );
    for m in rows {
        let Some(shared) = &m.row.shared else {
            continue;
        };
        if !m.row.strategy.has_admission() {
            continue;
        }
        let limits: Vec<String> = shared
            .effective_limit_per_minute
            .iter()
            .map(|l| l.map_or_else(|| "-".into(), |v| v.to_string()))
            .collect();
        let _ = writeln!(
            out,
            "  {:<24} effective token limit per minute (its own quota, end of minutes 1-{}): {}",
            m.row.strategy.name(),
            limits.len(),
            limits.join(" ")
        );
    }
}

/// Scenario 7's block: attempts into the spent day, where the calls completed, and when the
/// day was spent and the fallback first served.
fn daily_quota(out: &mut String, rows: &[Measured]) {
    let _ = writeln!(
        out,
        "  {:<24} {:>13} {:>8} {:>9} {:>9} {:>15}",
        "", "daily throttle", "primary", "fallback", "spent at", "first fallback"
    );
    let at = |s: Option<u64>| s.map_or_else(|| "-".into(), |s| format!("{s} s"));
    for m in rows {
        let Some(daily) = &m.row.daily else {
            continue;
        };
        let _ = writeln!(
            out,
            "  {:<24} {:>13} {:>8} {:>9} {:>9} {:>15}",
            m.row.strategy.name(),
            daily.daily_throttles,
            daily.primary_completed,
            daily.fallback_completed,
            at(daily.spent_at_s),
            at(daily.first_fallback_at_s),
        );
    }
    let _ = writeln!(
        out,
        "  daily throttle: our attempts answered \"Too many tokens per day\"; primary/fallback: calls \
         completed by each model; spent at: when the primary's day had no room left for a batch \
         call; first fallback: when the fallback model first admitted a call"
    );
}
