//! The whole stack in a few lines: retry → fallback router (a breaker per target) → admission
//! per target → your client, with defaults for Bedrock, DynamoDB and plain HTTP.
//!
//! ```text
//!   call ──▶ Retry ──▶ Fallback router ──▶ target i: [breaker i] ──▶ Admission(key i) ──▶ client
//!            (budget,   (skips open          (fails fast, counts     (reserve, wait or shed,
//!             backoff)   breakers and          only its own target)   settle real usage)
//!                        targets without quota headroom)
//! ```
//!
//! The order, outermost first, and why:
//!
//! - **Retry outside everything.** A retry is a new call: it goes through the router again (so
//!   it can land on another target when the first is still sick) and through admission again
//!   (so a retry spends quota like any call — retrying *around* admission is how clients cause
//!   the 429s they then retry). Its budget bounds amplification across all targets.
//! - **Fallback router next**, holding one circuit breaker per target. The router must see
//!   every target's breaker before choosing (skip the open ones, fail fast with
//!   [`NoTargetAvailable`](crate::fallback::NoTargetAvailable) when all are), and a breaker
//!   must count only its own target's outcomes: a breaker outside the router would open on
//!   the sum of all targets, and one inside each target's admission would open on quota
//!   waits it never sent.
//! - **Admission innermost, per target**, keyed by the target's key (model × region): each
//!   target's quota is its own, the router reads it as headroom
//!   ([`QuotaHeadroom`](crate::fallback::QuotaHeadroom)) to prefer targets that can admit now,
//!   and only calls that are really sent spend it. A call the breaker stops never reserves.
//!
//! Classification happens once per layer with the one classifier you give; every layer speaks
//! [`Outcome`](crate::Outcome).
//!
//! ```
//! use std::time::Duration;
//! use tower::{ServiceExt, service_fn};
//! use tower_headroom::admission::{FixedCost, Limit, Quota};
//! use tower_headroom::fallback::{Served, Target};
//! use tower_headroom::stack::StackBuilder;
//! use tower_headroom::{Cost, HttpClassifier};
//!
//! # async fn run() -> Result<(), tower_headroom::BoxError> {
//! // One upstream client; the model id in the URI is rewritten per target.
//! let upstream = service_fn(|req: http::Request<String>| async move {
//!     let status = if req.uri().path().contains("sonnet") { 503 } else { 200 };
//!     Ok::<_, http::Error>(http::Response::builder().status(status).body(String::new())?)
//! });
//! let quota = Quota::new(Limit::per_minute().requests(100).build()?);
//! let client = StackBuilder::bedrock(HttpClassifier::new())
//!     .target(Target::new("sonnet", "anthropic.claude-sonnet"))
//!     .target(Target::new("haiku", "anthropic.claude-haiku"))
//!     .admission(quota, FixedCost(Cost::ONE_REQUEST))
//!     .rewrite(upstream, |req: &mut http::Request<String>, model: &&str| {
//!         *req.uri_mut() = format!("/model/{model}/converse").parse().unwrap();
//!     })?;
//! let response = client.oneshot(http::Request::new(String::new())).await?;
//! assert_eq!(response.status(), 200);
//! assert!(response.extensions().get::<Served>().unwrap().degraded); // Haiku answered
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(run()).unwrap();
//! ```

mod builder;
mod driver;
mod future;
mod profile;
mod response;
mod service;

pub use self::builder::{
    Admit, Admits, Admitting, NoAdmission, NoRewrite, RewriteFor, StackBuilder, TargetQuota,
    TargetSlots,
};
pub use self::future::ResponseFuture;
pub use self::profile::Profile;
pub use self::response::error_response;
pub use self::service::Stack;
