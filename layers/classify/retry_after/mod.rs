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

mod decimal;
mod delay;
mod go_duration;
mod hints;
mod limits;
mod rfc3339;

use std::time::Duration;

pub(crate) use self::delay::insert;
pub use self::delay::{parse_millis, parse_retry_after};
pub use self::go_duration::parse_go_duration;
pub use self::hints::{RetryHints, from_headers};
pub(crate) use self::limits::rate_limits_with;
pub use self::limits::{RateLimit, RateLimits, rate_limits};
pub use self::rfc3339::parse_rfc3339_reset;

/// The longest server-provided delay this crate represents: one day.
///
/// Longer (or overflowing) values are clamped to exactly this, so that a retry policy with a
/// cap on server delays treats them as "too long" and gives up instead of retrying early.
pub const MAX_SERVER_DELAY: Duration = Duration::from_secs(24 * 60 * 60);
