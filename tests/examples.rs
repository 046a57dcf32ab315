//! The AWS SDK examples' tours, run here: each example's `main` only parses its arguments and
//! calls its tour, which checks every claim it prints and fails on a false one.
//!
//! Real sockets (the simulator's front on loopback), so the real clock; each tour takes a few
//! seconds. The DynamoDB tour also runs with dynalite behind the front (started here; a
//! machine without it fails with "run scripts/dynalite").
#![cfg(all(feature = "sim", feature = "bedrock", feature = "dynamodb"))]

mod support {
    pub mod dynalite;
}

#[allow(dead_code)]
#[path = "../examples/bedrock_converse.rs"]
mod bedrock_converse;
#[allow(dead_code)]
#[path = "../examples/dynamodb_writes.rs"]
mod dynamodb_writes;

use std::time::Duration;

fn args(list: &[&str]) -> impl Iterator<Item = String> {
    list.iter()
        .map(|s| (*s).to_owned())
        .collect::<Vec<_>>()
        .into_iter()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bedrock_converse_tour_holds_its_claims() {
    let summary = bedrock_converse::tour(bedrock_converse::Backend::Builtin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        summary.steps,
        [
            vec!["sonnet 200"],
            vec!["sonnet 503", "haiku 200"],
            vec!["haiku 429", "haiku 200"],
        ]
    );
    // The window holds the real spend (30 in + 40 out), not the 530-token estimate.
    assert_eq!(summary.window_spend, 70);
    assert!(summary.room_after_settle > summary.room_at_estimate);
    // The throttled call waited for the boundary, not a whole minute.
    assert!(summary.throttle_wait > Duration::ZERO);
    assert!(summary.throttle_wait < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_writes_tour_holds_its_claims() {
    let options = dynamodb_writes::parse_args(args(&[])).unwrap();
    let summary = dynamodb_writes::tour(options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.paced.succeeded, 80);
    assert_eq!(summary.paced.throttled, 0);
    assert_eq!(summary.paced.outputs_with_capacity, 0);
    assert!(summary.plain.throttled > 0);
    assert_eq!(summary.asked_units, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_writes_tour_holds_with_dynalite_behind_the_front() {
    let dynalite = support::dynalite::start();
    let url = dynalite.url();
    let options = dynamodb_writes::parse_args(args(&["--store", &url, "--calls", "60"])).unwrap();
    let summary = dynamodb_writes::tour(options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.paced.succeeded, 60);
    assert_eq!(summary.paced.throttled, 0);
    assert!(summary.plain.throttled > 0);
}

#[test]
fn arguments_are_checked() {
    assert!(bedrock_converse::parse_args(args(&["--endpoint"])).is_err());
    assert!(bedrock_converse::parse_args(args(&["--endpoint", "https://x"])).is_err());
    assert!(matches!(
        bedrock_converse::parse_args(args(&["--endpoint", "http://127.0.0.1:4566"])),
        Ok(bedrock_converse::Backend::Endpoint(url)) if url == "http://127.0.0.1:4566"
    ));
    for bad in [
        &["--wcu", "0"][..],
        &["--calls", "x"],
        &["--store", "http://a", "--endpoint", "http://b"],
        &["--bogus"],
    ] {
        assert!(dynamodb_writes::parse_args(args(bad)).is_err(), "{bad:?}");
    }
}
