//! Retries that understand quotas.
//!
//! [`RetryLayer`] retries a call when its [`Outcome`] is retryable, waiting as
//! the [`Backoff`] rules say: the server's `Retry-After` honoured (never retried earlier), quota
//! throttles aligned to the next quota window, and per-class exponential schedules with jitter
//! for everything else. A [`RetryBudget`] keeps retries to a fraction of requests, so a total
//! outage costs at most `1 + ratio` attempts per request, and an overall deadline bounds the
//! whole call. A spent per-day quota ([`ThrottleScope::Daily`](crate::ThrottleScope::Daily)) is
//! not retried unless the server says it returns within the deadline ([`spent_day`]); the call
//! fails with [`QuotaExhausted`], which says which quota and when it returns.
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_headroom::{HttpClassifier, RetryLayer, retry::RetryPolicy};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! let policy = RetryPolicy::builder()
//!     .max_attempts(3)
//!     .deadline(Duration::from_secs(30))
//!     .build()?;
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy, HttpClassifier::new()))
//!     .service_fn(|_: http::Request<()>| async {
//!         Ok::<_, std::io::Error>(http::Response::new(()))
//!     });
//! let response = service.oneshot(http::Request::new(())).await?;
//! // First-attempt successes carry no retry record.
//! assert!(response.extensions().get::<tower_headroom::retry::RetryInfo>().is_none());
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! The decision logic is [`RetryPolicy::decide`], a synchronous core that takes the time as an
//! argument; the layer only sleeps where it says. The same policy drives the AWS SDK's retry
//! loop through the Smithy adapter.

mod backoff;
mod budget;
pub(crate) mod error;
mod future;
mod layer;
mod policy;

pub use self::backoff::{Backoff, BackoffBuilder, Jitter, QuotaWindow, Schedule, ScheduleClass};
pub use self::budget::RetryBudget;
pub(crate) use self::error::stopped_error;
pub use self::error::{Fatal, QuotaExhausted, RetriesExhausted, RetryInfo};
pub use self::future::ResponseFuture;
pub use self::layer::{Retry, RetryLayer};
pub use self::policy::{
    Decision, RetryPolicy, RetryPolicyBuilder, RetryState, StopReason, spent_day,
};

use std::time::Duration;

use tokio::time::Instant;

use crate::Outcome;
use crate::observe::{ClassCounters, ClassHistograms, CounterSet, Labels, keys, names};

/// The metric handles of one retry layer, registered once.
#[derive(Debug)]
pub(crate) struct RetryMetrics {
    labels: Labels,
    attempts: ClassCounters,
    retries: ClassCounters,
    wait: ClassHistograms,
    attempt_duration: ClassHistograms,
    call_duration: ClassHistograms,
    calls: CounterSet<2>,
    exhausted: CounterSet<{ StopReason::ALL.len() }>,
}

impl RetryMetrics {
    pub(crate) fn register(labels: &Labels) -> Self {
        RetryMetrics {
            labels: labels.clone(),
            attempts: ClassCounters::register(names::ATTEMPTS, labels),
            retries: ClassCounters::register(names::RETRIES, labels),
            wait: ClassHistograms::register(names::RETRY_WAIT, labels),
            attempt_duration: ClassHistograms::register(names::ATTEMPT_DURATION, labels),
            call_duration: ClassHistograms::register(names::CALL_DURATION, labels),
            calls: CounterSet::register(names::CALLS, labels, keys::RESULT, ["success", "failure"]),
            exhausted: CounterSet::register(
                names::RETRIES_EXHAUSTED,
                labels,
                keys::REASON,
                StopReason::ALL.map(|r| r.as_str()),
            ),
        }
    }

    /// Whether these metrics reach a recorder now ([`crate::observe::recording`]): when not,
    /// a caller may skip recording them.
    #[inline]
    pub(crate) fn live(&self) -> bool {
        crate::observe::recording(self.attempts.registered())
    }

    /// Counts an attempt by its outcome's class; a refusal by this client before anything was
    /// sent ([`Outcome::local`]) is no attempt and is not counted.
    #[inline]
    pub(crate) fn attempt(&self, outcome: &Outcome) {
        if !outcome.local {
            self.attempts.increment(outcome.kind);
        }
    }

    /// Records a finished attempt's duration (from its start, admission wait included, to its
    /// end) by its outcome's class; a local refusal is no attempt and is not recorded.
    #[inline]
    pub(crate) fn attempt_took(&self, outcome: &Outcome, started: Instant, ended: Instant) {
        if !outcome.local {
            self.attempt_duration
                .record_since(outcome.kind, started, ended);
        }
    }

    /// Counts a call by how it ended, and records its duration (from its start to its last
    /// attempt's end: every attempt, wait and retry) by the class of the outcome it ended with.
    #[inline]
    pub(crate) fn call_took(&self, outcome: &Outcome, started: Instant, ended: Instant) {
        self.calls.increment(usize::from(!outcome.is_success()));
        self.call_duration
            .record_since(outcome.kind, started, ended);
    }

    pub(crate) fn retry(&self, outcome: &Outcome, state: &RetryState, wait: Duration) {
        self.retries.increment(outcome.kind);
        self.wait.record(outcome.kind, wait.as_secs_f64());
        tracing::debug!(
            target: "tower_headroom::retry",
            labels = %self.labels,
            class = outcome.kind.as_str(),
            attempt = state.attempts(),
            wait_ms = wait.as_millis() as u64,
            server_delay_ms = outcome.retry_after.map(|d| d.as_millis() as u64),
            "retrying",
        );
    }

    pub(crate) fn stop(&self, outcome: &Outcome, state: &RetryState, reason: StopReason) {
        self.exhausted.increment(reason.index());
        tracing::debug!(
            target: "tower_headroom::retry",
            labels = %self.labels,
            class = outcome.kind.as_str(),
            attempts = state.attempts(),
            reason = reason.as_str(),
            "not retrying",
        );
    }
}
