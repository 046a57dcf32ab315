//! Token-budget admission: a call is admitted only when the quota it will spend has room, and
//! its real spend is recorded afterwards, so that a client stops *causing* 429s instead of
//! reacting to them.
//!
//! - [`Limit`]: per key (model × region, table, host) requests and/or units (tokens, capacity
//!   units) per window, optional burst credit, tenant [shares](LimitBuilder::shares),
//!   queueing and [`Learning`].
//! - [`Quota`]: the core. [`Quota::reserve`] answers at once: admitted now, admitted at an
//!   instant ([`Grant::At`], the earliest the bucket has room), or [`Rejected`]. The
//!   [`Reservation`] is settled with the real [`Usage`] (refund when less, debt when more) and
//!   settles itself when dropped. Time is passed in; nothing sleeps. [`Quota::acquire`] is the
//!   same wait, awaited: the in-process queue-and-drain mode.
//! - [`Estimate`] gives a call's [`Cost`] before it ([`FixedCost`], closures, [`LlmEstimator`]:
//!   input characters / 4 + `max_tokens`, as Bedrock reserves); [`ReadUsage`] reads it after
//!   ([`HeaderUsage`] for OpenAI/Anthropic remaining headers, closures).
//! - [`AdmissionLayer`]: the Tower adapter. Rejections are [`Rejected`] (inside the
//!   [`BoxError`](crate::BoxError)), which [`Rejected::to_response`] turns into
//!   `429` + `Retry-After`.
//! - [`Headroom`]: read-only "how long would this wait", for routers.
//!
//! ```
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_headroom::admission::{
//!     AdmissionLayer, Fixed, HeaderUsage, Limit, LlmEstimator, LlmInput, Quota, Rejected,
//! };
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! // One model in one region: 50 requests and 100,000 tokens per minute.
//! let quota = Quota::new(Limit::per_minute().requests(50).units(100_000).build()?);
//! let estimate = LlmEstimator::new(|req: &http::Request<String>| LlmInput {
//!     input_chars: req.body().chars().count() as u64,
//!     max_tokens: 1_000,
//! });
//! let client = ServiceBuilder::new()
//!     .layer(
//!         AdmissionLayer::new(quota.clone(), Fixed::new("claude/us-east-1", estimate))
//!             .usage(HeaderUsage::new()),
//!     )
//!     .service_fn(|_req: http::Request<String>| async {
//!         let res = http::Response::builder()
//!             .header("x-ratelimit-remaining-tokens", "90000")
//!             .body(String::new());
//!         Ok::<_, http::Error>(res?)
//!     });
//! match client.oneshot(http::Request::new("Hello".into())).await {
//!     Ok(res) => assert_eq!(res.status(), 200),
//!     // Shed: answer 429 with Retry-After, or retry after `retry_in`.
//!     Err(e) => match e.downcast_ref::<Rejected>() {
//!         Some(rejected) => assert_eq!(rejected.to_response::<String>().status(), 429),
//!         None => return Err(e),
//!     },
//! }
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! # The model: a token bucket that allows debt
//!
//! Each dimension (requests, units) of a key is a token bucket refilled at `limit / window`,
//! holding at most the burst credit (`burst × rate`, zero by default). A call needs the
//! bucket to hold `min(cost, capacity)`, and is then charged its whole cost: the level may go
//! negative, and that debt delays later calls. Why a bucket that allows debt:
//!
//! - A cost is only an *estimate* until the call ends; settling may add debt (more tokens
//!   than estimated) or refund (fewer). Bedrock itself reserves `input + max_tokens` and
//!   settles afterwards; a bucket without debt could not record the overrun.
//! - With no burst credit a call larger than the capacity is still admissible (it runs when
//!   the bucket is full and pays back afterwards), so token costs need no tuning of a burst
//!   size; a cost above a whole window plus burst is rejected ([`RejectReason::CostTooLarge`]),
//!   never waited for forever.
//! - Debt makes waits *bookable*: a waiting interactive call is charged at once and told the
//!   instant its debt is paid, so waiters leave in FIFO order with no queue to walk and no
//!   allocation.
//!
//! Guarantee (checked by the proptests): the units admitted in any window, net of refunds,
//! never exceed `limit + max(burst credit, largest single cost)`. With the default burst of
//! zero, calls of one request are paced one per `window / limit`, so no server window ever
//! sees more than the limit.
//!
//! A booked call keeps its instant, so credit given back while calls are booked (a refund, a
//! cancelled booking) is only credited as far as no booked call would find more than the
//! capacity at its instant; the rest is dropped. With no burst credit that is nothing while a
//! queue stands (the last booking's own cancellation excepted): for queue-and-drain with
//! estimates well above real usage (`max_tokens`), give the limit a few seconds of
//! [burst](LimitBuilder::burst) so that refunds shorten the queue.
//!
//! The arithmetic is exact integer arithmetic (levels in unit-nanoseconds, `i128`,
//! saturating): no rounding drift, no NaN, no overflow panic.
//!
//! # Shares and priorities
//!
//! Tenants sharing one account quota get guaranteed shares as in a two-level hierarchical
//! token bucket (Linux HTB): each tenant has a child bucket at its share of the rate; a call
//! its child can pay for runs *within share*, others *borrow* idle capacity of the account
//! bucket. Calls wait in four lanes: interactive within share, batch within share, interactive
//! borrowing, batch borrowing. The first lane books at once; the others are granted a wait
//! that they confirm on waking, and are admitted only when the lanes before them have no units
//! waiting (and, with [`LimitBuilder::interactive_reserve`], only while a cushion is left for
//! interactive calls). Each lane is FIFO (by booking for the first, by a per-lane tail for the
//! others; a confirm that finds its room taken waits again) and bounded
//! ([`LimitBuilder::max_queue`]).
//!
//! # Learning
//!
//! A throttle the budget did not predict (the account quota is lower than configured, or other
//! callers share it) multiplies the effective limit of the named dimension by 0.7 (AIMD on
//! units as well as requests), and a server `Retry-After` empties the bucket for that long;
//! each success adds back 1% of the configured limit. Remaining-budget headers (OpenAI
//! `x-ratelimit-remaining-tokens`, Anthropic `anthropic-ratelimit-tokens-remaining`) lower the
//! bucket's level directly.
//!
//! # Storage seam
//!
//! Policy and state are apart: the arithmetic runs on one key's state ([`Slot`]), and a
//! [`QuotaStore`] finds a key's slot. [`MemoryStore`] keeps states in a sharded map with
//! idle-key eviction, each behind a mutex held only for the arithmetic (never across an
//! await). A shared store implements the same traits: with the `redis` feature,
//! `admission::redis::RedisStore` keeps the budget in Redis for every process; see [`Slot`].
//!
//! # Why not `governor`
//!
//! `governor` is a fine GCRA limiter, but it cannot refund or add debt after the call (no
//! settle), cannot book a FIFO wait for weighted costs, has no shares, priorities or learned
//! limits, and reads its own clock rather than taking a `tokio::time::Instant`, which virtual
//! time tests need. The benchmarks compare against it side by side.
//!
//! # Performance
//!
//! `reserve` + `settle` on the success path does one map lookup (none with a pinned
//! [`Slot`], as the layer uses for a [`Fixed`] key), one uncontended mutex, integer
//! arithmetic, and no allocation (a test with a counting allocator checks the whole Tower call
//! path). `cargo bench --bench admission` prints, side by side with `governor` in the same run
//! (2-core machine shared with other builds, so two-thread figures are noisy):
//!
//! | operation | ns/op | vs `governor` `check_n` | vs `check_key_n` |
//! |---|---|---|---|
//! | `governor` `check_n` (direct, its own clock) | 29 | 1x | |
//! | `governor` `check_key_n` (keyed, its own clock) | 70 | | 1x |
//! | reserve + settle, time passed in | 85 | 2.9x | 1.2x |
//! | reserve + settle, pinned slot, time passed in | 60–68 | 2.1–2.4x | |
//! | reserve + settle with `Instant::now()` | 126–131 | 4.4–4.6x | 1.8–1.9x |
//! | two threads, own keys (aggregate, with `Instant::now()`) | 63–71 | 1.8–2.1x one thread's throughput | |
//!
//! The floor is the uncontended atomic read-modify-writes: the `Arc` that lets a
//! reservation settle itself when dropped (two), the key's mutex (two) and the shard's read
//! lock (two), against `governor`'s single compare-and-swap; a crate that forbids `unsafe`
//! cannot trade them for a spin lock or an arena. The arithmetic itself is about 15 ns.

mod bucket;
mod cost;
mod layer;
mod learn;
mod limit;
mod quota;
#[cfg(feature = "redis")]
pub mod redis;
mod ring;
mod state;
mod window;

pub use self::cost::{
    Cost, Estimate, FixedCost, HeaderUsage, LlmEstimator, LlmInput, NoUsage, ReadUsage, Remaining,
    Usage, remaining_from_headers, remaining_from_headers_at,
};
#[cfg(feature = "smithy")]
pub(crate) use self::layer::Metrics as AdmissionMetrics;
pub use self::layer::{
    Admission, AdmissionLayer, Demand, DemandKey, Fixed, Keyed, OkIsSuccess, ResponseFuture,
};
pub use self::limit::{
    Accounting, ConfigError, Learning, Limit, LimitBuilder, MAX_BURST, MAX_LIMIT, MAX_TENANTS,
    MAX_WINDOW, Priority, Tenant,
};
pub use self::quota::{
    Ask, Grant, Headroom, MAX_WAIT, MemorySlot, MemoryStore, MemoryTicket, Quota, QuotaBuilder,
    QuotaStore, RejectReason, Rejected, Reservation, Slot, SlotStats, StoreSlot,
};
