//! A breaker shared by many callers: the core behind a mutex, plus its metrics and events.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::config::BreakerConfig;
use super::core::{BreakerCore, Open, Permit, State, Transition};
use crate::Outcome;
use crate::observe::{CounterSet, Labels};

/// A circuit breaker shared by every clone of the layers and routers that hold it.
///
/// Cheap to clone (an `Arc`). The mutex around the [`BreakerCore`] is held for a few
/// arithmetic operations, never across an `.await`.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::breaker::{BreakerConfig, BreakerHandle, State};
/// use tower_headroom::{Outcome, observe::Labels};
///
/// let breaker = BreakerHandle::new(BreakerConfig::default(), Labels::target("bedrock"));
/// let now = Instant::now();
/// let permit = breaker.acquire(now).expect("a new breaker is closed");
/// permit.record(Outcome::SUCCESS, Duration::from_millis(80), now);
/// assert_eq!(breaker.state(), State::Closed);
/// ```
#[derive(Clone)]
pub struct BreakerHandle {
    shared: Arc<Shared>,
}

struct Shared {
    core: Mutex<BreakerCore>,
    labels: Labels,
    metrics: BreakerMetrics,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last `acquire`, for idle eviction.
    last_used: AtomicU64,
}

impl BreakerHandle {
    /// A closed breaker reporting under `labels`. Metric handles are registered here, or on
    /// first use if no `metrics` recorder is installed yet.
    pub fn new(config: BreakerConfig, labels: Labels) -> Self {
        Self::new_at(config, labels, Instant::now())
    }

    pub(crate) fn new_at(config: BreakerConfig, labels: Labels, now: Instant) -> Self {
        let metrics = BreakerMetrics::register(&labels);
        metrics.state(State::Closed);
        BreakerHandle {
            shared: Arc::new(Shared {
                core: Mutex::new(BreakerCore::new(config, now)),
                labels,
                metrics,
                epoch: now,
                last_used: AtomicU64::new(0),
            }),
        }
    }

    /// The labels this breaker reports under.
    pub fn labels(&self) -> &Labels {
        &self.shared.labels
    }

    /// The current state (see [`BreakerCore::state`]).
    pub fn state(&self) -> State {
        self.lock().state()
    }

    /// Whether a call would be admitted now, without taking a permit.
    pub fn would_admit(&self, now: Instant) -> Result<(), Open> {
        self.lock().would_admit(now)
    }

    /// Asks to make a call. The permit gives itself back when dropped unrecorded (the call
    /// then counts as neither success nor failure).
    pub fn acquire(&self, now: Instant) -> Result<BreakerPermit, Open> {
        self.clone().acquire_owned(now).map_err(|(open, _)| open)
    }

    /// [`acquire`](Self::acquire) by value: the permit takes this handle instead of a clone of
    /// it, and a refusal gives it back.
    pub(crate) fn acquire_owned(
        self,
        now: Instant,
    ) -> Result<BreakerPermit, (Open, BreakerHandle)> {
        self.touch(now);
        let (result, transition) = self.lock().acquire_reporting(now);
        self.report(transition);
        match result {
            Ok(permit) => Ok(BreakerPermit {
                breaker: self,
                permit: Some(permit),
            }),
            Err(open) => Err((open, self)),
        }
    }

    /// A permit only while the breaker is closed, `None` otherwise with nothing changed: for
    /// a fast path that must not move an open breaker to half-open (taking a probe) before it
    /// knows the call can go (see `lifecycle::Call::choose_admitted`).
    pub(crate) fn acquire_closed(&self, now: Instant) -> Option<BreakerPermit> {
        let permit = {
            let mut core = self.lock();
            if core.state() != State::Closed {
                return None;
            }
            core.acquire_reporting(now).0.ok()?
        };
        self.touch(now);
        Some(BreakerPermit {
            breaker: self.clone(),
            permit: Some(permit),
        })
    }

    /// Records that a call already recorded as a success under one of this breaker's permits
    /// failed after all (see [`BreakerCore::record_late`]): the SDK adapter reports a streamed
    /// response whose stream broke after its `200` this way.
    pub fn record_late(&self, outcome: Outcome, now: Instant) {
        let transition = self.lock().record_late(outcome, now);
        self.report(transition);
    }

    /// Opens the breaker now (an operator's override).
    pub fn trip(&self, now: Instant) {
        let transition = self.lock().trip(now);
        self.report(transition);
    }

    /// Closes the breaker now and clears its window.
    pub fn reset(&self, now: Instant) {
        let transition = self.lock().reset(now);
        self.report(transition);
    }

    pub(crate) fn idle_since(&self, now: Instant) -> Duration {
        let last =
            self.shared.epoch + Duration::from_nanos(self.shared.last_used.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }

    /// Whether anyone but the caller's own reference (e.g. a registry's map) holds this breaker.
    pub(crate) fn is_shared(&self) -> bool {
        Arc::strong_count(&self.shared) > 1
    }

    fn touch(&self, now: Instant) {
        let nanos = now.saturating_duration_since(self.shared.epoch).as_nanos();
        self.shared
            .last_used
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, BreakerCore> {
        // The core holds no invariant a panic elsewhere could break half-way: keep going.
        self.shared
            .core
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn report(&self, transition: Option<Transition>) {
        let Some(Transition { from, to }) = transition else {
            return;
        };
        let labels = &self.shared.labels;
        self.shared.metrics.transition(to);
        let (target_name, model, region) = (
            labels.target_name().unwrap_or(""),
            labels.model_name().unwrap_or(""),
            labels.region_name().unwrap_or(""),
        );
        if to == State::Open {
            tracing::warn!(
                target_name,
                model,
                region,
                from = from.as_str(),
                to = to.as_str(),
                "circuit breaker opened"
            );
        } else {
            tracing::info!(
                target_name,
                model,
                region,
                from = from.as_str(),
                to = to.as_str(),
                "circuit breaker state changed"
            );
        }
    }
}

impl fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("labels", &self.shared.labels)
            .field("state", &self.state())
            .finish()
    }
}

/// A permit from a [`BreakerHandle`]: record the outcome with it, or drop it to abandon the call.
#[must_use = "dropping a permit abandons the call; record its outcome instead"]
pub struct BreakerPermit {
    breaker: BreakerHandle,
    permit: Option<Permit>,
}

impl BreakerPermit {
    /// Records the outcome of the call, `latency` after it started.
    pub fn record(mut self, outcome: Outcome, latency: Duration, now: Instant) {
        if let Some(permit) = self.permit.take() {
            let transition = self.breaker.lock().record(permit, outcome, latency, now);
            self.breaker.report(transition);
        }
    }

    /// Whether this is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.permit.as_ref().is_some_and(Permit::is_probe)
    }

    /// The breaker this permit came from.
    pub fn breaker(&self) -> &BreakerHandle {
        &self.breaker
    }
}

impl Drop for BreakerPermit {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.lock().release(permit);
        }
    }
}

impl fmt::Debug for BreakerPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("labels", self.breaker.labels())
            .field("probe", &self.is_probe())
            .finish()
    }
}

/// The breaker's metric handles, registered once per breaker.
struct BreakerMetrics {
    state: crate::observe::Gauge,
    /// Indexed by [`State::index`].
    transitions: CounterSet<3>,
}

impl BreakerMetrics {
    fn register(labels: &Labels) -> Self {
        use crate::observe::{keys, names};
        BreakerMetrics {
            state: crate::observe::Gauge::register(names::BREAKER_STATE, labels),
            transitions: CounterSet::register(
                names::BREAKER_TRANSITIONS,
                labels,
                keys::TO,
                [State::Closed, State::HalfOpen, State::Open].map(|to| to.as_str()),
            ),
        }
    }

    fn state(&self, state: State) {
        self.state.set(state.gauge_value());
    }

    fn transition(&self, to: State) {
        self.state(to);
        self.transitions.increment(to.index());
    }
}
