//! Ratios between benchmarks of the same criterion run, read from criterion's own estimates.

#![allow(dead_code)]

use std::path::PathBuf;

/// Where criterion writes its estimates.
fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("criterion")
}

/// The median time per iteration, in nanoseconds, of `group/bench` from the latest run.
pub fn median_ns(group: &str, bench: &str) -> Option<f64> {
    let path = criterion_home()
        .join(group)
        .join(bench)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

/// Prints `numerator / denominator` for two benchmarks of `group`, when both ran.
pub fn print_ratio(group: &str, numerator: &str, denominator: &str) {
    match (median_ns(group, numerator), median_ns(group, denominator)) {
        (Some(n), Some(d)) if d > 0.0 => println!(
            "  {group}: {numerator} / {denominator} = {:.2}x  ({n:.2} ns / {d:.2} ns, medians)",
            n / d
        ),
        _ => println!("  {group}: {numerator} / {denominator}: not measured in this run"),
    }
}

/// Prints the ratio of two benchmarks' overheads over a `baseline` of the same `group`:
/// `(numerator - baseline) / (denominator - baseline)`, when all three ran.
pub fn print_overhead_ratio(group: &str, numerator: &str, denominator: &str, baseline: &str) {
    let medians = (
        median_ns(group, numerator),
        median_ns(group, denominator),
        median_ns(group, baseline),
    );
    match medians {
        (Some(n), Some(d), Some(b)) if d > b => println!(
            "  {group}: overhead of {numerator} / overhead of {denominator} = {:.2}x  \
             ({:.2} ns / {:.2} ns over {baseline} {b:.2} ns, medians)",
            (n - b) / (d - b),
            n - b,
            d - b
        ),
        _ => println!("  {group}: overhead ratio {numerator} / {denominator}: not measured"),
    }
}

/// Ends a bench's `main`: criterion's summary, then `ratios` only under `cargo bench` (`cargo
/// test --benches` runs each benchmark once, unoptimised, so its ratios would mean nothing).
pub fn finish(ratios: impl FnOnce()) {
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    if std::env::args().any(|a| a == "--bench") {
        ratios();
    }
}
