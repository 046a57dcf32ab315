//! The real `aws-sdk-dynamodb` client with tower-headroom installed by
//! [`SdkHeadroom::configure_dynamodb`]: a write-capacity quota per table (the key
//! `orders:write`, apart from the table's reads) paces a burst of
//! `PutItem` calls that the plain SDK client gets throttled on
//! (`ProvisionedThroughputExceededException`). Runs with no AWS account:
//!
//! ```text
//! cargo run --features sim,dynamodb --example dynamodb_writes
//! ```
//!
//! By default the example starts the throttling simulator's HTTP front on a free loopback port
//! with one provisioned table (`orders`, 50 WCU, no burst credit) and points both clients at it
//! (`endpoint_url`). The front needs no DynamoDB store for this: it charges capacity and answers
//! writes with empty results. It then fires the same burst twice, checking each claim it
//! prints (a false claim exits non-zero):
//!
//! 1. through the headroom client: no second holding more writes than the table's quota (the
//!    first 50 go at once, the rest as the first second's slide out of the window), no
//!    throttle, and
//!    `ConsumedCapacity` — which the adapter asks for to settle its reservations — absent from
//!    every output, as the caller did not ask; a caller that asks still gets it;
//! 2. after the table's capacity has refilled, through a plain SDK client (standard retry mode,
//!    as most applications run it): throttled, and retried with the SDK's backoff (calls fail
//!    once its three attempts or its retry quota run out). What the plain client's burst
//!    costs is the throttled attempts, which on a shared table are capacity errors for every
//!    other writer too.
//!
//! Options:
//! - `--store URL`: forward the writes to a DynamoDB-compatible store (e.g. dynalite, see
//!   `scripts/dynalite`); the table is created through the front when missing;
//! - `--endpoint URL`: point the clients at another plain-HTTP endpoint instead, e.g.
//!   `cargo run --features sim --example simulator -- --config examples/sim.toml` in another
//!   terminal (there, `orders` has 100 WCU: add `--wcu 100`);
//! - `--wcu N`: the table's write capacity, for the quota (and the built-in table); default 50;
//! - `--calls N`: the burst size (default 80).
//!
//! Against real AWS, build the config builder from aws-config's `SdkConfig` (which carries the
//! HTTPS client, region and credentials) and call the same `configure_dynamodb`:
//!
//! ```text
//! let sdk_config = aws_config::load_defaults(BehaviorVersion::latest()).await;
//! let config = headroom.configure_dynamodb((&sdk_config).into())?.build();
//! let client = aws_sdk_dynamodb::Client::from_conf(config);
//! ```
//!
//! The SDK crates are built here without their default HTTPS client (no TLS stack to compile
//! for a loopback demo), so the example carries a ~30-line plain-HTTP `HttpClient` over
//! hyper-util ([`loopback_http_client`](tower_headroom::sim::front::loopback_http_client)).

use std::fmt::Display;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ReturnConsumedCapacity, ScalarAttributeType,
};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
    http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use tokio::time::Instant;
use tower_headroom::admission::{Limit, Quota};
use tower_headroom::dynamodb;
use tower_headroom::sim::front::{Server, SimService, loopback_http_client};
use tower_headroom::sim::{DynamoSim, TableConfig, TableStats};
use tower_headroom::smithy::SdkHeadroom;
use tower_headroom::{BoxError, Profile};

const TABLE: &str = "orders";
const PARTITION_KEY: &str = "pk";

/// Fake static credentials: the simulator does not verify signatures.
const ACCESS_KEY: &str = "AKIDEXAMPLE000000000";
const SECRET_KEY: &str = "example-secret-not-a-real-key";

/// Numbers the tours of this process, so every client gets a retry partition of its own (the
/// SDK keeps retry token buckets per partition name, process-wide).
static TOURS: AtomicU64 = AtomicU64::new(0);

/// The tour's settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where the writes go.
    pub backend: Backend,
    /// The table's write capacity units per second.
    pub wcu: u64,
    /// Writes per burst.
    pub calls: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Builtin { store: None },
            wcu: 50,
            calls: 80,
        }
    }
}

/// Where the tour's requests go.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The simulator's front, started in process, forwarding to `store` if given.
    Builtin {
        /// A DynamoDB-compatible store's base URL.
        store: Option<String>,
    },
    /// Another plain-HTTP endpoint (base URL).
    Endpoint(String),
}

/// Reads `--store URL`, `--endpoint URL`, `--wcu N`, `--calls N`.
pub fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut store = None;
    let mut endpoint = None;
    let http_url = |name: &str, url: String| {
        if url.starts_with("http://") {
            Ok(url)
        } else {
            Err(format!(
                "{name} {url:?}: this example speaks plain HTTP (http://host:port)"
            ))
        }
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--store" => store = Some(http_url("--store", value("--store")?)?),
            "--endpoint" => endpoint = Some(http_url("--endpoint", value("--endpoint")?)?),
            "--wcu" => {
                let text = value("--wcu")?;
                options.wcu = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=40_000).contains(n))
                    .ok_or(format!("--wcu {text:?}: a number from 1 to 40000"))?;
            }
            "--calls" => {
                let text = value("--calls")?;
                options.calls = text
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or(format!("--calls {text:?}: a number from 1 to 10000"))?;
            }
            "--help" | "-h" => {
                return Err(String::from(
                    "usage: dynamodb_writes [--store URL | --endpoint URL] [--wcu N] [--calls N]",
                ));
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    options.backend = match (store, endpoint) {
        (Some(_), Some(_)) => {
            return Err(String::from(
                "--store and --endpoint exclude each other: the store is behind the built-in front",
            ));
        }
        (store, None) => Backend::Builtin { store },
        (None, Some(url)) => Backend::Endpoint(url),
    };
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    match tour(options).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One burst, as the caller and the wire saw it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Burst {
    /// Calls made.
    pub calls: usize,
    /// Calls that succeeded.
    pub succeeded: usize,
    /// Calls that failed (after the SDK's retries).
    pub failed: usize,
    /// Requests sent (every attempt).
    pub attempts: u64,
    /// Attempts answered `ProvisionedThroughputExceededException`.
    pub throttled: u64,
    /// Requests that asked for `ConsumedCapacity`.
    pub asked_capacity: u64,
    /// Successful outputs that carried `ConsumedCapacity`.
    pub outputs_with_capacity: usize,
    /// From the first call to the last answer.
    pub elapsed: Duration,
}

/// What the tour measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// The burst through the headroom client.
    pub paced: Burst,
    /// The burst through the plain SDK client.
    pub plain: Burst,
    /// Capacity units reported to a caller that asked for them.
    pub asked_units: Option<f64>,
}

/// Runs the tour; with the built-in simulator it checks its claims against the simulator's
/// own counts too.
pub async fn tour(options: Options) -> Result<Summary, BoxError> {
    let run = TOURS.fetch_add(1, Ordering::Relaxed);
    let (url, front, server) = match &options.backend {
        Backend::Builtin { store } => {
            let table = TableConfig::builder(TABLE)
                .rcu(options.wcu)
                .wcu(options.wcu)
                // No burst credit: the bucket holds one second of capacity, as a table that
                // has been busy has.
                .burst_seconds(0)
                .latency(Duration::from_millis(2))
                .build()?;
            let mut builder =
                SimService::builder().dynamodb(DynamoSim::builder().table(table).build()?);
            builder = match store {
                Some(url) => builder.dynamodb_upstream(url.clone()),
                // Without a store the front must be told the key; a store's table says it.
                None => builder.partition_key(TABLE, PARTITION_KEY),
            };
            let front = builder.build()?;
            let server = Server::bind("127.0.0.1:0".parse()?, front.clone()).await?;
            let where_ = store
                .as_deref()
                .map_or(String::from("no store"), |s| format!("store {s}"));
            println!(
                "simulator on {} ({where_}): table {TABLE}, {} WCU, no burst credit",
                server.url(),
                options.wcu
            );
            (server.url(), Some(front), Some(server))
        }
        Backend::Endpoint(url) => {
            println!("endpoint {url}: table {TABLE}, {} WCU assumed", options.wcu);
            (url.clone(), None, None)
        }
    };
    let needs_table = !matches!(options.backend, Backend::Builtin { store: None });

    let wire = WireLog::default();
    let http = recording(loopback_http_client(), wire.clone());
    let quota: Quota<Arc<str>> = Quota::builder(Limit::per_second().units(1_000).build()?)
        .key_limit(
            // A table's writes are their own quota key (`orders:write`; its reads would be
            // `orders:read`, `dynamodb::TableLimits::table` sets both from RCU and WCU).
            Arc::from(dynamodb::write_key(TABLE)),
            // The table's provisioned WCU, counted over a sliding second: no second of the
            // table's sees more than its capacity, whatever its phase.
            Limit::per_second().units(options.wcu).build()?,
        )
        .build();
    let headroom = SdkHeadroom::builder(Profile::DynamoDb)
        .quota(quota)
        .build()?;
    let paced_client = aws_sdk_dynamodb::Client::from_conf(
        headroom
            .configure_dynamodb(
                sdk_config(&url, http.clone())
                    .retry_partition(RetryPartition::new(format!("dynamodb-writes-{run}-paced"))),
            )?
            .build(),
    );
    let plain_client = aws_sdk_dynamodb::Client::from_conf(
        sdk_config(&url, http)
            .retry_config(RetryConfig::standard())
            .retry_partition(RetryPartition::new(format!("dynamodb-writes-{run}-plain")))
            .build(),
    );
    if needs_table {
        create_table(&plain_client).await?;
    }
    let table_stats = || -> Option<TableStats> {
        front
            .as_ref()
            .and_then(|f| f.dynamodb())
            .and_then(|d| d.stats().table(TABLE).cloned())
    };
    let mut summary = Summary::default();

    println!(
        "\n1. {} PutItem calls at once through the headroom client ({} WCU quota on {TABLE})",
        options.calls, options.wcu
    );
    let before = table_stats();
    let paced = burst(&paced_client, &wire, "paced", options.calls).await;
    print_burst(&paced);
    check(
        paced.succeeded == paced.calls,
        format!("all {} writes succeeded", paced.calls),
    )?;
    check(
        paced.throttled == 0 && paced.attempts == paced.calls as u64,
        "no write was throttled: one attempt each",
    )?;
    // A second's worth at once; every further second's worth a second later.
    let paced_floor =
        Duration::from_secs((options.calls as u64).saturating_sub(1) / options.wcu.max(1));
    check(
        paced.elapsed + Duration::from_millis(50) >= paced_floor,
        format!(
            "no more than {} WCU in any second: {:.2} s for {} writes of 1 WCU",
            options.wcu,
            paced.elapsed.as_secs_f64(),
            paced.calls
        ),
    )?;
    check(
        paced.asked_capacity == paced.attempts,
        "the adapter asked for ConsumedCapacity on every request",
    )?;
    check(
        paced.outputs_with_capacity == 0,
        "and removed it from every output: the caller did not ask",
    )?;
    if let (Some(before), Some(after)) = (&before, table_stats()) {
        let throttled = after.writes.throttled() - before.writes.throttled();
        let wcu = after.consumed_wcu() - before.consumed_wcu();
        println!("   the simulator: {throttled} throttled, {wcu} WCU consumed");
        check(
            throttled == 0 && wcu == paced.calls as f64,
            "the simulator agrees: no throttle, one WCU per write",
        )?;
    }
    summary.paced = paced;

    let asked = paced_client
        .put_item()
        .table_name(TABLE)
        .item(
            PARTITION_KEY,
            AttributeValue::S(String::from("order#asked")),
        )
        .item("status", AttributeValue::S(String::from("placed")))
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await?;
    let units = asked.consumed_capacity().and_then(|c| c.capacity_units());
    println!(
        "   a caller that asks for ReturnConsumedCapacity TOTAL gets {}",
        units.map_or(String::from("nothing"), |u| format!("{u} capacity units"))
    );
    check(units == Some(1.0), "a caller that asks still gets it")?;
    summary.asked_units = units;

    // Let the table's capacity refill so the plain client starts from the same full bucket.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    println!(
        "\n2. the same {} PutItem calls at once through a plain SDK client (standard retry mode)",
        options.calls
    );
    let before = table_stats();
    let plain = burst(&plain_client, &wire, "plain", options.calls).await;
    print_burst(&plain);
    if front.is_some() {
        check(
            plain.throttled > 0,
            format!(
                "the plain client was throttled {} times (ProvisionedThroughputExceeded)",
                plain.throttled
            ),
        )?;
    } else {
        // Another endpoint's table may hold burst credit (DynamoDB keeps up to 300 s of it,
        // as examples/sim.toml does) that absorbs the whole burst.
        println!("   (not checked against another endpoint: its table may hold burst credit)");
    }
    if let (Some(before), Some(after)) = (&before, table_stats()) {
        let throttled = after.writes.throttled() - before.writes.throttled();
        println!("   the simulator: {throttled} throttled");
        check(
            throttled == plain.throttled,
            "the simulator counted the same throttles",
        )?;
    }
    summary.plain = plain;
    println!(
        "\nheadroom: {} of {} written in {} attempts, {} throttled, {:.2} s; plain SDK: {} of {} written in {} attempts, {} throttled, {:.2} s",
        paced.succeeded,
        paced.calls,
        paced.attempts,
        paced.throttled,
        paced.elapsed.as_secs_f64(),
        plain.succeeded,
        plain.calls,
        plain.attempts,
        plain.throttled,
        plain.elapsed.as_secs_f64()
    );
    if let Some(server) = server {
        server.shutdown().await?;
    }
    Ok(summary)
}

/// The SDK config builder every client starts from: endpoint, region, fake credentials and the
/// plain-HTTP client (an `SdkConfig` supplies these against real AWS).
fn sdk_config(endpoint: &str, http: SharedHttpClient) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "example",
        ))
        .http_client(http)
}

/// Creates the table in the store behind the front, unless it exists.
async fn create_table(client: &aws_sdk_dynamodb::Client) -> Result<(), BoxError> {
    let created = client
        .create_table()
        .table_name(TABLE)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(PARTITION_KEY)
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name(PARTITION_KEY)
                .key_type(KeyType::Hash)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {
            println!("created table {TABLE} in the store");
            Ok(())
        }
        Err(error) if error.code() == Some("ResourceInUseException") => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Fires `calls` writes at once and waits for them all.
async fn burst(
    client: &aws_sdk_dynamodb::Client,
    wire: &WireLog,
    label: &str,
    calls: usize,
) -> Burst {
    let before = wire.snapshot();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..calls {
        let client = client.clone();
        let key = format!("order#{label}-{i:04}");
        tasks.spawn(async move {
            client
                .put_item()
                .table_name(TABLE)
                .item(PARTITION_KEY, AttributeValue::S(key))
                .item("status", AttributeValue::S(String::from("placed")))
                .item("total", AttributeValue::N(String::from("42.50")))
                .send()
                .await
        });
    }
    let mut result = Burst {
        calls,
        ..Burst::default()
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(output)) => {
                result.succeeded += 1;
                if output.consumed_capacity().is_some() {
                    result.outputs_with_capacity += 1;
                }
            }
            Ok(Err(_)) | Err(_) => result.failed += 1,
        }
    }
    result.elapsed = started.elapsed();
    let after = wire.snapshot();
    result.attempts = after.0 - before.0;
    result.throttled = after.1 - before.1;
    result.asked_capacity = after.2 - before.2;
    result
}

fn print_burst(b: &Burst) {
    println!(
        "   {} succeeded, {} failed; {} attempts, {} throttled; {:.2} s; outputs with ConsumedCapacity: {}",
        b.succeeded,
        b.failed,
        b.attempts,
        b.throttled,
        b.elapsed.as_secs_f64(),
        b.outputs_with_capacity
    );
}

/// Prints `what` and fails the tour when it is false.
fn check(ok: bool, what: impl Display) -> Result<(), BoxError> {
    if ok {
        println!("   ok: {what}");
        Ok(())
    } else {
        Err(format!("claim failed: {what}").into())
    }
}

/// Counts what went over the wire: requests, throttles, and requests asking for
/// `ConsumedCapacity` (a flag read from the request body; nothing of it is kept or printed).
#[derive(Clone, Debug, Default)]
struct WireLog(Arc<[AtomicU64; 3]>);

impl WireLog {
    fn snapshot(&self) -> (u64, u64, u64) {
        let [a, b, c] = &*self.0;
        (
            a.load(Ordering::SeqCst),
            b.load(Ordering::SeqCst),
            c.load(Ordering::SeqCst),
        )
    }
}

/// Wraps `inner`, counting into `log`.
fn recording(inner: SharedHttpClient, log: WireLog) -> SharedHttpClient {
    #[derive(Debug)]
    struct Recording {
        inner: SharedHttpConnector,
        log: WireLog,
    }
    impl HttpConnector for Recording {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let [attempts, _, asked] = &*self.log.0;
            attempts.fetch_add(1, Ordering::SeqCst);
            let body = request.body().bytes().unwrap_or_default();
            // The adapter asks for INDEXES: the table's own share apart from its indexes'.
            if contains(body, br#""ReturnConsumedCapacity":"INDEXES""#) {
                asked.fetch_add(1, Ordering::SeqCst);
            }
            let response = self.inner.call(request);
            let log = self.log.clone();
            HttpConnectorFuture::new(async move {
                let result = response.await;
                if let Ok(response) = &result
                    && response
                        .headers()
                        .get("x-amzn-errortype")
                        .is_some_and(|t| t.starts_with("ProvisionedThroughputExceeded"))
                {
                    log.0[1].fetch_add(1, Ordering::SeqCst);
                }
                result
            })
        }
    }
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Recording {
            inner: inner.http_connector(settings, components),
            log: log.clone(),
        })
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
