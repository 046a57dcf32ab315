//! One SDK operation's progress through its attempts: the AWS SDK's hooks driving the
//! [lifecycle core](crate::lifecycle), with the time passed in.
//!
//! The interceptor starts the call from its typed input ([`Shared::start`]), opens each attempt
//! before its endpoint is resolved ([`Shared::begin_attempt`]: which target, with which breaker
//! permit, in which region, rewritten to which model id before signing), and ends
//! it after the SDK has the attempt's result ([`Shared::end_attempt`]: the core settles,
//! records and decides — done, move to the next target, retry, stop — and the decision goes
//! to the SDK's retry loop). Between the two the HTTP client admits the attempt against the
//! quota ([`Shared::admit`]). The state lives behind one mutex shared through the operation's
//! config bag and the registry the HTTP client reads; nothing holds the lock across an await.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_smithy_types::config_bag::{Storable, StoreReplace};
use tokio::time::Instant;

pub(crate) use super::events::Events;
use super::{Decision, Shared};
use crate::admission::{Ask, Cost, QuotaStore, Rejected, Reservation, StoreSlot, Usage};
use crate::bedrock::TokenCounts;
use crate::breaker::{BreakerHandle, BreakerPermit, CircuitOpen};
use crate::concurrency::{AdaptiveLimit, ConcurrencyLimited};
use crate::deadline::Deadline;
use crate::fallback::{Choice, NoHeadroom, NoTargetAvailable};
use crate::lifecycle::{self, Ended, Next, Routing};
use crate::observe::{Labels, span};
use crate::{BoxError, Outcome, OutcomeKind};

/// What the interceptor read from a call's typed input.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    /// The call's own key: the model id in the request, or the table.
    pub(crate) key: Arc<str>,
    /// The estimated cost on the call's own key.
    pub(crate) cost: Cost,
    /// What an LLM call reserves, for its cost on another model (a fallback target's own
    /// maximum output); `None`: the cost is the same on every target.
    pub(crate) tokens: Option<Reserve>,
    /// The response is an event stream, settled from its own usage event.
    pub(crate) stream: bool,
    /// The interceptor asked for usage the caller did not (DynamoDB `ReturnConsumedCapacity`),
    /// so the output's copy is removed before the caller sees it.
    pub(crate) asked_usage: bool,
    /// The request can be pointed at another target (the call may fall back).
    pub(crate) routable: bool,
    /// Keys are model ids: metrics and logs label them as the model.
    pub(crate) keys_are_models: bool,
    /// Other quota keys the call spends on, each with its cost (a DynamoDB batch or
    /// transaction over several tables: a key per table). Each attempt reserves on all of them
    /// or on none, and settles each with its own usage.
    pub(crate) also: Vec<(Arc<str>, Cost)>,
}

/// An LLM call's reservation before its model is known: input tokens and `maxTokens`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reserve {
    pub(crate) input_tokens: u64,
    pub(crate) max_tokens: Option<u64>,
}

impl Prepared {
    /// The call's cost on `model`: re-estimated with that model's numbers for an LLM call.
    pub(crate) fn cost_on(&self, model: &str, models: &crate::bedrock::ModelTable) -> Cost {
        match self.tokens {
            Some(r) if model != &*self.key => {
                let spec = models.spec(model);
                Cost::units(spec.reservation(r.input_tokens, 0, 0, r.max_tokens))
            }
            _ => self.cost,
        }
    }
}

type SlotOf<S> = <S as StoreSlot>::Slot;

/// One operation's state: the lifecycle core's call, and the SDK's attempt in flight.
pub(crate) struct Call<S: StoreSlot> {
    /// The call's number, which the HTTP client finds in a request header.
    pub(crate) id: u64,
    /// The interceptor that started the call (a client configured twice has two; the first
    /// one runs the call, the others stand aside).
    pub(crate) owner: u64,
    /// The decision about the last attempt, for the classifier, until the next attempt.
    pub(crate) decision: Option<Decision>,
    pub(crate) prepared: Prepared,
    /// The call's partition keys under the per-key ceiling, when the client has one
    /// ([`super::keys`]).
    pub(crate) keys: Option<super::keys::Keys>,
    /// The client's region.
    region: Option<Arc<str>>,
    /// The request can be sent to another region: its endpoint and signing region are
    /// resolved again for each attempt.
    regional: bool,
    /// The call's progress; it has a route plan when the call's key is the route's first
    /// target (it may fall back).
    call: lifecycle::Call,
    /// The target the last attempt's end chose to move to, with its breaker permit: the next
    /// attempt goes there.
    moved: Option<(usize, Option<BreakerPermit>)>,
    /// The region the operation's endpoint and signature point at when an attempt moved them
    /// away from the client's (`None`: the client's own).
    moved_region: Option<Arc<str>>,
    /// The model id the attempt being opened rewrites the request to, until it is signed.
    pending_model: Option<Arc<str>>,
    pub(super) attempt: Option<Attempt<SlotOf<S>>>,
    /// The call's span (`Span::none()` when no subscriber wants it).
    span: tracing::Span,
    /// Attempts opened (fallback moves included), for the spans.
    attempts: u32,
}

/// The attempt in flight: the lifecycle core's attempt, and what the SDK's hooks need.
pub(crate) struct Attempt<T: crate::admission::Slot> {
    core: lifecycle::Attempt<T>,
    /// The target's quota key.
    pub(crate) key: Arc<str>,
    /// The model id the request goes to: the target's model id (its key unless it was given
    /// one, `SdkHeadroomBuilder::target_model`).
    pub(crate) model: Arc<str>,
    /// Where the attempt reports: its labels and their metric handles.
    pub(crate) events: Arc<Events>,
    /// No target may be called: the HTTP client fails the attempt with this, unsent.
    blocked: Option<Blocked>,
    /// The target's adaptive concurrency limit, when the adapter has them.
    limit: Option<AdaptiveLimit>,
    /// The attempt's span, under the call's.
    span: tracing::Span,
    /// The reservations on the call's other keys ([`Prepared::also`]), with the units each
    /// spent once the attempt's output said.
    pub(super) also: Vec<super::also::Also<T>>,
    /// The per-key ceiling's tickets of the attempt, once it is sent ([`super::keys`]).
    pub(super) keys: Vec<crate::dynamodb::CeilingTicket>,
}

/// Why an attempt is failed before it is sent.
#[derive(Clone, Debug)]
pub(crate) enum Blocked {
    NoTarget(NoTargetAvailable),
    Open(CircuitOpen),
}

impl Blocked {
    pub(crate) fn into_error(self) -> BoxError {
        match self {
            Blocked::NoTarget(e) => Box::new(e),
            Blocked::Open(e) => Box::new(e),
        }
    }
}

/// The handle to a call: in the operation's config bag, and found by the HTTP client through the
/// call number in a request header (see [`CALL_HEADER`](super::interceptor::CALL_HEADER)).
pub(crate) struct CallHandle<S: StoreSlot>(pub(crate) Arc<Mutex<Call<S>>>);

impl<S: StoreSlot> Clone for CallHandle<S> {
    fn clone(&self) -> Self {
        CallHandle(Arc::clone(&self.0))
    }
}

impl<S: StoreSlot> fmt::Debug for CallHandle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallHandle")
    }
}

impl<S: StoreSlot + Send + Sync + 'static> Storable for CallHandle<S> {
    type Storer = StoreReplace<Self>;
}

impl<S: StoreSlot> CallHandle<S> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Call<S>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> Shared<S> {
    /// Starts a call from the client's `region`; `regional` when the service's requests can
    /// be moved to another region.
    pub(crate) fn start(
        &self,
        owner: u64,
        prepared: Prepared,
        (region, regional): (Option<Arc<str>>, bool),
        (provider, operation): (Option<&'static str>, Option<&'static str>),
        now: Instant,
    ) -> CallHandle<S> {
        let route = self
            .route
            .as_ref()
            .filter(|_| prepared.routable)
            // The route is for calls to its first target's model (its key may differ: targets
            // in two regions have one model and two quota keys).
            .filter(|_| self.target_models.first() == Some(&prepared.key));
        // The caller's deadline, when the SDK call runs within one; else the client's budget.
        let deadline = Deadline::current().unwrap_or(Deadline::from_now(now, self.deadline));
        let call = lifecycle::Call::start(&self.retry, route, Some(deadline), now);
        CallHandle(Arc::new(Mutex::new(Call {
            id: self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            owner,
            decision: None,
            regional: regional && prepared.routable,
            prepared,
            keys: None,
            region,
            call,
            moved: None,
            moved_region: None,
            pending_model: None,
            attempt: None,
            span: span::call(provider, operation),
            attempts: 0,
        })))
    }

    /// Opens an attempt: its target (the one the last attempt's end moved to, else the
    /// route's choice for this call's cost) and the target's breaker permit. Runs before the
    /// attempt's endpoint is resolved; the region to move the operation to, if any, is
    /// returned, and the model id to rewrite the request to waits for
    /// [`take_pending_model`](Call::take_pending_model) (before signing).
    pub(crate) fn begin_attempt(&self, call: &mut Call<S>, now: Instant) -> Option<Arc<str>> {
        call.decision = None;
        if let Some(stale) = call.attempt.take() {
            // The previous attempt never ended (the SDK timed it out): it counts as a timeout.
            self.finish_attempt(stale, &Outcome::new(OutcomeKind::Timeout), None, None, now);
        }
        let (attempt, region): (_, Option<Arc<str>>) =
            match (&self.route, call.call.plan().is_some()) {
                (Some(route), true) => {
                    let choice = match call.moved.take() {
                        Some((target, permit)) => Choice::Call {
                            target,
                            wait: Duration::ZERO,
                            permit,
                        },
                        None => {
                            let headroom = CallHeadroom {
                                shared: self,
                                route,
                                prepared: &call.prepared,
                                region: call.region.as_deref(),
                                regional: call.regional,
                            };
                            let routing = Routing {
                                route,
                                breakers: &self.target_breakers,
                                headroom: &headroom,
                            };
                            call.call.choose(&routing, now)
                        }
                    };
                    match choice {
                        Choice::Call { target, permit, .. } => {
                            let t = &route.targets()[target];
                            let model = Arc::clone(&self.target_models[target]);
                            let region = call.region_of(t);
                            let events =
                                self.events(Some(target), call.labels(t.labels().clone(), &model));
                            let core = lifecycle::Attempt::new(Some(target), permit, now);
                            let attempt = Attempt::new(core, Arc::clone(t.key()), model, events);
                            (attempt, region)
                        }
                        Choice::Exhausted { retry_in, cause } => {
                            let key = Arc::clone(&call.prepared.key);
                            let events = self
                                .events(None, call.labels(Labels::target(Arc::clone(&key)), &key));
                            let core = lifecycle::Attempt::new(None, None, now);
                            let mut attempt = Attempt::new(core, Arc::clone(&key), key, events);
                            attempt.blocked =
                                Some(Blocked::NoTarget(NoTargetAvailable { retry_in, cause }));
                            let stay = call.moved_region.clone();
                            (attempt, stay)
                        }
                    }
                }
                _ => {
                    let key = Arc::clone(&call.prepared.key);
                    // A call straight to a fallback target's model in the client's region shares
                    // that target's breaker and quota key.
                    let on_route = self.route.as_ref().and_then(|route| {
                        let index = route
                            .targets()
                            .iter()
                            .zip(&self.target_models[..])
                            .position(|(t, model)| {
                                *model == key
                                    && t.labels().region_name().is_none_or(|r| {
                                        call.region.as_deref().is_none_or(|c| c == r)
                                    })
                            })?;
                        let t = &route.targets()[index];
                        Some((index, t.labels().clone(), Arc::clone(t.key())))
                    });
                    let base = on_route
                        .as_ref()
                        .map_or_else(|| Labels::target(Arc::clone(&key)), |(_, l, _)| l.clone());
                    let events = self.events(None, call.labels(base, &key));
                    let breaker = match &on_route {
                        Some((index, ..)) => self.target_breakers[*index].clone(),
                        None => self
                            .other_breakers
                            .as_ref()
                            .map(|registry| registry.get(&key, now)),
                    };
                    let mut core = lifecycle::Attempt::new(None, None, now);
                    let mut blocked = None;
                    if let Some(breaker) = breaker {
                        match breaker.acquire(now) {
                            Ok(permit) => core.set_permit(permit),
                            Err(open) => {
                                blocked = Some(Blocked::Open(CircuitOpen::new(
                                    open.retry_in,
                                    events.labels.clone(),
                                )))
                            }
                        }
                    }
                    let quota_key = on_route.map_or_else(|| Arc::clone(&key), |(.., k)| k);
                    let mut attempt = Attempt::new(core, quota_key, key, events);
                    attempt.blocked = blocked;
                    (attempt, None)
                }
            };
        let mut attempt = attempt;
        let hop = call.call.plan().map_or(0, |p| p.calls().saturating_sub(1));
        call.attempts = call.attempts.saturating_add(1);
        attempt.span = span::attempt(&call.span, &attempt.events.labels, call.attempts, hop);
        if let Some(limits) = &self.limits {
            let (target, key) = (attempt.core.target(), &attempt.key);
            attempt.limit = Some(limits.get(target, key, &attempt.events.labels));
        }
        call.pending_model =
            (attempt.model != call.prepared.key).then(|| Arc::clone(&attempt.model));
        call.attempt = Some(attempt);
        // Move the operation only when the attempt's region is not where it points now: to
        // the target's region, or back to the client's own.
        if region == call.moved_region {
            return None;
        }
        let to = region.clone().or_else(|| call.region.clone());
        call.moved_region = region;
        to
    }

    /// Once admitted, the attempt takes a slot of its target's concurrency limit at `now`, or
    /// is refused at once (it is then failed unsent).
    pub(crate) fn take_slot(call: &mut Call<S>, now: Instant) -> Result<(), ConcurrencyLimited> {
        let Some(attempt) = call.attempt.as_mut() else {
            return Ok(());
        };
        let Some(limit) = &attempt.limit else {
            return Ok(());
        };
        attempt
            .core
            .take_slot(limit, now)
            .map_err(|full| ConcurrencyLimited::new(full, limit.labels().clone()))
    }

    /// What the HTTP client must do before sending: fail (blocked), or reserve on this key.
    pub(crate) fn admission(&self, call: &Call<S>) -> Result<Option<(Arc<str>, Ask)>, Blocked> {
        let Some(attempt) = &call.attempt else {
            return Ok(None);
        };
        if let Some(blocked) = &attempt.blocked {
            return Err(blocked.clone());
        }
        if self.quota.is_none() {
            return Ok(None);
        }
        // The request is signed before it waits: never past SigV4's validity.
        let signed_limit = Deadline::from_now(Instant::now(), super::MAX_ADMISSION_WAIT);
        let ask = call.call.ask(
            self.attempt_cost(call),
            self.priority,
            self.tenant,
            Some(signed_limit),
        );
        Ok(Some((Arc::clone(&attempt.key), ask)))
    }

    /// The ask whose deadline bounds the attempt's wait for its partition keys' budgets: the
    /// call's deadline, and never past the signature's validity; `None` for a call without
    /// keys or an attempt that is blocked.
    pub(crate) fn key_ask(&self, call: &Call<S>) -> Option<Ask> {
        let attempt = call.attempt.as_ref()?;
        if attempt.blocked.is_some() || call.keys.as_ref().is_none_or(|k| k.keys.is_empty()) {
            return None;
        }
        let signed_limit = Deadline::from_now(Instant::now(), super::MAX_ADMISSION_WAIT);
        Some(
            call.call
                .ask(Cost::ONE_REQUEST, self.priority, None, Some(signed_limit)),
        )
    }

    /// The cost of the attempt in flight, on its target's model (the call's own cost when none).
    pub(crate) fn attempt_cost(&self, call: &Call<S>) -> Cost {
        match &call.attempt {
            Some(attempt) => call
                .prepared
                .cost_on(&attempt.model, &self.estimation.models),
            None => call.prepared.cost,
        }
    }

    /// Reserves `ask` on `key` and waits for the grant (bounded by the ask's deadline).
    pub(crate) async fn admit(
        &self,
        key: &Arc<str>,
        ask: Ask,
        events: &Events,
    ) -> Result<Reservation<SlotOf<S>>, Rejected> {
        let quota = self
            .quota
            .as_ref()
            .expect("admission only asks with a quota");
        let started = Instant::now();
        let result = quota.acquire(key, ask).await;
        match &result {
            Ok(_) => {
                let waited = Instant::now().saturating_duration_since(started);
                if !waited.is_zero() {
                    events.admission.waited(waited);
                }
            }
            Err(rejected) => events.admission.rejected(&events.labels, rejected),
        }
        result
    }

    /// Ends the attempt with its outcome and the units it spent (`None`: unknown, the estimate
    /// stays), and turns the call's next step into what the SDK does next.
    pub(crate) fn end_attempt(
        &self,
        call: &mut Call<S>,
        outcome: &Outcome,
        (units, tokens): (Option<u64>, Option<&TokenCounts>),
        now: Instant,
    ) -> Decision {
        let (ended, events) = match call.attempt.take() {
            Some(attempt) => {
                let events = Arc::clone(&attempt.events);
                (
                    self.finish_attempt(attempt, outcome, units, tokens, now),
                    events,
                )
            }
            // No attempt was opened (an interceptor failed first): decide on the outcome alone.
            None => (
                Ended {
                    target: None,
                    sent: false,
                    limit: None,
                },
                self.events(None, Labels::none()),
            ),
        };
        let next = match &self.route {
            Some(route) => {
                let headroom = CallHeadroom {
                    shared: self,
                    route,
                    prepared: &call.prepared,
                    region: call.region.as_deref(),
                    regional: call.regional,
                };
                let routing = Routing {
                    route,
                    breakers: &self.target_breakers,
                    headroom: &headroom,
                };
                let routed = call.call.plan().is_some().then_some(&routing);
                call.call.next(&self.retry, routed, &ended, outcome, now)
            }
            None => call
                .call
                .next::<Arc<str>, NoHeadroom>(&self.retry, None, &ended, outcome, now),
        };
        match next {
            Next::Done => {
                events.retry.call_took(outcome, call.call.started(), now);
                span::ended(&call.span, outcome, tokens, Some(call.attempts));
                if let (Some(served), Some(target)) = (&events.served, ended.target) {
                    served.increment(0);
                    if target != 0 {
                        tracing::debug!(
                            target: "tower_headroom::smithy",
                            labels = %events.labels,
                            "served by a fallback target"
                        );
                    }
                }
                Decision::Done
            }
            Next::Move { target, permit } => {
                tracing::debug!(
                    target: "tower_headroom::smithy",
                    labels = %events.labels,
                    class = outcome.kind.as_str(),
                    "moving to the next fallback target"
                );
                call.moved = Some((target, permit));
                Decision::Retry(outcome.kind, Duration::ZERO)
            }
            Next::Retry(delay) => {
                events.retry.retry(outcome, call.call.retry(), delay);
                Decision::Retry(outcome.kind, delay)
            }
            Next::Stop(reason) => {
                events.retry.stop(outcome, call.call.retry(), reason);
                events.retry.call_took(outcome, call.call.started(), now);
                span::ended(&call.span, outcome, tokens, Some(call.attempts));
                Decision::Stop
            }
        }
    }

    /// Ends the attempt by the lifecycle's rules (an unsent attempt gives its units back and
    /// its permit up; a sent one settles and records), and reports it.
    fn finish_attempt(
        &self,
        mut attempt: Attempt<SlotOf<S>>,
        outcome: &Outcome,
        units: Option<u64>,
        tokens: Option<&TokenCounts>,
        now: Instant,
    ) -> Ended {
        span::ended(&attempt.span, outcome, tokens, None);
        let events = attempt.events;
        events.retry.attempt(outcome);
        events
            .retry
            .attempt_took(outcome, attempt.core.started(), now);
        let usage = units.map_or(Usage::UNKNOWN, Usage::units);
        let ended = attempt.core.end(outcome, usage, now);
        // The call's other keys end as its own did.
        super::also::end(attempt.also, &ended, outcome, now);
        if let Some(limit) = ended.limit {
            events.admission.settled(&events.labels, outcome, limit);
        }
        if let Some(quota) = &self.quota {
            let key = &attempt.key;
            events.admission.sample_quota(now, || {
                crate::admission::slot_stats(&quota.slot(key, now), now)
            });
        }
        ended
    }

    /// Moves the attempt's reservation out, for a streamed response that settles itself.
    pub(crate) fn take_reservation(call: &mut Call<S>) -> Option<Reservation<SlotOf<S>>> {
        call.attempt.as_mut()?.core.take_reservation()
    }

    /// The HTTP client is handing the attempt's request on.
    pub(crate) fn sent(call: &mut Call<S>) {
        if let Some(attempt) = call.attempt.as_mut() {
            attempt.core.sent();
        }
    }

    /// Stores the attempt's admitted reservation.
    pub(crate) fn admitted(call: &mut Call<S>, reservation: Reservation<SlotOf<S>>) {
        match call.attempt.as_mut() {
            Some(attempt) => attempt.core.reserved(reservation),
            // The attempt was ended meanwhile (cannot happen in the orchestrator's order):
            // dropping the reservation settles it at its estimate.
            None => drop(reservation),
        }
    }

    /// Where the attempt in flight reports.
    pub(crate) fn attempt_events(&self, call: &Call<S>) -> Arc<Events> {
        match &call.attempt {
            Some(attempt) => Arc::clone(&attempt.events),
            None => self.events(None, Labels::none()),
        }
    }

    /// Ends the call: an attempt still open (the operation was cut short) is given up, and a
    /// target moved to but never called gives its permit up.
    pub(crate) fn end_call(&self, call: &mut Call<S>, now: Instant) {
        call.decision = None;
        call.moved = None;
        if let Some(attempt) = call.attempt.take() {
            // The operation ended with the attempt in flight (its timeout cut it short).
            self.finish_attempt(
                attempt,
                &Outcome::new(OutcomeKind::Timeout),
                None,
                None,
                now,
            );
        }
    }
}

impl<T: crate::admission::Slot> Attempt<T> {
    fn new(
        core: lifecycle::Attempt<T>,
        key: Arc<str>,
        model: Arc<str>,
        events: Arc<Events>,
    ) -> Self {
        Attempt {
            core,
            key,
            model,
            events,
            blocked: None,
            limit: None,
            span: tracing::Span::none(),
            also: Vec::new(),
            keys: Vec::new(),
        }
    }
}

impl<S: StoreSlot> Call<S> {
    /// The model the attempt in flight went to.
    pub(crate) fn attempt_model(&self) -> Option<Arc<str>> {
        self.attempt.as_ref().map(|a| Arc::clone(&a.model))
    }

    /// The model id the attempt just opened rewrites the request to, once: `None` when the
    /// request's own model stays.
    pub(crate) fn take_pending_model(&mut self) -> Option<Arc<str>> {
        self.pending_model.take()
    }

    /// The region `target` is in, when the call can move there and it is not the client's:
    /// where the attempt's endpoint and signature must point.
    fn region_of(&self, target: &crate::fallback::Target<Arc<str>>) -> Option<Arc<str>> {
        let region = target.labels().region_label()?;
        // A client with no region of its own cannot be moved back to it: it stays put.
        let elsewhere = self.region.as_deref().is_some_and(|own| own != &**region);
        (self.regional && elsewhere).then(|| Arc::clone(region))
    }

    /// The breaker of the attempt in flight's permit, for a streamed response that reports a
    /// failure after its `200` (see `super::stream`).
    pub(crate) fn attempt_breaker(&self) -> Option<BreakerHandle> {
        self.attempt.as_ref()?.core.breaker().cloned()
    }

    /// Whether an attempt is open (begun, not yet ended).
    pub(crate) fn attempt_open(&self) -> bool {
        self.attempt.is_some()
    }

    /// A target's labels completed with what the call knows: the client's region, and the
    /// model id when keys are model ids.
    fn labels(&self, mut labels: Labels, model: &Arc<str>) -> Labels {
        if self.prepared.keys_are_models && labels.model_name().is_none() {
            labels = labels.model(Arc::clone(model));
        }
        match &self.region {
            Some(region) if labels.region_name().is_none() => labels.region(Arc::clone(region)),
            _ => labels,
        }
    }
}

/// The router's view of the quota for this call's cost on each target (re-estimated with the
/// target model's own numbers: a call without `maxTokens` reserves each model's maximum). A
/// target labelled with another region than the client's never admits when the request
/// cannot be moved there (a service whose shape cannot re-resolve the endpoint per attempt).
struct CallHeadroom<'a, S: StoreSlot> {
    shared: &'a Shared<S>,
    route: &'a crate::fallback::Route<Arc<str>>,
    prepared: &'a Prepared,
    region: Option<&'a str>,
    regional: bool,
}

impl<S: QuotaStore<Arc<str>>> crate::fallback::Headroom<Arc<str>> for CallHeadroom<'_, S> {
    fn admit_wait(&self, target: &Arc<str>, now: Instant) -> Option<Duration> {
        let index = self.route.targets().iter().position(|t| t.key() == target);
        let found = index.map(|i| &self.route.targets()[i]);
        let elsewhere = found.is_some_and(
            |t| matches!((t.labels().region_name(), self.region), (Some(r), Some(c)) if r != c),
        );
        if elsewhere && !self.regional {
            return None;
        }
        match &self.shared.quota {
            Some(quota) => {
                let model = index.map_or(target, |i| &self.shared.target_models[i]);
                let cost = self.prepared.cost_on(model, &self.shared.estimation.models);
                crate::admission::Headroom::admit_wait(quota, target, cost, now)
            }
            None => Some(Duration::ZERO),
        }
    }
}
