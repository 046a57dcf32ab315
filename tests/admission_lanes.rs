//! The per-lane queue statistics behind `headroom_admission_queue_depth{lane}` and
//! `headroom_admission_oldest_wait_seconds{lane}`: calls waiting per lane and how long the
//! oldest has waited, for both accountings, with time passed in.

use std::time::Duration;

use tower_headroom::admission::{Ask, Cost, LaneStats, Limit, Priority, Quota};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn lane(quota: &Quota<&'static str>, at: tokio::time::Instant, name: &str) -> LaneStats {
    let stats = quota.stats(&"key", at).expect("the key has a slot");
    stats
        .lanes
        .iter()
        .flatten()
        .find(|lane| lane.lane == name)
        .copied()
        .unwrap_or_else(|| panic!("no lane {name}"))
}

#[test]
fn sliding_window_lanes_count_waiters_and_their_oldest_wait() {
    let quota = Quota::new(Limit::per_second().requests(2).build().unwrap());
    let t0 = quota.epoch();
    let one = Cost::ONE_REQUEST;
    let _a = quota.reserve(&"key", one, t0).unwrap();
    let _b = quota.reserve(&"key", one, t0).unwrap();
    let first = quota.reserve(&"key", one, t0 + ms(100)).unwrap();
    let mut second = quota.reserve(&"key", one, t0 + ms(300)).unwrap();
    let batch = Ask::new(one).priority(Priority::Batch);
    // (A store's time never runs backwards: a later call asks at a later instant.)
    let _batch = quota.reserve_ask(&"key", &batch, t0 + ms(300)).unwrap();

    let stats = quota.stats(&"key", t0 + ms(500)).unwrap();
    let names: Vec<_> = stats.lanes.iter().flatten().map(|l| l.lane).collect();
    assert_eq!(
        names,
        [
            "interactive",
            "interactive_pressing",
            "batch",
            "interactive_borrowing",
            "batch_borrowing"
        ]
    );
    assert_eq!(stats.waiting, 3);
    let interactive = lane(&quota, t0 + ms(500), "interactive");
    assert_eq!((interactive.waiting, interactive.oldest_wait), (2, ms(400)));
    let batch = lane(&quota, t0 + ms(500), "batch");
    assert_eq!((batch.waiting, batch.oldest_wait), (1, ms(200)));
    let empty = lane(&quota, t0 + ms(500), "batch_borrowing");
    assert_eq!((empty.waiting, empty.oldest_wait), (0, Duration::ZERO));

    // The oldest leaves: the lane counts the next one's wait from then...
    first.cancel(t0 + ms(600));
    let interactive = lane(&quota, t0 + ms(650), "interactive");
    assert_eq!((interactive.waiting, interactive.oldest_wait), (1, ms(50)));
    // ...until it looks again and still waits: then from when it asked.
    assert!(second.confirm(t0 + ms(700)).is_ok());
    let interactive = lane(&quota, t0 + ms(700), "interactive");
    assert_eq!((interactive.waiting, interactive.oldest_wait), (1, ms(400)));
    second.cancel(t0 + ms(710));
    let interactive = lane(&quota, t0 + ms(720), "interactive");
    assert_eq!(
        (interactive.waiting, interactive.oldest_wait),
        (0, Duration::ZERO)
    );
}

#[test]
fn token_bucket_lanes_are_four_and_booked_calls_wait_in_the_first() {
    let quota = Quota::new(
        Limit::per_second()
            .requests(2)
            .burst(ms(500))
            .build()
            .unwrap(),
    );
    let t0 = quota.epoch();
    let one = Cost::ONE_REQUEST;
    let _a = quota.reserve(&"key", one, t0).unwrap();
    let mut b = quota.reserve(&"key", one, t0).unwrap();
    let mut c = quota.reserve(&"key", one, t0 + ms(100)).unwrap();

    let stats = quota.stats(&"key", t0 + ms(300)).unwrap();
    let names: Vec<_> = stats.lanes.iter().flatten().map(|l| l.lane).collect();
    assert_eq!(
        names,
        [
            "interactive",
            "batch",
            "interactive_borrowing",
            "batch_borrowing"
        ]
    );
    let interactive = lane(&quota, t0 + ms(300), "interactive");
    assert_eq!((interactive.waiting, interactive.oldest_wait), (2, ms(300)));

    // The first booked call's instant comes: it leaves; the next one's wait counts from
    // then until it looks again before its own instant.
    let admitted_at = b.admitted_at();
    assert!(admitted_at > t0);
    assert!(b.confirm(admitted_at).is_ok());
    let interactive = lane(&quota, admitted_at + ms(10), "interactive");
    assert_eq!((interactive.waiting, interactive.oldest_wait), (1, ms(10)));
    let look = admitted_at + ms(20);
    assert!(c.admitted_at() > look, "the second booked call still waits");
    assert!(c.confirm(look).is_ok());
    let interactive = lane(&quota, look, "interactive");
    assert_eq!(
        (interactive.waiting, interactive.oldest_wait),
        (1, look - (t0 + ms(100)))
    );
}

/// The gauges `(depth, oldest wait)` of `lane` (under any target), from one snapshot (a
/// snapshot takes the values it reads).
#[cfg(feature = "metrics")]
fn lane_gauges(
    snapshotter: &metrics_util::debugging::Snapshotter,
    lane: &str,
) -> (Option<f64>, Option<f64>) {
    use tower_headroom::observe::names;
    let series = snapshotter.snapshot().into_vec();
    let find = |name: &str| {
        series.iter().find_map(|(key, .., value)| {
            let ours = key.key().name() == name
                && key
                    .key()
                    .labels()
                    .any(|l| l.key() == "lane" && l.value() == lane);
            match value {
                metrics_util::debugging::DebugValue::Gauge(v) if ours => Some(v.into_inner()),
                _ => None,
            }
        })
    };
    (
        find(names::ADMISSION_QUEUE_DEPTH),
        find(names::ADMISSION_OLDEST_WAIT),
    )
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn the_stack_samples_each_lanes_queue() {
    use std::convert::Infallible;

    use tower::ServiceExt;
    use tower_headroom::HttpClassifier;
    use tower_headroom::admission::FixedCost;
    use tower_headroom::fallback::Target;
    use tower_headroom::stack::StackBuilder;

    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    // Calls marked "slow" take two seconds.
    let upstream = tower::service_fn(|call: &'static str| async move {
        if call == "slow" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Ok::<_, Infallible>(http::Response::new(()))
    });
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("sonnet", "sonnet"))
        .deadline(Duration::from_secs(300))
        .admission(
            Quota::new(Limit::per_minute().requests(2).build().unwrap()),
            FixedCost(Cost::ONE_REQUEST),
        )
        .rewrite(
            upstream,
            |_call: &mut &'static str, _model: &&'static str| {},
        )
        .unwrap();
    // The first call samples at once: nobody waits.
    stack.clone().oneshot("fast").await.unwrap();
    assert_eq!(
        lane_gauges(&snapshotter, "interactive"),
        (Some(0.0), Some(0.0))
    );
    // The second takes the minute's last request for two seconds; the third waits for the
    // minute, and is still waiting when the second ends and samples again.
    let slow = tokio::spawn(stack.clone().oneshot("slow"));
    tokio::task::yield_now().await;
    let waiting = tokio::spawn(stack.clone().oneshot("fast"));
    slow.await.unwrap().unwrap();
    let (depth, oldest) = lane_gauges(&snapshotter, "interactive");
    assert_eq!(depth, Some(1.0));
    let oldest = oldest.unwrap();
    assert!((1.9..=2.1).contains(&oldest), "{oldest}");
    waiting.await.unwrap().unwrap();
}
