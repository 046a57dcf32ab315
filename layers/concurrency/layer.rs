//! The Tower adapter: `ConcurrencyLimitLayer`, `ConcurrencyLimit<S>`, its `ResponseFuture` and
//! `ConcurrencyLimited`.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::limit::{AdaptiveLimit, ConcurrencyFull, ConcurrencyPermit};
use crate::observe::Labels;
use crate::{BoxError, Classify};

/// The error a [`ConcurrencyLimit`] returns without calling the inner service: the target's
/// limit on calls in flight is full.
///
/// Classified by [`classify_error`](crate::classify::classify_error) as a local refusal
/// ([`Outcome::local`](crate::Outcome#structfield.local)) of class
/// [`Unavailable`](crate::OutcomeKind::Unavailable) with `retry_in` as its delay. Carries
/// only numbers and the user-chosen labels of the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConcurrencyLimited {
    /// The calls allowed in flight.
    pub limit: u32,
    /// The calls in flight when this one was refused.
    pub in_flight: u32,
    /// A hint of when a slot may free (see [`ConcurrencyFull::retry_in`]).
    pub retry_in: Duration,
    labels: Labels,
}

impl ConcurrencyLimited {
    /// The error for a refusal by the limit reporting under `labels` (for adapters that call
    /// [`AdaptiveLimit::try_acquire`] themselves).
    pub fn new(full: ConcurrencyFull, labels: Labels) -> Self {
        ConcurrencyLimited {
            limit: full.limit,
            in_flight: full.in_flight,
            retry_in: full.retry_in,
            labels,
        }
    }

    /// The labels of the limit that refused the call.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

impl fmt::Display for ConcurrencyLimited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("concurrency limit reached")?;
        if self.labels != Labels::none() {
            write!(f, " ({})", self.labels)?;
        }
        write!(
            f,
            ": {} calls in flight, limit {}; retry in {:?}",
            self.in_flight, self.limit, self.retry_in
        )
    }
}

impl Error for ConcurrencyLimited {}

/// Applies an [`AdaptiveLimit`] to a service; see the [module docs](super).
#[derive(Clone, Debug)]
pub struct ConcurrencyLimitLayer<C> {
    limit: AdaptiveLimit,
    classifier: C,
}

impl<C> ConcurrencyLimitLayer<C> {
    /// Limits every call with `limit` (shared by all clones), learning from results classified
    /// by `classifier`.
    pub fn new(limit: AdaptiveLimit, classifier: C) -> Self {
        ConcurrencyLimitLayer { limit, classifier }
    }

    /// The limit the layer applies.
    pub fn limit(&self) -> &AdaptiveLimit {
        &self.limit
    }
}

impl<S, C: Clone> Layer<S> for ConcurrencyLimitLayer<C> {
    type Service = ConcurrencyLimit<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            limit: self.limit.clone(),
            classifier: self.classifier.clone(),
        }
    }
}

/// A service whose calls in flight are held to an [`AdaptiveLimit`]. Built by
/// [`ConcurrencyLimitLayer`].
///
/// `poll_ready` is the inner service's readiness and holds no slot: the slot is taken in
/// `call` and freed when the response future completes or is dropped. A call over the limit
/// is not queued: its future resolves at once with [`ConcurrencyLimited`], and the inner
/// service is not called (the readiness it reserved, if any, is kept for the next call).
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S, C> {
    inner: S,
    limit: AdaptiveLimit,
    classifier: C,
}

impl<S, C> ConcurrencyLimit<S, C> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the layer's service, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The limit applied.
    pub fn limit(&self) -> &AdaptiveLimit {
        &self.limit
    }
}

impl<S, C, Req> Service<Req> for ConcurrencyLimit<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let kind = match self.limit.try_acquire(Instant::now()) {
            Ok(permit) => Kind::Called {
                future: self.inner.call(request),
                permit: Some(permit),
                classifier: self.classifier.clone(),
            },
            // Cloning the labels copies `Arc`s: the boxed error (at poll) is the only allocation.
            Err(full) => Kind::Limited {
                error: ConcurrencyLimited::new(full, self.limit.labels().clone()),
            },
        };
        ResponseFuture { kind }
    }
}

pin_project! {
    /// The response future of [`ConcurrencyLimit`]: holds the call's slot until it completes
    /// or is dropped.
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
            permit: Option<ConcurrencyPermit>,
            classifier: C,
        },
        Limited {
            error: ConcurrencyLimited,
        },
    }
}

impl<F, C> fmt::Debug for ResponseFuture<F, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("concurrency::ResponseFuture")
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
            } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let Some(permit) = permit.take() {
                    let outcome = match &result {
                        Ok(response) => classifier.classify(Ok(response)),
                        Err(error) => classifier.classify(Err(&**error as &(dyn Error + 'static))),
                    };
                    let now = Instant::now();
                    let latency = now.saturating_duration_since(permit.started());
                    permit.record(&outcome, latency, now);
                }
                Poll::Ready(result)
            }
            // Polled again after completion, it fails again.
            KindProj::Limited { error } => Poll::Ready(Err(Box::new(error.clone()))),
        }
    }
}
