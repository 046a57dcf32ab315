//! [`TowerMiddleware`]: a Tower stack as a `reqwest-middleware` `Middleware`.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Extensions;
use reqwest_middleware::{Middleware, Next};
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt;
use tower_service::Service;

use crate::BoxError;

/// One attempt the stack hands to the middleware: its request, and where the answer goes.
struct Job {
    request: ::reqwest::Request,
    answer: oneshot::Sender<Result<::reqwest::Response, ::reqwest_middleware::Error>>,
}

/// Where [`NextService`] sends a call's attempts: put in each request's extensions by
/// [`TowerMiddleware`].
#[derive(Clone)]
struct Dispatch(mpsc::Sender<Job>);

/// The innermost service of a stack run by [`TowerMiddleware`]: sends each attempt through the
/// rest of the middleware chain (the `Next` of the call it belongs to) and answers with what
/// came back, as an `http::Response<reqwest::Body>`.
///
/// Called outside a [`TowerMiddleware`] (no call to send through), it fails with
/// [`NotInMiddleware`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NextService {
    _private: (),
}

impl NextService {
    /// The service; build your stack over it.
    pub const fn new() -> Self {
        NextService { _private: () }
    }
}

/// [`NextService`] was called outside a [`TowerMiddleware`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotInMiddleware;

impl std::fmt::Display for NotInMiddleware {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NextService called outside a TowerMiddleware")
    }
}

impl std::error::Error for NotInMiddleware {}

impl Service<http::Request<Bytes>> for NextService {
    type Response = http::Response<::reqwest::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Bytes>) -> Self::Future {
        let dispatch = request.extensions_mut().remove::<Dispatch>();
        Box::pin(async move {
            let Dispatch(jobs) = dispatch.ok_or(NotInMiddleware)?;
            let request = ::reqwest::Request::try_from(request)?;
            let (answer, answered) = oneshot::channel();
            jobs.send(Job { request, answer })
                .await
                .map_err(|_| NotInMiddleware)?;
            match answered.await.map_err(|_| NotInMiddleware)? {
                Ok(response) => Ok(http::Response::from(response)),
                Err(::reqwest_middleware::Error::Reqwest(error)) => Err(error.into()),
                Err(::reqwest_middleware::Error::Middleware(error)) => Err(error.into()),
            }
        })
    }
}

/// A Tower stack built over [`NextService`] as a `reqwest-middleware` `Middleware`.
///
/// A middleware gets the request and a `Next` that runs the rest of the chain; `Next` borrows
/// the chain, so it cannot be handed to a Tower service that outlives the call. The middleware
/// therefore runs the stack as a future of its own and serves its attempts: the stack's
/// innermost service, [`NextService`], sends each attempt's request back to the middleware
/// over a channel carried in the request, the middleware runs it through `next` and sends the
/// answer back. The stack decides everything — retries, their delays, the breakers, the quota,
/// the fallback targets, the attempt timeouts (an attempt it abandons is dropped here too) —
/// and the middleware only moves requests and answers. A request whose body cannot be cloned (a
/// stream) is sent through `next` once, untouched, as tower's `Policy::clone_request` leaves
/// such a request.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_headroom::reqwest::{NextService, TowerMiddleware};
/// use tower_headroom::{HttpClassifier, Profile, RetryLayer};
///
/// let stack = ServiceBuilder::new()
///     .layer(RetryLayer::new(Profile::Http.retry().build()?, HttpClassifier::new()))
///     .service(NextService::new());
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(TowerMiddleware::new(stack))
///     .build();
/// # let _ = client;
/// # Ok::<(), tower_headroom::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct TowerMiddleware<S> {
    stack: S,
}

impl<S> TowerMiddleware<S> {
    /// Runs each request through `stack`, a Tower stack over [`NextService`].
    pub fn new(stack: S) -> Self {
        TowerMiddleware { stack }
    }
}

/// The request as an `http::Request` with its body's bytes and its extensions (reqwest keeps
/// a request's own timeout there), or the request back when its body cannot be read twice (a
/// stream) or it does not convert.
// Both sides are a whole request, moved once per call: boxing the error side would only add
// an allocation to the pass-through path.
#[allow(clippy::result_large_err)]
fn buffered(request: ::reqwest::Request) -> Result<http::Request<Bytes>, ::reqwest::Request> {
    if request.body().is_some_and(|body| body.as_bytes().is_none()) {
        return Err(request);
    }
    let Some(copy) = request.try_clone() else {
        return Err(request);
    };
    let Ok(http) = http::Request::<::reqwest::Body>::try_from(copy) else {
        return Err(request);
    };
    let (parts, body) = http.into_parts();
    let bytes = body
        .as_bytes()
        .map(Bytes::copy_from_slice)
        .unwrap_or_default();
    Ok(http::Request::from_parts(parts, bytes))
}

#[async_trait::async_trait]
impl<S, B> Middleware for TowerMiddleware<S>
where
    S: Service<http::Request<Bytes>, Response = http::Response<B>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send,
    B: http_body::Body + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    async fn handle(
        &self,
        request: ::reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<::reqwest::Response> {
        let mut http = match buffered(request) {
            Ok(http) => http,
            Err(request) => return next.run(request, extensions).await,
        };
        let (jobs, mut queue) = mpsc::channel(1);
        http.extensions_mut().insert(Dispatch(jobs));
        let call = self.stack.clone().oneshot(http);
        tokio::pin!(call);
        let finished = |result: Result<http::Response<B>, BoxError>| match result {
            // A layer may have wrapped the body (`ErrorBodyLayer`); reqwest takes any body.
            Ok(response) => Ok(::reqwest::Response::from(
                response.map(::reqwest::Body::wrap),
            )),
            Err(error) => Err(into_middleware_error(error)),
        };
        loop {
            // The stack chooses, admits or waits; or it hands over an attempt.
            let Job {
                request,
                mut answer,
            } = tokio::select! {
                result = &mut call => return finished(result),
                Some(job) = queue.recv() => job,
            };
            // The attempt goes through the rest of the chain while the stack keeps its watch
            // (an attempt timeout drops the stack's side of the answer: the attempt is dropped).
            let sending = next.clone().run(request, &mut *extensions);
            let sent = tokio::select! {
                result = &mut call => return finished(result),
                response = sending => Some(response),
                () = answer.closed() => None,
            };
            if let Some(response) = sent {
                let _ = answer.send(response);
            }
        }
    }
}

/// The stack's error as the middleware's: reqwest's own error as it was, anything else (this
/// crate's errors, with the last answer's error as their source) as a middleware error.
fn into_middleware_error(error: BoxError) -> reqwest_middleware::Error {
    match error.downcast::<::reqwest::Error>() {
        Ok(error) => reqwest_middleware::Error::Reqwest(*error),
        Err(error) => reqwest_middleware::Error::Middleware(anyhow::Error::from_boxed(error)),
    }
}
