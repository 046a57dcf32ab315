//! Queue and drain: a burst of LLM calls goes out at the rate the quota sustains instead of
//! earning 429s.
//!
//! Sixty calls arrive at once for a model with 30 requests and 12,000 tokens per minute, each
//! with 90 seconds to complete. The admission layer lets out at once what the minute holds,
//! settles every call to the tokens it really used (so the slack of each estimate lets more
//! calls out within the same minute), queues the rest (FIFO, bounded) until the minute's
//! spend slides out of the window, and sheds at once, with `Retry-After`, the calls whose wait
//! would pass their deadline. The same wait is available without Tower as `Quota::acquire`.
//!
//! It prints 18 calls done at +0.3 s (what the minute's 12,000 tokens hold at the 660-token
//! estimate), 7 more by +2.2 s (the slack of those that settled at 460), 20 once the first
//! minute's spend slides out of the window (+60.5 s), and 15 shed at once with
//! `Retry-After: 93`: their wait would have passed their 90 seconds.
//!
//! `cargo run --example queue_and_drain` (runs on tokio's paused clock: instant, repeatable).

use std::time::Duration;

use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_headroom::admission::{
    AdmissionLayer, Ask, Cost, Fixed, Limit, LlmEstimator, LlmInput, Quota, Rejected, Usage,
};
use tower_headroom::deadline::within;
use tower_headroom::{BoxError, Deadline};

#[derive(Clone)]
struct Prompt {
    id: usize,
    text: String,
    max_tokens: u64,
}

struct Completion {
    id: usize,
    tokens_used: u64,
}

/// What the estimator needs from a prompt: its size and its output budget.
fn llm_input(p: &Prompt) -> LlmInput {
    LlmInput {
        input_chars: p.text.chars().count() as u64,
        max_tokens: Some(p.max_tokens),
    }
}

/// What a completion really spent.
fn usage(c: &Completion) -> Usage {
    Usage::units(c.tokens_used)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    // Virtual time, so that minutes of draining take milliseconds; drop this line in real use.
    tokio::time::pause();
    let start = Instant::now();

    let quota = Quota::new(
        // Refunds (estimates above real usage) give room back at once.
        Limit::per_minute().requests(30).units(12_000).build()?,
    );
    // A stand-in for the model: answers after 300 ms, using about half of max_tokens.
    let model = tower::service_fn(|p: Prompt| async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let input = (p.text.len() as u64).div_ceil(4);
        Ok::<_, std::io::Error>(Completion {
            id: p.id,
            tokens_used: input + p.max_tokens / 2,
        })
    });
    let estimator = LlmEstimator::new(llm_input);
    let client = ServiceBuilder::new()
        .layer(
            AdmissionLayer::new(quota.clone(), Fixed::new("claude-us-east-1", estimator))
                .usage(usage),
        )
        .service(model);

    let calls: Vec<_> = (0..60)
        .map(|id| {
            let client = client.clone();
            let prompt = Prompt {
                id,
                text: "Summarise this paragraph. ".repeat(40),
                max_tokens: 400,
            };
            // Each call's wait budget: admission waits no longer, and sheds at once a call
            // whose wait would pass it.
            let deadline = Deadline::after(Duration::from_secs(90));
            tokio::spawn(async move { within(deadline, client.oneshot(prompt)).await })
        })
        .collect();
    let (mut served, mut shed) = (0, 0);
    for call in calls {
        match call.await? {
            Ok(done) => {
                served += 1;
                println!(
                    "call {:>2} done at +{:>5.1}s, {} tokens",
                    done.id,
                    start.elapsed().as_secs_f64(),
                    done.tokens_used
                );
            }
            Err(e) => match e.downcast_ref::<Rejected>() {
                Some(rejected) => {
                    shed += 1;
                    let res = rejected.to_response::<()>();
                    println!(
                        "shed: {rejected} -> HTTP {} Retry-After: {:?}",
                        res.status().as_u16(),
                        res.headers().get("retry-after")
                    );
                }
                None => return Err(e),
            },
        }
    }
    println!(
        "{served} served, {shed} shed, in {:.1}s",
        start.elapsed().as_secs_f64()
    );

    // The same queue without Tower: wait for quota, call, settle.
    let reservation = quota
        .acquire(
            &"claude-us-east-1",
            Ask::new(Cost::units(500)).deadline(Deadline::after(Duration::from_secs(300))),
        )
        .await?;
    println!(
        "a worker got quota at +{:.1}s",
        start.elapsed().as_secs_f64()
    );
    reservation.settle(Usage::units(320), Instant::now());
    Ok(())
}
