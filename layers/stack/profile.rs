//! [`Profile`]: the defaults per service.

use std::time::Duration;

use crate::admission::Priority;
use crate::breaker::BreakerConfig;
use crate::retry::{BackoffBuilder, RetryPolicy};
use crate::timeout::AttemptTimeout;

/// Which service the defaults are for.
///
/// | | Bedrock | DynamoDB | plain HTTP |
/// |---|---|---|---|
/// | attempts (first included) | 4 | 8 | 4 |
/// | call deadline, interactive / batch ([`deadline`](Profile::deadline)) | 150 s / 15 min | 20 s / 5 min | 150 s / 15 min |
/// | quota window for throttle alignment, without admission | 60 s, clock-aligned, 5 s spread | 1 s, 100 ms spread | 60 s, 5 s spread |
/// | breaker | 5 in a row, or 50 % of ≥ 10 calls in 30 s; open 30 s | 5 in a row, or 50 % of ≥ 20 calls in 10 s; open 5 s | as Bedrock |
/// | retry budget | 10 % of calls over 10 s, at least 10 | same | same |
/// | attempt timeout ([`attempt_timeout`](Profile::attempt_timeout)) | 60 s + 25 ms per estimated token, at most 10 min | 5 s | as Bedrock |
///
/// Bedrock's token quotas are counted per minute, so without admission a quota throttle waits
/// for the next window rather than retrying into the one that is spent; with admission the
/// throttle teaches the quota, and admission holds the retry until the window has room, so the
/// retry itself follows the short throttle schedule. DynamoDB enforces capacity per second and
/// a hot partition clears within seconds, so it retries sooner and more often, and its breaker
/// recovers faster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Amazon Bedrock (and other LLM endpoints with per-minute request and token quotas).
    Bedrock,
    /// Amazon DynamoDB (per-second capacity).
    DynamoDb,
    /// A plain HTTP endpoint that answers 429 with `Retry-After`.
    Http,
}

impl Profile {
    /// The profile's retry policy, as a builder to adjust: its deadline is an interactive
    /// call's [`deadline`](Profile::deadline), and quota throttles wait for the next quota
    /// window (clock-aligned).
    pub fn retry(self) -> crate::retry::RetryPolicyBuilder {
        let (window, spread) = self.quota_window();
        self.paced_retry()
            .backoff(BackoffBuilder::default().quota_window(window, spread))
    }

    /// The retry policy of a stack with admission: quota throttles follow the short throttle
    /// schedule, since admission (which learns from them) holds the retry until the window
    /// has room.
    pub(crate) fn paced_retry(self) -> crate::retry::RetryPolicyBuilder {
        let attempts = match self {
            Profile::DynamoDb => 8,
            Profile::Bedrock | Profile::Http => 4,
        };
        RetryPolicy::builder()
            .max_attempts(attempts)
            .deadline(self.deadline(Priority::Interactive))
            .backoff(BackoffBuilder::default().no_quota_window())
    }

    fn quota_window(self) -> (Duration, Duration) {
        match self {
            Profile::Bedrock | Profile::Http => (Duration::from_secs(60), Duration::from_secs(5)),
            Profile::DynamoDb => (Duration::from_secs(1), Duration::from_millis(100)),
        }
    }

    /// A call's wait budget by default — for its admission wait, its router wait and its
    /// retries together — when the call carries no [`Deadline`](crate::Deadline): for an
    /// interactive call 150 s with Bedrock and plain HTTP (a throttle without admission waits
    /// for the next minute's window, up to 65 s, and may need a second attempt after it) and
    /// 20 s with DynamoDB (its capacity refills every second); for a batch call fifteen
    /// minutes, five with DynamoDB.
    pub fn deadline(self, priority: Priority) -> Duration {
        match (self, priority) {
            (Profile::DynamoDb, Priority::Interactive) => Duration::from_secs(20),
            (Profile::DynamoDb, Priority::Batch) => Duration::from_secs(5 * 60),
            (_, Priority::Interactive) => Duration::from_secs(150),
            (_, Priority::Batch) => Duration::from_secs(15 * 60),
        }
    }

    /// A [`Limit`](crate::Limit) counted the way the profile's provider counts, to give the
    /// console's numbers to: for Bedrock a minute's sliding window (tokens per minute, whose
    /// window phase the client cannot know); for DynamoDB a token bucket per second keeping
    /// the 300 s of unused capacity DynamoDB documents as burst, starting with one second of it
    /// and saving the rest from capacity left unused, as a table does; for plain HTTP a minute's
    /// sliding window, which never lets any one-minute window see more than the limit,
    /// whether the server counts fixed windows or a bucket (give it
    /// [`burst`](crate::admission::LimitBuilder::burst) of a window for a server documented as
    /// a bucket that full, as Anthropic's is, to use its burst too).
    ///
    /// ```
    /// use tower_headroom::Profile;
    /// use tower_headroom::admission::Accounting;
    ///
    /// let model = Profile::Bedrock.limit().units(200_000).build()?; // the console's TPM
    /// assert_eq!(model.accounting(), Accounting::SlidingWindow);
    /// let table = Profile::DynamoDb.limit().units(1_000).build()?; // the table's WCU
    /// assert!(matches!(table.accounting(), Accounting::TokenBucket { .. }));
    /// assert_eq!(table.initial_credit(), std::time::Duration::from_secs(1));
    /// # Ok::<(), tower_headroom::ConfigError>(())
    /// ```
    pub fn limit(self) -> crate::admission::LimitBuilder {
        match self {
            Profile::Bedrock | Profile::Http => crate::Limit::per_minute(),
            // DynamoDB saves unused capacity up to 300 s and may spend it on maintenance
            // without notice (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/burst-adaptive-capacity.html):
            // burst is saved from capacity left unused, so a client that has seen none unused
            // counts on none beyond the second it is provisioned — a bucket's default start
            // (one window). Left to the default, so that a shorter `burst` set afterwards
            // needs no `initial_credit` of its own.
            Profile::DynamoDb => crate::Limit::per_second().burst(Duration::from_secs(300)),
        }
    }

    /// How long one attempt may take by default (see [`crate::timeout`]): for Bedrock and
    /// plain HTTP (LLM endpoints) a minute plus 25 ms per estimated token — about 40 tokens a
    /// second of generation, slower than models answer — at most ten minutes; for DynamoDB,
    /// whose calls take milliseconds, five seconds.
    pub fn attempt_timeout(self) -> AttemptTimeout {
        let timeout = match self {
            Profile::Bedrock | Profile::Http => AttemptTimeout::scaled(
                Duration::from_secs(60),
                Duration::from_millis(25),
                Duration::from_secs(600),
            ),
            Profile::DynamoDb => AttemptTimeout::fixed(Duration::from_secs(5)),
        };
        timeout.expect("the profiles' attempt timeouts are valid")
    }

    /// The profile's breaker configuration, as a builder to adjust.
    pub fn breaker(self) -> crate::breaker::BreakerConfigBuilder {
        match self {
            Profile::Bedrock | Profile::Http => BreakerConfig::builder(),
            Profile::DynamoDb => BreakerConfig::builder()
                .window(crate::breaker::Window::Time(Duration::from_secs(10)))
                .minimum_calls(20)
                .open_for(Duration::from_secs(5)),
        }
    }
}
