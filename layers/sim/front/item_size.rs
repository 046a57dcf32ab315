//! DynamoDB's item-size rules, on the awsJson1_0 attribute-value JSON, and the capacity units
//! they cost.
//!
//! From the DynamoDB developer guide ("Item sizes and formats"): an item's size is the sum of
//! its attribute names' UTF-8 lengths and its values' sizes, where
//! - a string is its UTF-8 length; a binary its decoded length;
//! - a number is about one byte per two significant digits, plus one
//!   (`ceil(digits / 2) + 1`, one more if negative);
//! - a boolean or null is one byte;
//! - a list or map is 3 bytes plus one byte per element plus the elements (a map's element
//!   includes its key's length);
//! - a set is the sum of its elements.
//!
//! The simulator core turns sizes into capacity units ([`DynamoCall`](crate::sim::DynamoCall)).
//! Sizes are computed on the JSON as sent, so a malformed value counts as what it looks like rather than failing: the
//! store behind the front validates the request properly.

use serde_json::Value;

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
        ("BOOL", _) | ("NULL", _) => 1,
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
        ("L", Value::Array(items)) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<u64>(),
        ("M", Value::Object(map)) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() as u64 + value_size(v))
                .sum::<u64>()
        }
        _ => 0,
    }
}

/// `ceil(significant digits / 2) + 1`, plus one for a minus sign.
fn number_size(n: &str) -> u64 {
    let n = n.trim();
    let (negative, n) = match n.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, n.strip_prefix('+').unwrap_or(n)),
    };
    // The exponent does not change the significant digits.
    let mantissa = n.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.max(1).div_ceil(2) + 1 + u64::from(negative)
}

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
    fn numbers_count_significant_digits() {
        assert_eq!(number_size("0"), 2);
        assert_eq!(number_size("12345"), 4);
        assert_eq!(number_size("1000000"), 2);
        assert_eq!(number_size("-0.0012"), 3);
        assert_eq!(number_size("1.5E+10"), 2);
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
