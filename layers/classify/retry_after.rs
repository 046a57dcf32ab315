//! Parsers for server-provided retry delays.
//!
//! Servers say when to come back in several dialects. Each parser here is a pure function of the
//! header value (and, where a date is involved, of `now`, so tests are deterministic) returning
//! `Option<Duration>`:
//!
//! | header | format | parser |
//! |---|---|---|
//! | `retry-after` | delay-seconds or HTTP-date (RFC 9110 §10.2.3) | [`parse_retry_after`] |
//! | `retry-after-ms` | milliseconds, fractions allowed (OpenAI, Azure OpenAI) | [`parse_millis`] |
//! | `x-amz-retry-after` | milliseconds (AWS) | [`parse_millis`] |
//! | `x-ratelimit-reset-requests`, `x-ratelimit-reset-tokens` | Go-style duration, `6m0s`, `20ms`, `1h2m3.5s` (OpenAI) | [`parse_go_duration`] |
//! | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset` | RFC 3339 timestamp | [`parse_rfc3339_reset`] |
//!
//! [`from_headers`] reads all of them from an [`http::HeaderMap`] and says which delay to honour
//! and, when the `*-remaining` headers tell, which limit ran out.
//!
//! # Absurd values
//!
//! Header values come from servers and proxies and are never trusted. No input panics. The
//! rules keep the retry policy from ever retrying *earlier* than the server asked:
//!
//! - unparseable (garbage, negative numbers, `NaN`, non-UTF-8 bytes, empty) -> `None`, as if the
//!   header were absent; the retry policy's own backoff applies;
//! - a date in the past -> [`Duration::ZERO`] (the server's time has come);
//! - anything longer than [`MAX_SERVER_DELAY`] (overflowing numbers like
//!   `99999999999999999999`, dates years away) -> exactly `MAX_SERVER_DELAY`. The retry policy
//!   caps server delays and gives up rather than retrying early, so a clamped value reads as
//!   "too long", never as "retry now";
//! - fractions are rounded *up* to the next nanosecond.
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
//! let hints = retry_after::from_headers(&headers, None, now);
//! assert_eq!(hints.scope, Some(ThrottleScope::Tokens));
//! assert_eq!(hints.delay, Some(Duration::from_secs(360)));
//! ```

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName};

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

/// Parses a count of milliseconds: `retry-after-ms` (`1500`, `20.5`) and AWS's
/// `x-amz-retry-after` (`5000`).
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

/// Reads every retry header this module knows from `headers` and returns the delay to honour
/// and the scope of the throttle.
///
/// `scope` is what the caller already knows about the outcome (for example from an AWS error
/// message); pass `None` when nothing is known.
///
/// The rule, chosen so that a retry never comes earlier than any applicable header asks:
///
/// 1. **Explicit delays** — `retry-after`, `retry-after-ms`, `x-amz-retry-after` (every value
///    of each) — always apply.
/// 2. **Exhausted limits** — a limit whose `*-remaining` header reads `0`
///    (`x-ratelimit-remaining-{requests,tokens}`,
///    `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-remaining`) — apply
///    their `*-reset`.
/// 3. **The outcome's scope** — when the caller's scope is `Requests` or `Tokens`, every reset
///    of that scope applies, exhausted or not (the server said which limit hit).
/// 4. The delay is the **largest** of all that apply; resets of limits that are neither
///    exhausted nor in scope are ignored (they describe a window refilling, not a request to
///    wait). If nothing applies, `delay` is `None`.
///
/// The scope returned is the caller's when it is `Requests`, `Tokens` or `Capacity`. Otherwise
/// it comes from the exhausted limits: only request limits -> `Requests`, only token limits ->
/// `Tokens`, both -> the one whose reset comes later (the binding one), `Unknown` if that cannot
/// be told. With no exhausted limit it is the caller's scope (`Unknown` or `None`).
///
/// Reads only through `HeaderMap::get`/`get_all` with static names and never allocates.
pub fn from_headers(
    headers: &HeaderMap,
    scope: Option<ThrottleScope>,
    now: SystemTime,
) -> RetryHints {
    let mut delay = None;
    for value in headers.get_all(RETRY_AFTER) {
        delay = max_opt(delay, parse_retry_after(value, now));
    }
    for name in [RETRY_AFTER_MS, X_AMZ_RETRY_AFTER] {
        for value in headers.get_all(name) {
            delay = max_opt(delay, parse_millis(value));
        }
    }

    // Per scope (requests, tokens): whether any limit is exhausted, the latest reset among the
    // exhausted ones, and the latest reset among all of them.
    let mut exhausted = [false; 2];
    let mut exhausted_reset: [Option<Duration>; 2] = [None; 2];
    let mut any_reset: [Option<Duration>; 2] = [None; 2];
    for limit in &LIMITS {
        let reset = headers.get(&limit.reset).and_then(|v| match limit.format {
            ResetFormat::GoDuration => parse_go_duration(v),
            ResetFormat::Rfc3339 => parse_rfc3339_reset(v, now),
        });
        let i = limit.scope as usize;
        any_reset[i] = max_opt(any_reset[i], reset);
        if headers
            .get(&limit.remaining)
            .is_some_and(|v| is_zero(v.as_bytes()))
        {
            exhausted[i] = true;
            exhausted_reset[i] = max_opt(exhausted_reset[i], reset);
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
    delay = max_opt(delay, exhausted_reset[0]);
    delay = max_opt(delay, exhausted_reset[1]);
    // Only the caller's own scope pulls in resets of limits that are not exhausted: a scope
    // derived from the headers already has its exhausted resets counted above.
    let scope = match scope {
        Some(ThrottleScope::Requests) => {
            delay = max_opt(delay, any_reset[0]);
            scope
        }
        Some(ThrottleScope::Tokens) => {
            delay = max_opt(delay, any_reset[1]);
            scope
        }
        Some(ThrottleScope::Capacity) => scope,
        other => derived.or(other),
    };
    RetryHints { delay, scope }
}

/// Which scope a rate-limit header pair belongs to (an index into the arrays above).
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

struct Limit {
    scope: LimitScope,
    remaining: HeaderName,
    reset: HeaderName,
    format: ResetFormat,
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

const fn limit(
    scope: LimitScope,
    remaining: HeaderName,
    reset: &'static str,
    format: ResetFormat,
) -> Limit {
    Limit {
        scope,
        remaining,
        reset: HeaderName::from_static(reset),
        format,
    }
}

const LIMITS: [Limit; 6] = [
    limit(
        LimitScope::Requests,
        remaining::OPENAI_REQUESTS,
        "x-ratelimit-reset-requests",
        ResetFormat::GoDuration,
    ),
    limit(
        LimitScope::Tokens,
        remaining::OPENAI_TOKENS,
        "x-ratelimit-reset-tokens",
        ResetFormat::GoDuration,
    ),
    limit(
        LimitScope::Requests,
        remaining::ANTHROPIC_REQUESTS,
        "anthropic-ratelimit-requests-reset",
        ResetFormat::Rfc3339,
    ),
    limit(
        LimitScope::Tokens,
        remaining::ANTHROPIC_TOKENS,
        "anthropic-ratelimit-tokens-reset",
        ResetFormat::Rfc3339,
    ),
    limit(
        LimitScope::Tokens,
        remaining::ANTHROPIC_INPUT_TOKENS,
        "anthropic-ratelimit-input-tokens-reset",
        ResetFormat::Rfc3339,
    ),
    limit(
        LimitScope::Tokens,
        remaining::ANTHROPIC_OUTPUT_TOKENS,
        "anthropic-ratelimit-output-tokens-reset",
        ResetFormat::Rfc3339,
    ),
];

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `true` for a `*-remaining` value that is a (non-negative) integer zero, such as `0` or `000`.
fn is_zero(bytes: &[u8]) -> bool {
    let bytes = trim(bytes);
    !bytes.is_empty() && bytes.iter().all(|&b| b == b'0')
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
