//! The simulator's HTTP front: the AWS wire protocols over [`BedrockSim`] and [`DynamoSim`],
//! so that the real AWS SDK clients (or any HTTP client) can be pointed at the simulator.
//!
//! [`SimService`] is a `tower::Service<http::Request<B>>` answering
//! `http::Response<Full<Bytes>>`. In process it needs no socket for Bedrock (an SDK
//! `HttpClient` can hand it each request, under tokio's paused clock too); [`Server`] runs it
//! on hyper 1 over a TCP listener, with graceful shutdown.
//!
//! - **Bedrock Runtime** (restJson1): `POST /model/{modelId}/converse` (Converse body:
//!   `messages`, `system`, `inferenceConfig.maxTokens`), `POST /model/{modelId}/converse-stream`
//!   (the same body) and `POST /model/{modelId}/invoke` (Anthropic messages body:
//!   `max_tokens`, `messages`, `system`). The model id is the
//!   percent-decoded path segment (inference profile ARNs included). Input tokens are
//!   estimated as one per four characters of text (see `bedrock_wire`); a Converse request
//!   without `inferenceConfig.maxTokens` is passed on without one, and the simulator reserves
//!   the model's `max_output_tokens`, as Bedrock does. The region is the
//!   one in the SigV4 `Authorization` header's credential scope, else
//!   [`SimServiceBuilder::default_region`]; the header is read for that and nothing else.
//!   A request that marks a prompt-cache prefix (a Converse `cachePoint` block, an Anthropic
//!   `cache_control`) writes it on its first call and reads it within its time to live (see
//!   `prompt_cache`): those tokens go to the simulator as cache tokens, apart from the input.
//!   Replies carry `usage` and `metrics.latencyMs` (Converse; `cacheReadInputTokens` and
//!   `cacheWriteInputTokens` when the call read or wrote the prompt cache) or the Anthropic
//!   `usage` (InvokeModel: `input_tokens`, `output_tokens`, `cache_read_input_tokens`,
//!   `cache_creation_input_tokens`, plus the `x-amzn-bedrock-*-token-count` headers). ConverseStream is
//!   admitted, throttled and settled exactly as Converse (an error before the stream starts is
//!   the same HTTP error answer); its success is a `200` with an
//!   `application/vnd.amazon.eventstream` body of AWS event-stream frames: `messageStart`,
//!   `contentBlockDelta`s with the text, `contentBlockStop`, `messageStop` and `metadata`
//!   with the same `usage` and `metrics.latencyMs`. `POST /model/{modelId}/invoke-with-response-stream`
//!   (InvokeModelWithResponseStream, the Anthropic messages body) is admitted as InvokeModel
//!   and answers `chunk` events (`{"bytes": "<base64>"}`): the Anthropic streaming events for
//!   an `anthropic.` model (`message_start` with the input usage, `message_delta` with the
//!   output), Titan-style text chunks otherwise, and Bedrock's
//!   `amazon-bedrock-invocationMetrics` in the last chunk (see `event_stream`).
//!   [`SimServiceBuilder::stream_exception`] makes every streamed reply break after its first
//!   content event with an `exception` message inside the `200`. The frames are sent together once the
//!   latency model's time has passed, not token by token: the answer is a whole body like the
//!   others, so dropping it early does not cut the simulated call short.
//! - **DynamoDB** (awsJson1_0, `POST /` with `X-Amz-Target: DynamoDB_20120810.<Op>`): see
//!   the `dynamodb` module. Writes are charged against the table's capacity before they are
//!   forwarded to the DynamoDB-compatible store behind the front (dynalite, see
//!   [`dynalite`]); reads are forwarded first and charged by the size of what they returned,
//!   as DynamoDB charges them. A throttled call gets DynamoDB's
//!   `ProvisionedThroughputExceededException`. Tables the simulator has no quota for pass
//!   through uncharged. Without a store the front still charges and answers data operations
//!   with empty results (handy on virtual time).
//! - **OpenAI- and Anthropic-style endpoints** (`/v1/chat/completions`, `/v1/messages`) over
//!   [`LlmEndpointSim`](super::LlmEndpointSim)s given with [`SimServiceBuilder::llm`].
//! - **Errors** are sent as AWS sends them: the status, `x-amzn-errortype: <Code>`, and a JSON
//!   body with `message` (plus the namespaced `__type` for DynamoDB). Bad input — a body that
//!   is not JSON, an unknown path or operation, a body over the size limit — gets a 400
//!   `SerializationException`, `UnknownOperationException` or `ValidationException`, never a
//!   panic.
//!
//! Nothing from a request body, no header value and no credential is ever logged; `tracing`
//! events carry the operation, model or table, region, status and error code.
//!
//! ```
//! use http_body_util::{BodyExt, Full};
//! use tower::ServiceExt;
//! use tower_headroom::sim::{BedrockSim, ModelConfig, OutputLength};
//! use tower_headroom::sim::front::SimService;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bedrock = BedrockSim::builder()
//!     .model(
//!         ModelConfig::builder("anthropic.claude-3-haiku-20240307-v1:0", "us-east-1")
//!             .rpm(1)
//!             .tpm(100_000)
//!             .output(OutputLength::Fixed { tokens: 20 })
//!             .build()?,
//!     )
//!     .build()?;
//! let front = SimService::builder().bedrock(bedrock).build()?;
//! let request = || {
//!     http::Request::post("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse")
//!         .body(Full::new(bytes::Bytes::from_static(
//!             br#"{"messages":[{"role":"user","content":[{"text":"Hello there!"}]}],
//!                 "inferenceConfig":{"maxTokens":100}}"#,
//!         )))
//!         .unwrap()
//! };
//!
//! let response = front.clone().oneshot(request()).await?;
//! assert_eq!(response.status(), 200);
//! let body: serde_json::Value =
//!     serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
//! assert_eq!(body["usage"]["inputTokens"], 3); // 12 characters / 4
//! assert_eq!(body["usage"]["outputTokens"], 20);
//!
//! // Over the 1 RPM quota: Bedrock's throttle, as the SDK expects it.
//! let response = front.clone().oneshot(request()).await?;
//! assert_eq!(response.status(), 429);
//! assert_eq!(response.headers()["x-amzn-errortype"], "ThrottlingException");
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true)
//! #     .build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! Why hand-written: there is no Rust server for these AWS protocols to reuse (the smithy-rs
//! server codegen needs the service models and a build step), and the front only needs a
//! handful of operations' request fields.

mod bedrock_wire;
mod builder;
mod config;
pub mod dynalite;
mod dynamodb;
mod event_stream;
mod item_size;
mod llm;
mod prompt_cache;
#[cfg(feature = "smithy")]
mod sdk;
mod server;
mod wire;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, Limited};

use self::bedrock_wire::{BedrockOp, Stop};
use self::event_stream::StreamFault;
use self::prompt_cache::CacheUse;
use self::wire::{Protocol, WireError, WireResponse};
use super::{BedrockSim, DynamoSim, ModelCall, SimError, StopReason, lock};
use crate::{BoxError, ConfigError};

pub use self::builder::{DEFAULT_MAX_BODY_BYTES, DEFAULT_REGION, SimServiceBuilder};
pub use self::config::{FrontConfig, SimFile, SimFileError};
#[cfg(feature = "smithy")]
pub use self::sdk::{loopback_http_client, sdk_http_client};
pub use self::server::{Server, serve};

/// The header a client may set to label its calls with an application name, for the
/// simulators' per-caller statistics (letters, digits, `.`, `_`, `-`; at most 64).
pub const CALLER_HEADER: &str = "x-headroom-caller";

/// The simulator's HTTP front; see the [module docs](self).
///
/// Cheap to clone: clones share the simulators and the store connection.
#[derive(Clone, Debug)]
pub struct SimService {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) bedrock: Option<BedrockSim>,
    /// OpenAI- and Anthropic-style endpoints, by path (see `llm`).
    pub(super) llm: Vec<super::LlmEndpointSim>,
    pub(super) dynamo: Option<dynamodb::DynamoFront>,
    pub(super) default_region: Arc<str>,
    pub(super) max_body_bytes: usize,
    /// Prefixes in the prompt cache (see `prompt_cache`).
    pub(super) prompt_cache: Mutex<prompt_cache::PromptCache>,
    pub(super) next_request: AtomicU64,
    /// The exception every streamed reply breaks with, if any.
    pub(super) stream_fault: Option<StreamFault>,
}

impl SimService {
    /// A builder; give it a [`BedrockSim`], a [`DynamoSim`] or both.
    pub fn builder() -> SimServiceBuilder {
        SimServiceBuilder::default()
    }

    /// Builds the simulators a [`SimFile`] describes and the front over them. The DynamoDB
    /// store is `upstream` if given, else the file's `front.dynamodb_upstream`.
    pub fn from_file(file: &SimFile, upstream: Option<&str>) -> Result<SimService, ConfigError> {
        let mut builder = SimService::builder()
            .default_region(file.front.default_region.clone())
            .max_body_bytes(file.front.max_body_bytes);
        if let Some(config) = &file.bedrock {
            builder = builder.bedrock(BedrockSim::from_config(config.clone())?);
        }
        if let Some(config) = &file.dynamodb {
            builder = builder.dynamodb(DynamoSim::from_config(config.clone())?);
        }
        builder = builder.llm_from_file(file)?;
        for (table, attribute) in &file.front.partition_keys {
            builder = builder.partition_key(table, attribute);
        }
        if let Some(url) = upstream.or(file.front.dynamodb_upstream.as_deref()) {
            builder = builder.dynamodb_upstream(url);
        }
        builder.build()
    }

    /// The Bedrock simulator behind the front, if any (for its statistics).
    pub fn bedrock(&self) -> Option<&BedrockSim> {
        self.inner.bedrock.as_ref()
    }

    /// The DynamoDB simulator behind the front, if any (for its statistics).
    pub fn dynamodb(&self) -> Option<&DynamoSim> {
        self.inner.dynamo.as_ref().and_then(|d| d.sim.as_ref())
    }
}

/// The future of a [`SimService`] call.
///
/// Boxed: answering means reading the body, parsing JSON and, for DynamoDB, a round trip to
/// the store, next to which one allocation is nothing; and it keeps the service's type free
/// of the body type.
pub struct ResponseFuture {
    inner: Pin<Box<dyn Future<Output = WireResponse> + Send>>,
}

impl Future for ResponseFuture {
    type Output = Result<WireResponse, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx).map(Ok)
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B> tower_service::Service<Request<B>> for SimService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    /// Every failure is an answer on the wire; the service itself never fails.
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        let inner = self.inner.clone();
        ResponseFuture {
            inner: Box::pin(async move { inner.handle(request).await }),
        }
    }
}

/// The request parts a handler needs; the body is read separately.
pub(crate) struct Head {
    pub request_id: String,
    pub headers: HeaderMap,
    pub caller: Option<Arc<str>>,
}

impl Inner {
    async fn handle<B>(&self, request: Request<B>) -> WireResponse
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let request_id = format!(
            "sim-{:016x}",
            self.next_request.fetch_add(1, Ordering::Relaxed)
        );
        let (parts, body) = request.into_parts();
        let target = parts
            .headers
            .get("x-amz-target")
            .map(|v| v.as_bytes().to_vec());
        let protocol = if target.is_some() {
            Protocol::AwsJson10
        } else {
            Protocol::RestJson1
        };
        if parts.method != Method::POST {
            return self.reject(protocol, WireError::unknown_operation(), &request_id, "-");
        }
        let path = parts.uri.path().to_owned();
        let head = Head {
            caller: caller_label(&parts.headers),
            headers: parts.headers,
            request_id,
        };
        if let Some(sim) = self.llm.iter().find(|s| s.shape().path() == path) {
            let body = self.read_body(body, &head.headers).await;
            return llm::answer(sim, &head, body).await;
        }
        match target {
            Some(target) if path == "/" => {
                let Some(dynamo) = &self.dynamo else {
                    return self.reject(
                        protocol,
                        WireError::unknown_operation(),
                        &head.request_id,
                        "dynamodb",
                    );
                };
                let Some(op) = dynamodb::parse_target(&target) else {
                    return self.reject(
                        protocol,
                        WireError::unknown_operation(),
                        &head.request_id,
                        "dynamodb",
                    );
                };
                let body = match self.read_body(body, &head.headers).await {
                    Ok(body) => body,
                    Err(error) => {
                        return self.reject(protocol, error, &head.request_id, op.as_str());
                    }
                };
                dynamo.handle(op, &head, body).await
            }
            Some(_) => self.reject(
                protocol,
                WireError::unknown_operation(),
                &head.request_id,
                "-",
            ),
            None => {
                let Some((model, op)) = bedrock_wire::parse_path(&path) else {
                    return self.reject(
                        protocol,
                        WireError::unknown_operation(),
                        &head.request_id,
                        "-",
                    );
                };
                let body = match self.read_body(body, &head.headers).await {
                    Ok(body) => body,
                    Err(error) => {
                        return self.reject(protocol, error, &head.request_id, op.as_str());
                    }
                };
                self.bedrock(op, model, &head, &body).await
            }
        }
    }

    fn reject(
        &self,
        protocol: Protocol,
        error: WireError,
        request_id: &str,
        op: &str,
    ) -> WireResponse {
        tracing::debug!(
            op,
            status = error.status.as_u16(),
            code = error.code,
            "sim front: request refused"
        );
        error.into_response(protocol, request_id)
    }

    /// Reads the body, refusing it past the size limit (by `content-length` before reading
    /// anything, else while reading).
    async fn read_body<B>(&self, body: B, headers: &HeaderMap) -> Result<Bytes, WireError>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let too_big = || {
            WireError::validation(format!(
                "The request body exceeds the maximum size of {} bytes.",
                self.max_body_bytes
            ))
        };
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max_body_bytes as u64) {
            return Err(too_big());
        }
        match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_big()),
            Err(_) => Err(WireError::serialization(
                "The request body could not be read.",
            )),
        }
    }

    async fn bedrock(
        &self,
        op: BedrockOp,
        model: String,
        head: &Head,
        body: &[u8],
    ) -> WireResponse {
        let protocol = Protocol::RestJson1;
        let region: Arc<str> = head
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bedrock_wire::region_from_authorization)
            .map_or_else(|| self.default_region.clone(), Arc::from);
        let Some(sim) = &self.bedrock else {
            return self.reject(
                protocol,
                WireError::validation("The provided model identifier is invalid."),
                &head.request_id,
                op.as_str(),
            );
        };
        let ask = match op {
            BedrockOp::Converse | BedrockOp::ConverseStream => bedrock_wire::parse_converse(body),
            BedrockOp::Invoke | BedrockOp::InvokeStream => bedrock_wire::parse_anthropic(body),
        };
        let ask = match ask {
            Ok(ask) => ask,
            Err(error) => return self.reject(protocol, error, &head.request_id, op.as_str()),
        };
        let model_id: Arc<str> = model.as_str().into();
        let now = tokio::time::Instant::now();
        let cache_use = ask.cache.map(|prefix| {
            (
                prefix,
                lock(&self.prompt_cache).lookup(&model_id, &region, &prefix, now),
            )
        });
        let (read, write) = match cache_use {
            Some((_, CacheUse::Read(tokens))) => (tokens, 0),
            Some((_, CacheUse::Write(tokens))) => (0, tokens),
            None => (0, 0),
        };
        let mut call = ModelCall::new(
            model_id.clone(),
            region.clone(),
            ask.input_tokens.saturating_sub(read + write),
            0,
        )
        .cache_tokens(read, write);
        call.max_tokens = ask.max_tokens;
        if let Some(caller) = &head.caller {
            call = call.caller(caller.clone());
        }
        let mut sim = sim.clone();
        let result = async {
            std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut sim, cx)).await?;
            tower_service::Service::call(&mut sim, call).await
        }
        .await;
        let reply = match result {
            Ok(reply) => {
                if let Some((prefix, _)) = cache_use {
                    lock(&self.prompt_cache).touch(&model_id, &region, &prefix, now);
                }
                reply
            }
            Err(error) => {
                tracing::debug!(
                    op = op.as_str(),
                    model = %model,
                    region = %region,
                    status = error.status().as_u16(),
                    code = error.code(),
                    "sim front: bedrock call rejected"
                );
                return sim_error(&error).into_response(protocol, &head.request_id);
            }
        };
        tracing::debug!(
            op = op.as_str(),
            model = %model,
            region = %region,
            input_tokens = reply.input_tokens,
            output_tokens = reply.output_tokens,
            "sim front: bedrock call served"
        );
        let stop = match reply.stop_reason {
            StopReason::MaxTokens => Stop::MaxTokens,
            _ => Stop::EndTurn,
        };
        let latency_ms = u64::try_from(reply.latency.as_millis()).unwrap_or(u64::MAX);
        let usage = bedrock_wire::Usage {
            input: reply.input_tokens,
            output: reply.output_tokens,
            cache_read: reply.cache_read_tokens,
            cache_write: reply.cache_write_tokens,
        };
        match op {
            BedrockOp::Converse => wire::json_response(
                protocol,
                StatusCode::OK,
                &bedrock_wire::converse_reply(&usage, stop, latency_ms),
                &head.request_id,
            ),
            BedrockOp::ConverseStream | BedrockOp::InvokeStream => {
                let fault = self.stream_fault.as_ref();
                let frames = if op == BedrockOp::ConverseStream {
                    event_stream::converse_stream_reply(&usage, stop, latency_ms, fault)
                } else {
                    let id = format!("msg_{}", head.request_id);
                    event_stream::invoke_stream_reply(&model, &id, &usage, stop, latency_ms, fault)
                };
                match frames {
                    Ok(body) => wire::bytes_response(
                        event_stream::EVENT_STREAM,
                        StatusCode::OK,
                        body,
                        &head.request_id,
                    ),
                    // Unreachable with these small frames; an answer all the same, not a panic.
                    Err(_) => self.reject(
                        protocol,
                        WireError {
                            status: StatusCode::INTERNAL_SERVER_ERROR,
                            code: "InternalServerException",
                            namespace: wire::CORAL_SERVICE_NS,
                            message: String::from("The event stream could not be encoded."),
                            retry_after_secs: None,
                            throttling_reasons: Vec::new(),
                        },
                        &head.request_id,
                        op.as_str(),
                    ),
                }
            }
            BedrockOp::Invoke => {
                let body = bedrock_wire::anthropic_reply(
                    &model,
                    &format!("msg_{}", head.request_id),
                    &usage,
                    stop,
                );
                let mut response =
                    wire::json_response(protocol, StatusCode::OK, &body, &head.request_id);
                let headers = response.headers_mut();
                headers.insert(
                    "x-amzn-bedrock-input-token-count",
                    reply.input_tokens.into(),
                );
                headers.insert(
                    "x-amzn-bedrock-output-token-count",
                    reply.output_tokens.into(),
                );
                headers.insert("x-amzn-bedrock-invocation-latency", latency_ms.into());
                response
            }
        }
    }
}

/// A simulator rejection on the wire.
pub(crate) fn sim_error(error: &SimError) -> WireError {
    WireError {
        status: error.status(),
        code: error.code(),
        namespace: wire::DYNAMODB_NS,
        message: error.message().to_owned(),
        retry_after_secs: error.retry_after().map(|d| d.as_secs().max(1)),
        throttling_reasons: error
            .throttling_reason()
            .zip(error.throttled_resource())
            .map(|(reason, arn)| (reason.as_str(), arn.to_owned()))
            .into_iter()
            .collect(),
    }
}

/// The caller label from [`CALLER_HEADER`], if it is a plain name.
fn caller_label(headers: &HeaderMap) -> Option<Arc<str>> {
    let value = headers.get(CALLER_HEADER)?.to_str().ok()?;
    let plain = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    plain.then(|| Arc::from(value))
}
