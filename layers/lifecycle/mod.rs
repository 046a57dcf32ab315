//! One call's attempts as a synchronous core: the sequence every adapter drives, and the rules
//! between its steps, written once.
//!
//! ```text
//!  start ──▶ choose ──▶ admit ──▶ send ──▶ end ──▶ next ─┬─ Done
//!  deadline,  target:     quota:    a slot of   settle,      ├─ Move(target) ──▶ admit …
//!  retry      breaker     reserve,  the target's record the  ├─ Retry(delay) ──▶ sleep ──▶ choose …
//!  state      permit,     wait      concurrency breaker and  └─ Stop(reason)
//!             headroom    within    limit, the  the limit
//!             for this    the       client
//!             call's cost deadline  readied, the
//!                                   attempt timed
//! ```
//!
//! `Call` holds a call's progress (its retry state and its route plan) and decides what
//! follows each attempt; `Attempt` holds one attempt's breaker permit and quota reservation
//! and ends them by the rules below (both are internal: the adapters are their API). Time is passed in; nothing here sleeps, awaits or does
//! I/O. The Tower stack's future ([`crate::stack`]) and the AWS SDK adapter's interceptor and
//! HTTP client (`crate::smithy`) only drive these steps and await what they hand out; the
//! single-purpose layers ([`RetryLayer`](crate::RetryLayer), [`Fallback`](crate::fallback::Fallback),
//! [`AdmissionLayer`](crate::AdmissionLayer)) use the same rules for their one step each.
//!
//! | rule | where it lives |
//! |---|---|
//! | one deadline bounds a call's admission waits, the router's waits and its retries | `lifecycle::Call::start`, `lifecycle::Call::ask` |
//! | the router asks each target's quota about this call's own estimate | `lifecycle::Call::choose` (the adapters pass the cost) |
//! | the usual case asks the quota once: a preferred target that admits at once is taken with its reservation, anything else goes to the router with nothing held | `lifecycle::Call::choose_admitted` |
//! | a refusal by this client (shed, breaker open, no target) is no attempt and spends no retry budget | [`RetryPolicy::decide`](crate::retry::RetryPolicy::decide), fed by `lifecycle::Call::next` |
//! | a call the server refused spent nothing, unless it reports usage | `lifecycle::settle` |
//! | a concurrency slot is taken only once the quota granted the attempt; a full limit sheds it | `lifecycle::Attempt::take_slot` |
//! | an attempt never sent gives its units back and its breaker permit and concurrency slot up, unrecorded | `lifecycle::Attempt::end` |
//! | a failed attempt moves to the route's next target before the retry policy is asked; with no target to move to, the attempt's own answer stands | `lifecycle::Call::next`, `lifecycle::move_on` |
//! | a spent day ([`ThrottleScope::Daily`](crate::ThrottleScope::Daily)) moves to the next target at once; with none, the call stops ([`StopReason::QuotaExhausted`](crate::retry::StopReason::QuotaExhausted)) unless the server says the day returns within the deadline | [`OutcomeKind::moves_fallback`](crate::OutcomeKind::moves_fallback), [`retry::spent_day`](crate::retry::spent_day) |
//! | the caller of a call stopped by a spent day gets [`QuotaExhausted`](crate::retry::QuotaExhausted) (which quota, when it returns) | `retry::stopped_error` |
//! | a retry starts over from the preferred target, skipping the targets whose day the call found spent (later calls: the quota's headroom) | `lifecycle::Call::next` |
//! | attempts are counted by class, local refusals not | `retry::RetryMetrics::attempt` |
//! | a call's retry policy, wait budget, attempt timeout and breakers come from its builder, else its profile | `lifecycle::Given::resolve` |
//! | an answer ready in the poll that admitted it ends at the admission instant (one clock read) | the stack's future (`Driver::answered`) |

mod attempt;
mod call;
mod settings;

pub(crate) use self::attempt::{Attempt, Ended, record, settle};
pub(crate) use self::call::{Call, Next, Routing, move_on};
pub(crate) use self::settings::{Given, Settings};

#[cfg(test)]
mod tests;
