//! The [`tower::Service`] over [`BedrockSim`]: a call answered after the latency model, and
//! its future ([`BedrockFuture`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{BedrockSim, InFlight, ModelCall, ModelReply};
use crate::sim::{SimError, after};

impl tower_service::Service<ModelCall> for BedrockSim {
    type Response = ModelReply;
    type Error = SimError;
    type Future = BedrockFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), SimError>> {
        // The simulator never pushes back through readiness: Bedrock answers every request,
        // rejections included.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: ModelCall) -> BedrockFuture {
        let now = Instant::now();
        let (deadline, result) = match self.start_call(&call, now) {
            Ok(in_flight) => (in_flight.completes_at, Ok(in_flight)),
            Err(error) => (after(now, self.inner.error_latency), Err(error)),
        };
        BedrockFuture {
            sleep: tokio::time::sleep_until(deadline),
            result: Some(result),
        }
    }
}

pin_project! {
    /// The future of a [`BedrockSim`] call: waits out the latency model, then settles.
    pub struct BedrockFuture {
        #[pin]
        sleep: Sleep,
        result: Option<Result<InFlight, SimError>>,
    }
}

impl Future for BedrockFuture {
    type Output = Result<ModelReply, SimError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        ready!(this.sleep.poll(cx));
        match this.result.take() {
            Some(result) => Poll::Ready(result.map(InFlight::finish)),
            None => panic!("BedrockFuture polled after completion"),
        }
    }
}

impl std::fmt::Debug for BedrockFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockFuture")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}
