//! [`RedisStoreBuilder`]: a store's settings, checked, and connecting to one server or a
//! cluster.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::StoreError;
use super::conn::{Common, Conn};
use super::mode::{FailMode, ModeMetrics};
use super::script;
use super::store::{Inner, Key, RedisStore};
use crate::ConfigError;
use crate::admission::{Limit, MAX_WAIT, Quota};
use crate::observe::Labels;

/// Builds a [`RedisStore`]; see [`RedisStore::builder`].
#[derive(Debug)]
pub struct RedisStoreBuilder<K> {
    name: String,
    default: Limit,
    per_key: Vec<(K, Limit)>,
    lease: f64,
    fail: FailMode,
    op_timeout: Duration,
    connect_timeout: Duration,
    retry: Duration,
    lease_ttl: Option<Duration>,
    labels: Labels,
}

impl<K> RedisStoreBuilder<K> {
    /// A different limit for `key`.
    pub fn key_limit(mut self, key: K, limit: Limit) -> Self {
        self.per_key.push((key, limit));
        self
    }

    /// The slice of the quota a process leases at a time, as a fraction (0..=1) of each limit
    /// (default 0.02). Zero: no leasing, one round trip for each call the balance does not
    /// cover. See the module docs for the over-admission this allows.
    pub fn lease(mut self, fraction: f64) -> Self {
        self.lease = fraction;
        self
    }

    /// What to do while Redis is unavailable (default [`FailMode::Closed`]).
    pub fn fail(mut self, mode: FailMode) -> Self {
        self.fail = mode;
        self
    }

    /// The longest any Redis call may take (default 250 ms).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The longest connecting may take, at start and on each reconnection (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How often a store that lost Redis tries again while calls want budget (default 500 ms).
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry = interval;
        self
    }

    /// How long an unused lease is kept before it goes back (default the key's window).
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = Some(ttl);
        self
    }

    /// Reports mode changes under `labels`.
    pub fn labels(mut self, labels: Labels) -> Self {
        self.labels = labels;
        self
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > 128
            || self.name.contains(['{', '}'])
            || self.name.chars().any(char::is_control)
        {
            return Err(ConfigError::new(
                "name",
                &self.name,
                "must be 1 to 128 characters, without braces or control characters",
            ));
        }
        if !(self.lease.is_finite() && (0.0..=1.0).contains(&self.lease)) {
            return Err(ConfigError::new(
                "lease",
                self.lease,
                "must be a fraction between 0 and 1",
            ));
        }
        if let FailMode::Open { fraction } = self.fail {
            if !(fraction.is_finite() && fraction > 0.0 && fraction <= 1.0) {
                return Err(ConfigError::new(
                    "fail.fraction",
                    fraction,
                    "must be a fraction in (0, 1]",
                ));
            }
        }
        for (field, d) in [
            ("op_timeout", self.op_timeout),
            ("connect_timeout", self.connect_timeout),
            ("retry_interval", self.retry),
        ] {
            if d.is_zero() || d > Duration::from_secs(3600) {
                return Err(ConfigError::new(
                    field,
                    d,
                    "must be more than zero and at most an hour",
                ));
            }
        }
        if let Some(ttl) = self.lease_ttl {
            if ttl.is_zero() || ttl > MAX_WAIT {
                return Err(ConfigError::new(
                    "lease_ttl",
                    ttl,
                    "must be more than zero and at most 24 h",
                ));
            }
        }
        Ok(())
    }
}

impl<K: Key> RedisStoreBuilder<K> {
    /// Connects to one Redis server (`redis://[user:password@]host:port[/db]`). Fails with a
    /// typed error when the URL does not parse, the server cannot be reached within the
    /// connect timeout, or it refuses the credentials. Must run inside a Tokio runtime (the
    /// store spawns its refill tasks there).
    pub async fn connect(self, url: &str) -> Result<RedisStore<K>, StoreError> {
        self.check()?;
        let client = redis::Client::open(url).map_err(|_| StoreError::InvalidUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.op_timeout))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(self.retry);
        let conn = tokio::time::timeout(
            self.connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StoreError::Unreachable)?
        .map_err(|e| match StoreError::from_redis(&e) {
            StoreError::Connection | StoreError::Timeout(_) => StoreError::Unreachable,
            other => other,
        })?;
        self.finish(Conn::Single(conn)).await
    }

    /// Connects to a Redis Cluster through any of its nodes. Every quota key's state is one
    /// hash in one slot (a hash tag), so each script call goes to one node.
    pub async fn connect_cluster(self, urls: &[&str]) -> Result<RedisStore<K>, StoreError> {
        self.check()?;
        let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(self.connect_timeout)
            .response_timeout(self.op_timeout)
            .build()
            .map_err(|_| StoreError::InvalidUrl)?;
        let conn = tokio::time::timeout(self.connect_timeout, client.get_async_connection())
            .await
            .map_err(|_| StoreError::Unreachable)?
            .map_err(|e| match StoreError::from_redis(&e) {
                StoreError::Connection | StoreError::Timeout(_) => StoreError::Unreachable,
                other => other,
            })?;
        self.finish(Conn::Cluster(conn)).await
    }

    async fn finish(self, conn: Conn) -> Result<RedisStore<K>, StoreError> {
        let script = script::script();
        // Loading the script checks the credentials and permissions now rather than at the
        // first call.
        let load = script.prepare_invoke();
        tokio::time::timeout(self.op_timeout, conn.load(&load))
            .await
            .map_err(|_| StoreError::Timeout(self.op_timeout))?
            .map_err(|e| StoreError::from_redis(&e))?;
        let fallback = match self.fail {
            FailMode::Closed => None,
            FailMode::Open { fraction } => {
                let mut b = Quota::builder(scaled(&self.default, fraction));
                for (k, l) in &self.per_key {
                    b = b.key_limit(k.clone(), scaled(l, fraction));
                }
                Some(b.build())
            }
        };
        let handle = tokio::runtime::Handle::current();
        let common = Arc::new(Common {
            conn,
            script,
            fail: self.fail,
            op_timeout: self.op_timeout,
            retry: self.retry,
            mode: AtomicU8::new(0),
            epoch: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            rtt_ns: AtomicU64::new(1_000_000),
            last_error: Mutex::new(None),
            live: Mutex::new(Vec::new()),
            handle,
            metrics: ModeMetrics::register(&self.labels),
            labels: self.labels,
        });
        Ok(RedisStore {
            inner: Arc::new(Inner {
                common,
                name: self.name,
                default: Arc::new(self.default),
                per_key: self
                    .per_key
                    .into_iter()
                    .map(|(k, l)| (k, Arc::new(l)))
                    .collect(),
                lease: self.lease,
                lease_ttl: self.lease_ttl,
                slots: Mutex::new(HashMap::new()),
                fallback,
                inserts: AtomicUsize::new(0),
            }),
        })
    }
}

/// A limit cut to `fraction` (at least one request or unit per window).
fn scaled(l: &Limit, fraction: f64) -> Limit {
    let cut = |v: Option<u64>| v.map(|v| ((v as f64 * fraction).floor() as u64).clamp(1, v));
    let mut l = l.clone();
    l.requests = cut(l.requests);
    l.units = cut(l.units);
    l.long = l.long.iter().map(|w| w.scaled(fraction)).collect();
    l
}

impl<K: Key> RedisStore<K> {
    /// A builder for the quota `name` (part of every Redis key: processes sharing a budget use
    /// the same name), with `limit` for every key not given its own.
    pub fn builder(name: impl Into<String>, limit: Limit) -> RedisStoreBuilder<K> {
        RedisStoreBuilder {
            name: name.into(),
            default: limit,
            per_key: Vec::new(),
            lease: 0.02,
            fail: FailMode::Closed,
            op_timeout: Duration::from_millis(250),
            connect_timeout: Duration::from_secs(2),
            retry: Duration::from_millis(500),
            lease_ttl: None,
            labels: Labels::none(),
        }
    }
}
