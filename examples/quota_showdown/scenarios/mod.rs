//! The eight scenarios, the client strategies and the runner that measures them.
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
//!
//! One file per concern: the shared pieces of a set-up (`schedule.rs`), the Bedrock scenarios
//! 1 to 4 (`bedrock.rs`), DynamoDB's scenario 5 (`dynamodb.rs`), the shared account of
//! scenario 6 (`shared.rs`), the daily quota of scenario 7 (`daily.rs`), the
//! OpenAI-compatible endpoint of scenario 8 (`openai.rs`), the bulk load of scenario 9
//! (`bulk.rs`, its own runner: one job, not a schedule of apps) and the runner
//! (`run.rs`); this file holds the names, the strategies and the result types.

mod bedrock;
pub mod bulk;
mod daily;
pub mod dynamodb;
pub mod openai;
mod run;
mod schedule;
mod shared;

use std::time::Duration;

use tower::BoxError;
use tower_headroom::sim::{BedrockSim, DynamoSim, LlmEndpointSim};

// `handle` and `build_clients` are for `tests/showdown.rs`, which checks the set-up apart.
#[allow(unused_imports)]
pub use self::run::{build_clients, handle, run};
pub use crate::clients::{
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

/// The scenario numbers, in order.
pub const SCENARIOS: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

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
    /// The OpenAI and Anthropic SDKs' retry (scenario 8): 2 retries, exponential from 0.5 s
    /// up to 8 s with jitter, `retry-after-ms` / `retry-after` honoured up to 60 s.
    VendorSdk,
}

impl Strategy {
    /// Every strategy of the AWS scenarios (1 to 7), in table order.
    pub const ALL: [Strategy; 6] = [
        Strategy::NoRetry,
        Strategy::NaiveRetry,
        Strategy::SdkStandard,
        Strategy::SdkAdaptive,
        Strategy::Headroom,
        Strategy::SdkHeadroom,
    ];

    /// The strategies measured on `scenario`: on the AWS scenarios every AWS one, on the
    /// OpenAI-compatible endpoint (8) no policy, the vendor SDKs' retry and tower-headroom.
    pub fn of(scenario: u8) -> &'static [Strategy] {
        const HTTP: [Strategy; 3] = [Strategy::NoRetry, Strategy::VendorSdk, Strategy::Headroom];
        if scenario == 8 { &HTTP } else { &Strategy::ALL }
    }

    /// The name printed in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::NoRetry => "no retry",
            Strategy::NaiveRetry => "naive retry",
            Strategy::SdkStandard => "aws sdk standard",
            Strategy::SdkAdaptive => "aws sdk adaptive",
            Strategy::Headroom => "tower-headroom",
            Strategy::SdkHeadroom => "aws sdk + tower-headroom",
            Strategy::VendorSdk => "openai sdk retry",
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
        7 => "daily-quota",
        8 => "openai-compatible",
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
        5 => {
            "DynamoDB hot key, adaptive capacity: one key bursting to 1,500 WCU/s for 5 s in 20 (its ceiling is 1,000) on a 1,500 WCU / 100 RCU table, beside 10 writes/s to other keys and 10 reads/s"
        }
        6 => {
            "shared account: chat 100/min + batch 6/min on a 200,000 TPM model (no RPM), an unmanaged neighbour in minutes 3-8"
        }
        7 => daily::TITLE,
        8 => openai::TITLE,
        _ => "unknown scenario",
    }
}

/// How many minutes a scenario sends traffic.
pub fn minutes(scenario: u8) -> u64 {
    if matches!(scenario, 6 | 8) { 12 } else { 10 }
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
        5 => "WCU consumed in the first 600 s / (1,500 WCU x 600 s)".into(),
        6 => format!(
            "tokens counted against TPM for all callers, the neighbour included, in {whole} / (200,000 TPM x {windows})"
        ),
        7 => daily::UTILISATION.into(),
        8 => openai::UTILISATION.into(),
        _ => String::new(),
    }
}

/// The quota's rate per second, and its unit, for the plot.
pub fn quota_rate(scenario: u8) -> (f64, &'static str) {
    match scenario {
        1 => (150.0 / 60.0, "requests"),
        2 | 6 => (200_000.0 / 60.0, "tokens"),
        7 => (daily::TPM as f64 / 60.0, "tokens"),
        8 => (openai::TPM as f64 / 60.0, "tokens"),
        3 | 4 => (100.0 / 60.0, "requests"),
        _ => (dynamodb::WCU as f64, "WCU"),
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

pub use self::daily::Daily;

/// Scenario 5's extra columns: where the throttles fell, as the simulator counted them.
#[derive(Clone, Debug, PartialEq)]
pub struct HotKey {
    /// The hot key's attempts (writes and reads, admitted or throttled).
    pub key_attempts: u64,
    /// The hot key's attempts throttled.
    pub key_throttled: u64,
    /// Attempts on every other key throttled (writes and reads).
    pub other_throttled: u64,
    /// Read attempts throttled (any key).
    pub reads_throttled: u64,
    /// Throttles with a key-range reason (`Table{Read,Write}KeyRangeThroughputExceeded`).
    pub key_range_throttles: u64,
    /// Throttles with a provisioned-throughput reason (the table's own capacity).
    pub provisioned_throttles: u64,
    /// The first second (from the start; the hot key's first burst starts at 0) at which the
    /// client's own hot-key report named the hot key as its heaviest, for clients with one.
    pub report_named_at_s: Option<u64>,
}

/// Scenario 8's extra columns: the billing stop.
#[derive(Clone, Debug, PartialEq)]
pub struct BillingStop {
    /// When the account's billing cap was reached, in seconds from the start.
    pub spent_at_s: Option<u64>,
    /// Attempts the endpoint refused with `insufficient_quota`.
    pub insufficient_quota_attempts: u64,
    /// Calls that were sent again after an `insufficient_quota` answer.
    pub retried_after_insufficient_quota: u64,
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
    /// Scenario 5 only.
    pub hot_key: Option<HotKey>,
    /// Scenario 6 only.
    pub shared: Option<SharedAccount>,
    /// Scenario 7 only.
    pub daily: Option<Daily>,
    /// Scenario 8 only.
    pub billing: Option<BillingStop>,
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
    /// Calls the backend admitted on a fallback target (any route but the first) in second
    /// `i`: Bedrock scenarios with more than one route, else empty.
    pub fallback: Vec<u64>,
    /// The client's own effective limit (its quota's learned limit on the primary target) at
    /// the end of each minute, per window in the unit the scenario counts (requests in 1, 3
    /// and 4; tokens or WCU in the others); empty without admission.
    pub effective_limit: Vec<Option<u64>>,
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
    /// A simulated OpenAI-compatible endpoint.
    Llm(LlmEndpointSim),
}

impl Backend {
    /// How many times the simulator's set-up or state has been read (`tests/showdown.rs`
    /// checks that building clients reads nothing).
    #[allow(dead_code)]
    pub fn inspections(&self) -> u64 {
        match self {
            Backend::Bedrock(sim) => sim.inspections(),
            Backend::Dynamo(sim) => sim.inspections(),
            Backend::Llm(sim) => sim.inspections(),
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

/// What a scenario's set-up builds: everything of a [`Setup`] but the ordering.
struct Parts {
    backend: Backend,
    console: Console,
    plan: Plan,
    arrivals: Vec<Arrival>,
    neighbour: Vec<Arrival>,
}

impl Parts {
    fn new(backend: Backend, console: Console, plan: Plan, arrivals: Vec<Arrival>) -> Self {
        Parts {
            backend,
            console,
            plan,
            arrivals,
            neighbour: Vec::new(),
        }
    }
}

/// An interactive app of `model` in `region`.
fn app(name: &'static str, model: &'static str, region: &'static str) -> App {
    App {
        name,
        model,
        region,
        batch: false,
    }
}

/// A plan without shares.
fn plan(apps: Vec<App>, routes: Vec<crate::clients::RouteTarget>) -> Plan {
    Plan {
        apps,
        routes,
        shares: None,
    }
}

/// Builds scenario `scenario`'s simulator (started now), console, plan and schedules from
/// `seed`.
pub fn setup(scenario: u8, seed: u64) -> Result<Setup, BoxError> {
    let span = (Duration::ZERO, MINUTE * minutes(scenario) as u32);
    let parts = match scenario {
        1 => bedrock::three_apps(seed, span)?,
        2 => bedrock::token_heavy(seed, span)?,
        3 => bedrock::overload(seed, span)?,
        4 => bedrock::outage(seed, span)?,
        5 => dynamodb::hot_key(seed)?,
        6 => shared::shared_account(seed, span)?,
        7 => daily::daily_quota(seed, span)?,
        8 => openai::openai_compatible(seed, span)?,
        n => return Err(format!("no scenario {n}: choose 1 to 8").into()),
    };
    let mut arrivals = parts.arrivals;
    arrivals.sort_by_key(|a| a.at);
    Ok(Setup {
        backend: parts.backend,
        console: parts.console,
        plan: parts.plan,
        arrivals,
        neighbour: parts.neighbour,
    })
}
