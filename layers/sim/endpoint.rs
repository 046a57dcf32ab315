//! A plain HTTP endpoint with a rate limit (a Modal-style inference endpoint, an internal API):
//! over the limit it answers `429 Too Many Requests` with `Retry-After` in whole seconds,
//! rounded up (never 0).
//!
//! Two limits:
//! - [`EndpointLimit::FixedWindow`]: `requests` per `window`, windows counted from the
//!   simulator's start; `Retry-After` is the time to the next window.
//! - [`EndpointLimit::TokenBucket`]: `requests` per `per`, holding at most `burst` requests,
//!   starting full; `Retry-After` is the time until one request's worth has refilled.
//!
//! Responses are `http::Response<String>`: `200` with body `{"ok":true}`, or `429` with
//! `retry-after` and body `{"message":"Too Many Requests"}`; classify them with
//! [`HttpClassifier`](crate::HttpClassifier). A [`SimCaller`] request extension labels the
//! call for per-caller statistics.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use super::{CallerStats, Callers, Rejection, SimCounts, after, elapsed, lock, serde_time};
use crate::ConfigError;

fn default_latency() -> Duration {
    Duration::from_millis(50)
}
fn default_error_latency() -> Duration {
    Duration::from_millis(5)
}

/// The endpoint's rate limit.
///
/// In configuration files: `{ kind = "fixed_window", requests = 60, window_s = 60 }` or
/// `{ kind = "token_bucket", requests = 10, per_s = 1, burst = 20 }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EndpointLimit {
    /// At most `requests` per fixed `window`.
    FixedWindow {
        /// Requests per window.
        requests: u64,
        /// The window length.
        #[serde(rename = "window_s", with = "serde_time::secs")]
        window: Duration,
    },
    /// A token bucket refilled with `requests` per `per`, holding at most `burst`.
    TokenBucket {
        /// Requests refilled per `per`.
        requests: u64,
        /// The refill period.
        #[serde(rename = "per_s", with = "serde_time::secs")]
        per: Duration,
        /// The most requests the bucket holds (and starts with).
        burst: u64,
    },
}

impl EndpointLimit {
    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            EndpointLimit::FixedWindow { requests, window } => {
                if requests == 0 {
                    return Err(ConfigError::new(
                        "limit.requests",
                        requests,
                        "must be at least 1",
                    ));
                }
                if window.is_zero() {
                    return Err(ConfigError::new(
                        "limit.window",
                        window,
                        "must be longer than zero",
                    ));
                }
            }
            EndpointLimit::TokenBucket {
                requests,
                per,
                burst,
            } => {
                if requests == 0 {
                    return Err(ConfigError::new(
                        "limit.requests",
                        requests,
                        "must be at least 1",
                    ));
                }
                if per.is_zero() {
                    return Err(ConfigError::new(
                        "limit.per",
                        per,
                        "must be longer than zero",
                    ));
                }
                if burst == 0 {
                    return Err(ConfigError::new("limit.burst", burst, "must be at least 1"));
                }
            }
        }
        Ok(())
    }
}

/// A simulated endpoint, as a configuration file describes it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// The rate limit.
    pub limit: EndpointLimit,
    /// How long a successful answer takes (default 50 ms).
    #[serde(
        rename = "latency_ms",
        with = "serde_time::millis",
        default = "default_latency"
    )]
    pub latency: Duration,
    /// How long a 429 takes (default 5 ms).
    #[serde(
        rename = "error_latency_ms",
        with = "serde_time::millis",
        default = "default_error_latency"
    )]
    pub error_latency: Duration,
}

/// Builds an [`EndpointSim`].
#[derive(Clone, Debug)]
pub struct EndpointSimBuilder {
    limit: Option<EndpointLimit>,
    latency: Duration,
    error_latency: Duration,
    start: Option<Instant>,
}

impl EndpointSimBuilder {
    /// The rate limit (required).
    pub fn limit(mut self, limit: EndpointLimit) -> Self {
        self.limit = Some(limit);
        self
    }
    /// How long a successful answer takes (default 50 ms).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
    /// How long a 429 takes (default 5 ms).
    pub fn error_latency(mut self, latency: Duration) -> Self {
        self.error_latency = latency;
        self
    }
    /// The simulator's start, where fixed windows are counted from (default: the moment
    /// [`build`](Self::build) runs).
    pub fn start(mut self, start: Instant) -> Self {
        self.start = Some(start);
        self
    }
    /// Validates the limit and builds the simulator.
    pub fn build(self) -> Result<EndpointSim, ConfigError> {
        let Some(limit) = self.limit else {
            return Err(ConfigError::new("limit", "unset", "a rate limit is needed"));
        };
        limit.validate()?;
        let start = self.start.unwrap_or_else(Instant::now);
        let limiter = match limit {
            EndpointLimit::FixedWindow { requests, window } => Limiter::Window {
                requests,
                window_nanos: window.as_nanos(),
                index: 0,
                count: 0,
            },
            EndpointLimit::TokenBucket {
                requests,
                per,
                burst,
            } => {
                let cost = u128::from(crate::nanos(per));
                let max = u128::from(burst).saturating_mul(cost);
                Limiter::Bucket {
                    requests: u128::from(requests),
                    cost,
                    max,
                    level: max,
                    last: start,
                }
            }
        };
        Ok(EndpointSim {
            inner: Arc::new(Inner {
                start,
                limit,
                latency: self.latency,
                error_latency: self.error_latency,
                state: Mutex::new(State {
                    limiter,
                    counts: SimCounts::default(),
                    callers: Callers::default(),
                }),
            }),
        })
    }
}

/// A request extension naming the calling application, for per-caller statistics.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimCaller(pub Arc<str>);

/// A simulated rate-limited HTTP endpoint, shared by all clones and all callers.
#[derive(Clone, Debug)]
pub struct EndpointSim {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    limit: EndpointLimit,
    latency: Duration,
    error_latency: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limiter: Limiter,
    counts: SimCounts,
    callers: Callers,
}

#[derive(Debug)]
enum Limiter {
    Window {
        requests: u64,
        window_nanos: u128,
        index: u128,
        count: u64,
    },
    /// Level in request × `per`-nanoseconds: a refill of `requests` per nanosecond, and a
    /// request costs `per` in nanoseconds, so the arithmetic is exact integers.
    Bucket {
        requests: u128,
        cost: u128,
        max: u128,
        level: u128,
        last: Instant,
    },
}

/// Whole seconds, rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1)
}

impl EndpointSim {
    /// A builder; set the limit.
    pub fn builder() -> EndpointSimBuilder {
        EndpointSimBuilder {
            limit: None,
            latency: default_latency(),
            error_latency: default_error_latency(),
            start: None,
        }
    }

    /// Builds a simulator from a deserialized configuration, starting now.
    pub fn from_config(config: EndpointConfig) -> Result<Self, ConfigError> {
        EndpointSim::builder()
            .limit(config.limit)
            .latency(config.latency)
            .error_latency(config.error_latency)
            .build()
    }

    /// The configured limit.
    pub fn limit(&self) -> EndpointLimit {
        self.inner.limit
    }

    /// The synchronous core: admits one request at `now`, or says how long until one would
    /// be admitted (the exact wait; the `Retry-After` header rounds it up to whole seconds).
    pub fn admit(&self, caller: Option<&Arc<str>>, now: Instant) -> Result<(), Duration> {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        let state = &mut *state;
        let result = match &mut state.limiter {
            Limiter::Window {
                requests,
                window_nanos,
                index,
                count,
            } => {
                let since = elapsed(inner.start, now).as_nanos();
                let current = since / *window_nanos;
                if current != *index {
                    *index = current;
                    *count = 0;
                }
                if *count < *requests {
                    *count += 1;
                    Ok(())
                } else {
                    let end = (current + 1) * *window_nanos;
                    Err(Duration::from_nanos(
                        u64::try_from(end - since).unwrap_or(u64::MAX),
                    ))
                }
            }
            Limiter::Bucket {
                requests,
                cost,
                max,
                level,
                last,
            } => {
                if now > *last {
                    let dt = u128::from(crate::nanos(now - *last));
                    *level = level.saturating_add(dt.saturating_mul(*requests)).min(*max);
                    *last = now;
                }
                if *level >= *cost {
                    *level -= *cost;
                    Ok(())
                } else {
                    let wait = (*cost - *level).div_ceil(*requests);
                    Err(Duration::from_nanos(
                        u64::try_from(wait).unwrap_or(u64::MAX),
                    ))
                }
            }
        };
        let caller = caller.cloned();
        match result {
            Ok(()) => {
                state.counts.admitted += 1;
                state.counts.completed += 1;
                if let Some((counts, units)) = state.callers.entry(&caller) {
                    counts.admitted += 1;
                    counts.completed += 1;
                    *units += 1.0;
                }
            }
            Err(_) => {
                state.counts.count(Rejection::Requests);
                state.callers.count(&caller, Rejection::Requests);
            }
        }
        result
    }

    /// The response the endpoint gives for `admit`'s answer.
    pub fn response(result: Result<(), Duration>) -> http::Response<String> {
        match result {
            Ok(()) => {
                let mut res = http::Response::new(String::from(r#"{"ok":true}"#));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res
            }
            Err(wait) => {
                let mut res =
                    http::Response::new(String::from(r#"{"message":"Too Many Requests"}"#));
                *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(wait)),
                );
                res
            }
        }
    }

    /// A snapshot of the endpoint's and callers' statistics.
    pub fn stats(&self) -> EndpointStats {
        self.stats_at(Instant::now())
    }

    /// A snapshot at `now`.
    pub fn stats_at(&self, now: Instant) -> EndpointStats {
        let state = lock(&self.inner.state);
        EndpointStats {
            elapsed: elapsed(self.inner.start, now),
            counts: state.counts,
            callers: state.callers.snapshot(),
        }
    }
}

/// A snapshot of an [`EndpointSim`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Time from the simulator's start to the snapshot.
    pub elapsed: Duration,
    /// Requests by what happened to them (rejections are `throttled_requests`).
    pub counts: SimCounts,
    /// Per caller label.
    pub callers: Vec<CallerStats>,
}

impl<B> tower_service::Service<http::Request<B>> for EndpointSim {
    type Response = http::Response<String>;
    type Error = Infallible;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> EndpointFuture {
        let now = Instant::now();
        let caller = req.extensions().get::<SimCaller>().map(|c| &c.0);
        let result = self.admit(caller, now);
        let latency = match result {
            Ok(()) => self.inner.latency,
            Err(_) => self.inner.error_latency,
        };
        EndpointFuture {
            sleep: tokio::time::sleep_until(after(now, latency)),
            response: Some(EndpointSim::response(result)),
        }
    }
}

pin_project! {
    /// The future of an [`EndpointSim`] call: the response, after the latency.
    pub struct EndpointFuture {
        #[pin]
        sleep: Sleep,
        response: Option<http::Response<String>>,
    }
}

impl Future for EndpointFuture {
    type Output = Result<http::Response<String>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        ready!(this.sleep.poll(cx));
        Poll::Ready(Ok(this
            .response
            .take()
            .expect("EndpointFuture polled after completion")))
    }
}

impl std::fmt::Debug for EndpointFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointFuture").finish_non_exhaustive()
    }
}
