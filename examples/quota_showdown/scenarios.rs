//! The six scenarios, the client strategies and the runner that measures them.
//!
//! Every run builds its own current-thread tokio runtime with a paused clock, a fresh
//! simulator started at the runtime's first instant, and the same arrival schedule (drawn from
//! the seed) for every strategy. Attempts and throttles are counted by the simulator, never
//! by the client, so the SDK's attempts and the stack's are counted the same way.
//!
//! The simulator's quota windows fall where its seed puts them (its window phase), not at the
//! start of the traffic. The clients are built in `clients.rs` from the scenario's
//! [`Console`] and [`Plan`] and a [`Handle`] to send calls through (see [`build_clients`]):
//! they never see the simulator. Only the measurement here reads it.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt};
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{
    BEDROCK_WINDOW, BedrockSim, DynamoSim, Episode, ModelCall, ModelConfig, OutputLength,
    TableConfig,
};

pub use super::clients::{
    App, Clients, Console, Direct, Handle, ModelQuota, PARTITION_KEY, Plan, TableQuota, Work, route,
};

/// The default seed of every random draw (arrivals, output lengths, jitter, the simulator's
/// window phase).
pub const DEFAULT_SEED: u64 = 42;
const MINUTE: Duration = Duration::from_secs(60);

const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";
/// The DynamoDB table of scenario 5.
pub const TABLE: &str = "orders";
/// The caller label of scenario 6's unmanaged neighbour.
pub const NEIGHBOUR: &str = "neighbour";
/// Scenario 6's neighbour sends from this minute (inclusive) to [`NEIGHBOUR_UNTIL`].
pub const NEIGHBOUR_FROM: u64 = 3;
/// Scenario 6's neighbour stops sending at this minute.
pub const NEIGHBOUR_UNTIL: u64 = 8;
/// The simulator's RPM where the service enforces none (scenario 6): never reached. The
/// console shows no RPM quota for it.
const NO_RPM: u64 = u64::MAX;

/// The scenario numbers, in order.
pub const SCENARIOS: [u8; 6] = [1, 2, 3, 4, 5, 6];

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

    /// Whether the strategy has admission (a quota of its own).
    pub fn has_admission(self) -> bool {
        matches!(self, Strategy::Headroom | Strategy::SdkHeadroom)
    }
}

/// A scenario's short name, as printed in JSON.
pub fn name(scenario: u8) -> &'static str {
    match scenario {
        1 => "three-apps",
        2 => "token-heavy",
        3 => "overload",
        4 => "outage",
        5 => "hot-key",
        6 => "shared-account",
        _ => "unknown",
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
        6 => {
            "shared account: chat 100/min + batch 6/min on a 200,000 TPM model (no RPM), an unmanaged neighbour in minutes 3-8"
        }
        _ => "unknown scenario",
    }
}

/// How many minutes a scenario sends traffic.
pub fn minutes(scenario: u8) -> u64 {
    if scenario == 6 { 12 } else { 10 }
}

/// What a scenario's quota utilisation counts, for the table footer; `windows` is the number
/// of whole provider windows inside the traffic span (Bedrock scenarios).
pub fn utilisation_note(scenario: u8, windows: usize) -> String {
    let span = minutes(scenario);
    let whole = format!(
        "the {windows} provider windows wholly inside the {span} minutes of traffic (the \
         partial first and last windows excluded)"
    );
    match scenario {
        1 => format!("requests admitted by the model in {whole} / (150 RPM x {windows})"),
        2 => format!("tokens counted against TPM in {whole} / (200,000 TPM x {windows})"),
        3 => format!(
            "requests admitted by either model in {whole} / primary quota (100 RPM x {windows}); demand is 80/min"
        ),
        4 => format!(
            "requests admitted in either region in {whole} / primary quota (100 RPM x {windows}); demand is 80/min"
        ),
        5 => "WCU consumed in the first 600 s / (100 WCU x 600 s)".into(),
        6 => format!(
            "tokens counted against TPM for all callers, the neighbour included, in {whole} / (200,000 TPM x {windows})"
        ),
        _ => String::new(),
    }
}

/// The quota's rate per second, and its unit, for the plot.
pub fn quota_rate(scenario: u8) -> (f64, &'static str) {
    match scenario {
        1 => (150.0 / 60.0, "requests"),
        2 | 6 => (200_000.0 / 60.0, "tokens"),
        3 | 4 => (100.0 / 60.0, "requests"),
        _ => (100.0, "WCU"),
    }
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

/// Scenario 6's neighbour, as the simulator and its own loop counted it.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbour {
    /// Calls it made (each up to 3 attempts).
    pub calls: u64,
    /// Its attempts the simulator throttled.
    pub throttled: u64,
    /// Its calls throttled at least once (whether a retry then got through or not).
    pub throttled_calls: u64,
    /// Its calls that failed after their attempts.
    pub failed: u64,
    /// Tokens its admitted calls settled to.
    pub settled_tokens: u64,
}

/// Scenario 6's extra columns.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedAccount {
    /// The client's own effective (learned) token limit of the model, sampled at the end of
    /// every minute of traffic; empty for strategies without admission (`None`: no state yet).
    pub effective_limit_per_minute: Vec<Option<u64>>,
    /// The neighbour.
    pub neighbour: Neighbour,
    /// The quota over the whole provider windows of the traffic span, less the neighbour's
    /// settled tokens: what was left for our apps.
    pub remainder_tokens: i64,
    /// Our settled tokens per completed call.
    pub our_mean_settled_cost: f64,
}

/// One row of a scenario's table: exactly the fields of the `--json` output.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The scenario number.
    pub scenario: u8,
    /// The scenario's short name.
    pub name: &'static str,
    /// The strategy.
    pub strategy: Strategy,
    /// Requests sent by the applications.
    pub requests: u64,
    /// Requests that got an answer.
    pub completed: u64,
    /// Requests that failed (after whatever retries the strategy makes).
    pub failed: u64,
    /// Attempts the simulator saw from our apps (scenario 6: not the neighbour's).
    pub attempts: u64,
    /// Our attempts the simulator throttled (429 / ProvisionedThroughputExceeded).
    pub throttled_attempts: u64,
    /// Admitted units over the quota of the scenario's span (see [`utilisation_note`]).
    pub quota_utilization: f64,
    /// Median latency of completed requests, from arrival to answer.
    pub p50_ms: f64,
    /// 99th percentile latency of completed requests.
    pub p99_ms: f64,
    /// Attempts per request.
    pub amplification: f64,
    /// Per application.
    pub apps: Vec<AppResult>,
    /// Scenario 6 only.
    pub shared: Option<SharedAccount>,
}

/// Per-second series for the plot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Units admitted by the backend in second `i` (requests, tokens or WCU; scenario 6: our
    /// tokens settled in second `i`).
    pub admitted: Vec<f64>,
    /// Our attempts throttled in second `i`.
    pub throttled: Vec<u64>,
    /// Scenario 6: the neighbour's tokens settled in second `i`.
    pub neighbour: Vec<f64>,
}

/// One measured (scenario, strategy) run.
#[derive(Clone, Debug)]
pub struct Measured {
    /// The table row.
    pub row: Row,
    /// The time series.
    pub series: Series,
    /// Bedrock: the whole provider windows inside the traffic span (for the footer).
    pub whole_windows: usize,
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

/// The backend of a scenario.
#[derive(Clone)]
pub enum Backend {
    /// Simulated Bedrock.
    Bedrock(BedrockSim),
    /// Simulated DynamoDB.
    Dynamo(DynamoSim),
}

impl Backend {
    /// How many times the simulator's set-up or state has been read (`tests/showdown.rs`
    /// checks that building clients reads nothing).
    #[allow(dead_code)]
    pub fn inspections(&self) -> u64 {
        match self {
            Backend::Bedrock(sim) => sim.inspections(),
            Backend::Dynamo(sim) => sim.inspections(),
        }
    }
}

/// A scenario ready to run: its backend (fresh, started now), what the user sees and
/// decides, and the schedules.
pub struct Setup {
    /// The simulator.
    pub backend: Backend,
    /// The console's quotas.
    pub console: Console,
    /// The user's apps, fallback order and shares.
    pub plan: Plan,
    /// Every request of our apps, in arrival order.
    pub arrivals: Vec<Arrival>,
    /// Scenario 6: the neighbour's calls, in arrival order.
    pub neighbour: Vec<Arrival>,
}

/// Evenly spaced arrivals at `per_minute(t)` a minute with ±20% jitter, from `from` until
/// `end`.
fn arrivals(
    rng: &mut fastrand::Rng,
    app: usize,
    (from, end): (Duration, Duration),
    per_minute: impl Fn(Duration) -> u64,
    mut work: impl FnMut(&mut fastrand::Rng) -> Work,
    out: &mut Vec<Arrival>,
) {
    let mut t = from + Duration::from_secs_f64(rng.f64() * 60.0 / per_minute(from) as f64);
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

/// What the console shows for `models`: their TPM, and their RPM unless it is [`NO_RPM`].
fn console_of(models: &[ModelConfig]) -> Console {
    Console {
        models: models
            .iter()
            .map(|m| ModelQuota {
                model: m.model_id.clone(),
                region: m.region.clone(),
                tpm: m.tpm,
                rpm: (m.rpm != NO_RPM).then_some(m.rpm),
            })
            .collect(),
        tables: Vec::new(),
    }
}

/// A Bedrock simulator with `models`, and its console.
fn bedrock(models: Vec<ModelConfig>, seed: u64) -> Result<(Backend, Console), BoxError> {
    let console = console_of(&models);
    let sim = BedrockSim::builder().models(models).seed(seed).build()?;
    Ok((Backend::Bedrock(sim), console))
}

/// Builds scenario `scenario`'s simulator (started now), console, plan and schedules from
/// `seed`.
pub fn setup(scenario: u8, seed: u64) -> Result<Setup, BoxError> {
    let span = (Duration::ZERO, MINUTE * minutes(scenario) as u32);
    let mut out = Vec::new();
    let mut neighbour = Vec::new();
    let rng = |app: u64| fastrand::Rng::with_seed(seed ^ (0x5A17_0000 + app));
    let app = |name, model, region| App {
        name,
        model,
        region,
        batch: false,
    };
    let plan = |apps, routes| Plan {
        apps,
        routes,
        shares: None,
    };
    let (backend, console, plan) = match scenario {
        1 => {
            let (backend, console) =
                bedrock(vec![model(SONNET, EAST, 150, 10_000_000).build()?], seed)?;
            let spike = |t: Duration| {
                if t >= 4 * MINUTE && t < 7 * MINUTE {
                    90
                } else {
                    75
                }
            };
            arrivals(&mut rng(0), 0, span, spike, chat, &mut out);
            arrivals(&mut rng(1), 1, span, |_| 50, chat, &mut out);
            arrivals(&mut rng(2), 2, span, |_| 50, chat, &mut out);
            let apps = vec![
                app("A", SONNET, EAST),
                app("B", SONNET, EAST),
                app("C", SONNET, EAST),
            ];
            // Equal guaranteed shares for A, B and C: the user's intent.
            let plan = Plan {
                shares: Some(vec![1, 1, 1]),
                ..plan(apps, vec![route("sonnet", SONNET, EAST)])
            };
            (backend, console, plan)
        }
        2 => {
            let (backend, console) = bedrock(
                vec![
                    model(SONNET, EAST, 10_000, 200_000)
                        .output(OutputLength::MaxTokens)
                        .per_output_token(Duration::from_millis(4))
                        .build()?,
                ],
                seed,
            )?;
            let small = |rng: &mut fastrand::Rng| Work::Model {
                input_tokens: rng.u64(100..400),
                max_tokens: 200,
            };
            let batch = |_: &mut fastrand::Rng| Work::Model {
                input_tokens: 15_000,
                max_tokens: 5_000,
            };
            arrivals(&mut rng(0), 0, span, |_| 200, small, &mut out);
            arrivals(&mut rng(1), 1, span, |_| 10, batch, &mut out);
            let apps = vec![
                app("interactive", SONNET, EAST),
                App {
                    batch: true,
                    ..app("batch", SONNET, EAST)
                },
            ];
            (
                backend,
                console,
                plan(apps, vec![route("sonnet", SONNET, EAST)]),
            )
        }
        3 => {
            let (backend, console) = bedrock(
                vec![
                    model(SONNET, EAST, 100, 10_000_000)
                        .overload(Episode::new(3 * MINUTE, 2 * MINUTE))
                        .build()?,
                    model(HAIKU, EAST, 100, 10_000_000).build()?,
                ],
                seed,
            )?;
            arrivals(&mut rng(0), 0, span, |_| 80, chat, &mut out);
            // The secondary model as the fallback target.
            let routes = vec![route("sonnet", SONNET, EAST), route("haiku", HAIKU, EAST)];
            (
                backend,
                console,
                plan(vec![app("chat", SONNET, EAST)], routes),
            )
        }
        4 => {
            let (backend, console) = bedrock(
                vec![
                    model(SONNET, EAST, 100, 10_000_000)
                        .outage(Episode::new(4 * MINUTE, MINUTE))
                        .build()?,
                    model(SONNET, WEST, 100, 10_000_000).build()?,
                ],
                seed,
            )?;
            arrivals(&mut rng(0), 0, span, |_| 80, chat, &mut out);
            // A second region as the fallback target.
            let routes = vec![route("east", SONNET, EAST), route("west", SONNET, WEST)];
            (
                backend,
                console,
                plan(vec![app("chat", SONNET, EAST)], routes),
            )
        }
        5 => {
            let table = TableConfig::builder(TABLE)
                .rcu(100)
                .wcu(100)
                .partitions(4)
                .build()?;
            let console = Console {
                models: Vec::new(),
                tables: vec![TableQuota {
                    table: table.name.clone(),
                    rcu: table.rcu,
                    wcu: table.wcu,
                }],
            };
            let sim = DynamoSim::builder().table(table).build()?;
            // Items of 2-4 KB (3 or 4 WCU each): per second 12 writes (about 42 WCU), 34 (about
            // 120 WCU) in the first two seconds of every ten; 30% of them to one key, whose
            // partition (a quarter of the table, 25 WCU) they overrun.
            let mut r = rng(0);
            for second in 0..minutes(scenario) * 60 {
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
            (
                Backend::Dynamo(sim),
                console,
                plan(
                    vec![app("writer", TABLE, EAST)],
                    vec![route(TABLE, TABLE, EAST)],
                ),
            )
        }
        6 => {
            // One Claude-like model: 200,000 TPM, no RPM enforced, outputs log-normal with a
            // median of 300 tokens (well under the max_tokens the calls reserve).
            let (backend, console) =
                bedrock(vec![model(SONNET, EAST, NO_RPM, 200_000).build()?], seed)?;
            // Our apps: about 161,000 settled tokens a minute of chat and 62,000 of batch,
            // 1.1 times the quota (reserved at max_tokens: 225,000 + 72,000).
            arrivals(&mut rng(0), 0, span, |_| 100, chat, &mut out);
            let batch = |_: &mut fastrand::Rng| Work::Model {
                input_tokens: 10_000,
                max_tokens: 2_000,
            };
            arrivals(&mut rng(1), 1, span, |_| 6, batch, &mut out);
            // The neighbour: 22 calls a minute of 2,000-3,000 input tokens, about 63,000
            // settled tokens a minute (31% of the quota) when it is not throttled.
            let theirs = (
                MINUTE * NEIGHBOUR_FROM as u32,
                MINUTE * NEIGHBOUR_UNTIL as u32,
            );
            let call = |rng: &mut fastrand::Rng| Work::Model {
                input_tokens: rng.u64(2_000..3_000),
                max_tokens: 1_000,
            };
            arrivals(&mut rng(2), 0, theirs, |_| 22, call, &mut neighbour);
            let apps = vec![
                app("chat", SONNET, EAST),
                App {
                    batch: true,
                    ..app("batch", SONNET, EAST)
                },
            ];
            (
                backend,
                console,
                plan(apps, vec![route("sonnet", SONNET, EAST)]),
            )
        }
        n => return Err(format!("no scenario {n}: choose 1 to 6").into()),
    };
    out.sort_by_key(|a| a.at);
    Ok(Setup {
        backend,
        console,
        plan,
        arrivals: out,
        neighbour,
    })
}

/// The handle a client gets: the simulator as a boxed `tower` service (nothing to inspect
/// through it) and its wire front as the SDK's HTTP client.
pub fn handle(setup: &Setup) -> Result<Handle, BoxError> {
    Ok(match &setup.backend {
        Backend::Bedrock(sim) => Handle {
            direct: Direct::Bedrock(BoxCloneSyncService::new(sim.clone())),
            wire: sdk_http_client(SimService::builder().bedrock(sim.clone()).build()?),
        },
        Backend::Dynamo(sim) => Handle {
            direct: Direct::Dynamo(BoxCloneSyncService::new(sim.clone())),
            wire: sdk_http_client(
                SimService::builder()
                    .dynamodb(sim.clone())
                    .partition_key(TABLE, PARTITION_KEY)
                    .build()?,
            ),
        },
    })
}

/// `strategy`'s clients for `setup`, built from its console, plan and handle only.
pub fn build_clients(
    setup: &Setup,
    handle: &Handle,
    strategy: Strategy,
    seed: u64,
) -> Result<Clients, BoxError> {
    super::clients::build(strategy, &setup.console, &setup.plan, handle, seed)
}

/// The windows of `sim` that lie wholly inside `[start, start + span)`: whole 60 s windows,
/// so a partial window 0 is left out, and so is the window running at the end of the span.
fn whole_windows(sim: &BedrockSim, span: Duration) -> Range<usize> {
    let end = sim.started_at() + span;
    let first = usize::from(!sim.window_phase().is_zero());
    let mut last = first;
    while sim.window_bounds(last).1 <= end {
        last += 1;
    }
    let (from, _) = sim.window_bounds(first);
    debug_assert_eq!(sim.window_bounds(first).1 - from, BEDROCK_WINDOW);
    first..last
}

/// Scenario 6's caller figures at `now`: (our cumulative settled tokens, the neighbour's).
fn settled_split(stats: &tower_headroom::sim::BedrockStats) -> (f64, f64) {
    let total: u64 = stats.models.iter().map(|m| m.tokens_settled).sum();
    let neighbour = stats.caller(NEIGHBOUR).map_or(0.0, |c| c.units);
    (total as f64 - neighbour, neighbour)
}

/// Our attempts and throttled attempts: the model's, less the neighbour's.
fn our_attempts(stats: &tower_headroom::sim::BedrockStats) -> (u64, u64) {
    let calls: u64 = stats.models.iter().map(|m| m.counts.calls()).sum();
    let throttled: u64 = stats.models.iter().map(|m| m.counts.throttled()).sum();
    let (n_calls, n_throttled) = stats
        .caller(NEIGHBOUR)
        .map_or((0, 0), |c| (c.counts.calls(), c.counts.throttled()));
    (calls - n_calls, throttled - n_throttled)
}

/// What the plot samples each second, cumulative: (our units, our throttles, the neighbour's
/// units).
fn cumulative(scenario: u8, backend: &Backend, now: Instant) -> (f64, u64, f64) {
    match backend {
        Backend::Bedrock(sim) => {
            let stats = sim.stats_at(now);
            let (_, throttled) = our_attempts(&stats);
            if scenario == 6 {
                let (ours, theirs) = settled_split(&stats);
                return (ours, throttled, theirs);
            }
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
            (units, throttled, 0.0)
        }
        Backend::Dynamo(sim) => {
            let stats = sim.stats_at(now);
            let units = stats.tables.iter().map(|t| t.consumed_wcu()).sum();
            let throttled = stats
                .tables
                .iter()
                .map(|t| t.writes.throttled() + t.reads.throttled())
                .sum();
            (units, throttled, 0.0)
        }
    }
}

/// The simulator's totals after a run.
struct Totals {
    attempts: u64,
    throttled: u64,
    utilisation: f64,
    whole_windows: usize,
    /// Scenario 6: the quota over the whole windows.
    quota_tokens: u64,
}

fn totals(scenario: u8, backend: &Backend, series: &Series) -> Totals {
    match backend {
        Backend::Bedrock(sim) => {
            let stats = sim.stats();
            let (attempts, throttled) = our_attempts(&stats);
            let windows = whole_windows(sim, MINUTE * minutes(scenario) as u32);
            let tokens = matches!(scenario, 2 | 6);
            let primary = &stats.models[0];
            let used: u64 = stats
                .models
                .iter()
                .map(|m| {
                    m.windows
                        .get(windows.clone())
                        .unwrap_or_default()
                        .iter()
                        .map(|w| if tokens { w.tokens } else { w.requests })
                        .sum::<u64>()
                })
                .sum();
            let per_window = if tokens { primary.tpm } else { primary.rpm };
            let quota = per_window * windows.len() as u64;
            Totals {
                attempts,
                throttled,
                utilisation: used as f64 / quota.max(1) as f64,
                whole_windows: windows.len(),
                quota_tokens: primary.tpm * windows.len() as u64,
            }
        }
        Backend::Dynamo(sim) => {
            let stats = sim.stats();
            let table = &stats.tables[0];
            let attempts = table.writes.calls() + table.reads.calls();
            let throttled = table.writes.throttled() + table.reads.throttled();
            let span = (minutes(scenario) * 60) as usize;
            let used: f64 = series.admitted.iter().take(span).sum();
            Totals {
                attempts,
                throttled,
                utilisation: used / (table.wcu as f64 * span as f64),
                whole_windows: 0,
                quota_tokens: 0,
            }
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

/// Scenario 6's neighbour: a plain client with no admission, up to 3 attempts 1 s then 2 s
/// apart, on its own schedule. Returns how many of its calls failed, and how many were
/// throttled at least once.
async fn neighbour(sim: BedrockSim, start: Instant, schedule: Vec<Arrival>) -> (u64, u64) {
    let failed = Arc::new(AtomicU64::new(0));
    let throttled = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for arrival in schedule {
        tokio::time::sleep_until(start + arrival.at).await;
        let Work::Model {
            input_tokens,
            max_tokens,
        } = arrival.work
        else {
            continue;
        };
        let sim = sim.clone();
        let (failed, throttled) = (Arc::clone(&failed), Arc::clone(&throttled));
        tasks.spawn(async move {
            let call = ModelCall::new(SONNET, EAST, input_tokens, max_tokens).caller(NEIGHBOUR);
            for (attempt, backoff) in [1, 2, 0].into_iter().enumerate() {
                if sim.clone().oneshot(call.clone()).await.is_ok() {
                    return;
                }
                if attempt == 0 {
                    throttled.fetch_add(1, Ordering::Relaxed);
                }
                if attempt < 2 {
                    tokio::time::sleep(secs(backoff)).await;
                }
            }
            failed.fetch_add(1, Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    (
        failed.load(Ordering::Relaxed),
        throttled.load(Ordering::Relaxed),
    )
}

async fn run_async(scenario: u8, strategy: Strategy, seed: u64) -> Result<Measured, BoxError> {
    let setup = setup(scenario, seed)?;
    let start = Instant::now();
    let handle = handle(&setup)?;
    let Clients {
        apps: clients,
        effective_limit,
    } = build_clients(&setup, &handle, strategy, seed)?;
    let span_minutes = minutes(scenario);

    // Sample the simulator once a second of virtual time, for the plot and the DynamoDB
    // utilisation; scenario 6 also samples the client's own effective limit once a minute.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let backend = setup.backend.clone();
        let done = Arc::clone(&done);
        let probe = effective_limit.filter(|_| scenario == 6);
        tokio::spawn(async move {
            let mut series = Series::default();
            let mut limits = Vec::new();
            let mut last = (0.0, 0, 0.0);
            let mut tick = start;
            for second in 1u64.. {
                tick += secs(1);
                tokio::time::sleep_until(tick).await;
                let now = cumulative(scenario, &backend, tick);
                series.admitted.push(now.0 - last.0);
                series.throttled.push(now.1 - last.1);
                series.neighbour.push(now.2 - last.2);
                last = now;
                if let Some(probe) = &probe {
                    if second % 60 == 0 && second / 60 <= span_minutes {
                        limits.push(probe(tick));
                    }
                }
                if done.load(Ordering::Relaxed) {
                    break;
                }
            }
            (series, limits)
        })
    };

    let neighbour_task = match &setup.backend {
        Backend::Bedrock(sim) if !setup.neighbour.is_empty() => Some(tokio::spawn(neighbour(
            sim.clone(),
            start,
            setup.neighbour.clone(),
        ))),
        _ => None,
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
    let (neighbour_failed, neighbour_throttled_calls) = match neighbour_task {
        Some(task) => task.await?,
        None => (0, 0),
    };
    done.store(true, Ordering::Relaxed);
    let (series, limits) = sampler.await?;

    let done = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    let totals = totals(scenario, &setup.backend, &series);
    let requests = done.len() as u64;
    let completed = done.iter().filter(|d| d.ok).count() as u64;
    let mut latencies: Vec<Duration> = done.iter().filter(|d| d.ok).map(|d| d.latency).collect();
    latencies.sort();
    let apps = setup
        .plan
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
    let shared = match &setup.backend {
        Backend::Bedrock(sim) if scenario == 6 => {
            let stats = sim.stats();
            let (ours, theirs) = settled_split(&stats);
            let caller = stats.caller(NEIGHBOUR);
            let settled_tokens = theirs.round() as u64;
            Some(SharedAccount {
                effective_limit_per_minute: if strategy.has_admission() {
                    limits
                } else {
                    Vec::new()
                },
                neighbour: Neighbour {
                    calls: setup.neighbour.len() as u64,
                    throttled: caller.map_or(0, |c| c.counts.throttled()),
                    throttled_calls: neighbour_throttled_calls,
                    failed: neighbour_failed,
                    settled_tokens,
                },
                remainder_tokens: totals.quota_tokens as i64 - settled_tokens as i64,
                our_mean_settled_cost: if completed == 0 {
                    0.0
                } else {
                    ours / completed as f64
                },
            })
        }
        _ => None,
    };
    Ok(Measured {
        row: Row {
            scenario,
            name: name(scenario),
            strategy,
            requests,
            completed,
            failed: requests - completed,
            attempts: totals.attempts,
            throttled_attempts: totals.throttled,
            quota_utilization: totals.utilisation,
            p50_ms: percentile_ms(&latencies, 50),
            p99_ms: percentile_ms(&latencies, 99),
            amplification: if requests == 0 {
                0.0
            } else {
                totals.attempts as f64 / requests as f64
            },
            apps,
            shared,
        },
        series,
        whole_windows: totals.whole_windows,
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
