//! Explicit delays: `Retry-After` (delay-seconds or an HTTP-date), read and written, and the
//! millisecond headers of OpenAI, Azure OpenAI and AWS.

use std::time::{Duration, SystemTime};

use super::decimal::{NANOS_PER_MILLI, NANOS_PER_SEC, clamp_duration, parse_decimal_exact, trim};

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

/// Sets `Retry-After` to `wait` in whole seconds, rounded up (a client that waits the rounded-down
/// value would come back too early).
pub(crate) fn insert(headers: &mut http::HeaderMap, wait: Duration) {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
}
