//! One breaker per key (model, region, host), created on demand and evicted when idle.
//!
//! Hand-written on `std::sync::Mutex<HashMap>` shards rather than `dashmap` or `moka`: a lookup
//! holds one shard's lock for a hash probe, eviction must use the caller's
//! [`tokio::time::Instant`] (moka's time-to-idle reads its own clock, so it cannot run under
//! tokio's paused clock), and an entry must never be evicted while a layer, router or in-flight
//! call still holds it — otherwise two breakers would exist for one key.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::config::{BreakerConfig, ConfigError};
use super::handle::BreakerHandle;
use crate::observe::{LabelBudget, LabelHold, Labels};

type LabelFn<K> = dyn Fn(&K) -> Labels + Send + Sync;

/// A concurrent map from key to [`BreakerHandle`], sharing one [`BreakerConfig`].
///
/// A breaker is created the first time its key is asked for. Its labels (from
/// [`labels`](BreakerRegistryBuilder::labels)) get series of their own for the first
/// [`max_label_sets`](BreakerRegistryBuilder::max_label_sets) distinct sets; the breakers of
/// later ones report under `target=`[`OVERFLOW_TARGET`](crate::observe::OVERFLOW_TARGET), and
/// an evicted breaker gives its set's place back. A breaker that nobody but the
/// registry holds and that has not been used for `idle_after` is evicted: each lookup sweeps its
/// own shard at most once per `idle_after`, and [`evict_idle`](Self::evict_idle) sweeps all.
///
/// ```
/// use std::time::Duration;
/// use tokio::time::Instant;
/// use tower_headroom::breaker::{BreakerConfig, BreakerRegistry};
/// use tower_headroom::observe::Labels;
///
/// let registry = BreakerRegistry::builder(BreakerConfig::default())
///     .labels(|model: &String| Labels::target("bedrock").model(model.as_str()))
///     .idle_after(Duration::from_secs(600))
///     .build()?;
/// let now = Instant::now();
/// let sonnet = registry.get("anthropic.claude-sonnet", now);
/// assert_eq!(sonnet.labels().model_name(), Some("anthropic.claude-sonnet"));
/// drop(sonnet);
/// assert_eq!(registry.evict_idle(now + Duration::from_secs(601)), 1);
/// # Ok::<(), tower_headroom::breaker::ConfigError>(())
/// ```
pub struct BreakerRegistry<K> {
    inner: Arc<Inner<K>>,
}

struct Inner<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: RandomState,
    config: BreakerConfig,
    labels: Box<LabelFn<K>>,
    idle_after: Duration,
    created: AtomicU64,
    /// The label sets the breakers have series for.
    budget: LabelBudget,
}

struct Shard<K> {
    /// Each key's breaker, with its hold on its label set (given back when evicted).
    map: HashMap<K, (BreakerHandle, LabelHold)>,
    last_sweep: Option<Instant>,
}

impl<K> Shard<K> {
    /// Evicts the breakers idle for `idle_after` that only this shard holds; returns how many.
    fn sweep(&mut self, now: Instant, idle_after: Duration) -> usize {
        let before = self.map.len();
        self.map
            .retain(|_, (breaker, _)| breaker.is_shared() || breaker.idle_since(now) < idle_after);
        self.last_sweep = Some(now);
        before - self.map.len()
    }
}

/// Locks a shard. A panic while it was held (in a labels function, say) leaves the map usable:
/// keep going.
fn lock<K>(shard: &Mutex<Shard<K>>) -> MutexGuard<'_, Shard<K>> {
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<K> Clone for BreakerRegistry<K> {
    fn clone(&self) -> Self {
        BreakerRegistry {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("shards", &self.inner.shards.len())
            .field("idle_after", &self.inner.idle_after)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> BreakerRegistry<K> {
    /// A builder using `config` for every breaker.
    pub fn builder(config: BreakerConfig) -> BreakerRegistryBuilder<K> {
        BreakerRegistryBuilder {
            config,
            labels: None,
            idle_after: Duration::from_secs(600),
            shards: 16,
            max_label_sets: crate::observe::MAX_LABEL_SETS,
        }
    }

    /// The breaker for `key`, created if absent.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> BreakerHandle
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let idle_after = self.inner.idle_after;
        let mut shard = self.shard(key);
        let due = shard
            .last_sweep
            .is_none_or(|last| now.saturating_duration_since(last) >= idle_after);
        if due {
            shard.sweep(now, idle_after);
        }
        if let Some((breaker, _)) = shard.map.get(key) {
            return breaker.clone();
        }
        let owned = key.to_owned();
        let (labels, hold) = self.inner.budget.admit((self.inner.labels)(&owned));
        let breaker = BreakerHandle::new_at(self.config_for_new(), labels, now);
        shard.map.insert(owned, (breaker.clone(), hold));
        breaker
    }

    /// The breaker for `key` if it exists.
    pub fn peek<Q>(&self, key: &Q) -> Option<BreakerHandle>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key)
            .map
            .get(key)
            .map(|(breaker, _)| breaker.clone())
    }

    /// Evicts every breaker idle for `idle_after` that only the registry holds; returns how many.
    pub fn evict_idle(&self, now: Instant) -> usize {
        let idle_after = self.inner.idle_after;
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).sweep(now, idle_after))
            .sum()
    }

    /// How many breakers the registry holds.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| lock(shard).map.len())
            .sum()
    }

    /// Whether the registry holds no breaker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The locked shard that holds `key`.
    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, Shard<K>> {
        let inner = &*self.inner;
        let index = (inner.hasher.hash_one(key) % inner.shards.len() as u64) as usize;
        lock(&inner.shards[index])
    }

    /// Each breaker gets its own jitter stream; with a fixed seed, a repeatable one.
    fn config_for_new(&self) -> BreakerConfig {
        let config = &self.inner.config;
        let n = self.inner.created.fetch_add(1, Ordering::Relaxed);
        match config.seed() {
            Some(seed) => {
                config.with_seed(seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            }
            None => config.clone(),
        }
    }
}

/// Builds a [`BreakerRegistry`].
pub struct BreakerRegistryBuilder<K> {
    config: BreakerConfig,
    labels: Option<Box<LabelFn<K>>>,
    idle_after: Duration,
    shards: usize,
    max_label_sets: usize,
}

impl<K> fmt::Debug for BreakerRegistryBuilder<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistryBuilder")
            .field("config", &self.config)
            .field("idle_after", &self.idle_after)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> BreakerRegistryBuilder<K> {
    /// The labels each breaker reports under (default: none). Called once per new breaker, never
    /// on the hot path. Only put user-chosen names here, never request data.
    pub fn labels(mut self, labels: impl Fn(&K) -> Labels + Send + Sync + 'static) -> Self {
        self.labels = Some(Box::new(labels));
        self
    }

    /// How long a breaker must go unused before it may be evicted (default 10 minutes).
    pub fn idle_after(mut self, idle_after: Duration) -> Self {
        self.idle_after = idle_after;
        self
    }

    /// The most distinct label sets the breakers get series of their own for (default
    /// [`MAX_LABEL_SETS`](crate::observe::MAX_LABEL_SETS)); the rest report under
    /// `target=`[`OVERFLOW_TARGET`](crate::observe::OVERFLOW_TARGET).
    pub fn max_label_sets(mut self, max: usize) -> Self {
        self.max_label_sets = max;
        self
    }

    /// Number of lock shards (default 16).
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<BreakerRegistry<K>, ConfigError> {
        if self.idle_after.is_zero() {
            return Err(ConfigError::new(
                "idle_after",
                self.idle_after,
                "must be positive",
            ));
        }
        if self.shards == 0 {
            return Err(ConfigError::new("shards", 0, "must be at least 1"));
        }
        Ok(BreakerRegistry {
            inner: Arc::new(Inner {
                shards: (0..self.shards)
                    .map(|_| {
                        Mutex::new(Shard {
                            map: HashMap::new(),
                            last_sweep: None,
                        })
                    })
                    .collect(),
                hasher: RandomState::new(),
                config: self.config,
                labels: self.labels.unwrap_or_else(|| Box::new(|_| Labels::none())),
                idle_after: self.idle_after,
                created: AtomicU64::new(0),
                budget: LabelBudget::new(self.max_label_sets, "breaker registry"),
            }),
        })
    }
}
