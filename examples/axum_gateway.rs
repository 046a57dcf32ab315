//! An axum gateway whose `/chat` handler calls an upstream LLM endpoint through the whole
//! stack: retry → fallback (Sonnet → Haiku, a breaker each) → admission per model → client.
//!
//! The gateway answers what its callers can act on (`stack::error_response`): `200` with
//! `x-served-by` and `x-degraded` headers when a model answered, `429` + `Retry-After` when the
//! quota cannot take the call, `503` + `Retry-After` when every model's breaker is open. The
//! upstream is a local stub speaking Bedrock's `/model/{modelId}/converse` shape, with switches
//! for "model overloaded" and "service down", so the example runs with no cloud account.
//!
//! `cargo run --example axum_gateway` runs a scripted tour against the gateway and exits;
//! `cargo run --example axum_gateway -- --serve` keeps the gateway on 127.0.0.1:3000
//! (`curl -d 'hello' localhost:3000/chat`).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};
use tower_headroom::admission::{Limit, LlmEstimator, LlmInput, Quota};
use tower_headroom::breaker::BreakerConfig;
use tower_headroom::fallback::{Served, Target};
use tower_headroom::retry::RetryPolicy;
use tower_headroom::stack::{StackBuilder, error_response};
use tower_headroom::{BoxError, HttpClassifier};

/// One chat call, as the stack sees it: cheap to clone (retries and fallback copy it), the
/// model filled in per target.
#[derive(Clone)]
struct Chat {
    model: &'static str,
    prompt: Arc<str>,
    max_tokens: u64,
}

type Upstream = BoxCloneSyncService<Chat, http::Response<Bytes>, BoxError>;

/// The HTTP client: turns a `Chat` into a Converse request for its model.
#[derive(Clone)]
struct ConverseClient {
    client: Client<HttpConnector, Full<Bytes>>,
    base: Arc<str>,
}

impl Service<Chat> for ConverseClient {
    type Response = http::Response<Bytes>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, chat: Chat) -> Self::Future {
        let client = self.client.clone();
        let uri = format!("{}/model/{}/converse", self.base, chat.model);
        Box::pin(async move {
            let body = serde_json::json!({
                "messages": [{"role": "user", "content": [{"text": &*chat.prompt}]}],
                "inferenceConfig": {"maxTokens": chat.max_tokens},
            });
            let request = http::Request::post(uri)
                .header("content-type", "application/json")
                .body(Full::from(body.to_string()))?;
            let (parts, body) = client.request(request).await?.into_parts();
            Ok(http::Response::from_parts(
                parts,
                body.collect().await?.to_bytes(),
            ))
        })
    }
}

/// The gateway's stack over `client`: two models, 10 requests and 20,000 tokens per minute
/// each, a short retry deadline for interactive callers, breakers that half-open after 5 s (± 20 %).
fn gateway_stack(client: ConverseClient) -> Result<Upstream, BoxError> {
    let quota = Quota::new(
        // A minute's worth may go at once; the next call when the first leaves the window.
        Limit::per_minute().requests(10).units(20_000).build()?,
    );
    let estimate = LlmEstimator::new(|chat: &Chat| LlmInput {
        input_chars: chat.prompt.chars().count() as u64,
        max_tokens: Some(chat.max_tokens),
    });
    let stack = StackBuilder::bedrock(HttpClassifier::new())
        .target(Target::new("sonnet", "anthropic.claude-sonnet").model("sonnet"))
        .target(Target::new("haiku", "anthropic.claude-haiku").model("haiku"))
        // One wait budget per call: admission, the router and retries spend from it.
        .deadline(Duration::from_secs(3))
        .retry(RetryPolicy::builder().max_attempts(2).build()?)
        .breaker(
            BreakerConfig::builder()
                .consecutive_failures(3)
                .open_for(Duration::from_secs(5))
                .build()?,
        )
        .admission(quota, estimate)
        .rewrite(client, |chat: &mut Chat, model: &&'static str| {
            chat.model = model
        })?;
    Ok(BoxCloneSyncService::new(stack))
}

async fn chat(State(stack): State<Upstream>, prompt: String) -> axum::response::Response {
    let call = Chat {
        model: "",
        prompt: prompt.into(),
        max_tokens: 512,
    };
    match stack.oneshot(call).await {
        Ok(upstream) => {
            // No `Served` record: the preferred model answered at once.
            let served = upstream.extensions().get::<Served>();
            let name = served.map_or("sonnet", |s| &*s.name).to_owned();
            let degraded = served.is_some_and(|s| s.degraded);
            let status = upstream.status();
            let headers = [("x-served-by", name), ("x-degraded", degraded.to_string())];
            (status, headers, upstream.into_body()).into_response()
        }
        // The error's text is ours (never the prompt); the caller gets only the status.
        Err(error) => {
            eprintln!("  gateway: {error}");
            error_response::<axum::body::Body>(error.as_ref())
        }
    }
}

/// The stub upstream's switches.
#[derive(Clone, Default)]
struct Switches {
    overloaded: Arc<Mutex<HashSet<String>>>,
    down: Arc<AtomicBool>,
}

async fn converse(
    State(switches): State<Switches>,
    Path(model): Path<String>,
) -> impl IntoResponse {
    if switches.down.load(Ordering::SeqCst) {
        let error = [("x-amzn-errortype", "ServiceUnavailableException")];
        return (http::StatusCode::SERVICE_UNAVAILABLE, error, "{}").into_response();
    }
    if switches.overloaded.lock().unwrap().contains(&model) {
        let error = [("x-amzn-errortype", "ModelNotReadyException")];
        return (http::StatusCode::TOO_MANY_REQUESTS, error, "{}").into_response();
    }
    let body = serde_json::json!({
        "output": {"message": {"role": "assistant", "content": [{"text": format!("hello from {model}")}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 12, "outputTokens": 40, "totalTokens": 52},
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn serve(listener: tokio::net::TcpListener, app: axum::Router) {
    axum::serve(listener, app).await.expect("server runs");
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let switches = Switches::default();
    let upstream_app = axum::Router::new()
        .route("/model/{model}/converse", post(converse))
        .with_state(switches.clone());
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base: Arc<str> = format!("http://{}", upstream.local_addr()?).into();
    tokio::spawn(serve(upstream, upstream_app));

    let client = Client::builder(TokioExecutor::new()).build_http();
    let stack = gateway_stack(ConverseClient { client, base })?;
    let gateway_app = axum::Router::new()
        .route("/chat", post(chat))
        .with_state(stack);

    if std::env::args().any(|a| a == "--serve") {
        let gateway = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("gateway on http://{}/chat", gateway.local_addr()?);
        serve(gateway, gateway_app).await;
        return Ok(());
    }
    let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url: Arc<str> = format!("http://{}/chat", gateway.local_addr()?).into();
    tokio::spawn(serve(gateway, gateway_app));
    tour(&url, &switches).await
}

/// Sends `n` chats to the gateway and prints what came back: each status, and whether it came
/// with `Retry-After`.
async fn send(url: &str, label: &str, n: usize) -> Result<Vec<(u16, bool)>, BoxError> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut statuses = Vec::new();
    for _ in 0..n {
        let request = http::Request::post(url).body(Full::from("Summarise our Q3 numbers."))?;
        let response = client.request(request).await?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        println!(
            "{label:<24} {}  served-by={:<6} degraded={:<5} retry-after={}",
            response.status().as_u16(),
            header("x-served-by"),
            header("x-degraded"),
            header("retry-after"),
        );
        let retry_after = response.headers().contains_key("retry-after");
        statuses.push((response.status().as_u16(), retry_after));
    }
    Ok(statuses)
}

async fn tour(url: &str, switches: &Switches) -> Result<(), BoxError> {
    let ok = (200, false);
    let normal = send(url, "normal", 2).await?;
    assert_eq!(normal, [ok, ok]);

    switches
        .overloaded
        .lock()
        .unwrap()
        .insert("anthropic.claude-sonnet".into());
    let overloaded = send(url, "sonnet overloaded", 2).await?;
    assert_eq!(overloaded, [ok, ok]);
    switches.overloaded.lock().unwrap().clear();

    switches.down.store(true, Ordering::SeqCst);
    // The upstream's own 503s at first; once both breakers are open, fail-fast 503s that say
    // when to come back.
    let down = send(url, "upstream down", 5).await?;
    assert_eq!(down.last(), Some(&(503, true)));
    switches.down.store(false, Ordering::SeqCst);

    // The breakers half-open after 5 s (± 20 %); their probes succeed and close them.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    let recovered = send(url, "recovered", 1).await?;
    assert_eq!(recovered, [ok]);

    // Ten requests per model per minute: the rest is shed with 429 and Retry-After.
    let burst = send(url, "burst past the quota", 12).await?;
    assert_eq!(burst.last(), Some(&(429, true)));
    Ok(())
}
