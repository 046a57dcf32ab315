//! [`SdkHeadroomBuilder`]: the settings of an [`SdkHeadroom`], checked when it is built.

use crate::lifecycle::{Given, Settings};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Estimation, Limits, Registry, SdkHeadroom, Shared};
use crate::admission::{MemoryStore, Priority, Quota, Tenant};
use crate::breaker::{BreakerConfig, BreakerRegistry};
use crate::concurrency::{AdaptiveLimit, ConcurrencyConfig};
use crate::error::ConfigError;
use crate::fallback::{BreakerSource, FallbackPolicy, Route, Target};
use crate::observe::Labels;
use crate::retry::RetryPolicy;
use crate::stack::Profile;
use crate::timeout::AttemptTimeout;

/// Builds an [`SdkHeadroom`]; see [`SdkHeadroom::builder`].
///
/// Targets are added in preference order; a target's key is the key of its quota and the model
/// id (or inference profile id, or ARN) a Bedrock request is rewritten to, unless it was added
/// with [`target_model`](SdkHeadroomBuilder::target_model) and a model id of its own. The
/// route serves calls to its first target's model; a call whose model (or table) is not on the
/// route goes to its own key, with its own breaker, and does not fall back.
///
/// A Bedrock target [labelled](Target::region) with another region than the client's is
/// reached by moving the attempt there: the adapter replaces the region in the operation's
/// endpoint parameters and sets the signing region before the attempt's endpoint is
/// resolved. Give it a key of its own, since the same model has its own quota in each region
/// ([`target_model`](SdkHeadroomBuilder::target_model)). Services whose requests cannot move
/// (DynamoDB, a generic client) skip targets labelled with another region.
pub struct SdkHeadroomBuilder<S = MemoryStore<Arc<str>>> {
    profile: Profile,
    /// The retry policy, deadline, attempt timeout, breakers (`None`: the profile's, one per
    /// target and per key) and seed given, resolved in [`Given::resolve`] as `StackBuilder`
    /// resolves them.
    given: Given,
    targets: Vec<Target<Arc<str>>>,
    /// Each target's model id when it is not its key.
    models: Vec<Option<Arc<str>>>,
    fallback_policy: Option<FallbackPolicy>,
    max_hops: Option<u32>,
    quota: Option<Quota<Arc<str>, S>>,
    priority: Priority,
    tenant: Option<Tenant>,
    concurrency: Option<ConcurrencyConfig>,
    estimation: Estimation,
}

impl<S> fmt::Debug for SdkHeadroomBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkHeadroomBuilder")
            .field("profile", &self.profile)
            .field("targets", &self.targets.len())
            .field("deadline", &self.given.deadline)
            .finish_non_exhaustive()
    }
}

impl SdkHeadroomBuilder {
    /// The builder [`SdkHeadroom::builder`](super::SdkHeadroom::builder) hands out.
    pub(super) fn new(profile: Profile) -> Self {
        SdkHeadroomBuilder {
            profile,
            given: Given::default(),
            targets: Vec::new(),
            models: Vec::new(),
            fallback_policy: None,
            max_hops: None,
            quota: None,
            priority: Priority::Interactive,
            tenant: None,
            concurrency: None,
            estimation: Estimation {
                chars_per_token: 4,
                models: crate::bedrock::ModelTable::builtin(),
            },
        }
    }
}

impl<S: crate::admission::StoreSlot> SdkHeadroomBuilder<S> {
    /// Replaces the profile's retry policy. Clones of a policy share its retry budget, so the
    /// same policy may serve Tower stacks and SDK clients together.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.given.retry = Some(policy);
        self
    }

    /// Appends a fallback target; order is preference. Its key is its quota key and the model
    /// id (or table) its requests carry.
    pub fn target(mut self, target: Target<Arc<str>>) -> Self {
        self.targets.push(target);
        self.models.push(None);
        self
    }

    /// Appends a fallback target whose requests carry `model_id` while its key — its quota
    /// key and breaker — is another name: the same model in another region, which has a quota
    /// of its own there.
    ///
    /// ```
    /// # #[cfg(feature = "bedrock")] {
    /// use std::sync::Arc;
    /// use tower_headroom::fallback::Target;
    /// use tower_headroom::smithy::SdkHeadroom;
    /// use tower_headroom::Profile;
    ///
    /// const SONNET: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    /// let headroom = SdkHeadroom::builder(Profile::Bedrock)
    ///     .target(Target::new("east", Arc::from(SONNET)))
    ///     .target_model(
    ///         Target::new("west", Arc::from("sonnet@us-west-2")).region("us-west-2"),
    ///         SONNET,
    ///     )
    ///     .build()?;
    /// # let _ = headroom;
    /// # }
    /// # Ok::<(), tower_headroom::ConfigError>(())
    /// ```
    pub fn target_model(mut self, target: Target<Arc<str>>, model_id: impl Into<Arc<str>>) -> Self {
        self.targets.push(target);
        self.models.push(Some(model_id.into()));
        self
    }

    /// What the router does after each outcome class (default: [`FallbackPolicy::default`]).
    pub fn fallback_policy(mut self, policy: FallbackPolicy) -> Self {
        self.fallback_policy = Some(policy);
        self
    }

    /// The most fallback moves per retry attempt (default: the route's).
    pub fn max_hops(mut self, hops: u32) -> Self {
        self.max_hops = Some(hops);
        self
    }

    /// Replaces the profile's breaker configuration (one breaker per target and per key).
    pub fn breaker(mut self, config: BreakerConfig) -> Self {
        self.given.breakers = Some(BreakerSource::PerTarget(config));
        self
    }

    /// Takes the breakers from `registry`: a target's by its name, any other key's by the key.
    /// Share the registry with a [`StackBuilder`](crate::StackBuilder) so an SDK client and a
    /// Tower stack see one breaker per backend.
    pub fn breaker_registry(mut self, registry: BreakerRegistry<Arc<str>>) -> Self {
        self.given.breakers = Some(BreakerSource::Registry(registry));
        self
    }

    /// No circuit breakers.
    pub fn no_breakers(mut self) -> Self {
        self.given.breakers = Some(BreakerSource::None);
        self
    }

    /// Admits every call against `quota`, keyed by the target's key (the model id, the table
    /// name). Without a quota calls are not admitted or settled.
    pub fn quota<S2>(self, quota: Quota<Arc<str>, S2>) -> SdkHeadroomBuilder<S2> {
        SdkHeadroomBuilder {
            profile: self.profile,
            given: self.given,
            targets: self.targets,
            models: self.models,
            fallback_policy: self.fallback_policy,
            max_hops: self.max_hops,
            quota: Some(quota),
            priority: self.priority,
            tenant: self.tenant,
            concurrency: self.concurrency,
            estimation: self.estimation,
        }
    }

    /// The priority of this client's calls (default interactive).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// The tenant this client's calls are for, when the quota's limit has shares (one tenant
    /// per application sharing an account quota).
    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// The wait budget of a call that carries no [`Deadline`](crate::Deadline) (default: the
    /// [`retry`](Self::retry) policy's deadline if one was given, else the profile's
    /// [`deadline`](Profile::deadline) for the client's priority): admission waits,
    /// the router's choice of a target that must wait, and retries all spend from it. One
    /// attempt's admission wait is also bounded by [`MAX_ADMISSION_WAIT`](super::MAX_ADMISSION_WAIT) (the request is
    /// signed before it waits); a longer wait is answered at once with a retry delay.
    pub fn deadline(mut self, budget: Duration) -> Self {
        self.given.deadline = Some(budget);
        self
    }

    /// How long one attempt may take once admitted before it is abandoned as a timeout
    /// (default: the profile's [`attempt_timeout`](Profile::attempt_timeout), scaled by the
    /// call's estimate as the Tower stack scales it). The HTTP client enforces it around the
    /// request it sends: for a streamed response, until the response head arrives.
    pub fn attempt_timeout(mut self, timeout: AttemptTimeout) -> Self {
        self.given.attempt_timeout = Some(Some(timeout));
        self
    }

    /// No attempt timeout of ours (the SDK's own `TimeoutConfig` still applies).
    pub fn no_attempt_timeout(mut self) -> Self {
        self.given.attempt_timeout = Some(None);
        self
    }

    /// An adaptive concurrency limit per target (and per other key), as
    /// [`StackBuilder::concurrency`](crate::stack::StackBuilder::concurrency) gives the Tower
    /// stack: once admitted, an attempt takes a slot or fails at once, unsent, with
    /// [`ConcurrencyLimited`](crate::concurrency::ConcurrencyLimited). Off by default.
    pub fn concurrency(mut self, config: ConcurrencyConfig) -> Self {
        self.concurrency = Some(config);
        self
    }

    /// Seeds the jitter of the profile's retry policy and breakers, so that a run repeats
    /// exactly (simulations, tests). A policy or breaker configuration given explicitly keeps
    /// its own seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.given.seed = Some(seed);
        self
    }

    /// Characters per input token for LLM estimates (default 4).
    pub fn chars_per_token(mut self, chars: u64) -> Self {
        self.estimation.chars_per_token = chars;
        self
    }

    /// Each Bedrock model's burndown and maximum output tokens (default
    /// [`ModelTable::builtin`](crate::bedrock::ModelTable::builtin)): a call without
    /// `maxTokens` reserves its model's maximum, its usage settles to input + cache write +
    /// output × the model's burndown, and a fallback target is weighed with its own model's
    /// numbers. Override a model, or add one, with
    /// [`ModelTable::with_model`](crate::bedrock::ModelTable::with_model).
    pub fn models(mut self, table: crate::bedrock::ModelTable) -> Self {
        self.estimation.models = table;
        self
    }

    /// Validates and builds.
    ///
    /// Errors name the field: a zero `chars_per_token`, a zero `deadline` or one above a day,
    /// duplicate target names, more targets than the router holds.
    pub fn build(self) -> Result<SdkHeadroom<S>, ConfigError> {
        let est = self.estimation;
        if est.chars_per_token == 0 {
            return Err(ConfigError::new("chars_per_token", 0, "must be at least 1"));
        }
        let Settings {
            retry,
            budget: deadline,
            attempt_timeout,
            breakers,
        } = self
            .given
            .resolve(self.profile, self.priority, self.quota.is_some())?;
        let target_models: Box<[Arc<str>]> = self
            .targets
            .iter()
            .zip(self.models)
            .map(|(target, model)| model.unwrap_or_else(|| Arc::clone(target.key())))
            .collect();
        let route = if self.targets.is_empty() {
            None
        } else {
            let mut builder = Route::builder();
            for target in self.targets {
                builder = builder.target(target);
            }
            if let Some(policy) = self.fallback_policy {
                builder = builder.policy(policy);
            }
            if let Some(hops) = self.max_hops {
                builder = builder.max_hops(hops);
            }
            Some(builder.build()?)
        };
        let limits = self.concurrency.map(|config| Limits {
            config,
            targets: route
                .iter()
                .flat_map(|route| route.targets())
                .map(|t| AdaptiveLimit::new(config, t.labels().clone()))
                .collect(),
            others: Mutex::new(HashMap::new()),
        });
        let target_breakers = match &route {
            Some(route) => breakers.target_breakers(route, Instant::now()),
            None => Box::default(),
        };
        let other_breakers = match breakers {
            BreakerSource::PerTarget(config) => Some(
                BreakerRegistry::builder(config)
                    .labels(|key: &Arc<str>| Labels::target(Arc::clone(key)))
                    .build()?,
            ),
            BreakerSource::Registry(registry) => Some(registry),
            BreakerSource::None => None,
        };
        Ok(SdkHeadroom {
            shared: Arc::new(Shared {
                retry,
                route,
                target_models,
                limits,
                target_breakers,
                other_breakers,
                quota: self.quota,
                priority: self.priority,
                tenant: self.tenant,
                deadline,
                estimation: est,
                attempt_timeout,
                calls: Mutex::new(Registry {
                    by_context: HashMap::new(),
                    by_id: HashMap::new(),
                }),
                ids: AtomicU64::new(1),
                events: Mutex::new(HashMap::new()),
            }),
        })
    }
}
