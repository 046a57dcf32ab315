//! Why a call was throttled, as DynamoDB says it in `ThrottlingReasons`
//! ([`ThrottlingReason`]), and the error each reason is answered with.
//!
//! A reason is `ResourceType + OperationType + LimitType` (`Table`, `Read`/`Write`,
//! `ProvisionedThroughputExceeded` / `KeyRangeThroughputExceeded` /
//! `MaxOnDemandThroughputExceeded` / `AccountLimitExceeded`), sent with the ARN of the throttled
//! table: <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html>.
//! The error body carries them as `ThrottlingReasons: [{ "reason", "resource" }]`
//! (<https://docs.aws.amazon.com/botocore/latest/reference/services/dynamodb/client/exceptions/ProvisionedThroughputExceededException.html>;
//! aws-sdk-dynamodb 1.136's deserializers read exactly these keys, on
//! `ProvisionedThroughputExceededException`, `ThrottlingException` and `RequestLimitExceeded`).
//! Which exception carries which limit is not spelled out in the pages found: the simulator
//! sends `ProvisionedThroughputExceededException` for provisioned, key-range and on-demand
//! peak throttles (its documented meaning, "Your request rate is too high") and
//! `ThrottlingException` for an on-demand table's configured maximum.
//! The simulator models tables only (no index), and no account limit.

use std::borrow::Cow;

use http::StatusCode;

use crate::sim::SimError;

/// Why DynamoDB throttled a call: the `reason` of a `ThrottlingReasons` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ThrottlingReason {
    /// Reads over a provisioned table's RCU (and its burst credit).
    TableReadProvisionedThroughputExceeded,
    /// Writes over a provisioned table's WCU (and its burst credit).
    TableWriteProvisionedThroughputExceeded,
    /// Reads of one partition key over the partition maximum (3,000 RCU per second).
    TableReadKeyRangeThroughputExceeded,
    /// Writes to one partition key over the partition maximum (1,000 WCU per second).
    TableWriteKeyRangeThroughputExceeded,
    /// Reads over an on-demand table's configured `MaxReadRequestUnits`.
    TableReadMaxOnDemandThroughputExceeded,
    /// Writes over an on-demand table's configured `MaxWriteRequestUnits`.
    TableWriteMaxOnDemandThroughputExceeded,
}

/// What kind of limit refused a call (the `LimitType` part of a reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Limit {
    /// The table's provisioned capacity and burst credit.
    Provisioned,
    /// One partition key (or, in the even split, one partition).
    KeyRange,
    /// An on-demand table above twice its previous peak: a key-range throttle while
    /// DynamoDB adds partitions.
    OnDemandPeak,
    /// An on-demand table's configured maximum.
    MaxOnDemand,
}

impl ThrottlingReason {
    /// Every reason the simulator sends.
    pub const ALL: [ThrottlingReason; 6] = [
        ThrottlingReason::TableReadProvisionedThroughputExceeded,
        ThrottlingReason::TableWriteProvisionedThroughputExceeded,
        ThrottlingReason::TableReadKeyRangeThroughputExceeded,
        ThrottlingReason::TableWriteKeyRangeThroughputExceeded,
        ThrottlingReason::TableReadMaxOnDemandThroughputExceeded,
        ThrottlingReason::TableWriteMaxOnDemandThroughputExceeded,
    ];

    /// The reason as DynamoDB writes it, e.g. `TableWriteKeyRangeThroughputExceeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottlingReason::TableReadProvisionedThroughputExceeded => {
                "TableReadProvisionedThroughputExceeded"
            }
            ThrottlingReason::TableWriteProvisionedThroughputExceeded => {
                "TableWriteProvisionedThroughputExceeded"
            }
            ThrottlingReason::TableReadKeyRangeThroughputExceeded => {
                "TableReadKeyRangeThroughputExceeded"
            }
            ThrottlingReason::TableWriteKeyRangeThroughputExceeded => {
                "TableWriteKeyRangeThroughputExceeded"
            }
            ThrottlingReason::TableReadMaxOnDemandThroughputExceeded => {
                "TableReadMaxOnDemandThroughputExceeded"
            }
            ThrottlingReason::TableWriteMaxOnDemandThroughputExceeded => {
                "TableWriteMaxOnDemandThroughputExceeded"
            }
        }
    }

    /// Whether the reason is about reads (else writes).
    pub fn is_read(self) -> bool {
        matches!(
            self,
            ThrottlingReason::TableReadProvisionedThroughputExceeded
                | ThrottlingReason::TableReadKeyRangeThroughputExceeded
                | ThrottlingReason::TableReadMaxOnDemandThroughputExceeded
        )
    }

    pub(super) fn index(self) -> usize {
        ThrottlingReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or(0)
    }

    pub(super) fn of(limit: Limit, read: bool) -> ThrottlingReason {
        match (limit, read) {
            (Limit::Provisioned, true) => ThrottlingReason::TableReadProvisionedThroughputExceeded,
            (Limit::Provisioned, false) => {
                ThrottlingReason::TableWriteProvisionedThroughputExceeded
            }
            (Limit::KeyRange | Limit::OnDemandPeak, true) => {
                ThrottlingReason::TableReadKeyRangeThroughputExceeded
            }
            (Limit::KeyRange | Limit::OnDemandPeak, false) => {
                ThrottlingReason::TableWriteKeyRangeThroughputExceeded
            }
            (Limit::MaxOnDemand, true) => ThrottlingReason::TableReadMaxOnDemandThroughputExceeded,
            (Limit::MaxOnDemand, false) => {
                ThrottlingReason::TableWriteMaxOnDemandThroughputExceeded
            }
        }
    }
}

impl std::fmt::Display for ThrottlingReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The message of `ProvisionedThroughputExceededException` on a provisioned table.
pub(super) const PROVISIONED_MESSAGE: &str = "The level of configured provisioned throughput for \
     the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.";
/// The message of `ProvisionedThroughputExceededException` on an on-demand table.
pub(super) const ON_DEMAND_MESSAGE: &str = "Throughput exceeds the current capacity of your table \
     or index. DynamoDB is automatically scaling your table or index so please try again shortly. \
     If exceptions persist, check if you have a hot key: \
     https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html";
/// The message of the `ThrottlingException` for an on-demand table's configured maximum
/// (the simulator's wording).
pub(super) const MAX_ON_DEMAND_MESSAGE: &str =
    "Throughput exceeds the maximum on-demand throughput configured for the table.";

/// The rejection for `limit` on `table` (`arn` is the table's ARN).
pub(super) fn throttle_error(limit: Limit, read: bool, on_demand: bool, arn: &str) -> SimError {
    let (code, message): (&'static str, Cow<'static, str>) = match limit {
        Limit::MaxOnDemand => ("ThrottlingException", MAX_ON_DEMAND_MESSAGE.into()),
        _ if on_demand => (
            "ProvisionedThroughputExceededException",
            ON_DEMAND_MESSAGE.into(),
        ),
        _ => (
            "ProvisionedThroughputExceededException",
            PROVISIONED_MESSAGE.into(),
        ),
    };
    SimError::new(StatusCode::BAD_REQUEST, code, message)
        .with_throttling_reason(ThrottlingReason::of(limit, read), arn)
}
