//! The OpenAI-compatible example's tour, run here: reqwest and reqwest-middleware against the
//! simulator's front on loopback (real sockets, so the real clock; a few seconds). The tour
//! checks every claim it prints and fails on a false one.
#![cfg(all(feature = "sim", feature = "llm-http", feature = "reqwest"))]

#[allow(dead_code)]
#[path = "../examples/openai_compatible.rs"]
mod openai_compatible;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_tour_holds_its_claims() {
    let summary = openai_compatible::tour()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.burst.0, 64);
    assert!(summary.burst.1 > 0, "{summary:?}");
    assert_eq!(summary.billing, (3, 429));
    assert_eq!(summary.served_by, "backup");
}
