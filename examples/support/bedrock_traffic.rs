//! The traffic both observability examples show (`prometheus`, `cloudwatch_emf`): a Bedrock
//! client configured by `SdkHeadroom::configure_bedrock`, as a user configures it (the
//! console's tokens per minute per model and region, the Bedrock profile's defaults), sends a
//! call every 1.2 s for six minutes through the simulator's front, in process; a neighbour on
//! the same account bursts in the second minute; us-east-1 answers 503 in the fourth and
//! us-west-2 serves as the fallback. On tokio's paused clock, on a thread of its own: six
//! minutes in about a second.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_bedrockruntime::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use aws_smithy_async::time::TimeSource;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use tower_headroom::admission::Quota;
use tower_headroom::fallback::Target;
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{BedrockSim, Episode, ModelConfig, OutputLength};
use tower_headroom::smithy::SdkHeadroom;
use tower_headroom::{BoxError, Profile};

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
/// The console's tokens per minute for the model, in each region.
const TPM: u64 = 60_000;
const MINUTE: Duration = Duration::from_secs(60);
/// How long the traffic runs.
pub const SPAN: Duration = Duration::from_secs(6 * 60);

/// What the traffic did.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    /// Our calls.
    pub calls: usize,
    /// Our calls that completed.
    pub completed: usize,
}

/// Runs the traffic on a paused clock on a new thread; `each_minute` is called at every
/// virtual minute (1 to 6) on that thread, as a periodic exporter flush would be.
pub fn run_virtual(each_minute: impl FnMut(u32) + Send + 'static) -> Result<Done, BoxError> {
    std::thread::spawn(move || -> Result<Done, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| e.to_string())?;
        runtime
            .block_on(scenario(each_minute))
            .map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| BoxError::from("the traffic panicked"))?
    .map_err(BoxError::from)
}

/// The SDK's clock: the wall clock at the start plus the virtual time since.
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

fn sdk_config(http: SharedHttpClient, partition: &str) -> aws_sdk_bedrockruntime::config::Builder {
    aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static(EAST))
        .endpoint_url("http://bedrock.sim")
        // The front does not check signatures.
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "example",
            None,
            None,
            "demo",
        ))
        .retry_partition(RetryPartition::new(partition.to_owned()))
        .time_source(VirtualTime {
            epoch: SystemTime::now(),
            start: tokio::time::Instant::now(),
        })
        .http_client(http)
}

fn converse_request(
    client: &aws_sdk_bedrockruntime::Client,
    input_tokens: usize,
) -> Result<aws_sdk_bedrockruntime::operation::converse::builders::ConverseFluentBuilder, BoxError>
{
    // The simulator counts a token per four characters.
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("x".repeat(input_tokens * 4)))
        .build()?;
    Ok(client
        .converse()
        .model_id(SONNET)
        .messages(message)
        .inference_config(InferenceConfiguration::builder().max_tokens(300).build()))
}

/// Our client sends a call every 1.2 s (about 50,000 of the 60,000 tokens per minute
/// reserved); the neighbour sends 30 calls of 1,500 tokens at once, a minute in.
async fn scenario(mut each_minute: impl FnMut(u32) + Send + 'static) -> Result<Done, BoxError> {
    let model = |region: &str| {
        ModelConfig::builder(SONNET, region)
            .tpm(TPM)
            .ttft(Duration::from_millis(300))
            .per_output_token(Duration::from_millis(10))
            .output(OutputLength::Fixed { tokens: 120 })
    };
    let sim = BedrockSim::builder()
        .model(
            model(EAST)
                .outage(Episode::new(3 * MINUTE, MINUTE))
                .build()?,
        )
        .model(model(WEST).build()?)
        .seed(7)
        .build()?;
    let http = sdk_http_client(SimService::builder().bedrock(sim).build()?);

    // As a user configures it: the console's TPM per model and region, the Bedrock profile's
    // defaults for everything else, us-west-2 as the fallback target.
    let limit = || Profile::Bedrock.limit().units(TPM).build();
    let west_key: Arc<str> = Arc::from(format!("{SONNET}@{WEST}"));
    let quota = Quota::builder(limit()?)
        .key_limit(Arc::clone(&west_key), limit()?)
        .build();
    let headroom = SdkHeadroom::builder(Profile::Bedrock)
        .target(
            Target::new("east", Arc::from(SONNET))
                .model("claude-3-5-sonnet")
                .region(EAST),
        )
        .target_model(
            Target::new("west", west_key)
                .model("claude-3-5-sonnet")
                .region(WEST),
            SONNET,
        )
        .quota(quota)
        .seed(7)
        .build()?;
    let ours = aws_sdk_bedrockruntime::Client::from_conf(
        headroom
            .configure_bedrock(sdk_config(http.clone(), "ours"))?
            .build(),
    );
    let neighbour = aws_sdk_bedrockruntime::Client::from_conf(
        sdk_config(http, "neighbour")
            .retry_config(RetryConfig::standard())
            .build(),
    );

    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // The neighbour: 30 calls of 1,500 tokens at once, one minute in.
    for _ in 0..30 {
        let request = converse_request(&neighbour, 1_500)?;
        tasks.spawn(async move {
            tokio::time::sleep_until(start + MINUTE).await;
            let _ = request.send().await;
            None
        });
    }
    let mut calls = 0;
    let mut at = Duration::ZERO;
    while at < SPAN {
        let request = converse_request(&ours, 400)?;
        tasks.spawn(async move {
            tokio::time::sleep_until(start + at).await;
            Some(request.send().await.is_ok())
        });
        calls += 1;
        at += Duration::from_millis(1_200);
    }
    let ticks = tokio::spawn(async move {
        let mut minutes = 0;
        while minutes < (SPAN.as_secs() / 60) as u32 {
            minutes += 1;
            tokio::time::sleep_until(start + MINUTE * minutes).await;
            each_minute(minutes);
        }
    });
    let mut completed = 0;
    while let Some(done) = tasks.join_next().await {
        completed += usize::from(done? == Some(true));
    }
    ticks.await?;
    Ok(Done { calls, completed })
}
