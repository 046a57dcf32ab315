//! Classification: turning what a call returned into an [`Outcome`].
//!
//! Every other policy in this crate reads [`Outcome`]s, never raw responses or errors. A
//! [`Classify`] implementation looks at the `Ok` response or the error of one attempt and says
//! which class of outcome it was, parsing any server-provided retry delay on the way.
//!
//! Provided classifiers:
//! - [`HttpClassifier`]: `http::Response` status and headers (`Retry-After` and relatives),
//!   errors through [`classify_error`]; [`classify_status`] is its status table alone;
//! - [`aws`]: AWS error codes and messages as plain strings (Bedrock, DynamoDB), so the same
//!   table serves the SDK adapters and hand-rolled HTTP clients;
//! - [`classify_error`]: I/O errors, timeouts, and this crate's own errors, found anywhere in an
//!   error's `source()` chain;
//! - [`retry_after`]: the header parsers, usable on their own;
//!   [`retry_after::from_headers`], which picks the delay to honour (an explicit delay first, a
//!   rate limit's reset read as its refill rate otherwise) and the throttle scope; and
//!   [`retry_after::rate_limits`], OpenAI's and Anthropic's rate-limit state (limit, remaining,
//!   reset) for admission control to pace by.
//!
//! Only failures known to be worth retrying are retryable: an unrecognised error or status is
//! [`OutcomeKind::Fatal`](crate::OutcomeKind::Fatal), as in the AWS SDKs. Server delays are
//! clamped to [`retry_after::MAX_SERVER_DELAY`], and no header value can make a classifier panic
//! or shorten a delay the server asked for.
//!
//! A closure `Fn(Result<&Res, &(dyn Error + 'static)>) -> Outcome` is a classifier too.

use std::error::Error;

use crate::Outcome;
use crate::retry::RetryInfo;

pub mod aws;
mod error;
mod http;
pub mod retry_after;

pub use self::error::{chain, classify_error, classify_error_with, find};
pub use self::http::{HttpClassifier, classify_status};

/// Classifies the result of one attempt into an [`Outcome`].
///
/// Errors are passed as `&(dyn Error + 'static)` so that a classifier can walk the `source()`
/// chain and downcast; the layers of this crate convert inner errors into
/// [`BoxError`](crate::BoxError) (Tower's convention) before classifying.
pub trait Classify<Res> {
    /// Classifies one attempt's result.
    fn classify(&self, result: Result<&Res, &(dyn Error + 'static)>) -> Outcome;

    /// Called by the retry layer with a response that took more than one attempt, so that the
    /// attempt count can travel with the response. The default does nothing;
    /// [`HttpClassifier`] inserts the [`RetryInfo`] into the response's extensions.
    ///
    /// Not called for first-attempt successes, so the success path never allocates.
    fn record_retries(&self, response: &mut Res, info: RetryInfo) {
        let _ = (response, info);
    }
}

impl<Res, F> Classify<Res> for F
where
    F: Fn(Result<&Res, &(dyn Error + 'static)>) -> Outcome,
{
    fn classify(&self, result: Result<&Res, &(dyn Error + 'static)>) -> Outcome {
        self(result)
    }
}
