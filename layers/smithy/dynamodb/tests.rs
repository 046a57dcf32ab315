//! The DynamoDB shape's unit tests: keys, units, settlement, multi-table batches, indexes.

use super::*;
use aws_sdk_dynamodb::types::ConsumedCapacity;

#[test]
fn item_sizes_follow_dynamodb_rules() {
    let mut item = HashMap::new();
    item.insert("pk".to_owned(), AttributeValue::S("user#1".to_owned()));
    item.insert("n".to_owned(), AttributeValue::N("12345".to_owned()));
    item.insert("ok".to_owned(), AttributeValue::Bool(true));
    // pk: 2 + 6; n: 1 + 3 + 1; ok: 2 + 1
    assert_eq!(item_size(&item), 16);
    assert_eq!(dynamodb::write_units(item_size(&item)), 1);
    item.insert("blob".to_owned(), AttributeValue::S("x".repeat(2_000)));
    assert_eq!(dynamodb::write_units(item_size(&item)), 2);
}

#[test]
fn usage_is_the_consumed_capacity_rounded_up() {
    let est = Estimation {
        chars_per_token: 4,
        models: crate::bedrock::ModelTable::builtin(),
    };
    let output = |units: f64| {
        Output::erase(
            PutItemOutput::builder()
                .consumed_capacity(ConsumedCapacity::builder().capacity_units(units).build())
                .build(),
        )
    };
    assert_eq!(
        DynamoDb::default().usage(&output(2.5), None, &est, "t"),
        Some(3)
    );
    assert_eq!(
        DynamoDb::default().usage(&output(-1.0), None, &est, "t"),
        None
    );
    assert_eq!(
        DynamoDb::default().usage(&output(f64::NAN), None, &est, "t"),
        None
    );
    let mut restored = output(1.0);
    DynamoDb::default().restore(&mut restored);
    assert!(
        restored
            .downcast_ref::<PutItemOutput>()
            .unwrap()
            .consumed_capacity()
            .is_none()
    );
}

fn est() -> Estimation {
    Estimation {
        chars_per_token: 4,
        models: crate::bedrock::ModelTable::builtin(),
    }
}

/// The key and units the interceptor prepares for a typed input.
fn prepare<T: std::fmt::Debug + Send + Sync + 'static>(input: T) -> (String, u64) {
    let mut input = Input::erase(input);
    let p = DynamoDb::default()
        .prepare(&mut input, &est())
        .expect("prepared");
    (p.key.to_string(), p.cost.units)
}

fn kb(n: usize) -> HashMap<String, AttributeValue> {
    // "pk" (2) + "a" (1) + the value: n KB exactly.
    let mut item = HashMap::new();
    item.insert("pk".to_owned(), AttributeValue::S("x".repeat(1021)));
    item.insert(
        "a".to_owned(),
        AttributeValue::S("y".repeat(1024 * n - 1024)),
    );
    item
}

#[test]
fn reads_and_writes_go_to_their_own_keys_at_dynamodb_units() {
    use aws_sdk_dynamodb::types::{
        ConditionCheck, Get, KeysAndAttributes, Put, TransactGetItem, TransactWriteItem, Update,
    };
    assert_eq!(item_size(&kb(1)), 1024);
    let put = |n| {
        PutItemInput::builder()
            .table_name("orders")
            .set_item(Some(kb(n)))
            .build()
            .unwrap()
    };
    assert_eq!(prepare(put(1)), ("orders:write".into(), 1));
    assert_eq!(prepare(put(3)), ("orders:write".into(), 3));
    let get = |consistent: Option<bool>| {
        GetItemInput::builder()
            .table_name("orders")
            .set_consistent_read(consistent)
            .build()
            .unwrap()
    };
    // Half units: eventually consistent 1, strongly consistent 2.
    assert_eq!(prepare(get(None)), ("orders:read".into(), 1));
    assert_eq!(prepare(get(Some(false))), ("orders:read".into(), 1));
    assert_eq!(prepare(get(Some(true))), ("orders:read".into(), 2));
    let query = QueryInput::builder()
        .table_name("orders")
        .consistent_read(true)
        .build()
        .unwrap();
    assert_eq!(prepare(query), ("orders:read".into(), 2));
    let scan = ScanInput::builder().table_name("orders").build().unwrap();
    assert_eq!(prepare(scan), ("orders:read".into(), 1));
    let update = UpdateItemInput::builder()
        .table_name("orders")
        .build()
        .unwrap();
    assert_eq!(prepare(update), ("orders:write".into(), 1));
    // Transactions at double: a 3 KB put 6, an update 2, a condition check 2.
    let transact = TransactWriteItemsInput::builder()
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name("orders")
                        .set_item(Some(kb(3)))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name("orders")
                        .update_expression("SET a = :a")
                        .set_key(Some(kb(1)))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name("orders")
                        .condition_expression("attribute_exists(pk)")
                        .set_key(Some(kb(1)))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap();
    assert_eq!(prepare(transact), ("orders:write".into(), 10));
    // A transactional read: two RCU per 4 KB, four half units.
    let get_one = || {
        TransactGetItem::builder()
            .get(
                Get::builder()
                    .table_name("orders")
                    .set_key(Some(kb(1)))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    let transact_get = TransactGetItemsInput::builder()
        .transact_items(get_one())
        .transact_items(get_one())
        .build()
        .unwrap();
    assert_eq!(prepare(transact_get), ("orders:read".into(), 8));
    let keys = |consistent| {
        KeysAndAttributes::builder()
            .keys(kb(1))
            .keys(kb(1))
            .consistent_read(consistent)
            .build()
            .unwrap()
    };
    let batch_get = BatchGetItemInput::builder()
        .request_items("orders", keys(true))
        .build()
        .unwrap();
    assert_eq!(prepare(batch_get), ("orders:read".into(), 4));
    let batch_get = BatchGetItemInput::builder()
        .request_items("orders", keys(false))
        .build()
        .unwrap();
    assert_eq!(prepare(batch_get), ("orders:read".into(), 2));
}

#[test]
fn settles_each_key_in_its_own_units_from_the_tables_share() {
    use aws_sdk_dynamodb::types::Capacity;
    let est = est();
    let get =
        |c: ConsumedCapacity| Output::erase(GetItemOutput::builder().consumed_capacity(c).build());
    // An eventually consistent small read: half an RCU, one half unit.
    let half = ConsumedCapacity::builder().capacity_units(0.5).build();
    assert_eq!(
        DynamoDb::default().usage(&get(half), None, &est, "t:read"),
        Some(1)
    );
    let read = ConsumedCapacity::builder()
        .capacity_units(3.0)
        .read_capacity_units(3.0)
        .build();
    assert_eq!(
        DynamoDb::default().usage(&get(read), None, &est, "t:read"),
        Some(6)
    );
    // A write to a table with an index: the table's own share (INDEXES) settles its key.
    let indexed = ConsumedCapacity::builder()
        .capacity_units(3.0)
        .table(Capacity::builder().capacity_units(1.0).build())
        .build();
    let put = Output::erase(PutItemOutput::builder().consumed_capacity(indexed).build());
    assert_eq!(
        DynamoDb::default().usage(&put, None, &est, "t:write"),
        Some(1)
    );
    let batch = Output::erase(
        BatchGetItemOutput::builder()
            .consumed_capacity(ConsumedCapacity::builder().capacity_units(1.5).build())
            .consumed_capacity(ConsumedCapacity::builder().capacity_units(2.0).build())
            .build(),
    );
    assert_eq!(
        DynamoDb::default().usage(&batch, None, &est, "t:read"),
        Some(7)
    );
    let none = Output::erase(BatchWriteItemOutput::builder().build());
    assert_eq!(
        DynamoDb::default().usage(&none, None, &est, "t:write"),
        None
    );
}

#[test]
fn a_multi_table_batch_reserves_and_settles_each_table_apart() {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    let write = |n| {
        WriteRequest::builder()
            .put_request(PutRequest::builder().set_item(Some(kb(n))).build().unwrap())
            .build()
    };
    let batch = BatchWriteItemInput::builder()
        .request_items("users", vec![write(1)])
        .request_items("orders", vec![write(2), write(3)])
        .build()
        .unwrap();
    let mut input = Input::erase(batch);
    let p = DynamoDb::default().prepare(&mut input, &est()).unwrap();
    // The first table by name is the call's own key; every other table has its own.
    assert_eq!((&*p.key, p.cost.units), ("orders:write", 5));
    assert_eq!(p.also.len(), 1);
    assert_eq!((&*p.also[0].0, p.also[0].1.units), ("users:write", 1));
    let capacity = |table: &str, units: f64| {
        ConsumedCapacity::builder()
            .table_name(table)
            .capacity_units(units)
            .build()
    };
    let output = Output::erase(
        BatchWriteItemOutput::builder()
            .consumed_capacity(capacity("orders", 5.0))
            .consumed_capacity(capacity("users", 1.0))
            .build(),
    );
    let est = est();
    assert_eq!(
        DynamoDb::default().usage(&output, None, &est, "orders:write"),
        Some(5)
    );
    assert_eq!(
        DynamoDb::default().usage(&output, None, &est, "users:write"),
        Some(1)
    );
    assert_eq!(
        DynamoDb::default().usage(&output, None, &est, "other:write"),
        None
    );
}

#[test]
fn a_declared_global_secondary_index_has_its_own_keys() {
    use aws_sdk_dynamodb::types::Capacity;
    let shape = DynamoDb::default();
    shape.add_index("orders", "by-date");
    let prepare = |input: Input| {
        let mut input = input;
        let p = shape.prepare(&mut input, &est()).unwrap();
        let also: Vec<_> = p
            .also
            .iter()
            .map(|(k, c)| (k.to_string(), c.units))
            .collect();
        (p.key.to_string(), p.cost.units, also)
    };
    let query = |index: &str| {
        Input::erase(
            QueryInput::builder()
                .table_name("orders")
                .index_name(index)
                .build()
                .unwrap(),
        )
    };
    assert_eq!(
        prepare(query("by-date")),
        ("orders/by-date:read".into(), 1, vec![])
    );
    // An index not declared (a local secondary index reads the table's capacity).
    assert_eq!(prepare(query("local")), ("orders:read".into(), 1, vec![]));
    // A write reserves on the table and on each declared index.
    let put = Input::erase(
        PutItemInput::builder()
            .table_name("orders")
            .set_item(Some(kb(2)))
            .build()
            .unwrap(),
    );
    assert_eq!(
        prepare(put),
        (
            "orders:write".into(),
            2,
            vec![("orders/by-date:write".into(), 2)]
        )
    );
    let other = Input::erase(
        PutItemInput::builder()
            .table_name("users")
            .set_item(Some(kb(1)))
            .build()
            .unwrap(),
    );
    assert_eq!(prepare(other), ("users:write".into(), 1, vec![]));
    // Settled from the index's own share of an INDEXES answer.
    let est = est();
    let mut gsi = HashMap::new();
    gsi.insert(
        "by-date".to_owned(),
        Capacity::builder().capacity_units(1.0).build(),
    );
    let consumed = ConsumedCapacity::builder()
        .table_name("orders")
        .capacity_units(3.0)
        .table(Capacity::builder().capacity_units(2.0).build())
        .set_global_secondary_indexes(Some(gsi))
        .build();
    let put = Output::erase(
        PutItemOutput::builder()
            .consumed_capacity(consumed.clone())
            .build(),
    );
    let usage = |key| shape.usage(&put, None, &est, key);
    assert_eq!(usage("orders:write"), Some(2));
    assert_eq!(usage("orders/by-date:write"), Some(1));
    assert_eq!(usage("orders/other:write"), None);
    // A TOTAL answer: an index read is the whole, an index write's share is unknown.
    let total = ConsumedCapacity::builder().capacity_units(1.5).build();
    let query = Output::erase(
        QueryOutput::builder()
            .consumed_capacity(total.clone())
            .build(),
    );
    assert_eq!(
        shape.usage(&query, None, &est, "orders/by-date:read"),
        Some(3)
    );
    let put = Output::erase(PutItemOutput::builder().consumed_capacity(total).build());
    assert_eq!(shape.usage(&put, None, &est, "orders/by-date:write"), None);
}

#[test]
fn asks_for_usage_only_when_the_caller_did_not() {
    let mut none = None;
    assert!(ask_usage(&mut none));
    assert_eq!(none, Some(ReturnConsumedCapacity::Indexes));
    let mut indexes = Some(ReturnConsumedCapacity::Indexes);
    assert!(!ask_usage(&mut indexes));
    assert_eq!(indexes, Some(ReturnConsumedCapacity::Indexes));
}

#[test]
fn an_index_an_answer_reports_gets_its_own_keys_from_then_on() {
    use aws_sdk_dynamodb::types::Capacity;
    let shape = DynamoDb::default();
    let put = || {
        Input::erase(
            PutItemInput::builder()
                .table_name("orders")
                .set_item(Some(kb(1)))
                .build()
                .unwrap(),
        )
    };
    let also = |input: Input| {
        let mut input = input;
        let p = shape.prepare(&mut input, &est()).unwrap();
        p.also
            .iter()
            .map(|(k, _)| k.to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        also(put()).is_empty(),
        "nothing known of the table's indexes yet"
    );
    let mut gsi = HashMap::new();
    gsi.insert(
        "by-date".to_owned(),
        Capacity::builder().capacity_units(1.0).build(),
    );
    let answer = Output::erase(
        PutItemOutput::builder()
            .consumed_capacity(
                ConsumedCapacity::builder()
                    .table_name("orders")
                    .capacity_units(2.0)
                    .table(Capacity::builder().capacity_units(1.0).build())
                    .set_global_secondary_indexes(Some(gsi))
                    .build(),
            )
            .build(),
    );
    assert_eq!(shape.usage(&answer, None, &est(), "orders:write"), Some(1));
    assert_eq!(also(put()), vec!["orders/by-date:write".to_owned()]);
    // Bounded: a table keeps at most 32 indexes, the shape at most 1,024 tables.
    for i in 0..100 {
        shape.add_index("orders", &format!("i{i}"));
        shape.add_index(&format!("t{i:04}"), "x");
    }
    for i in 100..2000 {
        shape.add_index(&format!("t{i:04}"), "x");
    }
    assert_eq!(shape.indexes_of("orders").len(), 32);
    assert_eq!(shape.known().len(), 1024);
}

/// A table's ARN in `TableName`, in a batch's `RequestItems` or a transaction's items, and in
/// a `ConsumedCapacity` entry: keyed, grouped, matched and settled under the table's name.
#[test]
fn a_table_arn_is_keyed_grouped_and_settled_under_its_name() {
    use aws_sdk_dynamodb::types::{
        Capacity, Get, KeysAndAttributes, PutRequest, TransactGetItem, WriteRequest,
    };
    const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/orders";
    let shape = DynamoDb::default();
    // Declared by name, used by ARN (and the other way round).
    shape.add_index("orders", "by-date");
    shape.add_index(&format!("{ARN}/index/ignored-arn-suffix"), "by-user");
    assert_eq!(shape.indexes_of(ARN), ["by-date", "by-user"]);
    let prepare = |input: Input| {
        let mut input = input;
        let p = shape.prepare(&mut input, &est()).unwrap();
        let also: Vec<_> = p
            .also
            .iter()
            .map(|(k, c)| (k.to_string(), c.units))
            .collect();
        (p.key.to_string(), p.cost.units, also)
    };
    let put = PutItemInput::builder()
        .table_name(ARN)
        .set_item(Some(kb(2)))
        .build()
        .unwrap();
    assert_eq!(
        prepare(Input::erase(put)),
        (
            "orders:write".into(),
            2,
            vec![
                ("orders/by-date:write".into(), 2),
                ("orders/by-user:write".into(), 2)
            ]
        )
    );
    let get = GetItemInput::builder().table_name(ARN).build().unwrap();
    assert_eq!(
        prepare(Input::erase(get)),
        ("orders:read".into(), 1, vec![])
    );
    let query = QueryInput::builder()
        .table_name(ARN)
        .index_name("by-date")
        .build()
        .unwrap();
    assert_eq!(
        prepare(Input::erase(query)),
        ("orders/by-date:read".into(), 1, vec![])
    );
    let scan = ScanInput::builder().table_name(ARN).build().unwrap();
    assert_eq!(
        prepare(Input::erase(scan)),
        ("orders:read".into(), 1, vec![])
    );
    // A batch naming the table once by name and once by ARN: one key, the units summed.
    let write = |n| {
        WriteRequest::builder()
            .put_request(PutRequest::builder().set_item(Some(kb(n))).build().unwrap())
            .build()
    };
    let batch = BatchWriteItemInput::builder()
        .request_items(ARN, vec![write(1)])
        .request_items("orders", vec![write(2)])
        .request_items(
            "arn:aws:dynamodb:us-east-1:123456789012:table/users",
            vec![write(1)],
        )
        .build()
        .unwrap();
    let (key, units, also) = prepare(Input::erase(batch));
    assert_eq!((key.as_str(), units), ("orders:write", 3));
    assert!(also.contains(&("users:write".into(), 1)), "{also:?}");
    let batch_get = BatchGetItemInput::builder()
        .request_items(
            ARN,
            KeysAndAttributes::builder().keys(kb(1)).build().unwrap(),
        )
        .build()
        .unwrap();
    assert_eq!(
        prepare(Input::erase(batch_get)),
        ("orders:read".into(), 1, vec![])
    );
    // A transaction's items, by ARN and by name: one key.
    assert_eq!(
        prepare(Input::erase(two_puts())),
        (
            "orders:write".into(),
            4,
            vec![
                ("orders/by-date:write".into(), 4),
                ("orders/by-user:write".into(), 4)
            ]
        )
    );
    let transact_get = TransactGetItemsInput::builder()
        .transact_items(
            TransactGetItem::builder()
                .get(
                    Get::builder()
                        .table_name(ARN)
                        .set_key(Some(kb(1)))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .build()
        .unwrap();
    assert_eq!(
        prepare(Input::erase(transact_get)),
        ("orders:read".into(), 4, vec![])
    );

    // An answer names the table by the ARN the call gave: each key still finds its entry.
    let est = est();
    let capacity = |table: &str, units: f64| {
        ConsumedCapacity::builder()
            .table_name(table)
            .capacity_units(units)
            .build()
    };
    let output = Output::erase(
        BatchWriteItemOutput::builder()
            .consumed_capacity(capacity(ARN, 3.0))
            .consumed_capacity(capacity(
                "arn:aws:dynamodb:us-east-1:123456789012:table/users",
                1.0,
            ))
            .build(),
    );
    assert_eq!(shape.usage(&output, None, &est, "orders:write"), Some(3));
    assert_eq!(shape.usage(&output, None, &est, "users:write"), Some(1));
    // An index an ARN-named answer reports is learned for the table's name.
    let mut gsi = HashMap::new();
    gsi.insert(
        "by-status".to_owned(),
        Capacity::builder().capacity_units(1.0).build(),
    );
    let answer = Output::erase(
        PutItemOutput::builder()
            .consumed_capacity(
                ConsumedCapacity::builder()
                    .table_name(ARN)
                    .capacity_units(2.0)
                    .table(Capacity::builder().capacity_units(1.0).build())
                    .set_global_secondary_indexes(Some(gsi))
                    .build(),
            )
            .build(),
    );
    assert_eq!(shape.usage(&answer, None, &est, "orders:write"), Some(1));
    assert!(shape.indexes_of("orders").contains(&"by-status".to_owned()));
    assert!(!shape.known().keys().any(|t| t.starts_with("arn:")));
}

/// Two transactional 1 KB puts on `orders`, the first by ARN: 4 WCU on one key.
fn two_puts() -> TransactWriteItemsInput {
    use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
    let put = |table: &str| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(kb(1)))
                    .build()
                    .unwrap(),
            )
            .build()
    };
    TransactWriteItemsInput::builder()
        .transact_items(put("arn:aws:dynamodb:us-east-1:123456789012:table/orders"))
        .transact_items(put("orders"))
        .build()
        .unwrap()
}

/// The per-key ceiling finds a table named by its ARN under its name, and counts its keys there.
#[test]
fn the_ceiling_reads_keys_of_a_table_named_by_its_arn() {
    use crate::dynamodb::PartitionCeiling;
    const ARN: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/orders";
    let ceiling = Arc::new(PartitionCeiling::builder().metrics(false).build().unwrap());
    let partition = keys::PartitionKeys {
        ceiling,
        names: HashMap::from([("orders".to_owned(), "pk".to_owned())]),
    };
    let put = |table: &str| {
        Input::erase(
            PutItemInput::builder()
                .table_name(table)
                .set_item(Some(kb(2)))
                .build()
                .unwrap(),
        )
    };
    let by_name = partition.keys(&put("orders")).expect("a declared table");
    let by_arn = partition
        .keys(&put(ARN))
        .expect("the same table by its ARN");
    let tables = |keys: &crate::smithy::keys::Keys| {
        keys.keys
            .iter()
            .map(|(t, k)| (t.to_string(), k.units, k.id))
            .collect::<Vec<_>>()
    };
    assert_eq!(tables(&by_arn), tables(&by_name));
    assert_eq!(tables(&by_arn)[0].0, "orders");
    let query = QueryInput::builder()
        .table_name(ARN)
        .key_condition_expression("pk = :v")
        .expression_attribute_values(":v", AttributeValue::S("order#1".to_owned()))
        .build()
        .unwrap();
    let keys = partition
        .keys(&Input::erase(query))
        .expect("a simple query");
    assert_eq!(&*keys.keys[0].0, "orders");
    // Another table, by ARN or not, has no partition key declared.
    assert!(
        partition
            .keys(&put("arn:aws:dynamodb:us-east-1:123456789012:table/users"))
            .is_none()
    );
}

#[test]
fn a_number_partition_key_is_one_key_however_it_is_written() {
    use crate::dynamodb::PartitionCeiling;
    let ceiling = Arc::new(PartitionCeiling::builder().metrics(false).build().unwrap());
    let partition = keys::PartitionKeys {
        ceiling,
        names: HashMap::from([("orders".to_owned(), "pk".to_owned())]),
    };
    let id = |number: &str| {
        let put = PutItemInput::builder()
            .table_name("orders")
            .item("pk", AttributeValue::N(number.to_owned()))
            .build()
            .unwrap();
        partition
            .keys(&Input::erase(put))
            .expect("a declared table")
            .keys[0]
            .1
            .id
    };
    assert_eq!(id("1"), id("1.0"));
    assert_eq!(id("1"), id("01"));
    assert_ne!(id("1"), id("10"));
}
