//! The one vocabulary every policy speaks: what happened to a call.
//!
//! Classifiers (see [`crate::classify`]) turn an HTTP response, an AWS error code, an I/O error
//! or a timeout into an [`Outcome`]; nothing else inspects raw errors. The methods on
//! [`OutcomeKind`] are the policy table — whether a class is retried, whether a circuit
//! breaker counts it, whether the quota learns from it — written down once, here.

use std::fmt;
use std::time::Duration;

/// What happened to one attempt, plus the retry delay the server asked for, if any.
///
/// `Outcome` is `Copy` and small so that it can be passed around freely on the hot path.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::{Outcome, OutcomeKind, ThrottleScope};
///
/// let outcome = Outcome::throttled(ThrottleScope::Tokens).with_retry_after(Duration::from_secs(7));
/// assert_eq!(outcome.kind, OutcomeKind::Throttled(ThrottleScope::Tokens));
/// assert!(outcome.kind.is_retryable());
/// assert!(!outcome.kind.counts_for_breaker());
/// assert_eq!(outcome.retry_after, Some(Duration::from_secs(7)));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// The class of the outcome.
    pub kind: OutcomeKind,
    /// How long the server asked the client to wait before trying again (`Retry-After` and its
    /// relatives), already parsed and clamped by the classifier.
    pub retry_after: Option<Duration>,
    /// The call was refused by this client before any request was sent (admission shed it,
    /// every breaker was open, no target had quota in time): not an attempt against the
    /// service, so it spends no attempt of the retry policy and none of its budget, and a
    /// breaker never counts it.
    pub local: bool,
    /// Why the provider throttled, when it said (DynamoDB's `ThrottlingReasons`): which
    /// resource, which operation, which limit. The [`kind`](Self::kind) already carries what
    /// the policies need (a key-range throttle is [`ThrottleScope::Partition`]); this is the
    /// detail, for callers and reports. Never the resource's ARN or a key value.
    pub reason: Option<ThrottleReason>,
}

/// Why DynamoDB throttled a request: one entry of its `ThrottlingReasons`, whose `reason` reads
/// `ResourceType` + `OperationType` + `LimitType` (`TableWriteKeyRangeThroughputExceeded`)
/// ([ThrottlingReason](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html)).
/// [`classify::aws::throttle_reason`](crate::classify::aws::throttle_reason) parses one, and
/// [`classify::aws::classify_reasons`](crate::classify::aws::classify_reasons) says which
/// [`ThrottleScope`] a list of them means.
///
/// ```
/// use tower_headroom::classify::aws::throttle_reason;
/// use tower_headroom::{ThrottleLimit, ThrottleReason, ThrottledOperation, ThrottledResource};
///
/// assert_eq!(
///     throttle_reason("IndexWriteKeyRangeThroughputExceeded"),
///     Some(ThrottleReason {
///         resource: ThrottledResource::Index,
///         operation: ThrottledOperation::Write,
///         limit: ThrottleLimit::KeyRange,
///     })
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThrottleReason {
    /// What was throttled: the table, or one of its global secondary indexes.
    pub resource: ThrottledResource,
    /// Reads or writes.
    pub operation: ThrottledOperation,
    /// Which limit said no.
    pub limit: ThrottleLimit,
}

/// The resource a [`ThrottleReason`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottledResource {
    /// The table (`Table…`).
    Table,
    /// A global secondary index (`Index…`).
    Index,
}

/// The operation a [`ThrottleReason`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottledOperation {
    /// Reads (read capacity units).
    Read,
    /// Writes (write capacity units).
    Write,
}

/// The limit a [`ThrottleReason`] names, and what it teaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottleLimit {
    /// `ProvisionedThroughputExceeded`: the table's or index's provisioned RCU or WCU
    /// ([`ThrottleScope::Capacity`]: the table's read or write budget learns).
    Provisioned,
    /// `KeyRangeThroughputExceeded`: one partition key value (a key range) is over the
    /// partition maximum of 3,000 RCU / 1,000 WCU per second ([`ThrottleScope::Partition`]:
    /// the table's budget is not lowered; slowing the whole table for one hot key starves the
    /// others).
    KeyRange,
    /// `AccountLimitExceeded`: an on-demand table or index is over the per-table throughput
    /// quota its account sets for the Region (by default 40,000 RCU and 40,000 WCU per table,
    /// [DynamoDB quotas](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html));
    /// a budget per table set account-wide, so the table's read or write budget learns it
    /// ([`ThrottleScope::Capacity`]) as it learns a provisioned throttle.
    AccountLimit,
    /// `MaxOnDemandThroughputExceeded`: an on-demand table or index is over the maximum
    /// throughput configured on it ([`ThrottleScope::Capacity`]: the table's budget learns its
    /// configured maximum).
    MaxOnDemand,
}

impl ThrottleReason {
    /// The scope a throttle for this reason has: [`ThrottleScope::Partition`] for a key-range
    /// throttle, [`ThrottleScope::Capacity`] for every other limit (the table's or index's own
    /// budget: provisioned, the per-table account quota, the configured on-demand maximum).
    pub const fn scope(&self) -> ThrottleScope {
        match self.limit {
            ThrottleLimit::KeyRange => ThrottleScope::Partition,
            ThrottleLimit::Provisioned
            | ThrottleLimit::AccountLimit
            | ThrottleLimit::MaxOnDemand => ThrottleScope::Capacity,
        }
    }
}

/// The class of an [`Outcome`]; its methods say how each policy treats it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutcomeKind {
    /// The call succeeded (2xx, or an `Ok` the classifier accepted).
    Success,
    /// A quota said no: 429, `ThrottlingException`, `ProvisionedThroughputExceededException`;
    /// [`ThrottleScope::Daily`] when the quota that said no is a per-day one.
    Throttled(ThrottleScope),
    /// The shared model (not your quota) is saturated: "Model ... is currently overloaded",
    /// `ModelNotReadyException`, HTTP 529.
    Overloaded,
    /// The service is unhealthy or out of capacity: 503, 502, 504, "Too many connections".
    Unavailable,
    /// The attempt ran out of time: an attempt deadline, 408, `ModelTimeoutException`.
    Timeout,
    /// A short-lived fault worth a quick retry: connection reset/refused, 500.
    Transient,
    /// Retrying cannot help: 400 validation, 403 access denied, 404, service quota exceeded.
    Fatal,
    /// The request is larger than this target takes — the prompt exceeds the model's context
    /// (OpenAI `context_length_exceeded`, Anthropic "prompt is too long"): retrying the same
    /// target cannot help, but a fallback router moves to the next model, which may take more.
    TooLarge,
}

/// Which limit a [`OutcomeKind::Throttled`] outcome hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ThrottleScope {
    /// A requests-per-window quota (Bedrock RPM, DynamoDB `RequestLimitExceeded`).
    Requests,
    /// A tokens-per-window quota (Bedrock TPM).
    Tokens,
    /// Per-second provisioned capacity of a table or index (DynamoDB RCU/WCU).
    Capacity,
    /// One partition or one key is over its own ceiling (a DynamoDB hot partition,
    /// `ThrottlingReasons` `*KeyRangeThroughputExceeded`, see [`ThrottleReason`]): the key's quota as a whole was not
    /// the problem, so admission never lowers it for this.
    Partition,
    /// A throttle that did not say which limit it hit.
    Unknown,
    /// A per-day quota (Bedrock tokens per day) is spent: no per-minute wait cures it.
    Daily,
}

impl Outcome {
    /// A successful call.
    pub const SUCCESS: Outcome = Outcome::new(OutcomeKind::Success);
    /// A fatal failure.
    pub const FATAL: Outcome = Outcome::new(OutcomeKind::Fatal);

    /// An outcome of the given kind with no server-provided delay.
    pub const fn new(kind: OutcomeKind) -> Self {
        Outcome {
            kind,
            retry_after: None,
            local: false,
            reason: None,
        }
    }

    /// A throttle of the given scope.
    pub const fn throttled(scope: ThrottleScope) -> Self {
        Outcome::new(OutcomeKind::Throttled(scope))
    }

    /// Attaches the delay the server asked for.
    pub const fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// Attaches the delay the server asked for, if any.
    pub const fn with_retry_after_opt(mut self, delay: Option<Duration>) -> Self {
        self.retry_after = delay;
        self
    }

    /// Attaches why the provider throttled ([`Outcome::reason`](Outcome#structfield.reason)).
    pub const fn with_reason(mut self, reason: Option<ThrottleReason>) -> Self {
        self.reason = reason;
        self
    }

    /// Marks the outcome as a refusal by this client, before anything was sent (see
    /// [`Outcome::local`](Outcome#structfield.local)).
    pub const fn refused_locally(mut self) -> Self {
        self.local = true;
        self
    }

    /// `true` for [`OutcomeKind::Success`].
    pub const fn is_success(&self) -> bool {
        matches!(self.kind, OutcomeKind::Success)
    }
}

impl From<OutcomeKind> for Outcome {
    fn from(kind: OutcomeKind) -> Self {
        Outcome::new(kind)
    }
}

impl OutcomeKind {
    /// Every outcome class, in a fixed order.
    pub const ALL: [OutcomeKind; 13] = [
        OutcomeKind::Success,
        OutcomeKind::Throttled(ThrottleScope::Requests),
        OutcomeKind::Throttled(ThrottleScope::Tokens),
        OutcomeKind::Throttled(ThrottleScope::Capacity),
        OutcomeKind::Throttled(ThrottleScope::Unknown),
        OutcomeKind::Throttled(ThrottleScope::Partition),
        OutcomeKind::Throttled(ThrottleScope::Daily),
        OutcomeKind::Overloaded,
        OutcomeKind::Unavailable,
        OutcomeKind::Timeout,
        OutcomeKind::Transient,
        OutcomeKind::Fatal,
        OutcomeKind::TooLarge,
    ];

    /// The position of this class in [`ALL`](Self::ALL), for tables indexed by class.
    pub(crate) const fn index(&self) -> usize {
        match self {
            OutcomeKind::Success => 0,
            OutcomeKind::Throttled(ThrottleScope::Requests) => 1,
            OutcomeKind::Throttled(ThrottleScope::Tokens) => 2,
            OutcomeKind::Throttled(ThrottleScope::Capacity) => 3,
            OutcomeKind::Throttled(ThrottleScope::Unknown) => 4,
            OutcomeKind::Throttled(ThrottleScope::Partition) => 5,
            OutcomeKind::Throttled(ThrottleScope::Daily) => 6,
            OutcomeKind::Overloaded => 7,
            OutcomeKind::Unavailable => 8,
            OutcomeKind::Timeout => 9,
            OutcomeKind::Transient => 10,
            OutcomeKind::Fatal => 11,
            OutcomeKind::TooLarge => 12,
        }
    }

    /// Whether an attempt with this outcome may be retried.
    ///
    /// [`OutcomeKind::Timeout`] is retryable here; whether a *particular* request may be retried
    /// after a timeout (it may have been executed) is the retry policy's setting. A
    /// [daily throttle](ThrottleScope::Daily) is retryable in principle (the day ends), but the
    /// retry policy retries it only when the server says it ends within the call's deadline
    /// ([`StopReason::QuotaExhausted`](crate::retry::StopReason::QuotaExhausted) otherwise).
    pub const fn is_retryable(&self) -> bool {
        !matches!(
            self,
            OutcomeKind::Success | OutcomeKind::Fatal | OutcomeKind::TooLarge
        )
    }

    /// Whether a circuit breaker counts this outcome as a failure of the backend.
    ///
    /// Quota throttles and fatal (client) errors say nothing about the backend's health, so
    /// they never open a breaker.
    pub const fn counts_for_breaker(&self) -> bool {
        matches!(
            self,
            OutcomeKind::Overloaded
                | OutcomeKind::Unavailable
                | OutcomeKind::Timeout
                | OutcomeKind::Transient
        )
    }

    /// Whether a server that answered with this outcome refused the work: a throttle, an
    /// overload, an unavailable answer, a request too large to start. Such an answer spent none
    /// of the call's units (Bedrock charges no tokens for a 429 or a 503, DynamoDB no capacity
    /// for a throttled write), so a reservation it answers is settled at zero rather than kept
    /// at its estimate.
    pub const fn is_refusal(&self) -> bool {
        matches!(
            self,
            OutcomeKind::Throttled(_)
                | OutcomeKind::Overloaded
                | OutcomeKind::Unavailable
                | OutcomeKind::TooLarge
        )
    }

    /// Whether this outcome tells the quota (admission) layer that the budget was wrong: a
    /// throttle of the whole quota (not of one partition or key). A
    /// [daily throttle](ThrottleScope::Daily) does not: the per-minute budget was right, and
    /// cutting it would only starve the minutes after the day returns.
    pub const fn teaches_quota(&self) -> bool {
        matches!(
            self,
            OutcomeKind::Throttled(
                ThrottleScope::Requests
                    | ThrottleScope::Tokens
                    | ThrottleScope::Capacity
                    | ThrottleScope::Unknown
            )
        )
    }

    /// Whether a fallback router should move to another target after this outcome. A
    /// [daily throttle](ThrottleScope::Daily) moves at once: another model or region is the
    /// only cure within the day.
    pub const fn moves_fallback(&self) -> bool {
        matches!(
            self,
            OutcomeKind::Throttled(
                ThrottleScope::Requests | ThrottleScope::Tokens | ThrottleScope::Daily
            ) | OutcomeKind::Overloaded
                | OutcomeKind::Unavailable
                | OutcomeKind::Timeout
                | OutcomeKind::TooLarge
        )
    }

    /// A short, stable, low-cardinality name, used as a metric label and in logs.
    pub const fn as_str(&self) -> &'static str {
        match self {
            OutcomeKind::Success => "success",
            OutcomeKind::Throttled(ThrottleScope::Requests) => "throttled_requests",
            OutcomeKind::Throttled(ThrottleScope::Tokens) => "throttled_tokens",
            OutcomeKind::Throttled(ThrottleScope::Capacity) => "throttled_capacity",
            OutcomeKind::Throttled(ThrottleScope::Unknown) => "throttled",
            OutcomeKind::Throttled(ThrottleScope::Partition) => "throttled_partition",
            OutcomeKind::Throttled(ThrottleScope::Daily) => "throttled_daily",
            OutcomeKind::Overloaded => "overloaded",
            OutcomeKind::Unavailable => "unavailable",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Transient => "transient",
            OutcomeKind::Fatal => "fatal",
            OutcomeKind::TooLarge => "too_large",
        }
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retry_after {
            Some(delay) => write!(f, "{} (server asked to wait {:?})", self.kind, delay),
            None => fmt::Display::fmt(&self.kind, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [OutcomeKind; 13] = OutcomeKind::ALL;

    #[test]
    fn design_table_columns() {
        // (kind, retried, breaker counts it, quota learns, fallback moves)
        let table = [
            (ALL[0], false, false, false, false),
            (ALL[1], true, false, true, true),
            (ALL[2], true, false, true, true),
            (ALL[3], true, false, true, false),
            (ALL[4], true, false, true, false),
            (ALL[5], true, false, false, false),
            (ALL[6], true, false, false, true),
            (ALL[7], true, true, false, true),
            (ALL[8], true, true, false, true),
            (ALL[9], true, true, false, true),
            (ALL[10], true, true, false, false),
            (ALL[11], false, false, false, false),
            (ALL[12], false, false, false, true),
        ];
        for (kind, retried, breaker, quota, fallback) in table {
            assert_eq!(kind.is_retryable(), retried, "{kind}");
            assert_eq!(kind.counts_for_breaker(), breaker, "{kind}");
            assert_eq!(kind.teaches_quota(), quota, "{kind}");
            assert_eq!(kind.moves_fallback(), fallback, "{kind}");
        }
    }

    #[test]
    fn index_is_the_position_in_all() {
        for (i, kind) in ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }

    #[test]
    fn labels_are_distinct() {
        let mut labels: Vec<_> = ALL.iter().map(|k| k.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ALL.len());
    }

    #[test]
    fn display_mentions_server_delay() {
        let o = Outcome::new(OutcomeKind::Unavailable).with_retry_after(Duration::from_secs(3));
        assert_eq!(o.to_string(), "unavailable (server asked to wait 3s)");
        assert_eq!(Outcome::SUCCESS.to_string(), "success");
    }
}
