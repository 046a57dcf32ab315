//! [`StackBuilder`], and what it puts in front of each target: [`NoAdmission`] or [`Admit`].

use crate::lifecycle::{Given, Settings};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Profile;
use super::service::{Shared, Stack, TargetEvents};
use crate::Outcome;
use crate::admission::{
    AdmissionMetrics, Cost, Estimate, MemorySlot, MemoryStore, NoUsage, Priority, Quota,
    QuotaStore, ReadUsage, Reservation, Slot, Tenant, Usage,
};
use crate::breaker::{BreakerConfig, BreakerRegistry};
use crate::concurrency::{AdaptiveLimit, ConcurrencyConfig};
use crate::error::ConfigError;
use crate::fallback::{BreakerSource, FallbackPolicy, Route, RouteBuilder, Target, served_counter};
use crate::observe::Labels;
use crate::retry::{RetryMetrics, RetryPolicy};
use crate::timeout::AttemptTimeout;

/// Builds the stack; see the [module docs](super).
///
/// Targets are added in preference order. Without [`admission`](Self::admission) calls go
/// straight from the breaker to the client. Configuration errors (no target, duplicate target
/// names, bad windows) come back from [`services`](Self::services) or
/// [`rewrite`](Self::rewrite) as a [`ConfigError`].
pub struct StackBuilder<T, C, A = NoAdmission> {
    profile: Profile,
    classifier: C,
    route: RouteBuilder<T>,
    /// The retry policy, deadline, attempt timeout, breakers and seed given (`None`: the
    /// profile's), resolved in [`Given::resolve`] as the SDK adapter's builder resolves them.
    given: Given,
    /// An adaptive concurrency limit per target, when set.
    concurrency: Option<ConcurrencyConfig>,
    /// `gen_ai.operation.name` of the calls' spans, when given.
    operation: Option<&'static str>,
    admission: A,
}

impl<T, C, A> fmt::Debug for StackBuilder<T, C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackBuilder")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl<T> StackBuilder<T, crate::HttpClassifier> {
    /// A stack for a plain HTTP endpoint, classifying with [`HttpClassifier`](crate::HttpClassifier).
    pub fn http() -> Self {
        StackBuilder::new(Profile::Http, crate::HttpClassifier::new())
    }
}

impl<T, C> StackBuilder<T, C> {
    /// A stack with `profile`'s defaults, classifying results with `classifier`.
    pub fn new(profile: Profile, classifier: C) -> Self {
        StackBuilder {
            profile,
            classifier,
            route: Route::builder(),
            given: Given::default(),
            concurrency: None,
            operation: None,
            admission: NoAdmission,
        }
    }

    /// A stack with the [Bedrock](Profile::Bedrock) defaults.
    pub fn bedrock(classifier: C) -> Self {
        StackBuilder::new(Profile::Bedrock, classifier)
    }

    /// A stack with the [DynamoDB](Profile::DynamoDb) defaults.
    pub fn dynamodb(classifier: C) -> Self {
        StackBuilder::new(Profile::DynamoDb, classifier)
    }

    /// Admits each call against `quota` (in process, or any other [`QuotaStore`] such as the
    /// Redis store of the `redis` feature) under its target's key, costed once per call by
    /// `estimate` (e.g. [`LlmEstimator`](crate::admission::LlmEstimator)); the router prefers
    /// targets whose quota admits that cost soonest. A target labelled with a model
    /// ([`Target::model`]) is weighed and admitted at the cost `estimate` gives for that model
    /// ([`Estimate::estimate_for`]: a Bedrock model table's own maximum output, say), and its
    /// responses are read for that model ([`ReadUsage::read_usage_for`]).
    pub fn admission<E, Q>(
        self,
        quota: Quota<T, Q>,
        estimate: E,
    ) -> StackBuilder<T, C, Admit<T, E, NoUsage, Q>> {
        StackBuilder {
            profile: self.profile,
            classifier: self.classifier,
            route: self.route,
            given: self.given,
            concurrency: self.concurrency,
            operation: self.operation,
            admission: Admit {
                quota,
                estimate,
                usage: NoUsage,
                priority: Priority::Interactive,
                tenant: None,
            },
        }
    }
}

impl<T, C, A> StackBuilder<T, C, A> {
    /// Appends a target; order is preference.
    pub fn target(mut self, target: Target<T>) -> Self {
        self.route = self.route.target(target);
        self
    }

    /// The outcome → action policy of the router (default [`FallbackPolicy::default`]).
    pub fn fallback_policy(mut self, policy: FallbackPolicy) -> Self {
        self.route = self.route.policy(policy);
        self
    }

    /// The most moves to another target per call (default 2).
    pub fn max_hops(mut self, hops: u32) -> Self {
        self.route = self.route.max_hops(hops);
        self
    }

    /// The wait budget of a call that carries no [`Deadline`](crate::Deadline) (default: the
    /// [`retry`](Self::retry) policy's deadline if one was given, else the profile's
    /// [`deadline`](Profile::deadline) for the stack's priority). Admission waits,
    /// the router's choice of a target that must wait, and retries all spend from it.
    pub fn deadline(mut self, budget: Duration) -> Self {
        self.given.deadline = Some(budget);
        self
    }

    /// How long one attempt may take before it is abandoned as a timeout (default: the
    /// profile's [`attempt_timeout`](Profile::attempt_timeout)), scaled by the call's
    /// estimated cost when the stack admits calls; the timer runs from the attempt's admission
    /// until the client answers.
    pub fn attempt_timeout(mut self, timeout: AttemptTimeout) -> Self {
        self.given.attempt_timeout = Some(Some(timeout));
        self
    }

    /// No attempt timeout: an attempt takes as long as the client does.
    pub fn no_attempt_timeout(mut self) -> Self {
        self.given.attempt_timeout = Some(None);
        self
    }

    /// An adaptive concurrency limit per target (see [`crate::concurrency`]): once the quota
    /// granted an attempt, it takes a slot of its target's limit or is shed at once with
    /// [`ConcurrencyLimited`](crate::concurrency::ConcurrencyLimited) (a `503` from
    /// [`error_response`](super::error_response)); the limit learns from the target's
    /// "Too many connections", overload and latency. Off by default.
    pub fn concurrency(mut self, config: ConcurrencyConfig) -> Self {
        self.concurrency = Some(config);
        self
    }

    /// Names the calls' operation in their spans (`gen_ai.operation.name`, one of the
    /// OpenTelemetry GenAI conventions' names such as `chat`, `text_completion` or
    /// `embeddings`; source: <https://opentelemetry.io/docs/specs/semconv/gen-ai/gen-ai-spans/>).
    /// A [Bedrock](Profile::Bedrock) stack's calls are `chat` unless named otherwise; other
    /// stacks' have none unless named.
    pub fn operation(mut self, name: &'static str) -> Self {
        self.operation = Some(name);
        self
    }

    /// Seeds the jitter of the profile's retry policy and breakers, so that a run repeats
    /// exactly (simulations, tests). A policy or breaker configuration given to
    /// [`retry`](Self::retry) or [`breaker`](Self::breaker) keeps its own seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.given.seed = Some(seed);
        self
    }

    /// Replaces the profile's retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.given.retry = Some(policy);
        self
    }

    /// Replaces the profile's breaker configuration (one breaker per target).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.given.breakers = Some(BreakerSource::PerTarget(config));
        self
    }

    /// Takes each target's breaker from `registry` by target name, so that several stacks (or
    /// stacks and AWS SDK clients) share them.
    pub fn breaker_registry(mut self, registry: BreakerRegistry<Arc<str>>) -> Self {
        self.given.breakers = Some(BreakerSource::Registry(registry));
        self
    }

    /// No circuit breakers.
    pub fn no_breakers(mut self) -> Self {
        self.given.breakers = Some(BreakerSource::None);
        self
    }

    /// Form (a): one client per target (e.g. one per region), in target order.
    pub fn services<S>(self, services: Vec<S>) -> Result<Stack<S, T, C, A::Built>, ConfigError>
    where
        A: Admits<T>,
    {
        let expected = self.route.len();
        if services.len() != expected {
            return Err(ConfigError::new(
                "services",
                services.len(),
                "needs exactly one service per target",
            ));
        }
        self.build(services, NoRewrite)
    }

    /// Form (b): one client; `rewrite(&mut request, &key)` prepares each call's request for its
    /// target (e.g. the model id in a Bedrock URI).
    pub fn rewrite<S, F>(
        self,
        service: S,
        rewrite: F,
    ) -> Result<Stack<S, T, C, A::Built, F>, ConfigError>
    where
        A: Admits<T>,
        S: Clone,
    {
        let services = vec![service; self.route.len()];
        self.build(services, rewrite)
    }

    fn build<S, F>(
        self,
        services: Vec<S>,
        rewrite: F,
    ) -> Result<Stack<S, T, C, A::Built, F>, ConfigError>
    where
        A: Admits<T>,
    {
        let route = self.route.build()?;
        let Settings {
            retry: policy,
            budget,
            attempt_timeout,
            breakers: source,
        } = self.given.resolve(
            self.profile,
            self.admission.priority(),
            self.admission.paces(),
        )?;
        let now = Instant::now();
        let breakers = source.target_breakers(&route, now);
        let events = route
            .targets()
            .iter()
            .enumerate()
            .map(|(index, target)| TargetEvents {
                retry: RetryMetrics::register(target.labels()),
                admission: AdmissionMetrics::register(target.labels()),
                served: served_counter(target.labels(), index != 0),
                tokens: crate::observe::TokenCounters::new(target.labels()),
                labels: target.labels().clone(),
            })
            .collect();
        let admission = self.admission.build(route.targets(), now);
        let limits = route
            .targets()
            .iter()
            .map(|t| {
                self.concurrency
                    .map(|config| AdaptiveLimit::new(config, t.labels().clone()))
            })
            .collect();
        Ok(Stack::new(Shared {
            services: services.into_boxed_slice(),
            rewrite,
            route,
            breakers,
            classifier: self.classifier,
            policy,
            budget,
            attempt_timeout,
            admission,
            limits,
            events,
            unrouted: RetryMetrics::register(&Labels::none()),
            provider: matches!(self.profile, Profile::Bedrock)
                .then_some(crate::observe::span::BEDROCK),
            operation: self
                .operation
                .or(matches!(self.profile, Profile::Bedrock).then_some(crate::observe::span::CHAT)),
        }))
    }
}

impl<T, C, E, Q> StackBuilder<T, C, Admit<T, E, NoUsage, Q>> {
    /// Reads each call's real usage from its response (e.g.
    /// [`HeaderUsage`](crate::admission::HeaderUsage)) to settle its reservation.
    pub fn usage<U>(self, usage: U) -> StackBuilder<T, C, Admit<T, E, U, Q>> {
        let Admit {
            quota,
            estimate,
            priority,
            tenant,
            ..
        } = self.admission;
        StackBuilder {
            profile: self.profile,
            classifier: self.classifier,
            route: self.route,
            given: self.given,
            concurrency: self.concurrency,
            operation: self.operation,
            admission: Admit {
                quota,
                estimate,
                usage,
                priority,
                tenant,
            },
        }
    }
}

impl<T, C, E, U, Q> StackBuilder<T, C, Admit<T, E, U, Q>> {
    /// Every call of this stack is for `tenant`: its share of the quota
    /// ([`LimitBuilder::shares`](crate::admission::LimitBuilder::shares)). Several stacks — one
    /// per application, say — share one [`Quota`] and each keeps to its share.
    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.admission.tenant = Some(tenant);
        self
    }

    /// Every call of this stack has `priority` (default interactive).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.admission.priority = priority;
        self
    }
}

/// What a [`StackBuilder`] puts in front of each target, before it is built: [`NoAdmission`],
/// or [`Admit`] from [`StackBuilder::admission`].
pub trait Admits<T> {
    /// What the built stack keeps.
    type Built;
    /// Builds it for `targets`, at `now`.
    fn build(self, targets: &[Target<T>], now: Instant) -> Self::Built;
    /// Whether calls are admitted against a quota (which then paces retries of throttles).
    fn paces(&self) -> bool;
    /// The priority of the stack's calls (for the default deadline).
    fn priority(&self) -> Priority;
}

/// What a built stack keeps of its admission per target: each target's quota state.
pub trait TargetSlots {
    /// The quota store's per-key state.
    type Slot: Slot + Clone;
    /// The quota state of the target at route index `target`; `None` without admission.
    fn slot(&self, target: usize) -> Option<&Self::Slot>;
    /// The priority and tenant of the stack's calls.
    fn priority(&self) -> (Priority, Option<Tenant>);
}

/// What a built stack asks of its admission per call: the cost before, the usage after.
pub trait TargetQuota<Req, Res>: TargetSlots {
    /// The call's cost, estimated once per call; `None` without admission.
    fn cost(&self, request: &Req) -> Option<Cost>;
    /// What a response says the call spent.
    fn usage(&self, response: &Res) -> Usage;
    /// The call's cost on a target labelled with `model` ([`Estimate::estimate_for`]).
    fn cost_for(&self, request: &Req, model: &str) -> Option<Cost> {
        let _ = model;
        self.cost(request)
    }
    /// What a response from a target labelled with `model` says the call spent
    /// ([`ReadUsage::read_usage_for`]).
    fn usage_for(&self, response: &Res, model: &str) -> Usage {
        let _ = model;
        self.usage(response)
    }
    /// The quota statistics of the target at route index `target`, for the quota gauges
    /// (the in-process store's); default: none.
    fn slot_stats(&self, target: usize, now: Instant) -> Option<crate::admission::SlotStats> {
        let _ = (target, now);
        None
    }
    /// The token counts a response reports ([`ReadUsage::read_tokens`]), for the token
    /// metrics. Default (no admission): none.
    fn tokens(&self, response: &Res) -> Option<crate::bedrock::TokenCounts> {
        let _ = response;
        None
    }
    /// Hands a successful attempt's `reservation` to `response` when its usage reader says
    /// the usage is in the body ([`ReadUsage::defers`]), with the target's token counters and
    /// the call's span for the stream's tokens, or gives it back to be settled now. Default
    /// (no admission): gives it back.
    fn defer(
        &self,
        reservation: Option<Reservation<Self::Slot>>,
        outcome: &Outcome,
        response: &mut Res,
        tokens: &crate::observe::TokenCounters,
        span: &tracing::Span,
    ) -> Option<Reservation<Self::Slot>> {
        let _ = (outcome, response, tokens, span);
        reservation
    }
}

/// No admission: calls go from the breaker to the client.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAdmission;

impl<T> Admits<T> for NoAdmission {
    type Built = NoAdmission;

    fn build(self, _targets: &[Target<T>], _now: Instant) -> NoAdmission {
        NoAdmission
    }

    fn paces(&self) -> bool {
        false
    }

    fn priority(&self) -> Priority {
        Priority::Interactive
    }
}

impl TargetSlots for NoAdmission {
    type Slot = Arc<MemorySlot>;

    fn slot(&self, _target: usize) -> Option<&Self::Slot> {
        None
    }

    fn priority(&self) -> (Priority, Option<Tenant>) {
        (Priority::Interactive, None)
    }
}

impl<Req, Res> TargetQuota<Req, Res> for NoAdmission {
    fn cost(&self, _request: &Req) -> Option<Cost> {
        None
    }

    fn usage(&self, _response: &Res) -> Usage {
        Usage::UNKNOWN
    }
}

/// Admission per target against one shared [`Quota`], before the stack is built; see
/// [`StackBuilder::admission`].
pub struct Admit<T, E, U = NoUsage, Q = MemoryStore<T>> {
    quota: Quota<T, Q>,
    estimate: E,
    usage: U,
    priority: Priority,
    tenant: Option<Tenant>,
}

impl<T, E, U, Q> fmt::Debug for Admit<T, E, U, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admit")
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl<T, E, U, Q> Admits<T> for Admit<T, E, U, Q>
where
    T: Clone + Eq + Hash + Send + Sync + 'static,
    Q: QuotaStore<T>,
{
    type Built = Admitting<E, U, Q::Slot>;

    fn build(self, targets: &[Target<T>], now: Instant) -> Self::Built {
        // Each target's state pinned once, so that no call looks a key up.
        let slots = targets
            .iter()
            .map(|t| self.quota.slot(t.key(), now))
            .collect();
        Admitting {
            slots,
            estimate: self.estimate,
            usage: self.usage,
            priority: self.priority,
            tenant: self.tenant,
        }
    }

    fn paces(&self) -> bool {
        true
    }

    fn priority(&self) -> Priority {
        self.priority
    }
}

/// A built stack's admission: each target's quota state, the estimator and the usage reader.
pub struct Admitting<E, U, P> {
    slots: Box<[P]>,
    estimate: E,
    usage: U,
    priority: Priority,
    tenant: Option<Tenant>,
}

impl<E, U, P> fmt::Debug for Admitting<E, U, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admitting")
            .field("targets", &self.slots.len())
            .field("priority", &self.priority)
            .finish_non_exhaustive()
    }
}

impl<E, U, P: Slot + Clone> TargetSlots for Admitting<E, U, P> {
    type Slot = P;

    fn slot(&self, target: usize) -> Option<&P> {
        self.slots.get(target)
    }

    fn priority(&self) -> (Priority, Option<Tenant>) {
        (self.priority, self.tenant)
    }
}

impl<Req, Res, E, U, P> TargetQuota<Req, Res> for Admitting<E, U, P>
where
    E: Estimate<Req>,
    U: ReadUsage<Res>,
    P: Slot + Clone + 'static,
{
    fn cost(&self, request: &Req) -> Option<Cost> {
        Some(self.estimate.estimate(request))
    }

    fn usage(&self, response: &Res) -> Usage {
        self.usage.read_usage(response)
    }

    fn cost_for(&self, request: &Req, model: &str) -> Option<Cost> {
        Some(self.estimate.estimate_for(request, model))
    }

    fn tokens(&self, response: &Res) -> Option<crate::bedrock::TokenCounts> {
        self.usage.read_tokens(response)
    }

    fn slot_stats(&self, target: usize, now: Instant) -> Option<crate::admission::SlotStats> {
        crate::admission::slot_stats(self.slots.get(target)?, now)
    }

    fn usage_for(&self, response: &Res, model: &str) -> Usage {
        self.usage.read_usage_for(response, model)
    }

    fn defer(
        &self,
        reservation: Option<Reservation<P>>,
        outcome: &Outcome,
        response: &mut Res,
        tokens: &crate::observe::TokenCounters,
        span: &tracing::Span,
    ) -> Option<Reservation<P>> {
        crate::admission::defer_or_keep(reservation, outcome, &self.usage, response, tokens, span)
    }
}

/// The [`rewrite`](StackBuilder::rewrite) of form (a): requests go to their target's service
/// unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRewrite;

/// Prepares a request for a target.
pub trait RewriteFor<Req, T> {
    /// Rewrites `request` for the target reached with `key`.
    fn rewrite(&self, request: &mut Req, key: &T);
}

impl<Req, T> RewriteFor<Req, T> for NoRewrite {
    fn rewrite(&self, _request: &mut Req, _key: &T) {}
}

impl<Req, T, F: Fn(&mut Req, &T)> RewriteFor<Req, T> for F {
    fn rewrite(&self, request: &mut Req, key: &T) {
        self(request, key)
    }
}
