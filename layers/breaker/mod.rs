//! Circuit breaking: stop calling a backend that is failing, probe it, come back when it heals.
//!
//! A breaker counts the outcomes that say something about the backend's health — the classes
//! for which [`OutcomeKind::counts_for_breaker`](crate::OutcomeKind::counts_for_breaker) holds:
//! overloaded, unavailable, timeout, transient — and ignores the rest. A 400 or a quota 429
//! never opens a breaker: the backend is healthy, the caller is wrong or over quota.
//!
//! - [`BreakerCore`]: the sans-IO state machine, Closed → Open → HalfOpen → Closed, with time
//!   passed in. It trips on `consecutive_failures` in a row, or on a failure rate (or slow-call
//!   rate) over a count- or time-based [`Window`] once it holds `minimum_calls` (Resilience4j
//!   semantics; the defaults and why are on [`BreakerConfig`]). Open lasts `open_for` plus
//!   jitter, optionally growing after each failed probe period (`open_backoff`); half-open
//!   admits `half_open_probes` probes, closes when all of them succeed and reopens on the first
//!   failed one.
//! - [`BreakerHandle`]: one breaker shared by every clone (core behind a short-held mutex),
//!   reporting `headroom_breaker_state` / `headroom_breaker_transitions_total` and a `tracing`
//!   event on each transition. [`BreakerRegistry`]: one breaker per key (model, region, host),
//!   created on demand, evicted when idle and unreferenced.
//! - [`BreakerLayer`] / [`Breaker`]: the Tower adapter. An open circuit fails the call at once
//!   with [`CircuitOpen`] `{ retry_in }` — no inner call, no allocation other than the boxed
//!   error; a closed one allocates nothing per call.
//!
//! A call whose future is dropped before it finishes (the caller gave up, a hedge won) counts as
//! neither success nor failure and frees its half-open probe slot: counting cancellations would
//! let impatient callers open the breaker. To have slow calls count, put a timeout *inside* the
//! breaker (its error classifies as [`OutcomeKind::Timeout`](crate::OutcomeKind::Timeout)), or
//! use [`BreakerConfigBuilder::slow_call`]. A call that started in one state and ends in another
//! (the breaker opened meanwhile) is not counted in the new state.
//!
//! Hand-written rather than taken from `failsafe` or `tower-resilience`: their state machines read
//! the clock themselves instead of taking the time as an argument, as this crate's sans-IO cores
//! must, and they are not built around a shared outcome taxonomy in which a quota 429 is neither
//! a success nor a failure.
//!
//! # Where it sits in a stack
//!
//! From the outside in: `retry → fallback → breaker → admission → client`, every layer
//! classifying with the same [`Classify`](crate::Classify).
//!
//! - **Retry outermost**, so that every retry goes through the router again (which skips targets
//!   whose breaker opened meanwhile) and through admission again (a retry spends quota like any
//!   call). A retry inside the router would hammer one target.
//! - **The breaker per target, inside the router**: breakers are about one backend's health, and
//!   the router needs each target's state to skip open ones without calling them
//!   ([`crate::fallback`] holds one [`BreakerHandle`] per target for this).
//! - **The breaker outside admission**, so that an open circuit fails fast without reserving
//!   quota or waiting in the admission queue for a call that will not be made. Admission's
//!   `Rejected` errors reach the breaker's classifier as throttles and are not counted. The
//!   latency a breaker sees includes the admission wait: set a `slow_call` threshold with that in
//!   mind.
//!
//! ```
//! use std::time::Duration;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_headroom::breaker::{BreakerConfig, BreakerHandle, BreakerLayer, CircuitOpen};
//! use tower_headroom::{Outcome, OutcomeKind, observe::Labels};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! let config = BreakerConfig::builder().consecutive_failures(3).build()?;
//! let breaker = BreakerHandle::new(config, Labels::target("bedrock").region("us-east-1"));
//! let classify = |r: Result<&http::Response<()>, &(dyn std::error::Error + 'static)>| match r {
//!     Ok(res) if res.status().is_success() => Outcome::SUCCESS,
//!     Ok(res) if res.status() == 503 => Outcome::new(OutcomeKind::Unavailable),
//!     _ => Outcome::FATAL,
//! };
//! let mut service = ServiceBuilder::new()
//!     .layer(BreakerLayer::new(breaker, classify))
//!     .service_fn(|_: ()| async {
//!         let mut res = http::Response::new(());
//!         *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
//!         Ok::<_, std::io::Error>(res)
//!     });
//! for _ in 0..3 {
//!     service.ready().await?.call(()).await?;
//! }
//! let error = service.ready().await?.call(()).await.unwrap_err();
//! let open = error.downcast_ref::<CircuitOpen>().expect("fails fast");
//! assert!(open.retry_in >= Duration::from_secs(30));
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
//! ```

mod config;
mod core;
mod handle;
mod layer;
mod registry;
mod ring;

pub use self::config::{BreakerConfig, BreakerConfigBuilder, ConfigError, TIME_BUCKETS, Window};
pub use self::core::{BreakerCore, Open, Permit, State, Transition};
pub use self::handle::{BreakerHandle, BreakerPermit};
pub use self::layer::{Breaker, BreakerLayer, CircuitOpen, Keyed, ResponseFuture, SelectBreaker};
pub use self::registry::{BreakerRegistry, BreakerRegistryBuilder};
