//! The quota showdown (`examples/quota_showdown`), measured here on the same runner: the same
//! seed prints byte-identical `--json` output twice, and the headline claims hold on the
//! measured numbers, against the baselines measured in the same run.
#![cfg(all(feature = "sim", feature = "bedrock", feature = "dynamodb"))]

#[allow(dead_code)]
#[path = "../examples/quota_showdown/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../examples/quota_showdown/scenarios.rs"]
mod scenarios;
#[allow(dead_code)]
#[path = "../examples/quota_showdown/sdk.rs"]
mod sdk;

use std::sync::OnceLock;

use scenarios::{DEFAULT_SEED, Measured, SCENARIOS, Strategy};

/// Every strategy on `scenarios` with `seed`, in table order.
fn run_all(scenarios: &[u8], seed: u64) -> Vec<Measured> {
    let mut out = Vec::new();
    for &scenario in scenarios {
        for strategy in Strategy::ALL {
            match scenarios::run(scenario, strategy, seed) {
                Ok(measured) => out.push(measured),
                Err(e) => panic!("scenario {scenario}, {}: {e}", strategy.name()),
            }
        }
    }
    out
}

fn json(runs: &[Measured]) -> String {
    runs.iter()
        .map(|m| report::json_line(&m.row) + "\n")
        .collect()
}

/// The default-seed run, shared by the claim tests.
fn measured() -> &'static [Measured] {
    static RUNS: OnceLock<Vec<Measured>> = OnceLock::new();
    RUNS.get_or_init(|| run_all(&SCENARIOS, DEFAULT_SEED))
}

fn row(scenario: u8, strategy: Strategy) -> &'static Measured {
    measured()
        .iter()
        .find(|m| m.row.scenario == scenario && m.row.strategy == strategy)
        .unwrap_or_else(|| panic!("scenario {scenario}, {} was not run", strategy.name()))
}

fn app<'a>(m: &'a Measured, name: &str) -> &'a scenarios::AppResult {
    m.per_app
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("no app {name}"))
}

#[test]
fn the_same_seed_prints_the_same_json_twice() {
    // Two runs of every scenario, each on its own runtime, the SDK's process-wide retry state
    // included.
    let first = json(measured());
    let second = json(&run_all(&SCENARIOS, DEFAULT_SEED));
    assert_eq!(first, second);
    // One line per (scenario, strategy), with exactly the documented fields.
    assert_eq!(first.lines().count(), SCENARIOS.len() * Strategy::ALL.len());
    for line in first.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "amplification",
                "attempts",
                "completed",
                "failed",
                "p50_ms",
                "p99_ms",
                "quota_utilization",
                "requests",
                "scenario",
                "strategy",
                "throttled_attempts",
            ]
        );
    }
    // Another seed draws other arrivals.
    let one = |seed| json(&run_all(&[3], seed));
    assert_ne!(one(DEFAULT_SEED), one(DEFAULT_SEED + 1));
}

#[test]
fn every_strategy_sees_the_same_requests() {
    for scenario in SCENARIOS {
        let requests: Vec<u64> = measured()
            .iter()
            .filter(|m| m.row.scenario == scenario)
            .map(|m| m.row.requests)
            .collect();
        assert!(requests.windows(2).all(|w| w[0] == w[1]), "{requests:?}");
        for m in measured().iter().filter(|m| m.row.scenario == scenario) {
            assert_eq!(m.row.completed + m.row.failed, m.row.requests);
        }
    }
}

#[test]
fn three_apps_one_quota() {
    let headroom = row(1, Strategy::Headroom);
    let r = &headroom.row;
    let throttled = r.throttled_attempts as f64 / r.attempts as f64;
    assert!(r.quota_utilization >= 0.98, "{r:?}");
    assert!(throttled <= 0.005, "{r:?}");
    // B and C are within their shares: never failed. A's excess over its share (and what B
    // and C leave) is all that is shed.
    assert_eq!(app(headroom, "B").failed, 0, "{:?}", headroom.per_app);
    assert_eq!(app(headroom, "C").failed, 0, "{:?}", headroom.per_app);
    // The baselines, measured in the same run at the same demand, do throttle.
    let none = row(1, Strategy::NoRetry);
    for strategy in [
        Strategy::NoRetry,
        Strategy::NaiveRetry,
        Strategy::SdkStandard,
        Strategy::SdkAdaptive,
    ] {
        let baseline = &row(1, strategy).row;
        assert!(baseline.throttled_attempts > 100, "{baseline:?}");
    }
    // Without shares, B and C lose calls to A's spike too.
    for strategy in [Strategy::NoRetry, Strategy::SdkStandard] {
        let baseline = row(1, strategy);
        assert!(app(baseline, "B").failed > 0 && app(baseline, "C").failed > 0);
    }
    assert!(row(1, Strategy::NaiveRetry).row.amplification > 1.5);
    assert!(r.completed >= none.row.completed, "{r:?} vs {:?}", none.row);
}

/// The same cores inside the real SDK client (`SdkHeadroom::configure_bedrock`), one quota
/// shared by the three apps' clients: the stack's numbers, against the plain SDK of the same
/// run.
#[test]
fn three_apps_one_quota_through_the_sdk() {
    let headroom = row(1, Strategy::SdkHeadroom);
    let r = &headroom.row;
    let throttled = r.throttled_attempts as f64 / r.attempts as f64;
    assert!(r.quota_utilization >= 0.98, "{r:?}");
    assert!(throttled <= 0.005, "{r:?}");
    assert_eq!(app(headroom, "B").failed, 0, "{:?}", headroom.per_app);
    assert_eq!(app(headroom, "C").failed, 0, "{:?}", headroom.per_app);
    let standard = &row(1, Strategy::SdkStandard).row;
    assert!(
        r.throttled_attempts < standard.throttled_attempts,
        "{r:?} vs {standard:?}"
    );
    assert!(r.attempts < standard.attempts, "{r:?} vs {standard:?}");
    assert!(r.completed > standard.completed, "{r:?} vs {standard:?}");
    // Each app's plain SDK client has its own retry quota, so B and C lose calls to A's
    // spike; through the shared quota's shares they lose none.
    let standard = row(1, Strategy::SdkStandard);
    assert!(app(standard, "B").failed > 0 && app(standard, "C").failed > 0);
}

#[test]
fn token_heavy_batch() {
    let headroom = row(2, Strategy::Headroom);
    let none = row(2, Strategy::NoRetry);
    let interactive = app(headroom, "interactive");
    assert_eq!(headroom.row.throttled_attempts, 0, "{:?}", headroom.row);
    assert_eq!(headroom.row.failed, 0, "{:?}", headroom.row);
    // Interactive calls wait for nothing: their p99 is their unloaded latency, as without
    // any client-side control (whose interactive calls fail instead of waiting).
    let unloaded = app(none, "interactive");
    assert!(
        interactive.p99_ms <= 1.5 * unloaded.p99_ms,
        "{interactive:?} vs {unloaded:?}"
    );
    assert!(unloaded.failed > 100, "{unloaded:?}");
    let sdk = app(row(2, Strategy::SdkStandard), "interactive");
    assert!(sdk.failed > 100, "{sdk:?}");
    // The adaptive SDK fails fewer by delaying everyone: its interactive p99 is minutes.
    let adaptive = app(row(2, Strategy::SdkAdaptive), "interactive");
    assert!(adaptive.p99_ms > 10.0 * interactive.p99_ms, "{adaptive:?}");
    assert!(headroom.row.quota_utilization >= 0.8, "{:?}", headroom.row);

    // Through the SDK adapter the interactive calls fare the same, and nothing is throttled.
    // Batch calls are not all served: an SDK attempt waits at most 240 s for admission (its
    // signature is made before it waits), and the wait past that is longer than the retry
    // policy's 150 s deadline, so those calls fail where the stack's wait up to 600 s.
    let sdk_headroom = row(2, Strategy::SdkHeadroom);
    let through_sdk = app(sdk_headroom, "interactive");
    assert_eq!(
        sdk_headroom.row.throttled_attempts, 0,
        "{:?}",
        sdk_headroom.row
    );
    assert_eq!(through_sdk.failed, 0, "{through_sdk:?}");
    assert!(
        through_sdk.p99_ms <= 1.5 * unloaded.p99_ms,
        "{through_sdk:?} vs {unloaded:?}"
    );
    assert!(
        sdk_headroom.row.failed < row(2, Strategy::SdkStandard).row.failed,
        "{:?}",
        sdk_headroom.row
    );
}

#[test]
fn model_overload_and_regional_outage_fail_nothing() {
    // Scenario 4 only through the stack: the SDK adapter cannot move a call to another region
    // (see the table's note), so its row fails in the outage like the SDK's own.
    for (scenario, strategy) in [
        (3, Strategy::Headroom),
        (3, Strategy::SdkHeadroom),
        (4, Strategy::Headroom),
    ] {
        let headroom = row(scenario, strategy);
        assert_eq!(
            headroom.row.failed, 0,
            "scenario {scenario}: {:?}",
            headroom.row
        );
        assert!(headroom.row.amplification < 1.05, "{:?}", headroom.row);
        for strategy in [
            Strategy::NoRetry,
            Strategy::NaiveRetry,
            Strategy::SdkStandard,
            Strategy::SdkAdaptive,
        ] {
            let baseline = &row(scenario, strategy).row;
            assert!(baseline.failed > 50, "scenario {scenario}: {baseline:?}");
        }
    }
}

/// The hot key's partition is over its capacity: no client completes much more than sending
/// each write once does (tower-headroom fails about as many as no retry), so what a strategy
/// controls is the attempts it wastes and how long writers wait.
#[test]
fn dynamodb_hot_key_wastes_fewer_attempts() {
    let none = &row(5, Strategy::NoRetry).row;
    let naive = &row(5, Strategy::NaiveRetry).row;
    let sdk = &row(5, Strategy::SdkStandard).row;
    for strategy in [Strategy::Headroom, Strategy::SdkHeadroom] {
        let headroom = &row(5, strategy).row;
        assert!(
            headroom.failed as f64 <= none.failed as f64 * 1.05,
            "{headroom:?} vs {none:?}"
        );
        for baseline in [naive, sdk] {
            assert!(
                headroom.throttled_attempts * 2 < baseline.throttled_attempts,
                "{headroom:?} vs {baseline:?}"
            );
            assert!(headroom.amplification < baseline.amplification);
            assert!(headroom.p99_ms < baseline.p99_ms);
        }
    }
}
