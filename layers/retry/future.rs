//! The retry layer's response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::layer::Shared;
use super::{Decision, RetryState};
use crate::deadline::Deadline;
use crate::{BoxError, Classify};

pin_project! {
    /// The future returned by [`Retry`](super::Retry): drives attempts, waits and readiness
    /// checks until the call succeeds or the policy stops it.
    pub struct ResponseFuture<S, C, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        request: Req,
        shared: Arc<Shared<C>>,
        retry: RetryState,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Called { #[pin] future: F },
        Waiting { #[pin] sleep: Sleep },
        Readying,
    }
}

impl<S, C, Req> ResponseFuture<S, C, Req>
where
    S: Service<Req>,
{
    pub(crate) fn new(
        future: S::Future,
        service: S,
        request: Req,
        shared: Arc<Shared<C>>,
        retry: RetryState,
    ) -> Self {
        ResponseFuture {
            state: State::Called { future },
            service,
            request,
            shared,
            retry,
        }
    }
}

impl<S, C, Req> Future for ResponseFuture<S, C, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response>,
    Req: Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let deadline = this.retry.deadline();
        loop {
            match this.state.as_mut().project() {
                StateProj::Called { future } => {
                    let shared = &**this.shared;
                    let polled = Deadline::scope(deadline, || future.poll(cx));
                    let (outcome, result) = match ready!(polled) {
                        Ok(response) => {
                            let outcome = shared.classifier.classify(Ok(&response));
                            (outcome, Ok(response))
                        }
                        Err(error) => {
                            let error: BoxError = error.into();
                            let outcome = shared.classifier.classify(Err(&*error));
                            (outcome, Err(error))
                        }
                    };
                    shared.metrics.attempt(&outcome);
                    if outcome.is_success() {
                        this.retry.succeeded();
                        return Poll::Ready(finish(shared, this.retry, result));
                    }
                    let now = Instant::now();
                    match shared.policy.decide(this.retry, &outcome, now) {
                        Decision::Retry(delay) => {
                            shared.metrics.retry(&outcome, this.retry, delay);
                            drop(result);
                            this.state.set(State::Waiting {
                                sleep: tokio::time::sleep_until(now + delay),
                            });
                        }
                        Decision::Stop(reason) => {
                            shared.metrics.stop(&outcome, this.retry, reason);
                            let result = result.map_err(|source| {
                                super::stopped_error(this.retry, outcome, reason, source)
                            });
                            return Poll::Ready(finish(shared, this.retry, result));
                        }
                    }
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    ready!(this.service.poll_ready(cx)).map_err(Into::into)?;
                    let (service, request) = (&mut *this.service, &*this.request);
                    let future = Deadline::scope(deadline, || service.call(request.clone()));
                    this.state.set(State::Called { future });
                }
            }
        }
    }
}

/// Hands the retry record to the classifier for responses that took more than one attempt.
fn finish<C, Res>(
    shared: &Shared<C>,
    retry: &RetryState,
    mut result: Result<Res, BoxError>,
) -> Result<Res, BoxError>
where
    C: Classify<Res>,
{
    if retry.attempts() > 1 {
        if let Ok(response) = &mut result {
            shared.classifier.record_retries(response, retry.info());
        }
    }
    result
}

impl<S, C, Req> std::fmt::Debug for ResponseFuture<S, C, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.retry.attempts())
            .finish()
    }
}
