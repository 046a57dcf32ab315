//! The Tower adapter: `BreakerLayer`, `Breaker<S>`, its `ResponseFuture` and `CircuitOpen`.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::handle::{BreakerHandle, BreakerPermit};
use super::registry::BreakerRegistry;
use crate::observe::Labels;
use crate::{BoxError, Classify};

/// The error a [`Breaker`] returns without calling the inner service: the circuit is open.
///
/// Says when to try again; carries only the user-chosen labels of the breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitOpen {
    /// How long until the breaker admits a call again (a probe).
    pub retry_in: Duration,
    labels: Labels,
}

impl CircuitOpen {
    /// An error for the breaker reporting under `labels`.
    pub fn new(retry_in: Duration, labels: Labels) -> Self {
        CircuitOpen { retry_in, labels }
    }

    /// The labels of the breaker that refused the call.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("circuit breaker open")?;
        if self.labels != Labels::none() {
            write!(f, " ({})", self.labels)?;
        }
        write!(f, "; retry in {:?}", self.retry_in)
    }
}

impl Error for CircuitOpen {}

/// Chooses the breaker for a request: one shared breaker ([`BreakerHandle`]) or one per key
/// ([`Keyed`]).
pub trait SelectBreaker<Req> {
    /// The breaker that guards `request`.
    fn select(&self, request: &Req, now: Instant) -> BreakerHandle;
}

impl<Req> SelectBreaker<Req> for BreakerHandle {
    fn select(&self, _request: &Req, _now: Instant) -> BreakerHandle {
        self.clone()
    }
}

/// One breaker per key, taken from a [`BreakerRegistry`] by a key function on the request.
#[derive(Clone, Debug)]
pub struct Keyed<K, F> {
    registry: BreakerRegistry<K>,
    key: F,
}

impl<Req, K, F> SelectBreaker<Req> for Keyed<K, F>
where
    K: Hash + Eq + Clone,
    F: Fn(&Req) -> K,
{
    fn select(&self, request: &Req, now: Instant) -> BreakerHandle {
        self.registry.get(&(self.key)(request), now)
    }
}

/// Applies a circuit breaker to a service; see the [module docs](crate::breaker).
///
/// ```
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_headroom::breaker::{BreakerConfig, BreakerHandle, BreakerLayer};
/// use tower_headroom::{Outcome, OutcomeKind, observe::Labels};
///
/// # async fn run() -> Result<(), tower_headroom::BoxError> {
/// let breaker = BreakerHandle::new(BreakerConfig::default(), Labels::target("search"));
/// let classify = |r: Result<&u16, &(dyn std::error::Error + 'static)>| match r {
///     Ok(200) => Outcome::SUCCESS,
///     Ok(503) => Outcome::new(OutcomeKind::Unavailable),
///     Ok(_) => Outcome::FATAL,
///     Err(_) => Outcome::new(OutcomeKind::Transient),
/// };
/// let service = ServiceBuilder::new()
///     .layer(BreakerLayer::new(breaker, classify))
///     .service_fn(|_: ()| async { Ok::<u16, std::io::Error>(200) });
/// assert_eq!(service.oneshot(()).await?, 200);
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct BreakerLayer<C, P = BreakerHandle> {
    select: P,
    classifier: C,
}

impl<C> BreakerLayer<C> {
    /// Guards every call with `breaker` (shared by all clones), classifying results with
    /// `classifier`.
    pub fn new(breaker: BreakerHandle, classifier: C) -> Self {
        BreakerLayer {
            select: breaker,
            classifier,
        }
    }
}

impl<C, K, F> BreakerLayer<C, Keyed<K, F>> {
    /// Guards each call with the breaker of `key(&request)` in `registry`. The key is built on
    /// every call: use a cheap one (`&'static str`, `Arc<str>`, a small enum) to keep the hot
    /// path free of allocation.
    pub fn keyed(registry: BreakerRegistry<K>, key: F, classifier: C) -> Self {
        BreakerLayer {
            select: Keyed { registry, key },
            classifier,
        }
    }
}

impl<S, C: Clone, P: Clone> Layer<S> for BreakerLayer<C, P> {
    type Service = Breaker<S, C, P>;

    fn layer(&self, inner: S) -> Self::Service {
        Breaker {
            inner,
            select: self.select.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service guarded by a circuit breaker. Built by [`BreakerLayer`].
///
/// `poll_ready` is the inner service's readiness: an open circuit fails the *call* (the
/// response future resolves at once with [`CircuitOpen`]), because a `poll_ready` error means
/// "this service is gone for good" to Tower's balancers and buffers.
#[derive(Clone, Debug)]
pub struct Breaker<S, C, P = BreakerHandle> {
    inner: S,
    select: P,
    classifier: C,
}

impl<S, C, P> Breaker<S, C, P> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Consumes the breaker, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, P, Req> Service<Req> for Breaker<S, C, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
    P: SelectBreaker<Req>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let now = Instant::now();
        let breaker = self.select.select(&request, now);
        match breaker.acquire_owned(now) {
            Ok(permit) => ResponseFuture {
                kind: Kind::Called {
                    future: self.inner.call(request),
                    permit: Some(permit),
                    classifier: self.classifier.clone(),
                    started: now,
                },
            },
            // Cloning the labels copies `Arc`s: the boxed error (at poll) is the only allocation.
            Err((open, breaker)) => ResponseFuture {
                kind: Kind::Open {
                    error: CircuitOpen::new(open.retry_in, breaker.labels().clone()),
                },
            },
        }
    }
}

pin_project! {
    /// The response future of [`Breaker`].
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F, C>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, C> {
        Called {
            #[pin]
            future: F,
            permit: Option<BreakerPermit>,
            classifier: C,
            started: Instant,
        },
        Open {
            error: CircuitOpen,
        },
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("breaker::ResponseFuture")
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called {
                future,
                permit,
                classifier,
                started,
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                let now = Instant::now();
                let outcome = match &result {
                    Ok(response) => classifier.classify(Ok(response)),
                    Err(error) => classifier.classify(Err(&**error as &(dyn Error + 'static))),
                };
                if let Some(permit) = permit.take() {
                    permit.record(outcome, now.saturating_duration_since(*started), now);
                }
                Poll::Ready(result)
            }
            KindProj::Open { error } => {
                // Polled again after completion, it fails again, without the labels.
                let unlabelled = CircuitOpen::new(error.retry_in, Labels::none());
                Poll::Ready(Err(Box::new(std::mem::replace(error, unlabelled))))
            }
        }
    }
}
