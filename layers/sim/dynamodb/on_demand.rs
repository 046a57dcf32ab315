//! An on-demand table's throughput: up to twice the previous peak at once, and the
//! configured maximum, per second ([`OnDemand`]).
//!
//! DynamoDB "instantly accommodates" traffic up to twice the previous peak; a new table
//! sustains 4,000 writes and 12,000 reads per second, and "throttling can still occur if the
//! throughput exceeds twice the previous peak within the same 30 minutes"
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/pre-warming-on-demand-capacity-mode.html>,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode.html>).
//! The simulator counts consumed half units per whole second since its start; the previous
//! peak is the configured starting peak or the busiest second that ended at least 30 minutes
//! ago, whichever is higher, so a new peak raises the ceiling only 30 minutes later. A second
//! admits while its count is below twice the previous peak and below the configured maximum
//! (`MaxReadRequestUnits` / `MaxWriteRequestUnits`,
//! <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode-max-throughput.html>).

use std::collections::VecDeque;

use super::TableConfig;
use super::reason::Limit;

/// Seconds after which a second's consumption counts as the previous peak.
const PEAK_DELAY_SECS: u64 = 30 * 60;

/// One direction (reads or writes) of an on-demand table.
#[derive(Debug)]
struct Direction {
    /// Half units of the previous peak, per second.
    peak: u64,
    /// Half units per second allowed by `MaxRead/WriteRequestUnits`.
    max: Option<u64>,
    /// Half units consumed in `second`.
    used: u64,
    /// Busy seconds younger than [`PEAK_DELAY_SECS`]: (second, half units).
    recent: VecDeque<(u64, u64)>,
}

impl Direction {
    fn new(peak_units: u64, max_units: Option<u64>) -> Self {
        Direction {
            peak: peak_units * 2,
            max: max_units.map(|m| m * 2),
            used: 0,
            recent: VecDeque::new(),
        }
    }

    fn roll(&mut self, from: u64, to: u64) {
        if to == from {
            return;
        }
        if self.used > 0 {
            self.recent.push_back((from, self.used));
            self.used = 0;
        }
        while let Some(&(second, used)) = self.recent.front() {
            if second + PEAK_DELAY_SECS > to {
                break;
            }
            self.peak = self.peak.max(used);
            self.recent.pop_front();
        }
    }

    fn check(&self) -> Result<(), Limit> {
        if self.max.is_some_and(|max| self.used >= max) {
            return Err(Limit::MaxOnDemand);
        }
        if self.used >= 2 * self.peak {
            return Err(Limit::OnDemandPeak);
        }
        Ok(())
    }
}

/// An on-demand table's read and write throughput.
#[derive(Debug)]
pub(super) struct OnDemand {
    second: u64,
    read: Direction,
    write: Direction,
}

impl OnDemand {
    pub(super) fn new(config: &TableConfig) -> Self {
        let (rcu, wcu) = config.previous_peak();
        OnDemand {
            second: 0,
            read: Direction::new(rcu, config.max_read_request_units),
            write: Direction::new(wcu, config.max_write_request_units),
        }
    }

    fn at(&mut self, second: u64) {
        if second > self.second {
            self.read.roll(self.second, second);
            self.write.roll(self.second, second);
            self.second = second;
        }
    }

    /// Whether a read (or write) may start in `second` (whole seconds since the start).
    pub(super) fn check(&mut self, read: bool, second: u64) -> Result<(), Limit> {
        self.at(second);
        if read { &self.read } else { &self.write }.check()
    }

    pub(super) fn spend(&mut self, read: bool, half_units: u64) {
        if read {
            &mut self.read
        } else {
            &mut self.write
        }
        .used += half_units;
    }

    /// The previous peak in force, (RCU, WCU) per second.
    pub(super) fn previous_peak(&mut self, second: u64) -> (f64, f64) {
        self.at(second);
        (self.read.peak as f64 / 2.0, self.write.peak as f64 / 2.0)
    }
}
