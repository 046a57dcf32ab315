//! [`error_response`]: the HTTP answer a gateway gives for a failed call.

use std::error::Error;

use crate::OutcomeKind;
use crate::admission::Rejected;
use crate::classify::{classify_error, find};

/// The HTTP answer a gateway gives when its stack fails a call: the error is classified like
/// any other ([`classify_error`]), and the outcome decides.
///
/// | outcome | status |
/// |---|---|
/// | a quota throttle, or admission shed the call ([`Rejected`]) | `429`, `Retry-After` |
/// | a spent per-day quota ([`QuotaExhausted`](crate::retry::QuotaExhausted)) | `429`, `Retry-After` when the quota says when it returns |
/// | a call no quota window can hold, or one larger than every target takes (`TooLarge`) | `413` |
/// | overloaded or unavailable, every breaker open ([`NoTargetAvailable`](crate::fallback::NoTargetAvailable)) | `503`, `Retry-After` when known |
/// | timeout | `504` |
/// | anything else (transient, or a request the upstream refused) | `502` |
///
/// `Retry-After` is in whole seconds, rounded up. The response body is `B::default()`: nothing
/// of the upstream's error text reaches the caller.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::admission::{RejectReason, Rejected};
/// use tower_headroom::stack::error_response;
///
/// let shed = Rejected { retry_in: Some(Duration::from_millis(1500)), reason: RejectReason::Deadline };
/// let response = error_response::<String>(&shed);
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
/// ```
pub fn error_response<B: Default>(error: &(dyn Error + 'static)) -> http::Response<B> {
    let outcome = classify_error(error);
    let status = match outcome.kind {
        OutcomeKind::Throttled(_) => http::StatusCode::TOO_MANY_REQUESTS,
        OutcomeKind::Overloaded | OutcomeKind::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        OutcomeKind::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
        OutcomeKind::Fatal => match find::<Rejected>(error) {
            // Admission refused a call too large for any window: the caller's to fix.
            Some(rejected) => return rejected.to_response(),
            None => http::StatusCode::BAD_GATEWAY,
        },
        OutcomeKind::TooLarge => http::StatusCode::PAYLOAD_TOO_LARGE,
        OutcomeKind::Transient | OutcomeKind::Success => http::StatusCode::BAD_GATEWAY,
    };
    let mut response = http::Response::new(B::default());
    *response.status_mut() = status;
    if let (Some(wait), true) = (outcome.retry_after, status != http::StatusCode::BAD_GATEWAY) {
        crate::classify::retry_after::insert(response.headers_mut(), wait);
    }
    response
}
