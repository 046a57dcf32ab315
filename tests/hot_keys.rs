//! The hot-key report's warning: once per window per key, naming the key by its salted hash
//! unless the caller opted in to values, and never a value in a metric label.

mod support {
    #![allow(dead_code)]
    pub mod capture;
}

use std::time::Duration;

use tokio::time::Instant;
use tower_headroom::hot_keys::HotKeys;

fn burst(keys: &HotKeys, t0: Instant) {
    // 900 WCU/s on one key for 3 s, beside 50 quiet keys.
    for second in 0..3u64 {
        let now = t0 + Duration::from_secs(second);
        for i in 0..90 {
            keys.record(b"tenant#secret-42", 10, i % 9 == 0, now);
        }
        for i in 0..50u32 {
            keys.record(format!("tenant#quiet-{i}").as_bytes(), 1, false, now);
        }
    }
}

#[test]
fn a_key_near_the_partition_maximum_is_warned_about_once_by_its_hash() {
    let keys = HotKeys::builder("orders:write").salt(1).build().unwrap();
    let t0 = Instant::now();
    let ((), logs) = support::capture::logged(&["tower_headroom"], || burst(&keys, t0));
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{logs}");
    let id = keys.id(b"tenant#secret-42").to_string();
    assert!(warnings[0].contains(&id), "{logs}");
    assert!(warnings[0].contains("orders:write"), "{logs}");
    assert!(!logs.contains("secret"), "a key value was logged: {logs}");
    let top = &keys.report(t0 + Duration::from_secs(2)).keys[0];
    assert_eq!(top.throttles, 30);
    assert_eq!(top.peak_units_per_second, 900);
}

#[test]
fn values_appear_in_warnings_only_when_the_caller_opted_in() {
    let keys = HotKeys::builder("orders:write")
        .show_keys(true)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let ((), logs) = support::capture::logged(&["tower_headroom"], || burst(&keys, t0));
    assert!(logs.contains("tenant#secret-42"), "{logs}");
}

#[test]
fn a_key_warned_about_is_warned_again_only_after_the_window() {
    let keys = HotKeys::builder("t")
        .window(Duration::from_secs(5))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let ((), logs) = support::capture::logged(&["tower_headroom"], || {
        for second in 0..12u64 {
            keys.record(b"k", 1_000, false, t0 + Duration::from_secs(second));
        }
    });
    // Seconds 0, 5 and 10.
    assert_eq!(
        logs.lines().filter(|l| l.contains("WARN")).count(),
        3,
        "{logs}"
    );
}
