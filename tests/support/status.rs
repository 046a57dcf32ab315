//! Shared by the allocation tests of the layers that guard a call (the breaker, the
//! concurrency limit): a status code standing in for a response, its classifier, and one
//! call driven to completion synchronously.
//!
//! ```ignore
//! #[path = "support/status.rs"]
//! mod status;
//! ```

use std::error::Error;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use tower::Service;
use tower_headroom::{BoxError, Outcome, OutcomeKind};

/// 200 succeeds, any other status is unavailable, an error is transient.
pub fn classify(result: Result<&u16, &(dyn Error + 'static)>) -> Outcome {
    match result {
        Ok(200) => Outcome::SUCCESS,
        Ok(_) => Outcome::new(OutcomeKind::Unavailable),
        Err(_) => Outcome::new(OutcomeKind::Transient),
    }
}

/// `poll_ready`, `call` and one poll of a service whose inner future is ready at once.
pub fn call_once<S>(service: &mut S, status: u16) -> Result<u16, BoxError>
where
    S: Service<u16, Response = u16, Error = BoxError>,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut future = pin!(service.call(status));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => unreachable!("the inner future is ready"),
    }
}

/// A service answering each request's status at once.
pub fn echo() -> impl Service<u16, Response = u16, Error = std::io::Error> + Clone {
    tower::service_fn(|status: u16| std::future::ready(Ok::<_, std::io::Error>(status)))
}

/// Makes `calls` calls answered with `status` and returns the allocations they made (the
/// test binary must count them: `crate::support::Counting` as its global allocator).
pub fn allocations_answering<S>(service: &mut S, calls: usize, status: u16) -> usize
where
    S: Service<u16, Response = u16, Error = BoxError>,
{
    let ((), allocations) = crate::support::allocations(|| {
        for _ in 0..calls {
            assert_eq!(call_once(service, status).unwrap(), status);
        }
    });
    allocations
}
