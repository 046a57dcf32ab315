//! A `reqwest::Client` behind the layers (feature `reqwest`): [`ReqwestService`] is a
//! `tower::Service` of `http::Request`s answering `http::Response<reqwest::Body>`, so the
//! retry layer, the stack and every other layer take it as they take hyper.
//!
//! Requests are `http::Request<B>` with a body the layers can clone for each attempt (`String`,
//! `Vec<u8>`, `bytes::Bytes`): a request whose body is a stream cannot be sent twice, so it is
//! sent through the `reqwest::Client` itself, without the retry layer, as tower's
//! `Policy::clone_request` would leave it. `reqwest`'s errors are classified by
//! [`classify_error`](crate::classify::classify_error): a connect error is `Transient`, a
//! timeout `Timeout`, hyper's incomplete message (the stale pooled-connection race)
//! `Transient`.
//!
//! Retries with the HTTP profile's policy, vendor error bodies read (feature `llm-http`):
//!
//! ```
//! # #[cfg(feature = "llm-http")] {
//! use tower::ServiceBuilder;
//! use tower_headroom::llm_http::ErrorBodyLayer;
//! use tower_headroom::reqwest::ReqwestService;
//! use tower_headroom::{HttpClassifier, Profile, RetryLayer};
//!
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(Profile::Http.retry().build()?, HttpClassifier::new()))
//!     .layer(ErrorBodyLayer::new())
//!     .service(ReqwestService::new(reqwest::Client::new()));
//! # let _ = client;
//! # }
//! # Ok::<(), tower_headroom::ConfigError>(())
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

/// `reqwest::Client` as a `tower::Service<http::Request<B>>`; see the [module docs](self).
///
/// Cheap to clone (a `reqwest::Client` is an `Arc`): clones share the connection pool.
#[derive(Clone, Debug, Default)]
pub struct ReqwestService {
    client: ::reqwest::Client,
}

impl ReqwestService {
    /// Sends requests through `client`.
    pub fn new(client: ::reqwest::Client) -> Self {
        ReqwestService { client }
    }

    /// The client the requests go through.
    pub fn client(&self) -> &::reqwest::Client {
        &self.client
    }
}

impl<B: Into<::reqwest::Body>> Service<http::Request<B>> for ReqwestService {
    type Response = http::Response<::reqwest::Body>;
    type Error = ::reqwest::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::<::reqwest::Request>::poll_ready(&mut self.client, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let state = match ::reqwest::Request::try_from(request) {
            Ok(request) => State::Sending {
                future: self.client.call(request),
            },
            // A request reqwest cannot send (a relative URI, say): its error, unsent.
            Err(error) => State::Invalid { error: Some(error) },
        };
        ResponseFuture { state }
    }
}

type Pending = <::reqwest::Client as Service<::reqwest::Request>>::Future;

pin_project! {
    /// The response future of [`ReqwestService`].
    pub struct ResponseFuture {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Sending { #[pin] future: Pending },
        Invalid { error: Option<::reqwest::Error> },
    }
}

impl std::fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<http::Response<::reqwest::Body>, ::reqwest::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sending { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(http::Response::from(response)))
            }
            StateProj::Invalid { error } => Poll::Ready(Err(error
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}
