//! Scenario 5 on simulated DynamoDB with adaptive capacity: one key bursting above the
//! per-key ceiling of 1,000 WCU per second on a table with room for everyone else, beside
//! writes to other keys and reads on the same table.

use std::sync::Arc;
use std::time::Duration;

use tower::BoxError;
use tower_headroom::sim::{DynamoSim, TableConfig};

use super::schedule::{rng, secs};
use super::{
    Arrival, Backend, Console, EAST, Parts, TABLE, TableQuota, Work, app, minutes, plan, route,
};

/// The hot key.
pub const HOT_KEY: &str = "order#hot";
/// The table's provisioned write capacity: what the hot key may take (its 1,000 WCU/s
/// ceiling, 60 WCU/s between bursts) and every other writer (about 45 WCU/s) fit.
pub const WCU: u64 = 1_500;
/// The table's provisioned read capacity: 10 reads per second of one unit fit.
pub const RCU: u64 = 100;
/// The apps, in plan order: the hot key's writer, the other keys' writer, the reader.
pub const APPS: [&str; 3] = ["hot-writer", "writer", "reader"];

/// Scenario 5: a 1,500 WCU / 100 RCU table (adaptive capacity, the default), one key over
/// its 1,000 WCU/s ceiling in bursts.
pub(super) fn hot_key(seed: u64) -> Result<Parts, BoxError> {
    let table = TableConfig::builder(TABLE).rcu(RCU).wcu(WCU).build()?;
    let console = Console {
        models: Vec::new(),
        tables: vec![TableQuota {
            table: table.name.clone(),
            rcu: table.rcu,
            wcu: table.wcu,
        }],
    };
    let sim = DynamoSim::builder().table(table).build()?;
    // Per second: the hot key 50 writes of 30 KB (30 WCU each, 1,500 WCU: over its ceiling
    // for longer than the one second its bucket holds) in the first five seconds of every
    // twenty, 2 (60 WCU) in the other fifteen; 10 writes of 3-6 KB (3 to 6 WCU) to random
    // other keys; 10 one-unit reads (half strongly consistent), one in ten of the hot key.
    // Large items keep the call count, and so the run, small.
    let mut out = Vec::new();
    let mut r = rng(seed, 0);
    let hot: Arc<str> = Arc::from(HOT_KEY);
    for second in 0..minutes(5) * 60 {
        let n = if second % 20 < 5 { 50 } else { 2 };
        spread(&mut out, &mut r, second, n, 0, |r| Work::Write {
            key: hot.clone(),
            payload: r.u64(29_800..30_700),
        });
        spread(&mut out, &mut r, second, 10, 1, |r| Work::Write {
            key: Arc::from(format!("order#{}", r.u32(..100_000))),
            payload: r.u64(2_100..6_100),
        });
        spread(&mut out, &mut r, second, 10, 2, |r| Work::Read {
            key: if r.u8(..10) == 0 {
                hot.clone()
            } else {
                Arc::from(format!("order#{}", r.u32(..100_000)))
            },
            consistent: r.bool(),
        });
    }
    Ok(Parts::new(
        Backend::Dynamo(sim),
        console,
        plan(
            APPS.iter().map(|name| app(name, TABLE, EAST)).collect(),
            vec![route(TABLE, TABLE, EAST)],
        ),
        out,
    ))
}

/// `n` arrivals of `app` spread over `second`, each with its work drawn by `work`.
fn spread(
    out: &mut Vec<Arrival>,
    r: &mut fastrand::Rng,
    second: u64,
    n: u64,
    app: usize,
    mut work: impl FnMut(&mut fastrand::Rng) -> Work,
) {
    for i in 0..n {
        let at = secs(second) + Duration::from_secs_f64((i as f64 + r.f64()) / n as f64);
        let work = work(r);
        out.push(Arrival { at, app, work });
    }
}
