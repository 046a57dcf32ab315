//! [`Stack`]: the service a [`StackBuilder`](super::StackBuilder) builds.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::builder::{RewriteFor, TargetQuota, TargetSlots};
use super::future::ResponseFuture;
use crate::admission::{AdmissionMetrics, Cost};
use crate::breaker::BreakerHandle;
use crate::concurrency::AdaptiveLimit;
use crate::deadline::Deadline;
use crate::fallback::{Annotate, HttpExtension, Route, Target};
use crate::lifecycle::Call;
use crate::observe::{CounterSet, Labels};
use crate::retry::{RetryMetrics, RetryPolicy};
use crate::timeout::AttemptTimeout;
use crate::{BoxError, Classify};

/// The whole stack as one service: each call's attempts are driven through the
/// [lifecycle core](crate::lifecycle) — choose a target (breaker permit, quota headroom for the
/// call's cost), admit (reserve, wait within the call's deadline), ready the target's client
/// only then, call, settle and record, then done, move to the next target, retry after a
/// delay, or stop.
///
/// `poll_ready` is always ready: which target a call goes to is decided per attempt, and the
/// target's client is readied on its own clone after the quota granted the attempt, so a call
/// waiting for quota holds no readiness (no connection-pool or concurrency permit) of the
/// client's. Clones share everything (breakers, quota, retry budget).
pub struct Stack<S, T, C, A = super::NoAdmission, F = super::NoRewrite> {
    shared: Arc<Shared<S, T, C, A, F>>,
}

/// What every clone of a stack shares.
pub(crate) struct Shared<S, T, C, A, F> {
    pub(crate) services: Box<[S]>,
    pub(crate) rewrite: F,
    pub(crate) route: Route<T>,
    pub(crate) breakers: Box<[Option<BreakerHandle>]>,
    pub(crate) classifier: C,
    pub(crate) policy: RetryPolicy,
    /// The wait budget of a call that carries no deadline.
    pub(crate) budget: Duration,
    pub(crate) attempt_timeout: Option<AttemptTimeout>,
    pub(crate) admission: A,
    /// Each target's adaptive concurrency limit, when the stack has them.
    pub(crate) limits: Box<[Option<AdaptiveLimit>]>,
    /// Each target's metric handles, in route order.
    pub(crate) events: Box<[TargetEvents]>,
    /// Where a call reports when no target could take it.
    pub(crate) unrouted: RetryMetrics,
    /// `gen_ai.provider.name` of the calls' spans (a Bedrock stack's).
    pub(crate) provider: Option<&'static str>,
    /// `gen_ai.operation.name` of the calls' spans (`chat` for a Bedrock stack, unless
    /// [named](super::StackBuilder::operation) otherwise).
    pub(crate) operation: Option<&'static str>,
}

/// One target's metric handles, registered when the stack is built.
pub(crate) struct TargetEvents {
    pub(crate) retry: RetryMetrics,
    pub(crate) admission: AdmissionMetrics,
    pub(crate) served: CounterSet<1>,
    pub(crate) tokens: crate::observe::TokenCounters,
    pub(crate) labels: Labels,
}

impl<S, T, C, A, F> Stack<S, T, C, A, F> {
    pub(crate) fn new(shared: Shared<S, T, C, A, F>) -> Self {
        Stack {
            shared: Arc::new(shared),
        }
    }

    /// The breaker of each target, in route order (`None` when built without breakers).
    pub fn breakers(&self) -> &[Option<BreakerHandle>] {
        &self.shared.breakers
    }

    /// The adaptive concurrency limit of each target, in route order (`None` without
    /// [`concurrency`](super::StackBuilder::concurrency)).
    pub fn limits(&self) -> &[Option<AdaptiveLimit>] {
        &self.shared.limits
    }

    /// The route.
    pub fn route(&self) -> &Route<T> {
        &self.shared.route
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.shared.policy
    }
}

impl<S, T, C, A, F> Clone for Stack<S, T, C, A, F> {
    fn clone(&self) -> Self {
        Stack {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, T, C, A, F> fmt::Debug for Stack<S, T, C, A, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("targets", &self.shared.route.targets().len())
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl<S, T, C, A, F, Req> Service<Req> for Stack<S, T, C, A, F>
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
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, T, C, A, F, Req>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        // The call's one clock read before its first attempt: it starts the call and the
        // attempt, chooses the target and reserves the quota.
        let now = Instant::now();
        let shared = &*self.shared;
        let deadline = Deadline::current().unwrap_or(Deadline::from_now(now, shared.budget));
        let call = Call::start(&shared.policy, Some(&shared.route), Some(deadline), now);
        let cost = Costs::estimate(&shared.admission, &request, shared.route.targets());
        let span = crate::observe::span::call(shared.provider, shared.operation);
        ResponseFuture::new(Arc::clone(&self.shared), request, cost, call, now, span)
    }
}

/// A call's cost on each target, estimated once per call: the same on every target, or per
/// target when targets are labelled with a model (each model's own cost,
/// [`Estimate::estimate_for`](crate::admission::Estimate::estimate_for)).
pub(crate) enum Costs {
    /// No admission.
    None,
    Same(Cost),
    /// Per target, in route order (up to four without allocating).
    Inline([Cost; 4]),
    Boxed(Box<[Cost]>),
}

impl Costs {
    pub(crate) fn estimate<Req, Res, T, A: TargetQuota<Req, Res>>(
        admission: &A,
        request: &Req,
        targets: &[Target<T>],
    ) -> Costs {
        if targets.iter().all(|t| t.labels().model_name().is_none()) {
            return admission.cost(request).map_or(Costs::None, Costs::Same);
        }
        let Some(plain) = admission.cost(request) else {
            return Costs::None;
        };
        let each = targets.iter().map(|t| match t.labels().model_name() {
            Some(model) => admission.cost_for(request, model).unwrap_or(plain),
            None => plain,
        });
        if targets.len() <= 4 {
            let mut costs = [plain; 4];
            for (slot, cost) in costs.iter_mut().zip(each) {
                *slot = cost;
            }
            Costs::Inline(costs)
        } else {
            Costs::Boxed(each.collect())
        }
    }

    /// The cost on route target `target`; `None` without admission.
    pub(crate) fn of(&self, target: usize) -> Option<Cost> {
        match self {
            Costs::None => None,
            Costs::Same(cost) => Some(*cost),
            Costs::Inline(costs) => costs.get(target).copied(),
            Costs::Boxed(costs) => costs.get(target).copied(),
        }
    }

    /// Whether the call is admitted against a quota.
    pub(crate) fn is_some(&self) -> bool {
        !matches!(self, Costs::None)
    }
}

/// The route's view of the stack's quota for one call's costs: each target's pinned state,
/// found by the target's key, asked about the call's cost on that target.
pub(crate) struct CostHeadroom<'a, T, A> {
    pub(crate) targets: &'a [Target<T>],
    pub(crate) admission: &'a A,
    pub(crate) costs: &'a Costs,
}

impl<T: PartialEq, A: TargetSlots> crate::fallback::Headroom<T> for CostHeadroom<'_, T, A> {
    fn admit_wait(&self, key: &T, now: Instant) -> Option<Duration> {
        if !self.costs.is_some() {
            return Some(Duration::ZERO);
        }
        let index = self.targets.iter().position(|t| t.key() == key);
        let cost = index.and_then(|i| self.costs.of(i));
        match (index.and_then(|i| self.admission.slot(i)), cost) {
            (Some(slot), Some(cost)) => crate::admission::Slot::admit_wait(slot, cost, now),
            // Not one of the stack's targets: no quota of ours holds it back.
            _ => Some(Duration::ZERO),
        }
    }
}
