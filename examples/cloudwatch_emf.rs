//! CloudWatch, ready to run: the same Bedrock traffic as the `prometheus` example (a neighbour
//! on the account, us-east-1 down for a minute, us-west-2 as the fallback), its metrics written
//! as CloudWatch Embedded Metric Format documents through `metrics_cloudwatch_embedded`, once
//! per minute, the way a service on Lambda, ECS or EC2 (with the CloudWatch agent) ships them:
//! one JSON document per line on standard output, which CloudWatch Logs turns into metrics.
//!
//! ```text
//! cargo run --features sim,bedrock --example cloudwatch_emf                 # EMF on stdout
//! cargo run --features sim,bedrock --example cloudwatch_emf -- --out emf.jsonl
//! ```
//!
//! The alarms the runbooks ask for are in `docs/cloudwatch/alarms.json`, a CloudFormation
//! template over the namespace `TowerHeadroom`; `tests/cloudwatch_emf.rs` runs this example
//! and checks that each alarm's metric names and dimensions are ones it emitted.
//!
//! Why `metrics_cloudwatch_embedded` and not `metrique-metricsrs` (the other maintained bridge
//! from the `metrics` facade to EMF): it is a plain `metrics` recorder, so the crate's layers
//! report into it unchanged, its dependencies are light without its Lambda feature, and it
//! builds with this crate's `rust-version` (1.85); `metrique-metricsrs` needs Rust 1.91 and
//! routes metrics through metrique's own writer and queue, more than an example needs.
//! Each label set becomes one document whose labels are its CloudWatch dimensions.

#[path = "support/bedrock_traffic.rs"]
mod traffic;

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use metrics_cloudwatch_embedded::Collector;
use tower_headroom::BoxError;

/// The CloudWatch namespace the example writes to (and `docs/cloudwatch/alarms.json` reads).
pub const NAMESPACE: &str = "TowerHeadroom";

/// Where to write the documents.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A file to write to instead of standard output.
    pub out: Option<PathBuf>,
}

/// What the tour did and wrote.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Our calls.
    pub calls: usize,
    /// Our calls that completed.
    pub completed: usize,
    /// Every EMF document written, one JSON object per line.
    pub emf: String,
}

/// Parses `--out FILE`.
pub fn parse_args(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => options.out = Some(args.next().ok_or("--out needs a file")?.into()),
            "--help" | "-h" => return Err("usage: cloudwatch_emf [--out FILE]".into()),
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(options)
}

/// Installs the EMF collector as the global `metrics` recorder (once per process).
pub fn install() -> Result<&'static Collector, BoxError> {
    static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();
    if let Some(collector) = COLLECTOR.get() {
        return Ok(collector);
    }
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .init()
        .map_err(|e| BoxError::from(e.to_string()))?;
    Ok(COLLECTOR.get_or_init(|| collector))
}

/// Runs the traffic, flushing the documents every virtual minute; writes them where
/// `options` says and returns them.
pub fn tour(options: Options) -> Result<Summary, BoxError> {
    let collector = install()?;
    let written = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&written);
    let done = traffic::run_virtual(move |_minute| {
        // Histograms keep at most 100 values between flushes: flush every minute.
        let mut buffer = sink.lock().expect("not poisoned");
        collector.flush(&mut *buffer).expect("writes to memory");
    })?;
    let mut buffer = written.lock().map_err(|_| "poisoned")?;
    collector.flush(&mut *buffer)?;
    let emf = String::from_utf8(std::mem::take(&mut *buffer))?;
    match &options.out {
        Some(path) => std::fs::write(path, &emf)?,
        None => std::io::stdout().write_all(emf.as_bytes())?,
    }
    Ok(Summary {
        calls: done.calls,
        completed: done.completed,
        emf,
    })
}

fn main() -> Result<(), BoxError> {
    let options = parse_args(std::env::args().skip(1))?;
    let summary = tour(options)?;
    eprintln!(
        "{} of our {} calls completed; {} EMF documents written",
        summary.completed,
        summary.calls,
        summary.emf.lines().count()
    );
    Ok(())
}
