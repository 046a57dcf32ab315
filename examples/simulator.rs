//! The throttling simulator as a local server: Bedrock Runtime, DynamoDB, OpenAI- and
//! Anthropic-style endpoints that throttle like the real services, for pointing your own
//! service, the AWS SDK or an HTTP client at.
//!
//! ```text
//! scripts/dynalite        # once: installs dynalite, the DynamoDB store behind the front
//! cargo run --features sim --example simulator -- --config examples/sim.toml
//! ```
//!
//! Options:
//! - `--config FILE` (required): the TOML configuration (see `examples/sim.toml`);
//! - `--listen ADDR`: overrides `front.listen`;
//! - `--dynamo-upstream URL`: forward DynamoDB calls to this store instead of starting
//!   dynalite (which the example starts when tables are configured and no store is named).
//!
//! Ctrl-C stops it gracefully and prints what each model and table saw.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tower_headroom::sim::LlmShape;
use tower_headroom::sim::front::dynalite::Dynalite;
use tower_headroom::sim::front::{Server, SimFile, SimService};

struct Args {
    config: PathBuf,
    listen: Option<SocketAddr>,
    upstream: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut config, mut listen, mut upstream) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--listen" => {
                let text = value("--listen")?;
                listen = Some(text.parse().map_err(|_| {
                    format!("--listen {text:?} is not an address like 127.0.0.1:4566")
                })?);
            }
            "--dynamo-upstream" => upstream = Some(value("--dynamo-upstream")?),
            "--help" | "-h" => {
                return Err(String::from(
                    "usage: simulator --config FILE [--listen ADDR] [--dynamo-upstream URL]",
                ));
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config FILE is required (e.g. --config examples/sim.toml)")?,
        listen,
        upstream,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    let file = match SimFile::load(&args.config) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };

    // The store: named on the command line, else in the file, else a dynalite of our own.
    let mut upstream = args
        .upstream
        .or_else(|| file.front.dynamodb_upstream.clone());
    let mut _dynalite = None;
    if upstream.is_none() && file.has_tables() {
        let started = Dynalite::locate(Path::new(env!("CARGO_MANIFEST_DIR")))
            .and_then(|script| Dynalite::start(&script));
        match started {
            Ok(dynalite) => {
                println!("dynalite (DynamoDB store) on {}", dynalite.url());
                upstream = Some(dynalite.url());
                _dynalite = Some(dynalite);
            }
            Err(error) => {
                eprintln!("cannot start dynalite: {error}");
                return ExitCode::FAILURE;
            }
        }
    }

    let service = match SimService::from_file(&file, upstream.as_deref()) {
        Ok(service) => service,
        Err(error) => {
            eprintln!("invalid simulator configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listen = args.listen.unwrap_or(file.front.listen);
    let server = match Server::bind(listen, service.clone()).await {
        Ok(server) => server,
        Err(error) => {
            eprintln!("cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!("simulator listening on {}", server.url());
    if let Some(bedrock) = service.bedrock() {
        for model in bedrock.stats().models {
            let rpm = model
                .rpm
                .map_or_else(|| String::from("no RPM"), |rpm| format!("{rpm} RPM"));
            println!(
                "  bedrock  {} in {}: {rpm}, {} TPM, {} TPD",
                model.model_id, model.region, model.tpm, model.tpd
            );
        }
    }
    if let Some(dynamo) = service.dynamodb() {
        for table in dynamo.stats().tables {
            println!(
                "  dynamodb {}: {} RCU, {} WCU",
                table.name, table.rcu, table.wcu
            );
        }
    }
    for (shape, config) in [
        (LlmShape::OpenAi, &file.openai),
        (LlmShape::Anthropic, &file.anthropic),
    ] {
        if let Some(config) = config {
            println!(
                "  POST {}: {} RPM, {} TPM",
                shape.path(),
                config.rpm,
                config.tpm
            );
        }
    }

    if let Err(error) = tokio::signal::ctrl_c().await {
        eprintln!("cannot wait for Ctrl-C: {error}");
    }
    println!("stopping");
    if let Err(error) = server.shutdown().await {
        eprintln!("shutdown: {error}");
    }
    if let Some(bedrock) = service.bedrock() {
        for model in bedrock.stats().models {
            let c = model.counts;
            println!(
                "  bedrock  {} in {}: {} calls, {} admitted, {} throttled, {} overloaded, {} unavailable",
                model.model_id,
                model.region,
                c.calls(),
                c.admitted,
                c.throttled(),
                c.overloaded,
                c.unavailable + c.too_many_connections
            );
        }
    }
    if let Some(dynamo) = service.dynamodb() {
        for table in dynamo.stats().tables {
            println!(
                "  dynamodb {}: {} writes, {} throttled; {} reads, {} throttled",
                table.name,
                table.writes.calls(),
                table.writes.throttled(),
                table.reads.calls(),
                table.reads.throttled()
            );
        }
    }
    ExitCode::SUCCESS
}
