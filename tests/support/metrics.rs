//! Test support: reading a `metrics_util` debugging recorder's snapshot — the counters, gauges
//! and histograms of one metric name whose labels include the ones asked for.

#![allow(dead_code)]

use metrics_util::CompositeKey;
use metrics_util::debugging::DebugValue;

/// A snapshot's series (`Snapshot::into_vec`).
pub type Series = Vec<(
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The series named `name` whose labels include every one of `labels`.
fn matching<'a>(
    series: &'a [(
        CompositeKey,
        Option<metrics::Unit>,
        Option<metrics::SharedString>,
        DebugValue,
    )],
    name: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = &'a DebugValue> {
    series
        .iter()
        .filter(move |(key, ..)| {
            key.key().name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| value)
}

/// The counter `name` with `labels`, summed over its series (0 when absent).
pub fn counter(series: &Series, name: &str, labels: &[(&str, &str)]) -> u64 {
    matching(series, name, labels)
        .map(|value| match value {
            DebugValue::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

/// The gauge `name` with `labels` (its first series), if any.
pub fn gauge(series: &Series, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    matching(series, name, labels).find_map(|value| match value {
        DebugValue::Gauge(v) => Some(v.into_inner()),
        _ => None,
    })
}

/// Every value recorded in histogram `name` with `labels`.
pub fn histogram(series: &Series, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    matching(series, name, labels)
        .flat_map(|value| match value {
            DebugValue::Histogram(values) => {
                values.iter().map(|v| v.into_inner()).collect::<Vec<f64>>()
            }
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .collect()
}

/// `headroom_tokens_total` of `type` `kind` with `labels`.
pub fn token(series: &Series, kind: &str, labels: &[(&str, &str)]) -> u64 {
    let mut with_type = labels.to_vec();
    with_type.push(("type", kind));
    counter(series, tower_headroom::observe::names::TOKENS, &with_type)
}

/// `headroom_tokens_total` with `labels`, by type: input, output, cache read, cache write.
pub fn tokens(series: &Series, labels: &[(&str, &str)]) -> [u64; 4] {
    ["input", "output", "cache_read", "cache_write"].map(|kind| token(series, kind, labels))
}
