//! What an OpenAI- or Anthropic-style JSON error body says, as a retry policy needs it.

use crate::OutcomeKind;

/// How many bytes of an error body are read: enough for every vendor's error object, small
/// enough that a large error page costs nothing.
pub const MAX_ERROR_PREFIX: usize = 16 * 1024;

/// The class of an OpenAI- or Anthropic-style JSON error body, as a retry policy needs it.
///
/// A status code alone cannot tell a rate limit from a spent balance: both vendors answer `429`
/// for both, and only the body's error type differs. [`VendorError::parse`] reads the error
/// type of a body's first bytes (the layer [`ErrorBodyLayer`](super::ErrorBodyLayer) hands it
/// at most [`MAX_ERROR_PREFIX`] bytes of an error response), and
/// [`HttpClassifier`](crate::HttpClassifier) lets it decide over the status:
///
/// | body | vendor | outcome |
/// |---|---|---|
/// | `error.type` / `error.code` `insufficient_quota` (429) | OpenAI | `Fatal`: a billing stop, never retried |
/// | `error.details.error_code` `enforced_spend_limit_reached` (429), `billing_error` (402) | Anthropic | `Fatal` |
/// | `error.code` `rate_limit_exceeded`, `error.type` `rate_limit_error` | both | `Throttled` (scope from the rate-limit headers) |
/// | `error.type` `overloaded_error` (529) | Anthropic | `Overloaded` |
/// | `error.code` `context_length_exceeded`; `invalid_request_error` "prompt is too long"; `request_too_large` (413) | both | `TooLarge`: the router moves to the next model |
/// | `authentication_error`, `permission_error`, `not_found_error`, `invalid_request_error` | both | `Fatal` |
/// | `api_error`, `server_error` | both | `Transient` |
///
/// Sources: OpenAI's error codes guide
/// (<https://platform.openai.com/docs/guides/error-codes>: 429 "Rate limit reached" and 429 "You
/// exceeded your current quota", whose body carries `"type": "insufficient_quota"`; 400
/// `context_length_exceeded`); Anthropic's HTTP errors page
/// (<https://docs.claude.com/en/api/errors>: the `{"type":"error","error":{"type":…,
/// "message":…}}` shape, 413 `request_too_large`, 429 `rate_limit_error`, 529
/// `overloaded_error`) and its spend-limit page (a 429 `rate_limit_error` whose
/// `error.details.error_code` is `enforced_spend_limit_reached` lasts until the next month).
///
/// Nothing of the body is kept or logged: parsing keeps only the error class. The message is
/// read only to tell Anthropic's "prompt is too long" from other invalid requests, and only as
/// far as that prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VendorError {
    /// A rate limit: wait and retry (OpenAI `rate_limit_exceeded`, Anthropic `rate_limit_error`).
    RateLimited,
    /// The account's balance or spend limit is spent (OpenAI `insufficient_quota`, Anthropic
    /// `billing_error` or `enforced_spend_limit_reached`): no wait within a call cures it.
    BillingStop,
    /// The vendor's capacity is saturated for everyone (Anthropic `overloaded_error`).
    Overloaded,
    /// The request is larger than the model takes (OpenAI `context_length_exceeded`, Anthropic
    /// "prompt is too long", `request_too_large`): another model may take it.
    TooLarge,
    /// The request or the credentials are wrong (invalid request, authentication,
    /// permission, not found).
    Invalid,
    /// An error inside the vendor (Anthropic `api_error`, OpenAI `server_error`).
    Server,
}

impl VendorError {
    /// The class of the JSON error object at the start of `body` (OpenAI's
    /// `{"error":{"type","code",…}}` or Anthropic's `{"type":"error","error":{"type",…}}`),
    /// or `None` when it is not one (not JSON, cut short, another shape, an unknown type).
    pub fn parse(body: &[u8]) -> Option<VendorError> {
        let body: serde_json::Value = serde_json::from_slice(body).ok()?;
        let error = body.get("error")?;
        let field = |name: &str| error.get(name).and_then(serde_json::Value::as_str);
        let (kind, code) = (field("type"), field("code"));
        let detail = error
            .get("details")
            .and_then(|d| d.get("error_code"))
            .and_then(serde_json::Value::as_str);
        if kind == Some("insufficient_quota")
            || code == Some("insufficient_quota")
            || kind == Some("billing_error")
            || detail == Some("enforced_spend_limit_reached")
        {
            return Some(VendorError::BillingStop);
        }
        if code == Some("context_length_exceeded") || kind == Some("request_too_large") {
            return Some(VendorError::TooLarge);
        }
        if code == Some("rate_limit_exceeded") {
            return Some(VendorError::RateLimited);
        }
        Some(match kind? {
            "rate_limit_error" | "rate_limit_exceeded" | "requests" | "tokens" => {
                VendorError::RateLimited
            }
            "overloaded_error" => VendorError::Overloaded,
            "invalid_request_error" if prompt_too_long(field("message")) => VendorError::TooLarge,
            "invalid_request_error"
            | "authentication_error"
            | "permission_error"
            | "not_found_error" => VendorError::Invalid,
            "api_error" | "server_error" => VendorError::Server,
            _ => return None,
        })
    }

    /// The outcome class this error means (the table on [`VendorError`]).
    pub const fn kind(self) -> OutcomeKind {
        match self {
            VendorError::RateLimited => OutcomeKind::Throttled(crate::ThrottleScope::Unknown),
            VendorError::BillingStop | VendorError::Invalid => OutcomeKind::Fatal,
            VendorError::Overloaded => OutcomeKind::Overloaded,
            VendorError::TooLarge => OutcomeKind::TooLarge,
            VendorError::Server => OutcomeKind::Transient,
        }
    }
}

/// Anthropic's context-length error is an `invalid_request_error` whose message starts "prompt
/// is too long" (e.g. "prompt is too long: 208310 tokens > 200000 maximum").
fn prompt_too_long(message: Option<&str>) -> bool {
    const START: &[u8] = b"prompt is too long";
    message.is_some_and(|m| {
        let m = m.trim_start().as_bytes();
        m.len() >= START.len() && m[..START.len()].eq_ignore_ascii_case(START)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_shape_has_its_class() {
        let cases: &[(&str, Option<VendorError>)] = &[
            (
                r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
                Some(VendorError::BillingStop),
            ),
            (
                r#"{"error":{"message":"Rate limit reached for gpt-4o","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
                Some(VendorError::RateLimited),
            ),
            (
                r#"{"error":{"message":"This model's maximum context length is 128000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                Some(VendorError::TooLarge),
            ),
            (
                r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
                Some(VendorError::Server),
            ),
            (
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}"#,
                Some(VendorError::Overloaded),
            ),
            (
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
                Some(VendorError::RateLimited),
            ),
            (
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"spend limit","details":{"error_code":"enforced_spend_limit_reached"}}}"#,
                Some(VendorError::BillingStop),
            ),
            (
                r#"{"type":"error","error":{"type":"billing_error","message":"credit balance too low"}}"#,
                Some(VendorError::BillingStop),
            ),
            (
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 208310 tokens > 200000 maximum"}}"#,
                Some(VendorError::TooLarge),
            ),
            (
                r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum size"}}"#,
                Some(VendorError::TooLarge),
            ),
            (
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: field required"}}"#,
                Some(VendorError::Invalid),
            ),
            (
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#,
                Some(VendorError::Invalid),
            ),
            (
                r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
                Some(VendorError::Server),
            ),
            // Not a vendor error object: the status decides.
            (
                r#"{"type":"error","error":{"type":"brand_new_error"}}"#,
                None,
            ),
            (r#"{"message":"Too Many Requests"}"#, None),
            (r#"{"error":"rate limited"}"#, None),
            (r#"{"error":{"type":"insufficient_quo"#, None),
            ("<html>502 Bad Gateway</html>", None),
            ("", None),
        ];
        for (body, class) in cases {
            assert_eq!(VendorError::parse(body.as_bytes()), *class, "{body}");
        }
    }

    #[test]
    fn classes_map_to_outcomes() {
        use crate::ThrottleScope;
        assert_eq!(VendorError::BillingStop.kind(), OutcomeKind::Fatal);
        assert_eq!(
            VendorError::RateLimited.kind(),
            OutcomeKind::Throttled(ThrottleScope::Unknown)
        );
        assert_eq!(VendorError::Overloaded.kind(), OutcomeKind::Overloaded);
        assert_eq!(VendorError::TooLarge.kind(), OutcomeKind::TooLarge);
        assert_eq!(VendorError::Invalid.kind(), OutcomeKind::Fatal);
        assert_eq!(VendorError::Server.kind(), OutcomeKind::Transient);
    }

    #[test]
    fn any_bytes_parse_without_panicking() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            let _ = VendorError::parse(&bytes);
        }
        assert!(!prompt_too_long(Some("prompt is too")));
        assert!(prompt_too_long(Some("Prompt is too long")));
    }
}
