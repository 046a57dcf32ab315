//! A Bedrock model capped at 8 calls in flight, driven by open-loop arrivals well above what
//! the cap serves, for five simulated minutes: the profile's retry policy over the simulator,
//! against the same retry policy over the adaptive concurrency limit over the simulator.
//!
//! `cargo test --features sim --test concurrency_scenario -- --nocapture` prints the numbers.
#![cfg(feature = "sim")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_headroom::concurrency::{AdaptiveLimit, ConcurrencyConfig, ConcurrencyLimitLayer};
use tower_headroom::observe::Labels;
use tower_headroom::sim::{BedrockSim, ModelCall, ModelConfig, OutputLength, SimClassifier};
use tower_headroom::{Profile, RetryLayer};

const MODEL: &str = "anthropic.claude-3-5-sonnet";
const REGION: &str = "us-east-1";
const CAP: u32 = 8;
const RUN: Duration = Duration::from_secs(5 * 60);
/// Mean gap between arrivals: 5 calls per second, against about 3 the cap serves (8 calls of
/// about 2.7 s each).
const MEAN_GAP: Duration = Duration::from_millis(200);

fn sim(start: Instant) -> BedrockSim {
    let model = ModelConfig::builder(MODEL, REGION)
        // Quotas far above the traffic: only the concurrency cap binds.
        .rpm(1_000_000)
        .tpm(1_000_000_000)
        .max_concurrency(CAP)
        .output(OutputLength::LogNormal {
            median: 200,
            sigma: 0.5,
        })
        .build()
        .unwrap();
    BedrockSim::builder()
        .model(model)
        .seed(42)
        .window_phase(Duration::ZERO)
        .start(start)
        .build()
        .unwrap()
}

fn retry() -> RetryLayer<SimClassifier> {
    RetryLayer::new(
        Profile::Bedrock.retry().seed(7).build().unwrap(),
        SimClassifier,
    )
}

/// What became of the calls of one run.
#[derive(Debug, Default)]
struct Run {
    completed: Vec<Duration>,
    /// How long each failed call took to fail.
    failed: Vec<Duration>,
    too_many_connections: u64,
}

impl Run {
    /// The `q` quantile of completed calls' latencies.
    fn p(&self, q: f64) -> Duration {
        quantile(&self.completed, q)
    }
}

fn quantile(latencies: &[Duration], q: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => Duration::ZERO,
        n => sorted[((n as f64 * q).ceil() as usize).clamp(1, n) - 1],
    }
}

/// Open-loop arrivals (exponential gaps, seeded) for [`RUN`], each call made on its own task;
/// returns once every call has finished.
async fn drive<S>(service: S, sim: &BedrockSim) -> Run
where
    S: tower::Service<ModelCall, Response = tower_headroom::sim::ModelReply> + Clone,
    S: Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    let start = Instant::now();
    let mut rng = fastrand::Rng::with_seed(2024);
    let results = Arc::new(Mutex::new(Run::default()));
    let mut tasks = Vec::new();
    let mut at = start;
    loop {
        let gap = -(1.0 - rng.f64()).ln() * MEAN_GAP.as_secs_f64();
        at += Duration::from_secs_f64(gap);
        if at >= start + RUN {
            break;
        }
        tokio::time::sleep_until(at).await;
        let (service, results) = (service.clone(), Arc::clone(&results));
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let call = ModelCall::new(MODEL, REGION, 500, 1_000);
            let result = service.oneshot(call).await;
            let mut run = results.lock().unwrap();
            match result {
                Ok(_) => run.completed.push(began.elapsed()),
                Err(_) => run.failed.push(began.elapsed()),
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counts = sim.stats().models[0].counts;
    let mut run = std::mem::take(&mut *results.lock().unwrap());
    run.too_many_connections = counts.too_many_connections;
    run
}

#[tokio::test(start_paused = true)]
async fn the_learned_limit_finds_the_cap_and_the_refusals_stop() {
    // (a) The profile's retry over the simulator.
    let bare = sim(Instant::now());
    let without = drive(retry().layer(bare.clone()), &bare).await;

    // (b) The same retry over the adaptive limit over a fresh simulator.
    let limited_sim = sim(Instant::now());
    let limit = AdaptiveLimit::new(ConcurrencyConfig::default(), Labels::target("bedrock"));
    let stack = retry()
        .layer(ConcurrencyLimitLayer::new(limit.clone(), SimClassifier).layer(limited_sim.clone()));
    // Every 15 s: the learned limit, and the model's "Too many connections" so far.
    let trajectory = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (limit, sim, trajectory) =
            (limit.clone(), limited_sim.clone(), Arc::clone(&trajectory));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(15));
            loop {
                tick.tick().await;
                let refused = sim.stats().models[0].counts.too_many_connections;
                trajectory.lock().unwrap().push((limit.limit(), refused));
            }
        })
    };
    let with = drive(stack, &limited_sim).await;
    sampler.abort();
    let trajectory = trajectory.lock().unwrap().clone();

    println!("(limit, \"Too many connections\" so far) every 15 s: {trajectory:?}");
    println!("limit at the end: {}", limit.limit());
    for (name, run) in [("retry only", &without), ("retry + limit", &with)] {
        println!(
            "{name:>14}: {} completed (p50 {:?}, p99 {:?}), {} failed (p50 {:?} to fail), \
             {} \"Too many connections\"",
            run.completed.len(),
            run.p(0.50),
            run.p(0.99),
            run.failed.len(),
            quantile(&run.failed, 0.5),
            run.too_many_connections,
        );
    }

    let end = limit.limit();
    assert!(
        (CAP / 2..=CAP + 2).contains(&end),
        "the learned limit {end} is near the cap {CAP}"
    );
    assert!(
        without.too_many_connections >= 5 * with.too_many_connections.max(1),
        "refusals {} without the limit, {} with it",
        without.too_many_connections,
        with.too_many_connections
    );
    assert!(
        with.p(0.99) <= without.p(0.99),
        "p99 {:?} with the limit, {:?} without",
        with.p(0.99),
        without.p(0.99)
    );
    // Shedding at the client costs no throughput: the model serves as many calls either way.
    assert!(
        with.completed.len() as f64 >= 0.95 * without.completed.len() as f64,
        "{} completed with the limit, {} without",
        with.completed.len(),
        without.completed.len()
    );
}

/// The stack's reply: the simulator's, in an `http::Response` (the stack annotates responses
/// with the target that served them).
type Reply = http::Response<tower_headroom::sim::ModelReply>;

type ClassifyFn = fn(Result<&Reply, &(dyn std::error::Error + 'static)>) -> tower_headroom::Outcome;

/// The simulator's classifier, for replies in an `http::Response`.
fn classify(result: Result<&Reply, &(dyn std::error::Error + 'static)>) -> tower_headroom::Outcome {
    use tower_headroom::classify::Classify;
    match result {
        Ok(reply) => SimClassifier.classify(Ok(reply.body())),
        Err(e) => Classify::<tower_headroom::sim::ModelReply>::classify(&SimClassifier, Err(e)),
    }
}

/// The same scenario through the whole stack (`StackBuilder::bedrock`, one target), without
/// and with its adaptive concurrency limit: the lifecycle takes the slot after admission and
/// records the answer in the limit as it records it in the breaker.
#[tokio::test(start_paused = true)]
async fn the_stacks_concurrency_limit_finds_the_cap_and_the_refusals_stop() {
    use tower_headroom::fallback::Target;
    use tower_headroom::stack::StackBuilder;

    let stack = |sim: &BedrockSim, limit: bool| {
        let backend = tower::ServiceBuilder::new()
            .map_response(http::Response::new as fn(_) -> Reply)
            .service(sim.clone());
        let builder = StackBuilder::bedrock(classify as ClassifyFn)
            .target(Target::new("sonnet", MODEL))
            .seed(7)
            // The breaker would open on the refusals: this compares the limit alone.
            .no_breakers();
        let builder = if limit {
            builder.concurrency(ConcurrencyConfig::default())
        } else {
            builder
        };
        builder.services(vec![backend]).unwrap()
    };
    let bare = sim(Instant::now());
    let without = drive_stack(stack(&bare, false), &bare).await;
    let limited_sim = sim(Instant::now());
    let limited = stack(&limited_sim, true);
    let limit = limited.limits()[0].clone().unwrap();
    let with = drive_stack(limited, &limited_sim).await;

    for (name, run) in [("stack", &without), ("stack + limit", &with)] {
        println!(
            "{name:>14}: {} completed (p50 {:?}, p99 {:?}), {} failed, {} \"Too many connections\"",
            run.completed.len(),
            run.p(0.50),
            run.p(0.99),
            run.failed.len(),
            run.too_many_connections,
        );
    }
    println!("the stack's limit at the end: {}", limit.limit());
    let end = limit.limit();
    assert!((CAP / 2..=CAP + 2).contains(&end), "limit {end}, cap {CAP}");
    assert!(
        without.too_many_connections >= 5 * with.too_many_connections.max(1),
        "refusals {} without the limit, {} with it",
        without.too_many_connections,
        with.too_many_connections
    );
    assert!(
        with.p(0.99) <= without.p(0.99),
        "{:?} vs {:?}",
        with.p(0.99),
        without.p(0.99)
    );
}

/// [`drive`] for a service of `http::Request`-less model calls answering `http::Response`s.
async fn drive_stack<S>(service: S, sim: &BedrockSim) -> Run
where
    S: tower::Service<ModelCall, Response = Reply> + Clone + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send + 'static,
{
    let service = tower::ServiceBuilder::new()
        .map_response(|reply: Reply| reply.into_body())
        .service(service);
    drive(service, sim).await
}
