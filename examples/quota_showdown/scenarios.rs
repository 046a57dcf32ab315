//! The five scenarios, the client strategies and the runner that measures them.
//!
//! Every run builds its own current-thread tokio runtime with a paused clock, a fresh
//! simulator started at the runtime's first instant, and the same arrival schedule (drawn from
//! the seed) for every strategy. Attempts and throttles are counted by the simulator, never
//! by the client, so the SDK's attempts and the stack's are counted the same way.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_headroom::admission::{Cost, Learning, Limit, Priority, Quota, Tenant, Usage};
use tower_headroom::classify::Classify;
use tower_headroom::fallback::Target;
use tower_headroom::retry::{BackoffBuilder, QuotaWindow, RetryPolicy};
use tower_headroom::sim::{
    BEDROCK_WINDOW, BedrockSim, DynamoCall, DynamoReply, DynamoSim, Episode, ModelCall,
    ModelConfig, ModelReply, OutputLength, SimClassifier, TableConfig,
};
use tower_headroom::stack::{Profile, StackBuilder};
use tower_headroom::{BreakerConfig, Outcome};

/// The default seed of every random draw (arrivals, output lengths, jitter).
pub const DEFAULT_SEED: u64 = 42;
/// How long every scenario sends traffic; quota utilisation is measured over this span.
pub const MINUTES: u64 = 10;
const MINUTE: Duration = Duration::from_secs(60);

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
/// The DynamoDB table of scenario 5.
pub const TABLE: &str = "orders";

/// The scenario numbers, in order.
pub const SCENARIOS: [u8; 5] = [1, 2, 3, 4, 5];

/// A client strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// One attempt per request.
    NoRetry,
    /// Up to 5 attempts, a fixed 1 s apart, whatever the error.
    NaiveRetry,
    /// The real AWS SDK client with `RetryConfig::standard()`.
    SdkStandard,
    /// The real AWS SDK client with `RetryConfig::adaptive()`.
    SdkAdaptive,
    /// The crate's stack: retry → fallback (breaker per target) → admission per target.
    Headroom,
    /// The real AWS SDK client configured by `SdkHeadroom::configure_*`: the stack's retry
    /// policy, breakers, fallback targets and shared quota inside the SDK's own retry loop.
    SdkHeadroom,
}

impl Strategy {
    /// Every strategy, in table order.
    pub const ALL: [Strategy; 6] = [
        Strategy::NoRetry,
        Strategy::NaiveRetry,
        Strategy::SdkStandard,
        Strategy::SdkAdaptive,
        Strategy::Headroom,
        Strategy::SdkHeadroom,
    ];

    /// The name printed in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::NoRetry => "no retry",
            Strategy::NaiveRetry => "naive retry",
            Strategy::SdkStandard => "aws sdk standard",
            Strategy::SdkAdaptive => "aws sdk adaptive",
            Strategy::Headroom => "tower-headroom",
            Strategy::SdkHeadroom => "aws sdk + tower-headroom",
        }
    }

    /// Whether the strategy drives the real AWS SDK through the simulator's wire front.
    pub fn is_sdk(self) -> bool {
        matches!(
            self,
            Strategy::SdkStandard | Strategy::SdkAdaptive | Strategy::SdkHeadroom
        )
    }
}

/// A scenario's title, as printed above its table.
pub fn title(scenario: u8) -> &'static str {
    match scenario {
        1 => {
            "three apps, one quota: A/B/C at 75/50/50 req/min (A spikes to 90 in minutes 4-7), 150 RPM"
        }
        2 => {
            "token-heavy batch: 10/min of 15,000 in + 5,000 out beside 200 small calls/min, 200,000 TPM"
        }
        3 => {
            "model overload: the primary model overloaded for minutes 3-5, a secondary model available"
        }
        4 => "regional outage: us-east-1 answers 503 for 60 s (minute 4), us-west-2 healthy",
        5 => "DynamoDB hot key: bursty writes to a 100 WCU table (4 partitions), 30% to one key",
        _ => "unknown scenario",
    }
}

/// What a scenario's quota utilisation counts, for the table footer.
pub fn utilisation_note(scenario: u8) -> &'static str {
    match scenario {
        1 => "requests admitted by the model in the first 10 windows / (150 RPM x 10)",
        2 => "tokens counted against TPM in the first 10 windows / (200,000 TPM x 10)",
        3 => {
            "requests admitted by either model in the first 10 windows / primary quota (100 RPM x 10); demand is 80/min"
        }
        4 => {
            "requests admitted in either region in the first 10 windows / primary quota (100 RPM x 10); demand is 80/min"
        }
        5 => "WCU consumed in the first 600 s / (100 WCU x 600 s)",
        _ => "",
    }
}

/// The quota's rate per second, and its unit, for the plot.
pub fn quota_rate(scenario: u8) -> (f64, &'static str) {
    match scenario {
        1 => (150.0 / 60.0, "requests"),
        2 => (200_000.0 / 60.0, "tokens"),
        3 | 4 => (100.0 / 60.0, "requests"),
        _ => (100.0, "WCU"),
    }
}

/// One row of a scenario's table: exactly the fields of the `--json` output.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The scenario number.
    pub scenario: u8,
    /// The strategy.
    pub strategy: Strategy,
    /// Requests sent by the applications.
    pub requests: u64,
    /// Requests that got an answer.
    pub completed: u64,
    /// Requests that failed (after whatever retries the strategy makes).
    pub failed: u64,
    /// Attempts the simulator saw.
    pub attempts: u64,
    /// Attempts the simulator throttled (429 / ProvisionedThroughputExceeded).
    pub throttled_attempts: u64,
    /// Admitted units over the quota of the scenario's span (see [`utilisation_note`]).
    pub quota_utilization: f64,
    /// Median latency of completed requests, from arrival to answer.
    pub p50_ms: f64,
    /// 99th percentile latency of completed requests.
    pub p99_ms: f64,
    /// Attempts per request.
    pub amplification: f64,
}

/// Per-second series for the plot: admitted units and throttled attempts in each second.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Units admitted by the backend in second `i` (requests, tokens or WCU).
    pub admitted: Vec<f64>,
    /// Attempts throttled in second `i`.
    pub throttled: Vec<u64>,
}

/// One measured (scenario, strategy) run.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The table row.
    pub row: Row,
    /// The time series.
    pub series: Series,
    /// Per application, for the footer.
    pub per_app: Vec<AppResult>,
}

/// What one application of a scenario got.
#[derive(Clone, Debug, PartialEq)]
pub struct AppResult {
    /// The application's label.
    pub name: &'static str,
    /// Requests that got an answer.
    pub completed: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Median latency of its completed requests.
    pub p50_ms: f64,
    /// 99th percentile latency of its completed requests.
    pub p99_ms: f64,
}

/// What one request asks of the backend.
#[derive(Clone, Debug)]
pub enum Work {
    /// A model call: input tokens and `maxTokens`.
    Model { input_tokens: u64, max_tokens: u64 },
    /// A DynamoDB write: partition key and payload bytes.
    Write { key: Arc<str>, payload: u64 },
}

impl Work {
    /// The item size the simulator (and the wire front) charges for a write: attribute names
    /// plus values of `{ pk: S key, payload: S "x" × payload }`.
    pub fn item_bytes(key: &str, payload: u64) -> u64 {
        ("pk".len() + key.len() + "payload".len()) as u64 + payload
    }
}

/// One request of the schedule.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// When it arrives, after the start.
    pub at: Duration,
    /// The application sending it (index into the scenario's apps).
    pub app: usize,
    /// What it asks.
    pub work: Work,
}

/// An application of a scenario.
#[derive(Clone, Debug)]
pub struct App {
    /// Its label.
    pub name: &'static str,
    /// The model and region it calls (its primary target), or the table.
    pub model: &'static str,
    /// The region.
    pub region: &'static str,
    /// Batch work (waits behind interactive calls under tower-headroom).
    pub batch: bool,
}

/// The backend of a scenario.
#[derive(Clone)]
pub enum Backend {
    /// Simulated Bedrock.
    Bedrock(BedrockSim),
    /// Simulated DynamoDB.
    Dynamo(DynamoSim),
}

/// A scenario ready to run: its backend (fresh, started now), apps and schedule.
pub struct Setup {
    /// The scenario number.
    pub scenario: u8,
    /// The simulator.
    pub backend: Backend,
    /// The applications.
    pub apps: Vec<App>,
    /// Every request, in arrival order.
    pub arrivals: Vec<Arrival>,
}

/// A client for one application: takes its work, answers when it completed or failed.
pub type Client = BoxCloneService<Work, (), BoxError>;

/// Evenly spaced arrivals at `per_minute(t)` a minute with ±20% jitter, until `end`.
fn arrivals(
    rng: &mut fastrand::Rng,
    app: usize,
    end: Duration,
    per_minute: impl Fn(Duration) -> u64,
    mut work: impl FnMut(&mut fastrand::Rng) -> Work,
    out: &mut Vec<Arrival>,
) {
    let mut t = Duration::from_secs_f64(rng.f64() * 60.0 / per_minute(Duration::ZERO) as f64);
    while t < end {
        out.push(Arrival {
            at: t,
            app,
            work: work(rng),
        });
        let interval = 60.0 / per_minute(t) as f64;
        t += Duration::from_secs_f64(interval * (0.8 + 0.4 * rng.f64()));
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn model(id: &str, region: &str, rpm: u64, tpm: u64) -> tower_headroom::sim::ModelConfigBuilder {
    ModelConfig::builder(id, region)
        .rpm(rpm)
        .tpm(tpm)
        .max_output_tokens(8_192)
        .output(OutputLength::LogNormal {
            median: 300,
            sigma: 0.6,
        })
        .ttft(Duration::from_millis(400))
        .per_output_token(Duration::from_millis(8))
}

fn chat(rng: &mut fastrand::Rng) -> Work {
    Work::Model {
        input_tokens: rng.u64(500..2_000),
        max_tokens: 1_000,
    }
}

/// Builds scenario `scenario`'s simulator (started now) and schedule from `seed`.
pub fn setup(scenario: u8, seed: u64) -> Result<Setup, BoxError> {
    let end = MINUTE * MINUTES as u32;
    let mut out = Vec::new();
    let rng = |app: u64| fastrand::Rng::with_seed(seed ^ (0x5A17_0000 + app));
    let app = |name, model, region| App {
        name,
        model,
        region,
        batch: false,
    };
    let (backend, apps) = match scenario {
        1 => {
            let sim = BedrockSim::builder()
                .model(model(SONNET, EAST, 150, 10_000_000).build()?)
                .seed(seed)
                .build()?;
            let spike = |t: Duration| {
                if t >= 4 * MINUTE && t < 7 * MINUTE {
                    90
                } else {
                    75
                }
            };
            arrivals(&mut rng(0), 0, end, spike, chat, &mut out);
            arrivals(&mut rng(1), 1, end, |_| 50, chat, &mut out);
            arrivals(&mut rng(2), 2, end, |_| 50, chat, &mut out);
            let apps = vec![
                app("A", SONNET, EAST),
                app("B", SONNET, EAST),
                app("C", SONNET, EAST),
            ];
            (Backend::Bedrock(sim), apps)
        }
        2 => {
            let sim = BedrockSim::builder()
                .model(
                    model(SONNET, EAST, 10_000, 200_000)
                        .output(OutputLength::MaxTokens)
                        .per_output_token(Duration::from_millis(4))
                        .build()?,
                )
                .seed(seed)
                .build()?;
            let small = |rng: &mut fastrand::Rng| Work::Model {
                input_tokens: rng.u64(100..400),
                max_tokens: 200,
            };
            let batch = |_: &mut fastrand::Rng| Work::Model {
                input_tokens: 15_000,
                max_tokens: 5_000,
            };
            arrivals(&mut rng(0), 0, end, |_| 200, small, &mut out);
            arrivals(&mut rng(1), 1, end, |_| 10, batch, &mut out);
            let apps = vec![
                app("interactive", SONNET, EAST),
                App {
                    batch: true,
                    ..app("batch", SONNET, EAST)
                },
            ];
            (Backend::Bedrock(sim), apps)
        }
        3 => {
            let sim = BedrockSim::builder()
                .model(
                    model(SONNET, EAST, 100, 10_000_000)
                        .overload(Episode::new(3 * MINUTE, 2 * MINUTE))
                        .build()?,
                )
                .model(model(HAIKU, EAST, 100, 10_000_000).build()?)
                .seed(seed)
                .build()?;
            arrivals(&mut rng(0), 0, end, |_| 80, chat, &mut out);
            (Backend::Bedrock(sim), vec![app("chat", SONNET, EAST)])
        }
        4 => {
            let sim = BedrockSim::builder()
                .model(
                    model(SONNET, EAST, 100, 10_000_000)
                        .outage(Episode::new(4 * MINUTE, MINUTE))
                        .build()?,
                )
                .model(model(SONNET, WEST, 100, 10_000_000).build()?)
                .seed(seed)
                .build()?;
            arrivals(&mut rng(0), 0, end, |_| 80, chat, &mut out);
            (Backend::Bedrock(sim), vec![app("chat", SONNET, EAST)])
        }
        5 => {
            let sim = DynamoSim::builder()
                .table(
                    TableConfig::builder(TABLE)
                        .rcu(100)
                        .wcu(100)
                        .partitions(4)
                        .build()?,
                )
                .build()?;
            // Items of 2-4 KB (3 or 4 WCU each): per second 12 writes (about 42 WCU), 34 (about
            // 120 WCU) in the first two seconds of every ten; 30% of them to one key, whose
            // partition (a quarter of the table, 25 WCU) they overrun.
            let mut r = rng(0);
            for second in 0..MINUTES * 60 {
                let n = if second % 10 < 2 { 34 } else { 12 };
                for i in 0..n {
                    let at =
                        secs(second) + Duration::from_secs_f64((i as f64 + r.f64()) / n as f64);
                    let key: Arc<str> = if r.f64() < 0.3 {
                        Arc::from("order#hot")
                    } else {
                        Arc::from(format!("order#{}", r.u32(..100_000)))
                    };
                    out.push(Arrival {
                        at,
                        app: 0,
                        work: Work::Write {
                            key,
                            payload: r.u64(2_100..4_000),
                        },
                    });
                }
            }
            (Backend::Dynamo(sim), vec![app("writer", TABLE, EAST)])
        }
        n => return Err(format!("no scenario {n}: choose 1 to 5").into()),
    };
    out.sort_by_key(|a| a.at);
    Ok(Setup {
        scenario,
        backend,
        apps,
        arrivals: out,
    })
}

/// The units a scenario counts as quota use, cumulative, and the throttles, cumulative, at `now`.
fn cumulative(scenario: u8, backend: &Backend, now: Instant) -> (f64, u64) {
    match backend {
        Backend::Bedrock(sim) => {
            let stats = sim.stats_at(now);
            let units = stats
                .models
                .iter()
                .map(|m| {
                    if scenario == 2 {
                        m.tokens_reserved as f64
                    } else {
                        m.counts.admitted as f64
                    }
                })
                .sum();
            let throttled = stats.models.iter().map(|m| m.counts.throttled()).sum();
            (units, throttled)
        }
        Backend::Dynamo(sim) => {
            let stats = sim.stats_at(now);
            let units = stats.tables.iter().map(|t| t.consumed_wcu()).sum();
            let throttled = stats
                .tables
                .iter()
                .map(|t| t.writes.throttled() + t.reads.throttled())
                .sum();
            (units, throttled)
        }
    }
}

/// The simulator's totals after a run: (attempts, throttled attempts, utilisation).
fn totals(scenario: u8, backend: &Backend, series: &Series) -> (u64, u64, f64) {
    match backend {
        Backend::Bedrock(sim) => {
            let stats = sim.stats();
            let attempts = stats.models.iter().map(|m| m.counts.calls()).sum();
            let throttled = stats.models.iter().map(|m| m.counts.throttled()).sum();
            let windows = MINUTES as usize;
            let primary = &stats.models[0];
            let used: u64 = stats
                .models
                .iter()
                .map(|m| {
                    m.windows
                        .iter()
                        .take(windows)
                        .map(|w| if scenario == 2 { w.tokens } else { w.requests })
                        .sum::<u64>()
                })
                .sum();
            let quota = if scenario == 2 {
                primary.tpm
            } else {
                primary.rpm
            } * MINUTES;
            (attempts, throttled, used as f64 / quota as f64)
        }
        Backend::Dynamo(sim) => {
            let stats = sim.stats();
            let table = &stats.tables[0];
            let attempts = table.writes.calls() + table.reads.calls();
            let throttled = table.writes.throttled() + table.reads.throttled();
            let span = (MINUTES * 60) as usize;
            let used: f64 = series.admitted.iter().take(span).sum();
            (attempts, throttled, used / (table.wcu as f64 * span as f64))
        }
    }
}

/// What happened to one request.
#[derive(Clone, Copy, Debug)]
struct Done {
    app: usize,
    latency: Duration,
    ok: bool,
}

/// Runs `scenario` with `strategy` on a fresh paused-clock runtime.
pub fn run(scenario: u8, strategy: Strategy, seed: u64) -> Result<Measured, BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    runtime.block_on(run_async(scenario, strategy, seed))
}

async fn run_async(scenario: u8, strategy: Strategy, seed: u64) -> Result<Measured, BoxError> {
    let setup = setup(scenario, seed)?;
    let start = Instant::now();
    let clients = clients(&setup, strategy, seed)?;

    // Sample the simulator once a second of virtual time, for the plot and the DynamoDB
    // utilisation.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let backend = setup.backend.clone();
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut series = Series::default();
            let mut last = (0.0, 0);
            let mut tick = start;
            loop {
                tick += secs(1);
                tokio::time::sleep_until(tick).await;
                let now = cumulative(scenario, &backend, tick);
                series.admitted.push(now.0 - last.0);
                series.throttled.push(now.1 - last.1);
                last = now;
                if done.load(Ordering::Relaxed) {
                    return series;
                }
            }
        })
    };

    let results = Arc::new(Mutex::new(Vec::with_capacity(setup.arrivals.len())));
    let mut tasks = tokio::task::JoinSet::new();
    for arrival in &setup.arrivals {
        tokio::time::sleep_until(start + arrival.at).await;
        let client = clients[arrival.app].clone();
        let results = Arc::clone(&results);
        let (app, work) = (arrival.app, arrival.work.clone());
        tasks.spawn(async move {
            let began = Instant::now();
            let ok = client.oneshot(work).await.is_ok();
            let latency = began.elapsed();
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Done { app, latency, ok });
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    done.store(true, Ordering::Relaxed);
    let series = sampler.await?;

    let done = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    let (attempts, throttled_attempts, quota_utilization) =
        totals(scenario, &setup.backend, &series);
    let requests = done.len() as u64;
    let completed = done.iter().filter(|d| d.ok).count() as u64;
    let mut latencies: Vec<Duration> = done.iter().filter(|d| d.ok).map(|d| d.latency).collect();
    latencies.sort();
    let per_app = setup
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let mut latencies: Vec<Duration> = done
                .iter()
                .filter(|d| d.app == i && d.ok)
                .map(|d| d.latency)
                .collect();
            latencies.sort();
            AppResult {
                name: app.name,
                completed: latencies.len() as u64,
                failed: done.iter().filter(|d| d.app == i && !d.ok).count() as u64,
                p50_ms: percentile_ms(&latencies, 50),
                p99_ms: percentile_ms(&latencies, 99),
            }
        })
        .collect();
    Ok(Measured {
        row: Row {
            scenario,
            strategy,
            requests,
            completed,
            failed: requests - completed,
            attempts,
            throttled_attempts,
            quota_utilization,
            p50_ms: percentile_ms(&latencies, 50),
            p99_ms: percentile_ms(&latencies, 99),
            amplification: if requests == 0 {
                0.0
            } else {
                attempts as f64 / requests as f64
            },
        },
        series,
        per_app,
    })
}

/// The nearest-rank percentile, in milliseconds (0 when there is nothing to rank).
fn percentile_ms(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1e3
}

/// The clients of every app of `setup` for `strategy`.
fn clients(setup: &Setup, strategy: Strategy, seed: u64) -> Result<Vec<Client>, BoxError> {
    match strategy {
        Strategy::NoRetry => Ok(plain_clients(setup, 1)),
        Strategy::NaiveRetry => Ok(plain_clients(setup, 5)),
        Strategy::SdkStandard | Strategy::SdkAdaptive => {
            super::sdk::clients(setup, strategy == Strategy::SdkAdaptive, seed)
        }
        Strategy::Headroom => headroom_clients(setup, seed),
        Strategy::SdkHeadroom => super::sdk::headroom_clients(setup, seed),
    }
}

/// The request the simulator core sees for `work` sent by `app`.
fn model_call(app: &App, work: Work) -> ModelCall {
    match work {
        Work::Model {
            input_tokens,
            max_tokens,
        } => ModelCall::new(app.model, app.region, input_tokens, max_tokens).caller(app.name),
        // A scenario's apps all send one kind of work.
        Work::Write { .. } => ModelCall::new(app.model, app.region, 0, 0),
    }
}

fn dynamo_call(app: &App, work: Work) -> DynamoCall {
    match work {
        Work::Write { key, payload } => {
            let bytes = Work::item_bytes(&key, payload);
            DynamoCall::write(TABLE, key, bytes).caller(app.name)
        }
        Work::Model { .. } => DynamoCall::write(TABLE, "", 0),
    }
}

/// Calls the simulator directly, up to `attempts` times, 1 s apart, on any error: no retry
/// (`attempts` 1) and the naive baseline (5).
fn plain_clients(setup: &Setup, attempts: u32) -> Vec<Client> {
    setup
        .apps
        .iter()
        .map(|app| {
            let app = app.clone();
            let backend = setup.backend.clone();
            let client = tower::service_fn(move |work: Work| {
                let app = app.clone();
                let backend = backend.clone();
                async move {
                    for attempt in 1..=attempts {
                        let result = match &backend {
                            Backend::Bedrock(sim) => sim
                                .clone()
                                .oneshot(model_call(&app, work.clone()))
                                .await
                                .map(drop),
                            Backend::Dynamo(sim) => sim
                                .clone()
                                .oneshot(dynamo_call(&app, work.clone()))
                                .await
                                .map(drop),
                        };
                        match result {
                            Ok(()) => return Ok(()),
                            Err(e) if attempt == attempts => return Err(BoxError::from(e)),
                            Err(_) => tokio::time::sleep(secs(1)).await,
                        }
                    }
                    Err(BoxError::from("no attempt made"))
                }
            });
            BoxCloneService::new(client)
        })
        .collect()
}

/// The stack's view of the simulator's answers: the fallback router annotates
/// `http::Response`s, so the reply travels as one.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpSimClassifier;

impl<R> Classify<http::Response<R>> for HttpSimClassifier
where
    SimClassifier: Classify<R>,
{
    fn classify(
        &self,
        result: Result<&http::Response<R>, &(dyn std::error::Error + 'static)>,
    ) -> Outcome {
        match result {
            Ok(response) => SimClassifier.classify(Ok(response.body())),
            Err(error) => SimClassifier.classify(Err::<&R, _>(error)),
        }
    }
}

/// A target of the stack: which model in which region (or which table).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    model: Arc<str>,
    region: Arc<str>,
}

fn target(name: &str, model: &str, region: &str) -> Target<Key> {
    Target::new(
        name,
        Key {
            model: model.into(),
            region: region.into(),
        },
    )
    .model(model)
    .region(region)
}

type Boxed = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// The retry policy of the stack for `profile`, with throttle retries aligned to the
/// simulator's windows (not the wall clock's) and seeded jitter, so that runs repeat.
pub fn retry_policy(
    profile: Profile,
    window: Duration,
    spread: Duration,
    anchor: Instant,
    seed: u64,
) -> Result<RetryPolicy, BoxError> {
    let window = QuotaWindow::new(window, anchor, spread)?;
    Ok(profile
        .retry()
        .backoff(BackoffBuilder::default().quota_window_at(window))
        .seed(seed)
        .build()?)
}

pub fn breaker(profile: Profile, seed: u64) -> Result<BreakerConfig, BoxError> {
    Ok(profile.breaker().seed(seed).build()?)
}

/// A fallback target of a Bedrock scenario: its name, model and region.
#[derive(Clone, Copy, Debug)]
pub struct RouteTarget {
    /// The target's name (breaker, metrics).
    pub name: &'static str,
    /// The model id.
    pub model: &'static str,
    /// The region.
    pub region: &'static str,
}

const fn route(name: &'static str, model: &'static str, region: &'static str) -> RouteTarget {
    RouteTarget {
        name,
        model,
        region,
    }
}

/// A Bedrock scenario's quota (one per target, shared by every app) and fallback targets, in
/// preference order: the same for the stack and the SDK adapter.
pub fn bedrock_plan(scenario: u8) -> Result<(Limit, Vec<RouteTarget>), BoxError> {
    Ok(match scenario {
        // Equal guaranteed shares for A, B and C; A borrows what B and C leave.
        1 => (
            Limit::per_minute()
                .requests(150)
                .shares(&[1, 1, 1])
                .build()?,
            vec![route("sonnet", SONNET, EAST)],
        ),
        // A token budget that no fixed window of the service can see exceeded: 170,000 a
        // minute plus 10 s of burst credit (28,333) is under 200,000. Half the credit is
        // kept for interactive calls; batch calls wait behind them.
        2 => (
            Limit::per_minute()
                .requests(10_000)
                .units(170_000)
                .burst(secs(10))
                .interactive_reserve(0.5)
                .build()?,
            vec![route("sonnet", SONNET, EAST)],
        ),
        // The secondary model as the fallback target.
        3 => (
            Limit::per_minute().requests(100).build()?,
            vec![route("sonnet", SONNET, EAST), route("haiku", HAIKU, EAST)],
        ),
        // A second region as the fallback target.
        4 => (
            Limit::per_minute().requests(100).build()?,
            vec![route("east", SONNET, EAST), route("west", SONNET, WEST)],
        ),
        n => return Err(format!("no Bedrock scenario {n}").into()),
    })
}

/// Scenario 5's admission: the table's provisioned WCU with DynamoDB's 300 s of burst credit.
///
/// Learning is off: a hot partition's throttle says nothing about the table's capacity, and
/// lowering the table's budget for it would slow every other key.
pub fn dynamo_limit() -> Result<Limit, BoxError> {
    Ok(Limit::per_second()
        .units(100)
        .burst(secs(300))
        .learning(Learning::OFF)
        .build()?)
}

/// tower-headroom: one stack per application, sharing one quota per target.
fn headroom_clients(setup: &Setup, seed: u64) -> Result<Vec<Client>, BoxError> {
    let sim = match &setup.backend {
        Backend::Bedrock(sim) => sim.clone(),
        Backend::Dynamo(sim) => return dynamo_headroom(setup, sim, seed),
    };
    let anchor = sim.started_at();
    let policy = |app: usize| {
        retry_policy(
            Profile::Bedrock,
            BEDROCK_WINDOW,
            secs(5),
            anchor,
            seed.wrapping_add(app as u64),
        )
    };
    // The simulator's reply, as an `http::Response` for the router.
    let backend = ServiceBuilder::new()
        .map_response(http::Response::new as fn(ModelReply) -> http::Response<ModelReply>)
        .service(sim.clone());
    let rewrite = |call: &mut ModelCall, key: &Key| {
        call.model_id = Arc::clone(&key.model);
        call.region = Arc::clone(&key.region);
    };
    let estimate = |call: &ModelCall| Cost::units(call.input_tokens + call.max_tokens);
    let usage = |reply: &http::Response<ModelReply>| Usage::units(reply.body().quota_tokens);

    let (limit, routes) = bedrock_plan(setup.scenario)?;
    let targets: Vec<Target<Key>> = routes
        .iter()
        .map(|r| target(r.name, r.model, r.region))
        .collect();
    let quota: Quota<Key> = Quota::new(limit);
    setup
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let mut builder = StackBuilder::bedrock(HttpSimClassifier);
            for t in &targets {
                builder = builder.target(t.clone());
            }
            let mut builder = builder
                .retry(policy(i)?)
                .breaker(breaker(Profile::Bedrock, seed.wrapping_add(i as u64))?)
                .admission(quota.clone(), estimate)
                .usage(usage);
            if setup.scenario == 1 {
                builder = builder.tenant(Tenant(i as u16));
            }
            if app.batch {
                builder = builder.priority(Priority::Batch);
            }
            let stack = builder.rewrite(backend.clone(), rewrite)?;
            let app = app.clone();
            let client = tower::service_fn(move |work: Work| -> Boxed {
                let call = model_call(&app, work);
                let stack = stack.clone();
                Box::pin(async move { stack.oneshot(call).await.map(drop) })
            });
            Ok(BoxCloneService::new(client))
        })
        .collect()
}

/// tower-headroom for DynamoDB: the DynamoDB profile (8 attempts, capacity throttles retried
/// after short jittered waits aligned to the next second) and admission at the table's
/// provisioned WCU with DynamoDB's 300 s of burst credit (see [`dynamo_limit`]).
fn dynamo_headroom(setup: &Setup, sim: &DynamoSim, seed: u64) -> Result<Vec<Client>, BoxError> {
    let backend = ServiceBuilder::new()
        .map_response(http::Response::new as fn(DynamoReply) -> http::Response<DynamoReply>)
        .service(sim.clone());
    let quota: Quota<Key> = Quota::new(dynamo_limit()?);
    let estimate = |call: &DynamoCall| Cost::units(call.item_bytes.div_ceil(1024).max(1));
    let usage = |reply: &http::Response<DynamoReply>| {
        Usage::units(reply.body().consumed_capacity.ceil() as u64)
    };
    setup
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let stack = StackBuilder::dynamodb(HttpSimClassifier)
                .target(target("orders", TABLE, EAST))
                .retry(retry_policy(
                    Profile::DynamoDb,
                    secs(1),
                    Duration::from_millis(100),
                    sim.started_at(),
                    seed.wrapping_add(i as u64),
                )?)
                .breaker(breaker(Profile::DynamoDb, seed.wrapping_add(i as u64))?)
                .admission(quota.clone(), estimate)
                .usage(usage)
                .services(vec![backend.clone()])?;
            let app = app.clone();
            let client = tower::service_fn(move |work: Work| -> Boxed {
                let call = dynamo_call(&app, work);
                let stack = stack.clone();
                Box::pin(async move { stack.oneshot(call).await.map(drop) })
            });
            Ok(BoxCloneService::new(client))
        })
        .collect()
}
