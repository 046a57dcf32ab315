//! Token-budget admission: a call is admitted only when the quota it will spend has room, and
//! its real spend is recorded afterwards, so that a client stops *causing* 429s instead of
//! reacting to them.
//!
//! Configure it with the number the provider's console shows and leave the rest at its
//! defaults: the accounting mirrors how the provider counts, the wait is bounded by the
//! call's [deadline](crate::deadline), and what other callers on the same account spend is
//! learned from the throttles it causes.
//!
//! - [`Limit`]: per key (model × region, table, host) requests and/or units (tokens, capacity
//!   units) per window, counted as the provider counts them ([`Accounting`]: a sliding window
//!   by default, a token bucket with [burst credit](LimitBuilder::burst)), tenant
//!   [shares](LimitBuilder::shares), queueing and [`Learning`]; and [long windows](Window)
//!   beside it ([`LimitBuilder::units_per_day`]: Bedrock's tokens per day).
//! - [`Window`]: a budget over a longer window than the limit's own; a call is admitted only
//!   when every window has room, and one a spent window refuses is
//!   [`RejectReason::QuotaExhausted`], naming the window.
//! - [`Quota`]: the core. [`Quota::reserve`] answers at once: admitted now, admitted at an
//!   instant ([`Grant::At`], the earliest the window has room), or [`Rejected`]. The
//!   [`Reservation`] is settled with the real [`Usage`] (the slack given back, an overrun
//!   counted) and settles itself when dropped. Time is passed in; nothing sleeps.
//!   [`Quota::acquire`] is the same wait, awaited: the in-process queue-and-drain mode.
//! - [`Estimate`] gives a call's [`Cost`] before it ([`FixedCost`], closures, [`LlmEstimator`]:
//!   input characters / 4 + `max_tokens`, as Bedrock reserves); [`ReadUsage`] reads it after
//!   (closures; [`HeaderUsage`] for OpenAI/Anthropic `*-remaining` and `*-reset` headers).
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
//! // One model in one region: the console's 200,000 tokens per minute, nothing tuned.
//! let quota = Quota::new(Limit::per_minute().units(200_000).build()?);
//! let estimate = LlmEstimator::new(|req: &http::Request<String>| LlmInput {
//!     input_chars: req.body().chars().count() as u64,
//!     max_tokens: Some(1_000),
//! });
//! let client = ServiceBuilder::new()
//!     .layer(
//!         AdmissionLayer::new(quota.clone(), Fixed::new("claude/us-east-1", estimate))
//!             .usage(HeaderUsage::new()),
//!     )
//!     .service_fn(|_req: http::Request<String>| async {
//!         let res = http::Response::builder()
//!             .header("x-ratelimit-remaining-tokens", "190000")
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
//! # The sliding-window model (the default)
//!
//! A call counts at its estimate while it runs and at its real spend once settled, in the
//! time slot it was admitted in (256 slots per window); it is admitted when the spend of the
//! trailing window plus its own estimate fits the limit. So no interval of one window length
//! ever holds more than the limit, and no provider window of *any* phase does: the provider's
//! window boundaries need not be known (Bedrock does not document them). A burst within the
//! limit passes at once, and a settle below the estimate gives the slack back at once, so
//! estimating with `max_tokens` costs no throughput. The background lanes (batch calls,
//! calls borrowing beyond their share) are also paced at the limit's rate, so that what they
//! spend slides out of the window evenly and interactive arrivals find room; they leave the
//! interactive calls a small automatic reserve. Proptests check the bound over random
//! schedules of reservations, settles above and below the estimate, and cancellations.
//!
//! # The token bucket model
//!
//! With [`LimitBuilder::burst`] (or [`Accounting::TokenBucket`]) each dimension of a key is a
//! token bucket refilled at `limit / window`, holding at most the burst credit, for providers
//! that refill continuously. It starts with one window of credit (or the burst, if shorter;
//! [`LimitBuilder::initial_credit`] to change it) and saves more only from capacity left
//! unused, as the provider's bucket does. A call needs the bucket to hold `min(cost, capacity)` and is then
//! charged its whole cost: the level may go negative, and that debt delays later calls. So a
//! settle above the estimate is recorded as debt, a cost larger than the capacity is still
//! admissible (it runs when the bucket is full and pays back afterwards), and a waiting
//! interactive call is charged at once and told the instant its debt is paid: waiters leave in
//! FIFO order with no queue to walk. A booked call keeps its instant, so credit given back
//! while calls are booked is only credited as far as no booked call would find more than the
//! capacity at its instant. Guarantee (proptests): the units admitted in any window, net of
//! refunds, never exceed `limit + max(burst credit, largest single cost)`.
//!
//! # Long windows (tokens per day)
//!
//! A [`Limit`] may have up to [three](MAX_LONG_WINDOWS) longer windows beside its own
//! ([`LimitBuilder::also`] with a [`Window`]; [`units_per_day`](LimitBuilder::units_per_day)
//! for Bedrock's tokens per day). The limit's own window keeps its lanes, shares, pacing and
//! learning; a long window is a plain budget, checked first: a call it cannot hold waits
//! until it has room when that is within the call's deadline (the wait is the longest over all
//! windows, and [`Reservation::bound_by`] names the long window it waited for), and is
//! otherwise refused with [`RejectReason::QuotaExhausted`] naming the window, `retry_in` the
//! time until it has room (429 + `Retry-After`). [`Headroom`] answers that wait, so a router
//! moves to a target whose day has room. A call is charged its estimate when it books, moved
//! to the slot it is admitted in, and settled there to its real units; memory is fixed per
//! key (97 counters per window and dimension: [`LONG_SLOTS`] time slots of 15 minutes for a
//! day), rounded so that spend leaves the window up to one slot late, never early. A daily
//! throttle ([`ThrottleScope::Daily`](crate::ThrottleScope::Daily)) spends the longest window
//! for the rest of it, or holds a key without a long window for [`DAILY_HOLD`], then one call
//! probes; it never cuts the per-window learned limit.
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower_headroom::admission::{Cost, Limit, Quota, RejectReason, Usage};
//!
//! // Bedrock: 200,000 tokens per minute and, set on the console, 2,000,000 per day.
//! let quota = Quota::new(Limit::per_minute().units(200_000).units_per_day(2_000_000).build()?);
//! let t0 = quota.epoch();
//! for minute in 0..10u32 {
//!     let now = t0 + Duration::from_secs(61) * minute;
//!     quota.reserve(&"sonnet", Cost::units(200_000), now)?.settle(Usage::units(200_000), now);
//! }
//! // The minute has room again, the day has none until the first calls leave it.
//! let now = t0 + Duration::from_secs(61 * 10);
//! let spent = quota.reserve(&"sonnet", Cost::units(1_000), now).unwrap_err();
//! assert_eq!(spent.reason, RejectReason::QuotaExhausted { window: Some(Duration::from_secs(86_400)) });
//! assert!(spent.retry_in.unwrap() > Duration::from_secs(23 * 3600));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Both models use exact integer arithmetic (`i128`, saturating): no rounding drift, no NaN,
//! no overflow panic. A cost above the limit is rejected at once
//! ([`RejectReason::CostTooLarge`]), never waited for forever.
//!
//! # Shares and priorities
//!
//! Tenants sharing one account quota get guaranteed shares as in a two-level hierarchical
//! token bucket (Linux HTB): each tenant has a child bucket at its share of the rate; a call
//! its child can pay for runs *within share*, others *borrow* what the others leave. Calls
//! wait in lanes served in order: interactive within share (first the tenants keeping to
//! their share, then those that borrowed lately), batch within share, interactive borrowing,
//! batch borrowing. Each lane is FIFO and bounded ([`LimitBuilder::max_queue`]); with
//! [`LimitBuilder::interactive_reserve`] the later lanes leave a fixed cushion for
//! interactive calls instead of the automatic one.
//!
//! # How long a call waits
//!
//! A call waits for quota no longer than its [`Deadline`](crate::deadline::Deadline): the
//! caller's, else the stack's default for its priority, else its
//! [priority's default](Priority::default_wait) (a minute interactive, fifteen minutes batch).
//! A call whose wait would pass its deadline is rejected at once
//! ([`RejectReason::Deadline`], with the wait in `retry_in`), not after waiting. The retry
//! layer and the fallback router spend from the same deadline, and a call refused here was
//! never sent: it is no attempt and spends no retry budget.
//!
//! # Learning and header sync
//!
//! A throttle the accounting did not predict means the provider's window was full: others
//! (a neighbour on the account) spent what this client did not. The quota cuts the effective
//! limit of the named dimension once per run of throttles, to a little under its own trailing
//! spend, holds the key's calls back briefly and probes, and regains the gap once a window
//! passes quietly; a throttle that names one partition or key never moves it. See
//! [`Learning`] for the rules and their defaults. A server's `Retry-After` holds the key's
//! calls back that long.
//!
//! Where the provider sends its remaining budget (OpenAI `x-ratelimit-remaining-tokens` with
//! `x-ratelimit-reset-tokens`, Anthropic `anthropic-ratelimit-tokens-remaining` with
//! `-reset`), [`HeaderUsage`] reads them as an observed level and a refill hint: the budget
//! the provider has spent beyond this client's own accounting is counted against the window
//! until the reset, with any accounting and any burst setting.
//!
//! # What the providers count
//!
//! The defaults follow the providers' documentation (pages as of 2026; where the providers are
//! silent, the choice that is safe for any answer):
//!
//! - **Amazon Bedrock** (`bedrock-runtime`): tokens per minute per model and Region, input and
//!   output counted together, and tokens per day (by default TPM × 1,440; set it with
//!   [`LimitBuilder::units_per_day`], to the number the console shows: the crate does not
//!   assume the default)
//!   ([quotas for the bedrock-runtime endpoint](https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-runtime.html),
//!   [how tokens are counted](https://docs.aws.amazon.com/bedrock/latest/userguide/quotas-token-burndown.html)).
//!   Requests per minute are no longer enforced on `bedrock-runtime` (same quotas page), so a
//!   Bedrock limit sets units only. At the start of a call Bedrock reserves input +
//!   `max_tokens` (the model's maximum when unset) and at the end charges input + output ×
//!   the model's burndown rate (5 for Anthropic Claude models up to version 4.7, more for newer
//!   ones, 1 for non-Anthropic models) (token burndown page; the AWS re:Post article
//!   [TPM & RPM quota monitoring for Amazon Bedrock](https://repost.aws/articles/ARfUsSkaWeSLiWZbv0OVSG1Q)):
//!   the sliding window's estimate-then-settle. How the minute is aligned is not documented,
//!   and no rate-limit or `Retry-After` headers are sent: hence a window that holds for any
//!   phase, and learning from throttles alone.
//! - **DynamoDB**: reads and writes are provisioned and throttled apart, a partition serves at
//!   most 3,000 RCU and 1,000 WCU per second, and up to 300 s of unused capacity is kept as
//!   burst, best effort
//!   ([burst and adaptive capacity](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/burst-adaptive-capacity.html));
//!   throttling errors name the resource and limit in `ThrottlingReasons`
//!   ([ThrottlingReason](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html)).
//!   The burst credit is unused capacity the table saved ("retains up to 5 minutes (300
//!   seconds) of unused read and write capacity",
//!   [re:Post: spiky workloads](https://repost.aws/knowledge-center/dynamodb-spiky-workloads-short-intervals)):
//!   a table that has not saved it has not got it, so a bucket starts with one second of
//!   capacity ([`LimitBuilder::initial_credit`]) and saves more only while capacity goes
//!   unused. Hence a token bucket per second with burst for a table, and a throttle classified as
//!   one partition's or key's ([`ThrottleScope::Partition`](crate::ThrottleScope::Partition))
//!   never teaching the table's limit ([`classify::aws::classify_reasons`](crate::classify::aws::classify_reasons) reads the reasons).
//! - **Anthropic**: "the token bucket algorithm … capacity is continuously replenished up to
//!   your maximum limit"; `*-remaining` and `*-reset` (RFC 3339: when the limit is fully
//!   replenished) headers, and `retry-after` on a 429
//!   ([rate limits](https://platform.claude.com/docs/en/api/rate-limits)).
//! - **OpenAI**: `x-ratelimit-remaining-*`, and `x-ratelimit-reset-*` as a duration until the
//!   limit "resets to its initial state" (a full limit, not the wait for one call); limits may
//!   be enforced over shorter periods than a minute
//!   ([rate limits](https://platform.openai.com/docs/guides/rate-limits)). So a reset is only
//!   a refill hint, and `retry-after` wins when both come.
//!
//! # Storage seam
//!
//! Policy and state are apart: the arithmetic runs on one key's state ([`Slot`]), and a
//! [`QuotaStore`] finds a key's slot. [`MemoryStore`] keeps states in a sharded map with
//! idle-key eviction, each behind a mutex held only for the arithmetic (never across an
//! await). A shared store implements the same traits: with the `redis` feature,
//! `admission::redis::RedisStore` keeps the same accounting and learning in Redis for every
//! process (a differential proptest holds it to the in-process core); see [`Slot`].
//!
//! # Why not `governor`
//!
//! `governor` is a fine GCRA limiter, but GCRA is a token bucket: it cannot count a quota per
//! window of unknown phase, cannot give back or add to a call's charge after the call (no
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
//! (two runs on a 2-core VM; two-thread figures are noisy):
//!
//! | operation | sliding window (default) | token bucket |
//! |---|---|---|
//! | `governor` `check_n` (direct, its own clock) | 12.5 ns = 1x | |
//! | `governor` `check_key_n` (keyed, its own clock) | 35.8–35.9 ns | |
//! | reserve + settle, pinned slot, time passed in | 86.0 ns (6.9x `check_n`) | 61–63 ns (4.9–5.1x) |
//! | reserve + settle, keyed, time passed in | 100–101 ns (2.8x `check_key_n`) | 75–77 ns (2.1–2.2x) |
//! | reserve + settle with `Instant::now()` | 132–133 ns | 107–110 ns |
//! | two threads, own keys (aggregate) | 1.04–1.96x one thread's throughput | 1.49–1.95x |
//!
//! The sliding window costs about 25 ns more than the bucket: the window's slot ring, the
//! interactive-spend rings behind the automatic reserve, and the pacing bucket are each
//! advanced and read per call. What that buys: the console's number is the right setting (no
//! window of any phase over the limit, bursts within it at once, slack back on settle), and the
//! whole path stays four orders of magnitude under the call it guards (a model call takes
//! seconds). The floor under both is the uncontended atomic read-modify-writes: the `Arc` that
//! lets a reservation settle itself when dropped, the key's mutex and the shard's read lock,
//! against `governor`'s single compare-and-swap; a crate that forbids `unsafe` cannot trade
//! them for a spin lock or an arena. (An earlier run on the same VM measured `governor`
//! `check_n` at 29 ns and the bucket at 60–68 ns pinned: the ratio moved with `governor`'s
//! figure, not with ours.)
//!
//! A [day window](Window) beside the sliding window (tokens per minute and per day) adds a
//! second ring per dimension to check and charge: in one run on the same VM, loaded by other
//! builds (load average 5.5 on 2 cores, so every figure of that run was higher than the
//! table's), reserve + settle on a pinned slot took 164 ns against the plain window's 104 ns
//! in the ratio table (1.58x) and 285 ns against 244 ns in criterion's groups (1.17x). A
//! settle at the estimate touches no long window.

mod bucket;
mod cost;
mod deferred;
mod gauges;
mod layer;
mod learn;
mod limit;
mod long;
mod quota;
#[cfg(feature = "redis")]
pub mod redis;
mod ring;
mod state;
mod window;

pub use self::cost::{
    ByModel, Cost, Estimate, FixedCost, HeaderUsage, LlmEstimator, LlmInput, NoUsage, ReadUsage,
    Remaining, SpecOf, Usage, remaining_from_headers, remaining_from_headers_at,
};
pub use self::deferred::Settlement;
pub(crate) use self::deferred::defer_or_keep;
pub(crate) use self::gauges::slot_stats;
pub(crate) use self::layer::Metrics as AdmissionMetrics;
pub use self::layer::{
    Admission, AdmissionLayer, Demand, DemandKey, Fixed, Keyed, OkIsSuccess, ResponseFuture,
};
pub use self::limit::{
    Accounting, ConfigError, Learning, Limit, LimitBuilder, MAX_BURST, MAX_LIMIT, MAX_TENANTS,
    MAX_WINDOW, Priority, Tenant,
};
pub use self::long::{DAILY_HOLD, LONG_SLOTS, MAX_LONG_WINDOWS, Window};
pub use self::quota::{
    Ask, Grant, Headroom, LaneStats, MAX_WAIT, MemorySlot, MemoryStore, MemoryTicket, Quota,
    QuotaBuilder, QuotaStore, RejectReason, Rejected, Reservation, Slot, SlotStats, StoreSlot,
};
