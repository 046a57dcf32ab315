//! What a call spends: [`Cost`] before the call (from an [`Estimate`]), [`Usage`] after it
//! (from a [`ReadUsage`]).

use std::time::Duration;

use crate::bedrock::{ModelSpec, ModelTable};
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

    /// The cost to reserve for `req` when the model `model` serves it: a fallback target may
    /// count the same request differently (another model's maximum output, say). A
    /// [`Stack`](crate::stack::Stack) asks this for each target labelled with a model
    /// ([`Target::model`](crate::fallback::Target::model)), so that the router weighs each
    /// target by its own cost. Default: [`estimate`](Self::estimate), the same everywhere.
    fn estimate_for(&self, req: &Req, model: &str) -> Cost {
        let _ = model;
        self.estimate(req)
    }
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

/// What an LLM request carries that matters for its reservation: the size of its input and
/// its `max_tokens`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LlmInput {
    /// Characters of input text (prompt, system prompt, messages), cached parts included:
    /// Bedrock reserves input + cache-read + cache-write tokens, the whole prompt.
    pub input_chars: u64,
    /// The request's `max_tokens`; `None` when it sets none, which reserves the model's
    /// maximum output ([`ModelSpec::max_output_tokens`]).
    pub max_tokens: Option<u64>,
}

/// Estimates an LLM call the way Bedrock reserves it ([`ModelSpec::reservation`]): input
/// tokens (characters divided by `chars_per_token`, 4 unless configured) plus `max_tokens`,
/// or the model's maximum output when the request sets none.
///
/// The model's numbers come from a fixed [`ModelSpec`] ([`LlmEstimator::model`]; without one,
/// [`ModelSpec::UNKNOWN`], the largest maximum) or from a [`ModelTable`] by the request's model
/// ([`LlmEstimator::models`] and [`model_of`](LlmEstimator::model_of)). With a table the
/// estimator also answers [`Estimate::estimate_for`] with each model's own maximum, which a
/// [`Stack`](crate::stack::Stack) asks for every target labelled with a model. The burndown
/// is not in the reservation: it applies to the output a response reports, when the call is
/// settled ([`ModelSpec::settlement`], [`BedrockUsage`](crate::bedrock::BedrockUsage)).
///
/// Bodies are generic, so the closure given to [`LlmEstimator::new`] extracts the
/// [`LlmInput`] from the request; [`LlmEstimator::cost`] works on the numbers directly.
///
/// ```
/// use tower_headroom::admission::{Cost, Estimate, LlmEstimator, LlmInput};
/// use tower_headroom::bedrock::ModelTable;
///
/// struct Prompt { model: String, text: String, max_tokens: Option<u64> }
/// let estimator = LlmEstimator::new(|p: &Prompt| LlmInput {
///     input_chars: p.text.chars().count() as u64,
///     max_tokens: p.max_tokens,
/// })
/// .models(ModelTable::builtin())
/// .model_of(|p: &Prompt| p.model.as_str());
/// let prompt = Prompt {
///     model: "us.anthropic.claude-sonnet-4-20250514-v1:0".into(),
///     text: "x".repeat(4_000),
///     max_tokens: Some(500),
/// };
/// assert_eq!(estimator.estimate(&prompt), Cost::units(1_500));
/// // No maxTokens: Sonnet 4 reserves its maximum, 64,000 output tokens.
/// let open = Prompt { max_tokens: None, ..prompt };
/// assert_eq!(estimator.estimate(&open), Cost::units(65_000));
/// // The same request on Claude 3 Haiku, whose maximum is 4,096.
/// let haiku = "anthropic.claude-3-haiku-20240307-v1:0";
/// assert_eq!(estimator.estimate_for(&open, haiku), Cost::units(5_096));
/// ```
#[derive(Clone, Debug)]
pub struct LlmEstimator<F, M = ModelSpec> {
    extract: F,
    chars_per_token: u64,
    models: M,
}

/// Where an [`LlmEstimator`] finds a request's model numbers: a fixed [`ModelSpec`], or a
/// [`ModelTable`] ([`ByModel`]).
pub trait SpecOf<Req> {
    /// The spec of `req`'s model.
    fn spec_of(&self, req: &Req) -> ModelSpec;
    /// The spec of the model `model`.
    fn spec_for(&self, model: &str) -> ModelSpec;
}

impl<Req> SpecOf<Req> for ModelSpec {
    fn spec_of(&self, _req: &Req) -> ModelSpec {
        *self
    }

    fn spec_for(&self, _model: &str) -> ModelSpec {
        *self
    }
}

/// The specs of a [`ModelTable`], by the model a request names (`G`; `()` until
/// [`LlmEstimator::model_of`] gives one: the table's unknown-model spec, without a warning).
#[derive(Clone, Debug)]
pub struct ByModel<G = ()> {
    table: ModelTable,
    model_of: G,
}

impl<Req> SpecOf<Req> for ByModel<()> {
    fn spec_of(&self, _req: &Req) -> ModelSpec {
        self.table.unknown()
    }

    fn spec_for(&self, model: &str) -> ModelSpec {
        self.table.spec(model)
    }
}

impl<Req, G> SpecOf<Req> for ByModel<G>
where
    G: for<'a> Fn(&'a Req) -> &'a str,
{
    fn spec_of(&self, req: &Req) -> ModelSpec {
        self.table.spec((self.model_of)(req))
    }

    fn spec_for(&self, model: &str) -> ModelSpec {
        self.table.spec(model)
    }
}

impl<F> LlmEstimator<F> {
    /// An estimator reading [`LlmInput`] from requests with `extract`, for a model with the
    /// spec [`ModelSpec::UNKNOWN`] until [`model`](Self::model) or [`models`](Self::models)
    /// says otherwise.
    pub const fn new(extract: F) -> Self {
        LlmEstimator {
            extract,
            chars_per_token: 4,
            models: ModelSpec::UNKNOWN,
        }
    }

    /// Every request is for a model with `spec` (its maximum output is reserved when a request
    /// sets no `max_tokens`).
    pub const fn model(mut self, spec: ModelSpec) -> Self {
        self.models = spec;
        self
    }

    /// Each request's model numbers from `table`: by the model the request names once
    /// [`model_of`](LlmEstimator::model_of) says how to read it, and by each target's model
    /// in a [`Stack`](crate::stack::Stack) ([`Estimate::estimate_for`]).
    pub fn models(self, table: ModelTable) -> LlmEstimator<F, ByModel> {
        LlmEstimator {
            extract: self.extract,
            chars_per_token: self.chars_per_token,
            models: ByModel {
                table,
                model_of: (),
            },
        }
    }
}

impl<F> LlmEstimator<F, ByModel> {
    /// Reads the model id a request names (a model id, an inference-profile id or an ARN).
    pub fn model_of<Req, G>(self, model_of: G) -> LlmEstimator<F, ByModel<G>>
    where
        G: for<'a> Fn(&'a Req) -> &'a str,
    {
        LlmEstimator {
            extract: self.extract,
            chars_per_token: self.chars_per_token,
            models: ByModel {
                table: self.models.table,
                model_of,
            },
        }
    }
}

impl<F, M> LlmEstimator<F, M> {
    /// Characters per input token (default 4). Zero is treated as 1.
    pub const fn chars_per_token(mut self, chars: u64) -> Self {
        self.chars_per_token = if chars == 0 { 1 } else { chars };
        self
    }

    /// The cost of a call with this input on a model with `spec`: one request, input tokens
    /// plus `max_tokens` or the model's maximum (saturating, never overflowing).
    pub const fn cost_with(&self, input: LlmInput, spec: ModelSpec) -> Cost {
        let input_tokens = input.input_chars.div_ceil(self.chars_per_token);
        Cost::units(spec.reservation(input_tokens, 0, 0, input.max_tokens))
    }
}

impl<F> LlmEstimator<F> {
    /// The cost of a call with this input on the estimator's model.
    pub const fn cost(&self, input: LlmInput) -> Cost {
        self.cost_with(input, self.models)
    }
}

impl<Req, F, M> Estimate<Req> for LlmEstimator<F, M>
where
    F: Fn(&Req) -> LlmInput,
    M: SpecOf<Req>,
{
    fn estimate(&self, req: &Req) -> Cost {
        self.cost_with((self.extract)(req), self.models.spec_of(req))
    }

    fn estimate_for(&self, req: &Req, model: &str) -> Cost {
        self.cost_with((self.extract)(req), self.models.spec_for(model))
    }
}

/// Reads what a call really spent from its response.
///
/// Provided: [`NoUsage`] (settle at the estimate), any `Fn(&Res) -> Usage` closure, and
/// [`HeaderUsage`] for `http::Response` rate-limit headers.
pub trait ReadUsage<Res> {
    /// The usage reported by `res`.
    fn read_usage(&self, res: &Res) -> Usage;

    /// The usage reported by `res` when the model `model` answered it (output tokens may
    /// count several times on one model and once on another). A
    /// [`Stack`](crate::stack::Stack) asks this when the attempt's target is labelled with a
    /// model. Default: [`read_usage`](Self::read_usage).
    fn read_usage_for(&self, res: &Res, model: &str) -> Usage {
        let _ = model;
        self.read_usage(res)
    }

    /// The token counts `res` reports (an LLM's answer), for the token metrics
    /// (`headroom_tokens_total`, see [`observe`](crate::observe)); read by a
    /// [`Stack`](crate::stack::Stack) after a response. Default: none.
    fn read_tokens(&self, res: &Res) -> Option<crate::bedrock::TokenCounts> {
        let _ = res;
        None
    }

    /// Whether `res`'s usage arrives in its body, read as it streams (a server-sent-event
    /// answer): then a successful call's reservation is not settled at response time but
    /// handed to the response with [`hand_over`](Self::hand_over), for the body to settle
    /// (see [`Settlement`](crate::admission::Settlement)). Default: never, and a response
    /// that does not defer is settled at once, without allocating.
    fn defers(&self, res: &Res) -> bool {
        let _ = res;
        false
    }

    /// Attaches the deferred `settlement` to `res` (for `http::Response`, in its
    /// extensions), where a body wrapper takes it. Called only when
    /// [`defers`](Self::defers) said so. Default: drops it, which keeps the estimate.
    fn hand_over(&self, res: &mut Res, settlement: crate::admission::Settlement) {
        let _ = res;
        drop(settlement);
    }
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
            max_tokens: Some(10),
        });
        assert_eq!(e.estimate(&0), Cost::units(10));
        assert_eq!(e.estimate(&1), Cost::units(11));
        assert_eq!(e.estimate(&8), Cost::units(12));
        let e = e.chars_per_token(0);
        assert_eq!(e.estimate(&3), Cost::units(13));
        let big = LlmEstimator::new(|_: &()| LlmInput {
            input_chars: u64::MAX,
            max_tokens: Some(u64::MAX),
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
