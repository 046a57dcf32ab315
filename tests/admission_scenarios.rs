//! Scenarios under virtual time against a quota-enforcing test service (fixed 60 s windows
//! whose phase the client does not know, requests and tokens per window, like Bedrock's RPM
//! and TPM). The quota is configured as a user would: the service's numbers, nothing else.
//!
//! - "three apps, one quota": apps A, B and C send 75, 50 and 50 requests a minute (A spiking
//!   to 90 for three minutes) into one 150 RPM quota for ten minutes. Admission with equal
//!   shares must use >= 98% of the quota, with <= 0.5% of attempts throttled, B and C never
//!   shed, and every shed call one whose deadline could not be met.
//! - "token-heavy batch": 10 batch calls a minute of 15,000 input + 5,000 output tokens beside
//!   200 small interactive calls a minute on a 200,000 TPM quota. Interactive p99 latency must
//!   stay within 1.2x of its p99 without the batch load.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, ServiceExt};
use tower_headroom::admission::{
    AdmissionLayer, Ask, Cost, Keyed, Limit, Priority, Quota, RejectReason, Rejected, Tenant, Usage,
};
use tower_headroom::{BoxError, Deadline, Outcome, ThrottleScope};

const MINUTE: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
struct Call {
    app: u16,
    batch: bool,
    input: u64,
    max_tokens: u64,
    output: u64,
    deadline: Duration,
}

#[derive(Debug)]
struct Throttled(ThrottleScope);

impl std::fmt::Display for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "throttled ({:?})", self.0)
    }
}

impl std::error::Error for Throttled {}

#[derive(Default)]
struct ServerState {
    window: u64,
    requests: u64,
    tokens: u64,
    accepted_per_window: Vec<u64>,
    tokens_per_window: Vec<u64>,
    attempts: u64,
    throttled: u64,
}

/// Fixed 60 s windows, the first one ending 37 s after `start` (the client does not know
/// this); a call over either limit is answered at once with a throttle, otherwise it counts
/// `input + output` tokens at its start and answers after 200 ms + 2 ms per output token.
#[derive(Clone)]
struct Server {
    start: Instant,
    rpm: u64,
    tpm: u64,
    state: Arc<Mutex<ServerState>>,
}

/// How far into its window the service is when the client starts.
const PHASE: Duration = Duration::from_secs(23);

impl Server {
    fn new(rpm: u64, tpm: u64) -> Self {
        Server {
            start: Instant::now() - PHASE,
            rpm,
            tpm,
            state: Arc::default(),
        }
    }

    fn service(
        &self,
    ) -> impl tower::Service<
        Call,
        Response = u64,
        Error = Throttled,
        Future = impl Future<Output = Result<u64, Throttled>> + Send,
    > + Clone
    + Send
    + 'static {
        let server = self.clone();
        tower::service_fn(move |call: Call| {
            let server = server.clone();
            async move {
                let tokens = call.input + call.output;
                {
                    let mut s = server.state.lock().unwrap();
                    let window = (Instant::now() - server.start).as_secs() / 60;
                    if window != s.window {
                        s.window = window;
                        s.requests = 0;
                        s.tokens = 0;
                    }
                    s.attempts += 1;
                    let scope = if s.requests + 1 > server.rpm {
                        Some(ThrottleScope::Requests)
                    } else if s.tokens + tokens > server.tpm {
                        Some(ThrottleScope::Tokens)
                    } else {
                        None
                    };
                    if let Some(scope) = scope {
                        s.throttled += 1;
                        return Err(Throttled(scope));
                    }
                    s.requests += 1;
                    s.tokens += tokens;
                    let w = window as usize;
                    if s.accepted_per_window.len() <= w {
                        s.accepted_per_window.resize(w + 1, 0);
                        s.tokens_per_window.resize(w + 1, 0);
                    }
                    s.accepted_per_window[w] += 1;
                    s.tokens_per_window[w] += tokens;
                }
                tokio::time::sleep(Duration::from_millis(200 + 2 * call.output)).await;
                Ok(tokens)
            }
        })
    }
}

#[derive(Default, Debug)]
struct Results {
    ok: Vec<(Call, Duration)>,
    rejected: Vec<(Call, Rejected, Duration)>,
    throttled: Vec<Call>,
}

fn classify(r: Result<&u64, &(dyn std::error::Error + 'static)>) -> Outcome {
    match r {
        Ok(_) => Outcome::SUCCESS,
        Err(e) => match e.downcast_ref::<Throttled>() {
            Some(t) => Outcome::throttled(t.0),
            None => Outcome::new(tower_headroom::OutcomeKind::Transient),
        },
    }
}

fn demand()
-> Keyed<&'static str, impl Fn(&Call) -> &'static str + Clone, impl Fn(&Call) -> Ask + Clone> {
    Keyed::new(
        |_: &Call| "model",
        |c: &Call| {
            let ask = Ask::new(Cost::units(c.input + c.max_tokens))
                .tenant(Tenant(c.app))
                .deadline(Deadline::after(c.deadline));
            if c.batch {
                ask.priority(Priority::Batch)
            } else {
                ask
            }
        },
    )
}

/// One app's arrivals: `per_minute(t)` calls a minute at time `t`, spaced evenly with ±20%
/// jitter, until `end`.
async fn arrivals<S>(
    svc: S,
    seed: u64,
    end: Duration,
    per_minute: impl Fn(Duration) -> u64,
    make: impl Fn(&mut fastrand::Rng) -> Call,
    results: Arc<Mutex<Results>>,
) where
    S: tower::Service<Call, Response = u64, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    let mut tasks = Vec::new();
    loop {
        let elapsed = Instant::now() - start;
        if elapsed >= end {
            break;
        }
        let call = make(&mut rng);
        let svc = svc.clone();
        let results = Arc::clone(&results);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            match svc.oneshot(call).await {
                Ok(_) => results.lock().unwrap().ok.push((call, t.elapsed())),
                Err(e) => match e.downcast::<Rejected>() {
                    Ok(r) => results
                        .lock()
                        .unwrap()
                        .rejected
                        .push((call, *r, t.elapsed())),
                    Err(_) => results.lock().unwrap().throttled.push(call),
                },
            }
        }));
        let interval = MINUTE.as_secs_f64() / per_minute(elapsed) as f64;
        let jitter = 0.8 + 0.4 * rng.f64();
        tokio::time::sleep(Duration::from_secs_f64(interval * jitter)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn three_apps_one_quota() {
    let server = Server::new(150, u64::MAX / 4);
    let quota: Quota<&'static str> = Quota::new(
        Limit::per_minute()
            .requests(150)
            .shares(&[1, 1, 1])
            .build()
            .unwrap(),
    );
    let svc = AdmissionLayer::new(quota, demand())
        .usage(|tokens: &u64| Usage::units(*tokens))
        .classify(classify)
        .layer(server.service());
    let results = Arc::new(Mutex::new(Results::default()));
    let end = 10 * MINUTE;
    let call = |app: u16| {
        move |_: &mut fastrand::Rng| Call {
            app,
            batch: false,
            input: 0,
            max_tokens: 0,
            output: 0,
            deadline: Duration::from_secs(20),
        }
    };
    let a_rate = |t: Duration| {
        if t >= 4 * MINUTE && t < 7 * MINUTE {
            90
        } else {
            75
        }
    };
    tokio::join!(
        arrivals(svc.clone(), 1, end, a_rate, call(0), Arc::clone(&results)),
        arrivals(svc.clone(), 2, end, |_| 50, call(1), Arc::clone(&results)),
        arrivals(svc.clone(), 3, end, |_| 50, call(2), Arc::clone(&results)),
    );

    let r = results.lock().unwrap();
    let s = server.state.lock().unwrap();
    // The whole windows of the ten minutes: the first one began before the client did.
    let served: u64 = s.accepted_per_window.iter().skip(1).take(9).sum();
    let utilisation = served as f64 / 1_350.0;
    let throttled = s.throttled as f64 / s.attempts as f64;
    let per_app = |app: u16| {
        (
            r.ok.iter().filter(|(c, _)| c.app == app).count(),
            r.rejected.iter().filter(|(c, _, _)| c.app == app).count(),
        )
    };
    println!(
        "three apps, one quota: utilisation {:.2}% ({served} of 1350 in 9 whole windows), \
         {} attempts, {} throttled ({:.3}%), served/shed per app A {:?} B {:?} C {:?}, \
         per window {:?}",
        utilisation * 100.0,
        s.attempts,
        s.throttled,
        throttled * 100.0,
        per_app(0),
        per_app(1),
        per_app(2),
        s.accepted_per_window,
    );
    // Within their shares, B and C wait for nothing: their median latency is the service's.
    for app in [1, 2] {
        let mut latencies: Vec<Duration> =
            r.ok.iter()
                .filter(|(c, _)| c.app == app)
                .map(|(_, d)| *d)
                .collect();
        latencies.sort();
        let p50 = latencies[latencies.len() / 2];
        assert!(p50 <= Duration::from_millis(240), "app {app}: p50 {p50:?}");
    }
    assert!(utilisation >= 0.98, "utilisation {utilisation}");
    assert!(throttled <= 0.005, "throttled {throttled}");
    assert_eq!(per_app(1).1, 0, "B is within its share and never shed");
    assert_eq!(per_app(2).1, 0, "C is within its share and never shed");
    // Every shed call is one whose deadline could not be met: the wait it had behind it
    // plus the wait still ahead of it passes its 20 s.
    for (call, rejected, waited) in r.rejected.iter() {
        assert_eq!(rejected.reason, RejectReason::Deadline);
        assert!(*waited + rejected.retry_in.unwrap() > call.deadline);
    }
    assert!(per_app(0).0 > 450, "A is served at least its share");
}

async fn token_heavy(with_batch: bool) -> (Vec<Duration>, Results, u64, u64, f64) {
    let server = Server::new(10_000, 200_000);
    let quota: Quota<&'static str> =
        Quota::new(Limit::per_minute().units(200_000).build().unwrap());
    let svc = AdmissionLayer::new(quota, demand())
        .usage(|tokens: &u64| Usage::units(*tokens))
        .classify(classify)
        .layer(server.service());
    let results = Arc::new(Mutex::new(Results::default()));
    let end = 10 * MINUTE;
    let interactive = |rng: &mut fastrand::Rng| Call {
        app: 0,
        batch: false,
        input: 100,
        max_tokens: 200,
        output: rng.u64(50..=200),
        deadline: Duration::from_secs(10),
    };
    let batch = |_: &mut fastrand::Rng| Call {
        app: 0,
        batch: true,
        input: 15_000,
        max_tokens: 5_000,
        output: 5_000,
        deadline: Duration::from_secs(900),
    };
    let i = arrivals(
        svc.clone(),
        7,
        end,
        |_| 200,
        interactive,
        Arc::clone(&results),
    );
    if with_batch {
        let b = arrivals(svc.clone(), 8, end, |_| 10, batch, Arc::clone(&results));
        tokio::join!(i, b);
    } else {
        i.await;
    }
    let mut r = std::mem::take(&mut *results.lock().unwrap());
    let mut latencies: Vec<_> =
        r.ok.iter()
            .filter(|(c, _)| !c.batch)
            .map(|(_, d)| *d)
            .collect();
    latencies.sort();
    r.ok.retain(|(c, _)| c.batch);
    let s = server.state.lock().unwrap();
    // The whole windows of the ten minutes.
    let used: u64 = s.tokens_per_window.iter().skip(1).take(9).sum();
    let utilisation = used as f64 / (9.0 * 200_000.0);
    (latencies, r, s.attempts, s.throttled, utilisation)
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99).div_ceil(100) - 1]
}

#[tokio::test(start_paused = true)]
async fn token_heavy_batch_keeps_interactive_fast() {
    let (alone, alone_rest, _, alone_throttled, _) = token_heavy(false).await;
    let (loaded, loaded_rest, attempts, throttled, utilisation) = token_heavy(true).await;
    let (p_alone, p_loaded) = (p99(&alone), p99(&loaded));
    let interactive_failed = loaded_rest
        .rejected
        .iter()
        .filter(|(c, _, _)| !c.batch)
        .count()
        + loaded_rest.throttled.iter().filter(|c| !c.batch).count();
    println!(
        "token-heavy batch: interactive p99 {p_alone:?} alone, {p_loaded:?} beside batch \
         ({:.2}x); {} interactive served; batch served {}, shed {}; {attempts} attempts, \
         {throttled} throttled, utilisation {:.2}%",
        p_loaded.as_secs_f64() / p_alone.as_secs_f64(),
        loaded.len(),
        loaded_rest.ok.len(),
        loaded_rest.rejected.len(),
        utilisation * 100.0,
    );
    assert_eq!(alone_throttled, 0);
    assert!(alone_rest.rejected.is_empty() && alone_rest.throttled.is_empty());
    assert!(
        p_loaded.as_secs_f64() <= 1.2 * p_alone.as_secs_f64(),
        "{p_loaded:?} vs {p_alone:?}"
    );
    assert!(
        throttled as f64 <= 0.005 * attempts as f64,
        "{throttled} of {attempts}"
    );
    assert_eq!(interactive_failed, 0, "no interactive call failed");
    assert!(loaded.len() >= 1_900, "{} interactive calls", loaded.len());
    assert!(!loaded_rest.ok.is_empty(), "batch still makes progress");
}
