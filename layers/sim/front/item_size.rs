//! DynamoDB's item-size rules, on the awsJson1_0 attribute-value JSON, and the capacity units
//! they cost.
//!
//! The rules themselves are in `crate::item_size`, shared with the SDK adapter.

use serde_json::Value;

use crate::item_size::{CONTAINER, ELEMENT, SCALAR, number_size};

/// The size of an item: a JSON object of attribute name to attribute value.
pub(crate) fn item_size(item: &serde_json::Map<String, Value>) -> u64 {
    item.iter()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

/// The size of one attribute value (`{"S": "..."}`, `{"N": "..."}`, ...).
pub(crate) fn value_size(value: &Value) -> u64 {
    let Some((kind, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    match (kind.as_str(), inner) {
        ("S", Value::String(s)) => s.len() as u64,
        ("N", Value::String(n)) => number_size(n),
        ("B", Value::String(b)) => base64_decoded_len(b),
        ("BOOL", _) | ("NULL", _) => SCALAR,
        ("SS", Value::Array(items)) => items
            .iter()
            .map(|s| s.as_str().map_or(0, |s| s.len() as u64))
            .sum(),
        ("NS", Value::Array(items)) => items
            .iter()
            .map(|n| n.as_str().map_or(0, number_size))
            .sum(),
        ("BS", Value::Array(items)) => items
            .iter()
            .map(|b| b.as_str().map_or(0, base64_decoded_len))
            .sum(),
        ("L", Value::Array(items)) => {
            CONTAINER + items.iter().map(|v| ELEMENT + value_size(v)).sum::<u64>()
        }
        ("M", Value::Object(map)) => {
            CONTAINER
                + map
                    .iter()
                    .map(|(k, v)| ELEMENT + k.len() as u64 + value_size(v))
                    .sum::<u64>()
        }
        _ => 0,
    }
}

/// `ceil(significant digits / 2) + 1`, plus one for a minus sign.
/// The decoded length of standard base64 text, without decoding it.
fn base64_decoded_len(b: &str) -> u64 {
    let b = b.trim_end_matches('=');
    (b.len() as u64 * 3) / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn size(item: Value) -> u64 {
        item_size(item.as_object().unwrap())
    }

    #[test]
    fn strings_and_names_count_their_utf8_bytes() {
        assert_eq!(size(json!({"pk": {"S": "abc"}})), 2 + 3);
        // "é" is two bytes in UTF-8.
        assert_eq!(size(json!({"n": {"S": "é"}})), 1 + 2);
    }

    #[test]
    fn containers_add_their_overheads() {
        // 3 + (1 + 1) + (1 + 2) for the list; name "l" is 1.
        assert_eq!(
            size(json!({"l": {"L": [{"BOOL": true}, {"N": "12"}]}})),
            1 + 3 + 2 + 3
        );
        // map: 3 + (1 + len("k") + len("v"))
        assert_eq!(
            size(json!({"m": {"M": {"k": {"S": "v"}}}})),
            1 + 3 + 1 + 1 + 1
        );
        assert_eq!(size(json!({"s": {"SS": ["ab", "c"]}})), 1 + 3);
        // "AAAA" decodes to 3 bytes, "AA==" to 1.
        assert_eq!(size(json!({"b": {"BS": ["AAAA", "AA=="]}})), 1 + 4);
    }

    #[test]
    fn garbage_values_count_nothing_rather_than_fail() {
        assert_eq!(size(json!({"x": 5, "y": {"S": 7}, "z": {}})), 3);
    }
}
