//! A spent daily quota (Bedrock's "Too many tokens per day") through the Tower layers, on
//! tokio's paused clock: the stack moves to the fallback target at once, never retries into a
//! spent day unless the server says it returns within the deadline, and fails with the typed
//! `QuotaExhausted` a gateway answers with 429 and `Retry-After`; the retry layer alone and the
//! fallback router alone decide the same; the metrics count the daily class apart.

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};
use tower_headroom::classify::{aws, classify_error, find};
use tower_headroom::fallback::{FallbackBuilder, Route, Served, Target};
use tower_headroom::retry::{QuotaExhausted, RetryPolicy};
use tower_headroom::stack::{StackBuilder, error_response};
use tower_headroom::{BoxError, Outcome, RetryLayer};

const DAILY: &str = "Too many tokens per day, please wait before trying again.";
const MINUTE: &str = "Too many tokens, please wait before trying again.";

/// A Bedrock error as a hand-rolled client returns it: code, message, `Retry-After`.
#[derive(Debug)]
struct BedrockError {
    code: &'static str,
    message: &'static str,
    retry_after: Option<Duration>,
}

impl fmt::Display for BedrockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl Error for BedrockError {}

type Request = http::Request<()>;
type Response = http::Response<()>;

/// The AWS table on the error's code and message, the server's delay with it.
fn classify(result: Result<&Response, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(_) => Outcome::SUCCESS,
        Err(error) => match find::<BedrockError>(error) {
            Some(e) => Outcome::new(aws::classify(e.code, Some(e.message)))
                .with_retry_after_opt(e.retry_after),
            None => classify_error(error),
        },
    }
}

type Classifier = fn(Result<&Response, &(dyn Error + 'static)>) -> Outcome;
const CLASSIFY: Classifier = classify;

/// What a model answers at `elapsed` into the test.
type Script = dyn Fn(&str, Duration) -> Option<BedrockError> + Send + Sync;

/// A backend answering per model (the model id in the URI) as scripted, 10 ms per call, and
/// recording each call's model and virtual time.
#[derive(Clone)]
struct Backend {
    start: Instant,
    script: Arc<Script>,
    calls: Arc<Mutex<Vec<(String, Duration)>>>,
}

impl Backend {
    fn new(
        script: impl Fn(&str, Duration) -> Option<BedrockError> + Send + Sync + 'static,
    ) -> Self {
        Backend {
            start: Instant::now(),
            script: Arc::new(script),
            calls: Arc::default(),
        }
    }

    fn calls(&self) -> Vec<(String, Duration)> {
        self.calls.lock().unwrap().clone()
    }

    fn service(&self) -> BoxCloneSyncService<Request, Response, BoxError> {
        let backend = self.clone();
        BoxCloneSyncService::new(service_fn(move |request: Request| {
            let backend = backend.clone();
            async move {
                let model = request
                    .uri()
                    .path()
                    .trim_start_matches("/model/")
                    .trim_end_matches("/converse")
                    .to_owned();
                let elapsed = backend.start.elapsed();
                backend.calls.lock().unwrap().push((model.clone(), elapsed));
                tokio::time::sleep(Duration::from_millis(10)).await;
                match (backend.script)(&model, elapsed) {
                    Some(error) => Err(Box::new(error) as BoxError),
                    None => Ok(http::Response::new(())),
                }
            }
        }))
    }
}

fn spent_day(retry_after: Option<Duration>) -> Option<BedrockError> {
    Some(BedrockError {
        code: "ThrottlingException",
        message: DAILY,
        retry_after,
    })
}

fn rewrite_model(request: &mut Request, model: &&'static str) {
    *request.uri_mut() = format!("/model/{model}/converse").parse().unwrap();
}

fn two_models(
    builder: StackBuilder<&'static str, Classifier>,
) -> StackBuilder<&'static str, Classifier> {
    builder
        .target(Target::new("sonnet", "sonnet").model("sonnet"))
        .target(Target::new("haiku", "haiku").model("haiku"))
}

fn request() -> Request {
    http::Request::new(())
}

#[tokio::test(start_paused = true)]
async fn a_spent_day_moves_the_stack_to_the_fallback_at_once() {
    let backend = Backend::new(|model, _| (model == "sonnet").then(|| spent_day(None)).flatten());
    let stack = two_models(StackBuilder::bedrock(CLASSIFY))
        .rewrite(backend.service(), rewrite_model)
        .unwrap();
    let started = Instant::now();
    let response = stack.oneshot(request()).await.unwrap();
    let served = response.extensions().get::<Served>().unwrap();
    assert_eq!(
        (&*served.name, served.degraded, served.hops),
        ("haiku", true, 1)
    );
    // No wait between the two calls: the second went out as the first answered.
    let calls = backend.calls();
    assert_eq!(
        calls,
        vec![
            ("sonnet".to_owned(), Duration::ZERO),
            ("haiku".to_owned(), Duration::from_millis(10)),
        ]
    );
    assert_eq!(started.elapsed(), Duration::from_millis(20));
}

#[tokio::test(start_paused = true)]
async fn a_spent_day_everywhere_is_quota_exhausted_and_a_429_with_retry_after() {
    let hour = Duration::from_secs(3_600);
    let backend = Backend::new(move |_, _| spent_day(Some(hour)));
    let stack = two_models(StackBuilder::bedrock(CLASSIFY))
        .rewrite(backend.service(), rewrite_model)
        .unwrap();
    let started = Instant::now();
    let error = stack.oneshot(request()).await.unwrap_err();
    // One call per model, no retry into either spent day (the call's deadline is 150 s).
    assert_eq!(backend.calls().len(), 2);
    assert_eq!(started.elapsed(), Duration::from_millis(20));
    let spent = error
        .downcast_ref::<QuotaExhausted>()
        .unwrap_or_else(|| panic!("not QuotaExhausted: {error}"));
    assert_eq!(spent.window(), Some(Duration::from_secs(86_400)));
    assert_eq!(spent.retry_in(), Some(hour));
    assert_eq!(spent.attempts(), 1, "the fallback move is no retry");
    // The message says which quota and when, and nothing the server said.
    let text = error.to_string();
    assert!(text.contains("per day") && text.contains("1h"), "{text}");
    assert!(!text.contains("Too many tokens"), "{text}");
    // The server's error stays reachable as the source.
    assert!(find::<BedrockError>(error.as_ref()).is_some());
    let response = error_response::<()>(error.as_ref());
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "3600");
}

#[tokio::test(start_paused = true)]
async fn a_spent_day_without_a_return_time_is_a_429_without_retry_after() {
    let backend = Backend::new(|_, _| spent_day(None));
    let stack = StackBuilder::bedrock(CLASSIFY)
        .target(Target::new("sonnet", "sonnet"))
        .rewrite(backend.service(), rewrite_model)
        .unwrap();
    let error = stack.oneshot(request()).await.unwrap_err();
    assert_eq!(backend.calls().len(), 1, "no retry into a spent day");
    let spent = error.downcast_ref::<QuotaExhausted>().unwrap();
    assert_eq!(spent.retry_in(), None);
    let response = error_response::<()>(error.as_ref());
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_none());
}

#[tokio::test(start_paused = true)]
async fn a_day_that_returns_within_the_deadline_is_waited_for() {
    // The quota returns 30 s in, and the server says so.
    let back = Duration::from_secs(30);
    let backend = Backend::new(move |_, elapsed| {
        (elapsed < back)
            .then(|| spent_day(Some(back - elapsed)))
            .flatten()
    });
    let stack = StackBuilder::bedrock(CLASSIFY)
        .target(Target::new("sonnet", "sonnet"))
        .rewrite(backend.service(), rewrite_model)
        .unwrap();
    let response = stack.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    let calls = backend.calls();
    assert_eq!(calls.len(), 2);
    // Never earlier than the server said (its delay plus at most 10% jitter after the answer).
    assert!(
        calls[1].1 >= back && calls[1].1 <= Duration::from_secs(34),
        "{calls:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_per_minute_throttle_is_still_retried_at_the_next_window() {
    let backend = Backend::new(|_, elapsed| {
        (elapsed.is_zero()).then_some(BedrockError {
            code: "ThrottlingException",
            message: MINUTE,
            retry_after: None,
        })
    });
    let stack = StackBuilder::bedrock(CLASSIFY)
        .target(Target::new("sonnet", "sonnet"))
        .rewrite(backend.service(), rewrite_model)
        .unwrap();
    let response = stack.oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(backend.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_retry_layer_alone_stops_on_a_spent_day() {
    let backend = Backend::new(|_, _| spent_day(None));
    let policy = RetryPolicy::builder().seed(1).build().unwrap();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy, CLASSIFY))
        .service(backend.service());
    let error = service
        .oneshot(
            http::Request::builder()
                .uri("/model/sonnet/converse")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(backend.calls().len(), 1);
    let spent = error.downcast_ref::<QuotaExhausted>().unwrap();
    assert_eq!(spent.attempts(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_fallback_router_alone_moves_at_once() {
    let backend = Backend::new(|model, _| (model == "sonnet").then(|| spent_day(None)).flatten());
    let route = Route::builder()
        .target(Target::new("sonnet", "sonnet").model("sonnet"))
        .target(Target::new("haiku", "haiku").model("haiku"))
        .build()
        .unwrap();
    let layer = FallbackBuilder::new(route, CLASSIFY).rewrite(rewrite_model);
    let response = layer
        .layer(backend.service())
        .oneshot(request())
        .await
        .unwrap();
    let served = response.extensions().get::<Served>().unwrap();
    assert_eq!(&*served.name, "haiku");
    assert_eq!(
        backend.calls()[1],
        ("haiku".to_owned(), Duration::from_millis(10))
    );
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_count_a_spent_day_apart_from_per_minute_throttles() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let backend = rt.block_on(async {
        Backend::new(|model, elapsed| match model {
            "sonnet" => spent_day(None),
            // Haiku: a per-minute throttle on its first call, then served.
            _ if elapsed < Duration::from_millis(20) => Some(BedrockError {
                code: "ThrottlingException",
                message: MINUTE,
                retry_after: None,
            }),
            _ => None,
        })
    });
    let stack = metrics::with_local_recorder(&recorder, || {
        StackBuilder::bedrock(CLASSIFY)
            .target(Target::new("sonnet", "sonnet"))
            .target(Target::new("haiku", "haiku"))
            .rewrite(backend.service(), rewrite_model)
            .unwrap()
    });
    rt.block_on(stack.oneshot(request())).unwrap();

    let mut seen = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let label = |name: &str| {
            key.labels()
                .find(|l| l.key() == name)
                .map(|l| l.value().to_owned())
        };
        if let DebugValue::Counter(n) = value {
            if n > 0 && key.name() == tower_headroom::observe::names::ATTEMPTS {
                seen.push((label("target"), label("class"), n));
            }
        }
    }
    seen.sort();
    let entry = |t: &str, c: &str| (Some(t.to_owned()), Some(c.to_owned()), 1);
    assert_eq!(
        seen,
        vec![
            entry("haiku", "success"),
            entry("haiku", "throttled_tokens"),
            entry("sonnet", "throttled_daily"),
        ]
    );
}

/// The client's own day window: a model whose tokens per day are spent is skipped by the
/// router's headroom, and with nowhere else to go the call fails at once, unsent, with the
/// typed error naming the day and when it has room again.
#[tokio::test(start_paused = true)]
async fn a_day_window_of_the_clients_own_limit_is_a_spent_day_too() {
    use tower_headroom::admission::{Cost, FixedCost, Limit, Quota};
    use tower_headroom::{HttpClassifier, Profile};

    let limit = Limit::per_minute()
        .units(1_000)
        .units_per_day(1_500)
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let backend = |name: &'static str| {
        let calls = Arc::clone(&calls);
        service_fn(move |_req: Request| {
            calls.lock().unwrap().push(name);
            async { Ok::<_, BoxError>(http::Response::new(())) }
        })
    };
    let two = StackBuilder::new(Profile::Bedrock, HttpClassifier::new())
        .target(Target::new("model-a", "model-a"))
        .target(Target::new("model-b", "model-b"))
        .admission(Quota::new(limit.clone()), FixedCost(Cost::units(600)))
        .services(vec![backend("a"), backend("b")])
        .unwrap();
    // Minute by minute: model-a holds two calls (1,200 of its 1,500 a day), then model-b.
    for _ in 0..4 {
        two.clone().oneshot(http::Request::new(())).await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
    }
    assert_eq!(*calls.lock().unwrap(), ["a", "a", "b", "b"]);

    let one = StackBuilder::new(Profile::Bedrock, HttpClassifier::new())
        .target(Target::new("model-a", "model-a"))
        .admission(Quota::new(limit), FixedCost(Cost::units(600)))
        .services(vec![backend("a")])
        .unwrap();
    for _ in 0..2 {
        one.clone().oneshot(http::Request::new(())).await.unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
    }
    let started = Instant::now();
    let error = one.oneshot(http::Request::new(())).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "failed at once");
    let spent = find::<QuotaExhausted>(&*error).expect("QuotaExhausted");
    assert_eq!(spent.window(), Some(Duration::from_secs(86_400)));
    assert_eq!(spent.attempts(), 0, "nothing was sent");
    let back = spent.retry_in().expect("when the day has room again");
    assert!(
        back > Duration::from_secs(22 * 3_600) && back <= Duration::from_secs(24 * 3_600 + 900),
        "{back:?}"
    );
    let response = error_response::<()>(&*error);
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        calls.lock().unwrap().len(),
        6,
        "no call sent into the spent day"
    );
}

/// A call every target refuses, some for other reasons than a spent day, must leave no charge
/// behind: asking each target whether its day is spent reserved at a target whose quota had
/// room (its breaker was open) and gave back only the units, so each such refusal spent one
/// of that target's requests.
#[tokio::test(start_paused = true)]
async fn a_refusal_that_is_no_spent_day_charges_no_target() {
    use tower_headroom::Cost;
    use tower_headroom::admission::{FixedCost, Limit, Quota};
    use tower_headroom::breaker::BreakerConfig;

    let backend = Backend::new(|_, _| None);
    let quota = Quota::new(Limit::per_minute().requests(5).build().unwrap());
    let breaker = BreakerConfig::builder()
        .open_for(Duration::from_secs(600))
        .open_jitter(0.0)
        .build()
        .unwrap();
    let stack = two_models(StackBuilder::bedrock(CLASSIFY))
        .deadline(Duration::from_secs(5))
        .breaker(breaker)
        .admission(quota.clone(), FixedCost(Cost::ONE_REQUEST))
        .rewrite(backend.service(), rewrite_model)
        .unwrap();
    // The preferred model's breaker opens for ten minutes; its quota has all its room.
    stack.breakers()[0].as_ref().unwrap().trip(Instant::now());
    // The fallback spends its minute.
    for _ in 0..5 {
        let response = stack.clone().oneshot(request()).await.unwrap();
        assert_eq!(
            &*response.extensions().get::<Served>().unwrap().name,
            "haiku"
        );
    }
    // Now nobody can take a call within its 5 s: the fallback's minute is spent (it has room
    // again sooner than the breaker closes), the preferred model's breaker is open.
    for _ in 0..3 {
        let error = stack.clone().oneshot(request()).await.unwrap_err();
        assert!(error.downcast_ref::<QuotaExhausted>().is_none(), "{error}");
    }
    assert_eq!(backend.calls().len(), 5);
    let spent = quota
        .stats(&"sonnet", Instant::now())
        .and_then(|s| s.requests_spent);
    assert_eq!(
        spent.unwrap_or(0),
        0,
        "the open target was charged for calls never sent"
    );
}
