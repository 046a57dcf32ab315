//! Settling a streamed Bedrock response (`ConverseStream`) from the stream itself.
//!
//! The SDK hands the caller an event receiver, so no interceptor hook sees the stream's
//! `metadata` event, which carries the call's usage. The HTTP client therefore wraps the
//! response body: the frames pass through unchanged while a decoder (`aws-smithy-eventstream`'s,
//! not a hand-written one) watches for `metadata` and settles the reservation with its usage.
//! A stream dropped before that event settles what was reserved (the reservation's drop).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::admission::{Reservation, Slot, Usage};
use crate::bedrock::{ModelSpec, TokenCounts};
use crate::observe::Labels;
use crate::{Outcome, OutcomeKind};

/// Wraps the body of a streamed response so that its usage event settles `reservation`.
pub(crate) fn settle_stream<T: Slot + 'static>(
    response: HttpResponse,
    reservation: Reservation<T>,
    spec: ModelSpec,
    labels: Labels,
) -> HttpResponse {
    let mut response = response;
    let inner = response.take_body();
    *response.body_mut() = SdkBody::from_body_1_x(UsageBody {
        inner,
        watcher: Some(Watcher {
            decoder: MessageFrameDecoder::new(),
            buffer: BytesMut::new(),
            reservation: Some(reservation),
            spec,
            labels,
        }),
    });
    response
}

pin_project! {
    struct UsageBody<T: Slot> {
        #[pin]
        inner: SdkBody,
        watcher: Option<Watcher<T>>,
    }
}

struct Watcher<T: Slot> {
    decoder: MessageFrameDecoder,
    buffer: BytesMut,
    reservation: Option<Reservation<T>>,
    /// The numbers of the model the attempt went to (its burndown settles the output).
    spec: ModelSpec,
    labels: Labels,
}

impl<T: Slot> Watcher<T> {
    /// Feeds the bytes of a data frame; settles on `metadata` and stops watching after it.
    fn feed(&mut self, data: &[u8]) -> bool {
        self.buffer.extend_from_slice(data);
        loop {
            match self.decoder.decode_frame(&mut self.buffer) {
                Ok(DecodedFrame::Complete(message)) => {
                    if self.read(&message) {
                        return true;
                    }
                }
                Ok(DecodedFrame::Incomplete) => return false,
                // A stream we cannot read: leave the reservation at its estimate.
                Err(_) => return true,
            }
        }
    }

    /// Reads one event; `true` when the reservation is settled.
    fn read(&mut self, message: &Message) -> bool {
        let header = |name: &str| {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| match h.value() {
                    HeaderValue::String(s) => Some(s.as_str()),
                    _ => None,
                })
        };
        match (header(":message-type"), header(":event-type")) {
            (Some("event"), Some("metadata")) => {
                let units = usage_counts(message.payload()).map(|c| c.charged(self.spec));
                if let Some(reservation) = self.reservation.take() {
                    let usage = units.map_or(Usage::UNKNOWN, Usage::units);
                    reservation.finish(&Outcome::SUCCESS, usage, Instant::now());
                    tracing::trace!(
                        target: "tower_headroom::smithy",
                        labels = %self.labels,
                        units,
                        "settled a streamed call from its usage event"
                    );
                }
                true
            }
            (Some("exception" | "error"), _) => {
                // The stream failed midway: what was spent is unknown, so the estimate stays.
                if let Some(reservation) = self.reservation.take() {
                    reservation.finish(
                        &Outcome::new(OutcomeKind::Transient),
                        Usage::UNKNOWN,
                        Instant::now(),
                    );
                }
                true
            }
            _ => false,
        }
    }
}

/// The token counts of a `metadata` event's payload: `usage.inputTokens`, `outputTokens`,
/// `cacheReadInputTokens`, `cacheWriteInputTokens` (the cache counts 0 when absent).
fn usage_counts(payload: &[u8]) -> Option<TokenCounts> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let usage = value.get("usage")?;
    let cached = |name: &str| usage.get(name).map_or(Some(0), serde_json::Value::as_u64);
    Some(
        TokenCounts::new(
            usage.get("inputTokens")?.as_u64()?,
            usage.get("outputTokens")?.as_u64()?,
        )
        .with_cache(
            cached("cacheReadInputTokens")?,
            cached("cacheWriteInputTokens")?,
        ),
    )
}

impl<T: Slot> Body for UsageBody<T> {
    type Data = Bytes;
    type Error = <SdkBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(frame)), Some(watcher)) = (&frame, this.watcher.as_mut()) {
            if let Some(data) = frame.data_ref() {
                if watcher.feed(data.chunk()) {
                    *this.watcher = None;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_usage_and_ignores_garbage() {
        let payload = br#"{"usage":{"inputTokens":12,"outputTokens":30,"totalTokens":42},"metrics":{"latencyMs":5}}"#;
        let charged = |payload: &[u8], burndown| {
            usage_counts(payload).map(|c| c.charged(ModelSpec::new(burndown, 1)))
        };
        assert_eq!(charged(payload, 1), Some(42));
        assert_eq!(charged(payload, 5), Some(162));
        // Cache reads are released, cache writes charged.
        let cached = br#"{"usage":{"inputTokens":12,"outputTokens":30,"cacheReadInputTokens":900,"cacheWriteInputTokens":7}}"#;
        assert_eq!(charged(cached, 5), Some(12 + 7 + 150));
        assert_eq!(charged(b"not json", 1), None);
        assert_eq!(charged(br#"{"usage":{"inputTokens":-1}}"#, 1), None);
        assert_eq!(
            charged(
                br#"{"usage":{"inputTokens":1,"outputTokens":1,"cacheReadInputTokens":"x"}}"#,
                1
            ),
            None
        );
    }
}
