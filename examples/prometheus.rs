//! Prometheus, ready to run: a Bedrock client configured by `SdkHeadroom::configure_bedrock`
//! drives six virtual minutes of traffic against the simulator (a neighbour on the same
//! account, us-east-1 down for a minute, us-west-2 as the fallback), and `/metrics` serves
//! what the crate emitted, through `metrics-exporter-prometheus`.
//!
//! ```text
//! cargo run --features sim,bedrock --example prometheus                # serves until Ctrl-C
//! cargo run --features sim,bedrock --example prometheus -- --once      # runs, prints, exits
//! cargo run --features sim,bedrock --example prometheus -- --listen 0.0.0.0:9898
//! ```
//!
//! Then point Prometheus at it (`scrape_configs: [{job_name: headroom, static_configs:
//! [{targets: ["127.0.0.1:9898"]}]}]`) and import `docs/grafana/tower-headroom.json` into
//! Grafana. Wiring it into your own service is three lines: build a
//! `PrometheusBuilder` recorder, install it (`metrics::set_global_recorder`), and serve
//! `handle.render()` — the crate's layers and SDK adapters emit through the `metrics` facade,
//! whenever the recorder was installed.
//!
//! The scenario runs on tokio's paused clock on its own thread (minutes in about a second);
//! the exporter serves on the real clock. `tests/prometheus.rs` runs this example's tour,
//! scrapes the endpoint and checks that every query of the Grafana dashboard names a series
//! the crate emitted.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aws_sdk_bedrockruntime::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use aws_smithy_async::time::TimeSource;
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
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

/// Where to serve, and whether to stop after the scenario.
#[derive(Clone, Debug)]
pub struct Options {
    /// The address `/metrics` is served on (port 0: any free port).
    pub listen: SocketAddr,
    /// Print the summary and exit instead of serving until Ctrl-C.
    pub once: bool,
}

/// What the tour did and scraped.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The `/metrics` URL served.
    pub url: String,
    /// Our calls, and how many completed.
    pub calls: usize,
    /// Our calls that completed.
    pub completed: usize,
    /// The Prometheus text scraped from `url` after the scenario.
    pub scrape: String,
}

/// Parses `--listen ADDR` and `--once`.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
        once: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let text = args.next().ok_or("--listen needs an address")?;
                options.listen = text.parse().map_err(|_| {
                    format!("--listen {text:?} is not an address like 127.0.0.1:9898")
                })?;
            }
            "--once" => options.once = true,
            "--help" | "-h" => return Err("usage: prometheus [--listen ADDR] [--once]".into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

/// Installs the Prometheus recorder as the global `metrics` recorder (once per process):
/// every latency histogram with buckets from 5 ms to 5 minutes.
pub fn install() -> Result<PrometheusHandle, BoxError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ])?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serves `/metrics`, runs the scenario, scrapes the endpoint once.
pub async fn tour(options: Options) -> Result<Summary, BoxError> {
    let handle = install()?;
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let url = format!("http://{}/metrics", listener.local_addr()?);
    let render = handle.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(render.render())),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Six virtual minutes on a paused clock, on a thread of its own.
    let (calls, completed) = std::thread::spawn(|| -> Result<(usize, usize), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(scenario()).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the scenario panicked")??;

    let scrape = scrape(&url).await?;
    Ok(Summary {
        url,
        calls,
        completed,
        scrape,
    })
}

/// GETs `url`'s body as text.
async fn scrape(url: &str) -> Result<String, BoxError> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let response = client.get(url.parse()?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
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

/// The scenario: our client sends a call every 1.2 s for six minutes (about 50,000 of the
/// 60,000 tokens per minute reserved); a neighbour on the same account bursts in the second
/// minute; us-east-1 answers 503 in the fourth. Returns our calls and completions.
async fn scenario() -> Result<(usize, usize), BoxError> {
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
    while at < 6 * MINUTE {
        let request = converse_request(&ours, 400)?;
        tasks.spawn(async move {
            tokio::time::sleep_until(start + at).await;
            Some(request.send().await.is_ok())
        });
        calls += 1;
        at += Duration::from_millis(1_200);
    }
    let mut completed = 0;
    while let Some(done) = tasks.join_next().await {
        completed += usize::from(done? == Some(true));
    }
    Ok((calls, completed))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = parse_args(std::env::args().skip(1))?;
    let once = options.once;
    let summary = tour(options).await?;
    println!(
        "{} of our {} calls completed; {} series on {}",
        summary.completed,
        summary.calls,
        summary
            .scrape
            .lines()
            .filter(|l| l.starts_with("headroom_"))
            .count(),
        summary.url
    );
    for line in summary.scrape.lines().filter(|l| {
        l.starts_with("headroom_attempts_total") || l.starts_with("headroom_fallback_total")
    }) {
        println!("  {line}");
    }
    if once {
        return Ok(());
    }
    println!("serving {} until Ctrl-C", summary.url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
