//! One target's adaptive limit shared by many callers: the estimator behind a mutex, plus its
//! metrics and events.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::core::{Cause, Change, ConcurrencyConfig, Estimator, Ticket};
use crate::Outcome;
use crate::observe::Labels;

/// The adaptive limit on calls in flight to one target, shared by every clone.
///
/// Cheap to clone (an `Arc`). The mutex around the estimator is held for a few arithmetic
/// operations, never across an `.await`, and nothing allocates after construction. Drive it
/// from a Tower layer ([`ConcurrencyLimitLayer`](super::ConcurrencyLimitLayer)) or from
/// anything else that can say when a call starts and how it ended:
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::concurrency::{AdaptiveLimit, ConcurrencyConfig};
/// use tower_headroom::{Outcome, OutcomeKind, observe::Labels};
///
/// let config = ConcurrencyConfig::builder().initial_limit(2).build()?;
/// let limit = AdaptiveLimit::new(config, Labels::target("bedrock"));
/// let now = Instant::now();
/// let first = limit.try_acquire(now).expect("a slot is free");
/// let second = limit.try_acquire(now).expect("a slot is free");
/// let full = limit.try_acquire(now).unwrap_err();
/// assert_eq!((full.limit, full.in_flight), (2, 2));
///
/// first.record(&Outcome::SUCCESS, Duration::from_secs(3), now + Duration::from_secs(3));
/// drop(second); // cancelled: the slot is free again, and nothing was learned
/// assert_eq!(limit.in_flight(), 0);
/// # Ok::<(), tower_headroom::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct AdaptiveLimit {
    shared: Arc<Shared>,
}

struct Shared {
    estimator: Mutex<Estimator>,
    labels: Labels,
    metrics: Metrics,
}

impl AdaptiveLimit {
    /// A limit starting at the configuration's initial limit, reporting under `labels`. Metric
    /// handles are registered here, or on first use if no `metrics` recorder is installed yet.
    pub fn new(config: ConcurrencyConfig, labels: Labels) -> Self {
        let metrics = Metrics::register(&labels);
        metrics.limit(config.initial_limit());
        AdaptiveLimit {
            shared: Arc::new(Shared {
                estimator: Mutex::new(Estimator::new(config)),
                labels,
                metrics,
            }),
        }
    }

    /// The labels this limit reports under.
    pub fn labels(&self) -> &Labels {
        &self.shared.labels
    }

    /// The configuration.
    pub fn config(&self) -> ConcurrencyConfig {
        *self.lock().config()
    }

    /// The calls allowed in flight now.
    pub fn limit(&self) -> u32 {
        self.lock().limit()
    }

    /// The calls in flight now (permits taken and not yet recorded or dropped).
    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight()
    }

    /// Takes a slot for a call starting at `now`, or refuses at once when the limit is full.
    /// Never waits: queueing, if wanted, is the caller's.
    pub fn try_acquire(&self, now: Instant) -> Result<ConcurrencyPermit, ConcurrencyFull> {
        let result = self.lock().try_acquire();
        match result {
            Ok(ticket) => Ok(ConcurrencyPermit {
                limit: self.clone(),
                ticket: Some(ticket),
                started: now,
            }),
            Err((limit, in_flight, retry_in)) => {
                self.shared.metrics.rejected();
                Err(ConcurrencyFull {
                    limit,
                    in_flight,
                    retry_in,
                })
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Estimator> {
        // The estimator holds no invariant a panic elsewhere could break half-way: keep going.
        self.shared
            .estimator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reports a change of the limit: the gauge always, a `debug` event for cuts (growth, a
    /// slot at a time, shows on the gauge alone).
    fn report(&self, change: Change) {
        self.shared.metrics.limit(change.to);
        if change.cause == Cause::Growth {
            return;
        }
        let labels = &self.shared.labels;
        tracing::debug!(
            target_name = labels.target_name().unwrap_or(""),
            model = labels.model_name().unwrap_or(""),
            region = labels.region_name().unwrap_or(""),
            from = change.from,
            to = change.to,
            cause = change.cause.as_str(),
            "concurrency limit cut"
        );
    }
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let estimator = self.lock();
        f.debug_struct("AdaptiveLimit")
            .field("labels", &self.shared.labels)
            .field("limit", &estimator.limit())
            .field("in_flight", &estimator.in_flight())
            .finish()
    }
}

/// The limit was full: no slot was taken. Returned by [`AdaptiveLimit::try_acquire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcurrencyFull {
    /// The calls allowed in flight.
    pub limit: u32,
    /// The calls in flight (at least `limit`: a cut can leave more in flight than allowed).
    pub in_flight: u32,
    /// A hint of when a slot may free: the mean time between completions at the recent
    /// latency (10 ms to 1 s; 1 s before any call completed). A hint, not a promise.
    pub retry_in: Duration,
}

/// A slot taken from an [`AdaptiveLimit`]: [`record`](Self::record) the call's outcome with
/// it, or drop it to give the slot back without learning (a call cancelled or never sent
/// teaches nothing).
#[must_use = "dropping a permit frees its slot without learning; record the outcome instead"]
pub struct ConcurrencyPermit {
    limit: AdaptiveLimit,
    ticket: Option<Ticket>,
    started: Instant,
}

impl ConcurrencyPermit {
    /// Frees the slot and learns from the call's outcome, `latency` after it started.
    ///
    /// Unavailable, overloaded and timed-out answers cut the limit (once per decrease
    /// interval); successes give a latency sample and grow the limit if it was in use. Local
    /// refusals ([`Outcome::local`]), quota throttles and other failures only free the slot.
    /// For streamed answers, pass the time to the first token as `latency`: it shows queueing
    /// where the whole answer's time shows mostly its length.
    pub fn record(mut self, outcome: &Outcome, latency: Duration, now: Instant) {
        if let Some(ticket) = self.ticket.take() {
            let change = self.limit.lock().record(ticket, outcome, latency, now);
            if let Some(change) = change {
                self.limit.report(change);
            }
        }
    }

    /// When the call started (the instant given to [`AdaptiveLimit::try_acquire`]).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The limit this permit came from.
    pub fn limit(&self) -> &AdaptiveLimit {
        &self.limit
    }
}

impl Drop for ConcurrencyPermit {
    fn drop(&mut self) {
        if self.ticket.take().is_some() {
            self.limit.lock().release();
        }
    }
}

impl fmt::Debug for ConcurrencyPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyPermit")
            .field("labels", self.limit.labels())
            .field("started", &self.started)
            .finish()
    }
}

/// The limit's metric handles, registered once per limit.
struct Metrics {
    limit: crate::observe::Gauge,
    rejected: crate::observe::Counter,
}

impl Metrics {
    fn register(labels: &Labels) -> Self {
        use crate::observe::names;
        Metrics {
            limit: crate::observe::Gauge::register(names::CONCURRENCY_LIMIT, labels),
            rejected: crate::observe::Counter::register(names::CONCURRENCY_REJECTED, labels, &[]),
        }
    }

    fn limit(&self, limit: u32) {
        self.limit.set(f64::from(limit));
    }

    fn rejected(&self) {
        self.rejected.increment(1);
    }
}
