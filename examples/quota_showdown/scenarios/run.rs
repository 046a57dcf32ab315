//! The runner: a scenario's clients against its fresh simulator on a paused-clock runtime,
//! and what the simulator counted.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceExt};
use tower_headroom::sim::front::{SimService, sdk_http_client};
use tower_headroom::sim::{BEDROCK_WINDOW, BedrockSim};

use super::daily;
use super::schedule::secs;
use super::shared::neighbour;
use super::{
    AppResult, Backend, BillingStop, Clients, Direct, Handle, HotKey, MINUTE, Measured, NEIGHBOUR,
    Neighbour, PARTITION_KEY, Row, Series, Setup, SharedAccount, Strategy, TABLE, minutes, name,
    quota_rate, setup,
};

tokio::task_local! {
    /// Scenario 8: the `insufficient_quota` answers the current call got (one counter per
    /// call, set by the runner around it; read by the handle, not by the client).
    static BILLING_REFUSALS: Arc<AtomicU64>;
}

/// The HTTP front as the clients' handle, counting each call's `insufficient_quota` answers
/// (the runner's measurement: the clients never see it).
fn http_handle(front: SimService) -> crate::http_clients::HttpService {
    BoxCloneSyncService::new(tower::service_fn(
        move |request: http::Request<http_body_util::Full<bytes::Bytes>>| {
            let front = front.clone();
            async move {
                let response = front.oneshot(request).await?;
                if response.status() != http::StatusCode::TOO_MANY_REQUESTS {
                    return Ok(response);
                }
                let (parts, body) = response.into_parts();
                let bytes = http_body_util::BodyExt::collect(body)
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                if bytes
                    .windows(b"insufficient_quota".len())
                    .any(|w| w == b"insufficient_quota")
                {
                    let _ = BILLING_REFUSALS.try_with(|n| n.fetch_add(1, Ordering::Relaxed));
                }
                Ok(http::Response::from_parts(
                    parts,
                    http_body_util::Full::new(bytes),
                ))
            }
        },
    ))
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
        Backend::Llm(sim) => {
            let front = SimService::builder().llm(sim.clone()).build()?;
            Handle {
                direct: Direct::Http(http_handle(front.clone())),
                wire: sdk_http_client(front),
            }
        }
    })
}

/// `strategy`'s clients for `setup`, built from its console, plan and handle only.
pub fn build_clients(
    setup: &Setup,
    handle: &Handle,
    strategy: Strategy,
    seed: u64,
) -> Result<Clients, BoxError> {
    crate::clients::build(strategy, &setup.console, &setup.plan, handle, seed)
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
                    if matches!(scenario, 2 | 7) {
                        m.tokens_reserved as f64
                    } else {
                        m.counts.admitted as f64
                    }
                })
                .sum();
            (units, throttled, 0.0)
        }
        Backend::Llm(sim) => {
            let stats = sim.stats_at(now);
            (stats.charged_tokens as f64, stats.counts.throttled(), 0.0)
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

/// Bedrock with more than one route: the calls admitted so far on every route but the first
/// (a fallback model or region); else `None`.
fn fallback_admitted(backend: &Backend, routes: &[(&str, &str)], now: Instant) -> Option<u64> {
    let (Backend::Bedrock(sim), [_, fallbacks @ ..]) = (backend, routes) else {
        return None;
    };
    if fallbacks.is_empty() {
        return None;
    }
    let stats = sim.stats_at(now);
    Some(
        stats
            .models
            .iter()
            .filter(|m| {
                fallbacks
                    .iter()
                    .any(|(model, region)| *m.model_id == **model && *m.region == **region)
            })
            .map(|m| m.counts.admitted)
            .sum(),
    )
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
            let per_window = if tokens {
                primary.tpm
            } else {
                primary.rpm.unwrap_or(0)
            };
            let quota = per_window * windows.len() as u64;
            let utilisation = if scenario == 7 {
                primary.day_tokens as f64 / primary.tpd.max(1) as f64
            } else {
                used as f64 / quota.max(1) as f64
            };
            Totals {
                attempts,
                throttled,
                utilisation,
                whole_windows: windows.len(),
                quota_tokens: primary.tpm * windows.len() as u64,
            }
        }
        Backend::Llm(sim) => {
            let stats = sim.stats();
            // Whole minutes after the first and before the billing cap was reached.
            let span = minutes(scenario) as usize;
            let end = stats
                .billing_spent_at
                .map_or(span, |at| (at.as_secs() / 60) as usize)
                .min(span);
            let whole = 1..end.max(1);
            let used: u64 = whole
                .clone()
                .map(|m| stats.charged_per_minute.get(m).copied().unwrap_or(0))
                .sum();
            let quota = super::openai::TPM * whole.len() as u64;
            Totals {
                attempts: stats.calls(),
                throttled: stats.counts.throttled(),
                utilisation: used as f64 / quota.max(1) as f64,
                whole_windows: whole.len(),
                quota_tokens: quota,
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
    /// Scenario 8: the call's `insufficient_quota` answers.
    billing_refusals: u64,
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
    let handle = handle(&setup)?;
    let Clients {
        apps: clients,
        effective_limit,
        hot_key_report,
    } = build_clients(&setup, &handle, strategy, seed)?;
    let span_minutes = minutes(scenario);

    // Sample the simulator once a second of virtual time, for the plot and the DynamoDB
    // utilisation; scenario 6 also samples the client's own effective limit once a minute.
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let backend = setup.backend.clone();
        let done = Arc::clone(&done);
        let probe = effective_limit;
        let routes: Vec<(&'static str, &'static str)> = setup
            .plan
            .routes
            .iter()
            .map(|r| (r.model, r.region))
            .collect();
        tokio::spawn(async move {
            let mut series = Series::default();
            let mut limits = Vec::new();
            let mut daily = daily::Probe::default();
            let mut last = (0.0, 0, 0.0);
            let mut last_fallback = 0;
            let mut tick = start;
            let mut named_at = None;
            for second in 1u64.. {
                tick += secs(1);
                tokio::time::sleep_until(tick).await;
                let now = cumulative(scenario, &backend, tick);
                series.admitted.push(now.0 - last.0);
                series.throttled.push(now.1 - last.1);
                series.neighbour.push(now.2 - last.2);
                last = now;
                if let Some(served) = fallback_admitted(&backend, &routes, tick) {
                    series.fallback.push(served - last_fallback);
                    last_fallback = served;
                }
                if let (7, Backend::Bedrock(sim)) = (scenario, &backend) {
                    daily.sample(second, &sim.stats_at(tick));
                }
                if let Some(names) = hot_key_report.as_ref().filter(|_| named_at.is_none()) {
                    if names(tick) {
                        named_at = Some(second);
                    }
                }
                if let Some(probe) = &probe {
                    if second % 60 == 0 && second / 60 <= span_minutes {
                        // In the unit the scenario's quota counts (and its plot draws).
                        let limit = probe(tick).and_then(|stats| {
                            if quota_rate(scenario).1 == "requests" {
                                stats.requests_limit
                            } else {
                                stats.units_limit
                            }
                        });
                        series.effective_limit.push(limit);
                        if scenario == 6 {
                            limits.push(limit);
                        }
                    }
                }
                if done.load(Ordering::Relaxed) {
                    break;
                }
            }
            (series, limits, daily, named_at)
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
            let refusals = Arc::new(AtomicU64::new(0));
            let ok = BILLING_REFUSALS
                .scope(Arc::clone(&refusals), client.oneshot(work))
                .await
                .is_ok();
            let latency = began.elapsed();
            results
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Done {
                    app,
                    latency,
                    ok,
                    billing_refusals: refusals.load(Ordering::Relaxed),
                });
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
    let (series, limits, daily_probe, named_at) = sampler.await?;

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
    let hot_key = match &setup.backend {
        Backend::Dynamo(sim) => Some(hot_key_columns(&sim.stats(), named_at)),
        _ => None,
    };
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
    let daily = match &setup.backend {
        Backend::Bedrock(sim) if scenario == 7 => Some(daily_probe.daily(&sim.stats())),
        _ => None,
    };
    let billing = match &setup.backend {
        Backend::Llm(sim) => {
            let stats = sim.stats();
            Some(BillingStop {
                spent_at_s: stats.billing_spent_at.map(|d| d.as_secs()),
                insufficient_quota_attempts: stats.insufficient_quota,
                retried_after_insufficient_quota: done
                    .iter()
                    .filter(|d| d.billing_refusals > 1)
                    .count() as u64,
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
            hot_key,
            shared,
            daily,
            billing,
        },
        series,
        whole_windows: totals.whole_windows,
    })
}

/// Scenario 5's columns from the simulator's statistics of its table.
fn hot_key_columns(stats: &tower_headroom::sim::DynamoStats, named_at: Option<u64>) -> HotKey {
    use tower_headroom::sim::ThrottlingReason as R;
    let table = &stats.tables[0];
    let (key_attempts, key_throttled) = table.key(super::dynamodb::HOT_KEY).map_or((0, 0), |k| {
        let throttled = k.reads_throttled + k.writes_throttled;
        (k.reads + k.writes + throttled, throttled)
    });
    let all = table.reads.throttled() + table.writes.throttled();
    HotKey {
        key_attempts,
        key_throttled,
        other_throttled: all - key_throttled,
        reads_throttled: table.reads.throttled(),
        key_range_throttles: table.throttled(R::TableReadKeyRangeThroughputExceeded)
            + table.throttled(R::TableWriteKeyRangeThroughputExceeded),
        provisioned_throttles: table.throttled(R::TableReadProvisionedThroughputExceeded)
            + table.throttled(R::TableWriteProvisionedThroughputExceeded),
        report_named_at_s: named_at,
    }
}

/// The nearest-rank percentile, in milliseconds (0 when there is nothing to rank).
fn percentile_ms(sorted: &[Duration], p: usize) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1].as_secs_f64() * 1e3
}
