//! Scenario 9 of the showdown, the bulk load through `BatchWriteItem`, against issue 16's
//! claims: every row writes every item (the simulator's admitted writes and consumed WCU),
//! tower-headroom's throttled item attempts are at most 2% of its item attempts and fewer than
//! the plain SDK loop's, measured in the same run.

use tower_headroom::sim::front::sdk_http_client;

use super::DEFAULT_SEED;
use super::scenarios::bulk::{self, BulkStrategy, ITEMS};

#[test]
fn bulk_load_writes_every_item_and_headroom_is_hardly_throttled() {
    let rows = bulk::run_all(DEFAULT_SEED).unwrap();
    assert_eq!(rows.len(), BulkStrategy::ALL.len());
    for r in &rows {
        assert_eq!(r.items_written, ITEMS as u64, "{r:?}");
        assert_eq!(r.consumed_wcu, ITEMS as f64, "{r:?}");
        // 25 items a batch at the least.
        assert!(r.batches >= ITEMS.div_ceil(25) as u64, "{r:?}");
    }
    let row = |s: BulkStrategy| rows.iter().find(|r| r.strategy == s).unwrap();
    let plain = row(BulkStrategy::PlainLoop);
    let ours = row(BulkStrategy::Headroom);
    // The baseline is throttled: the load is thirty seconds of the table's capacity.
    assert!(plain.throttled_item_attempts > 0, "{plain:?}");
    assert!(
        ours.throttled_item_attempts as f64 <= 0.02 * ours.item_attempts() as f64,
        "{ours:?}"
    );
    assert!(
        ours.throttled_item_attempts < plain.throttled_item_attempts,
        "{ours:?} vs {plain:?}"
    );
    // The same seed measures the same rows.
    assert_eq!(
        bulk::run(BulkStrategy::Headroom, DEFAULT_SEED).unwrap(),
        *ours
    );
}

/// The bulk load's clients are built from the console numbers: building them never reads
/// the simulator.
#[test]
fn bulk_client_set_up_never_reads_the_simulator() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let front = bulk::front().unwrap();
        let sim = front.dynamodb().unwrap();
        let before = sim.inspections();
        for strategy in BulkStrategy::ALL {
            drop(bulk::client(strategy, sdk_http_client(front.clone()), DEFAULT_SEED).unwrap());
            assert_eq!(sim.inspections(), before, "{}", strategy.name());
        }
        drop(sim.stats());
        assert_eq!(sim.inspections(), before + 1);
    });
}
