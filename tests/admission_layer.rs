//! The Tower adapter under tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_headroom::admission::{
    AdmissionLayer, Ask, Cost, Fixed, FixedCost, Keyed, Learning, Limit, Priority, Quota,
    RejectReason, Rejected, Usage,
};
use tower_headroom::deadline::within;
use tower_headroom::{BoxError, Deadline, Outcome, ThrottleScope};

const S: Duration = Duration::from_secs(1);

type Log = Arc<Mutex<Vec<(u64, Instant)>>>;

/// An inner service that logs when each request reaches it.
fn logging(
    log: Log,
) -> impl Service<
    u64,
    Response = u64,
    Error = std::io::Error,
    Future = std::future::Ready<Result<u64, std::io::Error>>,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |req: u64| {
        log.lock().unwrap().push((req, Instant::now()));
        std::future::ready(Ok::<_, std::io::Error>(req))
    })
}

fn rpm(n: u64) -> Quota<&'static str> {
    Quota::new(
        // Paced: one request every `60 / n` seconds.
        Limit::per_minute()
            .requests(n)
            .burst(Duration::ZERO)
            .learning(Learning::OFF)
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn every_clone_shares_the_quota() {
    let log = Log::default();
    let layer = AdmissionLayer::new(rpm(60), Fixed::new("k", FixedCost(Cost::ONE_REQUEST)));
    let a = layer.layer(logging(log.clone()));
    let b = a.clone();
    let c = layer.clone().layer(logging(log.clone()));
    let t0 = Instant::now();
    let (ra, rb, rc) = tokio::join!(a.oneshot(1), b.oneshot(2), c.oneshot(3));
    assert_eq!((ra.unwrap(), rb.unwrap(), rc.unwrap()), (1, 2, 3));
    let times: Vec<_> = log.lock().unwrap().iter().map(|(_, t)| *t - t0).collect();
    assert_eq!(times, [Duration::ZERO, S, 2 * S]);
}

#[tokio::test(start_paused = true)]
async fn rejection_is_typed_and_carries_retry_in() {
    let log = Log::default();
    let demand = Fixed::new("k", FixedCost(Cost::ONE_REQUEST));
    let svc = AdmissionLayer::new(rpm(60), demand).layer(logging(log.clone()));
    svc.clone().oneshot(1).await.unwrap();
    // The call's deadline, set by its caller, bounds its wait.
    let deadline = Deadline::after(Duration::from_millis(500));
    let err: BoxError = within(deadline, svc.clone().oneshot(2)).await.unwrap_err();
    let rejected = err.downcast_ref::<Rejected>().expect("a Rejected");
    assert_eq!(rejected.reason, RejectReason::Deadline);
    assert_eq!(rejected.retry_in, Some(S));
    let res = rejected.to_response::<String>();
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(
        log.lock().unwrap().len(),
        1,
        "the rejected call never reached the service"
    );
}

#[tokio::test(start_paused = true)]
async fn queue_and_drain_leaves_at_the_sustainable_rate() {
    let log = Log::default();
    let svc = AdmissionLayer::new(rpm(120), Fixed::new("k", FixedCost(Cost::ONE_REQUEST)))
        .layer(logging(log.clone()));
    let t0 = Instant::now();
    let calls = (0..10).map(|i| svc.clone().oneshot(i));
    let results = futures_join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    let log = log.lock().unwrap();
    for (i, (req, at)) in log.iter().enumerate() {
        assert_eq!(*req, i as u64, "FIFO");
        assert_eq!(*at - t0, Duration::from_millis(500) * i as u32);
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_call_gives_its_place_back() {
    let log = Log::default();
    let quota = rpm(60);
    let mut svc = AdmissionLayer::new(quota.clone(), Fixed::new("k", FixedCost(Cost::ONE_REQUEST)))
        .layer(logging(log.clone()));
    let t0 = Instant::now();
    svc.ready().await.unwrap().call(1).await.unwrap();
    let waiting = svc.ready().await.unwrap().call(2);
    assert_eq!(quota.stats(&"k", t0).unwrap().waiting, 1);
    drop(waiting);
    assert_eq!(quota.stats(&"k", t0).unwrap().waiting, 0);
    svc.ready().await.unwrap().call(3).await.unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.iter().map(|(r, _)| *r).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(
        log[1].1 - t0,
        S,
        "call 3 took call 2's place, not the one after"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_call_in_flight_keeps_its_estimate() {
    let quota = rpm(60);
    let never = tower::service_fn(|_: u64| std::future::pending::<Result<u64, std::io::Error>>());
    let mut svc = AdmissionLayer::new(quota.clone(), Fixed::new("k", FixedCost(Cost::ONE_REQUEST)))
        .layer(never);
    let t0 = Instant::now();
    let in_flight = svc.ready().await.unwrap().call(1);
    let timed_out = tokio::time::timeout(Duration::from_millis(10), in_flight).await;
    assert!(timed_out.is_err());
    // The call may have reached the server: its request still counts.
    assert_eq!(
        tower_headroom::admission::Headroom::admit_wait(
            &quota,
            &"k",
            Cost::ONE_REQUEST,
            t0 + Duration::from_millis(10)
        ),
        Some(Duration::from_millis(990))
    );
}

#[tokio::test(start_paused = true)]
async fn usage_settles_and_throttles_teach() {
    let quota: Quota<&'static str> = Quota::new(Limit::per_minute().units(6_000).build().unwrap());
    // The response is the number of tokens really spent; 0 means "throttled".
    let inner = tower::service_fn(|spent: u64| async move {
        if spent == 0 {
            Err(std::io::Error::other(
                "ThrottlingException: Too many tokens",
            ))
        } else {
            Ok(spent)
        }
    });
    let classify = |r: Result<&u64, &(dyn std::error::Error + 'static)>| match r {
        Ok(_) => Outcome::SUCCESS,
        Err(_) => Outcome::throttled(ThrottleScope::Tokens),
    };
    let svc = AdmissionLayer::new(
        quota.clone(),
        Fixed::new("k", FixedCost(Cost::units(1_000))),
    )
    .usage(|spent: &u64| Usage::units(*spent))
    .classify(classify)
    .layer(inner);
    let t0 = Instant::now();
    assert_eq!(svc.clone().oneshot(100).await.unwrap(), 100);
    // 900 refunded at once: the window holds 100 of its 6,000.
    let wait = |cost| tower_headroom::admission::Headroom::admit_wait(&quota, &"k", cost, t0);
    assert_eq!(wait(Cost::units(5_900)), Some(Duration::ZERO));
    assert!(wait(Cost::units(5_901)).unwrap() > 59 * S);
    tokio::time::advance(2 * S).await;
    // A throttle: the others spent what this client did not; the cut keeps at least half.
    assert!(svc.clone().oneshot(0).await.is_err());
    assert_eq!(
        quota.stats(&"k", Instant::now()).unwrap().units_limit,
        Some(3_000)
    );
}

#[tokio::test(start_paused = true)]
async fn interactive_calls_overtake_waiting_batch_calls() {
    let log = Log::default();
    let demand = Keyed::new(
        |_: &u64| "k",
        |req: &u64| {
            let ask = Ask::new(Cost::ONE_REQUEST);
            if *req >= 100 {
                ask.priority(Priority::Batch)
            } else {
                ask
            }
        },
    );
    let svc = AdmissionLayer::new(rpm(60), demand).layer(logging(log.clone()));
    let t0 = Instant::now();
    svc.clone().oneshot(1).await.unwrap();
    let batch = tokio::spawn(svc.clone().oneshot(100));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let interactive = tokio::spawn(svc.clone().oneshot(2));
    batch.await.unwrap().unwrap();
    interactive.await.unwrap().unwrap();
    let log = log.lock().unwrap();
    let order: Vec<_> = log.iter().map(|(r, t)| (*r, *t - t0)).collect();
    assert_eq!(order, [(1, Duration::ZERO), (2, S), (100, 2 * S)]);
}

#[tokio::test(start_paused = true)]
async fn a_cost_no_window_can_hold_fails_fast() {
    let quota: Quota<&'static str> = Quota::new(Limit::per_minute().units(1_000).build().unwrap());
    let svc = AdmissionLayer::new(quota, Fixed::new("k", FixedCost(Cost::units(5_000)))).layer(
        tower::service_fn(|r: u64| async move { Ok::<_, std::io::Error>(r) }),
    );
    let t0 = Instant::now();
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<Rejected>().unwrap().reason,
        RejectReason::CostTooLarge
    );
    assert_eq!(Instant::now(), t0, "no wait at all");
}

/// `join_all` without pulling in the `futures` crate: spawn and await in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn waits_and_rejections_are_reported_with_labels() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use tower_headroom::observe::Labels;

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let demand = Fixed::new("k", FixedCost(Cost::ONE_REQUEST));
    let layer = AdmissionLayer::new(rpm(60), demand).labels(
        Labels::target("bedrock")
            .model("claude")
            .region("us-east-1"),
    );
    let log = Log::default();
    let svc = metrics::with_local_recorder(&recorder, || layer.layer(logging(log.clone())));
    let call = |n| within(Deadline::after(2 * S), svc.clone().oneshot(n));
    let (a, b, c, d) = tokio::join!(call(1), call(2), call(3), call(4));
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    assert!(d.unwrap_err().is::<Rejected>());
    let mut rejected = None;
    let mut waits = None;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<_> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        assert!(
            labels.contains(&("model".into(), "claude".into())),
            "{labels:?}"
        );
        match (key.key().name(), value) {
            ("headroom_admission_rejected_total", DebugValue::Counter(n)) => rejected = Some(n),
            ("headroom_admission_wait_seconds", DebugValue::Histogram(v)) => {
                waits = Some(v.iter().map(|x| x.into_inner()).collect::<Vec<_>>())
            }
            _ => {}
        }
    }
    assert_eq!(rejected, Some(1));
    assert_eq!(
        waits,
        Some(vec![1.0, 2.0]),
        "only calls that waited are recorded"
    );
}

#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn the_learned_limit_is_reported() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let quota: Quota<&'static str> = Quota::new(Limit::per_minute().units(6_000).build().unwrap());
    let inner = tower::service_fn(|ok: bool| async move {
        if ok {
            Ok(1u64)
        } else {
            Err(std::io::Error::other("throttled"))
        }
    });
    let classify = |r: Result<&u64, &(dyn std::error::Error + 'static)>| match r {
        Ok(_) => Outcome::SUCCESS,
        Err(_) => Outcome::throttled(ThrottleScope::Tokens),
    };
    let layer =
        AdmissionLayer::new(quota, Fixed::new("k", FixedCost(Cost::units(10)))).classify(classify);
    let svc = metrics::with_local_recorder(&recorder, || layer.layer(inner));
    let gauge = || {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find_map(|(k, _, _, v)| match (k.key().name(), v) {
                ("headroom_quota_limit", DebugValue::Gauge(g)) => Some(g.into_inner()),
                _ => None,
            })
    };
    assert!(svc.clone().oneshot(false).await.is_err());
    assert_eq!(gauge(), Some(3_000.0));
    // A quiet window, then another one gives 70% of the gap back.
    tokio::time::advance(Duration::from_secs(120)).await;
    assert!(svc.clone().oneshot(true).await.is_ok());
    assert_eq!(gauge(), Some(5_100.0), "recovery is reported too");
    tokio::time::advance(Duration::from_secs(1_200)).await;
    assert!(svc.clone().oneshot(true).await.is_ok());
    assert_eq!(gauge(), Some(6_000.0), "and its end");
}

/// A service that can be made to fail `poll_ready`.
#[derive(Clone)]
struct Flaky(Arc<std::sync::atomic::AtomicBool>);

impl Service<u64> for Flaky {
    type Response = u64;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<u64, std::io::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            std::task::Poll::Ready(Err(std::io::Error::other("connection pool closed")))
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, req: u64) -> Self::Future {
        std::future::ready(Ok(req))
    }
}

#[tokio::test(start_paused = true)]
async fn a_call_that_never_starts_gives_its_units_back() {
    let quota: Quota<&'static str> = Quota::new(
        Limit::per_minute()
            .units(6_000) // 100 tokens/s, paced
            .burst(Duration::ZERO)
            .learning(Learning::OFF)
            .build()
            .unwrap(),
    );
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let svc = AdmissionLayer::new(quota.clone(), Fixed::new("k", FixedCost(Cost::units(500))))
        .layer(Flaky(Arc::clone(&broken)));
    let t0 = Instant::now();
    svc.clone().oneshot(1).await.unwrap(); // 500 tokens of debt: 5 s
    let waiting = tokio::spawn(svc.clone().oneshot(2)); // booked at 5 s
    tokio::task::yield_now().await;
    broken.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(waiting.await.unwrap().is_err());
    let now = Instant::now();
    assert_eq!(now - t0, 5 * S);
    // Only the first call's tokens are spent: the bucket is even again at 5 s.
    assert_eq!(
        tower_headroom::admission::Headroom::admit_wait(&quota, &"k", Cost::units(1), now),
        Some(Duration::ZERO)
    );
}

#[tokio::test(start_paused = true)]
async fn acquire_is_the_same_queue_without_tower() {
    let quota = rpm(60);
    let t0 = Instant::now();
    let mut at = Vec::new();
    for _ in 0..3 {
        let r = quota
            .acquire(&"k", Ask::new(Cost::ONE_REQUEST))
            .await
            .unwrap();
        at.push(Instant::now() - t0);
        r.settle(Usage::UNKNOWN, Instant::now());
    }
    assert_eq!(at, [Duration::ZERO, S, 2 * S]);
    let err = quota
        .acquire(
            &"k",
            Ask::new(Cost::ONE_REQUEST).deadline(Deadline::after(Duration::from_millis(10))),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, RejectReason::Deadline);
}

#[test]
fn shared_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    type Svc = tower::util::ServiceFn<fn(u64) -> std::future::Ready<Result<u64, std::io::Error>>>;
    type D = Fixed<&'static str, FixedCost>;
    send_sync::<Quota<&'static str>>();
    send_sync::<tower_headroom::admission::Reservation>();
    send_sync::<AdmissionLayer<D>>();
    send_sync::<tower_headroom::admission::Admission<Svc, D>>();
    send::<
        tower_headroom::admission::ResponseFuture<
            Svc,
            u64,
            tower_headroom::admission::NoUsage,
            tower_headroom::admission::OkIsSuccess,
        >,
    >();
}

/// A provider's rate-limit headers, read with [`HeaderUsage`]: an OpenAI-shaped answer says
/// 2,000 tokens are left and the budget is full again in 30 s; the window, which thought it had
/// 9,000 left, counts the difference as spent until then.
#[tokio::test(start_paused = true)]
async fn openai_remaining_and_reset_headers_lower_the_window_until_the_reset() {
    use tower_headroom::admission::HeaderUsage;

    let quota: Quota<&'static str> = Quota::new(Limit::per_minute().units(10_000).build().unwrap());
    let svc = AdmissionLayer::new(
        quota.clone(),
        Fixed::new("gpt", FixedCost(Cost::units(1_000))),
    )
    .usage(HeaderUsage::new())
    .layer(tower::service_fn(|_: ()| async {
        http::Response::builder()
            .header("x-ratelimit-limit-tokens", "10000")
            .header("x-ratelimit-remaining-tokens", "2000")
            .header("x-ratelimit-reset-tokens", "30s")
            .body(())
            .map_err(BoxError::from)
    }));
    // A key used for a while (its window's slots reach back a minute).
    tokio::time::advance(120 * S).await;
    svc.oneshot(()).await.unwrap();
    let t0 = Instant::now();
    let wait = |cost, at| {
        tower_headroom::admission::Headroom::admit_wait(&quota, &"gpt", Cost::units(cost), at)
    };
    assert_eq!(wait(2_000, t0), Some(Duration::ZERO));
    let until_reset = wait(2_001, t0).unwrap();
    assert!(
        until_reset > 29 * S && until_reset <= 31 * S,
        "{until_reset:?}"
    );
    assert_eq!(wait(2_001, t0 + 31 * S), Some(Duration::ZERO));
}

/// An Anthropic-shaped answer: its reset is an instant (RFC 3339), read against the wall clock.
#[tokio::test(start_paused = true)]
async fn anthropic_remaining_and_reset_headers_lower_the_window_until_the_reset() {
    use tower_headroom::admission::HeaderUsage;

    let quota: Quota<&'static str> = Quota::new(Limit::per_minute().units(10_000).build().unwrap());
    let reset = httpdate_rfc3339(std::time::SystemTime::now() + 10 * S);
    let svc = AdmissionLayer::new(
        quota.clone(),
        Fixed::new("claude", FixedCost(Cost::units(1_000))),
    )
    .usage(HeaderUsage::new())
    .layer(tower::service_fn(move |_: ()| {
        let reset = reset.clone();
        async move {
            http::Response::builder()
                .header("anthropic-ratelimit-tokens-limit", "10000")
                .header("anthropic-ratelimit-tokens-remaining", "500")
                .header("anthropic-ratelimit-tokens-reset", reset)
                .body(())
                .map_err(BoxError::from)
        }
    }));
    tokio::time::advance(120 * S).await;
    svc.oneshot(()).await.unwrap();
    let t0 = Instant::now();
    let wait = |cost, at| {
        tower_headroom::admission::Headroom::admit_wait(&quota, &"claude", Cost::units(cost), at)
    };
    assert_eq!(wait(500, t0), Some(Duration::ZERO));
    let until_reset = wait(501, t0).unwrap();
    // 10 s to the reset, rounded up to the second on the header and to a slot of the window.
    assert!(
        until_reset > 8 * S && until_reset <= 12 * S,
        "{until_reset:?}"
    );
}

/// A UTC RFC 3339 timestamp, to the second, rounded up.
fn httpdate_rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 1;
    let days = secs / 86_400;
    let (h, m, s) = (secs % 86_400 / 3_600, secs % 3_600 / 60, secs % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// A 429 whose `retry-after` says 5 s while its reset says the budget is full in 50 s: the
/// retry comes after the 5 s, not the 50.
#[tokio::test(start_paused = true)]
async fn a_429_is_retried_after_its_retry_after_not_its_reset() {
    use tower_headroom::retry::RetryPolicy;
    use tower_headroom::{HttpClassifier, RetryLayer};

    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&calls);
    let svc = RetryLayer::new(
        RetryPolicy::builder().seed(1).build().unwrap(),
        HttpClassifier::new(),
    )
    .layer(tower::service_fn(move |_: http::Request<()>| {
        let log = Arc::clone(&log);
        async move {
            let first = {
                let mut log = log.lock().unwrap();
                log.push(Instant::now());
                log.len() == 1
            };
            let mut res = http::Response::builder();
            if first {
                res = res
                    .status(429)
                    .header("retry-after", "5")
                    .header("x-ratelimit-limit-tokens", "10000")
                    .header("x-ratelimit-remaining-tokens", "0")
                    .header("x-ratelimit-reset-tokens", "50s");
            }
            res.body(()).map_err(BoxError::from)
        }
    }));
    let res = svc.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(res.status(), 200);
    let calls = calls.lock().unwrap();
    let gap = calls[1] - calls[0];
    // At least the server's 5 s, plus at most 10% jitter.
    assert!(
        gap >= 5 * S && gap <= Duration::from_millis(5_500),
        "{gap:?}"
    );
}
