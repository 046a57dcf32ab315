//! The real AWS SDK clients (`aws-sdk-bedrockruntime`, `aws-sdk-dynamodb`) with
//! `RetryConfig::standard()` or `RetryConfig::adaptive()`, driven through the simulator's wire
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
use tower_headroom::sim::front::{SimService, sdk_http_client};

use super::scenarios::{App, Backend, Client, Setup, Work};

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
    let front = match &setup.backend {
        Backend::Bedrock(sim) => SimService::builder().bedrock(sim.clone()).build()?,
        Backend::Dynamo(sim) => SimService::builder()
            .dynamodb(sim.clone())
            .partition_key(super::scenarios::TABLE, PARTITION_KEY)
            .build()?,
    };
    let http = sdk_http_client(front);
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

fn bedrock(app: &App, http: SharedHttpClient, adaptive: bool, partition: String) -> Client {
    use aws_sdk_bedrockruntime::config::retry::{RetryConfig, RetryPartition};
    use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_bedrockruntime::types::{
        ContentBlock, ConversationRole, InferenceConfiguration, Message,
    };

    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(app.region))
        .endpoint_url("http://bedrock.sim")
        .credentials_provider(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "showdown",
        ))
        .retry_config(if adaptive {
            RetryConfig::adaptive()
        } else {
            RetryConfig::standard()
        })
        .retry_partition(RetryPartition::new(partition))
        .time_source(virtual_time())
        // In-memory bodies never stall; the monitor would only add timers.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .http_client(http)
        .build();
    let client = aws_sdk_bedrockruntime::Client::from_conf(config);
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

fn dynamodb(app: &App, http: SharedHttpClient, adaptive: bool, partition: String) -> Client {
    use aws_sdk_dynamodb::config::retry::{RetryConfig, RetryPartition};
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_dynamodb::types::AttributeValue;

    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(app.region))
        .endpoint_url("http://dynamodb.sim")
        .credentials_provider(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "showdown",
        ))
        .retry_config(if adaptive {
            RetryConfig::adaptive()
        } else {
            RetryConfig::standard()
        })
        .retry_partition(RetryPartition::new(partition))
        .time_source(virtual_time())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .http_client(http)
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
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
