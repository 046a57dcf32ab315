//! The sans-IO route core: which target to call first, and where to go after an outcome.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::ConfigError;
use crate::deadline::Deadline;
use crate::observe::Labels;
use crate::{Outcome, OutcomeKind};

/// The most targets a [`Route`] may hold (a request's tried set is a 64-bit mask).
pub const MAX_TARGETS: usize = 64;

/// One place a request can be sent: a model, a region, an inference profile, a host.
///
/// `key` is what the caller needs to reach it (e.g. the model id to rewrite the request with)
/// and what [`Headroom`] is asked about; `labels` name it in metrics, events and [`Served`].
///
/// [`Served`]: super::Served
#[derive(Clone, Debug)]
pub struct Target<T> {
    key: T,
    labels: Labels,
    name: Arc<str>,
}

impl<T> Target<T> {
    /// A target called `name` (unique within a route), reached with `key`.
    pub fn new(name: impl Into<Arc<str>>, key: T) -> Self {
        let name = name.into();
        Target {
            key,
            labels: Labels::target(Arc::clone(&name)),
            name,
        }
    }

    /// Sets the model label; [`Action::NextModel`] compares it.
    pub fn model(mut self, model: impl Into<Arc<str>>) -> Self {
        self.labels = self.labels.model(model);
        self
    }

    /// Sets the region label; [`Action::NextRegion`] compares it.
    pub fn region(mut self, region: impl Into<Arc<str>>) -> Self {
        self.labels = self.labels.region(region);
        self
    }

    /// The key.
    pub fn key(&self) -> &T {
        &self.key
    }

    /// The name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The labels: target name, model, region.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }
}

/// How long a target's quota would make a call wait before it is admitted.
///
/// The seam between the router and admission: the router prefers targets that can admit now,
/// waits (through the admission layer inside the target) for the shortest wait within the
/// call's [`Deadline`] when none can, and skips targets that cannot admit at all (`None`).
pub trait Headroom<T> {
    /// `Some(ZERO)`: admits now; `Some(wait)`: admits after `wait`; `None`: cannot admit.
    fn admit_wait(&self, target: &T, now: Instant) -> Option<Duration>;
}

/// Admission's [`Quota`](crate::admission::Quota) as the router's [`Headroom`]: a target's wait
/// is the wait its quota key would give a call of `cost`, read without reserving anything. The
/// target's key type is the quota's key type (a model × region, say).
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::admission::{Cost, Limit, Quota};
/// use tower_headroom::fallback::{Headroom, QuotaHeadroom};
///
/// let quota = Quota::new(Limit::per_window(Duration::from_secs(60)).requests(1).build().unwrap());
/// let headroom = QuotaHeadroom::new(quota.clone(), Cost::ONE_REQUEST);
/// let now = Instant::now();
/// assert_eq!(headroom.admit_wait(&"sonnet", now), Some(Duration::ZERO));
/// let _held = quota.reserve(&"sonnet", Cost::ONE_REQUEST, now).unwrap();
/// assert!(headroom.admit_wait(&"sonnet", now).unwrap() > Duration::ZERO);
/// assert_eq!(headroom.admit_wait(&"haiku", now), Some(Duration::ZERO));
/// ```
#[derive(Clone, Debug)]
pub struct QuotaHeadroom<Q> {
    quota: Q,
    cost: crate::admission::Cost,
}

impl<Q> QuotaHeadroom<Q> {
    /// Reads `quota` for a call of `cost` (a typical call: the router does not know the cost of
    /// the request at hand before it chooses).
    pub fn new(quota: Q, cost: crate::admission::Cost) -> Self {
        QuotaHeadroom { quota, cost }
    }
}

impl<T, Q: crate::admission::Headroom<T>> Headroom<T> for QuotaHeadroom<Q> {
    fn admit_wait(&self, target: &T, now: Instant) -> Option<Duration> {
        self.quota.admit_wait(target, self.cost, now)
    }
}

/// The default [`Headroom`]: every target always admits now.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHeadroom;

impl<T> Headroom<T> for NoHeadroom {
    fn admit_wait(&self, _target: &T, _now: Instant) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl<T, H: Headroom<T> + ?Sized> Headroom<T> for Arc<H> {
    fn admit_wait(&self, target: &T, now: Instant) -> Option<Duration> {
        (**self).admit_wait(target, now)
    }
}

/// What the router does after an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Return the result to the caller as it is.
    Stop,
    /// Try the next target in order (preferring ones that can admit now).
    NextTarget,
    /// Prefer the next target with a different model; any next target if there is none.
    NextModel,
    /// Prefer the next target in a different region; any next target if there is none.
    NextRegion,
}

/// A map from outcome class to [`Action`].
///
/// The default:
///
/// | outcome | action |
/// |---|---|
/// | `Throttled(Requests)`, `Throttled(Tokens)` | `NextTarget` — the choice prefers targets whose quota has headroom, and waits for the shortest admission when none has |
/// | `Throttled(Daily)` (a spent per-day quota) | `NextTarget`, at once: no wait on the spent target cures it |
/// | `Overloaded`, `TooLarge` | `NextModel` |
/// | `Unavailable`, `Timeout` | `NextTarget` |
/// | `Throttled(Capacity)`, `Throttled(Unknown)`, `Transient`, `Fatal` | `Stop` (the retry layer outside decides) |
///
/// ```
/// use tower_headroom::fallback::{Action, FallbackPolicy};
/// use tower_headroom::OutcomeKind;
///
/// let policy = FallbackPolicy::default().on(OutcomeKind::Unavailable, Action::NextRegion);
/// assert_eq!(policy.action(OutcomeKind::Unavailable), Action::NextRegion);
/// assert_eq!(policy.action(OutcomeKind::Fatal), Action::Stop);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FallbackPolicy {
    actions: [Action; OutcomeKind::ALL.len()],
}

impl Default for FallbackPolicy {
    /// The Outcome table's fallback column ([`OutcomeKind::moves_fallback`]): an overloaded
    /// model moves to the next model, the other moving outcomes to the next target.
    fn default() -> Self {
        FallbackPolicy {
            actions: OutcomeKind::ALL.map(|kind| match kind {
                OutcomeKind::Overloaded | OutcomeKind::TooLarge => Action::NextModel,
                kind if kind.moves_fallback() => Action::NextTarget,
                _ => Action::Stop,
            }),
        }
    }
}

impl FallbackPolicy {
    /// Sets the action for `kind`. [`OutcomeKind::Success`] always stops: it is served.
    pub fn on(mut self, kind: OutcomeKind, action: Action) -> Self {
        if kind != OutcomeKind::Success {
            self.actions[kind.index()] = action;
        }
        self
    }

    /// The action for `kind`.
    pub fn action(&self, kind: OutcomeKind) -> Action {
        self.actions[kind.index()]
    }
}

/// An ordered list of targets with a policy: the route core. Build with [`Route::builder`].
///
/// Per request, keep a [`Plan`]; ask [`choose`](Route::choose) for a target, call it, and tell
/// [`after`](Route::after) the outcome; repeat while it says [`After::Move`].
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::fallback::{After, Choice, NoHeadroom, Route, Target};
/// use tower_headroom::{Outcome, OutcomeKind};
///
/// let route = Route::builder()
///     .target(Target::new("sonnet", "anthropic.claude-sonnet").model("sonnet"))
///     .target(Target::new("haiku", "anthropic.claude-haiku").model("haiku"))
///     .build()?;
/// let now = Instant::now();
/// let mut plan = route.plan();
/// let Choice::Call { target, .. } = route.choose(&mut plan, now, &NoHeadroom, |_| Ok(())) else { panic!() };
/// assert_eq!(target, 0);
/// assert_eq!(route.after(&mut plan, target, Outcome::new(OutcomeKind::Overloaded)), After::Move);
/// let Choice::Call { target, .. } = route.choose(&mut plan, now, &NoHeadroom, |_| Ok(())) else { panic!() };
/// assert_eq!(target, 1);
/// # Ok::<(), tower_headroom::breaker::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Route<T> {
    targets: Box<[Target<T>]>,
    policy: FallbackPolicy,
    max_hops: u32,
}

/// Builds a [`Route`].
#[derive(Clone, Debug)]
pub struct RouteBuilder<T> {
    targets: Vec<Target<T>>,
    policy: FallbackPolicy,
    max_hops: u32,
}

impl<T> Route<T> {
    /// A builder with no targets, the default policy and `max_hops` 2.
    pub fn builder() -> RouteBuilder<T> {
        RouteBuilder {
            targets: Vec::new(),
            policy: FallbackPolicy::default(),
            max_hops: 2,
        }
    }

    /// The targets, in order of preference.
    pub fn targets(&self) -> &[Target<T>] {
        &self.targets
    }

    /// The policy.
    pub fn policy(&self) -> &FallbackPolicy {
        &self.policy
    }

    /// The most moves to another target per request.
    pub fn max_hops(&self) -> u32 {
        self.max_hops
    }

    /// A fresh per-request plan, bound by the [`Deadline`] in scope when there is one.
    pub fn plan(&self) -> Plan {
        Plan {
            tried: 0,
            calls: 0,
            prefer: Prefer::Any,
            deadline: Deadline::current(),
        }
    }

    /// Chooses the next target for the request.
    ///
    /// Walks the untried targets in order (those matching the preference the last outcome set
    /// come first) and takes the first that can admit now and whose breaker gives a permit
    /// (`acquire(index)`, which returns `Err(retry_in)` when open). If none can admit now, takes
    /// the one with the shortest admission wait within the plan's deadline (the call's
    /// [`Deadline`]; without one, an interactive call's
    /// [default wait](crate::admission::Priority::default_wait)). Otherwise the request is
    /// [`Choice::Exhausted`], with the earliest time any skipped target could serve.
    pub fn choose<H, P>(
        &self,
        plan: &mut Plan,
        now: Instant,
        headroom: &H,
        mut acquire: impl FnMut(usize) -> Result<P, Duration>,
    ) -> Choice<P>
    where
        H: Headroom<T> + ?Sized,
    {
        if plan.calls > self.max_hops {
            return Choice::Exhausted {
                retry_in: None,
                cause: Exhaustion::Hops,
            };
        }
        // The earliest a skipped target could serve, and what holds that one back.
        let mut soonest: Option<(Duration, Exhaustion)> = None;
        let mut never_admits = false;
        let mut note = |d: Duration, cause: Exhaustion| {
            if soonest.is_none_or(|(r, _)| d < r) {
                soonest = Some((d, cause));
            }
        };
        let max_wait = match plan.deadline {
            Some(deadline) => deadline.remaining(now),
            None => crate::admission::Priority::Interactive.default_wait(),
        };
        // Waits are remembered per target so the second pass does not ask again; the table
        // (a kilobyte) is made only when a target has to wait, never on the success path.
        let mut waits: Option<[Option<Duration>; MAX_TARGETS]> = None;
        for pass in [true, false] {
            for (index, target) in self.targets.iter().enumerate() {
                if plan.tried & (1 << index) != 0 || self.matches(plan.prefer, target) != pass {
                    continue;
                }
                let Some(wait) = headroom.admit_wait(&target.key, now) else {
                    never_admits = true;
                    continue;
                };
                if wait.is_zero() {
                    match acquire(index) {
                        Ok(permit) => {
                            return self.take(plan, index, wait, permit);
                        }
                        Err(open) => note(open, Exhaustion::BreakerOpen),
                    }
                } else if wait <= max_wait {
                    waits.get_or_insert([None; MAX_TARGETS])[index] = Some(wait);
                } else {
                    note(wait, Exhaustion::NoHeadroom);
                }
            }
        }
        // Nobody admits now: the shortest wait within the deadline, ties in order.
        while let Some(waits) = waits.as_mut() {
            let best = waits
                .iter()
                .enumerate()
                .filter_map(|(i, w)| w.map(|w| (w, i)))
                .min();
            let Some((wait, index)) = best else { break };
            waits[index] = None;
            match acquire(index) {
                Ok(permit) => return self.take(plan, index, wait, permit),
                Err(open) if open >= wait => note(open, Exhaustion::BreakerOpen),
                Err(_) => note(wait, Exhaustion::NoHeadroom),
            }
        }
        match soonest {
            Some((retry_in, cause)) => Choice::Exhausted {
                retry_in: Some(retry_in),
                cause,
            },
            None => Choice::Exhausted {
                retry_in: None,
                cause: if never_admits {
                    Exhaustion::NoHeadroom
                } else {
                    Exhaustion::Hops
                },
            },
        }
    }

    /// Tells the core the outcome of a call to `target`, and returns what to do next.
    pub fn after(&self, plan: &mut Plan, target: usize, outcome: Outcome) -> After {
        if outcome.is_success() {
            return After::Done;
        }
        plan.prefer = match self.policy.action(outcome.kind) {
            Action::Stop => return After::Stop,
            Action::NextTarget => Prefer::Any,
            Action::NextModel => Prefer::OtherModel(target),
            Action::NextRegion => Prefer::OtherRegion(target),
        };
        if self.may_move(plan) {
            After::Move
        } else {
            After::Stop
        }
    }

    /// Whether a request in `plan` could still move after its current call (so the adapter must
    /// keep a copy of the request).
    pub fn may_move(&self, plan: &Plan) -> bool {
        plan.calls <= self.max_hops && (plan.tried.count_ones() as usize) < self.targets.len()
    }

    /// Whether [`choose`](Self::choose) would ask the preferred target (index 0) first: a
    /// plan's first choice, with no preference that excludes it.
    pub(crate) fn asks_preferred_first(&self, plan: &Plan) -> bool {
        plan.calls == 0
            && plan.tried & 1 == 0
            && plan.calls <= self.max_hops
            && self
                .targets
                .first()
                .is_some_and(|target| self.matches(plan.prefer, target))
    }

    /// Records in `plan` that the preferred target is called, as [`choose`](Self::choose) does
    /// when it takes it.
    pub(crate) fn take_preferred(&self, plan: &mut Plan) {
        plan.called(0);
    }

    fn take<P>(&self, plan: &mut Plan, index: usize, wait: Duration, permit: P) -> Choice<P> {
        plan.called(index);
        Choice::Call {
            target: index,
            wait,
            permit,
        }
    }

    fn matches(&self, prefer: Prefer, target: &Target<T>) -> bool {
        match prefer {
            Prefer::Any => true,
            Prefer::OtherModel(failed) => {
                target.labels.model_name() != self.targets[failed].labels.model_name()
            }
            Prefer::OtherRegion(failed) => {
                target.labels.region_name() != self.targets[failed].labels.region_name()
            }
        }
    }
}

impl<T> RouteBuilder<T> {
    /// Targets added so far.
    pub(crate) fn len(&self) -> usize {
        self.targets.len()
    }

    /// Appends a target; order is preference.
    pub fn target(mut self, target: Target<T>) -> Self {
        self.targets.push(target);
        self
    }

    /// The outcome → action policy (default: [`FallbackPolicy::default`]).
    pub fn policy(mut self, policy: FallbackPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The most moves to another target per request (default 2: at most three calls).
    pub fn max_hops(mut self, hops: u32) -> Self {
        self.max_hops = hops;
        self
    }

    /// Validates: at least one target, at most [`MAX_TARGETS`], names unique.
    pub fn build(self) -> Result<Route<T>, ConfigError> {
        if self.targets.is_empty() {
            return Err(ConfigError::new(
                "targets",
                0,
                "a route needs at least one target",
            ));
        }
        if self.targets.len() > MAX_TARGETS {
            return Err(ConfigError::new(
                "targets",
                self.targets.len(),
                "a route holds at most 64 targets",
            ));
        }
        for (i, target) in self.targets.iter().enumerate() {
            if target.name.is_empty() {
                return Err(ConfigError::new("targets.name", "", "must not be empty"));
            }
            if self.targets[..i].iter().any(|t| t.name == target.name) {
                return Err(ConfigError::new(
                    "targets.name",
                    &*target.name,
                    "duplicate target",
                ));
            }
        }
        Ok(Route {
            targets: self.targets.into_boxed_slice(),
            policy: self.policy,
            max_hops: self.max_hops,
        })
    }
}

/// Per-request routing state; see [`Route`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    tried: u64,
    calls: u32,
    prefer: Prefer,
    deadline: Option<Deadline>,
}

impl Plan {
    fn called(&mut self, index: usize) {
        self.tried |= 1 << index;
        self.calls += 1;
    }

    /// Binds the plan's admission waits to `deadline` (instead of the one in scope when the
    /// plan was made).
    pub fn with_deadline(mut self, deadline: Option<Deadline>) -> Self {
        self.deadline = deadline;
        self
    }

    /// The plan with the targets in `mask` (bit `i`: target `i`) left out, as if tried: a
    /// retry's plan skips the targets that answered the call with a spent day.
    pub(crate) fn skipping(mut self, mask: u64) -> Self {
        self.tried |= mask;
        self
    }

    /// The deadline the plan's admission waits are bound by, if any.
    pub fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    /// Calls made so far.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Whether `target` was already called.
    pub fn tried(&self, target: usize) -> bool {
        target < MAX_TARGETS && self.tried & (1 << target) != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prefer {
    Any,
    OtherModel(usize),
    OtherRegion(usize),
}

/// The answer of [`Route::choose`].
#[derive(Debug, PartialEq, Eq)]
pub enum Choice<P> {
    /// Call `target` (after the admission layer waits about `wait`), under `permit`.
    Call {
        /// Index of the target.
        target: usize,
        /// The admission wait the target reported (zero if it admits now).
        wait: Duration,
        /// What `acquire` returned for the target (its breaker permit).
        permit: P,
    },
    /// No target can take the request now.
    Exhausted {
        /// The earliest a skipped target could serve (breaker or quota), if any will.
        retry_in: Option<Duration>,
        /// What holds back the target that could serve soonest.
        cause: Exhaustion,
    },
}

/// Why no target could take a request: what holds back the target that could serve soonest.
///
/// A gateway answers differently: quota is a `429` (the caller should slow down), an open
/// breaker a `503` (the backend is sick).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exhaustion {
    /// The request used up its hops, or every target was tried.
    Hops,
    /// A circuit breaker is open.
    BreakerOpen,
    /// The target's quota cannot admit the call within the call's deadline (or ever).
    NoHeadroom,
}

impl Exhaustion {
    /// A short lowercase name, for logs and metrics.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Exhaustion::Hops => "hops",
            Exhaustion::BreakerOpen => "breaker_open",
            Exhaustion::NoHeadroom => "no_headroom",
        }
    }
}

/// The answer of [`Route::after`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Served: return the response.
    Done,
    /// Return the result as it is (the policy says stop, or no move is left).
    Stop,
    /// Choose another target.
    Move,
}

impl fmt::Display for After {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            After::Done => "done",
            After::Stop => "stop",
            After::Move => "move",
        })
    }
}
