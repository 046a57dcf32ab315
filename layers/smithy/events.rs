//! Where an SDK call's attempts report: the metric handles of each label set, created the
//! first time the label set is seen and capped at [`MAX_LABEL_SETS`] sets per adapter.

use std::sync::Arc;

use super::Shared;
use crate::Outcome;
use crate::admission::{AdmissionMetrics, QuotaStore};
use crate::fallback::served_counter;
use crate::observe::{CounterSet, Labels};
use crate::retry::RetryMetrics;

impl<S: QuotaStore<Arc<str>> + 'static> Shared<S> {
    /// The metric handles of `labels`, registered the first time they are seen (as the Tower
    /// layers register theirs when they are built); `target` is the route index, whose
    /// `headroom_fallback_total` is `degraded` for every target but the first.
    ///
    /// At most [`MAX_LABEL_SETS`] label sets get their own series (every model id, table and
    /// region a client calls is one); the calls beyond report under the target label
    /// [`OVERFLOW_TARGET`], so that no client can grow the metrics without bound.
    pub(super) fn events(&self, target: Option<usize>, labels: Labels) -> Arc<Events> {
        let mut cache = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let key = (target, labels);
        let key = if cache.len() >= MAX_LABEL_SETS && !cache.contains_key(&key) {
            let overflow = (None, Labels::target(OVERFLOW_TARGET));
            if !cache.contains_key(&overflow) {
                tracing::warn!(
                    target: "tower_headroom::smithy",
                    max = MAX_LABEL_SETS,
                    "more label sets than the metrics keep apart; the rest report as target={OVERFLOW_TARGET}"
                );
            }
            overflow
        } else {
            key
        };
        let entry = cache.entry(key).or_insert_with_key(|(target, labels)| {
            Arc::new(Events {
                retry: RetryMetrics::register(labels),
                admission: AdmissionMetrics::register(labels),
                served: target.map(|index| served_counter(labels, index != 0)),
                tokens: crate::observe::TokenCounters::new(labels),
                labels: labels.clone(),
            })
        });
        Arc::clone(entry)
    }
}

pub(crate) use crate::observe::{MAX_LABEL_SETS, OVERFLOW_TARGET};

/// Where an attempt reports: the metric vocabulary of the Tower layers (the retry layer's, the
/// admission layer's, the router's `headroom_fallback_total`), registered once per labels.
pub(crate) struct Events {
    pub(crate) labels: Labels,
    pub(crate) retry: RetryMetrics,
    pub(crate) admission: AdmissionMetrics,
    pub(crate) served: Option<CounterSet<1>>,
    pub(crate) tokens: crate::observe::TokenCounters,
}

impl Events {
    /// A streamed response's stream said how its call ended, after the attempt had ended at its
    /// `200`: reports the key's limit when settling may have moved it (as the admission layer
    /// does), and counts a stream that broke under its class in `headroom_attempts_total` (its
    /// `200` was counted as a success then).
    #[cfg_attr(not(feature = "bedrock"), allow(dead_code))]
    pub(crate) fn stream_ended(&self, outcome: &Outcome, limit: Option<u64>) {
        if !outcome.is_success() {
            self.retry.attempt(outcome);
        }
        if let Some(limit) = limit {
            self.admission.settled(&self.labels, outcome, limit);
        }
    }
}
