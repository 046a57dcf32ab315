//! Exact decimal numbers (never `f64`) and the clamp to [`MAX_SERVER_DELAY`]: how every
//! parser here reads a number.

use std::time::Duration;

use super::MAX_SERVER_DELAY;

pub(super) const MAX_NANOS: u128 = MAX_SERVER_DELAY.as_nanos();
pub(super) const NANOS_PER_MILLI: u128 = 1_000_000;
pub(super) const NANOS_PER_SEC: u128 = 1_000_000_000;

pub(super) fn trim(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

pub(super) fn clamp_nanos(nanos: u128) -> Duration {
    // `MAX_NANOS` fits in a u64, so the cast after `min` is lossless.
    Duration::from_nanos(nanos.min(MAX_NANOS) as u64)
}

pub(super) fn clamp_duration(d: Duration) -> Duration {
    d.min(MAX_SERVER_DELAY)
}

/// Parses the whole input as a decimal number of `unit` nanoseconds.
pub(super) fn parse_decimal_exact(bytes: &[u8], unit: u128) -> Option<Duration> {
    match Decimal::parse_prefix(bytes)? {
        (number, []) => Some(clamp_nanos(number.nanos_ceil(unit))),
        _ => None,
    }
}

/// A non-negative decimal `int.frac`, held exactly (saturating far above any useful value).
#[derive(Clone, Copy, Debug)]
pub(super) struct Decimal {
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
    pub(super) fn parse_prefix(bytes: &[u8]) -> Option<(Decimal, &[u8])> {
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
    pub(super) fn nanos_ceil(self, unit: u128) -> u128 {
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
