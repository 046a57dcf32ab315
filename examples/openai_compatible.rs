//! OpenAI- and Anthropic-compatible endpoints through reqwest, against the simulator's HTTP
//! front on loopback (real sockets, the real clock, a few seconds):
//!
//! 1. **a burst** of 64 chat calls through a `reqwest_middleware` client whose middleware is
//!    tower-headroom's retry layer: the endpoint's request bucket (60 a minute) runs dry, its
//!    429s carry `retry-after-ms`, and every call completes;
//! 2. **a spent balance**: an endpoint whose billing cap runs out answers 429
//!    `insufficient_quota`; the call is not sent again, and the caller gets the vendor's body;
//! 3. **an overloaded provider**: a `StackBuilder` stack over a plain `reqwest::Client` with two
//!    base URLs; the first answers 529 `overloaded_error`, the call is served by the second.
//!
//! `cargo run --features sim,llm-http,reqwest --example openai_compatible`. Every claim it
//! prints is checked; `tests/example_openai.rs` runs the tour.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tower::{ServiceBuilder, ServiceExt};
use tower_headroom::fallback::{Served, Target};
use tower_headroom::llm_http::ErrorBodyLayer;
use tower_headroom::reqwest::{BaseUrl, NextService, ReqwestService, TowerMiddleware, rebase};
use tower_headroom::sim::front::{Server, SimService};
use tower_headroom::sim::{Episode, LlmEndpointSim, LlmShape, OutputLength};
use tower_headroom::stack::StackBuilder;
use tower_headroom::{BoxError, HttpClassifier, Profile, RetryLayer};

/// What the tour saw; each field is checked before it is returned.
#[derive(Debug)]
pub struct Summary {
    /// Calls of the burst that completed, and the 429s the endpoint sent during it.
    pub burst: (usize, u64),
    /// Requests the billing-capped endpoint received, and the status the last caller got.
    pub billing: (u64, u16),
    /// The target that served the call while the first provider was overloaded.
    pub served_by: String,
}

fn endpoint(shape: LlmShape) -> tower_headroom::sim::llm::LlmEndpointSimBuilder {
    LlmEndpointSim::builder(shape)
        .rpm(60)
        .tpm(10_000_000)
        .output(OutputLength::Fixed { tokens: 16 })
        .latency(Duration::from_millis(5))
        .per_output_token(Duration::ZERO)
}

async fn serve(sim: LlmEndpointSim) -> Result<(Server, SimService), BoxError> {
    let front = SimService::builder().llm(sim).build()?;
    let server = Server::bind("127.0.0.1:0".parse()?, front.clone()).await?;
    Ok((server, front))
}

fn chat(max_tokens: u64) -> String {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Say hello in one word."}],
        "max_tokens": max_tokens,
    })
    .to_string()
}

fn check(claim: bool, what: &str) -> Result<(), BoxError> {
    if claim {
        println!("  ok: {what}");
        Ok(())
    } else {
        Err(format!("claim failed: {what}").into())
    }
}

/// Runs the three steps and checks what each shows.
pub async fn tour() -> Result<Summary, BoxError> {
    // 1. A burst past the request bucket, retried by the middleware.
    let (server, front) = serve(endpoint(LlmShape::OpenAi).build()?).await?;
    let retry = RetryLayer::new(Profile::Http.retry().build()?, HttpClassifier::new());
    let stack = ServiceBuilder::new()
        .layer(retry)
        .layer(ErrorBodyLayer::new())
        .service(NextService::new());
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TowerMiddleware::new(stack))
        .build();
    let url = format!("{}{}", server.url(), LlmShape::OpenAi.path());
    let calls = (0..64).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        tokio::spawn(async move { client.post(url).body(chat(32)).send().await })
    });
    let mut completed = 0;
    for call in calls {
        if call.await?.is_ok_and(|r| r.status().is_success()) {
            completed += 1;
        }
    }
    let stats = front.llm(LlmShape::OpenAi).ok_or("no endpoint")?.stats();
    let throttled = stats.counts.throttled_requests + stats.counts.throttled_tokens;
    println!("burst: {completed} of 64 completed; the endpoint sent {throttled} 429s");
    check(completed == 64, "every call of the burst completed")?;
    check(throttled > 0, "the burst ran the request bucket dry")?;
    server.shutdown().await?;

    // 2. A spent balance: never sent again.
    let capped = endpoint(LlmShape::OpenAi).billing_cap(150).build()?;
    let (server, front) = serve(capped).await?;
    let url = format!("{}{}", server.url(), LlmShape::OpenAi.path());
    let mut last = 0;
    for _ in 0..3 {
        let response = client.post(&url).body(chat(60)).send().await?;
        last = response.status().as_u16();
        if last == 429 {
            let body = response.text().await?;
            check(
                body.contains("insufficient_quota"),
                "the caller got the vendor's insufficient_quota body",
            )?;
            break;
        }
    }
    let received = front
        .llm(LlmShape::OpenAi)
        .ok_or("no endpoint")?
        .stats()
        .calls();
    println!("billing: the endpoint received {received} requests, the last answered {last}");
    check(last == 429, "the spent balance answered 429")?;
    check(
        received == 3,
        "two calls served, the third refused once and not sent again",
    )?;
    server.shutdown().await?;

    // 3. An overloaded provider: the stack falls back to the second base URL.
    let hour = Episode::new(Duration::ZERO, Duration::from_secs(3600));
    let (down, _) = serve(endpoint(LlmShape::Anthropic).overload(hour).build()?).await?;
    let (up, _) = serve(endpoint(LlmShape::Anthropic).build()?).await?;
    let upstream = ServiceBuilder::new()
        .layer(ErrorBodyLayer::new())
        .service(ReqwestService::new(reqwest::Client::new()));
    let stack = StackBuilder::http()
        .target(Target::new("primary", BaseUrl::parse(&down.url())?))
        .target(Target::new("backup", BaseUrl::parse(&up.url())?))
        .rewrite(upstream, rebase::<Bytes>)?;
    let request = http::Request::post(LlmShape::Anthropic.path())
        .header("content-type", "application/json")
        .body(Bytes::from(chat(32)))?;
    let response = stack.oneshot(request).await?;
    let served_by = response
        .extensions()
        .get::<Served>()
        .map(|s| Arc::clone(&s.name))
        .ok_or("no Served annotation")?;
    println!("overload: served by {served_by} ({})", response.status());
    check(
        response.status().is_success(),
        "the overloaded call was served",
    )?;
    check(&*served_by == "backup", "by the second base URL")?;
    down.shutdown().await?;
    up.shutdown().await?;

    Ok(Summary {
        burst: (completed, throttled),
        billing: (received, last),
        served_by: served_by.to_string(),
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let summary = tour().await?;
    println!("{summary:?}");
    Ok(())
}
