//! [`Settlement`]: a call's reservation handed to its response, for answers whose usage
//! arrives at the end of their body (a server-sent-event stream) rather than with their head.
//!
//! The decision lives in one place, [`ReadUsage::defers`]: when the usage reader says a
//! successful response's usage is in its body, the adapter (the [`AdmissionLayer`]'s future,
//! the [`Stack`](crate::stack::Stack)'s) does not settle at response time; it wraps the
//! reservation in a [`Settlement`] and gives it to the reader's [`ReadUsage::hand_over`],
//! which attaches it to the response (for `http::Response`, in its extensions). A body wrapper
//! (e.g. [`llm_http::sse`](crate::llm_http::sse), feature `llm-http`) takes it from there and
//! settles it with the usage of the stream's final event. Every other response is settled at
//! once, as before, and allocates nothing; a deferred one costs one allocation.
//!
//! A settlement that is dropped unsettled (the stream dropped early, the body never wrapped)
//! keeps the reservation at its estimate, as a reservation dropped in flight does.
//!
//! [`AdmissionLayer`]: crate::admission::AdmissionLayer
//! [`ReadUsage::defers`]: crate::admission::ReadUsage::defers
//! [`ReadUsage::hand_over`]: crate::admission::ReadUsage::hand_over

use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;
use tracing::Span;

use super::cost::Usage;
use super::quota::{Reservation, Slot};
use crate::bedrock::TokenCounts;
use crate::observe::TokenCounters;
use crate::{Outcome, OutcomeKind};

/// A reservation to settle later, from the response's body: for answers whose usage arrives at
/// the end of their body (a server-sent-event stream). When the usage reader says so
/// ([`ReadUsage::defers`](crate::admission::ReadUsage::defers)), the admission layer and the
/// stack hand a successful call's reservation to the response as a `Settlement`
/// ([`ReadUsage::hand_over`](crate::admission::ReadUsage::hand_over): for `http::Response`, in
/// its extensions) instead of settling it; a body wrapper settles it from the stream's usage
/// (`llm_http::sse`, feature `llm-http`). Dropped unsettled, it keeps the estimate.
///
/// Cheap to clone (`http` extensions need `Clone`): the clones share the one reservation, the
/// first [`settle`](Settlement::settle) or [`fail`](Settlement::fail) ends it and the others
/// then do nothing. Dropping every clone unsettled keeps the estimate.
///
/// A settlement handed over by the stack (or by an admission layer) carries that target's
/// token counters: [`settle_with_tokens`](Settlement::settle_with_tokens) counts the stream's
/// reported tokens in `headroom_tokens_total` as a non-streamed answer's are counted. One
/// handed over by the stack also holds the call's span: the span ends with the stream (when
/// the last clone of the settlement is dropped) and carries the stream's
/// `gen_ai.usage.input_tokens` and `gen_ai.usage.output_tokens`.
#[derive(Clone)]
pub struct Settlement {
    inner: Arc<Mutex<Option<Box<dyn Settle>>>>,
    tokens: Option<TokenCounters>,
    span: Span,
}

/// The type-erased reservation.
trait Settle: Send {
    fn finish(self: Box<Self>, outcome: &Outcome, usage: Usage, now: Instant);
}

impl<T: Slot + 'static> Settle for Reservation<T> {
    fn finish(self: Box<Self>, outcome: &Outcome, usage: Usage, now: Instant) {
        let _ = crate::lifecycle::settle(*self, outcome, usage, || now);
    }
}

impl Settlement {
    /// Wraps an admitted call's reservation.
    pub fn new<T: Slot + 'static>(reservation: Reservation<T>) -> Self {
        Settlement {
            inner: Arc::new(Mutex::new(Some(Box::new(reservation)))),
            tokens: None,
            span: Span::none(),
        }
    }

    /// The same, counting the tokens [`settle_with_tokens`](Self::settle_with_tokens) is
    /// given in `tokens`.
    pub fn counting(mut self, tokens: TokenCounters) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// The same, holding `span` open until the stream ends and recording the stream's token
    /// counts on it ([`settle_with_tokens`](Self::settle_with_tokens)).
    pub fn traced(mut self, span: Span) -> Self {
        self.span = span;
        self
    }

    fn take(&self) -> Option<Box<dyn Settle>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The call succeeded and spent `usage`: settles the reservation to it.
    pub fn settle(&self, usage: Usage, now: Instant) {
        if let Some(reservation) = self.take() {
            reservation.finish(&Outcome::SUCCESS, usage, now);
        }
    }

    /// [`settle`](Self::settle), and counts the token counts the stream reported in the
    /// counters the settlement carries ([`counting`](Self::counting)) and on its span
    /// ([`traced`](Self::traced)) — once, by the clone that settles.
    pub fn settle_with_tokens(&self, usage: Usage, tokens: &TokenCounts, now: Instant) {
        if let Some(reservation) = self.take() {
            if let Some(counters) = &self.tokens {
                counters.add(tokens);
            }
            crate::observe::span::usage(&self.span, tokens);
            reservation.finish(&Outcome::SUCCESS, usage, now);
        }
    }

    /// The stream broke off midway (an error event, an error from the body): what it spent
    /// is unknown, so the estimate stays.
    pub fn fail(&self, now: Instant) {
        if let Some(reservation) = self.take() {
            reservation.finish(&Outcome::new(OutcomeKind::Transient), Usage::UNKNOWN, now);
        }
    }

    /// Whether the reservation is still to be settled.
    pub fn is_pending(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
    }
}

impl fmt::Debug for Settlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settlement")
            .field("pending", &self.is_pending())
            .field("counts_tokens", &self.tokens.is_some())
            .field("traced", &!self.span.is_none())
            .finish()
    }
}

/// Hands `reservation` over to `response` when `usage` says its usage is in its body and the
/// attempt succeeded, with `tokens` to count the stream's tokens in and the call's `span`;
/// otherwise gives it back to be settled now. The one rule, shared by the admission layer and
/// the stack.
#[inline]
pub(crate) fn defer_or_keep<T, Res, U>(
    reservation: Option<Reservation<T>>,
    outcome: &Outcome,
    usage: &U,
    response: &mut Res,
    tokens: &TokenCounters,
    span: &Span,
) -> Option<Reservation<T>>
where
    T: Slot + 'static,
    U: super::cost::ReadUsage<Res> + ?Sized,
{
    match reservation {
        Some(r) if outcome.kind == OutcomeKind::Success && usage.defers(response) => {
            let settlement = Settlement::new(r)
                .counting(tokens.clone())
                .traced(span.clone());
            usage.hand_over(response, settlement);
            None
        }
        other => other,
    }
}
