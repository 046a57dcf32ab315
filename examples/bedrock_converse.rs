//! The real `aws-sdk-bedrockruntime` client with tower-headroom installed by
//! [`SdkHeadroom::configure_bedrock`]: a token quota per model, a fallback route
//! (Sonnet → Haiku) and retries aligned to Bedrock's quota window, all inside the SDK's own
//! retry loop. Runs with no AWS account:
//!
//! ```text
//! cargo run --features sim,bedrock --example bedrock_converse
//! ```
//!
//! By default the example starts the throttling simulator's HTTP front on a free loopback port
//! with a small built-in configuration and points the SDK client at it (`endpoint_url`), then
//! tours four behaviours, checking each claim it prints (a false claim exits non-zero):
//!
//! 1. a call served normally by Sonnet;
//! 2. its usage settled: the quota reserved `input + maxTokens` before the call and keeps only
//!    what Bedrock counted in its window, so the rest of the minute's tokens are free again;
//! 3. a call falling back to Haiku while the simulator has Sonnet in an overload episode, with
//!    no wait;
//! 4. a throttle ("Too many requests") waited for at the quota window's boundary, not retried
//!    inside the spent window. Bedrock counts in 60-second windows; to keep the run to a few
//!    seconds the simulator's windows are counted from an instant 57 s in the past, so the
//!    first boundary comes 3 s after start.
//!
//! `--endpoint URL` points the client at another plain-HTTP endpoint instead, e.g. a simulator
//! started in another terminal with
//! `cargo run --features sim --example simulator -- --config examples/sim.toml`; the tour then
//! only makes a few calls and prints what each attempt met (it cannot script that server).
//!
//! Against real AWS, build the config builder from aws-config's `SdkConfig` (which carries the
//! HTTPS client, region and credentials) and call the same `configure_bedrock`:
//!
//! ```text
//! let sdk_config = aws_config::load_defaults(BehaviorVersion::latest()).await;
//! let config = headroom.configure_bedrock((&sdk_config).into())?.build();
//! let client = aws_sdk_bedrockruntime::Client::from_conf(config);
//! ```
//!
//! The SDK crates are built here without their default HTTPS client (no TLS stack to compile
//! for a loopback demo), so the example carries a ~30-line plain-HTTP `HttpClient` over
//! hyper-util ([`loopback_http_client`](tower_headroom::sim::front::loopback_http_client)).

use std::fmt::Display;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_bedrockruntime::config::{Credentials, Region};
use aws_sdk_bedrockruntime::operation::converse::ConverseOutput;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message,
};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
    http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use tokio::time::Instant;
use tower_headroom::admission::{Cost, Headroom, Limit, Quota};
use tower_headroom::fallback::Target;
use tower_headroom::retry::{BackoffBuilder, QuotaWindow};
use tower_headroom::sim::front::{Server, SimService, loopback_http_client};
use tower_headroom::sim::{
    BEDROCK_WINDOW, BedrockSim, Episode, ModelConfig, ModelStats, OutputLength,
};
use tower_headroom::smithy::SdkHeadroom;
use tower_headroom::{BoxError, Profile};

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

/// Our client's budget per model: 600 requests and 30,000 tokens a minute (a request per
/// 100 ms, a token per 2 ms).
const CLIENT_RPM: u64 = 600;
const CLIENT_TPM: u64 = 30_000;
/// `maxTokens` of every call: what the quota (and Bedrock) reserve for the output.
const MAX_TOKENS: i32 = 500;
/// Every simulated reply has this many output tokens.
const OUTPUT_TOKENS: u64 = 40;

/// How far the built-in simulator's first quota window has run when the tour starts.
const WINDOW_ELAPSED: Duration = Duration::from_secs(57);
/// When, after the tour starts, the simulator begins overloading Sonnet (until the boundary).
const OVERLOAD_AFTER: Duration = Duration::from_millis(500);
/// How far past the boundary a window-aligned retry may land (the policy's jitter).
const SPREAD: Duration = Duration::from_millis(250);

/// Fake static credentials: the simulator reads only the region from the signature.
const ACCESS_KEY: &str = "AKIDEXAMPLE000000000";
const SECRET_KEY: &str = "example-secret-not-a-real-key";

/// Where the tour's requests go.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The simulator's front, started in process with the built-in configuration.
    Builtin,
    /// Another plain-HTTP endpoint (base URL).
    Endpoint(String),
}

/// Reads `--endpoint URL`.
pub fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Backend, String> {
    let mut backend = Backend::Builtin;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--endpoint" => {
                let url = args.next().ok_or("--endpoint needs a URL")?;
                if !url.starts_with("http://") {
                    return Err(format!(
                        "--endpoint {url:?}: this example speaks plain HTTP (http://host:port)"
                    ));
                }
                backend = Backend::Endpoint(url);
            }
            "--help" | "-h" => {
                return Err(String::from("usage: bedrock_converse [--endpoint URL]"));
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(backend)
}

#[tokio::main]
async fn main() -> ExitCode {
    let backend = match parse_args(std::env::args().skip(1)) {
        Ok(backend) => backend,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    match tour(backend).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What the built-in tour measured.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Attempts per step, as `model status` strings.
    pub steps: Vec<Vec<String>>,
    /// The tokens the quota's window holds for the first call once it settled.
    pub window_spend: u64,
    /// The largest call the quota admits at once after the first call settled.
    pub room_after_settle: u64,
    /// The same had the estimate stood.
    pub room_at_estimate: u64,
    /// From the throttled attempt to the retry that succeeded.
    pub throttle_wait: Duration,
    /// The whole tour.
    pub elapsed: Duration,
}

/// Runs the tour against `backend`; the built-in one checks every claim it prints.
pub async fn tour(backend: Backend) -> Result<Summary, BoxError> {
    match backend {
        Backend::Builtin => builtin_tour().await,
        Backend::Endpoint(url) => {
            endpoint_tour(&url).await?;
            Ok(Summary::default())
        }
    }
}

/// The built-in simulator: Sonnet (overloaded from `OVERLOAD_AFTER` to the first boundary) and
/// Haiku (2 requests a minute: a neighbour takes the last one), windows counted from `start`
/// (window phase zero: the first boundary 60 s after `start`).
fn builtin_sim(start: Instant) -> Result<BedrockSim, BoxError> {
    let model = |id: &str| {
        ModelConfig::builder(id, "us-east-1")
            .ttft(Duration::from_millis(20))
            .per_output_token(Duration::ZERO)
            .output(OutputLength::Fixed {
                tokens: OUTPUT_TOKENS,
            })
            .tpm(100_000)
    };
    let overload_from = WINDOW_ELAPSED + OVERLOAD_AFTER;
    Ok(BedrockSim::builder()
        .start(start)
        .window_phase(Duration::ZERO)
        .seed(7)
        .error_latency(Duration::from_millis(5))
        .model(
            model(SONNET)
                .rpm(100)
                .overload(Episode::new(overload_from, BEDROCK_WINDOW - overload_from))
                .build()?,
        )
        .model(model(HAIKU).rpm(2).build()?)
        .build()?)
}

/// The SDK config builder every client starts from: endpoint, region, fake credentials and the
/// plain-HTTP client (an `SdkConfig` supplies these against real AWS).
fn sdk_config(endpoint: &str, http: SharedHttpClient) -> aws_sdk_bedrockruntime::config::Builder {
    aws_sdk_bedrockruntime::Config::builder()
        .behavior_version_latest()
        .region(Region::from_static("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "example",
        ))
        .http_client(http)
}

/// Our client: a quota per model, the Sonnet → Haiku route, and the Bedrock retry profile with
/// its quota window anchored at `window_anchor` (the default aligns to the wall clock's
/// minutes, as a service counting calendar minutes does).
fn headroom(
    quota: &Quota<Arc<str>>,
    window_anchor: Option<Instant>,
) -> Result<SdkHeadroom, BoxError> {
    let mut retry = Profile::Bedrock.retry();
    if let Some(anchor) = window_anchor {
        retry = retry.backoff(BackoffBuilder::default().quota_window_at(QuotaWindow::new(
            BEDROCK_WINDOW,
            anchor,
            SPREAD,
        )?));
    }
    Ok(SdkHeadroom::builder(Profile::Bedrock)
        .retry(retry.build()?)
        .target(Target::new("sonnet", Arc::<str>::from(SONNET)).model("sonnet"))
        .target(Target::new("haiku", Arc::<str>::from(HAIKU)).model("haiku"))
        .quota(quota.clone())
        .build()?)
}

fn client_quota() -> Result<Quota<Arc<str>>, BoxError> {
    Ok(Quota::new(
        Limit::per_minute()
            .requests(CLIENT_RPM)
            .units(CLIENT_TPM)
            .build()?,
    ))
}

async fn converse(
    client: &aws_sdk_bedrockruntime::Client,
    model: &str,
) -> Result<ConverseOutput, BoxError> {
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(String::from(
            "Summarise this quarter's support tickets in three bullet points, most urgent first, \
             and say which team owns each one.",
        )))
        .build()?;
    Ok(client
        .converse()
        .model_id(model)
        .messages(message)
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(MAX_TOKENS)
                .build(),
        )
        .send()
        .await?)
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

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

async fn builtin_tour() -> Result<Summary, BoxError> {
    let t0 = Instant::now();
    let sim_start = t0.checked_sub(WINDOW_ELAPSED).ok_or(
        "the monotonic clock is younger than a minute (just booted?): cannot date the simulator's window",
    )?;
    let boundary = sim_start + BEDROCK_WINDOW;
    let front = SimService::builder()
        .bedrock(builtin_sim(sim_start)?)
        .build()?;
    let server = Server::bind("127.0.0.1:0".parse()?, front.clone()).await?;
    let url = server.url();
    println!("simulator on {url}: Sonnet 100 RPM, Haiku 2 RPM, replies of {OUTPUT_TOKENS} tokens");
    println!(
        "our client: {CLIENT_RPM} RPM and {CLIENT_TPM} TPM per model, route sonnet -> haiku, maxTokens {MAX_TOKENS}\n"
    );

    let log = AttemptLog::default();
    let quota = client_quota()?;
    let headroom = headroom(&quota, Some(sim_start))?;
    let http = recording(loopback_http_client(), log.clone());
    let client = aws_sdk_bedrockruntime::Client::from_conf(
        headroom.configure_bedrock(sdk_config(&url, http))?.build(),
    );
    let mut summary = Summary::default();

    // 1. Served normally.
    println!("1. a call to Sonnet");
    let output = converse(&client, SONNET).await?;
    let attempts = log.take();
    let usage = output.usage().ok_or("the reply has no usage")?;
    let (input, out) = (usage.input_tokens(), usage.output_tokens());
    println!(
        "   attempts: {}   usage: {input} in + {out} out",
        AttemptLog::describe(&attempts)
    );
    check(
        AttemptLog::statuses(&attempts) == ["sonnet 200"],
        "served by Sonnet in one attempt",
    )?;
    check(
        attempts[0].sent_at < t0 + OVERLOAD_AFTER,
        format!(
            "sent {} after start, before the overload episode",
            ms(attempts[0].sent_at - t0)
        ),
    )?;
    summary.steps.push(AttemptLog::statuses(&attempts));

    // 2. Usage settled.
    println!("\n2. the reservation settles to the real usage");
    let sonnet = model_stats(&front, SONNET)?;
    let real = u64::try_from(input + out)?;
    println!(
        "   Bedrock (simulated) reserved {} tokens at the start and counted {} at the end",
        sonnet.tokens_reserved, sonnet.tokens_settled
    );
    check(
        sonnet.tokens_settled == real,
        format!("Bedrock counted the {real} tokens the reply reports"),
    )?;
    // The quota's window counts the call at what Bedrock counted, not at the reservation: the
    // largest call that may start now is the minute's tokens less the real spend. Found by
    // asking the quota (a binary search over `admit_wait`), as of now.
    let now = Instant::now();
    let key: Arc<str> = Arc::from(SONNET);
    let fits = |cost: u64| quota.admit_wait(&key, Cost::units(cost), now) == Some(Duration::ZERO);
    let (mut lo, mut hi) = (0, CLIENT_TPM + 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) { lo = mid } else { hi = mid }
    }
    let room = lo;
    let estimate = sonnet.tokens_reserved;
    let room_at_estimate = CLIENT_TPM.saturating_sub(estimate);
    println!(
        "   our quota: a call of up to {room} tokens may start now (the window holds the {} spent); at the {estimate}-token estimate, {room_at_estimate}",
        CLIENT_TPM - room
    );
    check(
        room == CLIENT_TPM - real,
        format!("the window holds the {real} tokens spent, not the {estimate}-token estimate"),
    )?;
    summary.window_spend = CLIENT_TPM - room;
    summary.room_after_settle = room;
    summary.room_at_estimate = room_at_estimate;

    // 3. Fallback during an overload episode.
    tokio::time::sleep_until(t0 + OVERLOAD_AFTER + Duration::from_millis(100)).await;
    println!("\n3. the simulator overloads Sonnet; a call to Sonnet");
    let started = Instant::now();
    converse(&client, SONNET).await?;
    let took = started.elapsed();
    let attempts = log.take();
    println!(
        "   attempts: {}   in {}",
        AttemptLog::describe(&attempts),
        ms(took)
    );
    check(
        AttemptLog::statuses(&attempts) == ["sonnet 503", "haiku 200"],
        "Sonnet answered 503 overloaded, Haiku served the call",
    )?;
    check(
        // No backoff: only the SDK's own turnaround between the attempts (the bound is
        // generous, for a loaded machine; a backoff would be hundreds of milliseconds).
        attempts[1].sent_at - attempts[0].done_at < Duration::from_millis(250),
        format!(
            "the move to Haiku waited for nothing ({} between the attempts)",
            ms(attempts[1].sent_at - attempts[0].done_at)
        ),
    )?;
    let sonnet = model_stats(&front, SONNET)?;
    check(
        sonnet.counts.overloaded == 1,
        "the simulator overloaded Sonnet once",
    )?;
    summary.steps.push(AttemptLog::statuses(&attempts));

    // 4. A throttle waited for at the window boundary.
    println!("\n4. another application takes Haiku's last request this minute; a call to Haiku");
    let neighbour = aws_sdk_bedrockruntime::Client::from_conf(
        sdk_config(&url, loopback_http_client())
            .retry_config(aws_sdk_bedrockruntime::config::retry::RetryConfig::disabled())
            .build(),
    );
    converse(&neighbour, HAIKU).await?;
    converse(&client, HAIKU).await?;
    let attempts = log.take();
    let statuses = AttemptLog::statuses(&attempts);
    println!("   attempts: {}", AttemptLog::describe(&attempts));
    check(
        statuses == ["haiku 429", "haiku 200"],
        "throttled once, then served",
    )?;
    let (first, retry) = (&attempts[0], &attempts[1]);
    check(
        first.sent_at < boundary,
        format!(
            "the first attempt went {} before the window boundary",
            ms(boundary - first.sent_at)
        ),
    )?;
    check(
        // Not before the boundary; after it by the spread plus the machine's turnaround (loose
        // on purpose: the point is "not inside the spent window, and not a window later").
        retry.sent_at >= boundary && retry.sent_at <= boundary + SPREAD + Duration::from_secs(1),
        format!(
            "the retry waited {} for the boundary and went {} after it (spread {})",
            ms(retry.sent_at - first.done_at),
            ms(retry.sent_at.saturating_duration_since(boundary)),
            ms(SPREAD)
        ),
    )?;
    let haiku = model_stats(&front, HAIKU)?;
    check(
        haiku.counts.throttled() == 1 && haiku.windows.get(1).map(|w| w.requests) == Some(1),
        "Haiku throttled once in the spent window and served the retry in the next",
    )?;
    summary.throttle_wait = retry.sent_at - first.done_at;
    summary.steps.push(statuses);

    summary.elapsed = t0.elapsed();
    println!("\ntour done in {:.2} s", summary.elapsed.as_secs_f64());
    server.shutdown().await?;
    Ok(summary)
}

/// Against an endpoint this example does not script: a few calls, each attempt printed.
async fn endpoint_tour(url: &str) -> Result<(), BoxError> {
    println!("endpoint {url}: three calls to Sonnet (route sonnet -> haiku)");
    let log = AttemptLog::default();
    let quota = client_quota()?;
    let headroom = headroom(&quota, None)?;
    let http = recording(loopback_http_client(), log.clone());
    let client = aws_sdk_bedrockruntime::Client::from_conf(
        headroom.configure_bedrock(sdk_config(url, http))?.build(),
    );
    for call in 1..=3 {
        let started = Instant::now();
        let result = converse(&client, SONNET).await;
        let attempts = log.take();
        match result {
            Ok(output) => {
                let usage = output.usage().map_or(String::from("no usage"), |u| {
                    format!("{} in + {} out", u.input_tokens(), u.output_tokens())
                });
                println!(
                    "{call}. {}   {usage}   in {}",
                    AttemptLog::describe(&attempts),
                    ms(started.elapsed())
                );
            }
            Err(error) => println!(
                "{call}. {}   failed: {error}",
                AttemptLog::describe(&attempts)
            ),
        }
    }
    Ok(())
}

/// What the simulator saw of `model` in us-east-1 so far.
fn model_stats(front: &SimService, model: &str) -> Result<ModelStats, BoxError> {
    front
        .bedrock()
        .and_then(|sim| sim.stats().model(model, "us-east-1").cloned())
        .ok_or_else(|| format!("the simulator has no statistics for {model}").into())
}

/// One attempt that reached the network: which model, when, and the answer.
#[derive(Clone, Debug)]
struct Attempt {
    model: &'static str,
    sent_at: Instant,
    done_at: Instant,
    status: Option<u16>,
}

/// The attempts our client sent, recorded beneath the headroom wrapper (so after admission
/// and after the fallback rewrote the model).
#[derive(Clone, Debug, Default)]
struct AttemptLog(Arc<Mutex<Vec<Attempt>>>);

impl AttemptLog {
    fn take(&self) -> Vec<Attempt> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn statuses(attempts: &[Attempt]) -> Vec<String> {
        attempts
            .iter()
            .map(|a| match a.status {
                Some(status) => format!("{} {status}", a.model),
                None => format!("{} (no answer)", a.model),
            })
            .collect()
    }

    fn describe(attempts: &[Attempt]) -> String {
        Self::statuses(attempts).join(" -> ")
    }
}

/// Wraps `inner`, logging each attempt.
fn recording(inner: SharedHttpClient, log: AttemptLog) -> SharedHttpClient {
    #[derive(Debug)]
    struct Recording {
        inner: SharedHttpConnector,
        log: AttemptLog,
    }
    impl HttpConnector for Recording {
        fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
            let model = match request.uri() {
                uri if uri.contains("sonnet") => "sonnet",
                uri if uri.contains("haiku") => "haiku",
                _ => "other",
            };
            let sent_at = Instant::now();
            let response = self.inner.call(request);
            let log = self.log.clone();
            HttpConnectorFuture::new(async move {
                let result = response.await;
                log.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Attempt {
                        model,
                        sent_at,
                        done_at: Instant::now(),
                        status: result.as_ref().ok().map(|r| r.status().as_u16()),
                    });
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
