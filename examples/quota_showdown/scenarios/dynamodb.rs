//! Scenario 5 on simulated DynamoDB: bursty writes to a provisioned table, 30% to one key.

use std::sync::Arc;
use std::time::Duration;

use tower::BoxError;
use tower_headroom::sim::{DynamoSim, TableConfig};

use super::schedule::{rng, secs};
use super::{
    Arrival, Backend, Console, EAST, Parts, TABLE, TableQuota, Work, app, minutes, plan, route,
};

/// Scenario 5: a 100 WCU table of 4 partitions, a hot key overrunning its partition.
pub(super) fn hot_key(seed: u64) -> Result<Parts, BoxError> {
    let table = TableConfig::builder(TABLE)
        .rcu(100)
        .wcu(100)
        .partitions(4)
        .build()?;
    let console = Console {
        models: Vec::new(),
        tables: vec![TableQuota {
            table: table.name.clone(),
            rcu: table.rcu,
            wcu: table.wcu,
        }],
    };
    let sim = DynamoSim::builder().table(table).build()?;
    // Items of 2-4 KB (3 or 4 WCU each): per second 12 writes (about 42 WCU), 34 (about 120
    // WCU) in the first two seconds of every ten; 30% of them to one key, whose partition (a
    // quarter of the table, 25 WCU) they overrun.
    let mut out = Vec::new();
    let mut r = rng(seed, 0);
    for second in 0..minutes(5) * 60 {
        let n = if second % 10 < 2 { 34 } else { 12 };
        for i in 0..n {
            let at = secs(second) + Duration::from_secs_f64((i as f64 + r.f64()) / n as f64);
            let key: Arc<str> = if r.f64() < 0.3 {
                Arc::from("order#hot")
            } else {
                Arc::from(format!("order#{}", r.u32(..100_000)))
            };
            out.push(Arrival {
                at,
                app: 0,
                work: Work::Write {
                    key,
                    payload: r.u64(2_100..4_000),
                },
            });
        }
    }
    Ok(Parts::new(
        Backend::Dynamo(sim),
        console,
        plan(
            vec![app("writer", TABLE, EAST)],
            vec![route(TABLE, TABLE, EAST)],
        ),
        out,
    ))
}
