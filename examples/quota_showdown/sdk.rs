//! The real AWS SDK clients, driven through the simulator's wire front in process.

use tower::BoxError;

use super::scenarios::{Client, Setup};

/// The SDK clients of every app of `setup`.
pub fn clients(_setup: &Setup, _adaptive: bool, _seed: u64) -> Result<Vec<Client>, BoxError> {
    Err("the simulator's wire front (sim::front) is not on this branch yet".into())
}
