//! One call: its retry state and route plan, the choice of each attempt's target, and what
//! follows each attempt.

use std::time::Duration;

use tokio::time::Instant;

use super::attempt::Ended;
use crate::admission::{Ask, Cost, Priority, Tenant};
use crate::breaker::{BreakerHandle, BreakerPermit};
use crate::deadline::Deadline;
use crate::fallback::{After, Choice, Headroom, Plan, Route};
use crate::retry::{Decision, RetryPolicy, RetryState, StopReason};
use crate::{Outcome, OutcomeKind, ThrottleScope};

/// One call's progress through its attempts; see the [module docs](super).
#[derive(Debug)]
pub(crate) struct Call {
    retry: RetryState,
    /// The route plan, for a call that may move between targets.
    plan: Option<Plan>,
    /// Route targets that answered this call with a spent day ([`ThrottleScope::Daily`]): a
    /// retry's fresh plan skips them, since no wait within the call cures them.
    spent: u64,
    /// When the call started (its duration is reported when it ends).
    started: Instant,
}

/// What follows an attempt.
#[derive(Debug)]
pub(crate) enum Next {
    /// The attempt succeeded: the call is done.
    Done,
    /// Call the route's next target now, under this breaker permit.
    Move {
        /// The route index of the target.
        target: usize,
        /// The target's breaker permit.
        permit: Option<BreakerPermit>,
    },
    /// Try again after this delay, from the route's preferred target.
    Retry(Duration),
    /// Give up, for this reason: the attempt's own answer is the call's.
    Stop(StopReason),
}

/// What a call's route needs to choose a target: the route, each target's breaker, and the
/// quota's headroom for this call's cost.
pub(crate) struct Routing<'a, T, H: ?Sized> {
    pub(crate) route: &'a Route<T>,
    pub(crate) breakers: &'a [Option<BreakerHandle>],
    pub(crate) headroom: &'a H,
}

impl Call {
    /// Starts a call at `now`, bound by `deadline` (the caller's, else the adapter's budget),
    /// with a plan when it has a route.
    pub(crate) fn start<T>(
        policy: &RetryPolicy,
        route: Option<&Route<T>>,
        deadline: Option<Deadline>,
        now: Instant,
    ) -> Call {
        Call {
            retry: policy.start_until(now, deadline),
            plan: route.map(|route| route.plan().with_deadline(deadline)),
            spent: 0,
            started: now,
        }
    }

    /// When the call started.
    pub(crate) fn started(&self) -> Instant {
        self.started
    }

    /// The call's deadline: no admission wait, router wait or retry runs past it.
    pub(crate) fn deadline(&self) -> Option<Deadline> {
        self.retry.deadline()
    }

    /// The call's retry state.
    pub(crate) fn retry(&self) -> &RetryState {
        &self.retry
    }

    /// The route plan, for a call with a route.
    pub(crate) fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    /// What an attempt of this call asks the quota for: `cost`, waiting no longer than the
    /// call's deadline (nor past `limit`, when the adapter has one of its own).
    pub(crate) fn ask(
        &self,
        cost: Cost,
        priority: Priority,
        tenant: Option<Tenant>,
        limit: Option<Deadline>,
    ) -> Ask {
        let mut ask = Ask::new(cost).priority(priority);
        let deadline = match (self.deadline(), limit) {
            (Some(d), Some(l)) => Some(d.min(l)),
            (d, l) => d.or(l),
        };
        if let Some(deadline) = deadline {
            ask = ask.deadline(deadline);
        }
        if let Some(tenant) = tenant {
            ask = ask.tenant(tenant);
        }
        ask
    }

    /// Chooses the next attempt's target: an untried one whose breaker gives a permit and
    /// whose quota admits this call's cost soonest within the deadline. A call without a plan
    /// (no route) is never exhausted here.
    pub(crate) fn choose<T, H: Headroom<T> + ?Sized>(
        &mut self,
        routing: &Routing<'_, T, H>,
        now: Instant,
    ) -> Choice<Option<BreakerPermit>> {
        let plan = self
            .plan
            .get_or_insert_with(|| routing.route.plan().with_deadline(self.retry.deadline()));
        crate::fallback::choose(routing.route, routing.breakers, plan, now, routing.headroom)
    }

    /// The usual first choice in one step: when the route asks its preferred target first,
    /// that target's breaker gives a permit and `admit` admits the call there at once, the
    /// preferred target is taken — the choice [`choose`](Self::choose) makes, without asking
    /// the quota twice (its headroom, then the reservation). `None`: nothing was taken and
    /// nothing is held (`admit` gives back what it could not admit at once); ask `choose`.
    pub(crate) fn choose_admitted<T, H: ?Sized, R>(
        &mut self,
        routing: &Routing<'_, T, H>,
        now: Instant,
        admit: impl FnOnce() -> Option<R>,
    ) -> Option<(Option<BreakerPermit>, R)> {
        let plan = self.plan.as_mut()?;
        if !routing.route.asks_preferred_first(plan) {
            return None;
        }
        // Only a closed breaker: `choose` would not move an open one to half-open for a call
        // the quota then makes wait, so neither does this.
        let permit = match routing.breakers.first() {
            Some(Some(breaker)) => Some(breaker.acquire_closed(now)?),
            _ => None,
        };
        let admitted = admit()?;
        routing.route.take_preferred(plan);
        Some((permit, admitted))
    }

    /// What follows an attempt that ended with `outcome`: done on success; else a move to the
    /// route's next target when the route's policy says so and one can take the call (chosen
    /// here); else the retry policy's answer (a retry starts over from the preferred target).
    /// An attempt never sent (a local refusal) never moves: the router already skipped what
    /// held it back. A target that answered with a spent day
    /// ([`ThrottleScope::Daily`]) is moved away from at once like any moving outcome, and a
    /// retry of the call (after another target failed otherwise) does not start over there.
    pub(crate) fn next<T, H: Headroom<T> + ?Sized>(
        &mut self,
        policy: &RetryPolicy,
        routing: Option<&Routing<'_, T, H>>,
        ended: &Ended,
        outcome: &Outcome,
        now: Instant,
    ) -> Next {
        if outcome.is_success() {
            self.retry.succeeded();
            return Next::Done;
        }
        let daily = match (ended.target, ended.sent, outcome.kind) {
            (Some(target), true, OutcomeKind::Throttled(ThrottleScope::Daily)) => {
                1u64.checked_shl(target as u32).unwrap_or(0)
            }
            _ => 0,
        };
        self.spent |= daily;
        if let (Some(routing), Some(plan), Some(target), true) =
            (routing, self.plan.as_mut(), ended.target, ended.sent)
        {
            if let Some((target, permit)) = move_on(routing, plan, target, outcome, now) {
                return Next::Move { target, permit };
            }
        }
        match policy.decide(&mut self.retry, outcome, now) {
            Decision::Retry(delay) => {
                if let Some(routing) = routing {
                    // A retry after a spent day is allowed only when the day returns before it
                    // starts: that target (the one whose answer the policy just weighed) is no
                    // longer spent. Other targets that answered with a spent day earlier in the
                    // call stay skipped, even if their day has returned by now: their return
                    // instants are not kept, and skipping errs on the safe side. Should every
                    // target be spent, none is skipped (the policy allowed the retry).
                    self.spent &= !daily;
                    let all = u64::MAX >> (64 - routing.route.targets().len().min(64));
                    let plan = routing.route.plan().with_deadline(self.retry.deadline());
                    self.plan = Some(if self.spent & all == all {
                        plan
                    } else {
                        plan.skipping(self.spent)
                    });
                }
                Next::Retry(delay)
            }
            Decision::Stop(reason) => Next::Stop(reason),
        }
    }
}

/// The route's move after a failed call to `target`: the next target to call and its permit,
/// when the route's policy says to move and a target can take the call; `None` when the
/// attempt's answer stands.
pub(crate) fn move_on<T, H: Headroom<T> + ?Sized>(
    routing: &Routing<'_, T, H>,
    plan: &mut Plan,
    target: usize,
    outcome: &Outcome,
    now: Instant,
) -> Option<(usize, Option<BreakerPermit>)> {
    if routing.route.after(plan, target, *outcome) != After::Move {
        return None;
    }
    match crate::fallback::choose(routing.route, routing.breakers, plan, now, routing.headroom) {
        Choice::Call { target, permit, .. } => Some((target, permit)),
        Choice::Exhausted { .. } => None,
    }
}
