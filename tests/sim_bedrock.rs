//! The Bedrock simulator: quota semantics at the window edges, reserve-then-settle with
//! burndown, error shapes and their classification, episodes, the concurrency cap, the output
//! model, the latency model on the paused clock, and configuration errors.
#![cfg(feature = "sim")]

use std::error::Error;
use std::fmt;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_headroom::classify::Classify;
use tower_headroom::sim::{
    BEDROCK_WINDOW, BedrockConfig, BedrockSim, Episode, ModelCall, ModelConfig, ModelReply,
    OutputLength, RandomEpisodes, SimClassifier, SimError, StopReason,
};
use tower_headroom::{BoxError, ConfigError, OutcomeKind, ThrottleScope};

const MODEL: &str = "anthropic.claude-3-5-sonnet";
const REGION: &str = "us-east-1";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn model(rpm: u64, tpm: u64) -> tower_headroom::sim::ModelConfigBuilder {
    ModelConfig::builder(MODEL, REGION)
        .rpm(rpm)
        .tpm(tpm)
        .output(OutputLength::Fixed { tokens: 100 })
}

/// A simulator whose windows start at `t0` (window phase zero): `[t0, t0 + 60 s)`, …
fn sim(config: ModelConfig, t0: Instant) -> BedrockSim {
    BedrockSim::builder()
        .model(config)
        .start(t0)
        .window_phase(Duration::ZERO)
        .seed(1)
        .build()
        .unwrap()
}

fn call(input: u64, max_tokens: u64) -> ModelCall {
    ModelCall::new(MODEL, REGION, input, max_tokens)
}

fn kind(err: &SimError) -> OutcomeKind {
    SimClassifier
        .classify(Err::<&ModelReply, _>(err as &(dyn Error + 'static)))
        .kind
}

#[test]
fn rpm_is_enforced_up_to_the_window_edge_and_resets_on_it() {
    let t0 = Instant::now();
    let sim = sim(model(3, 1_000_000).build().unwrap(), t0);
    let edge = t0 + BEDROCK_WINDOW;
    let just_before = edge - Duration::from_millis(1);
    // One early in the window, two at its very end: the window counts all three.
    drop(sim.start_call(&call(10, 100), t0).unwrap());
    drop(sim.start_call(&call(10, 100), just_before).unwrap());
    drop(sim.start_call(&call(10, 100), just_before).unwrap());
    let err = sim.start_call(&call(10, 100), just_before).unwrap_err();
    assert_eq!(err.status(), 429);
    assert_eq!(err.code(), "ThrottlingException");
    assert_eq!(
        err.message(),
        "Too many requests, please wait before trying again."
    );
    // The next window starts exactly at 60 s.
    for _ in 0..3 {
        drop(sim.start_call(&call(10, 100), edge).unwrap());
    }
    assert!(sim.start_call(&call(10, 100), edge + secs(59.9)).is_err());
    let stats = sim.stats_at(edge);
    let m = stats.model(MODEL, REGION).unwrap();
    assert_eq!(m.counts.admitted, 6);
    assert_eq!(m.counts.throttled_requests, 2);
    assert_eq!(m.windows.len(), 2);
    assert_eq!(m.windows[0].requests, 3);
    assert_eq!(m.windows[1].requests, 3);
}

#[test]
fn the_window_phase_puts_the_first_boundary_phase_after_the_start() {
    let t0 = Instant::now();
    let phase = secs(20.0);
    let sim = BedrockSim::builder()
        .model(model(1, 1_000_000).build().unwrap())
        .start(t0)
        .window_phase(phase)
        .build()
        .unwrap();
    assert_eq!(sim.window_phase(), phase);
    // Window 0 is [t0, t0 + 20 s), window 1 [t0 + 20 s, t0 + 80 s), window 2 from t0 + 80 s.
    assert_eq!(sim.window_bounds(0), (t0, t0 + phase));
    assert_eq!(sim.window_bounds(1), (t0 + phase, t0 + secs(80.0)));
    assert_eq!(sim.window_bounds(2), (t0 + secs(80.0), t0 + secs(140.0)));
    let at = |s: f64| sim.start_call(&call(10, 100), t0 + secs(s)).map(drop);
    at(0.0).unwrap();
    assert!(at(19.999).is_err(), "1 RPM: window 0 is spent");
    at(20.0).unwrap();
    assert!(at(60.0).is_err(), "window 1 runs to 80 s");
    assert!(at(79.999).is_err());
    at(80.0).unwrap();
    let stats = sim.stats_at(t0 + secs(80.0));
    let windows: Vec<(u64, u64)> = stats.models[0]
        .windows
        .iter()
        .map(|w| (w.requests, w.tokens))
        .collect();
    assert_eq!(windows, [(1, 110), (1, 110), (1, 110)]);
    assert_eq!(stats.models[0].counts.throttled_requests, 3);

    // A phase of zero: window 0 is whole.
    let zero = BedrockSim::builder()
        .model(model(1, 1_000_000).build().unwrap())
        .start(t0)
        .window_phase(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(zero.window_bounds(0), (t0, t0 + BEDROCK_WINDOW));
    assert_eq!(
        zero.window_bounds(1),
        (t0 + BEDROCK_WINDOW, t0 + secs(120.0))
    );
    drop(zero.start_call(&call(10, 100), t0).unwrap());
    assert!(zero.start_call(&call(10, 100), t0 + secs(59.999)).is_err());
    drop(
        zero.start_call(&call(10, 100), t0 + BEDROCK_WINDOW)
            .unwrap(),
    );

    // A phase of a whole window or more is a configuration error.
    let err = BedrockSim::builder()
        .model(model(1, 1_000_000).build().unwrap())
        .window_phase(BEDROCK_WINDOW)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "window_phase");
}

#[test]
fn the_default_window_phase_is_drawn_from_the_seed() {
    let t0 = Instant::now();
    let build = |seed: u64| {
        BedrockSim::builder()
            .model(model(1, 1_000_000).build().unwrap())
            .start(t0)
            .seed(seed)
            .build()
            .unwrap()
    };
    let phases: Vec<Duration> = (0..50).map(|seed| build(seed).window_phase()).collect();
    // The same for the same seed, within [0, 60 s), and spread over the window.
    assert_eq!(
        phases,
        (0..50)
            .map(|seed| build(seed).window_phase())
            .collect::<Vec<_>>()
    );
    assert!(phases.iter().all(|p| *p < BEDROCK_WINDOW), "{phases:?}");
    let mut distinct = phases.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() >= 45, "{phases:?}");
    assert!(phases.iter().any(|p| *p < secs(20.0)), "{phases:?}");
    assert!(phases.iter().any(|p| *p > secs(40.0)), "{phases:?}");
    assert_ne!(build(42).window_phase(), build(43).window_phase());

    // The boundary is where the phase says: a 1 RPM model admits again exactly there.
    let sim = build(42);
    let phase = sim.window_phase();
    assert!(!phase.is_zero());
    drop(sim.start_call(&call(10, 100), t0).unwrap());
    let just_before = t0 + phase - Duration::from_millis(1);
    assert!(sim.start_call(&call(10, 100), just_before).is_err());
    drop(sim.start_call(&call(10, 100), t0 + phase).unwrap());
    // An explicit phase overrides the seed's.
    let set = BedrockSim::builder()
        .model(model(1, 1_000_000).build().unwrap())
        .seed(42)
        .window_phase(secs(7.5))
        .build()
        .unwrap();
    assert_eq!(set.window_phase(), secs(7.5));
}

#[test]
fn reading_the_set_up_or_the_statistics_counts_as_an_inspection() {
    let t0 = Instant::now();
    let sim = sim(model(100, 1_000_000).build().unwrap(), t0);
    let clone = sim.clone();
    assert_eq!(sim.inspections(), 0);
    // Calls are not inspections.
    drop(clone.start_call(&call(10, 100), t0).unwrap().finish());
    assert_eq!(sim.inspections(), 0);
    let _ = clone.started_at();
    let _ = clone.window_phase();
    let _ = clone.window_bounds(3);
    let _ = clone.error_latency();
    let _ = clone.stats_at(t0);
    assert_eq!(sim.inspections(), 5);
    let _ = sim.stats();
    assert_eq!(clone.inspections(), 6);
}

#[test]
fn tpm_reserves_input_plus_max_tokens_at_start() {
    let t0 = Instant::now();
    let sim = sim(model(100, 10_000).build().unwrap(), t0);
    let a = sim.start_call(&call(1_000, 4_000), t0).unwrap();
    let b = sim.start_call(&call(1_000, 4_000), t0).unwrap();
    // Exactly at the quota: 10,000 reserved. One more token does not fit.
    let err = sim.start_call(&call(1, 1), t0).unwrap_err();
    assert_eq!(err.status(), 429);
    assert_eq!(err.code(), "ThrottlingException");
    assert_eq!(
        err.message(),
        "Too many tokens, please wait before trying again."
    );
    let stats = sim.stats_at(t0);
    let m = &stats.models[0];
    assert_eq!(m.windows[0].tokens, 10_000);
    assert_eq!(m.tokens_reserved, 10_000);
    assert_eq!(m.counts.throttled_tokens, 1);
    assert_eq!(m.in_flight, 2);
    drop((a, b));
    // The next window has the whole quota again.
    drop(
        sim.start_call(&call(1_000, 4_000), t0 + BEDROCK_WINDOW)
            .unwrap(),
    );
}

#[test]
fn settling_a_small_output_refunds_and_the_next_call_fits() {
    let t0 = Instant::now();
    let sim = sim(model(100, 10_000).build().unwrap(), t0);
    let a = sim.start_call(&call(1_000, 4_000), t0).unwrap();
    // 5,000 reserved: a call reserving 6,000 does not fit yet.
    assert_eq!(
        kind(&sim.start_call(&call(2_000, 4_000), t0).unwrap_err()),
        OutcomeKind::Throttled(ThrottleScope::Tokens)
    );
    let reply = a.finish();
    assert_eq!(reply.output_tokens, 100);
    assert_eq!(reply.stop_reason, StopReason::EndTurn);
    assert_eq!(reply.quota_tokens, 1_100);
    assert_eq!(sim.stats_at(t0).models[0].windows[0].tokens, 1_100);
    // Refunded 3,900: now it fits.
    let b = sim.start_call(&call(2_000, 4_000), t0).unwrap();
    drop(b.finish());
    let stats = sim.stats_at(t0);
    let m = &stats.models[0];
    assert_eq!(m.windows[0].tokens, 1_100 + 2_100);
    assert_eq!(m.tokens_settled, 3_200);
    assert_eq!(m.tokens_reserved, 11_000);
    assert_eq!(m.input_tokens, 3_000);
    assert_eq!(m.output_tokens, 200);
    assert_eq!(m.counts.completed, 2);
}

#[test]
fn burndown_settles_output_at_a_multiple_and_can_leave_the_window_in_debt() {
    let t0 = Instant::now();
    let config = model(100, 10_000)
        .burndown(5)
        .output(OutputLength::MaxTokens)
        .build()
        .unwrap();
    let sim = sim(config, t0);
    let reply = sim.start_call(&call(1_000, 2_000), t0).unwrap().finish();
    assert_eq!(reply.stop_reason, StopReason::MaxTokens);
    assert_eq!(reply.quota_tokens, 1_000 + 2_000 * 5);
    let stats = sim.stats_at(t0);
    assert_eq!(stats.models[0].windows[0].tokens, 11_000);
    // The window is over its quota: even the smallest call is throttled until it ends.
    let err = sim.start_call(&call(1, 1), t0 + secs(59.999)).unwrap_err();
    assert_eq!(kind(&err), OutcomeKind::Throttled(ThrottleScope::Tokens));
    drop(sim.start_call(&call(1, 1), t0 + BEDROCK_WINDOW).unwrap());
}

#[test]
fn a_settlement_after_the_window_closed_goes_to_the_window_it_was_reserved_in() {
    let t0 = Instant::now();
    let sim = sim(model(100, 10_000).build().unwrap(), t0);
    let late = sim
        .start_call(&call(1_000, 4_000), t0 + secs(59.0))
        .unwrap();
    let next = sim
        .start_call(&call(1_000, 4_000), t0 + secs(61.0))
        .unwrap();
    drop(late.finish());
    let stats = sim.stats_at(t0 + secs(61.0));
    let m = &stats.models[0];
    assert_eq!(m.windows[0].tokens, 1_100);
    assert_eq!(
        m.windows[1].tokens, 5_000,
        "the current window keeps its own count"
    );
    drop(next);
}

#[test]
fn a_reservation_above_tpm_is_throttled_like_any_other() {
    let t0 = Instant::now();
    let sim = sim(
        model(100, 5_000).max_output_tokens(4_096).build().unwrap(),
        t0,
    );
    let err = sim.start_call(&call(2_000, 4_000), t0).unwrap_err();
    assert_eq!(kind(&err), OutcomeKind::Throttled(ThrottleScope::Tokens));
}

/// An error wrapping another, as client stacks do.
#[derive(Debug)]
struct Wrapped(SimError);

impl fmt::Display for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("call failed")
    }
}

impl Error for Wrapped {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn every_rejection_has_the_bedrock_shape_and_classifies_as_intended() {
    let t0 = Instant::now();
    let overload_at = t0 + secs(100.0);
    let outage_at = t0 + secs(200.0);
    let config = model(1, 10_000)
        .max_output_tokens(4_096)
        .max_concurrency(1)
        .overload(Episode::new(secs(100.0), secs(10.0)))
        .outage(Episode::new(secs(200.0), secs(10.0)))
        .build()
        .unwrap();
    let sim = sim(config, t0);

    let unknown = sim
        .start_call(&ModelCall::new("no.such-model", REGION, 10, 10), t0)
        .unwrap_err();
    let other_region = sim
        .start_call(&ModelCall::new(MODEL, "eu-west-9", 10, 10), t0)
        .unwrap_err();
    let too_long = sim.start_call(&call(10, 4_097), t0).unwrap_err();
    let zero_max = sim.start_call(&call(10, 0), t0).unwrap_err();
    let held = sim.start_call(&call(10, 10), t0).unwrap();
    let connections = sim.start_call(&call(10, 10), t0).unwrap_err();
    drop(held);
    let requests = sim.start_call(&call(10, 10), t0).unwrap_err();
    let tokens = sim
        .start_call(&call(9_000, 4_000), t0 + BEDROCK_WINDOW)
        .unwrap_err();
    let overloaded = sim.start_call(&call(10, 10), overload_at).unwrap_err();
    let unavailable = sim.start_call(&call(10, 10), outage_at).unwrap_err();

    let overload_message =
        format!("Model {MODEL} is currently overloaded. Please try again later.");
    let cases: [(&SimError, u16, &str, &str, OutcomeKind); 10] = [
        (
            &unknown,
            400,
            "ValidationException",
            "The provided model identifier is invalid.",
            OutcomeKind::Fatal,
        ),
        (
            &other_region,
            400,
            "ValidationException",
            "The provided model identifier is invalid.",
            OutcomeKind::Fatal,
        ),
        (
            &too_long,
            400,
            "ValidationException",
            "The maximum tokens you requested exceeds the model limit of 4096. Try again with a \
             maximum tokens value that is between 1 and 4096.",
            OutcomeKind::Fatal,
        ),
        (
            &zero_max,
            400,
            "ValidationException",
            "The maximum tokens you requested exceeds the model limit of 4096. Try again with a \
             maximum tokens value that is between 1 and 4096.",
            OutcomeKind::Fatal,
        ),
        (
            &connections,
            503,
            "ServiceUnavailableException",
            "Too many connections",
            OutcomeKind::Unavailable,
        ),
        (
            &requests,
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
            OutcomeKind::Throttled(ThrottleScope::Requests),
        ),
        (
            &tokens,
            429,
            "ThrottlingException",
            "Too many tokens, please wait before trying again.",
            OutcomeKind::Throttled(ThrottleScope::Tokens),
        ),
        (
            &overloaded,
            503,
            "ServiceUnavailableException",
            &overload_message,
            OutcomeKind::Overloaded,
        ),
        (
            &unavailable,
            503,
            "ServiceUnavailableException",
            "Service temporarily unavailable",
            OutcomeKind::Unavailable,
        ),
        (
            &unavailable,
            503,
            "ServiceUnavailableException",
            "Service temporarily unavailable",
            OutcomeKind::Unavailable,
        ),
    ];
    for (err, status, code, message, expected) in cases {
        assert_eq!(err.status(), status, "{err}");
        assert_eq!(err.code(), code, "{err}");
        assert_eq!(err.message(), message);
        assert_eq!(err.to_string(), format!("{code}: {message}"));
        assert_eq!(err.retry_after(), None, "Bedrock sends no Retry-After");
        // The same answer through every path a client stack may hand it over.
        assert_eq!(err.outcome().kind, expected, "{err}");
        assert_eq!(kind(err), expected, "{err}");
        let boxed: BoxError = Box::new(err.clone());
        assert_eq!(
            SimClassifier.classify(Err::<&ModelReply, _>(&*boxed)).kind,
            expected
        );
        let wrapped = Wrapped(err.clone());
        assert_eq!(
            SimClassifier.classify(Err::<&ModelReply, _>(&wrapped)).kind,
            expected
        );
    }
    let stats = sim.stats_at(outage_at);
    let c = stats.models[0].counts;
    assert_eq!(c.invalid, 2, "unknown models are counted per caller only");
    assert_eq!(c.too_many_connections, 1);
    assert_eq!(c.throttled_requests, 1);
    assert_eq!(c.throttled_tokens, 1);
    assert_eq!(c.overloaded, 1);
    assert_eq!(c.unavailable, 1);
    assert_eq!(c.admitted, 1);
    assert_eq!(c.calls(), 8);
}

#[test]
fn a_reply_classifies_as_success_and_foreign_errors_fall_through() {
    let reply = ModelReply {
        model_id: MODEL.into(),
        region: REGION.into(),
        input_tokens: 1,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        output_tokens: 1,
        stop_reason: StopReason::EndTurn,
        latency: Duration::ZERO,
        quota_tokens: 1,
    };
    assert!(SimClassifier.classify(Ok(&reply)).is_success());
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert_eq!(
        SimClassifier.classify(Err::<&ModelReply, _>(&reset)).kind,
        OutcomeKind::Transient
    );
}

#[test]
fn episodes_start_and_end_on_time() {
    let t0 = Instant::now();
    let config = model(1_000, 1_000_000)
        .overload(Episode::new(secs(120.0), secs(60.0)))
        .outage(Episode::new(secs(300.0), secs(30.0)))
        // Overlapping: the outage wins.
        .overload(Episode::new(secs(320.0), secs(20.0)))
        .build()
        .unwrap();
    let sim = sim(config, t0);
    let at = |s: f64| sim.start_call(&call(1, 1), t0 + secs(s)).map(drop);
    let expect = [
        (119.999, None),
        (120.0, Some(OutcomeKind::Overloaded)),
        (179.999, Some(OutcomeKind::Overloaded)),
        (180.0, None),
        (299.999, None),
        (300.0, Some(OutcomeKind::Unavailable)),
        (325.0, Some(OutcomeKind::Unavailable)),
        (329.999, Some(OutcomeKind::Unavailable)),
        (330.0, Some(OutcomeKind::Overloaded)),
        (339.999, Some(OutcomeKind::Overloaded)),
        (340.0, None),
    ];
    for (s, expected) in expect {
        assert_eq!(at(s).err().map(|e| kind(&e)), expected, "at {s} s");
    }
}

#[test]
fn random_overloads_depend_on_seed_and_time_only() {
    let t0 = Instant::now();
    let random = RandomEpisodes {
        mean_gap: secs(300.0),
        duration: secs(20.0),
    };
    let build = |seed| {
        BedrockSim::builder()
            .model(
                model(1_000_000, 100_000_000)
                    .random_overloads(random)
                    .build()
                    .unwrap(),
            )
            .start(t0)
            .seed(seed)
            .build()
            .unwrap()
    };
    // Probe every 100 ms for two hours; one simulator also gets extra traffic in between.
    let pattern = |sim: &BedrockSim, extra: bool| -> Vec<bool> {
        (0..72_000u64)
            .map(|i| {
                let now = t0 + Duration::from_millis(i * 100);
                if extra {
                    let _ = sim.start_call(&call(1, 1), now);
                }
                sim.start_call(&call(1, 1), now).is_err()
            })
            .collect()
    };
    let a = pattern(&build(9), false);
    let b = pattern(&build(9), true);
    let c = pattern(&build(10), false);
    assert_eq!(a, b);
    assert_ne!(a, c, "another seed, other episodes");
    // Every episode lasts exactly 20 s (200 probes).
    let mut runs = Vec::new();
    let mut run = 0;
    for &overloaded in &a {
        if overloaded {
            run += 1;
        } else if run > 0 {
            runs.push(run);
            run = 0;
        }
    }
    assert!(runs.len() >= 5, "two hours at a 300 s mean gap: {runs:?}");
    assert!(runs.iter().all(|&r| r == 200), "{runs:?}");
}

#[test]
fn the_concurrency_cap_answers_too_many_connections_until_a_slot_frees() {
    let t0 = Instant::now();
    let sim = sim(
        model(1_000, 1_000_000).max_concurrency(2).build().unwrap(),
        t0,
    );
    let a = sim.start_call(&call(1, 10), t0).unwrap();
    let b = sim.start_call(&call(1, 10), t0).unwrap();
    let err = sim.start_call(&call(1, 10), t0).unwrap_err();
    assert_eq!(err.message(), "Too many connections");
    assert_eq!(kind(&err), OutcomeKind::Unavailable);
    drop(a.finish());
    let c = sim.start_call(&call(1, 10), t0).unwrap();
    // A call dropped mid-flight frees its slot and settles, but does not count as completed.
    drop(b);
    let d = sim.start_call(&call(1, 10), t0).unwrap();
    assert!(sim.start_call(&call(1, 10), t0).is_err());
    drop((c, d));
    let stats = sim.stats_at(t0);
    let m = &stats.models[0];
    assert_eq!(m.peak_in_flight, 2);
    assert_eq!(m.in_flight, 0);
    assert_eq!(m.counts.admitted, 4);
    assert_eq!(m.counts.completed, 1);
    assert_eq!(m.counts.too_many_connections, 2);
    assert_eq!(m.tokens_settled, 4 * 11);
}

#[test]
fn per_caller_statistics() {
    let t0 = Instant::now();
    let sim = sim(model(2, 1_000_000).build().unwrap(), t0);
    drop(
        sim.start_call(&call(10, 100).caller("a"), t0)
            .unwrap()
            .finish(),
    );
    drop(sim.start_call(&call(10, 100).caller("b"), t0).unwrap());
    assert!(sim.start_call(&call(10, 100).caller("a"), t0).is_err());
    assert!(sim.start_call(&call(10, 100), t0).is_err());
    let stats = sim.stats_at(t0);
    let a = stats.caller("a").unwrap();
    assert_eq!((a.counts.admitted, a.counts.completed), (1, 1));
    assert_eq!(a.counts.throttled_requests, 1);
    assert_eq!(a.units, 110.0);
    let b = stats.caller("b").unwrap();
    assert_eq!((b.counts.admitted, b.counts.completed), (1, 0));
    assert_eq!(
        stats.callers.len(),
        2,
        "unlabelled calls have no caller entry"
    );
    assert_eq!(stats.models[0].counts.calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_service_takes_the_latency_model_on_the_paused_clock() {
    let config = model(1, 1_000_000)
        .ttft(Duration::from_millis(300))
        .per_output_token(Duration::from_millis(20))
        .output(OutputLength::Fixed { tokens: 50 })
        .build()
        .unwrap();
    let sim = BedrockSim::builder()
        .model(config)
        .error_latency(Duration::from_millis(15))
        .window_phase(Duration::ZERO)
        .build()
        .unwrap();
    let mut svc = sim.clone();
    let start = Instant::now();
    let reply = svc
        .ready()
        .await
        .unwrap()
        .call(call(10, 100))
        .await
        .unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(300 + 50 * 20));
    assert_eq!(reply.latency, Duration::from_millis(1_300));
    assert_eq!(reply.output_tokens, 50);
    assert_eq!(reply.input_tokens, 10);
    assert_eq!(&*reply.model_id, MODEL);
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(call(10, 100))
        .await
        .unwrap_err();
    assert_eq!(start.elapsed(), Duration::from_millis(15));
    assert_eq!(kind(&err), OutcomeKind::Throttled(ThrottleScope::Requests));
    // Calls in flight hold their reservation until they complete.
    tokio::time::advance(BEDROCK_WINDOW).await;
    let fut = svc.ready().await.unwrap().call(call(10, 100));
    assert_eq!(sim.stats().models[0].in_flight, 1);
    fut.await.unwrap();
    assert_eq!(sim.stats().models[0].in_flight, 0);
}

proptest! {
    #[test]
    fn output_is_never_above_max_tokens_nor_below_one(
        seed in any::<u64>(),
        max_tokens in 1u64..=8_192,
        which in 0usize..4,
        a in 0u64..20_000,
        b in 0u64..20_000,
        sigma in 0.0f64..4.0,
    ) {
        let output = match which {
            0 => OutputLength::Fixed { tokens: a },
            1 => OutputLength::Uniform { min: a.min(b), max: a.max(b) },
            2 => OutputLength::LogNormal { median: a.max(1), sigma },
            _ => OutputLength::MaxTokens,
        };
        let t0 = Instant::now();
        let config = ModelConfig::builder(MODEL, REGION)
            .rpm(1_000)
            .tpm(1_000_000)
            .max_output_tokens(8_192)
            .output(output)
            .build()
            .unwrap();
        let sim = BedrockSim::builder().model(config).seed(seed).start(t0).build().unwrap();
        for _ in 0..20 {
            let reply = sim.start_call(&call(1, max_tokens), t0).unwrap().finish();
            prop_assert!(reply.output_tokens >= 1);
            prop_assert!(reply.output_tokens <= max_tokens);
            prop_assert_eq!(
                reply.stop_reason == StopReason::MaxTokens,
                reply.output_tokens == max_tokens
            );
        }
    }
}

#[test]
fn output_draws_repeat_for_a_seed_and_follow_the_distribution() {
    let draws = |seed| {
        let mut rng = fastrand::Rng::with_seed(seed);
        let dist = OutputLength::LogNormal {
            median: 300,
            sigma: 0.8,
        };
        (0..2_001)
            .map(|_| dist.sample(&mut rng, 4_096))
            .collect::<Vec<_>>()
    };
    let mut a = draws(5);
    assert_eq!(a, draws(5));
    assert_ne!(a, draws(6));
    a.sort_unstable();
    let median = a[1_000];
    assert!((250..=350).contains(&median), "median {median}");
    let mut rng = fastrand::Rng::with_seed(1);
    for _ in 0..1_000 {
        let v = OutputLength::Uniform { min: 10, max: 20 }.sample(&mut rng, 4_096);
        assert!((10..=20).contains(&v));
    }
}

fn config_error(result: Result<ModelConfig, ConfigError>) -> ConfigError {
    result.expect_err("the configuration should be rejected")
}

#[test]
fn bad_configuration_is_a_config_error_naming_field_and_value() {
    let cases: Vec<(ConfigError, &str, &str)> = vec![
        (
            config_error(ModelConfig::builder("", REGION).rpm(1).tpm(10_000).build()),
            "model_id",
            "\"\"",
        ),
        (
            config_error(ModelConfig::builder(MODEL, " ").rpm(1).tpm(10_000).build()),
            "region",
            "\" \"",
        ),
        (
            config_error(
                ModelConfig::builder(MODEL, REGION)
                    .rpm(0)
                    .tpm(10_000)
                    .build(),
            ),
            "rpm",
            "Some(0)",
        ),
        (
            config_error(ModelConfig::builder(MODEL, REGION).rpm(1).build()),
            "tpm",
            "0",
        ),
        (
            config_error(model(1, 10_000).burndown(0).build()),
            "burndown",
            "0",
        ),
        (
            config_error(model(1, 10_000).tpd(9_999).build()),
            "tpd",
            "9999",
        ),
        (
            config_error(model(1, 10_000).max_output_tokens(0).build()),
            "max_output_tokens",
            "0",
        ),
        (
            config_error(model(1, 10_000).max_concurrency(0).build()),
            "max_concurrency",
            "Some(0)",
        ),
        (
            config_error(
                model(1, 10_000)
                    .output(OutputLength::Uniform { min: 5, max: 4 })
                    .build(),
            ),
            "output",
            "Uniform { min: 5, max: 4 }",
        ),
        (
            config_error(
                model(1, 10_000)
                    .output(OutputLength::LogNormal {
                        median: 10,
                        sigma: f64::NAN,
                    })
                    .build(),
            ),
            "output",
            "NaN",
        ),
        (
            config_error(
                model(1, 10_000)
                    .overload(Episode::new(secs(5.0), Duration::ZERO))
                    .build(),
            ),
            "overloads",
            "duration: 0ns",
        ),
        (
            config_error(
                model(1, 10_000)
                    .random_overloads(RandomEpisodes {
                        mean_gap: Duration::ZERO,
                        duration: secs(1.0),
                    })
                    .build(),
            ),
            "random_overloads",
            "mean_gap: 0ns",
        ),
    ];
    for (err, field, value) in cases {
        assert_eq!(err.field(), field, "{err}");
        assert!(err.value().contains(value), "{err}");
        let shown = err.to_string();
        assert!(shown.contains(field) && shown.contains(value), "{shown}");
    }

    let empty = BedrockSim::builder().build().unwrap_err();
    assert_eq!(empty.field(), "models");
    let twice = BedrockSim::builder()
        .model(model(1, 10_000).build().unwrap())
        .model(model(2, 20_000).build().unwrap())
        .build()
        .unwrap_err();
    assert_eq!(twice.field(), "models");
    assert!(twice.value().contains(MODEL), "{twice}");
}

#[test]
fn configuration_files_map_onto_the_config_and_are_validated() {
    let config: BedrockConfig = serde_json::from_str(
        r#"{
            "seed": 3,
            "error_latency_ms": 2.5,
            "window_phase_s": 12.5,
            "models": [{
                "model_id": "m", "region": "r", "rpm": 50, "tpm": 100000, "burndown": 5,
                "max_output_tokens": 8192, "ttft_ms": 250, "per_output_token_ms": 12.5,
                "output": { "kind": "log_normal", "median": 300, "sigma": 0.8 },
                "max_concurrency": 16,
                "overloads": [{ "start_s": 120, "duration_s": 120 }],
                "random_overloads": { "mean_gap_s": 600, "duration_s": 30 },
                "outages": [{ "start_s": 300.5, "duration_s": 60 }]
            }]
        }"#,
    )
    .unwrap();
    assert_eq!(config.seed, 3);
    assert_eq!(config.error_latency, Duration::from_micros(2_500));
    assert_eq!(config.window_phase, Some(Duration::from_millis(12_500)));
    let m = &config.models[0];
    assert_eq!(m.ttft, Duration::from_millis(250));
    assert_eq!(m.per_output_token, Duration::from_micros(12_500));
    assert_eq!(m.burndown, 5);
    assert_eq!(
        m.output,
        OutputLength::LogNormal {
            median: 300,
            sigma: 0.8
        }
    );
    assert_eq!(m.outages[0], Episode::new(secs(300.5), secs(60.0)));
    assert_eq!(m.max_concurrency, Some(16));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let built = BedrockSim::from_config(config.clone()).unwrap();
    assert_eq!(built.window_phase(), Duration::from_millis(12_500));

    // Defaults.
    let minimal: BedrockConfig = serde_json::from_str(
        r#"{ "models": [{ "model_id": "m", "region": "r", "rpm": 1, "tpm": 5000 }] }"#,
    )
    .unwrap();
    assert_eq!(minimal.models[0].burndown, 1);
    assert_eq!(minimal.models[0].max_output_tokens, 4_096);
    assert_eq!(minimal.error_latency, Duration::from_millis(10));
    assert_eq!(minimal.window_phase, None, "drawn from the seed when built");
    let phase_error = BedrockSim::from_config(
        serde_json::from_str::<BedrockConfig>(
            r#"{ "window_phase_s": 60, "models": [{ "model_id": "m", "region": "r", "rpm": 1, "tpm": 5000 }] }"#,
        )
        .unwrap(),
    )
    .unwrap_err();
    assert_eq!(phase_error.field(), "window_phase");

    // Deserialized values go through the same validation.
    let bad: BedrockConfig = serde_json::from_str(
        r#"{ "models": [{ "model_id": "m", "region": "r", "rpm": 1, "tpm": 5000, "burndown": 0 }] }"#,
    )
    .unwrap();
    let err = BedrockSim::from_config(bad).unwrap_err();
    assert_eq!(err.field(), "burndown");

    // Unknown fields and impossible durations are named.
    let unknown = serde_json::from_str::<BedrockConfig>(
        r#"{ "models": [{ "model_id": "m", "region": "r", "rpm": 1, "tpm": 5000, "tmp": 1 }] }"#,
    )
    .unwrap_err();
    assert!(unknown.to_string().contains("tmp"), "{unknown}");
    let negative = serde_json::from_str::<BedrockConfig>(
        r#"{ "models": [{ "model_id": "m", "region": "r", "rpm": 1, "tpm": 5000, "ttft_ms": -4 }] }"#,
    )
    .unwrap_err();
    assert!(negative.to_string().contains("-4"), "{negative}");
}
