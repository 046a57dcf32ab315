//! The Tower adapter: [`AdmissionLayer`], [`Admission`], [`ResponseFuture`].

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_layer::Layer;
use tower_service::Service;

use super::cost::{Estimate, NoUsage, ReadUsage, Usage};
use super::limit::{Priority, Tenant};
use super::quota::{
    Ask, Grant, MemorySlot, MemoryStore, Quota, QuotaStore, Rejected, Reservation, Slot, StoreSlot,
};
use crate::observe::Labels;
use crate::{BoxError, Classify, Outcome, OutcomeKind};

/// What the adapter needs to know about a request before the call: its key and its [`Ask`].
///
/// Provided: [`Fixed`] (one key for every request, e.g. one layer per model × region) and
/// [`Keyed`] (a key closure). Keys are cloned per call: use cheap keys (`&'static str`, an
/// enum, `Arc<str>`), so that the success path does not allocate.
pub trait Demand<Req>: DemandKey {
    /// The key of `req`.
    fn key(&self, req: &Req) -> Self::Key;
    /// What `req` asks for.
    fn ask(&self, req: &Req) -> Ask;
}

/// The key type of a [`Demand`], apart from the request type, so that a service's type names
/// its key once (a type that named it twice would trip the compiler's check that a spawned
/// future is `Send` when the key is a reference, as in `&'static str`).
pub trait DemandKey {
    /// The key type.
    type Key;
    /// The key every request has, if it is always the same; lets the service pin the key's
    /// state when it is built and skip the lookup on every call.
    fn fixed_key(&self) -> Option<&Self::Key> {
        None
    }
}

/// One key for every request, with a cost from an [`Estimate`].
#[derive(Clone, Debug)]
pub struct Fixed<K, E> {
    key: K,
    estimator: E,
    priority: Priority,
    tenant: Option<Tenant>,
}

impl<K, E> Fixed<K, E> {
    /// Every request is on `key` and costs what `estimator` says.
    pub fn new(key: K, estimator: E) -> Self {
        Fixed {
            key,
            estimator,
            priority: Priority::Interactive,
            tenant: None,
        }
    }

    /// Every request has this priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Every request is for this tenant.
    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = Some(tenant);
        self
    }
}

impl<K, E> DemandKey for Fixed<K, E> {
    type Key = K;

    fn fixed_key(&self) -> Option<&K> {
        Some(&self.key)
    }
}

impl<Req, K: Clone, E: Estimate<Req>> Demand<Req> for Fixed<K, E> {
    fn key(&self, _req: &Req) -> K {
        self.key.clone()
    }

    fn ask(&self, req: &Req) -> Ask {
        Ask {
            cost: self.estimator.estimate(req),
            priority: self.priority,
            tenant: self.tenant,
            deadline: None,
        }
    }
}

/// A key from a closure and an [`Ask`] from a closure, for requests that differ in key,
/// priority or tenant.
///
/// ```
/// use tower_headroom::admission::{Ask, Cost, Keyed, Priority, Tenant};
///
/// struct Job { app: u16, batch: bool, tokens: u64 }
/// let demand: Keyed<&str, _, _> = Keyed::new(
///     |_: &Job| "claude-us-east-1",
///     |job: &Job| {
///         let ask = Ask::new(Cost::units(job.tokens)).tenant(Tenant(job.app));
///         if job.batch { ask.priority(Priority::Batch) } else { ask }
///     },
/// );
/// # let _ = demand;
/// ```
pub struct Keyed<K, F, A> {
    key: F,
    ask: A,
    _key: PhantomData<fn() -> K>,
}

impl<K, F: Clone, A: Clone> Clone for Keyed<K, F, A> {
    fn clone(&self) -> Self {
        Keyed {
            key: self.key.clone(),
            ask: self.ask.clone(),
            _key: PhantomData,
        }
    }
}

impl<K, F, A> fmt::Debug for Keyed<K, F, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed").finish_non_exhaustive()
    }
}

impl<K, F, A> Keyed<K, F, A> {
    /// Keys from `key`, asks from `ask`.
    pub fn new(key: F, ask: A) -> Self {
        Keyed {
            key,
            ask,
            _key: PhantomData,
        }
    }
}

impl<K, F, A> DemandKey for Keyed<K, F, A> {
    type Key = K;
}

impl<Req, K, F, A> Demand<Req> for Keyed<K, F, A>
where
    F: Fn(&Req) -> K,
    A: Fn(&Req) -> Ask,
{
    fn key(&self, req: &Req) -> K {
        (self.key)(req)
    }

    fn ask(&self, req: &Req) -> Ask {
        (self.ask)(req)
    }
}

/// The default classifier of the adapter: `Ok` is a success, an error teaches nothing.
/// Give a real one (e.g. the crate's HTTP classifier) with [`AdmissionLayer::classify`] so that
/// throttles shrink the learned limit.
#[derive(Clone, Copy, Debug, Default)]
pub struct OkIsSuccess;

impl<Res> Classify<Res> for OkIsSuccess {
    fn classify(&self, result: Result<&Res, &(dyn Error + 'static)>) -> Outcome {
        match result {
            Ok(_) => Outcome::SUCCESS,
            Err(_) => Outcome::new(OutcomeKind::Transient),
        }
    }
}

/// The admission vocabulary for one set of labels, registered once: the wait for quota, the
/// calls shed, the learned limit. Shared with the AWS SDK adapter.
#[derive(Clone)]
pub(crate) struct Metrics {
    wait: crate::observe::Histogram,
    rejected: crate::observe::Counter,
    limit: crate::observe::Gauge,
    gauges: super::gauges::QuotaGauges,
}

impl Metrics {
    pub(crate) fn register(labels: &Labels) -> Self {
        use crate::observe::names;
        Metrics {
            wait: crate::observe::Histogram::register(names::ADMISSION_WAIT, labels),
            rejected: crate::observe::Counter::register(names::ADMISSION_REJECTED, labels, &[]),
            limit: crate::observe::Gauge::register(names::QUOTA_LIMIT, labels),
            gauges: super::gauges::QuotaGauges::register(labels),
        }
    }

    /// Samples the key's utilisation and queue gauges from `stats` when a sample is due at
    /// `now` (at most once a second; otherwise one relaxed atomic load).
    #[inline]
    pub(crate) fn sample_quota(
        &self,
        now: Instant,
        stats: impl FnOnce() -> Option<crate::admission::SlotStats>,
    ) {
        if self.gauges.due(now) {
            self.gauges.sample(now, stats);
        }
    }

    pub(crate) fn waited(&self, wait: Duration) {
        self.wait.record(wait.as_secs_f64());
    }

    pub(crate) fn rejected(&self, labels: &Labels, rejected: &Rejected) {
        self.rejected.increment(1);
        tracing::debug!(
            labels = %labels,
            reason = rejected.reason.as_str(),
            wait_ms = rejected.retry_in.map(|d| d.as_millis() as u64),
            "admission rejected a call"
        );
    }

    /// Reports the key's effective limit after a settling that may have moved it.
    pub(crate) fn settled(&self, labels: &Labels, outcome: &Outcome, limit: u64) {
        self.limit.set(limit as f64);
        if outcome.kind.teaches_quota() {
            tracing::debug!(
                labels = %labels,
                class = outcome.kind.as_str(),
                limit,
                "admission learned a lower limit from a throttle"
            );
        }
    }
}

/// What the future needs after the call: usage reader, classifier, labels, metrics.
struct After<U, C> {
    usage: U,
    classify: C,
    labels: Labels,
    metrics: Metrics,
    /// `headroom_tokens_total` under the layer's labels: the tokens answers report.
    tokens: crate::observe::TokenCounters,
}

impl<U, C> After<U, C> {
    fn rejected(&self, rejected: &Rejected) {
        self.metrics.rejected(&self.labels, rejected);
    }

    /// Settles by the lifecycle's rule, and reports the learned limit when settling may have
    /// moved it.
    fn finish<T: Slot>(&self, r: Reservation<T>, outcome: &Outcome, usage: Usage) {
        if let Some(limit) = crate::lifecycle::settle(r, outcome, usage, Instant::now) {
            self.metrics.settled(&self.labels, outcome, limit);
        }
    }
}

/// Admits each call only when its key's quota has room: estimates, reserves, waits (FIFO per
/// key and priority, bounded, within the call's deadline), calls, reads usage, settles.
///
/// Every clone of the layer and of the services it builds shares one [`Quota`], in process
/// ([`MemoryStore`], the default) or in any other [`QuotaStore`] (e.g. the Redis store of the
/// `redis` feature, shared by every process).
///
/// ```
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_headroom::admission::{AdmissionLayer, Cost, FixedCost, Fixed, Limit, Quota};
///
/// # async fn run() -> Result<(), tower_headroom::BoxError> {
/// let quota = Quota::new(Limit::per_minute().requests(120).build()?);
/// let svc = ServiceBuilder::new()
///     .layer(AdmissionLayer::new(quota, Fixed::new("api", FixedCost(Cost::ONE_REQUEST))))
///     .service_fn(|req: &'static str| async move { Ok::<_, std::io::Error>(req.len()) });
/// assert_eq!(svc.oneshot("hello").await?, 5);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
/// ```
pub struct AdmissionLayer<
    D: DemandKey,
    U = NoUsage,
    C = OkIsSuccess,
    Q = MemoryStore<<D as DemandKey>::Key>,
> {
    quota: Quota<D::Key, Q>,
    demand: D,
    usage: U,
    classify: C,
    labels: Labels,
}

impl<D: DemandKey + Clone, U: Clone, C: Clone, Q> Clone for AdmissionLayer<D, U, C, Q> {
    fn clone(&self) -> Self {
        AdmissionLayer {
            quota: self.quota.clone(),
            demand: self.demand.clone(),
            usage: self.usage.clone(),
            classify: self.classify.clone(),
            labels: self.labels.clone(),
        }
    }
}

impl<D: DemandKey + fmt::Debug, U, C, Q> fmt::Debug for AdmissionLayer<D, U, C, Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdmissionLayer")
            .field("demand", &self.demand)
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl<D: DemandKey, Q> AdmissionLayer<D, NoUsage, OkIsSuccess, Q> {
    /// Admission against `quota`, with keys and asks from `demand`; settles at the estimate
    /// and learns nothing until given [`usage`](Self::usage) and [`classify`](Self::classify).
    pub fn new(quota: Quota<D::Key, Q>, demand: D) -> Self {
        AdmissionLayer {
            quota,
            demand,
            usage: NoUsage,
            classify: OkIsSuccess,
            labels: Labels::none(),
        }
    }
}

impl<D: DemandKey, U, C, Q> AdmissionLayer<D, U, C, Q> {
    /// Reads the real usage from responses.
    pub fn usage<U2>(self, usage: U2) -> AdmissionLayer<D, U2, C, Q> {
        AdmissionLayer {
            quota: self.quota,
            demand: self.demand,
            usage,
            classify: self.classify,
            labels: self.labels,
        }
    }

    /// Classifies results, so that throttles teach the quota.
    pub fn classify<C2>(self, classify: C2) -> AdmissionLayer<D, U, C2, Q> {
        AdmissionLayer {
            quota: self.quota,
            demand: self.demand,
            usage: self.usage,
            classify,
            labels: self.labels,
        }
    }

    /// Reports metrics and events under `labels`. Metric handles are registered when the
    /// layer builds a service, or on first use if no `metrics` recorder was installed then.
    pub fn labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    /// The shared quota.
    pub fn quota(&self) -> &Quota<D::Key, Q> {
        &self.quota
    }
}

impl<S, D, U, C, Q> Layer<S> for AdmissionLayer<D, U, C, Q>
where
    D: DemandKey + Clone,
    U: Clone,
    C: Clone,
    Q: QuotaStore<D::Key>,
{
    type Service = Admission<S, D, U, C, Q>;

    fn layer(&self, inner: S) -> Self::Service {
        let slot_of: SlotOf<D::Key, Q> = Quota::<D::Key, Q>::slot;
        // A fixed key's state is pinned here, so that every clone of the service (one per
        // call, in the usual `service.clone().oneshot(..)`) skips the lookup too.
        let pinned = (self.demand.fixed_key()).map(|key| slot_of(&self.quota, key, Instant::now()));
        Admission {
            inner,
            quota: self.quota.clone(),
            demand: self.demand.clone(),
            after: Arc::new(After {
                usage: self.usage.clone(),
                classify: self.classify.clone(),
                labels: self.labels.clone(),
                metrics: Metrics::register(&self.labels),
                tokens: crate::observe::TokenCounters::new(&self.labels),
            }),
            pinned,
            slot_of,
        }
    }
}

/// The service built by [`AdmissionLayer`].
pub struct Admission<
    S,
    D: DemandKey,
    U = NoUsage,
    C = OkIsSuccess,
    Q: StoreSlot = MemoryStore<<D as DemandKey>::Key>,
> {
    inner: S,
    quota: Quota<D::Key, Q>,
    demand: D,
    after: Arc<After<U, C>>,
    pinned: Option<Q::Slot>,
    /// The store's slot lookup, taken where the store is known to serve the key type, so that
    /// the service's `Service` impl (and so a spawned call's `Send` check) does not need that
    /// bound: with a reference key (`&'static str`) the compiler cannot prove it there.
    slot_of: SlotOf<D::Key, Q>,
}

type SlotOf<K, Q> = fn(&Quota<K, Q>, &K, Instant) -> <Q as StoreSlot>::Slot;

impl<S: Clone, D: DemandKey + Clone, U, C, Q: StoreSlot> Clone for Admission<S, D, U, C, Q> {
    fn clone(&self) -> Self {
        Admission {
            inner: self.inner.clone(),
            quota: self.quota.clone(),
            demand: self.demand.clone(),
            after: Arc::clone(&self.after),
            pinned: self.pinned.clone(),
            slot_of: self.slot_of,
        }
    }
}

impl<S: fmt::Debug, D: DemandKey + fmt::Debug, U, C, Q: StoreSlot> fmt::Debug
    for Admission<S, D, U, C, Q>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("inner", &self.inner)
            .field("demand", &self.demand)
            .finish_non_exhaustive()
    }
}

impl<S, D, U, C, Q, Req> Service<Req> for Admission<S, D, U, C, Q>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    D: Demand<Req>,
    D::Key: Hash + Eq + Clone + Send + Sync,
    U: ReadUsage<S::Response>,
    C: Classify<S::Response>,
    Q: StoreSlot,
    Q::Slot: 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, U, C, <Q as StoreSlot>::Slot>;

    /// Always ready: the inner service is readied in the response future only once the quota
    /// granted the call, so a call waiting for quota holds none of the inner service's
    /// readiness (a connection-pool slot, a concurrency permit).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let now = Instant::now();
        let ask = self.demand.ask(&req);
        let (quota, slot_of) = (&self.quota, self.slot_of);
        let slot = match self.demand.fixed_key() {
            Some(key) => self
                .pinned
                .get_or_insert_with(|| slot_of(quota, key, now))
                .clone(),
            None => slot_of(quota, &self.demand.key(&req), now),
        };
        // The call readies its own clone of the inner service, after the grant.
        let svc = self.inner.clone();
        let after = Arc::clone(&self.after);
        match Reservation::reserve(slot, &ask, now) {
            Err(rejected) => {
                after.rejected(&rejected);
                ResponseFuture {
                    state: State::Rejected {
                        rejected: Some(rejected),
                    },
                    reservation: None,
                    after,
                    started: now,
                }
            }
            Ok(reservation) => {
                let state = match reservation.grant() {
                    Grant::Now => State::Ready {
                        svc: Some(svc),
                        req: Some(req),
                    },
                    Grant::At(at) => State::Waiting {
                        sleep: tokio::time::sleep_until(at),
                        svc: Some(svc),
                        req: Some(req),
                    },
                };
                ResponseFuture {
                    state,
                    reservation: Some(reservation),
                    after,
                    started: now,
                }
            }
        }
    }
}

pin_project! {
    /// The future of [`Admission`]: waits for quota when told to, calls, settles.
    pub struct ResponseFuture<S, Req, U, C, T = Arc<MemorySlot>>
    where
        S: Service<Req>,
        T: Slot,
    {
        #[pin]
        state: State<S, Req>,
        reservation: Option<Reservation<T>>,
        after: Arc<After<U, C>>,
        started: Instant,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Rejected { rejected: Option<Rejected> },
        Waiting { #[pin] sleep: Sleep, svc: Option<S>, req: Option<Req> },
        Ready { svc: Option<S>, req: Option<Req> },
        Calling { #[pin] future: S::Future },
        Done,
    }
}

impl<S, Req, U, C, T> fmt::Debug for ResponseFuture<S, Req, U, C, T>
where
    S: Service<Req>,
    T: Slot,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, Req, U, C, T> Future for ResponseFuture<S, Req, U, C, T>
where
    S: Service<Req>,
    T: Slot + 'static,
    S::Error: Into<BoxError>,
    U: ReadUsage<S::Response>,
    C: Classify<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            match this.state.project() {
                StateProj::Rejected { rejected } => {
                    let rejected = rejected.take().expect("polled after completion");
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(Err(Box::new(rejected)));
                }
                StateProj::Waiting { sleep, svc, req } => {
                    let reservation = this.reservation.as_mut().expect("reserved while waiting");
                    // The granted instant, or earlier when the store says the call may now be
                    // admitted (a shared store whose budget arrived from the server).
                    if sleep.poll(cx).is_pending() {
                        ready!(reservation.poll_wake(cx));
                    }
                    let now = Instant::now();
                    match reservation.confirm(now) {
                        Err(rejected) => {
                            this.after.rejected(&rejected);
                            *this.reservation = None;
                            self.as_mut().project().state.set(State::Done);
                            return Poll::Ready(Err(Box::new(rejected)));
                        }
                        Ok(Grant::At(at)) => {
                            // A higher-priority call took the room: wait again, same timer.
                            let this = self.as_mut().project();
                            if let StateProj::Waiting { sleep, .. } = this.state.project() {
                                sleep.reset(at);
                            }
                        }
                        Ok(Grant::Now) => {
                            this.after
                                .metrics
                                .waited(now.saturating_duration_since(*this.started));
                            let (svc, req) = (svc.take(), req.take());
                            self.as_mut().project().state.set(State::Ready { svc, req });
                        }
                    }
                }
                StateProj::Ready { svc, req } => {
                    let inner = svc.as_mut().expect("service present until called");
                    if let Err(e) = ready!(inner.poll_ready(cx)) {
                        // The call never started: its units go back (its request stays
                        // counted, as the request of any admitted call does).
                        if let Some(r) = this.reservation.take() {
                            r.release_unsent(Instant::now());
                        }
                        self.as_mut().project().state.set(State::Done);
                        return Poll::Ready(Err(e.into()));
                    }
                    let req = req.take().expect("request present until called");
                    let future = inner.call(req);
                    self.as_mut().project().state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let result = ready!(future.poll(cx));
                    let after = &**this.after;
                    let reservation = this.reservation.take();
                    let output = match result {
                        Ok(mut res) => {
                            let outcome = after.classify.classify(Ok(&res));
                            // A stream's usage is in its body: its reservation goes with it,
                            // and its tokens are counted when its usage event comes.
                            let reservation = super::defer_or_keep(
                                reservation,
                                &outcome,
                                &after.usage,
                                &mut res,
                                &after.tokens,
                                &tracing::Span::none(),
                            );
                            if let Some(r) = reservation {
                                let usage = after.usage.read_usage(&res);
                                if let Some(tokens) = after.usage.read_tokens(&res) {
                                    after.tokens.add(&tokens);
                                }
                                after.finish(r, &outcome, usage);
                            }
                            Ok(res)
                        }
                        Err(e) => {
                            let err: BoxError = e.into();
                            let source: &(dyn Error + 'static) = &*err;
                            let outcome = after.classify.classify(Err(source));
                            if let Some(r) = reservation {
                                after.finish(r, &outcome, Usage::UNKNOWN);
                            }
                            Err(err)
                        }
                    };
                    self.as_mut().project().state.set(State::Done);
                    return Poll::Ready(output);
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}
