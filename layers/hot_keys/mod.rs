//! The heaviest partition keys of a table, in bounded memory: the client-side view of what
//! CloudWatch Contributor Insights shows for DynamoDB.
//!
//! DynamoDB serves one partition key (one item collection) at most 3,000 read and 1,000 write
//! capacity units per second, however much capacity the table has: "every partition in a
//! DynamoDB table is designed to deliver a maximum capacity of 3,000 read units per second and
//! 1,000 write units per second"
//! ([partition key design](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html);
//! reads and writes are limited apart, [burst and adaptive capacity](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/burst-adaptive-capacity.html)),
//! and adaptive capacity isolates a frequently accessed item on a partition of its own, so
//! the per-key ceiling is the one limit no table capacity cures
//! ([partition key design](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html)).
//! Contributor Insights names such keys, as a paid feature
//! ([Contributor Insights](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/contributorinsights_HowItWorks.html)).
//!
//! [`HotKeys`] tracks one stream of operations (say, a table's writes): [`record`](HotKeys::record)
//! each attempt's partition key with its capacity units and whether it was throttled;
//! [`report`](HotKeys::report) answers the heaviest keys over the trailing window, by
//! capacity or by throttles. When a key's units in one second pass a set share of the
//! partition maximum, a `tracing` warning names it once per window (target
//! `tower_headroom::hot_keys`), and, with the `metrics` feature, gauges show the top keys'
//! units per second (see [`HotKeysBuilder::metrics`]).
//!
//! ```
//! use tokio::time::Instant;
//! use tower_headroom::hot_keys::HotKeys;
//!
//! let writes = HotKeys::builder("orders:write").partition_max(1_000).build()?;
//! let now = Instant::now();
//! for i in 0..200u32 {
//!     writes.record(b"customer#42", 5, false, now);
//!     writes.record(format!("customer#{}", 1_000 + i).as_bytes(), 1, false, now);
//! }
//! let report = writes.report(now);
//! let top = &report.by_units()[0];
//! assert_eq!(top.units, 1_000);
//! assert_eq!(top.peak_share(), 1.0);
//! assert!(top.key.is_none()); // key values are customer data: shown only when asked for
//! # Ok::<(), tower_headroom::ConfigError>(())
//! ```
//!
//! [`dynamodb::PartitionCeiling`](crate::dynamodb::PartitionCeiling) keeps one per table key
//! (`orders:write`, `orders:read`), fed from every call it admits, and reads it to find the keys
//! that need a budget of their own: its [`report`](crate::dynamodb::PartitionCeiling::report) is
//! the client's view of its hot keys.
//!
//! # Key values stay out of sight
//!
//! Partition key values are customer data. By default a key is known only by a salted hash
//! ([`KeyId`], shown as `h:` and 16 hex digits, the salt random per [`HotKeys`]), in the
//! report and in warnings; metric labels carry neither (only the tracker's name and a rank);
//! [`HotKeysBuilder::show_keys`] opts in to the values themselves (in the report and warnings
//! only — never as a metric label), and
//! [`HotKeysBuilder::salt`] makes the hashes stable across processes (so two instances'
//! warnings can be matched).
//!
//! # Memory and accuracy
//!
//! Each second of the window keeps a Space-Saving summary of at most
//! [`tracked`](HotKeysBuilder::tracked) keys (Metwally, Agrawal, El Abbadi, *Efficient
//! computation of frequent and top-k elements in data streams*, 2005): a key whose units in a
//! second exceed `1 / tracked` of that second's total is always kept, its count is never
//! under-reported and over-reported by at most [`HotKey::error`]. Memory is bounded by
//! `window seconds × tracked` entries (plus the key values when shown), whatever the number of
//! distinct keys ([`HotKeys::entries`]). The warning (and the ceiling's "hot") counts only
//! what a key certainly asked for in the second (its count less [`HotKey::error`]), so a cold
//! key is never taken for a hot one; a key at the partition maximum, once tracked, gains
//! faster than the others and is kept.
//!
//! Written here rather than taken from a crate: the maintained heavy-hitter sketch
//! (Apache DataSketches' `FrequentItemsSketch`, crate `datasketches`) needs Rust 1.86, above
//! this crate's `rust-version`, and has no per-second window; the others on crates.io are
//! unmaintained or unweighted.

mod sketch;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use self::sketch::{Entry, Sketch};
use crate::ConfigError;

/// The most seconds a window may span.
pub const MAX_WINDOW: Duration = Duration::from_secs(3_600);
/// The most keys one second's summary may track.
pub const MAX_TRACKED: usize = 4_096;
/// The longest key value kept when keys are shown (DynamoDB's partition key maximum, 2,048
/// bytes); longer values are cut at a character boundary.
pub const MAX_KEY_BYTES: usize = 2_048;
/// How many of the heaviest keys the metrics show.
#[cfg(feature = "metrics")]
const METRIC_RANKS: usize = 5;

/// A partition key as the report knows it: a salted hash of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u64);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h:{:016x}", self.0)
    }
}

/// One key's traffic over the report's window.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HotKey {
    /// The key's hash.
    pub id: KeyId,
    /// The key's value, only when [`HotKeysBuilder::show_keys`] is on (lossy UTF-8).
    pub key: Option<String>,
    /// Capacity units asked for over the window, throttled attempts included.
    pub units: u64,
    /// Capacity units of attempts that were not throttled.
    pub served_units: u64,
    /// Throttled attempts over the window.
    pub throttles: u64,
    /// The most units the key asked for in one second of the window.
    pub peak_units_per_second: u64,
    /// How much `units` may over-count (zero while the key was always tracked).
    pub error: u64,
    /// The partition maximum the share is of, units per second.
    pub partition_max: u64,
}

impl HotKey {
    /// The key's busiest second as a share of the partition maximum (1.0 = at the ceiling).
    pub fn peak_share(&self) -> f64 {
        self.peak_units_per_second as f64 / self.partition_max as f64
    }
}

/// The heaviest keys over the trailing window, as [`HotKeys::report`] saw them.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct HotKeyReport {
    /// The stream's name (for example `orders:write`).
    pub name: String,
    /// The window the report covers.
    pub window: Duration,
    /// Every key any second of the window tracked, heaviest by units first.
    pub keys: Vec<HotKey>,
}

impl HotKeyReport {
    /// The keys, heaviest by capacity units first.
    pub fn by_units(&self) -> &[HotKey] {
        &self.keys
    }

    /// The keys with throttles, most throttled first.
    pub fn by_throttles(&self) -> Vec<&HotKey> {
        let mut keys: Vec<&HotKey> = self.keys.iter().filter(|k| k.throttles > 0).collect();
        keys.sort_by(|a, b| b.throttles.cmp(&a.throttles).then(b.units.cmp(&a.units)));
        keys
    }
}

/// Builds a [`HotKeys`]; see [the module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct HotKeysBuilder {
    name: String,
    partition_max: u64,
    window: Duration,
    tracked: usize,
    warn_share: f64,
    show_keys: bool,
    salt: Option<u64>,
    metrics: bool,
}

impl HotKeysBuilder {
    /// The partition maximum in capacity units per second (default 1,000: DynamoDB's WCU per
    /// partition; 3,000 for reads).
    pub fn partition_max(mut self, units_per_second: u64) -> Self {
        self.partition_max = units_per_second;
        self
    }

    /// The trailing window the report covers (default 60 s; whole seconds, 1 s to
    /// [`MAX_WINDOW`]).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many keys each second's summary tracks (default 64, 1 to [`MAX_TRACKED`]).
    pub fn tracked(mut self, keys: usize) -> Self {
        self.tracked = keys;
        self
    }

    /// The share of the partition maximum one key's second must reach to be warned about
    /// (default 0.8; above 0, at most 1).
    pub fn warn_share(mut self, share: f64) -> Self {
        self.warn_share = share;
        self
    }

    /// Keep key values, and show them in the report and in warnings (default off: hashes
    /// only). Metric labels never carry them.
    pub fn show_keys(mut self, show: bool) -> Self {
        self.show_keys = show;
        self
    }

    /// The salt of key hashes, for hashes that match across processes (default: random).
    pub fn salt(mut self, salt: u64) -> Self {
        self.salt = Some(salt);
        self
    }

    /// Emit gauges of the heaviest keys (default on, with the `metrics` feature):
    /// `headroom_hot_key_units_per_second` and `headroom_hot_key_share` labelled `name` and
    /// `rank` (1 to 5), and the counter `headroom_hot_key_throttles_total` labelled `name`.
    /// Ranks, not keys, label the series, so their number is bounded. The gauges show the
    /// last second that had traffic, set when the first attempt of a later second is
    /// recorded (no timer runs): after traffic stops they keep that second's values until
    /// the next attempt — read them beside a traffic series, or use [`HotKeys::report`].
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Validates the settings.
    pub fn build(self) -> Result<HotKeys, ConfigError> {
        if self.partition_max == 0 {
            return Err(ConfigError::new(
                "partition_max",
                self.partition_max,
                "must be at least 1 unit per second",
            ));
        }
        let seconds = self.window.as_secs();
        if seconds == 0 || self.window > MAX_WINDOW || self.window.subsec_nanos() != 0 {
            return Err(ConfigError::new(
                "window",
                self.window,
                "must be whole seconds, from 1 s to an hour",
            ));
        }
        if self.tracked == 0 || self.tracked > MAX_TRACKED {
            return Err(ConfigError::new(
                "tracked",
                self.tracked,
                "must be from 1 to 4096 keys",
            ));
        }
        if !(self.warn_share > 0.0 && self.warn_share <= 1.0) {
            return Err(ConfigError::new(
                "warn_share",
                self.warn_share,
                "must be above 0 and at most 1",
            ));
        }
        let warn_at = ((self.partition_max as f64 * self.warn_share).ceil() as u64).max(1);
        Ok(HotKeys {
            salt: Salt::new(self.salt),
            inner: Mutex::new(Inner {
                seconds: VecDeque::with_capacity(seconds as usize),
                warned: VecDeque::with_capacity(self.tracked),
            }),
            epoch: Instant::now(),
            window_secs: seconds,
            warn_at,
            name: self.name,
            partition_max: self.partition_max,
            tracked: self.tracked,
            show_keys: self.show_keys,
            metrics: self.metrics,
        })
    }
}

/// The hasher of key values: SipHash with random keys, or with a caller's salt.
#[derive(Clone, Debug)]
enum Salt {
    Random(std::hash::RandomState),
    Fixed(u64),
}

impl Salt {
    fn new(salt: Option<u64>) -> Self {
        salt.map_or_else(|| Salt::Random(std::hash::RandomState::new()), Salt::Fixed)
    }

    fn id(&self, key: &[u8]) -> KeyId {
        let mut hasher = match self {
            Salt::Random(state) => state.build_hasher(),
            Salt::Fixed(salt) => {
                let mut h = std::hash::DefaultHasher::new();
                h.write_u64(*salt);
                h
            }
        };
        hasher.write(key);
        KeyId(hasher.finish())
    }
}

/// The heaviest keys of one stream of operations; see [the module docs](self).
#[derive(Debug)]
pub struct HotKeys {
    inner: Mutex<Inner>,
    salt: Salt,
    epoch: Instant,
    window_secs: u64,
    warn_at: u64,
    name: String,
    partition_max: u64,
    tracked: usize,
    show_keys: bool,
    metrics: bool,
}

#[derive(Debug)]
struct Inner {
    /// One summary per second, oldest first, none older than the window.
    seconds: VecDeque<Sketch>,
    /// Keys warned about, with the second of their warning; at most `tracked`.
    warned: VecDeque<(KeyId, u64)>,
}

impl HotKeys {
    /// A builder for the stream `name` (a label such as `orders:write`; it appears in
    /// warnings and metric labels, so it must not be customer data).
    pub fn builder(name: impl Into<String>) -> HotKeysBuilder {
        HotKeysBuilder {
            name: name.into(),
            partition_max: 1_000,
            window: Duration::from_secs(60),
            tracked: 64,
            warn_share: 0.8,
            show_keys: false,
            salt: None,
            metrics: true,
        }
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hash a key value is known by (with this tracker's salt).
    pub fn id(&self, key: &[u8]) -> KeyId {
        self.salt.id(key)
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs()
    }

    /// Records one attempt on `key` asking for `units` capacity units at `now`, throttled or
    /// not. Returns the key's id.
    pub fn record(&self, key: &[u8], units: u64, throttled: bool, now: Instant) -> KeyId {
        let id = self.salt.id(key);
        self.record_id(id, Some(key), units, throttled, now);
        id
    }

    /// [`record`](Self::record) for a key already hashed with this tracker's salt (its value,
    /// when given, is kept only with `show_keys`); returns the key's units in `now`'s second
    /// that the summary can vouch for (its count less its possible over-count), the figure
    /// its warning uses too: a key that just replaced the lightest one inherits that key's
    /// count, so under traffic on many keys a cold key's raw count can pass any share.
    pub(crate) fn record_id(
        &self,
        id: KeyId,
        key: Option<&[u8]>,
        units: u64,
        throttled: bool,
        now: Instant,
    ) -> u64 {
        let second = self.second(now);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let rolled = inner.roll(second, self.window_secs);
        if let Some(finished) = rolled.filter(|_| self.metrics) {
            self.emit_gauges(&finished);
        }
        let value = key.filter(|_| self.show_keys).map(shown);
        let sketch = match inner.seconds.back_mut() {
            Some(s) if s.second == second => s,
            _ => {
                inner.seconds.push_back(Sketch::new(second, self.tracked));
                inner.seconds.back_mut().expect("just pushed")
            }
        };
        let entry = sketch.add(id, units, throttled, value);
        let second_units = entry.guaranteed_units();
        let hot = (second_units >= self.warn_at).then(|| (second_units, entry.key.clone()));
        if let Some((entry_units, entry_key)) =
            hot.filter(|_| inner.first_warning(id, second, self.window_secs, self.tracked))
        {
            tracing::warn!(
                target: "tower_headroom::hot_keys",
                name = %self.name,
                key = %id,
                value = entry_key.as_deref().unwrap_or(""),
                units_per_second = entry_units,
                partition_max = self.partition_max,
                "a partition key is spending a large share of the per-key maximum: no table capacity cures this; spread its writes (write sharding) or cache its reads",
            );
        }
        drop(inner);
        #[cfg(feature = "metrics")]
        if throttled && self.metrics {
            metrics::counter!(
                "headroom_hot_key_throttles_total",
                "name" => self.name.clone()
            )
            .increment(1);
        }
        second_units
    }

    /// The heaviest keys over the window ending at `now`.
    pub fn report(&self, now: Instant) -> HotKeyReport {
        let second = self.second(now);
        let oldest = second.saturating_sub(self.window_secs - 1);
        // Copied out under the lock, merged after it: attempts wait on this lock, and a long
        // window holds many entries.
        let entries: Vec<Entry> = {
            let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner
                .seconds
                .iter()
                .filter(|s| s.second >= oldest)
                .flat_map(|s| s.entries().iter().cloned())
                .collect()
        };
        let mut keys: Vec<HotKey> = Vec::new();
        let mut at: HashMap<KeyId, usize> = HashMap::with_capacity(entries.len());
        for e in &entries {
            match at.get(&e.id) {
                Some(&i) => merge(&mut keys[i], e),
                None => {
                    at.insert(e.id, keys.len());
                    keys.push(self.hot_key(e));
                }
            }
        }
        keys.sort_by(|a, b| b.units.cmp(&a.units).then(a.id.cmp(&b.id)));
        HotKeyReport {
            name: self.name.clone(),
            window: Duration::from_secs(self.window_secs),
            keys,
        }
    }

    /// Entries held across the window's summaries (at most window seconds × tracked).
    pub fn entries(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.seconds.iter().map(|s| s.entries().len()).sum()
    }

    fn hot_key(&self, e: &Entry) -> HotKey {
        HotKey {
            id: e.id,
            key: e.key.as_deref().map(str::to_owned),
            units: e.units,
            served_units: e.served_units,
            throttles: e.throttles,
            peak_units_per_second: e.units,
            error: e.error,
            partition_max: self.partition_max,
        }
    }

    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    fn emit_gauges(&self, finished: &Sketch) {
        #[cfg(feature = "metrics")]
        {
            let mut top: Vec<&Entry> = finished.entries().iter().collect();
            top.sort_by_key(|e| std::cmp::Reverse(e.units));
            for rank in 0..METRIC_RANKS {
                let units = top.get(rank).map_or(0, |e| e.units);
                let labels = [
                    ("name", self.name.clone()),
                    ("rank", (rank + 1).to_string()),
                ];
                metrics::gauge!("headroom_hot_key_units_per_second", &labels).set(units as f64);
                metrics::gauge!("headroom_hot_key_share", &labels)
                    .set(units as f64 / self.partition_max as f64);
            }
        }
    }
}

fn merge(k: &mut HotKey, e: &Entry) {
    k.units = k.units.saturating_add(e.units);
    k.served_units = k.served_units.saturating_add(e.served_units);
    k.throttles = k.throttles.saturating_add(e.throttles);
    k.error = k.error.saturating_add(e.error);
    k.peak_units_per_second = k.peak_units_per_second.max(e.units);
    if k.key.is_none() {
        k.key = e.key.as_deref().map(str::to_owned);
    }
}

/// A key value as shown: lossy UTF-8, at most [`MAX_KEY_BYTES`].
fn shown(key: &[u8]) -> Box<str> {
    let text = String::from_utf8_lossy(key);
    let mut end = text.len().min(MAX_KEY_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Box::from(&text[..end])
}

impl Inner {
    /// Drops seconds older than the window; returns the last finished second when `second`
    /// starts a new one.
    fn roll(&mut self, second: u64, window: u64) -> Option<Sketch> {
        let oldest = second.saturating_sub(window - 1);
        let finished = match self.seconds.back() {
            Some(last) if last.second < second => Some(last.clone()),
            _ => None,
        };
        while self.seconds.front().is_some_and(|s| s.second < oldest) {
            self.seconds.pop_front();
        }
        finished
    }

    /// Whether `id` has not been warned about within the window; remembers it if so.
    fn first_warning(&mut self, id: KeyId, second: u64, window: u64, cap: usize) -> bool {
        let oldest = second.saturating_sub(window - 1);
        self.warned.retain(|&(_, at)| at >= oldest);
        if self.warned.iter().any(|&(w, _)| w == id) {
            return false;
        }
        if self.warned.len() >= cap {
            self.warned.pop_front();
        }
        self.warned.push_back((id, second));
        true
    }
}

#[cfg(test)]
mod tests;
