//! Scenario 6, a shared account: our two apps and an unmanaged neighbour on one model's
//! tokens per minute; the neighbour's own retry loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::{BoxError, ServiceExt};
use tower_headroom::sim::{BedrockSim, ModelCall};

use super::schedule::{arrivals, bedrock, chat, model, rng, secs};
use super::{
    App, Arrival, EAST, MINUTE, NEIGHBOUR, NEIGHBOUR_FROM, NEIGHBOUR_UNTIL, Parts, SONNET, Work,
    app, plan, route,
};

/// Scenario 6: chat 100/min and batch 6/min on a 200,000 TPM model, the neighbour in
/// minutes 3 to 8.
pub(super) fn shared_account(seed: u64, span: (Duration, Duration)) -> Result<Parts, BoxError> {
    // One Claude-like model: 200,000 TPM, no RPM (bedrock-runtime enforces none), outputs
    // log-normal with a median of 300 tokens (well under the max_tokens the calls reserve).
    let (backend, console) = bedrock(vec![model(SONNET, EAST, 200_000).build()?], seed)?;
    // Our apps: about 161,000 settled tokens a minute of chat and 62,000 of batch, 1.1 times
    // the quota (reserved at max_tokens: 225,000 + 72,000).
    let mut out = Vec::new();
    arrivals(&mut rng(seed, 0), 0, span, |_| 100, chat, &mut out);
    let batch = |_: &mut fastrand::Rng| Work::Model {
        input_tokens: 10_000,
        max_tokens: 2_000,
    };
    arrivals(&mut rng(seed, 1), 1, span, |_| 6, batch, &mut out);
    // The neighbour: 22 calls a minute of 2,000-3,000 input tokens, about 63,000 settled
    // tokens a minute (31% of the quota) when it is not throttled.
    let theirs = (
        MINUTE * NEIGHBOUR_FROM as u32,
        MINUTE * NEIGHBOUR_UNTIL as u32,
    );
    let call = |rng: &mut fastrand::Rng| Work::Model {
        input_tokens: rng.u64(2_000..3_000),
        max_tokens: 1_000,
    };
    let mut neighbour = Vec::new();
    arrivals(&mut rng(seed, 2), 0, theirs, |_| 22, call, &mut neighbour);
    let apps = vec![
        app("chat", SONNET, EAST),
        App {
            batch: true,
            ..app("batch", SONNET, EAST)
        },
    ];
    let mut parts = Parts::new(
        backend,
        console,
        plan(apps, vec![route("sonnet", SONNET, EAST)]),
        out,
    );
    parts.neighbour = neighbour;
    Ok(parts)
}

/// Scenario 6's neighbour: a plain client with no admission, up to 3 attempts 1 s then 2 s
/// apart, on its own schedule. Returns how many of its calls failed, and how many were
/// throttled at least once.
pub(super) async fn neighbour(
    sim: BedrockSim,
    start: Instant,
    schedule: Vec<Arrival>,
) -> (u64, u64) {
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
