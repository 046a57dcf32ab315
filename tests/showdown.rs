//! The quota showdown (`examples/quota_showdown`), measured here on the same runner: the same
//! seed prints byte-identical `--json` output twice, and the headline claims hold on the
//! measured numbers, against the baselines measured in the same run.
#![cfg(feature = "sim")]

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

/// Every (scenario, strategy) with `seed`, in table order.
fn run_all(seed: u64) -> Vec<Measured> {
    let mut out = Vec::new();
    for scenario in SCENARIOS {
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
    RUNS.get_or_init(|| run_all(DEFAULT_SEED))
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
    let first = json(&run_all(7));
    let second = json(&run_all(7));
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
    assert_ne!(first, json(&run_all(8)));
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
    // The baselines do throttle, B and C included, at the same demand.
    let none = row(1, Strategy::NoRetry);
    let naive = row(1, Strategy::NaiveRetry);
    assert!(none.row.throttled_attempts > 100, "{:?}", none.row);
    assert!(app(none, "B").failed > 0 && app(none, "C").failed > 0);
    assert!(naive.row.amplification > 1.5, "{:?}", naive.row);
    assert!(r.completed >= none.row.completed, "{r:?} vs {:?}", none.row);
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
    assert!(headroom.row.quota_utilization >= 0.8, "{:?}", headroom.row);
}

#[test]
fn model_overload_and_regional_outage_fail_nothing() {
    for scenario in [3, 4] {
        let headroom = row(scenario, Strategy::Headroom);
        assert_eq!(
            headroom.row.failed, 0,
            "scenario {scenario}: {:?}",
            headroom.row
        );
        assert!(headroom.row.amplification < 1.05, "{:?}", headroom.row);
        let none = row(scenario, Strategy::NoRetry);
        let naive = row(scenario, Strategy::NaiveRetry);
        assert!(none.row.failed > 50, "scenario {scenario}: {:?}", none.row);
        assert!(
            naive.row.failed > 50,
            "scenario {scenario}: {:?}",
            naive.row
        );
    }
}

#[test]
fn dynamodb_hot_key_wastes_fewer_attempts() {
    let headroom = &row(5, Strategy::Headroom).row;
    let none = &row(5, Strategy::NoRetry).row;
    let naive = &row(5, Strategy::NaiveRetry).row;
    assert!(
        headroom.completed >= none.completed,
        "{headroom:?} vs {none:?}"
    );
    assert!(
        headroom.throttled_attempts * 2 < naive.throttled_attempts,
        "{headroom:?} vs {naive:?}"
    );
    assert!(headroom.amplification < naive.amplification);
}
