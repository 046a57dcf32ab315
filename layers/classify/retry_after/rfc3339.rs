//! Anthropic's resets: RFC 3339 timestamps, parsed strictly, as the time left until them.

use std::time::{Duration, SystemTime};

use super::decimal::{NANOS_PER_SEC, clamp_nanos, trim};

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
