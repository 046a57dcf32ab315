//! The partition keys of a DynamoDB call, read from its typed input for the per-key ceiling
//! ([`crate::dynamodb::PartitionCeiling`]; how the adapter drives it: `smithy::keys`).
//!
//! Each table's partition key attribute is declared once
//! ([`SdkHeadroom::configure_dynamodb_ceiling`](crate::smithy::SdkHeadroom::configure_dynamodb_ceiling));
//! a table not declared keeps no per-key budget. A value is hashed as soon as it is read
//! ([`PartitionCeiling::id`]); no value is kept, logged or labelled. Units per key follow the
//! table's estimate: `PutItem` one WCU per started KB of its item, `UpdateItem` and
//! `DeleteItem` one, `GetItem` one 4 KB block at its consistency, `BatchWriteItem`,
//! `BatchGetItem` and transactions each item on its own key (summed per key), a transaction's
//! items at twice the units. A `Query` counts on its key only when its key condition names the
//! partition key with `=` on a value placeholder (`pk = :v`, `#k = :v`, with an optional
//! `AND` sort key condition); any other `Query`, and `Scan`, is skipped. A table named by its
//! ARN is looked up, and its keys counted, under its name ([`dynamodb::table_name`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemInput;
use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemInput;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemInput;
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::put_item::PutItemInput;
use aws_sdk_dynamodb::operation::query::QueryInput;
use aws_sdk_dynamodb::operation::transact_get_items::TransactGetItemsInput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::interceptors::context::Input;

use super::{item_size, one_block};
use crate::dynamodb::{self, Access, PartitionCeiling, Read};
use crate::smithy::keys::Keys;

type Item = HashMap<String, AttributeValue>;

/// The ceiling and each table's partition key attribute.
#[derive(Debug)]
pub(crate) struct PartitionKeys {
    pub(crate) ceiling: Arc<PartitionCeiling>,
    /// Table → partition key attribute name.
    pub(crate) names: HashMap<String, String>,
}

/// The bytes a key value is hashed from: a string's, a number's canonical text
/// ([`canonical_number`]), a binary's.
fn key_bytes(value: &AttributeValue) -> Option<Cow<'_, [u8]>> {
    match value {
        AttributeValue::S(s) => Some(Cow::Borrowed(s.as_bytes())),
        AttributeValue::N(n) => Some(canonical_number(n)),
        AttributeValue::B(b) => Some(Cow::Borrowed(b.as_ref())),
        _ => None,
    }
}

/// A number as DynamoDB keys it: by value, not by its text ("Leading and trailing zeroes
/// are trimmed", [data types](https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/HowItWorks.NamingRulesDataTypes.html#HowItWorks.DataTypes)),
/// so `1`, `1.0`, `01`, `+1` and `10E-1` are one partition key: its sign, significant digits
/// and decimal point's place (`0.d₁d₂… × 10^e`, written `d₁d₂…e<e>`; zero is `0`). Text that
/// is not a number is hashed as it is (DynamoDB would refuse the call).
fn canonical_number(text: &str) -> Cow<'_, [u8]> {
    let raw = || Cow::Borrowed(text.as_bytes());
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => match unsigned[at + 1..].parse::<i64>() {
            Ok(e) => (&unsigned[..at], e),
            Err(_) => return raw(),
        },
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return raw();
    }
    let all: String = [whole, fraction].concat();
    let leading = all.bytes().take_while(|&b| b == b'0').count();
    let significant = all[leading..].trim_end_matches('0');
    if significant.is_empty() {
        return Cow::Borrowed(b"0");
    }
    let point = exponent.saturating_add(whole.len() as i64 - leading as i64);
    let sign = if negative { "-" } else { "" };
    Cow::Owned(format!("{sign}{significant}e{point}").into_bytes())
}

impl PartitionKeys {
    /// Adds `units` on the key of `item` (a full item or a key) in `table` (by its name or its
    /// ARN).
    fn add(&self, keys: &mut Keys, table: &str, access: Access, item: &Item, units: u64) {
        let table = dynamodb::table_name(table);
        let Some(name) = self.names.get(table) else {
            return;
        };
        if let Some(bytes) = item.get(name).and_then(key_bytes) {
            keys.add(table, access, self.ceiling.id(&bytes), units);
        }
    }

    /// The partition key of a simple `Query`: `pk = :v` (the attribute, or a `#name` for it)
    /// in one of the key condition's `AND` clauses.
    fn query(&self, keys: &mut Keys, i: &QueryInput) {
        let (Some(table), Some(condition)) = (&i.table_name, &i.key_condition_expression) else {
            return;
        };
        if i.index_name.is_some() {
            // An index's partition key is another attribute.
            return;
        }
        let table = dynamodb::table_name(table);
        let Some(name) = self.names.get(table) else {
            return;
        };
        let names = i.expression_attribute_names.as_ref();
        let values = i.expression_attribute_values.as_ref();
        let lowered = condition.to_ascii_lowercase();
        let mut start = 0;
        let mut clauses = Vec::new();
        for (at, _) in lowered.match_indices(" and ") {
            clauses.push(&condition[start..at]);
            start = at + 5;
        }
        clauses.push(&condition[start..]);
        for clause in clauses {
            let Some((lhs, rhs)) = clause.split_once('=') else {
                continue;
            };
            let (lhs, rhs) = (lhs.trim(), rhs.trim());
            let attribute = match lhs.strip_prefix('#') {
                Some(_) => names.and_then(|n| n.get(lhs)).map(String::as_str),
                None => Some(lhs),
            };
            if attribute != Some(name.as_str()) || !rhs.starts_with(':') {
                continue;
            }
            if let Some(bytes) = values.and_then(|v| v.get(rhs)).and_then(key_bytes) {
                let units = one_block(i.consistent_read);
                keys.add(table, Access::Read, self.ceiling.id(&bytes), units);
            }
            return;
        }
    }

    /// The call's keys, `None` when it has none on a declared table.
    pub(crate) fn keys(&self, input: &Input) -> Option<Keys> {
        use Access::{Read as R, Write as W};
        let mut keys = Keys::new(Arc::clone(&self.ceiling));
        let k = &mut keys;
        if let Some(i) = input.downcast_ref::<PutItemInput>() {
            if let (Some(t), Some(item)) = (&i.table_name, &i.item) {
                self.add(k, t, W, item, dynamodb::write_units(item_size(item)));
            }
        } else if let Some(i) = input.downcast_ref::<UpdateItemInput>() {
            if let (Some(t), Some(key)) = (&i.table_name, &i.key) {
                self.add(k, t, W, key, 1);
            }
        } else if let Some(i) = input.downcast_ref::<DeleteItemInput>() {
            if let (Some(t), Some(key)) = (&i.table_name, &i.key) {
                self.add(k, t, W, key, 1);
            }
        } else if let Some(i) = input.downcast_ref::<GetItemInput>() {
            if let (Some(t), Some(key)) = (&i.table_name, &i.key) {
                self.add(k, t, R, key, one_block(i.consistent_read));
            }
        } else if let Some(i) = input.downcast_ref::<QueryInput>() {
            self.query(k, i);
        } else if let Some(i) = input.downcast_ref::<BatchWriteItemInput>() {
            for (t, writes) in i.request_items.iter().flatten() {
                for w in writes {
                    if let Some(put) = w.put_request() {
                        let units = dynamodb::write_units(item_size(put.item()));
                        self.add(k, t, W, put.item(), units);
                    } else if let Some(delete) = w.delete_request() {
                        self.add(k, t, W, delete.key(), 1);
                    }
                }
            }
        } else if let Some(i) = input.downcast_ref::<BatchGetItemInput>() {
            for (t, gets) in i.request_items.iter().flatten() {
                let units = one_block(gets.consistent_read());
                for key in gets.keys() {
                    self.add(k, t, R, key, units);
                }
            }
        } else if let Some(i) = input.downcast_ref::<TransactWriteItemsInput>() {
            for item in i.transact_items.iter().flatten() {
                let (t, key, bytes) = if let Some(put) = item.put() {
                    (put.table_name(), put.item(), item_size(put.item()))
                } else if let Some(update) = item.update() {
                    (update.table_name(), update.key(), 0)
                } else if let Some(delete) = item.delete() {
                    (delete.table_name(), delete.key(), 0)
                } else if let Some(check) = item.condition_check() {
                    (check.table_name(), check.key(), 0)
                } else {
                    continue;
                };
                self.add(k, t, W, key, dynamodb::transactional_write_units(bytes));
            }
        } else if let Some(i) = input.downcast_ref::<TransactGetItemsInput>() {
            for get in i.transact_items.iter().flatten().filter_map(|t| t.get()) {
                let units = dynamodb::read_half_units(0, Read::Transactional);
                self.add(k, get.table_name(), R, get.key(), units);
            }
        }
        (!keys.keys.is_empty()).then_some(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_number;

    fn canonical(text: &str) -> String {
        String::from_utf8(canonical_number(text).into_owned()).unwrap()
    }

    #[test]
    fn a_number_is_keyed_by_its_value_not_its_text() {
        for same in [
            "1", "1.0", "01", "+1", "001.000", "10E-1", "0.1e1", "1e0", "100e-2",
        ] {
            assert_eq!(canonical(same), "1e1", "{same}");
        }
        assert_eq!(canonical("-12.5"), "-125e2");
        assert_eq!(canonical("-0.0125E3"), "-125e2");
        assert_eq!(canonical("0.05"), "5e-1");
        assert_eq!(canonical("500"), "5e3");
        for zero in ["0", "-0", "0.000", "0e10", ".0"] {
            assert_eq!(canonical(zero), "0", "{zero}");
        }
        // Different numbers stay apart.
        assert_ne!(canonical("10"), canonical("1"));
        assert_ne!(canonical("-1"), canonical("1"));
        assert_ne!(canonical("0.1"), canonical("1"));
        // Not a number: hashed as written.
        for text in ["", "-", "abc", "1.2.3", "1e", "e5", "1e5x", "0x10", "1 "] {
            assert_eq!(canonical(text), text, "{text:?}");
        }
    }
}
