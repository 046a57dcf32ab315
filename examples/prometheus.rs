//! Prometheus, ready to run: a Bedrock client configured by `SdkHeadroom::configure_bedrock`
//! drives six virtual minutes of traffic against the simulator (a neighbour on the same
//! account, us-east-1 down for a minute, us-west-2 as the fallback), and `/metrics` serves
//! what the crate emitted, through `metrics-exporter-prometheus`.
//!
//! ```text
//! cargo run --features sim,bedrock --example prometheus                # serves until Ctrl-C
//! cargo run --features sim,bedrock --example prometheus -- --once      # runs, prints, exits
//! cargo run --features sim,bedrock --example prometheus -- --listen 0.0.0.0:9898
//! ```
//!
//! Then point Prometheus at it (`scrape_configs: [{job_name: headroom, static_configs:
//! [{targets: ["127.0.0.1:9898"]}]}]`) and import `docs/grafana/tower-headroom.json` into
//! Grafana. Wiring it into your own service is three lines: build a
//! `PrometheusBuilder` recorder, install it (`metrics::set_global_recorder`), and serve
//! `handle.render()` — the crate's layers and SDK adapters emit through the `metrics` facade,
//! whenever the recorder was installed.
//!
//! The scenario runs on tokio's paused clock on its own thread (minutes in about a second);
//! the exporter serves on the real clock. `tests/prometheus.rs` runs this example's tour,
//! scrapes the endpoint and checks that every query of the Grafana dashboard names a series
//! the crate emitted.

#[path = "support/bedrock_traffic.rs"]
mod traffic;

use std::net::SocketAddr;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower_headroom::BoxError;

/// Where to serve, and whether to stop after the scenario.
#[derive(Clone, Debug)]
pub struct Options {
    /// The address `/metrics` is served on (port 0: any free port).
    pub listen: SocketAddr,
    /// Print the summary and exit instead of serving until Ctrl-C.
    pub once: bool,
}

/// What the tour did and scraped.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The `/metrics` URL served.
    pub url: String,
    /// Our calls, and how many completed.
    pub calls: usize,
    /// Our calls that completed.
    pub completed: usize,
    /// The Prometheus text scraped from `url` after the scenario.
    pub scrape: String,
}

/// Parses `--listen ADDR` and `--once`.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 9898)),
        once: false,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                let text = args.next().ok_or("--listen needs an address")?;
                options.listen = text.parse().map_err(|_| {
                    format!("--listen {text:?} is not an address like 127.0.0.1:9898")
                })?;
            }
            "--once" => options.once = true,
            "--help" | "-h" => return Err("usage: prometheus [--listen ADDR] [--once]".into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

/// Installs the Prometheus recorder as the global `metrics` recorder (once per process):
/// every latency histogram with buckets from 5 ms to 5 minutes.
pub fn install() -> Result<PrometheusHandle, BoxError> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ])?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serves `/metrics`, runs the scenario, scrapes the endpoint once.
pub async fn tour(options: Options) -> Result<Summary, BoxError> {
    let handle = install()?;
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let url = format!("http://{}/metrics", listener.local_addr()?);
    let render = handle.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || std::future::ready(render.render())),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let done = traffic::run_virtual(|_minute| ())?;

    let scrape = scrape(&url).await?;
    Ok(Summary {
        url,
        calls: done.calls,
        completed: done.completed,
        scrape,
    })
}

/// GETs `url`'s body as text.
async fn scrape(url: &str) -> Result<String, BoxError> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let response = client.get(url.parse()?).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8(body.to_vec())?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let options = parse_args(std::env::args().skip(1))?;
    let once = options.once;
    let summary = tour(options).await?;
    println!(
        "{} of our {} calls completed; {} series on {}",
        summary.completed,
        summary.calls,
        summary
            .scrape
            .lines()
            .filter(|l| l.starts_with("headroom_"))
            .count(),
        summary.url
    );
    for line in summary.scrape.lines().filter(|l| {
        l.starts_with("headroom_attempts_total") || l.starts_with("headroom_fallback_total")
    }) {
        println!("  {line}");
    }
    if once {
        return Ok(());
    }
    println!("serving {} until Ctrl-C", summary.url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
