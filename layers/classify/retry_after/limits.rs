//! The rate-limit headers of OpenAI and Anthropic (`*-limit`, `*-remaining`, `*-reset` per
//! requests and tokens limit), and [`rate_limits`], the state they report.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use super::decimal::trim;
use super::{parse_go_duration, parse_rfc3339_reset};

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
    ///
    /// [`MAX_SERVER_DELAY`]: super::MAX_SERVER_DELAY
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
/// [`MAX_SERVER_DELAY`](super::MAX_SERVER_DELAY).
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
///
/// [`MAX_SERVER_DELAY`]: super::MAX_SERVER_DELAY
/// [`from_headers`]: super::from_headers
pub fn rate_limits(headers: &HeaderMap, now: SystemTime) -> RateLimits {
    rate_limits_with(headers, &mut || now)
}

/// [`rate_limits`], reading the wall clock only if a reset given as an instant needs it: most
/// responses carry no rate-limit headers, and the success path reads no clock it can avoid.
pub(crate) fn rate_limits_with(
    headers: &HeaderMap,
    now: &mut dyn FnMut() -> SystemTime,
) -> RateLimits {
    if headers.is_empty() {
        return RateLimits::default();
    }
    let mut read_once = None;
    let mut now = || *read_once.get_or_insert_with(&mut *now);
    RateLimits {
        requests: [&OPENAI_REQUESTS, &ANTHROPIC_REQUESTS]
            .into_iter()
            .find_map(|limit| limit.read(headers, &mut now)),
        tokens: [&OPENAI_TOKENS, &ANTHROPIC_TOKENS, &ANTHROPIC_INPUT_TOKENS]
            .into_iter()
            .find_map(|limit| limit.read(headers, &mut now)),
    }
}

/// Which scope a rate-limit header family belongs to (an index into the arrays above).
#[derive(Clone, Copy)]
pub(super) enum LimitScope {
    Requests = 0,
    Tokens = 1,
}

#[derive(Clone, Copy)]
pub(super) enum ResetFormat {
    GoDuration,
    Rfc3339,
}

/// The `*-limit`, `*-remaining` and `*-reset` headers of one rate limit.
pub(super) struct LimitHeaders {
    pub(super) scope: LimitScope,
    pub(super) limit: HeaderName,
    pub(super) remaining: HeaderName,
    pub(super) reset: HeaderName,
    pub(super) format: ResetFormat,
}

impl LimitHeaders {
    /// The limit's state, or `None` when none of its headers is present.
    pub(super) fn read(
        &self,
        headers: &HeaderMap,
        now: &mut dyn FnMut() -> SystemTime,
    ) -> Option<RateLimit> {
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
                ResetFormat::Rfc3339 => parse_rfc3339_reset(v, now()),
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
///
/// [`from_headers`]: super::from_headers
pub(super) static LIMITS: [&LimitHeaders; 6] = [
    &OPENAI_REQUESTS,
    &OPENAI_TOKENS,
    &ANTHROPIC_REQUESTS,
    &ANTHROPIC_TOKENS,
    &ANTHROPIC_INPUT_TOKENS,
    &ANTHROPIC_OUTPUT_TOKENS,
];

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

#[cfg(test)]
mod tests {
    use super::*;

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
