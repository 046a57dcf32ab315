//! The sliding window of counted calls a closed breaker trips on: the last `n` calls, or
//! [`TIME_BUCKETS`] buckets of time.

use std::time::Duration;

use tokio::time::Instant;

use super::config::{TIME_BUCKETS, Window};

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Bucket {
    /// Index of the time slot this bucket holds (`elapsed / width`); stale when too old.
    slot: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

/// A sliding window of counted calls, allocated once when the breaker is built.
#[derive(Clone, Debug)]
pub(super) enum Ring {
    /// One byte per call: bit 0 failure, bit 1 slow.
    Count {
        marks: Box<[u8]>,
        next: usize,
        len: usize,
        failures: u32,
        slow: u32,
    },
    Time {
        buckets: Box<[Bucket; TIME_BUCKETS]>,
        width: Duration,
        epoch: Instant,
    },
}

impl Ring {
    pub(super) fn new(window: Window, now: Instant) -> Self {
        match window {
            Window::Count(n) => Ring::Count {
                marks: vec![0; n as usize].into_boxed_slice(),
                next: 0,
                len: 0,
                failures: 0,
                slow: 0,
            },
            Window::Time(d) => Ring::Time {
                buckets: Box::new([Bucket::default(); TIME_BUCKETS]),
                width: (d / TIME_BUCKETS as u32).max(Duration::from_nanos(1)),
                epoch: now,
            },
        }
    }

    pub(super) fn clear(&mut self, now: Instant) {
        match self {
            Ring::Count {
                marks,
                next,
                len,
                failures,
                slow,
            } => {
                marks.fill(0);
                *next = 0;
                *len = 0;
                *failures = 0;
                *slow = 0;
            }
            Ring::Time { buckets, epoch, .. } => {
                buckets.fill(Bucket::default());
                *epoch = now;
            }
        }
    }

    fn slot(epoch: Instant, width: Duration, now: Instant) -> u64 {
        // In u64 nanoseconds (585 years): a 128-bit division is a library call on the hot path.
        let elapsed = crate::nanos(now.saturating_duration_since(epoch));
        elapsed / crate::nanos(width).max(1)
    }

    /// Adds a call and returns `(calls, failures, slow)` in the window.
    pub(super) fn push(&mut self, failure: bool, slow: bool, now: Instant) -> (u32, u32, u32) {
        match self {
            Ring::Count {
                marks,
                next,
                len,
                failures,
                slow: slow_count,
            } => {
                let cap = marks.len();
                if *len == cap {
                    let old = marks[*next];
                    *failures -= u32::from(old & 1);
                    *slow_count -= u32::from((old >> 1) & 1);
                } else {
                    *len += 1;
                }
                marks[*next] = u8::from(failure) | (u8::from(slow) << 1);
                *failures += u32::from(failure);
                *slow_count += u32::from(slow);
                *next = if *next + 1 == cap { 0 } else { *next + 1 };
                (*len as u32, *failures, *slow_count)
            }
            Ring::Time {
                buckets,
                width,
                epoch,
            } => {
                let slot = Ring::slot(*epoch, *width, now);
                let bucket = &mut buckets[(slot % TIME_BUCKETS as u64) as usize];
                if bucket.slot != slot {
                    *bucket = Bucket {
                        slot,
                        ..Bucket::default()
                    };
                }
                bucket.calls += 1;
                bucket.failures += u32::from(failure);
                bucket.slow += u32::from(slow);
                let oldest = slot.saturating_sub(TIME_BUCKETS as u64 - 1);
                buckets
                    .iter()
                    .filter(|b| b.calls > 0 && b.slot >= oldest && b.slot <= slot)
                    .fold((0, 0, 0), |(c, f, s), b| {
                        (c + b.calls, f + b.failures, s + b.slow)
                    })
            }
        }
    }

    /// Turns one counted success in the window into a failure — the newest one, which leaves
    /// the window no earlier than the call it stands for — or adds a failure when the window
    /// holds no success. Returns `(calls, failures, slow)` in the window at `now`.
    pub(super) fn amend_to_failure(&mut self, now: Instant) -> (u32, u32, u32) {
        match self {
            Ring::Count {
                marks,
                next,
                len,
                failures,
                slow,
            } => {
                let cap = marks.len();
                let newest_success = (1..=*len)
                    .map(|back| (*next + cap - back) % cap)
                    .find(|&i| marks[i] & 1 == 0);
                match newest_success {
                    Some(i) => {
                        marks[i] |= 1;
                        *failures += 1;
                        (*len as u32, *failures, *slow)
                    }
                    None => self.push(true, false, now),
                }
            }
            Ring::Time {
                buckets,
                width,
                epoch,
            } => {
                let slot = Ring::slot(*epoch, *width, now);
                let oldest = slot.saturating_sub(TIME_BUCKETS as u64 - 1);
                let in_window = |b: &Bucket| b.calls > 0 && b.slot >= oldest && b.slot <= slot;
                let newest = buckets
                    .iter_mut()
                    .filter(|b| in_window(b) && b.calls > b.failures)
                    .max_by_key(|b| b.slot);
                match newest {
                    Some(bucket) => {
                        bucket.failures += 1;
                        buckets
                            .iter()
                            .filter(|b| in_window(b))
                            .fold((0, 0, 0), |(c, f, s), b| {
                                (c + b.calls, f + b.failures, s + b.slow)
                            })
                    }
                    None => self.push(true, false, now),
                }
            }
        }
    }
}
