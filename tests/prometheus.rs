//! The Prometheus example's tour, run here: six virtual minutes of Bedrock traffic through the
//! SDK adapter, `/metrics` served by `metrics-exporter-prometheus` on loopback and scraped
//! once; every query of the Grafana dashboard in `docs/grafana/` must name a series the crate
//! emitted, and the scrape must show what the scenario did.
#![cfg(all(feature = "sim", feature = "bedrock", feature = "metrics"))]

#[allow(dead_code)]
#[path = "../examples/prometheus.rs"]
mod prometheus;

use std::collections::BTreeSet;

/// Every `headroom_*` metric name in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("headroom_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

/// The value of the series `name{labels…}` whose labels include every one of `with`.
fn sample(scrape: &str, name: &str, with: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| with.iter().all(|w| l.contains(w)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_names_an_emitted_series() {
    let options = prometheus::parse_args(
        ["--listen", "127.0.0.1:0", "--once"]
            .map(String::from)
            .into_iter(),
    )
    .unwrap();
    let summary = prometheus::tour(options).await.unwrap();
    assert_eq!(summary.completed, summary.calls, "{summary:?}");

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/grafana/tower-headroom.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let mut named = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr} names no metric");
            named.extend(names);
        }
    }
    for name in &named {
        let emitted = summary
            .scrape
            .lines()
            .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")));
        assert!(
            emitted,
            "the dashboard queries {name}, which the crate did not emit"
        );
    }

    // The panels the operators' runbooks ask for: 429 and 503 apart, by model and region.
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert!(titles.iter().any(|t| t.contains("429")), "{titles:?}");
    assert!(titles.iter().any(|t| t.contains("503")), "{titles:?}");

    // What the scenario did is in the scrape: 503s in us-east-1, throttles from the
    // neighbour's burst, calls served by us-west-2 while east was down.
    let east = "region=\"us-east-1\"";
    assert!(
        sample(
            &summary.scrape,
            "headroom_attempts_total",
            &[east, "class=\"unavailable\""]
        ) > 0.0
    );
    assert!(
        sample(
            &summary.scrape,
            "headroom_attempts_total",
            &["class=\"throttled_tokens\""]
        ) > 0.0
    );
    assert!(
        sample(
            &summary.scrape,
            "headroom_fallback_total",
            &["target=\"west\"", "degraded=\"true\""]
        ) > 0.0
    );
    // The effective limit of a key that never learned is its configured limit, the console's
    // tokens per minute; the utilisation is a share of it.
    let west = "target=\"west\"";
    assert_eq!(
        sample(&summary.scrape, "headroom_quota_limit", &[west]),
        60_000.0
    );
    let utilization = sample(&summary.scrape, "headroom_quota_utilization", &[west]);
    assert!(utilization > 0.0 && utilization <= 1.0, "{utilization}");
    assert!(
        sample(
            &summary.scrape,
            "headroom_tokens_total",
            &[east, "type=\"input\""]
        ) > 0.0
    );
    assert_eq!(
        sample(
            &summary.scrape,
            "headroom_calls_total",
            &["result=\"success\""]
        ),
        summary.calls as f64
    );
    // Labels carry names the user chose, never a prompt or a credential.
    assert!(!summary.scrape.contains("xxxx"));
    assert!(!summary.scrape.contains("AKIDEXAMPLE"));
}
