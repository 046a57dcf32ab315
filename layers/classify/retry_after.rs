//! Parsers for server-provided retry delays, and a reader of providers' rate-limit state.
//!
//! Servers say when to come back in several dialects. Each parser here is a pure function of the
//! header value (and, where a date is involved, of `now`, so tests are deterministic) returning
//! `Option<Duration>`:
//!
//! | header | format | meaning | parser |
//! |---|---|---|---|
//! | `retry-after` | delay-seconds or HTTP-date (RFC 9110 §10.2.3) | explicit delay | [`parse_retry_after`] |
//! | `retry-after-ms` | milliseconds, fractions allowed (OpenAI, Azure OpenAI) | explicit delay | [`parse_millis`] |
//! | `x-ms-retry-after-ms` | milliseconds (Azure OpenAI) | explicit delay | [`parse_millis`] |
//! | `x-amz-retry-after` | milliseconds (AWS) | explicit delay | [`parse_millis`] |
//! | `x-ratelimit-reset-requests`, `x-ratelimit-reset-tokens` | Go-style duration, `6m0s`, `20ms`, `1h2m3.5s` (OpenAI) | time until the limit is fully replenished | [`parse_go_duration`] |
//! | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset` | RFC 3339 timestamp (Anthropic) | when the limit is fully replenished | [`parse_rfc3339_reset`] |
//! | `x-ratelimit-{limit,remaining}-{requests,tokens}`, `anthropic-ratelimit-*-{limit,remaining}` | non-negative integer | the limit's size, and what is left of it | (read by [`from_headers`] and [`rate_limits`]) |
//!
//! [`from_headers`] reads them from an [`http::HeaderMap`] and says which delay to honour and,
//! when the `*-remaining` headers tell, which limit ran out. [`rate_limits`] reads the limit,
//! remaining and reset of the requests and tokens limits as they are, for admission control to
//! pace by.
//!
//! # Explicit delays and resets
//!
//! The two kinds of header do not mean the same thing:
//!
//! - an **explicit delay** (`retry-after`, `retry-after-ms`, `x-ms-retry-after-ms`,
//!   `x-amz-retry-after`) is the server asking for a wait before the next attempt. When one is
//!   present it alone makes the delay (the largest, if there are several), and the retry policy
//!   never retries earlier;
//! - a **reset** says when a limit is *fully replenished*. OpenAI and Anthropic both meter with
//!   continuously refilling token buckets, so one more request fits long before the bucket is
//!   full again: a 429 with `retry-after: 5` and a tokens reset 50 s away is retried after 5 s,
//!   not 50 s. A reset is read only when no explicit delay came, and then as a refill rate (the
//!   used part of the limit comes back over the reset): the delay is the time for one request's
//!   worth, or for a tenth of a tokens limit, to refill. [`from_headers`] has the details.
//!
//! # Absurd values
//!
//! Header values come from servers and proxies and are never trusted. No input panics. The
//! rules keep the retry policy from ever retrying *earlier* than the server asked:
//!
//! - unparseable (garbage, negative numbers, `NaN`, non-UTF-8 bytes, empty) -> `None`, as if the
//!   header were absent; the retry policy's own backoff applies. A `*-limit` or `*-remaining`
//!   value must be a plain decimal integer that fits a `u64`;
//! - a date in the past -> [`Duration::ZERO`] (the server's time has come);
//! - anything longer than [`MAX_SERVER_DELAY`] (overflowing numbers like
//!   `99999999999999999999`, dates years away) -> exactly `MAX_SERVER_DELAY`. The retry policy
//!   caps server delays and gives up rather than retrying early, so a clamped value reads as
//!   "too long", never as "retry now";
//! - fractions are rounded *up* to the next nanosecond, and so are the waits derived from
//!   resets.
//!
//! # Why hand-written
//!
//! HTTP-dates use the `httpdate` crate. The other formats are parsed here:
//! `str::parse::<f64>` accepts `inf`, `NaN` and exponents and loses precision, so decimals are
//! parsed as exact integers; `humantime::parse_rfc3339` accepts only UTC (`Z`) timestamps,
//! while RFC 3339 allows any `±hh:mm` offset, and its duration parser does not take the
//! fractional components (`3.5s`) that Go-formatted durations carry. Each parser is a few dozen
//! lines, strict, and covered by property tests.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderMap;
//! use tower_headroom::ThrottleScope;
//! use tower_headroom::classify::retry_after;
//!
//! let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let mut headers = HeaderMap::new();
//! headers.insert("retry-after", "2".parse().unwrap());
//! headers.insert("x-ratelimit-remaining-tokens", "0".parse().unwrap());
//! headers.insert("x-ratelimit-reset-tokens", "6m0s".parse().unwrap());
//!
//! // The server asked for 2 s; the tokens limit is full again in 6 minutes, but one call fits
//! // long before that.
//! let hints = retry_after::from_headers(&headers, None, now);
//! assert_eq!(hints.scope, Some(ThrottleScope::Tokens));
//! assert_eq!(hints.delay, Some(Duration::from_secs(2)));
//!
//! // Without an explicit delay, a reset is a refill rate: 60 requests refill in a minute, so
//! // one request's worth is back in a second.
//! let mut headers = HeaderMap::new();
//! headers.insert("x-ratelimit-limit-requests", "60".parse().unwrap());
//! headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
//! headers.insert("x-ratelimit-reset-requests", "1m0s".parse().unwrap());
//! let hints = retry_after::from_headers(&headers, None, now);
//! assert_eq!(hints.scope, Some(ThrottleScope::Requests));
//! assert_eq!(hints.delay, Some(Duration::from_secs(1)));
//! ```

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::ThrottleScope;

/// The longest server-provided delay this crate represents: one day.
///
/// Longer (or overflowing) values are clamped to exactly this, so that a retry policy with a
/// cap on server delays treats them as "too long" and gives up instead of retrying early.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

const MAX_NANOS: u128 = MAX_SERVER_DELAY.as_nanos();
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

const RETRY_AFTER: HeaderName = http::header::RETRY_AFTER;
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
const X_AMZ_RETRY_AFTER: HeaderName = HeaderName::from_static("x-amz-retry-after");
const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");

/// What the headers of one response say about retrying.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryHints {
    /// The delay to honour before the next attempt, already clamped to [`MAX_SERVER_DELAY`].
    pub delay: Option<Duration>,
    /// Which limit ran out: the caller's scope if it named one, else what the `*-remaining`
    /// headers say, else the caller's `Unknown`, else `None`.
    pub scope: Option<ThrottleScope>,
}

/// Parses a `Retry-After` value: delay-seconds (`120`; a fraction such as `1.5` is accepted and
/// rounded up) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two obsolete forms),
/// measured from `now`.
///
/// Takes anything that is bytes: a `&str`, a `&[u8]` or an `&http::HeaderValue`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_headroom::classify::retry_after::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1445412480); // 07:28:00
/// assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
/// assert_eq!(
///     parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
///     Some(Duration::from_secs(120)),
/// );
/// assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after("-1", now), None);
/// ```
pub fn parse_retry_after(value: impl AsRef<[u8]>, now: SystemTime) -> Option<Duration> {
    let bytes = trim(value.as_ref());
    match bytes.first() {
        Some(b) if b.is_ascii_digit() => parse_decimal_exact(bytes, NANOS_PER_SEC),
        Some(_) => {
            let text = std::str::from_utf8(bytes).ok()?;
            let at = httpdate::parse_http_date(text).ok()?;
            Some(clamp_duration(
                at.duration_since(now).unwrap_or(Duration::ZERO),
            ))
        }
        None => None,
    }
}

/// Parses a count of milliseconds: `retry-after-ms` (`1500`, `20.5`), Azure OpenAI's
/// `x-ms-retry-after-ms` and AWS's `x-amz-retry-after` (`5000`).
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::classify::retry_after::parse_millis;
///
/// assert_eq!(parse_millis("1500"), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_millis("0.25"), Some(Duration::from_micros(250)));
/// assert_eq!(parse_millis("NaN"), None);
/// ```
pub fn parse_millis(value: impl AsRef<[u8]>) -> Option<Duration> {
    parse_decimal_exact(trim(value.as_ref()), NANOS_PER_MILLI)
}

/// Parses a Go-style duration as OpenAI sends in `x-ratelimit-reset-requests` and
/// `x-ratelimit-reset-tokens`: a sequence of decimal numbers, each with a unit of `h`, `m`,
/// `s`, `ms`, `us` (or `µs`/`μs`) or `ns` (`6m0s`, `1s`, `20ms`, `1h2m3.5s`).
///
/// A bare number (`0`, `17`) is read as seconds, as some OpenAI-compatible servers send.
/// Signs are rejected: a negative reset means nothing.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::classify::retry_after::parse_go_duration;
///
/// assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
/// assert_eq!(parse_go_duration("1h2m3.5s"), Some(Duration::from_millis(3_723_500)));
/// assert_eq!(parse_go_duration("20ms"), Some(Duration::from_millis(20)));
/// assert_eq!(parse_go_duration("6 minutes"), None);
/// ```
pub fn parse_go_duration(value: impl AsRef<[u8]>) -> Option<Duration> {
    let mut rest = trim(value.as_ref());
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    let mut first = true;
    while !rest.is_empty() {
        let (number, after) = Decimal::parse_prefix(rest)?;
        let (unit, after) = match unit_prefix(after) {
            Some(found) => found,
            // Only a lone unitless number is allowed.
            None if first && after.is_empty() => (NANOS_PER_SEC, after),
            None => return None,
        };
        total = total.saturating_add(number.nanos_ceil(unit));
        rest = after;
        first = false;
    }
    Some(clamp_nanos(total))
}

/// Parses an RFC 3339 timestamp (`2024-05-01T12:00:30Z`, `2024-05-01T14:00:30.5+02:00`) as
/// Anthropic sends in `anthropic-ratelimit-*-reset`, and returns the time left until it,
/// measured from `now`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_headroom::classify::retry_after::parse_rfc3339_reset;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800); // 2024-05-01T12:00:00Z
/// assert_eq!(parse_rfc3339_reset("2024-05-01T12:00:30Z", now), Some(Duration::from_secs(30)));
/// assert_eq!(parse_rfc3339_reset("2024-05-01T14:00:30+02:00", now), Some(Duration::from_secs(30)));
/// assert_eq!(parse_rfc3339_reset("2024-05-01T11:00:00Z", now), Some(Duration::ZERO));
/// assert_eq!(parse_rfc3339_reset("2024-02-30T00:00:00Z", now), None);
/// ```
pub fn parse_rfc3339_reset(value: impl AsRef<[u8]>, now: SystemTime) -> Option<Duration> {
    let at = rfc3339_unix_nanos(trim(value.as_ref()))?;
    let now = match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => after.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    let left = at.saturating_sub(now);
    Some(if left <= 0 {
        Duration::ZERO
    } else {
        clamp_nanos(left as u128)
    })
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
/// The scope returned is the caller's when it is `Requests`, `Tokens` or `Capacity`. Otherwise
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
        let Some(state) = limit.read(headers, now) else {
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
        Some(ThrottleScope::Capacity) => scope,
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

/// One rate limit as a response's headers report it: a bucket of `limit` units with
/// `remaining` of them left, refilling continuously until it is full again `reset` from now.
///
/// Each field is `None` when its header is absent or does not parse. [`rate_limits`] reads
/// these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    /// The bucket's size (`*-limit`): requests or tokens per the provider's window.
    pub limit: Option<u64>,
    /// What is left of it (`*-remaining`).
    pub remaining: Option<u64>,
    /// The time from `now` until the bucket is fully replenished (`*-reset`), zero if that time
    /// has passed, clamped to [`MAX_SERVER_DELAY`].
    pub reset: Option<Duration>,
}

/// The requests and tokens limits a response reports, as read by [`rate_limits`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// The requests limit; `None` when the response carries none of its headers.
    pub requests: Option<RateLimit>,
    /// The tokens limit; `None` when the response carries none of its headers.
    pub tokens: Option<RateLimit>,
}

/// Reads the state of the requests and tokens limits from OpenAI's or Anthropic's rate-limit
/// headers, measuring resets from `now`: what admission control paces by. Nothing here decides
/// a retry delay; that is [`from_headers`]'s.
///
/// | limit | headers, the first family present wins |
/// |---|---|
/// | `requests` | `x-ratelimit-{limit,remaining,reset}-requests` (OpenAI), `anthropic-ratelimit-requests-{limit,remaining,reset}` |
/// | `tokens` | `x-ratelimit-{limit,remaining,reset}-tokens` (OpenAI), `anthropic-ratelimit-tokens-{limit,remaining,reset}`, `anthropic-ratelimit-input-tokens-{limit,remaining,reset}` |
///
/// A family is used when any of its three headers is present, and then alone: fields are never
/// mixed from two families. So Anthropic's `input-tokens` headers are read only when the
/// combined `tokens` headers are absent. A limit is `None` when no family of it is present; a
/// value that does not parse (not a plain decimal integer fitting a `u64`, not a Go duration
/// or an RFC 3339 time) is a `None` field. Resets follow [`parse_go_duration`] and
/// [`parse_rfc3339_reset`]: a reset time in the past is [`Duration::ZERO`], and none exceeds
/// [`MAX_SERVER_DELAY`].
///
/// Pure, and allocation-free: reads only through `HeaderMap::get` with static names.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderMap;
/// use tower_headroom::classify::retry_after::{RateLimit, rate_limits};
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_714_564_800); // 2024-05-01T12:00:00Z
/// let mut headers = HeaderMap::new();
/// headers.insert("anthropic-ratelimit-tokens-limit", "40000".parse().unwrap());
/// headers.insert("anthropic-ratelimit-tokens-remaining", "1200".parse().unwrap());
/// headers.insert("anthropic-ratelimit-tokens-reset", "2024-05-01T12:00:45Z".parse().unwrap());
/// headers.insert("anthropic-ratelimit-requests-remaining", "many".parse().unwrap());
///
/// let limits = rate_limits(&headers, now);
/// assert_eq!(
///     limits.tokens,
///     Some(RateLimit {
///         limit: Some(40_000),
///         remaining: Some(1_200),
///         reset: Some(Duration::from_secs(45)),
///     }),
/// );
/// assert_eq!(limits.requests, Some(RateLimit::default())); // present, unreadable
/// ```
pub fn rate_limits(headers: &HeaderMap, now: SystemTime) -> RateLimits {
    RateLimits {
        requests: [&OPENAI_REQUESTS, &ANTHROPIC_REQUESTS]
            .into_iter()
            .find_map(|limit| limit.read(headers, now)),
        tokens: [&OPENAI_TOKENS, &ANTHROPIC_TOKENS, &ANTHROPIC_INPUT_TOKENS]
            .into_iter()
            .find_map(|limit| limit.read(headers, now)),
    }
}

/// Which scope a rate-limit header family belongs to (an index into the arrays above).
#[derive(Clone, Copy)]
enum LimitScope {
    Requests = 0,
    Tokens = 1,
}

#[derive(Clone, Copy)]
enum ResetFormat {
    GoDuration,
    Rfc3339,
}

/// The `*-limit`, `*-remaining` and `*-reset` headers of one rate limit.
struct LimitHeaders {
    scope: LimitScope,
    limit: HeaderName,
    remaining: HeaderName,
    reset: HeaderName,
    format: ResetFormat,
}

impl LimitHeaders {
    /// The limit's state, or `None` when none of its headers is present.
    fn read(&self, headers: &HeaderMap, now: SystemTime) -> Option<RateLimit> {
        let limit = headers.get(&self.limit);
        let remaining = headers.get(&self.remaining);
        let reset = headers.get(&self.reset);
        if limit.is_none() && remaining.is_none() && reset.is_none() {
            return None;
        }
        Some(RateLimit {
            limit: limit.and_then(parse_count),
            remaining: remaining.and_then(parse_count),
            reset: reset.and_then(|v| match self.format {
                ResetFormat::GoDuration => parse_go_duration(v),
                ResetFormat::Rfc3339 => parse_rfc3339_reset(v, now),
            }),
        })
    }
}

/// The `*-remaining` headers of rate-limited APIs, shared with the admission layer's usage
/// reader.
pub(crate) mod remaining {
    use http::HeaderName;

    /// OpenAI: requests left in the current window.
    pub(crate) const OPENAI_REQUESTS: HeaderName =
        HeaderName::from_static("x-ratelimit-remaining-requests");
    /// OpenAI: tokens left in the current window.
    pub(crate) const OPENAI_TOKENS: HeaderName =
        HeaderName::from_static("x-ratelimit-remaining-tokens");
    /// Anthropic: requests left.
    pub(crate) const ANTHROPIC_REQUESTS: HeaderName =
        HeaderName::from_static("anthropic-ratelimit-requests-remaining");
    /// Anthropic: tokens left.
    pub(crate) const ANTHROPIC_TOKENS: HeaderName =
        HeaderName::from_static("anthropic-ratelimit-tokens-remaining");
    /// Anthropic: input tokens left.
    pub(crate) const ANTHROPIC_INPUT_TOKENS: HeaderName =
        HeaderName::from_static("anthropic-ratelimit-input-tokens-remaining");
    /// Anthropic: output tokens left.
    pub(crate) const ANTHROPIC_OUTPUT_TOKENS: HeaderName =
        HeaderName::from_static("anthropic-ratelimit-output-tokens-remaining");
}

const fn limit_headers(
    scope: LimitScope,
    limit: &'static str,
    remaining: HeaderName,
    reset: &'static str,
    format: ResetFormat,
) -> LimitHeaders {
    LimitHeaders {
        scope,
        limit: HeaderName::from_static(limit),
        remaining,
        reset: HeaderName::from_static(reset),
        format,
    }
}

static OPENAI_REQUESTS: LimitHeaders = limit_headers(
    LimitScope::Requests,
    "x-ratelimit-limit-requests",
    remaining::OPENAI_REQUESTS,
    "x-ratelimit-reset-requests",
    ResetFormat::GoDuration,
);
static OPENAI_TOKENS: LimitHeaders = limit_headers(
    LimitScope::Tokens,
    "x-ratelimit-limit-tokens",
    remaining::OPENAI_TOKENS,
    "x-ratelimit-reset-tokens",
    ResetFormat::GoDuration,
);
static ANTHROPIC_REQUESTS: LimitHeaders = limit_headers(
    LimitScope::Requests,
    "anthropic-ratelimit-requests-limit",
    remaining::ANTHROPIC_REQUESTS,
    "anthropic-ratelimit-requests-reset",
    ResetFormat::Rfc3339,
);
static ANTHROPIC_TOKENS: LimitHeaders = limit_headers(
    LimitScope::Tokens,
    "anthropic-ratelimit-tokens-limit",
    remaining::ANTHROPIC_TOKENS,
    "anthropic-ratelimit-tokens-reset",
    ResetFormat::Rfc3339,
);
static ANTHROPIC_INPUT_TOKENS: LimitHeaders = limit_headers(
    LimitScope::Tokens,
    "anthropic-ratelimit-input-tokens-limit",
    remaining::ANTHROPIC_INPUT_TOKENS,
    "anthropic-ratelimit-input-tokens-reset",
    ResetFormat::Rfc3339,
);
static ANTHROPIC_OUTPUT_TOKENS: LimitHeaders = limit_headers(
    LimitScope::Tokens,
    "anthropic-ratelimit-output-tokens-limit",
    remaining::ANTHROPIC_OUTPUT_TOKENS,
    "anthropic-ratelimit-output-tokens-reset",
    ResetFormat::Rfc3339,
);

/// Every rate limit [`from_headers`] reads.
static LIMITS: [&LimitHeaders; 6] = [
    &OPENAI_REQUESTS,
    &OPENAI_TOKENS,
    &ANTHROPIC_REQUESTS,
    &ANTHROPIC_TOKENS,
    &ANTHROPIC_INPUT_TOKENS,
    &ANTHROPIC_OUTPUT_TOKENS,
];

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A `*-limit` or `*-remaining` value: a plain decimal integer (`0`, `000`, `149984`) that fits
/// a `u64`, surrounding whitespace allowed. Signs, fractions and overflow read as `None`.
fn parse_count(value: &HeaderValue) -> Option<u64> {
    let bytes = trim(value.as_bytes());
    if bytes.is_empty() {
        return None;
    }
    bytes.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

fn clamp_nanos(nanos: u128) -> Duration {
    // `MAX_NANOS` fits in a u64, so the cast after `min` is lossless.
    Duration::from_nanos(nanos.min(MAX_NANOS) as u64)
}

fn clamp_duration(d: Duration) -> Duration {
    d.min(MAX_SERVER_DELAY)
}

/// Parses the whole input as a decimal number of `unit` nanoseconds.
fn parse_decimal_exact(bytes: &[u8], unit: u128) -> Option<Duration> {
    match Decimal::parse_prefix(bytes)? {
        (number, []) => Some(clamp_nanos(number.nanos_ceil(unit))),
        _ => None,
    }
}

/// A non-negative decimal `int.frac`, held exactly (saturating far above any useful value).
#[derive(Clone, Copy, Debug)]
struct Decimal {
    int: u128,
    /// The first `FRAC_DIGITS` fraction digits, as an integer over `10^frac_len`.
    frac: u128,
    frac_len: u32,
    /// Whether nonzero fraction digits were dropped beyond `FRAC_DIGITS` (rounds up).
    frac_rest: bool,
}

impl Decimal {
    /// Enough digits for nanoseconds of hours, while `frac * unit` stays within a u128.
    const FRAC_DIGITS: u32 = 18;

    /// Parses `digits [. digits]` at the start of `bytes`, returning the rest.
    fn parse_prefix(bytes: &[u8]) -> Option<(Decimal, &[u8])> {
        let int_len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if int_len == 0 {
            return None;
        }
        let mut number = Decimal {
            int: 0,
            frac: 0,
            frac_len: 0,
            frac_rest: false,
        };
        for &b in &bytes[..int_len] {
            number.int = number
                .int
                .saturating_mul(10)
                .saturating_add(u128::from(b - b'0'));
        }
        let mut rest = &bytes[int_len..];
        if let [b'.', after @ ..] = rest {
            let frac_len = after.iter().take_while(|b| b.is_ascii_digit()).count();
            if frac_len == 0 {
                return None;
            }
            for &b in &after[..frac_len] {
                if number.frac_len < Self::FRAC_DIGITS {
                    number.frac = number.frac * 10 + u128::from(b - b'0');
                    number.frac_len += 1;
                } else if b != b'0' {
                    number.frac_rest = true;
                }
            }
            rest = &after[frac_len..];
        }
        Some((number, rest))
    }

    /// The number, in units of `unit` nanoseconds, as nanoseconds rounded up. Saturates.
    fn nanos_ceil(self, unit: u128) -> u128 {
        let whole = self.int.saturating_mul(unit);
        // frac < 10^18 and unit <= 3.6e12, so the product is < 3.6e30 < u128::MAX.
        let scale = 10u128.pow(self.frac_len);
        let scaled = self.frac * unit;
        let mut part = scaled.div_ceil(scale);
        if self.frac_rest && scaled % scale == 0 {
            part += 1;
        }
        whole.saturating_add(part)
    }
}

/// Matches a Go duration unit at the start of `bytes`; longest match first.
fn unit_prefix(bytes: &[u8]) -> Option<(u128, &[u8])> {
    const UNITS: [(&[u8], u128); 8] = [
        (b"ns", 1),
        (b"us", 1_000),
        ("µs".as_bytes(), 1_000), // U+00B5 MICRO SIGN
        ("μs".as_bytes(), 1_000), // U+03BC GREEK SMALL LETTER MU
        (b"ms", NANOS_PER_MILLI),
        (b"s", NANOS_PER_SEC),
        (b"m", 60 * NANOS_PER_SEC),
        (b"h", 3600 * NANOS_PER_SEC),
    ];
    UNITS
        .iter()
        .find_map(|&(name, unit)| bytes.strip_prefix(name).map(|rest| (unit, rest)))
}

/// Parses an RFC 3339 date-time into nanoseconds since the Unix epoch.
///
/// Strict: `YYYY-MM-DD`, a `T`/`t`/space separator, `hh:mm:ss`, an optional fraction, and `Z`,
/// `z` or a `±hh:mm` offset. Calendar dates are validated (no 30 February); a leap second
/// (`:60`) is accepted and counts as the next second.
fn rfc3339_unix_nanos(b: &[u8]) -> Option<i128> {
    fn num(b: &[u8], at: usize, len: usize) -> Option<i64> {
        let digits = b.get(at..at + len)?;
        digits.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    }
    fn byte(b: &[u8], at: usize, want: &[u8]) -> Option<()> {
        want.contains(b.get(at)?).then_some(())
    }

    let year = num(b, 0, 4)?;
    byte(b, 4, b"-")?;
    let month = num(b, 5, 2)?;
    byte(b, 7, b"-")?;
    let day = num(b, 8, 2)?;
    byte(b, 10, b"Tt ")?;
    let hour = num(b, 11, 2)?;
    byte(b, 13, b":")?;
    let minute = num(b, 14, 2)?;
    byte(b, 16, b":")?;
    let second = num(b, 17, 2)?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }

    let mut rest = &b[19..];
    let mut frac_nanos: i128 = 0;
    if let [b'.', after @ ..] = rest {
        let (fraction, after) = fraction_nanos_ceil(after)?;
        frac_nanos = fraction as i128;
        rest = after;
    }
    let offset_secs: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] if rest.len() == 6 => {
            let oh = num(rest, 1, 2)?;
            byte(rest, 3, b":")?;
            let om = num(rest, 4, 2)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let offset = oh * 3600 + om * 60;
            if *sign == b'+' { offset } else { -offset }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(i128::from(secs) * NANOS_PER_SEC as i128 + frac_nanos)
}

/// Parses the digits of a fraction of a second (after the `.`) into nanoseconds, rounded up.
fn fraction_nanos_ceil(bytes: &[u8]) -> Option<(u128, &[u8])> {
    let len = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 {
        return None;
    }
    let mut nanos: u128 = 0;
    for i in 0..9 {
        let digit = bytes[..len].get(i).map_or(0, |&d| u128::from(d - b'0'));
        nanos = nanos * 10 + digit;
    }
    if bytes[..len].iter().skip(9).any(|&d| d != b'0') {
        nanos += 1;
    }
    Some((nanos, &bytes[len..]))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Sets `Retry-After` to `wait` in whole seconds, rounded up (a client that waits the rounded-down
/// value would come back too early).
pub(crate) fn insert(headers: &mut http::HeaderMap, wait: Duration) {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn counts_are_plain_integers() {
        let count = |s: &str| parse_count(&HeaderValue::from_str(s).unwrap());
        assert_eq!(count("0"), Some(0));
        assert_eq!(count("000"), Some(0));
        assert_eq!(count(" 149984 "), Some(149_984));
        assert_eq!(count("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            " ",
            "-0",
            "+5",
            "0.5",
            "1e3",
            "5k",
            "18446744073709551616",
        ] {
            assert_eq!(count(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_count(&HeaderValue::from_bytes(b"1\xff").unwrap()),
            None
        );
    }
}
