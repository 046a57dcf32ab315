//! Simulated tables' configuration: one table ([`TableConfig`], validated by
//! [`TableConfigBuilder`]), how its capacity is shared ([`CapacityModel`]), how it is billed
//! ([`BillingMode`]), and all of them as a file describes them ([`DynamoConfig`]).

use std::time::Duration;

use super::{
    DEFAULT_ACCOUNT_ID, DEFAULT_REGION, MAX_BURST_SECONDS, MAX_CAPACITY, MAX_PARTITIONS,
    NEW_ON_DEMAND_PEAK_RCU, NEW_ON_DEMAND_PEAK_WCU, PARTITION_MAX_RCU,
};
use crate::ConfigError;
use crate::sim::serde_time;

fn default_burst_seconds() -> u64 {
    300
}
pub(super) fn default_latency() -> Duration {
    Duration::from_millis(5)
}

/// How a provisioned table's capacity reaches its keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CapacityModel {
    /// DynamoDB today: any key may use the table's unused capacity at once, up to the
    /// partition maximum of 3,000 RCU / 1,000 WCU per second for one key (DynamoDB isolates
    /// frequently accessed items); the table's capacity and burst credit bound the total.
    #[default]
    Adaptive,
    /// DynamoDB before adaptive capacity: the table's capacity split evenly over its
    /// partitions, each with its own burst credit, so a hot key throttles on its partition's
    /// share while the table has room.
    EvenSplit,
}

/// How a table is billed, and so what bounds its throughput.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BillingMode {
    /// Provisioned RCU and WCU.
    #[default]
    Provisioned,
    /// On-demand: up to twice the previous peak at once, and an optional maximum.
    PayPerRequest,
}

/// One table.
///
/// Deserialized as `{ name, rcu, wcu, partitions?, burst_seconds?, latency_ms?,
/// capacity_model? ("adaptive" | "even_split"), billing_mode? ("provisioned" |
/// "pay_per_request"), max_read_request_units?, max_write_request_units?, previous_peak_rcu?,
/// previous_peak_wcu? }` (`rcu` and `wcu` may be left out of an on-demand table); validated
/// when the simulator is built.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TableConfig {
    /// The table name.
    pub name: String,
    /// Provisioned read capacity units per second (unused on an on-demand table).
    #[serde(default)]
    pub rcu: u64,
    /// Provisioned write capacity units per second (unused on an on-demand table).
    #[serde(default)]
    pub wcu: u64,
    /// The partition count (default: computed from throughput, as DynamoDB does).
    #[serde(default)]
    pub partitions: Option<u32>,
    /// Seconds of unused capacity kept as burst credit (default 300).
    #[serde(default = "default_burst_seconds")]
    pub burst_seconds: u64,
    /// How long every answer takes (default 5 ms).
    #[serde(
        rename = "latency_ms",
        with = "serde_time::millis",
        default = "default_latency"
    )]
    pub latency: Duration,
    /// How capacity reaches the keys (default [`CapacityModel::Adaptive`]).
    #[serde(default)]
    pub capacity_model: CapacityModel,
    /// Provisioned (default) or on-demand.
    #[serde(default)]
    pub billing_mode: BillingMode,
    /// On-demand only: the table's `MaxReadRequestUnits` per second (none by default).
    #[serde(default)]
    pub max_read_request_units: Option<u64>,
    /// On-demand only: the table's `MaxWriteRequestUnits` per second (none by default).
    #[serde(default)]
    pub max_write_request_units: Option<u64>,
    /// On-demand only: the read peak the table has served before it starts (default
    /// [`NEW_ON_DEMAND_PEAK_RCU`], a new table's).
    #[serde(default)]
    pub previous_peak_rcu: Option<u64>,
    /// On-demand only: the write peak the table has served before it starts (default
    /// [`NEW_ON_DEMAND_PEAK_WCU`], a new table's).
    #[serde(default)]
    pub previous_peak_wcu: Option<u64>,
}

impl TableConfig {
    /// A builder for the table `name`; `rcu` and `wcu` must be set.
    pub fn builder(name: impl Into<String>) -> TableConfigBuilder {
        TableConfigBuilder {
            config: TableConfig {
                name: name.into(),
                rcu: 0,
                wcu: 0,
                partitions: None,
                burst_seconds: default_burst_seconds(),
                latency: default_latency(),
                capacity_model: CapacityModel::default(),
                billing_mode: BillingMode::default(),
                max_read_request_units: None,
                max_write_request_units: None,
                previous_peak_rcu: None,
                previous_peak_wcu: None,
            },
        }
    }

    /// Checks every field; the error names the first bad one and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::new("name", &self.name, "must not be empty"));
        }
        let on_demand = self.is_on_demand();
        for (field, value) in [("rcu", self.rcu), ("wcu", self.wcu)] {
            if value == 0 && !on_demand {
                return Err(ConfigError::new(field, value, "must be at least 1"));
            }
            if value > MAX_CAPACITY {
                return Err(ConfigError::new(field, value, "must be at most 10,000,000"));
            }
        }
        for (field, value) in [
            ("max_read_request_units", self.max_read_request_units),
            ("max_write_request_units", self.max_write_request_units),
            ("previous_peak_rcu", self.previous_peak_rcu),
            ("previous_peak_wcu", self.previous_peak_wcu),
        ] {
            let Some(value) = value else { continue };
            if !on_demand {
                return Err(ConfigError::new(
                    field,
                    value,
                    "applies to on-demand tables only (billing_mode = \"pay_per_request\")",
                ));
            }
            if value == 0 || value > MAX_CAPACITY {
                return Err(ConfigError::new(
                    field,
                    value,
                    "must be between 1 and 10,000,000",
                ));
            }
        }
        if on_demand && self.capacity_model == CapacityModel::EvenSplit {
            return Err(ConfigError::new(
                "capacity_model",
                "even_split",
                "applies to provisioned tables only",
            ));
        }
        if let Some(p) = self.partitions
            && !(1..=MAX_PARTITIONS).contains(&p)
        {
            return Err(ConfigError::new(
                "partitions",
                p,
                "must be between 1 and 10,000",
            ));
        }
        if self.burst_seconds > MAX_BURST_SECONDS {
            return Err(ConfigError::new(
                "burst_seconds",
                self.burst_seconds,
                "must be at most 86,400",
            ));
        }
        Ok(())
    }

    /// Whether the table is on-demand.
    pub fn is_on_demand(&self) -> bool {
        self.billing_mode == BillingMode::PayPerRequest
    }

    /// The ARN DynamoDB names the table by in `ThrottlingReasons`.
    pub fn arn(&self, region: &str, account_id: &str) -> String {
        format!("arn:aws:dynamodb:{region}:{account_id}:table/{}", self.name)
    }

    /// An on-demand table's starting previous peak, (RCU, WCU) per second.
    pub fn previous_peak(&self) -> (u64, u64) {
        (
            self.previous_peak_rcu.unwrap_or(NEW_ON_DEMAND_PEAK_RCU),
            self.previous_peak_wcu.unwrap_or(NEW_ON_DEMAND_PEAK_WCU),
        )
    }

    /// The partition count: the configured one, or `ceil(RCU / 3000 + WCU / 1000)`.
    pub fn partition_count(&self) -> u32 {
        self.partitions.unwrap_or_else(|| {
            let needed = (self.rcu + 3 * self.wcu).div_ceil(PARTITION_MAX_RCU).max(1);
            u32::try_from(needed)
                .unwrap_or(MAX_PARTITIONS)
                .min(MAX_PARTITIONS)
        })
    }
}

/// Builds a validated [`TableConfig`].
#[derive(Clone, Debug)]
pub struct TableConfigBuilder {
    config: TableConfig,
}

impl TableConfigBuilder {
    /// Provisioned read capacity units per second.
    pub fn rcu(mut self, rcu: u64) -> Self {
        self.config.rcu = rcu;
        self
    }
    /// Provisioned write capacity units per second.
    pub fn wcu(mut self, wcu: u64) -> Self {
        self.config.wcu = wcu;
        self
    }
    /// How capacity reaches the keys: [`CapacityModel::EvenSplit`] is DynamoDB before
    /// adaptive capacity.
    pub fn capacity_model(mut self, model: CapacityModel) -> Self {
        self.config.capacity_model = model;
        self
    }
    /// Makes the table on-demand (`PAY_PER_REQUEST`); `rcu` and `wcu` are then unused.
    pub fn on_demand(mut self) -> Self {
        self.config.billing_mode = BillingMode::PayPerRequest;
        self
    }
    /// On-demand: the table's `MaxReadRequestUnits` per second.
    pub fn max_read_request_units(mut self, units: u64) -> Self {
        self.config.max_read_request_units = Some(units);
        self
    }
    /// On-demand: the table's `MaxWriteRequestUnits` per second.
    pub fn max_write_request_units(mut self, units: u64) -> Self {
        self.config.max_write_request_units = Some(units);
        self
    }
    /// On-demand: the peak (RCU, WCU per second) the table served before the simulator
    /// starts; it may take twice that at once.
    pub fn previous_peak(mut self, rcu: u64, wcu: u64) -> Self {
        self.config.previous_peak_rcu = Some(rcu);
        self.config.previous_peak_wcu = Some(wcu);
        self
    }
    /// The partition count (statistics; under [`CapacityModel::EvenSplit`] capacity is split
    /// evenly across them).
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.config.partitions = Some(partitions);
        self
    }
    /// Seconds of unused capacity kept as burst credit.
    pub fn burst_seconds(mut self, seconds: u64) -> Self {
        self.config.burst_seconds = seconds;
        self
    }
    /// How long every answer takes.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.config.latency = latency;
        self
    }
    /// Validates the configuration.
    pub fn build(self) -> Result<TableConfig, ConfigError> {
        self.config.validate()?;
        Ok(self.config)
    }
}

/// Simulated DynamoDB tables, as a configuration file describes them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DynamoConfig {
    /// The tables.
    pub tables: Vec<TableConfig>,
    /// The region in the tables' ARNs (default `us-east-1`).
    #[serde(default = "default_region")]
    pub region: String,
    /// The account id in the tables' ARNs (default `123456789012`).
    #[serde(default = "default_account_id")]
    pub account_id: String,
}

fn default_region() -> String {
    String::from(DEFAULT_REGION)
}

fn default_account_id() -> String {
    String::from(DEFAULT_ACCOUNT_ID)
}
