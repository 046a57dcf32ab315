//! [`from_headers`]: the delay to honour and the throttle's scope, from every retry and
//! rate-limit header of a response (explicit delays first, resets read as refill rates).

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};

use super::decimal::clamp_nanos;
use super::limits::{LIMITS, LimitScope};
use super::{parse_millis, parse_retry_after};
use crate::ThrottleScope;

const RETRY_AFTER: HeaderName = http::header::RETRY_AFTER;
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_AMZ_RETRY_AFTER: HeaderName = HeaderName::from_static("x-amz-retry-after");
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");

/// What the headers of one response say about retrying.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryHints {
    /// The delay to honour before the next attempt, already clamped to [`MAX_SERVER_DELAY`].
    ///
    /// [`MAX_SERVER_DELAY`]: super::MAX_SERVER_DELAY
    pub delay: Option<Duration>,
    /// Which limit ran out: the caller's scope if it named one, else what the `*-remaining`
    /// headers say, else the caller's `Unknown`, else `None`.
    pub scope: Option<ThrottleScope>,
}

/// Reads every retry and rate-limit header this module knows from `headers` and returns the
/// delay to honour and the scope of the throttle.
///
/// `scope` is what the caller already knows about the outcome (for example from an AWS error
/// message); pass `None` when nothing is known.
///
/// The delay:
///
/// 1. **Explicit delays** — every value of `retry-after`, `retry-after-ms`,
///    `x-ms-retry-after-ms` and `x-amz-retry-after`. When any of them parses, the delay is the
///    largest, and no reset is read: the server said how long to wait.
/// 2. Otherwise, the **resets** of the limits that apply: those exhausted (their `*-remaining`
///    reads `0`: `x-ratelimit-remaining-{requests,tokens}`,
///    `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining`) and, when
///    the caller's scope is `Requests` or `Tokens`, every limit of that scope (the server said
///    which limit hit). Resets of limits neither exhausted nor in the caller's scope are
///    ignored.
///
///    A reset is the time until the limit is *fully* replenished (OpenAI's Go durations and
///    Anthropic's RFC 3339 times alike), and both providers refill continuously, so the
///    `limit − remaining` units in use come back over `reset`. With the limit's `*-limit`
///    header known (a missing `*-remaining` reads as `0`), each applicable reset becomes the
///    time for enough to refill at that rate:
///    - a **requests** limit: one request, `reset / (limit − remaining)` — `reset / limit`
///      when exhausted (60 requests refilling over 60 s: 1 s);
///    - a **tokens** limit: a tenth of the limit, `reset × limit / (10 × (limit − remaining))`,
///      capped at `reset` — when exhausted, the time until the bucket holds a tenth of its
///      limit (`reset / 10`). The cost of the next call is unknown here; a typical call is
///      well under a tenth of a per-minute token limit, and admission control, which knows
///      each call's cost, is what paces the larger ones.
///
///    Without a readable `*-limit` (or with one not above `remaining`) the full reset applies.
///    The delay is the largest of these waits, each rounded up to the nanosecond.
/// 3. If nothing applies, `delay` is `None`: the retry policy's own backoff decides.
///
/// The scope returned is the caller's when it is `Requests`, `Tokens`, `Capacity` or `Daily`. Otherwise
/// it comes from the exhausted limits: only request limits -> `Requests`, only token limits ->
/// `Tokens`, both -> the one whose (full) reset comes later (the binding one), `Unknown` if
/// that cannot be told. With no exhausted limit it is the caller's scope (`Unknown` or `None`).
///
/// Reads only through `HeaderMap::get`/`get_all` with static names and never allocates.
pub fn from_headers(
    headers: &HeaderMap,
    scope: Option<ThrottleScope>,
    now: SystemTime,
) -> RetryHints {
    // Per scope (requests, tokens): whether any limit is exhausted, the latest full reset among
    // the exhausted ones (which limit binds), and the longest refill wait among the exhausted
    // ones and among all of them.
    let mut exhausted = [false; 2];
    let mut exhausted_reset: [Option<Duration>; 2] = [None; 2];
    let mut exhausted_wait: [Option<Duration>; 2] = [None; 2];
    let mut any_wait: [Option<Duration>; 2] = [None; 2];
    for limit in LIMITS {
        let Some(state) = limit.read(headers, &mut || now) else {
            continue;
        };
        let wait = state.reset.map(|reset| {
            refill_wait(
                limit.scope,
                reset,
                state.limit,
                state.remaining.unwrap_or(0),
            )
        });
        let i = limit.scope as usize;
        any_wait[i] = max_opt(any_wait[i], wait);
        if state.remaining == Some(0) {
            exhausted[i] = true;
            exhausted_reset[i] = max_opt(exhausted_reset[i], state.reset);
            exhausted_wait[i] = max_opt(exhausted_wait[i], wait);
        }
    }

    let derived = match exhausted {
        [true, false] => Some(ThrottleScope::Requests),
        [false, true] => Some(ThrottleScope::Tokens),
        [true, true] => Some(match exhausted_reset {
            [Some(r), Some(t)] if r > t => ThrottleScope::Requests,
            [Some(r), Some(t)] if t > r => ThrottleScope::Tokens,
            [Some(_), None] => ThrottleScope::Requests,
            [None, Some(_)] => ThrottleScope::Tokens,
            _ => ThrottleScope::Unknown,
        }),
        [false, false] => None,
    };
    let mut reset_delay = max_opt(exhausted_wait[0], exhausted_wait[1]);
    // Only the caller's own scope pulls in resets of limits that are not exhausted: a scope
    // derived from the headers already has its exhausted resets counted above.
    let scope = match scope {
        Some(ThrottleScope::Requests) => {
            reset_delay = max_opt(reset_delay, any_wait[0]);
            scope
        }
        Some(ThrottleScope::Tokens) => {
            reset_delay = max_opt(reset_delay, any_wait[1]);
            scope
        }
        // A spent day is not a spent minute: the per-minute headers do not override it.
        Some(ThrottleScope::Capacity | ThrottleScope::Daily) => scope,
        other => derived.or(other),
    };
    RetryHints {
        delay: explicit_delay(headers, now).or(reset_delay),
        scope,
    }
}

/// The largest explicit delay: every value of `retry-after`, `retry-after-ms`,
/// `x-ms-retry-after-ms` and `x-amz-retry-after` that parses.
fn explicit_delay(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let mut delay = None;
    for value in headers.get_all(RETRY_AFTER) {
        delay = max_opt(delay, parse_retry_after(value, now));
    }
    for name in [RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS, X_AMZ_RETRY_AFTER] {
        for value in headers.get_all(name) {
            delay = max_opt(delay, parse_millis(value));
        }
    }
    delay
}

/// The wait for a limit to refill enough for the next call, from its full `reset`: one
/// request's worth of a requests limit, a tenth of a tokens limit (see [`from_headers`]).
/// The full reset when `limit` is unknown, zero, or not above `remaining`.
fn refill_wait(scope: LimitScope, reset: Duration, limit: Option<u64>, remaining: u64) -> Duration {
    let Some(limit) = limit else {
        return reset;
    };
    let used = match limit.checked_sub(remaining) {
        Some(used) if used > 0 => u128::from(used),
        _ => return reset,
    };
    // `reset` is at most `MAX_SERVER_DELAY` (< 2^47 ns) and `limit` < 2^64, so neither product
    // overflows a u128.
    let reset_nanos = reset.as_nanos();
    let wait = match scope {
        LimitScope::Requests => reset_nanos.div_ceil(used),
        LimitScope::Tokens => (reset_nanos * u128::from(limit)).div_ceil(10 * used),
    };
    clamp_nanos(wait).min(reset)
}

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::retry_after::MAX_SERVER_DELAY;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn requests_refill_one_request_at_a_time() {
        let wait = |limit, remaining| refill_wait(LimitScope::Requests, MINUTE, limit, remaining);
        assert_eq!(wait(Some(60), 0), Duration::from_secs(1));
        assert_eq!(wait(Some(1), 0), MINUTE);
        // 60 s / 7, rounded up to the nanosecond, never down.
        assert_eq!(wait(Some(7), 0), Duration::from_nanos(8_571_428_572));
        // Some left: what is in use refills over the reset.
        assert_eq!(wait(Some(60), 30), Duration::from_secs(2));
        assert_eq!(wait(Some(u64::MAX), 0), Duration::from_nanos(1));
    }

    #[test]
    fn tokens_refill_a_tenth_of_the_limit() {
        let wait = |limit, remaining| refill_wait(LimitScope::Tokens, MINUTE, limit, remaining);
        assert_eq!(wait(Some(30_000), 0), Duration::from_secs(6));
        assert_eq!(wait(Some(3), 0), Duration::from_secs(6));
        // Half in use: a tenth of the limit is a fifth of what refills.
        assert_eq!(wait(Some(30_000), 15_000), Duration::from_secs(12));
        // Less than a tenth in use: never beyond the full reset.
        assert_eq!(wait(Some(30_000), 29_000), MINUTE);
        assert_eq!(wait(Some(u64::MAX), 0), Duration::from_secs(6));
        assert_eq!(
            refill_wait(LimitScope::Tokens, MAX_SERVER_DELAY, Some(u64::MAX), 1),
            MAX_SERVER_DELAY / 10 + Duration::from_nanos(1),
        );
    }

    #[test]
    fn no_usable_limit_means_the_full_reset() {
        for scope in [LimitScope::Requests, LimitScope::Tokens] {
            for (limit, remaining) in [(None, 0), (Some(0), 0), (Some(10), 10), (Some(10), 11)] {
                assert_eq!(refill_wait(scope, MINUTE, limit, remaining), MINUTE);
            }
            assert_eq!(
                refill_wait(scope, Duration::ZERO, Some(60), 0),
                Duration::ZERO
            );
        }
    }
}
