//! The stack's response future: the pinned state machine of one call (the admission timer, the
//! client's readiness, the attempt and its timeout, the retry sleep); what each state does
//! next is decided by the call's [`Driver`] (`driver.rs`), through the
//! [lifecycle core](crate::lifecycle).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;
use tracing::Span;

use super::builder::{RewriteFor, TargetQuota, TargetSlots};
use super::driver::{Driver, Step};
use super::service::{Costs, Shared};
use crate::admission::Grant;
use crate::deadline::Deadline;
use crate::fallback::{Annotate, HttpExtension};
use crate::lifecycle::Call;
use crate::{BoxError, Classify};

pin_project! {
    /// The future of [`Stack`](super::Stack): one call, through its attempts.
    pub struct ResponseFuture<S, T, C, A, F, Req>
    where
        S: Service<Req>,
        A: TargetSlots,
    {
        driver: Driver<S, T, C, A, F, Req>,
        #[pin]
        state: State<S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut> {
        /// Choose the next attempt's target.
        Begin,
        /// Wait for the quota's grant.
        Admitting { #[pin] sleep: Sleep },
        /// Ready the target's client.
        Readying,
        /// The attempt is in flight, abandoned at its timeout if it has one.
        Calling { #[pin] future: Fut, #[pin] timeout: Option<Sleep> },
        /// Wait before retrying.
        Sleeping { #[pin] sleep: Sleep },
        /// The answer was returned.
        Done,
    }
}

impl<S, T, C, A, F, Req> ResponseFuture<S, T, C, A, F, Req>
where
    S: Service<Req>,
    A: TargetSlots,
{
    pub(crate) fn new(
        shared: Arc<Shared<S, T, C, A, F>>,
        original: Req,
        cost: Costs,
        call: Call,
        now: Instant,
        span: Span,
    ) -> Self {
        ResponseFuture {
            driver: Driver::new(shared, original, cost, call, now, span),
            state: State::Begin,
        }
    }
}

impl<S, T, C, A, F, Req> fmt::Debug for ResponseFuture<S, T, C, A, F, Req>
where
    S: Service<Req>,
    A: TargetSlots,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("stack::ResponseFuture")
            .field("attempts", &self.driver.call.retry().attempts())
            .finish_non_exhaustive()
    }
}

impl<S, T, C, A, F, Req> Future for ResponseFuture<S, T, C, A, F, Req>
where
    Req: Clone,
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    T: PartialEq,
    C: Classify<S::Response>,
    A: TargetQuota<Req, S::Response>,
    F: RewriteFor<Req, T>,
    HttpExtension: Annotate<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let driver = this.driver;
        // Entered while the future is polled (a clone: the driver is borrowed mutably below;
        // cloning `Span::none()` is a copy).
        let call_span = driver.span.clone();
        let _call = call_span.enter();
        loop {
            let step = match this.state.as_mut().project() {
                StateProj::Begin => {
                    let now = driver.clock.take().unwrap_or_else(Instant::now);
                    driver.begin(now)
                }
                StateProj::Admitting { mut sleep } => {
                    let Some(reservation) = driver.reservation() else {
                        this.state.set(State::Readying);
                        continue;
                    };
                    // The granted instant, or earlier when the store says the call may now
                    // be admitted (a shared store whose budget arrived from the server).
                    if sleep.as_mut().poll(cx).is_pending() {
                        ready!(reservation.poll_wake(cx));
                    }
                    let now = Instant::now();
                    match reservation.confirm(now) {
                        Ok(Grant::At(at)) => {
                            // A higher-priority call took the room: wait again, same timer.
                            sleep.reset(at);
                            continue;
                        }
                        Ok(Grant::Now) => {
                            driver.waited(now);
                            driver.granted(now)
                        }
                        Err(rejected) => driver.rejected_waiting(rejected, now),
                    }
                }
                StateProj::Readying => match driver.poll_ready(cx) {
                    Poll::Pending => {
                        driver.fresh = None;
                        return Poll::Pending;
                    }
                    Poll::Ready(Ok(future)) => {
                        this.state.set(State::Calling {
                            future,
                            timeout: None,
                        });
                        continue;
                    }
                    Poll::Ready(Err(step)) => step,
                },
                StateProj::Calling {
                    future,
                    mut timeout,
                } => {
                    let deadline = driver.call.deadline();
                    let polled = {
                        let _attempt = driver.attempt_span.enter();
                        Deadline::scope(deadline, || future.poll(cx))
                    };
                    match polled {
                        Poll::Ready(result) => driver.answered(result.map_err(Into::into)),
                        Poll::Pending => {
                            driver.fresh = None;
                            // The timer is set the first time the client is not ready at once,
                            // so an answer that is (a cache, a test double) never arms one.
                            if timeout.is_none() {
                                if let Some(at) = driver.timeout() {
                                    timeout.set(Some(tokio::time::sleep_until(at)));
                                }
                            }
                            let expired =
                                timeout.as_pin_mut().is_some_and(|s| s.poll(cx).is_ready());
                            if !expired {
                                return Poll::Pending;
                            }
                            driver.timed_out()
                        }
                    }
                }
                StateProj::Sleeping { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Begin);
                    continue;
                }
                StateProj::Done => {
                    return Poll::Ready(
                        Err("stack response future polled after completion".into()),
                    );
                }
            };
            match step {
                Step::Admit(at) => this.state.set(State::Admitting {
                    sleep: tokio::time::sleep_until(at),
                }),
                Step::Ready => this.state.set(State::Readying),
                Step::Sleep(at) => this.state.set(State::Sleeping {
                    sleep: tokio::time::sleep_until(at),
                }),
                Step::Finish(result) => {
                    this.state.set(State::Done);
                    return Poll::Ready(result);
                }
            }
        }
    }
}
