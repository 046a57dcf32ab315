//! One call: what Bedrock's quota sees of it ([`ModelCall`]), its answer ([`ModelReply`],
//! [`StopReason`]), and the admitted call in flight that settles it ([`InFlight`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::state::Inner;
use crate::sim::lock;

/// One call to a model: what Bedrock's quota sees of a Converse or InvokeModel request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCall {
    /// The model id (or inference profile id).
    pub model_id: Arc<str>,
    /// The region the call is sent to.
    pub region: Arc<str>,
    /// Input tokens, not counting tokens read from or written to the prompt cache (Converse's
    /// `usage.inputTokens`).
    pub input_tokens: u64,
    /// Input tokens read from the prompt cache (`cacheReadInputTokens`): reserved at the start,
    /// released at settlement.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache (`cacheWriteInputTokens`): reserved and
    /// charged.
    pub cache_write_tokens: u64,
    /// The `maxTokens` the call asks for; `None` reserves the model's `max_output_tokens`, as
    /// Bedrock does.
    pub max_tokens: Option<u64>,
    /// The calling application's label, for per-caller statistics.
    pub caller: Option<Arc<str>>,
}

impl ModelCall {
    /// A call asking for at most `max_tokens` output tokens, with no cache tokens and no
    /// caller label.
    pub fn new(
        model_id: impl Into<Arc<str>>,
        region: impl Into<Arc<str>>,
        input_tokens: u64,
        max_tokens: u64,
    ) -> Self {
        ModelCall {
            model_id: model_id.into(),
            region: region.into(),
            input_tokens,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            max_tokens: Some(max_tokens),
            caller: None,
        }
    }

    /// The call without `maxTokens`: it reserves (and may write up to) the model's
    /// `max_output_tokens`.
    pub fn without_max_tokens(mut self) -> Self {
        self.max_tokens = None;
        self
    }

    /// The call's prompt-cache tokens: `read` served from the cache, `write` written to it.
    pub fn cache_tokens(mut self, read: u64, write: u64) -> Self {
        self.cache_read_tokens = read;
        self.cache_write_tokens = write;
        self
    }

    /// Labels the call with the calling application.
    pub fn caller(mut self, caller: impl Into<Arc<str>>) -> Self {
        self.caller = Some(caller.into());
        self
    }
}

/// Why the model stopped writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StopReason {
    /// The model finished its answer (`end_turn`).
    EndTurn,
    /// The answer reached `max_tokens` (`max_tokens`).
    MaxTokens,
}

impl StopReason {
    /// The wire name (`end_turn`, `max_tokens`), as Converse and the Anthropic messages API
    /// send it.
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
        }
    }
}

/// A successful call's answer: its usage, as Converse's `usage` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelReply {
    /// The model id that answered.
    pub model_id: Arc<str>,
    /// The region that answered.
    pub region: Arc<str>,
    /// Input tokens (cache tokens apart).
    pub input_tokens: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Output tokens written (never above the call's `max_tokens`).
    pub output_tokens: u64,
    /// Why the model stopped.
    pub stop_reason: StopReason,
    /// How long the call took in the simulator (the latency model).
    pub latency: Duration,
    /// Quota tokens the call spent at settlement: `input + cache write + output × burndown`.
    pub quota_tokens: u64,
}

/// An admitted call in flight: it holds its reservation and its concurrency slot until
/// [`finish`](Self::finish)ed or dropped (a dropped call settles as if completed, as the
/// service keeps generating after a client goes away, but is not counted as completed).
#[derive(Debug)]
pub struct InFlight {
    pub(super) inner: Arc<Inner>,
    pub(super) model: usize,
    pub(super) window: usize,
    pub(super) day: u64,
    pub(super) reserved: u64,
    pub(super) input_tokens: u64,
    pub(super) cache_read_tokens: u64,
    pub(super) cache_write_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) max_tokens: u64,
    pub(super) latency: Duration,
    pub(super) completes_at: Instant,
    pub(super) caller: Option<Arc<str>>,
    pub(super) finished: bool,
}

impl InFlight {
    /// When the call's answer is complete, by the latency model.
    pub fn completes_at(&self) -> Instant {
        self.completes_at
    }

    /// The output tokens the call will produce.
    pub fn output_tokens(&self) -> u64 {
        self.output_tokens
    }

    /// Settles the reservation and returns the reply. Call it at (or after)
    /// [`completes_at`](Self::completes_at); the simulator does not check.
    pub fn finish(mut self) -> ModelReply {
        self.finished = true;
        let model = &self.inner.models[self.model];
        ModelReply {
            model_id: model.model_id.clone(),
            region: model.region.clone(),
            input_tokens: self.input_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens,
            output_tokens: self.output_tokens,
            stop_reason: if self.output_tokens >= self.max_tokens {
                StopReason::MaxTokens
            } else {
                StopReason::EndTurn
            },
            latency: self.latency,
            quota_tokens: self.settled_tokens(),
        }
        // Drop settles.
    }

    /// `input + cache write + output × burndown`: cache reads are released.
    fn settled_tokens(&self) -> u64 {
        self.inner.models[self.model].spec.settlement(
            self.input_tokens,
            self.cache_write_tokens,
            self.output_tokens,
        )
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let settled = self.settled_tokens();
        let mut state = lock(&self.inner.state);
        let state = &mut *state;
        let region = self.inner.models[self.model].region_index;
        if let Some(account) = state.accounts.get_mut(region) {
            account.settle(self.day, self.reserved, settled);
        }
        let model = &mut state.models[self.model];
        model.day.settle(self.day, self.reserved, settled);
        model.in_flight = model.in_flight.saturating_sub(1);
        let window = &mut model.windows[self.window];
        window.tokens = window
            .tokens
            .saturating_sub(self.reserved)
            .saturating_add(settled);
        model.tokens_settled = model.tokens_settled.saturating_add(settled);
        model.input_tokens = model.input_tokens.saturating_add(self.input_tokens);
        model.cache_read_tokens = model
            .cache_read_tokens
            .saturating_add(self.cache_read_tokens);
        model.cache_write_tokens = model
            .cache_write_tokens
            .saturating_add(self.cache_write_tokens);
        model.output_tokens = model.output_tokens.saturating_add(self.output_tokens);
        if self.finished {
            model.counts.completed += 1;
        }
        if let Some((counts, units)) = state.callers.entry(&self.caller) {
            *units += settled as f64;
            if self.finished {
                counts.completed += 1;
            }
        }
    }
}
