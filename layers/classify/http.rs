//! Classification of `http::Response`s by status and headers.
//!
//! [`HttpClassifier`] is the classifier for any `tower::Service` that answers with an
//! `http::Response<B>` (hyper, reqwest through `http` conversions, axum clients): the status
//! decides the class, an `x-amzn-errortype` header hands the decision to the [AWS
//! table](super::aws), and the retry headers ([`retry_after`](super::retry_after)) give the
//! delay and, for a 429, which limit ran out. Errors go to [`classify_error`].
//!
//! On a 1xx/2xx/3xx response no header is read and nothing allocates.

use std::error::Error;
use std::time::SystemTime;

use http::{HeaderName, Response};

use super::{Classify, aws, classify_error, retry_after};
use crate::retry::RetryInfo;
use crate::{Outcome, OutcomeKind, ThrottleScope};

const X_AMZN_ERRORTYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
const X_SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// Classifies `http::Response`s by status code and retry headers.
///
/// | status | outcome |
/// |---|---|
/// | 1xx, 2xx, 3xx | `Success` |
/// | 429 | `Throttled`, scope from the `*-remaining` headers, else `Unknown` |
/// | 502, 503, 504 | `Unavailable` |
/// | 529 | `Overloaded` |
/// | 408 | `Timeout` |
/// | 500, other 5xx | `Transient` |
/// | 501, 505 | `Fatal` (the server will never do it) |
/// | other 4xx, anything >= 600 | `Fatal` |
/// | below 100 (not HTTP; only reachable through [`classify_status`]) | `Fatal` |
///
/// With an `x-amzn-errortype` header the [AWS code table](super::aws) decides, and the status
/// is only the fallback for codes the table does not know. (The error *message* is in the body,
/// which a classifier does not read; a Bedrock "Model ... is currently overloaded" sent as a
/// `ThrottlingException` 429 therefore reads as `Throttled` here. The SDK adapters see the
/// message.) With feature `llm-http`, a `VendorError` in the response's extensions (put there
/// by `llm_http::ErrorBodyLayer` from an OpenAI- or Anthropic-style JSON error body) decides
/// over the status: a 429 `insufficient_quota` is a billing stop (`Fatal`), a context-length
/// error is `TooLarge`.
///
/// Then `x-should-retry`, which OpenAI's and Anthropic's servers send and their SDKs obey over
/// the status: `false` makes a retryable outcome `Fatal`, `true` makes a `Fatal` one
/// `Transient`; any other value is ignored.
///
/// A retryable outcome carries the delay from
/// [`retry_after::from_headers`](super::retry_after::from_headers); non-retryable ones carry
/// none.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::{Classify, HttpClassifier, OutcomeKind};
///
/// let res = http::Response::builder()
///     .status(503)
///     .header("retry-after", "3")
///     .body(())
///     .unwrap();
/// let outcome = HttpClassifier::new().classify(Ok(&res));
/// assert_eq!(outcome.kind, OutcomeKind::Unavailable);
/// assert_eq!(outcome.retry_after, Some(Duration::from_secs(3)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpClassifier {
    _private: (),
}

impl HttpClassifier {
    /// A classifier with the table above.
    pub const fn new() -> Self {
        HttpClassifier { _private: () }
    }

    /// Classifies a response with the current time `now` given, for deterministic tests of
    /// date-valued headers. [`Classify::classify`] reads [`SystemTime::now`] instead, and only
    /// for a failure whose headers may carry a retry delay.
    pub fn classify_response<B>(&self, res: &Response<B>, now: SystemTime) -> Outcome {
        self.classify_with(res, || now)
    }

    fn classify_with<B>(&self, res: &Response<B>, now: impl FnOnce() -> SystemTime) -> Outcome {
        let status = res.status().as_u16();
        if status < 400 {
            return Outcome::SUCCESS;
        }
        let headers = res.headers();
        let kind = match headers.get(X_AMZN_ERRORTYPE).and_then(|v| v.to_str().ok()) {
            Some(code) => aws::classify_with_status(code, None, status),
            None => vendor_kind(res).unwrap_or_else(|| classify_status(status)),
        };
        let kind = match headers.get(X_SHOULD_RETRY).map(|v| v.as_bytes()) {
            Some(b"false") if kind.is_retryable() => OutcomeKind::Fatal,
            Some(b"true") if kind == OutcomeKind::Fatal => OutcomeKind::Transient,
            _ => kind,
        };
        if !kind.is_retryable() {
            return Outcome::new(kind);
        }
        let known_scope = match kind {
            OutcomeKind::Throttled(scope) => Some(scope),
            _ => None,
        };
        let hints = retry_after::from_headers(headers, known_scope, now());
        // A throttle's scope may be refined by the headers (which limit reads zero).
        let kind = match (kind, hints.scope) {
            (OutcomeKind::Throttled(_), Some(scope)) => OutcomeKind::Throttled(scope),
            (kind, _) => kind,
        };
        Outcome::new(kind).with_retry_after_opt(hints.delay)
    }
}

/// The class of the vendor error body `llm_http::ErrorBodyLayer` found, if it found one.
#[cfg(feature = "llm-http")]
fn vendor_kind<B>(res: &Response<B>) -> Option<OutcomeKind> {
    res.extensions()
        .get::<crate::llm_http::VendorError>()
        .map(|e| e.kind())
}

#[cfg(not(feature = "llm-http"))]
fn vendor_kind<B>(_res: &Response<B>) -> Option<OutcomeKind> {
    None
}

impl<B> Classify<Response<B>> for HttpClassifier {
    fn classify(&self, result: Result<&Response<B>, &(dyn Error + 'static)>) -> Outcome {
        match result {
            Ok(res) => self.classify_with(res, SystemTime::now),
            Err(error) => classify_error(error),
        }
    }

    /// Inserts the [`RetryInfo`] into the response's extensions.
    fn record_retries(&self, response: &mut Response<B>, info: RetryInfo) {
        response.extensions_mut().insert(info);
    }
}

/// The outcome of an HTTP status code alone (the table on [`HttpClassifier`]).
///
/// ```
/// use tower_headroom::{OutcomeKind, ThrottleScope, classify::classify_status};
///
/// assert_eq!(classify_status(200), OutcomeKind::Success);
/// assert_eq!(classify_status(429), OutcomeKind::Throttled(ThrottleScope::Unknown));
/// assert_eq!(classify_status(529), OutcomeKind::Overloaded);
/// ```
pub const fn classify_status(status: u16) -> OutcomeKind {
    match status {
        100..=399 => OutcomeKind::Success,
        408 => OutcomeKind::Timeout,
        429 => OutcomeKind::Throttled(ThrottleScope::Unknown),
        500 => OutcomeKind::Transient,
        501 | 505 => OutcomeKind::Fatal,
        502..=504 => OutcomeKind::Unavailable,
        529 => OutcomeKind::Overloaded,
        506..=599 => OutcomeKind::Transient,
        _ => OutcomeKind::Fatal,
    }
}
