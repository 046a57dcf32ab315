//! The real AWS SDK clients (`aws-sdk-bedrockruntime`, `aws-sdk-dynamodb`) with
//! `RetryConfig::standard()` or `RetryConfig::adaptive()`, or configured by
//! `SdkHeadroom::configure_*` ([`headroom_clients`]), driven through the simulator's wire
//! front in process: the SDK's `HttpClient` hands each signed request to
//! [`SimService`](tower_headroom::sim::front::SimService) as a `tower::Service` call. No
//! socket, so the whole run stays on the paused clock:
//!
//! - the SDK sleeps (backoff, the adaptive rate limiter's delays) with its default tokio
//!   sleep, which follows the paused clock;
//! - the SDK reads the time (signing, the adaptive rate limiter's token bucket) from its
//!   `TimeSource`, set here to a clock that advances with tokio's virtual time from a fixed
//!   epoch, so the adaptive mode sees the virtual seconds pass;
//! - the standard strategy's jitter is `fastrand`'s thread-local generator, seeded before the
//!   run (the runtime has one thread).
//!
//! Each application gets its own client with its own retry partition (its own retry token
//! bucket and, in adaptive mode, its own client rate limiter), as separate services would.
//! The SDK keeps those per partition name in process-wide maps, so every run names its
//! partitions afresh: a run never inherits another run's buckets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_smithy_async::time::TimeSource;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig;
use tower::BoxError;
use tower::util::BoxCloneService;
use tower_headroom::admission::{Priority, Quota, Tenant};
use tower_headroom::fallback::Target;
use tower_headroom::sim::BEDROCK_WINDOW;
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::smithy::{MAX_ADMISSION_WAIT, SdkHeadroom};
use tower_headroom::stack::Profile;

use super::scenarios::{
    App, Backend, Client, RouteTarget, Setup, Strategy, TABLE, Work, bedrock_plan, breaker,
    dynamo_limit, retry_policy,
};

/// Fake static credentials: the front does not verify signatures.
const ACCESS_KEY: &str = "AKIDSHOWDOWN00000000";
const SECRET_KEY: &str = "showdown-fake-secret";
/// The partition key attribute of the scenario's table.
const PARTITION_KEY: &str = "pk";

/// Numbers the runs of this process, for fresh retry partition names.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// The SDK's clock: a fixed epoch plus tokio's (virtual) time since the run started.
#[derive(Debug)]
struct VirtualTime {
    epoch: SystemTime,
    start: tokio::time::Instant,
}

impl TimeSource for VirtualTime {
    fn now(&self) -> SystemTime {
        self.epoch + self.start.elapsed()
    }
}

fn virtual_time() -> VirtualTime {
    VirtualTime {
        // 2023-11-14T22:13:20Z: any fixed instant will do; it only has to repeat.
        epoch: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        start: tokio::time::Instant::now(),
    }
}

/// The SDK clients of every app of `setup`, standard or adaptive retry.
pub fn clients(setup: &Setup, adaptive: bool, seed: u64) -> Result<Vec<Client>, BoxError> {
    // The standard strategy's jitter draws from fastrand's thread-local generator.
    fastrand::seed(seed);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let http = front(setup)?;
    setup
        .apps
        .iter()
        .map(|app| {
            let partition = format!("showdown-{run}-{}", app.name);
            Ok(match &setup.backend {
                Backend::Bedrock(_) => bedrock(app, http.clone(), adaptive, partition),
                Backend::Dynamo(_) => dynamodb(app, http.clone(), adaptive, partition),
            })
        })
        .collect()
}

/// The SDK clients of every app of `setup`, configured by `SdkHeadroom::configure_*` the way
/// the tower-headroom rows configure their stacks: one [`Quota`] per scenario shared by every
/// app's client (one account quota, many clients), the same limits, shares (tenants),
/// priorities and retry policy (its quota window anchored at the simulator's start, jitter
/// seeded per app), a breaker per app and target, and the same fallback targets where the SDK
/// can reach them (see [`reachable`]). Each client keeps its own retry partition, as in the
/// standard rows.
pub fn headroom_clients(setup: &Setup, seed: u64) -> Result<Vec<Client>, BoxError> {
    fastrand::seed(seed);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let http = front(setup)?;
    let partition = |app: &App| format!("showdown-{run}-{}", app.name);
    match &setup.backend {
        Backend::Bedrock(sim) => {
            let (limit, routes) = bedrock_plan(setup.scenario)?;
            let max_wait = MAX_ADMISSION_WAIT;
            let quota: Quota<Arc<str>> = Quota::new(limit);
            setup
                .apps
                .iter()
                .enumerate()
                .map(|(i, app)| {
                    let app_seed = seed.wrapping_add(i as u64);
                    let mut builder = SdkHeadroom::builder(Profile::Bedrock)
                        .retry(retry_policy(
                            Profile::Bedrock,
                            BEDROCK_WINDOW,
                            Duration::from_secs(5),
                            sim.started_at(),
                            app_seed,
                        )?)
                        .breaker(breaker(Profile::Bedrock, app_seed)?)
                        .deadline(max_wait);
                    for route in reachable(&routes, app) {
                        builder = builder.target(
                            Target::new(route.name, Arc::from(route.model))
                                .model(route.model)
                                .region(route.region),
                        );
                    }
                    let mut builder = builder.quota(quota.clone());
                    if setup.scenario == 1 {
                        builder = builder.tenant(Tenant(i as u16));
                    }
                    if app.batch {
                        builder = builder.priority(Priority::Batch);
                    }
                    let headroom = builder.build()?;
                    let config = headroom
                        .configure_bedrock(bedrock_config(app, http.clone(), partition(app)))?
                        .build();
                    Ok(converse_client(
                        app,
                        aws_sdk_bedrockruntime::Client::from_conf(config),
                    ))
                })
                .collect()
        }
        Backend::Dynamo(sim) => {
            let limit = dynamo_limit()?;
            let max_wait = MAX_ADMISSION_WAIT;
            let quota: Quota<Arc<str>> = Quota::new(limit);
            setup
                .apps
                .iter()
                .enumerate()
                .map(|(i, app)| {
                    let app_seed = seed.wrapping_add(i as u64);
                    let headroom = SdkHeadroom::builder(Profile::DynamoDb)
                        .retry(retry_policy(
                            Profile::DynamoDb,
                            Duration::from_secs(1),
                            Duration::from_millis(100),
                            sim.started_at(),
                            app_seed,
                        )?)
                        .breaker(breaker(Profile::DynamoDb, app_seed)?)
                        .deadline(max_wait)
                        .target(
                            Target::new(TABLE, Arc::from(TABLE))
                                .model(TABLE)
                                .region(app.region),
                        )
                        .quota(quota.clone())
                        .build()?;
                    let config = headroom
                        .configure_dynamodb(dynamodb_config(app, http.clone(), partition(app)))?
                        .build();
                    Ok(put_item_client(
                        app,
                        aws_sdk_dynamodb::Client::from_conf(config),
                    ))
                })
                .collect()
        }
    }
}

/// The fallback targets an SDK client of `app` can reach: those in its own region. The
/// adapter moves a Bedrock call to another target by rewriting the model id in the request's
/// path before signing; the region is the client's (its endpoint and its signature's
/// credential scope), so a target in another region is out of reach of this client.
pub fn reachable<'a>(
    routes: &'a [RouteTarget],
    app: &'a App,
) -> impl Iterator<Item = &'a RouteTarget> + 'a {
    routes.iter().filter(move |r| r.region == app.region)
}

/// Why a scenario's SDK + tower-headroom row has fewer fallback targets than the stack's, if
/// it has: printed under the table.
pub fn headroom_note(setup_scenario: u8) -> Option<String> {
    let (_, routes) = bedrock_plan(setup_scenario).ok()?;
    let first = routes.first()?;
    let out: Vec<&str> = routes
        .iter()
        .filter(|r| r.region != first.region)
        .map(|r| r.name)
        .collect();
    (!out.is_empty()).then(|| {
        format!(
            "{} has no {} target: the SDK adapter falls back by rewriting the model id \
             before signing; a client signs for one region ({})",
            Strategy::SdkHeadroom.name(),
            out.join(", "),
            first.region
        )
    })
}

/// The simulator's wire front, as the SDK's HTTP client.
fn front(setup: &Setup) -> Result<SharedHttpClient, BoxError> {
    let front = match &setup.backend {
        Backend::Bedrock(sim) => SimService::builder().bedrock(sim.clone()).build()?,
        Backend::Dynamo(sim) => SimService::builder()
            .dynamodb(sim.clone())
            .partition_key(super::scenarios::TABLE, PARTITION_KEY)
            .build()?,
    };
    Ok(sdk_http_client(front))
}

/// An SDK config builder for `app` with everything but the retry configuration, for either
/// SDK crate (their generated builders have the same methods and no common trait).
macro_rules! sdk_config {
    ($sdk:ident, $app:expr, $http:expr, $partition:expr, $endpoint:literal) => {{
        use $sdk::config::retry::RetryPartition;
        use $sdk::config::{BehaviorVersion, Credentials, Region};
        $sdk::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new($app.region))
            .endpoint_url($endpoint)
            .credentials_provider(Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "showdown",
            ))
            .retry_partition(RetryPartition::new($partition))
            .time_source(virtual_time())
            // In-memory bodies never stall; the monitor would only add timers.
            .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
            .http_client($http)
    }};
}

fn bedrock_config(
    app: &App,
    http: SharedHttpClient,
    partition: String,
) -> aws_sdk_bedrockruntime::config::Builder {
    sdk_config!(
        aws_sdk_bedrockruntime,
        app,
        http,
        partition,
        "http://bedrock.sim"
    )
}

fn bedrock(app: &App, http: SharedHttpClient, adaptive: bool, partition: String) -> Client {
    use aws_sdk_bedrockruntime::config::retry::RetryConfig;

    let config = bedrock_config(app, http, partition)
        .retry_config(if adaptive {
            RetryConfig::adaptive()
        } else {
            RetryConfig::standard()
        })
        .build();
    converse_client(app, aws_sdk_bedrockruntime::Client::from_conf(config))
}

/// `app`'s model calls as `Converse` calls through `client`.
fn converse_client(app: &App, client: aws_sdk_bedrockruntime::Client) -> Client {
    use aws_sdk_bedrockruntime::types::{
        ContentBlock, ConversationRole, InferenceConfiguration, Message,
    };

    let model: Arc<str> = app.model.into();
    BoxCloneService::new(tower::service_fn(move |work: Work| {
        let client = client.clone();
        let model = Arc::clone(&model);
        async move {
            let Work::Model {
                input_tokens,
                max_tokens,
            } = work
            else {
                return Err(BoxError::from("a Bedrock app sends model calls"));
            };
            // The front estimates one token per four characters, as the simulator's callers
            // are charged: the same reservation as the direct strategies' calls.
            let text = "x".repeat(usize::try_from(input_tokens * 4)?);
            let message = Message::builder()
                .role(ConversationRole::User)
                .content(ContentBlock::Text(text))
                .build()?;
            client
                .converse()
                .model_id(&*model)
                .messages(message)
                .inference_config(
                    InferenceConfiguration::builder()
                        .max_tokens(i32::try_from(max_tokens)?)
                        .build(),
                )
                .send()
                .await?;
            Ok(())
        }
    }))
}

fn dynamodb_config(
    app: &App,
    http: SharedHttpClient,
    partition: String,
) -> aws_sdk_dynamodb::config::Builder {
    sdk_config!(
        aws_sdk_dynamodb,
        app,
        http,
        partition,
        "http://dynamodb.sim"
    )
}

fn dynamodb(app: &App, http: SharedHttpClient, adaptive: bool, partition: String) -> Client {
    use aws_sdk_dynamodb::config::retry::RetryConfig;

    let config = dynamodb_config(app, http, partition)
        .retry_config(if adaptive {
            RetryConfig::adaptive()
        } else {
            RetryConfig::standard()
        })
        .build();
    put_item_client(app, aws_sdk_dynamodb::Client::from_conf(config))
}

/// `app`'s writes as `PutItem` calls through `client`.
fn put_item_client(app: &App, client: aws_sdk_dynamodb::Client) -> Client {
    use aws_sdk_dynamodb::types::AttributeValue;

    let table = app.model;
    BoxCloneService::new(tower::service_fn(move |work: Work| {
        let client = client.clone();
        async move {
            let Work::Write { key, payload } = work else {
                return Err(BoxError::from("a DynamoDB app sends writes"));
            };
            // `{ pk, payload }`: the size the direct strategies' calls are charged for.
            client
                .put_item()
                .table_name(table)
                .item(PARTITION_KEY, AttributeValue::S(key.to_string()))
                .item(
                    "payload",
                    AttributeValue::S("x".repeat(usize::try_from(payload)?)),
                )
                .send()
                .await?;
            Ok(())
        }
    }))
}
