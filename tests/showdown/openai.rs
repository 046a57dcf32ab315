//! Scenario 8 of the showdown, asserted on the shared run of `tests/showdown.rs`.

use super::{Strategy, row};

/// Scenario 8, an OpenAI-compatible endpoint (token buckets with rate-limit headers, short
/// chats all along, a burst of long batch prompts, a billing cap), against the claims:
/// tower-headroom's throttled attempts at most 0.5%, utilisation at least 97%, and no call
/// sent again after `insufficient_quota` — against the baselines measured in the same run.
#[test]
fn openai_compatible_endpoint() {
    let none = &row(8, Strategy::NoRetry).row;
    let sdk = &row(8, Strategy::VendorSdk).row;
    let ours = &row(8, Strategy::Headroom).row;
    // The baselines: the burst is throttled, and the vendor SDKs' retries add throttles and
    // save almost nothing; they leave the quota a third unused.
    assert!(none.throttled_attempts > 50, "{none:?}");
    assert!(sdk.throttled_attempts > none.throttled_attempts, "{sdk:?}");
    assert!(sdk.quota_utilization < 0.8, "{sdk:?}");
    // tower-headroom: throttled attempts at most 0.5%, utilisation at least 97%, more calls
    // completed than either baseline.
    assert!(
        ours.throttled_attempts as f64 <= 0.005 * ours.attempts as f64,
        "{ours:?}"
    );
    assert!(ours.quota_utilization >= 0.97, "{ours:?}");
    assert!(
        ours.completed > none.completed.max(sdk.completed),
        "{ours:?}"
    );
    // It used the quota fully, so it is the row that reaches the billing cap in the run; from
    // then on each call is sent once, told `insufficient_quota` (a billing stop, read from the
    // body by `ErrorBodyLayer`) and fails: no call is sent again, and the billing stop is the
    // only reason any call failed.
    let billing = ours.billing.as_ref().unwrap();
    assert!(billing.spent_at_s.is_some(), "{billing:?}");
    assert!(billing.insufficient_quota_attempts > 0, "{billing:?}");
    assert_eq!(billing.retried_after_insufficient_quota, 0, "{billing:?}");
    assert_eq!(billing.insufficient_quota_attempts, ours.failed, "{ours:?}");
}
