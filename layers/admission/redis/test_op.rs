//! The shared state's operations at an explicit time, for the differential tests
//! (`tests/redis_differential.rs`): [`TestOp`], [`TestAnswer`], `RedisStore::test_op`.

use tokio::time::Instant;

use super::script::{self, Answer, Op};
use super::store::{Key, RedisStore};
use super::{StoreError, sat};
use crate::Outcome;
use crate::admission::{Cost, QuotaStore};

/// One operation on a key's shared state, for [`RedisStore::test_op`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum TestOp {
    /// Take this cost now (nothing waits: granted, or the wait).
    Take(Cost),
    /// Give units back (negative: debt) to the grant made at `at_us`.
    Give {
        /// Units.
        units: i64,
        /// When they were granted.
        at_us: u64,
    },
    /// Report how a call granted at `at_us` ended.
    Learn {
        /// How it ended.
        outcome: Outcome,
        /// Its grant's probe bits.
        probe: u8,
        /// When it was granted.
        at_us: u64,
    },
    /// Read the learned limits and the window's spend.
    State,
}

/// The answer to a [`TestOp`].
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestAnswer {
    /// Granted (or done) at `at_us`; `probe` bits when the grant probes a held-back window
    /// (1) or a key held after a daily throttle (2).
    Granted {
        /// The grant's probe bits.
        probe: u8,
        /// The grant's time.
        at_us: u64,
    },
    /// Not yet: the wait in microseconds.
    Wait(u64),
    /// Not yet, bound by a long window (or, `None`, a daily hold): the wait in microseconds.
    Exhausted {
        /// The wait.
        us: u64,
        /// The window that binds.
        window: Option<std::time::Duration>,
    },
    /// Per dimension (requests, units): the learned limit and the window's spend.
    State([Option<(u64, u64)>; 2]),
}

impl<K: Key> RedisStore<K> {
    /// The shared state's operations at an explicit time (microseconds on the caller's clock,
    /// instead of the server's), without leases: for the differential tests that drive this
    /// store and the in-process core with the same operations. Not for production use.
    #[doc(hidden)]
    pub async fn test_op(
        &self,
        key: &K,
        op: TestOp,
        now_us: u64,
    ) -> Result<TestAnswer, StoreError> {
        let slot = self.slot(key, Instant::now());
        let s = &*slot.0;
        let limited = [s.args.limits[0] > 0, s.args.limits[1] > 0];
        let mut script_op = match op {
            TestOp::Take(cost) => Op::take([sat(cost.requests), sat(cost.units)], None),
            TestOp::Give { units, at_us } => Op::give([0, units], None, false, at_us),
            TestOp::Learn {
                outcome,
                probe,
                at_us,
            } => Op::learn(&outcome, limited, probe, at_us),
            TestOp::State => Op {
                name: "state",
                ..Op::take([0, 0], None)
            },
        };
        script_op.now = Some(now_us);
        let reply = s.common.raw(&s.key, &s.args, &script_op).await?;
        if let TestOp::State = op {
            return script::state(&reply).map(TestAnswer::State);
        }
        Ok(match script::answer(&reply)? {
            Answer::Granted { probe, at, .. } => TestAnswer::Granted { probe, at_us: at },
            Answer::Wait { us, bound: 0 } => TestAnswer::Wait(us),
            Answer::Wait { us, bound } => TestAnswer::Exhausted {
                us,
                window: s
                    .args
                    .long
                    .get(usize::from(bound).wrapping_sub(1))
                    .map(|w| std::time::Duration::from_micros(w[0])),
            },
        })
    }
}
