//! The operations the front knows, by their `X-Amz-Target` name ([`DynamoOp`],
//! [`parse_target`]).

/// The `X-Amz-Target` prefix of DynamoDB's current API version.
const TARGET_PREFIX: &[u8] = b"DynamoDB_20120810.";

/// The DynamoDB operations the front knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DynamoOp {
    PutItem,
    UpdateItem,
    DeleteItem,
    BatchWriteItem,
    BatchGetItem,
    GetItem,
    Query,
    CreateTable,
    DeleteTable,
    /// Forwarded as is, never charged.
    PassThrough(&'static str),
}

impl DynamoOp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DynamoOp::PutItem => "PutItem",
            DynamoOp::UpdateItem => "UpdateItem",
            DynamoOp::DeleteItem => "DeleteItem",
            DynamoOp::BatchWriteItem => "BatchWriteItem",
            DynamoOp::BatchGetItem => "BatchGetItem",
            DynamoOp::GetItem => "GetItem",
            DynamoOp::Query => "Query",
            DynamoOp::CreateTable => "CreateTable",
            DynamoOp::DeleteTable => "DeleteTable",
            DynamoOp::PassThrough(name) => name,
        }
    }
}

/// The operation named by an `X-Amz-Target` header value.
pub(crate) fn parse_target(target: &[u8]) -> Option<DynamoOp> {
    let name = target.strip_prefix(TARGET_PREFIX)?;
    Some(match name {
        b"PutItem" => DynamoOp::PutItem,
        b"UpdateItem" => DynamoOp::UpdateItem,
        b"DeleteItem" => DynamoOp::DeleteItem,
        b"BatchWriteItem" => DynamoOp::BatchWriteItem,
        b"GetItem" => DynamoOp::GetItem,
        b"Query" => DynamoOp::Query,
        b"CreateTable" => DynamoOp::CreateTable,
        b"DeleteTable" => DynamoOp::DeleteTable,
        b"DescribeTable" => DynamoOp::PassThrough("DescribeTable"),
        b"ListTables" => DynamoOp::PassThrough("ListTables"),
        b"UpdateTable" => DynamoOp::PassThrough("UpdateTable"),
        b"Scan" => DynamoOp::PassThrough("Scan"),
        b"BatchGetItem" => DynamoOp::BatchGetItem,
        b"TransactWriteItems" => DynamoOp::PassThrough("TransactWriteItems"),
        b"TransactGetItems" => DynamoOp::PassThrough("TransactGetItems"),
        b"DescribeTimeToLive" => DynamoOp::PassThrough("DescribeTimeToLive"),
        b"UpdateTimeToLive" => DynamoOp::PassThrough("UpdateTimeToLive"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_known_operations_only() {
        assert_eq!(
            parse_target(b"DynamoDB_20120810.PutItem"),
            Some(DynamoOp::PutItem)
        );
        assert_eq!(
            parse_target(b"DynamoDB_20120810.ListTables"),
            Some(DynamoOp::PassThrough("ListTables"))
        );
        assert_eq!(parse_target(b"DynamoDB_20120810.DropEverything"), None);
        assert_eq!(parse_target(b"DynamoDB_20111205.PutItem"), None);
        assert_eq!(parse_target(b"PutItem"), None);
    }
}
