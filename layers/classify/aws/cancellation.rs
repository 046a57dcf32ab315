//! DynamoDB's `CancellationReasons`: the class of a transaction cancelled with
//! `TransactionCanceledException`, from the code each item's reason gives (see the
//! [table](super#dynamodbs-cancelled-transactions)).

use crate::{OutcomeKind, ThrottleScope};

/// What one entry of `CancellationReasons` says of its item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    /// `None` (or no code): the item had no error.
    Fine,
    /// `ThrottlingError` or `ProvisionedThroughputExceeded`: refused for capacity.
    Capacity,
    /// Any other code (`ConditionalCheckFailed`, `TransactionConflict`, `ValidationError`,
    /// `ItemCollectionSizeLimitExceeded`, one DynamoDB adds later, a malformed entry).
    Failed,
}

fn item(code: Option<&str>) -> Item {
    match code {
        None => Item::Fine,
        // DynamoDB documents `None` (older documentation `NONE`); no error either way.
        Some(code) if code.eq_ignore_ascii_case("None") => Item::Fine,
        Some("ThrottlingError" | "ProvisionedThroughputExceeded") => Item::Capacity,
        Some(_) => Item::Failed,
    }
}

/// The class of a cancelled transaction from the `Code` of each entry of its
/// `CancellationReasons`, in request order: `None` for an entry whose code is absent or null
/// (DynamoDB's "no error"), `Some("")` for an entry that is not an object or whose code is not
/// a string (a malformed entry, read as an unknown code).
///
/// [`Throttled(Capacity)`](ThrottleScope::Capacity) when at least one item was refused for
/// capacity (`ThrottlingError`, `ProvisionedThroughputExceeded`) and every other item had no
/// error (`None`); [`Fatal`](OutcomeKind::Fatal) when any item failed for another reason (a
/// retry would fail on it again: a `ConditionalCheckFailed` beside a throttle is `Fatal`), or
/// when no item says why. Codes are matched exactly, as DynamoDB sends them (`None` without
/// regard to case); only codes are read, never an entry's `Message` or `Item`.
///
/// ```
/// use tower_headroom::classify::aws::classify_cancellation;
/// use tower_headroom::{OutcomeKind, ThrottleScope};
///
/// let throttled = classify_cancellation([Some("None"), Some("ThrottlingError")]);
/// assert_eq!(throttled, OutcomeKind::Throttled(ThrottleScope::Capacity));
/// let condition = classify_cancellation([Some("ConditionalCheckFailed"), Some("ThrottlingError")]);
/// assert_eq!(condition, OutcomeKind::Fatal);
/// assert_eq!(classify_cancellation([]), OutcomeKind::Fatal);
/// ```
pub fn classify_cancellation<'a>(codes: impl IntoIterator<Item = Option<&'a str>>) -> OutcomeKind {
    let mut capacity = false;
    for code in codes {
        match item(code) {
            Item::Fine => {}
            Item::Capacity => capacity = true,
            Item::Failed => return OutcomeKind::Fatal,
        }
    }
    if capacity {
        OutcomeKind::Throttled(ThrottleScope::Capacity)
    } else {
        OutcomeKind::Fatal
    }
}

/// Whether an AWS error code is `TransactionCanceledException` (after
/// [`normalize_code`](super::normalize_code), without regard to ASCII case).
pub fn is_transaction_canceled(code: &str) -> bool {
    super::normalize_code(code).eq_ignore_ascii_case("TransactionCanceledException")
}

/// A code's class refined by its cancellation reasons: for a `TransactionCanceledException`,
/// the class [`classify_cancellation`] gave its `CancellationReasons` (`cancellation`), or
/// [`Fatal`](OutcomeKind::Fatal) without a list; any other code keeps `kind`.
pub fn with_cancellation(
    code: &str,
    kind: OutcomeKind,
    cancellation: Option<OutcomeKind>,
) -> OutcomeKind {
    if is_transaction_canceled(code) {
        cancellation.unwrap_or(OutcomeKind::Fatal)
    } else {
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::aws::classify;

    const THROTTLED: OutcomeKind = OutcomeKind::Throttled(ThrottleScope::Capacity);

    #[test]
    fn capacity_reasons_alone_make_a_throttle() {
        for reasons in [
            &[Some("ThrottlingError")][..],
            &[Some("None"), Some("ProvisionedThroughputExceeded")],
            &[Some("NONE"), None, Some("ThrottlingError"), Some("None")],
            &[
                Some("ProvisionedThroughputExceeded"),
                Some("ThrottlingError"),
            ],
        ] {
            let kind = classify_cancellation(reasons.iter().copied());
            assert_eq!(kind, THROTTLED, "{reasons:?}");
            assert!(kind.is_retryable() && kind.teaches_quota(), "{reasons:?}");
            assert!(!kind.counts_for_breaker(), "{reasons:?}");
        }
    }

    #[test]
    fn any_other_failure_is_fatal_even_beside_a_throttle() {
        for reasons in [
            // A condition that failed fails again on a retry.
            &[Some("ConditionalCheckFailed")][..],
            &[Some("None"), Some("ConditionalCheckFailed")],
            &[Some("ThrottlingError"), Some("ConditionalCheckFailed")],
            &[
                Some("ConditionalCheckFailed"),
                Some("ProvisionedThroughputExceeded"),
            ],
            &[Some("TransactionConflict"), Some("ThrottlingError")],
            &[Some("ValidationError")],
            &[Some("ItemCollectionSizeLimitExceeded")],
            // Codes are exact: an unknown or differently spelt one is another failure.
            &[Some("throttlingerror")],
            &[Some("ThrottlingException")],
            &[Some("SomethingNew"), Some("ThrottlingError")],
            // A malformed entry (the parser's `Some("")`).
            &[Some(""), Some("ThrottlingError")],
            // Nothing says why.
            &[],
            &[None, Some("None")],
        ] {
            assert_eq!(
                classify_cancellation(reasons.iter().copied()),
                OutcomeKind::Fatal,
                "{reasons:?}"
            );
        }
    }

    #[test]
    fn only_a_cancelled_transaction_reads_its_reasons() {
        let code = "com.amazonaws.dynamodb.v20120810#TransactionCanceledException";
        assert!(is_transaction_canceled(code));
        assert!(is_transaction_canceled("transactionCanceledException"));
        assert!(!is_transaction_canceled("TransactionConflictException"));
        // The code alone is fatal; its reasons decide.
        assert_eq!(classify(code, None), OutcomeKind::Fatal);
        assert_eq!(
            with_cancellation(code, OutcomeKind::Fatal, Some(THROTTLED)),
            THROTTLED
        );
        assert_eq!(
            with_cancellation(code, OutcomeKind::Fatal, None),
            OutcomeKind::Fatal
        );
        // Another code keeps its class whatever a body's reasons say.
        assert_eq!(
            with_cancellation("ValidationException", OutcomeKind::Fatal, Some(THROTTLED)),
            OutcomeKind::Fatal
        );
        assert_eq!(
            with_cancellation("InternalServerError", OutcomeKind::Transient, None),
            OutcomeKind::Transient
        );
    }
}
