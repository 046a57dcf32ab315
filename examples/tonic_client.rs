//! A gRPC client over tonic's transport calling a local LLM service through the whole stack:
//! retry → fallback (`llm.large` → `llm.small`, a breaker each) → admission per model →
//! `tonic::transport::Channel`.
//!
//! The upstream is a stub gRPC server (tonic too, in the same process, on `127.0.0.1:0`) with
//! one unary method and switches for "model overloaded", "service down" and "throttle once with
//! pushback", so the example runs with no cloud account and no `protoc`: the messages derive
//! `prost::Message` by hand, the client calls `tonic::client::Grpc::unary` and the server is the
//! `Service` + `NamedService` pair that tonic's codegen would write. The proto it stands for:
//!
//! ```proto
//! package llm;
//! service Inference { rpc Complete(CompleteRequest) returns (CompleteReply); }
//! message CompleteRequest { string model = 1; string prompt = 2; uint32 max_tokens = 3; }
//! message CompleteReply { string text = 1; uint32 input_tokens = 2; uint32 output_tokens = 3; }
//! ```
//!
//! gRPC status codes become [`Outcome`]s in [`grpc_outcome`]:
//!
//! | status | outcome |
//! |---|---|
//! | `RESOURCE_EXHAUSTED` whose message says "overloaded" | `Overloaded` (next model) |
//! | other `RESOURCE_EXHAUSTED` | `Throttled(Unknown)` (retry after the pushback) |
//! | `UNAVAILABLE` | `Unavailable` (next target; the breaker counts it) |
//! | `DEADLINE_EXCEEDED`, or `CANCELLED` by tonic's own client timeout | `Timeout` |
//! | `ABORTED`, `INTERNAL` | `Transient` |
//! | `CANCELLED`, `INVALID_ARGUMENT`, `PERMISSION_DENIED`, `UNAUTHENTICATED`, `NOT_FOUND`, `FAILED_PRECONDITION`, `UNIMPLEMENTED` | `Fatal` |
//! | anything else (`UNKNOWN`, `DATA_LOSS`, …) | the status's source chain, through `classify_error` (a reset connection is `Transient`; the rest `Fatal`) |
//!
//! gRPC has no "overloaded" code: servers shed load with `RESOURCE_EXHAUSTED` (or
//! `UNAVAILABLE`), the same code as a quota, so the stub says `RESOURCE_EXHAUSTED` with
//! "model is overloaded" in the message, as Bedrock and Anthropic word it, and the classifier
//! reads the message only to tell the two apart. A `grpc-retry-pushback-ms` trailer (gRFC A6)
//! is the server's retry delay; a negative or unreadable one means "do not retry" (`Fatal`).
//!
//! `cargo run --example tonic_client` runs a scripted tour (a few seconds) that prints and asserts:
//! normal calls go to `large`; with `large` overloaded, `small` answers (marked degraded); with
//! the service down, both breakers open and calls fail fast with `NoTargetAvailable`
//! (`BreakerOpen`) and its `retry_in`; after recovery `large` answers again; a throttle with
//! pushback is retried after it; past the request quota, calls are shed unsent with a
//! `retry_in`. With two targets the router sees the missing quota before admission does, so the
//! shed is `NoTargetAvailable` (`NoHeadroom`), a throttle to `classify_error` (429 at a
//! gateway); a target's own admission answers `Rejected` when the router could not foresee it.
//!
//! `cargo run --example tonic_client -- --serve` keeps the stub on 127.0.0.1:50051
//! (`grpcurl -plaintext -proto llm.proto -d '{"model":"llm.large","prompt":"hi","max_tokens":16}'
//! 127.0.0.1:50051 llm.Inference/Complete`, with the proto above saved as `llm.proto`).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};
use tower_headroom::admission::{Limit, LlmEstimator, LlmInput, Quota, Rejected, Usage};
use tower_headroom::breaker::{BreakerConfig, CircuitOpen};
use tower_headroom::classify::aws::says_overloaded;
use tower_headroom::classify::{classify_error_with, find, retry_after::MAX_SERVER_DELAY};
use tower_headroom::fallback::{Exhaustion, NoTargetAvailable, Served, Target};
use tower_headroom::retry::RetryPolicy;
use tower_headroom::stack::{Profile, StackBuilder};
use tower_headroom::{BoxError, Outcome, OutcomeKind, ThrottleScope};

/// `llm.CompleteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct CompleteRequest {
    #[prost(string, tag = "1")]
    model: String,
    #[prost(string, tag = "2")]
    prompt: String,
    #[prost(uint32, tag = "3")]
    max_tokens: u32,
}

/// `llm.CompleteReply`.
#[derive(Clone, PartialEq, prost::Message)]
struct CompleteReply {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    input_tokens: u32,
    #[prost(uint32, tag = "3")]
    output_tokens: u32,
}

const COMPLETE: &str = "/llm.Inference/Complete";
const PUSHBACK: &str = "grpc-retry-pushback-ms";

// ---------------------------------------------------------------------------------------------
// The client side: the call type, the gRPC client service, the classifier and the stack.

/// One completion call, as the stack sees it: cheap to clone (retries and fallback copy it),
/// the model filled in per target.
#[derive(Clone)]
struct Complete {
    model: &'static str,
    prompt: Arc<str>,
    max_tokens: u32,
}

/// What the stack returns: the reply with the call's gRPC metadata as headers, in an
/// `http::Response` so that the router can attach its [`Served`] record as an extension.
type Reply = http::Response<CompleteReply>;

type Client = BoxCloneSyncService<Complete, Reply, BoxError>;

/// The gRPC client: turns a `Complete` into a unary call on the channel.
#[derive(Clone)]
struct InferenceClient {
    channel: Channel,
}

impl Service<Complete> for InferenceClient {
    type Response = Reply;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Reply, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // Each call clones the channel, and a `Channel` (a buffer) reserves its slot in the
        // clone that was polled: the call's own clone waits for readiness inside the future.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Complete) -> Self::Future {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        Box::pin(async move {
            grpc.ready().await?;
            let request = tonic::Request::new(CompleteRequest {
                model: call.model.to_owned(),
                prompt: call.prompt.to_string(),
                max_tokens: call.max_tokens,
            });
            let codec = ProstCodec::<CompleteRequest, CompleteReply>::default();
            let path = PathAndQuery::from_static(COMPLETE);
            let (metadata, reply, extensions) =
                grpc.unary(request, path, codec).await?.into_parts();
            let mut response = http::Response::new(reply);
            *response.headers_mut() = metadata.into_headers();
            *response.extensions_mut() = extensions;
            Ok(response)
        })
    }
}

/// The classifier: finds the `tonic::Status` in an error's chain and maps its code (see the
/// table in the module docs). This crate's own errors (a fast-fail, a shed call, a retry that
/// gave up) decide first, as in `classify_error`, which also takes every error with no status.
fn grpc_outcome(result: Result<&Reply, &(dyn Error + 'static)>) -> Outcome {
    match result {
        // gRPC failures arrive as `Err(Status)`; an `Ok` is an answer.
        Ok(_) => Outcome::SUCCESS,
        Err(error) => classify_error_with(error, |link| {
            link.downcast_ref::<Status>().and_then(status_outcome)
        }),
    }
}

/// The outcome of a status, `None` for the codes that say nothing about retrying (UNKNOWN and
/// the rest): what caused them might (tonic puts a transport error it could not map under an
/// UNKNOWN status), so the walk goes on to the status's source.
fn status_outcome(status: &Status) -> Option<Outcome> {
    let kind = match status.code() {
        Code::ResourceExhausted if says_overloaded(status.message()) => OutcomeKind::Overloaded,
        Code::ResourceExhausted => OutcomeKind::Throttled(ThrottleScope::Unknown),
        Code::Unavailable => OutcomeKind::Unavailable,
        Code::DeadlineExceeded => OutcomeKind::Timeout,
        // tonic reports its own client-side timeout (`Endpoint::timeout`) as CANCELLED.
        Code::Cancelled if find::<tonic::TimeoutExpired>(status).is_some() => OutcomeKind::Timeout,
        Code::Aborted | Code::Internal => OutcomeKind::Transient,
        Code::Cancelled
        | Code::InvalidArgument
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::Unimplemented => OutcomeKind::Fatal,
        _ => return None,
    };
    if !kind.is_retryable() {
        return Some(Outcome::new(kind));
    }
    Some(match pushback(status.metadata()) {
        Pushback::None => Outcome::new(kind),
        Pushback::After(delay) => Outcome::new(kind).with_retry_after(delay),
        Pushback::DoNotRetry => Outcome::FATAL,
    })
}

enum Pushback {
    None,
    After(Duration),
    DoNotRetry,
}

/// `grpc-retry-pushback-ms` (gRFC A6): milliseconds to wait before retrying; "If the value for
/// pushback is negative or unparseable, then it will be seen as the server asking the client
/// not to retry at all." Clamped like every server delay in this crate.
fn pushback(metadata: &MetadataMap) -> Pushback {
    let Some(value) = metadata.get(PUSHBACK) else {
        return Pushback::None;
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(ms) => Pushback::After(Duration::from_millis(ms).min(MAX_SERVER_DELAY)),
        None => Pushback::DoNotRetry,
    }
}

/// How long a breaker stays open (plus up to 20 % jitter): well past the retry deadline, so
/// that a call finding every breaker open fails fast instead of waiting for a half-open probe.
const OPEN_FOR: Duration = Duration::from_secs(2);
/// How long the stack may keep retrying a call: an interactive caller's budget.
const RETRY_DEADLINE: Duration = Duration::from_millis(500);
/// Each model's request quota.
const REQUESTS_PER_MINUTE: u64 = 20;

/// The client stack over `channel`: two models with REQUESTS_PER_MINUTE and 20,000 tokens per
/// minute each, a short retry deadline for interactive callers, breakers that open after 3
/// failures in a row.
fn client_stack(channel: Channel) -> Result<Client, BoxError> {
    let quota = Quota::new(
        // A minute's worth may go at once; the next call when the first leaves the window.
        Limit::per_minute()
            .requests(REQUESTS_PER_MINUTE)
            .units(20_000)
            .build()?,
    );
    let estimate = LlmEstimator::new(|call: &Complete| LlmInput {
        input_chars: call.prompt.chars().count() as u64,
        max_tokens: Some(u64::from(call.max_tokens)),
    });
    // Settle each reservation with the tokens the server says it spent.
    let usage = |reply: &Reply| {
        let reply = reply.body();
        Usage::units(u64::from(reply.input_tokens) + u64::from(reply.output_tokens))
    };
    let stack = StackBuilder::new(Profile::Http, grpc_outcome)
        .target(Target::new("large", "llm.large").model("large"))
        .target(Target::new("small", "llm.small").model("small"))
        .deadline(RETRY_DEADLINE)
        .retry(RetryPolicy::builder().max_attempts(3).build()?)
        .breaker(
            BreakerConfig::builder()
                .consecutive_failures(3)
                .open_for(OPEN_FOR)
                .build()?,
        )
        .admission(quota, estimate)
        .usage(usage)
        .rewrite(
            InferenceClient { channel },
            |call: &mut Complete, model: &&'static str| call.model = model,
        )?;
    Ok(BoxCloneSyncService::new(stack))
}

// ---------------------------------------------------------------------------------------------
// The stub server: what `tonic-build` would generate for `service Inference`, by hand.

/// The stub's switches, and how many calls reached each model.
#[derive(Clone, Default)]
struct Switches {
    overloaded: Arc<Mutex<HashSet<String>>>,
    down: Arc<AtomicBool>,
    /// The next this-many calls are throttled with a pushback of 300 ms.
    throttle: Arc<AtomicU32>,
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

impl Switches {
    fn calls(&self, model: &str) -> u32 {
        self.calls.lock().unwrap().get(model).copied().unwrap_or(0)
    }

    fn total(&self) -> u32 {
        self.calls.lock().unwrap().values().sum()
    }

    fn set_overloaded(&self, model: &str, overloaded: bool) {
        let mut set = self.overloaded.lock().unwrap();
        if overloaded {
            set.insert(model.to_owned());
        } else {
            set.remove(model);
        }
    }

    fn answer(&self, request: CompleteRequest) -> Result<tonic::Response<CompleteReply>, Status> {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(request.model.clone())
            .or_default() += 1;
        if self.down.load(Ordering::SeqCst) {
            return Err(Status::unavailable("service is down"));
        }
        if self.overloaded.lock().unwrap().contains(&request.model) {
            return Err(Status::resource_exhausted("model is overloaded, try later"));
        }
        let throttled = self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if throttled {
            let mut metadata = MetadataMap::new();
            metadata.insert(PUSHBACK, "300".parse().expect("an ASCII number"));
            return Err(Status::with_metadata(
                Code::ResourceExhausted,
                "rate limit exceeded",
                metadata,
            ));
        }
        let input_tokens = u32::try_from(request.prompt.len().div_ceil(4)).unwrap_or(u32::MAX);
        Ok(tonic::Response::new(CompleteReply {
            text: format!("hello from {}", request.model),
            input_tokens,
            output_tokens: request.max_tokens.min(40),
        }))
    }
}

/// The stub `llm.Inference` server.
#[derive(Clone)]
struct InferenceServer {
    switches: Switches,
}

impl NamedService for InferenceServer {
    const NAME: &'static str = "llm.Inference";
}

/// The `Complete` method, as a unary handler.
struct CompleteMethod(Switches);

impl UnaryService<CompleteRequest> for CompleteMethod {
    type Response = CompleteReply;
    type Future = std::future::Ready<Result<tonic::Response<CompleteReply>, Status>>;

    fn call(&mut self, request: tonic::Request<CompleteRequest>) -> Self::Future {
        std::future::ready(self.0.answer(request.into_inner()))
    }
}

impl Service<http::Request<tonic::body::Body>> for InferenceServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != COMPLETE {
            let status = Status::unimplemented("no such method");
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let method = CompleteMethod(self.switches.clone());
        Box::pin(async move {
            let codec = ProstCodec::<CompleteReply, CompleteRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(method, request).await)
        })
    }
}

async fn serve(listener: tokio::net::TcpListener, switches: Switches) {
    let incoming = TcpIncoming::from(listener);
    tonic::transport::Server::builder()
        .serve_with_incoming(InferenceServer { switches }, incoming)
        .await
        .expect("the stub server runs");
}

// ---------------------------------------------------------------------------------------------
// The tour.

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let switches = Switches::default();
    if std::env::args().any(|a| a == "--serve") {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
        println!("llm.Inference stub on {}", listener.local_addr()?);
        serve(listener, switches).await;
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(serve(listener, switches.clone()));

    // A timeout per attempt: tonic reports it as CANCELLED, which `grpc_outcome` reads as a
    // timeout (the stub answers at once, so the tour never meets it).
    let channel = Channel::from_shared(endpoint)?
        .timeout(Duration::from_secs(2))
        .connect()
        .await?;
    let client = client_stack(channel)?;
    tour(&client, &switches).await
}

/// What one call through the stack came to.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    /// Answered by this target; `true` when it was not the first choice.
    Served(&'static str, bool),
    /// No target could take the call (every breaker open, or no quota within reach): failed
    /// fast, come back after `retry_in`.
    NoTarget(Exhaustion, Option<Duration>),
    /// A breaker refused the call: come back after this.
    CircuitOpen(Duration),
    /// Admission shed the call: come back after this.
    Rejected(Option<Duration>),
    /// The upstream's own failure, after the stack's retries and fallback.
    Failed(OutcomeKind),
}

/// Sends one call through the stack and prints what came back, and how many calls reached
/// the server. Only our own error types and outcome classes are printed: the server's status
/// messages stay out of the output.
async fn send(client: &Client, switches: &Switches, label: &str) -> Result<Seen, BoxError> {
    let call = Complete {
        model: "",
        prompt: "Summarise our Q3 numbers.".into(),
        max_tokens: 256,
    };
    let reached = switches.total();
    let started = tokio::time::Instant::now();
    // The stack bounds every call (retry deadline, channel timeout); this only keeps a
    // broken tour from hanging.
    let result = tokio::time::timeout(Duration::from_secs(10), client.clone().oneshot(call))
        .await
        .map_err(|_| "a call through the stack took more than 10 s")?;
    let took = started.elapsed();
    let seen = match &result {
        Ok(reply) => {
            // No `Served` record: the first choice answered at once.
            let served = reply.extensions().get::<Served>();
            let name = match served.map_or("large", |s| &*s.name) {
                "small" => "small",
                _ => "large",
            };
            Seen::Served(name, served.is_some_and(|s| s.degraded))
        }
        Err(error) => {
            if let Some(none) = find::<NoTargetAvailable>(error.as_ref()) {
                Seen::NoTarget(none.cause, none.retry_in)
            } else if let Some(open) = find::<CircuitOpen>(error.as_ref()) {
                Seen::CircuitOpen(open.retry_in)
            } else if let Some(rejected) = find::<Rejected>(error.as_ref()) {
                Seen::Rejected(rejected.retry_in)
            } else {
                Seen::Failed(grpc_outcome(Err(error.as_ref())).kind)
            }
        }
    };
    let sent = switches.total() - reached;
    println!(
        "{label:<26} {:<44} {sent} sent, {:>4} ms",
        format!("{seen:?}"),
        took.as_millis()
    );
    Ok(seen)
}

/// Sends calls until `stop` says so, at most `max`; returns them all.
async fn send_until(
    client: &Client,
    switches: &Switches,
    label: &str,
    max: usize,
    stop: impl Fn(&Seen) -> bool,
) -> Result<Vec<Seen>, BoxError> {
    let mut seen = Vec::new();
    for _ in 0..max {
        let this = send(client, switches, label).await?;
        seen.push(this);
        if stop(&this) {
            break;
        }
    }
    Ok(seen)
}

async fn tour(client: &Client, switches: &Switches) -> Result<(), BoxError> {
    let large = Seen::Served("large", false);
    let small = Seen::Served("small", true);

    for _ in 0..2 {
        assert_eq!(send(client, switches, "normal").await?, large);
    }

    switches.set_overloaded("llm.large", true);
    for _ in 0..2 {
        assert_eq!(send(client, switches, "large overloaded").await?, small);
    }
    switches.set_overloaded("llm.large", false);

    // UNAVAILABLE from both models until both breakers open; then the stack fails fast (no
    // call reaches the server) and says when to come back.
    switches.down.store(true, Ordering::SeqCst);
    let breakers_open = |s: &Seen| matches!(s, Seen::NoTarget(Exhaustion::BreakerOpen, Some(_)));
    let down = send_until(client, switches, "service down", 6, breakers_open).await?;
    assert!(down.last().is_some_and(breakers_open), "{down:?}");
    let reached = switches.total();
    let fast = send(client, switches, "service down, fail fast").await?;
    assert!(breakers_open(&fast), "{fast:?}");
    assert_eq!(switches.total(), reached);
    switches.down.store(false, Ordering::SeqCst);

    // The breakers half-open after OPEN_FOR (+ up to 20 %); their probes succeed and close them.
    tokio::time::sleep(OPEN_FOR.mul_f64(1.25)).await;
    assert_eq!(send(client, switches, "recovered").await?, large);

    // RESOURCE_EXHAUSTED with a 300 ms pushback: a quota throttle. The retry waits at least
    // that long, and lands on `small`: the throttle taught `large`'s quota that it is spent
    // (the pushback is booked as debt), so the router picks the model with headroom.
    switches.throttle.store(1, Ordering::SeqCst);
    let before = (switches.calls("llm.large"), switches.calls("llm.small"));
    let started = tokio::time::Instant::now();
    assert_eq!(send(client, switches, "large throttled").await?, small);
    let after = (switches.calls("llm.large"), switches.calls("llm.small"));
    assert_eq!((after.0 - before.0, after.1 - before.1), (1, 1));
    assert!(started.elapsed() >= Duration::from_millis(300));

    // REQUESTS_PER_MINUTE per model: `small` takes the calls `large` has no quota for, until
    // it has none either; then the call is shed at once, never sent, with when to come back.
    let shed = |s: &Seen| {
        matches!(
            s,
            Seen::Rejected(Some(_)) | Seen::NoTarget(Exhaustion::NoHeadroom, Some(_))
        )
    };
    let burst = send_until(client, switches, "burst past the quota", 40, shed).await?;
    assert!(burst.last().is_some_and(shed), "{burst:?}");
    assert!(burst.contains(&small), "{burst:?}");
    Ok(())
}
