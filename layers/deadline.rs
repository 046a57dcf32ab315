//! One wait budget per call: a [`Deadline`] that the retry layer, the fallback router's
//! headroom check and admission all spend from, instead of three waits configured apart.
//!
//! A call's deadline comes from, first to last:
//!
//! 1. the caller: a [`Deadline`] in an `http::Request`'s extensions (read by
//!    [`DeadlineLayer`]), or [`within`] around the call, for any request type;
//! 2. the stack's default for its priority ([`StackBuilder::deadline`](crate::stack::StackBuilder::deadline),
//!    from the [profile](crate::stack::Profile::deadline)), or a [`RetryPolicy`](crate::retry::RetryPolicy)'s
//!    deadline;
//! 3. the call's [priority's default](crate::admission::Priority::default_wait), where
//!    admission is used on its own.
//!
//! The layers hand the deadline inwards through a scope: while a layer polls the layers inside
//! it, [`Deadline::current`] answers the call's deadline. The scope is a thread-local set for
//! the duration of each poll (nothing is allocated, nothing outlives the poll), so it reaches
//! every layer the call's future polls, whatever the request type; work moved to another task
//! (a `tower::buffer::Buffer` worker) does not see it.
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceExt, service_fn};
//! use tower_headroom::deadline::{Deadline, within};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! let service = service_fn(|_: ()| async {
//!     // Any layer inside sees the caller's deadline.
//!     Ok::<_, tower_headroom::BoxError>(Deadline::current())
//! });
//! let deadline = Deadline::after(Duration::from_secs(5));
//! assert_eq!(within(deadline, service.oneshot(())).await?, Some(deadline));
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
//! ```

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

/// The instant by which a call must have its answer or give up: no admission wait, router wait
/// or retry may run past it.
///
/// Put one in an `http::Request`'s extensions for [`DeadlineLayer`] to read, or run the call
/// [`within`] it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

thread_local! {
    static CURRENT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Restores the scope that was current before a [`Deadline::scope`], even on unwind.
struct Restore(Option<Instant>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

impl Deadline {
    /// A deadline at `instant`.
    pub const fn at(instant: Instant) -> Self {
        Deadline(instant)
    }

    /// A deadline `budget` from now (saturating far in the future).
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        Deadline(
            now.checked_add(budget)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
        )
    }

    /// `budget` from `now` (saturating).
    pub fn from_now(now: Instant, budget: Duration) -> Self {
        Deadline(
            now.checked_add(budget)
                .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600)),
        )
    }

    /// The instant.
    pub const fn instant(self) -> Instant {
        self.0
    }

    /// The time left at `now` (zero once passed).
    pub fn remaining(self, now: Instant) -> Duration {
        self.0.saturating_duration_since(now)
    }

    /// The deadline of the call being polled, if a layer outside (or [`within`]) set one.
    #[inline]
    pub fn current() -> Option<Deadline> {
        CURRENT.with(Cell::get).map(Deadline)
    }

    /// Runs `f` with `deadline` as the [current](Deadline::current) one (`None` leaves the
    /// scope as it is).
    #[inline]
    pub(crate) fn scope<R>(deadline: Option<Deadline>, f: impl FnOnce() -> R) -> R {
        match deadline {
            None => f(),
            Some(Deadline(at)) => {
                let _restore = Restore(CURRENT.with(|c| c.replace(Some(at))));
                f()
            }
        }
    }
}

/// Runs `future` with `deadline` as the [current](Deadline::current) one for every layer it
/// polls.
pub fn within<F: Future>(deadline: Deadline, future: F) -> Within<F> {
    Within {
        inner: future,
        deadline: Some(deadline),
    }
}

pin_project! {
    /// The future of [`within`], and of [`SetDeadline`].
    #[derive(Debug)]
    pub struct Within<F> {
        #[pin]
        inner: F,
        deadline: Option<Deadline>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        Deadline::scope(*this.deadline, || this.inner.poll(cx))
    }
}

/// Gives each `http::Request` a deadline: the [`Deadline`] in its extensions, else the one in
/// scope, else `default` from the call's start (if set), and runs the call within it.
///
/// ```
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_headroom::deadline::{Deadline, DeadlineLayer};
///
/// # async fn run() -> Result<(), tower_headroom::BoxError> {
/// let service = ServiceBuilder::new()
///     .layer(DeadlineLayer::new().budget(Duration::from_secs(30)))
///     .service_fn(|_: http::Request<()>| async {
///         Ok::<_, tower_headroom::BoxError>(Deadline::current())
///     });
/// let mut request = http::Request::new(());
/// let deadline = Deadline::after(Duration::from_secs(2));
/// request.extensions_mut().insert(deadline);
/// assert_eq!(service.oneshot(request).await?, Some(deadline));
/// # Ok(()) }
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadlineLayer {
    default: Option<Duration>,
}

impl DeadlineLayer {
    /// Reads requests' deadlines; requests without one keep the one in scope, if any.
    pub const fn new() -> Self {
        DeadlineLayer { default: None }
    }

    /// Requests without a deadline (and with none in scope) get `budget` from their start.
    pub const fn budget(mut self, budget: Duration) -> Self {
        self.default = Some(budget);
        self
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = SetDeadline<S>;

    fn layer(&self, inner: S) -> SetDeadline<S> {
        SetDeadline {
            inner,
            default: self.default,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct SetDeadline<S> {
    inner: S,
    default: Option<Duration>,
}

impl<S, B> Service<http::Request<B>> for SetDeadline<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Within<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let deadline = request
            .extensions()
            .get::<Deadline>()
            .copied()
            .or_else(Deadline::current)
            .or_else(|| self.default.map(Deadline::after));
        let inner = Deadline::scope(deadline, || self.inner.call(request));
        Within { inner, deadline }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        let t = Instant::now();
        let a = Deadline::at(t + Duration::from_secs(1));
        let b = Deadline::at(t + Duration::from_secs(2));
        assert_eq!(Deadline::current(), None);
        Deadline::scope(Some(a), || {
            assert_eq!(Deadline::current(), Some(a));
            Deadline::scope(Some(b), || assert_eq!(Deadline::current(), Some(b)));
            Deadline::scope(None, || assert_eq!(Deadline::current(), Some(a)));
            assert_eq!(Deadline::current(), Some(a));
        });
        assert_eq!(Deadline::current(), None);
        let _ = std::panic::catch_unwind(|| Deadline::scope(Some(a), || panic!("boom")));
        assert_eq!(Deadline::current(), None, "restored on unwind");
    }

    #[test]
    fn remaining_saturates() {
        let t = Instant::now();
        let d = Deadline::from_now(t, Duration::from_secs(3));
        assert_eq!(d.remaining(t), Duration::from_secs(3));
        assert_eq!(d.remaining(t + Duration::from_secs(9)), Duration::ZERO);
        let far = Deadline::from_now(t, Duration::MAX);
        assert!(far.instant() > t);
    }
}
