//! Shared budgets on Redis (feature `redis`): one account quota kept by any number of
//! processes. [`RedisStore`] is a [`QuotaStore`], so a `Quota` over it goes wherever the
//! in-process one goes ([`AdmissionLayer`](super::AdmissionLayer), the stack builder, the SDK
//! adapters).
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_headroom::admission::redis::{FailMode, RedisStore};
//! use tower_headroom::admission::{AdmissionLayer, Cost, Fixed, FixedCost, Limit, Quota};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // One Bedrock model in one region, shared by every replica: 150 RPM, 200,000 TPM.
//! let limit = Limit::per_minute().requests(150).units(200_000).build()?;
//! let store = RedisStore::<&'static str>::builder("bedrock", limit)
//!     .lease(0.02) // each replica takes 2% of the quota at a time
//!     .fail(FailMode::Open { fraction: 0.2 }) // Redis gone: 20% of the quota, locally
//!     .connect("redis://127.0.0.1:6379/")
//!     .await?;
//! let quota = Quota::with_store(store.clone());
//! let layer = AdmissionLayer::new(quota, Fixed::new("claude/us-east-1", FixedCost(Cost::new(1, 2_000))));
//! # let _ = layer;
//! // On the way out, give the unused leases back.
//! store.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # How it works
//!
//! The shared state of a quota key is one Redis hash (`headroom:{<quota>:<key>}`, a cluster
//! hash tag, so it lives in one slot): the in-process model, on the server — per dimension
//! (requests, units) the limit's [accounting](super::Accounting) (the sliding window's ring
//! of 256 time slots, or the token bucket that allows debt), the learned limit, and one child
//! bucket per tenant for [shares](super::LimitBuilder::shares). It is read and written by one
//! Lua script (`EVALSHA`, reloaded on `NOSCRIPT`) on the **server's clock** (`TIME`), so
//! processes whose clocks disagree still agree on the budget, and it expires (`PEXPIRE`) once
//! idle long enough to be at rest again.
//!
//! **Learning is shared.** A throttle any process meets is reported to the script, which
//! learns as the in-process core does (see [`Learning`](super::Learning)): one cut per run of
//! throttles, to a little under what *all* the processes spent in the trailing window (the
//! server sees their sum); the regain after a quiet window; for windows, the hold and the
//! single probe after a throttle. So every process sharing the quota cuts and regains
//! together. `tests/redis_differential.rs` drives this store's shared state and the
//! in-process core with the same random operations on a real `redis-server` and checks that
//! they decide alike (admitted or not, the wait, the learned limit and the spend).
//!
//! **Leasing** keeps Redis off the hot path. A process takes a lease, a slice of the quota
//! ([`RedisStoreBuilder::lease`], e.g. 2%), with one script call, and admits calls locally
//! against it: no I/O, no allocation on the success path. A background task per key asks for
//! a new lease when the balance falls below half a lease, before it runs out; returns the
//! unused balance when it has been idle for the lease TTL (default one window), when the key
//! is dropped and on [`RedisStore::shutdown`] (to the time slot of the grant it came from,
//! for a window). Refunds (a call that spent less than its estimate) go back to the local
//! lease; overruns leave local debt that the next lease pays. Calls the lease cannot cover
//! wait in a bounded FIFO per lease (interactive before batch), and are woken as soon as the
//! server's answer arrives ([`Slot::poll_wake`]). With `lease(0.0)` nothing is leased ahead:
//! each call the balance cannot cover costs one round trip for exactly what it needs.
//!
//! # Over-admission bound
//!
//! What the server grants keeps the in-process guarantee: for a sliding window, no interval
//! of one window holds more than the limit of grants; for a bucket, whose server side holds
//! at most `cap = max(burst credit, lease + 20 ms of refill)` (the 20 ms so that a client
//! whose timer fires a tick late loses no budget), at most `limit + cap` a window, plus one
//! lease when shares are set (a tenant within its share may take the bucket one lease into
//! debt, so that borrowers polling for the same refill do not starve it). A process admits
//! calls from leases it already holds, and a lease counts when it is granted, not when its
//! calls run: an interval can see calls from the leases processes held when it began, at most
//! **one lease per process and tenant** (a process refills up to one lease). So for `P`
//! processes each serving `T` tenants (count calls without a tenant as one more):
//!
//! `admitted per window ≤ limit (+ cap for a bucket) + lease × P × T (+ lease with shares)`.
//!
//! Size the lease so that this slack is acceptable (2% of the quota × 10 replicas = 20%), or
//! set the configured limit that much below the real quota. Without leasing the slack is the
//! largest single call per process. A process that dies holding a lease loses it (the budget
//! errs on the safe side). `tests/redis_shared.rs` measures the bound with three processes.
//!
//! # When Redis is slow or gone
//!
//! Every Redis call has a timeout ([`RedisStoreBuilder::op_timeout`]); the connection
//! ([`redis::aio::ConnectionManager`]) reconnects by itself. A failed or timed-out call puts
//! the store in its failure mode ([`FailMode`]) until a call succeeds again (retried every
//! [`retry_interval`](RedisStoreBuilder::retry_interval) while there is demand):
//!
//! - [`FailMode::Closed`]: calls the current lease cannot cover are rejected at once with
//!   [`Rejected`] (`reason` [`RejectReason::StoreUnavailable`], `retry_in` the retry
//!   interval), and waiting calls are woken and rejected.
//! - [`FailMode::Open`]: they are admitted against a local, in-process budget of `fraction` of
//!   the quota (the in-memory core, shares and queueing included), so `P` processes admit at
//!   most `P × fraction` of the quota between them during the outage.
//!
//! A waiting call never waits past its [deadline](crate::Deadline). Each mode change emits a
//! `tracing` event and the metrics `headroom_quota_store_mode` (gauge: 0 shared, 1 failing
//! open, 2 failing closed) and `headroom_quota_store_transitions_total{to}`.
//!
//! # What it does not do (yet)
//!
//! Server-reported remaining headers are applied by the in-process store only. Priorities,
//! the pacing of the background lanes and the reserve for interactive calls are a process's
//! own (its lease's queue); across processes the tenants' shares hold. With leasing, a
//! window's hold after a throttle and its probe are per grant, not per call: a lease granted
//! as the probe reports the first answer one of its calls gets. All processes must configure
//! the same limit for a key (the script takes it from the caller).
//!
//! # Why hand-written
//!
//! No crate offers a sliding window or a token bucket with debt, refunds, shares and learning
//! on Redis; rate limiters on Redis (`redis-cell`, GCRA scripts) answer "allowed now?" per
//! call and cannot settle a call's real cost afterwards. The script is the in-process
//! arithmetic, restated in Lua.

mod lease;
mod script;

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use tokio::sync::Notify;
use tokio::time::Instant;

use self::lease::{Leases, Sizes, Stand, Step};
use self::script::{Answer, Args, Op};
use super::quota::MAX_WAIT;
use super::{
    Ask, Cost, Grant, Limit, MemorySlot, MemoryTicket, Quota, QuotaStore, RejectReason, Rejected,
    Slot, StoreSlot, Tenant, Usage,
};
use crate::observe::{Labels, keys, names};
use crate::{ConfigError, Outcome};

pub use self::script::{StoreError, redis_key};

/// One operation on a key's shared state, for [`RedisStore::test_op`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum TestOp {
    /// Take this cost now (nothing waits: granted, or the wait).
    Take(Cost),
    /// Give units back (negative: debt) to the grant made at `at_us`.
    Give {
        /// Units.
        units: i64,
        /// When they were granted.
        at_us: u64,
    },
    /// Report how a call granted at `at_us` ended.
    Learn {
        /// How it ended.
        outcome: Outcome,
        /// Whether its grant was the probe.
        probe: bool,
        /// When it was granted.
        at_us: u64,
    },
    /// Read the learned limits and the window's spend.
    State,
}

/// The answer to a [`TestOp`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestAnswer {
    /// Granted (or done) at `at_us`; `probe` when the grant probes a held-back window.
    Granted {
        /// Whether the grant is the probe.
        probe: bool,
        /// The grant's time.
        at_us: u64,
    },
    /// Not yet: the wait in microseconds.
    Wait(u64),
    /// Per dimension (requests, units): the learned limit and the window's spend.
    State([Option<(u64, u64)>; 2]),
}

/// What a [`RedisStore`] does while Redis cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FailMode {
    /// Reject calls the current lease cannot cover ([`RejectReason::StoreUnavailable`]).
    Closed,
    /// Admit calls against a local, in-process budget of `fraction` (0..=1) of the quota.
    Open {
        /// The share of the quota each process may use on its own.
        fraction: f64,
    },
}

/// Where a store stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug)]
pub struct RedisStoreBuilder<K> {
    name: String,
    default: Limit,
    per_key: Vec<(K, Limit)>,
    lease: f64,
    fail: FailMode,
    op_timeout: Duration,
    connect_timeout: Duration,
    retry: Duration,
    lease_ttl: Option<Duration>,
    labels: Labels,
}

impl<K> RedisStoreBuilder<K> {
    /// A different limit for `key`.
    pub fn key_limit(mut self, key: K, limit: Limit) -> Self {
        self.per_key.push((key, limit));
        self
    }

    /// The slice of the quota a process leases at a time, as a fraction (0..=1) of each limit
    /// (default 0.02). Zero: no leasing, one round trip for each call the balance does not
    /// cover. See the module docs for the over-admission this allows.
    pub fn lease(mut self, fraction: f64) -> Self {
        self.lease = fraction;
        self
    }

    /// What to do while Redis is unavailable (default [`FailMode::Closed`]).
    pub fn fail(mut self, mode: FailMode) -> Self {
        self.fail = mode;
        self
    }

    /// The longest any Redis call may take (default 250 ms).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The longest connecting may take, at start and on each reconnection (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often a store that lost Redis tries again while calls want budget (default 500 ms).
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry = interval;
        self
    }

    /// How long an unused lease is kept before it goes back (default the key's window).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// Reports mode changes under `labels`.
    pub fn labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > 128
            || self.name.contains(['{', '}'])
            || self.name.chars().any(char::is_control)
        {
            return Err(ConfigError::new(
                "name",
                &self.name,
                "must be 1 to 128 characters, without braces or control characters",
            ));
        }
        if !(self.lease.is_finite() && (0.0..=1.0).contains(&self.lease)) {
            return Err(ConfigError::new(
                "lease",
                self.lease,
                "must be a fraction between 0 and 1",
            ));
        }
        if let FailMode::Open { fraction } = self.fail {
            if !(fraction.is_finite() && fraction > 0.0 && fraction <= 1.0) {
                return Err(ConfigError::new(
                    "fail.fraction",
                    fraction,
                    "must be a fraction in (0, 1]",
                ));
            }
        }
        for (field, d) in [
            ("op_timeout", self.op_timeout),
            ("connect_timeout", self.connect_timeout),
            ("retry_interval", self.retry),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return Err(ConfigError::new(
                    field,
                    d,
                    "must be more than zero and at most an hour",
                ));
            }
        }
        if let Some(ttl) = self.lease_ttl {
            if ttl.is_zero() || ttl > MAX_WAIT {
                return Err(ConfigError::new(
                    "lease_ttl",
                    ttl,
                    "must be more than zero and at most 24 h",
                ));
            }
        }
        Ok(())
    }
}

impl<K: Key> RedisStoreBuilder<K> {
    /// Connects to one Redis server (`redis://[user:password@]host:port[/db]`). Fails with a
    /// typed error when the URL does not parse, the server cannot be reached within the
    /// connect timeout, or it refuses the credentials. Must run inside a Tokio runtime (the
    /// store spawns its refill tasks there).
    pub async fn connect(self, url: &str) -> Result<RedisStore<K>, StoreError> {
        self.check()?;
        let client = redis::Client::open(url).map_err(|_| StoreError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(self.retry);
        let conn = tokio::time::timeout(
            self.connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StoreError::Unreachable)?
        .map_err(|e| match StoreError::from_redis(&e) {
            StoreError::Connection | StoreError::Timeout(_) => StoreError::Unreachable,
            other => other,
        })?;
        self.finish(Conn::Single(conn)).await
    }

    /// Connects to a Redis Cluster through any of its nodes. Every quota key's state is one
    /// hash in one slot (a hash tag), so each script call goes to one node.
    pub async fn connect_cluster(self, urls: &[&str]) -> Result<RedisStore<K>, StoreError> {
        self.check()?;
        let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.op_timeout)
            .build()
            .map_err(|_| StoreError::InvalidUrl)?;
        let conn = tokio::time::timeout(self.connect_timeout, client.get_async_connection())
            .await
            .map_err(|_| StoreError::Unreachable)?
            .map_err(|e| match StoreError::from_redis(&e) {
                StoreError::Connection | StoreError::Timeout(_) => StoreError::Unreachable,
                other => other,
            })?;
        self.finish(Conn::Cluster(conn)).await
    }

    async fn finish(self, conn: Conn) -> Result<RedisStore<K>, StoreError> {
        let script = script::script();
        // Loading the script checks the credentials and permissions now rather than at the
        // first call.
        let load = script.prepare_invoke();
        tokio::time::timeout(self.op_timeout, conn.load(&load))
            .await
            .map_err(|_| StoreError::Timeout(self.op_timeout))?
            .map_err(|e| StoreError::from_redis(&e))?;
        let fallback = match self.fail {
            FailMode::Closed => None,
            FailMode::Open { fraction } => {
                let mut b = Quota::builder(scaled(&self.default, fraction));
                for (k, l) in &self.per_key {
                    b = b.key_limit(k.clone(), scaled(l, fraction));
                }
                Some(b.build())
            }
        };
        let handle = tokio::runtime::Handle::current();
        let common = Arc::new(Common {
            conn,
            script,
            fail: self.fail,
            op_timeout: self.op_timeout,
            retry: self.retry,
            mode: AtomicU8::new(0),
            epoch: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            rtt_ns: AtomicU64::new(1_000_000),
            last_error: Mutex::new(None),
            live: Mutex::new(Vec::new()),
            handle,
            metrics: ModeMetrics::register(&self.labels),
            labels: self.labels,
        });
        Ok(RedisStore {
            inner: Arc::new(Inner {
                common,
                name: self.name,
                default: Arc::new(self.default),
                per_key: self
                    .per_key
                    .into_iter()
                    .map(|(k, l)| (k, Arc::new(l)))
                    .collect(),
                lease: self.lease,
                lease_ttl: self.lease_ttl,
                slots: Mutex::new(HashMap::new()),
                fallback,
                inserts: AtomicUsize::new(0),
            }),
        })
    }
}

/// A limit cut to `fraction` (at least one request or unit per window).
fn scaled(l: &Limit, fraction: f64) -> Limit {
    let cut = |v: Option<u64>| v.map(|v| ((v as f64 * fraction).floor() as u64).clamp(1, v));
    let mut l = l.clone();
    l.requests = cut(l.requests);
    l.units = cut(l.units);
    l
}

/// What a key of a [`RedisStore`] must be: printable (it names the Redis key) and usable as a
/// map key.
pub trait Key: fmt::Display + Hash + Eq + Clone + Send + Sync {}
impl<K: fmt::Display + Hash + Eq + Clone + Send + Sync> Key for K {}

/// A [`QuotaStore`] whose budgets live in Redis, shared by every process that uses the same
/// quota name and key. Cheap to clone; see the [module docs](self).
pub struct RedisStore<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for RedisStore<K> {
    fn clone(&self) -> Self {
        RedisStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for RedisStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("name", &self.inner.name)
            .field("mode", &self.inner.common.mode())
            .finish_non_exhaustive()
    }
}

struct Inner<K> {
    common: Arc<Common>,
    name: String,
    default: Arc<Limit>,
    per_key: HashMap<K, Arc<Limit>>,
    lease: f64,
    lease_ttl: Option<Duration>,
    slots: Mutex<HashMap<K, RedisSlot>>,
    fallback: Option<Quota<K>>,
    inserts: AtomicUsize,
}

/// What every key of a store shares: the connection, the mode, the counters.
struct Common {
    conn: Conn,
    script: Script,
    fail: FailMode,
    op_timeout: Duration,
    retry: Duration,
    mode: AtomicU8,
    /// Bumped on every mode change, so that waiting calls notice it.
    epoch: AtomicU64,
    round_trips: AtomicU64,
    /// A smoothed round-trip time, for the waits told to queued calls.
    rtt_ns: AtomicU64,
    last_error: Mutex<Option<StoreError>>,
    /// Every key's slot, to wake their waiters on a mode change.
    live: Mutex<Vec<Weak<SlotInner>>>,
    handle: tokio::runtime::Handle,
    metrics: ModeMetrics,
    labels: Labels,
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn invoke(&self, inv: &redis::ScriptInvocation<'_>) -> redis::RedisResult<Vec<i64>> {
        match self {
            Conn::Single(c) => inv.invoke_async(&mut c.clone()).await,
            Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        }
    }

    async fn load(&self, inv: &redis::ScriptInvocation<'_>) -> redis::RedisResult<String> {
        match self {
            Conn::Single(c) => inv.load_async(&mut c.clone()).await,
            Conn::Cluster(c) => inv.load_async(&mut c.clone()).await,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct ModeMetrics {
    #[cfg(feature = "metrics")]
    gauge: metrics::Gauge,
    transitions: crate::observe::CounterSet<3>,
}

impl ModeMetrics {
    fn register(labels: &Labels) -> Self {
        ModeMetrics {
            #[cfg(feature = "metrics")]
            gauge: metrics::gauge!(names::QUOTA_STORE_MODE, labels.metric_labels(&[])),
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
    fn mode(&self) -> StoreMode {
        StoreMode::from_u8(self.mode.load(Ordering::Acquire))
    }

    fn set_mode(&self, to: StoreMode, error: Option<&StoreError>) {
        let from = StoreMode::from_u8(self.mode.swap(to.index() as u8, Ordering::AcqRel));
        if from == to {
            return;
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.metrics.transitions.increment(to.index());
        #[cfg(feature = "metrics")]
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

    fn up(&self) {
        if self.mode() != StoreMode::Shared {
            self.set_mode(StoreMode::Shared, None);
        }
    }

    fn down(&self, e: StoreError) {
        let to = match self.fail {
            FailMode::Closed => StoreMode::FailingClosed,
            FailMode::Open { .. } => StoreMode::FailingOpen,
        };
        self.set_mode(to, Some(&e));
        *lock(&self.last_error) = Some(e);
    }

    /// One script call, within the operation timeout.
    async fn call(&self, key: &str, args: &Args, op: &Op) -> Result<Answer, StoreError> {
        script::answer(&self.raw(key, args, op).await?)
    }

    /// One script call's raw reply, within the operation timeout.
    async fn raw(&self, key: &str, args: &Args, op: &Op) -> Result<Vec<i64>, StoreError> {
        let inv = args.invoke(&self.script, key, op);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let reply = tokio::time::timeout(self.op_timeout, self.conn.invoke(&inv))
            .await
            .map_err(|_| StoreError::Timeout(self.op_timeout))?
            .map_err(|e| match StoreError::from_redis(&e) {
                StoreError::Timeout(_) => StoreError::Timeout(self.op_timeout),
                other => other,
            })?;
        let rtt = crate::nanos(start.elapsed());
        let old = self.rtt_ns.load(Ordering::Relaxed);
        self.rtt_ns
            .store(old - old / 8 + rtt / 8, Ordering::Relaxed);
        Ok(reply)
    }

    fn rtt(&self) -> Duration {
        Duration::from_nanos(self.rtt_ns.load(Ordering::Relaxed)).max(Duration::from_millis(1))
    }
}

impl<K: Key> RedisStore<K> {
    /// A builder for the quota `name` (part of every Redis key: processes sharing a budget use
    /// the same name), with `limit` for every key not given its own.
    pub fn builder(name: impl Into<String>, limit: Limit) -> RedisStoreBuilder<K> {
        RedisStoreBuilder {
            name: name.into(),
            default: limit,
            per_key: Vec::new(),
            lease: 0.02,
            fail: FailMode::Closed,
            op_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(2),
            retry: Duration::from_millis(500),
            lease_ttl: None,
            labels: Labels::none(),
        }
    }

    /// Where the store stands.
    pub fn mode(&self) -> StoreMode {
        self.inner.common.mode()
    }

    /// The last error a Redis call returned, if any (kept after recovery, for the operator).
    pub fn last_error(&self) -> Option<StoreError> {
        lock(&self.inner.common.last_error).clone()
    }

    /// Script calls made so far (each one round trip), for measuring leasing.
    pub fn round_trips(&self) -> u64 {
        self.inner.common.round_trips.load(Ordering::Relaxed)
    }

    /// The Redis key holding `key`'s shared state.
    pub fn redis_key(&self, key: &K) -> String {
        redis_key(&self.inner.name, key)
    }

    /// Takes `cost` from `key`'s shared budget now, in one round trip and without leasing:
    /// `Ok(None)` when taken, `Ok(Some(wait))` when the budget will hold it only after `wait`
    /// (nothing taken). For async callers that want the server's answer per call.
    pub async fn take_now(
        &self,
        key: &K,
        cost: Cost,
        tenant: Option<Tenant>,
    ) -> Result<Option<Duration>, StoreError> {
        let slot = self.slot(key, Instant::now());
        let s = &*slot.0;
        let amount = [sat(cost.requests), sat(cost.units)];
        let op = Op::take(amount, tenant.map(|t| t.0));
        match s.common.call(&s.key, &s.args, &op).await? {
            Answer::Granted { .. } => Ok(None),
            Answer::Wait(us) => Ok(Some(Duration::from_micros(us))),
        }
    }

    /// The shared state's operations at an explicit time (microseconds on the caller's clock,
    /// instead of the server's), without leases: for the differential tests that drive this
    /// store and the in-process core with the same operations. Not for production use.
    #[doc(hidden)]
    pub async fn test_op(
        &self,
        key: &K,
        op: TestOp,
        now_us: u64,
    ) -> Result<TestAnswer, StoreError> {
        let slot = self.slot(key, Instant::now());
        let s = &*slot.0;
        let limited = [s.args.limits[0] > 0, s.args.limits[1] > 0];
        let mut script_op = match op {
            TestOp::Take(cost) => Op::take([sat(cost.requests), sat(cost.units)], None),
            TestOp::Give { units, at_us } => Op::give([0, units], None, false, at_us),
            TestOp::Learn {
                outcome,
                probe,
                at_us,
            } => Op::learn(&outcome, limited, probe, at_us),
            TestOp::State => Op {
                name: "state",
                ..Op::take([0, 0], None)
            },
        };
        script_op.now = Some(now_us);
        let reply = s.common.raw(&s.key, &s.args, &script_op).await?;
        if let TestOp::State = op {
            return script::state(&reply).map(TestAnswer::State);
        }
        Ok(match script::answer(&reply)? {
            Answer::Granted { probe, at, .. } => TestAnswer::Granted { probe, at_us: at },
            Answer::Wait(us) => TestAnswer::Wait(us),
        })
    }

    /// Gives every unused lease back to Redis and waits for it (each call within the
    /// operation timeout). Call it when the process stops; calls admitted afterwards take new
    /// leases.
    pub async fn shutdown(&self) {
        let slots: Vec<RedisSlot> = lock(&self.inner.slots).values().cloned().collect();
        for slot in slots {
            slot.0.give_back().await;
        }
    }

    /// Forgets keys that nothing holds, waits for or uses (their leases go back).
    pub fn evict_idle(&self) -> usize {
        let mut slots = lock(&self.inner.slots);
        let before = slots.len();
        slots.retain(|_, s| Arc::strong_count(&s.0) > 1 || lock(&s.0.leases).busy());
        before - slots.len()
    }

    fn create(&self, key: &K, now: Instant) -> RedisSlot {
        let inner = &*self.inner;
        let limit = inner.per_key.get(key).unwrap_or(&inner.default).clone();
        let window_us = (limit.window / 1_000).max(1);
        let limits = [limit.requests.unwrap_or(0), limit.units.unwrap_or(0)];
        let lease = limits.map(|v| (v as f64 * inner.lease).ceil() as u64);
        let burst = |v: u64| {
            u64::try_from(u128::from(v) * u128::from(limit.burst) / u128::from(limit.window))
                .unwrap_or(u64::MAX)
        };
        // The server's bucket holds a lease plus 20 ms of refill, so that a client whose timer
        // fires a tick late (or whose ask is a round trip behind another's) loses nothing.
        let slack = |v: u64| {
            u64::try_from((u128::from(v) * u128::from(LAG_NS)).div_ceil(u128::from(limit.window)))
                .unwrap_or(u64::MAX)
        };
        let caps = [0, 1].map(|d| burst(limits[d]).max(lease[d].saturating_add(slack(limits[d]))));
        let max_cost = [0, 1].map(|d| limits[d].saturating_add(burst(limits[d])));
        let reserve = [0, 1].map(|d| {
            sat(u64::try_from(
                u128::from(lease[d]) * u128::from(limit.reserve_ppm.unwrap_or(0)) / 1_000_000,
            )
            .unwrap_or(0))
        });
        let ms = |ns: u64| ns / 1_000_000;
        let window = matches!(
            limit.accounting,
            crate::admission::Accounting::SlidingWindow
        );
        let ppm = |v: u64| v as f64 / 1e6;
        let rules = &limit.learning;
        let args = Args {
            window_us,
            limits,
            caps,
            shares: limit.shares.clone().map(|w| (w, limit.share_total)),
            child_caps_us: limit.share_burst / 1_000,
            ttl_ms: ms(limit.window)
                .saturating_mul(3)
                .saturating_add(ms(limit.burst))
                .saturating_add(ms(limit.share_burst))
                .saturating_add(1_000),
            model: if window { "w" } else { "b" },
            slots: if window {
                super::window::SLOTS
            } else {
                super::bucket::SPEND_SLOTS
            },
            learning: [
                ppm(rules.max_cut_ppm),
                ppm(rules.regain_ppm),
                ppm(rules.floor_ppm),
            ],
        };
        let sizes = Sizes {
            limited: [limit.requests.is_some(), limit.units.is_some()],
            lease: lease.map(sat),
            reserve,
            ttl: inner
                .lease_ttl
                .unwrap_or(Duration::from_nanos(limit.window)),
            max_queue: limit.max_queue,
        };
        let tenants = limit.shares.as_ref().map_or(0, |w| w.len());
        let kick = Arc::new(Notify::new());
        let slot = Arc::new(SlotInner {
            common: Arc::clone(&inner.common),
            key: redis_key(&inner.name, key),
            args,
            max_cost,
            tenants,
            leases: Mutex::new(Leases::new(sizes, 1 + tenants)),
            kick: Arc::clone(&kick),
            fallback: inner.fallback.as_ref().map(|q| q.slot(key, now)),
        });
        lock(&inner.common.live).push(Arc::downgrade(&slot));
        inner
            .common
            .handle
            .spawn(refill(Arc::downgrade(&slot), kick));
        RedisSlot(slot)
    }
}

impl<K> StoreSlot for RedisStore<K> {
    type Slot = RedisSlot;
}

impl<K: Key> QuotaStore<K> for RedisStore<K> {
    fn slot(&self, key: &K, now: Instant) -> RedisSlot {
        if let Some(s) = lock(&self.inner.slots).get(key) {
            return s.clone();
        }
        let slot = {
            let mut slots = lock(&self.inner.slots);
            match slots.get(key) {
                Some(s) => return s.clone(),
                None => {
                    let slot = self.create(key, now);
                    slots.insert(key.clone(), slot.clone());
                    slot
                }
            }
        };
        if self.inner.inserts.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            self.evict_idle();
        }
        slot
    }

    fn admit_wait(&self, key: &K, cost: Cost, now: Instant) -> Option<Duration> {
        self.slot(key, now).admit_wait(cost, now)
    }
}

fn sat(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The refill the server's bucket keeps beyond a lease, as a duration.
const LAG_NS: u64 = 20_000_000;

/// One key of a [`RedisStore`]: its leases, waiters and refill task.
#[derive(Clone)]
pub struct RedisSlot(Arc<SlotInner>);

impl fmt::Debug for RedisSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSlot")
            .field("key", &self.0.key)
            .finish_non_exhaustive()
    }
}

struct SlotInner {
    common: Arc<Common>,
    key: String,
    args: Args,
    max_cost: [u64; 2],
    tenants: usize,
    leases: Mutex<Leases>,
    kick: Arc<Notify>,
    fallback: Option<Arc<MemorySlot>>,
}

impl SlotInner {
    fn lease_index(&self, tenant: Option<Tenant>) -> usize {
        match tenant {
            Some(t) if usize::from(t.0) < self.tenants => 1 + usize::from(t.0),
            _ => 0,
        }
    }

    fn tenant_of(&self, i: usize) -> Option<u16> {
        (i > 0).then(|| (i - 1) as u16)
    }

    fn too_large(&self, cost: Cost) -> bool {
        (self.args.limits[0] > 0 && cost.requests > self.max_cost[0])
            || (self.args.limits[1] > 0 && cost.units > self.max_cost[1])
    }

    /// How long a queued call should expect to wait: until the server is asked again, plus a
    /// round trip.
    fn estimate(&self, leases: &Leases, i: usize, now: Instant) -> Duration {
        let until = leases
            .next_ask(i)
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        until + self.common.rtt()
    }

    /// Redis is unavailable: fail closed, or admit against the local fraction.
    fn degraded(&self, ask: &Ask, now: Instant) -> Result<(RedisTicket, Grant), Rejected> {
        // Demand keeps the refill task retrying, which is how the store finds Redis again.
        self.kick.notify_one();
        match &self.fallback {
            Some(local) => {
                let (t, grant) = local.reserve(ask, now)?;
                Ok((RedisTicket(TicketState::Local(t)), grant))
            }
            None => Err(Rejected {
                retry_in: Some(self.common.retry),
                reason: RejectReason::StoreUnavailable,
            }),
        }
    }

    async fn run(&self, i: usize, step: Step) {
        match step {
            Step::Take(want) => {
                let op = Op::take(want, self.tenant_of(i));
                let res = self.common.call(&self.key, &self.args, &op).await;
                let now = Instant::now();
                match res {
                    Ok(Answer::Granted { within, probe, at }) => {
                        self.common.up();
                        lock(&self.leases).granted(i, want, within, probe, at, now);
                    }
                    Ok(Answer::Wait(us)) => {
                        self.common.up();
                        lock(&self.leases).retry_at(i, now + Duration::from_micros(us));
                    }
                    Err(e) => {
                        lock(&self.leases).retry_at(i, now + self.common.retry);
                        self.common.down(e);
                    }
                }
            }
            Step::Give { amount, within, at } => {
                let op = Op::give(amount, self.tenant_of(i), within, at);
                let res = self.common.call(&self.key, &self.args, &op).await;
                lock(&self.leases).gave(i);
                match res {
                    Ok(_) => self.common.up(),
                    Err(e) => self.common.down(e),
                }
            }
            Step::Learn(op) => {
                let res = self.common.call(&self.key, &self.args, &op).await;
                lock(&self.leases).learned(i);
                match res {
                    Ok(_) => self.common.up(),
                    Err(e) => self.common.down(e),
                }
            }
        }
    }

    async fn give_back(&self) {
        let balances = lock(&self.leases).drain();
        for (i, amount, within, at) in balances {
            let op = Op::give(amount, self.tenant_of(i), within, at);
            if let Err(e) = self.common.call(&self.key, &self.args, &op).await {
                self.common.down(e);
            }
        }
    }
}

impl Drop for SlotInner {
    fn drop(&mut self) {
        // Let the refill task see that the key is gone, and give its leases back.
        self.kick.notify_one();
        let balances = lock(&self.leases).drain();
        if balances.is_empty() {
            return;
        }
        let common = Arc::clone(&self.common);
        let key = std::mem::take(&mut self.key);
        let args = self.args.clone();
        let tenant_of = |i: usize| (i > 0).then(|| (i - 1) as u16);
        let gives: Vec<Op> = balances
            .into_iter()
            .map(|(i, amount, within, at)| Op::give(amount, tenant_of(i), within, at))
            .collect();
        self.common.handle.spawn(async move {
            for op in gives {
                let _ = common.call(&key, &args, &op).await;
            }
        });
    }
}

/// The background task of one key: asks for leases when they run low or calls wait, and gives
/// idle ones back. Exits when the key is dropped.
async fn refill(slot: Weak<SlotInner>, kick: Arc<Notify>) {
    let mut steps = Vec::new();
    loop {
        let notified = kick.notified();
        let next = {
            let Some(s) = slot.upgrade() else { return };
            steps.clear();
            let next = lock(&s.leases).plan(Instant::now(), &mut steps);
            for &(i, step) in &steps {
                s.run(i, step).await;
            }
            next
        };
        if !steps.is_empty() {
            continue;
        }
        match next {
            Some(at) => {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep_until(at) => {}
                }
            }
            None => notified.await,
        }
    }
}

/// The ticket of a [`RedisSlot`] reservation.
#[derive(Debug)]
pub struct RedisTicket(TicketState);

#[derive(Debug)]
enum TicketState {
    /// Against a lease: waiting (`seq` in the queue) or in flight.
    Lease {
        lease: usize,
        seq: u64,
        ask: Ask,
        deadline: Instant,
        admitted: Instant,
        epoch: u64,
        flight: bool,
    },
    /// Against the local fallback budget (failing open).
    Local(MemoryTicket),
    /// Settled, cancelled or rejected.
    Done,
}

impl RedisSlot {
    fn local(&self) -> &Arc<MemorySlot> {
        self.0
            .fallback
            .as_ref()
            .expect("local tickets exist only with a fallback")
    }

    /// The balance of the lease for `tenant` (requests, units): for tests and dashboards.
    pub fn lease_balance(&self, tenant: Option<Tenant>) -> (i64, i64) {
        let b = lock(&self.0.leases).balance(self.0.lease_index(tenant));
        (b[0], b[1])
    }
}

impl Slot for RedisSlot {
    type Ticket = RedisTicket;

    #[inline]
    fn reserve(&self, ask: &Ask, now: Instant) -> Result<(RedisTicket, Grant), Rejected> {
        let s = &*self.0;
        if s.too_large(ask.cost) {
            return Err(Rejected {
                retry_in: None,
                reason: RejectReason::CostTooLarge,
            });
        }
        let i = s.lease_index(ask.tenant);
        let mode = s.common.mode();
        let epoch = s.common.epoch.load(Ordering::Acquire);
        let mut leases = lock(&s.leases);
        if leases.try_admit(i, ask.cost, ask.priority) {
            let low = leases.low(i, now);
            drop(leases);
            if low {
                s.kick.notify_one();
            }
            let ticket = TicketState::Lease {
                lease: i,
                seq: 0,
                ask: *ask,
                deadline: now,
                admitted: now,
                epoch,
                flight: true,
            };
            return Ok((RedisTicket(ticket), Grant::Now));
        }
        if mode != StoreMode::Shared {
            drop(leases);
            return s.degraded(ask, now);
        }
        let deadline = ask.deadline_at(now).min(now + MAX_WAIT);
        let max_wait = deadline.saturating_duration_since(now);
        let est = s.estimate(&leases, i, now);
        if est > max_wait {
            return Err(Rejected {
                retry_in: Some(est),
                reason: RejectReason::Deadline,
            });
        }
        let seq = leases
            .enqueue(i, ask.cost, ask.priority)
            .map_err(|_| Rejected {
                retry_in: Some(est),
                reason: RejectReason::QueueFull,
            })?;
        drop(leases);
        s.kick.notify_one();
        let ticket = TicketState::Lease {
            lease: i,
            seq,
            ask: *ask,
            deadline,
            admitted: deadline,
            epoch,
            flight: false,
        };
        Ok((RedisTicket(ticket), Grant::At((now + est).min(deadline))))
    }

    fn confirm(&self, ticket: &mut RedisTicket, now: Instant) -> Result<Grant, Rejected> {
        let s = &*self.0;
        let (i, seq, ask, deadline) = match &mut ticket.0 {
            TicketState::Local(t) => return self.local().confirm(t, now),
            TicketState::Done => {
                return Err(Rejected {
                    retry_in: None,
                    reason: RejectReason::Deadline,
                });
            }
            TicketState::Lease { flight: true, .. } => return Ok(Grant::Now),
            TicketState::Lease {
                lease,
                seq,
                ask,
                deadline,
                admitted,
                epoch,
                ..
            } => {
                *epoch = s.common.epoch.load(Ordering::Acquire);
                let mut leases = lock(&s.leases);
                match leases.stand(*lease, *seq) {
                    Some(Stand::Admitted(at)) => {
                        leases.confirm(*lease, *seq);
                        *admitted = at;
                        if let TicketState::Lease { flight, .. } = &mut ticket.0 {
                            *flight = true;
                        }
                        return Ok(Grant::Now);
                    }
                    Some(Stand::Waiting)
                        if s.common.mode() == StoreMode::Shared && now < *deadline =>
                    {
                        let est = s.estimate(&leases, *lease, now);
                        return Ok(Grant::At((now + est).min(*deadline)));
                    }
                    _ => {}
                }
                (*lease, *seq, *ask, *deadline)
            }
        };
        // Out of the queue: the deadline passed, or the store went down.
        lock(&s.leases).remove(i, seq, ask.cost, now);
        ticket.0 = TicketState::Done;
        if s.common.mode() != StoreMode::Shared && now < deadline {
            let ask = ask.deadline(crate::Deadline::at(deadline));
            let (t, grant) = s.degraded(&ask, now)?;
            *ticket = t;
            return Ok(grant);
        }
        let est = s.estimate(&lock(&s.leases), i, now);
        Err(Rejected {
            retry_in: Some(est),
            reason: if s.common.mode() == StoreMode::Shared {
                RejectReason::Deadline
            } else {
                RejectReason::StoreUnavailable
            },
        })
    }

    #[inline]
    fn settle(
        &self,
        ticket: &mut RedisTicket,
        outcome: &Outcome,
        usage: &Usage,
        now: impl FnOnce() -> Instant,
    ) -> Option<u64> {
        match std::mem::replace(&mut ticket.0, TicketState::Done) {
            TicketState::Local(mut t) => self.local().settle(&mut t, outcome, usage, now),
            TicketState::Lease {
                lease,
                ask,
                flight: true,
                ..
            } => {
                let s = &*self.0;
                let limited = [s.args.limits[0] > 0, s.args.limits[1] > 0];
                let teaches = crate::admission::state::named_dims(outcome, limited).is_some();
                let mut leases = lock(&s.leases);
                if let Some(units) = usage.units.filter(|u| *u != ask.cost.units) {
                    let delta = sat(ask.cost.units).saturating_sub(sat(units));
                    // Waiters admitted from the refund were woken.
                    leases.adjust(lease, [0, delta], now());
                }
                // The shared state learns from throttles, and from the answer of a call whose
                // budget came with the probe of a window held back.
                if teaches || leases.probing(lease) {
                    leases.learn(lease, |probe, at| Op::learn(outcome, limited, probe, at));
                    drop(leases);
                    s.kick.notify_one();
                }
                None
            }
            TicketState::Lease {
                lease, seq, ask, ..
            } => {
                lock(&self.0.leases).remove(lease, seq, ask.cost, now());
                None
            }
            TicketState::Done => None,
        }
    }

    fn release_unsent(&self, ticket: &mut RedisTicket, now: Instant) {
        match std::mem::replace(&mut ticket.0, TicketState::Done) {
            TicketState::Local(mut t) => self.local().release_unsent(&mut t, now),
            TicketState::Lease {
                lease,
                ask,
                flight: true,
                ..
            } => {
                lock(&self.0.leases).adjust(lease, [0, sat(ask.cost.units)], now);
            }
            TicketState::Lease {
                lease, seq, ask, ..
            } => {
                lock(&self.0.leases).remove(lease, seq, ask.cost, now);
            }
            TicketState::Done => {}
        }
    }

    fn cancel(&self, ticket: &mut RedisTicket, now: Instant) {
        match &mut ticket.0 {
            TicketState::Local(t) => self.local().cancel(t, now),
            // In flight: the call may have spent its estimate; keep it charged.
            TicketState::Lease { flight: true, .. } | TicketState::Done => {}
            TicketState::Lease {
                lease, seq, ask, ..
            } => {
                lock(&self.0.leases).remove(*lease, *seq, ask.cost, now);
                ticket.0 = TicketState::Done;
            }
        }
    }

    fn admit_wait(&self, cost: Cost, now: Instant) -> Option<Duration> {
        let s = &*self.0;
        if s.too_large(cost) {
            return None;
        }
        match (s.common.mode(), &s.fallback) {
            (StoreMode::Shared, _) => {}
            (_, Some(local)) => return local.admit_wait(cost, now),
            (_, None) => return Some(s.common.retry),
        }
        let leases = lock(&s.leases);
        let b = leases.balance(0);
        let limited = [s.args.limits[0] > 0, s.args.limits[1] > 0];
        let covered =
            (!limited[0] || b[0] >= sat(cost.requests)) && (!limited[1] || b[1] >= sat(cost.units));
        Some(if covered {
            Duration::ZERO
        } else {
            s.estimate(&leases, 0, now)
        })
    }

    fn admitted_at(&self, ticket: &RedisTicket) -> Instant {
        match &ticket.0 {
            TicketState::Local(t) => self.local().admitted_at(t),
            TicketState::Lease { admitted, .. } => *admitted,
            TicketState::Done => Instant::now(),
        }
    }

    fn poll_wake(&self, ticket: &mut RedisTicket, cx: &mut Context<'_>) -> Poll<()> {
        let s = &*self.0;
        match &ticket.0 {
            TicketState::Lease {
                lease,
                seq,
                epoch,
                flight: false,
                ..
            } => {
                let mut leases = lock(&s.leases);
                match leases.stand(*lease, *seq) {
                    Some(Stand::Waiting) => {
                        leases.register(*seq, cx.waker());
                        // Checked after registering, under the lock a mode change takes to
                        // wake waiters: a change cannot slip between the two.
                        if s.common.epoch.load(Ordering::Acquire) != *epoch {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        }
                    }
                    _ => Poll::Ready(()),
                }
            }
            TicketState::Local(_) | TicketState::Lease { .. } => Poll::Pending,
            TicketState::Done => Poll::Ready(()),
        }
    }
}
