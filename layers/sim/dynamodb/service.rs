//! The [`tower::Service`] over [`DynamoSim`]: a call answered after the table's latency, and
//! its future ([`DynamoFuture`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::config::default_latency;
use super::{DynamoCall, DynamoReply, DynamoSim};
use crate::sim::{SimError, after};

impl tower_service::Service<DynamoCall> for DynamoSim {
    type Response = DynamoReply;
    type Error = SimError;
    type Future = DynamoFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SimError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: DynamoCall) -> DynamoFuture {
        let now = Instant::now();
        let latency = self
            .inner
            .tables
            .iter()
            .find(|t| *t.name == *call.table)
            .map_or_else(default_latency, |t| t.config.latency);
        let result = self
            .charge(&call, now)
            .map(|consumed_capacity| DynamoReply { consumed_capacity });
        DynamoFuture {
            sleep: tokio::time::sleep_until(after(now, latency)),
            result: Some(result),
        }
    }
}

pin_project! {
    /// The future of a [`DynamoSim`] call: the answer, after the table's latency.
    pub struct DynamoFuture {
        #[pin]
        sleep: Sleep,
        result: Option<Result<DynamoReply, SimError>>,
    }
}

impl Future for DynamoFuture {
    type Output = Result<DynamoReply, SimError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        ready!(this.sleep.poll(cx));
        Poll::Ready(
            this.result
                .take()
                .expect("DynamoFuture polled after completion"),
        )
    }
}

impl std::fmt::Debug for DynamoFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoFuture")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}
