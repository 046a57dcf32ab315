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
//! bucket per tenant for [shares](super::LimitBuilder::shares), and a ring of 96 time slots
//! per [long window](super::Window) (tokens per day) and dimension, checked before the
//! window: a call it cannot hold in time is refused with
//! [`RejectReason::QuotaExhausted`](super::RejectReason::QuotaExhausted) naming it. It is read
//! and written by one
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
//!
//! [`QuotaStore`]: super::QuotaStore
//! [`Slot::poll_wake`]: super::Slot::poll_wake
//! [`Rejected`]: super::Rejected
//! [`RejectReason::StoreUnavailable`]: super::RejectReason::StoreUnavailable

mod builder;
mod conn;
mod error;
mod lease;
mod mode;
mod script;
mod slot;
mod store;
mod test_op;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use self::builder::RedisStoreBuilder;
pub use self::error::StoreError;
pub use self::mode::{FailMode, StoreMode};
pub use self::script::redis_key;
pub use self::slot::{RedisSlot, RedisTicket};
pub use self::store::{Key, RedisStore};
pub use self::test_op::{TestAnswer, TestOp};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sat(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
