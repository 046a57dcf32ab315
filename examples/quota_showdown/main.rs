//! The quota showdown: the scenarios this crate grew from, each through several client
//! strategies, on a simulated Bedrock and DynamoDB, on virtual time.
//!
//! ```text
//! cargo run --release --features sim,bedrock,dynamodb,llm-http --example quota_showdown
//! cargo run --release --features sim,bedrock,dynamodb,llm-http --example quota_showdown -- --scenario 1 --json
//! cargo run --release --features sim,bedrock,dynamodb,llm-http --example quota_showdown -- --plot docs/
//! ```
//!
//! Each scenario runs ten minutes of traffic (twelve for scenario 6) through each strategy —
//! no retry, a naive retry loop (5 attempts, 1 s apart), the real AWS SDK with its standard
//! and adaptive retry modes (through the simulator's wire front, in process), tower-headroom's
//! stack, and the real AWS SDK configured by `SdkHeadroom` (the stack's policy inside the
//! SDK's retry loop) — against a fresh simulator, and prints one table. Every number is
//! measured in this run: nothing is hard-coded. The runtime's clock is paused, so ten
//! simulated minutes take well under a second of real time, and a seed (`--seed`, default 42)
//! gives the same output every time.
//!
//! The clients are configured as a user would configure them (`clients.rs`): from the
//! console's quotas, their own apps and fallback order, and an endpoint; never from the
//! simulator, whose quota windows fall where its seed puts them. Scenario 6 puts our two apps
//! on an account shared with an unmanaged neighbour; scenario 7 spends a model's tokens per
//! day halfway through, a second model as the fallback. Scenario 8 is an OpenAI-compatible
//! endpoint over plain HTTP (the simulator's front, in process): no policy, the vendor SDKs'
//! retry, and tower-headroom's stack (`http_clients.rs`).
//!
//! Scenario 9 is a bulk load through `BatchWriteItem` on a throttled provisioned table: the
//! plain SDK loop that resends `UnprocessedItems` (standard and adaptive retry) against
//! tower-headroom's `BatchWriter` (`scenarios/bulk.rs`).
//!
//! Options: `--scenario N` (1 to 9) runs one scenario; `--json` prints one JSON object per
//! (scenario, strategy) instead of tables; `--plot DIR` writes `DIR/showdown-scenarioN.svg`
//! per scenario 1 to 8 (admitted units per second with the stacks' effective limits, the
//! quota utilisation with the 80% line, throttles and fallback hops per second, per strategy;
//! scenario 6 adds the neighbour's tokens; the README's plots are scenarios 1, 2, 4 and 6 of
//! `--plot docs`); `--seed N`.
//!
//! The scenarios and the runner are in `scenarios/` (one file per scenario family, the runner
//! in `scenarios/run.rs`), the client set-up in `clients.rs` and
//! `sdk.rs`; `tests/showdown.rs` runs the same code and asserts the headline claims on its
//! numbers.

mod clients;
mod http_clients;
mod plot;
mod report;
mod scenarios;
mod sdk;

use std::path::PathBuf;
use std::process::ExitCode;

use scenarios::{Measured, SCENARIOS, Strategy};
use tower::BoxError;

struct Options {
    scenarios: Vec<u8>,
    json: bool,
    plot: Option<PathBuf>,
    seed: u64,
}

const USAGE: &str = "usage: quota_showdown [--scenario N] [--json] [--plot DIR] [--seed N]";

fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        scenarios: SCENARIOS
            .iter()
            .copied()
            .chain([scenarios::bulk::SCENARIO])
            .collect(),
        json: false,
        plot: None,
        seed: scenarios::DEFAULT_SEED,
    };
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--json" => options.json = true,
            "--scenario" => {
                let v = value("--scenario")?;
                match v.parse::<u8>() {
                    Ok(n) if SCENARIOS.contains(&n) || n == scenarios::bulk::SCENARIO => {
                        options.scenarios = vec![n]
                    }
                    _ => return Err(format!("--scenario must be 1 to 9, not {v:?}")),
                }
            }
            "--plot" => options.plot = Some(PathBuf::from(value("--plot")?)),
            "--seed" => {
                let v = value("--seed")?;
                options.seed = v
                    .parse()
                    .map_err(|_| format!("--seed must be a whole number, not {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(options)
}

/// Runs one scenario through every strategy. A strategy that cannot run (the SDK route, when
/// its pieces are missing) is left out with a note; any other failure is an error.
fn scenario(n: u8, seed: u64) -> Result<(Vec<Measured>, Vec<String>), BoxError> {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &strategy in Strategy::of(n) {
        match scenarios::run(n, strategy, seed) {
            Ok(measured) => rows.push(measured),
            Err(e) if strategy.is_sdk() => {
                notes.push(format!("{} not run: {e}", strategy.name()));
            }
            Err(e) => return Err(format!("scenario {n}, {}: {e}", strategy.name()).into()),
        }
    }
    Ok((rows, notes))
}

fn main() -> ExitCode {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let real = std::time::Instant::now();
    for &n in &options.scenarios {
        if n == scenarios::bulk::SCENARIO {
            match scenarios::bulk::run_all(options.seed) {
                Ok(rows) if options.json => {
                    for r in &rows {
                        println!("{}", scenarios::bulk::json_line(r));
                    }
                }
                Ok(rows) => println!("{}", scenarios::bulk::table(&rows)),
                Err(e) => {
                    eprintln!("error: scenario {n}: {e}");
                    return ExitCode::FAILURE;
                }
            }
            continue;
        }
        let (rows, notes) = match scenario(n, options.seed) {
            Ok(result) => result,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if options.json {
            for m in &rows {
                println!("{}", report::json_line(&m.row));
            }
        } else {
            println!("{}", report::table(n, &rows, &notes));
        }
        if let Some(dir) = &options.plot {
            match plot::scenario(dir, n, &rows) {
                Ok(path) => eprintln!("wrote {}", path.display()),
                Err(e) => {
                    eprintln!("error: plotting scenario {n}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    eprintln!(
        "{} scenario(s) in {:.2} s of real time (seed {})",
        options.scenarios.len(),
        real.elapsed().as_secs_f64(),
        options.seed
    );
    ExitCode::SUCCESS
}
