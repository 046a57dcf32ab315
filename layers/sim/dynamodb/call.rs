//! One call to a table: what DynamoDB's capacity accounting sees of it ([`DynamoCall`],
//! [`Op`]) and what it consumed ([`DynamoReply`]).

use std::sync::Arc;

/// What a call does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A read (`GetItem`, `Query`, `Scan` page): RCU.
    Read {
        /// Strongly consistent (full RCU) or eventually consistent (half).
        consistent: bool,
    },
    /// A write (`PutItem`, `UpdateItem`, `DeleteItem`): WCU.
    Write,
}

/// One call to a table: what DynamoDB's capacity accounting sees of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamoCall {
    /// The table name.
    pub table: Arc<str>,
    /// The partition key, rendered as a string (the front renders numbers and binary keys).
    pub partition_key: Arc<str>,
    /// Read or write.
    pub op: Op,
    /// The item size in bytes.
    pub item_bytes: u64,
    /// The calling application's label, for per-caller statistics.
    pub caller: Option<Arc<str>>,
}

impl DynamoCall {
    /// A write of `item_bytes` under `partition_key`.
    pub fn write(
        table: impl Into<Arc<str>>,
        partition_key: impl Into<Arc<str>>,
        item_bytes: u64,
    ) -> Self {
        DynamoCall {
            table: table.into(),
            partition_key: partition_key.into(),
            op: Op::Write,
            item_bytes,
            caller: None,
        }
    }

    /// A read of `item_bytes` under `partition_key`.
    pub fn read(
        table: impl Into<Arc<str>>,
        partition_key: impl Into<Arc<str>>,
        item_bytes: u64,
        consistent: bool,
    ) -> Self {
        DynamoCall {
            op: Op::Read { consistent },
            ..DynamoCall::write(table, partition_key, item_bytes)
        }
    }

    /// Labels the call with the calling application.
    pub fn caller(mut self, caller: impl Into<Arc<str>>) -> Self {
        self.caller = Some(caller.into());
        self
    }

    /// The capacity the call consumes, in half units: writes `ceil(bytes / 1 KiB)` WCU, reads
    /// `ceil(bytes / 4 KiB)` RCU, halved when eventually consistent, at least one unit (half).
    pub(super) fn half_units(&self) -> u64 {
        match self.op {
            Op::Write => crate::dynamodb::write_units(self.item_bytes) * 2,
            Op::Read { consistent } => {
                self.item_bytes.div_ceil(4096).max(1) * if consistent { 2 } else { 1 }
            }
        }
    }

    /// The capacity units the call consumes when admitted (`ConsumedCapacity.CapacityUnits`).
    pub fn capacity_units(&self) -> f64 {
        self.half_units() as f64 / 2.0
    }
}

/// A successful call's answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DynamoReply {
    /// Capacity units consumed (`ConsumedCapacity.CapacityUnits`).
    pub consumed_capacity: f64,
}
