//! A call's partition keys under the per-key ceiling ([`PartitionCeiling`]): the adapter only
//! drives the core, as it drives the quota.
//!
//! The DynamoDB shape reads each item's partition key value from the typed input (for the
//! tables whose key attribute was declared, [`SdkHeadroom::configure_dynamodb_ceiling`](super::SdkHeadroom::configure_dynamodb_ceiling))
//! and hashes it at once ([`KeyId`]); [`Prepared::keys`](super::call::Prepared) carries the
//! hashes and each key's units. Per attempt, the HTTP client admits every key on the ceiling and
//! waits for each hot key's own budget *before* it reserves on the quota (nothing of the quota
//! is held while a key waits), within the call's deadline; the tickets ride on the attempt,
//! and the attempt's end records its outcome in the ceiling (a key-range throttle teaches only
//! its key; the hot-key report counts the attempt). An attempt refused before it is sent drops
//! its tickets: a hot key's units go back, and the report counts nothing.

use std::sync::Arc;

use tokio::time::Instant;

use super::Shared;
use super::call::Call;
use crate::Outcome;
use crate::admission::{Ask, Cost, QuotaStore, Rejected};
use crate::dynamodb::{Access, CeilingTicket, PartitionCeiling};
use crate::hot_keys::KeyId;

/// What one call spends of one partition key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyCharge {
    /// Reads or writes.
    pub(crate) access: Access,
    /// The key value's hash.
    pub(crate) id: KeyId,
    /// WCU, or half RCUs for a read.
    pub(crate) units: u64,
}

/// A call's partition keys, per table, and the ceiling they are admitted on.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    pub(crate) ceiling: Arc<PartitionCeiling>,
    /// `(table, key)`, each (table, access, key) once with the units of all its items.
    pub(crate) keys: Vec<(Arc<str>, KeyCharge)>,
}

impl Keys {
    /// An empty set over `ceiling`.
    #[cfg(feature = "dynamodb")]
    pub(crate) fn new(ceiling: Arc<PartitionCeiling>) -> Self {
        Keys {
            ceiling,
            keys: Vec::new(),
        }
    }

    /// Adds `units` of `access` on the key `id` of `table` (summed with the call's other
    /// items on the same key).
    #[cfg(feature = "dynamodb")]
    pub(crate) fn add(&mut self, table: &str, access: Access, id: KeyId, units: u64) {
        let same =
            |(t, k): &&mut (Arc<str>, KeyCharge)| &**t == table && k.access == access && k.id == id;
        match self.keys.iter_mut().find(same) {
            Some((_, charge)) => charge.units = charge.units.saturating_add(units),
            None => self
                .keys
                .push((Arc::from(table), KeyCharge { access, id, units })),
        }
    }

    /// Admits every key and waits until each hot key's budget has room, bounded by `ask`'s
    /// deadline (its cost and tenant are not used). On a refusal the tickets admitted so far
    /// are dropped, which gives their units back.
    pub(crate) async fn wait(&self, ask: Ask) -> Result<Vec<CeilingTicket>, Rejected> {
        let ask = Ask {
            tenant: None,
            ..ask
        };
        let now = Instant::now();
        let mut tickets = Vec::with_capacity(self.keys.len());
        for (table, key) in &self.keys {
            let ask = Ask {
                cost: Cost::units(key.units),
                ..ask
            };
            tickets.push(self.ceiling.admit_id(table, key.access, key.id, ask, now)?);
        }
        for ticket in &mut tickets {
            ticket.ready().await?;
        }
        Ok(tickets)
    }
}

impl<S: QuotaStore<Arc<str>> + 'static> Shared<S> {
    /// Stores the tickets of the attempt in flight, which is about to be sent.
    pub(crate) fn admitted_keys(call: &mut Call<S>, tickets: Vec<CeilingTicket>) {
        if let Some(attempt) = call.attempt.as_mut() {
            attempt.keys = tickets;
        }
    }

    /// Records the sent attempt's outcome on each of its keys.
    pub(crate) fn record_keys(call: &mut Call<S>, outcome: &Outcome, now: Instant) {
        let tickets = match call.attempt.as_mut() {
            Some(attempt) => std::mem::take(&mut attempt.keys),
            None => return,
        };
        if let Some(keys) = &call.keys {
            for ticket in tickets {
                keys.ceiling.record(ticket, outcome, now);
            }
        }
    }
}
