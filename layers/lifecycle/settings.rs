//! The settings a call's sequence runs with — its retry policy, its wait budget, its attempt
//! timeout, its breakers — resolved once from what a builder was given and its profile's
//! defaults. `StackBuilder` and the SDK adapter's builder both resolve through here, so a
//! default or a bound changes in one place.

use std::time::Duration;

use crate::admission::{MAX_WAIT, Priority};
use crate::error::ConfigError;
use crate::fallback::BreakerSource;
use crate::retry::{RetryPolicy, RetryPolicyBuilder};
use crate::stack::Profile;
use crate::timeout::AttemptTimeout;

/// What a builder was given (`None`: the profile's default).
#[derive(Default)]
pub(crate) struct Given {
    pub(crate) retry: Option<RetryPolicy>,
    pub(crate) deadline: Option<Duration>,
    /// `Some(None)`: no attempt timeout.
    pub(crate) attempt_timeout: Option<Option<AttemptTimeout>>,
    pub(crate) breakers: Option<BreakerSource>,
    pub(crate) seed: Option<u64>,
}

/// The settings resolved.
pub(crate) struct Settings {
    pub(crate) retry: RetryPolicy,
    /// The wait budget of a call that carries no deadline.
    pub(crate) budget: Duration,
    pub(crate) attempt_timeout: Option<AttemptTimeout>,
    pub(crate) breakers: BreakerSource,
}

impl Given {
    /// Resolves against `profile` for calls of `priority`; `paced` when a quota admits the
    /// calls (the profile's retry then lets admission hold a throttled call's retry until the
    /// window has room).
    pub(crate) fn resolve(
        self,
        profile: Profile,
        priority: Priority,
        paced: bool,
    ) -> Result<Settings, ConfigError> {
        let seed = self.seed;
        let seeded = |b: RetryPolicyBuilder| match seed {
            Some(seed) => b.seed(seed),
            None => b,
        };
        // The budget: set here, else the deadline of a retry policy given, else the profile's.
        let budget = match self
            .deadline
            .or_else(|| self.retry.as_ref().and_then(RetryPolicy::deadline))
        {
            Some(budget) if budget.is_zero() || budget > MAX_WAIT => {
                return Err(ConfigError::new(
                    "deadline",
                    budget,
                    "must be more than zero and at most 24 h",
                ));
            }
            Some(budget) => budget,
            None => profile.deadline(priority),
        };
        let retry = match self.retry {
            Some(policy) => policy,
            None if paced => seeded(profile.paced_retry()).build()?,
            None => seeded(profile.retry()).build()?,
        };
        let breakers = match self.breakers {
            Some(source) => source,
            None => {
                let config = profile.breaker();
                let config = match seed {
                    Some(seed) => config.seed(seed),
                    None => config,
                };
                BreakerSource::PerTarget(config.build()?)
            }
        };
        Ok(Settings {
            retry,
            budget,
            attempt_timeout: self
                .attempt_timeout
                .unwrap_or(Some(profile.attempt_timeout())),
            breakers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn given() -> Given {
        Given {
            retry: None,
            deadline: None,
            attempt_timeout: None,
            breakers: None,
            seed: None,
        }
    }

    #[test]
    fn defaults_come_from_the_profile_and_priority() {
        let s = given()
            .resolve(Profile::Bedrock, Priority::Batch, true)
            .unwrap();
        assert_eq!(s.budget, Profile::Bedrock.deadline(Priority::Batch));
        assert_eq!(s.attempt_timeout, Some(Profile::Bedrock.attempt_timeout()));
        assert!(matches!(s.breakers, BreakerSource::PerTarget(_)));
    }

    #[test]
    fn a_given_deadline_wins_and_is_bounded() {
        let budget = Duration::from_secs(7);
        let s = Given {
            deadline: Some(budget),
            attempt_timeout: Some(None),
            ..given()
        }
        .resolve(Profile::Http, Priority::Interactive, false)
        .unwrap();
        assert_eq!(s.budget, budget);
        assert_eq!(s.attempt_timeout, None);
        for bad in [Duration::ZERO, MAX_WAIT + Duration::from_secs(1)] {
            let Err(error) = Given {
                deadline: Some(bad),
                ..given()
            }
            .resolve(Profile::Http, Priority::Interactive, false) else {
                panic!("{bad:?} accepted");
            };
            assert_eq!(error.field(), "deadline");
        }
    }

    #[test]
    fn a_retry_policys_deadline_is_the_budget_when_none_is_given() {
        let policy = RetryPolicy::builder()
            .deadline(Duration::from_secs(9))
            .build()
            .unwrap();
        let s = Given {
            retry: Some(policy),
            ..given()
        }
        .resolve(Profile::DynamoDb, Priority::Interactive, true)
        .unwrap();
        assert_eq!(s.budget, Duration::from_secs(9));
    }
}
