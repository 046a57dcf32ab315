//! The Tower adapter: a router over several services, or a request rewriter over one (its
//! builder, layer and service; the response future is in `future.rs`).

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::route::{Choice, Exhaustion, Headroom, NoHeadroom, Plan, Route};
use crate::breaker::{BreakerConfig, BreakerHandle, BreakerPermit, BreakerRegistry, ConfigError};
use crate::observe::{CounterSet, Labels, keys, names};
use crate::{BoxError, Classify, Outcome};

/// Which target served a response, and whether that was a fallback.
///
/// Attached (as an `http::Response` extension by [`HttpExtension`], the default [`Annotate`])
/// to every response that did *not* come from the preferred target on the first call: its
/// absence means the first target answered at once, so the common case allocates nothing.
/// Every answer is also counted in `headroom_fallback_total{target, degraded}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    /// Index of the target in the route (0 is the preferred one).
    pub target: usize,
    /// The target's name.
    pub name: Arc<str>,
    /// `true` when a target other than the first one served.
    pub degraded: bool,
    /// Moves made before this target answered (calls made minus one).
    pub hops: u32,
}

/// Attaches a [`Served`] record to a response. Implemented by [`HttpExtension`] for
/// `http::Response<B>`, by [`NoAnnotation`] for any response, and by closures
/// `Fn(&mut Res, &Served)`.
pub trait Annotate<Res> {
    /// Records `served` on `response`.
    fn annotate(&self, response: &mut Res, served: &Served);
}

/// Inserts [`Served`] into the extensions of an `http::Response`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpExtension;

impl<B> Annotate<http::Response<B>> for HttpExtension {
    fn annotate(&self, response: &mut http::Response<B>, served: &Served) {
        response.extensions_mut().insert(served.clone());
    }
}

/// Annotates nothing, for responses with no room for it (metrics still count the fallback).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoAnnotation;

impl<Res> Annotate<Res> for NoAnnotation {
    fn annotate(&self, _response: &mut Res, _served: &Served) {}
}

impl<Res, F: Fn(&mut Res, &Served)> Annotate<Res> for F {
    fn annotate(&self, response: &mut Res, served: &Served) {
        self(response, served)
    }
}

/// Gives the router a service for a target, preparing the request for it.
pub trait Dispatch<Req, T> {
    /// The service a call goes to.
    type Service: Service<Req>;
    /// The service for target `index` (reached with `key`); may rewrite `request` for it.
    fn service(&self, index: usize, key: &T, request: &mut Req) -> Self::Service;
}

/// Form (a): one inner service per target (e.g. one client per region). Services are cloned
/// per call, as `tower::retry` does: use cheap-to-clone clients.
#[derive(Clone, Debug)]
pub struct Services<S> {
    services: Box<[S]>,
}

impl<Req, T, S> Dispatch<Req, T> for Services<S>
where
    S: Service<Req> + Clone,
{
    type Service = S;

    fn service(&self, index: usize, _key: &T, _request: &mut Req) -> S {
        self.services[index].clone()
    }
}

/// Form (b): one inner service; the request is rewritten for the chosen target (e.g. its
/// model id) by `rewrite(&mut request, &key)`. The caller's original request is never rewritten
/// twice: each call rewrites a fresh copy.
#[derive(Clone, Debug)]
pub struct Rewrite<S, F> {
    service: S,
    rewrite: F,
}

impl<Req, T, S, F> Dispatch<Req, T> for Rewrite<S, F>
where
    S: Service<Req> + Clone,
    F: Fn(&mut Req, &T),
{
    type Service = S;

    fn service(&self, _index: usize, key: &T, request: &mut Req) -> S {
        (self.rewrite)(request, key);
        self.service.clone()
    }
}

/// The error a [`Fallback`] returns when no target could take the request, without calling any.
///
/// Every target's breaker is open, or no quota admits within the call's deadline; `cause`
/// says which held back the target that could serve soonest. Classified as `Unavailable` (an
/// HTTP 503) when a breaker is the cause and as a quota throttle (a 429) when quota is, with
/// `retry_in` as the server delay either way (see [`crate::stack::error_response`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoTargetAvailable {
    /// The earliest any target could take a call, if known.
    pub retry_in: Option<Duration>,
    /// What holds back the target that could serve soonest.
    pub cause: Exhaustion,
}

impl fmt::Display for NoTargetAvailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.cause {
            Exhaustion::Hops => "no fallback target available: hops used up",
            Exhaustion::BreakerOpen => "no fallback target available: circuit open",
            Exhaustion::NoHeadroom => "no fallback target available: no quota headroom",
        })?;
        if let Some(retry_in) = self.retry_in {
            write!(f, "; retry in {retry_in:?}")?;
        }
        Ok(())
    }
}

impl Error for NoTargetAvailable {}

/// Where each target's circuit breaker comes from; shared by the router, the stack builder
/// and the AWS SDK adapter.
pub(crate) enum BreakerSource {
    /// One breaker per target with this configuration, labelled with the target's labels.
    PerTarget(BreakerConfig),
    /// The registry's breaker under the target's name.
    Registry(BreakerRegistry<Arc<str>>),
    /// No breakers.
    None,
}

impl BreakerSource {
    /// Each target's breaker, in route order.
    pub(crate) fn target_breakers<T>(
        &self,
        route: &Route<T>,
        now: Instant,
    ) -> Box<[Option<BreakerHandle>]> {
        route
            .targets()
            .iter()
            .map(|target| match self {
                BreakerSource::PerTarget(config) => Some(BreakerHandle::new_at(
                    config.clone(),
                    target.labels().clone(),
                    now,
                )),
                BreakerSource::Registry(registry) => Some(registry.get(target.name(), now)),
                BreakerSource::None => None,
            })
            .collect()
    }
}

/// The route core's choice with each target's breaker asked for a permit.
pub(crate) fn choose<T, H: Headroom<T> + ?Sized>(
    route: &Route<T>,
    breakers: &[Option<BreakerHandle>],
    plan: &mut Plan,
    now: Instant,
    headroom: &H,
) -> Choice<Option<BreakerPermit>> {
    route.choose(plan, now, headroom, |index| match &breakers[index] {
        Some(breaker) => breaker.acquire(now).map(Some).map_err(|open| open.retry_in),
        None => Ok(None),
    })
}

/// Builds a [`Fallback`] router (form (a), [`services`](Self::services)) or a
/// [`FallbackLayer`] rewriter (form (b), [`rewrite`](Self::rewrite)).
pub struct FallbackBuilder<T, C, H = NoHeadroom, A = HttpExtension> {
    route: Route<T>,
    classifier: C,
    headroom: H,
    annotate: A,
    breakers: BreakerSource,
}

impl<T, C, H, A> fmt::Debug for FallbackBuilder<T, C, H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackBuilder")
            .field("targets", &self.route.targets().len())
            .finish_non_exhaustive()
    }
}

impl<T, C> FallbackBuilder<T, C> {
    /// A router over `route`, classifying results with `classifier`. By default each target
    /// gets its own breaker with [`BreakerConfig::default`], every target admits now, and
    /// responses are annotated with [`HttpExtension`].
    pub fn new(route: Route<T>, classifier: C) -> Self {
        FallbackBuilder {
            route,
            classifier,
            headroom: NoHeadroom,
            annotate: HttpExtension,
            breakers: BreakerSource::PerTarget(BreakerConfig::default()),
        }
    }
}

impl<T, C, H, A> FallbackBuilder<T, C, H, A> {
    /// One breaker per target with `config`, labelled with the target's labels.
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.breakers = BreakerSource::PerTarget(config);
        self
    }

    /// Takes each target's breaker from `registry`, keyed by the target's name, so that several
    /// routers (or a keyed [`BreakerLayer`](crate::breaker::BreakerLayer)) share them.
    pub fn breaker_registry(mut self, registry: BreakerRegistry<Arc<str>>) -> Self {
        self.breakers = BreakerSource::Registry(registry);
        self
    }

    /// No breakers: every target is always eligible.
    pub fn no_breakers(mut self) -> Self {
        self.breakers = BreakerSource::None;
        self
    }

    /// Consults `headroom` (e.g. the admission layer's quota) when choosing a target.
    pub fn headroom<H2: Headroom<T>>(self, headroom: H2) -> FallbackBuilder<T, C, H2, A> {
        FallbackBuilder {
            route: self.route,
            classifier: self.classifier,
            headroom,
            annotate: self.annotate,
            breakers: self.breakers,
        }
    }

    /// How responses are annotated with [`Served`] (default [`HttpExtension`]).
    pub fn annotate<A2>(self, annotate: A2) -> FallbackBuilder<T, C, H, A2> {
        FallbackBuilder {
            route: self.route,
            classifier: self.classifier,
            headroom: self.headroom,
            annotate,
            breakers: self.breakers,
        }
    }

    /// Form (a): a router over one service per target, in the route's order.
    pub fn services<S>(
        self,
        services: Vec<S>,
    ) -> Result<Fallback<Services<S>, T, C, H, A>, ConfigError> {
        let expected = self.route.targets().len();
        if services.len() != expected {
            return Err(ConfigError::new(
                "services",
                services.len(),
                "needs exactly one service per target",
            ));
        }
        Ok(self.dispatch(Services {
            services: services.into_boxed_slice(),
        }))
    }

    /// A router that asks `dispatch` for each call's service: for dispatchers other than
    /// [`Services`] and [`Rewrite`], such as the [stack](crate::stack)'s one service per
    /// target with the request rewritten for it.
    pub fn dispatch<D>(self, dispatch: D) -> Fallback<D, T, C, H, A> {
        Fallback {
            shared: Arc::new(Shared {
                router: Arc::new(self.into_router()),
                dispatch,
            }),
        }
    }

    /// Form (b): a layer that sends every call to its one inner service, rewriting the request
    /// for the chosen target with `rewrite(&mut request, &key)`.
    pub fn rewrite<F>(self, rewrite: F) -> FallbackLayer<F, T, C, H, A> {
        FallbackLayer {
            router: Arc::new(self.into_router()),
            rewrite,
        }
    }

    fn into_router(self) -> Router<T, C, H, A> {
        let breakers = self.breakers.target_breakers(&self.route, Instant::now());
        let targets = self.route.targets();
        let served = targets
            .iter()
            .enumerate()
            .map(|(i, t)| served_counter(t.labels(), i != 0))
            .collect();
        Router {
            route: self.route,
            breakers,
            classifier: self.classifier,
            headroom: self.headroom,
            annotate: self.annotate,
            served,
        }
    }
}

pub(super) struct Router<T, C, H, A> {
    pub(super) route: Route<T>,
    pub(super) breakers: Box<[Option<BreakerHandle>]>,
    pub(super) classifier: C,
    pub(super) headroom: H,
    pub(super) annotate: A,
    /// `headroom_fallback_total` per target (see [`served_counter`]).
    pub(super) served: Box<[CounterSet<1>]>,
}

impl<T, C, H: Headroom<T>, A> Router<T, C, H, A> {
    pub(super) fn choose(&self, plan: &mut Plan, now: Instant) -> Choice<Option<BreakerPermit>> {
        choose(&self.route, &self.breakers, plan, now, &self.headroom)
    }
}

pub(super) struct Shared<D, T, C, H, A> {
    pub(super) router: Arc<Router<T, C, H, A>>,
    pub(super) dispatch: D,
}

/// A fallback router as a Tower layer over one service (form (b)); built by
/// [`FallbackBuilder::rewrite`]. Services built from one layer share its breakers.
pub struct FallbackLayer<F, T, C, H = NoHeadroom, A = HttpExtension> {
    router: Arc<Router<T, C, H, A>>,
    rewrite: F,
}

impl<F: Clone, T, C, H, A> Clone for FallbackLayer<F, T, C, H, A> {
    fn clone(&self) -> Self {
        FallbackLayer {
            router: Arc::clone(&self.router),
            rewrite: self.rewrite.clone(),
        }
    }
}

impl<F, T, C, H, A> fmt::Debug for FallbackLayer<F, T, C, H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackLayer")
            .field("targets", &self.router.route.targets().len())
            .finish_non_exhaustive()
    }
}

impl<S, F: Clone, T, C, H, A> Layer<S> for FallbackLayer<F, T, C, H, A> {
    type Service = Fallback<Rewrite<S, F>, T, C, H, A>;

    fn layer(&self, service: S) -> Self::Service {
        Fallback {
            shared: Arc::new(Shared {
                router: Arc::clone(&self.router),
                dispatch: Rewrite {
                    service,
                    rewrite: self.rewrite.clone(),
                },
            }),
        }
    }
}

/// The fallback router service; see the [module docs](crate::fallback).
///
/// `poll_ready` is always ready: which target a call goes to is decided per call (and per
/// hop), so each target's readiness is awaited in the response future on its own clone of the
/// target service, as `tower::retry` does for retries.
pub struct Fallback<D, T, C, H = NoHeadroom, A = HttpExtension> {
    shared: Arc<Shared<D, T, C, H, A>>,
}

impl<D, T, C, H, A> Clone for Fallback<D, T, C, H, A> {
    fn clone(&self) -> Self {
        Fallback {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<D, T, C, H, A> fmt::Debug for Fallback<D, T, C, H, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fallback")
            .field("targets", &self.shared.router.route.targets().len())
            .finish_non_exhaustive()
    }
}

impl<D, T, C, H, A> Fallback<D, T, C, H, A> {
    /// The breaker of each target, in route order (`None` when built without breakers).
    pub fn breakers(&self) -> &[Option<BreakerHandle>] {
        &self.shared.router.breakers
    }

    /// The route.
    pub fn route(&self) -> &Route<T> {
        &self.shared.router.route
    }
}

impl<Req, D, T, C, H, A> Service<Req> for Fallback<D, T, C, H, A>
where
    Req: Clone,
    D: Dispatch<Req, T>,
    <D::Service as Service<Req>>::Error: Into<BoxError>,
    C: Classify<<D::Service as Service<Req>>::Response>,
    H: Headroom<T>,
    A: Annotate<<D::Service as Service<Req>>::Response>,
{
    type Response = <D::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<Req, D, T, C, H, A>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ResponseFuture::new(Arc::clone(&self.shared), request)
    }
}

/// A response from the route's `target` after `hops` moves: annotated with [`Served`] when it
/// was not the preferred target at once (the common case is left as it is, so that it
/// allocates nothing), and counted in `served` when it succeeded. The one place the router and
/// the Tower stack report a served call.
pub(crate) fn report_served<T, Res>(
    route: &Route<T>,
    served: &CounterSet<1>,
    annotate: &impl Annotate<Res>,
    response: &mut Res,
    target: usize,
    hops: u32,
    outcome: &Outcome,
) {
    if target != 0 || hops > 0 {
        let record = Served {
            target,
            name: Arc::clone(route.targets()[target].name()),
            degraded: target != 0,
            hops,
        };
        annotate.annotate(response, &record);
        if outcome.is_success() && record.degraded {
            tracing::debug!(
                target_name = &*record.name,
                hops = record.hops,
                "served by a fallback target"
            );
        }
    }
    if outcome.is_success() {
        served.increment(0);
    }
}

/// `headroom_fallback_total{target, model, region, degraded}` for one target: `degraded` is
/// `true` for every target but the first.
pub(crate) fn served_counter(labels: &Labels, degraded: bool) -> CounterSet<1> {
    let degraded = if degraded { "true" } else { "false" };
    CounterSet::register(names::FALLBACK, labels, keys::DEGRADED, [degraded])
}
