//! Plain HTTP LLM endpoints as OpenAI- and Anthropic-style APIs answer (feature `llm-http`):
//! what their error bodies say, read for the classifier, and their server-sent-event streams,
//! settled from the usage in their final events.
//!
//! - [`VendorError`]: the error types of both vendors' JSON error bodies (`insufficient_quota`,
//!   `rate_limit_exceeded`, `overloaded_error`, context-length errors) as outcomes;
//! - [`ErrorBodyLayer`]: reads the first bytes of each error response for the classifier and
//!   hands the whole body on;
//! - [`sse`]: settling a streamed answer's reservation from its usage event.
//!
//! Put the [`ErrorBodyLayer`] under the retry layer or the stack, and classify with
//! [`HttpClassifier`](crate::HttpClassifier), which reads the [`VendorError`] the layer found:
//!
//! ```
//! # #[cfg(feature = "llm-http")] {
//! use tower::ServiceBuilder;
//! use tower_headroom::llm_http::ErrorBodyLayer;
//! use tower_headroom::retry::RetryPolicy;
//! use tower_headroom::{HttpClassifier, RetryLayer};
//!
//! # let upstream = tower::service_fn(|_req: http::Request<String>| async {
//! #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//! # });
//! let client = ServiceBuilder::new()
//!     .layer(RetryLayer::new(RetryPolicy::default(), HttpClassifier::new()))
//!     .layer(ErrorBodyLayer::new())
//!     .service(upstream);
//! # let _ = client;
//! # }
//! ```

mod error_body;
pub mod sse;
mod vendor;

pub use self::error_body::{ErrorBody, ErrorBodyLayer, PrefixedBody, ResponseFuture};
pub use self::vendor::{MAX_ERROR_PREFIX, VendorError};
