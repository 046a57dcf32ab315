//! DynamoDB's `ThrottlingReasons`: one reason parsed, the one that decides among several, and
//! the class it gives a throttle (see the [table](super#dynamodbs-throttling-reasons)).

use crate::{
    OutcomeKind, ThrottleLimit, ThrottleReason, ThrottleScope, ThrottledOperation,
    ThrottledResource,
};

/// Parses one DynamoDB `ThrottlingReasons` entry's `reason`: `ResourceType` (`Table`,
/// `Index`) + `OperationType` (`Read`, `Write`) + `LimitType` (`ProvisionedThroughputExceeded`,
/// `KeyRangeThroughputExceeded`, `AccountLimitExceeded`, `MaxOnDemandThroughputExceeded`), the
/// sixteen values of
/// [ThrottlingReason](https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html)
/// (the same list in the
/// [throttling resolution guide](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/troubleshooting-throttling-diagnostics.html)).
/// Exact and case-sensitive, as DynamoDB sends them; `None` for anything else.
///
/// ```
/// use tower_headroom::classify::aws::throttle_reason;
/// use tower_headroom::{ThrottleLimit, ThrottleScope};
///
/// let hot_key = throttle_reason("TableWriteKeyRangeThroughputExceeded").unwrap();
/// assert_eq!(hot_key.limit, ThrottleLimit::KeyRange);
/// assert_eq!(hot_key.scope(), ThrottleScope::Partition);
/// assert_eq!(throttle_reason("TableWriteSomethingNew"), None);
/// ```
pub fn throttle_reason(reason: &str) -> Option<ThrottleReason> {
    let (resource, rest) = if let Some(rest) = reason.strip_prefix("Table") {
        (ThrottledResource::Table, rest)
    } else {
        (ThrottledResource::Index, reason.strip_prefix("Index")?)
    };
    let (operation, rest) = if let Some(rest) = rest.strip_prefix("Read") {
        (ThrottledOperation::Read, rest)
    } else {
        (ThrottledOperation::Write, rest.strip_prefix("Write")?)
    };
    let limit = match rest {
        "ProvisionedThroughputExceeded" => ThrottleLimit::Provisioned,
        "KeyRangeThroughputExceeded" => ThrottleLimit::KeyRange,
        "AccountLimitExceeded" => ThrottleLimit::AccountLimit,
        "MaxOnDemandThroughputExceeded" => ThrottleLimit::MaxOnDemand,
        _ => return None,
    };
    Some(ThrottleReason {
        resource,
        operation,
        limit,
    })
}

/// The reason that decides a throttle carrying several `ThrottlingReasons`: the first one of a
/// table's or index's own budget (provisioned, account, on-demand maximum: the budget was
/// wrong, and it must learn), else the first key-range one (only a hot key). Unknown reasons
/// are skipped; `None` when none is known.
///
/// ```
/// use tower_headroom::classify::aws::classify_reasons;
/// use tower_headroom::{ThrottleLimit, ThrottleScope};
///
/// let reasons = ["TableReadKeyRangeThroughputExceeded", "TableReadProvisionedThroughputExceeded"];
/// let reason = classify_reasons(reasons).unwrap();
/// assert_eq!((reason.limit, reason.scope()), (ThrottleLimit::Provisioned, ThrottleScope::Capacity));
/// ```
pub fn classify_reasons<'a>(reasons: impl IntoIterator<Item = &'a str>) -> Option<ThrottleReason> {
    let mut key_range = None;
    for reason in reasons.into_iter().filter_map(throttle_reason) {
        if reason.limit != ThrottleLimit::KeyRange {
            return Some(reason);
        }
        key_range = key_range.or(Some(reason));
    }
    key_range
}

/// A throttle's class refined by the reason the provider gave: a throttling class takes the
/// reason's [scope](ThrottleReason::scope) (a `ProvisionedThroughputExceededException` for a
/// hot key range is `Throttled(Partition)`, not `Throttled(Capacity)`); any other class (and a
/// spent day) stays as it is.
pub fn with_reason(kind: OutcomeKind, reason: Option<ThrottleReason>) -> OutcomeKind {
    match (kind, reason) {
        (OutcomeKind::Throttled(scope), Some(reason)) if scope != ThrottleScope::Daily => {
            OutcomeKind::Throttled(reason.scope())
        }
        (kind, _) => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::aws::classify;

    #[test]
    fn every_throttling_reason_is_classified() {
        use ThrottleLimit::*;
        use ThrottledOperation::*;
        use ThrottledResource::*;
        // The sixteen values DynamoDB documents, each with what it must mean.
        let all = [
            (
                "TableReadProvisionedThroughputExceeded",
                Table,
                Read,
                Provisioned,
            ),
            (
                "TableWriteProvisionedThroughputExceeded",
                Table,
                Write,
                Provisioned,
            ),
            (
                "IndexReadProvisionedThroughputExceeded",
                Index,
                Read,
                Provisioned,
            ),
            (
                "IndexWriteProvisionedThroughputExceeded",
                Index,
                Write,
                Provisioned,
            ),
            ("TableReadKeyRangeThroughputExceeded", Table, Read, KeyRange),
            (
                "TableWriteKeyRangeThroughputExceeded",
                Table,
                Write,
                KeyRange,
            ),
            ("IndexReadKeyRangeThroughputExceeded", Index, Read, KeyRange),
            (
                "IndexWriteKeyRangeThroughputExceeded",
                Index,
                Write,
                KeyRange,
            ),
            ("TableReadAccountLimitExceeded", Table, Read, AccountLimit),
            ("TableWriteAccountLimitExceeded", Table, Write, AccountLimit),
            ("IndexReadAccountLimitExceeded", Index, Read, AccountLimit),
            ("IndexWriteAccountLimitExceeded", Index, Write, AccountLimit),
            (
                "TableReadMaxOnDemandThroughputExceeded",
                Table,
                Read,
                MaxOnDemand,
            ),
            (
                "TableWriteMaxOnDemandThroughputExceeded",
                Table,
                Write,
                MaxOnDemand,
            ),
            (
                "IndexReadMaxOnDemandThroughputExceeded",
                Index,
                Read,
                MaxOnDemand,
            ),
            (
                "IndexWriteMaxOnDemandThroughputExceeded",
                Index,
                Write,
                MaxOnDemand,
            ),
        ];
        for (text, resource, operation, limit) in all {
            let reason = throttle_reason(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(
                reason,
                ThrottleReason {
                    resource,
                    operation,
                    limit
                },
                "{text}"
            );
            let expected = if limit == KeyRange {
                ThrottleScope::Partition
            } else {
                ThrottleScope::Capacity
            };
            assert_eq!(reason.scope(), expected, "{text}");
            // Whatever the throttling code it came with, the reason decides the scope, and
            // only a budget's own limit teaches the quota.
            for code in [
                "ProvisionedThroughputExceededException",
                "ThrottlingException",
                "RequestLimitExceeded",
            ] {
                let kind = with_reason(classify(code, None), Some(reason));
                assert_eq!(kind, OutcomeKind::Throttled(expected), "{code} {text}");
                assert_eq!(kind.teaches_quota(), limit != KeyRange, "{code} {text}");
            }
        }
        for junk in [
            "",
            "Table",
            "TableRead",
            "tablereadprovisionedthroughputexceeded",
            "TableDeleteProvisionedThroughputExceeded",
            "GsiReadProvisionedThroughputExceeded",
            "TableReadProvisionedThroughputExceededX",
        ] {
            assert_eq!(throttle_reason(junk), None, "{junk}");
        }
    }

    #[test]
    fn a_budget_reason_wins_over_a_key_range_and_other_classes_keep_their_kind() {
        let key_range = "TableWriteKeyRangeThroughputExceeded";
        let provisioned = "IndexWriteProvisionedThroughputExceeded";
        assert_eq!(
            classify_reasons([key_range, provisioned]).map(|r| r.limit),
            Some(ThrottleLimit::Provisioned)
        );
        assert_eq!(
            classify_reasons(["nonsense", key_range]).map(|r| r.limit),
            Some(ThrottleLimit::KeyRange)
        );
        assert_eq!(classify_reasons(["nonsense"]), None);
        assert_eq!(classify_reasons([]), None);
        let reason = throttle_reason(key_range);
        assert_eq!(
            with_reason(OutcomeKind::Unavailable, reason),
            OutcomeKind::Unavailable
        );
        assert_eq!(
            with_reason(OutcomeKind::Throttled(ThrottleScope::Daily), reason),
            OutcomeKind::Throttled(ThrottleScope::Daily)
        );
        assert_eq!(
            with_reason(OutcomeKind::Throttled(ThrottleScope::Capacity), None),
            OutcomeKind::Throttled(ThrottleScope::Capacity)
        );
    }
}
