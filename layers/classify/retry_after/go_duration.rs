//! OpenAI's resets: Go-style durations (`6m0s`, `20ms`, `1h2m3.5s`).

use std::time::Duration;

use super::decimal::{Decimal, NANOS_PER_MILLI, NANOS_PER_SEC, clamp_nanos, trim};

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
