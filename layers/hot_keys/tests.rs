use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn tracker(tracked: usize) -> HotKeys {
    HotKeys::builder("orders:write")
        .tracked(tracked)
        .window(Duration::from_secs(10))
        .salt(7)
        .metrics(false)
        .build()
        .unwrap()
}

#[test]
fn counts_are_exact_while_every_key_fits() {
    let keys = tracker(8);
    let now = Instant::now();
    for i in 0..5u64 {
        for _ in 0..=i {
            keys.record(format!("k{i}").as_bytes(), 2, false, now);
        }
    }
    keys.record(b"k4", 3, true, now);
    let report = keys.report(now);
    let units: Vec<u64> = report.by_units().iter().map(|k| k.units).collect();
    assert_eq!(units, [13, 8, 6, 4, 2]);
    let top = &report.by_units()[0];
    assert_eq!((top.served_units, top.throttles, top.error), (10, 1, 0));
    assert_eq!(top.id, keys.id(b"k4"));
    assert_eq!(report.by_throttles().len(), 1);
}

#[test]
fn a_heavy_key_is_kept_among_a_hundred_thousand_others_in_bounded_memory() {
    let keys = tracker(16);
    let t0 = Instant::now();
    let mut rng = fastrand::Rng::with_seed(3);
    let mut hot_per_second = [0u64; 20];
    for i in 0..100_000u64 {
        let now = t0 + Duration::from_micros(i * 200); // 20 s of traffic
        if rng.u8(..) < 26 {
            keys.record(b"the hot one", 3, false, now);
            hot_per_second[(i * 200 / 1_000_000) as usize] += 3;
        } else {
            keys.record(&rng.u64(..).to_le_bytes(), 1, false, now);
        }
        assert!(keys.entries() <= 10 * 16);
    }
    let end = t0 + Duration::from_micros(100_000 * 200);
    let report = keys.report(end);
    let top = &report.by_units()[0];
    assert_eq!(top.id, keys.id(b"the hot one"));
    // The window ending at second 20 holds seconds 11 to 20: the key's units there, never
    // under-counted, over-counted by at most `error`.
    let in_window: u64 = hot_per_second[11..].iter().sum();
    assert!(
        top.units >= in_window && top.units - top.error <= in_window,
        "{top:?} against {in_window}"
    );
}

#[test]
fn space_saving_never_undercounts_and_bounds_the_overcount() {
    let mut sketch = sketch::Sketch::new(0, 4);
    let mut truth = std::collections::HashMap::new();
    let mut rng = fastrand::Rng::with_seed(11);
    for _ in 0..10_000 {
        let id = KeyId(rng.u64(0..40));
        let units = rng.u64(1..5);
        *truth.entry(id).or_insert(0) += units;
        sketch.add(id, units, false, None);
    }
    assert_eq!(sketch.entries().len(), 4);
    for e in sketch.entries() {
        let real = truth[&e.id];
        assert!(
            e.units >= real && e.units - e.error <= real,
            "{e:?} real {real}"
        );
    }
}

#[test]
fn seconds_older_than_the_window_leave_the_report() {
    let keys = tracker(8);
    let t0 = Instant::now();
    keys.record(b"early", 100, false, t0);
    keys.record(b"late", 1, false, t0 + Duration::from_secs(9));
    assert_eq!(keys.report(t0 + Duration::from_secs(9)).keys.len(), 2);
    let later = keys.report(t0 + Duration::from_secs(10));
    assert_eq!(later.keys.len(), 1);
    assert_eq!(later.keys[0].id, keys.id(b"late"));
    keys.record(b"late", 1, false, t0 + Duration::from_secs(30));
    assert_eq!(keys.entries(), 1);
}

#[test]
fn the_peak_is_the_busiest_second_against_the_partition_maximum() {
    let keys = tracker(8);
    let t0 = Instant::now();
    keys.record(b"k", 300, false, t0);
    keys.record(b"k", 900, false, t0 + Duration::from_millis(1_500));
    keys.record(b"k", 100, false, t0 + Duration::from_millis(1_900));
    let top = keys.report(t0 + Duration::from_secs(2)).keys[0].clone();
    assert_eq!(top.units, 1_300);
    assert_eq!(top.peak_units_per_second, 1_000);
    assert_eq!(top.peak_share(), 1.0);
}

#[test]
fn values_are_kept_only_when_shown_and_cut_at_the_dynamodb_maximum() {
    let hidden = tracker(4);
    let now = Instant::now();
    hidden.record(b"customer#42", 1, false, now);
    assert_eq!(hidden.report(now).keys[0].key, None);
    let shown = HotKeys::builder("t")
        .show_keys(true)
        .metrics(false)
        .build()
        .unwrap();
    shown.record(b"customer#42", 1, false, now);
    shown.record("é".repeat(2_000).as_bytes(), 2, false, now);
    let report = shown.report(now);
    assert_eq!(report.keys[1].key.as_deref(), Some("customer#42"));
    let long = report.keys[0].key.as_deref().unwrap();
    assert!(long.len() <= MAX_KEY_BYTES && long.len() >= MAX_KEY_BYTES - 1);
}

#[test]
fn hashes_are_salted() {
    let a = tracker(4);
    let b = tracker(4);
    assert_eq!(a.id(b"k"), b.id(b"k"));
    let random1 = HotKeys::builder("t").build().unwrap();
    let random2 = HotKeys::builder("t").build().unwrap();
    assert_ne!(random1.id(b"k"), random2.id(b"k"));
    assert_ne!(a.id(b"k"), a.id(b"j"));
    assert_eq!(a.id(b"k").to_string().len(), 18);
    assert!(a.id(b"k").to_string().starts_with("h:"));
}

#[test]
fn bad_settings_are_typed_errors() {
    let field = |b: HotKeysBuilder| b.build().unwrap_err().field();
    let b = || HotKeys::builder("t");
    assert_eq!(field(b().partition_max(0)), "partition_max");
    assert_eq!(field(b().window(Duration::ZERO)), "window");
    assert_eq!(field(b().window(Duration::from_millis(1_500))), "window");
    assert_eq!(field(b().window(MAX_WINDOW * 2)), "window");
    assert_eq!(field(b().tracked(0)), "tracked");
    assert_eq!(field(b().tracked(MAX_TRACKED + 1)), "tracked");
    assert_eq!(field(b().warn_share(0.0)), "warn_share");
    assert_eq!(field(b().warn_share(f64::NAN)), "warn_share");
    assert_eq!(field(b().warn_share(1.5)), "warn_share");
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_label_ranks_never_keys() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let keys = HotKeys::builder("orders:write").build().unwrap();
        let t0 = Instant::now();
        keys.record(b"customer#42", 800, false, t0);
        keys.record(b"customer#7", 100, true, t0);
        keys.record(b"customer#42", 1, false, t0 + Duration::from_secs(1));
    });
    let snapshot = snapshotter.snapshot().into_vec();
    let mut share_rank1 = None;
    for (key, _, _, value) in &snapshot {
        for label in key.key().labels() {
            assert!(!label.value().contains("customer"), "{label:?}");
        }
        if key.key().name() == "headroom_hot_key_share"
            && key
                .key()
                .labels()
                .any(|l| l.key() == "rank" && l.value() == "1")
        {
            share_rank1 = Some(value);
        }
    }
    assert_eq!(share_rank1, Some(DebugValue::Gauge(0.8.into())).as_ref());
    let throttles = snapshot
        .iter()
        .find(|(k, ..)| k.key().name() == "headroom_hot_key_throttles_total")
        .map(|(.., v)| v);
    assert_eq!(throttles, Some(DebugValue::Counter(1)).as_ref());
}

#[test]
fn many_cold_keys_never_pass_for_hot_and_a_hot_one_among_them_does() {
    // One second of 40,000 one-unit attempts over 10,000 keys (4 each) beside one key at
    // 1,000 units, warned about at half the maximum (the ceiling's share): every fresh key
    // inherits the lightest count, which passes the 500 units, yet only the hot key is
    // vouched for past them.
    let keys = HotKeys::builder("orders:write")
        .warn_share(0.5)
        .salt(7)
        .metrics(false)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let hot = keys.id(b"the hot one");
    let mut past_the_warning = std::collections::HashSet::new();
    for i in 0..40_000u64 {
        let now = t0 + Duration::from_micros(i * 25);
        let key = format!("cold#{}", i % 10_000);
        if keys.record_id(keys.id(key.as_bytes()), None, 1, false, now) >= keys.warn_at {
            past_the_warning.insert(key);
        }
        if i % 40 == 0 && keys.record_id(hot, None, 1, false, now) >= keys.warn_at {
            past_the_warning.insert("the hot one".to_owned());
        }
    }
    let report = keys.report(t0);
    let cold_counted_past = report
        .by_units()
        .iter()
        .filter(|k| k.id != hot && k.units >= keys.warn_at)
        .count();
    assert!(cold_counted_past > 0, "the raw counts would have misled");
    assert_eq!(report.by_units()[0].id, hot);
    assert!(
        past_the_warning.len() == 1 && past_the_warning.contains("the hot one"),
        "{} keys passed the warning's share; the hot one among them: {}",
        past_the_warning.len(),
        past_the_warning.contains("the hot one")
    );
}
