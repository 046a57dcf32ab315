//! What a call is charged: through the simulator's service ([`charge`]), and reported back
//! as `ConsumedCapacity` when the request asked for it.

use serde_json::{Map, Value, json};

use super::upstream::Answer;
use crate::sim::front::sim_error;
use crate::sim::front::wire::{WireError, WireResponse};
use crate::sim::{DynamoCall, DynamoSim};

/// What a request asked to see of its consumed capacity.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Report {
    None,
    Total,
    Indexes,
}

pub(super) fn report(body: &Map<String, Value>) -> Report {
    match body.get("ReturnConsumedCapacity").and_then(Value::as_str) {
        Some("TOTAL") => Report::Total,
        Some("INDEXES") => Report::Indexes,
        _ => Report::None,
    }
}

pub(super) fn consumed_capacity(table: &str, units: f64, write: bool, report: Report) -> Value {
    let per_kind = if write {
        "WriteCapacityUnits"
    } else {
        "ReadCapacityUnits"
    };
    let mut value = json!({ "TableName": table, "CapacityUnits": units, per_kind: units });
    if report == Report::Indexes {
        value["Table"] = json!({ "CapacityUnits": units, per_kind: units });
    }
    value
}

/// Charges one call through the simulator's service (its latency included).
pub(super) async fn charge(sim: &DynamoSim, call: DynamoCall) -> Result<f64, WireError> {
    let mut sim = sim.clone();
    std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut sim, cx))
        .await
        .map_err(|e| sim_error(&e))?;
    match tower_service::Service::call(&mut sim, call).await {
        Ok(reply) => Ok(reply.consumed_capacity),
        Err(error) => Err(sim_error(&error)),
    }
}

/// The store's answer with the simulator's `ConsumedCapacity`, when the request asked for it.
pub(super) fn with_capacity(
    answer: Answer,
    table: &str,
    units: f64,
    write: bool,
    report: Report,
    request_id: &str,
) -> WireResponse {
    if report == Report::None || !answer.status.is_success() {
        return answer.into_response(request_id);
    }
    let mut reply = answer.json().unwrap_or_default();
    reply.insert(
        String::from("ConsumedCapacity"),
        consumed_capacity(table, units, write, report),
    );
    answer.rewritten(&reply, request_id)
}
