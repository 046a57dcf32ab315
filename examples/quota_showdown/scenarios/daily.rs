//! Scenario 7, a daily quota: a batch job that spends the primary model's tokens per day
//! around the middle of the run, beside interactive chat, with a second model as the fallback
//! target.
//!
//! The primary's tokens per day is small (800,000, the console's number for it) so that the
//! day runs out inside ten simulated minutes; the simulator's day itself keeps its 24 hours,
//! so nothing comes back before the run ends. A client that keeps retrying the primary spends
//! every retry on the daily `ThrottlingException` ("Too many tokens per day"); a client that
//! knows its day is spent sends the work to the fallback at once.

use std::time::Duration;

use tower::BoxError;
use tower_headroom::sim::BedrockStats;

use super::schedule::{arrivals, bedrock, chat, model, rng};
use super::{App, EAST, HAIKU, Parts, SONNET, Work, app, plan, route};

/// Tokens per minute of both models.
pub const TPM: u64 = 300_000;
/// Tokens per day of the primary: about five minutes of this traffic.
pub const PRIMARY_TPD: u64 = 800_000;
/// The batch's input tokens and `maxTokens`.
const BATCH: (u64, u64) = (10_000, 2_000);

/// The table's title.
pub const TITLE: &str = "daily quota: batch 10/min of 10,000 in + 2,000 max beside chat 40/min on a 300,000 TPM, 800,000 TPD model; a second model as fallback";
/// The footer's note on utilisation.
pub const UTILISATION: &str = "tokens counted against the primary model's day at the end / its 800,000 TPD (the day does not end inside the run)";

/// Scenario 7's extra columns: where the work went once the primary's day was spent.
#[derive(Clone, Debug, PartialEq)]
pub struct Daily {
    /// Our attempts the simulator answered "Too many tokens per day" (either model).
    pub daily_throttles: u64,
    /// Calls completed by the primary model.
    pub primary_completed: u64,
    /// Calls completed by the fallback model.
    pub fallback_completed: u64,
    /// The first second (after the start) at which the primary's day had no room left for a
    /// batch call, by the simulator's accounting; `None` if it never ran out.
    pub spent_at_s: Option<u64>,
    /// The first second at which the fallback model had admitted a call; `None` if it never
    /// did.
    pub first_fallback_at_s: Option<u64>,
}

/// Scenario 7: chat 40/min and batch 10/min on the primary (300,000 TPM, 800,000 TPD, no
/// RPM), the fallback model with the same TPM and its default day.
pub(super) fn daily_quota(seed: u64, span: (Duration, Duration)) -> Result<Parts, BoxError> {
    let (backend, console) = bedrock(
        vec![
            model(SONNET, EAST, TPM).tpd(PRIMARY_TPD).build()?,
            model(HAIKU, EAST, TPM).build()?,
        ],
        seed,
    )?;
    // About 62,000 settled tokens a minute of chat and 103,000 of batch: the primary's day is
    // spent after about five minutes.
    let mut out = Vec::new();
    arrivals(&mut rng(seed, 0), 0, span, |_| 40, chat, &mut out);
    let batch = |_: &mut fastrand::Rng| Work::Model {
        input_tokens: BATCH.0,
        max_tokens: BATCH.1,
    };
    arrivals(&mut rng(seed, 1), 1, span, |_| 10, batch, &mut out);
    let apps = vec![
        app("chat", SONNET, EAST),
        App {
            batch: true,
            ..app("batch", SONNET, EAST)
        },
    ];
    let routes = vec![route("sonnet", SONNET, EAST), route("haiku", HAIKU, EAST)];
    Ok(Parts::new(backend, console, plan(apps, routes), out))
}

/// Per-second probes of a run, for [`Daily`]'s two instants.
#[derive(Debug, Default)]
pub(super) struct Probe {
    spent_at_s: Option<u64>,
    first_fallback_at_s: Option<u64>,
}

impl Probe {
    /// Looks at the simulator at the end of second `second`.
    pub(super) fn sample(&mut self, second: u64, stats: &BedrockStats) {
        let (Some(primary), Some(fallback)) = (stats.models.first(), stats.models.get(1)) else {
            return;
        };
        let room = primary.tpd.saturating_sub(primary.day_tokens);
        if self.spent_at_s.is_none()
            && (room < BATCH.0 + BATCH.1 || primary.counts.throttled_daily > 0)
        {
            self.spent_at_s = Some(second);
        }
        if self.first_fallback_at_s.is_none() && fallback.counts.admitted > 0 {
            self.first_fallback_at_s = Some(second);
        }
    }

    /// The row's columns, from the probe and the final statistics.
    pub(super) fn daily(&self, stats: &BedrockStats) -> Daily {
        let model = |i: usize| stats.models.get(i);
        Daily {
            daily_throttles: stats.models.iter().map(|m| m.counts.throttled_daily).sum(),
            primary_completed: model(0).map_or(0, |m| m.counts.completed),
            fallback_completed: model(1).map_or(0, |m| m.counts.completed),
            spent_at_s: self.spent_at_s,
            first_fallback_at_s: self.first_fallback_at_s,
        }
    }
}
