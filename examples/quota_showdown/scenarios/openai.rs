//! Scenario 8 on a simulated OpenAI-compatible endpoint: a token-bucket quota with rate-limit
//! headers, a steady stream of short chat prompts, a burst of long batch prompts in minute 1,
//! and a billing cap the account reaches near the end of the run.

use std::time::{Duration, SystemTime};

use tower::BoxError;
use tower_headroom::sim::{LlmEndpointSim, LlmShape, OutputLength};

use super::schedule::{arrivals, rng, secs};
use super::{Arrival, Backend, Console, MINUTE, ModelQuota, Parts, Work, minutes, plan, route};
use crate::clients::{App, CLIENT_EPOCH};

/// The endpoint's model, as the console names it.
pub const MODEL: &str = "gpt-4o-mini";
/// Where the console's numbers come from: the account's usage tier.
pub const TIER: &str = "tier-1";
/// The tier's requests per minute.
pub const RPM: u64 = 500;
/// The tier's tokens per minute.
pub const TPM: u64 = 200_000;
/// The account's prepaid tokens: spent near the end of the run, after which every call is
/// refused with `insufficient_quota`.
pub const BILLING_CAP: u64 = 2_200_000;
/// Short chat prompts per minute.
pub const CHAT_PER_MINUTE: u64 = 150;
/// Long batch prompts, all sent in [`BURST_FROM`] .. `BURST_FROM + 30 s`.
pub const BURST_CALLS: u64 = 150;
/// When the burst starts.
pub const BURST_FROM: Duration = Duration::from_secs(60);

/// The table's title.
pub const TITLE: &str = "OpenAI-compatible endpoint: 500 RPM / 200,000 TPM token buckets, 150 short chats/min, \
     150 long batch prompts in minute 1, a 2,200,000-token billing cap";

/// What utilisation counts, for the footer.
pub const UTILISATION: &str = "tokens charged (input + max_tokens) in the whole minutes after the first \
     (the buckets start full) and before the billing cap was reached / (200,000 TPM x those \
     minutes)";

/// Scenario 8's set-up.
pub(super) fn openai_compatible(seed: u64, span: (Duration, Duration)) -> Result<Parts, BoxError> {
    let sim = LlmEndpointSim::builder(LlmShape::OpenAi)
        .rpm(RPM)
        .tpm(TPM)
        .billing_cap(BILLING_CAP)
        .output(OutputLength::LogNormal {
            median: 120,
            sigma: 0.6,
        })
        .latency(Duration::from_millis(300))
        .per_output_token(Duration::from_millis(10))
        .seed(seed)
        .wall_clock(SystemTime::UNIX_EPOCH + CLIENT_EPOCH)
        .build()?;
    let console = Console {
        models: vec![ModelQuota {
            model: MODEL.into(),
            region: TIER.into(),
            tpm: TPM,
            tpd: TPM * 1_440,
            rpm: Some(RPM),
        }],
        tables: Vec::new(),
    };
    let mut out = Vec::new();
    // Short chats: 200 to 800 input tokens, max_tokens 256, all along.
    let mut chat_rng = rng(seed, 0);
    arrivals(
        &mut chat_rng,
        0,
        span,
        |_| CHAT_PER_MINUTE,
        |r| Work::Chat {
            input_tokens: r.u64(200..800),
            max_tokens: 256,
        },
        &mut out,
    );
    // The burst: 5,000 to 8,000 input tokens, max_tokens 1,000, spread over 30 s.
    let mut batch_rng = rng(seed, 1);
    for i in 0..BURST_CALLS {
        let at = BURST_FROM
            + Duration::from_secs_f64((i as f64 + batch_rng.f64()) * 30.0 / BURST_CALLS as f64);
        out.push(Arrival {
            at,
            app: 1,
            work: Work::Chat {
                input_tokens: batch_rng.u64(5_000..8_000),
                max_tokens: 1_000,
            },
        });
    }
    debug_assert!(span.1 == MINUTE * minutes(8) as u32 && secs(0) == span.0);
    Ok(Parts::new(
        Backend::Llm(sim),
        console,
        plan(
            vec![
                App {
                    name: "chat",
                    model: MODEL,
                    region: TIER,
                    batch: false,
                },
                App {
                    name: "batch",
                    model: MODEL,
                    region: TIER,
                    batch: true,
                },
            ],
            vec![route(MODEL, MODEL, TIER)],
        ),
        out,
    ))
}
