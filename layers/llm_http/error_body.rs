//! [`ErrorBodyLayer`]: the first bytes of an error response read for the classifier.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::vendor::{MAX_ERROR_PREFIX, VendorError};

/// Reads the first bytes of an error response's body, so that
/// [`HttpClassifier`](crate::HttpClassifier) can tell what the vendor's JSON error says.
///
/// A classifier sees a response by reference and cannot read a streaming body. This layer sits
/// under the retry layer (or the [stack](crate::stack)): for a response with a status of 400 or
/// more it reads the body's frames until it holds [`MAX_ERROR_PREFIX`] bytes or the body ends,
/// parses them with [`VendorError::parse`], puts the class in the response's extensions, and
/// hands the response on with a body that replays what was read and then the rest — the
/// caller gets every byte, in order, as the server sent it. Successful responses pass through
/// untouched (the body is wrapped, nothing is read or allocated). Nothing read is logged or
/// kept beyond the response.
///
/// Reading the prefix waits for the server's error body; an attempt timeout outside this layer
/// (the stack's, or `tower::timeout`) bounds that wait like any other part of the attempt.
///
/// ```
/// # #[cfg(feature = "llm-http")] {
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_headroom::llm_http::{ErrorBodyLayer, VendorError};
/// use tower_headroom::{Classify, HttpClassifier, OutcomeKind};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let upstream = tower::service_fn(|_req: http::Request<String>| async {
///     let body = r#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#;
///     Ok::<_, std::convert::Infallible>(
///         http::Response::builder().status(429).body(body.to_string()).unwrap(),
///     )
/// });
/// let svc = ServiceBuilder::new().layer(ErrorBodyLayer::new()).service(upstream);
/// let response = svc.oneshot(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(response.extensions().get(), Some(&VendorError::BillingStop));
/// // A spent balance is not a rate limit: never retried.
/// assert_eq!(HttpClassifier::new().classify(Ok(&response)).kind, OutcomeKind::Fatal);
/// # });
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorBodyLayer {
    _private: (),
}

impl ErrorBodyLayer {
    /// A layer reading at most [`MAX_ERROR_PREFIX`] bytes of each error body.
    pub const fn new() -> Self {
        ErrorBodyLayer { _private: () }
    }
}

impl<S> Layer<S> for ErrorBodyLayer {
    type Service = ErrorBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ErrorBody { inner }
    }
}

/// The service of an [`ErrorBodyLayer`].
#[derive(Clone, Debug)]
pub struct ErrorBody<S> {
    inner: S,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for ErrorBody<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: Body<Data = Bytes> + Unpin,
{
    type Response = Response<PrefixedBody<ResB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        ResponseFuture {
            state: State::Calling {
                future: self.inner.call(request),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ErrorBody`].
    pub struct ResponseFuture<F, B: Body> {
        #[pin]
        state: State<F, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, B: Body> {
        Calling { #[pin] future: F },
        Reading { head: Option<http::response::Parts>, body: PrefixedBody<B>, read: usize },
        Done,
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body<Data = Bytes> + Unpin,
{
    type Output = Result<Response<PrefixedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let response = ready!(future.poll(cx))?;
                    let (head, inner) = response.into_parts();
                    let body = PrefixedBody::new(inner);
                    if head.status.as_u16() < 400 {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(Response::from_parts(head, body)));
                    }
                    this.state.set(State::Reading {
                        head: Some(head),
                        body,
                        read: 0,
                    });
                }
                StateProj::Reading { head, body, read } => {
                    while *read < MAX_ERROR_PREFIX && !body.inner_done {
                        let Some(inner) = body.inner.as_mut() else {
                            break;
                        };
                        match ready!(Pin::new(inner).poll_frame(cx)) {
                            Some(Ok(frame)) => {
                                if let Some(data) = frame.data_ref() {
                                    *read += data.len();
                                }
                                body.prefix.push_back(frame);
                            }
                            Some(Err(error)) => {
                                // Replayed to the caller after the frames read before it.
                                body.error = Some(error);
                                body.inner_done = true;
                            }
                            None => body.inner_done = true,
                        }
                    }
                    let mut head = head.take().expect("the head is taken once");
                    if let Some(class) = VendorError::parse(&body.data_prefix()) {
                        head.extensions.insert(class);
                    }
                    let body = std::mem::replace(body, PrefixedBody::finished());
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(Response::from_parts(head, body)));
                }
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}

/// A response body that first replays the frames [`ErrorBody`] read, then the rest of the
/// original body. For a successful response it is the original body.
pub struct PrefixedBody<B: Body> {
    prefix: VecDeque<Frame<Bytes>>,
    error: Option<B::Error>,
    inner: Option<B>,
    inner_done: bool,
}

// No field is pinned structurally: the body is moved about freely, as its parts are (the
// inner body is `Unpin`, and the stored error is only ever moved out).
impl<B: Body + Unpin> Unpin for PrefixedBody<B> {}

impl<B: Body> std::fmt::Debug for PrefixedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrefixedBody")
            .field("frames_read", &self.prefix.len())
            .finish_non_exhaustive()
    }
}

impl<B: Body> PrefixedBody<B> {
    fn new(inner: B) -> Self {
        PrefixedBody {
            prefix: VecDeque::new(),
            error: None,
            inner: Some(inner),
            inner_done: false,
        }
    }

    /// A placeholder left in the future once the body is handed out.
    fn finished() -> Self {
        PrefixedBody {
            prefix: VecDeque::new(),
            error: None,
            inner: None,
            inner_done: true,
        }
    }

    /// The data read so far, at most [`MAX_ERROR_PREFIX`] bytes, joined.
    fn data_prefix(&self) -> Bytes {
        let mut joined = BytesMut::new();
        for data in self.prefix.iter().filter_map(Frame::data_ref) {
            let room = MAX_ERROR_PREFIX - joined.len();
            joined.extend_from_slice(&data.chunk()[..data.len().min(room)]);
            if joined.len() == MAX_ERROR_PREFIX {
                break;
            }
        }
        joined.freeze()
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for PrefixedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(frame) = self.prefix.pop_front() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if let Some(error) = self.error.take() {
            return Poll::Ready(Some(Err(error)));
        }
        if self.inner_done {
            return Poll::Ready(None);
        }
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty()
            && self.error.is_none()
            && (self.inner_done || self.inner.as_ref().is_none_or(Body::is_end_stream))
    }

    fn size_hint(&self) -> SizeHint {
        let read: u64 = self
            .prefix
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        let rest = match (&self.inner, self.inner_done) {
            (Some(inner), false) => inner.size_hint(),
            _ => SizeHint::with_exact(0),
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}
