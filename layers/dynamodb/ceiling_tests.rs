use std::time::Duration;

use super::*;
use crate::dynamodb::PartitionUnits;
use crate::{ThrottleReason, ThrottledOperation, ThrottledResource};

fn ceiling() -> PartitionCeiling {
    PartitionCeiling::builder()
        .salt(7)
        .metrics(false)
        .build()
        .unwrap()
}

fn key_range() -> Outcome {
    Outcome::throttled(ThrottleScope::Partition).with_reason(Some(ThrottleReason {
        resource: ThrottledResource::Table,
        operation: ThrottledOperation::Write,
        limit: ThrottleLimit::KeyRange,
    }))
}

/// Sends `per_second` units of `key` a second, in 30-unit attempts, for `seconds`, each
/// attempt sent when the ceiling grants it; returns the units sent in each second.
fn drive(c: &PartitionCeiling, key: &[u8], per_second: u64, seconds: u64) -> Vec<u64> {
    let start = Instant::now();
    let n = per_second / 30;
    let mut sent = vec![0; seconds as usize + 30];
    let mut free = start;
    for i in 0..n * seconds {
        let arrival = start + Duration::from_secs_f64(i as f64 / n as f64);
        let now = arrival.max(free);
        let ticket = c.admit("orders", Access::Write, key, 30, now).unwrap();
        let at = match ticket.grant() {
            Grant::Now => now,
            Grant::At(at) => at,
        };
        // Attempts on one key go out in order: the next is not admitted before this one.
        free = at;
        sent[at.duration_since(start).as_secs() as usize] += 30;
        c.record(ticket, &Outcome::SUCCESS, at);
    }
    sent
}

#[test]
fn a_hot_key_is_held_to_the_partition_maximum() {
    let c = ceiling();
    // 1,500 WCU/s for 5 s: after the first part-second, never more than 1,000 a second (give
    // or take the one 30-unit attempt a second's edge splits).
    let sent = drive(&c, b"order#hot", 1_500, 5);
    assert!(sent[0] <= 1_500, "{sent:?}");
    for (second, units) in sent.iter().enumerate().skip(1) {
        assert!(
            *units <= PARTITION_MAX_WCU + 30,
            "second {second}: {units} ({sent:?})"
        );
    }
    // Everything is sent eventually, at the maximum.
    assert_eq!(sent.iter().sum::<u64>(), 1_500 * 5);
    assert!(sent[2] >= 950, "{sent:?}");
    assert_eq!(c.hot_keys(Instant::now()), 1);
}

#[test]
fn a_cold_key_reserves_nothing() {
    let c = ceiling();
    let sent = drive(&c, b"order#cold", 300, 5);
    assert_eq!(&sent[..5], &[300; 5]);
    assert_eq!(c.hot_keys(Instant::now()), 0);
    assert_eq!(c.budgets(Instant::now()), 0);
    let t = c
        .admit("orders", Access::Write, b"order#cold", 30, Instant::now())
        .unwrap();
    assert!(!t.is_hot());
}

#[test]
fn a_key_range_throttle_teaches_only_its_key() {
    let c = ceiling();
    let now = Instant::now();
    let hot = c.admit("orders", Access::Write, b"a", 1, now).unwrap();
    assert!(!hot.is_hot());
    c.record(hot, &key_range(), now);
    // Another key's table throttle makes nothing hot.
    let other = c.admit("orders", Access::Write, b"b", 1, now).unwrap();
    c.record(other, &Outcome::throttled(ThrottleScope::Capacity), now);
    assert!(
        c.admit("orders", Access::Write, b"a", 1, now)
            .unwrap()
            .is_hot()
    );
    assert!(
        !c.admit("orders", Access::Write, b"b", 1, now)
            .unwrap()
            .is_hot()
    );
    // The same value on the table's reads, or on another table, is another key.
    assert!(
        !c.admit("orders", Access::Read, b"a", 1, now)
            .unwrap()
            .is_hot()
    );
    assert!(
        !c.admit("users", Access::Write, b"a", 1, now)
            .unwrap()
            .is_hot()
    );
    // Throttles shrink the key's learned limit below the maximum.
    let later = now + Duration::from_secs(2);
    for i in 0..5 {
        let t = c.admit("orders", Access::Write, b"a", 10, later).unwrap();
        c.record(t, &key_range(), later + Duration::from_millis(i));
    }
    let key = (Arc::from("orders:write"), c.id(b"a"));
    let learned = c.writes.stats(&key, later).unwrap().units_limit.unwrap();
    assert!(learned < PARTITION_MAX_WCU, "{learned}");
    // The report counts the throttles under the key's hash, never its value.
    let report = c.report("orders", Access::Write, later).unwrap();
    let top = report.by_throttles()[0];
    assert_eq!(top.id, c.id(b"a"));
    assert_eq!(top.throttles, 6);
    assert!(top.key.is_none());
    // Once the hold has passed without heat, the key is cold again and its budget evicted.
    let cold = later + Duration::from_secs(61);
    assert!(
        !c.admit("orders", Access::Write, b"a", 1, cold)
            .unwrap()
            .is_hot()
    );
    assert_eq!(c.budgets(cold + Duration::from_secs(61)), 0);
}

#[test]
fn memory_stays_bounded_with_many_keys() {
    let c = PartitionCeiling::builder()
        .salt(1)
        .metrics(false)
        .max_hot(100)
        .build()
        .unwrap();
    let now = Instant::now();
    for i in 0..100_000u32 {
        let key = format!("order#{i}");
        let t = c
            .admit("orders", Access::Write, key.as_bytes(), 5, now)
            .unwrap();
        // Every tenth is throttled by its key range, so would be hot.
        let outcome = if i % 10 == 0 {
            key_range()
        } else {
            Outcome::SUCCESS
        };
        c.record(t, &outcome, now);
    }
    assert_eq!(c.hot_keys(now), 100);
    assert!(c.budgets(now) <= 100);
    let report = c.report("orders", Access::Write, now).unwrap();
    assert!(report.keys.len() <= 64 * 60, "{}", report.keys.len());
}

#[test]
fn settings_are_checked() {
    let e = PartitionCeiling::builder()
        .hot_share(0.0)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "hot_share");
    let e = PartitionCeiling::builder()
        .hold(Duration::from_millis(10))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "hold");
    let e = PartitionCeiling::builder().max_hot(0).build().unwrap_err();
    assert_eq!(e.field(), "max_hot");
    assert_eq!(partition_max(Access::Read), 6_000);
}

#[test]
fn debug_shows_the_settings_and_never_the_salt() {
    let salt = 0x5eed_cafe_f00d_1234_u64;
    let builder = PartitionCeiling::builder().salt(salt).metrics(false);
    let ceiling = builder.clone().build().unwrap();
    for text in [format!("{builder:?}"), format!("{ceiling:?}")] {
        assert!(text.contains("hot_share"), "{text}");
        assert!(!text.contains(&salt.to_string()), "{text}");
        assert!(!text.contains(&format!("{salt:x}")), "{text}");
    }
}

#[test]
fn partition_units_debug_never_shows_the_key() {
    let units = PartitionUnits::new("orders", Access::Write, "order#secret-canary", 3);
    let text = format!("{units:?}");
    assert!(!text.contains("secret-canary"), "{text}");
    // Nor as the bytes' numbers.
    assert!(!text.contains("115, 101, 99"), "{text}");
    assert!(text.contains("orders") && text.contains("19"), "{text}");
}

/// A ceiling whose `key` is hot at `now` on the units it sent (600 WCU in a second, past
/// half the maximum), with nothing learned.
fn hot_by_units(key: &[u8], now: Instant) -> PartitionCeiling {
    let c = ceiling();
    let t = c.admit("orders", Access::Write, key, 600, now).unwrap();
    assert!(!t.is_hot());
    c.record(t, &Outcome::SUCCESS, now);
    assert_eq!(c.hot_keys(now), 1);
    c
}

#[test]
fn a_call_larger_than_a_keys_second_waits_for_a_full_second_instead_of_never_fitting() {
    let t0 = Instant::now();
    let c = hot_by_units(b"order#big", t0);
    // 25 items of 100 KB on one key: 2,500 WCU, more than the key's 1,000 a second.
    let t = c
        .admit("orders", Access::Write, b"order#big", 2_500, t0)
        .expect("admitted, to wait for the key's whole second");
    assert!(t.is_hot());
    match t.grant() {
        Grant::Now => {}
        // The key's bucket starts empty: a whole second, give or take its rounding.
        Grant::At(at) => assert!(at <= t0 + Duration::from_millis(1_005), "{:?}", at - t0),
    }
}

#[test]
fn a_refused_attempt_spends_its_units_and_a_throttled_one_gives_them_back() {
    let t0 = Instant::now();
    let waits = [Outcome::FATAL, Outcome::throttled(ThrottleScope::Capacity)].map(|outcome| {
        let c = hot_by_units(b"order#cas", t0);
        let first = c
            .admit("orders", Access::Write, b"order#cas", 800, t0)
            .unwrap();
        let sent = match first.grant() {
            Grant::Now => t0,
            Grant::At(at) => at,
        };
        c.record(first, &outcome, sent);
        let next = c
            .admit("orders", Access::Write, b"order#cas", 800, sent)
            .unwrap();
        match next.grant() {
            Grant::Now => Duration::ZERO,
            Grant::At(at) => at - sent,
        }
    });
    // A failed condition check consumed its capacity: the next 800 wait for it to refill.
    assert!(waits[0] >= Duration::from_millis(700), "{waits:?}");
    // A throttled attempt was not served: its units are there for the next one.
    assert!(waits[1] < waits[0], "{waits:?}");
}
