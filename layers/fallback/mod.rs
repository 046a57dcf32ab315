//! Fallback routing: when the preferred model or region is overloaded, throttled or down, serve
//! the call from the next one — visibly.
//!
//! - [`Route`]: the sans-IO core. An ordered list of [`Target`]s (Sonnet → Haiku, `us-east-1` →
//!   `us-west-2`, a cross-region inference profile), a [`FallbackPolicy`] from outcome class to
//!   [`Action`] (by default: overloaded → next model; throttled on requests or tokens, or a
//!   spent per-day quota → a target with quota headroom, or the shortest admission wait when
//!   none has; unavailable or timeout →
//!   next target; anything else → stop and let the retry layer decide), and `max_hops`. A
//!   target is skipped when its breaker is open or its quota ([`Headroom`]) cannot admit
//!   within the call's [deadline](crate::deadline).
//! - [`Fallback`]: the Tower adapter, in two forms built by [`FallbackBuilder`]:
//!   (a) [`services`](FallbackBuilder::services) — a router over one service per target (one
//!   client per region); (b) [`rewrite`](FallbackBuilder::rewrite) — a [`FallbackLayer`] over
//!   one service that rewrites each call's request for its target (e.g. the model id in the
//!   Bedrock URI). Each target has its own circuit breaker inside the router
//!   (see [`crate::breaker`] for why the stack is `retry → fallback → breaker → admission`).
//!
//! Degraded-but-working is never silent: the served response carries a [`Served`] record
//! (`http::Response` extension by default, see [`Annotate`]), and
//! `headroom_fallback_total{target, model, region, degraded}` counts which target served.
//! When no target can take a call at all (every breaker open, no quota within the deadline), the
//! router fails fast with [`NoTargetAvailable`] `{ retry_in }`; when the targets it tried all
//! failed, the caller gets the last target's own response or error.
//!
//! The [`Headroom`] trait is the seam to admission: the router asks each target's quota how long
//! a call would wait ([`NoHeadroom`], the default, says "now" for every target).
//!
//! ```
//! use tower::{ServiceExt, service_fn};
//! use tower_headroom::fallback::{FallbackBuilder, Route, Served, Target};
//! use tower_headroom::{Outcome, OutcomeKind};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! let route = Route::builder()
//!     .target(Target::new("sonnet", "anthropic.claude-sonnet").model("sonnet"))
//!     .target(Target::new("haiku", "anthropic.claude-haiku").model("haiku"))
//!     .build()?;
//! let classify = |r: Result<&http::Response<()>, &(dyn std::error::Error + 'static)>| match r {
//!     Ok(res) if res.status().is_success() => Outcome::SUCCESS,
//!     Ok(res) if res.status().as_u16() == 529 => Outcome::new(OutcomeKind::Overloaded),
//!     _ => Outcome::FATAL,
//! };
//! // Form (b): one client, the model id rewritten per target.
//! let layer = FallbackBuilder::new(route, classify)
//!     .rewrite(|req: &mut http::Request<&'static str>, model: &&'static str| *req.body_mut() = model);
//! let bedrock = service_fn(|req: http::Request<&'static str>| async move {
//!     let status = if *req.body() == "anthropic.claude-sonnet" { 529 } else { 200 };
//!     let mut res = http::Response::new(());
//!     *res.status_mut() = http::StatusCode::from_u16(status)?;
//!     Ok::<_, tower_headroom::BoxError>(res)
//! });
//! let response = tower::Layer::layer(&layer, bedrock).oneshot(http::Request::new("")).await?;
//! let served = response.extensions().get::<Served>().unwrap();
//! assert_eq!((&*served.name, served.degraded, served.hops), ("haiku", true, 1));
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(run()).unwrap();
//! ```

mod future;
mod layer;
mod route;

pub use self::future::ResponseFuture;
pub(crate) use self::layer::BreakerSource;
pub use self::layer::{
    Annotate, Dispatch, Fallback, FallbackBuilder, FallbackLayer, HttpExtension, NoAnnotation,
    NoTargetAvailable, Rewrite, Served, Services,
};
pub(crate) use self::layer::{choose, report_served, served_counter};
pub use self::route::{
    Action, After, Choice, Exhaustion, FallbackPolicy, Headroom, MAX_TARGETS, NoHeadroom, Plan,
    QuotaHeadroom, Route, RouteBuilder, Target,
};
