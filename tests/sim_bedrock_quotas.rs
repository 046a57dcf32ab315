//! The Bedrock simulator's quotas as bedrock-runtime enforces them today: no requests per
//! minute unless configured, tokens per day per model (and account-wide per region), the
//! reservation of `input + cache + maxTokens` (the model's maximum when the call sets none),
//! settlement at `input + cache write + output × burndown`, and the daily message.
#![cfg(feature = "sim")]

use std::time::Duration;

use tokio::time::Instant;
use tower::ServiceExt;
use tower_headroom::OutcomeKind;
use tower_headroom::bedrock::ModelTable;
use tower_headroom::sim::{
    BEDROCK_DAY, BEDROCK_WINDOW, BedrockSim, DAILY_MESSAGE, ModelCall, ModelConfig, OutputLength,
    SimError,
};

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SONNET4: &str = "us.anthropic.claude-sonnet-4-20250514-v1:0";
const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

fn sim(models: Vec<ModelConfig>, t0: Instant) -> BedrockSim {
    BedrockSim::builder()
        .models(models)
        .start(t0)
        .window_phase(Duration::ZERO)
        .seed(3)
        .build()
        .unwrap()
}

fn assert_daily(err: &SimError) {
    assert_eq!(err.status(), 429);
    assert_eq!(err.code(), "ThrottlingException");
    assert_eq!(err.message(), DAILY_MESSAGE);
    assert_eq!(
        err.message(),
        "Too many tokens per day, please wait before trying again."
    );
    assert!(matches!(err.outcome().kind, OutcomeKind::Throttled(_)));
}

#[test]
fn no_rpm_by_default_many_tiny_calls_in_one_minute_are_admitted() {
    let t0 = Instant::now();
    let config = ModelConfig::builder(HAIKU, EAST)
        .tpm(1_000_000)
        .output(OutputLength::Fixed { tokens: 5 })
        .build()
        .unwrap();
    assert_eq!(config.rpm, None);
    let sim = sim(vec![config], t0);
    // 5,000 calls of 20 tokens in the same second: 100,000 tokens, well inside the TPM.
    for _ in 0..5_000 {
        sim.start_call(&ModelCall::new(HAIKU, EAST, 10, 10), t0)
            .unwrap()
            .finish();
    }
    let stats = sim.stats_at(t0);
    let model = &stats.models[0];
    assert_eq!(model.counts.admitted, 5_000);
    assert_eq!(model.counts.throttled(), 0);
    assert_eq!(model.rpm, None);
    assert_eq!(model.request_utilization(), None);
    assert_eq!(model.windows[0].requests, 5_000);
}

#[test]
fn rpm_when_configured_throttles_with_the_requests_message() {
    let t0 = Instant::now();
    let config = ModelConfig::builder(HAIKU, EAST)
        .rpm(3)
        .tpm(1_000_000)
        .build()
        .unwrap();
    let sim = sim(vec![config], t0);
    let call = ModelCall::new(HAIKU, EAST, 10, 10);
    for _ in 0..3 {
        sim.start_call(&call, t0).unwrap().finish();
    }
    let err = sim.start_call(&call, t0).unwrap_err();
    assert_eq!(
        err.message(),
        "Too many requests, please wait before trying again."
    );
    // The next window admits again.
    sim.start_call(&call, t0 + BEDROCK_WINDOW).unwrap().finish();
    let stats = sim.stats_at(t0 + BEDROCK_WINDOW);
    assert_eq!(stats.models[0].counts.throttled_requests, 1);
    assert_eq!(stats.models[0].request_utilization(), Some(4.0 / 6.0));
}

/// A call every 10 s for a whole simulated day, on the paused clock: the day admits exactly
/// its tokens per day (100 calls of 1,000 tokens), then answers every call with the daily
/// message until the day ends; the next day admits again, and the day's state is one window.
#[tokio::test(start_paused = true)]
async fn the_day_admits_exactly_tpd_then_answers_the_daily_message() {
    let t0 = Instant::now();
    let config = ModelConfig::builder(HAIKU, EAST)
        .tpm(10_000)
        .tpd(100_000)
        .output(OutputLength::MaxTokens)
        .ttft(Duration::from_millis(100))
        .per_output_token(Duration::from_millis(1))
        .build()
        .unwrap();
    assert_eq!(config.tokens_per_day(), 100_000);
    let sim = sim(vec![config], t0);
    // Input 500 and output 500 (burndown 1): reserved and settled at 1,000.
    let call = ModelCall::new(HAIKU, EAST, 500, 500);
    let every = Duration::from_secs(10);
    let calls_a_day = BEDROCK_DAY.as_secs() / every.as_secs();
    let (mut admitted, mut daily, mut first_daily) = (0u64, 0u64, None);
    for i in 0..calls_a_day {
        tokio::time::sleep_until(t0 + every * i as u32).await;
        match sim.clone().oneshot(call.clone()).await {
            Ok(reply) => {
                assert_eq!(reply.quota_tokens, 1_000);
                admitted += 1;
            }
            Err(err) => {
                assert_daily(&err);
                first_daily.get_or_insert(i);
                daily += 1;
            }
        }
    }
    assert_eq!(admitted, 100);
    assert_eq!(first_daily, Some(100));
    assert_eq!(daily, calls_a_day - 100);
    let stats = sim.stats_at(t0 + BEDROCK_DAY - Duration::from_millis(1));
    let model = &stats.models[0];
    assert_eq!(
        (model.day, model.day_tokens, model.tpd),
        (0, 100_000, 100_000)
    );
    assert_eq!(model.counts.throttled_daily, daily);
    assert_eq!(model.counts.throttled_tokens, 0);
    assert_eq!(model.counts.throttled(), daily);

    // The next day: admitted again, counted in a fresh day.
    tokio::time::sleep_until(t0 + BEDROCK_DAY).await;
    sim.clone().oneshot(call.clone()).await.unwrap();
    let stats = sim.stats();
    assert_eq!(
        (stats.models[0].day, stats.models[0].day_tokens),
        (1, 1_000)
    );
}

/// Sonnet 4 from the model table: burndown 5 and 64,000 output tokens. A call without
/// `maxTokens` reserves all 64,000 and so is throttled long before the tokens it uses would
/// be; the same call with `maxTokens` 1,000 still fits. Settlement brings the reservation
/// down to what the call used.
#[test]
fn a_reservation_without_max_tokens_takes_the_models_maximum() {
    let t0 = Instant::now();
    let config = ModelConfig::builder(SONNET4, EAST)
        .tpm(200_000)
        .output(OutputLength::Fixed { tokens: 100 })
        .build()
        .unwrap();
    let spec = ModelTable::builtin().spec(SONNET4);
    assert_eq!((config.burndown, config.max_output_tokens), (5, 64_000));
    assert_eq!(
        (config.burndown, config.max_output_tokens),
        (spec.burndown, spec.max_output_tokens)
    );
    let sim = sim(vec![config], t0);
    let uncapped = ModelCall::new(SONNET4, EAST, 1_000, 0).without_max_tokens();
    assert_eq!(uncapped.max_tokens, None);
    let held: Vec<_> = (0..3)
        .map(|_| sim.start_call(&uncapped, t0).unwrap())
        .collect();
    assert_eq!(sim.stats_at(t0).models[0].windows[0].tokens, 3 * 65_000);
    // A fourth uncapped call would reserve 260,000: throttled while 5,000 tokens are used.
    let err = sim.start_call(&uncapped, t0).unwrap_err();
    assert_eq!(
        err.message(),
        "Too many tokens, please wait before trying again."
    );
    let capped = ModelCall::new(SONNET4, EAST, 1_000, 1_000);
    let small = sim.start_call(&capped, t0).unwrap();

    // Settled: 1,000 input + 100 output × 5 each.
    let replies: Vec<_> = held.into_iter().map(|c| c.finish()).collect();
    assert!(replies.iter().all(|r| r.quota_tokens == 1_500));
    assert_eq!(small.finish().quota_tokens, 1_500);
    let stats = sim.stats_at(t0);
    let model = &stats.models[0];
    assert_eq!(model.tokens_reserved, 3 * 65_000 + 2_000);
    assert_eq!(model.tokens_settled, 4 * 1_500);
    assert_eq!(model.windows[0].tokens, 4 * 1_500);
    assert_eq!(model.day_tokens, 4 * 1_500);
    assert_eq!(model.counts.throttled_tokens, 1);
    // A maxTokens above the model's maximum is refused, as Bedrock refuses it.
    let err = sim
        .start_call(&ModelCall::new(SONNET4, EAST, 1, 64_001), t0)
        .unwrap_err();
    assert_eq!(err.code(), "ValidationException");
}

/// Cache reads are reserved and released, cache writes reserved and charged, output charged
/// at the burndown: `input + cache write + output × 5`.
#[test]
fn settlement_charges_input_cache_writes_and_output_at_the_burndown() {
    let t0 = Instant::now();
    let config = ModelConfig::builder(SONNET4, EAST)
        .tpm(200_000)
        .output(OutputLength::Fixed { tokens: 100 })
        .build()
        .unwrap();
    let sim = sim(vec![config], t0);
    let call = ModelCall::new(SONNET4, EAST, 200, 500).cache_tokens(5_000, 1_000);
    let in_flight = sim.start_call(&call, t0).unwrap();
    // Reserved: 200 + 5,000 + 1,000 + 500.
    assert_eq!(sim.stats_at(t0).models[0].windows[0].tokens, 6_700);
    assert_eq!(sim.stats_at(t0).models[0].day_tokens, 6_700);
    let reply = in_flight.finish();
    assert_eq!(reply.quota_tokens, 200 + 1_000 + 100 * 5);
    assert_eq!(
        (
            reply.input_tokens,
            reply.cache_read_tokens,
            reply.cache_write_tokens
        ),
        (200, 5_000, 1_000)
    );
    let stats = sim.stats_at(t0);
    let model = &stats.models[0];
    assert_eq!(model.windows[0].tokens, 1_700);
    assert_eq!(model.day_tokens, 1_700);
    assert_eq!(model.tokens_reserved, 6_700);
    assert_eq!(model.tokens_settled, 1_700);
    assert_eq!(
        (model.cache_read_tokens, model.cache_write_tokens),
        (5_000, 1_000)
    );
}

/// The account-wide tokens per day counts every model of a region, and only that region.
#[test]
fn the_account_wide_day_spans_the_models_of_a_region() {
    let t0 = Instant::now();
    let model = |id: &str, region: &str| {
        ModelConfig::builder(id, region)
            .tpm(100_000)
            .output(OutputLength::MaxTokens)
            .build()
            .unwrap()
    };
    let sim = BedrockSim::builder()
        .models([model(HAIKU, EAST), model(SONNET4, EAST), model(HAIKU, WEST)])
        .account_tpd(3_000)
        .start(t0)
        .window_phase(Duration::ZERO)
        .build()
        .unwrap();
    // Two Haiku calls of 1,000 tokens (burndown 1), one Sonnet 4 call reserving 500 and
    // settling at 499 + 1 × 5.
    let call = |id: &str, region: &str, input, max| ModelCall::new(id, region, input, max);
    sim.start_call(&call(HAIKU, EAST, 500, 500), t0)
        .unwrap()
        .finish();
    sim.start_call(&call(HAIKU, EAST, 500, 500), t0)
        .unwrap()
        .finish();
    let sonnet = sim
        .start_call(&call(SONNET4, EAST, 499, 1), t0)
        .unwrap()
        .finish();
    assert_eq!(sonnet.quota_tokens, 499 + 5);
    // 2,504 used in us-east-1: a 500-token reservation does not fit on either model.
    assert_daily(
        &sim.start_call(&call(SONNET4, EAST, 400, 100), t0)
            .unwrap_err(),
    );
    assert_daily(
        &sim.start_call(&call(HAIKU, EAST, 400, 100), t0)
            .unwrap_err(),
    );
    sim.start_call(&call(HAIKU, EAST, 400, 96), t0)
        .unwrap()
        .finish();
    // us-west-2 has its own day.
    sim.start_call(&call(HAIKU, WEST, 2_000, 1_000), t0)
        .unwrap()
        .finish();
    let stats = sim.stats_at(t0);
    assert_eq!(stats.models[0].counts.throttled_daily, 1);
    assert_eq!(stats.models[1].counts.throttled_daily, 1);
    assert_eq!(stats.models[2].counts.throttled_daily, 0);
    // The per-model days are their own: 100,000 TPM × 1,440 each.
    assert_eq!(stats.models[0].tpd, 100_000 * 1_440);
    let east = stats.region(EAST).unwrap();
    assert_eq!(
        (east.account_tpd, east.day, east.day_tokens),
        (Some(3_000), 0, 3_000)
    );
    assert_eq!(stats.region(WEST).unwrap().day_tokens, 3_000);
    assert_eq!(stats.regions.len(), 2);
}

#[test]
fn bad_quotas_are_config_errors() {
    let base = || ModelConfig::builder(HAIKU, EAST).tpm(10_000);
    let err = base().tpd(9_999).build().unwrap_err();
    assert_eq!((err.field(), err.value()), ("tpd", "9999"));
    let err = base().rpm(0).build().unwrap_err();
    assert_eq!(err.field(), "rpm");
    let err = BedrockSim::builder()
        .model(base().build().unwrap())
        .account_tpd(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "account_tpd");
    // A TPM below the model's maximum output is allowed: calls without maxTokens are then
    // throttled every time, as on Bedrock.
    let config = ModelConfig::builder(SONNET4, EAST)
        .tpm(50_000)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let sim = sim(vec![config], t0);
    let uncapped = ModelCall::new(SONNET4, EAST, 10, 0).without_max_tokens();
    assert_eq!(sim.start_call(&uncapped, t0).unwrap_err().status(), 429);
}
