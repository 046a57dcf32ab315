//! The router's response future: one call through its plan's targets.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use super::layer::{Annotate, Dispatch, NoTargetAvailable, Router, Shared, report_served};
use super::route::{Choice, Exhaustion, Headroom, Plan};
use crate::breaker::BreakerPermit;
use crate::lifecycle::{Routing, move_on};
use crate::{BoxError, Classify, Outcome};

/// The state for a call to `target`: a copy of the request if the plan may still move after
/// it, else the original itself.
///
/// `original` is always there: it is taken only for a call after which the plan may not move
/// (`!may_move`), and [`Route::after`] answers [`After::Move`] only when it may, so no call is
/// prepared after the original was taken.
fn prepare<Req, D, T, C, H, A>(
    shared: &Shared<D, T, C, H, A>,
    plan: &Plan,
    original: &mut Option<Req>,
    target: usize,
    permit: Option<BreakerPermit>,
    chosen: Instant,
) -> StateOf<Req, D, T>
where
    Req: Clone,
    D: Dispatch<Req, T>,
{
    let original_kept = "the original request is kept while the plan may move";
    let mut request = if shared.router.route.may_move(plan) {
        original.as_ref().expect(original_kept).clone()
    } else {
        original.take().expect(original_kept)
    };
    let key = shared.router.route.targets()[target].key();
    let service = shared.dispatch.service(target, key, &mut request);
    State::Ready {
        service,
        request: Some(request),
        target,
        permit,
        chosen,
    }
}

/// The future's state for a dispatcher `D`.
type StateOf<Req, D, T> = State<
    Req,
    <D as Dispatch<Req, T>>::Service,
    <<D as Dispatch<Req, T>>::Service as Service<Req>>::Future,
>;

pin_project! {
    /// The response future of [`Fallback`].
    pub struct ResponseFuture<Req, D, T, C, H, A>
    where
        D: Dispatch<Req, T>,
    {
        shared: Arc<Shared<D, T, C, H, A>>,
        original: Option<Req>,
        plan: Plan,
        #[pin]
        state: State<Req, D::Service, <D::Service as Service<Req>>::Future>,
    }
}

impl<Req, D, T, C, H, A> fmt::Debug for ResponseFuture<Req, D, T, C, H, A>
where
    D: Dispatch<Req, T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("fallback::ResponseFuture")
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl<Req, D, T, C, H, A> ResponseFuture<Req, D, T, C, H, A>
where
    Req: Clone,
    D: Dispatch<Req, T>,
    H: Headroom<T>,
{
    /// A call of `request` through the router: its first target chosen now.
    #[inline]
    pub(super) fn new(shared: Arc<Shared<D, T, C, H, A>>, request: Req) -> Self {
        let mut plan = shared.router.route.plan();
        let mut original = Some(request);
        let now = Instant::now();
        let state = match shared.router.choose(&mut plan, now) {
            Choice::Call { target, permit, .. } => {
                prepare(&shared, &plan, &mut original, target, permit, now)
            }
            Choice::Exhausted { retry_in, cause } => State::NoTarget { retry_in, cause },
        };
        ResponseFuture {
            shared,
            original,
            plan,
            state,
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Req, S, F> {
        Ready {
            service: S,
            request: Option<Req>,
            target: usize,
            permit: Option<BreakerPermit>,
            // When the target was chosen: a call's duration (for the breaker's slow-call rate)
            // counts from here, readiness included, which saves a clock read per call.
            chosen: Instant,
        },
        Calling {
            #[pin]
            future: F,
            target: usize,
            permit: Option<BreakerPermit>,
            started: Instant,
        },
        NoTarget {
            retry_in: Option<Duration>,
            cause: Exhaustion,
        },
    }
}

impl<Req, D, T, C, H, A> Future for ResponseFuture<Req, D, T, C, H, A>
where
    Req: Clone,
    D: Dispatch<Req, T>,
    <D::Service as Service<Req>>::Error: Into<BoxError>,
    C: Classify<<D::Service as Service<Req>>::Response>,
    H: Headroom<T>,
    A: Annotate<<D::Service as Service<Req>>::Response>,
{
    type Output = Result<<D::Service as Service<Req>>::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let (result, target, permit, started) = match this.state.as_mut().project() {
                StateProj::Ready {
                    service,
                    request,
                    target,
                    permit,
                    chosen,
                } => match ready!(service.poll_ready(cx)) {
                    Ok(()) => {
                        let Some(request) = request.take() else {
                            return Poll::Ready(Err(polled_after_completion()));
                        };
                        let future = service.call(request);
                        let (target, permit, started) = (*target, permit.take(), *chosen);
                        this.state.set(State::Calling {
                            future,
                            target,
                            permit,
                            started,
                        });
                        continue;
                    }
                    // A target that cannot get ready is a failed call to it.
                    Err(error) => (Err(error.into()), *target, permit.take(), Instant::now()),
                },
                StateProj::Calling {
                    future,
                    target,
                    permit,
                    started,
                } => {
                    let result = ready!(future.poll(cx)).map_err(Into::into);
                    (result, *target, permit.take(), *started)
                }
                StateProj::NoTarget { retry_in, cause } => {
                    return Poll::Ready(Err(Box::new(NoTargetAvailable {
                        retry_in: *retry_in,
                        cause: *cause,
                    })));
                }
            };

            let router = &*this.shared.router;
            let now = Instant::now();
            let outcome: Outcome = match &result {
                Ok(response) => router.classifier.classify(Ok(response)),
                Err(error) => router
                    .classifier
                    .classify(Err(&**error as &(dyn Error + 'static))),
            };
            if let Some(permit) = permit {
                crate::lifecycle::record(permit, &outcome, started, now);
            }
            let routing = Routing {
                route: &router.route,
                breakers: &router.breakers,
                headroom: &router.headroom,
            };
            let Some((to, permit)) = move_on(&routing, this.plan, target, &outcome, now) else {
                return Poll::Ready(finish(router, this.plan, target, outcome, result));
            };
            let next = prepare(this.shared, this.plan, this.original, to, permit, now);
            let targets = router.route.targets();
            tracing::debug!(
                target_name = targets[target].name().as_ref(),
                to = targets[to].name().as_ref(),
                class = outcome.kind.as_str(),
                "fallback moving to the next target"
            );
            this.state.set(next);
        }
    }
}

fn finish<T, C, H, A, Res>(
    router: &Router<T, C, H, A>,
    plan: &Plan,
    target: usize,
    outcome: Outcome,
    mut result: Result<Res, BoxError>,
) -> Result<Res, BoxError>
where
    A: Annotate<Res>,
{
    if let Ok(response) = &mut result {
        let hops = plan.calls().saturating_sub(1);
        report_served(
            &router.route,
            &router.served[target],
            &router.annotate,
            response,
            target,
            hops,
            &outcome,
        );
    }
    result
}

fn polled_after_completion() -> BoxError {
    "fallback response future polled after completion".into()
}
