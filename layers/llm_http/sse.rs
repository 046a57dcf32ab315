//! Settling a server-sent-event stream from its usage event: the streamed answers of
//! OpenAI-style (`/v1/chat/completions` with `"stream": true`) and Anthropic-style
//! (`/v1/messages` with `"stream": true`) endpoints report what the call spent only at their
//! end, so admission cannot settle them when the response's head arrives.
//!
//! How to use it: give the admission layer (or the stack) [`SseUsage`] as its usage reader.
//! It says a successful `text/event-stream` answer *defers* its settlement
//! ([`ReadUsage::defers`]): the adapter then puts the call's reservation into the response's
//! extensions as a [`Settlement`] instead of settling it. Wrap the body with
//! [`settle_stream`] (or [`SseBody::new`]): every frame passes through unchanged while
//! [`SseUsageReader`] watches the events, and the reservation is settled with the usage of
//! the final one. A stream dropped early, one that breaks off with an error, one that ends
//! without a usage event (OpenAI without `stream_options.include_usage`) or one whose events
//! cannot be read keeps the reservation at its estimate, as the AWS SDK adapter does
//! for ConverseStream (`smithy::stream`). Other answers are read by the inner reader (default
//! [`HeaderUsage`]: the rate-limit headers) and settled at once.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, Full};
//! use tower::{Layer, ServiceExt};
//! use tower_headroom::HttpClassifier;
//! use tower_headroom::admission::{AdmissionLayer, Cost, Fixed, FixedCost, Limit, Quota};
//! use tower_headroom::llm_http::sse::{SseUsage, settle_stream};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! let quota = Quota::new(Limit::per_minute().units(100_000).build()?);
//! let endpoint = tower::service_fn(|_: ()| async {
//!     let events = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":120,\"completion_tokens\":30}}\n\ndata: [DONE]\n\n";
//!     let response = http::Response::builder()
//!         .header("content-type", "text/event-stream")
//!         .body(Full::new(Bytes::from(events)))?;
//!     Ok::<_, http::Error>(response)
//! });
//! let svc = AdmissionLayer::new(quota.clone(), Fixed::new("gpt", FixedCost(Cost::units(1_000))))
//!     .usage(SseUsage::new())
//!     .classify(HttpClassifier::new())
//!     .layer(endpoint);
//!
//! let response = svc.oneshot(()).await?; // the reservation is handed to the response ...
//! let response = settle_stream(response); // ... and from it to the body
//! let now = || tokio::time::Instant::now();
//! assert_eq!(quota.stats(&"gpt", now()).unwrap().units_spent, Some(1_000)); // the estimate
//! response.into_body().collect().await?; // the events pass through; the usage settles
//! assert_eq!(quota.stats(&"gpt", now()).unwrap().units_spent, Some(150));
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
//! ```
//!
//! The events read (everything else passes by unparsed):
//! - OpenAI: with `stream_options.include_usage`, one last chunk before `data: [DONE]` has
//!   `usage.prompt_tokens` and `usage.completion_tokens` (and `prompt_tokens_details.cached_tokens`);
//!   the earlier chunks' `usage` is `null`; "if the stream is interrupted, you may not receive
//!   the final usage chunk" (OpenAI API reference, Chat Completions, `stream_options`,
//!   <https://platform.openai.com/docs/api-reference/chat/create>). A chunk with an `error`
//!   object ends the stream as an error.
//! - Anthropic: `message_start` carries `message.usage.input_tokens` (and
//!   `cache_creation_input_tokens`, `cache_read_input_tokens`); `message_delta` carries
//!   `usage.output_tokens`, cumulative (the latest one counts); `message_stop` ends the
//!   message; an `error` event (e.g. `overloaded_error`) ends it as an error (Anthropic,
//!   "Streaming Messages", <https://docs.anthropic.com/en/docs/build-with-claude/streaming>).
//!
//! The units charged ([`StreamUsage::units`]): input + output tokens; for Anthropic the
//! cache writes count as input and the cache reads do not (they do not count towards its
//! input-tokens-per-minute limit, <https://docs.anthropic.com/en/api/rate-limits>); OpenAI's
//! `prompt_tokens` already includes its cached tokens.
//!
//! Bounded and quiet: an event is buffered only until its blank line, at most
//! [`MAX_EVENT_BYTES`] (a larger one is skipped); only events that may hold usage or an
//! error are parsed; nothing read is logged or kept past its event. Malformed input never
//! panics: the watcher gives up and the estimate stays.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::admission::{HeaderUsage, ReadUsage, Settlement, Usage};
use crate::bedrock::TokenCounts;

/// The largest event (all its lines) the reader buffers; a larger one is skipped unread.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Which vendor's stream shape the usage came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamShape {
    /// `chat.completion.chunk`s with a final `usage` chunk.
    OpenAi,
    /// `message_start` … `message_delta`, `message_stop`.
    Anthropic,
}

/// The token counts a stream reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamUsage {
    /// The shape they were read from.
    pub shape: StreamShape,
    /// Input tokens (OpenAI `prompt_tokens`, cached ones included; Anthropic `input_tokens`,
    /// the uncached ones).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache (Anthropic).
    pub cache_write: u64,
}

impl StreamUsage {
    /// The units a call spent against a tokens-per-minute quota (see the module docs).
    pub fn units(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_write)
    }

    /// The counts for `headroom_tokens_total`, whose `input` leaves out the cached tokens:
    /// OpenAI's `prompt_tokens` includes its cached ones, so they are taken out of it;
    /// Anthropic's `input_tokens` already leaves out cache reads and writes.
    pub fn token_counts(&self) -> TokenCounts {
        let input = match self.shape {
            StreamShape::OpenAi => self.input.saturating_sub(self.cache_read),
            StreamShape::Anthropic => self.input,
        };
        TokenCounts {
            input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
        }
    }
}

/// How a stream ended, as far as its events tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEnd {
    /// The final usage event arrived.
    Usage(StreamUsage),
    /// An error event: the stream broke off; what it spent is unknown.
    Error,
}

/// A sans-IO reader of a server-sent-event stream that watches for its usage; see the
/// [module docs](self). Feed it the body's bytes as they come.
#[derive(Debug, Default)]
pub struct SseUsageReader {
    /// The current line, until its end (bounded by [`MAX_EVENT_BYTES`]).
    line: Vec<u8>,
    /// The current event's data lines, joined (bounded likewise).
    data: Vec<u8>,
    /// The current event's `event:` name, when it is one the reader cares about.
    event: Option<Event>,
    /// The current event went past the bound: skip to its end.
    oversized: bool,
    /// The previous byte was a `\r` (so a following `\n` is the same line end).
    after_cr: bool,
    /// Anthropic counts so far.
    anthropic: Option<StreamUsage>,
    /// A `message_delta` (with the final output count) was read.
    delta_seen: bool,
    done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    MessageStart,
    MessageDelta,
    MessageStop,
    Error,
    Other,
}

impl SseUsageReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        SseUsageReader::default()
    }

    /// Feeds the next bytes; `Some` once the stream's end is known (later calls return
    /// `None` and read nothing).
    pub fn feed(&mut self, bytes: &[u8]) -> Option<StreamEnd> {
        if self.done {
            return None;
        }
        for &b in bytes {
            let end = match b {
                b'\n' if self.after_cr => {
                    self.after_cr = false;
                    continue;
                }
                b'\n' => true,
                b'\r' => {
                    self.after_cr = true;
                    true
                }
                _ => {
                    self.after_cr = false;
                    false
                }
            };
            if !end {
                if !self.oversized {
                    if self.line.len() + self.data.len() >= MAX_EVENT_BYTES {
                        self.oversized = true;
                        self.line.clear();
                        self.data.clear();
                    } else {
                        self.line.push(b);
                    }
                }
                continue;
            }
            if let Some(end) = self.line_end() {
                self.done = true;
                self.clear();
                return Some(end);
            }
        }
        None
    }

    /// The body ended: the end its events told, if they told it by now (an Anthropic stream
    /// cut after its `message_delta` but before `message_stop` still has its counts).
    pub fn finish(&mut self) -> Option<StreamEnd> {
        if self.done {
            return None;
        }
        self.done = true;
        self.clear();
        self.anthropic
            .filter(|_| self.delta_seen)
            .map(StreamEnd::Usage)
    }

    fn clear(&mut self) {
        self.line = Vec::new();
        self.data = Vec::new();
    }

    /// A line ended: a field, or (blank) the end of an event.
    fn line_end(&mut self) -> Option<StreamEnd> {
        if self.line.is_empty() {
            let result = if self.oversized {
                None
            } else {
                self.dispatch()
            };
            self.data.clear();
            self.event = None;
            self.oversized = false;
            return result;
        }
        if !self.oversized {
            let line = std::mem::take(&mut self.line);
            let (field, value) = match line.iter().position(|&b| b == b':') {
                Some(0) => (&[][..], &[][..]), // a comment
                Some(i) => {
                    let value = &line[i + 1..];
                    (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
                }
                None => (&line[..], &[][..]),
            };
            match field {
                b"data" => {
                    if !self.data.is_empty() {
                        self.data.push(b'\n');
                    }
                    self.data.extend_from_slice(value);
                }
                b"event" => {
                    self.event = Some(match value {
                        b"message_start" => Event::MessageStart,
                        b"message_delta" => Event::MessageDelta,
                        b"message_stop" => Event::MessageStop,
                        b"error" => Event::Error,
                        _ => Event::Other,
                    });
                }
                _ => {}
            }
            self.line = line;
        }
        self.line.clear();
        None
    }

    /// One whole event.
    fn dispatch(&mut self) -> Option<StreamEnd> {
        let data = &self.data[..];
        if data.is_empty() || data == b"[DONE]" {
            return None;
        }
        // Only events that may hold usage, an error or the end are parsed.
        let worth = matches!(
            self.event,
            Some(Event::MessageStart | Event::MessageDelta | Event::MessageStop | Event::Error)
        ) || contains(data, b"\"usage\"")
            || contains(data, b"\"error\"")
            || contains(data, b"message_");
        if !worth {
            return None;
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
            return None;
        };
        let kind = value.get("type").and_then(serde_json::Value::as_str);
        match kind {
            Some("message_start") => {
                let usage = value.get("message").and_then(|m| m.get("usage"));
                let count = |name| count(usage, name);
                self.anthropic = Some(StreamUsage {
                    shape: StreamShape::Anthropic,
                    input: count("input_tokens"),
                    output: count("output_tokens"),
                    cache_read: count("cache_read_input_tokens"),
                    cache_write: count("cache_creation_input_tokens"),
                });
                None
            }
            Some("message_delta") => {
                let usage = value.get("usage");
                let mut counts = self.anthropic.unwrap_or(StreamUsage {
                    shape: StreamShape::Anthropic,
                    input: 0,
                    output: 0,
                    cache_read: 0,
                    cache_write: 0,
                });
                // Cumulative: the latest counts replace the earlier ones.
                let latest = |name, old| present(usage, name).unwrap_or(old);
                counts.output = latest("output_tokens", counts.output);
                counts.input = latest("input_tokens", counts.input);
                counts.cache_read = latest("cache_read_input_tokens", counts.cache_read);
                counts.cache_write = latest("cache_creation_input_tokens", counts.cache_write);
                self.anthropic = Some(counts);
                self.delta_seen = true;
                None
            }
            Some("message_stop") => self.anthropic.map(StreamEnd::Usage),
            Some("error") => Some(StreamEnd::Error),
            _ if value.get("error").is_some_and(|e| !e.is_null()) => Some(StreamEnd::Error),
            _ => {
                let usage = value.get("usage").filter(|u| u.is_object())?;
                let prompt = present(Some(usage), "prompt_tokens")?;
                let completion = present(Some(usage), "completion_tokens")?;
                let cached = usage
                    .get("prompt_tokens_details")
                    .and_then(|d| d.get("cached_tokens"))
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                Some(StreamEnd::Usage(StreamUsage {
                    shape: StreamShape::OpenAi,
                    input: prompt,
                    output: completion,
                    cache_read: cached,
                    cache_write: 0,
                }))
            }
        }
    }
}

fn present(usage: Option<&serde_json::Value>, name: &str) -> Option<u64> {
    usage?.get(name)?.as_u64()
}

fn count(usage: Option<&serde_json::Value>, name: &str) -> u64 {
    present(usage, name).unwrap_or(0)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The usage reader for endpoints that may stream: a successful `text/event-stream` answer
/// defers its settlement to its body (see the [module docs](self)); any other answer is read
/// by the inner reader (default [`HeaderUsage`]).
///
/// A deferred answer settles to the units of its usage event alone: its rate-limit headers
/// describe the budget when the head arrived, and would be stale by the stream's end.
///
/// Which usage to settle to follows how the provider counts: Anthropic counts output tokens as
/// they are written, so a stream's real usage is right; OpenAI counts a call's `max_tokens`
/// when it admits it ("the maximum of `max_tokens` and the estimated number of tokens"), so an
/// estimate of input + `max_tokens` is already what the server charged, and settling it lower
/// would let the client send more than the server admits (use [`HeaderUsage`] or `NoUsage`
/// there, as the showdown's scenario 8 does).
#[derive(Clone, Copy, Debug, Default)]
pub struct SseUsage<U = HeaderUsage> {
    inner: U,
}

impl SseUsage {
    /// Streams settled from their body, other answers from their rate-limit headers.
    pub fn new() -> Self {
        SseUsage {
            inner: HeaderUsage::new(),
        }
    }
}

impl<U> SseUsage<U> {
    /// Other answers read by `inner` (e.g. a closure reading a JSON body's usage).
    pub fn with_inner<U2>(self, inner: U2) -> SseUsage<U2> {
        SseUsage { inner }
    }
}

/// Whether `res` is a successful server-sent-event stream.
pub fn is_event_stream<B>(res: &http::Response<B>) -> bool {
    res.status().is_success()
        && res
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
}

impl<B, U: ReadUsage<http::Response<B>>> ReadUsage<http::Response<B>> for SseUsage<U> {
    fn read_usage(&self, res: &http::Response<B>) -> Usage {
        self.inner.read_usage(res)
    }

    fn read_usage_for(&self, res: &http::Response<B>, model: &str) -> Usage {
        self.inner.read_usage_for(res, model)
    }

    fn read_tokens(&self, res: &http::Response<B>) -> Option<TokenCounts> {
        self.inner.read_tokens(res)
    }

    fn defers(&self, res: &http::Response<B>) -> bool {
        is_event_stream(res)
    }

    fn hand_over(&self, res: &mut http::Response<B>, settlement: Settlement) {
        res.extensions_mut().insert(settlement);
    }
}

/// Wraps `response`'s body so that its usage event settles the [`Settlement`] the admission
/// layer or the stack put in its extensions. Without one (no admission, not a stream) the
/// body is passed through untouched and unread.
pub fn settle_stream<B>(response: http::Response<B>) -> http::Response<SseBody<B>> {
    let (mut parts, body) = response.into_parts();
    let settlement = parts.extensions.remove::<Settlement>();
    http::Response::from_parts(parts, SseBody::new(body, settlement))
}

pin_project! {
    /// A response body that passes every frame through unchanged while an [`SseUsageReader`]
    /// watches it, and settles a [`Settlement`] from the final usage event; see the
    /// [module docs](self).
    pub struct SseBody<B> {
        #[pin]
        inner: B,
        watch: Option<(SseUsageReader, Settlement)>,
    }
}

impl<B> SseBody<B> {
    /// Watches `inner` for `settlement` (with `None`, a plain pass-through).
    pub fn new(inner: B, settlement: Option<Settlement>) -> Self {
        SseBody {
            inner,
            watch: settlement.map(|s| (SseUsageReader::new(), s)),
        }
    }

    /// The wrapped body.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for SseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseBody")
            .field("inner", &self.inner)
            .field("watching", &self.watch.is_some())
            .finish()
    }
}

fn settle(settlement: &Settlement, end: StreamEnd) {
    match end {
        StreamEnd::Usage(usage) => {
            tracing::trace!(
                target: "tower_headroom::llm_http",
                units = usage.units(),
                "settled a streamed call from its usage event"
            );
            settlement.settle_with_tokens(
                Usage::units(usage.units()),
                &usage.token_counts(),
                Instant::now(),
            );
        }
        StreamEnd::Error => settlement.fail(Instant::now()),
    }
}

impl<B> Body for SseBody<B>
where
    B: Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some((reader, settlement)) = this.watch.as_mut() {
            let end = match &frame {
                Some(Ok(frame)) => match frame.data_ref() {
                    Some(data) => feed_buf(reader, data),
                    None => None,
                },
                Some(Err(_)) => Some(StreamEnd::Error),
                None => match reader.finish() {
                    Some(end) => Some(end),
                    None => {
                        // Ended cleanly without a usage event: a success at its estimate.
                        settlement.settle(Usage::UNKNOWN, Instant::now());
                        *this.watch = None;
                        return Poll::Ready(frame);
                    }
                },
            };
            if let Some(end) = end {
                settle(settlement, end);
                *this.watch = None;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Feeds a `Buf` chunk by chunk without consuming it.
fn feed_buf<D: Buf>(reader: &mut SseUsageReader, data: &D) -> Option<StreamEnd> {
    let chunk = data.chunk();
    if chunk.len() == data.remaining() {
        return reader.feed(chunk);
    }
    // A buffer in several pieces (rare for response bodies).
    let mut slices = [std::io::IoSlice::new(&[]); 32];
    let n = data.chunks_vectored(&mut slices);
    let seen: usize = slices[..n].iter().map(|s| s.len()).sum();
    if seen < data.remaining() {
        // More pieces than we look at: the stream cannot be followed, the estimate stays.
        return Some(StreamEnd::Error);
    }
    slices[..n].iter().find_map(|s| reader.feed(s))
}
