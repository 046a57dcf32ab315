//! DynamoDB's item-size rules, once, for every representation of an item: the simulator's
//! front reads awsJson1_0 attribute-value JSON, the SDK adapter reads `aws-sdk-dynamodb`'s typed
//! `AttributeValue`s, and both must agree on what a write costs.
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

/// The bytes a list or map adds to its elements.
pub(crate) const CONTAINER: u64 = 3;
/// The bytes each element of a list or map adds.
pub(crate) const ELEMENT: u64 = 1;
/// A boolean or a null.
pub(crate) const SCALAR: u64 = 1;

/// The size of a number given as DynamoDB's decimal string: one byte per two significant
/// digits, plus one, plus one if negative.
pub(crate) fn number_size(n: &str) -> u64 {
    let n = n.trim();
    let (negative, n) = match n.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, n.strip_prefix('+').unwrap_or(n)),
    };
    let mantissa = n.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.max(1).div_ceil(2) + 1 + u64::from(negative)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_count_significant_digits() {
        assert_eq!(number_size("0"), 2);
        assert_eq!(number_size("12345"), 4);
        assert_eq!(number_size("1000000"), 2);
        assert_eq!(number_size("-0.0012"), 3);
        assert_eq!(number_size("1.5E+10"), 2);
    }
}
