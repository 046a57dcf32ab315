//! The `UnprocessedItems` loop AWS's docs describe, as users write it by hand: the baseline
//! the bulk-load comparisons (showdown scenario 9, `tests/dynamodb_bulk_load.rs`) measure
//! `BatchWriter` against.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::WriteRequest;

/// Writes `items` to `table`: 25 a batch, one batch at a time, `UnprocessedItems` resent after
/// an exponential backoff (50 ms doubling to 1 s); an error (every item throttled, after the
/// SDK's own retries) resends the whole batch. Returns the `BatchWriteItem` calls sent.
pub async fn documented_loop(
    client: aws_sdk_dynamodb::Client,
    table: &str,
    items: Vec<WriteRequest>,
) -> u64 {
    let mut batches = 0;
    for chunk in items.chunks(25) {
        let mut pending = HashMap::from([(table.to_owned(), chunk.to_vec())]);
        let mut backoff = Duration::from_millis(50);
        loop {
            batches += 1;
            let sent = client
                .batch_write_item()
                .set_request_items(Some(pending.clone()))
                .send()
                .await;
            if let Ok(out) = sent {
                match out.unprocessed_items {
                    Some(left) if !left.is_empty() => pending = left,
                    _ => break,
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
    batches
}
