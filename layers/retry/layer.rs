//! `RetryLayer` and the `Retry` service.

use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::future::ResponseFuture;
use super::{RetryMetrics, RetryPolicy};
use crate::deadline::Deadline;
use crate::observe::Labels;
use crate::{BoxError, Classify};

/// Retries failed calls of the wrapped service according to a [`RetryPolicy`], classifying
/// each attempt with a [`Classify`] implementation.
///
/// Clones share the policy, and with it the retry budget.
#[derive(Clone)]
pub struct RetryLayer<C> {
    policy: RetryPolicy,
    classifier: C,
    labels: Labels,
    deadline: Option<Duration>,
}

impl<C> RetryLayer<C> {
    /// A layer retrying by `policy`, with outcomes decided by `classifier`.
    pub fn new(policy: RetryPolicy, classifier: C) -> Self {
        RetryLayer {
            policy,
            classifier,
            labels: Labels::none(),
            deadline: None,
        }
    }

    /// The wait budget of a call that carries no [`Deadline`], instead of the policy's
    /// [`deadline`](RetryPolicy::deadline) (the stack sets its priority's default here).
    pub fn deadline(mut self, budget: Duration) -> Self {
        self.deadline = Some(budget);
        self
    }

    /// The labels the layer reports its metrics and events under.
    pub fn labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry {
            inner,
            shared: Arc::new(Shared {
                policy: self.policy.clone(),
                classifier: self.classifier.clone(),
                metrics: RetryMetrics::register(&self.labels),
                deadline: self.deadline,
            }),
        }
    }
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .field("labels", &self.labels)
            .field("deadline", &self.deadline)
            .finish()
    }
}

pub(crate) struct Shared<C> {
    pub(crate) policy: RetryPolicy,
    pub(crate) classifier: C,
    pub(crate) metrics: RetryMetrics,
    /// The budget of a call without a [`Deadline`], overriding the policy's.
    pub(crate) deadline: Option<Duration>,
}

/// The service built by [`RetryLayer`].
///
/// Requests must be `Clone`: each attempt sends a clone and the original is kept for the next,
/// as in tower's own `Retry`. The layer itself allocates nothing per call; cloning the request
/// may (an `http::Request` with headers does), so share large bodies (`Bytes`, `Arc`).
/// Readiness is checked again before every retry. Errors are [`BoxError`]s: the inner error
/// when no retry was attempted for a reason other than those below, otherwise
/// [`RetriesExhausted`](super::RetriesExhausted) or [`Fatal`](super::Fatal) with the inner error
/// as `source()`. An `Ok` response classified as a failure (an HTTP 429, say) is returned as it
/// is once the retries stop.
pub struct Retry<S, C> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S: Clone, C> Clone for Retry<S, C> {
    fn clone(&self) -> Self {
        Retry {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, C> Retry<S, C> {
    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.shared.policy
    }
}

impl<S: fmt::Debug, C> fmt::Debug for Retry<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retry")
            .field("inner", &self.inner)
            .field("policy", &self.shared.policy)
            .finish()
    }
}

impl<S, C, Req> Service<Req> for Retry<S, C>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    Req: Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, C, Req>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The service that was driven to readiness serves this call; the clone stays behind
        // for the next one (see `tower::Service`'s docs on cloning in `call`).
        let clone = self.inner.clone();
        let mut service = mem::replace(&mut self.inner, clone);
        let now = Instant::now();
        let policy = &self.shared.policy;
        let state = match (Deadline::current(), self.shared.deadline) {
            (None, Some(budget)) => policy.start_until(now, Some(Deadline::from_now(now, budget))),
            _ => policy.start(now),
        };
        // The layers inside see the call's deadline while the call is made and polled.
        let future = Deadline::scope(state.deadline(), || service.call(request.clone()));
        ResponseFuture::new(future, service, request, Arc::clone(&self.shared), state)
    }
}
