//! The fail-open / fail-closed mode machine: what a store does while Redis cannot be reached
//! ([`FailMode`]), where it stands ([`StoreMode`]), and the changes between them, reported.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::conn::Common;
use super::slot::SlotInner;
use super::{StoreError, lock};
use crate::observe::{Labels, keys, names};

/// What a [`RedisStore`] does while Redis cannot be reached.
///
/// [`RedisStore`]: super::RedisStore
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailMode {
    /// Reject calls the current lease cannot cover ([`RejectReason::StoreUnavailable`]).
    ///
    /// [`RejectReason::StoreUnavailable`]: crate::admission::RejectReason::StoreUnavailable
    Closed,
    /// Admit calls against a local, in-process budget of `fraction` (0..=1) of the quota.
    Open {
        /// The share of the quota each process may use on its own.
        fraction: f64,
    },
}

/// Where a store stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreMode {
    /// Budget shared through Redis.
    Shared,
    /// Redis unavailable: admitting against the local fraction.
    FailingOpen,
    /// Redis unavailable: rejecting what the leases cannot cover.
    FailingClosed,
}

impl StoreMode {
    /// A short, stable name (the `to` label of the transitions metric).
    pub const fn as_str(&self) -> &'static str {
        match self {
            StoreMode::Shared => "shared",
            StoreMode::FailingOpen => "fail_open",
            StoreMode::FailingClosed => "fail_closed",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => StoreMode::FailingOpen,
            2 => StoreMode::FailingClosed,
            _ => StoreMode::Shared,
        }
    }

    fn index(self) -> usize {
        match self {
            StoreMode::Shared => 0,
            StoreMode::FailingOpen => 1,
            StoreMode::FailingClosed => 2,
        }
    }
}

pub(super) struct ModeMetrics {
    gauge: crate::observe::Gauge,
    transitions: crate::observe::CounterSet<3>,
}

impl ModeMetrics {
    pub(super) fn register(labels: &Labels) -> Self {
        ModeMetrics {
            gauge: crate::observe::Gauge::register(names::QUOTA_STORE_MODE, labels),
            transitions: crate::observe::CounterSet::register(
                names::QUOTA_STORE_TRANSITIONS,
                labels,
                keys::TO,
                [
                    StoreMode::Shared.as_str(),
                    StoreMode::FailingOpen.as_str(),
                    StoreMode::FailingClosed.as_str(),
                ],
            ),
        }
    }
}

impl Common {
    pub(super) fn mode(&self) -> StoreMode {
        StoreMode::from_u8(self.mode.load(Ordering::Acquire))
    }

    pub(super) fn set_mode(&self, to: StoreMode, error: Option<&StoreError>) {
        let from = StoreMode::from_u8(self.mode.swap(to.index() as u8, Ordering::AcqRel));
        if from == to {
            return;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics.transitions.increment(to.index());
        self.metrics.gauge.set(to.index() as f64);
        match error {
            Some(e) => tracing::warn!(
                labels = %self.labels,
                from = from.as_str(),
                to = to.as_str(),
                error = e.label(),
                "redis quota store unavailable"
            ),
            None => tracing::info!(
                labels = %self.labels,
                from = from.as_str(),
                to = to.as_str(),
                "redis quota store back"
            ),
        }
        let live: Vec<Arc<SlotInner>> = {
            let mut live = lock(&self.live);
            live.retain(|w| w.strong_count() > 0);
            live.iter().filter_map(Weak::upgrade).collect()
        };
        for slot in live {
            lock(&slot.leases).wake_all();
        }
    }

    pub(super) fn up(&self) {
        if self.mode() != StoreMode::Shared {
            self.set_mode(StoreMode::Shared, None);
        }
    }

    pub(super) fn down(&self, e: StoreError) {
        let to = match self.fail {
            FailMode::Closed => StoreMode::FailingClosed,
            FailMode::Open { .. } => StoreMode::FailingOpen,
        };
        self.set_mode(to, Some(&e));
        *lock(&self.last_error) = Some(e);
    }
}
