//! A 10-minute scenario on the paused clock — three apps sharing a Bedrock model quota (one
//! behind the retry layer), overload and outage episodes, a hot DynamoDB key, a rate-limited
//! endpoint — gives identical numbers on every run for a seed, and other numbers for another
//! seed. Real time is printed, never asserted.
#![cfg(feature = "sim")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_headroom::RetryLayer;
use tower_headroom::retry::{Backoff, QuotaWindow, RetryPolicy};
use tower_headroom::sim::{
    BEDROCK_WINDOW, BedrockSim, BedrockStats, DynamoCall, DynamoSim, DynamoStats, EndpointLimit,
    EndpointSim, EndpointStats, Episode, ModelCall, ModelConfig, OutputLength, RandomEpisodes,
    SimCaller, SimClassifier, TableConfig,
};

const SONNET: &str = "anthropic.claude-3-5-sonnet";
const HAIKU: &str = "anthropic.claude-3-haiku";
const REGION: &str = "us-east-1";
const MINUTES: u64 = 10;

#[derive(Debug, PartialEq)]
struct Run {
    bedrock: BedrockStats,
    dynamo: DynamoStats,
    endpoint: EndpointStats,
    /// (app, virtual latency in µs, succeeded), in completion order.
    calls: Vec<(&'static str, u128, bool)>,
    /// The Bedrock simulator's window phase.
    phase: Duration,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn scenario(seed: u64) -> Run {
    let sonnet = ModelConfig::builder(SONNET, REGION)
        .rpm(100)
        .tpm(300_000)
        .burndown(5)
        .output(OutputLength::LogNormal {
            median: 250,
            sigma: 0.9,
        })
        .max_concurrency(40)
        .overload(Episode::new(secs(120), secs(120)))
        .outage(Episode::new(secs(420), secs(60)))
        .random_overloads(RandomEpisodes {
            mean_gap: secs(180),
            duration: secs(15),
        })
        .build()
        .unwrap();
    let haiku = ModelConfig::builder(HAIKU, REGION)
        .rpm(400)
        .tpm(400_000)
        .output(OutputLength::Uniform { min: 50, max: 600 })
        .build()
        .unwrap();
    let bedrock = BedrockSim::builder()
        .model(sonnet)
        .model(haiku)
        .seed(seed)
        .build()
        .unwrap();
    let dynamo = DynamoSim::builder()
        .table(
            TableConfig::builder("carts")
                .rcu(50)
                .wcu(100)
                .partitions(4)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let endpoint = EndpointSim::builder()
        .limit(EndpointLimit::TokenBucket {
            requests: 2,
            per: secs(1),
            burst: 5,
        })
        .build()
        .unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();

    // App A, 75 requests/min, behind the retry layer: seeded jitter, and throttle retries
    // aligned to the simulator's windows, whose first boundary falls the seed's window phase
    // after the start (the default aligns to the wall clock, which differs from run to run).
    let window = QuotaWindow::new(
        BEDROCK_WINDOW,
        bedrock.started_at() + bedrock.window_phase(),
        secs(2),
    )
    .unwrap();
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .backoff(Backoff::builder().quota_window_at(window))
        .seed(seed)
        .build()
        .unwrap();
    let retried = ServiceBuilder::new()
        .layer(RetryLayer::new(policy, SimClassifier))
        .service(bedrock.clone());
    let apps: [(&'static str, &'static str, u64, bool); 3] = [
        ("a", SONNET, 75, true),
        ("b", SONNET, 50, false),
        ("c", HAIKU, 200, false),
    ];
    for (app, model, per_minute, retry) in apps {
        let calls = calls.clone();
        let bedrock = bedrock.clone();
        let retried = retried.clone();
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed ^ per_minute);
            let mut inflight = tokio::task::JoinSet::new();
            let interval = Duration::from_secs(60) / per_minute as u32;
            for _ in 0..per_minute * MINUTES {
                let call = ModelCall::new(model, REGION, rng.u64(200..3_000), 1_000).caller(app);
                let calls = calls.clone();
                let mut raw = bedrock.clone();
                let mut retried = retried.clone();
                inflight.spawn(async move {
                    let start = Instant::now();
                    let ok = if retry {
                        retried.ready().await.unwrap().call(call).await.is_ok()
                    } else {
                        raw.ready().await.unwrap().call(call).await.is_ok()
                    };
                    calls
                        .lock()
                        .unwrap()
                        .push((app, start.elapsed().as_micros(), ok));
                });
                tokio::time::sleep(interval).await;
            }
            while inflight.join_next().await.is_some() {}
        });
    }

    // Bursty DynamoDB writes, 30% to one hot key.
    {
        let mut dynamo = dynamo.clone();
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(1));
            for second in 0..MINUTES * 60 {
                let burst = if second % 10 < 2 { 150 } else { 30 };
                for _ in 0..burst {
                    let key = if rng.f64() < 0.3 {
                        String::from("hot")
                    } else {
                        format!("cart#{}", rng.u32(..10_000))
                    };
                    let call =
                        DynamoCall::write("carts", key, rng.u64(100..3_000)).caller("writer");
                    let _ = dynamo.ready().await.unwrap().call(call).await;
                }
                tokio::time::sleep(secs(1) / 2).await;
            }
        });
    }

    // A plain endpoint at 3 requests/s against a 2/s limit.
    {
        let mut endpoint = endpoint.clone();
        tasks.spawn(async move {
            for _ in 0..MINUTES * 60 * 3 {
                let mut req = http::Request::new(());
                req.extensions_mut().insert(SimCaller(Arc::from("poller")));
                let _ = ServiceExt::<http::Request<()>>::ready(&mut endpoint)
                    .await
                    .unwrap()
                    .call(req)
                    .await;
                tokio::time::sleep(secs(1) / 3).await;
            }
        });
    }

    while tasks.join_next().await.is_some() {}
    let calls = std::mem::take(&mut *calls.lock().unwrap());
    Run {
        phase: bedrock.window_phase(),
        bedrock: bedrock.stats(),
        dynamo: dynamo.stats(),
        endpoint: endpoint.stats(),
        calls,
    }
}

fn run(seed: u64) -> (Run, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let real = std::time::Instant::now();
    let result = rt.block_on(scenario(seed));
    (result, real.elapsed())
}

#[test]
fn a_ten_minute_scenario_repeats_exactly_for_a_seed() {
    let (first, real) = run(42);
    let (second, _) = run(42);
    eprintln!("10-minute scenario: {real:?} of real time");

    // The scenario exercised every kind of answer, so the comparison means something.
    let sonnet = first.bedrock.model(SONNET, REGION).unwrap();
    let c = sonnet.counts;
    assert!(
        sonnet.windows.len() >= MINUTES as usize,
        "{}",
        sonnet.windows.len()
    );
    assert!(c.admitted > 0 && c.completed > 0, "{c:?}");
    assert!(c.throttled_requests > 0, "{c:?}");
    assert!(c.overloaded > 0, "{c:?}");
    assert!(c.unavailable > 0, "{c:?}");
    let apps = &first.bedrock.callers;
    assert_eq!(apps.len(), 3);
    let table = first.dynamo.table("carts").unwrap();
    assert!(table.writes.throttled_capacity > 0);
    assert!(table.writes.admitted > 0);
    assert!(first.endpoint.counts.throttled_requests > 0);
    assert_eq!(
        first.calls.len() as u64,
        (75 + 50 + 200) * MINUTES,
        "every call finished"
    );
    assert!(first.calls.iter().any(|&(app, _, ok)| app == "a" && !ok));

    assert_eq!(first.endpoint, second.endpoint);
    assert_eq!(first.dynamo, second.dynamo);
    assert_eq!(first.bedrock.models[1], second.bedrock.models[1], "haiku");
    assert_eq!(first.bedrock.callers[1], second.bedrock.callers[1], "b");
    assert_eq!(first.bedrock, second.bedrock);
    assert_eq!(first, second);

    let (other, _) = run(43);
    assert_ne!(
        first.bedrock, other.bedrock,
        "another seed draws other outputs and episodes"
    );
    // And other quota windows.
    assert!(first.phase < BEDROCK_WINDOW && other.phase < BEDROCK_WINDOW);
    assert_ne!(first.phase, other.phase);
    assert_eq!(first.phase, second.phase);
}
