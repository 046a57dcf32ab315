//! Settling a streamed Bedrock response (`ConverseStream`, `InvokeModelWithResponseStream`)
//! from the stream itself, and reporting an error that arrives inside it.
//!
//! The SDK hands the caller an event receiver, so no interceptor hook sees the events after
//! the initial `200`: the attempt has ended (a success for the retry policy and the breaker)
//! by the time the usage or an error arrives. The HTTP client therefore wraps the response
//! body: the frames pass through unchanged while a decoder (`aws-smithy-eventstream`'s, not a
//! hand-written one) watches them ([`events`] reads what each one says), and the first event
//! that ends the call is reported to the cores through [`StreamEnd`]:
//!
//! - **usage** — ConverseStream's `metadata` event (`usage`,
//!   [ConverseStreamMetadataEvent](https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamMetadataEvent.html)),
//!   or an InvokeModelWithResponseStream `chunk` whose decoded body carries Bedrock's
//!   `amazon-bedrock-invocationMetrics` or closes an Anthropic message (`message_start`'s
//!   `message.usage`, then `message_delta`'s `usage.output_tokens`, then `message_stop`):
//!   the reservation settles to the counts × the burndown of the model the attempt went to,
//!   and the counts go to `headroom_tokens_total` (as a non-streamed answer's do).
//! - **an exception** (`:message-type` `exception`, its type in `:exception-type`, e.g.
//!   `throttlingException`, `serviceUnavailableException`, `modelStreamErrorException`,
//!   `modelTimeoutException`, `internalServerException`, `validationException`;
//!   [ResponseStream](https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ResponseStream.html),
//!   [ConverseStreamOutput](https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html))
//!   or a generic `error` message (`:error-code`): classified by the same table as HTTP errors
//!   ([`aws::classify`](crate::classify::aws::classify), case-insensitive), then the
//!   reservation settles with that outcome and its usage unknown (its estimate stays: the
//!   model ran until the error), so a throttle teaches the quota as one before the stream
//!   would; an outcome that counts for the breaker is recorded as a
//!   [late failure](crate::breaker::BreakerHandle::record_late) of the attempt's target (its
//!   `200` was counted as a success); and the attempt is counted once more in
//!   `headroom_attempts_total` under its class. The caller still gets the SDK's typed stream
//!   error: the frames are passed on untouched.
//!
//! A stream dropped (or unreadable) before any of these keeps what was reserved (the
//! reservation's drop). Neither the payloads nor the exception's type or message are logged:
//! events carry the outcome's class only.

use std::sync::Arc;

use tokio::time::Instant;

use super::call::Events;
use crate::Outcome;
use crate::admission::{Reservation, Slot, Usage};
use crate::bedrock::{ModelSpec, TokenCounts};
use crate::breaker::BreakerHandle;

#[cfg(feature = "bedrock")]
mod body;
#[cfg(feature = "bedrock")]
mod events;

#[cfg(feature = "bedrock")]
pub(crate) use body::settle_stream;

/// What a streamed response reports to when its stream says how the call ended: the attempt's
/// reservation, the numbers of its model, its target's breaker and its metrics.
pub(crate) struct StreamEnd<T: Slot> {
    /// The attempt's reservation, when the client has a quota.
    pub(crate) reservation: Option<Reservation<T>>,
    /// The numbers of the model the attempt went to (its burndown settles the output).
    pub(crate) spec: ModelSpec,
    /// The breaker the attempt's permit came from, when it had one.
    pub(crate) breaker: Option<BreakerHandle>,
    /// Where the attempt reports.
    pub(crate) events: Arc<Events>,
}

#[cfg_attr(not(feature = "bedrock"), allow(dead_code))]
impl<T: Slot> StreamEnd<T> {
    /// The stream reported the call's usage: the reservation settles to it, and its tokens
    /// count in `headroom_tokens_total` as a non-streamed answer's do.
    fn succeeded(self, counts: TokenCounts) {
        self.events.tokens.add(&counts);
        let units = counts.charged(self.spec);
        if let Some(reservation) = self.reservation {
            let outcome = Outcome::SUCCESS;
            let limit = reservation.finish(&outcome, Usage::units(units), Instant::now());
            self.events.stream_ended(&outcome, limit);
        }
        tracing::trace!(
            target: "tower_headroom::smithy",
            labels = %self.events.labels,
            units,
            "settled a streamed call from its usage event"
        );
    }

    /// The stream broke with `outcome` after its `200`: the cores hear it as they would have
    /// before the stream (see the module docs).
    fn failed(self, outcome: Outcome) {
        let now = Instant::now();
        // Usage unknown, not refused: the model ran until the error, so the estimate stays.
        let limit = self
            .reservation
            .and_then(|reservation| reservation.finish(&outcome, Usage::UNKNOWN, now));
        if let Some(breaker) = &self.breaker {
            breaker.record_late(outcome, now);
        }
        self.events.stream_ended(&outcome, limit);
        tracing::debug!(
            target: "tower_headroom::smithy",
            labels = %self.events.labels,
            class = outcome.kind.as_str(),
            "a streamed response failed after its 200"
        );
    }
}

/// Without the `bedrock` feature no operation streams: the reservation settles at its estimate.
#[cfg(not(feature = "bedrock"))]
pub(crate) fn settle_stream<T: Slot>(
    response: aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    end: StreamEnd<T>,
) -> aws_smithy_runtime_api::client::orchestrator::HttpResponse {
    drop(end);
    response
}
