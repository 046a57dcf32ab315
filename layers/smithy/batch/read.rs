//! [`BatchReader`]: any number of keys, read in `BatchGetItem`s of 100 with their
//! `UnprocessedKeys` resent.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::{
    BatchCall, BatchStop, MAX_GET_BATCH, Pacing, Progress, Refusal, Stopped, Tabled, describe_stop,
    drive, failed_batch, pacing_setters,
};

/// An item, or a key: attribute names and values.
type Item = HashMap<String, AttributeValue>;

/// Reads any number of keys; see [the module docs](super).
#[derive(Clone, Debug)]
pub struct BatchReader {
    client: aws_sdk_dynamodb::Client,
    pacing: Pacing,
    options: HashMap<String, KeysAndAttributes>,
}

/// What a [`BatchReader::get`] read.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct BatchRead {
    /// The items found, per table (a key with no item has none).
    pub items: HashMap<String, Vec<Item>>,
    /// Keys DynamoDB processed.
    pub keys: usize,
    /// `BatchGetItem` calls sent.
    pub batches: usize,
    /// Keys sent again after DynamoDB left them unprocessed or a batch call failed.
    pub resent: usize,
}

/// A [`BatchReader::get`] stopped with keys left: why, every key not read, and what was read.
///
/// `Display` and `Debug` show counts and the reason, never a key or an item.
#[non_exhaustive]
pub struct BatchGetError {
    /// Why it stopped.
    pub stop: BatchStop,
    /// Every key not read, with its table, in the order given.
    pub unread: Vec<(String, Item)>,
    /// The items read before it stopped.
    pub read: BatchRead,
    /// What a batch was refused with, when one was.
    refusal: Refusal,
}

impl fmt::Display for BatchGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe_stop(
            f,
            self.unread.len(),
            ("keys not read", "read"),
            self.read.keys,
            self.read.batches,
            &self.stop,
            &self.refusal,
        )
    }
}

impl fmt::Debug for BatchGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchGetError")
            .field("stop", &self.stop)
            .field("unread", &self.unread.len())
            .field("read_keys", &self.read.keys)
            .finish()
    }
}

impl std::error::Error for BatchGetError {
    /// The SDK's error for a batch DynamoDB refused for good ([`BatchStop::Fatal`]).
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.refusal.source()
    }
}

impl BatchGetError {
    /// The AWS error code of the batch DynamoDB refused (`ValidationException`,
    /// `ResourceNotFoundException`, …), when it stopped on one.
    pub fn error_code(&self) -> Option<&str> {
        self.refusal.error_code()
    }
}

impl BatchReader {
    /// A reader over `client` (configure it with
    /// [`SdkHeadroom::configure_dynamodb`](crate::smithy::SdkHeadroom::configure_dynamodb) to
    /// admit every batch against its tables' capacity).
    pub fn new(client: aws_sdk_dynamodb::Client) -> Self {
        BatchReader {
            client,
            pacing: Pacing::default(),
            options: HashMap::new(),
        }
    }

    pacing_setters!("get");

    /// How to read `table` (named by its name or its ARN): consistency, projection, attribute
    /// names, as a `KeysAndAttributes` whose keys are not used (its builder wants some: give
    /// it `.set_keys(Some(Vec::new()))`; default: eventually consistent, whole items).
    pub fn table_options(mut self, table: impl Into<String>, options: KeysAndAttributes) -> Self {
        let table = table.into();
        // Keyed by the table's name, so that keys naming it by its ARN get them too.
        self.options
            .insert(crate::dynamodb::table_name(&table).to_owned(), options);
        self
    }

    /// Reads every key (a table name and the item's primary key), 100 to a `BatchGetItem`,
    /// resending unprocessed keys until all are read or the deadline passes. A key given
    /// twice may land in one batch, which DynamoDB refuses as a whole: the read then stops
    /// with [`BatchStop::Fatal`] and every key not read (give each key once).
    pub async fn get(
        &self,
        keys: impl IntoIterator<Item = (String, Item)>,
    ) -> Result<BatchRead, BatchGetError> {
        let mut call = GetCall {
            client: &self.client,
            options: &self.options,
            items: HashMap::new(),
        };
        let result = drive(&mut call, keys, &self.pacing).await;
        let read = |p: Progress, items| BatchRead {
            items,
            keys: p.done,
            batches: p.batches,
            resent: p.resent,
        };
        match result {
            Ok(progress) => Ok(read(progress, call.items)),
            Err((Stopped { stop, refusal }, unread, progress)) => Err(BatchGetError {
                stop,
                unread,
                read: read(progress, call.items),
                refusal,
            }),
        }
    }
}

struct GetCall<'a> {
    client: &'a aws_sdk_dynamodb::Client,
    options: &'a HashMap<String, KeysAndAttributes>,
    items: HashMap<String, Vec<Item>>,
}

impl GetCall<'_> {
    fn request(&self, table: &str, keys: Vec<Item>) -> Result<KeysAndAttributes, Stopped> {
        let builder = match self.options.get(crate::dynamodb::table_name(table)) {
            Some(o) => KeysAndAttributes::builder()
                .set_attributes_to_get(o.attributes_to_get.clone())
                .set_consistent_read(o.consistent_read)
                .set_projection_expression(o.projection_expression.clone())
                .set_expression_attribute_names(o.expression_attribute_names.clone()),
            None => KeysAndAttributes::builder(),
        };
        builder.set_keys(Some(keys)).build().map_err(|e| Stopped {
            stop: BatchStop::Fatal(crate::OutcomeKind::Fatal),
            refusal: Refusal {
                code: None,
                source: Some(Box::new(e)),
            },
        })
    }
}

impl BatchCall for GetCall<'_> {
    type Item = Item;
    const MAX: usize = MAX_GET_BATCH;

    async fn send(&mut self, batch: &[Tabled<Item>]) -> Result<Vec<Tabled<Item>>, Option<Stopped>> {
        let mut tables: HashMap<String, Vec<Item>> = HashMap::new();
        for (table, key) in batch {
            tables.entry(table.clone()).or_default().push(key.clone());
        }
        let mut request = HashMap::with_capacity(tables.len());
        for (table, keys) in tables {
            let entry = self.request(&table, keys).map_err(Some)?;
            request.insert(table, entry);
        }
        let output = self
            .client
            .batch_get_item()
            .set_request_items(Some(request))
            .send()
            .await
            .map_err(failed_batch)?;
        for (table, items) in output.responses.unwrap_or_default() {
            self.items.entry(table).or_default().extend(items);
        }
        Ok(output
            .unprocessed_keys
            .unwrap_or_default()
            .into_iter()
            .flat_map(|(table, keys)| keys.keys.into_iter().map(move |k| (table.clone(), k)))
            .collect())
    }
}
