//! What a request names: its table, and its partition key found through the table's key
//! schema (items, keys, `Query` key conditions).

use serde_json::{Map, Value};

use crate::sim::front::wire::WireError;

/// A partition key value rendered for [`DynamoCall`]: a string, number or binary key's text.
///
/// [`DynamoCall`]: crate::sim::DynamoCall
pub(super) fn key_text(value: &Value) -> Option<&str> {
    let object = value.as_object()?;
    ["S", "N", "B"]
        .iter()
        .find_map(|kind| object.get(*kind).and_then(Value::as_str))
}

pub(super) fn table_name(body: &Map<String, Value>) -> Result<&str, WireError> {
    match body.get("TableName").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(WireError::validation(
            "1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null",
        )),
    }
}

pub(super) fn missing_key() -> WireError {
    WireError::validation("One of the required keys was not given a value")
}

/// The `HASH` attribute of a `KeySchema` list.
pub(super) fn hash_key(schema: Option<&Value>) -> Option<&str> {
    schema?.as_array()?.iter().find_map(|k| {
        (k.get("KeyType")?.as_str()? == "HASH")
            .then(|| k.get("AttributeName")?.as_str())
            .flatten()
    })
}

/// The partition key value a `Query` names: `pk = :v` in its `KeyConditionExpression`
/// (names through `ExpressionAttributeNames`), or the legacy `KeyConditions` `EQ`.
pub(super) fn query_key(body: &Map<String, Value>, pk: &str) -> Option<String> {
    if let Some(expression) = body.get("KeyConditionExpression").and_then(Value::as_str) {
        let names = body
            .get("ExpressionAttributeNames")
            .and_then(Value::as_object);
        let values = body
            .get("ExpressionAttributeValues")
            .and_then(Value::as_object);
        let resolve = |token: &str| -> Option<String> {
            let token = token.trim().trim_matches(|c| c == '(' || c == ')').trim();
            if token.starts_with('#') {
                names?.get(token)?.as_str().map(str::to_owned)
            } else {
                Some(token.to_owned())
            }
        };
        for clause in split_and(expression) {
            let Some((left, right)) = clause.split_once('=') else {
                continue;
            };
            // Skip <=, >=, <> comparisons.
            if left.ends_with(['<', '>']) || right.starts_with('>') {
                continue;
            }
            let (left, right) = (left.trim(), right.trim());
            let (name, placeholder) = if right.trim_start_matches('(').starts_with(':') {
                (left, right)
            } else {
                (right, left)
            };
            if resolve(name).as_deref() == Some(pk) {
                let placeholder = placeholder.trim_matches(|c| c == '(' || c == ')').trim();
                return values?
                    .get(placeholder)
                    .and_then(key_text)
                    .map(str::to_owned);
            }
        }
        return None;
    }
    let condition = body.get("KeyConditions")?.get(pk)?;
    (condition.get("ComparisonOperator")?.as_str()? == "EQ")
        .then(|| {
            condition
                .get("AttributeValueList")?
                .get(0)
                .and_then(key_text)
                .map(str::to_owned)
        })
        .flatten()
}

/// The clauses of a key condition joined by `AND` (any case).
fn split_and(expression: &str) -> Vec<&str> {
    let mut clauses = Vec::new();
    let mut start = 0;
    let bytes = expression.as_bytes();
    let mut i = 0;
    while i + 5 <= bytes.len() {
        let word = &expression[i..i + 5];
        if word.eq_ignore_ascii_case(" and ") {
            clauses.push(&expression[start..i]);
            start = i + 5;
            i += 5;
        } else {
            i += 1;
        }
    }
    clauses.push(&expression[start..]);
    clauses
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn query_keys_resolve_names_and_placeholders() {
        let body = map(json!({
            "KeyConditionExpression": "#p = :v AND begins_with(sk, :prefix)",
            "ExpressionAttributeNames": {"#p": "pk"},
            "ExpressionAttributeValues": {":v": {"S": "hot"}, ":prefix": {"S": "a"}},
        }));
        assert_eq!(query_key(&body, "pk").as_deref(), Some("hot"));
        let body = map(json!({
            "KeyConditionExpression": "sk >= :s and :v = pk",
            "ExpressionAttributeValues": {":v": {"N": "42"}, ":s": {"S": "x"}},
        }));
        assert_eq!(query_key(&body, "pk").as_deref(), Some("42"));
        let body = map(json!({
            "KeyConditions": {"pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "k"}]}},
        }));
        assert_eq!(query_key(&body, "pk").as_deref(), Some("k"));
        let body = map(json!({"KeyConditionExpression": "other = :v",
            "ExpressionAttributeValues": {":v": {"S": "x"}}}));
        assert_eq!(query_key(&body, "pk"), None);
    }

    #[test]
    fn hash_keys_come_from_the_key_schema() {
        let schema = json!([
            {"AttributeName": "sk", "KeyType": "RANGE"},
            {"AttributeName": "pk", "KeyType": "HASH"},
        ]);
        assert_eq!(hash_key(Some(&schema)), Some("pk"));
        assert_eq!(hash_key(Some(&json!("nope"))), None);
        assert_eq!(hash_key(None), None);
    }
}
