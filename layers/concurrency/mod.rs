//! An adaptive limit on calls in flight per target: a bulkhead that learns how many calls the
//! backend holds at once.
//!
//! Bedrock answers 503 `ServiceUnavailableException` "Too many connections" when a model has
//! more calls in flight than it takes, an HTTP connection pool refuses when it is exhausted,
//! and an overloaded backend first queues (latency climbs) and then refuses. A fixed limit is
//! either too low (capacity wasted) or too high (the refusals come back). This one learns:
//!
//! - **Refusals cut it.** An [`Unavailable`](crate::OutcomeKind::Unavailable),
//!   [`Overloaded`](crate::OutcomeKind::Overloaded) or [`Timeout`](crate::OutcomeKind::Timeout)
//!   answer multiplies the limit by `backoff_ratio` (0.9) — at most once per
//!   `decrease_interval` (1 s), and never for an answer to a call sent before the last cut,
//!   so a burst of refusals from one overload cuts once.
//! - **Latency cuts it** (a gradient, as Netflix's Gradient2): when the short-term mean
//!   latency of successful calls (about 10 calls) exceeds `latency_tolerance` (2×) the
//!   long-term mean (about 100), the backend is queueing, and the limit is cut as for a
//!   refusal, under the same rules; the next latency cut needs a fresh short-term mean.
//! - **Successes grow it, when it is used.** A success of a call that started with at least
//!   half the limit in flight adds `1 / limit` (one slot per round trip at full use); below
//!   half, an unused limit never grows. Within a slot of the level of the last cut the growth
//!   is [`PROBE_ROUNDS`] (4) times slower, so the limit probes a known ceiling gently instead
//!   of earning a refusal every round trip.
//!
//! Quota throttles (429), client errors and transient faults neither cut nor grow it: they
//! say nothing about how many calls the backend holds. A call whose permit is dropped (the
//! caller gave up, a hedge won, the call was never sent) frees its slot and teaches nothing.
//!
//! The pieces:
//!
//! - [`AdaptiveLimit`]: the shared limit, with time passed in —
//!   [`try_acquire(now)`](AdaptiveLimit::try_acquire) gives a [`ConcurrencyPermit`] or refuses
//!   at once with [`ConcurrencyFull`]; [`ConcurrencyPermit::record`] frees the slot and
//!   learns. No I/O, no sleeping, no allocation per call; drive it from a Tower future or
//!   from an SDK interceptor alike. Reports `headroom_concurrency_limit` and
//!   `headroom_concurrency_rejected_total` (see [`observe`](crate::observe)).
//! - [`ConcurrencyLimitLayer`] / [`ConcurrencyLimit`]: the Tower adapter. `poll_ready` holds
//!   no slot; `call` takes one, the response future frees it. A full limit fails the call at
//!   once with [`ConcurrencyLimited`] `{ limit, in_flight, retry_in }`.
//! - [`ConcurrencyConfig`]: the settings, defaults and their reasons.
//!
//! # How the refusal is classified, and why
//!
//! [`classify_error`](crate::classify::classify_error) reads [`ConcurrencyLimited`] as a
//! **local** refusal ([`Outcome::local`](crate::Outcome#structfield.local)) of class
//! **`Unavailable`**, with `retry_in` (the mean time between completions, 10 ms to 1 s) as
//! its delay — as it reads an open breaker's [`CircuitOpen`](crate::CircuitOpen). The target
//! cannot take the call now, which is what `Unavailable` says: a fallback router moves to
//! the next target, a breaker does not count it (it was never sent), a retry layer spends
//! neither an attempt nor its budget on it and stops at once rather than spinning on a full
//! bulkhead (queueing for a slot is the caller's choice, not a retry's), and a gateway
//! answers 503 with `Retry-After`. A quota throttle would be wrong: no quota said no, and
//! admission must not learn from it.
//!
//! # Where it sits
//!
//! Per target, closest to the client: `retry → fallback → breaker → admission → concurrency
//! limit → client`. Inside admission, the latency it measures is the backend's alone (not the
//! quota wait), and a call it sheds is settled by admission as a refusal (no units spent);
//! inside the breaker, its refusals are never counted as failures of the backend.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_headroom::classify::classify_error;
//! use tower_headroom::concurrency::{
//!     AdaptiveLimit, ConcurrencyConfig, ConcurrencyLimitLayer, ConcurrencyLimited,
//! };
//! use tower_headroom::{HttpClassifier, OutcomeKind, observe::Labels};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! let config = ConcurrencyConfig::builder().initial_limit(1).build()?;
//! let limit = AdaptiveLimit::new(config, Labels::target("bedrock").region("us-east-1"));
//! let mut service = ServiceBuilder::new()
//!     .layer(ConcurrencyLimitLayer::new(limit.clone(), HttpClassifier::new()))
//!     .service_fn(|_: http::Request<()>| async {
//!         tokio::time::sleep(Duration::from_secs(2)).await; // a slow model
//!         Ok::<_, std::io::Error>(http::Response::new(()))
//!     });
//!
//! let first = service.ready().await?.call(http::Request::new(()));
//! // The one slot is taken: the second call is shed at once, without reaching the model.
//! let error = service.ready().await?.call(http::Request::new(())).await.unwrap_err();
//! let limited = error.downcast_ref::<ConcurrencyLimited>().expect("shed by the limit");
//! assert_eq!((limited.limit, limited.in_flight), (1, 1));
//! let outcome = classify_error(&*error);
//! assert_eq!(outcome.kind, OutcomeKind::Unavailable);
//! assert!(outcome.local); // not an attempt against the service
//!
//! assert_eq!(first.await?.status(), 200);
//! assert_eq!(limit.in_flight(), 0);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! # Prior art, and why hand-written
//!
//! - Netflix [concurrency-limits](https://github.com/Netflix/concurrency-limits): AIMD (cut by
//!   0.9 on a drop, +1 per success while at least half the limit is in flight), Vegas (queue
//!   size estimated from the minimum latency) and Gradient2 (long-term against short-term
//!   latency with a tolerance). This module is AIMD with Gradient2's latency signal; the
//!   minimum latency Vegas needs means nothing for LLM calls, whose latency follows the
//!   length of the answer.
//! - Envoy's adaptive concurrency filter: a gradient against a minimum latency measured by
//!   periodically pinning concurrency low — a probe that costs throughput on calls that last
//!   seconds.
//! - `tower-resilience`'s adaptive limiter (`tower-resilience-adaptive` 0.9, AIMD and Vegas)
//!   and `tower-acc` 0.1 (AIMD, Gradient2, Vegas) are the Tower crates that come closest.
//!   Both read `std::time::Instant` themselves (which tokio's paused clock does not move, so
//!   no scenario can run on simulated time), learn from a success/failure flag (by default
//!   any `Err` is a failure, a quota 429 included) rather than an outcome taxonomy, their
//!   AIMD cuts on every failure with no guard against one overload's burst of refusals, and
//!   they hold a semaphore
//!   permit from `poll_ready` to `call` — callers wait for a slot instead of being shed, and
//!   there is no core an AWS SDK interceptor can drive outside a Tower future.

mod core;
mod layer;
mod limit;

pub use self::core::{ConcurrencyConfig, ConcurrencyConfigBuilder, PROBE_ROUNDS};
pub use self::layer::{
    ConcurrencyLimit, ConcurrencyLimitLayer, ConcurrencyLimited, ResponseFuture,
};
pub use self::limit::{AdaptiveLimit, ConcurrencyFull, ConcurrencyPermit};
