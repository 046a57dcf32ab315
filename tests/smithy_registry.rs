//! The SDK adapter's call registry under load: the retry classifier finds its call by the
//! orchestrator context's address (`smithy` module docs, "How the classifier finds its call").
//!
//! Hundreds of concurrent Converse calls through the real `aws-sdk-bedrockruntime` client,
//! configured by `configure_bedrock`, against a scripted HTTP client that gives each call its
//! own deterministic fate: success, throttles then success, a fatal error, failures until the
//! attempts run out, an attempt the SDK times out (decided by the classifier itself on
//! aws-smithy-runtime 1.9) then success, or a call dropped mid-flight. A quarter of the calls
//! go through a second client with the classifier alone (never registered, deciding from the
//! outcome), interleaved with the others; the calls to be dropped through a third, configured
//! like the first without an attempt timeout. Every call's result and attempt count must be its
//! fate's (a decision handed to another call would stop a call early or retry a fatal one),
//! and the registry must be empty at the end (a dropped call leaves nothing behind). Run on
//! the paused clock (one thread) and on four worker threads.
#![cfg(all(feature = "sim", feature = "bedrock"))]

mod support {
    pub mod sdk;
}

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_sdk_bedrockruntime::config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::http::{Response as SdkResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use tokio::sync::mpsc;
use tower_headroom::Profile;
use tower_headroom::retry::{BackoffBuilder, Jitter, RetryPolicy, Schedule, ScheduleClass};
use tower_headroom::smithy::SdkHeadroom;

/// The policy's attempts: a call that keeps failing makes exactly this many.
const ATTEMPTS: u32 = 4;

/// What happens to one call, decided before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// 200 at once.
    Ok,
    /// This many throttles (429), then 200.
    ThrottledThenOk(u32),
    /// 400 ValidationException: never retried.
    Fatal,
    /// 503 on every attempt: the policy's attempts, then the error.
    Unavailable,
    /// The first attempt never answers (the SDK's attempt timeout ends it), then 200.
    TimeoutThenOk,
    /// Never answers; the caller drops the call once its first request is out.
    Dropped,
}

impl Fate {
    fn pick(rng: &mut fastrand::Rng) -> Fate {
        match rng.u32(0..12) {
            0..=2 => Fate::Ok,
            3..=5 => Fate::ThrottledThenOk(rng.u32(1..=2)),
            6 | 7 => Fate::Fatal,
            8 => Fate::Unavailable,
            9 | 10 => Fate::TimeoutThenOk,
            _ => Fate::Dropped,
        }
    }

    /// The requests the backend sees for a call that runs to its end.
    fn attempts(self) -> u32 {
        match self {
            Fate::Ok | Fate::Fatal => 1,
            Fate::ThrottledThenOk(throttles) => throttles + 1,
            Fate::Unavailable => ATTEMPTS,
            Fate::TimeoutThenOk => 2,
            Fate::Dropped => unreachable!("a dropped call has no end"),
        }
    }
}

/// The backend: answers each call (model `m{index}`) as its fate says, counting its requests,
/// and reports the first request of each dropped call.
#[derive(Debug)]
struct Scripted {
    fates: Arc<[Fate]>,
    attempts: Arc<[AtomicU32]>,
    dropped: mpsc::UnboundedSender<usize>,
}

fn response(status: u16, error: Option<&str>, body: String) -> SdkResponse<SdkBody> {
    let mut response = SdkResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
    response
        .headers_mut()
        .insert("content-type", "application/json");
    if let Some(error) = error {
        response
            .headers_mut()
            .insert("x-amzn-errortype", error.to_owned());
    }
    response
}

impl HttpConnector for Scripted {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let index: usize = request
            .uri()
            .split("/model/m")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse().ok())
            .expect("a request for model m{index}");
        let attempt = self.attempts[index].fetch_add(1, Ordering::SeqCst) + 1;
        let ok = || {
            let body = format!(
                r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"call {index}"}}]}}}},"stopReason":"end_turn","usage":{{"inputTokens":3,"outputTokens":2,"totalTokens":5}},"metrics":{{"latencyMs":1}}}}"#
            );
            response(200, None, body)
        };
        let answer = match self.fates[index] {
            Fate::Ok => ok(),
            Fate::ThrottledThenOk(throttles) if attempt <= throttles => response(
                429,
                Some("ThrottlingException"),
                r#"{"message":"Too many requests, please wait before trying again."}"#.into(),
            ),
            Fate::ThrottledThenOk(_) => ok(),
            Fate::Fatal => response(
                400,
                Some("ValidationException"),
                r#"{"message":"The provided model identifier is invalid."}"#.into(),
            ),
            Fate::Unavailable => response(
                503,
                Some("ServiceUnavailableException"),
                r#"{"message":"Service unavailable"}"#.into(),
            ),
            Fate::TimeoutThenOk if attempt == 1 => {
                return HttpConnectorFuture::new(std::future::pending());
            }
            Fate::TimeoutThenOk => ok(),
            Fate::Dropped => {
                if attempt == 1 {
                    self.dropped.send(index).unwrap();
                }
                return HttpConnectorFuture::new(std::future::pending());
            }
        };
        HttpConnectorFuture::ready(Ok(answer))
    }
}

fn headroom() -> SdkHeadroom {
    let quick = Schedule::new(
        Duration::from_millis(1),
        Duration::from_millis(8),
        Jitter::Full,
    )
    .unwrap();
    let backoff = [
        ScheduleClass::Throttled,
        ScheduleClass::Overloaded,
        ScheduleClass::Unavailable,
        ScheduleClass::Timeout,
        ScheduleClass::Transient,
    ]
    .into_iter()
    .fold(BackoffBuilder::default().no_quota_window(), |b, class| {
        b.schedule(class, quick)
    });
    let policy = RetryPolicy::builder()
        .max_attempts(ATTEMPTS)
        .no_deadline()
        .no_budget()
        .retry_timeouts(true)
        .backoff(backoff)
        .seed(11)
        .build()
        .unwrap();
    SdkHeadroom::builder(Profile::Bedrock)
        .retry(policy)
        // Each call is its own model: its own breaker would open on a run of 503s, and the
        // attempt count would then be the breaker's, not the policy's.
        .no_breakers()
        .no_attempt_timeout()
        .build()
        .unwrap()
}

/// A client configured by `configure_bedrock` (`full`), or one with the classifier alone,
/// whose calls are never registered and which decides from each outcome by itself, with the
/// SDK's standard retry counting the attempts (the same counts, so the same fates hold).
fn client(
    headroom: &SdkHeadroom,
    http: SharedHttpClient,
    attempt_timeout: Option<Duration>,
    full: bool,
) -> aws_sdk_bedrockruntime::Client {
    use aws_sdk_bedrockruntime::config::retry::RetryConfig;
    use aws_sdk_bedrockruntime::config::{Credentials, Region, StalledStreamProtectionConfig};
    let builder = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url("http://bedrock.test")
        .credentials_provider(Credentials::new(
            support::sdk::ACCESS_KEY,
            support::sdk::SECRET_KEY,
            None,
            None,
            "test",
        ))
        .timeout_config(match attempt_timeout {
            Some(timeout) => TimeoutConfig::builder()
                .operation_attempt_timeout(timeout)
                .build(),
            None => TimeoutConfig::disabled(),
        })
        .http_client(http);
    let config = if full {
        headroom.configure_bedrock(builder).unwrap().build()
    } else {
        builder
            .retry_classifier(headroom.retry_classifier())
            .retry_config(RetryConfig::standard().with_max_attempts(ATTEMPTS))
            .retry_partition(headroom.sdk_retry_partition())
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .build()
    };
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// `calls` concurrent calls with random fates, starting at random instants within
/// `spread`; asserts each call's result and attempt count, and the registry empty at the end.
async fn stress(calls: usize, seed: u64, attempt_timeout: Duration, spread: Duration) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let fates: Arc<[Fate]> = (0..calls).map(|_| Fate::pick(&mut rng)).collect();
    let attempts: Arc<[AtomicU32]> = (0..calls).map(|_| AtomicU32::new(0)).collect();
    let (dropped_tx, mut dropped_rx) = mpsc::unbounded_channel();
    let connector = SharedHttpConnector::new(Scripted {
        fates: Arc::clone(&fates),
        attempts: Arc::clone(&attempts),
        dropped: dropped_tx,
    });
    let http = http_client_fn(move |_, _| connector.clone());
    let headroom = headroom();
    // Calls through the two clients interleave on the same addresses: an unregistered call
    // must never find a registered one's entry.
    let full = client(&headroom, http.clone(), Some(attempt_timeout), true);
    let plain = client(&headroom, http.clone(), Some(attempt_timeout), false);
    // The calls to be dropped wait for that however long the test takes to get to them: the
    // same configuration without an attempt timeout, which would retry them meanwhile.
    let waiting = client(&headroom, http, None, true);
    let is_plain: Vec<bool> = (0..calls).map(|_| rng.u32(0..4) == 0).collect();
    let to_drop = fates.iter().filter(|f| **f == Fate::Dropped).count();
    assert!(to_drop > 0 && fates.contains(&Fate::TimeoutThenOk));
    assert!((0..calls).any(|i| is_plain[i] && fates[i] != Fate::Dropped));

    let mut tasks = Vec::with_capacity(calls);
    for (index, (&fate, &is_plain)) in fates.iter().zip(&is_plain).enumerate() {
        let client = match (fate, is_plain) {
            (Fate::Dropped, _) => &waiting,
            (_, true) => &plain,
            (_, false) => &full,
        }
        .clone();
        let start = spread.mul_f64(rng.f64());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(start).await;
            client
                .converse()
                .model_id(format!("m{index}"))
                .messages(
                    Message::builder()
                        .role(ConversationRole::User)
                        .content(ContentBlock::Text(format!("question {index}")))
                        .build()
                        .unwrap(),
                )
                .send()
                .await
        }));
    }

    // Every dropped call is out on the wire, registered, and dropped there.
    let mut out = std::collections::HashSet::new();
    while out.len() < to_drop {
        out.insert(dropped_rx.recv().await.unwrap());
    }
    assert!(
        headroom.registered_calls() >= 2 * to_drop,
        "{} entries for {to_drop} calls in flight",
        headroom.registered_calls()
    );
    for &index in &out {
        tasks[index].abort();
    }

    for (index, task) in tasks.into_iter().enumerate() {
        let fate = fates[index];
        let result = task.await;
        if fate == Fate::Dropped {
            assert!(result.unwrap_err().is_cancelled(), "call {index}");
            continue;
        }
        let result = result.unwrap();
        assert_eq!(
            attempts[index].load(Ordering::SeqCst),
            fate.attempts(),
            "call {index} ({fate:?}): {result:?}"
        );
        match fate {
            Fate::Ok | Fate::ThrottledThenOk(_) | Fate::TimeoutThenOk => {
                let output = result.unwrap_or_else(|e| panic!("call {index} ({fate:?}): {e:?}"));
                let text = output
                    .output()
                    .and_then(|o| o.as_message().ok())
                    .and_then(|m| m.content().first())
                    .and_then(|c| c.as_text().ok())
                    .cloned();
                assert_eq!(text, Some(format!("call {index}")));
            }
            Fate::Fatal => {
                let error = result.unwrap_err().into_service_error();
                assert!(error.is_validation_exception(), "call {index}: {error:?}");
            }
            Fate::Unavailable => {
                let error = result.unwrap_err().into_service_error();
                assert!(
                    error.is_service_unavailable_exception(),
                    "call {index}: {error:?}"
                );
            }
            Fate::Dropped => unreachable!(),
        }
    }
    assert_eq!(headroom.registered_calls(), 0, "entries left behind");
}

#[tokio::test(start_paused = true)]
async fn concurrent_calls_each_get_their_own_decisions_and_leave_no_entry_on_the_paused_clock() {
    stress(600, 1, Duration::from_secs(5), Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_each_get_their_own_decisions_and_leave_no_entry_on_four_threads() {
    // Real time: an attempt that answers does so within one poll, which an attempt timeout
    // cannot cut; only the scripted hangs reach it.
    stress(
        600,
        2,
        Duration::from_millis(100),
        Duration::from_millis(50),
    )
    .await;
}
