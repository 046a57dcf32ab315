//! [`BatchWriter`]: any number of put and delete requests, written in `BatchWriteItem`s of 25
//! with their `UnprocessedItems` resent.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::WriteRequest;

use super::{
    BatchCall, BatchStop, MAX_WRITE_BATCH, Pacing, Progress, Refusal, Stopped, Tabled,
    describe_stop, drive, failed_batch, pacing_setters,
};

/// Writes any number of put and delete requests; see [the module docs](super).
#[derive(Clone, Debug)]
pub struct BatchWriter {
    client: aws_sdk_dynamodb::Client,
    pacing: Pacing,
}

/// What a [`BatchWriter::write`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchWritten {
    /// Write requests DynamoDB processed.
    pub items: usize,
    /// `BatchWriteItem` calls sent.
    pub batches: usize,
    /// Requests sent again after DynamoDB left them unprocessed or a batch call failed.
    pub resent: usize,
}

impl From<Progress> for BatchWritten {
    fn from(p: Progress) -> Self {
        BatchWritten {
            items: p.done,
            batches: p.batches,
            resent: p.resent,
        }
    }
}

/// A [`BatchWriter::write`] stopped with requests left: why, and every request not written.
///
/// `Display` and `Debug` show counts and the reason, never an item.
#[non_exhaustive]
pub struct BatchWriteError {
    /// Why it stopped.
    pub stop: BatchStop,
    /// Every request not known to be written, with its table, in the order given.
    pub unwritten: Vec<(String, WriteRequest)>,
    /// What was done before it stopped.
    pub done: BatchWritten,
    /// What a batch was refused with, when one was.
    refusal: Refusal,
}

impl fmt::Display for BatchWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe_stop(
            f,
            self.unwritten.len(),
            ("write requests not written", "written"),
            self.done.items,
            self.done.batches,
            &self.stop,
            &self.refusal,
        )
    }
}

impl fmt::Debug for BatchWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchWriteError")
            .field("stop", &self.stop)
            .field("unwritten", &self.unwritten.len())
            .field("done", &self.done)
            .finish()
    }
}

impl std::error::Error for BatchWriteError {
    /// The SDK's error for a batch DynamoDB refused for good ([`BatchStop::Fatal`]).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.refusal.source()
    }
}

impl BatchWriteError {
    /// The AWS error code of the batch DynamoDB refused (`ValidationException`,
    /// `ResourceNotFoundException`, …), when it stopped on one.
    pub fn error_code(&self) -> Option<&str> {
        self.refusal.error_code()
    }
}

impl BatchWriter {
    /// A writer over `client` (configure it with
    /// [`SdkHeadroom::configure_dynamodb`](crate::smithy::SdkHeadroom::configure_dynamodb) to
    /// admit every batch against its tables' capacity).
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        BatchWriter {
            client,
            pacing: Pacing::default(),
        }
    }

    pacing_setters!("write");

    /// Writes every request (a table name and a put or delete request), 25 to a
    /// `BatchWriteItem`, in the order given, resending unprocessed ones until all are written
    /// or the deadline passes. Two requests for the same item must not share a batch
    /// (DynamoDB refuses it): give them in separate calls.
    pub async fn write(
        &self,
        requests: impl IntoIterator<Item = (String, WriteRequest)>,
    ) -> Result<BatchWritten, BatchWriteError> {
        let mut call = WriteCall(&self.client);
        drive(&mut call, requests, &self.pacing)
            .await
            .map(BatchWritten::from)
            .map_err(
                |(Stopped { stop, refusal }, unwritten, done)| BatchWriteError {
                    stop,
                    unwritten,
                    done: done.into(),
                    refusal,
                },
            )
    }
}

struct WriteCall<'a>(&'a aws_sdk_dynamodb::Client);

impl BatchCall for WriteCall<'_> {
    type Item = WriteRequest;
    const MAX: usize = MAX_WRITE_BATCH;

    async fn send(
        &mut self,
        batch: &[Tabled<WriteRequest>],
    ) -> Result<Vec<Tabled<WriteRequest>>, Option<Stopped>> {
        let mut tables: HashMap<String, Vec<WriteRequest>> = HashMap::new();
        for (table, request) in batch {
            tables
                .entry(table.clone())
                .or_default()
                .push(request.clone());
        }
        let output = self
            .0
            .batch_write_item()
            .set_request_items(Some(tables))
            .send()
            .await
            .map_err(failed_batch)?;
        Ok(output
            .unprocessed_items
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(table, requests)| requests.into_iter().map(move |r| (table.clone(), r)))
            .collect())
    }
}
