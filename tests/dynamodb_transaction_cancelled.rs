//! A `TransactWriteItems` cancelled for capacity, through the real `aws-sdk-dynamodb` client
//! configured by `SdkHeadroom`, on tokio's paused clock: a canned in-process connector answers
//! `TransactionCanceledException` with DynamoDB's `CancellationReasons`. Cancelled only for
//! capacity (`ThrottlingError`), the transaction is a throttle: retried with the same
//! `ClientRequestToken` until it goes through, and the table's write key learns from it. With
//! a `ConditionalCheckFailed` beside the throttle it is fatal: one attempt, the caller gets
//! the cancellation. The item values the reasons carry never reach a log.
#![cfg(all(feature = "sim", feature = "dynamodb"))]

mod support {
    pub mod capture;
    pub mod sdk;
}

use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::http::{Response as SdkResponse, StatusCode};
use aws_smithy_types::body::SdkBody;
use tokio::time::Instant;
use tower_headroom::dynamodb::{self};

/// An item value DynamoDB may return in a reason (`ReturnValuesOnConditionCheckFailure`).
const CANARY: &str = "item-value-canary";

/// DynamoDB's answer to a transaction of two items cancelled with `first` and `second`.
fn cancelled(first: &str, second: &str) -> String {
    format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [{first}, {second}]","CancellationReasons":[{{"Code":"{first}"}},{{"Code":"{second}","Message":"…","Item":{{"pk":{{"S":"{CANARY}"}}}}}}]}}"#
    )
}

/// The `ClientRequestToken` of every request that reached the connector.
type Seen = Arc<Mutex<Vec<String>>>;

/// A connector that answers the first `refusals` transactions with `refusal` (400), then
/// with a success.
fn canned(refusal: String, refusals: usize, seen: Seen) -> SharedHttpClient {
    #[derive(Debug)]
    struct Canned {
        refusal: String,
        refusals: usize,
        seen: Seen,
    }
    impl HttpConnector for Canned {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let body: serde_json::Value =
                serde_json::from_slice(request.body().bytes().unwrap_or_default())
                    .unwrap_or_default();
            let token = body["ClientRequestToken"].as_str().unwrap_or_default();
            let mut seen = self.seen.lock().unwrap();
            seen.push(token.to_owned());
            let (status, body) = if seen.len() <= self.refusals {
                (400, self.refusal.clone())
            } else {
                (200, String::from("{}"))
            };
            let mut response =
                SdkResponse::new(StatusCode::try_from(status).unwrap(), SdkBody::from(body));
            response
                .headers_mut()
                .insert("content-type", "application/x-amz-json-1.0");
            HttpConnectorFuture::ready(Ok(response))
        }
    }
    http_client_fn(move |_, _| {
        SharedHttpConnector::new(Canned {
            refusal: refusal.clone(),
            refusals,
            seen: Arc::clone(&seen),
        })
    })
}

fn put(pk: &str) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name("orders")
                .item("pk", AttributeValue::S(pk.to_owned()))
                .build()
                .unwrap(),
        )
        .build()
}

/// Sends one two-item transaction; what came back, the tokens the connector saw, the write
/// key's effective limit after, and the logs.
async fn transact(
    refusal: String,
    refusals: usize,
) -> (Result<(), String>, Vec<String>, Option<u64>, String) {
    let (quota, headroom) = support::sdk::orders_headroom(100, 100);
    let seen = Seen::default();
    let builder = support::sdk::dynamodb_sim_config(canned(refusal, refusals, seen.clone()));
    let client =
        aws_sdk_dynamodb::Client::from_conf(headroom.configure_dynamodb(builder).unwrap().build());
    let result = Arc::new(Mutex::new(None));
    let logs = support::capture::captured(&["tower_headroom"], {
        let result = Arc::clone(&result);
        async move {
            let sent = client
                .transact_write_items()
                .transact_items(put("order-1"))
                .transact_items(put("order-2"))
                .send()
                .await
                .map(drop)
                .map_err(|e| {
                    e.as_service_error()
                        .map_or_else(|| e.to_string(), |s| format!("{s:?}"))
                });
            *result.lock().unwrap() = Some(sent);
        }
    })
    .await;
    let limit = quota
        .stats(&Arc::from(dynamodb::write_key("orders")), Instant::now())
        .and_then(|s| s.units_limit);
    let sent = result.lock().unwrap().take().unwrap();
    let seen = seen.lock().unwrap().clone();
    (sent, seen, limit, logs)
}

#[tokio::test(start_paused = true)]
async fn a_transaction_cancelled_for_capacity_is_retried_with_its_token_and_teaches_the_quota() {
    let (sent, seen, limit, logs) = transact(cancelled("None", "ThrottlingError"), 2).await;
    assert_eq!(sent, Ok(()), "retried until it went through");
    assert_eq!(
        seen.len(),
        3,
        "two cancelled attempts and the one that went through"
    );
    assert!(!seen[0].is_empty(), "the SDK filled the ClientRequestToken");
    assert!(
        seen.iter().all(|t| *t == seen[0]),
        "every attempt sent the same token: {seen:?}"
    );
    // A throttle the accounting did not predict: the write key's limit was cut.
    assert!(limit.is_some_and(|l| l < 100), "{limit:?}");
    assert!(!logs.contains(CANARY), "an item value was logged");
}

#[tokio::test(start_paused = true)]
async fn a_failed_condition_beside_a_throttle_is_fatal() {
    // Cancelled for a condition and for capacity: a retry would fail on the condition again.
    let refusal = cancelled("ThrottlingError", "ConditionalCheckFailed");
    let (sent, seen, limit, logs) = transact(refusal, usize::MAX).await;
    let error = sent.unwrap_err();
    assert!(error.contains("TransactionCanceledException"), "{error}");
    assert_eq!(seen.len(), 1, "not retried");
    assert_eq!(limit, Some(100), "nothing learned");
    assert!(!logs.contains(CANARY), "an item value was logged");
}
