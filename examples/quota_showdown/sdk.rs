//! The real AWS SDK clients (`aws-sdk-bedrockruntime`, `aws-sdk-dynamodb`) with
//! `RetryConfig::standard()` or `RetryConfig::adaptive()`, or configured by
//! `SdkHeadroom::configure_*` ([`headroom_clients`]), driven through the simulator's wire
//! front in process: the [`Handle`]'s SDK `HttpClient` hands each signed request to the front
//! as a `tower::Service` call. No socket, so the whole run stays on the paused clock. Like
//! every client set-up (see `clients.rs`), these see the console's numbers, the user's plan
//! and the handle, never the simulator.
//!
//!
//! - the SDK sleeps (backoff, the adaptive rate limiter's delays) with its default tokio
//!   sleep, which follows the paused clock;
//! - the SDK reads the time (signing, the adaptive rate limiter's token bucket) from its
//!   `TimeSource`, set here to the client machines' clock ([`CLIENT_EPOCH`] plus tokio's
//!   virtual time), so the adaptive mode sees the virtual seconds pass;
//! - the standard strategy's jitter is `fastrand`'s thread-local generator, seeded before the
//!   run (the runtime has one thread).
//!
//! Each application gets its own client with its own retry partition (its own retry token
//! bucket and, in adaptive mode, its own client rate limiter), as separate services would.
//! The SDK keeps those per partition name in process-wide maps, so every run names its
//! partitions afresh: a run never inherits another run's buckets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use aws_smithy_async::time::TimeSource;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_runtime_api::client::stalled_stream_protection::StalledStreamProtectionConfig;
use tower::BoxError;
use tower::util::BoxCloneService;
use tower_headroom::admission::{Priority, Quota, Tenant};
use tower_headroom::fallback::Target;
use tower_headroom::smithy::SdkHeadroom;
use tower_headroom::stack::Profile;

use super::clients::{
    App, Client, Clients, Console, Direct, Handle, LimitProbe, PARTITION_KEY, Plan, RouteTarget,
    Work, bedrock_quota, client_clock, dynamodb_quota, names_hot_key, partition_ceiling,
};

/// Fake static credentials: the front does not verify signatures.
const ACCESS_KEY: &str = "AKIDSHOWDOWN00000000";
const SECRET_KEY: &str = "showdown-fake-secret";

/// Numbers the runs of this process, for fresh retry partition names.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// The SDK's clock: the client machines' clock (see [`client_clock`]) from the run's start.
#[derive(Debug)]
struct VirtualTime {
    start: tokio::time::Instant,
}

impl TimeSource for VirtualTime {
    fn now(&self) -> SystemTime {
        client_clock(self.start)
    }
}

fn virtual_time() -> VirtualTime {
    VirtualTime {
        start: tokio::time::Instant::now(),
    }
}

/// Whether the handle is a Bedrock endpoint (else DynamoDB).
fn is_bedrock(handle: &Handle) -> bool {
    matches!(handle.direct, Direct::Bedrock(_))
}

/// The SDK clients of every app of `plan`, standard or adaptive retry.
pub fn clients(
    plan: &Plan,
    handle: &Handle,
    adaptive: bool,
    seed: u64,
) -> Result<Vec<Client>, BoxError> {
    // The standard strategy's jitter draws from fastrand's thread-local generator.
    fastrand::seed(seed);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let http = handle.wire.clone();
    plan.apps
        .iter()
        .map(|app| {
            let partition = format!("showdown-{run}-{}", app.name);
            Ok(if is_bedrock(handle) {
                bedrock(app, http.clone(), adaptive, partition)
            } else {
                dynamodb(app, http.clone(), adaptive, partition)
            })
        })
        .collect()
}

/// The SDK clients of every app of `plan`, configured by `SdkHeadroom::configure_*` the way
/// the tower-headroom rows configure their stacks: one [`Quota`] per scenario shared by every
/// app's client (one account quota, many clients) with the console's limits, the plan's
/// shares (tenants) and priorities, the profile's default retry policy and breaker (jitter
/// seeded per app), and the plan's fallback targets: another model by its id, another region
/// by its region label (the adapter moves the attempt's endpoint and signature there), each
/// target keyed by model and region, since each has its own quota. Each client keeps its own
/// retry partition, as in the standard rows.
pub fn headroom_clients(
    console: &Console,
    plan: &Plan,
    handle: &Handle,
    seed: u64,
) -> Result<Clients, BoxError> {
    fastrand::seed(seed);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let http = handle.wire.clone();
    let partition = |app: &App| format!("showdown-{run}-{}", app.name);
    let primary = plan.routes.first().ok_or("a plan needs a target")?;
    // A target in the primary's region is keyed by its model id; one in another region by
    // model and region (the same model there has a quota of its own).
    let key = |route: &RouteTarget| -> Arc<str> {
        if route.region == primary.region {
            Arc::from(route.model)
        } else {
            Arc::from(format!("{}@{}", route.model, route.region))
        }
    };
    let (profile, quota): (Profile, Quota<Arc<str>>) = if is_bedrock(handle) {
        (Profile::Bedrock, bedrock_quota(console, plan, key)?)
    } else {
        (Profile::DynamoDb, dynamodb_quota(console, plan)?)
    };
    // DynamoDB: the per-key ceiling and its hot-key report in front of every app's client.
    let ceiling = partition_ceiling(seed)?;
    let apps = plan
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let app_seed = seed.wrapping_add(i as u64);
            let mut builder = SdkHeadroom::builder(profile).seed(app_seed);
            for route in &plan.routes {
                let target = Target::new(route.name, key(route))
                    .model(route.model)
                    .region(route.region);
                // A target in another region: its own quota key, the same model id.
                builder = if route.region == primary.region {
                    builder.target(target)
                } else {
                    builder.target_model(target, route.model)
                };
            }
            let mut builder = builder.quota(quota.clone());
            if plan.shares.is_some() {
                builder = builder.tenant(Tenant(i as u16));
            }
            if app.batch {
                builder = builder.priority(Priority::Batch);
            }
            let headroom = builder.build()?;
            Ok(if is_bedrock(handle) {
                let config = headroom
                    .configure_bedrock(bedrock_config(app, http.clone(), partition(app)))?
                    .build();
                converse_client(app, aws_sdk_bedrockruntime::Client::from_conf(config))
            } else {
                // The per-key ceiling inside the adapter: the table's partition key attribute
                // (the user's schema), its values read from each call's typed input.
                let config = headroom
                    .configure_dynamodb_ceiling(
                        dynamodb_config(app, http.clone(), partition(app)),
                        [],
                        Arc::clone(&ceiling),
                        [(app.model, PARTITION_KEY)],
                    )?
                    .build();
                put_item_client(app, aws_sdk_dynamodb::Client::from_conf(config))
            })
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    // DynamoDB's writes are keyed by the table's write key.
    let probe_key = if is_bedrock(handle) {
        key(primary)
    } else {
        Arc::from(tower_headroom::dynamodb::write_key(primary.model))
    };
    let probe: LimitProbe = Arc::new(move |now| quota.stats(&probe_key, now));
    Ok(Clients {
        apps,
        effective_limit: Some(probe),
        hot_key_report: (!is_bedrock(handle))
            .then(|| names_hot_key(ceiling, primary.model, super::scenarios::dynamodb::HOT_KEY)),
    })
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

/// `app`'s writes as `PutItem` calls, and its reads as `GetItem` calls, through `client`.
fn put_item_client(app: &App, client: aws_sdk_dynamodb::Client) -> Client {
    use aws_sdk_dynamodb::types::AttributeValue;

    let table = app.model;
    BoxCloneService::new(tower::service_fn(move |work: Work| {
        let client = client.clone();
        async move {
            let (key, payload) = match work {
                Work::Write { key, payload } => (key, payload),
                Work::Read { key, consistent } => {
                    client
                        .get_item()
                        .table_name(table)
                        .key(PARTITION_KEY, AttributeValue::S(key.to_string()))
                        .consistent_read(consistent)
                        .send()
                        .await?;
                    return Ok(());
                }
                _ => return Err(BoxError::from("a DynamoDB app sends writes and reads")),
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
