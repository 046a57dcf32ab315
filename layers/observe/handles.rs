//! Metric handles that reach a recorder installed after they were built.
//!
//! `metrics` hands out a handle when a series is registered, bound to the recorder current at
//! that moment; a handle registered while no recorder is installed is a no-op forever. The
//! layers register theirs when they are built, so without more a layer built before
//! `metrics::set_global_recorder` would stay silently unmetered.
//!
//! Each handle group here is registered when it is built if a recorder is current then (a
//! global one, or a local one of `metrics::with_local_recorder`), else on its first use after
//! one is: [`Lazy::get`] is one atomic load once registered (a `OnceLock`), and while no
//! recorder exists one read of `metrics`' recorder slot (`metrics::with_recorder`: a
//! thread-local and an atomic load), without registering or allocating anything.
//!
//! `metrics` 0.24 does not say whether a recorder is installed (`with_recorder` hands the
//! global recorder, a local one, or its private no-op recorder alike); its no-op recorder is a
//! zero-sized type, and every real recorder holds state, so a zero-sized current recorder is
//! taken for "none yet". A recorder that is itself zero-sized is therefore never used by these
//! handles (source: `metrics-0.24.6/src/recorder/mod.rs`, `with_recorder` and `NoopRecorder`).
//!
//! A gauge set before the recorder was installed is not replayed: its series appears at the
//! next change.

#[cfg(feature = "metrics")]
use std::sync::{Arc, OnceLock};

use super::Labels;

/// Whether a `metrics` recorder is current on this thread (a local one, or the global one).
#[cfg(feature = "metrics")]
pub(crate) fn recorder_installed() -> bool {
    metrics::with_recorder(|recorder| std::mem::size_of_val(recorder) != 0)
}

/// A group of metric handles of one label set, registered once a recorder exists.
#[cfg(feature = "metrics")]
pub(crate) struct Lazy<H> {
    inner: Arc<LazyInner<H>>,
}

#[cfg(feature = "metrics")]
type Register<H> = Box<dyn Fn(&Labels) -> H + Send + Sync>;

#[cfg(feature = "metrics")]
struct LazyInner<H> {
    handles: OnceLock<H>,
    labels: Labels,
    register: Register<H>,
}

#[cfg(feature = "metrics")]
impl<H> Clone for Lazy<H> {
    fn clone(&self) -> Self {
        Lazy {
            inner: Arc::clone(&self.inner),
        }
    }
}

#[cfg(feature = "metrics")]
impl<H> Lazy<H> {
    /// Handles of `labels` made by `register`: registered now when a recorder is current,
    /// else on the first [`get`](Self::get) after one is.
    pub(crate) fn new(
        labels: &Labels,
        register: impl Fn(&Labels) -> H + Send + Sync + 'static,
    ) -> Self {
        let lazy = Self::on_first_use(labels, register);
        let _ = lazy.get();
        lazy
    }

    /// Handles of `labels` made by `register` the first time they are used with a recorder
    /// current: no series until then (for metrics only some targets ever report).
    pub(crate) fn on_first_use(
        labels: &Labels,
        register: impl Fn(&Labels) -> H + Send + Sync + 'static,
    ) -> Self {
        Lazy {
            inner: Arc::new(LazyInner {
                handles: OnceLock::new(),
                labels: labels.clone(),
                register: Box::new(register),
            }),
        }
    }

    /// Whether the handles are registered (one atomic load).
    #[inline]
    pub(crate) fn registered(&self) -> bool {
        self.inner.handles.get().is_some()
    }

    /// The handles, once a recorder exists.
    #[inline]
    pub(crate) fn get(&self) -> Option<&H> {
        match self.inner.handles.get() {
            Some(handles) => Some(handles),
            None => self.resolve(),
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve(&self) -> Option<&H> {
        if !recorder_installed() {
            return None;
        }
        let inner = &*self.inner;
        Some(
            inner
                .handles
                .get_or_init(|| (inner.register)(&inner.labels)),
        )
    }
}

/// A counter of one label set.
#[derive(Clone)]
pub(crate) struct Counter {
    #[cfg(feature = "metrics")]
    lazy: Lazy<metrics::Counter>,
}

impl Counter {
    /// `name` under `labels` and the `extra` fixed labels.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn register(
        name: &'static str,
        labels: &Labels,
        extra: &'static [(&'static str, &'static str)],
    ) -> Self {
        Counter {
            #[cfg(feature = "metrics")]
            lazy: Lazy::new(labels, move |labels| {
                metrics::counter!(name, labels.metric_labels(extra))
            }),
        }
    }

    /// Adds `n`.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn increment(&self, n: u64) {
        #[cfg(feature = "metrics")]
        if let Some(counter) = self.lazy.get() {
            counter.increment(n);
        }
    }
}

/// A gauge of one label set.
#[derive(Clone)]
pub(crate) struct Gauge {
    #[cfg(feature = "metrics")]
    lazy: Lazy<metrics::Gauge>,
}

impl Gauge {
    /// `name` under `labels`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn register(name: &'static str, labels: &Labels) -> Self {
        Gauge {
            #[cfg(feature = "metrics")]
            lazy: Lazy::new(labels, move |labels| {
                metrics::gauge!(name, labels.metric_labels(&[]))
            }),
        }
    }

    /// `name` under `labels` and the `extra` fixed labels, registered the first time it is
    /// used with a recorder current (no series before: for gauges only some keys report).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn on_first_use(
        name: &'static str,
        labels: &Labels,
        extra: &'static [(&'static str, &'static str)],
    ) -> Self {
        Gauge {
            #[cfg(feature = "metrics")]
            lazy: Lazy::on_first_use(labels, move |labels| {
                metrics::gauge!(name, labels.metric_labels(extra))
            }),
        }
    }

    /// Whether a recorder receives this gauge (registering it if one was installed since).
    #[inline]
    pub(crate) fn live(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.lazy.get().is_some();
        #[cfg(not(feature = "metrics"))]
        false
    }

    /// Sets the value.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn set(&self, value: f64) {
        #[cfg(feature = "metrics")]
        if let Some(gauge) = self.lazy.get() {
            gauge.set(value);
        }
    }
}

/// A histogram of one label set.
#[derive(Clone)]
pub(crate) struct Histogram {
    #[cfg(feature = "metrics")]
    lazy: Lazy<metrics::Histogram>,
}

impl Histogram {
    /// `name` under `labels`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn register(name: &'static str, labels: &Labels) -> Self {
        Histogram {
            #[cfg(feature = "metrics")]
            lazy: Lazy::new(labels, move |labels| {
                metrics::histogram!(name, labels.metric_labels(&[]))
            }),
        }
    }

    /// Records `value`.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn record(&self, value: f64) {
        #[cfg(feature = "metrics")]
        if let Some(histogram) = self.lazy.get() {
            histogram.record(value);
        }
    }
}

macro_rules! debug_as_name {
    ($($ty:ident),*) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(stringify!($ty))
            }
        }
    )*};
}
debug_as_name!(Counter, Gauge, Histogram);

/// Per-outcome-class counters of one label set.
#[derive(Clone, Debug)]
pub(crate) struct ClassCounters(CounterSet<{ crate::OutcomeKind::ALL.len() }>);

impl ClassCounters {
    /// `name` once per outcome class under `labels`.
    pub(crate) fn register(name: &'static str, labels: &Labels) -> Self {
        ClassCounters(CounterSet::register(
            name,
            labels,
            super::keys::CLASS,
            crate::OutcomeKind::ALL.map(|kind| kind.as_str()),
        ))
    }

    /// Adds one to the counter of `kind`.
    #[inline]
    pub(crate) fn increment(&self, kind: crate::OutcomeKind) {
        self.0.increment(kind.index());
    }

    /// Whether the counters are registered with a recorder (see [`super::recording`]).
    #[inline]
    pub(crate) fn registered(&self) -> bool {
        self.0.registered()
    }
}

/// Counters of one label set, one per value of one extra label (a fixed enumeration).
#[derive(Clone)]
pub(crate) struct CounterSet<const N: usize> {
    #[cfg(feature = "metrics")]
    lazy: Lazy<[metrics::Counter; N]>,
}

impl<const N: usize> CounterSet<N> {
    /// `name` once per value of `key` under `labels`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn register(
        name: &'static str,
        labels: &Labels,
        key: &'static str,
        values: [&'static str; N],
    ) -> Self {
        CounterSet {
            #[cfg(feature = "metrics")]
            lazy: Lazy::new(labels, move |labels| {
                values.map(|value| metrics::counter!(name, labels.metric_labels(&[(key, value)])))
            }),
        }
    }

    /// Adds one to the counter of the `index`-th value.
    #[inline]
    pub(crate) fn increment(&self, index: usize) {
        self.add(index, 1);
    }

    /// Whether the counters are registered with a recorder (see [`super::recording`]).
    #[inline]
    pub(crate) fn registered(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.lazy.registered();
        #[cfg(not(feature = "metrics"))]
        false
    }

    /// Adds `n` to the counter of the `index`-th value.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn add(&self, index: usize, n: u64) {
        #[cfg(feature = "metrics")]
        if let Some(counters) = self.lazy.get() {
            counters[index].increment(n);
        }
    }
}

impl<const N: usize> std::fmt::Debug for CounterSet<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CounterSet")
    }
}

/// Per-outcome-class histograms of one label set.
#[derive(Clone)]
pub(crate) struct ClassHistograms {
    #[cfg(feature = "metrics")]
    lazy: Lazy<[metrics::Histogram; crate::OutcomeKind::ALL.len()]>,
}

impl ClassHistograms {
    /// `name` once per outcome class under `labels`.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn register(name: &'static str, labels: &Labels) -> Self {
        ClassHistograms {
            #[cfg(feature = "metrics")]
            lazy: Lazy::new(labels, move |labels| {
                crate::OutcomeKind::ALL.map(|kind| {
                    metrics::histogram!(
                        name,
                        labels.metric_labels(&[(super::keys::CLASS, kind.as_str())])
                    )
                })
            }),
        }
    }

    /// Records the seconds from `start` to `end` for `kind`, computed only when a recorder
    /// listens.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn record_since(
        &self,
        kind: crate::OutcomeKind,
        start: tokio::time::Instant,
        end: tokio::time::Instant,
    ) {
        #[cfg(feature = "metrics")]
        if let Some(histograms) = self.lazy.get() {
            histograms[kind.index()].record(end.saturating_duration_since(start).as_secs_f64());
        }
    }

    /// Records `value` for `kind`.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn record(&self, kind: crate::OutcomeKind, value: f64) {
        #[cfg(feature = "metrics")]
        if let Some(histograms) = self.lazy.get() {
            histograms[kind.index()].record(value);
        }
    }
}

impl std::fmt::Debug for ClassHistograms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClassHistograms")
    }
}

/// The token counters of one label set, `headroom_tokens_total` by `type` (`input`, `output`,
/// `cache_read`, `cache_write`): registered on the first count, so that targets that never
/// report tokens (a DynamoDB table) have no series.
///
/// The stack keeps one per target and the admission layer one for its labels; either hands its
/// counters to a streamed answer's [`Settlement`](crate::admission::Settlement), which counts
/// the tokens of the stream's usage event when it arrives. Cheap to clone (the clones share
/// the counters).
#[derive(Clone)]
pub struct TokenCounters {
    #[cfg(feature = "metrics")]
    lazy: Lazy<[metrics::Counter; 4]>,
}

impl TokenCounters {
    /// The values of the `type` label, in the order [`add`](Self::add) counts them.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) const TYPES: [&'static str; 4] = ["input", "output", "cache_read", "cache_write"];

    /// The counters under `labels` (registered with the recorder current at the first count).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub fn new(labels: &Labels) -> Self {
        TokenCounters {
            #[cfg(feature = "metrics")]
            lazy: Lazy::on_first_use(labels, |labels| {
                Self::TYPES.map(|kind| {
                    metrics::counter!(
                        super::names::TOKENS,
                        labels.metric_labels(&[(super::keys::TYPE, kind)])
                    )
                })
            }),
        }
    }

    /// Counts what one answer reported.
    #[inline]
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub fn add(&self, counts: &crate::bedrock::TokenCounts) {
        #[cfg(feature = "metrics")]
        if let Some(counters) = self.lazy.get() {
            let values = [
                counts.input,
                counts.output,
                counts.cache_read,
                counts.cache_write,
            ];
            for (counter, value) in counters.iter().zip(values) {
                if value > 0 {
                    counter.increment(value);
                }
            }
        }
    }
}

impl std::fmt::Debug for TokenCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCounters")
    }
}
