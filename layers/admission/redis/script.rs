//! The server side: the Lua script that takes and gives back budget atomically on the
//! Redis server's clock (its source is `script.lua`, beside this file), the key layout, and
//! the script's replies.

use std::fmt;

use redis::Script;

use super::StoreError;

/// One key's shared budget, as the in-process cores keep it, restated in Lua on doubles (Lua
/// numbers): the token bucket that allows debt (`model` `b`) or the sliding window of time
/// slots (`model` `w`), per dimension (requests, units); a child bucket per tenant for shares;
/// the learned limit per dimension (`admission::learn`); and, for windows, the hold and probe
/// after an unpredicted throttle (`admission::window`). Times are microseconds on the
/// server's clock (`TIME`), or the caller's when it passes one (`now`, for tests).
///
/// - `take` grants `want` (per dimension) or answers how many microseconds until the budget
///   will hold it. Bucket: when the bucket holds `min(want, cap)`; a tenant whose child bucket
///   holds its part is *within share* and may take the parent one grant into debt, which
///   borrowers may not, so that a tenant's guaranteed share is not starved by borrowers
///   polling for the same refill. Window: when the trailing window's spend plus `want` fits
///   the learned limit, nothing holds the key back and no probe is out; the grant is recorded
///   in the current slot, and the answer carries its time (for `give`) and whether it is the
///   probe.
/// - `give` returns unused budget (or, negative, charges debt): to the bucket, capped at its
///   capacity; to the window, in the slot of the grant it came from (`at`), if that slot is
///   still in the window.
/// - `learn` reports how a call ended (`outcome` `s` success, `t` throttle of the dimensions
///   in `dims`), whether its budget was the probe's, when it was granted (`at`), and the
///   server's `Retry-After`, with the in-process cores' rules.
/// - `state` answers the learned limit and the window's spend per dimension (tests, stats).
/// - Long windows (`admission::long`, tokens per day): one ring of time slots per window and
///   dimension, checked before the primary window by `take` (the answer's third field names
///   the window that binds), charged on a grant, given back by `give` in the grant's slot; a
///   `learn` of a daily throttle (`outcome` `d`) spends the longest window or, without one,
///   holds the key (`dh`) until one grant probes (`dp`; probe bit 2).
///
/// A bucket whose key has no state starts at the limit's initial credit (at least one lease),
/// as the in-process core's does (`LimitBuilder::initial_credit`).
///
/// Every state lives in one hash per quota key, so the script touches one key (one cluster
/// slot); `PEXPIRE` forgets it once idle long enough that it is at rest again (a bucket
/// forgotten so restarts at its initial credit, as an evicted in-process key does: less than
/// the provider may hold, never more).
const LUA: &str = include_str!("script.lua");

/// The script, hashed once: `redis::Script` sends `EVALSHA` and falls back to loading it on
/// `NOSCRIPT` (a restarted server, a failover).
pub(crate) fn script() -> Script {
    Script::new(LUA)
}

/// The Redis key of one quota key: `headroom:{<quota name>:<key>}`. The braces are a cluster
/// hash tag, so everything stored for one quota key lives in one slot; the quota's buckets and
/// its tenants' are fields of this one hash.
///
/// ```
/// use tower_headroom::admission::redis::redis_key;
///
/// assert_eq!(redis_key("bedrock", &"claude/us-east-1"), "headroom:{bedrock:claude/us-east-1}");
/// ```
pub fn redis_key(quota: &str, key: &dyn fmt::Display) -> String {
    format!("headroom:{{{quota}:{key}}}")
}

/// What the script answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Granted (or done, for `give` and `learn`), at the server's time `at` (microseconds);
    /// `within` when charged to the tenant's share; `probe` when the grant probes a window
    /// held back after a throttle.
    /// `probe` bits: 1 the window's probe after a throttle, 2 the daily hold's.
    Granted { within: bool, probe: u8, at: u64 },
    /// Not yet: the budget will hold it in this many microseconds; `bound` names what binds
    /// (0 the window, `i` long window `i` (from 1), 255 a daily hold).
    Wait { us: u64, bound: u8 },
}

/// What one script call does, beyond the key's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Op {
    pub(crate) name: &'static str,
    pub(crate) amount: [i64; 2],
    pub(crate) tenant: Option<u16>,
    pub(crate) within: bool,
    /// `give`: when the budget given back was granted; `learn`: when the call's was.
    pub(crate) at: u64,
    /// `learn`: `s` success, `t` throttle, `d` daily throttle.
    pub(crate) outcome: &'static str,
    /// `learn`: the dimensions a throttle named (bit 1 requests, bit 2 units).
    pub(crate) dims: u8,
    /// `learn`: the grant's probe bits (see [`Answer::Granted`]).
    pub(crate) probe: u8,
    pub(crate) retry_after_us: u64,
    /// The time to use instead of the server's (tests); `None`: the server's `TIME`.
    pub(crate) now: Option<u64>,
}

impl Op {
    /// A `take` of `amount`.
    pub(crate) fn take(amount: [i64; 2], tenant: Option<u16>) -> Self {
        Op {
            name: "take",
            amount,
            tenant,
            within: false,
            at: 0,
            outcome: "s",
            dims: 0,
            probe: 0,
            retry_after_us: 0,
            now: None,
        }
    }

    /// A `give` of `amount`, granted at `at`.
    pub(crate) fn give(amount: [i64; 2], tenant: Option<u16>, within: bool, at: u64) -> Self {
        Op {
            name: "give",
            within,
            at,
            ..Op::take(amount, tenant)
        }
    }

    /// A `learn` of how a call granted at `at` ended.
    pub(crate) fn learn(outcome: &crate::Outcome, limited: [bool; 2], probe: u8, at: u64) -> Self {
        let (name, dims) = match crate::admission::state::named_dims(outcome, limited) {
            _ if crate::admission::state::is_daily(outcome) => ("d", 0),
            Some(named) => ("t", u8::from(named[0]) | (u8::from(named[1]) << 1)),
            None => ("s", 0),
        };
        Op {
            name: "learn",
            at,
            outcome: name,
            dims,
            probe,
            retry_after_us: outcome
                .retry_after
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            ..Op::take([0, 0], None)
        }
    }
}

/// The script's arguments for one key (all but the operation's).
#[derive(Clone, Debug)]
pub(crate) struct Args {
    pub(crate) window_us: u64,
    pub(crate) limits: [u64; 2],
    pub(crate) caps: [u64; 2],
    /// The level a bucket starts at when its key has no state (its initial credit), per
    /// dimension.
    pub(crate) initial: [u64; 2],
    pub(crate) shares: Option<(std::sync::Arc<[u64]>, u64)>,
    pub(crate) child_caps_us: u64,
    pub(crate) ttl_ms: u64,
    /// `w`: sliding window; `b`: token bucket.
    pub(crate) model: &'static str,
    /// Time slots per window (the window's ring, or the bucket's spend ring for learning).
    pub(crate) slots: u64,
    /// Learning: the least share one cut keeps, the share of the gap a window regains, the
    /// floor.
    pub(crate) learning: [f64; 3],
    /// Long windows: window (µs), slots, requests and units limits (0: none).
    pub(crate) long: Vec<[u64; 4]>,
}

impl Args {
    pub(crate) fn invoke<'a>(
        &self,
        script: &'a Script,
        key: &str,
        op: &Op,
    ) -> redis::ScriptInvocation<'a> {
        let (tenant, num, den) = match (&self.shares, op.tenant) {
            (Some((weights, total)), Some(t)) if usize::from(t) < weights.len() => {
                (i64::from(t), weights[usize::from(t)], *total)
            }
            _ => (-1, 1, 1),
        };
        // A child's capacity is its share of the rate times the share burst.
        let ccap = |d: usize| {
            let rate = self.limits[d] as f64 * num as f64 / den as f64 / self.window_us as f64;
            (rate * self.child_caps_us as f64).ceil() as u64
        };
        let mut inv = script.key(key);
        inv.arg(self.window_us)
            .arg(self.limits[0])
            .arg(self.limits[1])
            .arg(self.caps[0])
            .arg(self.caps[1])
            .arg(op.amount[0])
            .arg(op.amount[1])
            .arg(tenant)
            .arg(num)
            .arg(den)
            .arg(ccap(0))
            .arg(ccap(1))
            .arg(self.ttl_ms)
            .arg(op.name)
            .arg(if op.within { "1" } else { "0" })
            .arg(self.model)
            .arg(self.slots)
            .arg(self.learning[0])
            .arg(self.learning[1])
            .arg(self.learning[2])
            .arg(op.at)
            .arg(op.outcome)
            .arg(op.dims)
            .arg(op.probe)
            .arg(op.retry_after_us)
            .arg(op.now.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)))
            .arg(self.long.len());
        for w in &self.long {
            inv.arg(w[0]).arg(w[1]).arg(w[2]).arg(w[3]);
        }
        inv.arg(self.initial[0]).arg(self.initial[1]);
        inv
    }
}

pub(crate) fn answer(reply: &[i64]) -> Result<Answer, StoreError> {
    match reply {
        [1, _, within, probe, at] => Ok(Answer::Granted {
            within: *within == 1,
            probe: u8::try_from(*probe).unwrap_or(0),
            at: u64::try_from(*at).unwrap_or(0),
        }),
        [0, wait, bound, ..] => Ok(Answer::Wait {
            us: u64::try_from(*wait).unwrap_or(0).max(1),
            bound: u8::try_from(*bound).unwrap_or(0),
        }),
        _ => Err(StoreError::Reply),
    }
}

/// The answer of `state`: per dimension, the learned limit and the window's spend (`None`
/// for a dimension the limit does not have).
pub(crate) fn state(reply: &[i64]) -> Result<[Option<(u64, u64)>; 2], StoreError> {
    match reply {
        [2, e0, s0, e1, s1] => {
            let dim = |e: i64, s: i64| {
                (e >= 0).then(|| (u64::try_from(e).unwrap_or(0), u64::try_from(s).unwrap_or(0)))
            };
            Ok([dim(*e0, *s0), dim(*e1, *s1)])
        }
        _ => Err(StoreError::Reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_quota_key_share_a_cluster_slot() {
        let key = redis_key("bedrock", &"claude/us-east-1");
        let tag = redis::cluster_routing::Slot::for_key("{bedrock:claude/us-east-1}");
        assert_eq!(redis::cluster_routing::Slot::for_key(&key), tag);
        // Another key of the same quota hashes by its own tag.
        let other = redis_key("bedrock", &"titan/eu-west-1");
        assert_eq!(
            redis::cluster_routing::Slot::for_key(&other),
            redis::cluster_routing::Slot::for_key("{bedrock:titan/eu-west-1}")
        );
    }

    #[test]
    fn answers_and_errors() {
        assert_eq!(
            answer(&[1, 0, 1, 0, 77]),
            Ok(Answer::Granted {
                within: true,
                probe: 0,
                at: 77
            })
        );
        assert_eq!(
            answer(&[0, 250, 0, 0, 1]),
            Ok(Answer::Wait { us: 250, bound: 0 })
        );
        assert_eq!(
            answer(&[0, -3, 1, 0, 1]),
            Ok(Answer::Wait { us: 1, bound: 1 })
        );
        assert_eq!(state(&[2, 10, 3, -1, -1]), Ok([Some((10, 3)), None]));
        assert_eq!(answer(&[7]), Err(StoreError::Reply));
    }
}
