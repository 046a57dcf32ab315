//! Scenarios 1 to 4 on simulated Bedrock: three apps on one request quota, a token-heavy
//! batch, a model overload and a regional outage.

use std::time::Duration;

use tower::BoxError;
use tower_headroom::sim::{Episode, OutputLength};

use super::schedule::{arrivals, bedrock, chat, model, rng};
use super::{App, EAST, HAIKU, MINUTE, Parts, Plan, SONNET, WEST, Work, app, plan, route};

/// Scenario 1: A, B and C share a 150 RPM quota (the seed's request quota, set explicitly:
/// bedrock-runtime enforces none by default); A spikes in minutes 4 to 7.
pub(super) fn three_apps(seed: u64, span: (Duration, Duration)) -> Result<Parts, BoxError> {
    let (backend, console) = bedrock(
        vec![model(SONNET, EAST, 10_000_000).rpm(150).build()?],
        seed,
    )?;
    let mut out = Vec::new();
    let spike = |t: Duration| {
        if t >= 4 * MINUTE && t < 7 * MINUTE {
            90
        } else {
            75
        }
    };
    arrivals(&mut rng(seed, 0), 0, span, spike, chat, &mut out);
    arrivals(&mut rng(seed, 1), 1, span, |_| 50, chat, &mut out);
    arrivals(&mut rng(seed, 2), 2, span, |_| 50, chat, &mut out);
    let apps = vec![
        app("A", SONNET, EAST),
        app("B", SONNET, EAST),
        app("C", SONNET, EAST),
    ];
    // Equal guaranteed shares for A, B and C: the user's intent.
    let plan = Plan {
        shares: Some(vec![1, 1, 1]),
        ..plan(apps, vec![route("sonnet", SONNET, EAST)])
    };
    Ok(Parts::new(backend, console, plan, out))
}

/// Scenario 2: 10 batch calls a minute of 15,000 + 5,000 tokens beside 200 small ones, on
/// 200,000 TPM (and a 10,000 RPM quota that never binds).
pub(super) fn token_heavy(seed: u64, span: (Duration, Duration)) -> Result<Parts, BoxError> {
    let (backend, console) = bedrock(
        vec![
            model(SONNET, EAST, 200_000)
                .rpm(10_000)
                .output(OutputLength::MaxTokens)
                .per_output_token(Duration::from_millis(4))
                .build()?,
        ],
        seed,
    )?;
    let mut out = Vec::new();
    let small = |rng: &mut fastrand::Rng| Work::Model {
        input_tokens: rng.u64(100..400),
        max_tokens: 200,
    };
    let batch = |_: &mut fastrand::Rng| Work::Model {
        input_tokens: 15_000,
        max_tokens: 5_000,
    };
    arrivals(&mut rng(seed, 0), 0, span, |_| 200, small, &mut out);
    arrivals(&mut rng(seed, 1), 1, span, |_| 10, batch, &mut out);
    let apps = vec![
        app("interactive", SONNET, EAST),
        App {
            batch: true,
            ..app("batch", SONNET, EAST)
        },
    ];
    Ok(Parts::new(
        backend,
        console,
        plan(apps, vec![route("sonnet", SONNET, EAST)]),
        out,
    ))
}

/// Scenario 3: the primary model overloaded for minutes 3 to 5, a secondary model available.
pub(super) fn overload(seed: u64, span: (Duration, Duration)) -> Result<Parts, BoxError> {
    let (backend, console) = bedrock(
        vec![
            model(SONNET, EAST, 10_000_000)
                .rpm(100)
                .overload(Episode::new(3 * MINUTE, 2 * MINUTE))
                .build()?,
            model(HAIKU, EAST, 10_000_000).rpm(100).build()?,
        ],
        seed,
    )?;
    let mut out = Vec::new();
    arrivals(&mut rng(seed, 0), 0, span, |_| 80, chat, &mut out);
    // The secondary model as the fallback target.
    let routes = vec![route("sonnet", SONNET, EAST), route("haiku", HAIKU, EAST)];
    Ok(Parts::new(
        backend,
        console,
        plan(vec![app("chat", SONNET, EAST)], routes),
        out,
    ))
}

/// Scenario 4: us-east-1 answers 503 for a minute, us-west-2 healthy.
pub(super) fn outage(seed: u64, span: (Duration, Duration)) -> Result<Parts, BoxError> {
    let (backend, console) = bedrock(
        vec![
            model(SONNET, EAST, 10_000_000)
                .rpm(100)
                .outage(Episode::new(4 * MINUTE, MINUTE))
                .build()?,
            model(SONNET, WEST, 10_000_000).rpm(100).build()?,
        ],
        seed,
    )?;
    let mut out = Vec::new();
    arrivals(&mut rng(seed, 0), 0, span, |_| 80, chat, &mut out);
    // A second region as the fallback target.
    let routes = vec![route("east", SONNET, EAST), route("west", SONNET, WEST)];
    Ok(Parts::new(
        backend,
        console,
        plan(vec![app("chat", SONNET, EAST)], routes),
        out,
    ))
}
