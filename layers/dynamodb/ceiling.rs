//! The per-key ceiling: one partition key value never gets more than DynamoDB's partition
//! maximum per second, and the client's own hot-key report.
//!
//! DynamoDB serves one partition key at most 3,000 RCU and 1,000 WCU per second, whatever
//! the table's capacity ("every partition in a DynamoDB table is designed to deliver a maximum
//! capacity of 3,000 read units per second and 1,000 write units per second",
//! [partition key design](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html);
//! reads and writes apart, [burst and adaptive capacity](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/burst-adaptive-capacity.html)),
//! and answers a key over it with a `*KeyRangeThroughputExceeded` throttling reason
//! ([ThrottlingReason](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html)).
//! Slowing the whole table for one key starves every other key, so [`PartitionCeiling`] gives
//! a budget of its own only to keys it has seen hot:
//!
//! - every attempt is [recorded](PartitionCeiling::record) in a [`HotKeys`] per table key
//!   (`"orders:write"`), which is also the [report](PartitionCeiling::report);
//! - a key whose units in the current second pass a share of the partition maximum
//!   ([`PartitionCeilingBuilder::hot_share`], default 0.5) — counting only what the report's
//!   bounded summary can vouch for, so that a cold key never passes for hot on a count it
//!   inherited (a key sending steadily is tracked from its first attempt of the second) —
//!   or that DynamoDB throttled with a key-range reason, is *hot* for [`PartitionCeilingBuilder::hold`] (default 60 s, renewed
//!   while it stays hot); at most [`PartitionCeilingBuilder::max_hot`] keys are hot at once;
//! - an attempt on a hot key [reserves](PartitionCeiling::admit) its units on that key's own
//!   per-second bucket at the partition maximum (writes: 1,000 WCU; reads: 3,000 RCU, which
//!   are 6,000 of a read key's [half units](super#units)), in an in-memory [`Quota`] keyed by
//!   (table key, [`KeyId`]) that evicts a key once it is idle for the hold; a cold key
//!   reserves nothing;
//! - a key-range throttle teaches only that key's bucket (its learned limit shrinks); a table
//!   throttle teaches it nothing (the table's own quota learns from it).
//!
//! Key values are customer data: the ceiling keeps only their salted hashes ([`KeyId`]), and
//! shows values only where the [`HotKeys`] report was asked to ([`PartitionCeilingBuilder::show_keys`]).
//!
//! The Tower adapter is [`PartitionCeilingLayer`](super::PartitionCeilingLayer); the AWS SDK
//! adapter drives the ceiling itself once told each table's partition key attribute
//! (`SdkHeadroom::configure_dynamodb_ceiling`, feature `dynamodb`), waiting per attempt with
//! [`admit_id`](PartitionCeiling::admit_id) and the call's deadline.
//!
//! ```
//! use tokio::time::Instant;
//! use tower_headroom::Outcome;
//! use tower_headroom::dynamodb::{Access, PartitionCeiling};
//!
//! let ceiling = PartitionCeiling::builder().build()?;
//! let now = Instant::now();
//! // 510 WCU of one key in a second: past half of its 1,000 WCU maximum, so it is hot.
//! for _ in 0..17 {
//!     let ticket = ceiling.admit("orders", Access::Write, b"order#hot", 30, now)?;
//!     assert!(!ticket.is_hot());
//!     ceiling.record(ticket, &Outcome::SUCCESS, now);
//! }
//! let ticket = ceiling.admit("orders", Access::Write, b"order#hot", 30, now)?;
//! assert!(ticket.is_hot());
//! let report = ceiling.report("orders", Access::Write, now).unwrap();
//! assert_eq!(report.by_units()[0].id, ceiling.id(b"order#hot"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::{Access, HALF_UNITS_PER_RCU};
use crate::admission::{Ask, Cost, Grant, Limit, MemorySlot, Quota, Rejected, Reservation, Usage};
use crate::error::ConfigError;
use crate::hot_keys::{HotKeyReport, HotKeys, KeyId};
use crate::{Outcome, OutcomeKind, ThrottleLimit, ThrottleScope};

/// DynamoDB's partition maximum of write capacity units per second.
pub const PARTITION_MAX_WCU: u64 = 1_000;
/// DynamoDB's partition maximum of read capacity units per second.
pub const PARTITION_MAX_RCU: u64 = 3_000;
/// The most table keys (`"orders:write"`) a ceiling tracks; attempts on more go untracked.
pub const MAX_STREAMS: usize = 1_024;

/// The partition maximum in a key's units per second: 1,000 for writes, 6,000 half units
/// (3,000 RCU) for reads.
pub const fn partition_max(access: Access) -> u64 {
    match access {
        Access::Write => PARTITION_MAX_WCU,
        Access::Read => PARTITION_MAX_RCU * HALF_UNITS_PER_RCU,
    }
}

/// What a hot key's one-second bucket is asked for an attempt of `units`: at most the whole
/// bucket. One call may ask more than the key's second (25 items of 100 KB on one key): it
/// waits for a full bucket rather than never fitting, and DynamoDB then serves what the
/// partition can and returns the rest unprocessed.
fn budget_units(units: u64, access: Access) -> u64 {
    units.min(partition_max(access))
}

/// Builds a [`PartitionCeiling`]; see [the module docs](self).
#[derive(Clone)]
#[must_use]
pub struct PartitionCeilingBuilder {
    hot_share: f64,
    hold: Duration,
    max_hot: usize,
    window: Duration,
    show_keys: bool,
    metrics: bool,
    salt: Option<u64>,
}

impl PartitionCeilingBuilder {
    /// The share of the partition maximum a key's second must reach for the key to get a
    /// budget (default 0.5; above 0, at most 1). Also the reports' warning share.
    pub fn hot_share(mut self, share: f64) -> Self {
        self.hot_share = share;
        self
    }

    /// How long a key stays hot after it last passed the share or was throttled (default
    /// 60 s, at least 1 s); its budget is evicted once it has been idle that long.
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }

    /// The most keys with a budget at once (default 10,000; 1 to 1,000,000); a key found hot
    /// beyond it goes without one.
    pub fn max_hot(mut self, keys: usize) -> Self {
        self.max_hot = keys;
        self
    }

    /// The reports' trailing window (default 60 s, see [`HotKeysBuilder::window`](crate::hot_keys::HotKeysBuilder::window)).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Keep key values in the reports and warnings (default off: hashes only).
    pub fn show_keys(mut self, show: bool) -> Self {
        self.show_keys = show;
        self
    }

    /// The reports' gauges (default on with the `metrics` feature, see
    /// [`HotKeysBuilder::metrics`](crate::hot_keys::HotKeysBuilder::metrics)).
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// The salt of key hashes (default: random per ceiling).
    pub fn salt(mut self, salt: u64) -> Self {
        self.salt = Some(salt);
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<PartitionCeiling, ConfigError> {
        if !(self.hot_share > 0.0 && self.hot_share <= 1.0) {
            return Err(ConfigError::new(
                "hot_share",
                self.hot_share,
                "must be above 0 and at most 1",
            ));
        }
        if self.hold < Duration::from_secs(1) {
            return Err(ConfigError::new("hold", self.hold, "must be at least 1 s"));
        }
        if self.max_hot == 0 || self.max_hot > 1_000_000 {
            return Err(ConfigError::new(
                "max_hot",
                self.max_hot,
                "must be from 1 to 1,000,000 keys",
            ));
        }
        // Validate the reports' settings once, on a throwaway tracker.
        HotKeys::builder("check")
            .window(self.window)
            .warn_share(self.hot_share)
            .build()?;
        let limit = |access: Access| {
            Limit::per_second()
                .units(partition_max(access))
                .burst(Duration::from_secs(1))
                .initial_credit(Duration::ZERO)
                .build()
        };
        let quota = Quota::builder(limit(Access::Write)?)
            .idle_timeout(self.hold)
            .build();
        let read_quota = Quota::builder(limit(Access::Read)?)
            .idle_timeout(self.hold)
            .build();
        let salt = self.salt.unwrap_or_else(|| {
            let mut h = std::hash::RandomState::new().build_hasher();
            h.write_u64(0);
            h.finish()
        });
        Ok(PartitionCeiling {
            writes: quota,
            reads: read_quota,
            inner: Mutex::new(Inner::default()),
            salt,
            settings: self,
        })
    }
}

/// The per-key ceiling and hot-key report of a client's DynamoDB traffic; see
/// [the module docs](self).
pub struct PartitionCeiling {
    writes: Quota<(Arc<str>, KeyId)>,
    reads: Quota<(Arc<str>, KeyId)>,
    inner: Mutex<Inner>,
    /// The hash salt: the builder's, or a random one.
    salt: u64,
    /// What it was built with (validated).
    settings: PartitionCeilingBuilder,
}

/// The settings, without the salt's value: with it, a reader of the hashed key ids in logs
/// could test guesses at low-entropy keys.
impl std::fmt::Debug for PartitionCeilingBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionCeilingBuilder")
            .field("hot_share", &self.hot_share)
            .field("hold", &self.hold)
            .field("max_hot", &self.max_hot)
            .field("window", &self.window)
            .field("show_keys", &self.show_keys)
            .field("metrics", &self.metrics)
            .field("salt", &self.salt.map(|_| "set"))
            .finish()
    }
}

/// Its settings and how many keys are hot; never the salt or a key.
impl std::fmt::Debug for PartitionCeiling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hot = self.inner.lock().map_or(0, |inner| inner.hot.len());
        f.debug_struct("PartitionCeiling")
            .field("settings", &self.settings)
            .field("hot_keys", &hot)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Per table, its writes' and its reads' tracker ([`Access::index`]), looked up by the
    /// table's name so that an attempt allocates nothing.
    streams: HashMap<Box<str>, [Option<Stream>; 2]>,
    /// How many trackers `streams` holds.
    stream_count: usize,
    /// Hot keys and when they last were.
    hot: HashMap<(Arc<str>, KeyId), Instant>,
}

/// One table key's tracker, with the key (`"orders:write"`) its tickets carry.
#[derive(Clone, Debug)]
struct Stream {
    key: Arc<str>,
    hot_keys: Arc<HotKeys>,
}

/// One attempt as the ceiling admitted it: [`record`](PartitionCeiling::record) it with the
/// attempt's outcome (dropping it gives a hot key's units back).
#[derive(Debug)]
pub struct CeilingTicket {
    stream: Option<Arc<HotKeys>>,
    stream_key: Arc<str>,
    access: Access,
    id: KeyId,
    units: u64,
    reservation: Option<Reservation<Arc<MemorySlot>>>,
}

impl CeilingTicket {
    /// Whether the key is hot, and the attempt reserved on its own budget.
    pub fn is_hot(&self) -> bool {
        self.reservation.is_some()
    }

    /// When the attempt may be sent: now, or at an instant (a hot key over its maximum).
    pub fn grant(&self) -> Grant {
        self.reservation
            .as_ref()
            .map_or(Grant::Now, Reservation::grant)
    }

    /// The key's hash.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Waits until the hot key's budget admits the attempt (at once for a cold key), or fails
    /// when the wait would pass the deadline in scope (or the priority's default wait).
    pub async fn ready(&mut self) -> Result<(), Rejected> {
        let Some(reservation) = self.reservation.as_mut() else {
            return Ok(());
        };
        loop {
            match reservation.grant() {
                Grant::Now => return Ok(()),
                Grant::At(at) => {
                    let mut sleep = std::pin::pin!(tokio::time::sleep_until(at));
                    std::future::poll_fn(|cx| {
                        if sleep.as_mut().poll(cx).is_ready() {
                            return std::task::Poll::Ready(());
                        }
                        reservation.poll_wake(cx)
                    })
                    .await;
                    if let Err(rejected) = reservation.confirm(Instant::now()) {
                        self.reservation = None;
                        return Err(rejected);
                    }
                }
            }
        }
    }
}

impl PartitionCeiling {
    /// A builder with the defaults of [the module docs](self).
    pub fn builder() -> PartitionCeilingBuilder {
        PartitionCeilingBuilder {
            hot_share: 0.5,
            hold: Duration::from_secs(60),
            max_hot: 10_000,
            window: Duration::from_secs(60),
            show_keys: false,
            metrics: true,
            salt: None,
        }
    }

    /// The hash a partition key value is known by, in tickets and reports.
    pub fn id(&self, partition_key: &[u8]) -> KeyId {
        let mut h = std::hash::DefaultHasher::new();
        h.write_u64(self.salt);
        h.write(partition_key);
        KeyId(h.finish())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The maps hold no invariant a panicking holder could break.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn quota(&self, access: Access) -> &Quota<(Arc<str>, KeyId)> {
        match access {
            Access::Write => &self.writes,
            Access::Read => &self.reads,
        }
    }

    /// Admits an attempt of `units` (WCU, or a read key's half units) on `partition_key` of
    /// `table` (its name or its ARN, [`table_name`](super::table_name)) at `now`: a cold key reserves nothing, a hot key its units on its own bucket
    /// (see [`CeilingTicket::grant`]). Fails only when a hot key's wait would pass the
    /// deadline in scope.
    pub fn admit(
        &self,
        table: &str,
        access: Access,
        partition_key: &[u8],
        units: u64,
        now: Instant,
    ) -> Result<CeilingTicket, Rejected> {
        let ask = Ask::new(Cost::units(units));
        self.admit_id(table, access, self.id(partition_key), ask, now)
    }

    /// [`admit`](Self::admit) of a key known by its hash ([`id`](Self::id)), with `ask`'s
    /// cost (its units) and deadline: what an adapter calls when it hashed the key as soon as
    /// it read it and bounds the wait by the call's own deadline.
    pub fn admit_id(
        &self,
        table: &str,
        access: Access,
        id: KeyId,
        ask: Ask,
        now: Instant,
    ) -> Result<CeilingTicket, Rejected> {
        let table = super::table_name(table);
        let units = ask.cost.units;
        let (stream, stream_key, hot) = {
            let mut inner = self.lock();
            let (stream, stream_key) = match self.stream(&mut inner, table, access) {
                Some(Stream { key, hot_keys }) => (Some(hot_keys), key),
                // Past MAX_STREAMS: untracked, and rare enough to name the key afresh.
                None => (None, Arc::from(super::key(table, access))),
            };
            let key = (stream_key, id);
            let hot = match inner.hot.get(&key) {
                Some(&at) if now.saturating_duration_since(at) < self.settings.hold => true,
                Some(_) => {
                    inner.hot.remove(&key);
                    false
                }
                None => false,
            };
            (stream, key.0, hot)
        };
        let reservation = if hot {
            let key = (Arc::clone(&stream_key), id);
            let ask = Ask {
                cost: Cost::units(budget_units(units, access)),
                ..ask
            };
            Some(self.quota(access).reserve_ask(&key, &ask, now)?)
        } else {
            None
        };
        Ok(CeilingTicket {
            stream,
            stream_key,
            access,
            id,
            units,
            reservation,
        })
    }

    /// The tracker of `table`'s `access`, created on first use (none past [`MAX_STREAMS`]).
    fn stream(&self, inner: &mut Inner, table: &str, access: Access) -> Option<Stream> {
        if let Some(s) = inner
            .streams
            .get(table)
            .and_then(|s| s[access.index()].as_ref())
        {
            return Some(s.clone());
        }
        if inner.stream_count >= MAX_STREAMS {
            return None;
        }
        let name = super::key(table, access);
        let builder = HotKeys::builder(name.clone())
            .partition_max(partition_max(access))
            .window(self.settings.window)
            .warn_share(self.settings.hot_share)
            .show_keys(self.settings.show_keys)
            .metrics(self.settings.metrics)
            .salt(self.salt);
        let stream = Stream {
            key: Arc::from(name),
            hot_keys: Arc::new(builder.build().ok()?),
        };
        let slots = inner.streams.entry(Box::from(table)).or_default();
        slots[access.index()] = Some(stream.clone());
        inner.stream_count += 1;
        Some(stream)
    }

    /// Records an attempt's outcome: into the report, and into the key's budget (a hot key's
    /// units spent on success and on a fatal answer — a failed condition check consumes
    /// capacity — given back on a throttle or a transient failure; a key-range throttle
    /// shrinks only this key's learned limit and makes the key hot).
    pub fn record(&self, ticket: CeilingTicket, outcome: &Outcome, now: Instant) {
        self.record_key(ticket, None, outcome, now);
    }

    /// [`record`](Self::record), with the key's value (the one the ticket was admitted for)
    /// for a report that shows keys ([`PartitionCeilingBuilder::show_keys`]).
    pub fn record_with_key(
        &self,
        ticket: CeilingTicket,
        partition_key: &[u8],
        outcome: &Outcome,
        now: Instant,
    ) {
        self.record_key(ticket, Some(partition_key), outcome, now);
    }

    fn record_key(
        &self,
        ticket: CeilingTicket,
        partition_key: Option<&[u8]>,
        outcome: &Outcome,
        now: Instant,
    ) {
        let key_range = outcome.kind == OutcomeKind::Throttled(ThrottleScope::Partition)
            || outcome
                .reason
                .is_some_and(|r| r.limit == ThrottleLimit::KeyRange && !outcome.is_success());
        let throttled = matches!(outcome.kind, OutcomeKind::Throttled(_));
        let CeilingTicket {
            stream,
            stream_key,
            access,
            id,
            units,
            reservation,
        } = ticket;
        let budget_units = budget_units(units, access);
        if let Some(reservation) = reservation {
            if key_range {
                // The key's own budget was wrong: it learns, as a table's budget learns from
                // a table throttle.
                let _ = reservation.finish(
                    &Outcome::throttled(ThrottleScope::Capacity),
                    Usage::units(budget_units),
                    now,
                );
            } else if outcome.is_success() || outcome.kind == OutcomeKind::Fatal {
                // A refused request can still have spent its units: a conditional write whose
                // condition fails consumes write capacity
                // (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html).
                // Counting every fatal answer as spent errs toward the maximum.
                reservation.settle(Usage::units(budget_units), now);
            } else {
                reservation.release_unsent(now);
            }
        }
        let Some(stream) = stream else { return };
        let second_units = stream.record_id(id, partition_key, units, throttled, now);
        let hot = key_range
            || second_units as f64 >= self.settings.hot_share * partition_max(access) as f64;
        if hot {
            let mut inner = self.lock();
            let key = (stream_key, id);
            if !inner.hot.contains_key(&key) && inner.hot.len() >= self.settings.max_hot {
                let hold = self.settings.hold;
                inner
                    .hot
                    .retain(|_, at| now.saturating_duration_since(*at) < hold);
            }
            if inner.hot.contains_key(&key) || inner.hot.len() < self.settings.max_hot {
                inner.hot.insert(key, now);
            }
        }
    }

    /// The hot-key report of `table`'s reads or writes over the window ending at `now` (reads
    /// in half RCUs), `None` before any attempt on them. `table` is its name or its ARN
    /// ([`table_name`](super::table_name)): both name the same report.
    pub fn report(&self, table: &str, access: Access, now: Instant) -> Option<HotKeyReport> {
        let table = super::table_name(table);
        let stream = self
            .lock()
            .streams
            .get(table)
            .and_then(|s| s[access.index()].as_ref())
            .map(|s| Arc::clone(&s.hot_keys));
        stream.map(|s| s.report(now))
    }

    /// How many keys are hot (have a budget) at `now`; expired ones are forgotten.
    pub fn hot_keys(&self, now: Instant) -> usize {
        let hold = self.settings.hold;
        let mut inner = self.lock();
        inner
            .hot
            .retain(|_, at| now.saturating_duration_since(*at) < hold);
        inner.hot.len()
    }

    /// Keys with budget state in the per-key quotas (idle ones are evicted at `now`).
    pub fn budgets(&self, now: Instant) -> usize {
        self.writes.evict_idle(now);
        self.reads.evict_idle(now);
        self.writes.keys() + self.reads.keys()
    }
}

#[cfg(test)]
#[path = "ceiling_tests.rs"]
mod tests;
