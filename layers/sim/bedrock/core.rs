//! [`BedrockSim`]: the simulated account and its synchronous core, [`BedrockSim::start_call`],
//! which admits or rejects a call at a given instant and never sleeps.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;

use super::state::{Inner, day_index, window_index};
use super::{BEDROCK_WINDOW, BedrockStats, InFlight, ModelCall, ModelStats, RegionStats};
use crate::sim::{Rejection, SimError, after, elapsed, lock};

/// The message of a call over a tokens-per-day quota (the model's or the account's), as
/// Bedrock sends it with its `ThrottlingException`.
pub const DAILY_MESSAGE: &str = "Too many tokens per day, please wait before trying again.";

/// A simulated Bedrock account: every configured (model id, region) with its quotas, shared
/// by all clones and all callers.
///
/// As a [`tower::Service`] it answers a [`ModelCall`] after the latency model with a
/// [`ModelReply`], or after `error_latency` with a [`SimError`]. [`BedrockSim::start_call`]
/// is the synchronous core under it, for fronts that do their own waiting.
///
/// [`ModelReply`]: super::ModelReply
#[derive(Clone, Debug)]
pub struct BedrockSim {
    pub(super) inner: Arc<Inner>,
}

impl BedrockSim {
    /// The instant windows and episodes are counted from.
    pub fn started_at(&self) -> Instant {
        self.inner.inspected();
        self.inner.start
    }

    /// Where the first quota window boundary falls after [`started_at`](Self::started_at),
    /// in `[0, 60 s)` (see the [simulator docs](crate::sim)).
    pub fn window_phase(&self) -> Duration {
        self.inner.inspected();
        self.inner.window_phase
    }

    /// The span of quota window `index`, `[from, to)`: window 0 starts at the start and ends
    /// at the first boundary (60 s later when the phase is zero); every later window lasts
    /// 60 s. The indices are those of [`ModelStats::windows`].
    pub fn window_bounds(&self, index: usize) -> (Instant, Instant) {
        self.inner.inspected();
        let inner = &self.inner;
        let edge = |k: usize| -> Instant {
            // Boundary k (k ≥ 1) is at k × 60 s − offset after the start.
            let k = u32::try_from(k).unwrap_or(u32::MAX);
            after(
                inner.start,
                BEDROCK_WINDOW
                    .saturating_mul(k)
                    .saturating_sub(inner.window_offset),
            )
        };
        let from = if index == 0 { inner.start } else { edge(index) };
        (from, edge(index.saturating_add(1)))
    }

    /// How many times the set-up or state of this simulator was read, by any clone, through
    /// [`started_at`](Self::started_at), [`window_phase`](Self::window_phase),
    /// [`window_bounds`](Self::window_bounds), [`error_latency`](Self::error_latency),
    /// [`stats`](Self::stats) or [`stats_at`](Self::stats_at). Calls themselves are not
    /// counted. For harnesses that must show a client was configured without looking.
    pub fn inspections(&self) -> u64 {
        self.inner.inspections.load(Ordering::Relaxed)
    }

    /// How long a rejection takes to arrive.
    pub fn error_latency(&self) -> Duration {
        self.inner.inspected();
        self.inner.error_latency
    }

    /// The synchronous core: checks the call against its model's state at `now` and either
    /// admits it (reserving `input + cache read + cache write + max_tokens` — the model's
    /// `max_output_tokens` when the call sets none — in its minute and its day, and a
    /// concurrency slot) or rejects it. Never sleeps.
    pub fn start_call(&self, call: &ModelCall, now: Instant) -> Result<InFlight, SimError> {
        let inner = &self.inner;
        let mut state = lock(&inner.state);
        let state = &mut *state;
        let Some(index) = inner
            .models
            .iter()
            .position(|m| *m.model_id == *call.model_id && *m.region == *call.region)
        else {
            state.callers.count(&call.caller, Rejection::Invalid);
            return Err(SimError::new(
                StatusCode::BAD_REQUEST,
                "ValidationException",
                "The provided model identifier is invalid.",
            ));
        };
        let model = &inner.models[index];
        let config = &model.config;
        let st = &mut state.models[index];
        let since_start = elapsed(inner.start, now);
        let window = window_index(since_start, inner.window_offset);
        let day = day_index(since_start, inner.window_offset);
        st.roll(window);
        st.day.roll(day);
        let account = &mut state.accounts[model.region_index];
        account.roll(day);
        let max_tokens = call.max_tokens.unwrap_or(config.max_output_tokens);
        let reserved = model.spec.reservation(
            call.input_tokens,
            call.cache_read_tokens,
            call.cache_write_tokens,
            Some(max_tokens),
        );
        let daily = || {
            SimError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "ThrottlingException",
                DAILY_MESSAGE,
            )
        };

        let rejection = if max_tokens == 0 || max_tokens > config.max_output_tokens {
            Some((
                Rejection::Invalid,
                SimError::new(
                    StatusCode::BAD_REQUEST,
                    "ValidationException",
                    format!(
                        "The maximum tokens you requested exceeds the model limit of {max}. \
                         Try again with a maximum tokens value that is between 1 and {max}.",
                        max = config.max_output_tokens
                    ),
                ),
            ))
        } else if config.outages.iter().any(|e| e.contains(since_start)) {
            Some((
                Rejection::Unavailable,
                SimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    "Service temporarily unavailable",
                ),
            ))
        } else if config.overloads.iter().any(|e| e.contains(since_start))
            || st.random.as_mut().is_some_and(|r| r.contains(since_start))
        {
            Some((
                Rejection::Overloaded,
                SimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    model.overloaded_message.clone(),
                ),
            ))
        } else if config
            .max_concurrency
            .is_some_and(|max| st.in_flight >= max)
        {
            Some((
                Rejection::Connections,
                SimError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    "Too many connections",
                ),
            ))
        } else if st.day.tokens.saturating_add(reserved) > model.tpd
            || inner
                .account_tpd
                .is_some_and(|tpd| account.tokens.saturating_add(reserved) > tpd)
        {
            Some((Rejection::Daily, daily()))
        } else if config
            .rpm
            .is_some_and(|rpm| st.windows[window].requests >= rpm)
        {
            Some((
                Rejection::Requests,
                SimError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ThrottlingException",
                    "Too many requests, please wait before trying again.",
                ),
            ))
        } else if st.windows[window].tokens.saturating_add(reserved) > config.tpm {
            Some((
                Rejection::Tokens,
                SimError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "ThrottlingException",
                    "Too many tokens, please wait before trying again.",
                ),
            ))
        } else {
            None
        };
        if let Some((rejection, error)) = rejection {
            st.counts.count(rejection);
            state.callers.count(&call.caller, rejection);
            return Err(error);
        }

        account.tokens = account.tokens.saturating_add(reserved);
        st.day.tokens = st.day.tokens.saturating_add(reserved);
        let w = &mut st.windows[window];
        w.requests += 1;
        w.tokens = w.tokens.saturating_add(reserved);
        st.counts.admitted += 1;
        st.tokens_reserved = st.tokens_reserved.saturating_add(reserved);
        st.in_flight += 1;
        st.peak_in_flight = st.peak_in_flight.max(st.in_flight);
        if let Some((counts, _)) = state.callers.entry(&call.caller) {
            counts.admitted += 1;
        }
        let output_tokens = config.output.sample(&mut st.output_rng, max_tokens);
        let latency = config.ttft.saturating_add(Duration::from_nanos(
            crate::nanos(config.per_output_token).saturating_mul(output_tokens),
        ));
        Ok(InFlight {
            inner: inner.clone(),
            model: index,
            window,
            day,
            reserved,
            input_tokens: call.input_tokens,
            cache_read_tokens: call.cache_read_tokens,
            cache_write_tokens: call.cache_write_tokens,
            output_tokens,
            max_tokens,
            latency,
            completes_at: after(now, latency),
            caller: call.caller.clone(),
            finished: false,
        })
    }

    /// A snapshot of every model's and caller's statistics, with windows up to now.
    pub fn stats(&self) -> BedrockStats {
        self.stats_at(Instant::now())
    }

    /// A snapshot with windows up to `now`.
    pub fn stats_at(&self, now: Instant) -> BedrockStats {
        let inner = &self.inner;
        inner.inspected();
        let mut state = lock(&inner.state);
        let since_start = elapsed(inner.start, now);
        let window = window_index(since_start, inner.window_offset);
        let day = day_index(since_start, inner.window_offset);
        let models = inner
            .models
            .iter()
            .zip(state.models.iter_mut())
            .map(|(model, st)| {
                st.roll(window);
                st.day.roll(day);
                ModelStats {
                    model_id: model.model_id.clone(),
                    region: model.region.clone(),
                    rpm: model.config.rpm,
                    tpm: model.config.tpm,
                    tpd: model.tpd,
                    day: st.day.day,
                    day_tokens: st.day.tokens,
                    cache_read_tokens: st.cache_read_tokens,
                    cache_write_tokens: st.cache_write_tokens,
                    counts: st.counts,
                    tokens_reserved: st.tokens_reserved,
                    tokens_settled: st.tokens_settled,
                    input_tokens: st.input_tokens,
                    output_tokens: st.output_tokens,
                    in_flight: st.in_flight,
                    peak_in_flight: st.peak_in_flight,
                    windows: st.windows.clone(),
                }
            })
            .collect();
        let regions = inner
            .regions
            .iter()
            .zip(state.accounts.iter_mut())
            .map(|(region, account)| {
                account.roll(day);
                RegionStats {
                    region: region.clone(),
                    account_tpd: inner.account_tpd,
                    day: account.day,
                    day_tokens: account.tokens,
                }
            })
            .collect();
        BedrockStats {
            models,
            regions,
            callers: state.callers.snapshot(),
        }
    }
}
