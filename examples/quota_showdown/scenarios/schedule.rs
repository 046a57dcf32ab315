//! The pieces every scenario's set-up is made of: arrival schedules, the simulated models'
//! common shape, the interactive work, and the console a simulated account shows.

use std::time::Duration;

use tower::BoxError;
use tower_headroom::sim::{BedrockSim, ModelConfig, ModelConfigBuilder, OutputLength};

use super::{Arrival, Backend, Console, ModelQuota, Work};

/// The random generator of one application's schedule (or the neighbour's), from the seed.
pub(super) fn rng(seed: u64, app: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed ^ (0x5A17_0000 + app))
}

/// Evenly spaced arrivals at `per_minute(t)` a minute with ±20% jitter, from `from` until
/// `end`.
pub(super) fn arrivals(
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

pub(super) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A Claude-like model with `tpm` tokens per minute and no request quota (bedrock-runtime
/// enforces none): outputs log-normal around 300 tokens, up to 8,192.
pub(super) fn model(id: &str, region: &str, tpm: u64) -> ModelConfigBuilder {
    ModelConfig::builder(id, region)
        .tpm(tpm)
        .max_output_tokens(8_192)
        .output(OutputLength::LogNormal {
            median: 300,
            sigma: 0.6,
        })
        .ttft(Duration::from_millis(400))
        .per_output_token(Duration::from_millis(8))
}

/// An interactive chat call: 500 to 2,000 input tokens, `maxTokens` 1,000.
pub(super) fn chat(rng: &mut fastrand::Rng) -> Work {
    Work::Model {
        input_tokens: rng.u64(500..2_000),
        max_tokens: 1_000,
    }
}

/// What the console shows for `models`: their TPM and TPD, and their RPM where the model has
/// one.
pub(super) fn console_of(models: &[ModelConfig]) -> Console {
    Console {
        models: models
            .iter()
            .map(|m| ModelQuota {
                model: m.model_id.clone(),
                region: m.region.clone(),
                tpm: m.tpm,
                tpd: m.tokens_per_day(),
                rpm: m.rpm,
            })
            .collect(),
        tables: Vec::new(),
    }
}

/// A Bedrock simulator with `models`, and its console.
pub(super) fn bedrock(models: Vec<ModelConfig>, seed: u64) -> Result<(Backend, Console), BoxError> {
    let console = console_of(&models);
    let sim = BedrockSim::builder().models(models).seed(seed).build()?;
    Ok((Backend::Bedrock(sim), console))
}
