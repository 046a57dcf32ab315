//! Client set-up for scenario 8, an OpenAI-compatible endpoint over plain HTTP: every
//! strategy's clients, built from what a user has and nothing else (the rules of `clients.rs`:
//! the console's numbers, the plan, a handle to send requests to; never the simulator).
//!
//! - **no policy**: one request per call;
//! - **the vendor SDKs' retry** ([`Strategy::VendorSdk`]), as the OpenAI and Anthropic SDKs
//!   retry by default: 2 retries of 408, 409, 429 and 5xx answers (`x-should-retry` overrides),
//!   waiting `retry-after-ms` or `retry-after` when it is above 0 and at most 60 s, else
//!   `min(0.5 s × 2^retry, 8 s)` less up to 25% jitter (openai-python `_base_client.py`,
//!   `_calculate_retry_timeout`; anthropic-sdk-python likewise);
//! - **tower-headroom**: the plain-HTTP profile's stack with the endpoint's RPM and TPM from
//!   the console ([`http_limit`]), the crate's estimate (input characters / 4 + `max_tokens`)
//!   and `HttpClassifier` reading the vendor's JSON error body (`ErrorBodyLayer` under the
//!   stack: `insufficient_quota` is a billing stop, never retried); the batch app at batch
//!   priority. Nothing else set.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_headroom::HttpClassifier;
use tower_headroom::admission::{HeaderUsage, Limit, LlmEstimator, LlmInput, Priority, Quota};
use tower_headroom::fallback::Target;
use tower_headroom::llm_http::ErrorBodyLayer;
use tower_headroom::stack::{Profile, StackBuilder};

use super::clients::{App, Client, Clients, Console, ModelQuota, Plan, Work, probe};
use super::scenarios::Strategy;

/// An OpenAI-compatible endpoint as a client library sees it: HTTP requests in, answers out.
pub type HttpService =
    BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<Full<Bytes>>, Infallible>;

/// The path of the chat completions API.
const PATH: &str = "/v1/chat/completions";

/// One chat completion as the app holds it before sending: who sends it, how long its text
/// is, its `max_tokens`.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    caller: &'static str,
    model: &'static str,
    input_chars: u64,
    max_tokens: u64,
}

impl ChatRequest {
    fn of(app: &App, work: &Work) -> Result<Self, BoxError> {
        let Work::Chat {
            input_tokens,
            max_tokens,
        } = *work
        else {
            return Err("scenario 8 sends chat completions".into());
        };
        Ok(ChatRequest {
            caller: app.name,
            model: app.model,
            input_chars: input_tokens * 4,
            max_tokens,
        })
    }

    /// The HTTP request: a user message of `input_chars` characters.
    fn to_http(&self) -> http::Request<Full<Bytes>> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": "x".repeat(self.input_chars as usize)}],
            "max_tokens": self.max_tokens,
        });
        http::Request::post(PATH)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("x-headroom-caller", self.caller)
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap_or_default()
    }
}

/// The quota a user writes for an OpenAI-compatible endpoint from the console: its tier's
/// requests and tokens per minute, counted the plain-HTTP profile's way.
pub fn http_limit(quota: &ModelQuota) -> Result<Limit, BoxError> {
    let mut limit = Profile::Http.limit().units(quota.tpm);
    if let Some(rpm) = quota.rpm {
        limit = limit.requests(rpm);
    }
    Ok(limit.build()?)
}

/// Builds `strategy`'s clients for scenario 8.
pub fn build(
    strategy: Strategy,
    console: &Console,
    plan: &Plan,
    service: &HttpService,
    seed: u64,
) -> Result<Clients, BoxError> {
    match strategy {
        Strategy::NoRetry => Ok(plain(plan, service, 0, seed)),
        Strategy::VendorSdk => Ok(plain(plan, service, 2, seed)),
        Strategy::Headroom => stacks(console, plan, service, seed),
        other => Err(format!("{} is not measured on HTTP endpoints", other.name()).into()),
    }
}

type Boxed = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), BoxError>> + Send>>;

/// No policy (`retries` 0) or the vendor SDKs' retry (`retries` 2).
fn plain(plan: &Plan, service: &HttpService, retries: u32, seed: u64) -> Clients {
    let apps = plan
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let app = app.clone();
            let service = service.clone();
            let rng = std::sync::Arc::new(std::sync::Mutex::new(fastrand::Rng::with_seed(
                seed.wrapping_add(i as u64),
            )));
            let client = tower::service_fn(move |work: Work| -> Boxed {
                let service = service.clone();
                let rng = rng.clone();
                let request = ChatRequest::of(&app, &work);
                Box::pin(async move {
                    let request = request?;
                    let mut retry = 0;
                    loop {
                        let response = service.clone().oneshot(request.to_http()).await?;
                        if response.status().is_success() {
                            return Ok(());
                        }
                        if retry >= retries || !sdk_should_retry(&response) {
                            return Err(format!("status {}", response.status()).into());
                        }
                        let jitter = rng.lock().map_or(0.5, |mut r| r.f64());
                        tokio::time::sleep(sdk_retry_wait(&response, retry, jitter)).await;
                        retry += 1;
                    }
                })
            });
            Client::new(client)
        })
        .collect();
    Clients {
        apps,
        effective_limit: None,
        hot_key_report: None,
    }
}

/// Whether the vendor SDKs retry this answer: `x-should-retry` when present, else 408, 409,
/// 429 and every 5xx.
fn sdk_should_retry<B>(response: &http::Response<B>) -> bool {
    match response
        .headers()
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
    {
        Some("true") => return true,
        Some("false") => return false,
        _ => {}
    }
    let status = response.status().as_u16();
    matches!(status, 408 | 409 | 429) || status >= 500
}

/// The vendor SDKs' wait before retry number `retry` (0 for the first): the server's delay
/// when it is in (0, 60 s], else exponential from 0.5 s to 8 s, less up to 25% (`jitter` in
/// [0, 1)).
fn sdk_retry_wait<B>(response: &http::Response<B>, retry: u32, jitter: f64) -> Duration {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let server = header("retry-after-ms")
        .map(|ms| ms / 1_000.0)
        .or_else(|| header("retry-after"));
    if let Some(secs) = server.filter(|s| *s > 0.0 && *s <= 60.0) {
        return Duration::from_secs_f64(secs);
    }
    let base = (0.5 * 2f64.powi(retry as i32)).min(8.0);
    Duration::from_secs_f64(base * (1.0 - 0.25 * jitter))
}

/// tower-headroom: one stack per app, sharing the endpoint's quota.
fn stacks(
    console: &Console,
    plan: &Plan,
    service: &HttpService,
    seed: u64,
) -> Result<Clients, BoxError> {
    let target = plan.routes.first().ok_or("a plan needs a target")?;
    let key: &'static str = target.name;
    let quota = Quota::new(http_limit(console.model(target.model, target.region)?)?);
    // The request as the endpoint sees it; an error answer's JSON body read for the classifier.
    let backend = ServiceBuilder::new()
        .map_request(|request: ChatRequest| request.to_http())
        .layer(ErrorBodyLayer::new())
        .service(service.clone());
    // What the endpoint charges: input (characters / 4) and max_tokens.
    let estimate = LlmEstimator::new(|request: &ChatRequest| LlmInput {
        input_chars: request.input_chars,
        max_tokens: Some(request.max_tokens),
    });
    let apps = plan
        .apps
        .iter()
        .enumerate()
        .map(|(i, app)| {
            let mut builder = StackBuilder::new(Profile::Http, HttpClassifier::new())
                .target(Target::new(key, key))
                .seed(seed.wrapping_add(i as u64))
                .admission(quota.clone(), estimate.clone())
                .usage(HeaderUsage::new());
            if app.batch {
                builder = builder.priority(Priority::Batch);
            }
            let stack = builder.services(vec![backend.clone()])?;
            let app = app.clone();
            let client = tower::service_fn(move |work: Work| -> Boxed {
                let stack = stack.clone();
                let request = ChatRequest::of(&app, &work);
                Box::pin(async move {
                    let response = stack.oneshot(request?).await?;
                    if response.status().is_success() {
                        Ok(())
                    } else {
                        Err(format!("status {}", response.status()).into())
                    }
                })
            });
            Ok(Client::new(client))
        })
        .collect::<Result<Vec<_>, BoxError>>()?;
    Ok(Clients {
        apps,
        effective_limit: Some(probe(quota, key)),
        hot_key_report: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
        let mut response = http::Response::builder().status(status);
        for (name, value) in headers {
            response = response.header(*name, *value);
        }
        response.body(()).unwrap()
    }

    #[test]
    fn the_sdk_retry_follows_the_vendor_sdks() {
        assert!(sdk_should_retry(&answer(429, &[])));
        assert!(sdk_should_retry(&answer(529, &[])));
        assert!(!sdk_should_retry(&answer(400, &[])));
        assert!(!sdk_should_retry(&answer(
            429,
            &[("x-should-retry", "false")]
        )));
        let ms = answer(429, &[("retry-after-ms", "1500"), ("retry-after", "2")]);
        assert_eq!(sdk_retry_wait(&ms, 0, 0.0), Duration::from_millis(1_500));
        let long = answer(429, &[("retry-after", "90")]);
        assert_eq!(sdk_retry_wait(&long, 0, 0.0), Duration::from_millis(500));
        assert_eq!(sdk_retry_wait(&long, 1, 0.0), Duration::from_secs(1));
        assert_eq!(sdk_retry_wait(&long, 5, 0.0), Duration::from_secs(8));
        assert_eq!(sdk_retry_wait(&long, 5, 1.0), Duration::from_secs(6));
    }
}
