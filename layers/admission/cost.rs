//! What a call spends: [`Cost`] before the call (from an [`Estimate`]), [`Usage`] after it
//! (from a [`ReadUsage`]).

use std::time::Duration;

use crate::classify::retry_after::rate_limits;

/// What one call spends against a quota: requests and units (tokens, capacity units).
///
/// ```
/// use tower_headroom::admission::Cost;
///
/// // A Bedrock call reserving 1,200 input tokens plus max_tokens = 800.
/// let cost = Cost::units(2_000);
/// assert_eq!(cost, Cost { requests: 1, units: 2_000 });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cost {
    /// Requests, counted against a requests-per-window limit (usually 1).
    pub requests: u64,
    /// Units (tokens, capacity units), counted against a units-per-window limit.
    pub units: u64,
}

impl Cost {
    /// One request and no units: a plain HTTP call against an RPM limit.
    pub const ONE_REQUEST: Cost = Cost::new(1, 0);

    /// A cost of `requests` requests and `units` units.
    pub const fn new(requests: u64, units: u64) -> Self {
        Cost { requests, units }
    }

    /// One request spending `units` units.
    pub const fn units(units: u64) -> Self {
        Cost { requests: 1, units }
    }
}

/// What a call really spent, read after it finished (see [`ReadUsage`]).
///
/// Both parts are optional: a response may carry the real unit count (Converse `usage`,
/// DynamoDB `ConsumedCapacity`), the server's view of what is left in the window (OpenAI and
/// Anthropic rate-limit headers), both or neither. A reading with neither settles the
/// reservation at its estimate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Units the call really spent, when known; the reservation is settled to this.
    pub units: Option<u64>,
    /// What the server says is left, when it says so.
    pub remaining: Remaining,
}

impl Usage {
    /// Nothing known: settle at the estimate.
    pub const UNKNOWN: Usage = Usage {
        units: None,
        remaining: Remaining::UNKNOWN,
    };

    /// The call spent `units` units.
    pub const fn units(units: u64) -> Self {
        Usage {
            units: Some(units),
            remaining: Remaining::UNKNOWN,
        }
    }

    /// This reading, or zero units when it knows none and `outcome` says a server refused the
    /// work ([`OutcomeKind::is_refusal`](crate::OutcomeKind::is_refusal): a throttle, an
    /// overload, an unavailable answer), which spends nothing: the reservation is refunded
    /// instead of kept at its estimate.
    ///
    /// ```
    /// use tower_headroom::admission::Usage;
    /// use tower_headroom::{Outcome, OutcomeKind, ThrottleScope};
    ///
    /// let throttled = Outcome::throttled(ThrottleScope::Tokens);
    /// assert_eq!(Usage::UNKNOWN.or_refused(&throttled), Usage::units(0));
    /// assert_eq!(Usage::UNKNOWN.or_refused(&Outcome::new(OutcomeKind::Timeout)), Usage::UNKNOWN);
    /// assert_eq!(Usage::units(7).or_refused(&throttled), Usage::units(7));
    /// ```
    pub const fn or_refused(self, outcome: &crate::Outcome) -> Self {
        if self.units.is_none() && outcome.kind.is_refusal() {
            Usage {
                units: Some(0),
                remaining: self.remaining,
            }
        } else {
            self
        }
    }

    /// Adds the server's remaining budget.
    pub const fn with_remaining(mut self, remaining: Remaining) -> Self {
        self.remaining = remaining;
        self
    }
}

/// The server's view of the budget left (OpenAI's and Anthropic's `*-remaining` headers) and
/// when it is full again (`*-reset`): an observed level and a refill hint.
///
/// The quota only ever *lowers* what it lets through to these numbers: a server that reports
/// less than the client expected knows about other callers; one that reports more is not
/// trusted to hand out credit the client's own limit does not have. How, by accounting:
///
/// - sliding window: when the window's room is more than the server's `remaining`, the
///   difference is counted as spent now (the others spent it), and leaves the window when the
///   server says its budget is full again (`reset`), or a window later when it does not say;
/// - token bucket: the bucket's level is lowered to `remaining` (a bucket with no burst credit
///   never holds more than nothing, so this bites only with credit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Remaining {
    /// Requests left.
    pub requests: Option<u64>,
    /// Units (tokens) left.
    pub units: Option<u64>,
    /// When the requests budget is full again, from the response.
    pub requests_reset: Option<Duration>,
    /// When the units budget is full again, from the response.
    pub units_reset: Option<Duration>,
}

impl Remaining {
    /// The server said nothing.
    pub const UNKNOWN: Remaining = Remaining {
        requests: None,
        units: None,
        requests_reset: None,
        units_reset: None,
    };

    /// `units` left, nothing else known.
    pub const fn units(units: u64) -> Self {
        Remaining {
            units: Some(units),
            ..Remaining::UNKNOWN
        }
    }
}

/// Gives the cost of a request before the call.
///
/// Provided: [`FixedCost`], any `Fn(&Req) -> Cost` closure, and [`LlmEstimator`].
pub trait Estimate<Req> {
    /// The cost to reserve for `req`.
    fn estimate(&self, req: &Req) -> Cost;
}

impl<Req, F> Estimate<Req> for F
where
    F: Fn(&Req) -> Cost,
{
    fn estimate(&self, req: &Req) -> Cost {
        self(req)
    }
}

/// The same cost for every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedCost(pub Cost);

impl<Req> Estimate<Req> for FixedCost {
    fn estimate(&self, _req: &Req) -> Cost {
        self.0
    }
}

/// What an LLM request carries that matters for its cost: the size of its input and its
/// `max_tokens`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LlmInput {
    /// Characters of input text (prompt, system prompt, messages).
    pub input_chars: u64,
    /// The request's `max_tokens` (output token budget).
    pub max_tokens: u64,
}

/// Estimates an LLM call the way Bedrock reserves it: input tokens (characters divided by
/// `chars_per_token`, 4 unless configured) plus `max_tokens`.
///
/// Bodies are generic, so the closure given to [`LlmEstimator::new`] extracts the
/// [`LlmInput`] from the request; [`LlmEstimator::cost`] works on the numbers directly.
///
/// ```
/// use tower_headroom::admission::{Cost, Estimate, LlmEstimator, LlmInput};
///
/// struct Prompt { text: String, max_tokens: u64 }
/// let estimator = LlmEstimator::new(|p: &Prompt| LlmInput {
///     input_chars: p.text.chars().count() as u64,
///     max_tokens: p.max_tokens,
/// });
/// let prompt = Prompt { text: "x".repeat(4_000), max_tokens: 500 };
/// assert_eq!(estimator.estimate(&prompt), Cost::units(1_500));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LlmEstimator<F> {
    extract: F,
    chars_per_token: u64,
    output_multiplier: u64,
}

impl<F> LlmEstimator<F> {
    /// An estimator reading [`LlmInput`] from requests with `extract`.
    pub const fn new(extract: F) -> Self {
        LlmEstimator {
            extract,
            chars_per_token: 4,
            output_multiplier: 1,
        }
    }

    /// Characters per input token (default 4). Zero is treated as 1.
    pub const fn chars_per_token(mut self, chars: u64) -> Self {
        self.chars_per_token = if chars == 0 { 1 } else { chars };
        self
    }

    /// Multiplier on `max_tokens`, for models that burn output tokens at a multiple of input
    /// tokens against TPM (default 1). Zero is treated as 1.
    pub const fn output_multiplier(mut self, multiplier: u64) -> Self {
        self.output_multiplier = if multiplier == 0 { 1 } else { multiplier };
        self
    }

    /// The cost of a call with this input: one request, input tokens plus `max_tokens`
    /// (saturating, never overflowing).
    pub const fn cost(&self, input: LlmInput) -> Cost {
        let input_tokens = input.input_chars.div_ceil(self.chars_per_token);
        Cost::units(
            input_tokens.saturating_add(input.max_tokens.saturating_mul(self.output_multiplier)),
        )
    }
}

impl<Req, F> Estimate<Req> for LlmEstimator<F>
where
    F: Fn(&Req) -> LlmInput,
{
    fn estimate(&self, req: &Req) -> Cost {
        self.cost((self.extract)(req))
    }
}

/// Reads what a call really spent from its response.
///
/// Provided: [`NoUsage`] (settle at the estimate), any `Fn(&Res) -> Usage` closure, and
/// [`HeaderUsage`] for `http::Response` rate-limit headers.
pub trait ReadUsage<Res> {
    /// The usage reported by `res`.
    fn read_usage(&self, res: &Res) -> Usage;
}

impl<Res, F> ReadUsage<Res> for F
where
    F: Fn(&Res) -> Usage,
{
    fn read_usage(&self, res: &Res) -> Usage {
        self(res)
    }
}

/// Reads nothing: every call settles at its estimate.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoUsage;

impl<Res> ReadUsage<Res> for NoUsage {
    fn read_usage(&self, _res: &Res) -> Usage {
        Usage::UNKNOWN
    }
}

/// Reads the providers' rate-limit headers from an `http::Response`: OpenAI
/// `x-ratelimit-{remaining,reset}-{tokens,requests}` and Anthropic
/// `anthropic-ratelimit-{tokens,requests}-{remaining,reset}` (Anthropic's `input-tokens`
/// headers when the combined ones are absent), with
/// [`rate_limits`](crate::classify::retry_after::rate_limits).
///
/// The real unit count of a call is in the response body, which is generic; give it with
/// [`HeaderUsage::with_units`]. Malformed header values are ignored, never an error.
///
/// ```
/// use tower_headroom::admission::{HeaderUsage, ReadUsage};
///
/// let res = http::Response::builder()
///     .header("x-ratelimit-remaining-tokens", "1200")
///     .body(())
///     .unwrap();
/// let usage = HeaderUsage::new().read_usage(&res);
/// assert_eq!(usage.remaining.units, Some(1200));
/// assert_eq!(usage.units, None);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderUsage<F = ()> {
    units: F,
}

impl HeaderUsage {
    /// Reads the remaining headers only.
    pub const fn new() -> Self {
        HeaderUsage { units: () }
    }

    /// Also reads the real unit count of a call with `units` (e.g. from a parsed body kept in
    /// the response extensions).
    pub fn with_units<B, F>(self, units: F) -> HeaderUsage<F>
    where
        F: Fn(&http::Response<B>) -> Option<u64>,
    {
        HeaderUsage { units }
    }
}

/// Reads the remaining budget and its refill hint from provider rate-limit headers, resets
/// measured from the wall clock now (Anthropic's are instants).
pub fn remaining_from_headers(headers: &http::HeaderMap) -> Remaining {
    remaining_of(crate::classify::retry_after::rate_limits_with(
        headers,
        &mut std::time::SystemTime::now,
    ))
}

/// [`remaining_from_headers`], with resets measured from `now`.
pub fn remaining_from_headers_at(
    headers: &http::HeaderMap,
    now: std::time::SystemTime,
) -> Remaining {
    remaining_of(rate_limits(headers, now))
}

fn remaining_of(limits: crate::classify::retry_after::RateLimits) -> Remaining {
    Remaining {
        requests: limits.requests.and_then(|l| l.remaining),
        units: limits.tokens.and_then(|l| l.remaining),
        requests_reset: limits.requests.and_then(|l| l.reset),
        units_reset: limits.tokens.and_then(|l| l.reset),
    }
}

impl<B> ReadUsage<http::Response<B>> for HeaderUsage<()> {
    fn read_usage(&self, res: &http::Response<B>) -> Usage {
        Usage {
            units: None,
            remaining: remaining_from_headers(res.headers()),
        }
    }
}

impl<B, F> ReadUsage<http::Response<B>> for HeaderUsage<F>
where
    F: Fn(&http::Response<B>) -> Option<u64>,
{
    fn read_usage(&self, res: &http::Response<B>) -> Usage {
        Usage {
            units: (self.units)(res),
            remaining: remaining_from_headers(res.headers()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llm_estimator_rounds_up_and_saturates() {
        let e = LlmEstimator::new(|n: &u64| LlmInput {
            input_chars: *n,
            max_tokens: 10,
        });
        assert_eq!(e.estimate(&0), Cost::units(10));
        assert_eq!(e.estimate(&1), Cost::units(11));
        assert_eq!(e.estimate(&8), Cost::units(12));
        let e = e.chars_per_token(0).output_multiplier(5);
        assert_eq!(e.estimate(&3), Cost::units(53));
        let big = LlmEstimator::new(|_: &()| LlmInput {
            input_chars: u64::MAX,
            max_tokens: u64::MAX,
        });
        assert_eq!(big.estimate(&()), Cost::units(u64::MAX));
    }

    #[test]
    fn header_usage_reads_anthropic_and_ignores_garbage() {
        let res = http::Response::builder()
            .header("anthropic-ratelimit-tokens-remaining", " 77 ")
            .header("anthropic-ratelimit-requests-remaining", "-3")
            .body(())
            .unwrap();
        let usage = HeaderUsage::new()
            .with_units(|_: &http::Response<()>| Some(5))
            .read_usage(&res);
        assert_eq!(usage.units, Some(5));
        assert_eq!(usage.remaining.units, Some(77));
        assert_eq!(usage.remaining.requests, None);
    }
}
