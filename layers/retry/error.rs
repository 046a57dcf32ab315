//! The errors the retry layer adds. Both keep the inner error as their `source()`.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use super::StopReason;
use crate::{BoxError, Outcome};

/// The retry layer gave up on a call that kept failing with retryable outcomes.
///
/// `source()` is the last attempt's error. [`last`](Self::last) carries the last outcome,
/// including any delay the server asked for, so a caller can decide when to come back.
#[derive(Debug)]
pub struct RetriesExhausted {
    attempts: u32,
    last: Outcome,
    reason: StopReason,
    waited: Duration,
    source: BoxError,
}

impl RetriesExhausted {
    pub(crate) fn new(
        attempts: u32,
        last: Outcome,
        reason: StopReason,
        waited: Duration,
        source: BoxError,
    ) -> Self {
        RetriesExhausted {
            attempts,
            last,
            reason,
            waited,
            source,
        }
    }

    /// Attempts made, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The outcome of the last attempt.
    pub fn last(&self) -> Outcome {
        self.last
    }

    /// Why no further attempt was made.
    pub fn reason(&self) -> StopReason {
        self.reason
    }

    /// Time spent waiting between attempts.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The last attempt's error.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for RetriesExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gave up after {} attempt{} ({} waited): {}; last outcome: {}",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            humanize(self.waited),
            self.reason,
            self.last
        )
    }
}

impl Error for RetriesExhausted {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// A call failed in a way retrying cannot fix ([`OutcomeKind::Fatal`](crate::OutcomeKind::Fatal):
/// a validation error, access denied, an exceeded service quota). Fix the request or the
/// configuration; do not retry it.
#[derive(Debug)]
pub struct Fatal {
    attempts: u32,
    source: BoxError,
}

impl Fatal {
    pub(crate) fn new(attempts: u32, source: BoxError) -> Self {
        Fatal { attempts, source }
    }

    /// Attempts made, the first included (more than one when earlier attempts failed
    /// retryably).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The fatal error.
    pub fn into_source(self) -> BoxError {
        self.source
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "non-retryable failure on attempt {}; fix the request or configuration",
            self.attempts
        )
    }
}

impl Error for Fatal {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// How many attempts a call took and how long it waited between them.
///
/// The retry layer hands it to [`Classify::record_retries`](crate::Classify::record_retries)
/// when a call needed more than one attempt; [`HttpClassifier`](crate::HttpClassifier) puts it
/// in the `http::Response` extensions. A response without it succeeded on its first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryInfo {
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Time spent waiting between attempts.
    pub waited: Duration,
}

fn humanize(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}
