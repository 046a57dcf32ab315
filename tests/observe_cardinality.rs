//! A breaker registry's metrics stay bounded: keys beyond its label budget report under the
//! overflow target, and an evicted key gives its label set's place back.
#![cfg(feature = "metrics")]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::Instant;
use tower_headroom::breaker::{BreakerConfig, BreakerRegistry};
use tower_headroom::observe::{Labels, OVERFLOW_TARGET, names};

#[test]
fn breaker_keys_beyond_the_budget_report_as_overflow_and_eviction_frees_a_place() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let registry = BreakerRegistry::builder(BreakerConfig::default())
        .labels(|host: &String| Labels::target(host.as_str()))
        .max_label_sets(2)
        .idle_after(Duration::from_secs(60))
        .build()
        .unwrap();
    let now = Instant::now();
    let breakers: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|key| registry.get(*key, now))
        .collect();
    let targets: Vec<_> = breakers
        .iter()
        .map(|b| b.labels().target_name().unwrap().to_owned())
        .collect();
    assert_eq!(targets, ["a", "b", OVERFLOW_TARGET, OVERFLOW_TARGET]);
    for breaker in &breakers {
        breaker.trip(now);
    }
    let opened = |series: &[(metrics_util::CompositeKey, _, _, DebugValue)]| {
        let mut opened: Vec<(String, u64)> = series
            .iter()
            .filter(|(key, ..)| key.key().name() == names::BREAKER_TRANSITIONS)
            .filter(|(key, ..)| {
                key.key()
                    .labels()
                    .any(|l| l.key() == "to" && l.value() == "open")
            })
            .filter_map(|(key, _, _, value)| {
                let target = key.key().labels().find(|l| l.key() == "target")?;
                match value {
                    DebugValue::Counter(n) if *n > 0 => Some((target.value().to_owned(), *n)),
                    _ => None,
                }
            })
            .collect();
        opened.sort();
        opened
    };
    let series = snapshotter.snapshot().into_vec();
    assert_eq!(
        opened(&series),
        [
            (OVERFLOW_TARGET.to_owned(), 2),
            ("a".to_owned(), 1),
            ("b".to_owned(), 1)
        ]
    );
    let distinct: std::collections::HashSet<String> = series
        .iter()
        .filter_map(|(key, ..)| {
            key.key()
                .labels()
                .find(|l| l.key() == "target")
                .map(|l| l.value().to_owned())
        })
        .collect();
    assert_eq!(distinct.len(), 3, "{distinct:?}");

    // "a" is evicted: its place goes to the next new key, and its series is no longer updated.
    let mut breakers = breakers;
    breakers.remove(0);
    // The others are still held, so only "a" is evicted.
    let later = now + Duration::from_secs(61);
    assert_eq!(registry.evict_idle(later), 1);
    let e = registry.get("e", later);
    assert_eq!(e.labels().target_name(), Some("e"));
    e.trip(later);
    let series = snapshotter.snapshot().into_vec();
    assert_eq!(opened(&series), [("e".to_owned(), 1)]);
}
