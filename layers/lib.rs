//! Quota-aware resilience for cloud API clients, as Tower layers.
//!
//! Teams calling Amazon Bedrock, DynamoDB and HTTP LLM endpoints meet three families of
//! failure: quota throttles (429 `ThrottlingException`, DynamoDB
//! `ProvisionedThroughputExceededException`), model overload, and unavailability (503). This
//! crate gives every failure one typed [`Outcome`] and builds composable policies on it:
//!
//! - [`classify`]: HTTP, AWS and I/O classifiers, `Retry-After` and its relatives parsed once;
//! - [`retry`]: per-class backoff with jitter, server delays honoured, retries aligned to the
//!   quota window, a retry budget that bounds amplification, and [`RetryLayer`];
//! - [`breaker`]: circuit breakers per model, region or host, failing fast with
//!   [`CircuitOpen`] while a backend is sick;
//! - [`fallback`]: a router across models, regions and inference profiles that reports every
//!   degraded answer ([`Served`]);
//! - [`admission`]: token-budget admission — estimate a call's tokens or capacity units,
//!   reserve before the call, settle the real usage after, wait or shed ([`Rejected`]), with
//!   accounting that mirrors the provider's (a sliding window for per-minute quotas of
//!   unknown phase, a token bucket for providers that refill continuously), shares per
//!   application, priorities and a limit learned from the throttles a neighbour causes;
//! - [`deadline`]: one wait budget per call, spent by admission, the router and retries alike;
//! - [`stack`]: the whole stack per profile (Bedrock, DynamoDB, plain HTTP) in a few lines;
//! - [`observe`]: the `tracing` and `metrics` vocabulary they all report in;
//! - `smithy` (features `smithy`, `bedrock`, `dynamodb`): the same cores inside AWS SDK
//!   clients — a retry classifier, an interceptor and an HTTP client wrapper installed by
//!   `SdkHeadroom::configure_bedrock` / `configure_dynamodb`.
//!
//! Every decision lives in a synchronous *core* that takes the current time as an argument and
//! never sleeps; the Tower layers only await what the cores hand out. Time is
//! [`tokio::time::Instant`], so whole scenarios run under `#[tokio::test(start_paused = true)]`.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_headroom::{HttpClassifier, RetryLayer, retry::RetryPolicy};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(4)
//!     .deadline(Duration::from_secs(30))
//!     .build()?;
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy, HttpClassifier::new()))
//!     .service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, std::io::Error>(http::Response::new(String::from("hello")))
//!     });
//! let response = client.oneshot(http::Request::new(String::new())).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
//! ```
#![warn(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admission;
pub mod bedrock;
pub mod breaker;
pub mod classify;
pub mod concurrency;
pub mod deadline;
pub mod dynamodb;
mod error;
pub mod fallback;
pub mod hot_keys;
#[cfg(any(feature = "sim", feature = "dynamodb"))]
mod item_size;
pub mod lifecycle;
#[cfg(feature = "llm-http")]
pub mod llm_http;
pub mod observe;
mod outcome;
#[cfg(feature = "reqwest")]
pub mod reqwest;
pub mod retry;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "smithy")]
pub mod smithy;
pub mod stack;
pub mod timeout;

pub use crate::admission::{AdmissionLayer, Cost, Limit, Quota, Rejected, Usage};
pub use crate::breaker::{BreakerConfig, BreakerLayer, BreakerRegistry, CircuitOpen};
pub use crate::classify::{Classify, HttpClassifier};
pub use crate::concurrency::{
    AdaptiveLimit, ConcurrencyConfig, ConcurrencyLimitLayer, ConcurrencyLimited,
};
pub use crate::deadline::Deadline;
pub use crate::error::ConfigError;
pub use crate::fallback::{
    FallbackBuilder, FallbackLayer, NoTargetAvailable, Route, Served, Target,
};
pub use crate::outcome::{
    Outcome, OutcomeKind, ThrottleLimit, ThrottleReason, ThrottleScope, ThrottledOperation,
    ThrottledResource,
};
pub use crate::retry::{RetryLayer, RetryPolicy};
pub use crate::stack::{Profile, StackBuilder};

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years): the one conversion
/// the cores use wherever a `Duration` becomes integer arithmetic.
///
/// In 64 bits: the seconds' nanoseconds and the sum overflow exactly when `as_nanos` (a
/// `u128`) exceeds `u64::MAX`, and the 128-bit product costs more on the success path.
#[inline]
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    d.as_secs()
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(u64::from(d.subsec_nanos())))
        .unwrap_or(u64::MAX)
}

/// The boxed error type the layers of this crate return, as in Tower itself.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The README's code blocks, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// The 64-bit conversion is the 128-bit one, saturated: around the edge and elsewhere.
    #[test]
    fn nanos_saturates_exactly_where_the_128_bit_count_leaves_u64() {
        let wide = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let edge = Duration::from_nanos(u64::MAX);
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::new(1, 999_999_999),
            Duration::from_secs(24 * 3600),
            edge - Duration::from_nanos(1),
            edge,
            edge + Duration::from_nanos(1),
            Duration::from_secs(u64::MAX / 1_000_000_000 + 1),
            Duration::MAX,
        ] {
            assert_eq!(super::nanos(d), wide(d), "{d:?}");
        }
        assert_eq!(super::nanos(edge), u64::MAX);
        assert_eq!(super::nanos(edge + Duration::from_nanos(1)), u64::MAX);
    }
}
