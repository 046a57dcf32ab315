//! Classification of errors: I/O kinds, timeouts and this crate's own errors.
//!
//! [`classify_error`] walks an error's `source()` chain, outermost first, and the first error it
//! recognises decides the outcome. Like the AWS SDK's retry classifiers, only errors *known* to
//! be transient are retried: anything unrecognised is [`OutcomeKind::Fatal`], because retrying
//! an error nobody understood (a serialization bug, a bad URI, a TLS configuration error) only
//! multiplies the load and delays the report. Wrap a classifier of your own around this one
//! (a closure is a [`Classify`](super::Classify)) to retry more.

use std::error::Error;
use std::io;

use crate::{Outcome, OutcomeKind};

/// Classifies an error by walking its `source()` chain.
///
/// Recognised, in order, at each link of the chain:
///
/// | error | outcome |
/// |---|---|
/// | `std::io::Error` of kind `ConnectionReset`, `ConnectionRefused`, `ConnectionAborted`, `BrokenPipe`, `NotConnected`, `UnexpectedEof`, `NetworkUnreachable`, `HostUnreachable`, `NetworkDown` | [`OutcomeKind::Transient`] |
/// | `std::io::Error` of kind `TimedOut` | [`OutcomeKind::Timeout`] |
/// | `tokio::time::error::Elapsed`, `tower::timeout::error::Elapsed` | [`OutcomeKind::Timeout`] |
/// | `reqwest::Error` (feature `reqwest`): a timeout / a connect error | [`OutcomeKind::Timeout`] / [`OutcomeKind::Transient`] |
/// | `hyper_util::client::legacy::Error` (feature `hyper`): a connect error | [`OutcomeKind::Transient`] |
/// | `hyper::Error` (feature `hyper`): a timeout | [`OutcomeKind::Timeout`] |
/// | `hyper::Error`: an incomplete message ("connection closed before message completed"), a canceled request, a closed channel | [`OutcomeKind::Transient`] |
/// | anything else | look at `source()` (and, for an `io::Error`, the error it wraps) |
/// | end of the chain | [`OutcomeKind::Fatal`] |
///
/// An `io::Error` built with `io::Error::new(kind, inner)` does not expose `inner` through
/// `source()` (it forwards to `inner.source()`), so the wrapped error is inspected through
/// `io::Error::get_ref` as well: a `tokio` timeout boxed in an `io::Error` is still a timeout.
///
/// An incomplete message is the stale pooled-connection race: the server closed an idle
/// keep-alive connection as the request was written to it, and no byte of an answer came. It
/// is retried, as the AWS SDKs and OpenAI's and Anthropic's SDKs retry connection errors for
/// every request; the server may in rare cases have started the work (it closed mid-answer
/// without a byte), so a call that must never run twice wants a classifier of its own that
/// makes it `Fatal` ([`classify_error_with`]).
///
/// ```
/// use std::io;
/// use tower_headroom::{OutcomeKind, classify::classify_error};
///
/// let reset = io::Error::from(io::ErrorKind::ConnectionReset);
/// assert_eq!(classify_error(&reset).kind, OutcomeKind::Transient);
///
/// let timeout = tower::timeout::error::Elapsed::new();
/// assert_eq!(classify_error(&timeout).kind, OutcomeKind::Timeout);
///
/// let other = io::Error::other("certificate rejected");
/// assert_eq!(classify_error(&other).kind, OutcomeKind::Fatal);
/// ```
pub fn classify_error(error: &(dyn Error + 'static)) -> Outcome {
    classify_error_with(error, |_| None)
}

/// [`classify_error`] with a recogniser of your own for the errors of your transport (a
/// `tonic::Status`, say), asked at each link of the chain after this crate's own errors (which
/// always decide first: a fast-fail, a shed call, a retry that gave up) and before the I/O and
/// timeout rules. `None` from `recognise` moves on to the rest of the rules and the next link.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::classify::classify_error_with;
/// use tower_headroom::{Outcome, OutcomeKind};
///
/// #[derive(Debug)]
/// struct Status(u16);
/// impl std::fmt::Display for Status {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "status {}", self.0) }
/// }
/// impl std::error::Error for Status {}
///
/// let grpc = |e: &(dyn std::error::Error + 'static)| {
///     e.downcast_ref::<Status>().map(|s| match s.0 {
///         14 => Outcome::new(OutcomeKind::Unavailable),
///         _ => Outcome::FATAL,
///     })
/// };
/// let wrapped = std::io::Error::other(Status(14));
/// assert_eq!(classify_error_with(&wrapped, grpc).kind, OutcomeKind::Unavailable);
/// ```
pub fn classify_error_with(
    error: &(dyn Error + 'static),
    recognise: impl Fn(&(dyn Error + 'static)) -> Option<Outcome>,
) -> Outcome {
    chain(error)
        .find_map(|link| {
            own_error(link)
                .or_else(|| recognise(link))
                .or_else(|| transport_error(link))
        })
        .unwrap_or(Outcome::FATAL)
}

/// The longest `source()` chain walked, so that a (buggy) cyclic chain cannot hang the caller.
const MAX_DEPTH: usize = 32;

/// `error` and its sources, outermost first, at most 32 links.
///
/// An `io::Error` built with `io::Error::new(kind, inner)` does not expose `inner` through
/// `source()`, so the chain goes through `io::Error::get_ref` instead.
pub fn chain<'a>(
    error: &'a (dyn Error + 'static),
) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |&current| next_link(current)).take(MAX_DEPTH)
}

fn next_link<'a>(current: &'a (dyn Error + 'static)) -> Option<&'a (dyn Error + 'static)> {
    match current.downcast_ref::<io::Error>() {
        // `io::Error::source` skips the wrapped error itself; look at it first.
        Some(io) => io.get_ref().map(|inner| inner as &(dyn Error + 'static)),
        None => current.source(),
    }
}

/// The first error of type `E` in `error`'s [`chain`]: for classifiers of your own that look
/// for a transport's status (a `tonic::Status`, say) behind the layers' wrapping.
///
/// ```
/// use tower_headroom::classify::find;
/// use tower_headroom::fallback::{Exhaustion, NoTargetAvailable};
///
/// let inner = NoTargetAvailable { retry_in: None, cause: Exhaustion::BreakerOpen };
/// let wrapped = std::io::Error::other(inner);
/// assert_eq!(find::<NoTargetAvailable>(&wrapped), Some(&inner));
/// ```
pub fn find<'a, E: Error + 'static>(error: &'a (dyn Error + 'static)) -> Option<&'a E> {
    chain(error).find_map(|e| e.downcast_ref::<E>())
}

/// Recognises one of this crate's own errors, without looking at its source. They decide
/// before anything they wrap.
fn own_error(error: &(dyn Error + 'static)) -> Option<Outcome> {
    if let Some(exhausted) = error.downcast_ref::<crate::retry::RetriesExhausted>() {
        // A layer outside the retry layer (a fallback router) acts on what the backend last
        // said: an overloaded model that stayed overloaded moves the router to the next one.
        return Some(exhausted.last());
    }
    if error.is::<crate::retry::Fatal>() {
        return Some(Outcome::FATAL);
    }
    // A spent day: a daily throttle, with when it returns as the server delay.
    if let Some(spent) = error.downcast_ref::<crate::retry::QuotaExhausted>() {
        return Some(spent.outcome());
    }
    // Admission shed the call locally: a quota throttle that was never sent. A cost that no
    // window could ever hold is a mistake in the request, not a reason to wait.
    if let Some(rejected) = error.downcast_ref::<crate::admission::Rejected>() {
        return Some(
            match rejected.reason {
                crate::admission::RejectReason::CostTooLarge => Outcome::FATAL,
                // A long window (a day) has no room within the call's deadline: a spent day,
                // so that the retry policy stops it (`StopReason::QuotaExhausted`) and
                // `retry::stopped_error` turns it into `retry::QuotaExhausted`.
                crate::admission::RejectReason::QuotaExhausted { .. } => {
                    Outcome::throttled(crate::ThrottleScope::Daily)
                        .with_retry_after_opt(rejected.retry_in)
                }
                _ => Outcome::throttled(crate::ThrottleScope::Unknown)
                    .with_retry_after_opt(rejected.retry_in),
            }
            .refused_locally(),
        );
    }
    // A fast-fail says the backend is unavailable and when to come back; it was never sent, so
    // a breaker never records it.
    if let Some(open) = error.downcast_ref::<crate::breaker::CircuitOpen>() {
        return Some(
            Outcome::new(OutcomeKind::Unavailable)
                .with_retry_after(open.retry_in)
                .refused_locally(),
        );
    }
    // A full concurrency limit: the target cannot take the call now, as with an open breaker;
    // a slot may free within the hint.
    if let Some(limited) = error.downcast_ref::<crate::concurrency::ConcurrencyLimited>() {
        return Some(
            Outcome::new(OutcomeKind::Unavailable)
                .with_retry_after(limited.retry_in)
                .refused_locally(),
        );
    }
    if let Some(none) = error.downcast_ref::<crate::fallback::NoTargetAvailable>() {
        let kind = match none.cause {
            // No quota could admit it in time: a throttle the client caused, not a sick backend.
            crate::fallback::Exhaustion::NoHeadroom => {
                OutcomeKind::Throttled(crate::ThrottleScope::Unknown)
            }
            _ => OutcomeKind::Unavailable,
        };
        return Some(
            Outcome::new(kind)
                .with_retry_after_opt(none.retry_in)
                .refused_locally(),
        );
    }
    None
}

/// Recognises an I/O error or a timeout, without looking at its source.
fn transport_error(error: &(dyn Error + 'static)) -> Option<Outcome> {
    if let Some(io) = error.downcast_ref::<io::Error>() {
        return io_kind(io.kind()).map(Outcome::new);
    }
    if error.is::<tokio::time::error::Elapsed>()
        || error.is::<tower::timeout::error::Elapsed>()
        || error.is::<crate::timeout::AttemptTimedOut>()
    {
        return Some(Outcome::new(OutcomeKind::Timeout));
    }
    client_error(error).map(Outcome::new)
}

/// Recognises an HTTP client library's error by its kind; `None` for one whose kind says
/// nothing (its source is looked at next).
#[cfg(feature = "hyper")]
fn client_error(error: &(dyn Error + 'static)) -> Option<OutcomeKind> {
    #[cfg(feature = "reqwest")]
    if let Some(e) = error.downcast_ref::<reqwest::Error>() {
        if e.is_timeout() {
            return Some(OutcomeKind::Timeout);
        }
        if e.is_connect() {
            return Some(OutcomeKind::Transient);
        }
        return None;
    }
    if let Some(e) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
        return e.is_connect().then_some(OutcomeKind::Transient);
    }
    if let Some(e) = error.downcast_ref::<hyper::Error>() {
        if e.is_timeout() {
            return Some(OutcomeKind::Timeout);
        }
        if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
            return Some(OutcomeKind::Transient);
        }
    }
    None
}

#[cfg(not(feature = "hyper"))]
fn client_error(_error: &(dyn Error + 'static)) -> Option<OutcomeKind> {
    None
}

/// The outcome of an I/O error kind, if the kind says anything about retrying.
const fn io_kind(kind: io::ErrorKind) -> Option<OutcomeKind> {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionReset
        | K::ConnectionRefused
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::NotConnected
        | K::UnexpectedEof
        | K::NetworkUnreachable
        | K::HostUnreachable
        | K::NetworkDown => Some(OutcomeKind::Transient),
        K::TimedOut => Some(OutcomeKind::Timeout),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[derive(Debug)]
    struct Wrapper(Box<dyn Error + Send + Sync>);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapper")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn io_error_wrapping_a_timeout_is_a_timeout() {
        let inner = tower::timeout::error::Elapsed::new();
        let io = io::Error::other(inner);
        assert_eq!(classify_error(&io).kind, OutcomeKind::Timeout);
    }

    #[test]
    fn deep_chain_is_walked() {
        let mut error: Box<dyn Error + Send + Sync> =
            Box::new(io::Error::from(io::ErrorKind::BrokenPipe));
        for _ in 0..10 {
            error = Box::new(Wrapper(error));
        }
        assert_eq!(classify_error(&*error).kind, OutcomeKind::Transient);
    }

    #[test]
    fn chain_deeper_than_the_bound_is_fatal_not_a_hang() {
        let mut error: Box<dyn Error + Send + Sync> =
            Box::new(io::Error::from(io::ErrorKind::BrokenPipe));
        for _ in 0..40 {
            error = Box::new(Wrapper(error));
        }
        assert_eq!(classify_error(&*error).kind, OutcomeKind::Fatal);
    }
}
