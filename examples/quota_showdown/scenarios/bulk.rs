//! Scenario 9, a bulk load: 3,000 items of one WCU each written through `BatchWriteItem` to a
//! provisioned 100 WCU table, as fast as each client will go. DynamoDB throttles a batch in
//! part and answers the rest in `UnprocessedItems`, which the SDK does not retry; AWS asks
//! every caller to resend them with exponential backoff ("Error handling with DynamoDB",
//! Developer Guide, BatchWriteItem). Rows: the plain SDK loop (standard retry, 25 items a
//! batch, `UnprocessedItems` resent after its own backoff, 50 ms doubling to 1 s — the loop of
//! AWS's docs), the same loop on the adaptive retry mode, and tower-headroom's
//! `smithy::batch::BatchWriter` over a client configured by `SdkHeadroom::configure_dynamodb`
//! with the table's console numbers (`TableLimits::table`).
//!
//! The clients are built from the console numbers ([`TABLE_RCU`], [`TABLE_WCU`]) and the
//! front's HTTP client alone ([`clients`]); only the measurement reads the simulator.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use aws_smithy_async::time::TimeSource;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use tower::BoxError;
use tower_headroom::Profile;
use tower_headroom::admission::Quota;
use tower_headroom::dynamodb::TableLimits;
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{DynamoSim, TableConfig};
use tower_headroom::smithy::SdkHeadroom;
use tower_headroom::smithy::batch::BatchWriter;

use super::TABLE;

#[path = "../../support/unprocessed_loop.rs"]
mod unprocessed_loop;

/// The bulk load's scenario number.
pub const SCENARIO: u8 = 9;
/// Items written by each row.
pub const ITEMS: usize = 3_000;
/// The table's provisioned read capacity (console).
pub const TABLE_RCU: u64 = 100;
/// The table's provisioned write capacity (console).
pub const TABLE_WCU: u64 = 100;
/// The scenario's title, as printed above its table.
pub const TITLE: &str = "DynamoDB bulk load: 3,000 items of 1 WCU through BatchWriteItem (25 a batch) on a 100 WCU / 100 RCU provisioned table";

/// A row of the bulk load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BulkStrategy {
    /// The SDK's standard retry, `UnprocessedItems` resent by the caller's own loop.
    PlainLoop,
    /// The same loop on the SDK's adaptive retry mode.
    AdaptiveLoop,
    /// `BatchWriter` over a client configured by `SdkHeadroom::configure_dynamodb`.
    Headroom,
}

impl BulkStrategy {
    /// Every row, in table order.
    pub const ALL: [BulkStrategy; 3] = [
        BulkStrategy::PlainLoop,
        BulkStrategy::AdaptiveLoop,
        BulkStrategy::Headroom,
    ];

    /// The name printed in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            BulkStrategy::PlainLoop => "aws sdk standard + loop",
            BulkStrategy::AdaptiveLoop => "aws sdk adaptive + loop",
            BulkStrategy::Headroom => "tower-headroom BatchWriter",
        }
    }
}

/// What one row measured. Items and throttles are the simulator's counts.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkRow {
    /// The row.
    pub strategy: BulkStrategy,
    /// Items the table wrote (the simulator's admitted writes).
    pub items_written: u64,
    /// WCU the table consumed.
    pub consumed_wcu: f64,
    /// `BatchWriteItem` calls the client sent (its own count).
    pub batches: u64,
    /// Item writes the table throttled (each time an item was left unprocessed or its batch
    /// refused).
    pub throttled_item_attempts: u64,
    /// Virtual seconds from the first batch to the last item written.
    pub seconds: f64,
}

impl BulkRow {
    /// Item attempts: written plus throttled.
    pub fn item_attempts(&self) -> u64 {
        self.items_written + self.throttled_item_attempts
    }

    /// Throttled item attempts as a share of item attempts.
    pub fn throttled_share(&self) -> f64 {
        self.throttled_item_attempts as f64 / self.item_attempts().max(1) as f64
    }
}

/// The simulated table and its wire front, fresh for each row.
pub fn front() -> Result<SimService, BoxError> {
    let sim = DynamoSim::builder()
        .table(
            TableConfig::builder(TABLE)
                .rcu(TABLE_RCU)
                .wcu(TABLE_WCU)
                .latency(Duration::from_millis(5))
                .build()?,
        )
        .build()?;
    Ok(SimService::builder()
        .dynamodb(sim)
        .partition_key(TABLE, super::PARTITION_KEY)
        .build()?)
}

/// The SDK's clock: the runtime's virtual time from a fixed wall-clock start.
#[derive(Debug)]
struct VirtualTime {
    start: tokio::time::Instant,
}

impl TimeSource for VirtualTime {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600) + self.start.elapsed()
    }
}

fn config(http: SharedHttpClient) -> aws_sdk_dynamodb::config::Builder {
    use aws_sdk_dynamodb::config::{Credentials, Region};
    aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url("http://dynamodb.sim")
        .credentials_provider(Credentials::new(
            "AKIDSHOWDOWN00000000",
            "showdown-fake-secret",
            None,
            None,
            "showdown",
        ))
        .time_source(VirtualTime {
            start: tokio::time::Instant::now(),
        })
        .http_client(http)
}

/// A row's client, from the console numbers and the endpoint's HTTP client alone.
pub enum BulkClient {
    /// A plain SDK client for the caller's loop.
    Loop(aws_sdk_dynamodb::Client),
    /// tower-headroom's batch writer.
    Writer(BatchWriter),
}

/// Builds `strategy`'s client over `http`, as a user would: the table's console numbers.
pub fn client(
    strategy: BulkStrategy,
    http: SharedHttpClient,
    seed: u64,
) -> Result<BulkClient, BoxError> {
    Ok(match strategy {
        BulkStrategy::PlainLoop => BulkClient::Loop(aws_sdk_dynamodb::Client::from_conf(
            config(http).retry_config(RetryConfig::standard()).build(),
        )),
        BulkStrategy::AdaptiveLoop => BulkClient::Loop(aws_sdk_dynamodb::Client::from_conf(
            config(http).retry_config(RetryConfig::adaptive()).build(),
        )),
        BulkStrategy::Headroom => {
            let quota: Quota<Arc<str>> =
                Quota::builder(Profile::DynamoDb.limit().units(TABLE_WCU).build()?)
                    .table(TABLE, TABLE_RCU, TABLE_WCU)?
                    .build();
            let headroom = SdkHeadroom::builder(Profile::DynamoDb)
                .quota(quota)
                .build()?;
            let client = aws_sdk_dynamodb::Client::from_conf(
                headroom.configure_dynamodb(config(http))?.build(),
            );
            BulkClient::Writer(BatchWriter::new(client).seed(seed))
        }
    })
}

/// One item of about 500 bytes: one WCU.
fn put(i: usize) -> WriteRequest {
    let put = PutRequest::builder()
        .item(
            super::PARTITION_KEY,
            AttributeValue::S(format!("order#{i}")),
        )
        .item("note", AttributeValue::S("x".repeat(480)))
        .build()
        .expect("the partition key is set");
    WriteRequest::builder().put_request(put).build()
}

/// The loop of AWS's docs over the scenario's items; returns the calls sent.
async fn plain_loop(client: aws_sdk_dynamodb::Client) -> u64 {
    unprocessed_loop::documented_loop(client, TABLE, (0..ITEMS).map(put).collect()).await
}

/// Runs one row on its own paused runtime against a fresh table.
pub fn run(strategy: BulkStrategy, seed: u64) -> Result<BulkRow, BoxError> {
    // The SDK's retry jitter draws from this thread's `fastrand` generator, and the paused
    // current-thread runtime runs every task on this thread: seeding it makes the SDK rows
    // repeat run to run.
    fastrand::seed(seed);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    runtime.block_on(async move {
        let front = front()?;
        let client = client(strategy, sdk_http_client(front.clone()), seed)?;
        let start = tokio::time::Instant::now();
        let batches = match client {
            BulkClient::Loop(client) => tokio::spawn(plain_loop(client)).await?,
            BulkClient::Writer(writer) => {
                let done = tokio::spawn(async move {
                    writer
                        .write((0..ITEMS).map(|i| (TABLE.to_owned(), put(i))))
                        .await
                })
                .await??;
                done.batches as u64
            }
        };
        let seconds = start.elapsed().as_secs_f64();
        let stats = front
            .dynamodb()
            .ok_or("the front has no DynamoDB simulator")?
            .stats();
        let table = stats.table(TABLE).ok_or("no table")?;
        Ok(BulkRow {
            strategy,
            items_written: table.writes.admitted,
            consumed_wcu: table.consumed_wcu(),
            batches,
            throttled_item_attempts: table.writes.throttled(),
            seconds,
        })
    })
}

/// Every row, in table order.
pub fn run_all(seed: u64) -> Result<Vec<BulkRow>, BoxError> {
    BulkStrategy::ALL.iter().map(|&s| run(s, seed)).collect()
}

/// The scenario's table.
pub fn table(rows: &[BulkRow]) -> String {
    let mut out = format!("Scenario {SCENARIO}: {TITLE}\n");
    out += &format!(
        "{:<28} {:>13} {:>9} {:>17} {:>10} {:>10}\n",
        "strategy", "items written", "batches", "throttled items", "throttled", "time (s)"
    );
    for r in rows {
        out += &format!(
            "{:<28} {:>13} {:>9} {:>17} {:>9.2}% {:>10.1}\n",
            r.strategy.name(),
            r.items_written,
            r.batches,
            r.throttled_item_attempts,
            100.0 * r.throttled_share(),
            r.seconds
        );
    }
    out += "items and throttled item attempts are the simulator's counts; batches are BatchWriteItem calls sent; time is virtual\n";
    out
}

/// One JSON object for a row.
pub fn json_line(row: &BulkRow) -> String {
    format!(
        "{{\"scenario\":{SCENARIO},\"name\":\"bulk-load\",\"strategy\":\"{}\",\"items\":{ITEMS},\
         \"items_written\":{},\"consumed_wcu\":{:.1},\"batches\":{},\"throttled_item_attempts\":{},\
         \"seconds\":{:.3}}}",
        row.strategy.name(),
        row.items_written,
        row.consumed_wcu,
        row.batches,
        row.throttled_item_attempts,
        row.seconds
    )
}
