//! The whole stack in a few lines: retry → fallback router (a breaker per target) → admission
//! per target → your client, with defaults for Bedrock, DynamoDB and plain HTTP.
//!
//! ```text
//!   call ──▶ Retry ──▶ Fallback router ──▶ target i: [breaker i] ──▶ Admission(key i) ──▶ client
//!            (budget,   (skips open          (fails fast, counts     (reserve, wait or shed,
//!             backoff)   breakers and          only its own target)   settle real usage)
//!                        targets without quota headroom)
//! ```
//!
//! The order, outermost first, and why:
//!
//! - **Retry outside everything.** A retry is a new call: it goes through the router again (so
//!   it can land on another target when the first is still sick) and through admission again
//!   (so a retry spends quota like any call — retrying *around* admission is how clients cause
//!   the 429s they then retry). Its budget bounds amplification across all targets.
//! - **Fallback router next**, holding one circuit breaker per target. The router must see
//!   every target's breaker before choosing (skip the open ones, fail fast with
//!   [`NoTargetAvailable`](crate::fallback::NoTargetAvailable) when all are), and a breaker
//!   must count only its own target's outcomes: a breaker outside the router would open on
//!   the sum of all targets, and one inside each target's admission would open on quota
//!   waits it never sent.
//! - **Admission innermost, per target**, keyed by the target's key (model × region): each
//!   target's quota is its own, the router reads it as headroom
//!   ([`QuotaHeadroom`](crate::fallback::QuotaHeadroom)) to prefer targets that can admit now,
//!   and only calls that are really sent spend it. A call the breaker stops never reserves.
//!
//! Classification happens once per layer with the one classifier you give; every layer speaks
//! [`Outcome`](crate::Outcome).
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceExt, service_fn};
//! use tower_headroom::admission::{FixedCost, Limit, Quota};
//! use tower_headroom::fallback::{Served, Target};
//! use tower_headroom::stack::StackBuilder;
//! use tower_headroom::{Cost, HttpClassifier};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! // One upstream client; the model id in the URI is rewritten per target.
//! let upstream = service_fn(|req: http::Request<String>| async move {
//!     let status = if req.uri().path().contains("sonnet") { 503 } else { 200 };
//!     Ok::<_, http::Error>(http::Response::builder().status(status).body(String::new())?)
//! });
//! let quota = Quota::new(Limit::per_minute().requests(100).build()?);
//! let client = StackBuilder::bedrock(HttpClassifier::new())
//!     .target(Target::new("sonnet", "anthropic.claude-sonnet"))
//!     .target(Target::new("haiku", "anthropic.claude-haiku"))
//!     .admission(quota, FixedCost(Cost::ONE_REQUEST))
//!     .rewrite(upstream, |req: &mut http::Request<String>, model: &&str| {
//!         *req.uri_mut() = format!("/model/{model}/converse").parse().unwrap();
//!     })?;
//! let response = client.oneshot(http::Request::new(String::new())).await?;
//! assert_eq!(response.status(), 200);
//! assert!(response.extensions().get::<Served>().unwrap().degraded); // Haiku answered
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(run()).unwrap();
//! ```

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::OutcomeKind;
use crate::admission::{
    Admission, AdmissionLayer, Cost, Fixed, MemorySlot, NoUsage, Priority, Quota, Rejected, Slot,
    Tenant,
};
use crate::breaker::{BreakerConfig, BreakerRegistry};
use crate::classify::{HttpClassifier, classify_error, find};
use crate::error::ConfigError;
use crate::fallback::{
    BreakerSource, Dispatch, Fallback, FallbackBuilder, FallbackPolicy, NoHeadroom, Route,
    RouteBuilder, Target,
};
use crate::retry::{BackoffBuilder, Retry, RetryLayer, RetryPolicy};

/// Which service the defaults are for.
///
/// | | Bedrock | DynamoDB | plain HTTP |
/// |---|---|---|---|
/// | attempts (first included) | 4 | 8 | 4 |
/// | call deadline, interactive / batch ([`deadline`](Profile::deadline)) | 150 s / 15 min | 20 s / 5 min | 150 s / 15 min |
/// | quota window for throttle alignment, without admission | 60 s, clock-aligned, 5 s spread | 1 s, 100 ms spread | 60 s, 5 s spread |
/// | breaker | 5 in a row, or 50 % of ≥ 10 calls in 30 s; open 30 s | 5 in a row, or 50 % of ≥ 20 calls in 10 s; open 5 s | as Bedrock |
/// | retry budget | 10 % of calls over 10 s, at least 10 | same | same |
///
/// Bedrock's token quotas are counted per minute, so without admission a quota throttle waits
/// for the next window rather than retrying into the one that is spent; with admission the
/// throttle teaches the quota, and admission holds the retry until the window has room, so the
/// retry itself follows the short throttle schedule. DynamoDB enforces capacity per second and
/// a hot partition clears within seconds, so it retries sooner and more often, and its breaker
/// recovers faster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Amazon Bedrock (and other LLM endpoints with per-minute request and token quotas).
    Bedrock,
    /// Amazon DynamoDB (per-second capacity).
    DynamoDb,
    /// A plain HTTP endpoint that answers 429 with `Retry-After`.
    Http,
}

impl Profile {
    /// The profile's retry policy, as a builder to adjust: its deadline is an interactive
    /// call's [`deadline`](Profile::deadline), and quota throttles wait for the next quota
    /// window (clock-aligned).
    pub fn retry(self) -> crate::retry::RetryPolicyBuilder {
        let (window, spread) = self.quota_window();
        self.paced_retry()
            .backoff(BackoffBuilder::default().quota_window(window, spread))
    }

    /// The retry policy of a stack with admission: quota throttles follow the short throttle
    /// schedule, since admission (which learns from them) holds the retry until the window
    /// has room.
    pub(crate) fn paced_retry(self) -> crate::retry::RetryPolicyBuilder {
        let attempts = match self {
            Profile::DynamoDb => 8,
            Profile::Bedrock | Profile::Http => 4,
        };
        RetryPolicy::builder()
            .max_attempts(attempts)
            .deadline(self.deadline(Priority::Interactive))
            .backoff(BackoffBuilder::default().no_quota_window())
    }

    fn quota_window(self) -> (Duration, Duration) {
        match self {
            Profile::Bedrock | Profile::Http => (Duration::from_secs(60), Duration::from_secs(5)),
            Profile::DynamoDb => (Duration::from_secs(1), Duration::from_millis(100)),
        }
    }

    /// A call's wait budget by default — for its admission wait, its router wait and its
    /// retries together — when the call carries no [`Deadline`](crate::Deadline): for an
    /// interactive call 150 s with Bedrock and plain HTTP (a throttle without admission waits
    /// for the next minute's window, up to 65 s, and may need a second attempt after it) and
    /// 20 s with DynamoDB (its capacity refills every second); for a batch call fifteen
    /// minutes, five with DynamoDB.
    pub fn deadline(self, priority: Priority) -> Duration {
        match (self, priority) {
            (Profile::DynamoDb, Priority::Interactive) => Duration::from_secs(20),
            (Profile::DynamoDb, Priority::Batch) => Duration::from_secs(5 * 60),
            (_, Priority::Interactive) => Duration::from_secs(150),
            (_, Priority::Batch) => Duration::from_secs(15 * 60),
        }
    }

    /// A [`Limit`](crate::Limit) counted the way the profile's provider counts, to give the
    /// console's numbers to: for Bedrock a minute's sliding window (tokens per minute, whose
    /// window phase the client cannot know); for DynamoDB a token bucket per second keeping
    /// the 300 s of unused capacity DynamoDB documents as burst; for plain HTTP a minute's
    /// sliding window, which never lets any one-minute window see more than the limit,
    /// whether the server counts fixed windows or a bucket (give it
    /// [`burst`](crate::admission::LimitBuilder::burst) of a window for a server documented as
    /// a bucket that full, as Anthropic's is, to use its burst too).
    ///
    /// ```
    /// use tower_headroom::Profile;
    /// use tower_headroom::admission::Accounting;
    ///
    /// let model = Profile::Bedrock.limit().units(200_000).build()?; // the console's TPM
    /// assert_eq!(model.accounting(), Accounting::SlidingWindow);
    /// let table = Profile::DynamoDb.limit().units(1_000).build()?; // the table's WCU
    /// assert!(matches!(table.accounting(), Accounting::TokenBucket { .. }));
    /// # Ok::<(), tower_headroom::ConfigError>(())
    /// ```
    pub fn limit(self) -> crate::admission::LimitBuilder {
        match self {
            Profile::Bedrock | Profile::Http => crate::Limit::per_minute(),
            Profile::DynamoDb => crate::Limit::per_second().burst(Duration::from_secs(300)),
        }
    }

    /// The profile's breaker configuration, as a builder to adjust.
    pub fn breaker(self) -> crate::breaker::BreakerConfigBuilder {
        match self {
            Profile::Bedrock | Profile::Http => BreakerConfig::builder(),
            Profile::DynamoDb => BreakerConfig::builder()
                .window(crate::breaker::Window::Time(Duration::from_secs(10)))
                .minimum_calls(20)
                .open_for(Duration::from_secs(5)),
        }
    }
}

/// Builds the stack; see the [module docs](self).
///
/// Targets are added in preference order. Without [`admission`](Self::admission) calls go
/// straight from the breaker to the client. Configuration errors (no target, duplicate target
/// names, bad windows) come back from [`services`](Self::services) or
/// [`rewrite`](Self::rewrite) as a [`ConfigError`].
pub struct StackBuilder<T, C, A = NoAdmission> {
    profile: Profile,
    classifier: C,
    route: RouteBuilder<T>,
    retry: Option<RetryPolicy>,
    deadline: Option<Duration>,
    seed: Option<u64>,
    /// `None`: the profile's breaker, one per target.
    breakers: Option<BreakerSource>,
    admission: A,
}

impl<T, C, A> fmt::Debug for StackBuilder<T, C, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StackBuilder")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

impl<T> StackBuilder<T, HttpClassifier> {
    /// A stack for a plain HTTP endpoint, classifying with [`HttpClassifier`].
    pub fn http() -> Self {
        StackBuilder::new(Profile::Http, HttpClassifier::new())
    }
}

impl<T, C> StackBuilder<T, C> {
    /// A stack with `profile`'s defaults, classifying results with `classifier`.
    pub fn new(profile: Profile, classifier: C) -> Self {
        StackBuilder {
            profile,
            classifier,
            route: Route::builder(),
            retry: None,
            deadline: None,
            seed: None,
            breakers: None,
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

    /// Admits each call against `quota` under its target's key, costed by `estimate`
    /// (e.g. [`LlmEstimator`](crate::admission::LlmEstimator)); the router prefers targets whose
    /// quota admits a one-request call now.
    pub fn admission<E>(self, quota: Quota<T>, estimate: E) -> StackBuilder<T, C, Admit<T, E>> {
        StackBuilder {
            profile: self.profile,
            classifier: self.classifier,
            route: self.route,
            retry: self.retry,
            deadline: self.deadline,
            seed: self.seed,
            breakers: self.breakers,
            admission: Admit {
                quota,
                estimate,
                usage: NoUsage,
                headroom_cost: Cost::ONE_REQUEST,
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
        self.deadline = Some(budget);
        self
    }

    /// Seeds the jitter of the profile's retry policy and breakers, so that a run repeats
    /// exactly (simulations, tests). A policy or breaker configuration given to
    /// [`retry`](Self::retry) or [`breaker`](Self::breaker) keeps its own seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Replaces the profile's retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Replaces the profile's breaker configuration (one breaker per target).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breakers = Some(BreakerSource::PerTarget(config));
        self
    }

    /// Takes each target's breaker from `registry` by target name, so that several stacks (or
    /// stacks and AWS SDK clients) share them.
    pub fn breaker_registry(mut self, registry: BreakerRegistry<Arc<str>>) -> Self {
        self.breakers = Some(BreakerSource::Registry(registry));
        self
    }

    /// No circuit breakers.
    pub fn no_breakers(mut self) -> Self {
        self.breakers = Some(BreakerSource::None);
        self
    }

    /// Form (a): one client per target (e.g. one per region), in target order.
    pub fn services<S>(self, services: Vec<S>) -> Result<Stack<S, T, C, A>, ConfigError>
    where
        A: PerTarget<T, C, S>,
        C: Clone,
    {
        let expected = self.route_len();
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
    pub fn rewrite<S, F>(self, service: S, rewrite: F) -> Result<Stack<S, T, C, A, F>, ConfigError>
    where
        A: PerTarget<T, C, S>,
        C: Clone,
        S: Clone,
    {
        let services = vec![service; self.route_len()];
        self.build(services, rewrite)
    }

    fn route_len(&self) -> usize {
        // The route is validated in `build`; its length is only counted here.
        self.route.len()
    }

    fn build<S, F>(self, services: Vec<S>, rewrite: F) -> Result<Stack<S, T, C, A, F>, ConfigError>
    where
        A: PerTarget<T, C, S>,
        C: Clone,
    {
        let route = self.route.build()?;
        let seeded = |b: crate::retry::RetryPolicyBuilder| match self.seed {
            Some(seed) => b.seed(seed),
            None => b,
        };
        let given = self.retry.as_ref().and_then(RetryPolicy::deadline);
        let retry = match self.retry {
            Some(policy) => policy,
            None if self.admission.paces() => seeded(self.profile.paced_retry()).build()?,
            None => seeded(self.profile.retry()).build()?,
        };
        // The budget: set here, else the deadline of a retry policy given, else the profile's.
        let budget = match self.deadline.or(given) {
            Some(budget) if budget.is_zero() || budget > crate::admission::MAX_WAIT => {
                return Err(ConfigError::new(
                    "deadline",
                    budget,
                    "must be more than zero and at most 24 h",
                ));
            }
            Some(budget) => budget,
            None => self.profile.deadline(self.admission.priority()),
        };
        let services = route
            .targets()
            .iter()
            .zip(services)
            .map(|(target, service)| self.admission.wrap(target, &self.classifier, service))
            .collect();
        let headroom = self.admission.headroom(route.targets());
        let fallback = FallbackBuilder::new(route, self.classifier.clone()).headroom(headroom);
        let fallback = fallback.breaker_source(match self.breakers {
            Some(source) => source,
            None => {
                let config = self.profile.breaker();
                let config = match self.seed {
                    Some(seed) => config.seed(seed),
                    None => config,
                };
                BreakerSource::PerTarget(config.build()?)
            }
        });
        let router = fallback.dispatch(Targets { services, rewrite });
        Ok(RetryLayer::new(retry, self.classifier)
            .deadline(budget)
            .layer(router))
    }
}

impl<T, C, E> StackBuilder<T, C, Admit<T, E>> {
    /// Reads each call's real usage from its response (e.g.
    /// [`HeaderUsage`](crate::admission::HeaderUsage)) to settle its reservation.
    pub fn usage<U>(self, usage: U) -> StackBuilder<T, C, Admit<T, E, U>> {
        let Admit {
            quota,
            estimate,
            headroom_cost,
            priority,
            tenant,
            ..
        } = self.admission;
        StackBuilder {
            profile: self.profile,
            classifier: self.classifier,
            route: self.route,
            retry: self.retry,
            deadline: self.deadline,
            seed: self.seed,
            breakers: self.breakers,
            admission: Admit {
                quota,
                estimate,
                usage,
                headroom_cost,
                priority,
                tenant,
            },
        }
    }
}

impl<T, C, E, U> StackBuilder<T, C, Admit<T, E, U>> {
    /// The cost the router asks each target's quota about when choosing (default one request
    /// and no units: the router chooses before the request's own estimate is known).
    pub fn headroom_cost(mut self, cost: Cost) -> Self {
        self.admission.headroom_cost = cost;
        self
    }

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

/// The service a [`StackBuilder`] builds: `Retry<Fallback<Targets<…>>>`.
pub type Stack<S, T, C, A = NoAdmission, F = NoRewrite> = Retry<
    Fallback<
        Targets<<A as PerTarget<T, C, S>>::Service, F>,
        T,
        C,
        <A as PerTarget<T, C, S>>::Headroom,
    >,
    C,
>;

/// What the stack puts between each target's breaker and the client.
pub trait PerTarget<T, C, S> {
    /// The service for one target.
    type Service;
    /// What the router reads as the targets' headroom.
    type Headroom: crate::fallback::Headroom<T>;
    /// Wraps `service` for `target`.
    fn wrap(&self, target: &Target<T>, classifier: &C, service: S) -> Self::Service;
    /// The headroom the router consults for `targets`.
    fn headroom(&self, targets: &[Target<T>]) -> Self::Headroom;
    /// Whether calls are admitted against a quota (which then paces retries of throttles).
    fn paces(&self) -> bool;
    /// The priority of the stack's calls (for the default deadline).
    fn priority(&self) -> Priority;
}

/// No admission: calls go from the breaker to the client.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAdmission;

impl<T, C, S> PerTarget<T, C, S> for NoAdmission {
    type Service = S;
    type Headroom = NoHeadroom;

    fn wrap(&self, _target: &Target<T>, _classifier: &C, service: S) -> S {
        service
    }

    fn headroom(&self, _targets: &[Target<T>]) -> NoHeadroom {
        NoHeadroom
    }

    fn paces(&self) -> bool {
        false
    }

    fn priority(&self) -> Priority {
        Priority::Interactive
    }
}

/// Admission per target against one shared [`Quota`]; see [`StackBuilder::admission`]. The
/// router reads each target's quota as [`TargetHeadroom`] (like
/// [`QuotaHeadroom`](crate::fallback::QuotaHeadroom), with the targets' state pinned).
pub struct Admit<T, E, U = NoUsage> {
    quota: Quota<T>,
    estimate: E,
    usage: U,
    headroom_cost: Cost,
    priority: Priority,
    tenant: Option<Tenant>,
}

impl<T, E, U> fmt::Debug for Admit<T, E, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admit")
            .field("headroom_cost", &self.headroom_cost)
            .finish_non_exhaustive()
    }
}

impl<T, C, S, E, U> PerTarget<T, C, S> for Admit<T, E, U>
where
    T: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
    C: Clone,
    E: Clone,
    U: Clone,
{
    type Service = Admission<S, Fixed<T, E>, U, C>;
    type Headroom = TargetHeadroom<T>;

    fn wrap(&self, target: &Target<T>, classifier: &C, service: S) -> Self::Service {
        let demand =
            Fixed::new(target.key().clone(), self.estimate.clone()).priority(self.priority);
        let demand = match self.tenant {
            Some(tenant) => demand.tenant(tenant),
            None => demand,
        };
        AdmissionLayer::new(self.quota.clone(), demand)
            .usage(self.usage.clone())
            .classify(classifier.clone())
            .labels(target.labels().clone())
            .layer(service)
    }

    fn headroom(&self, targets: &[Target<T>]) -> Self::Headroom {
        let now = tokio::time::Instant::now();
        TargetHeadroom {
            slots: targets
                .iter()
                .map(|t| (t.key().clone(), self.quota.slot(t.key(), now)))
                .collect(),
            cost: self.headroom_cost,
        }
    }

    fn paces(&self) -> bool {
        true
    }

    fn priority(&self) -> Priority {
        self.priority
    }
}

/// The router's view of the stack's quota: each target's state pinned when the stack is built,
/// so choosing a target reads it without a map lookup ([`QuotaHeadroom`](crate::fallback::QuotaHeadroom) looks keys up, for
/// routers whose targets are not known up front).
pub struct TargetHeadroom<T> {
    slots: Arc<[(T, Arc<MemorySlot>)]>,
    cost: Cost,
}

impl<T> Clone for TargetHeadroom<T> {
    fn clone(&self) -> Self {
        TargetHeadroom {
            slots: Arc::clone(&self.slots),
            cost: self.cost,
        }
    }
}

impl<T> fmt::Debug for TargetHeadroom<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetHeadroom")
            .field("targets", &self.slots.len())
            .field("cost", &self.cost)
            .finish()
    }
}

impl<T: PartialEq> crate::fallback::Headroom<T> for TargetHeadroom<T> {
    fn admit_wait(&self, target: &T, now: tokio::time::Instant) -> Option<Duration> {
        match self.slots.iter().find(|(key, _)| key == target) {
            Some((_, slot)) => slot.admit_wait(self.cost, now),
            // Not one of the stack's targets: no quota of ours holds it back.
            None => Some(Duration::ZERO),
        }
    }
}

/// The stack's dispatcher: one service per target, the request rewritten for the target.
#[derive(Clone, Debug)]
pub struct Targets<S, F> {
    services: Box<[S]>,
    rewrite: F,
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

impl<Req, T, S, F> Dispatch<Req, T> for Targets<S, F>
where
    S: Service<Req> + Clone,
    F: RewriteFor<Req, T>,
{
    type Service = S;

    fn service(&self, index: usize, key: &T, request: &mut Req) -> S {
        self.rewrite.rewrite(request, key);
        self.services[index].clone()
    }
}

/// The HTTP answer a gateway gives when its stack fails a call: the error is classified like
/// any other ([`classify_error`]), and the outcome decides.
///
/// | outcome | status |
/// |---|---|
/// | a quota throttle, or admission shed the call ([`Rejected`]) | `429`, `Retry-After` |
/// | a call no quota window can hold | `413` |
/// | overloaded or unavailable, every breaker open ([`NoTargetAvailable`](crate::fallback::NoTargetAvailable)) | `503`, `Retry-After` when known |
/// | timeout | `504` |
/// | anything else (transient, or a request the upstream refused) | `502` |
///
/// `Retry-After` is in whole seconds, rounded up. The response body is `B::default()`: nothing
/// of the upstream's error text reaches the caller.
///
/// ```
/// use std::time::Duration;
/// use tower_headroom::admission::{RejectReason, Rejected};
/// use tower_headroom::stack::error_response;
///
/// let shed = Rejected { retry_in: Some(Duration::from_millis(1500)), reason: RejectReason::Deadline };
/// let response = error_response::<String>(&shed);
/// assert_eq!(response.status(), 429);
/// assert_eq!(response.headers()["retry-after"], "2");
/// ```
pub fn error_response<B: Default>(error: &(dyn Error + 'static)) -> http::Response<B> {
    let outcome = classify_error(error);
    let status = match outcome.kind {
        OutcomeKind::Throttled(_) => http::StatusCode::TOO_MANY_REQUESTS,
        OutcomeKind::Overloaded | OutcomeKind::Unavailable => http::StatusCode::SERVICE_UNAVAILABLE,
        OutcomeKind::Timeout => http::StatusCode::GATEWAY_TIMEOUT,
        OutcomeKind::Fatal => match find::<Rejected>(error) {
            // Admission refused a call too large for any window: the caller's to fix.
            Some(rejected) => return rejected.to_response(),
            None => http::StatusCode::BAD_GATEWAY,
        },
        OutcomeKind::Transient | OutcomeKind::Success => http::StatusCode::BAD_GATEWAY,
    };
    let mut response = http::Response::new(B::default());
    *response.status_mut() = status;
    if let (Some(wait), true) = (outcome.retry_after, status != http::StatusCode::BAD_GATEWAY) {
        crate::classify::retry_after::insert(response.headers_mut(), wait);
    }
    response
}
