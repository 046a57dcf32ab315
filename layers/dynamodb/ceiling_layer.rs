//! The Tower adapter of [`PartitionCeiling`]: waits for a hot key's own budget before the call
//! goes on, and records each call's outcome.
//!
//! Put it *outside* the stack that holds the table's quota (around the client as your code
//! calls it), so a call waiting for its key's budget holds nothing of the stack's: no table
//! reservation, no concurrency slot. Outside the stack it sees each call's final outcome,
//! not its attempts: a key-range throttle the stack's retry then got past is recorded as
//! the success it ended in (the key is found hot by its units instead). The AWS SDK adapter
//! (`SdkHeadroom::configure_dynamodb_ceiling`) records every attempt. The key extractor names each request's table, access,
//! partition key value and units (as the stack's estimator prices them); a request it returns
//! `None` for passes untouched.
//!
//! ```
//! use std::sync::Arc;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_headroom::Outcome;
//! use tower_headroom::classify::classify_error;
//! use tower_headroom::dynamodb::{Access, PartitionCeiling, PartitionCeilingLayer, PartitionUnits};
//!
//! struct Put { pk: String, wcu: u64 }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let ceiling = Arc::new(PartitionCeiling::builder().build()?);
//! let classify = |r: Result<&(), &(dyn std::error::Error + 'static)>| {
//!     r.map_or_else(classify_error, |_| Outcome::SUCCESS)
//! };
//! let client = ServiceBuilder::new()
//!     .layer(PartitionCeilingLayer::new(Arc::clone(&ceiling), classify, |put: &Put| {
//!         Some(PartitionUnits::new("orders", Access::Write, put.pk.as_bytes(), put.wcu))
//!     }))
//!     .service(service_fn(|_put: Put| async { Ok::<_, tower::BoxError>(()) }));
//! client.oneshot(Put { pk: "order#1".into(), wcu: 1 }).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower::{BoxError, Layer, Service};

use super::Access;
use super::ceiling::PartitionCeiling;
use crate::Outcome;
use crate::classify::Classify;

/// What one request spends of one partition key, as the key extractor names it.
///
/// Its `Debug` shows the key's length, never its bytes (customer data).
#[derive(Clone, PartialEq, Eq)]
pub struct PartitionUnits {
    /// The table, by its name or its ARN (the ceiling counts both under the name,
    /// [`table_name`](super::table_name)).
    pub table: Arc<str>,
    /// Reads or writes.
    pub access: Access,
    /// The partition key value's bytes (hashed at once; never logged).
    pub partition_key: Vec<u8>,
    /// WCU for a write, half RCUs for a read ([`read_half_units`](super::read_half_units)).
    pub units: u64,
}

impl PartitionUnits {
    /// `units` of `table`'s `access` on `partition_key`.
    pub fn new(
        table: impl Into<Arc<str>>,
        access: Access,
        partition_key: impl Into<Vec<u8>>,
        units: u64,
    ) -> Self {
        PartitionUnits {
            table: table.into(),
            access,
            partition_key: partition_key.into(),
            units,
        }
    }
}

impl fmt::Debug for PartitionUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionUnits")
            .field("table", &self.table)
            .field("access", &self.access)
            .field("partition_key_bytes", &self.partition_key.len())
            .field("units", &self.units)
            .finish()
    }
}

/// Applies [`PartitionCeilingService`]; see [the module docs](self).
pub struct PartitionCeilingLayer<C, F> {
    ceiling: Arc<PartitionCeiling>,
    classifier: C,
    extract: F,
}

impl<C: Clone, F: Clone> Clone for PartitionCeilingLayer<C, F> {
    fn clone(&self) -> Self {
        PartitionCeilingLayer {
            ceiling: Arc::clone(&self.ceiling),
            classifier: self.classifier.clone(),
            extract: self.extract.clone(),
        }
    }
}

impl<C, F> fmt::Debug for PartitionCeilingLayer<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionCeilingLayer")
            .finish_non_exhaustive()
    }
}

impl<C, F> PartitionCeilingLayer<C, F> {
    /// A layer over `ceiling` (shared by every client of the tables), classifying answers with
    /// `classifier` and naming each request's key with `extract`.
    pub fn new(ceiling: Arc<PartitionCeiling>, classifier: C, extract: F) -> Self {
        PartitionCeilingLayer {
            ceiling,
            classifier,
            extract,
        }
    }
}

impl<S, C: Clone, F: Clone> Layer<S> for PartitionCeilingLayer<C, F> {
    type Service = PartitionCeilingService<S, C, F>;

    fn layer(&self, inner: S) -> Self::Service {
        PartitionCeilingService {
            inner,
            ceiling: Arc::clone(&self.ceiling),
            classifier: self.classifier.clone(),
            extract: self.extract.clone(),
        }
    }
}

/// Waits for a hot key's budget, then calls the inner service; see [the module docs](self).
pub struct PartitionCeilingService<S, C, F> {
    inner: S,
    ceiling: Arc<PartitionCeiling>,
    classifier: C,
    extract: F,
}

impl<S: Clone, C: Clone, F: Clone> Clone for PartitionCeilingService<S, C, F> {
    fn clone(&self) -> Self {
        PartitionCeilingService {
            inner: self.inner.clone(),
            ceiling: Arc::clone(&self.ceiling),
            classifier: self.classifier.clone(),
            extract: self.extract.clone(),
        }
    }
}

impl<S, C, F> fmt::Debug for PartitionCeilingService<S, C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionCeilingService")
            .finish_non_exhaustive()
    }
}

/// The future of [`PartitionCeilingService`].
pub struct ResponseFuture<T> {
    inner: Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>,
}

impl<T> fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T> Future for ResponseFuture<T> {
    type Output = Result<T, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// `inner` made ready, then called with `req`.
async fn oneshot<S, Req>(mut inner: S, req: Req) -> Result<S::Response, BoxError>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    std::future::poll_fn(|cx| inner.poll_ready(cx))
        .await
        .map_err(Into::into)?;
    inner.call(req).await.map_err(Into::into)
}

fn classify<C: Classify<T>, T>(classifier: &C, result: &Result<T, BoxError>) -> Outcome {
    match result {
        Ok(response) => classifier.classify(Ok(response)),
        Err(error) => {
            let error: &(dyn std::error::Error + 'static) = &**error;
            classifier.classify(Err(error))
        }
    }
}

impl<S, C, F, Req> Service<Req> for PartitionCeilingService<S, C, F>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    C: Classify<S::Response> + Clone + Send + 'static,
    F: Fn(&Req) -> Option<PartitionUnits>,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // The inner service is made ready after the key's wait, on a clone: nothing of it is
        // held while waiting.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let key = (self.extract)(&req);
        let inner = self.inner.clone();
        let ceiling = Arc::clone(&self.ceiling);
        let classifier = self.classifier.clone();
        ResponseFuture {
            inner: Box::pin(async move {
                let Some(key) = key else {
                    return oneshot(inner, req).await;
                };
                let mut ticket = ceiling
                    .admit(
                        &key.table,
                        key.access,
                        &key.partition_key,
                        key.units,
                        Instant::now(),
                    )
                    .map_err(BoxError::from)?;
                ticket.ready().await.map_err(BoxError::from)?;
                let result = oneshot(inner, req).await;
                let outcome = classify(&classifier, &result);
                ceiling.record_with_key(ticket, &key.partition_key, &outcome, Instant::now());
                result
            }),
        }
    }
}
