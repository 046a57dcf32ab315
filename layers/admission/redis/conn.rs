//! The connection (one server or a cluster) and what every key of a store shares through it
//! ([`Common`]): script calls within the operation timeout, and their round-trip time.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use tokio::time::Instant;

use super::StoreError;
use super::mode::{FailMode, ModeMetrics};
use super::script::{self, Answer, Args, Op};
use super::slot::SlotInner;
use crate::observe::Labels;

/// What every key of a store shares: the connection, the mode, the counters.
pub(super) struct Common {
    pub(super) conn: Conn,
    pub(super) script: Script,
    pub(super) fail: FailMode,
    pub(super) op_timeout: Duration,
    pub(super) retry: Duration,
    pub(super) mode: AtomicU8,
    /// Bumped on every mode change, so that waiting calls notice it.
    pub(super) epoch: AtomicU64,
    pub(super) round_trips: AtomicU64,
    /// A smoothed round-trip time, for the waits told to queued calls.
    pub(super) rtt_ns: AtomicU64,
    pub(super) last_error: Mutex<Option<StoreError>>,
    /// Every key's slot, to wake their waiters on a mode change.
    pub(super) live: Mutex<Vec<Weak<SlotInner>>>,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) metrics: ModeMetrics,
    pub(super) labels: Labels,
}

#[derive(Clone)]
pub(super) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(super) async fn invoke(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> redis::RedisResult<Vec<i64>> {
        match self {
            Conn::Single(c) => inv.invoke_async(&mut c.clone()).await,
            Conn::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        }
    }

    pub(super) async fn load(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> redis::RedisResult<String> {
        match self {
            Conn::Single(c) => inv.load_async(&mut c.clone()).await,
            Conn::Cluster(c) => inv.load_async(&mut c.clone()).await,
        }
    }
}

impl Common {
    /// One script call, within the operation timeout.
    pub(super) async fn call(&self, key: &str, args: &Args, op: &Op) -> Result<Answer, StoreError> {
        script::answer(&self.raw(key, args, op).await?)
    }

    /// One script call's raw reply, within the operation timeout.
    pub(super) async fn raw(
        &self,
        key: &str,
        args: &Args,
        op: &Op,
    ) -> Result<Vec<i64>, StoreError> {
        let inv = args.invoke(&self.script, key, op);
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let reply = tokio::time::timeout(self.op_timeout, self.conn.invoke(&inv))
            .await
            .map_err(|_| StoreError::Timeout(self.op_timeout))?
            .map_err(|e| match StoreError::from_redis(&e) {
                StoreError::Timeout(_) => StoreError::Timeout(self.op_timeout),
                other => other,
            })?;
        let rtt = crate::nanos(start.elapsed());
        let old = self.rtt_ns.load(Ordering::Relaxed);
        self.rtt_ns
            .store(old - old / 8 + rtt / 8, Ordering::Relaxed);
        Ok(reply)
    }

    pub(super) fn rtt(&self) -> Duration {
        Duration::from_nanos(self.rtt_ns.load(Ordering::Relaxed)).max(Duration::from_millis(1))
    }
}
