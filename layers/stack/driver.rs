//! The stack's call driver: one call's state apart from its future's pinned state machine,
//! and the steps that drive it through the [lifecycle core](crate::lifecycle) — choose a
//! target, admit, ready, answer, decide — each returning what the poll loop does next.
//!
//! The steps the future calls are `#[inline]`: generic code is placed in codegen units by the
//! module that defines it, and without the hint the future and its steps landed apart and
//! stopped being inlined into each other (the stack's success path measured ~10% slower,
//! `benches/stack.rs`).

use std::error::Error;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use tokio::time::Instant;
use tower_service::Service;
use tracing::Span;

use super::builder::{RewriteFor, TargetQuota, TargetSlots};
use super::service::{CostHeadroom, Costs, Shared};
use crate::admission::{Grant, RejectReason, Rejected, Reservation, Usage};
use crate::bedrock::TokenCounts;
use crate::breaker::BreakerPermit;
use crate::classify::classify_error;
use crate::concurrency::ConcurrencyLimited;
use crate::deadline::Deadline;
use crate::fallback::{
    Annotate, Choice, Exhaustion, HttpExtension, NoTargetAvailable, report_served,
};
use crate::lifecycle::{Attempt, Call, Ended, Next, Routing};
use crate::observe::span;
use crate::retry::{StopReason, stopped_error};
use crate::timeout::AttemptTimedOut;
use crate::{BoxError, Classify, Outcome};

/// What the poll loop does next, as a step decides.
pub(super) enum Step<Res> {
    /// Wait for the grant at this instant.
    Admit(Instant),
    /// Ready the client and call it.
    Ready,
    /// Sleep until this instant, then begin again.
    Sleep(Instant),
    /// Return this.
    Finish(Result<Res, BoxError>),
}

/// The call's state apart from the pinned state machine.
pub(super) struct Driver<S, T, C, A: TargetSlots, F, Req> {
    pub(super) shared: Arc<Shared<S, T, C, A, F>>,
    pub(super) original: Req,
    pub(super) cost: Costs,
    pub(super) call: Call,
    pub(super) attempt: Option<Attempt<A::Slot>>,
    /// The target's client for the attempt, and its request, rewritten for the target.
    pub(super) service: Option<S>,
    pub(super) request: Option<Req>,
    /// A clock reading to begin the next attempt with, when one is at hand.
    pub(super) clock: Option<Instant>,
    /// When the attempt was admitted (its timeout runs from here).
    pub(super) admitted: Instant,
    /// The admission instant while the attempt has not yet waited on anything: an answer
    /// ready in the same poll took no time the stack could measure apart from its own work,
    /// so its end is this instant and the attempt reads the clock once.
    pub(super) fresh: Option<Instant>,
    /// The call's span, and the attempt's (`Span::none()` when no subscriber wants them).
    pub(super) span: Span,
    pub(super) attempt_span: Span,
    /// The tokens the attempt's answer reported, for its span.
    pub(super) tokens: Option<TokenCounts>,
    /// Attempts opened (fallback moves included), for the spans.
    pub(super) attempts: u32,
}

impl<S, T, C, A: TargetSlots, F, Req> Driver<S, T, C, A, F, Req> {
    /// A call's driver at `now`, before its first attempt.
    #[inline]
    pub(super) fn new(
        shared: Arc<Shared<S, T, C, A, F>>,
        original: Req,
        cost: Costs,
        call: Call,
        now: Instant,
        span: Span,
    ) -> Self {
        Driver {
            shared,
            original,
            cost,
            call,
            attempt: None,
            service: None,
            request: None,
            clock: Some(now),
            admitted: now,
            fresh: None,
            span,
            attempt_span: Span::none(),
            tokens: None,
            attempts: 0,
        }
    }
}

impl<S, T, C, A, F, Req> Driver<S, T, C, A, F, Req>
where
    Req: Clone,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    T: PartialEq,
    C: Classify<S::Response>,
    A: TargetQuota<Req, S::Response>,
    F: RewriteFor<Req, T>,
    HttpExtension: Annotate<S::Response>,
{
    /// Chooses the attempt's target and admits it.
    #[inline]
    pub(super) fn begin(&mut self, now: Instant) -> Step<S::Response> {
        let shared = Arc::clone(&self.shared);
        let headroom = headroom(&shared, &self.cost);
        let routing = Routing {
            route: &shared.route,
            breakers: &shared.breakers,
            headroom: &headroom,
        };
        // The usual case first: the preferred target admits the call at once, asked once.
        if let (Some(cost), Some(slot)) = (self.cost.of(0), shared.admission.slot(0)) {
            let (priority, tenant) = shared.admission.priority();
            let ask = self.call.ask(cost, priority, tenant, None);
            let admitted = self.call.choose_admitted(&routing, now, || {
                match Reservation::reserve(slot.clone(), &ask, now) {
                    Ok(reservation) if reservation.grant() == Grant::Now => Some(reservation),
                    // It would wait: given back, and the route weighs every target.
                    Ok(reservation) => {
                        reservation.cancel(now);
                        None
                    }
                    Err(_) => None,
                }
            });
            if let Some((permit, reservation)) = admitted {
                self.open_attempt(0, permit, now).reserved(reservation);
                return self.granted(now);
            }
        }
        match self.call.choose(&routing, now) {
            Choice::Call { target, permit, .. } => self.attempt_at(target, permit, now),
            Choice::Exhausted { retry_in, cause } => {
                let error: BoxError = match (retry_in, cause, self.cost.is_some()) {
                    // No target's window could ever hold the call: the request is at fault.
                    (None, Exhaustion::NoHeadroom, true) => Box::new(Rejected {
                        retry_in: None,
                        reason: RejectReason::CostTooLarge,
                    }),
                    // Every target's quota says no: when each says so for a spent long window
                    // (a day), that is the call's answer, a spent day.
                    (_, Exhaustion::NoHeadroom, true) => match self.spent_everywhere(now) {
                        Some(spent) => Box::new(spent),
                        None => Box::new(NoTargetAvailable { retry_in, cause }),
                    },
                    _ => Box::new(NoTargetAvailable { retry_in, cause }),
                };
                self.refused(error, now)
            }
        }
    }

    /// Admission's refusal when every target of the route is refused for a spent long window
    /// (the soonest to return), `None` when any target is held back by anything else. Asked
    /// only once the route found no target with room, so the failure path alone pays for it.
    pub(super) fn spent_everywhere(&self, now: Instant) -> Option<Rejected> {
        let shared = &*self.shared;
        let (priority, tenant) = shared.admission.priority();
        let mut soonest: Option<Rejected> = None;
        for target in 0..shared.route.targets().len() {
            let (Some(cost), Some(slot)) = (self.cost.of(target), shared.admission.slot(target))
            else {
                return None;
            };
            // A target with room now is not spent, and must not be reserved at to find out:
            // an admitted reservation given back unsent keeps its request counted.
            if crate::admission::Slot::admit_wait(slot, cost, now)
                == Some(std::time::Duration::ZERO)
            {
                return None;
            }
            let ask = self.call.ask(cost, priority, tenant, None);
            match Reservation::reserve(slot.clone(), &ask, now) {
                Err(rejected) if matches!(rejected.reason, RejectReason::QuotaExhausted { .. }) => {
                    if soonest.is_none_or(|s| rejected.retry_in < s.retry_in) {
                        soonest = Some(rejected);
                    }
                }
                Err(_) => return None,
                Ok(reservation) => {
                    // Room after all (another call gave some back since the peek above): not a
                    // spent day. Given back unsent; the next attempt asks again.
                    match reservation.grant() {
                        Grant::Now => reservation.release_unsent(now),
                        Grant::At(_) => reservation.cancel(now),
                    }
                    return None;
                }
            }
        }
        soonest
    }

    /// Opens an attempt at `target`: the request rewritten for it and its client.
    pub(super) fn open_attempt(
        &mut self,
        target: usize,
        permit: Option<BreakerPermit>,
        now: Instant,
    ) -> &mut Attempt<A::Slot> {
        let shared = &*self.shared;
        let mut request = self.original.clone();
        shared
            .rewrite
            .rewrite(&mut request, shared.route.targets()[target].key());
        self.request = Some(request);
        self.service = Some(shared.services[target].clone());
        let hop = self.call.plan().map_or(0, |p| p.calls().saturating_sub(1));
        self.attempts = self.attempts.saturating_add(1);
        self.attempt_span = span::attempt(
            &self.span,
            shared.route.targets()[target].labels(),
            self.attempts,
            hop,
        );
        // Built in place: an attempt is a few hundred bytes, moved on the hot path otherwise.
        self.attempt.insert(Attempt::new(Some(target), permit, now))
    }

    /// Opens an attempt at `target` and admits it: its quota.
    pub(super) fn attempt_at(
        &mut self,
        target: usize,
        permit: Option<BreakerPermit>,
        now: Instant,
    ) -> Step<S::Response> {
        self.open_attempt(target, permit, now);
        let shared = &*self.shared;
        let (Some(cost), Some(slot)) = (self.cost.of(target), shared.admission.slot(target)) else {
            return self.granted(now);
        };
        let (priority, tenant) = shared.admission.priority();
        let ask = self.call.ask(cost, priority, tenant, None);
        match Reservation::reserve(slot.clone(), &ask, now) {
            Err(rejected) => {
                let events = &shared.events[target];
                events.admission.rejected(&events.labels, &rejected);
                self.refused(Box::new(rejected), now)
            }
            Ok(reservation) => {
                let grant = reservation.grant();
                if let Some(attempt) = self.attempt.as_mut() {
                    attempt.reserved(reservation);
                }
                match grant {
                    Grant::Now => self.granted(now),
                    Grant::At(at) => Step::Admit(at),
                }
            }
        }
    }

    /// The quota granted the attempt at `now`: it takes a slot of its target's concurrency
    /// limit (shed at once when the limit is full), and its timeout starts.
    #[inline]
    pub(super) fn granted(&mut self, now: Instant) -> Step<S::Response> {
        self.admitted = now;
        self.fresh = Some(now);
        let shared = Arc::clone(&self.shared);
        let Some(attempt) = self.attempt.as_mut() else {
            return Step::Ready;
        };
        let Some(limit) = attempt.target().and_then(|t| shared.limits[t].as_ref()) else {
            return Step::Ready;
        };
        match attempt.take_slot(limit, now) {
            Ok(()) => Step::Ready,
            Err(full) => {
                let error = ConcurrencyLimited::new(full, limit.labels().clone());
                self.refused(Box::new(error), now)
            }
        }
    }

    /// The reservation the attempt waits on.
    #[inline]
    pub(super) fn reservation(&mut self) -> Option<&mut Reservation<A::Slot>> {
        self.attempt.as_mut()?.reservation_mut()
    }

    /// The attempt was admitted after waiting since it began.
    #[inline]
    pub(super) fn waited(&self, now: Instant) {
        if let Some((attempt, target)) = self.attempt.as_ref().and_then(|a| Some((a, a.target()?)))
        {
            let wait = now.saturating_duration_since(attempt.started());
            self.shared.events[target].admission.waited(wait);
            span::waited(&self.attempt_span, wait);
        }
    }

    /// A confirm found the deadline could not be met: the reservation is spent.
    #[inline]
    pub(super) fn rejected_waiting(
        &mut self,
        rejected: Rejected,
        now: Instant,
    ) -> Step<S::Response> {
        if let Some(attempt) = self.attempt.as_mut() {
            attempt.forget_reservation();
            if let Some(target) = attempt.target() {
                let events = &self.shared.events[target];
                events.admission.rejected(&events.labels, &rejected);
            }
        }
        self.refused(Box::new(rejected), now)
    }

    /// Readies the target's client and calls it; `Err` with the next step when readiness
    /// failed (the attempt was never sent).
    #[inline]
    pub(super) fn poll_ready(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<S::Future, Step<S::Response>>> {
        let Some(service) = self.service.as_mut() else {
            let error: BoxError = "stack attempt without a client".into();
            return Poll::Ready(Err(Step::Finish(Err(error))));
        };
        match ready!(service.poll_ready(cx)) {
            Ok(()) => {
                let Some(request) = self.request.take() else {
                    let error: BoxError = "stack attempt without a request".into();
                    return Poll::Ready(Err(Step::Finish(Err(error))));
                };
                if let Some(attempt) = self.attempt.as_mut() {
                    attempt.sent();
                }
                let deadline = self.call.deadline();
                Poll::Ready(Ok(Deadline::scope(deadline, || service.call(request))))
            }
            Err(error) => {
                // A client that cannot get ready is a failed attempt at it, never sent.
                self.service = None;
                let error: BoxError = error.into();
                let outcome = self.shared.classifier.classify(Err(&*error));
                Poll::Ready(Err(self.ended(
                    outcome,
                    Err(error),
                    Usage::UNKNOWN,
                    Instant::now(),
                )))
            }
        }
    }

    /// When the attempt in flight is abandoned, if the stack has an attempt timeout.
    #[inline]
    pub(super) fn timeout(&self) -> Option<Instant> {
        let timeout = self.shared.attempt_timeout?;
        let target = self.attempt.as_ref().and_then(|a| a.target()).unwrap_or(0);
        self.admitted
            .checked_add(timeout.for_cost(self.cost.of(target)))
    }

    /// The attempt outlived its timeout: abandoned (its future dropped) as a timeout.
    #[inline]
    pub(super) fn timed_out(&mut self) -> Step<S::Response> {
        let now = Instant::now();
        self.service = None;
        let after = now.saturating_duration_since(self.admitted);
        let error: BoxError = Box::new(AttemptTimedOut { after });
        let outcome = classify_error(&*error);
        self.ended(outcome, Err(error), Usage::UNKNOWN, now)
    }

    /// The attempt's answer.
    #[inline]
    pub(super) fn answered(&mut self, result: Result<S::Response, BoxError>) -> Step<S::Response> {
        // The attempt's end (latency, settling, the retry decision): a second clock read,
        // unless the answer came in the poll that admitted it.
        let now = self.fresh.take().unwrap_or_else(Instant::now);
        self.service = None;
        let shared = &*self.shared;
        let mut result = result;
        let (outcome, usage) = match &mut result {
            Ok(response) => {
                let outcome = shared.classifier.classify(Ok(&*response));
                let target = self.attempt.as_ref().and_then(|a| a.target());
                // A stream's usage is in its body: its reservation goes with it, with the
                // target's token counters and the call's span for the tokens its usage event
                // reports.
                if let (Some(attempt), Some(t)) = (self.attempt.as_mut(), target) {
                    let reservation = attempt.take_reservation();
                    let tokens = &shared.events[t].tokens;
                    let span = &self.span;
                    if let Some(kept) =
                        shared
                            .admission
                            .defer(reservation, &outcome, response, tokens, span)
                    {
                        attempt.reserved(kept);
                    }
                }
                if let (Some(t), Some(tokens)) = (target, shared.admission.tokens(&*response)) {
                    shared.events[t].tokens.add(&tokens);
                    self.tokens = Some(tokens);
                }
                let model = target.and_then(|t| shared.route.targets()[t].labels().model_name());
                let usage = match model {
                    Some(model) => shared.admission.usage_for(&*response, model),
                    None => shared.admission.usage(&*response),
                };
                (outcome, usage)
            }
            Err(error) => (
                shared
                    .classifier
                    .classify(Err(&**error as &(dyn Error + 'static))),
                Usage::UNKNOWN,
            ),
        };
        self.ended(outcome, result, usage, now)
    }

    /// This client refused the attempt before sending it (shed, breakers open, no target):
    /// the crate's own error says why, classified as a local refusal.
    pub(super) fn refused(&mut self, error: BoxError, now: Instant) -> Step<S::Response> {
        let outcome = classify_error(&*error);
        self.ended(outcome, Err(error), Usage::UNKNOWN, now)
    }

    /// Ends the attempt and takes the next step the call decides.
    pub(super) fn ended(
        &mut self,
        outcome: Outcome,
        result: Result<S::Response, BoxError>,
        usage: Usage,
        now: Instant,
    ) -> Step<S::Response> {
        let shared = Arc::clone(&self.shared);
        let (ended, started) = match self.attempt.as_mut() {
            Some(attempt) => {
                let started = attempt.started();
                let ended = attempt.end(&outcome, usage, now);
                self.attempt = None;
                (ended, Some(started))
            }
            None => (
                Ended {
                    target: None,
                    sent: false,
                    limit: None,
                },
                None,
            ),
        };
        let tokens = self.tokens.take();
        span::ended(&self.attempt_span, &outcome, tokens.as_ref(), None);
        self.attempt_span = Span::none();
        let events = ended.target.map(|t| &shared.events[t]);
        let retry_events = events.map_or(&shared.unrouted, |e| &e.retry);
        // Asked once for the attempt's metrics: without a recorder they are all skipped.
        let live = retry_events.live();
        if live {
            retry_events.attempt(&outcome);
            if let Some(started) = started {
                retry_events.attempt_took(&outcome, started, now);
            }
        }
        if let (Some(limit), Some(events)) = (ended.limit, events) {
            events.admission.settled(&events.labels, &outcome, limit);
        }
        if let (true, Some(target), Some(events)) = (live, ended.target, events) {
            events
                .admission
                .sample_quota(now, || shared.admission.slot_stats(target, now));
        }
        let headroom = headroom(&shared, &self.cost);
        let routing = Routing {
            route: &shared.route,
            breakers: &shared.breakers,
            headroom: &headroom,
        };
        let next = self
            .call
            .next(&shared.policy, Some(&routing), &ended, &outcome, now);
        match next {
            Next::Done => {
                if live {
                    retry_events.call_took(&outcome, self.call.started(), now);
                }
                span::ended(&self.span, &outcome, tokens.as_ref(), Some(self.attempts));
                Step::Finish(self.finish(result, ended.target, &outcome))
            }
            Next::Move { target, permit } => {
                if let Some(from) = ended.target {
                    let targets = shared.route.targets();
                    tracing::debug!(
                        target_name = targets[from].name().as_ref(),
                        to = targets[target].name().as_ref(),
                        class = outcome.kind.as_str(),
                        "fallback moving to the next target"
                    );
                }
                drop(result);
                self.attempt_at(target, permit, now)
            }
            Next::Retry(delay) => {
                retry_events.retry(&outcome, self.call.retry(), delay);
                drop(result);
                Step::Sleep(now + delay)
            }
            Next::Stop(reason) => {
                retry_events.stop(&outcome, self.call.retry(), reason);
                retry_events.call_took(&outcome, self.call.started(), now);
                span::ended(&self.span, &outcome, tokens.as_ref(), Some(self.attempts));
                let result = self.stopped(result, outcome, reason);
                Step::Finish(self.finish(result, ended.target, &outcome))
            }
        }
    }

    /// The call's error when the retries stop: the last error, wrapped as the retry layer
    /// wraps it (a spent day as [`QuotaExhausted`](crate::retry::QuotaExhausted)).
    pub(super) fn stopped(
        &self,
        result: Result<S::Response, BoxError>,
        outcome: Outcome,
        reason: StopReason,
    ) -> Result<S::Response, BoxError> {
        result.map_err(|source| stopped_error(self.call.retry(), outcome, reason, source))
    }

    /// Annotates a response with the target that served it (when it was not the preferred
    /// target at once), counts a success, and records the retries it took.
    pub(super) fn finish(
        &self,
        mut result: Result<S::Response, BoxError>,
        target: Option<usize>,
        outcome: &Outcome,
    ) -> Result<S::Response, BoxError> {
        let shared = &*self.shared;
        if let (Ok(response), Some(target)) = (&mut result, target) {
            let hops = self.call.plan().map_or(0, |p| p.calls().saturating_sub(1));
            report_served(
                &shared.route,
                &shared.events[target].served,
                &HttpExtension,
                response,
                target,
                hops,
                outcome,
            );
            let retry = self.call.retry();
            if retry.attempts() > 1 {
                shared.classifier.record_retries(response, retry.info());
            }
        }
        result
    }
}

/// The route's view of the stack's quota for a call of these costs.
fn headroom<'a, S, T, C, A, F>(
    shared: &'a Shared<S, T, C, A, F>,
    costs: &'a Costs,
) -> CostHeadroom<'a, T, A> {
    CostHeadroom {
        targets: shared.route.targets(),
        admission: &shared.admission,
        costs,
    }
}
